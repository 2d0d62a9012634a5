// core/node/node.h — the node contract: what a node type is and what an instance does.
//
// A node type is a schema (name, inputs, outputs, attributes, gradient-check examples) plus a
// factory that builds an instance from checked attributes. Plugins register both (registry.h).
//
// The life of an instance, driven by an executor:
//   1. construct(attrs)                — attributes already defaulted and type-checked.
//   2. infer(input_shapes)             — PURE: output shapes, the parameters the node owns, and the
//                                        buffers it wants kept from forward to backward ("saved")
//                                        or for scratch during one call ("workspace"). Throws
//                                        ShapeError with a message that needs no further context
//                                        (the caller adds the node's name and source location).
//                                        Parameter shapes must not depend on batch or length dims.
//   3. forward(ctx)                    — reads inputs and parameters, writes every output element.
//   4. backward(ctx)                   — given output gradients:
//        * ADDS into each present input gradient (a value may fan out; the executor zeroes once),
//        * ASSIGNS each parameter gradient (overwrites; the executor sums across tied uses).
//      An absent input gradient (TensorView::present() false) is not wanted: skip it.
//
// A node keeps no activations between calls: whatever backward needs from forward goes into the
// "saved" buffers, which the executor owns.
//
// Export: a node type may also write itself as ONNX operators (Node::lower_onnx,
// node/onnx_lowering.h); a type without a lowering cannot be exported.
//
// Inspection: in a forward-only pass an executor may hand each node a Recorder
// (StepInfo::recorder). A node type with internal values worth showing (attention records its
// probabilities as "probs" [batch, heads, queries, keys]) asks it for a buffer per record and
// writes the values there during forward. The recorder owns the buffers, so the node allocates
// nothing; without a recorder (training, validation, decoding) the node records nothing. Nodes may run concurrently with other nodes and may use
// tbb::parallel_for inside; they must not start threads.
#pragma once

#include "node/attrs.h"
#include "tensor/tensor.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace attnlab {

// An error in the shapes or attributes a node was given (caught at elaboration or planning).
struct ShapeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- Schema -------------------------------------------------------------------------------------

struct PortSchema {
  std::string name;
  std::string doc;
  bool optional = false;        // optional inputs are absent views when not connected
  bool differentiable = true;   // false for ids, masks, counts: no gradient flows through it
};

struct AttrSchema {
  std::string name;
  AttrType type;
  std::optional<AttrValue> default_value;  // none: the attribute is required
  std::string doc;
};

// How the gradient check fills one input.
struct CheckInput {
  enum class Kind {
    Real,   // standard-normal values; the gradient is checked
    Index,  // integers uniform in [0, bound); not differentiated (token ids)
    Fixed,  // exactly `values`; not differentiated (masks, constants)
  };
  Shape shape;
  Kind kind = Kind::Real;
  int64_t bound = 0;
  std::vector<float> values;

  static CheckInput real(Shape s) { return {std::move(s), Kind::Real, 0, {}}; }
  static CheckInput index(Shape s, int64_t bound) { return {std::move(s), Kind::Index, bound, {}}; }
  static CheckInput fixed(Shape s, std::vector<float> v) { return {std::move(s), Kind::Fixed, 0, std::move(v)}; }
};

// One configuration the registry-driven gradient test runs: attributes and inputs.
struct GradCheckExample {
  std::string name;
  Attrs attrs;
  std::vector<CheckInput> inputs;
  bool training = false;     // forward in training mode (dropout active, with a fixed seed)
  double tolerance = 2e-2;   // relative error allowed between analytic and numeric gradients
};

struct NodeSchema {
  std::string name;  // "family.variant", e.g. "attention.scaled_dot"
  std::string doc;   // one line
  std::vector<PortSchema> inputs;
  std::vector<PortSchema> outputs;
  std::vector<AttrSchema> attrs;
  std::vector<GradCheckExample> examples;  // at least one; the suite fails a type without any

  const AttrSchema* find_attr(const std::string& name) const;
};

// ---- Instances ----------------------------------------------------------------------------------

enum class Init {
  Zeros,
  Ones,
  XavierUniform,  // U(-a, a), a = sqrt(6 / (fan_in + fan_out)); fans from the last two dims
  Normal,         // N(0, std^2) with std given in ParamSpec::init_scale
  Constant,       // every element equals ParamSpec::init_scale
};

// What a parameter is to training. A Trainable parameter is what the optimiser updates from its
// gradient. A State parameter holds values the node itself keeps across steps (BatchNorm's running
// statistics): the node may write it in a training forward pass (StepInfo::training) and only
// then — never in evaluation, decoding or backward — and reads it in any pass. It has no gradient
// (its entry in BackwardContext::param_grads is an absent view; backward writes nothing for it);
// the optimiser, weight decay, gradient clipping and norms and the data-parallel gradient reduction
// never see it, and it is not counted as a trainable parameter. Checkpoints save and restore it
// with the weights (so a resumed run continues it exactly), checkpoint averaging averages it like a
// weight, and exports carry it. A State parameter belongs to one node: a second node declaring it
// (a shared param_scope) is an error. Updates must be deterministic (the same for any thread
// count): reduce in a fixed order.
enum class ParamKind {
  Trainable,
  State,
};

struct ParamSpec {
  ParamSpec() = default;
  ParamSpec(std::string name_, Shape shape_, Init init_ = Init::XavierUniform, float init_scale_ = 0.0f,
            std::string scope_ = {})
      : name(std::move(name_)), shape(std::move(shape_)), init(init_), init_scale(init_scale_), scope(std::move(scope_)) {}

  std::string name;  // local to the node: "weight", "bias"
  Shape shape;
  Init init = Init::XavierUniform;
  float init_scale = 0.0f;  // Normal: the standard deviation; Constant: the value
  // Empty: the parameter belongs to the node's scope (its param_scope, or its name). Otherwise its
  // full name is SCOPE.NAME whatever node declares it, so every node declaring it shares it.
  std::string scope;
  ParamKind kind = ParamKind::Trainable;
};

struct NodeShapes {
  std::vector<Shape> outputs;
  std::vector<ParamSpec> params;
  std::vector<Shape> saved;      // kept from forward to the following backward
  std::vector<Shape> workspace;  // scratch, valid only during one forward or backward call
};

// Incremental decoding (one target position at a time). The decoder owns one set of cache buffers
// per node, shaped by Node::cache_shapes(); they persist across the steps of one decode and are the
// only state that does. `position` is the target index of the first (usually only) new position in
// the inputs; position 0 starts a new sequence.
// Rules for the decoder that drives these calls:
//   * Dimension 0 of every cache buffer is the batch (the rows of the node's inputs): a beam decoder
//     reorders hypotheses by gathering whole dimension-0 slices of every buffer, so nothing in a
//     cache may depend on which row is which.
//   * Positions advance without gaps on the same buffers: each call's position is the previous call's
//     position plus its number of new positions. Buffers are not cleared between decodes (position
//     0 starts over).
//   * A node whose inputs do not depend on the target is not driven incrementally: it runs once per
//     decode, with StepInfo::decode null.
//   * `stepwise` says, input by input, which inputs depend on the target and so hold only this
//     call's new positions; the others hold the whole of a value fixed for the decode (the
//     encoder's output, a source mask). It is the graph's structure, never a comparison of
//     buffers: attention(y, identity(y)) is self-attention because its keys depend on the target.
struct DecodeState {
  int64_t position = 0;
  std::span<const TensorView> cache;
  std::span<const uint8_t> stepwise;  // one flag per input (1: depends on the target)
  bool input_is_stepwise(size_t input) const { return input < stepwise.size() && stepwise[input] != 0; }
};

// Where a node writes what it records in an inspecting forward pass (see the top of this file).
class Recorder {
 public:
  // A buffer of `shape` for this node's record `what`, owned by the recorder; the node fills it
  // during this forward call. May be called from several nodes' threads at once.
  virtual TensorView record(const std::string& what, const Shape& shape) = 0;

 protected:
  ~Recorder() = default;
};

// Where a node reports from a training forward pass (StepInfo::report).
//
// Auxiliary losses: in a training forward pass a node may add a term A (already weighted, e.g. a
// load-balancing loss) to the objective the caller minimises. The term is part of the node's
// function in every training pass, with or without a report: forward reports A's value with
// aux_loss() when a report is given; backward ADDS objective_scale · ∂A/∂x into the input
// gradients and includes objective_scale · ∂A/∂θ in the parameter gradients it ASSIGNS
// (StepInfo::objective_scale: the factor the caller seeded the objective's gradient with). Outside
// training there is no term.
// Metrics: metric(name, value) reports a number for this step (a count of tokens per expert); the
// caller sums what each node reports under each name over the step's micro-batches (and ranks).
// Names are local to the node; the caller prefixes the node's name. Both may be called from
// several nodes' threads at once.
class StepReport {
 public:
  virtual void aux_loss(double value) = 0;
  virtual void metric(const std::string& name, double value) = 0;

 protected:
  ~StepReport() = default;
};

// What an executor tells a node about the current call.
struct StepInfo {
  bool training = false;
  uint64_t seed = 0;  // unique per (run seed, step, node): counter-based randomness keys off it
  const DecodeState* decode = nullptr;  // non-null only during incremental decoding
  // When the batch is one shard of a larger batch (data-parallel training): the rows of the whole
  // batch before this shard, and this shard's rows (0: not a shard). Counter-based randomness
  // over a batch-major tensor counts its elements from the start of the whole batch (element i
  // of this shard is element batch_offset * (numel / batch_rows) + i of the whole batch), so a
  // shard draws what the whole batch would draw for the same rows.
  int64_t batch_offset = 0;
  int64_t batch_rows = 0;
  // Non-null only in an inspecting forward pass (never in training or decoding): see Recorder.
  Recorder* recorder = nullptr;
  // Training forward passes only, and only when the caller collects them: see StepReport.
  StepReport* report = nullptr;
  // Backward: the factor the objective's gradient was seeded with (see StepReport).
  double objective_scale = 1.0;
};

struct ForwardContext {
  std::span<const TensorView> inputs;
  std::span<const TensorView> params;
  std::span<const TensorView> outputs;
  std::span<const TensorView> saved;
  std::span<const TensorView> workspace;
  StepInfo step;
};

struct BackwardContext {
  std::span<const TensorView> inputs;
  std::span<const TensorView> params;
  std::span<const TensorView> outputs;
  std::span<const TensorView> saved;
  std::span<const TensorView> workspace;
  std::span<const TensorView> output_grads;
  std::span<const TensorView> input_grads;  // ADD into these; absent ones are not wanted
  std::span<const TensorView> param_grads;  // ASSIGN these
  StepInfo step;
};

class PositionalScheme;  // node/positional.h
struct OnnxLowering;     // node/onnx_lowering.h

class Node {
 public:
  virtual ~Node() = default;
  virtual NodeShapes infer(std::span<const Shape> inputs) const = 0;
  virtual void forward(const ForwardContext& ctx) const = 0;
  virtual void backward(const BackwardContext& ctx) const = 0;

  // Incremental decoding: buffers this node keeps across decode steps, for the given input shapes
  // (the new positions only) and the longest target the decoder will produce. Position-wise nodes
  // need none (the default). Attention keeps keys and values; positional encodings need none but
  // read DecodeState::position.
  virtual std::vector<Shape> cache_shapes(std::span<const Shape> inputs, int64_t max_len) const { return {}; }

  // Optional interfaces a node offers other nodes (null: not offered). A positional node offers
  // what it does inside attention (node/positional.h); the object lives as long as the node.
  virtual const PositionalScheme* positional_scheme() const { return nullptr; }

  // Optional ONNX lowering (node/onnx_lowering.h): appends the operators that compute this node's
  // outputs and returns true; false (the default) means the type has none, and exporting a graph
  // that needs it is an error naming the node and its type.
  virtual bool lower_onnx(const OnnxLowering& /*lowering*/) const { return false; }
};

}  // namespace attnlab
