// The multiply-add counter of core/tensor/gemm.h: counts m·n·k per gemm() and batch·m·n·k per
// gemm_batched() only while enabled, including products split across threads, and resets.
#include "tensor/gemm.h"

#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <vector>

namespace attnlab {
namespace {

TEST(GemmCounter, CountsOnlyWhileEnabled) {
  std::vector<float> a(6 * 4, 1.0f), b(4 * 5, 1.0f), c(6 * 5);
  gemm_count_enable(false);
  gemm_count_reset();
  gemm(Trans::No, Trans::No, 6, 5, 4, 1.0f, a.data(), 4, b.data(), 5, 0.0f, c.data(), 5);
  EXPECT_EQ(gemm_counted_madds(), 0);

  gemm_count_enable(true);
  gemm(Trans::No, Trans::No, 6, 5, 4, 1.0f, a.data(), 4, b.data(), 5, 0.0f, c.data(), 5);
  EXPECT_EQ(gemm_counted_madds(), 6 * 5 * 4);
  // Three 2x5x4 products (strides of whole matrices).
  gemm_batched(Trans::No, Trans::No, 3, 2, 5, 4, 1.0f, a.data(), 4, 8, b.data(), 5, 0, 0.0f, c.data(), 5, 10);
  EXPECT_EQ(gemm_counted_madds(), 6 * 5 * 4 + 3 * 2 * 5 * 4);
  gemm_count_enable(false);
  gemm(Trans::No, Trans::No, 6, 5, 4, 1.0f, a.data(), 4, b.data(), 5, 0.0f, c.data(), 5);
  EXPECT_EQ(gemm_counted_madds(), 6 * 5 * 4 + 3 * 2 * 5 * 4);
  gemm_count_reset();
  EXPECT_EQ(gemm_counted_madds(), 0);
}

TEST(GemmCounter, SplitProductCountsOnce) {
  // Large enough that gemm() splits it into row blocks on two threads: still counted once.
  const int64_t m = 512, n = 256, k = 128;
  std::vector<float> a(m * k, 0.5f), b(k * n, 0.5f), c(m * n);
  gemm_count_reset();
  gemm_count_enable(true);
  tbb::task_arena(2).execute(
      [&] { gemm(Trans::No, Trans::No, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n); });
  gemm_count_enable(false);
  EXPECT_EQ(gemm_counted_madds(), m * n * k);
  EXPECT_FLOAT_EQ(c[0], 0.25f * k);
}

}  // namespace
}  // namespace attnlab
