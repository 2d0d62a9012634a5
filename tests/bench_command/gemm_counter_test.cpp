// The multiply-add counter of core/tensor/gemm.h: counts m·n·k per gemm() and batch·m·n·k per
// gemm_batched() only while enabled, including products split across threads, and resets; and the
// per-shape profile beside it.
#include "tensor/gemm.h"

#include <gtest/gtest.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <chrono>

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

TEST(GemmProfile, RecordsEachShapeOnlyWhileEnabled) {
  std::vector<float> a(6 * 4, 1.0f), b(4 * 5, 1.0f), c(6 * 5);
  gemm_profile_enable(false);
  gemm_profile_reset();
  gemm(Trans::No, Trans::No, 6, 5, 4, 1.0f, a.data(), 4, b.data(), 5, 0.0f, c.data(), 5);
  EXPECT_TRUE(gemm_profile().empty());

  gemm_profile_enable(true);
  gemm(Trans::No, Trans::Yes, 6, 5, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 5);
  gemm(Trans::No, Trans::Yes, 6, 5, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 5);
  gemm_batched(Trans::No, Trans::No, 3, 2, 5, 4, 1.0f, a.data(), 4, 8, b.data(), 5, 0, 0.0f, c.data(), 5, 10);
  gemm_profile_enable(false);
  gemm(Trans::No, Trans::No, 6, 5, 4, 1.0f, a.data(), 4, b.data(), 5, 0.0f, c.data(), 5);
  const std::vector<GemmShapeTime> profile = gemm_profile();
  ASSERT_EQ(profile.size(), 2u);
  const GemmShape nt{false, Trans::No, Trans::Yes, 1, 6, 5, 4}, batched{true, Trans::No, Trans::No, 3, 2, 5, 4};
  for (const GemmShapeTime& t : profile) {
    EXPECT_TRUE(t.shape == nt || t.shape == batched);
    EXPECT_EQ(t.calls, t.shape == nt ? 2 : 1);
    EXPECT_GE(t.seconds, 0.0);
  }
  EXPECT_GE(profile[0].seconds, profile[1].seconds);
  gemm_profile_reset();
  EXPECT_TRUE(gemm_profile().empty());
}

TEST(GemmProfile, NestedProductsAreNotCountedTwice) {
  // Products that split into tasks, started from tasks: a thread waiting for its own product's
  // blocks steals other products, which run inside it. Summed over threads, the recorded time
  // must still fit in the threads' wall time (it would not if the nested ones counted twice).
  const int64_t m = 512, n = 256, k = 256, count = 16;
  std::vector<float> a(m * k, 0.5f), b(k * n, 0.5f), c(count * m * n);
  gemm_profile_reset();
  gemm_profile_enable(true);
  const auto t0 = std::chrono::steady_clock::now();
  tbb::task_arena(2).execute([&] {
    tbb::parallel_for(int64_t{0}, count, [&](int64_t i) {
      gemm(Trans::No, Trans::No, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data() + i * m * n, n);
    });
  });
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  gemm_profile_enable(false);
  const std::vector<GemmShapeTime> profile = gemm_profile();
  ASSERT_EQ(profile.size(), 1u);
  EXPECT_EQ(profile[0].calls, count);
  EXPECT_GT(profile[0].seconds, 0.0);
  EXPECT_LE(profile[0].seconds, 2 * wall);
  EXPECT_FLOAT_EQ(c[(count - 1) * m * n], 0.25f * k);
  gemm_profile_reset();
}

}  // namespace
}  // namespace attnlab
