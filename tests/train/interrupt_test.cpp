// SIGINT/SIGTERM set the stop flag; a second SIGINT ends the process at once; handlers are restored.
#include "train/interrupt.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>

namespace attnlab::train {
namespace {

TEST(InterruptGuard, FirstSigintRequestsAStop) {
  InterruptGuard guard;
  EXPECT_FALSE(guard.stop_requested());
  std::raise(SIGINT);  // handled: the test process keeps running
  EXPECT_TRUE(guard.stop_requested());
  EXPECT_EQ(guard.signal_number(), SIGINT);
}

TEST(InterruptGuard, SigtermRequestsAStop) {
  InterruptGuard guard;
  std::raise(SIGTERM);
  EXPECT_TRUE(guard.stop_requested());
  EXPECT_EQ(guard.signal_number(), SIGTERM);
  guard.clear();
  EXPECT_FALSE(guard.stop_requested());
}

TEST(InterruptGuard, RequestIsResetByANewGuard) {
  {
    InterruptGuard guard;
    std::raise(SIGINT);
  }
  InterruptGuard again;
  EXPECT_FALSE(again.stop_requested());
}

TEST(InterruptGuardDeathTest, SecondSigintExitsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        InterruptGuard guard;
        std::raise(SIGINT);
        std::raise(SIGINT);
        std::_Exit(0);  // not reached
      },
      ::testing::ExitedWithCode(130), "stop requested.*\n.*stopping at once");
}

TEST(InterruptGuardDeathTest, SigintAfterSigtermExitsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        InterruptGuard guard;
        std::raise(SIGTERM);
        std::raise(SIGINT);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(130), "stopping at once");
}

int g_custom_calls = 0;
extern "C" void custom_handler(int) { ++g_custom_calls; }

TEST(InterruptGuard, RestoresPreviousHandlers) {
  struct sigaction custom {}, saved_int {}, saved_term {};
  custom.sa_handler = custom_handler;
  sigemptyset(&custom.sa_mask);
  ::sigaction(SIGINT, &custom, &saved_int);
  ::sigaction(SIGTERM, &custom, &saved_term);
  {
    InterruptGuard guard;
    std::raise(SIGINT);
    EXPECT_EQ(g_custom_calls, 0);
  }
  std::raise(SIGINT);
  std::raise(SIGTERM);
  EXPECT_EQ(g_custom_calls, 2);
  ::sigaction(SIGINT, &saved_int, nullptr);
  ::sigaction(SIGTERM, &saved_term, nullptr);
}

TEST(InterruptGuard, OnlyOneAtATime) {
  InterruptGuard guard;
  EXPECT_THROW(InterruptGuard second, std::logic_error);
  std::raise(SIGINT);
  EXPECT_TRUE(guard.stop_requested());  // the first guard still works
}

}  // namespace
}  // namespace attnlab::train
