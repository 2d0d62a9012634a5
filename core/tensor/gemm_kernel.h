// core/tensor/gemm_kernel.h — the serial matrix-product kernels behind gemm() (internal to
// core/tensor/gemm.cpp, its tests and benchmarks; nodes call attnlab::gemm()).
//
// A kernel is a library and the instruction set it is held to: attnlab calls well-kept libraries
// from Debian and keeps no product code of its own (docs/performance.md, "GEMM", has the
// measurements behind every choice here).
//   onednn-avx512, onednn-avx2  oneDNN's dnnl_sgemm, its own run-time code generation, limited to
//                               that ISA with dnnl_set_max_cpu_isa
//   blis-avx512, blis-avx2      BLIS (Debian's serial build) with its skx, resp. haswell/zen3
//                               sub-configuration
//   eigen                       Eigen, compiled for the build's baseline ISA; runs everywhere
// Every kernel hands products of fewer than 32768 multiply-adds (a few attention heads' tiny
// products, one-row decoding steps) to Eigen, which is faster there (gemm_kernel.cpp).
//
// Contract of serial_product(): the one of gemm() in gemm.h — C = alpha·op(A)·op(B) + beta·C,
// row-major, lda/ldb/ldc the row strides as stored, beta == 0 never reads C — computed on the
// calling thread only: no kernel starts or wakes a thread. oneDNN's Debian build threads with
// OpenMP; each calling thread's OpenMP team size is set to 1 before its first call, so its
// parallel regions run inline on the TBB worker that called (TBB owns every compute thread). The
// result of a product depends only on its shape and the kernel, never on the calling thread.
// A signal that arrives while a oneDNN product runs is handled after it (or by another thread):
// oneDNN's kernels keep the stack pointer in heap memory, where a handler's frame would land.
//
// Choice: gemm() reads ATTNLAB_GEMM_KERNEL once, at the first product. Unset, "" or "auto": the
// first of runnable_kernels() for this CPU (the fastest, by measurement, for its widest ISA);
// a kernel's name: that kernel, if this CPU can run it. Anything else throws
// std::invalid_argument naming the variable, the value and the kernels this CPU can run.
// Limiting a library's ISA is process-wide and happens once, when the kernel is selected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/gemm.h"

namespace attnlab::gemm_kernel {

struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 and FMA3 (x86-64-v3)
  bool avx512 = false;    // AVX-512 F, BW, DQ and VL (Skylake-X and later, Zen 4 and later)
};

// The CPU this runs on (read once).
CpuFeatures detect_cpu();

enum class Library { Eigen, Blis, OneDnn };
enum class Isa { Baseline, Avx2, Avx512 };

struct Kernel {
  Library library = Library::Eigen;
  Isa isa = Isa::Baseline;
  bool operator==(const Kernel&) const = default;
};

std::string name_of(Kernel kernel);

// Every kernel a CPU with these features can run, the automatic choice first.
std::vector<Kernel> runnable_kernels(CpuFeatures cpu);

// The kernel an ATTNLAB_GEMM_KERNEL value asks for on this CPU (see the contract above).
Kernel kernel_from_setting(const char* value, CpuFeatures cpu);

// Holds the kernel's library to its ISA. Call once per process, before its first product.
void prepare(Kernel kernel);

void serial_product(Kernel kernel, Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// A box of products over up to three batch dimensions (gemm.h's GemmBatchDim, outermost first).
struct BatchBox {
  int rank = 0;
  GemmBatchDim dims[3];
};

// Contract of serial_batched_product(): serial_product()'s, for every product of the box, on the
// calling thread. oneDNN kernels run the whole box as one matmul primitive where oneDNN has a
// batched implementation for its layout (its brgemm kernels: at AVX-512 in Debian's oneDNN 2.6)
// and the products have at least 16384 multiply-adds; the primitive is made once per thread and
// box shape and kept (at most 256 shapes a thread). Everywhere else, one serial_product() per
// product, in index order. For a given kernel, box shape and strides, results do not depend on
// the calling thread.
void serial_batched_product(Kernel kernel, Trans trans_a, Trans trans_b, const BatchBox& box, int64_t m, int64_t n,
                            int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                            float* c, int64_t ldc);

}  // namespace attnlab::gemm_kernel
