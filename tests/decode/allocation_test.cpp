// Decode steps allocate nothing: after the session is built (caches allocated once), step() and
// reorder() make no call to the global operator new (replaced here for the whole test binary,
// which libattnlab_core, the plugins and TBB resolve to as well).
#include "../support/allocation_counter.h"
#include "eval/decoder.h"
#include "exec/serial_executor.h"
#include "exec/tbb_executor.h"
#include "model_fixture.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>


namespace attnlab {
namespace {

TEST(DecodeAllocation, TheCounterSeesSessionAllocations) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 1);
  exec::SerialExecutor executor;
  const long before = test::allocation_count();
  eval::DecodeSession session(*model, executor, {{5, 6, 7}}, 2, 4);
  EXPECT_GT(test::allocation_count() - before, 10);
}

TEST(DecodeAllocation, StepsAndReordersAllocateNothing) {
  for (const char* posenc : {"posenc=posenc.sinusoidal", "posenc=posenc.rotary", "posenc=posenc.learned", "posenc=posenc.alibi"}) {
    auto model = test::make_model(test::base_graph(test::small_sets(), {posenc}), 1);
    exec::TbbExecutor executor(2);
    eval::DecodeSession session(*model, executor, {{5, 6, 7}, {8, 9}}, 2, 6, 2);
    const std::vector<int> feed = {2, 2, 2, 2}, tokens = {10, 11, 12, 13}, from = {1, 0, 3, 3};
    session.step(feed);  // the first step may set up per-call state
    long in_steps = 0, in_reorders = 0;
    for (int s = 0; s < 4; ++s) {
      long before = test::allocation_count();
      session.reorder(from);
      in_reorders += test::allocation_count() - before;
      before = test::allocation_count();
      session.step(tokens);
      in_steps += test::allocation_count() - before;
    }
    EXPECT_EQ(in_reorders, 0) << posenc;
    EXPECT_EQ(in_steps, 0) << posenc;
  }
}

}  // namespace
}  // namespace attnlab
