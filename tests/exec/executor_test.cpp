// Parameters, plans and the two executors: parity, gradients, pruning, tying, the gradient rules.

#include "tensor/simd_intrinsics.h"  // first: see there

#include "exec/executor.h"
#include "exec/model.h"
#include "exec/plan.h"
#include "exec/serial_executor.h"
#include "exec/tbb_executor.h"
#include "exec_fixture.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <limits>
#include <map>
#include <memory>

namespace attnlab {
namespace {

using exec::Plan;
using test::Fixture;
using test::pattern;

std::vector<float> copy_of(const TensorView& v) { return std::vector<float>(v.data(), v.data() + v.numel()); }

std::vector<std::string> step_names(const Plan& plan) {
  std::vector<std::string> names;
  for (const auto& s : plan.steps()) names.push_back(s.name);
  return names;
}

struct Result {
  float loss = 0, count = 0;
  std::vector<std::vector<float>> param_grads;
  std::vector<float> x_grad, hidden;
};

// One training step of the branchy graph with the given executor.
Result run_step(exec::Executor& executor, uint64_t step = 3, bool training = true, int64_t batch = 3) {
  Fixture fx(test::branchy_graph());
  Plan& plan = fx.model->plan({{"batch", batch}}, {"x", "target"}, {"loss", "count", "hidden"});
  Tensor x = pattern({batch, 4}, 0.1f), target = pattern({batch, 5}, 1.3f);
  executor.forward(plan, {{"x", x}, {"target", target}}, {training, 1234}, step);
  executor.backward(plan);
  Result r;
  r.loss = plan.value("loss").data()[0];
  r.count = plan.value("count").data()[0];
  r.hidden = copy_of(plan.value("hidden"));
  for (const auto& p : fx.model->parameters()) r.param_grads.push_back(copy_of(p.grad));
  r.x_grad = copy_of(plan.grad("x"));
  return r;
}

// ---- Parameters ---------------------------------------------------------------------------------

TEST(Parameters, NamesOrderAndDeterministicInit) {
  Fixture a(test::branchy_graph(), 5), b(test::branchy_graph(), 5), c(test::branchy_graph(), 6);
  const auto& store = a.model->parameters();
  ASSERT_EQ(store.size(), 2u);
  EXPECT_EQ(store[0].name, "h1.weight");
  EXPECT_EQ(store[1].name, "b.weight");
  EXPECT_EQ(store[0].value.shape(), (Shape{4, 5}));
  EXPECT_EQ(store.element_count(), 40);
  EXPECT_EQ(copy_of(store[0].value), copy_of(b.model->parameters()[0].value));
  EXPECT_NE(copy_of(store[0].value), copy_of(c.model->parameters()[0].value));
  EXPECT_NE(copy_of(store[0].value), copy_of(store[1].value));
  EXPECT_THROW(store.at("nope.weight"), exec::ParameterError);
}

TEST(Parameters, InitKinds) {
  auto init = [](Init kind, Shape shape, float scale = 0) {
    Tensor t(shape);
    exec::initialize_parameter({"w", shape, kind, scale}, "layer.w", 9, t);
    return t;
  };
  for (float v : copy_of(init(Init::Zeros, {3, 3}))) EXPECT_EQ(v, 0.0f);
  for (float v : copy_of(init(Init::Ones, {3}))) EXPECT_EQ(v, 1.0f);
  for (float v : copy_of(init(Init::Constant, {2, 3}, -0.25f))) EXPECT_EQ(v, -0.25f);  // init_scale everywhere
  // Xavier: |w| <= sqrt(6 / (fan_in + fan_out)) from the last two dims, and the range is used.
  const Tensor xavier = init(Init::XavierUniform, {7, 40, 60});
  const float bound = std::sqrt(6.0f / 100.0f);
  EXPECT_LE(xavier.view().flat().cwiseAbs().maxCoeff(), bound);
  EXPECT_GT(xavier.view().flat().cwiseAbs().maxCoeff(), 0.95f * bound);
  EXPECT_NEAR(xavier.view().flat().mean(), 0.0f, 0.01f);
  // Normal: standard deviation init_scale.
  const Tensor normal = init(Init::Normal, {100, 100}, 0.5f);
  const Eigen::VectorXf v = normal.view().flat();
  const float mean = v.mean();
  const float std = std::sqrt((v.array() - mean).square().mean());
  EXPECT_NEAR(mean, 0.0f, 0.02f);
  EXPECT_NEAR(std, 0.5f, 0.02f);
  EXPECT_TRUE(v.allFinite());
}

TEST(Parameters, TiedShapesMustMatch) {
  test::GraphBuilder g;
  g.input("x", {std::string("batch"), int64_t{4}});
  g.node("m1", "test.matmul", {"x"}, {{"out", int64_t{4}}}, 2, 1, "shared");
  g.node("m2", "test.matmul", {"m1"}, {{"out", int64_t{5}}}, 3, 1, "shared");
  try {
    Fixture fx(g.graph);
    FAIL() << "no error";
  } catch (const exec::ParameterError& e) {
    EXPECT_EQ(std::string(e.what()),
              "parameter 'shared.weight' is shared by node 'm1' with shape [4, 4] and node 'm2' with shape [4, 5]; "
              "tied parameters must have equal shapes");
  }
}

// ---- State parameters and reports (node.h: ParamKind::State, StepReport) ------------------------

ir::GraphDef tally_graph(double aux) {
  test::GraphBuilder g;
  g.input("x", {std::string("batch"), int64_t{4}});
  g.input("target", {std::string("batch"), int64_t{5}});
  g.node("m", "test.matmul", {"x"}, {{"out", int64_t{5}}}, 2, 1);
  g.node("t", "test.tally", {"m"}, {{"aux", aux}}, 3, 1);
  g.node("loss", "test.loss", {"t", "target"}, {}, 4, 1);
  g.output("loss", "loss").output("count", "loss:1");
  return g.graph;
}

struct CollectedReport final : exec::ReportSink {
  double aux = 0;
  std::map<std::string, double> metrics;
  void aux_loss(const std::string& node, double value) override { aux += value, metrics["aux from " + node] += 1; }
  void metric(const std::string& node, const std::string& name, double value) override { metrics[node + "." + name] += value; }
};

TEST(StateParameters, AreStoredUncountedUngradedAndUpdatedOnlyInTraining) {
  Fixture fx(tally_graph(0.0));
  exec::ParameterStore& store = fx.model->parameters();
  ASSERT_TRUE(store.find("t.seen"));
  EXPECT_EQ(store.element_count(), 4 * 5) << "the matmul's weight only";
  Plan& plan = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  for (const Plan::ParamGradient& pg : plan.param_gradients()) EXPECT_NE(store[pg.param].name, "t.seen");
  for (size_t p : plan.unused_params()) EXPECT_NE(store[p].name, "t.seen");
  exec::SerialExecutor serial;
  const Tensor x = pattern({2, 4}, 0.3f), target = pattern({2, 5}, 0.9f);
  serial.forward(plan, {{"x", x}, {"target", target}}, {true, 1}, 0);
  serial.backward(plan);  // test.tally throws if its state gets a gradient buffer
  serial.forward(plan, {{"x", x}, {"target", target}}, {true, 1}, 1);
  EXPECT_EQ(store.at("t.seen").value.data()[0], 2.0f);
  serial.forward(plan, {{"x", x}, {"target", target}}, {false, 1}, 2);
  EXPECT_EQ(store.at("t.seen").value.data()[0], 2.0f) << "evaluation leaves state alone";
}

TEST(StateParameters, CannotBeShared) {
  test::GraphBuilder g;
  g.input("x", {std::string("batch"), int64_t{4}});
  g.node("a", "test.tally", {"x"}, {}, 2, 1, "shared");
  g.node("b", "test.tally", {"a"}, {}, 3, 1, "shared");
  try {
    Fixture fx(g.graph);
    FAIL() << "no error";
  } catch (const exec::ParameterError& e) {
    EXPECT_EQ(std::string(e.what()),
              "parameter 'shared.seen' is declared by node 'a' and node 'b', but state (running statistics) belongs to "
              "one node and cannot be shared; give the nodes different param_scopes");
  }
}

TEST(StepReports, ReachTheSinkByNodeInTrainingOnlyAndScaleTheAuxiliaryGradient) {
  for (exec::Executor* executor : std::initializer_list<exec::Executor*>{new exec::SerialExecutor, new exec::TbbExecutor(2)}) {
    std::unique_ptr<exec::Executor> owned(executor);
    SCOPED_TRACE(executor->name());
    const Tensor x = pattern({3, 4}, 0.3f), target = pattern({3, 5}, 0.9f);
    Fixture with(tally_graph(0.25)), without(tally_graph(0.0));
    Plan& p1 = with.model->plan({{"batch", 3}}, {"x", "target"}, {"loss"});
    Plan& p0 = without.model->plan({{"batch", 3}}, {"x", "target"}, {"loss"});
    CollectedReport report;
    executor->forward(p1, {{"x", x}, {"target", target}}, {true, 1}, 0, nullptr, &report);
    const TensorView& m = p1.value("m");
    double sq = 0;
    for (int64_t i = 0; i < m.numel(); ++i) sq += static_cast<double>(m.data()[i]) * m.data()[i];
    EXPECT_NEAR(report.aux, 0.25 * sq, 1e-9 * (1 + sq));
    EXPECT_EQ(report.metrics.at("t.rows"), 3.0);
    EXPECT_EQ(report.metrics.at("aux from t"), 1.0);
    executor->backward(p1, {}, exec::BackwardOptions{false, nullptr, 4.0});
    executor->forward(p0, {{"x", x}, {"target", target}}, {true, 1}, 0);
    executor->backward(p0);
    // The auxiliary loss adds 4 · 0.25 · 2m to the gradient of m, hence 2m xᵀ to the weight's.
    const float* g1 = with.model->parameters().at("m.weight").grad.data();
    const float* g0 = without.model->parameters().at("m.weight").grad.data();
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t o = 0; o < 5; ++o) {
        double extra = 0;
        for (int64_t b = 0; b < 3; ++b) extra += 4.0 * 0.25 * 2.0 * m.data()[b * 5 + o] * x.data()[b * 4 + i];
        EXPECT_NEAR(g1[i * 5 + o] - g0[i * 5 + o], extra, 1e-4 * (1 + std::abs(extra)));
      }
    // Evaluation: no report.
    CollectedReport none;
    executor->forward(p1, {{"x", x}, {"target", target}}, {false, 1}, 1, nullptr, &none);
    EXPECT_EQ(none.aux, 0.0);
    EXPECT_TRUE(none.metrics.empty());
  }
}

// ---- Parity ---------------------------------------------------------------------------------------

TEST(Executors, TbbMatchesSerialWithOneAndTwoThreads) {
  exec::SerialExecutor serial;
  const Result reference = run_step(serial);
  EXPECT_EQ(reference.count, 15.0f);
  for (int threads : {1, 2}) {
    exec::TbbExecutor tbb(threads);
    EXPECT_EQ(tbb.threads(), threads);
    const Result r = run_step(tbb);
    EXPECT_EQ(r.loss, reference.loss) << threads;
    EXPECT_EQ(r.hidden, reference.hidden) << threads;
    EXPECT_EQ(r.param_grads, reference.param_grads) << threads;  // bit for bit: same order of additions
    EXPECT_EQ(r.x_grad, reference.x_grad) << threads;
  }
}

TEST(Executors, RandomnessDependsOnSeedStepAndNodeOnly) {
  exec::SerialExecutor serial;
  exec::TbbExecutor tbb(2);
  EXPECT_EQ(run_step(serial, 3).loss, run_step(tbb, 3).loss);
  EXPECT_NE(run_step(serial, 3).loss, run_step(serial, 4).loss);            // another step, other noise
  EXPECT_EQ(run_step(serial, 3, false).loss, run_step(serial, 4, false).loss);  // no noise outside training
  EXPECT_EQ(exec::node_seed(1, 2, "n"), exec::node_seed(1, 2, "n"));
  EXPECT_NE(exec::node_seed(1, 2, "n"), exec::node_seed(1, 2, "m"));
  EXPECT_NE(exec::node_seed(1, 2, "n"), exec::node_seed(1, 3, "n"));
}

TEST(Executors, TbbRunsIndependentNodesConcurrentlyInsideItsArena) {
  // Two independent nodes that each wait for the other: they only both meet when run at once.
  test::GraphBuilder g;
  g.input("x", {std::string("batch"), int64_t{2}});
  g.node("left", "test.rendezvous", {"x"}, {}, 2, 1);
  g.node("right", "test.rendezvous", {"x"}, {}, 3, 1);
  g.node("sum", "test.add", {"left", "right"}, {}, 4, 1);
  g.node("loss", "test.loss", {"sum"}, {}, 5, 1);
  g.output("loss", "loss");
  Fixture fx(g.graph);
  Plan& plan = fx.model->plan({{"batch", 2}}, {"x"}, {"loss"});
  Tensor x = pattern({2, 2}, 0);
  test::rendezvous_arrived = 0;
  test::rendezvous_met = 0;
  test::nested_concurrency = 0;
  exec::TbbExecutor tbb(2);
  tbb.forward(plan, {{"x", x}}, {}, 0);
  EXPECT_EQ(test::rendezvous_met.load(), 2);
  EXPECT_EQ(test::nested_concurrency.load(), 2);  // nested parallel_for ran in the 2-thread arena

  // The serial executor runs one node at a time: the first waits in vain.
  test::rendezvous_arrived = 0;
  test::rendezvous_met = 0;
  test::rendezvous_timeout_ms = 200;
  exec::SerialExecutor serial;
  serial.forward(plan, {{"x", x}}, {}, 0);
  EXPECT_EQ(test::rendezvous_met.load(), 1);  // only the second found the first arrived
  test::rendezvous_timeout_ms = 5000;
}

// ---- Gradients against finite differences -------------------------------------------------------

// d loss / d (each element of `target`) by central differences, running forward only.
std::vector<double> numeric_gradient(exec::Executor& ex, Plan& plan, const exec::TensorMap& feeds, const TensorView& target) {
  std::vector<double> grad(target.numel());
  const float eps = 1e-2f;
  for (int64_t i = 0; i < target.numel(); ++i) {
    const float saved = target.data()[i];
    target.data()[i] = saved + eps;
    ex.forward(plan, feeds, {true, 99}, 7);
    const double up = plan.value("loss").data()[0];
    target.data()[i] = saved - eps;
    ex.forward(plan, feeds, {true, 99}, 7);
    const double down = plan.value("loss").data()[0];
    target.data()[i] = saved;
    grad[i] = (up - down) / (2.0 * eps);
  }
  return grad;
}

void expect_close(const std::vector<double>& numeric, const TensorView& analytic, const std::string& what) {
  ASSERT_EQ(static_cast<int64_t>(numeric.size()), analytic.numel()) << what;
  double scale = 1e-3;
  for (double v : numeric) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < numeric.size(); ++i)
    EXPECT_NEAR(analytic.data()[i], numeric[i], 2e-2 * scale) << what << " element " << i;
}

TEST(Executors, GradientsMatchFiniteDifferences) {
  Fixture fx(test::branchy_graph());
  exec::SerialExecutor ex;
  Plan& plan = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  Tensor x = pattern({2, 4}, 0.3f), target = pattern({2, 5}, 2.0f);
  const exec::TensorMap feeds{{"x", x}, {"target", target}};
  ex.forward(plan, feeds, {true, 99}, 7);
  ex.backward(plan);
  std::vector<Tensor> analytic;
  for (const auto& p : fx.model->parameters()) analytic.push_back(p.grad);
  ASSERT_TRUE(plan.grad("x").present());  // a fed real value gets its gradient too
  Tensor x_grad(x.shape());
  x_grad.view().copy_from(plan.grad("x"));

  for (size_t p = 0; p < fx.model->parameters().size(); ++p)
    expect_close(numeric_gradient(ex, plan, feeds, fx.model->parameters()[p].value), analytic[p],
                 fx.model->parameters()[p].name);
  // x is fed: the plan copies it, so perturb the caller's tensor.
  expect_close(numeric_gradient(ex, plan, feeds, x), x_grad, "x");
  EXPECT_FALSE(plan.grad("target").present());  // the loss's target port is not differentiable
}

// ---- Fed values and pruning ---------------------------------------------------------------------

TEST(Plans, FeedingAnIntermediateValueRunsOnlyDownstreamNodes) {
  Fixture fx(test::branchy_graph());
  exec::SerialExecutor serial;
  Plan& full = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss", "hidden"});
  Tensor x = pattern({2, 4}, 0.5f), target = pattern({2, 5}, 1.0f);
  serial.forward(full, {{"x", x}, {"target", target}}, {true, 5}, 1);
  serial.backward(full);
  const float full_loss = full.value("loss").data()[0];
  Tensor hidden(full.value("hidden").shape());
  hidden.view().copy_from(full.value("hidden"));
  const std::vector<float> hidden_grad = copy_of(full.grad("hidden"));

  // "hidden" is the graph output name of value "e".
  Plan& tail = fx.model->plan({{"batch", 2}}, {"hidden", "target"}, {"loss"});
  EXPECT_EQ(step_names(tail), (std::vector<std::string>{"n", "loss"}));
  for (auto& p : fx.model->parameters()) p.grad.view().fill(123.0f);  // not reached: must be zeroed
  for (exec::Executor* ex : std::initializer_list<exec::Executor*>{&serial, new exec::TbbExecutor(2)}) {
    test::forward_calls = 0;
    ex->forward(tail, {{"hidden", hidden}, {"target", target}}, {true, 5}, 1);
    EXPECT_EQ(test::forward_calls.load(), 2) << ex->name();
    EXPECT_EQ(tail.value("loss").data()[0], full_loss) << ex->name();
    ex->backward(tail);
    EXPECT_EQ(copy_of(tail.grad("e")), hidden_grad) << ex->name();
    for (const auto& p : fx.model->parameters())
      EXPECT_EQ(p.grad.view().flat().cwiseAbs().maxCoeff(), 0.0f) << p.name << " " << ex->name();
    if (ex != &serial) delete ex;
  }
}

TEST(Plans, ForwardOnlyFetchPrunesTheLoss) {
  Fixture fx(test::branchy_graph());
  Plan& plan = fx.model->plan({{"batch", 2}}, {"x"}, {"hidden"});
  EXPECT_EQ(step_names(plan), (std::vector<std::string>{"h1", "a", "b", "f", "c", "d", "e"}));
  EXPECT_FALSE(plan.has_value("loss"));
}

TEST(Plans, UnfedGraphInputIsAnError) {
  Fixture fx(test::branchy_graph());
  try {
    fx.model->plan({{"batch", 2}}, {"target"}, {"loss"});
    FAIL() << "no error";
  } catch (const exec::PlanError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot plan: node 'h1' needs graph input 'x', which is not fed (fed: target)");
  }
}

TEST(Plans, UnknownFetchOrFeedIsAnError) {
  Fixture fx(test::branchy_graph());
  try {
    fx.model->plan({{"batch", 2}}, {"x", "target"}, {"los"});
    FAIL() << "no error";
  } catch (const exec::PlanError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot plan: fetch 'los' is neither a graph output (loss, count, hidden) nor a value of the graph");
  }
  EXPECT_THROW(fx.model->plan({{"batch", 2}}, {"x", "f:7"}, {"loss"}), exec::PlanError);
}

TEST(Plans, FeedingOneOutputOfANodeThatMustRunIsAnError) {
  Fixture fx(test::branchy_graph());
  try {
    fx.model->plan({{"batch", 2}}, {"x", "target", "f:1"}, {"loss"});
    FAIL() << "no error";
  } catch (const exec::PlanError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot plan: value 'f:1' is fed, but its node 'f' also has to run for another of its outputs");
  }
}

TEST(Plans, UnboundDimensionNamesTheInput) {
  Fixture fx(test::branchy_graph());
  try {
    fx.model->plan({{"batches", 2}}, {"x", "target"}, {"loss"});
    FAIL() << "no error";
  } catch (const ir::GraphError& e) {
    EXPECT_EQ(std::string(e.what()),
              "model.attn:1:1: error: graph input 'target': dimension 'batch' has no size bound in this plan\n"
              "model.attn:1:1: error: graph input 'x': dimension 'batch' has no size bound in this plan");
  }
}

TEST(Plans, CachedByDimsFeedsAndFetches) {
  Fixture fx(test::branchy_graph());
  Plan& a = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  Plan& b = fx.model->plan({{"batch", 2}}, {"target", "x", "x"}, {"loss"});
  Plan& c = fx.model->plan({{"batch", 3}}, {"x", "target"}, {"loss"});
  Plan& d = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss", "hidden"});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  EXPECT_NE(&a, &d);
  EXPECT_EQ(fx.model->cached_plans(), 3u);
  EXPECT_EQ(a.value("x").shape(), (Shape{2, 4}));
  EXPECT_EQ(c.value("x").shape(), (Shape{3, 4}));
  EXPECT_GT(a.bytes(), 0);
}

TEST(Plans, AForwardOnlyPlanComputesTheSameValuesWithoutGradientBuffers) {
  Fixture fx(test::branchy_graph());
  exec::SerialExecutor ex;
  Plan& full = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  Plan& inference = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"}, exec::Pass::ForwardOnly);
  EXPECT_NE(&full, &inference);
  EXPECT_EQ(inference.pass(), exec::Pass::ForwardOnly);
  EXPECT_TRUE(inference.value_grads().empty());
  EXPECT_TRUE(inference.param_gradients().empty());
  EXPECT_FALSE(inference.grad("loss").present());
  for (const Plan::Step& step : inference.steps()) EXPECT_FALSE(step.runs_backward) << step.name;
  EXPECT_LT(inference.bytes(), full.bytes());
  Tensor x = pattern({2, 4}, 0.1f), target = pattern({2, 5}, 1.3f);
  ex.forward(full, {{"x", x}, {"target", target}}, {false, 1}, 0);
  ex.forward(inference, {{"x", x}, {"target", target}}, {false, 1}, 0);
  EXPECT_EQ(full.value("loss").data()[0], inference.value("loss").data()[0]);
  try {
    ex.backward(inference);
    ADD_FAILURE() << "backward on a forward-only plan ran";
  } catch (const exec::ExecError& e) {
    EXPECT_STREQ(e.what(), "backward: the plan was made forward-only (Pass::ForwardOnly)");
  }
}

TEST(Plans, StepsThatNeverRunAtOnceShareWorkspaceAndIndependentBranchesDoNot) {
  // A chain: every tanh is ordered after the previous one, forward and backward.
  test::GraphBuilder chain;
  chain.input("x", {std::string("batch"), int64_t{3}});
  chain.input("target", {std::string("batch"), int64_t{3}});
  chain.node("t1", "test.tanh", {"x"}, {}, 2, 1);
  chain.node("t2", "test.tanh", {"t1"}, {}, 3, 1);
  chain.node("t3", "test.tanh", {"t2"}, {}, 4, 1);
  chain.node("loss", "test.loss", {"t3", "target"}, {}, 5, 1);
  chain.output("loss", "loss");
  Fixture linear(chain.graph);
  Plan& plan = linear.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  EXPECT_EQ(plan.workspace_groups(), 1u);
  std::vector<const float*> workspaces;
  for (const Plan::Step& step : plan.steps())
    if (!step.workspace.empty()) workspaces.push_back(step.workspace[0].data());
  ASSERT_EQ(workspaces.size(), 3u);
  EXPECT_EQ(workspaces[0], workspaces[1]);
  EXPECT_EQ(workspaces[1], workspaces[2]);

  // Two branches the TBB executor may run at once: separate memory.
  test::GraphBuilder fork;
  fork.input("x", {std::string("batch"), int64_t{3}});
  fork.input("target", {std::string("batch"), int64_t{3}});
  fork.node("left", "test.tanh", {"x"}, {}, 2, 1);
  fork.node("right", "test.tanh", {"x"}, {}, 3, 1);
  fork.node("sum", "test.add", {"left", "right"}, {}, 4, 1);
  fork.node("loss", "test.loss", {"sum", "target"}, {}, 5, 1);
  fork.output("loss", "loss");
  Fixture branches(fork.graph);
  Plan& forked = branches.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  EXPECT_EQ(forked.workspace_groups(), 2u);

  // Shared workspace changes no result: the chain's gradients equal the serial executor's on a
  // fresh model with the same seed, through the TBB executor.
  Fixture again(chain.graph);
  Plan& other = again.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  Tensor x = pattern({2, 3}, 0.3f), target = pattern({2, 3}, 1.1f);
  exec::SerialExecutor serial;
  exec::TbbExecutor tbb(2);
  serial.forward(plan, {{"x", x}, {"target", target}}, {true, 5}, 1);
  serial.backward(plan);
  tbb.forward(other, {{"x", x}, {"target", target}}, {true, 5}, 1);
  tbb.backward(other);
  EXPECT_EQ(copy_of(plan.grad("x")), copy_of(other.grad("x")));
}

TEST(Plans, FeedErrors) {
  Fixture fx(test::branchy_graph());
  exec::SerialExecutor ex;
  Plan& plan = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  Tensor x = pattern({2, 4}, 0), target = pattern({2, 5}, 0), wrong = pattern({3, 4}, 0);
  auto message = [&](const exec::TensorMap& feeds) {
    try {
      ex.forward(plan, feeds, {}, 0);
      return std::string("no error");
    } catch (const exec::ExecError& e) {
      return std::string(e.what());
    }
  };
  EXPECT_EQ(message({{"x", x}}), "forward: the plan feeds 'target', but no tensor was given for it");
  EXPECT_EQ(message({{"x", wrong}, {"target", target}}), "forward: fed value 'x' has shape [3, 4]; the plan expects [2, 4]");
  EXPECT_EQ(message({{"x", x}, {"target", target}, {"a", x}}), "forward: 'a' is not a fed value of this plan");
  EXPECT_EQ(message({{"x", x}, {"target", target}}), "no error");
}

TEST(Plans, BackwardPreconditions) {
  Fixture fx(test::branchy_graph());
  exec::SerialExecutor ex;
  Plan& plan = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss", "hidden"});
  Plan& no_loss = fx.model->plan({{"batch", 2}}, {"x"}, {"hidden"});
  Tensor x = pattern({2, 4}, 0), target = pattern({2, 5}, 0);
  EXPECT_THROW(ex.backward(plan), exec::ExecError);  // no forward yet
  ex.forward(plan, {{"x", x}, {"target", target}}, {}, 0);
  ex.forward(no_loss, {{"x", x}}, {}, 0);
  try {
    ex.backward(no_loss);
    FAIL() << "no error";
  } catch (const exec::ExecError& e) {
    EXPECT_EQ(std::string(e.what()), "backward: no seed gradients given, and the plan fetches no single scalar with a gradient (a loss) to seed with 1");
  }
  Tensor seed({2, 5}, 1.0f);
  EXPECT_NO_THROW(ex.backward(no_loss, {{"hidden", seed}}));  // an explicit seed on the fetched value
  EXPECT_THROW(ex.backward(plan, {{"count", Tensor(Shape{}, 1.0f)}}), exec::ExecError);  // not differentiable
  EXPECT_THROW(ex.backward(plan, {{"hidden", Tensor({2, 4})}}), exec::ExecError);         // wrong shape
}

TEST(Plans, ExplicitSeedEqualsLinearityOfTheGradient) {
  Fixture fx(test::branchy_graph());
  exec::SerialExecutor ex;
  Plan& plan = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  Tensor x = pattern({2, 4}, 0), target = pattern({2, 5}, 0);
  ex.forward(plan, {{"x", x}, {"target", target}}, {}, 0);
  ex.backward(plan);
  const std::vector<float> unit = copy_of(fx.model->parameters()[0].grad);
  ex.backward(plan, {{"loss", Tensor(Shape{}, {2.0f})}});
  const std::vector<float> twice = copy_of(fx.model->parameters()[0].grad);
  for (size_t i = 0; i < unit.size(); ++i) EXPECT_FLOAT_EQ(twice[i], 2.0f * unit[i]);
}

// ---- Tied parameters ----------------------------------------------------------------------------

ir::GraphDef chain(const std::string& scope1, const std::string& scope2) {
  test::GraphBuilder g;
  g.input("x", {std::string("batch"), int64_t{4}});
  g.node("m1", "test.matmul", {"x"}, {{"out", int64_t{4}}}, 2, 1, scope1);
  g.node("t", "test.tanh", {"m1"}, {}, 3, 1);
  g.node("m2", "test.matmul", {"t"}, {{"out", int64_t{4}}}, 4, 1, scope2);
  g.node("loss", "test.loss", {"m2"}, {}, 5, 1);
  g.output("loss", "loss");
  return g.graph;
}

TEST(Tying, GradientIsTheSumOfBothUses) {
  Fixture tied(chain("shared", "shared")), untied(chain("", ""));
  ASSERT_EQ(tied.model->parameters().size(), 1u);
  EXPECT_EQ(tied.model->parameters()[0].name, "shared.weight");
  EXPECT_EQ(tied.model->parameters()[0].owner, "m1");
  ASSERT_EQ(untied.model->parameters().size(), 2u);
  // The same weights in both uses.
  untied.model->parameters()[0].value.view().copy_from(tied.model->parameters()[0].value);
  untied.model->parameters()[1].value.view().copy_from(tied.model->parameters()[0].value);
  Tensor x = pattern({2, 4}, 0.7f);

  exec::SerialExecutor serial;
  exec::TbbExecutor tbb(2);
  for (exec::Executor* ex : {static_cast<exec::Executor*>(&serial), static_cast<exec::Executor*>(&tbb)}) {
    Plan& tp = tied.model->plan({{"batch", 2}}, {"x"}, {"loss"});
    Plan& up = untied.model->plan({{"batch", 2}}, {"x"}, {"loss"});
    EXPECT_EQ(tp.param_gradients().size(), 1u);
    EXPECT_EQ(tp.param_gradients()[0].uses.size(), 2u);      // one buffer per use
    EXPECT_TRUE(up.param_gradients()[0].uses.empty());       // single users write the store
    ex->forward(tp, {{"x", x}}, {}, 0);
    ex->backward(tp);
    ex->forward(up, {{"x", x}}, {}, 0);
    ex->backward(up);
    EXPECT_EQ(tp.value("loss").data()[0], up.value("loss").data()[0]);
    const Eigen::VectorXf sum =
        untied.model->parameters()[0].grad.view().flat() + untied.model->parameters()[1].grad.view().flat();
    const Eigen::VectorXf got = tied.model->parameters()[0].grad.view().flat();
    EXPECT_LT((got - sum).cwiseAbs().maxCoeff(), 1e-6f) << ex->name();
    EXPECT_GT(got.cwiseAbs().maxCoeff(), 1e-4f);
  }
  // And the tied gradient is the derivative of the loss.
  Plan& tp = tied.model->plan({{"batch", 2}}, {"x"}, {"loss"});
  serial.forward(tp, {{"x", x}}, {true, 99}, 7);
  serial.backward(tp);
  Tensor analytic = tied.model->parameters()[0].grad;
  expect_close(numeric_gradient(serial, tp, {{"x", x}}, tied.model->parameters()[0].value), analytic, "shared.weight");
}

// ---- Reporting final gradients during backward (data-parallel reduction starts there) -----------

// Records, for each parameter, a copy of its store gradient at the moment it was reported.
class RecordingListener final : public exec::GradientListener {
 public:
  explicit RecordingListener(exec::ParameterStore& store) : at_report_(store.size()), store_(store), reports_(store.size()) {}
  void gradient_ready(size_t param) override {
    at_report_[param] = copy_of(store_[param].grad);
    reports_[param].fetch_add(1);
  }
  std::vector<std::vector<float>> at_report_;
  int reports(size_t param) const { return reports_[param].load(); }

 private:
  exec::ParameterStore& store_;
  std::vector<std::atomic<int>> reports_;
};

TEST(GradientListener, EachParameterIsReportedOnceWithItsFinalGradientSameAsWithout) {
  for (bool tied_scope : {false, true}) {
    exec::SerialExecutor serial;
    exec::TbbExecutor tbb(2);
    for (exec::Executor* ex : {static_cast<exec::Executor*>(&serial), static_cast<exec::Executor*>(&tbb)}) {
      for (bool accumulate : {false, true}) {
        Fixture plain(chain(tied_scope ? "shared" : "", tied_scope ? "shared" : "")),
            reported(chain(tied_scope ? "shared" : "", tied_scope ? "shared" : ""));
        Tensor x = pattern({3, 4}, 0.4f), x2 = pattern({3, 4}, -0.9f);
        auto run = [&](Fixture& fx, exec::GradientListener* listener) {
          Plan& plan = fx.model->plan({{"batch", 3}}, {"x"}, {"loss"});
          ex->forward(plan, {{"x", x}}, {true, 5}, 1);
          ex->backward(plan);
          ex->forward(plan, {{"x", x2}}, {true, 5}, 2);
          ex->backward(plan, {}, exec::BackwardOptions{accumulate, listener});
        };
        RecordingListener listener(reported.model->parameters());
        run(plain, nullptr);
        run(reported, &listener);
        const std::string what = std::string(ex->name()) + (accumulate ? " accumulate" : "") + (tied_scope ? " tied" : "");
        for (size_t p = 0; p < reported.model->parameters().size(); ++p) {
          EXPECT_EQ(listener.reports(p), 1) << what;
          // Final when reported: equal to the gradient after backward, and to a backward without a listener.
          EXPECT_EQ(listener.at_report_[p], copy_of(reported.model->parameters()[p].grad)) << what;
          EXPECT_EQ(copy_of(plain.model->parameters()[p].grad), copy_of(reported.model->parameters()[p].grad)) << what;
        }
      }
    }
  }
}

TEST(GradientListener, ParametersThePlanDoesNotReachAreReportedWithZeroGradient) {
  Fixture fx(chain("", ""));
  // Fetching only "t" leaves m2's weight unreached.
  Plan& plan = fx.model->plan({{"batch", 2}}, {"x"}, {"t"});
  ASSERT_EQ(plan.unused_params().size(), 1u);
  for (auto& p : fx.model->parameters()) p.grad.view().fill(7.0f);
  exec::TbbExecutor tbb(2);
  Tensor x = pattern({2, 4}, 0.1f), seed = pattern(plan.value("t").shape(), 0.5f);
  tbb.forward(plan, {{"x", x}}, {true, 3}, 0);
  RecordingListener listener(fx.model->parameters());
  tbb.backward(plan, {{"t", seed}}, exec::BackwardOptions{false, &listener});
  const size_t unused = plan.unused_params()[0];
  EXPECT_EQ(listener.at_report_[unused], std::vector<float>(fx.model->parameters()[unused].grad.numel(), 0.0f));
  for (size_t p = 0; p < fx.model->parameters().size(); ++p) EXPECT_EQ(listener.reports(p), 1) << p;
}

// ---- The gradient rules: zero once, assign the store, accumulate on request ---------------------

TEST(GradientRules, SentinelsInValueAndStoreGradientsAreOverwritten) {
  exec::SerialExecutor serial;
  exec::TbbExecutor tbb(2);
  for (exec::Executor* ex : {static_cast<exec::Executor*>(&serial), static_cast<exec::Executor*>(&tbb)}) {
    Fixture fx(test::branchy_graph());
    Plan& plan = fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
    Tensor x = pattern({2, 4}, 0.2f), target = pattern({2, 5}, 0.9f);
    const exec::TensorMap feeds{{"x", x}, {"target", target}};
    ex->forward(plan, feeds, {true, 3}, 1);
    ex->backward(plan);
    std::vector<std::vector<float>> clean;
    for (const auto& p : fx.model->parameters()) clean.push_back(copy_of(p.grad));
    const std::vector<float> clean_x = copy_of(plan.grad("x"));

    // Garbage everywhere a gradient lives; the result must not change.
    for (const TensorView& g : plan.value_grads()) g.fill(std::numeric_limits<float>::quiet_NaN());
    for (auto& p : fx.model->parameters()) p.grad.view().fill(1e30f);
    ex->forward(plan, feeds, {true, 3}, 1);
    ex->backward(plan);
    for (size_t i = 0; i < clean.size(); ++i) EXPECT_EQ(copy_of(fx.model->parameters()[i].grad), clean[i]) << ex->name();
    EXPECT_EQ(copy_of(plan.grad("x")), clean_x) << ex->name();

    // Accumulation adds the step's gradient to what the store holds.
    for (auto& p : fx.model->parameters()) p.grad.view().fill(0.5f);
    ex->backward(plan, {}, {.accumulate = true});
    ex->backward(plan, {}, {.accumulate = true});
    for (size_t i = 0; i < clean.size(); ++i) {
      const std::vector<float> acc = copy_of(fx.model->parameters()[i].grad);
      for (size_t k = 0; k < acc.size(); ++k) EXPECT_FLOAT_EQ(acc[k], 0.5f + 2.0f * clean[i][k]) << ex->name();
    }
    // And a plain backward afterwards assigns again.
    ex->backward(plan);
    for (size_t i = 0; i < clean.size(); ++i) EXPECT_EQ(copy_of(fx.model->parameters()[i].grad), clean[i]) << ex->name();
  }
}

// ---- Errors from nodes --------------------------------------------------------------------------

TEST(NodeErrors, NameTheNodeAndItsLocationAndLeaveThePlanUsable) {
  test::GraphBuilder g;
  g.input("x", {std::string("batch"), int64_t{3}});
  g.node("m", "test.matmul", {"x"}, {{"out", int64_t{3}}}, 2, 3);
  g.node("chk", "test.check", {"x"}, {}, 3, 5);
  g.node("sum", "test.add", {"m", "chk"}, {}, 4, 3);
  g.node("loss", "test.loss", {"sum"}, {}, 5, 3);
  g.output("loss", "loss");
  Fixture fx(g.graph);
  exec::SerialExecutor serial;
  exec::TbbExecutor tbb(2);
  for (exec::Executor* ex : {static_cast<exec::Executor*>(&serial), static_cast<exec::Executor*>(&tbb)}) {
    Plan& plan = fx.model->plan({{"batch", 2}}, {"x"}, {"loss"});
    Tensor bad({2, 3}, -1.0f), good({2, 3}, 1.0f);
    try {
      ex->forward(plan, {{"x", bad}}, {}, 0);
      FAIL() << "no error";
    } catch (const exec::ExecError& e) {
      EXPECT_EQ(std::string(e.what()), "model.attn:3:5: error: node 'chk' (test.check): forward: negative input") << ex->name();
    }
    EXPECT_THROW(ex->backward(plan), exec::ExecError);  // the failed forward left nothing to differentiate
    ex->forward(plan, {{"x", good}}, {}, 0);
    EXPECT_NO_THROW(ex->backward(plan));
    try {
      ex->backward(plan, {{"loss", Tensor(Shape{}, {-1.0f})}});
      FAIL() << "no error";
    } catch (const exec::ExecError& e) {
      EXPECT_EQ(std::string(e.what()), "model.attn:3:5: error: node 'chk' (test.check): backward: negative gradient")
          << ex->name();
    }
    ex->forward(plan, {{"x", good}}, {}, 1);
    EXPECT_NO_THROW(ex->backward(plan)) << ex->name();
  }
}

}  // namespace
}  // namespace attnlab
