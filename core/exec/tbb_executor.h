// core/exec/tbb_executor.h — runs independent nodes concurrently with a TBB flow graph.
//
// Contract: as Executor. Per plan it builds, on first use, two tbb::flow::graph objects of
// continue_nodes, one node per planned step: forward with edges from data dependencies, backward
// with the reverse edges (plus the ordering among nodes adding into one gradient buffer). Both
// are built and run inside this executor's tbb::task_arena of `threads` slots (0: TBB's default),
// so nodes' nested tbb::parallel_for stays in that arena and the thread count bounds all work.
// Results are identical to SerialExecutor's for nodes that are deterministic given their inputs.
#pragma once

#include "exec/executor.h"

#include <tbb/task_arena.h>

namespace attnlab::exec {

class TbbExecutor final : public Executor {
 public:
  explicit TbbExecutor(int threads = 0);
  const char* name() const override { return "tbb"; }
  int threads() const { return arena_.max_concurrency(); }

 protected:
  void run_forward(Plan& plan) override;
  void run_backward(Plan& plan, bool staged) override;
  void run_indexed(size_t n, void (*fn)(void* ctx, size_t i), void* ctx) override;

 private:
  struct State;
  State& state(Plan& plan);

  tbb::task_arena arena_;
  uint64_t id_;  // keys this executor's state in each plan
};

}  // namespace attnlab::exec
