// Data-parallel `attnlab run` under `mpirun -np R` on this machine: parity with a single process,
// determinism, resuming at another R, the start-up check, and rank faults (killed, stopped,
// SIGTERM to mpirun). Every launch uses loopback and shared memory only (the environment below).
#include "../support/run_command.h"
#include "../support/tiny_experiment.h"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <thread>

namespace attnlab {
namespace {

namespace fs = std::filesystem;
using test::CommandResult;
using test::make_temp_dir;
using test::read_text_file;

// Open MPI on loopback and shared memory only: never a network interface other than lo.
void use_loopback_only() {
  setenv("OMPI_MCA_btl", "self,vader", 1);
  setenv("OMPI_MCA_pml", "ob1", 1);
  setenv("OMPI_MCA_oob_tcp_if_include", "lo", 1);
  setenv("OMPI_MCA_btl_tcp_if_include", "lo", 1);
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
}

std::string mpirun(int ranks) {
  return std::string(ATTNLAB_MPIRUN) + " -np " + std::to_string(ranks) + " --oversubscribe --allow-run-as-root ";
}
const std::string kExe = ATTNLAB_EXE;

// The tiny experiment with a gentle schedule: at the shared default's peak rate (factor 2,
// warm-up 10) this model is chaotic, and the rounding of any two summation orders (1e-7) grows
// tenfold a step; at factor 0.5 it still learns (loss 6.4 -> 4.5 in 50 steps) and rounding stays
// rounding, so the comparison below tests the distribution, not the weather.
std::string experiment_text(const std::string& limits) {
  std::string text = test::tiny_experiment_text(limits);
  const std::string fast = "noam(factor: 2.0, warmup: 10)";
  text.replace(text.find(fast), fast.size(), "noam(factor: 0.5, warmup: 20)");
  return text;
}

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    use_loopback_only();
    dir_ = make_temp_dir("attnlab-dist-");
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path experiment(const std::string& name, const std::string& limits) {
    return test::write_tiny_experiment(dir_ / (name + ".attn"), experiment_text(limits), ATTNLAB_SOURCE_DIR);
  }
  CommandResult run(int ranks, const fs::path& file, const std::string& out, const std::string& extra = "") {
    const std::string prefix = ranks > 0 ? mpirun(ranks) : "";
    return test::run_command(prefix + kExe + " run " + file.string() + " --out " + (dir_ / out).string() + " --threads 1 " + extra);
  }
  std::vector<nlohmann::json> train_events(const std::string& out) {
    std::vector<nlohmann::json> events;
    std::ifstream in(dir_ / out / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      nlohmann::json e = nlohmann::json::parse(line);
      if (e["event"] == "train") events.push_back(e);
    }
    return events;
  }
  std::vector<double> losses(const std::string& out) {
    std::vector<double> l;
    for (const auto& e : train_events(out)) l.push_back(e["loss"].get<double>());
    return l;
  }
  static void expect_close(const std::vector<double>& a, const std::vector<double>& b, double relative) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(std::abs(a[i] - b[i]), relative * std::abs(a[i])) << "step " << i + 1;
  }
  fs::path dir_;
};

const std::string kFiftySteps = "batch_tokens: 400, max_steps: 50, valid_every: 0, valid_bleu_sentences: 0";

TEST_F(Distributed, TwoRanksComputeTheLossesOfOneProcessAndRankZeroAloneWrites) {
  const fs::path file = experiment("tiny", kFiftySteps);
  CommandResult one = run(0, file, "one");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  // Small buckets: many reductions in flight during backward.
  CommandResult two = run(2, file, "two", "--bucket-mb 0.002");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const std::vector<double> a = losses("one"), b = losses("two");
  ASSERT_EQ(a.size(), 50u);
  expect_close(a, b, 1e-5);
  EXPECT_LT(b.back(), b.front() - 1.0);  // and it learns
  for (const auto& e : train_events("two")) {
    EXPECT_TRUE(e.contains("allreduce_s"));
    EXPECT_TRUE(e.contains("allreduce_exposed_s"));
  }
  // One run directory, one log, one line on stdout: rank 0's.
  size_t lines = 0;
  for (size_t p = two.out.find("run directory:"); p != std::string::npos; p = two.out.find("run directory:", p + 1)) ++lines;
  EXPECT_EQ(lines, 1u) << two.out;
  EXPECT_NE(two.err.find("on each of 2 ranks (data-parallel"), std::string::npos) << two.err;
  size_t logs = 0;
  for (size_t p = two.err.find("experiment tiny:"); p != std::string::npos; p = two.err.find("experiment tiny:", p + 1)) ++logs;
  EXPECT_EQ(logs, 1u) << two.err;
}

TEST_F(Distributed, TwoRunsAtTheSameRankCountAreBitwiseIdentical) {
  const std::string limits = "batch_tokens: 400, max_steps: 20, valid_every: 0, valid_bleu_sentences: 0";
  const fs::path file = experiment("tiny", limits);
  ASSERT_EQ(run(2, file, "a").exit_code, 0);
  ASSERT_EQ(run(2, file, "b").exit_code, 0);
  const auto a = train_events("a"), b = train_events("b");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << i;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()) << i;
  }
}

// A mixture of experts reports per-node metrics (node.h, StepReport): the ranks' counts are summed.
// Without capacity drops every token is served once (k = 1), so each node's served tokens in a step
// are the step's tokens (padding included) at any rank count.
TEST_F(Distributed, NodeMetricsAreSummedOverRanks) {
  const std::string limits = "batch_tokens: 400, max_steps: 4, valid_every: 0, valid_bleu_sentences: 0";
  const fs::path file = experiment("tiny", limits);
  const std::string moe = "--use 'ffn=ffn.moe(experts: 3, capacity_factor: 100.0)'";
  ASSERT_EQ(run(0, file, "one", moe).exit_code, 0);
  CommandResult two = run(2, file, "two", moe);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.err.find("on each of 2 ranks (data-parallel"), std::string::npos) << two.err;
  auto served = [](const nlohmann::json& e) {
    std::map<std::string, double> by_node;
    for (const auto& [key, value] : e.items())
      if (const size_t at = key.find(".expert_tokens."); at != std::string::npos) by_node[key.substr(0, at)] += value.get<double>();
    return by_node;
  };
  const auto a = train_events("one"), b = train_events("two");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    const std::map<std::string, double> sa = served(a[i]), sb = served(b[i]);
    ASSERT_EQ(sa.size(), 2u) << a[i].dump();
    EXPECT_EQ(sa, sb) << "step " << i + 1;
    EXPECT_TRUE(b[i].contains("aux_loss")) << b[i].dump();
    for (const auto& [node, n] : sa) EXPECT_GT(n, 0) << node;
  }
}

TEST_F(Distributed, ACheckpointOfTwoRanksResumesAtOneAndAtThreeRanks) {
  const std::string limits = "batch_tokens: 400, max_steps: 30, valid_every: 0, valid_bleu_sentences: 0, checkpoint_every: 10";
  const fs::path file = experiment("tiny", limits);
  CommandResult whole = run(0, file, "whole");
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  CommandResult first = run(2, file, "first", "--set train.max_steps=15");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  fs::copy(dir_ / "first", dir_ / "at1", fs::copy_options::recursive);
  fs::copy(dir_ / "first", dir_ / "at3", fs::copy_options::recursive);
  CommandResult at1 = run(0, file, "at1", "--resume");
  ASSERT_EQ(at1.exit_code, 0) << at1.err;
  EXPECT_NE(at1.err.find("at step 15"), std::string::npos) << at1.err;
  CommandResult at3 = run(3, file, "at3", "--resume");
  ASSERT_EQ(at3.exit_code, 0) << at3.err;
  expect_close(losses("whole"), losses("at1"), 1e-5);
  expect_close(losses("whole"), losses("at3"), 1e-5);
}

TEST_F(Distributed, RanksThatDisagreeStopBeforeWritingAndTheMessageNamesTheRankAndWhat) {
  const fs::path file = experiment("tiny", kFiftySteps);
  const fs::path other = test::write_tiny_experiment(dir_ / "other/tiny.attn", experiment_text(kFiftySteps) + "\n// another text\n",
                                                     ATTNLAB_SOURCE_DIR);
  const std::string out = (dir_ / "run").string();
  const std::string common = " run --out " + out + " --threads 1 ";
  // MPMD: rank 0 and rank 1 started with different command lines.
  CommandResult r = test::run_command(std::string(ATTNLAB_MPIRUN) + " --oversubscribe --allow-run-as-root -np 1 " + kExe + common +
                                      file.string() + " : -np 1 " + kExe + common + file.string() + " --set train.dropout=0.2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rank 1 differs from rank 0 in: the overrides (--set, --use, --seed, --resume, --out)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out + "/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(out + "/settings.json"));

  r = test::run_command(std::string(ATTNLAB_MPIRUN) + " --oversubscribe --allow-run-as-root -np 1 " + kExe + common + file.string() +
                        " : -np 1 " + kExe + common + other.string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rank 1 differs from rank 0 in: the experiment;"), std::string::npos) << r.err;
}

// ---- Distributed sweeps --------------------------------------------------------------------------

TEST_F(Distributed, AblateHandsVariantsToRanksAsTheyFinishAndRecordsTheSameResults) {
  const fs::path file = experiment("tiny", "batch_tokens: 400, max_steps: 8, valid_every: 0, valid_bleu_sentences: 0");
  // A 5-token batch holds no pair: that variant fails, and the others go on.
  const std::string vary = " --vary heads=1,4 --vary train.dropout=0,0.2 --vary train.batch_tokens=5 --threads 1 --out ";
  CommandResult one = test::run_command(kExe + " ablate " + file.string() + vary + (dir_ / "one").string());
  ASSERT_EQ(one.exit_code, 0) << one.err;
  CommandResult ranks = test::run_command(mpirun(3) + kExe + " ablate " + file.string() + vary + (dir_ / "ranks").string());
  ASSERT_EQ(ranks.exit_code, 0) << ranks.err;
  // Rank 0 hands out; ranks 1 and 2 both train.
  EXPECT_NE(ranks.err.find(": to rank 1"), std::string::npos) << ranks.err;
  EXPECT_NE(ranks.err.find(": to rank 2"), std::string::npos) << ranks.err;
  EXPECT_EQ(ranks.out, "results: " + (dir_ / "ranks/results.md").string() + "\n1 of 6 runs failed (see their status in results.md)\n");
  const nlohmann::json a = nlohmann::json::parse(read_text_file(dir_ / "one/results.json"));
  const nlohmann::json b = nlohmann::json::parse(read_text_file(dir_ / "ranks/results.json"));
  const auto& rows_a = a.at("variants");
  const auto& rows_b = b.at("variants");
  ASSERT_EQ(rows_a.size(), 6u);
  ASSERT_EQ(rows_a.size(), rows_b.size());
  int failed = 0;
  for (size_t i = 0; i < rows_a.size(); ++i) {
    EXPECT_EQ(rows_a[i]["id"], rows_b[i]["id"]);
    EXPECT_EQ(rows_a[i]["status"], rows_b[i]["status"]) << rows_a[i]["id"];
    EXPECT_EQ(rows_a[i]["final_train_loss"], rows_b[i]["final_train_loss"]) << rows_a[i]["id"];  // each trained alone: bitwise
    failed += rows_b[i]["status"] == "failed";
  }
  EXPECT_EQ(failed, 1);
  EXPECT_TRUE(fs::exists(dir_ / "ranks/results.md"));
  EXPECT_TRUE(fs::exists(dir_ / "ranks/curves.svg"));
  // Resumable: the same command again finds every variant finished and runs none.
  CommandResult again = test::run_command(mpirun(3) + kExe + " ablate " + file.string() + vary + (dir_ / "ranks").string());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("[1/6] baseline: finished earlier (ok), skipped"), std::string::npos) << again.err;
  EXPECT_EQ(again.err.find(": to rank"), std::string::npos) << again.err;
  EXPECT_EQ(nlohmann::json::parse(read_text_file(dir_ / "ranks/results.json")).at("variants"), rows_b);
}

TEST_F(Distributed, AblateWithRanksPerVariantTrainsEachVariantDataParallelInItsGroup) {
  const fs::path file = experiment("tiny", "batch_tokens: 400, max_steps: 8, valid_every: 0, valid_bleu_sentences: 0");
  const std::string vary = " --vary heads=1,4 --vary train.dropout=0 --threads 1 --out ";
  CommandResult one = test::run_command(kExe + " ablate " + file.string() + vary + (dir_ / "one").string());
  ASSERT_EQ(one.exit_code, 0) << one.err;
  // Rank 0 hands out; ranks 1-2 and 3-4 are two groups of two.
  CommandResult groups =
      test::run_command(mpirun(5) + kExe + " ablate " + file.string() + vary + (dir_ / "groups").string() + " --ranks-per-variant 2");
  ASSERT_EQ(groups.exit_code, 0) << groups.err;
  EXPECT_NE(groups.err.find(": to ranks 1-2"), std::string::npos) << groups.err;
  EXPECT_NE(groups.err.find(": to ranks 3-4"), std::string::npos) << groups.err;
  EXPECT_NE(groups.err.find("on each of 2 ranks (data-parallel"), std::string::npos) << groups.err;
  const auto a = nlohmann::json::parse(read_text_file(dir_ / "one/results.json")).at("variants");
  const auto b = nlohmann::json::parse(read_text_file(dir_ / "groups/results.json")).at("variants");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i]["status"], "ok") << b[i]["id"];
    const double x = a[i]["final_train_loss"].get<double>(), y = b[i]["final_train_loss"].get<double>();
    EXPECT_LE(std::abs(x - y), 1e-5 * std::abs(x)) << a[i]["id"];
  }
  // Ranks that do not make whole groups are refused before anything runs.
  CommandResult bad =
      test::run_command(mpirun(4) + kExe + " ablate " + file.string() + vary + (dir_ / "bad").string() + " --ranks-per-variant 2");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--ranks-per-variant 2: the 3 ranks after rank 0 must split into groups of that size"), std::string::npos)
      << bad.err;
  EXPECT_FALSE(fs::exists(dir_ / "bad/results.md"));
}

// ---- Faults ------------------------------------------------------------------------------------

// The attnlab processes training into `out_dir`, and their pids.
std::vector<pid_t> processes_of(const fs::path& out_dir) {
  std::vector<pid_t> pids;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = read_text_file(entry.path() / "cmdline");
    if (cmdline.find(out_dir.string()) != std::string::npos && cmdline.find(kExe) != std::string::npos) pids.push_back(std::stoi(name));
  }
  return pids;
}

// A command started in the background (through /bin/sh, in a process group of its own), its
// output in files. Whatever of it still runs when the test ends is killed.
struct Background {
  pid_t pid = -1;
  fs::path out, err, run_dir;
  Background(const std::string& command, const fs::path& dir, const fs::path& run)
      : out(dir / "bg.out"), err(dir / "bg.err"), run_dir(run) {
    const std::string full = "exec " + command + " >" + out.string() + " 2>" + err.string() + " </dev/null";
    pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() {
    if (pid <= 0) return;
    kill(-pid, SIGKILL);
    for (pid_t p : processes_of(run_dir)) kill(p, SIGKILL);
    waitpid(pid, nullptr, WNOHANG);
  }
  int wait_for(double seconds) {  // exit code, or -1 when it is still running after `seconds`
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
};

// The pid of the attnlab process that is rank `rank` of the job (from its environment).
pid_t rank_pid(int rank, const fs::path& out_dir) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = read_text_file(entry.path() / "cmdline");
    if (cmdline.find(out_dir.string()) == std::string::npos || cmdline.find("mpirun") != std::string::npos) continue;
    const std::string environ = read_text_file(entry.path() / "environ");
    if (environ.find(want + '\0') != std::string::npos) return std::stoi(name);
  }
  return -1;
}

// Waits until the run has saved a step checkpoint (they rotate quickly: any one will do).
bool wait_for_a_checkpoint(const fs::path& run_dir, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(run_dir / "checkpoints", ec))
      if (entry.path().filename().string().rfind("step-", 0) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

const std::string kLongRun =
    "batch_tokens: 400, max_steps: 1000000, valid_every: 0, valid_bleu_sentences: 0, checkpoint_every: 5";

TEST_F(Distributed, AKilledRankEndsTheJobNamingItAndResumeContinuesFromTheLastCheckpoint) {
  const fs::path file = experiment("tiny", kLongRun);
  const fs::path out = dir_ / "run";
  Background job(mpirun(2) + kExe + " run " + file.string() + " --out " + out.string() + " --threads 1 --rank-timeout 10", dir_, out);
  ASSERT_TRUE(wait_for_a_checkpoint(out, 60)) << read_text_file(job.err);
  const pid_t victim = rank_pid(1, out);
  ASSERT_GT(victim, 0);
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  const int code = job.wait_for(30);
  ASSERT_NE(code, -1) << "the job did not end within 30 s of losing rank 1";
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count(), 30);
  EXPECT_NE(code, 0);
  const std::string err = read_text_file(job.err);
  EXPECT_NE(err.find("rank 1"), std::string::npos) << err;

  // The last checkpoint is intact: the run resumes from it, at the same R, and finishes.
  CommandResult resumed = run(2, file, "run", "--resume --set train.max_steps=40");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming"), std::string::npos) << resumed.err;
  EXPECT_EQ(losses("run").size(), 40u);
}

// Starts the long run `file` on `ranks` ranks, stops rank `victim` with SIGSTOP once a checkpoint exists,
// and expects rank 0 to end the job naming it.
void expect_a_stopped_rank_named(const fs::path& file, const fs::path& dir, int ranks, int victim) {
  const fs::path out = dir / "run";
  Background job(mpirun(ranks) + kExe + " run " + file.string() + " --out " + out.string() + " --threads 1 --rank-timeout 2", dir, out);
  ASSERT_TRUE(wait_for_a_checkpoint(out, 60)) << read_text_file(job.err);
  const pid_t pid = rank_pid(victim, out);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  const int code = job.wait_for(30);
  kill(pid, SIGKILL);  // in case the job's end left it behind
  ASSERT_NE(code, -1) << "the job did not end within 30 s of rank " << victim << " stopping";
  EXPECT_NE(code, 0);
  const std::string err = read_text_file(job.err);
  EXPECT_NE(err.find("rank 0: rank " + std::to_string(victim) + " did not answer within --rank-timeout 2 s"), std::string::npos) << err;
}

TEST_F(Distributed, ARankThatStopsAnsweringIsNamedWithinTheRankTimeout) {
  expect_a_stopped_rank_named(experiment("tiny", kLongRun), dir_, 2, 1);
}

// With more than two ranks MPI does not say which rank of a collective is missing: a roll call
// (point to point) names the ranks that do not answer.
TEST_F(Distributed, ARollCallNamesTheRanksThatDoNotAnswer) {
  CommandResult r = test::run_command(mpirun(3) + ROLL_CALL_PROBE);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("not answering: 2\n"), std::string::npos) << r.out << r.err;
}

// The same at three ranks, wherever in the step the rank stops (its part of the step's exchange,
// or the gradient reduction).
TEST_F(Distributed, AtThreeRanksTheRankThatStopsAnsweringIsNamed) {
  expect_a_stopped_rank_named(experiment("tiny", kLongRun), dir_, 3, 2);
}

TEST_F(Distributed, SigtermToMpirunSavesOneCheckpointAndStopsEveryRank) {
  const fs::path file = experiment("tiny", kLongRun);
  const fs::path out = dir_ / "run";
  // mpirun passes SIGTERM on to the ranks, and SIGKILL odls_base_sigkill_timeout (1 s) later:
  // time enough for this model's checkpoint.
  Background job(mpirun(2) + kExe + " run " + file.string() + " --out " + out.string() + " --threads 1", dir_, out);
  ASSERT_TRUE(wait_for_a_checkpoint(out, 60)) << read_text_file(job.err);
  // mpirun itself (exec'd by the shell), once start-up is well behind it.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_EQ(kill(job.pid, SIGTERM), 0);
  const int code = job.wait_for(30);
  ASSERT_NE(code, -1) << "mpirun did not end within 30 s of SIGTERM";
  const std::string err = read_text_file(job.err);
  EXPECT_NE(err.find("interrupted: checkpoint saved"), std::string::npos) << err;
  // The checkpoint of the step it stopped at, and that step is the last one in the metrics.
  const std::vector<nlohmann::json> events = train_events("run");
  ASSERT_FALSE(events.empty());
  const int64_t last = events.back()["step"].get<int64_t>();
  char name[64];
  std::snprintf(name, sizeof name, "step-%09lld.ckpt", static_cast<long long>(last));
  EXPECT_TRUE(fs::exists(out / "checkpoints" / name)) << name;
  CommandResult resumed = run(2, file, "run", "--resume --set train.max_steps=" + std::to_string(last + 3));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(losses("run").size(), static_cast<size_t>(last + 3));
}

}  // namespace
}  // namespace attnlab
