// core/exec/buffer_pool.h — the memory behind plans, recycled between them.
//
// Why: training sees a new batch shape at almost every step (length buckets × batch sizes), so
// plans are built and dropped all the time. Allocating each plan's buffers from the system made
// every new shape pay page faults and zero-filling on hundreds of megabytes, and let freed memory
// pile up. A pool keeps released blocks and hands them to the next plan.
//
// Contract:
// - acquire(n) returns a block of at least n floats, 64-byte aligned, whose CONTENTS ARE
//   UNSPECIFIED (a recycled block holds whatever its last user left). Plans give nodes their
//   buffers from here: the node contract already says forward writes every output, and the
//   executor zeroes gradient buffers before backward, so nothing may rely on fresh zeros.
// - Block sizes are rounded up to size classes (four per power of two, so at most 19% over the
//   request). A request takes the smallest idle block of its class or larger, up to twice its
//   class: the next batch shape's buffers are a little larger or smaller than the last one's.
// - Released blocks are kept while the idle bytes stay within the highest use seen so far; beyond
//   that, before the next new allocation, every idle block is returned to the system. So the pool
//   holds at most about twice its peak use.
// - A new block that would take the bytes in use past the machine's physical memory is refused
//   with OutOfMemoryError, which says how much was asked for: sizes that cannot fit end with a
//   message, not with the kernel's out-of-memory kill when the pages are first touched (an
//   allocation beyond memory often succeeds, since Linux commits pages only when they are used).
// - Not thread-safe: one Model's plans are built and dropped from one thread at a time.
// - Every block must be released (PooledBlock does it) before the pool is destroyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <utility>

namespace attnlab::exec {

class BufferPool;

class OutOfMemoryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The machine's physical memory in bytes (sysconf), read once.
int64_t machine_memory_bytes();

// A block owned until destruction, then handed back to its pool.
class PooledBlock {
 public:
  PooledBlock() = default;
  PooledBlock(BufferPool* pool, float* data, int64_t capacity) : pool_(pool), data_(data), capacity_(capacity) {}
  PooledBlock(PooledBlock&& other) noexcept { *this = std::move(other); }
  PooledBlock& operator=(PooledBlock&& other) noexcept;
  PooledBlock(const PooledBlock&) = delete;
  PooledBlock& operator=(const PooledBlock&) = delete;
  ~PooledBlock();

  float* data() const { return data_; }
  int64_t capacity() const { return capacity_; }  // floats

 private:
  BufferPool* pool_ = nullptr;
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

class BufferPool {
 public:
  BufferPool() = default;
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  PooledBlock acquire(int64_t floats);

  int64_t bytes_in_use() const { return in_use_bytes_; }
  int64_t bytes_idle() const { return idle_bytes_; }
  int64_t bytes_peak_in_use() const { return peak_in_use_bytes_; }
  int64_t blocks_allocated() const { return allocations_; }  // from the system, ever
  void release_idle();  // returns every idle block to the system

  static int64_t size_class(int64_t floats);  // the capacity a request of `floats` gets

 private:
  friend class PooledBlock;
  void give_back(float* data, int64_t capacity);

  std::multimap<int64_t, float*> idle_;  // capacity -> an idle block
  int64_t in_use_bytes_ = 0, idle_bytes_ = 0, peak_in_use_bytes_ = 0, allocations_ = 0;
};

}  // namespace attnlab::exec
