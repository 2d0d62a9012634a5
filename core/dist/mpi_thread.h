// core/dist/mpi_thread.h — the one thread that talks to MPI (private to core/dist).
//
// Contract:
// - The constructor starts the thread, which calls MPI_Init_thread asking for
//   MPI_THREAD_FUNNELED (only this thread calls MPI), and waits until it has the rank and size;
//   a failure is a DistError. The destructor has the thread call MPI_Finalize and joins it.
// - call(fn) runs fn on the thread and waits for it (an exception fn throws is rethrown in the
//   caller). It must not be called from the thread itself.
// - add_poller(fn): the thread runs fn, which drives nonblocking requests (MPI_Test) while the
//   caller computes, until it returns PollState::Finished. How soon it runs again follows what fn
//   returned: Progressed (a request started or completed) — after 50 µs; InFlight (requests
//   pending, none moved) — after twice the previous wait, at most 1 ms; Idle (nothing in flight,
//   waiting for input) — only after wake(). The thread shares the cores with the compute threads,
//   so it must not wake up often when there is nothing to move: each wake-up preempts a compute
//   thread (at a fixed 100 µs, the wake-ups cost more than the copies).
// - wake(): the input a poller waits for is there (called from any thread; cheap).
// - comm(0) is a duplicate of MPI_COMM_WORLD for attnlab's own messages; split() adds the
//   communicators of groups of ranks (comm(index)); all are freed before MPI_Finalize.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <mpi.h>

#include "dist/world.h"

namespace attnlab::dist {

class MpiThread {
 public:
  MpiThread();
  ~MpiThread();
  MpiThread(const MpiThread&) = delete;
  MpiThread& operator=(const MpiThread&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm comm(int index) const { return comms_[static_cast<size_t>(index)]; }
  // On this thread: MPI_Comm_split of comm(parent); the new communicator's index, -1 for
  // MPI_UNDEFINED.
  int split(int parent, int color, int key);

  void call(const std::function<void()>& fn);
  void add_poller(std::function<PollState()> fn);
  void wake();

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::function<PollState()>> pollers_;  // owned by the thread once taken from new_pollers_
  std::vector<std::function<PollState()>> new_pollers_;
  bool woken_ = false;  // wake() since the thread last looked
  bool stopping_ = false;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Comm> comms_;
  std::exception_ptr init_error_;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace attnlab::dist
