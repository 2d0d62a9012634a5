// core/exec/plan.h — the memory and schedule of one kind of step: fixed sizes, fed values, fetches.
//
// Contract:
// - A Plan is built by Model::plan() for concrete sizes (DimBindings), a set of fed values (graph
//   inputs or node outputs supplied from outside) and a set of fetched values (graph output names
//   or value names). It keeps only the nodes needed to compute the fetches from the feeds (a fed
//   intermediate value cuts off everything upstream of it); needing a graph input that is not fed
//   is an error.
// - Every buffer is allocated once, here: values, gradients of values, each node's saved and
//   workspace buffers, and the per-use gradient of a parameter that several planned nodes use (a
//   parameter with a single user gets the ParameterStore's gradient directly). Steps that can never
//   run at the same time (ordered by the forward and backward dependencies) share their workspace
//   memory, which the node contract makes scratch for one call. Executors only read
//   and write these buffers; a steady-state step allocates nothing. The memory comes from the
//   Model's BufferPool (exec/buffer_pool.h): recycled, so its contents are unspecified until
//   written.
// - Gradients: a value has a gradient buffer when a gradient can flow to it from a fetched
//   differentiable value; a node runs backward when one of its outputs has a gradient and it has
//   parameters or a differentiable input. Non-differentiable ports (PortSchema::differentiable) and
//   graph inputs of kind "ids"/"mask" get no gradient (absent views).
// - The steps are in topological order; forward_after/backward_after give the dependencies an
//   executor must respect. backward_after also orders the nodes that ADD into the same gradient
//   buffer, so no two of them ever run at once.
#pragma once

#include "exec/buffer_pool.h"
#include "exec/parameters.h"
#include "ir/graph.h"
#include "node/node.h"

#include <atomic>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::exec {

class Model;
class GradientListener;
class ReportSink;

// What a plan is for. Forward-only plans (evaluation, decoding) get no gradient buffers: no value
// gradients, no per-use parameter gradients, no node runs backward; backward() on one is an error.
enum class Pass { ForwardAndBackward, ForwardOnly };

// A request the plan cannot satisfy: an unknown or unfed value, a conflicting feed.
struct PlanError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Whatever an executor keeps per plan (a TBB flow graph), released with the plan.
struct ExecutorState {
  virtual ~ExecutorState() = default;
};

class Plan {
 public:
  struct Step {
    int node = -1;  // index into the graph's nodes
    const Node* instance = nullptr;
    std::string name, type;
    ir::SourceLoc loc;
    uint64_t name_hash = 0;
    bool runs_backward = false;
    std::vector<TensorView> inputs, params, outputs, saved, workspace;
    std::vector<TensorView> output_grads, input_grads, param_grads;
    std::vector<TensorView> param_grads_staged;  // used when accumulating (see prepare_accumulation)
    std::vector<int> forward_after;   // steps whose forward must finish first
    std::vector<int> backward_after;  // steps whose backward must finish first
    std::vector<size_t> writes_param_gradients;  // indices into param_gradients() this step's backward assigns
  };

  // How the store's gradient of one parameter is produced from the steps' param_grads.
  struct ParamGradient {
    size_t param = 0;                // index into the ParameterStore
    std::vector<TensorView> uses;    // per-use buffers; empty: the single user writes the store directly
    TensorView staged;               // single user's buffer when accumulating
    int single_step = -1, single_slot = -1;  // where the single user's param_grads entry sits
    int writers = 0;                 // steps (uses) that assign it; the last one to finish makes it final
  };

  Plan(Model& model, ir::DimBindings dims, std::vector<std::string> feeds, std::vector<std::string> fetches,
       Pass pass = Pass::ForwardAndBackward);
  ~Plan();
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  Model& model() const { return model_; }
  const ir::DimBindings& dims() const { return dims_; }
  const std::vector<std::string>& feeds() const { return feeds_; }      // value names
  const std::vector<std::string>& fetches() const { return fetches_; }  // as given
  Pass pass() const { return pass_; }

  // A planned value by value name or graph output name: its buffer, and its gradient (absent when
  // it has none). Throws std::out_of_range naming it when the plan does not hold it.
  const TensorView& value(const std::string& name) const;
  const TensorView& grad(const std::string& name) const;
  bool has_value(const std::string& name) const;

  const std::vector<Step>& steps() const { return steps_; }
  std::vector<Step>& steps() { return steps_; }
  const std::vector<ParamGradient>& param_gradients() const { return param_gradients_; }
  const std::vector<size_t>& unused_params() const { return unused_params_; }  // params no backward step writes
  const std::vector<TensorView>& value_grads() const { return value_grad_views_; }  // every gradient buffer
  int64_t bytes() const { return bytes_; }  // all buffers the plan owns
  // Workspace blocks: steps that can never run at the same time share one (see plan.cpp).
  size_t workspace_groups() const { return workspace_groups_; }

  // Per-use buffers for parameters with a single user, so that backward can add into the store
  // instead of assigning. Allocated on first call only.
  void prepare_accumulation();
  bool accumulation_ready() const { return accumulation_ready_; }

  // Set by Executor::forward, read by backward: the step the buffers hold.
  struct LastForward {
    bool done = false;
    bool training = false;
    uint64_t seed = 0;
    uint64_t step = 0;
    int64_t batch_offset = 0, batch_rows = 0;  // StepInfo's shard position, passed on to every node
    Recorder* const* recorders = nullptr;  // during an inspecting forward: one per step
    ReportSink* report_sink = nullptr;     // during a reporting (training) forward
  } last_forward;
  // Executor-private: one StepReport per step for reporting forwards, built on first use.
  std::vector<std::shared_ptr<StepReport>> step_reports;  // shared_ptr: it deletes the concrete type

  // Set by Executor::backward for the backward in progress (BackwardOptions::objective_scale).
  double objective_scale = 1.0;

  // Executor-private: the backward in progress when it reports final gradients (see
  // BackwardOptions::listener in executor.h): the listener (null: none), whether it accumulates,
  // and how many writers of each param_gradients() entry have not finished (allocated once).
  struct GradientReporting {
    GradientListener* listener = nullptr;
    bool accumulate = false;
    std::unique_ptr<std::atomic<int>[]> pending_writers;
  } reporting;

  // Executor-private state (e.g. a built flow graph), keyed by executor id.
  std::unique_ptr<ExecutorState>& executor_state(uint64_t executor_id) { return executor_state_[executor_id]; }

  // Resolved value name of a fetch or feed (graph output names map to their values).
  const std::string& resolve(const std::string& name) const;

 private:
  struct Builder;  // the constructor's stages (plan.cpp)
  TensorView allocate(Shape shape);
  void share_workspaces(const std::vector<std::vector<Shape>>& shapes);  // per step

  Model& model_;
  ir::DimBindings dims_;
  Pass pass_;
  std::vector<std::string> feeds_, fetches_;
  std::map<std::string, std::string> output_values_;  // graph output name -> value name
  std::vector<PooledBlock> buffers_;
  std::map<std::string, TensorView> values_;
  std::map<std::string, TensorView> grads_;
  std::vector<TensorView> value_grad_views_;
  std::vector<Step> steps_;
  std::vector<ParamGradient> param_gradients_;
  std::vector<size_t> unused_params_;
  bool accumulation_ready_ = false;
  int64_t bytes_ = 0;
  size_t workspace_groups_ = 0;
  std::map<uint64_t, std::unique_ptr<ExecutorState>> executor_state_;
};

}  // namespace attnlab::exec
