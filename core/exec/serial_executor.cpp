#include "exec/serial_executor.h"

namespace attnlab::exec {

void SerialExecutor::run_forward(Plan& plan) {
  for (size_t s = 0; s < plan.steps().size(); ++s) forward_step(plan, s);
}

void SerialExecutor::run_backward(Plan& plan, bool staged) {
  for (size_t s = plan.steps().size(); s-- > 0;)
    if (plan.steps()[s].runs_backward) backward_step(plan, s, staged);
}

}  // namespace attnlab::exec
