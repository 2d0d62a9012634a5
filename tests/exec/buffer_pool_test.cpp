// BufferPool: size classes, reuse of released blocks for nearby sizes, and the bound on idle memory;
// and plans drawing from it, so a new batch shape after clear_plans() allocates nothing new.
#include "exec/buffer_pool.h"
#include "exec/model.h"
#include "exec/plan.h"
#include "exec_fixture.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace attnlab {
namespace {

using exec::BufferPool;

TEST(BufferPool, SizeClassesAreFourPerDoublingAndNeverBelowTheRequest) {
  EXPECT_EQ(BufferPool::size_class(1), 16);
  EXPECT_EQ(BufferPool::size_class(16), 16);
  EXPECT_EQ(BufferPool::size_class(17), 20);
  EXPECT_EQ(BufferPool::size_class(20), 20);
  EXPECT_EQ(BufferPool::size_class(21), 24);
  EXPECT_EQ(BufferPool::size_class(32), 32);
  EXPECT_EQ(BufferPool::size_class(33), 40);
  EXPECT_EQ(BufferPool::size_class(1000), 1024);
  EXPECT_EQ(BufferPool::size_class(1025), 1280);
  for (int64_t n = 1; n < 5000; n += 7) {
    const int64_t c = BufferPool::size_class(n);
    EXPECT_GE(c, n);
    EXPECT_LE(c, n < 16 ? 16 : n * 5 / 4 + 1) << n;
  }
}

TEST(BufferPool, BlocksAreAlignedAndReleasedBlocksServeNearbySizes) {
  BufferPool pool;
  float* first = nullptr;
  {
    exec::PooledBlock a = pool.acquire(1000);
    first = a.data();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
    EXPECT_EQ(a.capacity(), 1024);
    EXPECT_EQ(pool.bytes_in_use(), 1024 * 4);
  }
  EXPECT_EQ(pool.bytes_in_use(), 0);
  EXPECT_EQ(pool.bytes_idle(), 1024 * 4);
  exec::PooledBlock smaller = pool.acquire(700);  // class 768: the idle 1024 is within twice that
  EXPECT_EQ(smaller.data(), first);
  EXPECT_EQ(pool.blocks_allocated(), 1);
  exec::PooledBlock other = pool.acquire(700);  // nothing idle: a new block
  EXPECT_NE(other.data(), first);
  EXPECT_EQ(pool.blocks_allocated(), 2);
}

TEST(BufferPool, AnIdleBlockMoreThanTwiceTheRequestIsNotUsed) {
  BufferPool pool;
  { exec::PooledBlock big = pool.acquire(4096); }
  exec::PooledBlock small = pool.acquire(100);
  EXPECT_EQ(small.capacity(), 112);
  EXPECT_EQ(pool.blocks_allocated(), 2);
}

TEST(BufferPool, IdleMemoryBeyondThePeakUseIsReturned) {
  constexpr int64_t kQuarterMiB = int64_t{1} << 16, kFourMiB = int64_t{1} << 20;  // in floats
  BufferPool pool;
  {
    exec::PooledBlock a = pool.acquire(kQuarterMiB), b = pool.acquire(kQuarterMiB);
  }  // peak use 512 KiB, now all idle
  {
    exec::PooledBlock c = pool.acquire(kFourMiB);  // nothing idle fits; idle is not above the peak: kept
    EXPECT_EQ(pool.bytes_idle(), 2 * kQuarterMiB * 4);
  }  // peak use 4 MiB; idle 4.5 MiB
  exec::PooledBlock d = pool.acquire(4 * kFourMiB);  // a miss with idle above the peak frees every idle block
  EXPECT_EQ(pool.bytes_idle(), 0);
  EXPECT_EQ(pool.bytes_in_use(), 4 * kFourMiB * 4);
  EXPECT_EQ(pool.bytes_peak_in_use(), 4 * kFourMiB * 4);
}

TEST(BufferPool, ANewBatchShapeAfterClearingPlansAllocatesNothingNew) {
  test::Fixture fx(test::branchy_graph());
  exec::Model& model = *fx.model;
  model.plan({{"batch", 64}}, {"x", "target"}, {"loss"});
  const int64_t allocated = model.buffer_pool().blocks_allocated();
  EXPECT_GT(allocated, 0);
  model.clear_plans();
  EXPECT_EQ(model.buffer_pool().bytes_in_use(), 0);
  exec::Plan& next = model.plan({{"batch", 60}}, {"x", "target"}, {"loss"});  // a little smaller
  EXPECT_EQ(model.buffer_pool().blocks_allocated(), allocated);
  EXPECT_EQ(next.value("x").shape(), (Shape{60, 4}));
}

TEST(BufferPool, ABlockBeyondTheMachinesMemoryIsRefusedWithItsSize) {
  BufferPool pool;
  const int64_t machine = exec::machine_memory_bytes();
  ASSERT_GT(machine, 0);
  const exec::PooledBlock held = pool.acquire(1 << 20);  // 4 MiB in use
  try {
    (void)pool.acquire(machine / 4);  // with the block held: past the machine's memory
    ADD_FAILURE() << "accepted";
  } catch (const exec::OutOfMemoryError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("out of memory: a buffer of ", 0), 0u) << what;
    EXPECT_NE(what.find(" with 0.0 GiB already in use is more than this machine's "), std::string::npos) << what;
    EXPECT_NE(what.find("(smaller batches, shorter sequences or a smaller model fit)"), std::string::npos) << what;
  }
  EXPECT_THROW((void)pool.acquire(INT64_MAX / 2), exec::OutOfMemoryError);  // no overflow in the size classes
  EXPECT_EQ(pool.bytes_in_use(), 4 << 20);
  EXPECT_EQ(pool.blocks_allocated(), 1);
}

}  // namespace
}  // namespace attnlab
