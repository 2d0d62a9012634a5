// plugins/basic/linear.cpp — `linear`: y = x · weight (+ bias) over the last dimension.
#include "basic_ops.h"

#include "tensor/gemm.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>

namespace attnlab::basic {

namespace {

class Linear final : public Node {
 public:
  explicit Linear(const Attrs& attrs) : out_(attrs.get_int("out")), bias_(attrs.get_bool("bias")) {
    if (out_ <= 0) throw ShapeError("linear: out must be positive, got " + std::to_string(out_));
  }

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs.size() != 1) throw ShapeError("linear: expects one input (x), got " + std::to_string(inputs.size()));
    if (inputs[0].empty() || inputs[0].back() <= 0)
      throw ShapeError("linear: x needs a non-empty last dimension (the input width), got shape " + to_string(inputs[0]));
    const int64_t in = inputs[0].back();
    Shape y = inputs[0];
    y.back() = out_;
    NodeShapes shapes{{y}, {{"weight", {in, out_}, Init::XavierUniform, 0.0f}}, {}, {}};
    if (bias_) shapes.params.push_back({"bias", {out_}, Init::Zeros, 0.0f});
    return shapes;
  }

  void forward(const ForwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t in = x.dim(-1), rows = x.numel() / in;
    float* y = ctx.outputs[0].data();
    if (bias_) {
      // Broadcast the bias into y, then accumulate the product on top of it (beta = 1).
      const float* b = ctx.params[1].data();
      const int64_t out = out_;
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, row_grain(out)), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i) std::copy_n(b, out, y + i * out);
      });
    }
    gemm(Trans::No, Trans::No, rows, out_, in, 1.0f, x.data(), in, ctx.params[0].data(), out_, bias_ ? 1.0f : 0.0f, y,
         out_);
  }

  bool lower_onnx(const OnnxLowering& l) const override {
    l.graph.affine(l.inputs[0], l.params[0], bias_ ? l.params[1] : std::string(), l.outputs[0]);
    return true;
  }

  void backward(const BackwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t in = x.dim(-1), rows = x.numel() / in;
    const float* dy = ctx.output_grads[0].data();
    if (ctx.input_grads[0].present())  // dx += dy[rows, out] · weightᵀ[out, in]
      gemm(Trans::No, Trans::Yes, rows, in, out_, 1.0f, dy, out_, ctx.params[0].data(), out_, 1.0f,
           ctx.input_grads[0].data(), in);
    if (ctx.param_grads[0].present())  // dW = xᵀ[in, rows] · dy[rows, out]
      gemm(Trans::Yes, Trans::No, in, out_, rows, 1.0f, x.data(), in, dy, out_, 0.0f, ctx.param_grads[0].data(), out_);
    if (bias_ && ctx.param_grads[1].present()) {
      // db = column sums of dy. Tasks own disjoint column blocks and sum rows in order, so the
      // result does not depend on the thread count.
      float* db = ctx.param_grads[1].data();
      const int64_t out = out_, block = 256;
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, (out + block - 1) / block), [&](const tbb::blocked_range<int64_t>& r) {
        const int64_t c0 = r.begin() * block, c1 = std::min(out, r.end() * block);
        std::fill(db + c0, db + c1, 0.0f);
        for (int64_t i = 0; i < rows; ++i) {
          const float* g = dy + i * out;
          for (int64_t j = c0; j < c1; ++j) db[j] += g[j];
        }
      });
    }
  }

 private:
  int64_t out_;
  bool bias_;
};

}  // namespace

void register_linear(PluginRegistrar& registrar) {
  registrar.add<Linear>(tight(NodeSchema{
      "linear",
      "Affine map over the last dimension: y = x * weight + bias; weight [in, out] (Xavier), bias [out] (zeros).",
      {{"x", "activations [..., in]"}},
      {{"y", "activations [..., out]"}},
      {{"out", AttrType::Int, std::nullopt, "output width"},
       {"bias", AttrType::Bool, true, "whether to add a learned bias"}},
      {{"bias", Attrs{{"out", int64_t{5}}}, {CheckInput::real({2, 3, 4})}},
       {"no_bias", Attrs{{"out", int64_t{3}}, {"bias", false}}, {CheckInput::real({4, 6})}},
       {"rank1", Attrs{{"out", int64_t{2}}}, {CheckInput::real({7})}},
       // Large enough for gemm() to split the products into tasks.
       {"large", Attrs{{"out", int64_t{96}}}, {CheckInput::real({2, 128, 48})}}}}));
}

}  // namespace attnlab::basic
