// ffn.squared_relu — the feed-forward network of Primer (So et al., 2021, "Primer: Searching for
// Efficient Transformers for Language Modeling"): FFN(x) = relu(x W1 + b1)^2 W2 + b2.
//
// A complete plugin: a schema with gradient-check examples, parameters declared in infer(), a
// forward pass that keeps what backward needs in a "saved" buffer, and a backward pass that ADDS
// into the input gradient and ASSIGNS the parameter gradients; and, optionally, its ONNX lowering
// (`attnlab export --format onnx`).
#include <attnlab/node/onnx_lowering.h>
#include <attnlab/node/plugin_api.h>
#include <attnlab/tensor/gemm.h>

#include <stdexcept>

namespace {

using namespace attnlab;

class SquaredReluFfn final : public Node {
 public:
  explicit SquaredReluFfn(const Attrs& attrs) : hidden_(attrs.get_int("hidden")) {
    if (hidden_ < 1) throw std::invalid_argument("hidden must be at least 1, got " + std::to_string(hidden_));
  }

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs[0].empty()) throw ShapeError("x must have at least one dimension");
    const int64_t d = inputs[0].back();
    Shape h = inputs[0];
    h.back() = hidden_;
    NodeShapes shapes;
    shapes.outputs = {inputs[0]};
    shapes.params = {{"w1", {d, hidden_}}, {"b1", {hidden_}, Init::Zeros}, {"w2", {hidden_, d}}, {"b2", {d}, Init::Zeros}};
    shapes.saved = {h};      // relu(x W1 + b1), kept for backward
    shapes.workspace = {h};  // gradient with respect to the hidden pre-activation
    return shapes;
  }

  void forward(const ForwardContext& ctx) const override {
    const TensorView &x = ctx.inputs[0], &y = ctx.outputs[0], &r = ctx.saved[0];
    const int64_t rows = x.numel() / x.shape().back(), d = x.shape().back();
    // r = relu(x W1 + b1)
    auto rm = r.matrix();
    rm.rowwise() = ctx.params[1].flat().transpose();
    gemm(Trans::No, Trans::No, rows, hidden_, d, 1.0f, x.data(), d, ctx.params[0].data(), hidden_, 1.0f, r.data(), hidden_);
    rm = rm.cwiseMax(0.0f);
    // y = r^2 W2 + b2 (r^2 goes through the workspace so r itself stays saved)
    auto sq = ctx.workspace[0].matrix();
    sq = rm.cwiseProduct(rm);
    y.matrix().rowwise() = ctx.params[3].flat().transpose();
    gemm(Trans::No, Trans::No, rows, d, hidden_, 1.0f, sq.data(), hidden_, ctx.params[2].data(), d, 1.0f, y.data(), d);
  }

  // The same function as ONNX operators (node/onnx_lowering.h).
  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const std::string h = g.op("Relu", {g.affine(l.inputs[0], l.params[0], l.params[1], g.fresh("hidden"))});
    g.affine(g.op("Mul", {h, h}), l.params[2], l.params[3], l.outputs[0]);
    return true;
  }

  void backward(const BackwardContext& ctx) const override {
    const TensorView &x = ctx.inputs[0], &dy = ctx.output_grads[0], &r = ctx.saved[0];
    const int64_t rows = x.numel() / x.shape().back(), d = x.shape().back();
    auto g = ctx.workspace[0].matrix();
    // dW2 = (r^2)^T dy ; db2 = sum of dy over rows
    g = r.matrix().cwiseProduct(r.matrix());
    gemm(Trans::Yes, Trans::No, hidden_, d, rows, 1.0f, g.data(), hidden_, dy.data(), d, 0.0f, ctx.param_grads[2].data(), d);
    ctx.param_grads[3].flat() = dy.matrix().colwise().sum().transpose();
    // g = dy W2^T ⊙ 2r  (the derivative of relu(z)^2 is 2 relu(z))
    gemm(Trans::No, Trans::Yes, rows, hidden_, d, 1.0f, dy.data(), d, ctx.params[2].data(), d, 0.0f, g.data(), hidden_);
    g = g.cwiseProduct(2.0f * r.matrix());
    // dW1 = x^T g ; db1 = sum of g over rows ; dx += g W1^T
    gemm(Trans::Yes, Trans::No, d, hidden_, rows, 1.0f, x.data(), d, g.data(), hidden_, 0.0f, ctx.param_grads[0].data(), hidden_);
    ctx.param_grads[1].flat() = g.colwise().sum().transpose();
    if (ctx.input_grads[0].present())
      gemm(Trans::No, Trans::Yes, rows, d, hidden_, 1.0f, g.data(), hidden_, ctx.params[0].data(), hidden_, 1.0f,
           ctx.input_grads[0].data(), d);
  }

 private:
  int64_t hidden_;
};

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  NodeSchema schema;
  schema.name = "ffn.squared_relu";
  schema.doc = "Primer's feed-forward network: relu(x W1 + b1)^2 W2 + b2";
  schema.inputs = {{"x", "[..., d_model]"}};
  schema.outputs = {{"y", "[..., d_model]"}};
  schema.attrs = {{"hidden", AttrType::Int, AttrValue(int64_t{2048}), "inner width (d_ff)"}};
  schema.examples = {
      {"tokens", {{"hidden", int64_t{6}}}, {CheckInput::real({2, 3, 4})}},
      {"single_row", {{"hidden", int64_t{3}}}, {CheckInput::real({1, 5})}},
  };
  registrar.add<SquaredReluFfn>(std::move(schema));
}
