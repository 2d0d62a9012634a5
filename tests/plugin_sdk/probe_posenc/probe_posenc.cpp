// posenc.probe — a learned score bias by clipped relative distance, one value per head and
// distance: bias(h, i, j) = w[h, clamp(j − i, −K, K) + K] with K = attribute `clip`. On embeddings it
// is the identity; inside attention it offers a score bias through attnlab/node/positional.h.
// Backward ASSIGNS dw[h, d] = Σ over (batch, i, j) at clipped distance d of dL/dscore[b, h, i, j].
#include <attnlab/node/plugin_api.h>
#include <attnlab/node/positional.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace {

using namespace attnlab;

class ClippedDistanceBias final : public PositionalScheme {
 public:
  explicit ClippedDistanceBias(int64_t clip) : clip_(clip) {}
  Effects effects() const override { return {true, false}; }
  std::vector<ParamSpec> params(const AttentionGeometry& g) const override {
    return {ParamSpec("bias", {g.heads, 2 * clip_ + 1}, Init::Normal, 0.5f)};
  }
  void add_score_bias(std::span<const TensorView> params, const AttentionGeometry& g, int64_t head, int64_t query_pos,
                      int64_t first_key, int64_t count, float* row) const override {
    const float* w = params[0].data() + head * (2 * clip_ + 1);
    for (int64_t j = 0; j < count; ++j) row[j] += w[bucket(query_pos, first_key + j)];
    (void)g;
  }
  void score_bias_backward(std::span<const TensorView>, std::span<const TensorView> grads, const AttentionGeometry& g,
                           const float* score_grads, int64_t batch, int64_t queries, int64_t keys,
                           int64_t query_offset) const override {
    float* dw = grads[0].data();
    std::fill_n(dw, grads[0].numel(), 0.0f);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < g.heads; ++h)
        for (int64_t i = 0; i < queries; ++i) {
          const float* row = score_grads + ((b * g.heads + h) * queries + i) * keys;
          for (int64_t j = 0; j < keys; ++j) dw[h * (2 * clip_ + 1) + bucket(query_offset + i, j)] += row[j];
        }
  }

 private:
  int64_t bucket(int64_t query_pos, int64_t key_pos) const {
    return std::clamp(key_pos - query_pos, -clip_, clip_) + clip_;
  }
  int64_t clip_;
};

class ProbePosenc final : public Node {
 public:
  explicit ProbePosenc(const Attrs& attrs) : scheme_(attrs.get_int("clip")) {
    if (attrs.get_int("clip") < 0) throw std::invalid_argument("clip must be at least 0");
  }
  NodeShapes infer(std::span<const Shape> in) const override {
    if (in.size() != 1 || in[0].size() != 3) throw ShapeError("expects x [batch, length, width]");
    return {{in[0]}, {}, {}, {}};
  }
  void forward(const ForwardContext& ctx) const override { ctx.outputs[0].copy_from(ctx.inputs[0]); }
  void backward(const BackwardContext& ctx) const override {
    if (!ctx.input_grads.empty() && ctx.input_grads[0].present()) ctx.input_grads[0].flat() += ctx.output_grads[0].flat();
  }
  const PositionalScheme* positional_scheme() const override { return &scheme_; }

 private:
  ClippedDistanceBias scheme_;
};

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  NodeSchema schema;
  schema.name = "posenc.probe";
  schema.doc = "learned per-head score bias by clipped relative distance (identity on embeddings)";
  schema.inputs = {{"x", "embeddings [B, S, D]"}};
  schema.outputs = {{"y", "the embeddings unchanged [B, S, D]"}};
  schema.attrs = {{"clip", AttrType::Int, AttrValue(int64_t{2}), "distances beyond +-clip share one bias"}};
  GradCheckExample identity;
  identity.name = "identity";
  identity.inputs = {CheckInput::real({2, 3, 4})};
  schema.examples = {identity};
  registrar.add<ProbePosenc>(std::move(schema));
}
