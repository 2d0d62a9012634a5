#include "train/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <stdexcept>

namespace attnlab::train {
namespace {

std::atomic<int> g_requested_by{0};  // signal number of the first request, 0 when none
std::atomic<bool> g_guard_active{false};
static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free to be async-signal-safe");

void write_stderr(const char* text, size_t n) {
  ssize_t ignored = ::write(STDERR_FILENO, text, n);
  (void)ignored;
}

extern "C" void on_stop_signal(int sig) {
  int expected = 0;
  if (g_requested_by.compare_exchange_strong(expected, sig)) {
    static const char message[] =
        "\nattnlab: stop requested: saving a checkpoint and stopping after this step "
        "(press Ctrl-C again to quit at once)\n";
    write_stderr(message, sizeof message - 1);
    return;
  }
  static const char message[] = "\nattnlab: stopping at once\n";
  write_stderr(message, sizeof message - 1);
  ::_exit(128 + sig);
}

}  // namespace

InterruptGuard::InterruptGuard() {
  if (g_guard_active.exchange(true)) throw std::logic_error("InterruptGuard: another guard is already installed");
  g_requested_by.store(0);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &action, &previous_int_);
  ::sigaction(SIGTERM, &action, &previous_term_);
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGINT, &previous_int_, nullptr);
  ::sigaction(SIGTERM, &previous_term_, nullptr);
  g_guard_active.store(false);
}

bool InterruptGuard::stop_requested() const { return g_requested_by.load() != 0; }
int InterruptGuard::signal_number() const { return g_requested_by.load(); }
void InterruptGuard::clear() { g_requested_by.store(0); }

}  // namespace attnlab::train
