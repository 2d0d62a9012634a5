#include "exec/buffer_pool.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

namespace attnlab::exec {

PooledBlock& PooledBlock::operator=(PooledBlock&& other) noexcept {
  if (this != &other) {
    if (pool_ && data_) pool_->give_back(data_, capacity_);
    pool_ = std::exchange(other.pool_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

PooledBlock::~PooledBlock() {
  if (pool_ && data_) pool_->give_back(data_, capacity_);
}

int64_t machine_memory_bytes() {
  static const int64_t bytes = static_cast<int64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(::sysconf(_SC_PAGE_SIZE));
  return bytes;
}

namespace {

std::string gib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", bytes / double(int64_t{1} << 30));
  return text;
}

}  // namespace

int64_t BufferPool::size_class(int64_t floats) {
  // 16 floats (one cache line) at least; above that, the next of 1, 1.25, 1.5, 1.75 × 2^k.
  if (floats <= 16) return 16;
  const int64_t power = int64_t{1} << (63 - std::countl_zero(static_cast<uint64_t>(floats - 1)));  // ≤ floats-1 < 2·power
  if (power < 4) return 2 * power;
  for (int64_t quarter = 5; quarter <= 8; ++quarter) {
    const int64_t candidate = power / 4 * quarter;
    if (candidate >= floats) return candidate;
  }
  return 2 * power;
}

PooledBlock BufferPool::acquire(int64_t floats) {
  // Checked before size_class, whose rounding would overflow for absurd requests.
  const int64_t machine = machine_memory_bytes();
  if (machine > 0 && floats > (machine - in_use_bytes_) / static_cast<int64_t>(sizeof(float)))
    throw OutOfMemoryError("out of memory: a buffer of " + gib(double(floats) * sizeof(float)) + " with " + gib(double(in_use_bytes_)) +
                           " already in use is more than this machine's " + gib(double(machine)) +
                           " (smaller batches, shorter sequences or a smaller model fit)");
  const int64_t capacity = size_class(floats < 1 ? 1 : floats);
  auto take = [&](float* data, int64_t cap) {
    in_use_bytes_ += cap * static_cast<int64_t>(sizeof(float));
    peak_in_use_bytes_ = std::max(peak_in_use_bytes_, in_use_bytes_);
    return PooledBlock(this, data, cap);
  };
  if (auto it = idle_.lower_bound(capacity); it != idle_.end() && it->first <= 2 * capacity) {
    const auto [cap, data] = *it;
    idle_.erase(it);
    idle_bytes_ -= cap * static_cast<int64_t>(sizeof(float));
    return take(data, cap);
  }
  // A new block. Idle blocks beyond the peak use are dead weight (shapes that no longer come):
  // free them first, so the pool stays within about twice its peak use.
  if (idle_bytes_ > peak_in_use_bytes_) release_idle();
  void* p = std::aligned_alloc(64, static_cast<size_t>(capacity) * sizeof(float));
  if (!p) throw std::bad_alloc();
  ++allocations_;
  return take(static_cast<float*>(p), capacity);
}

void BufferPool::give_back(float* data, int64_t capacity) {
  const int64_t bytes = capacity * static_cast<int64_t>(sizeof(float));
  in_use_bytes_ -= bytes;
  idle_bytes_ += bytes;
  idle_.emplace(capacity, data);
}

void BufferPool::release_idle() {
  for (const auto& [capacity, data] : idle_) std::free(data);
  idle_.clear();
  idle_bytes_ = 0;
}

BufferPool::~BufferPool() { release_idle(); }

}  // namespace attnlab::exec
