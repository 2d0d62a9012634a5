// core/tensor/gemm.cpp — see gemm.h. The backend is chosen at build time (ATTNLAB_GEMM in
// core/CMakeLists.txt); docs/performance.md records the measurements behind the default. In the
// Eigen build, products run on attnlab's own AVX-512 kernel (tensor/sgemm_avx512.h) when the CPU
// has AVX-512, with Eigen as the fallback (and selectable: ATTNLAB_GEMM_KERNEL=eigen).
#include "tensor/simd_intrinsics.h"  // first: see there

#include "tensor/gemm.h"

#include "tensor/sgemm_avx512.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#if defined(ATTNLAB_GEMM_OPENBLAS)
#include <cblas.h>

#include <mutex>
#else
#include <Eigen/Core>
#endif

namespace attnlab {

namespace {

#if defined(ATTNLAB_GEMM_OPENBLAS)
// Debian's serial OpenBLAS (0.3.21) is not safe to call from two threads at once: its internal
// buffer pool is unlocked, and concurrent products intermittently come out wrong (tests/bench's
// gemm_bench checks this; docs/performance.md). Every call is therefore serialised, which keeps
// the results right but leaves one product at a time running.
std::mutex& openblas_mutex() {
  static std::mutex m;
  return m;
}
#endif

// One serial product on a block of C.
void gemm_serial(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
#if defined(ATTNLAB_GEMM_OPENBLAS)
  std::lock_guard<std::mutex> lock(openblas_mutex());
  cblas_sgemm(CblasRowMajor, ta == Trans::Yes ? CblasTrans : CblasNoTrans, tb == Trans::Yes ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
#else
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<Mat, 0, Stride> C(c, m, n, Stride(ldc));
  if (k == 0 || alpha == 0.0f) {
    if (beta == 0.0f) C.setZero();
    else if (beta != 1.0f) C *= beta;
    return;
  }
  // op(A) is m x k; stored A is m x k (No) or k x m (Yes).
  Eigen::Map<const Mat, 0, Stride> A(a, ta == Trans::Yes ? k : m, ta == Trans::Yes ? m : k, Stride(lda));
  Eigen::Map<const Mat, 0, Stride> B(b, tb == Trans::Yes ? n : k, tb == Trans::Yes ? k : n, Stride(ldb));
  auto product = [&](const auto& opA, const auto& opB) {
    if (beta == 0.0f) {
      // Assignment: C is never read (it may hold NaN).
      if (alpha == 1.0f) C.noalias() = opA * opB;
      else C.noalias() = alpha * opA * opB;
    } else {
      if (beta != 1.0f) C *= beta;
      if (alpha == 1.0f) C.noalias() += opA * opB;
      else C.noalias() += alpha * opA * opB;
    }
  };
  if (ta == Trans::No && tb == Trans::No) product(A, B);
  else if (ta == Trans::No) product(A, B.transpose());
  else if (tb == Trans::No) product(A.transpose(), B);
  else product(A.transpose(), B.transpose());
#endif
}

#if !defined(ATTNLAB_GEMM_OPENBLAS)
// ATTNLAB_GEMM_KERNEL, read once (sgemm_avx512.h describes the values).
bool use_avx512() {
  static const bool use = sgemm_avx512::kernel_from_setting(std::getenv("ATTNLAB_GEMM_KERNEL"),
                                                            sgemm_avx512::cpu_supported()) ==
                          sgemm_avx512::KernelChoice::Avx512;
  return use;
}
#endif

std::atomic<bool> g_count_enabled{false};
std::atomic<int64_t> g_counted_madds{0};

void count_madds(int64_t madds) {
  if (g_count_enabled.load(std::memory_order_relaxed)) g_counted_madds.fetch_add(madds, std::memory_order_relaxed);
}

// Below this many multiply-adds (~25 µs of work) a product is not worth splitting across tasks.
constexpr int64_t kSplitFlops = int64_t{1} << 21;
// Blocks are cut with tbb::simple_partitioner: the split points depend only on the shape, never on
// the thread count or timing. That matters because the backend's blocking (and so the rounding of
// each element) depends on the block's size: with fixed blocks a product is bitwise reproducible.
//
// The smallest block of rows (or columns) a task gets: large enough that packing the shared
// operand once per block costs little next to the block's arithmetic.
constexpr int64_t kMinRows = 64;
constexpr int64_t kMinCols = 256;

#if !defined(ATTNLAB_GEMM_OPENBLAS)
// Whether a product runs on the packed kernel or on Eigen (when the packed kernel is selected at
// all). Depends only on the shape, so a given product is always computed the same way, whatever
// the thread count. Packing op(B) costs about as much as one row of C, packing op(A) about one
// column, so the packed kernel needs a few rows and columns to pay; with a very short k, each
// tile's store of C outweighs its few multiply-adds. Measured (gemm_bench's small/ family, one
// thread, GFLOP/s Eigen → packed; docs/performance.md has the full table): one row 10.4–11.2 →
// 2.1–5.0 (Eigen switches to a matrix-vector product); 8 rows level (31.5–35.6 → 30.6–34.3);
// 2048x8x512 NN 29.4 → 24.8 but TN 6.6 → 11.4; 64x64x4 19.0–21.1 → 18.1–19.5; 256x256x8
// 40.1–42.6 → 43.5–44.9; attention's per-head products all gain (32x64x32 71.4 → 85.0 NN,
// 62.5 → 77.9 NT; 24x24x32 43.3 → 55.5 NN); 128x512x512 gains 7–14 %.
bool packed_pays(int64_t m, int64_t n, int64_t k) { return m >= 8 && n >= 8 && k >= 8; }
#endif

}  // namespace

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  count_madds(m * n * k);
#if defined(ATTNLAB_GEMM_OPENBLAS)
  constexpr bool can_split = false;  // calls are serialised anyway (see openblas_mutex)
#else
  constexpr bool can_split = true;
  if (use_avx512() && packed_pays(m, n, k)) {
    // Splits rows (and, for few rows, columns) into tasks that share one packed copy of B; the
    // result does not depend on the split at all (sgemm_avx512.h).
    sgemm_avx512::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, m * n * k >= kSplitFlops);
    return;
  }
#endif
  if (!can_split || m * n * k < kSplitFlops || (m < 2 * kMinRows && n < 2 * kMinCols)) {
    gemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m >= 2 * kMinRows) {
    // Split rows of C; each block reads the rows (or, transposed, the columns) of A it needs and
    // all of B. About 16 blocks: enough for work stealing to balance, few enough to pack B rarely.
    const int64_t grain = std::max<int64_t>(kMinRows, m / 16);
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, m, grain),
        [&](const tbb::blocked_range<int64_t>& r) {
          const float* a_block = ta == Trans::Yes ? a + r.begin() : a + r.begin() * lda;
          gemm_serial(ta, tb, r.size(), n, k, alpha, a_block, lda, b, ldb, beta, c + r.begin() * ldc, ldc);
        },
        tbb::simple_partitioner());
    return;
  }
  // Few rows, many columns (e.g. logits for a handful of decoding positions): split columns.
  const int64_t grain = std::max<int64_t>(kMinCols, n / 16);
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, n, grain),
      [&](const tbb::blocked_range<int64_t>& r) {
        const float* b_block = tb == Trans::Yes ? b + r.begin() * ldb : b + r.begin();
        gemm_serial(ta, tb, m, r.size(), k, alpha, a, lda, b_block, ldb, beta, c + r.begin(), ldc);
      },
      tbb::simple_partitioner());
}

void gemm_batched(Trans ta, Trans tb, int64_t batch, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                  int64_t ldc, int64_t stride_c) {
  count_madds(batch * m * n * k);
  // Small per-head products: group several into one task so that scheduling does not dominate.
  const int64_t per_task = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, m * n * k));
#if !defined(ATTNLAB_GEMM_OPENBLAS)
  const bool packed = use_avx512() && packed_pays(m, n, k);
#else
  constexpr bool packed = false;
#endif
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, batch, per_task), [&](const tbb::blocked_range<int64_t>& r) {
    for (int64_t i = r.begin(); i < r.end(); ++i) {
      if (packed)
        sgemm_avx512::sgemm(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
                            c + i * stride_c, ldc, false);
      else
        gemm_serial(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
    }
  });
}

void gemm_count_enable(bool enabled) { g_count_enabled.store(enabled, std::memory_order_relaxed); }
void gemm_count_reset() { g_counted_madds.store(0, std::memory_order_relaxed); }
int64_t gemm_counted_madds() { return g_counted_madds.load(std::memory_order_relaxed); }

const char* gemm_backend() {
#if defined(ATTNLAB_GEMM_OPENBLAS)
  return "openblas-serial";
#else
  return use_avx512() ? "avx512-packed" : "eigen";
#endif
}

}  // namespace attnlab
