// Steady state allocates nothing: after the first step on a plan, forward and backward make no
// call to the global operator new (counted here by replacing it for the whole test binary, which
// libattnlab_core and TBB resolve to as well).
#include "../support/allocation_counter.h"
#include "exec/executor.h"
#include "exec/serial_executor.h"
#include "exec/tbb_executor.h"
#include "exec_fixture.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>


namespace attnlab {
namespace {

TEST(Allocation, TheCounterSeesLibraryAllocations) {
  // A plan is built inside libattnlab_core: if the replacement were not in effect there, this
  // would count nothing and the steady-state test below would prove nothing.
  test::Fixture fx(test::branchy_graph());
  const long before = test::allocation_count();
  fx.model->plan({{"batch", 2}}, {"x", "target"}, {"loss"});
  EXPECT_GT(test::allocation_count() - before, 10);
}

TEST(Allocation, SteadyStateStepsAllocateNothing) {
  exec::SerialExecutor serial;
  exec::TbbExecutor tbb(2);
  for (exec::Executor* ex : {static_cast<exec::Executor*>(&serial), static_cast<exec::Executor*>(&tbb)}) {
    for (bool accumulate : {false, true}) {
      test::Fixture fx(test::branchy_graph());
      exec::Plan& plan = fx.model->plan({{"batch", 4}}, {"x", "target"}, {"loss", "count", "hidden"});
      Tensor x = test::pattern({4, 4}, 0.1f), target = test::pattern({4, 5}, 0.4f);
      const exec::TensorMap feeds{{"x", x}, {"target", target}};
      const exec::BackwardOptions options{accumulate};
      // The first step may build per-plan executor state (the flow graphs) and staging buffers.
      ex->forward(plan, feeds, {true, 11}, 0);
      ex->backward(plan, {}, options);

      const long before = test::allocation_count();
      float loss_sum = 0;
      for (uint64_t step = 1; step <= 2; ++step) {
        ex->forward(plan, feeds, {true, 11}, step);
        loss_sum += plan.value("loss").data()[0];
        ex->backward(plan, {}, options);
      }
      const long during = test::allocation_count() - before;
      EXPECT_EQ(during, 0) << ex->name() << (accumulate ? " accumulating" : "");
      EXPECT_GT(loss_sum, 0.0f);
    }
  }
}

}  // namespace
}  // namespace attnlab
