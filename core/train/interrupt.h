// core/train/interrupt.h — SIGINT/SIGTERM: ask the trainer to save a checkpoint and stop.
//
// Contract:
// - While an InterruptGuard exists, the first SIGINT or SIGTERM only records the request (an
//   async-signal-safe store into a lock-free atomic) and writes one line to stderr with write(2);
//   the trainer polls stop_requested() between steps, saves and returns.
// - A second SIGINT (the user presses Ctrl-C again) ends the process at once with _exit(130), the
//   shell's code for death by SIGINT; a second SIGTERM does the same with 143.
// - The destructor restores the handlers that were installed before. Only one guard may exist at
//   a time (a second one is an std::logic_error).
// - handlers use SA_RESTART so that blocking system calls in progress are resumed, not failed.
#pragma once

#include <csignal>

namespace attnlab::train {

class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  bool stop_requested() const;
  int signal_number() const;  // the signal that asked to stop, 0 when none
  void clear();               // forget a request (a second signal is then a first one again)

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

}  // namespace attnlab::train
