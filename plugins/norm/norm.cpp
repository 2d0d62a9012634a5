// plugins/norm/norm.cpp — normalisation over the last dimension (libattnlab_plugin_norm.so).
//
// Contract: x[..., D] → y[..., D], each row of D features normalised on its own.
//   norm.layer  y = gain ⊙ (x − mean) / sqrt(var + eps) + bias, var the biased (1/D) variance
//               (Ba et al. 2016, eq. 4); params gain[D] = 1, bias[D] = 0.
//   norm.rms    y = gain ⊙ x / sqrt(mean(x²) + eps) (Zhang & Sennrich 2019, eq. 4); param gain[D] = 1.
// eps defaults to 1e-6 (tensor2tensor's choice; PyTorch's LayerNorm uses 1e-5) and must be > 0.
// Saved for backward: the normalised rows x̂ and each row's reciprocal standard deviation.
// Backward ADDS into dx and ASSIGNS dgain (and dbias).
#include "node/onnx_lowering.h"
#include "node/plugin_api.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <stdexcept>

namespace {

using namespace attnlab;

class Norm : public Node {
 public:
  Norm(const Attrs& attrs, bool centre) : eps_(static_cast<float>(attrs.get_float("eps"))), centre_(centre) {
    if (!(attrs.get_float("eps") > 0.0))
      throw std::invalid_argument("eps must be positive, got " + to_string(attrs.get("eps")));
  }

  NodeShapes infer(std::span<const Shape> in) const override {
    if (in.size() != 1) throw ShapeError("expects one input x [..., width]");
    const Shape& x = in[0];
    if (x.empty() || x.back() < 1) throw ShapeError("x must have a non-empty last dimension, got " + to_string(x));
    const int64_t D = x.back(), rows = numel(x) / D;
    NodeShapes s;
    s.outputs = {x};
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

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  registrar.add<LayerNorm>(schema("norm.layer", "layer normalisation over the last dimension (Ba et al. 2016)"));
  registrar.add<RmsNorm>(schema("norm.rms", "root-mean-square normalisation over the last dimension (Zhang & Sennrich 2019)"));
}
