// A checkpoint writer killed with SIGKILL at random moments never leaves a broken checkpoint: the
// target path always holds one complete version, and temporaries are never taken for checkpoints.
#include "train/checkpoint.h"
#include "temp_dir.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

namespace attnlab::train {
namespace {
namespace fs = std::filesystem;

constexpr int64_t kValues = 1 << 20;  // 4 MiB of parameter data per checkpoint

// Version `v` of the checkpoint: every value equals v, and a tokenizer whose length varies with v
// so that versions differ in size.
ckpt::Checkpoint version(int64_t v) {
  ckpt::Checkpoint c;
  c.set_step(v);
  ckpt::TensorData& t = *c.add_parameters();
  t.set_name("w");
  t.add_shape(kValues);
  t.mutable_data()->Resize(int(kValues), float(v));
  c.set_tokenizer(std::string(size_t(1000 + (v * 7919) % 50000), char('a' + v % 26)));
  return c;
}

// Checks that `c` is exactly version c.step(); returns a description of the first difference.
std::string check_complete(const ckpt::Checkpoint& c) {
  const int64_t v = c.step();
  if (c.parameters_size() != 1 || c.parameters(0).data_size() != kValues) return "wrong parameter layout";
  for (float x : c.parameters(0).data())
    if (x != float(v)) return "parameter value " + std::to_string(x) + " in version " + std::to_string(v);
  if (c.tokenizer() != version(v).tokenizer()) return "tokenizer of another version";
  return "";
}

// The child: writes versions first, first+1, ... as fast as it can, the way a trainer saves, until
// it is killed.
[[noreturn]] void write_forever(const fs::path& dir, int64_t first) {
  try {
    CheckpointDirectory ckpts(dir, 2);
    for (int64_t v = first;; ++v) {
      const ckpt::Checkpoint c = version(v);
      ckpts.save_step(c);
      write_checkpoint(dir / "best.ckpt", c);
    }
  } catch (...) {
    ::_exit(3);
  }
}

bool has_temporary(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

TEST(CheckpointAtomicity, SigkillAtRandomMomentsLeavesACompleteCheckpoint) {
  testing::TempDir dir;
  write_checkpoint(dir / "best.ckpt", version(0));
  std::mt19937 rng(20261121);
  std::uniform_int_distribution<int> delay_ms(5, 120);
  int64_t newest_seen = 0;  // the newest complete version found so far, in any file
  int64_t best_seen = 0;    // the version best.ckpt held after the previous kill
  int64_t latest_step_seen = 0;
  int rounds_with_temporaries = 0, targeted_with_temporaries = 0;
  constexpr int kRounds = 16;
  for (int round = 0; round < kRounds; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) write_forever(dir.path(), newest_seen + 1);
    const bool targeted = round % 2 == 1;
    if (targeted) {
      // Kill as soon as a temporary file exists, i.e. in the middle of a write (or between the
      // write and the rename), so that this case is exercised whatever the disk speed.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!has_temporary(dir.path()) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    }
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer stopped by itself, status " << status;

    // The fixed target: always loads, always one complete version, never older than before.
    const ckpt::Checkpoint best = read_checkpoint(dir / "best.ckpt");
    EXPECT_EQ(check_complete(best), "") << "round " << round;
    EXPECT_GE(best.step(), best_seen) << "round " << round << ": best.ckpt went back to an older version";
    best_seen = best.step();

    // Every step checkpoint listed loads and is complete; temporaries are not listed.
    CheckpointDirectory ckpts(dir.path(), 2);
    for (const auto& [step, path] : ckpts.step_checkpoints()) {
      ckpt::Checkpoint c;
      ASSERT_NO_THROW(c = read_checkpoint(path)) << path;
      EXPECT_EQ(c.step(), step);
      EXPECT_EQ(check_complete(c), "") << path;
    }
    const bool temporaries = has_temporary(dir.path());
    rounds_with_temporaries += temporaries;
    targeted_with_temporaries += targeted && temporaries;
    if (auto latest = ckpts.latest()) {
      const int64_t step = read_checkpoint(*latest).step();
      EXPECT_GE(step, latest_step_seen) << "round " << round << ": the newest step checkpoint went back";
      latest_step_seen = step;
    }
    // The next writer starts after the newest complete version, as a resumed trainer would.
    newest_seen = std::max(best_seen, latest_step_seen);
    ckpts.remove_stale_temporaries();
  }
  EXPECT_GT(newest_seen, 0) << "no writer completed a checkpoint: the test did not exercise writing";
  EXPECT_GT(targeted_with_temporaries, 0) << "no kill landed in the middle of a write";
  // Informational: how often a kill landed in the middle of a write.
  std::cout << "[ info ] " << kRounds << " kills, " << rounds_with_temporaries << " left a partial temporary; "
            << newest_seen << " versions written\n";
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "stale temporary not removed: " << e.path();
}

}  // namespace
}  // namespace attnlab::train
