// plugins/attention/attention_onnx.cpp — the ONNX lowering of every attention type
// (node/onnx_lowering.h): the full (non-incremental) forward pass of attention.cpp, as operators.
//
// Projections are MatMul (+ Add for biases); heads are split with Reshape [0, 0, H, d] and
// Transpose. Keys and values of grouped-query attention are repeated to the query heads (head h
// reads group h / (heads / kv_heads)). Which keys a query may see is one boolean [B|1, 1, Tq|1, Tk]
// from the mask input (read as attention.h says: key padding when its first dimension is the
// batch) and the causal and window limits, computed from run-time positions; masked scores are
// replaced by -1e30 before the softmax, and the probabilities are multiplied by the same boolean so
// that a query with every key masked gets a zero distribution, as in forward().
// A positional scheme that acts inside attention lowers what it does itself
// (PositionalScheme::lower_score_bias, lower_rotation, lower_relative_index in node/positional.h):
// the rotation of queries and keys after qk_norm, the bias added to the scores before the mask,
// the rows of the relative key and value tables. A scheme without the lowering it needs is refused
// with its name.
#include "attention.h"

#include "node/onnx_lowering.h"

#include <stdexcept>

namespace attnlab::attention {

namespace {

constexpr float kMaskedScore = -1e30f;

std::vector<int64_t> perm(std::initializer_list<int64_t> p) { return p; }

}  // namespace

bool AttentionNode::lower_onnx(const OnnxLowering& l) const {
  auto refuse = [&](const std::string& what) {
    return std::invalid_argument("its positional scheme " + config_.posenc + " " + what +
                                 " inside attention, which has no ONNX lowering (the scheme's plugin does not implement "
                                 "the matching PositionalScheme::lower_* method; see docs/plugins.md)");
  };
  OnnxBuilder& g = l.graph;
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  const std::string& query = l.inputs[0];
  const std::string& memory = l.inputs[1];
  auto param = [&](int index) { return index >= 0 ? l.params[index] : std::string(); };
  auto project = [&](const std::string& x, int w, int b, const std::string& out) {
    return g.affine(x, param(w), param(b), out);
  };
  // [B, T, n·d] → [B, T, n, d], normalised per vector with qk_norm, → [B, n, T, d].
  auto heads = [&](const std::string& x, int64_t n, int64_t d, int gain, int beta) {
    std::string split = g.op("Reshape", {x, g.ints({0, 0, n, d})});
    if (config_.qk_norm != QkNorm::None && gain >= 0)
      split = g.normalise_last_axis(split, param(gain), param(beta), kQkNormEps, config_.qk_norm == QkNorm::Layer);
    return g.op("Transpose", {split}, {{"perm", perm({0, 2, 1, 3})}});
  };
  // [B, G, T, d] → [B, H, T, d]: each group serves heads/G consecutive query heads.
  auto repeat_groups = [&](const std::string& x, int64_t d) {
    if (G == H) return x;
    const std::string grown = g.op("Expand", {g.op("Unsqueeze", {x, g.ints({2})}), g.ints({1, 1, H / G, 1, 1})});
    return g.op("Reshape", {grown, g.ints({0, H, -1, d})});
  };

  // Positions of queries and keys, and key − query offsets [Tq, Tk], made when something needs them.
  std::string query_positions, key_positions, offsets;
  auto positions = [&] {
    if (query_positions.empty()) {
      query_positions = g.positions(query, 1);
      key_positions = g.positions(memory, 1);
      offsets = g.op("Sub", {g.op("Unsqueeze", {key_positions, g.ints({0})}), g.op("Unsqueeze", {query_positions, g.ints({1})})});
    }
  };
  // The scheme's rotation of [B, n, T, d_k] queries or keys.
  auto rotate = [&](const std::string& x, bool keys) {
    if (!effects_.rotation) return x;
    positions();
    const std::string rotated = scheme_->lower_rotation(g, x, dk, keys ? key_positions : query_positions);
    if (rotated.empty()) throw refuse("rotates queries and keys");
    return rotated;
  };

  const std::string Q = rotate(heads(project(query, pidx_.w_q, pidx_.b_q, g.fresh("q")), H, dk, pidx_.q_gain, pidx_.q_beta), false);
  const std::string K = repeat_groups(
      rotate(heads(project(memory, pidx_.w_k, pidx_.b_k, g.fresh("k")), G, dk, pidx_.k_gain, pidx_.k_beta), true), dk);
  const std::string V = repeat_groups(heads(project(memory, pidx_.w_v, pidx_.b_v, g.fresh("v")), G, dv, -1, -1), dv);

  // Relative embeddings (Shaw et al.): the rows of the scheme's key and value tables, [Tq, Tk].
  std::string relative;
  if (relative_) {
    positions();
    relative = scheme_->lower_relative_index(g, offsets);
    if (relative.empty()) throw refuse("adds relative embeddings");
  }
  auto table_rows = [&](int table) { return g.op("Gather", {l.params[pidx_.scheme + table], relative}); };  // [Tq, Tk, d]

  std::string scores;  // [B, H, Tq, Tk]
  if (config_.kind == ScoreKind::Dot) {
    scores = g.op("MatMul", {Q, g.op("Transpose", {K}, {{"perm", perm({0, 1, 3, 2})}})});
    if (relative_) {  // + q_i·a_K[r(i, j)]: [B, H, Tq, 1, d_k] × [Tq, d_k, Tk]
      const std::string keys = g.op("Transpose", {table_rows(0)}, {{"perm", perm({0, 2, 1})}});
      scores = g.op("Add", {scores, g.op("Squeeze", {g.op("MatMul", {g.op("Unsqueeze", {Q, g.ints({3})}), keys}), g.ints({3})})});
    }
    if (config_.score_scale != 1.0f) scores = g.op("Mul", {scores, g.scalar(config_.score_scale)});
  } else {  // Σ_d v_hd tanh(q_id + k_jd)
    const std::string t = g.op("Tanh", {g.op("Add", {g.op("Unsqueeze", {Q, g.ints({3})}), g.op("Unsqueeze", {K, g.ints({2})})})});
    const std::string v = g.op("Reshape", {param(pidx_.v), g.ints({1, H, 1, dk, 1})});
    scores = g.op("Squeeze", {g.op("MatMul", {t, v}), g.ints({4})});
  }
  if (effects_.score_bias) {
    positions();
    const std::string bias = scheme_->lower_score_bias(g, geometry_, offsets, l.params.subspan(pidx_.scheme, scheme_param_count_));
    if (bias.empty()) throw refuse("adds a score bias");
    scores = g.op("Add", {scores, bias});
  }

  // Which keys each query may see.
  std::string keep;
  auto also = [&](const std::string& condition) { keep = keep.empty() ? condition : g.op("And", {keep, condition}); };
  if (l.has_input(2)) {
    const Shape& mask = l.input_shapes[2];
    const Shape& q = l.input_shapes[0];
    std::vector<int64_t> axes;  // to [B|1, 1, Tq|1, Tk]
    if (mask.size() == 2) axes = mask[0] == q[0] ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{0, 1};
    else if (mask.size() == 3) axes = {1};
    else throw std::invalid_argument("mask of rank " + std::to_string(mask.size()) + " (expected 2 or 3)");
    also(g.op("Unsqueeze", {g.op("Not", {g.op("Equal", {l.inputs[2], g.scalar(0.0f)})}), g.ints(axes)}));
  }
  // key_range(): key − query offsets allowed by causal and the window.
  bool has_lo = false, has_hi = false;
  int64_t lo = 0, hi = 0;
  auto limit_hi = [&](int64_t v) { hi = has_hi ? std::min(hi, v) : v; has_hi = true; };
  if (config_.causal) limit_hi(0);
  if (config_.window > 0) {
    has_lo = true;
    if (config_.mode == WindowMode::Causal) {
      lo = -(config_.window - 1);
      limit_hi(0);
    } else {
      lo = -(config_.window / 2);
      limit_hi((config_.window - 1) / 2);
    }
  }
  if (has_lo || has_hi) {
    positions();
    if (has_lo) also(g.op("GreaterOrEqual", {offsets, g.ints0(lo)}));
    if (has_hi) also(g.op("LessOrEqual", {offsets, g.ints0(hi)}));
  }
  std::string probs;
  if (keep.empty()) {
    probs = g.op("Softmax", {scores}, {{"axis", int64_t{-1}}});
  } else {
    const std::string masked = g.op("Where", {keep, scores, g.scalar(kMaskedScore)});
    probs = g.op("Mul", {g.op("Softmax", {masked}, {{"axis", int64_t{-1}}}), g.cast(keep, OnnxType::Float)});
  }
  std::string heads_out = g.op("MatMul", {probs, V});  // [B, H, Tq, d_v]
  if (relative_)  // + Σ_j p_ij a_V[r(i, j)]: [B, H, Tq, 1, Tk] × [Tq, Tk, d_v]
    heads_out = g.op("Add", {heads_out, g.op("Squeeze", {g.op("MatMul", {g.op("Unsqueeze", {probs, g.ints({3})}), table_rows(1)}),
                                                         g.ints({3})})});
  const std::string attended = g.op("Transpose", {heads_out}, {{"perm", perm({0, 2, 1, 3})}});
  project(g.op("Reshape", {attended, g.ints({0, 0, H * dv})}), pidx_.w_o, pidx_.b_o, l.outputs[0]);
  return true;
}

}  // namespace attnlab::attention
