#include "exec/executor.h"

#include "exec/hash.h"
#include "exec/model.h"

#include <algorithm>

namespace attnlab::exec {

uint64_t node_seed(uint64_t run_seed, uint64_t step, const std::string& node_name) {
  return hash_combine(hash_combine(run_seed, step), fnv1a(node_name));
}

static std::string describe(const Plan::Step& step, const char* phase, const char* what) {
  return ir::format_location(step.loc) + ": error: node '" + step.name + "' (" + step.type + "): " + phase + ": " + what;
}

static StepInfo step_info(const Plan& plan, size_t index) {
  const Plan::Step& step = plan.steps()[index];
  StepInfo info;
  info.training = plan.last_forward.training;
  info.seed = hash_combine(hash_combine(plan.last_forward.seed, plan.last_forward.step), step.name_hash);
  info.batch_offset = plan.last_forward.batch_offset;
  info.batch_rows = plan.last_forward.batch_rows;
  if (plan.last_forward.report_sink && info.training) info.report = plan.step_reports[index].get();
  info.objective_scale = plan.objective_scale;
  return info;
}

namespace {
// The Recorder a node gets in an inspecting pass: the sink, told which node records.
class StepRecorder final : public Recorder {
 public:
  StepRecorder(RecordSink& sink, const std::string& node) : sink_(sink), node_(node) {}
  TensorView record(const std::string& what, const Shape& shape) override { return sink_.record(node_, what, shape); }

 private:
  RecordSink& sink_;
  const std::string& node_;
};

// The StepReport a node gets in a reporting forward: the plan's sink, told which node reports.
class StepReporter final : public StepReport {
 public:
  StepReporter(const Plan& plan, const std::string& node) : plan_(plan), node_(node) {}
  void aux_loss(double value) override { plan_.last_forward.report_sink->aux_loss(node_, value); }
  void metric(const std::string& name, double value) override { plan_.last_forward.report_sink->metric(node_, name, value); }

 private:
  const Plan& plan_;
  const std::string& node_;
};

void zero_value_grad(void* ctx, size_t i) { static_cast<Plan*>(ctx)->value_grads()[i].set_zero(); }

// The store gradient of one parameter from its per-use (or staged) buffers.
void reduce_param_gradient(Plan& plan, size_t i, bool accumulate) {
  const Plan::ParamGradient& pg = plan.param_gradients()[i];
  Tensor& store_grad = plan.model().parameters()[pg.param].grad;
  Eigen::Map<Eigen::VectorXf> grad(store_grad.data(), store_grad.numel());  // Tensor::view() would copy the shape
  if (pg.uses.empty()) {
    if (accumulate) grad += pg.staged.flat();  // otherwise the single user assigned it directly
    return;
  }
  if (!accumulate) grad = pg.uses[0].flat();
  else grad += pg.uses[0].flat();
  for (size_t u = 1; u < pg.uses.size(); ++u) grad += pg.uses[u].flat();
}

struct Reduction {
  Plan* plan;
  bool accumulate;
};
void reduce_param_gradient_at(void* ctx, size_t i) {
  const Reduction& r = *static_cast<Reduction*>(ctx);
  reduce_param_gradient(*r.plan, i, r.accumulate);
}
}  // namespace

void Executor::forward_step(Plan& plan, size_t index) {
  const Plan::Step& step = plan.steps()[index];
  ForwardContext ctx{step.inputs, step.params, step.outputs, step.saved, step.workspace, step_info(plan, index)};
  if (plan.last_forward.recorders) ctx.step.recorder = plan.last_forward.recorders[index];
  try {
    step.instance->forward(ctx);
  } catch (const std::exception& e) {
    throw ExecError(describe(step, "forward", e.what()));
  } catch (...) {
    throw ExecError(describe(step, "forward", "unknown exception"));
  }
}

void Executor::backward_step(Plan& plan, size_t index, bool staged) {
  const Plan::Step& step = plan.steps()[index];
  BackwardContext ctx{step.inputs,       step.params,      step.outputs,
                      step.saved,        step.workspace,   step.output_grads,
                      step.input_grads,  staged ? step.param_grads_staged : step.param_grads,
                      step_info(plan, index)};
  try {
    step.instance->backward(ctx);
  } catch (const std::exception& e) {
    throw ExecError(describe(step, "backward", e.what()));
  } catch (...) {
    throw ExecError(describe(step, "backward", "unknown exception"));
  }
  Plan::GradientReporting& reporting = plan.reporting;
  if (!reporting.listener) return;
  for (size_t pg : step.writes_param_gradients)
    if (reporting.pending_writers[pg].fetch_sub(1, std::memory_order_acq_rel) == 1) {
      reduce_param_gradient(plan, pg, reporting.accumulate);
      reporting.listener->gradient_ready(plan.param_gradients()[pg].param);
    }
}

void Executor::run_indexed(size_t n, void (*fn)(void*, size_t), void* ctx) {
  for (size_t i = 0; i < n; ++i) fn(ctx, i);
}

void Executor::forward(Plan& plan, const TensorMap& feeds, StepInfo base, uint64_t step, RecordSink* sink,
                       ReportSink* report) {
  if (sink && plan.pass() != Pass::ForwardOnly)
    throw ExecError("forward: recording needs a forward-only plan (Pass::ForwardOnly)");
  // Every fed value exactly once (by value name or graph output name), with the planned shape.
  size_t matched = 0;
  for (const auto& [name, tensor] : feeds) {
    const std::string& value = plan.resolve(name);
    bool planned = false;
    for (const std::string& f : plan.feeds()) planned = planned || f == value;
    if (!planned) throw ExecError("forward: '" + name + "' is not a fed value of this plan");
    for (const auto& [other, unused] : feeds)
      if (other != name && plan.resolve(other) == value)
        throw ExecError("forward: '" + name + "' and '" + other + "' feed the same value");
    const TensorView& target = plan.value(value);
    if (!tensor.present() || tensor.shape() != target.shape())
      throw ExecError("forward: fed value '" + name + "' has shape " + to_string(tensor.shape()) +
                      (tensor.present() ? "" : " (no data)") + "; the plan expects " + to_string(target.shape()));
    ++matched;
  }
  if (matched != plan.feeds().size())
    for (const std::string& f : plan.feeds()) {
      bool given = false;
      for (const auto& [name, tensor] : feeds) given = given || plan.resolve(name) == f;
      if (!given) throw ExecError("forward: the plan feeds '" + f + "', but no tensor was given for it");
    }
  for (const auto& [name, tensor] : feeds) plan.value(name).copy_from(tensor);

  plan.last_forward = {false, base.training, base.seed, step, base.batch_offset, base.batch_rows};
  if (report && base.training) {
    if (plan.step_reports.empty())
      for (const Plan::Step& s : plan.steps()) plan.step_reports.push_back(std::make_shared<StepReporter>(plan, s.name));
    plan.last_forward.report_sink = report;
  }
  if (!sink) {
    run_forward(plan);
  } else {
    std::vector<StepRecorder> recorders;
    recorders.reserve(plan.steps().size());
    std::vector<Recorder*> pointers;
    for (const Plan::Step& s : plan.steps()) pointers.push_back(&recorders.emplace_back(*sink, s.name));
    plan.last_forward.recorders = pointers.data();
    try {
      run_forward(plan);
    } catch (...) {
      plan.last_forward.recorders = nullptr;
      throw;
    }
    plan.last_forward.recorders = nullptr;
  }
  plan.last_forward.report_sink = nullptr;  // backward reports nothing
  plan.last_forward.done = true;
}


// With no seeds given, backward starts from the plan's one fetched scalar that carries a gradient
// (a task's loss; core/task/task.h), seeded with 1. Empty when there is none or more than one.
static std::string default_seed(const Plan& plan) {
  std::string found;
  for (const std::string& name : plan.fetches()) {
    if (!plan.has_value(name)) continue;
    const TensorView& g = plan.grad(name);
    if (!g.present() || g.numel() != 1) continue;
    if (!found.empty() && plan.resolve(found) != plan.resolve(name)) return "";
    found = name;
  }
  return found;
}

void Executor::backward(Plan& plan, const TensorMap& seeds, BackwardOptions options) {
  if (plan.pass() == Pass::ForwardOnly) throw ExecError("backward: the plan was made forward-only (Pass::ForwardOnly)");
  if (!plan.last_forward.done) throw ExecError("backward: no completed forward on this plan");
  for (const auto& [name, seed] : seeds) {
    if (!plan.has_value(name)) throw ExecError("backward: seed for '" + name + "', which this plan does not fetch");
    const TensorView& g = plan.grad(name);
    if (!g.present()) throw ExecError("backward: seed for '" + name + "', which carries no gradient in this plan");
    if (seed.shape() != g.shape())
      throw ExecError("backward: seed for '" + name + "' has shape " + to_string(seed.shape()) + "; the value has " +
                      to_string(g.shape()));
  }
  const std::string implicit_seed = seeds.empty() ? default_seed(plan) : "";
  if (seeds.empty() && implicit_seed.empty())
    throw ExecError("backward: no seed gradients given, and the plan fetches no single scalar with a gradient (a loss) to seed with 1");
  if (options.accumulate) plan.prepare_accumulation();
  plan.objective_scale = options.objective_scale;

  run_indexed(plan.value_grads().size(), zero_value_grad, &plan);
  if (seeds.empty()) plan.grad(implicit_seed).fill(1.0f);
  for (const auto& [name, seed] : seeds) plan.grad(name).copy_from(seed);

  auto zero_unused = [&] {
    if (options.accumulate) return;
    for (size_t p : plan.unused_params()) {
      Tensor& g = plan.model().parameters()[p].grad;
      std::fill_n(g.data(), g.numel(), 0.0f);
    }
  };
  if (options.listener) {
    // Each parameter is finalised and reported by the last node that writes it (backward_step).
    const auto& pgs = plan.param_gradients();
    if (!plan.reporting.pending_writers) plan.reporting.pending_writers = std::make_unique<std::atomic<int>[]>(pgs.size());
    for (size_t i = 0; i < pgs.size(); ++i) plan.reporting.pending_writers[i].store(pgs[i].writers, std::memory_order_relaxed);
    plan.reporting.accumulate = options.accumulate;
    zero_unused();
    for (size_t p : plan.unused_params()) options.listener->gradient_ready(p);
    plan.reporting.listener = options.listener;
    try {
      run_backward(plan, options.accumulate);
    } catch (...) {
      plan.reporting.listener = nullptr;
      throw;
    }
    plan.reporting.listener = nullptr;
    return;
  }
  run_backward(plan, options.accumulate);
  Reduction reduction{&plan, options.accumulate};
  run_indexed(plan.param_gradients().size(), reduce_param_gradient_at, &reduction);
  zero_unused();
}

}  // namespace attnlab::exec
