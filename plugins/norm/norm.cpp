// plugins/norm/norm.cpp — normalisation over the last dimension (libattnlab_plugin_norm.so).
//
// Contract: x[..., D] → y[..., D]; layer and rms normalise each row of D features on its own, batch
// each feature over the rows.
//   norm.layer  y = gain ⊙ (x − mean) / sqrt(var + eps) + bias, var the biased (1/D) variance
//               (Ba et al. 2016, eq. 4); params gain[D] = 1, bias[D] = 0.
//   norm.rms    y = gain ⊙ x / sqrt(mean(x²) + eps) (Zhang & Sennrich 2019, eq. 4); param gain[D] = 1.
//   norm.batch  y = gain ⊙ (x − μ) / sqrt(σ² + eps) + bias per feature (Ioffe & Szegedy 2015), μ, σ²
//               over every row — all batch and time positions, padding included (the norm sees
//               no mask) — in training; the running statistics at evaluation and decoding. Params
//               gain[D] = 1, bias[D] = 0; State running_mean[D] = 0, running_var[D] = 1, updated in
//               each training forward: r ← (1 − momentum)·r + momentum·batch value (the variance
//               unbiased, N/(N − 1), as PyTorch).
// eps defaults to 1e-6 (tensor2tensor's choice; PyTorch's LayerNorm uses 1e-5) and must be > 0.
// Saved for backward: the normalised rows x̂ and each row's (norm.batch: feature's) reciprocal
// standard deviation. Backward ADDS into dx and ASSIGNS dgain (and dbias).
#include "node/onnx_lowering.h"
#include "node/plugin_api.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace {

using namespace attnlab;

double checked_eps(const Attrs& attrs) {
  if (!(attrs.get_float("eps") > 0.0)) throw std::invalid_argument("eps must be positive, got " + to_string(attrs.get("eps")));
  return attrs.get_float("eps");
}

// The one input every norm takes, x [..., D]: its width D and its number of rows.
std::pair<int64_t, int64_t> width_and_rows(std::span<const Shape> in) {
  if (in.size() != 1) throw ShapeError("expects one input x [..., width]");
  const Shape& x = in[0];
  if (x.empty() || x.back() < 1) throw ShapeError("x must have a non-empty last dimension, got " + to_string(x));
  return {x.back(), numel(x) / x.back()};
}

class Norm : public Node {
 public:
  Norm(const Attrs& attrs, bool centre) : eps_(static_cast<float>(checked_eps(attrs))), centre_(centre) {}

  NodeShapes infer(std::span<const Shape> in) const override {
    const auto [D, rows] = width_and_rows(in);
    NodeShapes s;
    s.outputs = {in[0]};
    s.params = {{"gain", {D}, Init::Ones}};
    if (centre_) s.params.push_back({"bias", {D}, Init::Zeros});
    s.saved = {{rows, D}, {rows}};
    return s;
  }

  void forward(const ForwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t D = x.dim(-1), rows = x.numel() / D;
    const float* gain = ctx.params[0].data();
    const float* bias = centre_ ? ctx.params[1].data() : nullptr;
    float* xhat = ctx.saved[0].data();
    float* rstd = ctx.saved[1].data();
    float* y = ctx.outputs[0].data();
    const Eigen::Map<const Eigen::ArrayXf> g(gain, D);
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, 16), [&](const tbb::blocked_range<int64_t>& range) {
      for (int64_t r = range.begin(); r < range.end(); ++r) {
        const Eigen::Map<const Eigen::ArrayXf> xr(x.data() + r * D, D);
        Eigen::Map<Eigen::ArrayXf> xh(xhat + r * D, D), yr(y + r * D, D);
        const float mean = centre_ ? xr.mean() : 0.0f;
        xh = xr - mean;
        const float inv = 1.0f / std::sqrt(xh.square().mean() + eps_);
        rstd[r] = inv;
        xh *= inv;
        if (bias) yr = g * xh + Eigen::Map<const Eigen::ArrayXf>(bias, D);
        else yr = g * xh;
      }
    });
  }

  bool lower_onnx(const OnnxLowering& l) const override {
    l.graph.normalise_last_axis(l.inputs[0], l.params[0], centre_ ? l.params[1] : std::string(), eps_, centre_, l.outputs[0]);
    return true;
  }

  // With g = dy ⊙ gain: layer: dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)); rms: dx = rstd·(g − x̂·mean(g ⊙ x̂)).
  void backward(const BackwardContext& ctx) const override {
    const TensorView& dy = ctx.output_grads[0];
    const int64_t D = dy.dim(-1), rows = dy.numel() / D;
    const float* gain = ctx.params[0].data();
    const float* xhat = ctx.saved[0].data();
    const float* rstd = ctx.saved[1].data();
    // Parameter gradients: sums over rows, split into column blocks so each task owns its outputs.
    float* dgain = ctx.param_grads[0].data();
    float* dbias = centre_ ? ctx.param_grads[1].data() : nullptr;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, D, 128), [&](const tbb::blocked_range<int64_t>& cols) {
      const int64_t c0 = cols.begin(), n = cols.size();
      Eigen::Map<Eigen::ArrayXf> dg(dgain + c0, n);
      dg.setZero();
      if (dbias) Eigen::Map<Eigen::ArrayXf>(dbias + c0, n).setZero();
      for (int64_t r = 0; r < rows; ++r) {
        const Eigen::Map<const Eigen::ArrayXf> dyr(dy.data() + r * D + c0, n);
        dg += dyr * Eigen::Map<const Eigen::ArrayXf>(xhat + r * D + c0, n);
        if (dbias) Eigen::Map<Eigen::ArrayXf>(dbias + c0, n) += dyr;
      }
    });
    if (ctx.input_grads.empty() || !ctx.input_grads[0].present()) return;
    float* dx = ctx.input_grads[0].data();
    const Eigen::Map<const Eigen::ArrayXf> g(gain, D);
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, 16), [&](const tbb::blocked_range<int64_t>& range) {
      Eigen::ArrayXf gy(D);
      for (int64_t r = range.begin(); r < range.end(); ++r) {
        const Eigen::Map<const Eigen::ArrayXf> dyr(dy.data() + r * D, D), xh(xhat + r * D, D);
        gy = dyr * g;
        const float mean_g = centre_ ? gy.mean() : 0.0f;
        const float mean_gx = (gy * xh).mean();
        Eigen::Map<Eigen::ArrayXf>(dx + r * D, D) += rstd[r] * (gy - mean_g - xh * mean_gx);
      }
    });
  }

 private:
  float eps_;
  bool centre_;
};

// Statistics per feature over the rows. Every reduction runs over the rows in order, in double,
// inside the one task that owns a block of features, so the outputs and the running statistics are
// the same for any thread count.
class BatchNorm : public Node {
 public:
  explicit BatchNorm(const Attrs& attrs)
      : eps_(checked_eps(attrs)), momentum_(attrs.get_float("momentum")) {
    if (!(momentum_ > 0.0 && momentum_ <= 1.0))
      throw std::invalid_argument("momentum must be in (0, 1], got " + to_string(attrs.get("momentum")));
  }

  NodeShapes infer(std::span<const Shape> in) const override {
    const auto [D, rows] = width_and_rows(in);
    NodeShapes s;
    s.outputs = {in[0]};
    s.params = {{"gain", {D}, Init::Ones}, {"bias", {D}, Init::Zeros}, {"running_mean", {D}, Init::Zeros},
                {"running_var", {D}, Init::Ones}};
    s.params[2].kind = s.params[3].kind = ParamKind::State;
    s.saved = {{rows, D}, {D}};  // x̂, and each feature's 1/sqrt(σ² + eps)
    s.workspace = {{2, D}};      // backward: mean(g), mean(g ⊙ x̂) per feature
    return s;
  }

  void forward(const ForwardContext& ctx) const override {
    const float* x = ctx.inputs[0].data();
    const int64_t D = ctx.inputs[0].dim(-1), rows = ctx.inputs[0].numel() / D;
    const float *gain = ctx.params[0].data(), *bias = ctx.params[1].data();
    float *running_mean = ctx.params[2].data(), *running_var = ctx.params[3].data();
    float* xhat = ctx.saved[0].data();
    float* rstd = ctx.saved[1].data();
    float* y = ctx.outputs[0].data();
    const bool training = ctx.step.training;
    const double unbias = rows > 1 ? static_cast<double>(rows) / static_cast<double>(rows - 1) : 1.0;
    for_feature_blocks(D, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double mean = running_mean[c], var = running_var[c];
        if (training) {
          double sum = 0, sq = 0;
          for (int64_t r = 0; r < rows; ++r) sum += x[r * D + c];
          mean = sum / static_cast<double>(rows);
          for (int64_t r = 0; r < rows; ++r) sq += (x[r * D + c] - mean) * (x[r * D + c] - mean);
          var = sq / static_cast<double>(rows);
          running_mean[c] = static_cast<float>((1.0 - momentum_) * running_mean[c] + momentum_ * mean);
          running_var[c] = static_cast<float>((1.0 - momentum_) * running_var[c] + momentum_ * var * unbias);
        }
        const float m = static_cast<float>(mean), inv = static_cast<float>(1.0 / std::sqrt(var + eps_));
        rstd[c] = inv;
        for (int64_t r = 0; r < rows; ++r) {
          const float h = (x[r * D + c] - m) * inv;
          xhat[r * D + c] = h;
          y[r * D + c] = gain[c] * h + bias[c];
        }
      }
    });
  }

  // Inference: the running statistics, gain ⊙ (x − running_mean)/sqrt(running_var + eps) + bias.
  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const std::string scale = g.op("Sqrt", {g.op("Add", {l.params[3], g.scalar(static_cast<float>(eps_))})});
    const std::string normalised = g.op("Div", {g.op("Sub", {l.inputs[0], l.params[2]}), scale});
    g.add_node("Add", {g.op("Mul", {normalised, l.params[0]}), l.params[1]}, {l.outputs[0]});
    return true;
  }

  // With g = dy ⊙ gain, per feature over the rows: training (batch statistics depend on x):
  // dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)); evaluation (fixed statistics): dx = rstd·g.
  void backward(const BackwardContext& ctx) const override {
    const float* dy = ctx.output_grads[0].data();
    const int64_t D = ctx.output_grads[0].dim(-1), rows = ctx.output_grads[0].numel() / D;
    const float* gain = ctx.params[0].data();
    const float* xhat = ctx.saved[0].data();
    const float* rstd = ctx.saved[1].data();
    float *dgain = ctx.param_grads[0].data(), *dbias = ctx.param_grads[1].data();
    float* dx = ctx.input_grads.empty() || !ctx.input_grads[0].present() ? nullptr : ctx.input_grads[0].data();
    const bool training = ctx.step.training;
    float *mean_g = ctx.workspace[0].data(), *mean_gx = ctx.workspace[0].data() + D;
    for_feature_blocks(D, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double sum_dy = 0, sum_dyx = 0;
        for (int64_t r = 0; r < rows; ++r) {
          sum_dy += dy[r * D + c];
          sum_dyx += static_cast<double>(dy[r * D + c]) * xhat[r * D + c];
        }
        dgain[c] = static_cast<float>(sum_dyx);
        dbias[c] = static_cast<float>(sum_dy);
        mean_g[c] = training ? static_cast<float>(gain[c] * sum_dy / static_cast<double>(rows)) : 0.0f;
        mean_gx[c] = training ? static_cast<float>(gain[c] * sum_dyx / static_cast<double>(rows)) : 0.0f;
      }
    });
    if (!dx) return;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, 16), [&](const tbb::blocked_range<int64_t>& range) {
      for (int64_t r = range.begin(); r < range.end(); ++r)
        for (int64_t c = 0; c < D; ++c) {
          const float g = dy[r * D + c] * gain[c];
          dx[r * D + c] += rstd[c] * (g - mean_g[c] - xhat[r * D + c] * mean_gx[c]);
        }
    });
  }

 private:
  // fn(c0, c1) for blocks of features [c0, c1), one task each.
  template <class Fn>
  static void for_feature_blocks(int64_t D, Fn&& fn) {
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, D, 16),
                      [&](const tbb::blocked_range<int64_t>& cols) { fn(cols.begin(), cols.end()); });
  }

  double eps_, momentum_;
};

struct LayerNorm : Norm {
  explicit LayerNorm(const Attrs& a) : Norm(a, true) {}
};
struct RmsNorm : Norm {
  explicit RmsNorm(const Attrs& a) : Norm(a, false) {}
};

NodeSchema schema(std::string name, std::string doc) {
  NodeSchema s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.inputs = {{"x", "activations [..., D]"}};
  s.outputs = {{"y", "normalised activations [..., D]"}};
  s.attrs = {{"eps", AttrType::Float, AttrValue{1e-6}, "added to the variance (mean square) before the square root"}};
  for (auto [label, shape] : {std::pair<const char*, Shape>{"rows_3d", {2, 3, 5}}, {"rows_2d", {4, 6}}}) {
    GradCheckExample e;
    e.name = label;
    e.inputs = {CheckInput::real(shape)};
    s.examples.push_back(e);
  }
  GradCheckExample large_eps;
  large_eps.name = "large_eps";
  large_eps.attrs = {{"eps", AttrValue{0.5}}};
  large_eps.inputs = {CheckInput::real({2, 2, 4})};
  s.examples.push_back(large_eps);
  return s;
}

NodeSchema batch_norm_schema() {
  NodeSchema s = schema("norm.batch", "batch normalisation of each feature over the batch and time positions, with running "
                                      "statistics for evaluation (Ioffe & Szegedy 2015)");
  s.attrs.push_back({"momentum", AttrType::Float, AttrValue{0.1},
                     "weight of each training batch's statistics in the running ones (PyTorch's convention)"});
  s.examples.clear();
  for (auto [label, shape, training] : {std::tuple<const char*, Shape, bool>{"train_3d", {2, 3, 5}, true},
                                        {"train_2d", {6, 4}, true},
                                        {"eval_3d", {2, 3, 5}, false}}) {
    GradCheckExample e;
    e.name = label;
    e.inputs = {CheckInput::real(shape)};
    e.training = training;
    s.examples.push_back(e);
  }
  GradCheckExample momentum;
  momentum.name = "train_momentum_1";
  momentum.attrs = {{"momentum", AttrValue{1.0}}, {"eps", AttrValue{0.5}}};
  momentum.inputs = {CheckInput::real({3, 2, 3})};
  momentum.training = true;
  s.examples.push_back(momentum);
  return s;
}

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  registrar.add<LayerNorm>(schema("norm.layer", "layer normalisation over the last dimension (Ba et al. 2016)"));
  registrar.add<BatchNorm>(batch_norm_schema());
  registrar.add<RmsNorm>(schema("norm.rms", "root-mean-square normalisation over the last dimension (Zhang & Sennrich 2019)"));
}
