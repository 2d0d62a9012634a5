// core/dist/gradient_reducer.h — gradients summed across ranks (allreduce), bucketed and started
// while backward still runs on the remaining layers.
//
// Contract:
// - GradientReducer(world, store, bucket_bytes) cuts the store's trainable parameters (State has no gradient; node.h) into buckets of about
//   bucket_bytes (at least one parameter each), in reverse declaration order: backward produces
//   the last layers' gradients first, so the first buckets fill first.
// - It is the executor's GradientListener for the last backward of a step (exec/executor.h):
//   begin_step() before that backward; gradient_ready(p), called by the executor from the TBB
//   thread that finished p's last writer, copies p's gradient into its bucket, and the bucket's
//   last parameter hands the bucket to the world's communication thread, which starts its
//   MPI_Iallreduce (sum, in place). Buckets start in index order on every rank (collectives must
//   be issued in the same order everywhere), each as soon as it and its predecessors are full,
//   so reductions run while backward goes on.
// - finish_step() (after backward) waits for every bucket's sum and writes it back into the
//   store's gradients: each rank then holds the sum over ranks of its gradients, the same on
//   every rank. A reduction that does not complete within the world's rank_timeout (twice that
//   on ranks other than 0) ends the job with a message naming the step, and the rank when the
//   world has two (MPI does not say which rank of a collective is missing).
// - last_timing(): the step's communication interval (first bucket started to last finished) and
//   the part of it after backward ended (exposed); the rest was hidden behind backward.
// - Only in a distributed world (World::distributed()); a world of one needs no reducer.
#pragma once

#include "dist/world.h"
#include "exec/executor.h"
#include "exec/parameters.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace attnlab::dist {

class GradientReducer final : public exec::GradientListener {
 public:
  GradientReducer(World& world, exec::ParameterStore& store, size_t bucket_bytes);
  ~GradientReducer();

  void begin_step(const std::string& what);
  void gradient_ready(size_t param) override;
  // For a rank that ran no backward in the step (an empty shard): reports every parameter with
  // the gradient the store holds (the caller zeroes it first when it has none).
  void report_all();
  void finish_step();

  struct Timing {
    double reduce_seconds = 0;   // first bucket started to last bucket summed
    double exposed_seconds = 0;  // of which after backward had finished
  };
  Timing last_timing() const { return timing_; }
  size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Bucket;
  PollState poll();  // on the communication thread

  World& world_;
  exec::ParameterStore& store_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<size_t> bucket_of_, offset_of_;  // per parameter
  std::string what_;

  // The step in flight, between the communication thread's poller and finish_step.
  size_t next_to_start_ = 0, finished_ = 0;
  std::mutex mutex_;
  std::condition_variable all_done_;
  bool done_ = true;
  std::atomic<uint64_t> step_number_{0};  // a poller of an earlier step retires itself
  Timing timing_;
  std::chrono::steady_clock::time_point first_start_, last_end_;
};

}  // namespace attnlab::dist
