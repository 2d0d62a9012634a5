// core/tensor/gemm.h — the one matrix product every node calls.
//
// Contract: C = alpha * op(A) * op(B) + beta * C, row-major, float32, where op(X) is X or its
// transpose. A is M x K after op, B is K x N after op, C is M x N; lda, ldb, ldc are the row
// strides of the matrices as stored. beta == 0 means C is not read (it may hold garbage or NaN).
//
// Threading: gemm() may split the work into tbb::parallel_for tasks; it never starts threads of its
// own (the BLAS behind it is a serial build). Call it from inside the executor's task arena.
// The backend (Eigen or OpenBLAS) is chosen at build time by measurement: docs/performance.md.
// With Eigen, products with at least 8 rows, 8 columns and 8 inner steps run on attnlab's own
// packed AVX-512 kernel (tensor/sgemm_avx512.h) when the CPU has AVX-512; the environment
// variable ATTNLAB_GEMM_KERNEL=eigen (read once) keeps every product on Eigen.
#pragma once

#include <cstdint>

namespace attnlab {

enum class Trans : bool { No = false, Yes = true };

void gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// A batch of independent products with fixed strides between consecutive matrices (attention's
// per-head products). Work is spread over the batch and within each product.
void gemm_batched(Trans trans_a, Trans trans_b, int64_t batch, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                  float beta, float* c, int64_t ldc, int64_t stride_c);

// Flop accounting for benchmarks (`attnlab bench`). While enabled, every gemm() and gemm_batched()
// call adds its multiply-adds (m·n·k, times batch) to one process-wide counter (a relaxed atomic
// add per call; when disabled, a relaxed load per call and nothing else). Off by default. Counts
// matrix products only: element-wise work, softmax and norms are not included.
void gemm_count_enable(bool enabled);
void gemm_count_reset();
int64_t gemm_counted_madds();

// Which backend this build uses ("openblas-serial", "eigen", or "avx512-packed" when the packed
// AVX-512 kernel is in use), for reports and benchmarks.
const char* gemm_backend();

}  // namespace attnlab
