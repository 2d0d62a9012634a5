// core/tensor/gemm.h — the one matrix product every node calls.
//
// Contract: C = alpha * op(A) * op(B) + beta * C, row-major, float32, where op(X) is X or its
// transpose. A is M x K after op, B is K x N after op, C is M x N; lda, ldb, ldc are the row
// strides of the matrices as stored. beta == 0 means C is not read (it may hold garbage or NaN).
//
// Threading: gemm() may split the work into tbb::parallel_for tasks; it never starts threads of its
// own (each task runs a serial library product). Call it from inside the executor's task arena.
// The kernel (oneDNN, BLIS or Eigen, held to an ISA) is chosen at run time for the CPU, from
// measurements (docs/performance.md); ATTNLAB_GEMM_KERNEL forces one: tensor/gemm_kernel.h.
#pragma once

#include <compare>
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace attnlab {

enum class Trans : bool { No = false, Yes = true };

void gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// One dimension of a batch of products: `count` products whose A, B and C lie stride_a, stride_b
// and stride_c floats after those of the previous index. A stride of 0 for A or B gives every index
// the same operand (attention's grouped-query heads share one key/value head); C's strides must
// keep the products' outputs apart.
struct GemmBatchDim {
  int64_t count = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

// Independent products over up to three batch dimensions, outermost first: for every index
// (i0, i1, i2), the product of gemm() on A + Σ i·stride_a, B + Σ i·stride_b, C + Σ i·stride_c.
// Attention's per-head products ([batch, head] over interleaved head columns) are one call. Small
// products are split into tasks of whole outer indices (put the largest dimension first), each
// task one run of the kernel's batched product (gemm_kernel.h), so the library's cost per call is
// paid per task, not per product; products of 2^21 multiply-adds or more are each a task of their
// own, split further like gemm(). Results depend only on the shapes, never on the thread count.
void gemm_batched(Trans trans_a, Trans trans_b, std::initializer_list<GemmBatchDim> dims, int64_t m, int64_t n,
                  int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                  float* c, int64_t ldc);

// One batch dimension.
inline void gemm_batched(Trans trans_a, Trans trans_b, int64_t batch, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                         float beta, float* c, int64_t ldc, int64_t stride_c) {
  gemm_batched(trans_a, trans_b, {GemmBatchDim{batch, stride_a, stride_b, stride_c}}, m, n, k, alpha, a, lda, b, ldb,
               beta, c, ldc);
}

// Flop accounting for benchmarks (`attnlab bench`). While enabled, every gemm() and gemm_batched()
// call adds its multiply-adds (m·n·k, times batch) to one process-wide counter (a relaxed atomic
// add per call; when disabled, a relaxed load per call and nothing else). Off by default. Counts
// matrix products only: element-wise work, softmax and norms are not included.
void gemm_count_enable(bool enabled);
void gemm_count_reset();
int64_t gemm_counted_madds();

// Per-shape timing for benchmarks (`attnlab bench --products`). While enabled, every gemm() and
// gemm_batched() call adds its wall time to a record of its shape (layout, batch, m, n, k), kept per
// thread (no lock shared between threads; two clock reads per call). A call's time excludes any
// product its thread ran inside it while waiting for its own tasks (TBB's work stealing), so no
// time is counted twice; a product split across threads counts the wall time of its calling
// thread. When disabled, a relaxed load per call. gemm_profile() merges the threads' records; call
// it, and gemm_profile_reset(), while no product runs.
struct GemmShape {
  bool batched = false;
  Trans trans_a = Trans::No, trans_b = Trans::No;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  auto operator<=>(const GemmShape&) const = default;
};
struct GemmShapeTime {
  GemmShape shape;
  int64_t calls = 0;
  double seconds = 0;  // summed over calls and threads
};
void gemm_profile_enable(bool enabled);
void gemm_profile_reset();
std::vector<GemmShapeTime> gemm_profile();  // most time first

// The kernel products run on ("onednn-avx512", "blis-avx2", "eigen", ...: gemm_kernel.h), for
// reports and benchmarks.
const char* gemm_backend();

}  // namespace attnlab
