// plugins/basic/masks.cpp — `mask.padding` and `mask.causal`: attention masks computed from ids.
// Masks are floats: 1 keeps a position, 0 masks it. Neither is differentiable; backward does
// nothing (no input of theirs takes a gradient).
#include "basic_ops.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

namespace attnlab::basic {

namespace {

class PaddingMask final : public Node {
 public:
  explicit PaddingMask(const Attrs& attrs) : pad_id_(static_cast<float>(attrs.get_int("pad_id"))) {}

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs.size() != 1) throw ShapeError("mask.padding: expects one input (ids), got " + std::to_string(inputs.size()));
    return {{inputs[0]}, {}, {}, {}};
  }

  void forward(const ForwardContext& ctx) const override {
    const float* ids = ctx.inputs[0].data();
    float* mask = ctx.outputs[0].data();
    const int64_t n = ctx.inputs[0].numel();
    for (int64_t i = 0; i < n; ++i) mask[i] = ids[i] == pad_id_ ? 0.0f : 1.0f;
  }

  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const std::string keep = g.op("Not", {g.op("Equal", {l.inputs[0], g.scalar(pad_id_)})});
    g.add_node("Cast", {keep}, {l.outputs[0]}, {{"to", static_cast<int64_t>(OnnxType::Float)}});
    return true;
  }

  void backward(const BackwardContext&) const override {}

 private:
  float pad_id_;
};

class CausalMask final : public Node {
 public:
  explicit CausalMask(const Attrs&) {}

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs.size() != 1) throw ShapeError("mask.causal: expects one input (ids), got " + std::to_string(inputs.size()));
    if (inputs[0].empty())
      throw ShapeError("mask.causal: ids must be [B, T] (the last dimension is the length), got a scalar");
    const int64_t t = inputs[0].back();
    return {{{t, t}}, {}, {}, {}};
  }

  void forward(const ForwardContext& ctx) const override {
    const int64_t t = ctx.outputs[0].dim(0);
    float* mask = ctx.outputs[0].data();
    for (int64_t q = 0; q < t; ++q)
      for (int64_t k = 0; k < t; ++k) mask[q * t + k] = k <= q ? 1.0f : 0.0f;
  }

  // [T, T] from the run-time length: key position <= query position.
  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const int64_t last = static_cast<int64_t>(l.input_shapes[0].size()) - 1;
    const std::string t = g.positions(l.inputs[0], last);
    const std::string query = g.op("Unsqueeze", {t, g.ints({1})}), key = g.op("Unsqueeze", {t, g.ints({0})});
    g.add_node("Cast", {g.op("LessOrEqual", {key, query})}, {l.outputs[0]}, {{"to", static_cast<int64_t>(OnnxType::Float)}});
    return true;
  }

  void backward(const BackwardContext&) const override {}
};

}  // namespace

void register_masks(PluginRegistrar& registrar) {
  registrar.add<PaddingMask>(tight(NodeSchema{
      "mask.padding",
      "Key padding mask from ids: 1 where the id is not pad_id, 0 where it is.",
      {{"ids", "token ids [B, S]", false, false}},
      {{"mask", "[B, S]: 1 keep, 0 padding", false, false}},
      {{"pad_id", AttrType::Int, int64_t{0}, "the id that marks padding"}},
      {{"pad0", {}, {CheckInput::fixed({2, 4}, {5, 3, 0, 0, 1, 2, 7, 0})}},
       {"pad2", Attrs{{"pad_id", int64_t{2}}}, {CheckInput::fixed({1, 5}, {2, 0, 2, 1, 3})}}}}));

  registrar.add<CausalMask>(tight(NodeSchema{
      "mask.causal",
      "Causal (subsequent-position) mask from ids [B, T]: mask[q, k] = 1 where k <= q, else 0.",
      {{"ids", "token ids [B, T]; only T is read", false, false}},
      {{"mask", "[T, T]: 1 where the key position is at or before the query position", false, false}},
      {},
      {{"length5", {}, {CheckInput::index({2, 5}, 10)}}, {"length1", {}, {CheckInput::index({3, 1}, 4)}}}}));
}

}  // namespace attnlab::basic
