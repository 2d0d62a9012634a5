// core/tensor/gemm_kernel.cpp — see gemm_kernel.h.
#include "tensor/gemm_kernel.h"

#include <blis.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <pthread.h>

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <bit>
#include <csignal>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>

namespace attnlab::gemm_kernel {

namespace {

// The automatic choice for each widest ISA, from the measurements in docs/performance.md ("GEMM":
// one and two threads, the Transformer's product shapes and the whole training step).
constexpr Kernel kBestAvx512{Library::OneDnn, Isa::Avx512};
constexpr Kernel kBestAvx2{Library::OneDnn, Isa::Avx2};

// Below this many multiply-adds a library's call and packing cost more than Eigen's direct loops:
// measured per shape (gemm_bench, one thread, GFLOP/s library → Eigen): 24x24x32 NT
// (18432) oneDNN 56 → 76 at AVX-512, 61 → 76 at AVX2; one-row decoding products 1x32x64 23 → 35;
// from 32x32x64 NT (65536) on, oneDNN leads (103 against 87).
constexpr int64_t kLibraryMinMadds = 32768;

bool runnable(Kernel kernel, CpuFeatures cpu) {
  switch (kernel.isa) {
    case Isa::Baseline: return true;
    case Isa::Avx2: return cpu.avx2_fma;
    case Isa::Avx512: return cpu.avx512 && cpu.avx2_fma;
  }
  return false;
}

void eigen_product(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                   const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
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
}

void blis_product(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // Row-major storage is BLIS's general stride with column stride 1. BLIS takes non-const
  // pointers but does not write A or B.
  bli_sgemm(ta == Trans::Yes ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb == Trans::Yes ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
            m, n, k, &alpha, const_cast<float*>(a), lda, 1, const_cast<float*>(b), ldb, 1, &beta, c, ldc, 1);
}

// oneDNN's generated sgemm kernels (Debian 12 ships oneDNN 2.6) point the stack pointer into a heap
// workspace while they run, so a signal handled on that thread writes its frame over the heap
// (oneDNN issue #4845, fixed upstream in 2026): a Ctrl-C or SIGTERM during training corrupted the
// heap in a few percent of runs. While a product runs, asynchronous signals are therefore held
// back; one that arrives meanwhile is handled by another thread or right after the product. The
// synchronous ones (faults) cannot be held and need no frame of ours. Costs about 0.3 µs a product,
// which only oneDNN's (32768 multiply-adds and more) pay.
class AsynchronousSignalsHeld {
 public:
  AsynchronousSignalsHeld() { ::pthread_sigmask(SIG_BLOCK, &held_set(), &previous_); }
  ~AsynchronousSignalsHeld() { ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  AsynchronousSignalsHeld(const AsynchronousSignalsHeld&) = delete;
  AsynchronousSignalsHeld& operator=(const AsynchronousSignalsHeld&) = delete;

 private:
  static const sigset_t& held_set() {
    static const sigset_t set = [] {
      sigset_t s;
      sigfillset(&s);
      for (int synchronous : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT}) sigdelset(&s, synchronous);
      return s;
    }();
    return set;
  }
  sigset_t previous_;
};

// A thread that is not OpenMP's starts with the process-wide team size (one per core); held to 1,
// oneDNN's parallel regions run inline on the calling thread and OpenMP starts no threads.
void hold_openmp_to_this_thread() {
  thread_local const bool single_thread_team = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)single_thread_team;
}

void onednn_product(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                    const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  hold_openmp_to_this_thread();
  const AsynchronousSignalsHeld held;
  const dnnl_status_t status = dnnl_sgemm(ta == Trans::Yes ? 'T' : 'N', tb == Trans::Yes ? 'T' : 'N', m, n, k, alpha,
                                          a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success)
    throw std::runtime_error("oneDNN sgemm failed (status " + std::to_string(static_cast<int>(status)) + ") on " +
                             std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k));
}

// Batched products below this many multiply-adds each stay one call per product: measured with
// gemm_bench's heads family (one thread, oneDNN at AVX-512): 24x24x32 (18432) runs at 80 GFLOP/s
// as one primitive against 43 one call at a time; the one-row decoding products (1x32x64, 2048)
// at 17 against Eigen's 21 (docs/performance.md).
constexpr int64_t kBatchedMinMadds = 16384;

// oneDNN's matmul primitive for one box shape, with its memory objects (their data pointers are
// set per call) and user-managed scratchpad, so that the primitive runs on this thread alone.
struct BatchedMatmul {
  bool usable = false;  // false: oneDNN has no batched kernel for this layout here (one call per product)
  dnnl::engine engine;
  dnnl::stream stream;
  dnnl::matmul primitive;
  dnnl::memory a, b, c, scratchpad;
  std::unique_ptr<void, decltype(&std::free)> scratch{nullptr, &std::free};  // 64-byte aligned
};

using BoxKey = std::array<int64_t, 21>;

BoxKey key_of(Trans ta, Trans tb, const BatchBox& box, int64_t m, int64_t n, int64_t k, float alpha, int64_t lda,
              int64_t ldb, float beta, int64_t ldc) {
  BoxKey key{};
  key[0] = (ta == Trans::Yes) + 2 * (tb == Trans::Yes) + 4 * box.rank;
  for (int d = 0; d < box.rank; ++d) {
    key[1 + 4 * d] = box.dims[d].count, key[2 + 4 * d] = box.dims[d].stride_a;
    key[3 + 4 * d] = box.dims[d].stride_b, key[4 + 4 * d] = box.dims[d].stride_c;
  }
  key[13] = m, key[14] = n, key[15] = k, key[16] = lda, key[17] = ldb, key[18] = ldc;
  key[19] = std::bit_cast<uint32_t>(alpha), key[20] = std::bit_cast<uint32_t>(beta);
  return key;
}

// The memory descriptor of one operand: the batch dimensions (count 1 where the operand's stride
// is 0, oneDNN's broadcast), then its rows and columns with their strides.
dnnl::memory::desc box_desc(const BatchBox& box, int which, int64_t rows, int64_t cols, int64_t row_stride,
                            int64_t col_stride) {
  dnnl::memory::dims dims, strides;
  for (int d = 0; d < box.rank; ++d) {
    const GemmBatchDim& dim = box.dims[d];
    const int64_t stride = which == 0 ? dim.stride_a : which == 1 ? dim.stride_b : dim.stride_c;
    dims.push_back(stride == 0 ? 1 : dim.count);
    strides.push_back(stride == 0 ? 1 : stride);
  }
  dims.push_back(rows), dims.push_back(cols);
  strides.push_back(row_stride), strides.push_back(col_stride);
  return dnnl::memory::desc(dims, dnnl::memory::data_type::f32, strides);
}

BatchedMatmul make_batched_matmul(Trans ta, Trans tb, const BatchBox& box, int64_t m, int64_t n, int64_t k,
                                  float alpha, int64_t lda, int64_t ldb, float beta, int64_t ldc) {
  BatchedMatmul out;
  try {
    out.engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
    out.stream = dnnl::stream(out.engine);
    // op(A) is m x k: stored m x k with row stride lda, or transposed (k x m). Likewise op(B).
    const auto a = ta == Trans::Yes ? box_desc(box, 0, m, k, 1, lda) : box_desc(box, 0, m, k, lda, 1);
    const auto b = tb == Trans::Yes ? box_desc(box, 1, k, n, 1, ldb) : box_desc(box, 1, k, n, ldb, 1);
    const auto c = box_desc(box, 2, m, n, ldc, 1);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
      dnnl::post_ops sum;
      sum.append_sum(beta);
      attr.set_post_ops(sum);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, out.engine);
    // Only the brgemm kernels batch the products; oneDNN's other matmul implementations loop over
    // the batch with its sgemm (no faster than one call per product) or reference loops.
    if (std::string(pd.impl_info_str()).rfind("brg", 0) != 0) return out;
    out.primitive = dnnl::matmul(pd);
    const size_t scratch_bytes = (pd.scratchpad_desc().get_size() + 63) / 64 * 64;
    out.scratch.reset(std::aligned_alloc(64, std::max<size_t>(scratch_bytes, 64)));
    if (!out.scratch) throw std::bad_alloc();
    out.a = dnnl::memory(a, out.engine, nullptr), out.b = dnnl::memory(b, out.engine, nullptr);
    out.c = dnnl::memory(c, out.engine, nullptr);
    out.scratchpad = dnnl::memory(pd.scratchpad_desc(), out.engine, out.scratch.get());
    out.usable = true;
  } catch (const dnnl::error&) {
    out.usable = false;  // no implementation for this layout: one call per product
  }
  return out;
}

// This thread's primitives, by box shape.
BatchedMatmul& batched_matmul(Trans ta, Trans tb, const BatchBox& box, int64_t m, int64_t n, int64_t k, float alpha,
                              int64_t lda, int64_t ldb, float beta, int64_t ldc) {
  thread_local std::map<BoxKey, BatchedMatmul> made;
  const BoxKey key = key_of(ta, tb, box, m, n, k, alpha, lda, ldb, beta, ldc);
  if (auto it = made.find(key); it != made.end()) return it->second;
  if (made.size() >= 256) made.clear();  // varying lengths: keep the memory bounded
  return made.emplace(key, make_batched_matmul(ta, tb, box, m, n, k, alpha, lda, ldb, beta, ldc)).first->second;
}

}  // namespace

CpuFeatures detect_cpu() {
  static const CpuFeatures features = [] {
    __builtin_cpu_init();
    CpuFeatures f;
    f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    return f;
  }();
  return features;
}

std::string name_of(Kernel kernel) {
  if (kernel.library == Library::Eigen) return "eigen";
  const std::string library = kernel.library == Library::Blis ? "blis" : "onednn";
  return library + (kernel.isa == Isa::Avx512 ? "-avx512" : "-avx2");
}

std::vector<Kernel> runnable_kernels(CpuFeatures cpu) {
  std::vector<Kernel> out;
  if (runnable(kBestAvx512, cpu)) out.push_back(kBestAvx512);
  else if (runnable(kBestAvx2, cpu)) out.push_back(kBestAvx2);
  const Kernel all[] = {{Library::OneDnn, Isa::Avx512}, {Library::Blis, Isa::Avx512}, {Library::OneDnn, Isa::Avx2},
                        {Library::Blis, Isa::Avx2},     {Library::Eigen, Isa::Baseline}};
  for (const Kernel& kernel : all)
    if (runnable(kernel, cpu) && (out.empty() || !(out.front() == kernel))) out.push_back(kernel);
  return out;
}

Kernel kernel_from_setting(const char* value, CpuFeatures cpu) {
  const std::vector<Kernel> kernels = runnable_kernels(cpu);
  const std::string wanted = value == nullptr ? "" : value;
  if (wanted.empty() || wanted == "auto") return kernels.front();
  std::string names;
  for (const Kernel& kernel : kernels) {
    if (name_of(kernel) == wanted) return kernel;
    names += (names.empty() ? "" : ", ") + name_of(kernel);
  }
  throw std::invalid_argument("ATTNLAB_GEMM_KERNEL='" + wanted + "' is not a GEMM kernel this CPU can run: expected auto, " +
                              names);
}

void prepare(Kernel kernel) {
  if (kernel.library == Library::OneDnn) {
    if (dnnl_set_max_cpu_isa(kernel.isa == Isa::Avx512 ? dnnl_cpu_isa_all : dnnl_cpu_isa_avx2) != dnnl_success)
      throw std::runtime_error("oneDNN refused to limit its ISA for " + name_of(kernel) +
                               " (it must be set before oneDNN's first use)");
  } else if (kernel.library == Library::Blis) {
    // BLIS 0.9 reads its sub-configuration once, at its first call; it does not recognise Zen 4
    // and later (it would fall back to its generic C kernels, ~15x slower), so attnlab names it.
    // Ids from blis.h's arch_t: skx 0, haswell 3, zen3 6.
    const bool amd = __builtin_cpu_is("amd");
    const char* id = kernel.isa == Isa::Avx512 ? "0" : amd ? "6" : "3";
    setenv("BLIS_ARCH_TYPE", id, 1);
  }
}

void serial_product(Kernel kernel, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (m * n * k < kLibraryMinMadds) kernel.library = Library::Eigen;
  switch (kernel.library) {
    case Library::OneDnn:
      if (k > 0) return onednn_product(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      break;
    case Library::Blis:
      if (k > 0) return blis_product(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      break;
    case Library::Eigen: break;
  }
  // Eigen, and the empty inner dimension (C = beta·C) for every library: the libraries' handling
  // of k = 0 differs (and BLAS-style checks refuse lda = 0).
  eigen_product(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}


void serial_batched_product(Kernel kernel, Trans ta, Trans tb, const BatchBox& box, int64_t m, int64_t n, int64_t k,
                            float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                            int64_t ldc) {
  int64_t products = 1;
  for (int d = 0; d < box.rank; ++d) products *= box.dims[d].count;
  if (products == 0 || m == 0 || n == 0) return;
  if (kernel.library == Library::OneDnn && products > 1 && k > 0 && m * n * k >= kBatchedMinMadds) {
    hold_openmp_to_this_thread();
    BatchedMatmul& matmul = batched_matmul(ta, tb, box, m, n, k, alpha, lda, ldb, beta, ldc);
    if (matmul.usable) {
      // oneDNN does not write its sources; its memory objects take non-const pointers.
      matmul.a.set_data_handle(const_cast<float*>(a));
      matmul.b.set_data_handle(const_cast<float*>(b));
      matmul.c.set_data_handle(c);
      const AsynchronousSignalsHeld held;
      matmul.primitive.execute(matmul.stream, {{DNNL_ARG_SRC, matmul.a},
                                               {DNNL_ARG_WEIGHTS, matmul.b},
                                               {DNNL_ARG_DST, matmul.c},
                                               {DNNL_ARG_SCRATCHPAD, matmul.scratchpad}});
      matmul.stream.wait();
      return;
    }
  }
  const GemmBatchDim one{};
  const GemmBatchDim& d0 = box.rank > 0 ? box.dims[0] : one;
  const GemmBatchDim& d1 = box.rank > 1 ? box.dims[1] : one;
  const GemmBatchDim& d2 = box.rank > 2 ? box.dims[2] : one;
  for (int64_t i = 0; i < d0.count; ++i)
    for (int64_t j = 0; j < d1.count; ++j)
      for (int64_t l = 0; l < d2.count; ++l)
        serial_product(kernel, ta, tb, m, n, k, alpha, a + i * d0.stride_a + j * d1.stride_a + l * d2.stride_a, lda,
                       b + i * d0.stride_b + j * d1.stride_b + l * d2.stride_b, ldb, beta,
                       c + i * d0.stride_c + j * d1.stride_c + l * d2.stride_c, ldc);
}

}  // namespace attnlab::gemm_kernel
