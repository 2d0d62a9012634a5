// plugins/attention/attention.cpp — the attention node (contract in attention.h; math in
// docs/components.md).

#include "tensor/simd_intrinsics.h"  // first: see there

#include "attention.h"

#include "tensor/gemm.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace attnlab::attention {

namespace {

// Access to slots the configuration may lack (biases, additive attention's v): index -1 is absent.
auto optional_data(std::span<const TensorView> views) {
  return [views](int index) -> float* { return index < 0 ? nullptr : views[index].data(); };
}

// y[rows, out] = x[rows, in] · w[in, out] (+ bias[out]).
void project(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* bias, float* y) {
  gemm(Trans::No, Trans::No, rows, out, in, 1.0f, x, in, w, out, 0.0f, y, out);
  if (bias) {
    Eigen::Map<RowMajorMatrix> Y(y, rows, out);
    Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias, out);
  }
}

// out[c] = Σ_r m[r, c]  (assigns). Rows are added as contiguous vectors (Eigen's colwise() on a
// row-major matrix walks columns with a stride and is several times slower), in column blocks so
// that each task owns its part of `out`.
// With `accumulate` it adds instead (a parameter that serves two projections: shared_qk).
void column_sums(const float* m, int64_t rows, int64_t cols, float* out, bool accumulate = false) {
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, cols, 256), [&](const tbb::blocked_range<int64_t>& r) {
    Eigen::Map<Eigen::ArrayXf> acc(out + r.begin(), r.size());
    if (!accumulate) acc.setZero();
    for (int64_t i = 0; i < rows; ++i) acc += Eigen::Map<const Eigen::ArrayXf>(m + i * cols + r.begin(), r.size());
  });
}

}  // namespace

AttentionConfig config_from_attrs(const std::string& type, const Attrs& attrs) {
  AttentionConfig c;
  c.type = type;
  c.kind = type == "attention.additive" ? ScoreKind::Additive : ScoreKind::Dot;
  c.heads = attrs.get_int("heads");
  c.d_k = attrs.get_int("d_k");
  c.d_v = attrs.get_int("d_v");
  c.causal = attrs.get_bool("causal");
  c.bias = attrs.get_bool("bias");
  c.shared_qk = attrs.get_bool("shared_qk");
  const std::string& scale = attrs.get_string("score_scale");
  if (scale == "rsqrt_d_k") c.score_scale = 1.0f / std::sqrt(static_cast<float>(c.d_k));
  else if (scale == "inv_d_k") c.score_scale = 1.0f / static_cast<float>(c.d_k);
  else if (scale == "none") c.score_scale = 1.0f;
  else
    throw std::invalid_argument("score_scale must be \"rsqrt_d_k\", \"inv_d_k\" or \"none\", got \"" + scale + "\"");
  if (c.kind == ScoreKind::Additive && scale != "rsqrt_d_k")
    throw std::invalid_argument("score_scale applies to dot-product scores; additive scores are not scaled");
  const std::string& qk_norm = attrs.get_string("qk_norm");
  if (qk_norm == "layer") c.qk_norm = QkNorm::Layer;
  else if (qk_norm == "rms") c.qk_norm = QkNorm::Rms;
  else if (!qk_norm.empty() && qk_norm != "none")
    throw std::invalid_argument("qk_norm must be \"none\", \"layer\" or \"rms\", got \"" + qk_norm + "\"");
  if (c.heads < 1) throw std::invalid_argument("heads must be at least 1, got " + std::to_string(c.heads));
  if (c.d_k < 1) throw std::invalid_argument("d_k must be at least 1, got " + std::to_string(c.d_k));
  if (c.d_v < 1) throw std::invalid_argument("d_v must be at least 1, got " + std::to_string(c.d_v));
  c.kv_heads = c.heads;
  if (attrs.has("kv_heads")) {
    c.kv_heads = attrs.get_int("kv_heads");
    if (c.kv_heads < 1) throw std::invalid_argument("kv_heads must be at least 1, got " + std::to_string(c.kv_heads));
    if (c.heads % c.kv_heads != 0)
      throw std::invalid_argument("kv_heads (" + std::to_string(c.kv_heads) + ") must divide heads (" +
                                  std::to_string(c.heads) + ")");
  }
  if (c.shared_qk && c.kv_heads != c.heads)
    throw std::invalid_argument("shared_qk needs one key head per query head (kv_heads = heads), got kv_heads = " +
                                std::to_string(c.kv_heads));
  if (attrs.has("window")) {
    c.window = attrs.get_int("window");
    if (c.window < 1) throw std::invalid_argument("window must be at least 1, got " + std::to_string(c.window));
    const std::string& mode = attrs.get_string("mode");
    if (mode == "causal") c.mode = WindowMode::Causal;
    else if (mode == "centred") c.mode = WindowMode::Centred;
    else throw std::invalid_argument("mode must be \"causal\" or \"centred\", got \"" + mode + "\"");
  }
  if (attrs.has("tile")) {
    c.tile = attrs.get_int("tile");
    if (c.tile < -1)
      throw std::invalid_argument("tile must be 0 (automatic), -1 (materialise the scores) or a positive tile size, got " +
                                  std::to_string(c.tile));
  }
  c.posenc = attrs.get_string("posenc");
  c.posenc_scope = attrs.get_string("posenc_scope");
  return c;
}

MaskLayout mask_layout(const Shape& m, int64_t batch, int64_t queries, int64_t keys) {
  auto fail = [&]() -> MaskLayout {
    throw ShapeError("mask shape " + to_string(m) + " does not broadcast to [batch, queries, keys] = " +
                     to_string(Shape{batch, queries, keys}) +
                     "; expected [B, Tk] key padding, [Tq, Tk], or [B|1, Tq|1, Tk]");
  };
  if (m.empty() || m.back() != keys) return fail();
  if (m.size() == 2) {
    if (m[0] == batch) return {keys, 0};
    if (m[0] == queries) return {0, keys};
    if (m[0] == 1) return {0, 0};
    return fail();
  }
  if (m.size() == 3) {
    MaskLayout l;
    if (m[0] == batch) l.batch_stride = m[1] * keys;
    else if (m[0] != 1) return fail();
    if (m[1] == queries) l.query_stride = keys;
    else if (m[1] != 1) return fail();
    if (m[0] == 1 && batch != 1) l.batch_stride = 0;
    return l;
  }
  return fail();
}

AttentionNode::AttentionNode(AttentionConfig config, const Registry& registry) : config_(std::move(config)) {
  group_size_ = config_.heads / config_.kv_heads;
  int next = 4;
  if (config_.shared_qk) {  // keys are projected with the query weights (and bias): no w_k, b_k
    pidx_.w_k = pidx_.w_q;
    pidx_.w_v = 1;
    pidx_.w_o = 2;
    next = 3;
  }
  if (config_.kind == ScoreKind::Additive) pidx_.v = next++;
  if (config_.bias) {
    pidx_.b_q = next++;
    pidx_.b_k = config_.shared_qk ? pidx_.b_q : next++;
    pidx_.b_v = next++;
    pidx_.b_o = next++;
  }
  if (config_.qk_norm != QkNorm::None) {
    pidx_.q_gain = next++;
    pidx_.k_gain = next++;
  }
  if (config_.qk_norm == QkNorm::Layer) {
    pidx_.q_beta = next++;
    pidx_.k_beta = next++;
  }
  pidx_.scheme = next;
  geometry_ = {config_.heads, config_.d_k, config_.d_v, config_.kind == ScoreKind::Dot};
  if (config_.posenc.empty()) return;  // no positional scheme inside attention
  // The scheme is whatever node config_.posenc names; what it does is asked, never inferred from
  // the name.
  try {
    // "posenc.t5(num_buckets: 16)": the slot's type with the attributes bound to it (node/attrs.h).
    auto [type, attrs] = parse_type_call(config_.posenc);
    scheme_node_ = registry.create(type, attrs);
  } catch (const std::exception& e) {
    throw std::invalid_argument("posenc '" + config_.posenc + "': " + e.what());
  }
  scheme_ = scheme_node_->positional_scheme();
  if (!scheme_)
    throw std::invalid_argument("posenc '" + config_.posenc +
                                "' is not a positional scheme (its node type offers no PositionalScheme)");
  scheme_->check(geometry_);
  effects_ = scheme_->effects();
  scheme_param_count_ = scheme_->params(geometry_).size();
  relative_ = effects_.relative_embeddings;
  if (relative_ && (config_.kind != ScoreKind::Dot || scheme_param_count_ < 2))
    throw std::invalid_argument("posenc '" + config_.posenc +
                                "' offers relative embeddings, which need dot-product scores and the scheme's key and "
                                "value tables as its first two parameters");
  trainable_bias_ = (effects_.score_bias && scheme_param_count_ > 0) || relative_;
}

AttentionNode::Dims AttentionNode::dims_of(std::span<const Shape> in) const {
  if (in.size() < 2) throw ShapeError("expects inputs query and memory (and an optional mask)");
  const Shape& q = in[0];
  const Shape& m = in[1];
  if (q.size() != 3) throw ShapeError("query must be [batch, length, width], got " + to_string(q));
  if (m.size() != 3) throw ShapeError("memory must be [batch, length, width], got " + to_string(m));
  if (m[0] != q[0])
    throw ShapeError("memory batch " + std::to_string(m[0]) + " differs from query batch " + std::to_string(q[0]));
  if (m[2] != q[2])
    throw ShapeError("memory width " + std::to_string(m[2]) + " differs from query width " + std::to_string(q[2]));
  return {q[0], q[1], m[1], q[2]};
}

NodeShapes AttentionNode::infer(std::span<const Shape> in) const {
  const Dims d = dims_of(in);
  const int64_t B = d.batch, Tq = d.queries, Tk = d.keys, D = d.width;
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  if (in.size() > 2 && !in[2].empty()) mask_layout(in[2], B, Tq, Tk);

  NodeShapes s;
  s.outputs = {{B, Tq, D}};
  s.params = {{"w_q", {D, H * dk}}, {"w_k", {D, G * dk}}, {"w_v", {D, G * dv}}, {"w_o", {H * dv, D}}};
  if (config_.shared_qk) s.params.erase(s.params.begin() + 1);
  if (config_.kind == ScoreKind::Additive)
    s.params.push_back({"v", {H, dk}, Init::Normal, 1.0f / std::sqrt(static_cast<float>(dk))});
  if (config_.bias) {
    s.params.push_back({"b_q", {H * dk}, Init::Zeros});
    if (!config_.shared_qk) s.params.push_back({"b_k", {G * dk}, Init::Zeros});
    s.params.push_back({"b_v", {G * dv}, Init::Zeros});
    s.params.push_back({"b_o", {D}, Init::Zeros});
  }
  if (config_.qk_norm != QkNorm::None) {
    s.params.push_back({"q_gain", {dk}, Init::Ones});
    s.params.push_back({"k_gain", {dk}, Init::Ones});
  }
  if (config_.qk_norm == QkNorm::Layer) {
    s.params.push_back({"q_beta", {dk}, Init::Zeros});
    s.params.push_back({"k_beta", {dk}, Init::Zeros});
  }
  for (ParamSpec p : scheme_ ? scheme_->params(geometry_) : std::vector<ParamSpec>{}) {
    p.name = "posenc." + p.name;
    if (!config_.posenc_scope.empty()) p.scope = config_.posenc_scope;
    s.params.push_back(std::move(p));
  }
  if (const int64_t tile = tile_for(Tq, Tk); tile > 0) {
    // saved: Q, K, V, log-sum-exp per query row, O
    s.saved = {{B, Tq, H * dk}, {B, Tk, G * dk}, {B, Tk, G * dv}, {B, H, Tq}, {B, Tq, H * dv}};
    // workspace: dO, scratch tiles per chunk (scores, score gradients, running max and sum), dQ, dK,
    // dV, rowsum(dO ∘ O) per query row
    s.workspace = {{B, Tq, H * dv}, {kTileChunks, 2 * tile * tile + 2 * tile}, {B, Tq, H * dk}, {B, Tk, G * dk},
                   {B, Tk, G * dv}, {B, H, Tq}};
    if (config_.qk_norm != QkNorm::None)  // saved[5..8]: x̂ and 1/σ of queries and keys
      s.saved.insert(s.saved.end(), {{B, Tq, H * dk}, {B, Tq, H}, {B, Tk, G * dk}, {B, Tk, G}});
    return s;
  }
  // saved: Q, K, V, P, O
  s.saved = {{B, Tq, H * dk}, {B, Tk, G * dk}, {B, Tk, G * dv}, {B, H, Tq, Tk}, {B, Tq, H * dv}};
  // workspace: dO, dS, dQ, dK, dV, per-batch gradient of the additive score vector
  s.workspace = {{B, Tq, H * dv}, {B, H, Tq, Tk}, {B, Tq, H * dk}, {B, Tk, G * dk}, {B, Tk, G * dv}};
  if (config_.kind == ScoreKind::Additive) s.workspace.push_back({B, H, dk});
  if (config_.qk_norm != QkNorm::None)  // saved[5..8]: x̂ and 1/σ of queries and keys
    s.saved.insert(s.saved.end(), {{B, Tq, H * dk}, {B, Tq, H}, {B, Tk, G * dk}, {B, Tk, G}});
  return s;
}

std::vector<Shape> AttentionNode::cache_shapes(std::span<const Shape> in, int64_t max_len) const {
  const Dims d = dims_of(in);
  const int64_t L = std::max(max_len, d.keys);
  const int64_t B = d.batch, Tq = d.queries, H = config_.heads, G = config_.kv_heads;
  return {{B, L, G * config_.d_k}, {B, L, G * config_.d_v}, {B, Tq, H * config_.d_k}, {B, H, Tq, L},
          {B, Tq, H * config_.d_v}, {B, L}};
}

void AttentionNode::rotate(float* x, int64_t rows_per_batch, int64_t batch, int64_t batch_stride, int64_t groups,
                           int64_t first_position, bool inverse) const {
  if (!effects_.rotation) return;
  const int64_t dk = config_.d_k, width = groups * dk;
  tbb::parallel_for(int64_t{0}, batch * rows_per_batch, [&](int64_t r) {
    const int64_t b = r / rows_per_batch, i = r % rows_per_batch;
    scheme_->rotate(x + b * batch_stride + i * width, groups, dk, first_position + i, inverse);
  });
}

std::pair<int64_t, int64_t> AttentionNode::key_range(int64_t qpos, int64_t keys, bool causal) const {
  int64_t lo = 0, hi = keys - 1;
  if (causal) hi = std::min(hi, qpos);
  if (config_.window > 0) {
    if (config_.mode == WindowMode::Causal) {
      lo = std::max(lo, qpos - (config_.window - 1));
      hi = std::min(hi, qpos);
    } else {
      lo = std::max(lo, qpos - config_.window / 2);
      hi = std::min(hi, qpos + (config_.window - 1) / 2);
    }
  }
  return {lo, hi};
}

int64_t AttentionNode::tile_for(int64_t queries, int64_t keys) const {
  if (config_.kind != ScoreKind::Dot || config_.tile < 0 || trainable_bias_) return 0;
  if (config_.tile > 0) return config_.tile;
  return queries * keys >= kTiledFromScores ? kDefaultTile : 0;
}

// Adds the positional bias, applies causal/window/mask restrictions and normalises one score row in
// place. Keys not allowed get probability 0; a row with no allowed key becomes all zeros.
void AttentionNode::score_row_softmax(float* row, int64_t keys, int64_t qpos, int64_t head, const float* mask_row,
                                      bool causal, std::span<const TensorView> scheme_params) const {
  const auto [lo, hi] = key_range(qpos, keys, causal);
  if (effects_.score_bias && lo <= hi)
    scheme_->add_score_bias(scheme_params, geometry_, head, qpos, lo, hi - lo + 1, row + lo);
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = lo; j <= hi; ++j) {
    if (mask_row && mask_row[j] == 0.0f) continue;
    max_score = std::max(max_score, row[j]);
  }
  if (max_score == -std::numeric_limits<float>::infinity()) {
    std::fill(row, row + keys, 0.0f);
    return;
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < keys; ++j) {
    const bool allowed = j >= lo && j <= hi && !(mask_row && mask_row[j] == 0.0f);
    row[j] = allowed ? std::exp(row[j] - max_score) : 0.0f;
    sum += row[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < keys; ++j) row[j] *= inv;
}

void AttentionNode::attend(const AttendArgs& a, int64_t B, int64_t Tq, int64_t Tk) const {
  const int64_t H = config_.heads, G = config_.kv_heads, R = group_size_, dk = config_.d_k, dv = config_.d_v;
  const float scale = config_.score_scale;
  // The per-head products run as one batched product over [batch, key/value head, query head of
  // its group] (gemm.h): heads are interleaved columns of q, k, v and heads_out; the R query heads
  // of a group share their key/value head (stride 0). Dot scores: P = scale · Q_h K_gᵀ.
  if (config_.kind == ScoreKind::Dot)
    gemm_batched(Trans::No, Trans::Yes,
                 {{B, Tq * H * dk, a.k_batch_stride, H * Tq * Tk}, {G, R * dk, dk, R * Tq * Tk}, {R, dk, 0, Tq * Tk}},
                 Tq, Tk, dk, scale, a.q, H * dk, a.k, G * dk, 0.0f, a.probs, Tk);
  tbb::parallel_for(int64_t{0}, B * H, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H, g = h / R;
    const float* q = a.q + b * Tq * H * dk + h * dk;
    float* p = a.probs + bh * Tq * Tk;
    if (config_.kind == ScoreKind::Dot) {
      if (relative_) {  // + q_i·a_K[r(i, j)] · scale
        const float* table = a.scheme_params[0].data();
        for (int64_t i = 0; i < Tq; ++i) {
          const Eigen::Map<const Eigen::VectorXf> qi(q + i * H * dk, dk);
          for (int64_t j = 0; j < Tk; ++j)
            p[i * Tk + j] += scale * qi.dot(Eigen::Map<const Eigen::VectorXf>(
                                         table + scheme_->relative_index(a.query_offset + i, j) * dk, dk));
        }
      }
    } else {
      // One query row at a time: tanh(K_h + q_i) as a [Tk, d_k] block (vectorised), times w.
      const float* k = a.k + b * a.k_batch_stride + g * dk;
      const Eigen::Map<const Eigen::VectorXf> w(a.additive_v + h * dk, dk);
      const Eigen::Map<const RowMajorMatrix, 0, Eigen::OuterStride<>> keys(k, Tk, dk, Eigen::OuterStride<>(G * dk));
      RowMajorMatrix t(Tk, dk);
      for (int64_t i = 0; i < Tq; ++i) {
        const Eigen::Map<const Eigen::RowVectorXf> qi(q + i * H * dk, dk);
        t = (keys.rowwise() + qi).array().tanh().matrix();
        Eigen::Map<Eigen::VectorXf>(p + i * Tk, Tk).noalias() = t * w;
      }
    }
    for (int64_t i = 0; i < Tq; ++i) {
      const float* mask_row =
          a.use_mask ? a.mask + b * a.mask_layout.batch_stride + i * a.mask_layout.query_stride : nullptr;
      score_row_softmax(p + i * Tk, Tk, a.query_offset + i, h, mask_row, a.causal, a.scheme_params);
    }
  });
  // heads_out_h = P_h V_g, over the same batch dimensions.
  gemm_batched(Trans::No, Trans::No,
               {{B, H * Tq * Tk, a.v_batch_stride, Tq * H * dv}, {G, R * Tq * Tk, dv, R * dv}, {R, Tq * Tk, 0, dv}}, Tq,
               dv, Tk, 1.0f, a.probs, Tk, a.v, G * dv, 0.0f, a.heads_out, H * dv);
  if (relative_) {  // + Σ_j p_ij a_V[r(i, j)]
    const float* table = a.scheme_params[1].data();
    tbb::parallel_for(int64_t{0}, B * H, [&](int64_t bh) {
      const int64_t b = bh / H, h = bh % H;
      const float* p = a.probs + bh * Tq * Tk;
      for (int64_t i = 0; i < Tq; ++i) {
        Eigen::Map<Eigen::VectorXf> out(a.heads_out + (b * Tq + i) * H * dv + h * dv, dv);
        for (int64_t j = 0; j < Tk; ++j)
          if (const float pij = p[i * Tk + j]; pij != 0.0f)
            out += pij * Eigen::Map<const Eigen::VectorXf>(table + scheme_->relative_index(a.query_offset + i, j) * dv, dv);
      }
    });
  }
}

// ---- Tiled kernel (online softmax) --------------------------------------------------------------
//
// Tasks are (batch, head, query block) in forward and in the first backward pass, (batch, key/value
// head, key block) in the second. Task t runs in chunk t mod C (C = min(kTileChunks, tasks)), which
// owns one set of scratch tiles; every task computes the same values whatever the chunking or the
// thread count, and each writes only its own rows, so results are deterministic.

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

int64_t tile_chunk_floats(int64_t tile) { return 2 * tile * tile + 2 * tile; }

}  // namespace

// The positional scheme's score bias for one head (scheme null: none).
struct HeadBias {
  const PositionalScheme* scheme;
  std::span<const TensorView> params;
  const AttentionGeometry& geometry;
  int64_t head;
  void add(int64_t qpos, int64_t first_key, int64_t count, float* row) const {
    if (scheme && count > 0) scheme->add_score_bias(params, geometry, head, qpos, first_key, count, row);
  }
};

// Prepares one score-tile row in place: keys not allowed (range or mask) become -inf, allowed ones
// get the positional scheme's bias. Returns the row's maximum (-inf when no key of the tile is allowed). The
// range is cut out by position so that the common case (no mask, no bias, whole tile allowed) is
// one vectorised maximum.
static float bias_and_mask_tile_row(float* row, int64_t first_key, int64_t count, int64_t qpos,
                                    std::pair<int64_t, int64_t> allowed, const HeadBias& bias, const float* mask_row) {
  const int64_t begin = std::clamp<int64_t>(allowed.first - first_key, 0, count);
  const int64_t end = std::clamp<int64_t>(allowed.second - first_key + 1, begin, count);
  std::fill(row, row + begin, -kInf);
  std::fill(row + end, row + count, -kInf);
  if (end == begin) return -kInf;
  bias.add(qpos, first_key + begin, end - begin, row + begin);
  if (mask_row)
    for (int64_t jj = begin; jj < end; ++jj) row[jj] = mask_row[first_key + jj] == 0.0f ? -kInf : row[jj];
  return Eigen::Map<const Eigen::ArrayXf>(row + begin, end - begin).maxCoeff();
}

void AttentionNode::attend_tiled(const AttendArgs& a, int64_t B, int64_t Tq, int64_t Tk, int64_t tile, float* lse,
                                 float* scratch) const {
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  const float scale = config_.score_scale;
  const int64_t q_blocks = (Tq + tile - 1) / tile;
  const int64_t tasks = B * H * q_blocks;
  const int64_t chunks = std::min(kTileChunks, tasks);
  tbb::parallel_for(int64_t{0}, chunks, [&](int64_t c) {
    float* s = scratch + c * tile_chunk_floats(tile);
    float* m = s + 2 * tile * tile;  // running maximum per row
    float* l = m + tile;             // running sum of exp(score - m) per row
    for (int64_t t = c; t < tasks; t += chunks) {
      const int64_t bh = t / q_blocks, qb = t % q_blocks, b = bh / H, h = bh % H, g = h / group_size_;
      const int64_t i0 = qb * tile, nq = std::min(tile, Tq - i0);
      const float* q = a.q + (b * Tq + i0) * H * dk + h * dk;
      const float* k = a.k + b * a.k_batch_stride + g * dk;
      const float* v = a.v + b * a.v_batch_stride + g * dv;
      float* o = a.heads_out + (b * Tq + i0) * H * dv + h * dv;  // the accumulator, normalised at the end
      const HeadBias bias{effects_.score_bias ? scheme_ : nullptr, a.scheme_params, geometry_, h};
      for (int64_t r = 0; r < nq; ++r) {
        std::fill_n(o + r * H * dv, dv, 0.0f);
        m[r] = -kInf;
        l[r] = 0.0f;
      }
      // Allowed ranges move monotonically with the query position: the block needs the keys from
      // its first row's first allowed key to its last row's last one.
      const int64_t first = key_range(a.query_offset + i0, Tk, a.causal).first;
      const int64_t last = key_range(a.query_offset + i0 + nq - 1, Tk, a.causal).second;
      for (int64_t j0 = std::max<int64_t>(0, first) / tile * tile; j0 <= last; j0 += tile) {
        const int64_t nk = std::min(tile, Tk - j0);
        gemm(Trans::No, Trans::Yes, nq, nk, dk, scale, q, H * dk, k + j0 * G * dk, G * dk, 0.0f, s, tile);
        for (int64_t r = 0; r < nq; ++r) {
          float* row = s + r * tile;
          const int64_t qpos = a.query_offset + i0 + r;
          const float* mask_row =
              a.use_mask ? a.mask + b * a.mask_layout.batch_stride + (i0 + r) * a.mask_layout.query_stride : nullptr;
          const float row_max =
              bias_and_mask_tile_row(row, j0, nk, qpos, key_range(qpos, Tk, a.causal), bias, mask_row);
          if (row_max == -kInf) {
            std::fill_n(row, nk, 0.0f);
            continue;
          }
          const float m_new = std::max(m[r], row_max);
          const float rescale = std::exp(m[r] - m_new);  // 0 for the row's first allowed tile
          Eigen::Map<Eigen::ArrayXf> p(row, nk);
          p = (p - m_new).exp();  // exp(-inf) = 0 for keys not allowed
          if (rescale != 1.0f) Eigen::Map<Eigen::ArrayXf>(o + r * H * dv, dv) *= rescale;
          l[r] = l[r] * rescale + p.sum();
          m[r] = m_new;
        }
        gemm(Trans::No, Trans::No, nq, dv, nk, 1.0f, s, tile, v + j0 * G * dv, G * dv, 1.0f, o, H * dv);
      }
      float* lse_rows = lse + bh * Tq + i0;
      for (int64_t r = 0; r < nq; ++r) {
        Eigen::Map<Eigen::ArrayXf> orow(o + r * H * dv, dv);
        if (l[r] == 0.0f) {  // no allowed key: a zero distribution, and zero probabilities in backward
          orow.setZero();
          lse_rows[r] = kInf;
        } else {
          orow *= 1.0f / l[r];
          lse_rows[r] = m[r] + std::log(l[r]);
        }
      }
    }
  });
}

void AttentionNode::backward_tiled(const AttendArgs& a, int64_t B, int64_t Tq, int64_t Tk, int64_t tile,
                                   const float* lse, const float* dO, float* dQ, float* dK, float* dV,
                                   float* row_dots, float* scratch) const {
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  const float scale = config_.score_scale;
  const int64_t q_blocks = (Tq + tile - 1) / tile, k_blocks = (Tk + tile - 1) / tile;

  // For queries [i0, i0+nq) of head h and keys [j0, j0+nk): the probabilities P = exp(S − lse) into
  // s and the score gradients dS = P ∘ (dO Vᵀ − D) into ds.
  auto tile_grads = [&](float* s, float* ds, int64_t b, int64_t h, int64_t i0, int64_t nq, int64_t j0, int64_t nk) {
    const int64_t g = h / group_size_, bh = b * H + h;
    const HeadBias bias{effects_.score_bias ? scheme_ : nullptr, a.scheme_params, geometry_, h};
    gemm(Trans::No, Trans::Yes, nq, nk, dk, scale, a.q + (b * Tq + i0) * H * dk + h * dk, H * dk,
         a.k + b * a.k_batch_stride + j0 * G * dk + g * dk, G * dk, 0.0f, s, tile);
    gemm(Trans::No, Trans::Yes, nq, nk, dv, 1.0f, dO + (b * Tq + i0) * H * dv + h * dv, H * dv,
         a.v + b * a.v_batch_stride + j0 * G * dv + g * dv, G * dv, 0.0f, ds, tile);
    for (int64_t r = 0; r < nq; ++r) {
      const int64_t qpos = a.query_offset + i0 + r;
      const float* mask_row =
          a.use_mask ? a.mask + b * a.mask_layout.batch_stride + (i0 + r) * a.mask_layout.query_stride : nullptr;
      float* row = s + r * tile;
      bias_and_mask_tile_row(row, j0, nk, qpos, key_range(qpos, Tk, a.causal), bias, mask_row);
      Eigen::Map<Eigen::ArrayXf> p(row, nk);
      p = (p - lse[bh * Tq + i0 + r]).exp();
      Eigen::Map<Eigen::ArrayXf> d(ds + r * tile, nk);
      d = p * (d - row_dots[bh * Tq + i0 + r]);
    }
  };

  // Pass 1, per (batch, head, query block): D_i = rowsum(dO_i ∘ O_i), then dQ = scale · dS K.
  const int64_t q_tasks = B * H * q_blocks, q_chunks = std::min(kTileChunks, q_tasks);
  tbb::parallel_for(int64_t{0}, q_chunks, [&](int64_t c) {
    float* s = scratch + c * tile_chunk_floats(tile);
    float* ds = s + tile * tile;
    for (int64_t t = c; t < q_tasks; t += q_chunks) {
      const int64_t bh = t / q_blocks, qb = t % q_blocks, b = bh / H, h = bh % H, g = h / group_size_;
      const int64_t i0 = qb * tile, nq = std::min(tile, Tq - i0);
      float* dq = dQ + (b * Tq + i0) * H * dk + h * dk;
      for (int64_t r = 0; r < nq; ++r) {
        const int64_t row = (b * Tq + i0 + r) * H * dv + h * dv;
        row_dots[bh * Tq + i0 + r] = Eigen::Map<const Eigen::VectorXf>(dO + row, dv).dot(
            Eigen::Map<const Eigen::VectorXf>(a.heads_out + row, dv));
        std::fill_n(dq + r * H * dk, dk, 0.0f);
      }
      const int64_t first = key_range(a.query_offset + i0, Tk, a.causal).first;
      const int64_t last = key_range(a.query_offset + i0 + nq - 1, Tk, a.causal).second;
      for (int64_t j0 = std::max<int64_t>(0, first) / tile * tile; j0 <= last; j0 += tile) {
        const int64_t nk = std::min(tile, Tk - j0);
        tile_grads(s, ds, b, h, i0, nq, j0, nk);
        gemm(Trans::No, Trans::No, nq, dk, nk, scale, ds, tile, a.k + b * a.k_batch_stride + j0 * G * dk + g * dk,
             G * dk, 1.0f, dq, H * dk);
      }
    }
  });

  // Pass 2, per (batch, key/value head, key block), over the query heads that share it:
  // dV = Pᵀ dO and dK = scale · dSᵀ Q.
  const int64_t k_tasks = B * G * k_blocks, k_chunks = std::min(kTileChunks, k_tasks);
  tbb::parallel_for(int64_t{0}, k_chunks, [&](int64_t c) {
    float* s = scratch + c * tile_chunk_floats(tile);
    float* ds = s + tile * tile;
    for (int64_t t = c; t < k_tasks; t += k_chunks) {
      const int64_t bg = t / k_blocks, kb = t % k_blocks, b = bg / G, g = bg % G;
      const int64_t j0 = kb * tile, nk = std::min(tile, Tk - j0);
      float* dk_rows = dK + (b * Tk + j0) * G * dk + g * dk;
      float* dv_rows = dV + (b * Tk + j0) * G * dv + g * dv;
      for (int64_t jj = 0; jj < nk; ++jj) {
        std::fill_n(dk_rows + jj * G * dk, dk, 0.0f);
        std::fill_n(dv_rows + jj * G * dv, dv, 0.0f);
      }
      for (int64_t r = 0; r < group_size_; ++r) {
        const int64_t h = g * group_size_ + r;
        for (int64_t qb = 0; qb < q_blocks; ++qb) {
          const int64_t i0 = qb * tile, nq = std::min(tile, Tq - i0);
          const int64_t first = key_range(a.query_offset + i0, Tk, a.causal).first;
          const int64_t last = key_range(a.query_offset + i0 + nq - 1, Tk, a.causal).second;
          if (last < j0 || first > j0 + nk - 1) continue;  // no query of the block sees these keys
          tile_grads(s, ds, b, h, i0, nq, j0, nk);
          gemm(Trans::Yes, Trans::No, nk, dv, nq, 1.0f, s, tile, dO + (b * Tq + i0) * H * dv + h * dv, H * dv, 1.0f,
               dv_rows, G * dv);
          gemm(Trans::Yes, Trans::No, nk, dk, nq, scale, ds, tile, a.q + (b * Tq + i0) * H * dk + h * dk, H * dk,
               1.0f, dk_rows, G * dk);
        }
      }
    }
  });
}

void AttentionNode::forward(const ForwardContext& ctx) const {
  if (ctx.step.decode) {
    forward_decode(ctx);
    return;
  }
  const TensorView& query = ctx.inputs[0];
  const TensorView& memory = ctx.inputs[1];
  const bool has_mask = ctx.inputs.size() > 2 && ctx.inputs[2].present();
  const int64_t B = query.dim(0), Tq = query.dim(1), D = query.dim(2), Tk = memory.dim(1);
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  const auto param = optional_data(ctx.params);
  float* Q = ctx.saved[0].data();
  float* K = ctx.saved[1].data();
  float* V = ctx.saved[2].data();
  float* P = ctx.saved[3].data();
  float* O = ctx.saved[4].data();

  project(query.data(), B * Tq, D, param(pidx_.w_q), H * dk, param(pidx_.b_q), Q);
  project(memory.data(), B * Tk, D, param(pidx_.w_k), G * dk, param(pidx_.b_k), K);
  project(memory.data(), B * Tk, D, param(pidx_.w_v), G * dv, param(pidx_.b_v), V);
  if (config_.qk_norm != QkNorm::None) {
    normalise(Q, B * Tq, H, ctx.params, false, ctx.saved[5].data(), ctx.saved[6].data());
    normalise(K, B * Tk, G, ctx.params, true, ctx.saved[7].data(), ctx.saved[8].data());
  }
  rotate(Q, Tq, B, Tq * H * dk, H, 0, false);
  rotate(K, Tk, B, Tk * G * dk, G, 0, false);
  AttendArgs a{Q, K, Tk * G * dk, V, Tk * G * dv, param(pidx_.v), P, O, nullptr, {}, 0, config_.causal, has_mask,
               scheme_params(ctx.params)};
  if (has_mask) {
    a.mask = ctx.inputs[2].data();
    a.mask_layout = mask_layout(ctx.inputs[2].shape(), B, Tq, Tk);
  }
  // Tiled: saved[3] holds the log-sum-exp per query row instead of P. An inspecting pass records
  // the probabilities (node.h: Recorder): the materialised kernel writes them, into the record.
  const int64_t tile = tile_for(Tq, Tk);
  const TensorView recorded = ctx.step.recorder ? ctx.step.recorder->record("probs", {B, H, Tq, Tk}) : TensorView{};
  if (recorded.present()) a.probs = recorded.data();
  if (tile > 0 && !recorded.present()) attend_tiled(a, B, Tq, Tk, tile, P, ctx.workspace[1].data());
  else attend(a, B, Tq, Tk);
  if (recorded.present() && tile == 0) std::copy(recorded.data(), recorded.data() + recorded.numel(), P);
  project(O, B * Tq, H * dv, param(pidx_.w_o), D, param(pidx_.b_o), ctx.outputs[0].data());
}

void AttentionNode::forward_decode(const ForwardContext& ctx) const {
  const DecodeState& state = *ctx.step.decode;
  const TensorView& query = ctx.inputs[0];
  const TensorView& memory = ctx.inputs[1];
  const int64_t B = query.dim(0), Tq = query.dim(1), D = query.dim(2), S = memory.dim(1);
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  const int64_t p = state.position;
  if (state.cache.size() != 6)
    throw std::runtime_error(config_.type + ": incremental decoding needs the 6 cache buffers of cache_shapes()");
  const TensorView& key_cache = state.cache[0];
  const TensorView& value_cache = state.cache[1];
  const int64_t L = key_cache.dim(1);
  if (state.cache[2].dim(1) != Tq)
    throw std::runtime_error(config_.type + ": decode step of " + std::to_string(Tq) +
                             " positions does not match the cache planned for " +
                             std::to_string(state.cache[2].dim(1)));
  const auto param = optional_data(ctx.params);
  float* Kc = key_cache.data();
  float* Vc = value_cache.data();
  float* Q = state.cache[2].data();
  float* P = state.cache[3].data();
  float* O = state.cache[4].data();
  float* key_mask = state.cache[5].data();
  // Self-attention when the keys depend on the target (the graph's structure: DecodeState).
  const bool self = state.input_is_stepwise(1);
  if (!state.input_is_stepwise(0))
    throw std::runtime_error(config_.type + ": incremental decoding: the query does not depend on the target but the "
                             "keys do; nothing can be decoded position by position here");
  const bool mask_present = ctx.inputs.size() > 2 && ctx.inputs[2].present();

  int64_t keys;
  if (self) {
    if (config_.window > 0 && config_.mode == WindowMode::Centred)
      throw std::runtime_error(config_.type +
                               ": mode \"centred\" cannot decode incrementally (its window reaches later positions)");
    if (!config_.causal && !(config_.window > 0 && config_.mode == WindowMode::Causal))
      throw std::runtime_error(config_.type +
                               ": self-attention over the target with causal: false cannot decode one position at a "
                               "time (its earlier outputs depend on later positions); set causal: true");
    keys = p + Tq;
    if (keys > L)
      throw std::runtime_error(config_.type + ": decode position " + std::to_string(p + Tq - 1) +
                               " is beyond the cache length " + std::to_string(L));
    // One product over all B·S new rows (weights stream through once), staged in the query and
    // head-output scratch buffers (H·d_k ≥ G·d_k and H·d_v ≥ G·d_v columns per row), then copied
    // into the caches at this position.
    project(memory.data(), B * S, D, param(pidx_.w_k), G * dk, param(pidx_.b_k), Q);
    project(memory.data(), B * S, D, param(pidx_.w_v), G * dv, param(pidx_.b_v), O);
    if (config_.qk_norm != QkNorm::None) normalise(Q, B * S, G, ctx.params, true, nullptr, nullptr);
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(Q + b * S * G * dk, S * G * dk, Kc + (b * L + p) * G * dk);
      std::copy_n(O + b * S * G * dv, S * G * dv, Vc + (b * L + p) * G * dv);
    }
    rotate(Kc + p * G * dk, S, B, L * G * dk, G, p, false);
    if (mask_present) {
      // The mask of the new keys joins the cached mask of the earlier ones, so every step sees the
      // whole key padding. Only a mask per key ([B, Tk], [B|1, 1, Tk]) can be kept that way.
      const TensorView& mask = ctx.inputs[2];
      const MaskLayout layout = mask_layout(mask.shape(), B, Tq, S);
      if (!state.input_is_stepwise(2) || layout.query_stride != 0)
        throw std::runtime_error(config_.type + ": incremental self-attention takes a mask per key of the target "
                                 "([B, T] padding); a mask of shape " + to_string(mask.shape()) +
                                 (state.input_is_stepwise(2) ? " varies by query" : " does not depend on the target"));
      for (int64_t b = 0; b < B; ++b) std::copy_n(mask.data() + b * layout.batch_stride, S, key_mask + b * L + p);
    }
  } else {
    keys = S;
    if (S > L)
      throw std::runtime_error(config_.type + ": memory length " + std::to_string(S) + " exceeds the cache length " +
                               std::to_string(L));
    if (p == 0) {
      for (int64_t b = 0; b < B; ++b) {
        const float* x = memory.data() + b * S * D;
        project(x, S, D, param(pidx_.w_k), G * dk, param(pidx_.b_k), Kc + b * L * G * dk);
        project(x, S, D, param(pidx_.w_v), G * dv, param(pidx_.b_v), Vc + b * L * G * dv);
        if (config_.qk_norm != QkNorm::None) normalise(Kc + b * L * G * dk, S, G, ctx.params, true, nullptr, nullptr);
      }
      rotate(Kc, S, B, L * G * dk, G, 0, false);
    }
  }
  project(query.data(), B * Tq, D, param(pidx_.w_q), H * dk, param(pidx_.b_q), Q);
  if (config_.qk_norm != QkNorm::None) normalise(Q, B * Tq, H, ctx.params, false, nullptr, nullptr);
  rotate(Q, Tq, B, Tq * H * dk, H, p, false);

  AttendArgs a{Q, Kc, L * G * dk, Vc, L * G * dv, param(pidx_.v), P, O, nullptr, {}, p,
               self || config_.causal, mask_present, scheme_params(ctx.params)};
  if (mask_present && self) {
    a.mask = key_mask;
    a.mask_layout = MaskLayout{L, 0};
  } else if (mask_present) {
    a.mask = ctx.inputs[2].data();
    a.mask_layout = mask_layout(ctx.inputs[2].shape(), B, Tq, keys);
  }
  attend(a, B, Tq, keys);
  project(O, B * Tq, H * dv, param(pidx_.w_o), D, param(pidx_.b_o), ctx.outputs[0].data());
}

void AttentionNode::backward(const BackwardContext& ctx) const {
  const TensorView& query = ctx.inputs[0];
  const TensorView& memory = ctx.inputs[1];
  const int64_t B = query.dim(0), Tq = query.dim(1), D = query.dim(2), Tk = memory.dim(1);
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  const auto param = optional_data(ctx.params);
  const auto grad = optional_data(ctx.param_grads);
  const float* Q = ctx.saved[0].data();
  const float* K = ctx.saved[1].data();
  const float* V = ctx.saved[2].data();
  const float* P = ctx.saved[3].data();  // the log-sum-exp per query row on the tiled path
  const float* O = ctx.saved[4].data();
  float* dO = ctx.workspace[0].data();
  float* dS = ctx.workspace[1].data();
  float* dQ = ctx.workspace[2].data();
  float* dK = ctx.workspace[3].data();
  float* dV = ctx.workspace[4].data();
  const float* dY = ctx.output_grads[0].data();

  // Output projection.
  gemm(Trans::Yes, Trans::No, H * dv, D, B * Tq, 1.0f, O, H * dv, dY, D, 0.0f, grad(pidx_.w_o), D);
  if (config_.bias) column_sums(dY, B * Tq, D, grad(pidx_.b_o));
  gemm(Trans::No, Trans::Yes, B * Tq, H * dv, D, 1.0f, dY, D, param(pidx_.w_o), D, 0.0f, dO, H * dv);

  if (const int64_t tile = tile_for(Tq, Tk); tile > 0) {
    AttendArgs a{Q, K, Tk * G * dk, V, Tk * G * dv, nullptr, nullptr, const_cast<float*>(O), nullptr, {}, 0,
                 config_.causal, ctx.inputs.size() > 2 && ctx.inputs[2].present(), scheme_params(ctx.params)};
    if (a.use_mask) {
      a.mask = ctx.inputs[2].data();
      a.mask_layout = mask_layout(ctx.inputs[2].shape(), B, Tq, Tk);
    }
    backward_tiled(a, B, Tq, Tk, tile, P, dO, dQ, dK, dV, ctx.workspace[5].data(), dS);
  } else {
    backward_scores(ctx, dO, dS, dQ, dK, dV);
  }
  finish_backward(ctx, dQ, dK, dV);
}

// The materialised path's score, query, key and value gradients (P saved in full).
void AttentionNode::backward_scores(const BackwardContext& ctx, const float* dO, float* dS, float* dQ, float* dK,
                                    float* dV) const {
  const TensorView& query = ctx.inputs[0];
  const TensorView& memory = ctx.inputs[1];
  const int64_t B = query.dim(0), Tq = query.dim(1), Tk = memory.dim(1);
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  const float scale = config_.score_scale;
  const auto param = optional_data(ctx.params);
  const auto grad = optional_data(ctx.param_grads);
  const float* Q = ctx.saved[0].data();
  const float* K = ctx.saved[1].data();
  const float* V = ctx.saved[2].data();
  const float* P = ctx.saved[3].data();
  const bool additive = config_.kind == ScoreKind::Additive;

  // dP = dO_h V_gᵀ for every (batch, head), one batched product (the layout of attend()).
  const int64_t R = group_size_;
  gemm_batched(Trans::No, Trans::Yes,
               {{B, Tq * H * dv, Tk * G * dv, H * Tq * Tk}, {G, R * dv, dv, R * Tq * Tk}, {R, dv, 0, Tq * Tk}}, Tq, Tk,
               dv, 1.0f, dO, H * dv, V, G * dv, 0.0f, dS, Tk);
  // Per (batch, head): score gradients through the softmax (and, for additive scores, the query,
  // key and weight gradients).
  const float* additive_v = param(pidx_.v);
  float* dv_partial = additive ? ctx.workspace[5].data() : nullptr;
  tbb::parallel_for(int64_t{0}, B * H, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H, g = h / R;
    const float* p = P + bh * Tq * Tk;
    float* ds = dS + bh * Tq * Tk;
    const float* dOh = dO + b * Tq * H * dv + h * dv;
    if (relative_) {  // dP_ij += dO_i · a_V[r(i, j)]
      const float* table = scheme_params(ctx.params)[1].data();
      for (int64_t i = 0; i < Tq; ++i) {
        const Eigen::Map<const Eigen::VectorXf> doi(dOh + i * H * dv, dv);
        for (int64_t j = 0; j < Tk; ++j)
          ds[i * Tk + j] += doi.dot(Eigen::Map<const Eigen::VectorXf>(table + scheme_->relative_index(i, j) * dv, dv));
      }
    }
    for (int64_t i = 0; i < Tq; ++i) {
      float* row = ds + i * Tk;
      const float* prow = p + i * Tk;
      float dot = 0.0f;
      for (int64_t j = 0; j < Tk; ++j) dot += row[j] * prow[j];
      for (int64_t j = 0; j < Tk; ++j) row[j] = prow[j] * (row[j] - dot);
    }
    if (!additive) return;
    // Additive scores s_ij = Σ_d w_d tanh(q_id + k_jd): here G == H, so this head owns its dK slice.
    // With T = tanh(K_h + q_i) ([Tk, d_k]) and g = dS row i: U = (g wᵀ) ⊙ (1 − T²);
    // dq_i = Σ_j U_j, dK_h += U, dw += gᵀ T. The tanh block is recomputed, not saved.
    const float* k = K + b * Tk * G * dk + g * dk;
    const float* q = Q + b * Tq * H * dk + h * dk;
    float* dq = dQ + b * Tq * H * dk + h * dk;
    using Strided = Eigen::Map<RowMajorMatrix, 0, Eigen::OuterStride<>>;
    const Eigen::Map<const Eigen::RowVectorXf> w(additive_v + h * dk, dk);
    const Eigen::Map<const RowMajorMatrix, 0, Eigen::OuterStride<>> keys(k, Tk, dk, Eigen::OuterStride<>(G * dk));
    Strided dkeys(dK + b * Tk * G * dk + g * dk, Tk, dk, Eigen::OuterStride<>(G * dk));
    Eigen::Map<Eigen::RowVectorXf> dw(dv_partial + bh * dk, dk);
    dkeys.setZero();
    dw.setZero();
    RowMajorMatrix t(Tk, dk), u(Tk, dk);
    for (int64_t i = 0; i < Tq; ++i) {
      const Eigen::Map<const Eigen::RowVectorXf> qi(q + i * H * dk, dk);
      const Eigen::Map<const Eigen::VectorXf> gs(ds + i * Tk, Tk);
      t = (keys.rowwise() + qi).array().tanh().matrix();
      u = (1.0f - t.array().square()).matrix();  // tanh' at each (key, feature)
      // Σ_j U_j = w ⊙ (gᵀ (1 − T²)): a vector-matrix product instead of a strided column sum.
      Eigen::Map<Eigen::RowVectorXf>(dq + i * H * dk, dk) = (gs.transpose() * u).cwiseProduct(w);
      dkeys.array() += (gs * w).array() * u.array();
      dw.noalias() += gs.transpose() * t;
    }
  });
  if (!additive) {
    // dQ_h = scale · dS_h K_g.
    gemm_batched(Trans::No, Trans::No,
                 {{B, H * Tq * Tk, Tk * G * dk, Tq * H * dk}, {G, R * Tq * Tk, dk, R * dk}, {R, Tq * Tk, 0, dk}}, Tq,
                 dk, Tk, scale, dS, Tk, K, G * dk, 0.0f, dQ, H * dk);
    if (relative_) {  // dq_i += scale · Σ_j dS_ij a_K[r(i, j)]
      const float* table = scheme_params(ctx.params)[0].data();
      tbb::parallel_for(int64_t{0}, B * H, [&](int64_t bh) {
        const int64_t b = bh / H, h = bh % H;
        const float* ds = dS + bh * Tq * Tk;
        float* dq = dQ + b * Tq * H * dk + h * dk;
        for (int64_t i = 0; i < Tq; ++i) {
          Eigen::Map<Eigen::VectorXf> dqi(dq + i * H * dk, dk);
          for (int64_t j = 0; j < Tk; ++j)
            if (const float d = ds[i * Tk + j]; d != 0.0f)
              dqi += (scale * d) * Eigen::Map<const Eigen::VectorXf>(table + scheme_->relative_index(i, j) * dk, dk);
        }
      });
    }
  }

  // The positional scheme's parameters from the gradients of the biased scores.
  if (effects_.score_bias)
    scheme_->score_bias_backward(scheme_params(ctx.params), scheme_params(ctx.param_grads), geometry_, dS, B, Tq, Tk, 0);
  // Relative embedding tables: da_K[r] = scale · Σ dS_ij q_i, da_V[r] = Σ p_ij dO_i (assigned; one
  // serial pass in a fixed order, so the sums do not depend on threads).
  if (relative_) {
    const auto grads = scheme_params(ctx.param_grads);
    float* gk = grads[0].data();
    float* gv = grads[1].data();
    std::fill_n(gk, grads[0].numel(), 0.0f);
    std::fill_n(gv, grads[1].numel(), 0.0f);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Tq; ++i) {
          const Eigen::Map<const Eigen::VectorXf> qi(Q + (b * Tq + i) * H * dk + h * dk, dk);
          const Eigen::Map<const Eigen::VectorXf> doi(dO + (b * Tq + i) * H * dv + h * dv, dv);
          const float* ds = dS + ((b * H + h) * Tq + i) * Tk;
          const float* p = P + ((b * H + h) * Tq + i) * Tk;
          for (int64_t j = 0; j < Tk; ++j) {
            const int64_t r = scheme_->relative_index(i, j);
            if (ds[j] != 0.0f) Eigen::Map<Eigen::VectorXf>(gk + r * dk, dk) += (scale * ds[j]) * qi;
            if (p[j] != 0.0f) Eigen::Map<Eigen::VectorXf>(gv + r * dv, dv) += p[j] * doi;
          }
        }
  }

  // dV_g = Σ_r P_hᵀ dO_h and dK_g = scale · Σ_r dS_hᵀ Q_h over the R query heads h = g·R + r that
  // share key/value head g: one batched product per r, the first assigning, the others adding.
  for (int64_t r = 0; r < R; ++r) {
    const float beta = r == 0 ? 0.0f : 1.0f;
    gemm_batched(Trans::Yes, Trans::No, {{B, H * Tq * Tk, Tq * H * dv, Tk * G * dv}, {G, R * Tq * Tk, R * dv, dv}}, Tk,
                 dv, Tq, 1.0f, P + r * Tq * Tk, Tk, dO + r * dv, H * dv, beta, dV, G * dv);
    if (!additive)
      gemm_batched(Trans::Yes, Trans::No, {{B, H * Tq * Tk, Tq * H * dk, Tk * G * dk}, {G, R * Tq * Tk, R * dk, dk}},
                   Tk, dk, Tq, scale, dS + r * Tq * Tk, Tk, Q + r * dk, H * dk, beta, dK, G * dk);
  }
  if (additive) {
    float* dw = grad(pidx_.v);
    Eigen::Map<Eigen::RowVectorXf> out(dw, H * dk);
    out.setZero();
    for (int64_t b = 0; b < B; ++b) out += Eigen::Map<const Eigen::RowVectorXf>(dv_partial + b * H * dk, H * dk);
  }
}

// Rotary's inverse rotation and the input projections' gradients, shared by both kernels.
void AttentionNode::finish_backward(const BackwardContext& ctx, float* dQ, float* dK, float* dV) const {
  const TensorView& query = ctx.inputs[0];
  const TensorView& memory = ctx.inputs[1];
  const int64_t B = query.dim(0), Tq = query.dim(1), D = query.dim(2), Tk = memory.dim(1);
  const int64_t H = config_.heads, G = config_.kv_heads, dk = config_.d_k, dv = config_.d_v;
  const auto param = optional_data(ctx.params);
  const auto grad = optional_data(ctx.param_grads);

  rotate(dQ, Tq, B, Tq * H * dk, H, 0, true);
  rotate(dK, Tk, B, Tk * G * dk, G, 0, true);
  if (config_.qk_norm != QkNorm::None) {
    normalise_backward(dQ, B * Tq, H, ctx.saved[5].data(), ctx.saved[6].data(), ctx.params, ctx.param_grads, false);
    normalise_backward(dK, B * Tk, G, ctx.saved[7].data(), ctx.saved[8].data(), ctx.params, ctx.param_grads, true);
  }

  // Input projections.
  gemm(Trans::Yes, Trans::No, D, H * dk, B * Tq, 1.0f, query.data(), D, dQ, H * dk, 0.0f, grad(pidx_.w_q), H * dk);
  // shared_qk: w_k is w_q, whose gradient from the queries is already there: add to it.
  const float beta_k = config_.shared_qk ? 1.0f : 0.0f;
  gemm(Trans::Yes, Trans::No, D, G * dk, B * Tk, 1.0f, memory.data(), D, dK, G * dk, beta_k, grad(pidx_.w_k), G * dk);
  gemm(Trans::Yes, Trans::No, D, G * dv, B * Tk, 1.0f, memory.data(), D, dV, G * dv, 0.0f, grad(pidx_.w_v), G * dv);
  if (config_.bias) {
    column_sums(dQ, B * Tq, H * dk, grad(pidx_.b_q));
    column_sums(dK, B * Tk, G * dk, grad(pidx_.b_k), config_.shared_qk);
    column_sums(dV, B * Tk, G * dv, grad(pidx_.b_v));
  }
  if (ctx.input_grads.size() > 0 && ctx.input_grads[0].present())
    gemm(Trans::No, Trans::Yes, B * Tq, D, H * dk, 1.0f, dQ, H * dk, param(pidx_.w_q), H * dk, 1.0f,
         ctx.input_grads[0].data(), D);
  if (ctx.input_grads.size() > 1 && ctx.input_grads[1].present()) {
    float* dm = ctx.input_grads[1].data();
    gemm(Trans::No, Trans::Yes, B * Tk, D, G * dk, 1.0f, dK, G * dk, param(pidx_.w_k), G * dk, 1.0f, dm, D);
    gemm(Trans::No, Trans::Yes, B * Tk, D, G * dv, 1.0f, dV, G * dv, param(pidx_.w_v), G * dv, 1.0f, dm, D);
  }
}

// ---- qk-norm -------------------------------------------------------------------------------------

void AttentionNode::normalise(float* x, int64_t rows, int64_t groups, std::span<const TensorView> params, bool keys,
                              float* xhat, float* rstd) const {
  const int64_t dk = config_.d_k;
  const bool centre = config_.qk_norm == QkNorm::Layer;
  const float* gain = params[keys ? pidx_.k_gain : pidx_.q_gain].data();
  const float* beta = centre ? params[keys ? pidx_.k_beta : pidx_.q_beta].data() : nullptr;
  tbb::parallel_for(int64_t{0}, rows * groups, [&](int64_t v) {
    Eigen::Map<Eigen::ArrayXf> row(x + v * dk, dk);
    const float mean = centre ? row.mean() : 0.0f;
    const float r = 1.0f / std::sqrt((row - mean).square().mean() + kQkNormEps);
    row = (row - mean) * r;
    if (xhat) std::copy_n(row.data(), dk, xhat + v * dk);
    if (rstd) rstd[v] = r;
    row *= Eigen::Map<const Eigen::ArrayXf>(gain, dk);
    if (beta) row += Eigen::Map<const Eigen::ArrayXf>(beta, dk);
  });
}

void AttentionNode::normalise_backward(float* dx, int64_t rows, int64_t groups, const float* xhat, const float* rstd,
                                       std::span<const TensorView> params, std::span<const TensorView> grads,
                                       bool keys) const {
  const int64_t dk = config_.d_k, n = rows * groups;
  const bool centre = config_.qk_norm == QkNorm::Layer;
  const Eigen::Map<const Eigen::ArrayXf> gain(params[keys ? pidx_.k_gain : pidx_.q_gain].data(), dk);
  // Parameter gradients first (they need dy), serially in a fixed order: deterministic sums.
  Eigen::Map<Eigen::ArrayXf> dgain(grads[keys ? pidx_.k_gain : pidx_.q_gain].data(), dk);
  dgain.setZero();
  float* dbeta_data = centre ? grads[keys ? pidx_.k_beta : pidx_.q_beta].data() : nullptr;
  if (dbeta_data) std::fill_n(dbeta_data, dk, 0.0f);
  for (int64_t v = 0; v < n; ++v) {
    const Eigen::Map<const Eigen::ArrayXf> dy(dx + v * dk, dk);
    dgain += dy * Eigen::Map<const Eigen::ArrayXf>(xhat + v * dk, dk);
    if (dbeta_data) Eigen::Map<Eigen::ArrayXf>(dbeta_data, dk) += dy;
  }
  // dx = rstd · (g − mean(g) − x̂·mean(g ⊙ x̂)) with g = dy ⊙ gain (no mean(g) term for RMS).
  tbb::parallel_for(int64_t{0}, n, [&](int64_t v) {
    Eigen::Map<Eigen::ArrayXf> d(dx + v * dk, dk);
    const Eigen::Map<const Eigen::ArrayXf> xh(xhat + v * dk, dk);
    const float mean_g = centre ? (d * gain).mean() : 0.0f;
    const float mean_gx = (d * gain * xh).mean();
    d = rstd[v] * (d * gain - mean_g - xh * mean_gx);  // coefficient-wise: no temporary
  });
}

}  // namespace attnlab::attention
