// Adam against steps computed by hand, clipping, gradient scaling and accumulation, determinism
// across thread counts, and state export/import.
#include "train/optimizer.h"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <random>

namespace attnlab::train {
namespace {

struct TestParam {
  std::string name;
  Tensor value;
  Tensor grad;
  ParamRef ref() const { return {name, value.view(), grad.view()}; }
};

std::vector<ParamRef> refs(const std::vector<TestParam>& params) {
  std::vector<ParamRef> out;
  for (const TestParam& p : params) out.push_back(p.ref());
  return out;
}

template <class F>
void expect_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    FAIL() << "expected an OptimizerError";
  } catch (const OptimizerError& e) {
    for (const std::string& s : fragments) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
  }
}

TEST(Adam, DefaultsAreThePapers) {
  AdamConfig c;
  EXPECT_DOUBLE_EQ(c.beta1, 0.9);
  EXPECT_DOUBLE_EQ(c.beta2, 0.98);
  EXPECT_DOUBLE_EQ(c.eps, 1e-9);
  EXPECT_DOUBLE_EQ(c.clip_norm, 0.0);
}

// Two steps worked out by hand (β1=0.9, β2=0.98, lr=0.1):
//   step 1, g=[0.5,-1]: m=[0.05,-0.1], v=[0.005,0.02]; m̂=g, v̂=g²; θ -= 0.1·sign(g) → [0.9,-1.9]
//   step 2, g=[0.5, 1]: m=[0.095,0.01], v=[0.0099,0.0396]; m̂=m/0.19=[0.5,0.0526316],
//   v̂=v/0.0396=[0.25,1]; θ -= 0.1·m̂/sqrt(v̂) = [0.1, 0.00526316] → [0.8, -1.90526316]
TEST(Adam, TwoStepsMatchHandComputation) {
  std::vector<TestParam> params{{"w", Tensor({2}, {1.0f, -2.0f}), Tensor({2}, {0.5f, -1.0f})}};
  Adam adam;
  auto p = refs(params);
  adam.step(p, 0.1);
  EXPECT_NEAR(params[0].value.data()[0], 0.9f, 1e-6);
  EXPECT_NEAR(params[0].value.data()[1], -1.9f, 1e-6);
  params[0].grad.data()[1] = 1.0f;
  adam.step(p, 0.1);
  EXPECT_NEAR(params[0].value.data()[0], 0.8f, 1e-6);
  EXPECT_NEAR(params[0].value.data()[1], -1.9 - 0.1 * (0.01 / 0.19), 1e-6);
  EXPECT_EQ(adam.steps(), 2);
  const AdamState s = adam.export_state();
  ASSERT_EQ(s.slots.size(), 1u);
  EXPECT_NEAR(s.slots[0].m.data()[0], 0.095f, 1e-7);
  EXPECT_NEAR(s.slots[0].m.data()[1], 0.01f, 1e-7);
  EXPECT_NEAR(s.slots[0].v.data()[0], 0.0099f, 1e-7);
  EXPECT_NEAR(s.slots[0].v.data()[1], 0.0396f, 1e-7);
}

// AdamW by hand (β1=0.9, β2=0.99, ε=1e-8, λ=0.1, lr=0.01): the matrix w decays, the bias b does not.
//   w = [2], g = [1]: decay 2·(1 − 0.01·0.1) = 1.998; m̂ = 1, v̂ = 1, step 0.01·1/(1 + 1e-8) → 1.988
//   b = [2], g = [1]: no decay; 2 − 0.01/(1 + 1e-8) → 1.99
//   step 2, g = [1] again: m̂ = 1, v̂ = 1; w: 1.988·0.999 − 0.01 = 1.976012; b: 1.98
TEST(AdamW, DecoupledDecayOnlyOnMarkedParameters) {
  std::vector<TestParam> params{{"w", Tensor({1}, {2.0f}), Tensor({1}, {1.0f})}, {"b", Tensor({1}, {2.0f}), Tensor({1}, {1.0f})}};
  Adam adam(AdamConfig{0.9, 0.99, 1e-8, 0.0, 0.1});
  auto p = refs(params);
  p[0].decay = true;
  adam.step(p, 0.01);
  EXPECT_NEAR(params[0].value.data()[0], 1.988f, 1e-6);
  EXPECT_NEAR(params[1].value.data()[0], 1.99f, 1e-6);
  adam.step(p, 0.01);
  EXPECT_NEAR(params[0].value.data()[0], 1.976012f, 1e-6);
  EXPECT_NEAR(params[1].value.data()[0], 1.98f, 1e-6);
}

TEST(AdamW, NegativeWeightDecayIsRefused) {
  expect_error([] { Adam adam(AdamConfig{0.9, 0.99, 1e-8, 0.0, -0.1}); }, {"adam: weight_decay must be finite and >= 0"});
}

// ε is added to sqrt(v̂) (Algorithm 1), not to sqrt(v) with a corrected step size: with g = ε = 1e-9
// on the first step, m̂ = 1e-9 and sqrt(v̂) = 1e-9, so the step is lr · 1e-9 / 2e-9 = lr / 2. (The
// "ε-hat" form would give lr · sqrt(0.02)/0.1 · 1e-10 / (sqrt(0.02)·1e-9 + 1e-9) ≈ 0.124 · lr.)
TEST(Adam, EpsilonIsAddedToTheBiasCorrectedRootOfV) {
  std::vector<TestParam> params{{"w", Tensor({1}, {0.0f}), Tensor({1}, {1e-9f})}};
  Adam adam;
  auto p = refs(params);
  adam.step(p, 1.0);
  EXPECT_NEAR(params[0].value.data()[0], -0.5f, 1e-5);
}

TEST(Adam, ZeroGradientLeavesParameterUnchanged) {
  std::vector<TestParam> params{{"w", Tensor({3}, {1, 2, 3}), Tensor({3}, 0.0f)}};
  Adam adam;
  auto p = refs(params);
  adam.step(p, 0.5);
  EXPECT_EQ(params[0].value.data()[0], 1.0f);
  EXPECT_EQ(params[0].value.data()[2], 3.0f);
}

TEST(Adam, ConfigurableBetas) {
  // β1 = 0: m̂ = g; β2 = 0: v̂ = g²; every step is lr·sign(g) regardless of history.
  std::vector<TestParam> params{{"w", Tensor({1}, {0.0f}), Tensor({1}, {3.0f})}};
  Adam adam(AdamConfig{0.0, 0.0, 1e-9, 0.0});
  auto p = refs(params);
  adam.step(p, 0.25);
  params[0].grad.data()[0] = -0.01f;
  adam.step(p, 0.25);
  EXPECT_NEAR(params[0].value.data()[0], 0.0f, 1e-6);
}

TEST(Adam, GradScaleAndClippingByGlobalNorm) {
  // Gradients [3, 0] and [4]: global norm 5. grad_scale 2 → norm 10; clip to 1 → factor 0.1.
  std::vector<TestParam> params{{"a", Tensor({2}, {0, 0}), Tensor({2}, {3, 0})}, {"b", Tensor({1}, {0}), Tensor({1}, {4})}};
  Adam adam(AdamConfig{0.9, 0.98, 1e-9, 1.0});
  auto p = refs(params);
  const StepStats stats = adam.step(p, 0.1, 2.0);
  EXPECT_NEAR(stats.grad_norm, 10.0, 1e-9);
  EXPECT_TRUE(stats.clipped);
  EXPECT_NEAR(stats.clip_factor, 0.1, 1e-12);
  const AdamState s = adam.export_state();
  // m = (1−β1)·g_clipped = 0.1 · (g · 2 · 0.1)
  for (const auto& slot : s.slots) {
    if (slot.name == "a") {
      EXPECT_NEAR(slot.m.data()[0], 0.1 * 3 * 0.2, 1e-7);
    }
    if (slot.name == "b") {
      EXPECT_NEAR(slot.m.data()[0], 0.1 * 4 * 0.2, 1e-7);
    }
  }
  // The caller's gradients are not modified.
  EXPECT_EQ(params[0].grad.data()[0], 3.0f);
  EXPECT_EQ(params[1].grad.data()[0], 4.0f);
}

TEST(Adam, NoClippingBelowTheThreshold) {
  std::vector<TestParam> params{{"a", Tensor({2}, {0, 0}), Tensor({2}, {0.3f, 0.4f})}};
  Adam adam(AdamConfig{0.9, 0.98, 1e-9, 1.0});
  auto p = refs(params);
  const StepStats stats = adam.step(p, 0.1);
  EXPECT_FALSE(stats.clipped);
  EXPECT_NEAR(stats.grad_norm, 0.5, 1e-7);
  EXPECT_NEAR(adam.export_state().slots[0].m.data()[1], 0.1 * 0.4, 1e-8);
}

TEST(Adam, ResultDoesNotDependOnThreadCount) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  auto make = [&] {
    std::vector<TestParam> ps;
    for (int i = 0; i < 3; ++i) {
      // (append, not const char* + std::string: GCC 12 warns falsely, -Wrestrict, on the latter.)
      TestParam p{std::string("p").append(std::to_string(i)), Tensor({40000 + i * 17}), Tensor({40000 + i * 17})};
      ps.push_back(std::move(p));
    }
    return ps;
  };
  auto one = make(), two = make();
  for (size_t i = 0; i < one.size(); ++i)
    for (int64_t j = 0; j < one[i].value.numel(); ++j) {
      one[i].value.data()[j] = two[i].value.data()[j] = normal(rng);
      one[i].grad.data()[j] = two[i].grad.data()[j] = normal(rng);
    }
  Adam a(AdamConfig{0.9, 0.98, 1e-9, 50.0}), b(AdamConfig{0.9, 0.98, 1e-9, 50.0});
  double norm_a, norm_b;
  {
    tbb::global_control one_thread(tbb::global_control::max_allowed_parallelism, 1);
    auto p = refs(one);
    a.step(p, 1e-3);
    norm_a = a.step(p, 1e-3).grad_norm;
  }
  {
    auto p = refs(two);
    b.step(p, 1e-3);
    norm_b = b.step(p, 1e-3).grad_norm;
  }
  EXPECT_EQ(norm_a, norm_b);
  for (size_t i = 0; i < one.size(); ++i)
    for (int64_t j = 0; j < one[i].value.numel(); ++j) ASSERT_EQ(one[i].value.data()[j], two[i].value.data()[j]) << i << "," << j;
}

TEST(Adam, ExportImportContinuesIdentically) {
  auto make = [] {
    return std::vector<TestParam>{{"x", Tensor({2, 2}, {1, 2, 3, 4}), Tensor({2, 2})}, {"y", Tensor({3}, {-1, 0, 1}), Tensor({3})}};
  };
  auto grads = [](std::vector<TestParam>& ps, int step) {
    for (auto& p : ps)
      for (int64_t j = 0; j < p.grad.numel(); ++j) p.grad.data()[j] = std::sin(float(step * 7 + j)) * (1 + j);
  };
  auto straight = make();
  Adam a;
  for (int s = 1; s <= 3; ++s) {
    grads(straight, s);
    auto p = refs(straight);
    a.step(p, 0.01);
  }
  auto resumed = make();
  Adam b;
  for (int s = 1; s <= 2; ++s) {
    grads(resumed, s);
    auto p = refs(resumed);
    b.step(p, 0.01);
  }
  Adam c;
  // Import in another order than the export.
  auto resumed_refs = refs(resumed);
  std::swap(resumed_refs[0], resumed_refs[1]);
  c.import_state(b.export_state(), resumed_refs);
  EXPECT_EQ(c.steps(), 2);
  grads(resumed, 3);
  c.step(resumed_refs, 0.01);
  for (size_t i = 0; i < straight.size(); ++i)
    for (int64_t j = 0; j < straight[i].value.numel(); ++j) EXPECT_EQ(straight[i].value.data()[j], resumed[i].value.data()[j]);
}

TEST(Adam, ImportRejectsMismatchedStateNamingParameters) {
  std::vector<TestParam> params{{"enc.w", Tensor({2}), Tensor({2})}, {"dec.w", Tensor({3}), Tensor({3})}};
  AdamState state;
  state.step = 4;
  state.slots.push_back({"enc.w", Tensor({5}), Tensor({5})});
  state.slots.push_back({"old.w", Tensor({3}), Tensor({3})});
  Adam adam;
  auto p = refs(params);
  expect_error([&] { adam.import_state(state, p, "run/step-10.ckpt"); },
               {"run/step-10.ckpt", "no state for: 'dec.w'", "unknown parameters: 'old.w'", "'enc.w' is [5] in the state, [2] in the model"});
  EXPECT_EQ(adam.steps(), 0);  // unchanged after a failed import
}

TEST(Adam, UserErrors) {
  expect_error([] { Adam a(AdamConfig{1.0, 0.98, 1e-9, 0}); }, {"beta1", "[0, 1)"});
  expect_error([] { Adam a(AdamConfig{0.9, -0.1, 1e-9, 0}); }, {"beta2"});
  expect_error([] { Adam a(AdamConfig{0.9, 0.98, 0.0, 0}); }, {"eps"});
  expect_error([] { Adam a(AdamConfig{0.9, 0.98, 1e-9, -1}); }, {"clip_norm"});

  Adam adam;
  std::vector<TestParam> params{{"w", Tensor({2}), Tensor({2})}};
  auto p = refs(params);
  expect_error([&] { adam.step(p, -1.0); }, {"learning rate"});
  expect_error([&] { adam.step(p, NAN); }, {"learning rate"});
  adam.step(p, 0.1);
  std::vector<TestParam> reshaped{{"w", Tensor({3}), Tensor({3})}};
  auto r = refs(reshaped);
  expect_error([&] { adam.step(r, 0.1); }, {"'w' changed shape", "[2]", "[3]"});
  std::vector<ParamRef> twice{p[0], p[0]};
  expect_error([&] { adam.step(twice, 0.1); }, {"'w' is passed twice"});
  std::vector<ParamRef> absent{{"g", params[0].value.view(), TensorView()}};
  expect_error([&] { adam.step(absent, 0.1); }, {"'g'", "absent"});
  Tensor other({4});
  std::vector<ParamRef> mismatched{{"h", params[0].value.view(), other.view()}};
  expect_error([&] { adam.step(mismatched, 0.1); }, {"'h'", "[2]", "[4]"});
}

TEST(Adam, NonFiniteGradientChangesNothing) {
  std::vector<TestParam> params{{"a", Tensor({2}, {1, 2}), Tensor({2}, {0.1f, 0.2f})}, {"b", Tensor({3}, {3, 4, 5}), Tensor({3}, {0, NAN, 0})}};
  Adam adam;
  auto p = refs(params);
  expect_error([&] { adam.step(p, 0.1); }, {"non-finite gradient at update 1", "parameter 'b' element 1 is nan", "no parameter was changed"});
  EXPECT_EQ(adam.steps(), 0);
  EXPECT_EQ(params[0].value.data()[0], 1.0f);
  EXPECT_TRUE(adam.export_state().slots.empty() || adam.export_state().slots[0].m.data()[0] == 0.0f);
  params[1].grad.data()[1] = INFINITY;
  expect_error([&] { adam.step(p, 0.1); }, {"'b' element 1 is inf"});
  params[1].grad.data()[1] = 0;
  adam.step(p, 0.1);  // recovers once the gradient is finite
  EXPECT_EQ(adam.steps(), 1);
}

TEST(GlobalGradNorm, SumsOverAllParameters) {
  std::vector<TestParam> params{{"a", Tensor({2}), Tensor({2}, {1, 2})}, {"b", Tensor({2}), Tensor({2}, {2, 4})}};
  auto p = refs(params);
  EXPECT_NEAR(global_grad_norm(p), 5.0, 1e-12);
  EXPECT_NEAR(global_grad_norm(p, 0.5), 2.5, 1e-12);
}

TEST(GradientAccumulator, WeightedSumThenMeanEqualsLargeBatchGradient) {
  // Micro-batch gradients are per-token means; weighting them by token count and dividing by the
  // total gives the gradient of the whole batch's per-token mean.
  std::vector<TestParam> params{{"w", Tensor({2}, {0, 0}), Tensor({2})}};
  auto p = refs(params);
  GradientAccumulator acc;
  params[0].grad.data()[0] = 1.0f, params[0].grad.data()[1] = -2.0f;
  acc.accumulate(p, 10);  // 10 tokens
  params[0].grad.data()[0] = 4.0f, params[0].grad.data()[1] = 1.0f;
  acc.accumulate(p, 30);  // 30 tokens
  EXPECT_EQ(acc.micro_batches(), 2);
  EXPECT_DOUBLE_EQ(acc.total_weight(), 40.0);
  const double scale = 1.0 / acc.total_weight();
  acc.write_to(p);
  EXPECT_FLOAT_EQ(params[0].grad.data()[0], 10 * 1 + 30 * 4);
  EXPECT_FLOAT_EQ(params[0].grad.data()[1], 10 * -2 + 30 * 1);
  EXPECT_EQ(acc.micro_batches(), 0);

  Adam adam;
  adam.step(p, 0.1, scale);
  const AdamState s = adam.export_state();
  EXPECT_NEAR(s.slots[0].m.data()[0], 0.1 * (130.0 / 40), 1e-6);
  EXPECT_NEAR(s.slots[0].m.data()[1], 0.1 * (10.0 / 40), 1e-6);

  // After write_to the sums start again from zero.
  params[0].grad.data()[0] = 1.0f, params[0].grad.data()[1] = 1.0f;
  acc.accumulate(p, 1);
  acc.write_to(p);
  EXPECT_FLOAT_EQ(params[0].grad.data()[0], 1.0f);
}

TEST(GradientAccumulator, Errors) {
  std::vector<TestParam> params{{"w", Tensor({2}), Tensor({2})}, {"v", Tensor({1}), Tensor({1})}};
  auto p = refs(params);
  GradientAccumulator acc;
  acc.accumulate(std::span<const ParamRef>(p.data(), 1));
  expect_error([&] { acc.write_to(p); }, {"no gradient accumulated for parameter 'v'"});
  std::vector<TestParam> reshaped{{"w", Tensor({3}), Tensor({3})}};
  auto r = refs(reshaped);
  expect_error([&] { acc.accumulate(r); }, {"'w' changed shape from [2] to [3]"});
  expect_error([&] { acc.accumulate(p, INFINITY); }, {"weight must be finite"});
}

}  // namespace
}  // namespace attnlab::train
