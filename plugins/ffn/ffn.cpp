// plugins/ffn/ffn.cpp — position-wise feed-forward networks (libattnlab_plugin_ffn.so).
//
// Contract: x[..., D] → y[..., D], each position independently.
//   ffn.relu    y = relu(x·w1 + b1)·w2 + b2 (Vaswani et al. 2017, eq. 2); params w1[D,hidden], b1[hidden],
//               w2[hidden,D], b2[D].
//   ffn.gelu    the same with GELU in its tanh form,
//               gelu(h) = ½h(1 + tanh(√(2/π)(h + 0.044715h³))) (Hendrycks & Gimpel 2016, section 2).
//   ffn.swiglu  y = (silu(x·w1) ⊙ x·w3)·w2, silu(u) = u·σ(u) (Shazeer 2020, eq. 6); params w1, w3[D,hidden],
//               w2[hidden,D], no biases.
//   ffn.moe     a mixture of experts with top-k routing (moe.cpp).
// Saved for backward: the hidden pre-activations (both of them for swiglu) and the activated hidden
// layer. Backward ADDS into dx and ASSIGNS every parameter gradient.
#include "moe.h"
#include "node/onnx_lowering.h"
#include "node/plugin_api.h"
#include "tensor/gemm.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace {

using namespace attnlab;

enum class Activation { Relu, Gelu, SwiGlu };

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

// The activations are written over Eigen arrays, whose tanh and logistic are vectorised (rational
// and exponential approximations within a few ulp of libm's): libm's scalar tanhf made GELU a third
// of a GPT training step.

// tanh(√(2/π)(z + 0.044715z³)), GELU's inner term.
Eigen::ArrayXf gelu_tanh(const Eigen::Ref<const Eigen::ArrayXf>& z) { return (kSqrt2OverPi * (z + kGeluCubic * z.cube())).tanh(); }

// out[c] = Σ_r m[r, c]  (assigns). Rows are added as contiguous vectors (Eigen's colwise() on a
// row-major matrix walks columns with a stride and is several times slower), in column blocks so
// that each task owns its part of `out`.
void column_sums(const float* m, int64_t rows, int64_t cols, float* out) {
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, cols, 256), [&](const tbb::blocked_range<int64_t>& r) {
    Eigen::Map<Eigen::ArrayXf> acc(out + r.begin(), r.size());
    acc.setZero();
    for (int64_t i = 0; i < rows; ++i) acc += Eigen::Map<const Eigen::ArrayXf>(m + i * cols + r.begin(), r.size());
  });
}

class FeedForward : public Node {
 public:
  FeedForward(const Attrs& attrs, Activation act) : hidden_(attrs.get_int("hidden")), act_(act) {
    if (hidden_ < 1) throw std::invalid_argument("hidden must be at least 1, got " + std::to_string(hidden_));
  }

  NodeShapes infer(std::span<const Shape> in) const override {
    if (in.size() != 1) throw ShapeError("expects one input x [..., width]");
    const Shape& x = in[0];
    if (x.empty() || x.back() < 1) throw ShapeError("x must have a non-empty last dimension, got " + to_string(x));
    const int64_t D = x.back(), rows = numel(x) / D, H = hidden_;
    NodeShapes s;
    s.outputs = {x};
    if (act_ == Activation::SwiGlu) {
      s.params = {{"w1", {D, H}}, {"w3", {D, H}}, {"w2", {H, D}}};
      s.saved = {{rows, H}, {rows, H}, {rows, H}};  // x·w1, x·w3, activated
      s.workspace = {{rows, H}, {rows, H}};         // d(x·w1), d(x·w3)
    } else {
      s.params = {{"w1", {D, H}}, {"b1", {H}, Init::Zeros}, {"w2", {H, D}}, {"b2", {D}, Init::Zeros}};
      // ReLU's derivative is read off its output (relu(z) > 0 exactly when z > 0), so only the
      // activation is kept: half the FFN's saved memory, the largest activations of a layer.
      if (act_ == Activation::Relu) s.saved = {{rows, H}};  // activated
      else s.saved = {{rows, H}, {rows, H}};                // pre-activation, activated
      s.workspace = {{rows, H}};                            // d(pre-activation)
    }
    return s;
  }

  void forward(const ForwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t D = x.dim(-1), N = x.numel() / D, H = hidden_;
    float* y = ctx.outputs[0].data();
    if (act_ == Activation::SwiGlu) {
      float* u = ctx.saved[0].data();
      float* v = ctx.saved[1].data();
      float* a = ctx.saved[2].data();
      gemm(Trans::No, Trans::No, N, H, D, 1.0f, x.data(), D, ctx.params[0].data(), H, 0.0f, u, H);
      gemm(Trans::No, Trans::No, N, H, D, 1.0f, x.data(), D, ctx.params[1].data(), H, 0.0f, v, H);
      in_chunks(N * H, [&](int64_t begin, int64_t n) {
        const ConstArrayMap uc(u + begin, n), vc(v + begin, n);
        ArrayMap(a + begin, n) = uc * uc.logistic() * vc;
      });
      gemm(Trans::No, Trans::No, N, D, H, 1.0f, a, H, ctx.params[2].data(), D, 0.0f, y, D);
      return;
    }
    const float* b1 = ctx.params[1].data();
    if (act_ == Activation::Relu) {
      float* a = ctx.saved[0].data();  // x·w1 + b1, then its ReLU in place
      gemm(Trans::No, Trans::No, N, H, D, 1.0f, x.data(), D, ctx.params[0].data(), H, 0.0f, a, H);
      by_rows(N, H, [&](float* row) {
        for (int64_t j = 0; j < H; ++j) {
          const float z = row[j] + b1[j];
          row[j] = z > 0.0f ? z : 0.0f;
        }
      }, a);
      gemm(Trans::No, Trans::No, N, D, H, 1.0f, a, H, ctx.params[2].data(), D, 0.0f, y, D);
      Eigen::Map<RowMajorMatrix>(y, N, D).rowwise() += Eigen::Map<const Eigen::RowVectorXf>(ctx.params[3].data(), D);
      return;
    }
    float* h = ctx.saved[0].data();
    float* a = ctx.saved[1].data();
    gemm(Trans::No, Trans::No, N, H, D, 1.0f, x.data(), D, ctx.params[0].data(), H, 0.0f, h, H);
    by_rows(N, H, [&](float* row) {  // GELU, tanh form
      ArrayMap z(row, H);
      z += ConstArrayMap(b1, H);
      ArrayMap(a + (row - h), H) = 0.5f * z * (1.0f + gelu_tanh(z));
    }, h);
    gemm(Trans::No, Trans::No, N, D, H, 1.0f, a, H, ctx.params[2].data(), D, 0.0f, y, D);
    Eigen::Map<RowMajorMatrix>(y, N, D).rowwise() += Eigen::Map<const Eigen::RowVectorXf>(ctx.params[3].data(), D);
  }

  void backward(const BackwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t D = x.dim(-1), N = x.numel() / D, H = hidden_;
    const float* dy = ctx.output_grads[0].data();
    const bool want_dx = !ctx.input_grads.empty() && ctx.input_grads[0].present();
    if (act_ == Activation::SwiGlu) {
      const float* u = ctx.saved[0].data();
      const float* v = ctx.saved[1].data();
      const float* a = ctx.saved[2].data();
      float* du = ctx.workspace[0].data();
      float* dv = ctx.workspace[1].data();
      const float* w2 = ctx.params[2].data();
      gemm(Trans::Yes, Trans::No, H, D, N, 1.0f, a, H, dy, D, 0.0f, ctx.param_grads[2].data(), D);
      gemm(Trans::No, Trans::Yes, N, H, D, 1.0f, dy, D, w2, D, 0.0f, du, H);  // d(activated)
      in_chunks(N * H, [&](int64_t begin, int64_t n) {
        const ConstArrayMap uc(u + begin, n), vc(v + begin, n);
        ArrayMap da(du + begin, n);
        const Eigen::ArrayXf s = uc.logistic();
        ArrayMap(dv + begin, n) = da * uc * s;
        da *= vc * (s * (1.0f + uc * (1.0f - s)));
      });
      gemm(Trans::Yes, Trans::No, D, H, N, 1.0f, x.data(), D, du, H, 0.0f, ctx.param_grads[0].data(), H);
      gemm(Trans::Yes, Trans::No, D, H, N, 1.0f, x.data(), D, dv, H, 0.0f, ctx.param_grads[1].data(), H);
      if (want_dx) {
        float* dx = ctx.input_grads[0].data();
        gemm(Trans::No, Trans::Yes, N, D, H, 1.0f, du, H, ctx.params[0].data(), H, 1.0f, dx, D);
        gemm(Trans::No, Trans::Yes, N, D, H, 1.0f, dv, H, ctx.params[1].data(), H, 1.0f, dx, D);
      }
      return;
    }
    const bool relu = act_ == Activation::Relu;
    const float* h = relu ? nullptr : ctx.saved[0].data();
    const float* a = ctx.saved[relu ? 0 : 1].data();
    float* dh = ctx.workspace[0].data();
    gemm(Trans::Yes, Trans::No, H, D, N, 1.0f, a, H, dy, D, 0.0f, ctx.param_grads[2].data(), D);
    column_sums(dy, N, D, ctx.param_grads[3].data());
    gemm(Trans::No, Trans::Yes, N, H, D, 1.0f, dy, D, ctx.params[2].data(), D, 0.0f, dh, H);
    if (relu) {
      elementwise(N * H, [&](int64_t i) { dh[i] = a[i] > 0.0f ? dh[i] : 0.0f; });
    } else {
      in_chunks(N * H, [&](int64_t begin, int64_t n) {
        const ConstArrayMap z(h + begin, n);
        const Eigen::ArrayXf t = gelu_tanh(z);
        const Eigen::ArrayXf dt = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * z.square()) * (1.0f - t.square());
        ArrayMap(dh + begin, n) *= 0.5f * (1.0f + t) + 0.5f * z * dt;
      });
    }
    gemm(Trans::Yes, Trans::No, D, H, N, 1.0f, x.data(), D, dh, H, 0.0f, ctx.param_grads[0].data(), H);
    column_sums(dh, N, H, ctx.param_grads[1].data());
    if (want_dx) gemm(Trans::No, Trans::Yes, N, D, H, 1.0f, dh, H, ctx.params[0].data(), H, 1.0f, ctx.input_grads[0].data(), D);
  }

 private:
  // Applies f(begin, count) to [0, n) in parallel chunks.
  template <class F>
  static void in_chunks(int64_t n, F&& f) {
    constexpr int64_t kChunk = 16384;
    tbb::parallel_for(int64_t{0}, (n + kChunk - 1) / kChunk, [&](int64_t c) {
      const int64_t begin = c * kChunk;
      f(begin, std::min(n, begin + kChunk) - begin);
    });
  }
  // Applies f to indices [0, n) in parallel chunks.
  template <class F>
  static void elementwise(int64_t n, F&& f) {
    in_chunks(n, [&](int64_t begin, int64_t count) {
      for (int64_t i = begin; i < begin + count; ++i) f(i);
    });
  }

  // Applies f to each row of the rows x cols matrix at m, in parallel blocks of rows: the inner
  // loop over a row's columns indexes the bias directly (no i % cols per element), so it vectorises.
  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const std::string& x = l.inputs[0];
    if (act_ == Activation::SwiGlu) {
      const std::string u = g.op("MatMul", {x, l.params[0]}), v = g.op("MatMul", {x, l.params[1]});
      const std::string a = g.op("Mul", {g.op("Mul", {u, g.op("Sigmoid", {u})}), v});
      g.add_node("MatMul", {a, l.params[2]}, {l.outputs[0]});
      return true;
    }
    const std::string z = g.affine(x, l.params[0], l.params[1], g.fresh("hidden"));
    std::string a;
    if (act_ == Activation::Relu) {
      a = g.op("Relu", {z});
    } else {  // ½z(1 + tanh(√(2/π)(z + 0.044715z³)))
      const std::string cube = g.op("Mul", {g.op("Mul", {z, z}), z});
      const std::string inner = g.op("Mul", {g.op("Add", {z, g.op("Mul", {cube, g.scalar(kGeluCubic)})}), g.scalar(kSqrt2OverPi)});
      a = g.op("Mul", {g.op("Mul", {z, g.scalar(0.5f)}), g.op("Add", {g.op("Tanh", {inner}), g.scalar(1.0f)})});
    }
    g.affine(a, l.params[2], l.params[3], l.outputs[0]);
    return true;
  }

  template <class F>
  static void by_rows(int64_t rows, int64_t cols, F&& f, float* m) {
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols));
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, grain), [&](const tbb::blocked_range<int64_t>& r) {
      for (int64_t i = r.begin(); i < r.end(); ++i) f(m + i * cols);
    });
  }

  int64_t hidden_;
  Activation act_;
};

struct ReluFfn : FeedForward {
  explicit ReluFfn(const Attrs& a) : FeedForward(a, Activation::Relu) {}
};
struct GeluFfn : FeedForward {
  explicit GeluFfn(const Attrs& a) : FeedForward(a, Activation::Gelu) {}
};
struct SwiGluFfn : FeedForward {
  explicit SwiGluFfn(const Attrs& a) : FeedForward(a, Activation::SwiGlu) {}
};

using ExampleShape = std::tuple<const char*, int64_t, Shape>;  // name, hidden, input shape

NodeSchema schema(std::string name, std::string doc, std::vector<ExampleShape> examples) {
  NodeSchema s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.inputs = {{"x", "activations [..., D]"}};
  s.outputs = {{"y", "activations [..., D]"}};
  s.attrs = {{"hidden", AttrType::Int, AttrValue{int64_t{2048}}, "width of the hidden layer"}};
  for (const auto& [label, hidden, shape] : examples) {
    GradCheckExample e;
    e.name = label;
    e.attrs = {{"hidden", AttrValue{hidden}}};
    e.inputs = {CheckInput::real(shape)};
    s.examples.push_back(e);
  }
  return s;
}

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  const std::vector<ExampleShape> smooth = {{"rows_3d", 7, {2, 3, 4}}, {"rows_2d_narrow", 3, {5, 6}}};
  // ReLU has a kink at 0: central differences are wrong for a pre-activation within a step of it.
  // These sizes are small enough that, for the gradient check's fixed random draw, none is.
  const std::vector<ExampleShape> relu = {{"rows_3d", 6, {2, 3, 4}}, {"rows_2d_narrow", 3, {5, 6}}};
  registrar.add<ReluFfn>(schema("ffn.relu", "position-wise feed-forward network with ReLU (Vaswani et al. 2017)", relu));
  registrar.add<GeluFfn>(schema("ffn.gelu", "position-wise feed-forward network with GELU, tanh form", smooth));
  registrar.add<SwiGluFfn>(
      schema("ffn.swiglu", "gated feed-forward network (silu(x w1) * x w3) w2 (Shazeer 2020)", smooth));
  register_moe(registrar);
}
