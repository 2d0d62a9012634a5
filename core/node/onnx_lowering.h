// core/node/onnx_lowering.h — the optional part of the node contract that writes a node as ONNX
// operators (`attnlab export --format onnx`, docs/tools.md).
//
// A node type that can be exported overrides Node::lower_onnx(lowering): it appends operators of the
// default ONNX domain (opset kOnnxOpset) to lowering.graph that compute its outputs, under exactly
// the names lowering.outputs gives, from lowering.inputs and its parameters lowering.params. It
// returns true. The default returns false: the type has no lowering, and the exporter reports the
// node and its type. A configuration a lowering cannot express throws std::invalid_argument with a
// message that needs no further context (the exporter adds the node's name, type and location).
//
// What a lowering sees:
// - Every value is float32, as in attnlab (ids and masks too: an exported graph casts its id inputs
//   to float once, and a lowering that indexes casts back).
// - Shapes are those of infer() with every size that depends on a batch or length dimension
//   replaced by a negative number: -1 - k for the model's k-th size symbol (batch, src_len, ...),
//   so two equal negative sizes are the same size at run time; kDynamicDim for a size that varies
//   otherwise. The ONNX graph must work for every size: use Reshape with 0 (copy a dimension) and
//   -1, Shape, broadcasting — never a size from these shapes that is negative.
// - Parameters are initializers named by their full names (SCOPE.LOCAL, shared by tied uses), in
//   the order of the node's ParamSpecs.
// - The forward pass of inference: no dropout, no recorder, no incremental decoding state.
//
// Plugins use only this builder, never ONNX's headers or protobuf messages: the exporter in core
// owns the ONNX schema.
#pragma once

#include "tensor/tensor.h"

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace attnlab {

inline constexpr int64_t kOnnxOpset = 17;  // the default domain's operator set of exported graphs
inline constexpr int64_t kDynamicDim = -1000000;  // a size that varies with no single size symbol

using OnnxAttrValue = std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>>;

struct OnnxAttr {
  std::string name;
  OnnxAttrValue value;
};

// ONNX's TensorProto data types, for Cast's `to`.
enum class OnnxType : int64_t { Float = 1, Bool = 9, Int64 = 7 };

// The graph under construction. Value names are global to the graph: use fresh() for every
// intermediate value.
class OnnxBuilder {
 public:
  // A value name unused in the graph, readable from `hint` (the node's name is prefixed).
  virtual std::string fresh(const std::string& hint) = 0;
  // Appends one operator of the default domain.
  virtual void add_node(const std::string& op_type, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::vector<OnnxAttr>& attrs = {}) = 0;
  // Constant tensors (stored as initializers); they return the value's name.
  virtual std::string add_float_constant(const std::string& hint, const Shape& shape, std::span<const float> values) = 0;
  virtual std::string add_int64_constant(const std::string& hint, const Shape& shape, std::span<const int64_t> values) = 0;

  // Conveniences on the four above.
  // One operator with one fresh output, returned.
  std::string op(const std::string& op_type, const std::vector<std::string>& inputs, const std::vector<OnnxAttr>& attrs = {}) {
    std::string out = fresh(op_type);
    add_node(op_type, inputs, {out}, attrs);
    return out;
  }
  std::string scalar(float value) { return add_float_constant("scalar", {}, std::span<const float>(&value, 1)); }
  std::string ints(const std::vector<int64_t>& values) {
    return add_int64_constant("ints", {static_cast<int64_t>(values.size())}, values);
  }
  // Dimensions [first, last) of `value`'s run-time shape as a 1-D int64 tensor (Shape, opset 15).
  std::string dims(const std::string& value, int64_t first, int64_t last) {
    return op("Shape", {value}, {{"start", first}, {"end", last}});
  }
  std::string cast(const std::string& value, OnnxType to) { return op("Cast", {value}, {{"to", static_cast<int64_t>(to)}}); }
  // 0, 1, ..., n-1 (int64, 1-D) for n the run-time size of `value`'s dimension `axis`.
  std::string positions(const std::string& value, int64_t axis) {
    const std::string n = op("Squeeze", {dims(value, axis, axis + 1)});
    return op("Range", {ints0(0), n, ints0(1)});
  }
  // Normalisation over the last axis: gain ⊙ (x − mean)/sqrt(var + eps) + bias with `centre`
  // (LayerNorm; bias required), gain ⊙ x/sqrt(mean(x²) + eps) without (RMSNorm). Written to `out`
  // when given, else to a fresh value; returns it.
  std::string normalise_last_axis(const std::string& x, const std::string& gain, const std::string& bias, float eps,
                                  bool centre, std::string out = {}) {
    if (out.empty()) out = fresh(centre ? "layer_norm" : "rms_norm");
    if (centre) {
      add_node("LayerNormalization", {x, gain, bias}, {out}, {{"axis", int64_t{-1}}, {"epsilon", eps}});
      return out;
    }
    const std::string mean_square = op("ReduceMean", {op("Mul", {x, x})}, {{"axes", std::vector<int64_t>{-1}}});
    const std::string rms = op("Sqrt", {op("Add", {mean_square, scalar(eps)})});
    add_node("Mul", {op("Div", {x, rms}), gain}, {out});
    return out;
  }
  // x · w (+ bias when given) over the last axis, written to `out`; returns it.
  std::string affine(const std::string& x, const std::string& w, const std::string& bias, const std::string& out) {
    if (bias.empty()) add_node("MatMul", {x, w}, {out});
    else add_node("Add", {op("MatMul", {x, w}), bias}, {out});
    return out;
  }
  // An int64 scalar constant.
  std::string ints0(int64_t value) { return add_int64_constant("int", {}, std::span<const int64_t>(&value, 1)); }

 protected:
  ~OnnxBuilder() = default;
};

// What Node::lower_onnx is handed: one node's place in the graph.
struct OnnxLowering {
  OnnxBuilder& graph;
  std::span<const std::string> inputs;       // the value of each input; "" for an absent optional input
  std::span<const Shape> input_shapes;       // empty for an absent input; negative sizes: see above
  std::span<const std::string> params;       // the initializer of each parameter, in ParamSpec order
  std::span<const std::string> outputs;      // the names to give the outputs (all of them must be produced)
  std::span<const Shape> output_shapes;
  bool has_input(size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
};

}  // namespace attnlab
