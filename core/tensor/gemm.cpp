#include "tensor/gemm.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>

#if defined(ATTNLAB_GEMM_OPENBLAS)
#include <cblas.h>
#else
#include <Eigen/Core>
#endif

namespace attnlab {

namespace {

// One serial product on a block of rows of C.
void gemm_serial(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
#if defined(ATTNLAB_GEMM_OPENBLAS)
  cblas_sgemm(CblasRowMajor, ta == Trans::Yes ? CblasTrans : CblasNoTrans, tb == Trans::Yes ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
#else
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<Mat, 0, Stride> C(c, m, n, Stride(ldc));
  if (beta == 0.0f) C.setZero();
  else if (beta != 1.0f) C *= beta;
  if (k == 0) return;
  // op(A) is m x k; stored A is m x k (No) or k x m (Yes).
  Eigen::Map<const Mat, 0, Stride> A(a, ta == Trans::Yes ? k : m, ta == Trans::Yes ? m : k, Stride(lda));
  Eigen::Map<const Mat, 0, Stride> B(b, tb == Trans::Yes ? n : k, tb == Trans::Yes ? k : n, Stride(ldb));
  if (ta == Trans::No && tb == Trans::No) C.noalias() += alpha * A * B;
  else if (ta == Trans::No) C.noalias() += alpha * A * B.transpose();
  else if (tb == Trans::No) C.noalias() += alpha * A.transpose() * B;
  else C.noalias() += alpha * A.transpose() * B.transpose();
#endif
}

// Below this many multiply-adds a product is not worth splitting across tasks.
constexpr int64_t kSplitFlops = 1 << 21;

}  // namespace

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m * n * k < kSplitFlops || m < 32) {
    gemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Split rows of C; each block reads the rows (or columns, when transposed) of A it needs.
  const int64_t grain = std::max<int64_t>(16, m / 16);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, m, grain), [&](const tbb::blocked_range<int64_t>& r) {
    const float* a_block = ta == Trans::Yes ? a + r.begin() : a + r.begin() * lda;
    gemm_serial(ta, tb, r.size(), n, k, alpha, a_block, lda, b, ldb, beta, c + r.begin() * ldc, ldc);
  });
}

void gemm_batched(Trans ta, Trans tb, int64_t batch, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                  int64_t ldc, int64_t stride_c) {
  tbb::parallel_for(int64_t{0}, batch, [&](int64_t i) {
    gemm_serial(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
  });
}

const char* gemm_backend() {
#if defined(ATTNLAB_GEMM_OPENBLAS)
  return "openblas-serial";
#else
  return "eigen";
#endif
}

}  // namespace attnlab
