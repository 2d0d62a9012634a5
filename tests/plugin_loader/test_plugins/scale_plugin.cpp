// A well-formed plugin used by the loader tests: one node type, `test.scale` (y = factor * x),
// or, compiled with TEST_PLUGIN_TYPE_NAME set, the same node under another name.
#include "node/plugin_api.h"

#ifndef TEST_PLUGIN_TYPE_NAME
#define TEST_PLUGIN_TYPE_NAME "test.scale"
#endif

namespace {

class ScaleNode final : public attnlab::Node {
 public:
  explicit ScaleNode(const attnlab::Attrs& attrs) : factor_(static_cast<float>(attrs.get_float("factor"))) {}
  attnlab::NodeShapes infer(std::span<const attnlab::Shape> inputs) const override { return {{inputs[0]}, {}, {}, {}}; }
  void forward(const attnlab::ForwardContext& ctx) const override {
    ctx.outputs[0].flat() = factor_ * ctx.inputs[0].flat();
  }
  void backward(const attnlab::BackwardContext& ctx) const override {
    if (ctx.input_grads[0].present()) ctx.input_grads[0].flat() += factor_ * ctx.output_grads[0].flat();
  }

 private:
  float factor_;
};

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  attnlab::NodeSchema schema;
  schema.name = TEST_PLUGIN_TYPE_NAME;
  schema.doc = "y = factor * x";
  schema.inputs = {{"x", "any tensor"}};
  schema.outputs = {{"y", "same shape as x"}};
  schema.attrs = {{"factor", attnlab::AttrType::Float, attnlab::AttrValue(2.0), "the multiplier"}};
  schema.examples = {{"vector", {}, {attnlab::CheckInput::real({3})}}};
  registrar.add<ScaleNode>(std::move(schema));
}
