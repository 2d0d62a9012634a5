// tests/gemm/gemm_test.cpp — gemm() and gemm_batched() against a double-precision reference for
// every transpose combination, alpha/beta case and splitting path, with padded leading
// dimensions; beta = 0 never reads C; results are bitwise identical for 1 and 2 threads. ctest runs
// this executable once per GEMM kernel (ATTNLAB_GEMM_KERNEL; gemm_kernel_test.cpp skips every test
// when this CPU cannot run the one asked for), so each kernel meets the same reference.
#include "tensor/gemm.h"

#include <gtest/gtest.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <cmath>
#include <stdexcept>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace attnlab {
namespace {

struct Case {
  int64_t m, n, k;
  const char* path;  // which branch of gemm() the shape takes
};

// Below the split threshold; tall (row split); short and wide (column split).
const Case kCases[] = {{5, 7, 3, "serial"}, {300, 96, 80, "rows"}, {20, 1200, 100, "columns"}};

struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c;
};

// Stored A is m x k (or k x m when transposed), with 3 columns of padding per row; same for B, C.
Operands make(const Case& c, Trans ta, Trans tb, float c_fill, unsigned seed) {
  Operands o;
  const int64_t a_rows = ta == Trans::Yes ? c.k : c.m, a_cols = ta == Trans::Yes ? c.m : c.k;
  const int64_t b_rows = tb == Trans::Yes ? c.n : c.k, b_cols = tb == Trans::Yes ? c.k : c.n;
  o.lda = a_cols + 3, o.ldb = b_cols + 3, o.ldc = c.n + 3;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  o.a.resize(a_rows * o.lda), o.b.resize(b_rows * o.ldb), o.c.resize(c.m * o.ldc);
  for (float& x : o.a) x = normal(rng);
  for (float& x : o.b) x = normal(rng);
  for (float& x : o.c) x = std::isnan(c_fill) ? c_fill : normal(rng);
  return o;
}

double at_a(const Operands& o, Trans ta, int64_t i, int64_t p) { return ta == Trans::Yes ? o.a[p * o.lda + i] : o.a[i * o.lda + p]; }
double at_b(const Operands& o, Trans tb, int64_t p, int64_t j) { return tb == Trans::Yes ? o.b[j * o.ldb + p] : o.b[p * o.ldb + j]; }

void expect_product(const Case& c, Trans ta, Trans tb, float alpha, float beta) {
  const float fill = beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
  Operands o = make(c, ta, tb, fill, 11);
  const std::vector<float> c_before = o.c;
  gemm(ta, tb, c.m, c.n, c.k, alpha, o.a.data(), o.lda, o.b.data(), o.ldb, beta, o.c.data(), o.ldc);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < o.ldc; ++j) {
      const float got = o.c[i * o.ldc + j];
      if (j >= c.n) {  // padding columns of C are never written
        ASSERT_TRUE(std::isnan(got) ? std::isnan(c_before[i * o.ldc + j]) : got == c_before[i * o.ldc + j]);
        continue;
      }
      double want = 0.0;
      for (int64_t p = 0; p < c.k; ++p) want += at_a(o, ta, i, p) * at_b(o, tb, p, j);
      want = alpha * want + (beta == 0.0f ? 0.0 : beta * double(c_before[i * o.ldc + j]));
      ASSERT_NEAR(got, want, 1e-4 * (1.0 + std::sqrt(double(c.k)) * 4.0))
          << c.path << " ta=" << int(ta) << " tb=" << int(tb) << " alpha=" << alpha << " beta=" << beta << " at (" << i
          << ", " << j << ")";
    }
}

TEST(Gemm, MatchesReferenceOnEveryPathTransposeAndScaling) {
  for (const Case& c : kCases)
    for (Trans ta : {Trans::No, Trans::Yes})
      for (Trans tb : {Trans::No, Trans::Yes})
        for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{0.5f, 0.0f}, std::pair{1.0f, 1.0f},
                                   std::pair{-2.0f, 0.25f}})
          expect_product(c, ta, tb, alpha, beta);
}

TEST(Gemm, EmptyInnerDimensionScalesC) {
  std::vector<float> c = {1, 2, 3, 4};
  gemm(Trans::No, Trans::No, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{0.5f, 1, 1.5f, 2}));
  std::vector<float> nan(4, std::numeric_limits<float>::quiet_NaN());
  gemm(Trans::No, Trans::No, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, nan.data(), 2);
  EXPECT_EQ(nan, (std::vector<float>(4, 0.0f)));
}

std::vector<float> product_with_threads(const Case& c, int threads) {
  Operands o = make(c, Trans::No, Trans::Yes, 0.0f, 5);
  tbb::task_arena arena(threads);
  arena.execute([&] {
    gemm(Trans::No, Trans::Yes, c.m, c.n, c.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f, o.c.data(), o.ldc);
  });
  return o.c;
}

TEST(Gemm, BitwiseIdenticalForOneAndTwoThreads) {
  for (const Case& c : kCases) {
    const std::vector<float> one = product_with_threads(c, 1);
    for (int run = 0; run < 20; ++run) ASSERT_EQ(one, product_with_threads(c, 2)) << c.path << " run " << run;
  }
}

TEST(Gemm, ConcurrentCallsFromManyTasksAreCorrect) {
  // Independent nodes call gemm() at the same time on different operands; the backend must not
  // race. Debian's serial OpenBLAS does (docs/performance.md), but only intermittently, so this
  // is a guard rather than a reliable reproducer. Task t multiplies its own 16-row block of A by
  // the shared B.
  const int64_t tasks = 16;
  const Case c{16 * tasks, 300, 32, "serial"};
  Operands o = make(c, Trans::No, Trans::Yes, 0.0f, 3);
  std::vector<float> reference(c.m * o.ldc, 0.0f), out(c.m * o.ldc, 0.0f);
  auto block = [&](int64_t t, float* dst) {
    gemm(Trans::No, Trans::Yes, 16, c.n, c.k, 1.0f, o.a.data() + t * 16 * o.lda, o.lda, o.b.data(), o.ldb, 0.0f,
         dst + t * 16 * o.ldc, o.ldc);
  };
  for (int64_t t = 0; t < tasks; ++t) block(t, reference.data());
  tbb::task_arena arena(2);
  for (int round = 0; round < 400; ++round) {
    arena.execute([&] { tbb::parallel_for(int64_t{0}, tasks, [&](int64_t t) { block(t, out.data()); }); });
    ASSERT_EQ(out, reference) << "round " << round;
  }
}

TEST(Gemm, BatchedMatchesOneProductPerItem) {
  const int64_t batch = 37, m = 9, n = 7, k = 5;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> a(batch * k * m), b(batch * n * k), c(batch * m * n), want(batch * m * n);
  for (float& x : a) x = normal(rng);
  for (float& x : b) x = normal(rng);
  // A stored transposed (k x m), B transposed (n x k).
  gemm_batched(Trans::Yes, Trans::Yes, batch, m, n, k, 1.0f, a.data(), m, k * m, b.data(), k, n * k, 0.0f, c.data(), n,
               m * n);
  for (int64_t i = 0; i < batch; ++i)
    gemm(Trans::Yes, Trans::Yes, m, n, k, 1.0f, a.data() + i * k * m, m, b.data() + i * n * k, k, 0.0f,
         want.data() + i * m * n, n);
  EXPECT_EQ(c, want);
}

// A batched problem in attention's layouts: B sentences, G key/value heads shared by R query heads
// each, heads interleaved in the rows (strides in floats, as gemm_batched takes them).
struct BatchedCase {
  const char* what;
  Trans ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  std::vector<GemmBatchDim> dims;
  float alpha, beta;
};

std::vector<BatchedCase> attention_cases(int64_t B, int64_t G, int64_t R, int64_t Tq, int64_t Tk, int64_t d) {
  const int64_t H = G * R;
  return {
      // scores: P[b,h] = alpha · Q[b,:,h,:] · K[b,:,g,:]ᵀ
      {"scores NT", Trans::No, Trans::Yes, Tq, Tk, d, H * d, G * d, Tk,
       {{B, Tq * H * d, Tk * G * d, H * Tq * Tk}, {G, R * d, d, R * Tq * Tk}, {R, d, 0, Tq * Tk}}, 0.125f, 0.0f},
      // values: O[b,:,h,:] = P[b,h] · V[b,:,g,:]
      {"values NN", Trans::No, Trans::No, Tq, d, Tk, Tk, G * d, H * d,
       {{B, H * Tq * Tk, Tk * G * d, Tq * H * d}, {G, R * Tq * Tk, d, R * d}, {R, Tq * Tk, 0, d}}, 1.0f, 0.0f},
      // value gradients of the first query head of each group, accumulated: dV[b,:,g,:] += P[b,h]ᵀ · dO[b,:,h,:]
      {"gradient TN", Trans::Yes, Trans::No, Tk, d, Tq, Tk, H * d, G * d,
       {{B, H * Tq * Tk, Tq * H * d, Tk * G * d}, {G, R * Tq * Tk, R * d, d}}, 0.5f, 1.0f},
  };
}

int64_t extent(const std::vector<GemmBatchDim>& dims, int64_t GemmBatchDim::*stride, int64_t rows, int64_t ld) {
  int64_t last = rows * ld;
  for (const GemmBatchDim& d : dims) last += (d.count - 1) * (d.*stride);
  return last;
}

void run_batched(const BatchedCase& c, const float* a, const float* b, float* out) {
  const auto& d = c.dims;
  if (d.size() == 2)
    gemm_batched(c.ta, c.tb, {d[0], d[1]}, c.m, c.n, c.k, c.alpha, a, c.lda, b, c.ldb, c.beta, out, c.ldc);
  else
    gemm_batched(c.ta, c.tb, {d[0], d[1], d[2]}, c.m, c.n, c.k, c.alpha, a, c.lda, b, c.ldb, c.beta, out, c.ldc);
}

void expect_batched(const BatchedCase& c) {
  const int64_t a_rows = c.ta == Trans::Yes ? c.k : c.m, b_rows = c.tb == Trans::Yes ? c.n : c.k;
  std::vector<float> a(extent(c.dims, &GemmBatchDim::stride_a, a_rows, c.lda));
  std::vector<float> b(extent(c.dims, &GemmBatchDim::stride_b, b_rows, c.ldb));
  std::vector<float> out(extent(c.dims, &GemmBatchDim::stride_c, c.m, c.ldc));
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (float& x : a) x = normal(rng);
  for (float& x : b) x = normal(rng);
  for (float& x : out) x = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : normal(rng);
  const std::vector<float> before = out;
  run_batched(c, a.data(), b.data(), out.data());
  std::vector<int64_t> index(c.dims.size(), 0);
  for (bool more = true; more;) {
    int64_t oa = 0, ob = 0, oc = 0;
    for (size_t d = 0; d < c.dims.size(); ++d)
      oa += index[d] * c.dims[d].stride_a, ob += index[d] * c.dims[d].stride_b, oc += index[d] * c.dims[d].stride_c;
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        double want = 0;
        for (int64_t p = 0; p < c.k; ++p) {
          const double x = c.ta == Trans::Yes ? a[oa + p * c.lda + i] : a[oa + i * c.lda + p];
          const double y = c.tb == Trans::Yes ? b[ob + j * c.ldb + p] : b[ob + p * c.ldb + j];
          want += x * y;
        }
        const int64_t at = oc + i * c.ldc + j;
        want = c.alpha * want + (c.beta == 0.0f ? 0.0 : c.beta * double(before[at]));
        ASSERT_NEAR(out[at], want, 1e-4 * (1.0 + std::sqrt(double(c.k)) * 4.0))
            << c.what << " at product (" << index[0] << ", " << index[1] << ") element (" << i << ", " << j << ")";
      }
    more = false;
    for (size_t d = c.dims.size(); d-- > 0;) {
      if (++index[d] < c.dims[d].count) {
        more = true;
        break;
      }
      index[d] = 0;
    }
  }
}

// Products of 24x40x32 (30720 multiply-adds) take the kernel's batched path; 5x7x3 the per-product loop.
TEST(GemmBatched, AttentionLayoutsMatchReference) {
  for (const auto& [G, R] : {std::pair<int64_t, int64_t>{4, 1}, {2, 2}, {1, 4}})
    for (const BatchedCase& c : attention_cases(5, G, R, 24, 40, 32)) {
      SCOPED_TRACE(std::string(c.what) + " G=" + std::to_string(G) + " R=" + std::to_string(R));
      expect_batched(c);
    }
  for (const BatchedCase& c : attention_cases(3, 2, 2, 5, 7, 3)) expect_batched(c);
}

TEST(GemmBatched, LargeProductsSplitOnTheirOwn) {
  // 160x96x160 (2.5M multiply-adds): each product its own task, split by rows.
  for (const BatchedCase& c : attention_cases(2, 2, 1, 160, 96, 160)) expect_batched(c);
}

TEST(GemmBatched, BitwiseIdenticalForOneAndTwoThreads) {
  const BatchedCase c = attention_cases(64, 8, 1, 32, 32, 64)[0];
  std::vector<float> a(extent(c.dims, &GemmBatchDim::stride_a, c.m, c.lda));
  std::vector<float> b(extent(c.dims, &GemmBatchDim::stride_b, c.n, c.ldb));
  std::mt19937 rng(4);
  std::normal_distribution<float> normal;
  for (float& x : a) x = normal(rng);
  for (float& x : b) x = normal(rng);
  auto with_threads = [&](int threads) {
    std::vector<float> out(extent(c.dims, &GemmBatchDim::stride_c, c.m, c.ldc));
    tbb::task_arena arena(threads);
    arena.execute([&] { run_batched(c, a.data(), b.data(), out.data()); });
    return out;
  };
  const std::vector<float> one = with_threads(1);
  for (int run = 0; run < 10; ++run) ASSERT_EQ(one, with_threads(2)) << "run " << run;
}

TEST(GemmBatched, RefusesMoreThanThreeDimensions) {
  float x = 0;
  EXPECT_THROW(gemm_batched(Trans::No, Trans::No, {GemmBatchDim{}, GemmBatchDim{}, GemmBatchDim{}, GemmBatchDim{}}, 1,
                            1, 1, 1.0f, &x, 1, &x, 1, 0.0f, &x, 1),
               std::invalid_argument);
}

TEST(Gemm, NamesItsBackend) {
  const std::string backend = gemm_backend();
  EXPECT_TRUE(backend == "eigen" || backend.rfind("onednn-", 0) == 0 || backend.rfind("blis-", 0) == 0) << backend;
}

}  // namespace
}  // namespace attnlab
