// core/dist/mpi_thread.h — the one thread that talks to MPI (private to core/dist).
//
// Contract:
// - The constructor starts the thread, which calls MPI_Init_thread asking for
//   MPI_THREAD_FUNNELED (only this thread calls MPI), and waits until it has the rank and size;
//   a failure is a DistError. The destructor has the thread call MPI_Finalize and joins it.
// - call(fn) runs fn on the thread and waits for it (an exception fn throws is rethrown in the
//   caller). It must not be called from the thread itself.
// - add_poller(fn): the thread runs fn about every 100 µs (between jobs, sleeping in between) until
//   it returns true; used to drive nonblocking requests (MPI_Test) while the caller computes.
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
  void add_poller(std::function<bool()> fn);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::function<bool()>> pollers_;  // owned by the thread once taken from new_pollers_
  std::vector<std::function<bool()>> new_pollers_;
  bool stopping_ = false;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Comm> comms_;
  std::exception_ptr init_error_;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace attnlab::dist
