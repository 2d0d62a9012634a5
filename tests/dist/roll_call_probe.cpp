// tests/dist/roll_call_probe.cpp — run under `mpirun -np 3` by distributed_tests: rank 0 holds a
// roll call while rank 1 answers and rank 2 stays silent (as a rank stopped inside a collective
// would) until the roll call is over; rank 0 prints whom it found missing.
#include "dist/world.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <thread>

int main() {
  attnlab::dist::World& world = attnlab::dist::World::instance();
  world.set_rank_timeout(30);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  if (world.root()) {
    std::printf("not answering:");
    for (int r : world.ranks_not_answering(1.5)) std::printf(" %d", r);
    std::printf("\n");
  } else if (world.rank() == 1) {
    while (std::chrono::steady_clock::now() < until) {
      world.answer_roll_call();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  } else {
    std::this_thread::sleep_until(until);
    world.answer_roll_call();  // late: rank 0 has stopped listening
  }
  const uint64_t mine[] = {static_cast<uint64_t>(world.rank())};
  (void)world.all_gather(mine, "the end");
  std::fflush(stdout);
  return 0;
}
