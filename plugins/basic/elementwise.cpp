// plugins/basic/elementwise.cpp — `add` (with trailing broadcast) and `dropout` (inverted,
// counter-based masks).
#include "basic_ops.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <type_traits>

#include <algorithm>

namespace attnlab::basic {

namespace {

constexpr int64_t kElementGrain = 1 << 14;

// ---- add ----------------------------------------------------------------------------------------

class Add final : public Node {
 public:
  explicit Add(const Attrs&) {}

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs.size() != 2) throw ShapeError("add: expects two inputs (a, b), got " + std::to_string(inputs.size()));
    const Shape& a = inputs[0];
    const Shape& b = inputs[1];
    const bool trailing = b.size() <= a.size() && std::equal(b.begin(), b.end(), a.end() - b.size());
    if (!trailing)
      throw ShapeError("add: b must have a's shape or a trailing part of it (broadcast over the leading dimensions); "
                       "a is " + to_string(a) + ", b is " + to_string(b));
    return {{a}, {}, {}, {}};
  }

  void forward(const ForwardContext& ctx) const override {
    const float* a = ctx.inputs[0].data();
    const float* b = ctx.inputs[1].data();
    float* y = ctx.outputs[0].data();
    const int64_t n = ctx.inputs[0].numel(), inner = ctx.inputs[1].numel();
    if (n == 0) return;
    if (inner == n) {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, kElementGrain), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i) y[i] = a[i] + b[i];
      });
      return;
    }
    const int64_t reps = n / inner;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, reps, row_grain(inner)), [&](const tbb::blocked_range<int64_t>& r) {
      for (int64_t i = r.begin(); i < r.end(); ++i)
        for (int64_t j = 0; j < inner; ++j) y[i * inner + j] = a[i * inner + j] + b[j];
    });
  }

  // ONNX's Add broadcasts numpy-style, which covers the trailing broadcast.
  bool lower_onnx(const OnnxLowering& l) const override {
    l.graph.add_node("Add", {l.inputs[0], l.inputs[1]}, {l.outputs[0]});
    return true;
  }

  void backward(const BackwardContext& ctx) const override {
    const float* dy = ctx.output_grads[0].data();
    const int64_t n = ctx.inputs[0].numel(), inner = ctx.inputs[1].numel();
    if (n == 0) return;
    if (const TensorView& da = ctx.input_grads[0]; da.present()) {
      float* g = da.data();
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, kElementGrain), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i) g[i] += dy[i];
      });
    }
    if (const TensorView& db = ctx.input_grads[1]; db.present()) {
      float* g = db.data();
      const int64_t reps = n / inner, block = 256;
      // Tasks own disjoint column blocks of b and sum the repetitions in order: deterministic.
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, (inner + block - 1) / block), [&](const tbb::blocked_range<int64_t>& r) {
        const int64_t c0 = r.begin() * block, c1 = std::min(inner, r.end() * block);
        for (int64_t i = 0; i < reps; ++i)
          for (int64_t j = c0; j < c1; ++j) g[j] += dy[i * inner + j];
      });
    }
  }
};

// ---- dropout ------------------------------------------------------------------------------------

class Dropout final : public Node {
 public:
  explicit Dropout(const Attrs& attrs) : p_(static_cast<float>(attrs.get_float("p"))) {
    if (!(p_ >= 0.0f && p_ < 1.0f))
      throw ShapeError("dropout: p must be in [0, 1), got " + std::to_string(attrs.get_float("p")));
  }

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs.size() != 1) throw ShapeError("dropout: expects one input (x), got " + std::to_string(inputs.size()));
    return {{inputs[0]}, {}, {}, {}};
  }

  void forward(const ForwardContext& ctx) const override {
    apply(ctx.step, ctx.inputs[0].data(), ctx.outputs[0].data(), ctx.inputs[0].numel(), /*accumulate=*/false);
  }

  // An exported graph is for inference, where dropout is the identity.
  bool lower_onnx(const OnnxLowering& l) const override {
    l.graph.add_node("Identity", {l.inputs[0]}, {l.outputs[0]});
    return true;
  }

  void backward(const BackwardContext& ctx) const override {
    if (!ctx.input_grads[0].present()) return;
    // The mask is regenerated from the same seed: nothing was saved.
    apply(ctx.step, ctx.output_grads[0].data(), ctx.input_grads[0].data(), ctx.inputs[0].numel(), /*accumulate=*/true);
  }

 private:
  // out (=|+=) mask ⊙ in / (1 - p), where mask[i] = uniform01(seed, first + i) >= p (first: see StepInfo).
  void apply(const StepInfo& step, const float* in, float* out, int64_t n, bool accumulate) const {
    const bool active = step.training && p_ > 0.0f;
    const float keep_scale = active ? 1.0f / (1.0f - p_) : 1.0f;
    if (!active) {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, kElementGrain), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i) out[i] = accumulate ? out[i] + in[i] : in[i];
      });
      return;
    }
    // uniform01 is (24 random bits) / 2^24, so uniform01 >= p exactly when those bits reach
    // ceil(p · 2^24) (exact in float: a power-of-two scaling). Comparing the integers keeps the
    // loop free of conversions and branches, so it vectorises; the mask is the very same.
    const uint64_t threshold = static_cast<uint64_t>(std::ceil(p_ * 16777216.0f));
    const uint64_t key = uniform01_key(step.seed);
    // A shard of a larger batch keys its mask on the element's position in the whole batch.
    const uint64_t first =
        step.batch_rows > 0 && n % step.batch_rows == 0 ? static_cast<uint64_t>(step.batch_offset * (n / step.batch_rows)) : 0;
    auto run = [&](auto accumulate_tag) {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, kElementGrain), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i) {
          const float m = uniform01_bits(key, first + static_cast<uint64_t>(i)) >= threshold ? keep_scale : 0.0f;
          if constexpr (decltype(accumulate_tag)::value) out[i] += m * in[i];
          else out[i] = m * in[i];
        }
      });
    };
    if (accumulate) run(std::true_type{});
    else run(std::false_type{});
  }

  float p_;
};

}  // namespace

void register_elementwise(PluginRegistrar& registrar) {
  registrar.add<Add>(tight(NodeSchema{
      "add",
      "Elementwise sum a + b; b has a's shape or a trailing part of it (broadcast over the leading dims).",
      {{"a", "left operand [...]"}, {"b", "right operand: a's shape or a trailing part of it"}},
      {{"y", "a + b, shaped like a"}},
      {},
      {{"same_shape", {}, {CheckInput::real({2, 3, 4}), CheckInput::real({2, 3, 4})}},
       {"broadcast_last", {}, {CheckInput::real({2, 3, 4}), CheckInput::real({4})}},
       {"broadcast_trailing2", {}, {CheckInput::real({3, 5, 2}), CheckInput::real({5, 2})}},
       {"scalar_b", {}, {CheckInput::real({4, 3}), CheckInput::real({})}}}}));

  registrar.add<Dropout>(tight(NodeSchema{
      "dropout",
      "Inverted dropout: in training zero each element with probability p and scale the rest by 1/(1-p).",
      {{"x", "activations [...]"}},
      {{"y", "x with dropout applied (identity outside training)"}},
      {{"p", AttrType::Float, 0.1, "probability of zeroing an element, in [0, 1)"}},
      {{"training", Attrs{{"p", 0.3}}, {CheckInput::real({4, 5, 6})}, /*training=*/true},
       {"inference", Attrs{{"p", 0.3}}, {CheckInput::real({3, 7})}, /*training=*/false},
       {"p_zero_training", Attrs{{"p", 0.0}}, {CheckInput::real({2, 9})}, /*training=*/true}}}));
}

}  // namespace attnlab::basic
