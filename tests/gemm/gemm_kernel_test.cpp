// tests/gemm/gemm_kernel_test.cpp — the choice of GEMM kernel (core/tensor/gemm_kernel.h): what the
// automatic choice picks for each kind of CPU, the ATTNLAB_GEMM_KERNEL values and their errors,
// that gemm() runs the kernel asked for, and that no kernel starts threads of its own.
#include "tensor/gemm_kernel.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/time.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab {
namespace {

using gemm_kernel::CpuFeatures;
using gemm_kernel::kernel_from_setting;
using gemm_kernel::name_of;
using gemm_kernel::runnable_kernels;

// ctest runs gemm_tests once per kernel name; on a CPU that cannot run it, every test is skipped.
class KernelRunnableHere : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* setting = std::getenv("ATTNLAB_GEMM_KERNEL");
    try {
      kernel_from_setting(setting, gemm_kernel::detect_cpu());
    } catch (const std::invalid_argument& e) {
      GTEST_SKIP() << "this CPU cannot run the kernel asked for: " << e.what();
    }
  }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new KernelRunnableHere);

std::vector<std::string> names(const std::vector<gemm_kernel::Kernel>& kernels) {
  std::vector<std::string> out;
  for (const auto& k : kernels) out.push_back(name_of(k));
  return out;
}

TEST(GemmKernel, AutomaticChoiceIsTheWidestIsasMeasuredBest) {
  const CpuFeatures avx512{.avx2_fma = true, .avx512 = true}, avx2{.avx2_fma = true, .avx512 = false}, older{};
  EXPECT_EQ(names(runnable_kernels(avx512)),
            (std::vector<std::string>{"onednn-avx512", "blis-avx512", "onednn-avx2", "blis-avx2", "eigen"}));
  EXPECT_EQ(names(runnable_kernels(avx2)), (std::vector<std::string>{"onednn-avx2", "blis-avx2", "eigen"}));
  EXPECT_EQ(names(runnable_kernels(older)), (std::vector<std::string>{"eigen"}));
  for (const char* automatic : {static_cast<const char*>(nullptr), "", "auto"}) {
    EXPECT_EQ(name_of(kernel_from_setting(automatic, avx512)), "onednn-avx512");
    EXPECT_EQ(name_of(kernel_from_setting(automatic, avx2)), "onednn-avx2");
    EXPECT_EQ(name_of(kernel_from_setting(automatic, older)), "eigen");
  }
  EXPECT_EQ(name_of(kernel_from_setting("blis-avx2", avx512)), "blis-avx2");
}

TEST(GemmKernel, RefusesUnknownKernelsAndOnesTheCpuCannotRun) {
  const CpuFeatures avx2{.avx2_fma = true, .avx512 = false};
  try {
    kernel_from_setting("onednn-avx512", avx2);
    ADD_FAILURE() << "an AVX-512 kernel was accepted on a CPU without AVX-512";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "ATTNLAB_GEMM_KERNEL='onednn-avx512' is not a GEMM kernel this CPU can run: expected auto, "
              "onednn-avx2, blis-avx2, eigen");
  }
  EXPECT_THROW(kernel_from_setting("openblas", avx2), std::invalid_argument);
}

TEST(GemmKernel, GemmRunsTheKernelAskedFor) {
  const auto want = kernel_from_setting(std::getenv("ATTNLAB_GEMM_KERNEL"), gemm_kernel::detect_cpu());
  EXPECT_EQ(std::string(gemm_backend()), name_of(want));
  // Set by the portability tests, which run this on an emulated CPU of a known kind.
  if (const char* expected = std::getenv("ATTNLAB_EXPECT_GEMM_KERNEL")) {
    EXPECT_EQ(std::string(gemm_backend()), expected);
  }
}

int thread_count() {
  int count = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(dir))
      if (entry->d_name[0] != '.') ++count;
    closedir(dir);
  }
  return count;
}

TEST(GemmKernel, StartsNoThreadsBesideTbbs) {
  tbb::task_arena arena(2);
  const int64_t n = 256;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f);
  std::vector<std::vector<float>> c(64, std::vector<float>(n * n));  // one output per task: no two write one buffer
  // Start TBB's workers first, so that only threads started by a GEMM library are counted.
  arena.execute([&] { tbb::parallel_for(0, 64, [](int) { volatile double x = 0; for (int i = 0; i < 100000; ++i) x = x + i; }); });
  const int before = thread_count();
  arena.execute([&] {
    tbb::parallel_for(0, 64, [&](int i) {
      gemm(Trans::No, Trans::Yes, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c[i].data(), n);
    });
  });
  EXPECT_EQ(thread_count(), before) << "a GEMM library started threads of its own (" << gemm_backend() << ")";
  EXPECT_FLOAT_EQ(c[3][17], 0.5f * 0.25f * n);
}

volatile std::sig_atomic_t g_alarms = 0;
extern "C" void count_alarm(int) { g_alarms = g_alarms + 1; }

// A signal handled while a product runs (Ctrl-C, SIGTERM from mpirun, a profiler's timer) must
// not touch the heap: oneDNN's generated kernels move the stack pointer into a heap workspace,
// where a handler's frame would land (gemm_kernel.cpp). Thousands of timer signals during products
// of the training shapes, each with freshly allocated operands: the child process exits normally
// with every result right, or dies of the corrupted heap when the products are not protected.
TEST(GemmKernelDeathTest, SignalsDuringProductsLeaveTheHeapIntact) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto products_under_signals = [] {
    struct sigaction action {};
    action.sa_handler = count_alarm;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGALRM, &action, nullptr);
    itimerval every_20us{{0, 20}, {0, 20}};
    ::setitimer(ITIMER_REAL, &every_20us, nullptr);
    int wrong = 0;
    for (int rep = 0; rep < 6; ++rep)
      for (Trans ta : {Trans::No, Trans::Yes})
        for (Trans tb : {Trans::No, Trans::Yes})
          for (int64_t m : {64, 100, 256})
            for (int64_t n : {48, 397})
              for (int64_t k : {64, 100, 256}) {
                std::vector<float> a(static_cast<size_t>(m * k), 0.5f), b(static_cast<size_t>(k * n), 0.25f);
                std::vector<float> c(static_cast<size_t>(m * n), -1.0f);
                gemm(ta, tb, m, n, k, 1.0f, a.data(), ta == Trans::No ? k : m, b.data(), tb == Trans::No ? n : k, 0.0f,
                     c.data(), n);
                if (c.front() != 0.125f * static_cast<float>(k) || c.back() != 0.125f * static_cast<float>(k)) ++wrong;
              }
    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    std::fprintf(stderr, "%d signals, %d wrong products\n", static_cast<int>(g_alarms), wrong);
    std::_Exit(wrong == 0 && g_alarms > 100 ? 0 : 1);
  };
  EXPECT_EXIT(products_under_signals(), ::testing::ExitedWithCode(0), "signals, 0 wrong products");
}

}  // namespace
}  // namespace attnlab
