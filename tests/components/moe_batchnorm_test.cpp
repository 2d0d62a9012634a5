// tests/components/moe_batchnorm_test.cpp — norm.batch (running statistics) and ffn.moe (routing,
// capacity, load-balancing loss, metrics) against naive references written here, their results
// under one and two threads, and their rejected settings.
#include "harness.h"

#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

namespace attnlab::components_test {
namespace {

Attrs resolved(const std::string& type, Attrs a) { return component_registry().resolve_attrs(type, a); }

size_t param_index(const Driven& d, const std::string& name) {
  for (size_t i = 0; i < d.shapes.params.size(); ++i)
    if (d.shapes.params[i].name == name) return i;
  throw std::out_of_range("no parameter " + name);
}

struct Collected final : StepReport {
  double aux = 0;
  int aux_calls = 0;
  std::map<std::string, double> metrics;
  void aux_loss(double value) override { aux += value, ++aux_calls; }
  void metric(const std::string& name, double value) override { metrics[name] += value; }
};

// ---- norm.batch ----------------------------------------------------------------------------------

TEST(BatchNorm, TrainingNormalisesEachFeatureOverTheRowsAndUpdatesTheRunningStatistics) {
  const int64_t rows = 6, D = 5;
  const double eps = 1e-5, momentum = 0.3;
  Tensor x = random_tensor({2, 3, D}, 2.0f);
  Driven d("norm.batch", resolved("norm.batch", {{"eps", eps}, {"momentum", momentum}}), {x.view()});
  EXPECT_EQ(d.shapes.params[param_index(d, "running_mean")].kind, ParamKind::State);
  EXPECT_EQ(d.shapes.params[param_index(d, "running_var")].kind, ParamKind::State);
  EXPECT_EQ(d.shapes.params[param_index(d, "gain")].kind, ParamKind::Trainable);
  const Tensor mean_before = d.param("running_mean"), var_before = d.param("running_var");
  d.forward(StepInfo{true, 1});
  const float *gain = d.param("gain").data(), *bias = d.param("bias").data();
  for (int64_t c = 0; c < D; ++c) {
    double mean = 0, var = 0;
    for (int64_t r = 0; r < rows; ++r) mean += x.data()[r * D + c];
    mean /= rows;
    for (int64_t r = 0; r < rows; ++r) var += (x.data()[r * D + c] - mean) * (x.data()[r * D + c] - mean);
    var /= rows;
    for (int64_t r = 0; r < rows; ++r) {
      const double want = gain[c] * (x.data()[r * D + c] - mean) / std::sqrt(var + eps) + bias[c];
      EXPECT_NEAR(d.outputs[0].data()[r * D + c], want, 1e-4 * (1 + std::abs(want)));
    }
    EXPECT_NEAR(d.param("running_mean").data()[c], (1 - momentum) * mean_before.data()[c] + momentum * mean, 1e-5);
    EXPECT_NEAR(d.param("running_var").data()[c], (1 - momentum) * var_before.data()[c] + momentum * var * rows / (rows - 1),
                1e-5);
  }
}

TEST(BatchNorm, EvaluationUsesTheRunningStatisticsAndLeavesThemAlone) {
  const int64_t rows = 4, D = 3;
  Tensor x = random_tensor({rows, D});
  Driven d("norm.batch", resolved("norm.batch", {}), {x.view()});
  Tensor& var = d.params[param_index(d, "running_var")];
  for (int64_t c = 0; c < D; ++c) var.data()[c] = 0.5f + static_cast<float>(c);  // positive
  const Tensor mean = d.param("running_mean"), var_before = var;
  d.forward(StepInfo{false, 1});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < D; ++c) {
      const double want = d.param("gain").data()[c] * (x.data()[r * D + c] - mean.data()[c]) / std::sqrt(var.data()[c] + 1e-6) +
                          d.param("bias").data()[c];
      EXPECT_NEAR(d.outputs[0].data()[r * D + c], want, 1e-4 * (1 + std::abs(want)));
    }
  EXPECT_EQ(max_abs_diff(var.data(), var_before.data(), D), 0.0);
  EXPECT_EQ(max_abs_diff(d.param("running_mean").data(), mean.data(), D), 0.0);
}

// Runs `fn` in an arena of `threads` threads.
template <class Fn>
void with_threads(int threads, Fn&& fn) {
  tbb::task_arena arena(threads);
  arena.execute(fn);
}

TEST(BatchNorm, OutputsAndRunningStatisticsAreTheSameForOneAndTwoThreads) {
  Tensor x = random_tensor({8, 33, 70});
  std::vector<Tensor> outputs, stats;
  for (int threads : {1, 2}) {
    Driven d("norm.batch", resolved("norm.batch", {}), {x.view()});
    for (size_t i = 0; i < d.params.size(); ++i) d.params[i] = Tensor(d.shapes.params[i].shape, 1.0f);
    with_threads(threads, [&] { d.forward(StepInfo{true, 1}); });
    outputs.push_back(d.outputs[0]);
    stats.push_back(d.param("running_var"));
  }
  EXPECT_EQ(max_abs_diff(outputs[0].data(), outputs[1].data(), outputs[0].numel()), 0.0);
  EXPECT_EQ(max_abs_diff(stats[0].data(), stats[1].data(), stats[0].numel()), 0.0);
}

TEST(BatchNorm, InvalidSettings) {
  expect_rejected("norm.batch", {{"momentum", 0.0}}, "momentum must be in (0, 1], got 0.0");
  expect_rejected("norm.batch", {{"momentum", 1.5}}, "momentum must be in (0, 1], got 1.5");
  expect_rejected("norm.batch", {{"eps", 0.0}}, "eps must be positive, got 0.0");
}

// ---- ffn.moe -------------------------------------------------------------------------------------

// The layer written out from its definition (plugins/ffn/moe.cpp), in double.
struct MoeReference {
  std::vector<double> y;
  std::vector<int64_t> served;
  int64_t dropped = 0;
  double aux = 0;
};

MoeReference moe_reference(const Driven& d, const Tensor& x, int64_t E, int64_t k, int64_t H, double capacity_factor,
                           double weight, bool training) {
  const int64_t D = x.shape().back(), N = x.numel() / D;
  const float *wg = d.param("w_g").data(), *w1 = d.param("w1").data(), *w2 = d.param("w2").data();
  std::vector<std::vector<double>> p(N, std::vector<double>(E));
  std::vector<std::vector<int64_t>> choice(N);
  for (int64_t t = 0; t < N; ++t) {
    double m = -1e300, sum = 0;
    for (int64_t e = 0; e < E; ++e) {
      double logit = 0;
      for (int64_t i = 0; i < D; ++i) logit += x.data()[t * D + i] * wg[i * E + e];
      p[t][e] = logit;
      m = std::max(m, logit);
    }
    for (int64_t e = 0; e < E; ++e) sum += p[t][e] = std::exp(p[t][e] - m);
    for (int64_t e = 0; e < E; ++e) p[t][e] /= sum;
    std::vector<int64_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[t][a] > p[t][b]; });
    choice[t].assign(order.begin(), order.begin() + k);
  }
  const int64_t capacity = training ? static_cast<int64_t>(std::ceil(capacity_factor * k * N / static_cast<double>(E))) : N;
  MoeReference ref;
  ref.served.assign(E, 0);
  std::vector<std::vector<bool>> kept(N, std::vector<bool>(k, false));
  for (int64_t j = 0; j < k; ++j)
    for (int64_t t = 0; t < N; ++t) {
      const int64_t e = choice[t][j];
      if (ref.served[e] < capacity) ++ref.served[e], kept[t][j] = true;
      else ++ref.dropped;
    }
  ref.y.assign(N * D, 0.0);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < k; ++j) {
      if (!kept[t][j]) continue;
      const int64_t e = choice[t][j];
      std::vector<double> h(H);
      for (int64_t u = 0; u < H; ++u) {
        for (int64_t i = 0; i < D; ++i) h[u] += x.data()[t * D + i] * w1[(e * D + i) * H + u];
        h[u] = std::max(h[u], 0.0);
      }
      for (int64_t o = 0; o < D; ++o) {
        double out = 0;
        for (int64_t u = 0; u < H; ++u) out += h[u] * w2[(e * H + u) * D + o];
        ref.y[t * D + o] += p[t][e] * out;
      }
    }
  double sum = 0;
  for (int64_t e = 0; e < E; ++e) {
    double f = 0, P = 0;
    for (int64_t t = 0; t < N; ++t) f += choice[t][0] == e, P += p[t][e];
    sum += (f / N) * (P / N);
  }
  ref.aux = weight * E * sum;
  return ref;
}

void check_moe(int64_t E, int64_t k, double capacity_factor, bool training, bool expect_drops) {
  SCOPED_TRACE("E " + std::to_string(E) + ", k " + std::to_string(k) + ", capacity factor " + std::to_string(capacity_factor) +
               (training ? ", training" : ", evaluation"));
  const int64_t H = 6;
  const double weight = 0.05;
  Tensor x = random_tensor({3, 5, 4});
  Driven d("ffn.moe",
           resolved("ffn.moe", {{"hidden", H}, {"experts", E}, {"k", k}, {"capacity_factor", capacity_factor},
                                {"aux_loss_weight", weight}}),
           {x.view()});
  Collected report;
  StepInfo step{training, 1};
  step.report = &report;
  d.forward(step);
  const MoeReference ref = moe_reference(d, x, E, k, H, capacity_factor, weight, training);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(d.outputs[0].data()[i], ref.y[i], 1e-4 * (1 + std::abs(ref.y[i]))) << i;
  EXPECT_EQ(ref.dropped > 0, expect_drops);
  if (!training) {
    EXPECT_TRUE(report.metrics.empty());
    EXPECT_EQ(report.aux_calls, 0);
    return;
  }
  EXPECT_EQ(report.aux_calls, 1);
  EXPECT_NEAR(report.aux, ref.aux, 1e-6);
  for (int64_t e = 0; e < E; ++e) EXPECT_EQ(report.metrics.at("expert_tokens." + std::to_string(e)), ref.served[e]) << e;
  EXPECT_EQ(report.metrics.at("dropped_tokens"), ref.dropped);
}

TEST(Moe, MatchesNaiveReference) {
  check_moe(3, 1, 2.0, true, false);  // Switch routing, room for everyone
  check_moe(4, 2, 0.5, true, true);   // top-2, capacity drops choices
  check_moe(3, 1, 0.4, true, true);
  check_moe(4, 2, 0.5, false, false);  // evaluation serves every choice
}

TEST(Moe, ATokenDroppedByEveryExpertGetsZero) {
  // One expert, capacity ceil(0.25 · 8 / 1) = 2: the first two tokens are served, the rest get 0
  // (in a model, the residual connection passes them through).
  Tensor x = random_tensor({8, 3});
  Driven d("ffn.moe", resolved("ffn.moe", {{"hidden", int64_t{4}}, {"experts", int64_t{1}}, {"capacity_factor", 0.25}}), {x.view()});
  d.forward(StepInfo{true, 1});
  for (int64_t t = 2; t < 8; ++t)
    for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(d.outputs[0].data()[t * 3 + c], 0.0f) << t;
  double served = 0;
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t c = 0; c < 3; ++c) served += std::abs(d.outputs[0].data()[t * 3 + c]);
  EXPECT_GT(served, 0.0);
}

TEST(Moe, ParameterCount) {
  Tensor x = random_tensor({2, 8});
  Driven d("ffn.moe", resolved("ffn.moe", {{"hidden", int64_t{16}}, {"experts", int64_t{4}}}), {x.view()});
  int64_t n = 0;
  for (const ParamSpec& p : d.shapes.params) n += numel(p.shape);
  EXPECT_EQ(n, 8 * 4 + 2 * 4 * 8 * 16);  // D·E + 2·E·D·hidden
}

TEST(Moe, OutputsAndGradientsAreTheSameForOneAndTwoThreads) {
  Tensor x = random_tensor({4, 40, 24});
  Tensor dy = random_tensor({4, 40, 24});
  std::vector<std::vector<Tensor>> results;
  for (int threads : {1, 2}) {
    Driven d("ffn.moe",
             resolved("ffn.moe", {{"hidden", int64_t{32}}, {"experts", int64_t{4}}, {"k", int64_t{2}}, {"capacity_factor", 0.8}}),
             {x.view()});
    rng().seed(7);  // the same parameters for both runs
    for (size_t i = 0; i < d.params.size(); ++i) d.params[i] = random_tensor(d.shapes.params[i].shape, 0.3f);
    Tensor dx(x.shape(), 0.0f);
    std::vector<Tensor> param_grads;
    for (const ParamSpec& p : d.shapes.params) param_grads.emplace_back(p.shape, 0.0f);
    with_threads(threads, [&] {
      d.forward(StepInfo{true, 1});
      auto p = views(d.params), o = views(d.outputs), s = views(d.saved), w = views(d.workspace), dp = views(param_grads);
      std::vector<TensorView> g = {dy.view()}, dxs = {dx.view()};
      StepInfo step{true, 1};
      step.objective_scale = 3.0;
      d.node->backward(BackwardContext{d.inputs, p, o, s, w, g, dxs, dp, step});
    });
    std::vector<Tensor> r = {d.outputs[0], dx};
    for (Tensor& t : param_grads) r.push_back(t);
    results.push_back(std::move(r));
  }
  for (size_t i = 0; i < results[0].size(); ++i)
    EXPECT_EQ(std::memcmp(results[0][i].data(), results[1][i].data(), sizeof(float) * results[0][i].numel()), 0) << "tensor " << i;
}

TEST(Moe, InvalidSettings) {
  expect_rejected("ffn.moe", {{"experts", int64_t{0}}}, "experts must be at least 1, got 0");
  expect_rejected("ffn.moe", {{"experts", int64_t{4}}, {"k", int64_t{5}}}, "k must be between 1 and experts (4), got 5");
  expect_rejected("ffn.moe", {{"k", int64_t{0}}}, "k must be between 1 and experts (4), got 0");
  expect_rejected("ffn.moe", {{"capacity_factor", 0.0}}, "capacity_factor must be positive, got 0.0");
  expect_rejected("ffn.moe", {{"aux_loss_weight", -0.1}}, "aux_loss_weight must be at least 0, got -0.1");
  expect_rejected("ffn.moe", {{"hidden", int64_t{0}}}, "hidden must be at least 1, got 0");
}

}  // namespace
}  // namespace attnlab::components_test
