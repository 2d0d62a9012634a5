// tests/components/position_wise_test.cpp — positional encodings, norms and feed-forward networks
// against naive references written here, decoding offsets, and rejected settings.
#include "harness.h"

#include <cmath>

namespace attnlab::components_test {
namespace {

Attrs resolved(const std::string& type, Attrs a) { return component_registry().resolve_attrs(type, a); }


// ---- Positional encodings ------------------------------------------------------------------------

TEST(Posenc, SinusoidalAddsThePapersEncoding) {
  const int64_t B = 2, S = 7, D = 6;
  Tensor x = random_tensor({B, S, D});
  Driven d("posenc.sinusoidal", {}, {x.view()});
  d.forward();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t pos = 0; pos < S; ++pos)
      for (int64_t i = 0; i < D; ++i) {
        const double angle = pos / std::pow(10000.0, 2.0 * (i / 2) / D);
        const double pe = i % 2 == 0 ? std::sin(angle) : std::cos(angle);
        EXPECT_NEAR(d.outputs[0].data()[(b * S + pos) * D + i] - x.data()[(b * S + pos) * D + i], pe, 1e-5);
      }
}

TEST(Posenc, LearnedAddsTableRows) {
  Tensor x = random_tensor({2, 3, 4});
  Driven d("posenc.learned", resolved("posenc.learned", {{"max_len", int64_t{5}}}), {x.view()});
  ASSERT_EQ(d.shapes.params.size(), 1u);
  EXPECT_EQ(d.shapes.params[0].name, "table");
  EXPECT_EQ(d.shapes.params[0].shape, (Shape{5, 4}));
  d.forward();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t s = 0; s < 3; ++s)
      for (int64_t i = 0; i < 4; ++i)
        EXPECT_FLOAT_EQ(d.outputs[0].data()[(b * 3 + s) * 4 + i], x.data()[(b * 3 + s) * 4 + i] + d.params[0].data()[s * 4 + i]);
}

TEST(Posenc, IdentitySchemesLeaveEmbeddingsUnchanged) {
  for (const char* type : {"posenc.none", "posenc.rotary", "posenc.alibi"}) {
    Tensor x = random_tensor({2, 3, 4});
    Driven d(type, {}, {x.view()});
    EXPECT_TRUE(d.shapes.params.empty()) << type;
    d.forward();
    EXPECT_EQ(max_abs_diff(d.outputs[0].data(), x.data(), x.numel()), 0.0) << type;
  }
}

TEST(Posenc, DecodingOffsetsByPosition) {
  const int64_t B = 2, T = 5, D = 4;
  for (const char* type : {"posenc.sinusoidal", "posenc.learned", "posenc.none"}) {
    SCOPED_TRACE(type);
    Tensor x = random_tensor({B, T, D});
    Driven full(type, resolved(type, {}), {x.view()});
    full.forward();
    Tensor step_x({B, 1, D});
    Driven step(type, resolved(type, {}), {step_x.view()});
    step.copy_params_from(full);
    for (int64_t p = 0; p < T; ++p) {
      for (int64_t b = 0; b < B; ++b) std::copy_n(x.data() + (b * T + p) * D, D, step_x.data() + b * D);
      DecodeState state{p, {}, {}};
      step.forward(StepInfo{false, 0, &state});
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < D; ++i)
          EXPECT_FLOAT_EQ(step.outputs[0].data()[b * D + i], full.outputs[0].data()[(b * T + p) * D + i]) << "position " << p;
    }
  }
}

TEST(Posenc, LearnedRejectsInputLongerThanMaxLen) {
  NodeHandle node = component_registry().create("posenc.learned", {{"max_len", int64_t{4}}});
  try {
    node->infer(std::vector<Shape>{{2, 5, 3}});
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), "input length 5 exceeds max_len 4");
  }
  EXPECT_NO_THROW(node->infer(std::vector<Shape>{{2, 4, 3}}));
}

TEST(Posenc, LearnedRejectsDecodingPastMaxLen) {
  Tensor x = random_tensor({1, 1, 3});
  Driven d("posenc.learned", resolved("posenc.learned", {{"max_len", int64_t{4}}}), {x.view()});
  DecodeState state{4, {}, {}};
  try {
    d.forward(StepInfo{false, 0, &state});
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), "position 4 is beyond max_len 4");
  }
}

TEST(Posenc, InvalidSettings) {
  expect_rejected("posenc.learned", {{"max_len", int64_t{0}}}, "max_len must be at least 1, got 0");
  NodeHandle node = component_registry().create("posenc.sinusoidal", {});
  EXPECT_THROW(node->infer(std::vector<Shape>{{2, 3}}), ShapeError);
}

// ---- Norms ---------------------------------------------------------------------------------------

void check_norm(const std::string& type, double eps, bool centre) {
  const int64_t rows = 6, D = 10;
  Tensor x = random_tensor({2, 3, D}, 3.0f);
  Driven d(type, resolved(type, {{"eps", eps}}), {x.view()});
  d.forward();
  const float* gain = d.param("gain").data();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * D;
    double mean = 0.0, var = 0.0;
    if (centre) {
      for (int64_t i = 0; i < D; ++i) mean += xr[i];
      mean /= D;
    }
    for (int64_t i = 0; i < D; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= D;
    for (int64_t i = 0; i < D; ++i) {
      double want = gain[i] * (xr[i] - mean) / std::sqrt(var + eps);
      if (centre) want += d.param("bias").data()[i];
      EXPECT_NEAR(d.outputs[0].data()[r * D + i], want, 1e-4 * (1 + std::abs(want)));
    }
  }
}

TEST(Norm, LayerMatchesNaiveReference) {
  check_norm("norm.layer", 1e-6, true);
  check_norm("norm.layer", 0.3, true);
}

TEST(Norm, RmsMatchesNaiveReference) {
  check_norm("norm.rms", 1e-6, false);
  check_norm("norm.rms", 0.3, false);
}

TEST(Norm, ParametersAndDefaults) {
  Tensor x = random_tensor({4, 5});
  Driven layer("norm.layer", {}, {x.view()}), rms("norm.rms", {}, {x.view()});
  ASSERT_EQ(layer.shapes.params.size(), 2u);
  EXPECT_EQ(layer.shapes.params[0].name, "gain");
  EXPECT_EQ(layer.shapes.params[0].init, Init::Ones);
  EXPECT_EQ(layer.shapes.params[1].name, "bias");
  EXPECT_EQ(layer.shapes.params[1].init, Init::Zeros);
  ASSERT_EQ(rms.shapes.params.size(), 1u);
  EXPECT_EQ(rms.shapes.params[0].name, "gain");
  EXPECT_DOUBLE_EQ(component_registry().resolve_attrs("norm.layer", {}).get_float("eps"), 1e-6);
}

TEST(Norm, InvalidSettings) {
  expect_rejected("norm.layer", {{"eps", 0.0}}, "eps must be positive, got 0.0");
  expect_rejected("norm.rms", {{"eps", -1.0}}, "eps must be positive, got -1.0");
}

// ---- Feed-forward networks -----------------------------------------------------------------------

double relu(double h) { return h > 0 ? h : 0; }
double gelu_tanh(double h) { return 0.5 * h * (1 + std::tanh(std::sqrt(2 / M_PI) * (h + 0.044715 * h * h * h))); }
double silu(double u) { return u / (1 + std::exp(-u)); }

TEST(Ffn, ReluAndGeluMatchNaiveReference) {
  const int64_t N = 6, D = 5, H = 9;
  for (const char* type : {"ffn.relu", "ffn.gelu"}) {
    SCOPED_TRACE(type);
    Tensor x = random_tensor({2, 3, D});
    Driven d(type, resolved(type, {{"hidden", H}}), {x.view()});
    d.forward();
    const float *w1 = d.param("w1").data(), *b1 = d.param("b1").data(), *w2 = d.param("w2").data(),
                *b2 = d.param("b2").data();
    for (int64_t n = 0; n < N; ++n) {
      std::vector<double> a(H);
      for (int64_t j = 0; j < H; ++j) {
        double h = b1[j];
        for (int64_t i = 0; i < D; ++i) h += x.data()[n * D + i] * w1[i * H + j];
        a[j] = std::string(type) == "ffn.relu" ? relu(h) : gelu_tanh(h);
      }
      for (int64_t o = 0; o < D; ++o) {
        double y = b2[o];
        for (int64_t j = 0; j < H; ++j) y += a[j] * w2[j * D + o];
        EXPECT_NEAR(d.outputs[0].data()[n * D + o], y, 1e-4 * (1 + std::abs(y)));
      }
    }
  }
}

TEST(Ffn, SwiGluMatchesNaiveReference) {
  const int64_t N = 4, D = 6, H = 5;
  Tensor x = random_tensor({N, D});
  Driven d("ffn.swiglu", resolved("ffn.swiglu", {{"hidden", H}}), {x.view()});
  ASSERT_EQ(d.shapes.params.size(), 3u);
  d.forward();
  const float *w1 = d.param("w1").data(), *w3 = d.param("w3").data(), *w2 = d.param("w2").data();
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> a(H);
    for (int64_t j = 0; j < H; ++j) {
      double u = 0, v = 0;
      for (int64_t i = 0; i < D; ++i) {
        u += x.data()[n * D + i] * w1[i * H + j];
        v += x.data()[n * D + i] * w3[i * H + j];
      }
      a[j] = silu(u) * v;
    }
    for (int64_t o = 0; o < D; ++o) {
      double y = 0;
      for (int64_t j = 0; j < H; ++j) y += a[j] * w2[j * D + o];
      EXPECT_NEAR(d.outputs[0].data()[n * D + o], y, 1e-4 * (1 + std::abs(y)));
    }
  }
}

TEST(Ffn, ParameterShapes) {
  Tensor x = random_tensor({3, 4});
  Driven relu_ffn("ffn.relu", resolved("ffn.relu", {{"hidden", int64_t{8}}}), {x.view()});
  std::vector<std::pair<std::string, Shape>> got;
  for (const auto& p : relu_ffn.shapes.params) got.push_back({p.name, p.shape});
  EXPECT_EQ(got, (std::vector<std::pair<std::string, Shape>>{{"w1", {4, 8}}, {"b1", {8}}, {"w2", {8, 4}}, {"b2", {4}}}));
  Driven swiglu("ffn.swiglu", resolved("ffn.swiglu", {{"hidden", int64_t{8}}}), {x.view()});
  got.clear();
  for (const auto& p : swiglu.shapes.params) got.push_back({p.name, p.shape});
  EXPECT_EQ(got, (std::vector<std::pair<std::string, Shape>>{{"w1", {4, 8}}, {"w3", {4, 8}}, {"w2", {8, 4}}}));
}

TEST(Ffn, InvalidSettings) {
  expect_rejected("ffn.relu", {{"hidden", int64_t{0}}}, "hidden must be at least 1, got 0");
  expect_rejected("ffn.swiglu", {{"hidden", int64_t{-4}}}, "hidden must be at least 1, got -4");
}

}  // namespace
}  // namespace attnlab::components_test
