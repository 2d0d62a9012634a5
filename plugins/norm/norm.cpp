// plugins/norm/norm.cpp — normalisation over the last dimension (libattnlab_plugin_norm.so).
//
// Contract: x[..., D] → y[..., D], each row of D features normalised on its own.
//   norm.layer  y = gain ⊙ (x − mean) / sqrt(var + eps) + bias, var the biased (1/D) variance
//               (Ba et al. 2016, eq. 4); params gain[D] = 1, bias[D] = 0.
//   norm.rms    y = gain ⊙ x / sqrt(mean(x²) + eps) (Zhang & Sennrich 2019, eq. 4); param gain[D] = 1.
// eps defaults to 1e-6 (tensor2tensor's choice; PyTorch's LayerNorm uses 1e-5) and must be > 0.
// Saved for backward: the normalised rows x̂ and each row's reciprocal standard deviation.
// Backward ADDS into dx and ASSIGNS dgain (and dbias).
#include "node/plugin_api.h"

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
    tbb::parallel_for(int64_t{0}, rows, [&](int64_t r) {
      const float* xr = x.data() + r * D;
      double mean = 0.0;
      if (centre_) {
        for (int64_t d = 0; d < D; ++d) mean += xr[d];
        mean /= static_cast<double>(D);
      }
      double var = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const double c = xr[d] - mean;
        var += c * c;
      }
      var /= static_cast<double>(D);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + eps_));
      rstd[r] = inv;
      float* xh = xhat + r * D;
      float* yr = y + r * D;
      const float m = static_cast<float>(mean);
      for (int64_t d = 0; d < D; ++d) {
        xh[d] = (xr[d] - m) * inv;
        yr[d] = gain[d] * xh[d] + (bias ? bias[d] : 0.0f);
      }
    });
  }

  // With g = dy ⊙ gain: layer: dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)); rms: dx = rstd·(g − x̂·mean(g ⊙ x̂)).
  void backward(const BackwardContext& ctx) const override {
    const TensorView& dy = ctx.output_grads[0];
    const int64_t D = dy.dim(-1), rows = dy.numel() / D;
    const float* gain = ctx.params[0].data();
    const float* xhat = ctx.saved[0].data();
    const float* rstd = ctx.saved[1].data();
    Eigen::Map<const RowMajorMatrix> DY(dy.data(), rows, D), XH(xhat, rows, D);
    Eigen::Map<Eigen::RowVectorXf>(ctx.param_grads[0].data(), D) = (DY.array() * XH.array()).colwise().sum();
    if (centre_) Eigen::Map<Eigen::RowVectorXf>(ctx.param_grads[1].data(), D) = DY.colwise().sum();
    if (ctx.input_grads.empty() || !ctx.input_grads[0].present()) return;
    float* dx = ctx.input_grads[0].data();
    tbb::parallel_for(int64_t{0}, rows, [&](int64_t r) {
      const float* dyr = dy.data() + r * D;
      const float* xh = xhat + r * D;
      double sum_g = 0.0, sum_gx = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const double g = dyr[d] * gain[d];
        sum_g += g;
        sum_gx += g * xh[d];
      }
      const float mean_g = centre_ ? static_cast<float>(sum_g / D) : 0.0f;
      const float mean_gx = static_cast<float>(sum_gx / D);
      float* dxr = dx + r * D;
      for (int64_t d = 0; d < D; ++d) dxr[d] += rstd[r] * (dyr[d] * gain[d] - mean_g - xh[d] * mean_gx);
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
