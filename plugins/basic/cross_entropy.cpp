// plugins/basic/cross_entropy.cpp — `loss.cross_entropy`: softmax cross-entropy with label
// smoothing, ignoring padding targets.
//
// For a row of logits z (length V) with target t and smoothing ε, with lse = log Σ exp(z):
//   ce = (1-ε)·(lse - z_t) + ε·(lse - mean(z)) = lse - (1-ε)·z_t - (ε/V)·Σ z
// which is the cross-entropy against the target distribution (1-ε)·onehot(t) + ε/V, as PyTorch's
// label_smoothing defines it. loss = mean of ce over rows whose target is not pad_id (0 when
// there are none). The gradient of ce is softmax(z) - (1-ε)·onehot(t) - ε/V.
//
// This is the hottest row-wise loop of a training step ([B·T, V] with V up to ~37000): each row
// is read once in forward (max, Σexp, Σz, argmax with Eigen's vectorised exp) and once in
// backward; only the per-row log-sum-exp is saved (a [B·T] buffer, not a [B·T, V] one).
#include "basic_ops.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Core>

#include <cmath>

namespace attnlab::basic {

namespace {

using RowArray = Eigen::Map<Eigen::ArrayXf>;
using ConstRowArray = Eigen::Map<const Eigen::ArrayXf>;

class CrossEntropy final : public Node {
 public:
  explicit CrossEntropy(const Attrs& attrs)
      : smoothing_(static_cast<float>(attrs.get_float("label_smoothing"))),
        pad_id_(static_cast<float>(attrs.get_int("pad_id"))) {
    if (!(smoothing_ >= 0.0f && smoothing_ <= 1.0f))
      throw ShapeError("loss.cross_entropy: label_smoothing must be in [0, 1], got " +
                       std::to_string(attrs.get_float("label_smoothing")));
  }

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs.size() != 2)
      throw ShapeError("loss.cross_entropy: expects two inputs (logits, targets), got " + std::to_string(inputs.size()));
    const Shape& logits = inputs[0];
    const Shape& targets = inputs[1];
    if (logits.empty() || logits.back() <= 0)
      throw ShapeError("loss.cross_entropy: logits need a non-empty last dimension (the vocabulary), got shape " +
                       to_string(logits));
    if (Shape(logits.begin(), logits.end() - 1) != targets)
      throw ShapeError("loss.cross_entropy: targets must be logits' shape without the last dimension; logits are " +
                       to_string(logits) + ", targets are " + to_string(targets));
    const int64_t rows = numel(targets);
    // saved: per-row log-sum-exp; workspace: per-row loss and per-row argmax hit.
    return {{{}, {}, {}}, {}, {{rows}}, {{rows}, {rows}}};
  }

  void forward(const ForwardContext& ctx) const override {
    const TensorView& logits = ctx.inputs[0];
    const float* targets = ctx.inputs[1].data();
    const int64_t v = logits.dim(-1), rows = ctx.inputs[1].numel();
    for (int64_t r = 0; r < rows; ++r)
      if (targets[r] != pad_id_) checked_id(targets[r], v, "loss.cross_entropy", "target", r, "vocabulary size V");

    float* lse = ctx.saved[0].data();
    float* row_loss = ctx.workspace[0].data();
    float* row_hit = ctx.workspace[1].data();
    const float eps = smoothing_, pad = pad_id_;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, row_grain(v)), [&](const tbb::blocked_range<int64_t>& range) {
      for (int64_t r = range.begin(); r < range.end(); ++r) {
        if (targets[r] == pad) {
          lse[r] = row_loss[r] = row_hit[r] = 0.0f;
          continue;
        }
        ConstRowArray z(logits.data() + r * v, v);
        // maxCoeff() without an index is vectorised (Eigen's indexed form is a scalar loop).
        const float m = z.maxCoeff();
        const float l = m + std::log((z - m).exp().sum());
        const int64_t t = static_cast<int64_t>(targets[r]);
        float ce = l - (1.0f - eps) * z[t];
        if (eps > 0.0f) ce -= eps / static_cast<float>(v) * z.sum();
        lse[r] = l;
        row_loss[r] = ce;
        // A hit: the target is the argmax, the first position holding the maximum.
        // (Vectorised: no earlier position reaches the maximum.)
        const bool hit = z[t] == m && (t == 0 || z.head(t).maxCoeff() < m);
        row_hit[r] = hit ? 1.0f : 0.0f;
      }
    });
    // Serial sums in a fixed order: the loss is bitwise identical whatever the thread count.
    double total = 0.0, tokens = 0.0, correct = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      if (targets[r] == pad) continue;
      total += row_loss[r];
      tokens += 1.0;
      correct += row_hit[r];
    }
    ctx.outputs[0].data()[0] = tokens > 0 ? static_cast<float>(total / tokens) : 0.0f;
    ctx.outputs[1].data()[0] = static_cast<float>(tokens);
    ctx.outputs[2].data()[0] = static_cast<float>(correct);
  }

  // The formula above, row-wise over the last axis; padding rows weigh 0 (loss 0 without tokens).
  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const std::string& z = l.inputs[0];
    const std::string& targets = l.inputs[1];
    const float v = static_cast<float>(l.input_shapes[0].back());
    const std::vector<OnnxAttr> last_axis = {{"axes", std::vector<int64_t>{-1}}, {"keepdims", int64_t{0}}};
    const std::string index = g.cast(g.op("Max", {targets, g.scalar(0.0f)}), OnnxType::Int64);  // any id for padding
    const std::string z_t = g.op("Squeeze", {g.op("GatherElements", {z, g.op("Unsqueeze", {index, g.ints({-1})})}, {{"axis", int64_t{-1}}}),
                                             g.ints({-1})});
    const std::string lse = g.op("ReduceLogSumExp", {z}, last_axis);
    const std::string sum_z = g.op("ReduceSum", {z, g.ints({-1})}, {{"keepdims", int64_t{0}}});
    const std::string ce = g.op("Sub", {g.op("Sub", {lse, g.op("Mul", {z_t, g.scalar(1.0f - smoothing_)})}),
                                        g.op("Mul", {sum_z, g.scalar(smoothing_ / v)})});
    const std::string counted = g.cast(g.op("Not", {g.op("Equal", {targets, g.scalar(pad_id_)})}), OnnxType::Float);
    g.add_node("ReduceSum", {counted}, {l.outputs[1]}, {{"keepdims", int64_t{0}}});
    const std::string total = g.op("ReduceSum", {g.op("Mul", {ce, counted})}, {{"keepdims", int64_t{0}}});
    g.add_node("Div", {total, g.op("Max", {l.outputs[1], g.scalar(1.0f)})}, {l.outputs[0]});
    const std::string hit = g.cast(g.op("Equal", {g.op("ArgMax", {z}, {{"axis", int64_t{-1}}, {"keepdims", int64_t{0}}}), index}),
                                   OnnxType::Float);
    g.add_node("ReduceSum", {g.op("Mul", {hit, counted})}, {l.outputs[2]}, {{"keepdims", int64_t{0}}});
    return true;
  }

  void backward(const BackwardContext& ctx) const override {
    const TensorView& dlogits = ctx.input_grads[0];
    if (!dlogits.present()) return;
    const TensorView& logits = ctx.inputs[0];
    const float* targets = ctx.inputs[1].data();
    const int64_t v = logits.dim(-1), rows = ctx.inputs[1].numel();
    const float tokens = ctx.outputs[1].data()[0];
    if (tokens == 0.0f) return;
    const float g = ctx.output_grads[0].data()[0] / tokens;
    const float* lse = ctx.saved[0].data();
    const float eps = smoothing_, pad = pad_id_;
    const float uniform = eps / static_cast<float>(v);
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, row_grain(v)), [&](const tbb::blocked_range<int64_t>& range) {
      for (int64_t r = range.begin(); r < range.end(); ++r) {
        if (targets[r] == pad) continue;
        ConstRowArray z(logits.data() + r * v, v);
        RowArray dz(dlogits.data() + r * v, v);
        dz += g * ((z - lse[r]).exp() - uniform);
        dz[static_cast<int64_t>(targets[r])] -= g * (1.0f - eps);
      }
    });
  }

 private:
  float smoothing_;
  float pad_id_;
};

}  // namespace

void register_cross_entropy(PluginRegistrar& registrar) {
  // Targets with padding (id 0) at the ends of sentences.
  std::vector<float> padded = {3, 5, 0, 1, 6, 0};
  registrar.add<CrossEntropy>(tight(NodeSchema{
      "loss.cross_entropy",
      "Softmax cross-entropy with label smoothing, averaged over non-padding targets; also counts tokens and hits.",
      {{"logits", "scores [B, T, V]"}, {"targets", "target ids [B, T]; pad_id marks padding", false, false}},
      {{"loss", "scalar: mean smoothed cross-entropy over non-padding targets"},
       {"tokens", "scalar: number of non-padding targets", false, false},
       {"correct", "scalar: non-padding targets where the argmax of the logits is the target", false, false}},
      {{"label_smoothing", AttrType::Float, 0.0, "ε: the target distribution is (1-ε)·onehot + ε/V"},
       {"pad_id", AttrType::Int, int64_t{0}, "targets equal to this id are ignored"}},
      {{"plain_padded", {}, {CheckInput::real({2, 3, 7}), CheckInput::fixed({2, 3}, padded)}},
       {"smoothed_padded", Attrs{{"label_smoothing", 0.1}}, {CheckInput::real({2, 3, 7}), CheckInput::fixed({2, 3}, padded)}},
       {"smoothed_no_padding", Attrs{{"label_smoothing", 0.2}, {"pad_id", int64_t{-1}}},
        {CheckInput::real({4, 9}), CheckInput::index({4}, 9)}},
       {"random_targets", Attrs{{"label_smoothing", 0.1}}, {CheckInput::real({3, 4, 11}), CheckInput::index({3, 4}, 11)}}}}));
}

}  // namespace attnlab::basic
