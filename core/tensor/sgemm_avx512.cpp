// core/tensor/sgemm_avx512.cpp — see sgemm_avx512.h.
#include "tensor/sgemm_avx512.h"

#include "tensor/simd_intrinsics.h"  // first: see there
#include <tbb/blocked_range.h>
#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace attnlab::sgemm_avx512 {

namespace {

// ---- buffers ------------------------------------------------------------------------------------

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// A 64-byte aligned float buffer that only grows.
class Buffer {
 public:
  float* get(int64_t floats) {
    if (floats > capacity_) {
      const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (p == nullptr) throw std::bad_alloc();
      data_.reset(p);
      capacity_ = floats;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<float, FreeDeleter> data_;
  int64_t capacity_ = 0;
};

// Buffers for the packed B shared by the tasks of one split product. Not thread-local: while the
// calling thread waits in parallel_for, TBB may run another node's gemm() on it.
class BufferPool {
 public:
  std::unique_ptr<Buffer> acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return std::make_unique<Buffer>();
    std::unique_ptr<Buffer> b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void release(std::unique_ptr<Buffer> b) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(b));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<Buffer>> free_;
};

BufferPool& shared_b_pool() {
  static BufferPool pool;
  return pool;
}

// A buffer from the pool for the duration of one product (returned on exit, exceptions included).
class BufferLease {
 public:
  explicit BufferLease(bool take) {
    if (take) buffer_ = shared_b_pool().acquire();
  }
  ~BufferLease() {
    if (buffer_) shared_b_pool().release(std::move(buffer_));
  }
  BufferLease(const BufferLease&) = delete;
  BufferLease& operator=(const BufferLease&) = delete;
  Buffer* get() { return buffer_.get(); }

 private:
  std::unique_ptr<Buffer> buffer_;
};

// Thread-local buffers: used only inside code that never waits for other tasks, so no other
// product can interleave on the same thread while they are in use.
Buffer& local_a_buffer() {
  thread_local Buffer buffer;
  return buffer;
}
Buffer& local_b_buffer() {
  thread_local Buffer buffer;
  return buffer;
}

// ---- packing ------------------------------------------------------------------------------------

// How many rows ahead the packing loops prefetch (rows of the source are ld floats apart, often
// in different pages, which the hardware prefetcher does not follow).
constexpr int64_t kPackPrefetchRows = 8;

// Prefetches the first and last of `width` floats of the row kPackPrefetchRows rows after `row`
// (rows ld floats apart): the two cache lines a row copy of up to 32 floats may touch.
inline void prefetch_row_ahead(const float* row, int64_t ld, int64_t width) {
  const float* ahead = row + kPackPrefetchRows * ld;
  _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(ahead + width - 1), _MM_HINT_T0);
}

__mmask16 lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1u);
}

// Transposes the 16 x 16 block held in r[0..15] (row i in r[i]) in place: afterwards r[j] holds
// column j. Three rounds of in-lane unpacks and 128-bit lane shuffles (64 shuffles for 256
// floats); the transposing packs below use it on 16 rows x 16 k-steps at a time. It replaced one
// gather per k step, which was about 4 % of a training step's time in the profile.
__attribute__((target("avx512f"))) inline void transpose16(__m512* r) {
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i) {
      v[8 * h + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + 4 + i], 0x88);
      v[8 * h + 4 + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + 4 + i], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(v[i], v[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(v[i], v[8 + i], 0xdd);
  }
}

// Panels q0..q1 of op(B)[p0 : p0+kc, j0 : j0+nc] into dst: panel q holds kc rows of kNR floats at
// dst + q·kc·kNR, columns past nc zero.
__attribute__((target("avx512f"))) void pack_b(Trans tb, const float* b, int64_t ldb, int64_t p0, int64_t kc,
                                               int64_t j0, int64_t nc, int64_t q0, int64_t q1, float* dst) {
  for (int64_t q = q0; q < q1; ++q) {
    float* panel = dst + q * kc * kNR;
    const int64_t jb = j0 + q * kNR;
    const int64_t cols = std::min<int64_t>(kNR, nc - q * kNR);
    if (tb == Trans::No) {
      // Rows of op(B) are rows of B, kNR floats apart by ldb: two (masked) vector copies per row.
      // The rows are far apart in memory, so the next ones are prefetched by hand.
      const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
      const float* src = b + p0 * ldb + jb;
      for (int64_t p = 0; p < kc; ++p) {
        const float* row = src + p * ldb;
        if (p + kPackPrefetchRows < kc) prefetch_row_ahead(row, ldb, cols);
        _mm512_store_ps(panel + p * kNR, _mm512_maskz_loadu_ps(m0, row));
        _mm512_store_ps(panel + p * kNR + 16, _mm512_maskz_loadu_ps(m1, row + 16));
      }
    } else {
      // Stored B is n x k: column j of op(B) is row j of B. Each half of the panel (16 columns) is
      // 16 rows of B, transposed 16 k-steps at a time; rows past `cols` are zero.
      for (int64_t p = 0; p < kc; p += 16) {
        const int64_t steps = std::min<int64_t>(16, kc - p);
        const __mmask16 k_lanes = lanes(steps);
        for (int64_t half = 0; half < 2; ++half) {
          const int64_t rows = std::clamp<int64_t>(cols - 16 * half, 0, 16);
          __m512 r[16];
          for (int64_t jj = 0; jj < 16; ++jj)
            r[jj] = jj < rows ? _mm512_maskz_loadu_ps(k_lanes, b + (jb + 16 * half + jj) * ldb + p0 + p)
                              : _mm512_setzero_ps();
          if (rows > 0) transpose16(r);
          for (int64_t j = 0; j < steps; ++j) _mm512_store_ps(panel + (p + j) * kNR + 16 * half, r[j]);
        }
      }
    }
  }
}

// op(A)[i0 : i0+rows, p0 : p0+kc] into dst: panel r holds kc columns of kMR floats at
// dst + r·kc·kMR (a last, partial panel leaves its unused rows unwritten: its kernel never reads them).
__attribute__((target("avx512f"))) void pack_a(Trans ta, const float* a, int64_t lda, int64_t i0, int64_t rows,
                                               int64_t p0, int64_t kc, float* dst) {
  static_assert(kMR <= 16, "one 16 x 16 transpose covers a panel's rows");
  for (int64_t r = 0; r * kMR < rows; ++r) {
    float* panel = dst + r * kc * kMR;
    const int64_t ib = i0 + r * kMR;
    const int64_t n_rows = std::min<int64_t>(kMR, rows - r * kMR);
    if (ta == Trans::Yes) {
      // Stored A is k x m: row p of the panel is contiguous in A (one masked vector copy).
      const __mmask16 m = lanes(n_rows);
      const float* src = a + p0 * lda + ib;
      for (int64_t p = 0; p < kc; ++p) {
        const float* row = src + p * lda;
        if (p + kPackPrefetchRows < kc) prefetch_row_ahead(row, lda, n_rows);
        _mm512_mask_storeu_ps(panel + p * kMR, m, _mm512_maskz_loadu_ps(m, row));
      }
    } else {
      // Stored A is m x k: the panel's rows, transposed 16 k-steps at a time.
      const __mmask16 row_lanes = lanes(n_rows);
      for (int64_t p = 0; p < kc; p += 16) {
        const int64_t steps = std::min<int64_t>(16, kc - p);
        const __mmask16 k_lanes = lanes(steps);
        __m512 r[16];
        for (int64_t ii = 0; ii < 16; ++ii)
          r[ii] = ii < n_rows ? _mm512_maskz_loadu_ps(k_lanes, a + (ib + ii) * lda + p0 + p) : _mm512_setzero_ps();
        transpose16(r);
        for (int64_t j = 0; j < steps; ++j) _mm512_mask_storeu_ps(panel + (p + j) * kMR, row_lanes, r[j]);
      }
    }
  }
}

// ---- the micro-kernel ---------------------------------------------------------------------------

// How a tile is stored: C = alpha·acc + beta·C, with beta == 0 meaning C is not read.
struct Store {
  float alpha, beta;
};

// R rows (1..kMR) by V vectors of 16 columns (1 or 2) of C, of which `cols` are real. pa: a packed
// A panel (stride kMR per k step), pb: a packed B panel (stride kNR per k step).
template <int R, int V>
__attribute__((target("avx512f,fma"))) void micro_kernel(int64_t kc, const float* __restrict pa,
                                                          const float* __restrict pb, float* c, int64_t ldc, int cols,
                                                          const Store& store) {
  __m512 acc[R][V];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();

#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

  for (int64_t p = 0; p < kc; ++p) {
    __m512 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm512_load_ps(pb + v * 16);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(pa[i]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    pa += kMR;
    pb += kNR;
  }

  // Columns of each vector that are real (scalar code: nothing here may hold a vector register
  // across the k loop, which needs 31 of the 32).
  __mmask16 mask[V];
  mask[0] = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1u);
  if constexpr (V == 2) mask[1] = cols >= 32 ? __mmask16(0xFFFF) : __mmask16((1u << (cols - 16)) - 1u);
  const __m512 alpha = _mm512_set1_ps(store.alpha);
  if (store.beta == 0.0f) {
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) _mm512_mask_storeu_ps(c + i * ldc + v * 16, mask[v], _mm512_mul_ps(alpha, acc[i][v]));
  } else if (store.beta == 1.0f) {
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) {
        float* cp = c + i * ldc + v * 16;
        const __m512 old = _mm512_maskz_loadu_ps(mask[v], cp);
        _mm512_mask_storeu_ps(cp, mask[v], _mm512_fmadd_ps(alpha, acc[i][v], old));
      }
  } else {
    const __m512 beta = _mm512_set1_ps(store.beta);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) {
        float* cp = c + i * ldc + v * 16;
        const __m512 old = _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(mask[v], cp));
        _mm512_mask_storeu_ps(cp, mask[v], _mm512_fmadd_ps(alpha, acc[i][v], old));
      }
  }
}

using Kernel = void (*)(int64_t, const float*, const float*, float*, int64_t, int, const Store&);

template <int... I>
constexpr auto kernel_table(std::integer_sequence<int, I...>) {
  struct Table {
    Kernel one[kMR], two[kMR];
  };
  return Table{{&micro_kernel<I + 1, 1>...}, {&micro_kernel<I + 1, 2>...}};
}
constexpr auto kKernels = kernel_table(std::make_integer_sequence<int, kMR>{});

// ---- blocks -------------------------------------------------------------------------------------

struct Problem {
  Trans ta;
  int64_t m, k;
  const float* a;
  int64_t lda;
  float* c;
  int64_t ldc;
};

// One (column block, k block) step: B's panels are packed in `packed_b`.
struct Step {
  int64_t j0, nc, p0, kc;
  const float* packed_b;
  Store store;
};

// Rows [i_begin, i_end) × column panels [q0, q1) of the step: A is packed kMCPanels panels at a
// time, and for each packed block every B panel (in L1) meets every A panel (in L2).
void compute_tiles(const Problem& pr, const Step& st, int64_t i_begin, int64_t i_end, int64_t q0, int64_t q1) {
  const int64_t mc_max = kMCPanels * kMR;
  float* packed_a = local_a_buffer().get(mc_max * st.kc);
  for (int64_t i0 = i_begin; i0 < i_end; i0 += mc_max) {
    const int64_t mc = std::min(mc_max, i_end - i0);
    pack_a(pr.ta, pr.a, pr.lda, i0, mc, st.p0, st.kc, packed_a);
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t col = q * kNR;
      const int cols = static_cast<int>(std::min<int64_t>(kNR, st.nc - col));
      const float* pb = st.packed_b + q * st.kc * kNR;
      for (int64_t r = 0; r * kMR < mc; ++r) {
        const int rows = static_cast<int>(std::min<int64_t>(kMR, mc - r * kMR));
        const Kernel kern = cols > 16 ? kKernels.two[rows - 1] : kKernels.one[rows - 1];
        kern(st.kc, packed_a + r * st.kc * kMR, pb, pr.c + (i0 + r * kMR) * pr.ldc + st.j0 + col, pr.ldc, cols,
             st.store);
      }
    }
  }
}

// C = beta·C without reading C when beta == 0 (k == 0 or alpha == 0).
void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.0f) std::fill(row, row + n, 0.0f);
    else if (beta != 1.0f)
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
  }
}

// Grains of the split (in panels), from the shape only. A task's rows are one packed block of A
// (kMCPanels panels) at most; when there are so few rows that two such tasks cannot be formed, the
// columns are split too, in groups of 8 panels (256 columns).
constexpr int64_t kRowGrainPanels = kMCPanels;
constexpr int64_t kColGrainPanels = 8;
constexpr int64_t kPackGrainPanels = 4;

}  // namespace

KernelChoice kernel_from_setting(const char* value, bool cpu_has_avx512) {
  const std::string v = value == nullptr ? "" : value;
  if (v.empty() || v == "auto") return cpu_has_avx512 ? KernelChoice::Avx512 : KernelChoice::Eigen;
  if (v == "eigen") return KernelChoice::Eigen;
  if (v == "avx512") {
    if (!cpu_has_avx512)
      throw std::invalid_argument("ATTNLAB_GEMM_KERNEL=avx512, but this CPU has no AVX-512 (use auto or eigen)");
    return KernelChoice::Avx512;
  }
  throw std::invalid_argument("ATTNLAB_GEMM_KERNEL='" + v + "' is not a GEMM kernel: expected auto, eigen or avx512");
}

bool cpu_supported() {
  static const bool supported = __builtin_cpu_supports("avx512f");
  return supported;
}

void sgemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc, bool split) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const Problem pr{ta, m, k, a, lda, c, ldc};
  // Balanced k blocks: ceil(k / kKC) blocks of (nearly) equal size. Only the shape decides them.
  const int64_t k_blocks = (k + kKC - 1) / kKC;
  const int64_t kc_max = (k + k_blocks - 1) / k_blocks;
  const int64_t row_panels = (m + kMR - 1) / kMR;

  BufferLease shared(split);
  Buffer* b_buffer = split ? shared.get() : &local_b_buffer();
  for (int64_t j0 = 0; j0 < n; j0 += kNC) {
    const int64_t nc = std::min(kNC, n - j0);
    const int64_t col_panels = (nc + kNR - 1) / kNR;
    float* packed_b = b_buffer->get(col_panels * kNR * kc_max);
    for (int64_t p0 = 0; p0 < k; p0 += kc_max) {
      const int64_t kc = std::min(kc_max, k - p0);
      const Step st{j0, nc, p0, kc, packed_b, p0 == 0 ? Store{alpha, beta} : Store{alpha, 1.0f}};
      if (!split) {
        pack_b(tb, b, ldb, p0, kc, j0, nc, 0, col_panels, packed_b);
        compute_tiles(pr, st, 0, m, 0, col_panels);
        continue;
      }
      tbb::parallel_for(
          tbb::blocked_range<int64_t>(0, col_panels, kPackGrainPanels),
          [&](const tbb::blocked_range<int64_t>& r) { pack_b(tb, b, ldb, p0, kc, j0, nc, r.begin(), r.end(), packed_b); },
          tbb::simple_partitioner());
      const int64_t col_grain = row_panels >= 2 * kRowGrainPanels ? col_panels : kColGrainPanels;
      tbb::parallel_for(
          tbb::blocked_range2d<int64_t>(0, row_panels, kRowGrainPanels, 0, col_panels, col_grain),
          [&](const tbb::blocked_range2d<int64_t>& r) {
            compute_tiles(pr, st, r.rows().begin() * kMR, std::min(m, r.rows().end() * kMR), r.cols().begin(),
                          r.cols().end());
          },
          tbb::simple_partitioner());
    }
  }
}

}  // namespace attnlab::sgemm_avx512
