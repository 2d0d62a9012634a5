// core/tensor/gemm.cpp — see gemm.h. The products themselves run on a library kernel chosen
// per CPU at run time (tensor/gemm_kernel.h); this file splits them into TBB tasks and counts them.
#include "tensor/gemm.h"

#include "tensor/gemm_kernel.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

namespace attnlab {

namespace {

// ATTNLAB_GEMM_KERNEL, read once, at the first product (gemm_kernel.h).
const gemm_kernel::Kernel& kernel() {
  static const gemm_kernel::Kernel chosen = [] {
    const gemm_kernel::Kernel k =
        gemm_kernel::kernel_from_setting(std::getenv("ATTNLAB_GEMM_KERNEL"), gemm_kernel::detect_cpu());
    gemm_kernel::prepare(k);
    return k;
  }();
  return chosen;
}

void gemm_serial(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_kernel::serial_product(kernel(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::atomic<bool> g_count_enabled{false};
std::atomic<int64_t> g_counted_madds{0};

void count_madds(int64_t madds) {
  if (g_count_enabled.load(std::memory_order_relaxed)) g_counted_madds.fetch_add(madds, std::memory_order_relaxed);
}

// Below this many multiply-adds (~25 µs of work) a product is not worth splitting across tasks.
constexpr int64_t kSplitFlops = int64_t{1} << 21;
// Blocks are cut with tbb::simple_partitioner: the split points depend only on the shape, never on
// the thread count or timing. That matters because the kernel's blocking (and so the rounding of
// each element) depends on the block's size: with fixed blocks a product is bitwise reproducible.
//
// The smallest block of rows (or columns) a task gets: large enough that packing the shared
// operand once per block costs little next to the block's arithmetic. 128 columns lets a decoding
// step's 64-row projections (64x512x512) split in four: 205 → 406 GFLOP/s on 2 threads with
// oneDNN (gemm_bench's decode family; with 256 they ran on one thread).
constexpr int64_t kMinRows = 64;
constexpr int64_t kMinCols = 128;

// The profile (gemm.h): one record per thread, registered at the thread's first profiled call. Its
// mutex is only ever contended by gemm_profile()/gemm_profile_reset().
struct ThreadProfile {
  std::mutex mutex;
  std::map<GemmShape, GemmShapeTime> shapes;
  double inner_seconds = 0;  // time of products run inside the current one (work stealing)
};
std::atomic<bool> g_profile_enabled{false};
std::mutex g_profiles_mutex;
std::vector<std::shared_ptr<ThreadProfile>> g_profiles;

ThreadProfile& this_thread_profile() {
  thread_local std::shared_ptr<ThreadProfile> mine = [] {
    auto p = std::make_shared<ThreadProfile>();
    std::lock_guard lock(g_profiles_mutex);
    g_profiles.push_back(p);
    return p;
  }();
  return *mine;
}

// Times one call when the profile is on: the call's wall time minus that of the products its
// thread ran inside it.
class ProfiledCall {
 public:
  explicit ProfiledCall(const GemmShape& shape) {
    if (!g_profile_enabled.load(std::memory_order_relaxed)) return;
    profile_ = &this_thread_profile();
    shape_ = shape;
    outer_inner_ = profile_->inner_seconds;
    profile_->inner_seconds = 0;
    t0_ = std::chrono::steady_clock::now();
  }
  ~ProfiledCall() {
    if (!profile_) return;
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    {
      std::lock_guard lock(profile_->mutex);
      GemmShapeTime& record = profile_->shapes[shape_];
      record.shape = shape_;
      record.calls += 1;
      record.seconds += total - profile_->inner_seconds;
    }
    profile_->inner_seconds = outer_inner_ + total;
  }
  ProfiledCall(const ProfiledCall&) = delete;
  ProfiledCall& operator=(const ProfiledCall&) = delete;

 private:
  ThreadProfile* profile_ = nullptr;
  GemmShape shape_;
  double outer_inner_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

namespace {

// gemm() without its accounting: large products split into tasks by rows or columns.
void gemm_split(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m * n * k < kSplitFlops || (m < 2 * kMinRows && n < 2 * kMinCols)) {
    gemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m >= 2 * kMinRows) {
    // Split rows of C; each block reads the rows (or, transposed, the columns) of A it needs and
    // all of B. About 16 blocks: enough for work stealing to balance, few enough to pack B rarely.
    const int64_t grain = std::max<int64_t>(kMinRows, m / 16);
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, m, grain),
        [&](const tbb::blocked_range<int64_t>& r) {
          const float* a_block = ta == Trans::Yes ? a + r.begin() : a + r.begin() * lda;
          gemm_serial(ta, tb, r.size(), n, k, alpha, a_block, lda, b, ldb, beta, c + r.begin() * ldc, ldc);
        },
        tbb::simple_partitioner());
    return;
  }
  // Few rows, many columns (e.g. logits for a handful of decoding positions): split columns.
  const int64_t grain = std::max<int64_t>(kMinCols, n / 16);
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, n, grain),
      [&](const tbb::blocked_range<int64_t>& r) {
        const float* b_block = tb == Trans::Yes ? b + r.begin() * ldb : b + r.begin();
        gemm_serial(ta, tb, m, r.size(), k, alpha, a, lda, b_block, ldb, beta, c + r.begin(), ldc);
      },
      tbb::simple_partitioner());
}

}  // namespace

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  count_madds(m * n * k);
  const ProfiledCall profiled(GemmShape{false, ta, tb, 1, m, n, k});
  gemm_split(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_batched(Trans ta, Trans tb, std::initializer_list<GemmBatchDim> dims, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
  if (dims.size() > 3) throw std::invalid_argument("gemm_batched: at most three batch dimensions");
  gemm_kernel::BatchBox box;
  int64_t products = 1;
  for (const GemmBatchDim& d : dims) {
    if (d.count < 0) throw std::invalid_argument("gemm_batched: a negative batch count");
    if (d.count != 1) box.dims[box.rank++] = d;  // a dimension of one index only shapes the kernel's box
    products *= d.count;
  }
  count_madds(products * m * n * k);
  const ProfiledCall profiled(GemmShape{true, ta, tb, products, m, n, k});
  if (products == 0 || m == 0 || n == 0) return;
  if (box.rank == 0) return gemm_split(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  const GemmBatchDim outer = box.dims[0];
  const int64_t inner = products / outer.count;  // products per outer index
  if (m * n * k >= kSplitFlops) {
    // Large products: one task per product (each may split further), over the flattened batch.
    tbb::parallel_for(int64_t{0}, products, [&](int64_t flat) {
      const float* pa = a;
      const float* pb = b;
      float* pc = c;
      for (int d = box.rank - 1; d >= 0; --d) {
        const GemmBatchDim& dim = box.dims[d];
        const int64_t i = flat % dim.count;
        flat /= dim.count;
        pa += i * dim.stride_a, pb += i * dim.stride_b, pc += i * dim.stride_c;
      }
      gemm_split(ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    });
    return;
  }
  // Small products (attention's heads): tasks of whole outer indices, each one batched kernel call
  // over its box, of about kSplitFlops of work, but at least 16 tasks where the outer dimension
  // allows (a decoding step's per-head products are tiny, and all of them together still worth
  // spreading). The split depends only on the shape.
  const int64_t by_work = kSplitFlops / std::max<int64_t>(1, inner * m * n * k);
  const int64_t grain = std::clamp<int64_t>(by_work, 1, std::max<int64_t>(1, outer.count / 16));
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, outer.count, grain),
      [&](const tbb::blocked_range<int64_t>& r) {
        gemm_kernel::BatchBox part = box;
        part.dims[0].count = r.size();
        const int64_t i = r.begin();
        gemm_kernel::serial_batched_product(kernel(), ta, tb, part, m, n, k, alpha, a + i * outer.stride_a, lda,
                                            b + i * outer.stride_b, ldb, beta, c + i * outer.stride_c, ldc);
      },
      tbb::simple_partitioner());
}

void gemm_count_enable(bool enabled) { g_count_enabled.store(enabled, std::memory_order_relaxed); }
void gemm_count_reset() { g_counted_madds.store(0, std::memory_order_relaxed); }
int64_t gemm_counted_madds() { return g_counted_madds.load(std::memory_order_relaxed); }

void gemm_profile_enable(bool enabled) { g_profile_enabled.store(enabled, std::memory_order_relaxed); }

void gemm_profile_reset() {
  std::lock_guard lock(g_profiles_mutex);
  for (const auto& p : g_profiles) {
    std::lock_guard thread_lock(p->mutex);
    p->shapes.clear();
  }
}

std::vector<GemmShapeTime> gemm_profile() {
  std::map<GemmShape, GemmShapeTime> merged;
  {
    std::lock_guard lock(g_profiles_mutex);
    for (const auto& p : g_profiles) {
      std::lock_guard thread_lock(p->mutex);
      for (const auto& [shape, record] : p->shapes) {
        GemmShapeTime& m = merged[shape];
        m.shape = shape;
        m.calls += record.calls;
        m.seconds += record.seconds;
      }
    }
  }
  std::vector<GemmShapeTime> out;
  for (const auto& [shape, record] : merged) out.push_back(record);
  std::stable_sort(out.begin(), out.end(), [](const GemmShapeTime& a, const GemmShapeTime& b) { return a.seconds > b.seconds; });
  return out;
}

const char* gemm_backend() {
  static const std::string name = gemm_kernel::name_of(kernel());
  return name.c_str();
}

}  // namespace attnlab
