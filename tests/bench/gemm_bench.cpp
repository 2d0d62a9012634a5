// tests/bench/gemm_bench.cpp — GEMM backends on the products a Transformer step runs.
//
// Compares, on each shape: Eigen's product (serial), OpenBLAS (Debian's serial build), each of
// them split across a 2-thread TBB arena the way attnlab::gemm() split before it had its own
// kernel (row blocks, each packing all of B), attnlab's packed AVX-512 kernel
// (core/tensor/sgemm_avx512.h: "packed/1" serial, "packed/2" its own split with one shared packed
// B, per-item products for batches), and attnlab::gemm() itself (whatever kernel this build and
// CPU choose; ATTNLAB_GEMM_KERNEL=eigen selects the Eigen fallback). Also measures the machine's
// single-precision peak with a register-blocked AVX-512 FMA loop, for reference, and checks that
// each split variant computes the same product as its serial form (OpenBLAS's serial build is not
// safe to call from several threads at once: see docs/performance.md).
//
// Run: build/gemm_bench [--benchmark_filter=REGEX]. Reported counter: GFLOP/s (2·m·n·k per
// product) per second of: the benchmark thread's CPU time (1 thread); wall-clock time (2 threads,
// "/wall"); the whole process's CPU time (2 threads, "/cpu", i.e. per busy core).

#include "tensor/simd_intrinsics.h"  // first: see there

#include "tensor/gemm.h"
#include "tensor/sgemm_avx512.h"

#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace {

using attnlab::Trans;
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;

// ---- the two serial kernels ---------------------------------------------------------------------

void eigen_gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                int64_t ldb, float* c, int64_t ldc) {
  Eigen::Map<Mat, 0, Stride> C(c, m, n, Stride(ldc));
  Eigen::Map<const Mat, 0, Stride> A(a, ta == Trans::Yes ? k : m, ta == Trans::Yes ? m : k, Stride(lda));
  Eigen::Map<const Mat, 0, Stride> B(b, tb == Trans::Yes ? n : k, tb == Trans::Yes ? k : n, Stride(ldb));
  if (ta == Trans::No && tb == Trans::No) C.noalias() = A * B;
  else if (ta == Trans::No) C.noalias() = A * B.transpose();
  else if (tb == Trans::No) C.noalias() = A.transpose() * B;
  else C.noalias() = A.transpose() * B.transpose();
}

void openblas_gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                   int64_t ldb, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta == Trans::Yes ? CblasTrans : CblasNoTrans, tb == Trans::Yes ? CblasTrans : CblasNoTrans,
              int(m), int(n), int(k), 1.0f, a, int(lda), b, int(ldb), 0.0f, c, int(ldc));
}

void packed_gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float* c, int64_t ldc) {
  attnlab::sgemm_avx512::sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc, false);
}

using Kernel = void (*)(Trans, Trans, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*,
                        int64_t);

// The split attnlab::gemm() uses with the Eigen backend (core/tensor/gemm.cpp): blocks of at least
// 64 rows of C (about 16 of them) as TBB tasks, or blocks of columns when there are few rows.
void split(Kernel kernel, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (m >= 128) {
    const int64_t grain = std::max<int64_t>(64, m / 16);
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, m, grain),
        [&](const tbb::blocked_range<int64_t>& r) {
          const float* a_block = ta == Trans::Yes ? a + r.begin() : a + r.begin() * lda;
          kernel(ta, tb, r.size(), n, k, a_block, lda, b, ldb, c + r.begin() * ldc, ldc);
        },
        tbb::simple_partitioner());
    return;
  }
  const int64_t grain = std::max<int64_t>(256, n / 16);
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, n, grain),
      [&](const tbb::blocked_range<int64_t>& r) {
        const float* b_block = tb == Trans::Yes ? b + r.begin() * ldb : b + r.begin();
        kernel(ta, tb, m, r.size(), k, a, lda, b_block, ldb, c + r.begin(), ldc);
      },
      tbb::simple_partitioner());
}

// ---- shapes -------------------------------------------------------------------------------------

struct Problem {
  const char* what;
  Trans ta, tb;
  int64_t m, n, k;
  int64_t batch = 1;  // > 1: independent products (attention heads)
};

// tokens = 2048 (e.g. 64 sentences × 32 positions), d_model 512, d_ff 2048, vocab 8000.
const Problem kProblems[] = {
    {"proj_fwd_2048x512x512", Trans::No, Trans::No, 2048, 512, 512},
    {"proj_dx_2048x512x512_NT", Trans::No, Trans::Yes, 2048, 512, 512},
    {"proj_dW_512x512x2048_TN", Trans::Yes, Trans::No, 512, 512, 2048},
    {"ffn_up_2048x2048x512", Trans::No, Trans::No, 2048, 2048, 512},
    {"ffn_down_2048x512x2048", Trans::No, Trans::No, 2048, 512, 2048},
    {"logits_2048x8000x512_NT", Trans::No, Trans::Yes, 2048, 8000, 512},
    {"logits_dx_2048x512x8000", Trans::No, Trans::No, 2048, 512, 8000},
    {"logits_dW_8000x512x2048_TN", Trans::Yes, Trans::No, 8000, 512, 2048},
    {"heads_scores_512x(32x32x64)_NT", Trans::No, Trans::Yes, 32, 32, 64, 512},
    {"heads_values_512x(32x64x32)", Trans::No, Trans::No, 32, 64, 32, 512},
};

struct Operands {
  std::vector<float> a, b, c;
  int64_t lda, ldb, ldc, sa, sb, sc;
};

Operands make_operands(const Problem& p) {
  Operands o;
  const int64_t a_rows = p.ta == Trans::Yes ? p.k : p.m, a_cols = p.ta == Trans::Yes ? p.m : p.k;
  const int64_t b_rows = p.tb == Trans::Yes ? p.n : p.k, b_cols = p.tb == Trans::Yes ? p.k : p.n;
  o.lda = a_cols, o.ldb = b_cols, o.ldc = p.n;
  o.sa = a_rows * a_cols, o.sb = b_rows * b_cols, o.sc = p.m * p.n;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  o.a.resize(o.sa * p.batch), o.b.resize(o.sb * p.batch), o.c.assign(o.sc * p.batch, 0.0f);
  for (float& x : o.a) x = normal(rng);
  for (float& x : o.b) x = normal(rng);
  return o;
}

enum class Variant { Eigen1, OpenBlas1, Packed1, Attnlab1, Eigen2, OpenBlas2, Packed2, Attnlab2 };

void run(const Problem& p, Operands& o, Variant v) {
  auto serial_batch = [&](Kernel kernel) {
    for (int64_t i = 0; i < p.batch; ++i)
      kernel(p.ta, p.tb, p.m, p.n, p.k, o.a.data() + i * o.sa, o.lda, o.b.data() + i * o.sb, o.ldb,
             o.c.data() + i * o.sc, o.ldc);
  };
  auto split_variant = [&](Kernel kernel) {
    if (p.batch > 1) {  // attention heads: several products per task, as gemm_batched() does
      const int64_t per_task = std::max<int64_t>(1, (int64_t{1} << 16) / (p.m * p.n * p.k));
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, p.batch, per_task), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i)
          kernel(p.ta, p.tb, p.m, p.n, p.k, o.a.data() + i * o.sa, o.lda, o.b.data() + i * o.sb, o.ldb,
                 o.c.data() + i * o.sc, o.ldc);
      });
    } else {
      split(kernel, p.ta, p.tb, p.m, p.n, p.k, o.a.data(), o.lda, o.b.data(), o.ldb, o.c.data(), o.ldc);
    }
  };
  auto attnlab_gemm = [&] {
    if (p.batch > 1)
      attnlab::gemm_batched(p.ta, p.tb, p.batch, p.m, p.n, p.k, 1.0f, o.a.data(), o.lda, o.sa, o.b.data(), o.ldb, o.sb,
                            0.0f, o.c.data(), o.ldc, o.sc);
    else
      attnlab::gemm(p.ta, p.tb, p.m, p.n, p.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f, o.c.data(), o.ldc);
  };
  switch (v) {
    case Variant::Eigen1: serial_batch(eigen_gemm); break;
    case Variant::OpenBlas1: serial_batch(openblas_gemm); break;
    case Variant::Eigen2: split_variant(eigen_gemm); break;
    case Variant::OpenBlas2: split_variant(openblas_gemm); break;
    case Variant::Packed1: serial_batch(packed_gemm); break;
    case Variant::Packed2:
      if (p.batch > 1) split_variant(packed_gemm);
      else
        attnlab::sgemm_avx512::sgemm(p.ta, p.tb, p.m, p.n, p.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
                                     o.c.data(), o.ldc, true);
      break;
    case Variant::Attnlab1:
    case Variant::Attnlab2: attnlab_gemm(); break;
  }
}

int threads_of(Variant v) {
  return v == Variant::Eigen2 || v == Variant::OpenBlas2 || v == Variant::Packed2 || v == Variant::Attnlab2 ? 2 : 1;
}

void BM_Gemm(benchmark::State& state, Problem p, Variant v) {
  Operands o = make_operands(p);
  tbb::task_arena arena(threads_of(v));
  for (auto _ : state) {
    arena.execute([&] { run(p, o, v); });
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * p.m * p.n * p.k * p.batch * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
}

// ---- small products: which kernel gemm() should pick ----------------------------------------------

// Products with a small dimension, single-threaded, on each of `items` independent operand sets
// (like attention's per-head products, or decoding's few rows): Eigen's product against the packed
// kernel, for the shape rule in core/tensor/gemm.cpp (packed_pays). Names:
// small/<m>x<n>x<k>_<op(A)><op(B)>/{eigen,packed}/1.
const int64_t kSmallShapes[][3] = {{1, 512, 512},  {8, 512, 512},  {16, 512, 512}, {128, 512, 512},
                                   {2048, 8, 512}, {2048, 16, 512}, {64, 64, 4},    {256, 256, 8},
                                   {32, 32, 16},   {24, 24, 32},   {32, 32, 64},   {32, 64, 32}};

void BM_Small(benchmark::State& state, Problem p, Variant v) {
  p.batch = std::max<int64_t>(4, (int64_t{1} << 22) / (p.m * p.n * p.k));
  Operands o = make_operands(p);
  for (auto _ : state) {
    run(p, o, v);
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * p.m * p.n * p.k * p.batch * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
}

// ---- single-precision peak ----------------------------------------------------------------------

// 12 independent accumulators hide the FMA latency (4 cycles × 2 ports needs ≥ 8 in flight), each
// a 16-wide AVX-512 vector: 12 × 16 × 2 = 384 flops per iteration, no memory traffic.
__attribute__((target("avx512f"))) void BM_PeakFma512(benchmark::State& state) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
  const int64_t inner = 1 << 16;
  for (auto _ : state) {
    for (int64_t it = 0; it < inner; ++it)
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
    for (int i = 0; i < 12; ++i) benchmark::DoNotOptimize(acc[i]);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(384.0 * inner * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
}

// The same with 8-wide AVX2 vectors (what code compiled without AVX-512 reaches).
__attribute__((target("avx2,fma"))) void BM_PeakFma256(benchmark::State& state) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  const int64_t inner = 1 << 16;
  for (auto _ : state) {
    for (int64_t it = 0; it < inner; ++it)
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
    for (int i = 0; i < 12; ++i) benchmark::DoNotOptimize(acc[i]);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(192.0 * inner * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
}

// ---- correctness of the split variants ----------------------------------------------------------

// Runs each 2-thread variant repeatedly against its serial form and prints the largest difference:
// a benchmark of a wrong product is worthless, and a racing BLAS shows up here.
void check_split_variants() {
  const Problem p{"check", Trans::No, Trans::Yes, 256, 300, 32};
  std::vector<std::tuple<const char*, Variant, Variant>> pairs = {{"eigen", Variant::Eigen1, Variant::Eigen2},
                                                                   {"openblas", Variant::OpenBlas1, Variant::OpenBlas2}};
  if (attnlab::sgemm_avx512::cpu_supported()) pairs.emplace_back("packed", Variant::Packed1, Variant::Packed2);
  for (auto [name, serial, split] : pairs) {
    Operands o = make_operands(p);
    run(p, o, serial);
    const std::vector<float> reference = o.c;
    tbb::task_arena arena(2);
    int wrong = 0;
    double worst = 0.0;
    const int runs = 2000;
    for (int r = 0; r < runs; ++r) {
      std::fill(o.c.begin(), o.c.end(), 0.0f);
      arena.execute([&, variant = split] { run(p, o, variant); });  // clang 14 cannot capture a structured binding
      double diff = 0.0;
      for (size_t i = 0; i < reference.size(); ++i) diff = std::max(diff, double(std::fabs(reference[i] - o.c[i])));
      worst = std::max(worst, diff);
      if (diff > 1e-3) ++wrong;
    }
    std::printf("check: %s split over 2 threads, %d of %d runs wrong (largest difference %.3g)\n", name, wrong, runs,
                worst);
  }
  std::printf("attnlab::gemm backend in this build: %s\n", attnlab::gemm_backend());
}

}  // namespace

int main(int argc, char** argv) {
  check_split_variants();
  // Single-threaded runs are timed in CPU time of the benchmark thread (robust when other work shares
  // the machine); 2-thread runs twice: in wall-clock time, and in CPU time of the whole process.
  benchmark::RegisterBenchmark("peak/fma_avx512", BM_PeakFma512);
  benchmark::RegisterBenchmark("peak/fma_avx2", BM_PeakFma256);
  const std::pair<Variant, const char*> variants[] = {
      {Variant::Eigen1, "eigen/1"}, {Variant::OpenBlas1, "openblas/1"}, {Variant::Packed1, "packed/1"},
      {Variant::Attnlab1, "attnlab/1"}, {Variant::Eigen2, "eigen/2"}, {Variant::OpenBlas2, "openblas/2"},
      {Variant::Packed2, "packed/2"}, {Variant::Attnlab2, "attnlab/2"}};
  const bool packed_runs = attnlab::sgemm_avx512::cpu_supported();
  for (const Problem& p : kProblems)
    for (const auto& [v, name] : variants) {
      if (!packed_runs && (v == Variant::Packed1 || v == Variant::Packed2)) continue;
      const std::string base = std::string("gemm/") + p.what + "/" + name;
      if (threads_of(v) == 1) {
        benchmark::RegisterBenchmark(base.c_str(), BM_Gemm, p, v);
      } else {
        benchmark::RegisterBenchmark((base + "/wall").c_str(), BM_Gemm, p, v)->UseRealTime();
        // Work per CPU-second of the whole process: what each core achieves when the split
        // product runs on both, whatever else is running (2x this is the wall-clock rate the pair
        // of cores gives on an otherwise idle machine, less any time spent waiting for a block).
        benchmark::RegisterBenchmark((base + "/cpu").c_str(), BM_Gemm, p, v)->MeasureProcessCPUTime();
      }
    }
  if (packed_runs)
    for (const auto& shape : kSmallShapes)
      for (Trans ta : {Trans::No, Trans::Yes})
        for (Trans tb : {Trans::No, Trans::Yes}) {
          const Problem p{"small", ta, tb, shape[0], shape[1], shape[2]};
          const std::string base = "small/" + std::to_string(p.m) + "x" + std::to_string(p.n) + "x" +
                                   std::to_string(p.k) + "_" + (ta == Trans::Yes ? "T" : "N") +
                                   (tb == Trans::Yes ? "T" : "N");
          benchmark::RegisterBenchmark((base + "/eigen/1").c_str(), BM_Small, p, Variant::Eigen1);
          benchmark::RegisterBenchmark((base + "/packed/1").c_str(), BM_Small, p, Variant::Packed1);
        }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
