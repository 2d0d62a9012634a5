// core/exec/executor.h — running a Plan forward and backward.
//
// Contract:
// - forward(plan, feeds, base, step) copies each fed tensor into the plan's buffer (every fed
//   value of the plan must be given, with exactly the planned shape; nothing else may be given),
//   then runs forward of every planned node. Node i sees StepInfo{base.training,
//   node_seed(base.seed, step, name_i)}: randomness depends on the run seed, the step
//   number and the node's name only, so it is identical across executors and thread counts.
//   (base.decode is not passed on: incremental decoding keeps a cache per node and drives nodes
//   itself.)
// - backward(plan, seeds, options) runs backward for the step the last forward computed, in
//   reverse topological order:
//     1. every value gradient of the plan is zeroed (once; nodes then ADD, so fan-out sums);
//     2. the seeds are copied into the gradients of their values (a fetched differentiable value,
//        by value or graph output name). No seeds: the one fetched scalar that carries a gradient (a
//        task's loss, core/task/task.h) gets gradient 1;
//     3. nodes ASSIGN parameter gradients: a parameter with one user is written straight into the
//        ParameterStore; one with several users gets a buffer per use, summed into the store;
//     4. the store's gradient of a parameter this plan does not reach is set to zero.
//   So after backward, ParameterStore::grad holds the gradient of this step alone. With
//   options.accumulate the step's gradients are ADDED to the store's instead (gradient
//   accumulation over several batches; untouched parameters keep their gradient).
//   5. with options.listener, each parameter's store gradient is made final as soon as the last
//      node writing it has run (its per-use buffers summed, or its staged buffer added, right
//      then), and listener->gradient_ready(store index) is called once per parameter of the store
//      during backward: from whichever thread finished that node, concurrently for different
//      parameters, while backward goes on with the remaining nodes (parameters the plan does not
//      reach are reported first). The gradients are the same as without a listener, bit for bit.
//      A data-parallel trainer starts reducing a parameter's gradient across processes there.
// - forward(..., sink) is an inspecting pass: every node gets a Recorder (StepInfo::recorder)
//   whose records go to sink->record(node name, what, shape), called from the threads that run
//   the nodes. Only a Pass::ForwardOnly plan may be inspected (ExecError otherwise): a node may
//   compute differently while recording (attention takes its materialised kernel), and nothing
//   runs backward from such a pass. The outputs are those of an ordinary forward pass.
// - forward(..., report) in a training pass hands every node a StepReport (StepInfo::report) whose
//   auxiliary losses and metrics go to report->aux_loss(node name, value) and
//   report->metric(node name, name, value), from the threads that run the nodes. Outside training
//   nodes get no report. backward passes options.objective_scale to every node
//   (StepInfo::objective_scale): the factor the caller seeded the objective's gradient with, by
//   which nodes scale the gradients of their auxiliary losses (node.h, StepReport).
// - A node that throws is reported as ExecError: "file:line:col: error: node 'NAME' (TYPE):
//   forward: <what>" (or backward); nodes not yet started are skipped, and the plan stays usable.
// - After the first call on a plan (which may build per-plan executor state, and for accumulate
//   the staging buffers), forward and backward allocate no memory.
#pragma once

#include "exec/plan.h"
#include "node/node.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

namespace attnlab::exec {

struct ExecError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Named tensors handed to an executor: fed values, or seed gradients.
using TensorMap = std::map<std::string, TensorView>;

// Told when a parameter's gradient is final during backward (see BackwardOptions::listener).
class GradientListener {
 public:
  virtual void gradient_ready(size_t param) = 0;  // a ParameterStore index; must not throw

 protected:
  ~GradientListener() = default;
};

struct BackwardOptions {
  bool accumulate = false;  // add into the store's gradients instead of assigning them
  GradientListener* listener = nullptr;
  double objective_scale = 1.0;  // what the objective's gradient was seeded with (StepInfo)
};

// Receives the auxiliary losses and metrics of a training forward pass (see forward above).
class ReportSink {
 public:
  virtual void aux_loss(const std::string& node, double value) = 0;
  virtual void metric(const std::string& node, const std::string& name, double value) = 0;

 protected:
  ~ReportSink() = default;
};

// Receives the records of an inspecting forward pass (see forward above).
class RecordSink {
 public:
  virtual TensorView record(const std::string& node, const std::string& what, const Shape& shape) = 0;

 protected:
  ~RecordSink() = default;
};

// The seed a node gets for one step: a hash of (run seed, step, node name).
uint64_t node_seed(uint64_t run_seed, uint64_t step, const std::string& node_name);

class Executor {
 public:
  virtual ~Executor() = default;
  virtual const char* name() const = 0;

  void forward(Plan& plan, const TensorMap& feeds, StepInfo base, uint64_t step, RecordSink* sink = nullptr,
               ReportSink* report = nullptr);
  void backward(Plan& plan, const TensorMap& seeds = {}, BackwardOptions options = {});

 protected:
  // Schedule every step's forward (respecting Step::forward_after) / every backward-running step's
  // backward (respecting Step::backward_after). Errors from forward_step/backward_step propagate.
  virtual void run_forward(Plan& plan) = 0;
  virtual void run_backward(Plan& plan, bool staged) = 0;
  // Call fn(ctx, i) for i in [0, n), in any order, possibly concurrently.
  virtual void run_indexed(size_t n, void (*fn)(void* ctx, size_t i), void* ctx);

  // One node's forward or backward with the plan's views, exceptions wrapped in ExecError.
  static void forward_step(Plan& plan, size_t step);
  // With a listener (BackwardOptions), it then finalises the parameters this step was the last
  // writer of and reports them.
  static void backward_step(Plan& plan, size_t step, bool staged);
};

}  // namespace attnlab::exec
