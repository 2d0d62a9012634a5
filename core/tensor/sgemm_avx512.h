// core/tensor/sgemm_avx512.h — attnlab's own float32 matrix product for CPUs with AVX-512
// (internal to core/tensor/gemm.cpp and its tests; nodes call attnlab::gemm()).
//
// Contract: the same as gemm() in gemm.h — C = alpha * op(A) * op(B) + beta * C, row-major,
// lda/ldb/ldc the row strides as stored, beta == 0 never reads C, the padding of C beyond n
// columns is never written. Callers must check cpu_supported() first.
//
// Method (BLIS-style): the k dimension is cut into blocks of at most kKC (the blocks balanced, so
// k = 600 becomes 3 × 200); the n dimension into blocks of at most kNC columns. For each
// (column block, k block), op(B) is packed once into kKC × kNR column panels, and op(A) into
// kMR × kKC row panels per block of rows; packing absorbs transposes and strides, so all four
// transpose combinations run the same micro-kernel: a kMR × kNR tile of accumulators in 28 zmm
// registers (14 rows × two 16-float vectors), each k step one broadcast of A per row times two
// loads of B. Tiles at the edges (fewer than kMR rows or kNR columns) run the same kernel
// instantiated for their row count with masked loads and stores of C, so no work is spent on
// padding rows. alpha and beta are applied when the tile is stored: the first k block stores
// alpha·acc + beta·C (alpha·acc when beta == 0), later k blocks add alpha·acc.
//
// Determinism: every element of C is computed by the same sequence of operations whatever the
// row or column split (the k blocks are summed in order, each in the kernel's fixed order), so
// results are bitwise identical for any thread count and for split and serial runs.
//
// Threading (split = true): for each (column block, k block), the panels of B are packed once by
// parallel TBB tasks into one buffer shared by all tasks, then tbb::parallel_for over tiles of
// (row panels × column panels), cut by tbb::simple_partitioner with grains that depend only on
// the shape; each task packs its own rows of A. No threads are started. split = false runs
// everything on the calling thread (buffers are thread-local: safe to call from concurrent tasks).
//
// Block sizes, chosen by measurement (docs/performance.md, GEMM section): kKC = 256 keeps a B
// micro-panel (256 × 32 floats, 32 KiB) in the 48 KiB L1d while 14-row A panels stream past it
// (192 and 320 were no better, 384 worse); a packed block of A (kMCPanels · 14 rows × 256 floats,
// 70 KiB) and the packed B block (256 × 1024 floats, 1 MiB) stay in the 2 MiB L2. Blocks of 10
// row panels were ~8 % slower than 3–5; 12 rows per tile instead of 14 measured the same.
// Software prefetching of the packed A panel (112–448 floats ahead) gained nothing: not used.
#pragma once

#include <cstdint>

#include "tensor/gemm.h"

namespace attnlab::sgemm_avx512 {

constexpr int kMR = 14;             // rows of C per register tile
constexpr int kNR = 32;             // columns of C per register tile (two zmm)
constexpr int64_t kKC = 256;        // largest k block
constexpr int64_t kNC = 1024;       // largest column block packed at once (kKC·kNC floats = 1 MiB)
constexpr int64_t kMCPanels = 5;    // row panels (of kMR rows) per block of A packed together

// True when the CPU executing this has AVX-512F (checked once).
bool cpu_supported();

// Which kernel gemm() and gemm_batched() use. gemm.cpp reads the environment variable
// ATTNLAB_GEMM_KERNEL once, at the first product: unset, "" or "auto" — this kernel when the CPU
// has AVX-512 (for every product whose shape makes packing pay: gemm.cpp's packed_pays), Eigen
// otherwise; "eigen" — Eigen (the fallback, selectable to compare and to test
// it on any CPU); "avx512" — this kernel. An unknown value, or "avx512" on a CPU without AVX-512,
// throws std::invalid_argument naming the variable and the accepted values.
enum class KernelChoice { Eigen, Avx512 };
KernelChoice kernel_from_setting(const char* value, bool cpu_has_avx512);

void sgemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc, bool split);

}  // namespace attnlab::sgemm_avx512
