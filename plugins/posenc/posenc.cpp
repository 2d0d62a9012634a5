// plugins/posenc/posenc.cpp — positional encodings (libattnlab_plugin_posenc.so).
//
// Contract: every type is a node mapping x[B,S,D] → y[B,S,D] on embeddings, and offers attention a
// positional scheme (node/positional.h) that says what it does inside attention:
//   posenc.sinusoidal  y = x + PE, PE(p, 2i) = sin(p / 10000^(2i/D)), PE(p, 2i+1) = cos(same angle)
//                      (Vaswani et al. 2017, section 3.5); no parameters; nothing inside attention.
//   posenc.learned     y = x + table[p], param table[max_len, D] (Gehring et al. 2017); an input
//                      reaching past max_len is an error naming max_len; nothing inside attention.
//   posenc.none        y = x; nothing inside attention.
//   posenc.rotary      y = x; inside attention rotates each query and key vector by its position
//                      (Su et al. 2021): pairs (2t, 2t+1) by angle pos·10000^(-2t/d_k). Needs an
//                      even d_k and dot-product scores.
//   posenc.alibi       y = x; inside attention adds -slopeₕ·|i−j| to the scores (Press et al. 2022).
//   posenc.t5          y = x; inside attention adds bias[bucket(j − i), h], learned (Raffel et al.
//                      2020): num_buckets (32) log-spaced buckets up to max_distance (128), half per
//                      direction when bidirectional. Attention declares bias[num_buckets, heads];
//                      its `posenc_scope` shares one table between layers as T5 does.
//   posenc.shaw        y = x; inside attention, learned embeddings a_K, a_V of the distance
//                      clip(j − i, ±clip) (Shaw et al. 2018): scores += q_i·a_K/√d_k, outputs +=
//                      Σ_j p_ij a_V; tables keys[2·clip+1, d_k], values[2·clip+1, d_v].
// During incremental decoding the position of row s is DecodeState::position + s. Backward ADDS
// dy into dx and ASSIGNS the table gradient (rows beyond the input length get zero).
#include "node/onnx_lowering.h"
#include "node/plugin_api.h"
#include "node/positional.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace {

using namespace attnlab;

void check_input(std::span<const Shape> in) {
  if (in.size() != 1) throw ShapeError("expects one input x [batch, length, width]");
  if (in[0].size() != 3) throw ShapeError("x must be [batch, length, width], got " + to_string(in[0]));
}

// Exported ONNX graphs take sequences of up to this many positions (the sinusoidal table's rows,
// the key − query offsets T5's bucket table covers).
constexpr int64_t kOnnxPositions = 1024;

int64_t first_position(const StepInfo& step) { return step.decode ? step.decode->position : 0; }

// The first rows of `table` [rows, D], as many as x [B, S, D] has positions, added to x.
void lower_add_rows(const OnnxLowering& l, const std::string& table) {
  OnnxBuilder& g = l.graph;
  const std::string rows = g.op("Slice", {table, g.ints({0}), g.dims(l.inputs[0], 1, 2), g.ints({0})});
  g.add_node("Add", {l.inputs[0], rows}, {l.outputs[0]});
}

void add_input_grad(const BackwardContext& ctx) {
  if (ctx.input_grads.empty() || !ctx.input_grads[0].present()) return;
  ctx.input_grads[0].flat() += ctx.output_grads[0].flat();
}

// Absolute schemes act on embeddings only: inside attention they do nothing.
class Absolute : public PositionalScheme {
 public:
  Effects effects() const override { return {}; }
};

// Rotary position embedding (Su et al. 2021, eq. 34): interleaved pairs rotated by pos·θ_t.
class Rotary : public PositionalScheme {
 public:
  Effects effects() const override { return {false, true}; }
  void check(const AttentionGeometry& g) const override {
    if (!g.dot_product)
      throw std::invalid_argument(
          "posenc.rotary is not supported: rotary encoding works through dot products of rotated queries and "
          "keys, which additive scores do not form (use posenc.alibi or an absolute scheme)");
    if (g.d_k % 2 != 0)
      throw std::invalid_argument("posenc.rotary needs an even d_k (it rotates pairs of features), got d_k = " +
                                  std::to_string(g.d_k));
  }
  void rotate(float* x, int64_t vectors, int64_t d_k, int64_t position, bool inverse) const override {
    const float pos = static_cast<float>(position);
    for (int64_t t = 0; t < d_k / 2; ++t) {
      const float angle = pos * inv_freq(t, d_k);
      const float c = std::cos(angle), s = inverse ? -std::sin(angle) : std::sin(angle);
      for (int64_t g = 0; g < vectors; ++g) {
        float* p = x + g * d_k + 2 * t;
        const float x0 = p[0], x1 = p[1];
        p[0] = x0 * c - x1 * s;
        p[1] = x0 * s + x1 * c;
      }
    }
  }
  // The same rotation on x [B, n, T, d_k]: pairs split off the last axis, rotated, put back.
  std::string lower_rotation(OnnxBuilder& g, const std::string& x, int64_t d_k, const std::string& positions) const override {
    std::vector<float> frequencies(static_cast<size_t>(d_k / 2));
    for (int64_t t = 0; t < d_k / 2; ++t) frequencies[t] = inv_freq(t, d_k);
    const std::string angle = g.op("Mul", {g.op("Unsqueeze", {g.cast(positions, OnnxType::Float), g.ints({1})}),
                                           g.add_float_constant("inv_freq", {d_k / 2}, frequencies)});  // [T, d_k/2]
    const std::string c = g.op("Cos", {angle}), s = g.op("Sin", {angle});
    const std::string pairs = g.op("Reshape", {x, g.ints({0, 0, 0, d_k / 2, 2})});
    auto half = [&](int64_t i) { return g.op("Squeeze", {g.op("Slice", {pairs, g.ints({i}), g.ints({i + 1}), g.ints({4})}), g.ints({4})}); };
    const std::string x0 = half(0), x1 = half(1);
    const std::string y0 = g.op("Sub", {g.op("Mul", {x0, c}), g.op("Mul", {x1, s})});
    const std::string y1 = g.op("Add", {g.op("Mul", {x0, s}), g.op("Mul", {x1, c})});
    const std::string joined = g.op("Concat", {g.op("Unsqueeze", {y0, g.ints({4})}), g.op("Unsqueeze", {y1, g.ints({4})})}, {{"axis", int64_t{4}}});
    return g.op("Reshape", {joined, g.ints({0, 0, 0, d_k})});
  }

 private:
  static float inv_freq(int64_t t, int64_t d_k) { return std::pow(kBase, -2.0f * static_cast<float>(t) / static_cast<float>(d_k)); }
  static constexpr float kBase = 10000.0f;
};

// The ALiBi slope of `head` among `heads` (Press et al. 2022): for the nearest power of two n ≤
// heads, the geometric sequence 2^(-8/n), 2^(-16/n), ...; when heads is not a power of two, the
// remaining heads take every other slope of the sequence for 2n.
float alibi_slope(int64_t head, int64_t heads) {
  int64_t n = 1;
  while (n * 2 <= heads) n *= 2;
  if (head < n) return static_cast<float>(std::pow(2.0, -8.0 * static_cast<double>(head + 1) / static_cast<double>(n)));
  const int64_t k = 2 * (head - n);  // index into the sequence for 2n
  return static_cast<float>(std::pow(2.0, -8.0 * static_cast<double>(k + 1) / static_cast<double>(2 * n)));
}

class Alibi : public PositionalScheme {
 public:
  Effects effects() const override { return {true, false}; }
  void add_score_bias(std::span<const TensorView>, const AttentionGeometry& g, int64_t head, int64_t query_pos,
                      int64_t first_key, int64_t count, float* row) const override {
    const float slope = alibi_slope(head, g.heads);
    for (int64_t j = 0; j < count; ++j) row[j] -= slope * static_cast<float>(std::abs(query_pos - (first_key + j)));
  }
  // -slope_h · |key − query| as [1, H, Tq, Tk].
  std::string lower_score_bias(OnnxBuilder& g, const AttentionGeometry& geometry, const std::string& offsets,
                               std::span<const std::string>) const override {
    std::vector<float> slopes(static_cast<size_t>(geometry.heads));
    for (int64_t h = 0; h < geometry.heads; ++h) slopes[h] = -alibi_slope(h, geometry.heads);
    const std::string distance = g.op("Abs", {g.cast(offsets, OnnxType::Float)});
    return g.op("Mul", {g.add_float_constant("alibi_slopes", {1, geometry.heads, 1, 1}, slopes), distance});
  }
};

// T5's relative position bias (Raffel et al. 2020, section 2.1): one learned scalar per head and
// bucket of the relative position key − query. Bidirectional: half the buckets for keys before
// the query, half for keys after; within each half, distances below half the buckets get a bucket
// each, longer ones share logarithmically sized buckets up to max_distance, beyond which one bucket
// serves all. Parameter bias[num_buckets, heads].
class T5Bias : public PositionalScheme {
 public:
  T5Bias(int64_t buckets, int64_t max_distance, bool bidirectional)
      : buckets_(buckets), max_distance_(max_distance), bidirectional_(bidirectional) {}
  Effects effects() const override { return {true, false}; }
  std::vector<ParamSpec> params(const AttentionGeometry& g) const override {
    return {ParamSpec("bias", {buckets_, g.heads}, Init::Zeros)};
  }
  int64_t bucket(int64_t query_pos, int64_t key_pos) const {
    int64_t n = query_pos - key_pos;  // positive: the key is before the query
    int64_t half = buckets_, base = 0;
    if (bidirectional_) {
      half = buckets_ / 2;
      if (n < 0) base = half;
      n = std::abs(n);
    } else {
      n = std::max<int64_t>(n, 0);
    }
    const int64_t exact = half / 2;
    if (n < exact) return base + n;
    const double ratio = std::log(static_cast<double>(n) / static_cast<double>(exact)) /
                         std::log(static_cast<double>(max_distance_) / static_cast<double>(exact));
    const int64_t large = exact + static_cast<int64_t>(ratio * static_cast<double>(half - exact));
    return base + std::min(large, half - 1);
  }
  void add_score_bias(std::span<const TensorView> params, const AttentionGeometry& g, int64_t head, int64_t query_pos,
                      int64_t first_key, int64_t count, float* row) const override {
    const float* table = params[0].data();
    for (int64_t j = 0; j < count; ++j) row[j] += table[bucket(query_pos, first_key + j) * g.heads + head];
  }
  // bias[bucket(offset), h] as [1, H, Tq, Tk]: the buckets of every key − query offset within
  // ±(kOnnxPositions − 1) are a constant, computed by bucket() itself.
  std::string lower_score_bias(OnnxBuilder& g, const AttentionGeometry&, const std::string& offsets,
                               std::span<const std::string> params) const override {
    std::vector<int64_t> buckets(static_cast<size_t>(2 * kOnnxPositions - 1));
    for (int64_t k = 0; k < 2 * kOnnxPositions - 1; ++k) buckets[k] = bucket(0, k - (kOnnxPositions - 1));
    const std::string table = g.add_int64_constant("t5_buckets", {2 * kOnnxPositions - 1}, buckets);
    const std::string index = g.op("Gather", {table, g.op("Add", {offsets, g.ints0(kOnnxPositions - 1)})});  // [Tq, Tk]
    const std::string by_head = g.op("Transpose", {g.op("Gather", {params[0], index})}, {{"perm", std::vector<int64_t>{2, 0, 1}}});
    return g.op("Unsqueeze", {by_head, g.ints({0})});
  }
  void score_bias_backward(std::span<const TensorView>, std::span<const TensorView> grads, const AttentionGeometry& g,
                           const float* score_grads, int64_t batch, int64_t queries, int64_t keys,
                           int64_t query_offset) const override {
    // Serial, in a fixed order: the same sums whatever the thread count.
    float* dtable = grads[0].data();
    std::fill_n(dtable, grads[0].numel(), 0.0f);
    const int64_t H = g.heads;
    for (int64_t i = 0; i < queries; ++i)
      for (int64_t j = 0; j < keys; ++j) {
        float* d = dtable + bucket(query_offset + i, j) * H;
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t h = 0; h < H; ++h) d[h] += score_grads[((b * H + h) * queries + i) * keys + j];
      }
  }

 private:
  int64_t buckets_, max_distance_;
  bool bidirectional_;
};

// Shaw, Uszkoreit and Vaswani (2018), equations (3)-(5): learned key and value embeddings of the
// relative position j − i clipped to [−k, k], shared by the heads; attention uses them through the
// relative-embedding part of the contract (tables keys[2k+1, d_k], values[2k+1, d_v]).
class ShawRelative : public PositionalScheme {
 public:
  explicit ShawRelative(int64_t clip) : clip_(clip) {}
  Effects effects() const override { return {false, false, true}; }
  void check(const AttentionGeometry& g) const override {
    if (!g.dot_product)
      throw std::invalid_argument("posenc.shaw adds relative key embeddings to dot products of queries and keys, which "
                                  "additive scores do not form");
  }
  std::vector<ParamSpec> params(const AttentionGeometry& g) const override {
    return {ParamSpec("keys", {2 * clip_ + 1, g.d_k}, Init::Normal, 1.0f / std::sqrt(static_cast<float>(g.d_k))),
            ParamSpec("values", {2 * clip_ + 1, g.d_v}, Init::Normal, 1.0f / std::sqrt(static_cast<float>(g.d_v)))};
  }
  int64_t relative_index(int64_t query_pos, int64_t key_pos) const override {
    return std::clamp(key_pos - query_pos, -clip_, clip_) + clip_;
  }
  std::string lower_relative_index(OnnxBuilder& g, const std::string& offsets) const override {
    return g.op("Add", {g.op("Clip", {offsets, g.ints0(-clip_), g.ints0(clip_)}), g.ints0(clip_)});
  }

 private:
  int64_t clip_;
};

// A scheme from the node's attributes: default-constructed unless specialised below.
template <class Scheme>
Scheme make_scheme(const Attrs&) {
  return Scheme{};
}

template <>
ShawRelative make_scheme<ShawRelative>(const Attrs& attrs) {
  const int64_t clip = attrs.get_int("clip");
  if (clip < 1) throw std::invalid_argument("clip must be at least 1, got " + std::to_string(clip));
  return ShawRelative(clip);
}

template <>
T5Bias make_scheme<T5Bias>(const Attrs& attrs) {
  const int64_t buckets = attrs.get_int("num_buckets"), max_distance = attrs.get_int("max_distance");
  const bool bidirectional = attrs.get_bool("bidirectional");
  const int64_t per_side = bidirectional ? buckets / 2 : buckets;
  if (per_side < 2)
    throw std::invalid_argument("num_buckets must give at least 2 buckets per direction, got num_buckets = " +
                                std::to_string(buckets));
  if (max_distance <= per_side / 2)
    throw std::invalid_argument("max_distance (" + std::to_string(max_distance) +
                                ") must exceed the exact range, half the buckets per direction (" +
                                std::to_string(per_side / 2) + ")");
  return T5Bias(buckets, max_distance, bidirectional);
}

// posenc.none / rotary / alibi / t5 / shaw on embeddings: the identity; the scheme is what
// attention sees.
template <class Scheme>
class IdentityPosenc : public Node {
 public:
  explicit IdentityPosenc(const Attrs& attrs) : scheme_(make_scheme<Scheme>(attrs)) {}
  NodeShapes infer(std::span<const Shape> in) const override {
    check_input(in);
    return {{in[0]}, {}, {}, {}};
  }
  void forward(const ForwardContext& ctx) const override { ctx.outputs[0].copy_from(ctx.inputs[0]); }
  void backward(const BackwardContext& ctx) const override { add_input_grad(ctx); }
  const PositionalScheme* positional_scheme() const override { return &scheme_; }
  // The identity on embeddings; what the scheme does inside attention is attention's lowering.
  bool lower_onnx(const OnnxLowering& l) const override {
    l.graph.add_node("Identity", {l.inputs[0]}, {l.outputs[0]});
    return true;
  }

 private:
  Scheme scheme_;
};

class SinusoidalPosenc : public Node {
 public:
  // PE(position, d) for width D. Angles in double: positions reach thousands.
  static float sinusoid(int64_t position, int64_t d, int64_t D) {
    const double angle =
        static_cast<double>(position) * std::pow(10000.0, -2.0 * static_cast<double>(d / 2) / static_cast<double>(D));
    return static_cast<float>(d % 2 == 0 ? std::sin(angle) : std::cos(angle));
  }
  explicit SinusoidalPosenc(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override {
    check_input(in);
    NodeShapes s;
    s.outputs = {in[0]};
    s.workspace = {{in[0][1], in[0][2]}};  // the encoding's rows for these positions
    return s;
  }
  void forward(const ForwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t B = x.dim(0), S = x.dim(1), D = x.dim(2);
    const int64_t offset = first_position(ctx.step);
    const float* in = x.data();
    float* out = ctx.outputs[0].data();
    float* table = ctx.workspace[0].data();
    // Rows are computed in the executor-owned workspace, never in memory allocated here: a
    // steady-state step allocates nothing.
    tbb::parallel_for(int64_t{0}, S, [&](int64_t s) {
      float* pe = table + s * D;
      for (int64_t d = 0; d < D; ++d) pe[d] = sinusoid(offset + s, d, D);
      const Eigen::Map<const Eigen::ArrayXf> row(pe, D);
      for (int64_t b = 0; b < B; ++b)
        Eigen::Map<Eigen::ArrayXf>(out + (b * S + s) * D, D) = Eigen::Map<const Eigen::ArrayXf>(in + (b * S + s) * D, D) + row;
    });
  }
  void backward(const BackwardContext& ctx) const override { add_input_grad(ctx); }
  const PositionalScheme* positional_scheme() const override { return &scheme_; }
  // The encoding of the first kOnnxPositions positions as a constant (computed here, in double as in
  // forward), sliced to the input's length at run time.
  bool lower_onnx(const OnnxLowering& l) const override {
    const int64_t D = l.input_shapes[0][2];
    std::vector<float> table(static_cast<size_t>(kOnnxPositions * D));
    for (int64_t p = 0; p < kOnnxPositions; ++p)
      for (int64_t d = 0; d < D; ++d) table[p * D + d] = sinusoid(p, d, D);
    lower_add_rows(l, l.graph.add_float_constant("sinusoids", {kOnnxPositions, D}, table));
    return true;
  }

 private:
  Absolute scheme_;
};

class LearnedPosenc : public Node {
 public:
  explicit LearnedPosenc(const Attrs& attrs) : max_len_(attrs.get_int("max_len")) {
    if (max_len_ < 1) throw std::invalid_argument("max_len must be at least 1, got " + std::to_string(max_len_));
  }
  NodeShapes infer(std::span<const Shape> in) const override {
    check_input(in);
    if (in[0][1] > max_len_)
      throw ShapeError("input length " + std::to_string(in[0][1]) + " exceeds max_len " + std::to_string(max_len_));
    NodeShapes s;
    s.outputs = {in[0]};
    s.params = {{"table", {max_len_, in[0][2]}, Init::Normal, 1.0f / std::sqrt(static_cast<float>(in[0][2]))}};
    return s;
  }
  void forward(const ForwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t B = x.dim(0), S = x.dim(1), D = x.dim(2);
    const int64_t offset = first_position(ctx.step);
    if (offset + S > max_len_)
      throw ShapeError("position " + std::to_string(offset + S - 1) + " is beyond max_len " + std::to_string(max_len_));
    const float* table = ctx.params[0].data() + offset * D;
    Eigen::Map<const RowMajorMatrix> P(table, S, D);
    for (int64_t b = 0; b < B; ++b) {
      Eigen::Map<const RowMajorMatrix> X(x.data() + b * S * D, S, D);
      Eigen::Map<RowMajorMatrix>(ctx.outputs[0].data() + b * S * D, S, D) = X + P;
    }
  }
  void backward(const BackwardContext& ctx) const override {
    add_input_grad(ctx);
    const TensorView& dy = ctx.output_grads[0];
    const int64_t B = dy.dim(0), S = dy.dim(1), D = dy.dim(2);
    const TensorView& dtable = ctx.param_grads[0];
    dtable.set_zero();
    Eigen::Map<RowMajorMatrix> G(dtable.data(), S, D);
    for (int64_t b = 0; b < B; ++b) G += Eigen::Map<const RowMajorMatrix>(dy.data() + b * S * D, S, D);
  }
  const PositionalScheme* positional_scheme() const override { return &scheme_; }
  bool lower_onnx(const OnnxLowering& l) const override {
    lower_add_rows(l, l.params[0]);
    return true;
  }

 private:
  int64_t max_len_;
  Absolute scheme_;
};

NodeSchema schema(std::string name, std::string doc, std::vector<AttrSchema> attrs, std::vector<GradCheckExample> ex) {
  NodeSchema s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.inputs = {{"x", "embeddings [B, S, D]"}};
  s.outputs = {{"y", "embeddings with positions encoded [B, S, D]"}};
  s.attrs = std::move(attrs);
  s.examples = std::move(ex);
  return s;
}

GradCheckExample example(std::string name, Attrs attrs, Shape shape) {
  GradCheckExample e;
  e.name = std::move(name);
  e.attrs = std::move(attrs);
  e.inputs = {CheckInput::real(std::move(shape))};
  return e;
}

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  registrar.add<SinusoidalPosenc>(schema("posenc.sinusoidal", "adds the fixed sine/cosine encoding (Vaswani et al. 2017)", {},
                                         {example("even_width", {}, {2, 5, 6}), example("odd_width", {}, {1, 3, 5})}));
  registrar.add<LearnedPosenc>(schema(
      "posenc.learned", "adds a learned embedding per position",
      {{"max_len", AttrType::Int, AttrValue{int64_t{1024}}, "longest input accepted (rows of the table)"}},
      {example("shorter_than_table", {{"max_len", AttrValue{int64_t{7}}}}, {2, 4, 3}),
       example("full_table", {{"max_len", AttrValue{int64_t{3}}}}, {2, 3, 4})}));
  registrar.add<IdentityPosenc<T5Bias>>(schema(
      "posenc.t5",
      "T5 relative position bias (Raffel et al. 2020): a learned score bias per head and log-bucketed relative "
      "position; identity on embeddings",
      {{"num_buckets", AttrType::Int, AttrValue{int64_t{32}}, "buckets of relative position (both directions together)"},
       {"max_distance", AttrType::Int, AttrValue{int64_t{128}}, "distances from here on share the last bucket"},
       {"bidirectional", AttrType::Bool, AttrValue{true}, "separate buckets for keys after the query"}},
      {example("identity", {}, {2, 3, 4})}));
  registrar.add<IdentityPosenc<ShawRelative>>(schema(
      "posenc.shaw",
      "relative position representations (Shaw et al. 2018): learned key and value embeddings of the clipped "
      "distance j - i inside attention; identity on embeddings",
      {{"clip", AttrType::Int, AttrValue{int64_t{16}}, "distances beyond +-clip share one embedding (k)"}},
      {example("identity", {}, {2, 3, 4})}));
  registrar.add<IdentityPosenc<Absolute>>(schema("posenc.none", "no positional information (identity)", {},
                                                 {example("identity", {}, {2, 3, 4})}));
  registrar.add<IdentityPosenc<Rotary>>(schema("posenc.rotary",
                                               "rotary encoding (Su et al. 2021): identity on embeddings; inside "
                                               "attention rotates queries and keys by their positions",
                                               {}, {example("identity", {}, {2, 3, 4})}));
  registrar.add<IdentityPosenc<Alibi>>(schema("posenc.alibi",
                                              "ALiBi (Press et al. 2022): identity on embeddings; inside attention "
                                              "adds -slope_h * |i - j| to the scores",
                                              {}, {example("identity", {}, {2, 3, 4})}));
}
