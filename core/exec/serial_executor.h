// core/exec/serial_executor.h — the reference executor: one node at a time, in plan order.
//
// Contract: as Executor. Nodes run on the calling thread in topological order (backward in the
// reverse order); a node's own tbb::parallel_for uses whatever arena the caller is in. It is the
// reference the TBB executor is tested against.
#pragma once

#include "exec/executor.h"

namespace attnlab::exec {

class SerialExecutor final : public Executor {
 public:
  const char* name() const override { return "serial"; }

 protected:
  void run_forward(Plan& plan) override;
  void run_backward(Plan& plan, bool staged) override;
};

}  // namespace attnlab::exec
