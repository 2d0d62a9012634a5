// Decode steps allocate nothing: after the session is built (caches allocated once), step() and
// reorder() make no call to the global operator new (replaced here for the whole test binary,
// which libattnlab_core, the plugins and TBB resolve to as well).
#include "eval/decoder.h"
#include "exec/serial_executor.h"
#include "exec/tbb_executor.h"
#include "model_fixture.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long> allocations{0};

void* counted_alloc(std::size_t size, std::size_t alignment = 0) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  void* p = alignment > alignof(std::max_align_t)
                ? std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment)
                : std::malloc(size);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t size) { return counted_alloc(size); }
void* operator new[](std::size_t size) { return counted_alloc(size); }
void* operator new(std::size_t size, std::align_val_t a) { return counted_alloc(size, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t size, std::align_val_t a) { return counted_alloc(size, static_cast<std::size_t>(a)); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try { return counted_alloc(size); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try { return counted_alloc(size); } catch (...) { return nullptr; }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace attnlab {
namespace {

TEST(DecodeAllocation, TheCounterSeesSessionAllocations) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 1);
  exec::SerialExecutor executor;
  const long before = allocations.load();
  eval::DecodeSession session(*model, executor, {{5, 6, 7}}, 2, 4);
  EXPECT_GT(allocations.load() - before, 10);
}

TEST(DecodeAllocation, StepsAndReordersAllocateNothing) {
  for (const char* posenc : {"posenc=posenc.sinusoidal", "posenc=posenc.rotary", "posenc=posenc.learned", "posenc=posenc.alibi"}) {
    auto model = test::make_model(test::base_graph(test::small_sets(), {posenc}), 1);
    exec::TbbExecutor executor(2);
    eval::DecodeSession session(*model, executor, {{5, 6, 7}, {8, 9}}, 2, 6, 2);
    const std::vector<int> feed = {2, 2, 2, 2}, tokens = {10, 11, 12, 13}, from = {1, 0, 3, 3};
    session.step(feed);  // the first step may set up per-call state
    long in_steps = 0, in_reorders = 0;
    for (int s = 0; s < 4; ++s) {
      long before = allocations.load();
      session.reorder(from);
      in_reorders += allocations.load() - before;
      before = allocations.load();
      session.step(tokens);
      in_steps += allocations.load() - before;
    }
    EXPECT_EQ(in_reorders, 0) << posenc;
    EXPECT_EQ(in_steps, 0) << posenc;
  }
}

}  // namespace
}  // namespace attnlab
