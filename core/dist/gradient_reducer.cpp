// core/dist/gradient_reducer.cpp — bucketed allreduce overlapped with backward (gradient_reducer.h).
#include "dist/gradient_reducer.h"

#ifdef ATTNLAB_HAVE_MPI
#include "dist/mpi_thread.h"
#endif

#include <algorithm>
#include <iostream>

namespace attnlab::dist {

struct GradientReducer::Bucket {
  std::vector<size_t> params;
  std::vector<float> sum;           // the bucket's gradients, one after another; reduced in place
  std::atomic<int> remaining{0};    // parameters not yet copied in this step
  std::atomic<bool> full{false};
  bool started = false, finished = false;  // the communication thread's view
#ifdef ATTNLAB_HAVE_MPI
  MPI_Request request = MPI_REQUEST_NULL;
#endif
};

GradientReducer::GradientReducer(World& world, exec::ParameterStore& store, size_t bucket_bytes)
    : world_(world), store_(store), bucket_of_(store.size()), offset_of_(store.size()) {
  if (!world.mpi()) throw DistError("gradient reduction needs a world of several ranks started by mpirun");
  const size_t bucket_floats = std::max<size_t>(1, bucket_bytes / sizeof(float));
  for (size_t i = store.size(); i-- > 0;) {
    if (store[i].spec.kind == ParamKind::State) continue;  // no gradient: never reduced (node.h)
    const size_t n = static_cast<size_t>(store[i].grad.numel());
    if (buckets_.empty() || (!buckets_.back()->params.empty() && buckets_.back()->sum.size() + n > bucket_floats))
      buckets_.push_back(std::make_unique<Bucket>());
    Bucket& b = *buckets_.back();
    bucket_of_[i] = buckets_.size() - 1;
    offset_of_[i] = b.sum.size();
    b.params.push_back(i);
    b.sum.resize(b.sum.size() + n);
  }
}

GradientReducer::~GradientReducer() {
  // A step abandoned by an error must not leave the poller touching freed buckets.
  if (!done_) {
    std::unique_lock<std::mutex> lock(mutex_);
    all_done_.wait_for(lock, std::chrono::duration<double>(world_.rank_timeout()), [&] { return done_; });
  }
}

void GradientReducer::begin_step(const std::string& what) {
  what_ = what;
  for (auto& b : buckets_) {
    b->remaining.store(static_cast<int>(b->params.size()), std::memory_order_relaxed);
    b->full.store(false, std::memory_order_relaxed);
    b->started = b->finished = false;
  }
  next_to_start_ = finished_ = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = false;
  }
  timing_ = {};
#ifdef ATTNLAB_HAVE_MPI
  // The poller drives this step's reductions while backward runs; finish_step drives them too.
  const uint64_t step = ++step_number_;
  world_.mpi()->add_poller([this, step] { return step != step_number_.load() ? PollState::Finished : poll(); });
#endif
}

void GradientReducer::gradient_ready(size_t param) {
  Bucket& b = *buckets_[bucket_of_[param]];
  const Tensor& g = store_[param].grad;
  std::copy(g.data(), g.data() + g.numel(), b.sum.data() + offset_of_[param]);
  if (b.remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    b.full.store(true, std::memory_order_release);
#ifdef ATTNLAB_HAVE_MPI
    world_.mpi()->wake();  // the communication thread sleeps until a bucket can start
#endif
  }
}

void GradientReducer::report_all() {
  for (size_t p = 0; p < store_.size(); ++p)
    if (store_[p].spec.kind == ParamKind::Trainable) gradient_ready(p);
}

PollState GradientReducer::poll() {
#ifdef ATTNLAB_HAVE_MPI
  using State = PollState;
  if (finished_ == buckets_.size() && next_to_start_ == buckets_.size()) return State::Finished;
  const auto now = std::chrono::steady_clock::now();
  bool progressed = false;
  // In index order only: every rank issues the same collectives in the same order.
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_]->full.load(std::memory_order_acquire)) {
    Bucket& b = *buckets_[next_to_start_++];
    if (next_to_start_ == 1) first_start_ = now;
    MPI_Iallreduce(MPI_IN_PLACE, b.sum.data(), static_cast<int>(b.sum.size()), MPI_FLOAT, MPI_SUM, world_.mpi()->comm(world_.comm_index()), &b.request);
    b.started = true;
    progressed = true;
  }
  for (size_t i = 0; i < next_to_start_; ++i) {
    Bucket& b = *buckets_[i];
    if (b.finished) continue;
    int flag = 0;
    MPI_Test(&b.request, &flag, MPI_STATUS_IGNORE);
    if (flag) {
      b.finished = true;
      ++finished_;
      progressed = true;
    }
  }
  if (finished_ < buckets_.size()) {
    if (progressed) return State::Progressed;
    return finished_ == next_to_start_ ? State::Idle : State::InFlight;
  }
  last_end_ = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
  }
  all_done_.notify_one();
  return State::Finished;
#else
  return PollState::Finished;
#endif
}

void GradientReducer::finish_step() {
  const auto backward_end = std::chrono::steady_clock::now();
  const double timeout = world_.root() ? world_.rank_timeout() : 2 * world_.rank_timeout();
  const auto deadline = backward_end + std::chrono::duration<double>(timeout);
  for (;;) {
    bool done = false;
#ifdef ATTNLAB_HAVE_MPI
    world_.mpi()->call([&] { done = poll() == PollState::Finished; });
#endif
    if (done) break;
    world_.answer_roll_call();
    if (std::chrono::steady_clock::now() > deadline) {
      // MPI does not say which rank of a collective is missing: with one other rank it is that
      // one; with more, rank 0 asks each (the others answer while they wait here) and names
      // those that do not reply within half the timeout, before the others' longer wait ends.
      std::string missing = "a rank";
      if (world_.size() == 2) {
        missing = "rank " + std::to_string(1 - world_.rank());
      } else if (world_.root()) {
        const std::vector<int> absent = world_.ranks_not_answering(world_.rank_timeout() / 2);
        if (!absent.empty()) {
          missing = absent.size() > 1 ? "ranks " : "rank ";
          for (size_t i = 0; i < absent.size(); ++i) missing += (i ? ", " : "") + std::to_string(absent[i]);
        }
      }
      std::cerr << "attnlab: error: " << world_.prefix() << missing << " did not answer within --rank-timeout " << world_.rank_timeout()
                << " s (the gradient reduction of " << what_ << "); stopping every rank" << std::endl;
      world_.abort(3);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    all_done_.wait_for(lock, std::chrono::microseconds(100), [&] { return done_; });
  }
  step_number_.fetch_add(1);  // retires this step's poller
  for (auto& b : buckets_)
    for (size_t p : b->params) {
      Tensor& g = store_[p].grad;
      const float* from = b->sum.data() + offset_of_[p];
      std::copy(from, from + g.numel(), g.data());
    }
  using seconds = std::chrono::duration<double>;
  timing_.reduce_seconds = seconds(last_end_ - first_start_).count();
  timing_.exposed_seconds = std::max(0.0, seconds(last_end_ - std::max(backward_end, first_start_)).count());
}

}  // namespace attnlab::dist
