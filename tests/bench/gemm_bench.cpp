// tests/bench/gemm_bench.cpp — the GEMM candidates on the products a Transformer step runs.
//
// attnlab::gemm() runs on the kernel ATTNLAB_GEMM_KERNEL selects (core/tensor/gemm_kernel.h; a
// library's ISA limit is process-wide, so one kernel per run: `ATTNLAB_GEMM_KERNEL=blis-avx2
// build/gemm_bench`). Beside it, on one thread, the candidates that attnlab does not call:
// OpenBLAS (Debian's serial build), loaded with dlopen so that its cblas/BLAS symbols cannot
// interpose BLIS's, and, for the per-head products it is made for, libxsmm (Debian ships it as
// static libraries only: linked in when found, with its no-BLAS fallback), and, for the per-head
// products, attnlab::gemm() called once per product ("per-product"), what gemm_batched() replaces.
// Each figure is the best of five timed repetitions of ~0.3 s; the product is checked against a
// double-precision reference on 16 elements.
//
// Run: build/gemm_bench [--threads 1,2] [--shapes base|small|decode|heads|all] [--outside]. Output: one line per
// kernel, shape and thread count: GFLOP/s (2·m·n·k·batch per wall-clock second).
#include "tensor/gemm.h"

#include <dlfcn.h>
#if defined(ATTNLAB_BENCH_LIBXSMM)
#include <libxsmm.h>
#endif
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using attnlab::Trans;

struct Problem {
  const char* family;
  const char* what;
  Trans ta, tb;
  int64_t m, n, k;
  int64_t batch = 1;  // > 1: independent products (attention heads), through gemm_batched()
};

// base: 2048 tokens (64 sentences x 32), d_model 512, d_ff 2048, vocab 8000. small: 3072 tokens
// (128 x 24), d_model 256, d_ff 512. decode: one greedy step's products of the base (64 rows) and
// small (128 rows) shapes. heads: one batch's per-head attention products.
const Problem kProblems[] = {
    {"base", "proj 2048x512x512 NT", Trans::No, Trans::Yes, 2048, 512, 512},
    {"base", "proj dX 2048x512x512 NN", Trans::No, Trans::No, 2048, 512, 512},
    {"base", "proj dW 512x512x2048 TN", Trans::Yes, Trans::No, 512, 512, 2048},
    {"base", "ffn up 2048x2048x512 NT", Trans::No, Trans::Yes, 2048, 2048, 512},
    {"base", "ffn down 2048x512x2048 NT", Trans::No, Trans::Yes, 2048, 512, 2048},
    {"base", "logits 2048x8000x512 NT", Trans::No, Trans::Yes, 2048, 8000, 512},
    {"base", "logits dX 2048x512x8000 NN", Trans::No, Trans::No, 2048, 512, 8000},
    {"base", "logits dW 8000x512x2048 TN", Trans::Yes, Trans::No, 8000, 512, 2048},
    {"small", "proj 3072x256x256 NT", Trans::No, Trans::Yes, 3072, 256, 256},
    {"small", "proj dW 256x256x3072 TN", Trans::Yes, Trans::No, 256, 256, 3072},
    {"small", "ffn up 3072x512x256 NT", Trans::No, Trans::Yes, 3072, 512, 256},
    {"small", "logits 3072x8000x256 NT", Trans::No, Trans::Yes, 3072, 8000, 256},
    {"decode", "proj 64x512x512 NT", Trans::No, Trans::Yes, 64, 512, 512},
    {"decode", "ffn up 64x2048x512 NT", Trans::No, Trans::Yes, 64, 2048, 512},
    {"decode", "ffn down 64x512x2048 NT", Trans::No, Trans::Yes, 64, 512, 2048},
    {"decode", "logits 64x8000x512 NT", Trans::No, Trans::Yes, 64, 8000, 512},
    {"decode", "proj 128x256x256 NT", Trans::No, Trans::Yes, 128, 256, 256},
    {"decode", "logits 128x8000x256 NT", Trans::No, Trans::Yes, 128, 8000, 256},
    {"heads", "scores 512x(32x32x64) NT", Trans::No, Trans::Yes, 32, 32, 64, 512},
    {"heads", "values 512x(32x64x32) NN", Trans::No, Trans::No, 32, 64, 32, 512},
    {"heads", "scores 1024x(24x24x32) NT", Trans::No, Trans::Yes, 24, 24, 32, 1024},
    {"heads", "decode 256x(1x32x64) NT", Trans::No, Trans::Yes, 1, 32, 64, 256},
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

// Largest relative error of 16 elements of the first product against a double-precision sum.
double check(const Problem& p, const Operands& o) {
  double worst = 0;
  for (int t = 0; t < 16; ++t) {
    const int64_t i = (t * 37) % p.m, j = (t * 91) % p.n;
    double want = 0, scale = 0;
    for (int64_t q = 0; q < p.k; ++q) {
      const double x = p.ta == Trans::Yes ? o.a[q * o.lda + i] : o.a[i * o.lda + q];
      const double y = p.tb == Trans::Yes ? o.b[j * o.ldb + q] : o.b[q * o.ldb + j];
      want += x * y, scale += std::abs(x * y);
    }
    worst = std::max(worst, std::abs(want - o.c[i * o.ldc + j]) / std::max(scale, 1e-30));
  }
  return worst;
}

double best_seconds(const std::function<void()>& run, double flops) {
  run();
  const int reps = std::max<int>(1, static_cast<int>(3e10 / flops));  // 3·10^10 flops: ~0.3 s at 100 GFLOP/s
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
  }
  return best;
}

using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                            int);

template <typename F>
F load(const char* library, const char* symbol) {
  void* handle = dlopen(library, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  return handle == nullptr ? nullptr : reinterpret_cast<F>(dlsym(handle, symbol));
}

// One serial product of an outside candidate (row-major, alpha 1, beta 0).
using Serial = std::function<void(const Problem&, Operands&, int64_t item)>;

std::vector<std::pair<std::string, Serial>> outside_candidates() {
  std::vector<std::pair<std::string, Serial>> out;
  if (auto sgemm = load<CblasSgemm>("/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0", "cblas_sgemm")) {
    out.emplace_back("openblas-serial", [sgemm](const Problem& p, Operands& o, int64_t i) {
      // CBLAS: 101 row-major, 111 no transpose, 112 transpose.
      sgemm(101, p.ta == Trans::Yes ? 112 : 111, p.tb == Trans::Yes ? 112 : 111, int(p.m), int(p.n), int(p.k), 1.0f,
            o.a.data() + i * o.sa, int(o.lda), o.b.data() + i * o.sb, int(o.ldb), 0.0f, o.c.data() + i * o.sc,
            int(o.ldc));
    });
  }
#if defined(ATTNLAB_BENCH_LIBXSMM)
  {
    out.emplace_back("libxsmm", [](const Problem& p, Operands& o, int64_t i) {
      // Column-major library: row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
      const char ta = p.tb == Trans::Yes ? 'T' : 'N', tb = p.ta == Trans::Yes ? 'T' : 'N';
      const int m = int(p.n), n = int(p.m), k = int(p.k), lda = int(o.ldb), ldb = int(o.lda), ldc = int(o.ldc);
      const float one = 1, zero = 0;
      libxsmm_sgemm(&ta, &tb, &m, &n, &k, &one, o.b.data() + i * o.sb, &lda, o.a.data() + i * o.sa, &ldb, &zero,
                    o.c.data() + i * o.sc, &ldc);
    });
  }
#endif
  return out;
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> thread_counts{1, 2};
  std::string shapes = "all";
  bool with_outside = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--threads" && i + 1 < argc) thread_counts = parse_list(argv[++i]);
    else if (flag == "--shapes" && i + 1 < argc) shapes = argv[++i];
    else if (flag == "--outside") with_outside = true;
    else {
      std::fprintf(stderr, "usage: gemm_bench [--threads 1,2] [--shapes base|small|decode|heads|all] [--outside]\n");
      return 2;
    }
  }
  std::printf("%-18s %-28s %7s %9s %9s\n", "kernel", "product", "threads", "GFLOP/s", "rel.err");
  const auto outside = with_outside ? outside_candidates() : std::vector<std::pair<std::string, Serial>>{};
  for (const Problem& p : kProblems) {
    if (shapes != "all" && shapes != p.family) continue;
    Operands o = make_operands(p);
    const double flops = 2.0 * p.m * p.n * p.k * p.batch;
    for (int threads : thread_counts) {
      tbb::task_arena arena(threads);
      const double s = best_seconds(
          [&] {
            arena.execute([&] {
              if (p.batch == 1)
                attnlab::gemm(p.ta, p.tb, p.m, p.n, p.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
                              o.c.data(), o.ldc);
              else
                attnlab::gemm_batched(p.ta, p.tb, p.batch, p.m, p.n, p.k, 1.0f, o.a.data(), o.lda, o.sa,
                                      o.b.data(), o.ldb, o.sb, 0.0f, o.c.data(), o.ldc, o.sc);
            });
          },
          flops);
      std::printf("%-18s %-28s %7d %9.1f %9.1e\n", attnlab::gemm_backend(), p.what, threads, flops / s * 1e-9,
                  check(p, o));
    }
    for (const auto& candidate : outside) {
      // Named copies: clang 14 cannot capture a structured binding in the lambda below.
      const std::string& name = candidate.first;
      const Serial& serial = candidate.second;
      // libxsmm is linked without a BLAS: it runs only the small products it generates code for.
      if (name == "libxsmm" && std::string(p.family) != "heads") continue;
      std::fill(o.c.begin(), o.c.end(), 0.0f);
      const double s = best_seconds(
          [&] {
            for (int64_t i = 0; i < p.batch; ++i) serial(p, o, i);
          },
          flops);
      std::printf("%-18s %-28s %7d %9.1f %9.1e\n", name.c_str(), p.what, 1, flops / s * 1e-9, check(p, o));
    }
    if (with_outside && p.batch > 1) {
      std::fill(o.c.begin(), o.c.end(), 0.0f);
      const double s = best_seconds(
          [&] {
            for (int64_t i = 0; i < p.batch; ++i)
              attnlab::gemm(p.ta, p.tb, p.m, p.n, p.k, 1.0f, o.a.data() + i * o.sa, o.lda, o.b.data() + i * o.sb,
                            o.ldb, 0.0f, o.c.data() + i * o.sc, o.ldc);
          },
          flops);
      std::printf("%-18s %-28s %7d %9.1f %9.1e\n", "per-product", p.what, 1, flops / s * 1e-9, check(p, o));
    }
    std::fflush(stdout);
  }
  return 0;
}
