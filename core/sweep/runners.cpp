// core/sweep/runners.cpp — see runners.h.
#include "sweep/runners.h"

#include "dist/world.h"
#include "train/trainer.h"
#include "dsl/experiment.h"
#include "dsl/source.h"
#include "train/checkpoint.h"
#include "train/run_log.h"
#include "train/interrupt.h"
#include "train/svg_chart.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <chrono>
#include <cstring>
#include <thread>

namespace attnlab::sweep {

namespace fs = std::filesystem;
using namespace attnlab::train;

namespace {


// The training time of a run over all its invocations: a train event's elapsed_s counts from the
// start of its invocation, so it drops where a resumed invocation begins; the segments add up.
double total_train_seconds(const std::vector<nlohmann::json>& events) {
  double done = 0, segment = 0;
  for (const nlohmann::json& e : events) {
    if (e.value("event", "") != "train" || !e.contains("elapsed_s") || !e["elapsed_s"].is_number()) continue;
    const double t = e["elapsed_s"].get<double>();
    if (t < segment) done += segment;
    segment = t;
  }
  return done + segment;
}

// Starts `args` with stdout and stderr appended to `log_file`; returns its pid.
pid_t spawn_logged(const std::vector<std::string>& args, const fs::path& log_file) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw AblateError("cannot start " + args[0] + ": " + std::strerror(rc));
  return pid;
}

// The figures of a finished `attnlab run` directory (settings.json and metrics.jsonl).
VariantResult read_run_directory(const fs::path& dir, const AblateVariant& variant) {
  VariantResult r;
  r.variant = variant;
  r.status = "ok";
  r.dev_loss = r.dev_perplexity = NAN;  // unless a "valid" event says
  std::ifstream in(dir / "settings.json");
  nlohmann::json settings = nlohmann::json::parse(in, nullptr, false);
  if (!settings.is_discarded()) r.parameters = settings.value("parameters", int64_t{0});
  const std::vector<nlohmann::json> events = read_metrics(dir / "metrics.jsonl");
  r.train_seconds = total_train_seconds(events);
  for (const nlohmann::json& e : events) {
    const std::string event = e.value("event", "");
    if (event == "train") {
      r.steps = e.value("step", r.steps);
      r.last_train_loss = json_number(e, "loss", NAN);
      r.tokens_per_second = json_number(e, "tokens_per_s", NAN);
    } else if (event == "valid") {
      r.dev_loss = json_number(e, "loss", NAN);
      r.dev_perplexity = std::exp(r.dev_loss);
      r.dev_bleu = json_number(e, "bleu", -1);
    } else if (event == "test") {
      r.test_bleu = json_number(e, "bleu", -1);
      r.test_chrf = json_number(e, "chrf", -1);
    }
  }
  return r;
}

// Why a child run failed: the error lines of its log (DSL diagnostics and "attnlab: error: ...").
std::string error_lines(const fs::path& log_file, int code) {
  std::ifstream in(log_file);
  std::string out;
  for (std::string line; std::getline(in, line);)
    if (line.find("error:") != std::string::npos) out += (out.empty() ? "" : "\n") + line;
  const std::string prefix = "attnlab: error: ";
  if (out.rfind(prefix, 0) == 0) out = out.substr(prefix.size());
  return out.empty() ? "attnlab run exited with code " + std::to_string(code) + " (see " + log_file.string() + ")" : out;
}

// One invocation of a sweep: which variants are still to run, how each one's run is prepared and
// its result recorded, and the two ways of running them (in this process one after another, or as
// concurrent `attnlab run` children).
class Sweep {
 public:
  Sweep(const AblateOptions& options, const Registry& registry, std::vector<AblateVariant> variants, fs::path out_dir)
      : options_(options), registry_(registry), log_(options.log ? *options.log : std::cerr), variants_(std::move(variants)) {
    result_.out_dir = std::move(out_dir);
  }

  AblationResult run(const AblateBaseline& baseline) {
    dist::World& world = dist::World::instance();
    if (world.distributed() && !world.root()) {
      check_groups(world);
      train_what_rank_zero_hands_out(world);
      return result_;
    }
    fs::create_directories(result_.out_dir);
    log_ << "ablation of " << baseline.experiment_name << ": " << variants_.size() << " runs (baseline and "
         << variants_.size() - 1 << (variants_.size() == 2 ? " variant" : " variants") << ") in " << result_.out_dir.string() << "\n";
    find_pending();
    if (world.distributed()) {
      check_groups(world);
      hand_out_to_ranks(world);
    }
    else if (options_.parallel <= 1) run_in_process();
    else run_as_children();
    if (!baseline_failure_.empty())
      throw AblateError("the baseline run failed, so the sweep stopped (fix the cause and run the same command again):\n" +
                        baseline_failure_);
    write_ablation_results(result_.out_dir, baseline.experiment_name, baseline, result_.variants);
    return result_;
  }

 private:
  fs::path dir_of(size_t i) const { return result_.out_dir / variants_[i].id; }
  bool may_start_more() const { return !result_.interrupted && baseline_failure_.empty(); }

  // Each variant's slot in the results (baseline first): those with a result.json from an earlier
  // invocation are filled from it; the others are pending, "not run" until they finish.
  void find_pending() {
    result_.variants.resize(variants_.size());
    for (size_t i = 0; i < variants_.size(); ++i) {
      VariantResult& r = result_.variants[i];
      r.variant = variants_[i];
      r.status = "not run";
      r.reason = "the sweep was interrupted";
      const fs::path result_file = dir_of(i) / "result.json";
      if (fs::exists(result_file)) {
        std::ifstream in(result_file);
        nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
        if (!j.is_discarded()) {
          log_ << variant_label(i, variants_) << ": finished earlier (" << j.value("status", "?") << "), skipped\n";
          r = from_json(j, variants_[i]);
          continue;
        }
      }
      pending_.push_back(i);
    }
  }

  // A variant's run options, and its directory (cleared when it holds a start that saved no
  // checkpoint, which cannot be resumed).
  RunOptions prepare(size_t i) const {
    const fs::path dir = dir_of(i);
    const bool has_checkpoints = fs::is_directory(dir / "checkpoints") && !fs::is_empty(dir / "checkpoints");
    if (!has_checkpoints && fs::exists(dir)) fs::remove_all(dir);
    log_ << variant_label(i, variants_) << (has_checkpoints ? ": resuming from its checkpoint" : ": running") << "\n";
    return options_of(i, has_checkpoints);
  }

  // Under mpirun: ranks 1..R-1 must form whole groups of ranks_per_variant.
  void check_groups(const dist::World& world) const {
    const int k = options_.ranks_per_variant;
    if (k < 1 || (world.size() - 1) % k != 0)
      throw AblateError("--ranks-per-variant " + std::to_string(k) + ": the " + std::to_string(world.size() - 1) +
                        " ranks after rank 0 must split into groups of that size");
  }

  // A variant's run options (no files touched: every rank of a group computes them).
  RunOptions options_of(size_t i, bool resume) const {
    const fs::path dir = dir_of(i);
    RunOptions run;
    run.experiment_file = options_.experiment_file;
    run.sets = options_.sets;
    run.uses = options_.uses;
    for (const AblateChange& c : variants_[i].changes)
      (c.kind == AblateChange::Kind::Slot ? run.uses : run.sets).push_back(change_text(c));
    run.out_dir = dir;
    run.data_root = options_.data_root;
    run.threads = options_.threads;
    run.seed = options_.seed;
    run.log = &log_;
    run.progress_terminal = options_.progress_terminal;
    run.resume = resume;
    run.command_line = "attnlab " + shell_line(run_arguments(run));
    return run;
  }

  // A failing baseline stops the sweep: without it nothing can be compared, and its cause (a
  // missing data directory, a bad --set) would most likely fail every variant too. Neither it nor
  // a variant failing meanwhile is recorded as finished, so that the next invocation tries again.
  void record(size_t i, VariantResult r) {
    if (r.status == "failed") log_ << variant_label(i, variants_) << ": FAILED: " << r.reason << "\n";
    if (r.status == "failed" && variants_[i].changes.empty()) baseline_failure_ = r.reason;
    if (r.status == "ok" || (r.status == "failed" && baseline_failure_.empty())) {
      fs::create_directories(dir_of(i));
      write_file_atomically(dir_of(i) / "result.json", to_json(r).dump(2) + "\n");
    }
    result_.variants[i] = std::move(r);
  }

  // --parallel 1: one variant after another in this process, each with all threads.
  void run_in_process() {
    for (size_t i : pending_) {
      if (!may_start_more()) break;
      VariantResult r = train_in_process(i);
      if (r.status == "not run") result_.interrupted = true;
      record(i, r);
    }
  }

  // One variant trained by this process: from prepare(i), or (a group of ranks) from `given` in
  // `world` (null: the process's own world).
  VariantResult train_in_process(size_t i, dist::World* world = nullptr, const RunOptions* given = nullptr) {
    RunOptions run = given ? *given : prepare(i);
    run.world = world;
    VariantResult r;
    r.variant = variants_[i];
    try {
      RunResult rr = run_experiment(run, registry_);
      if (rr.interrupted) {
        log_ << variant_label(i, variants_) << ": interrupted at step " << rr.steps << " (checkpoint saved); run the same command again to resume\n";
        r.status = "not run";
        r.reason = "interrupted at step " + std::to_string(rr.steps);
        return r;
      }
      r.status = "ok";
      r.parameters = rr.parameters;
      r.steps = rr.steps;
      r.train_seconds = rr.train_seconds;
      r.tokens_per_second = rr.tokens_per_second;
      r.last_train_loss = rr.last_train_loss;
      r.dev_loss = rr.valid_loss;
      r.dev_perplexity = std::exp(rr.valid_loss);
      r.dev_bleu = rr.valid_bleu;
      r.test_bleu = rr.test_bleu;
      r.test_chrf = rr.test_chrf;
      // This invocation's time covers only the part after a resumed checkpoint: the whole run's.
      if (run.resume) r.train_seconds = total_train_seconds(read_metrics(run.out_dir / "metrics.jsonl"));
    } catch (const std::exception& e) {  // DslError, RunError, CheckpointError, errors of the data or plugins
      r.status = "failed";
      r.reason = trim_whitespace(e.what());
    }
    return r;
  }

  // Under mpirun, rank 0: hands variants out one at a time to the groups of ranks_per_variant
  // ranks among ranks 1..R-1 (each group's first rank receives), each group taking the next
  // pending variant as soon as it reports its last (dynamic assignment), and records the results.
  // After a stop signal it hands out nothing more; the groups' runs save a checkpoint and report.
  void hand_out_to_ranks(dist::World& world) {
    const int k = options_.ranks_per_variant;
    (void)world.split(-1);  // the groups' communicators (collective; rank 0 is in none)
    InterruptGuard interrupt;
    size_t next = 0;
    int busy = 0;
    auto hand_out = [&](int leader) {
      const std::string ranks = k == 1 ? "rank " + std::to_string(leader) : "ranks " + std::to_string(leader) + "-" + std::to_string(leader + k - 1);
      if (may_start_more() && !interrupt.stop_requested() && next < pending_.size()) {
        const size_t i = pending_[next++];
        const RunOptions run = prepare(i);  // clears an unresumable start: done here, once
        log_ << variant_label(i, variants_) << ": to " << ranks << "\n";
        world.send_text(leader, nlohmann::json{{"index", i}, {"resume", run.resume}}.dump());
        ++busy;
      } else {
        world.send_text(leader, "{}");
      }
    };
    for (int leader = 1; leader < world.size(); leader += k) hand_out(leader);
    while (busy > 0) {
      const auto [leader, text] = world.receive_text(-1);
      --busy;
      const nlohmann::json j = nlohmann::json::parse(text);
      const size_t i = j.at("index").get<size_t>();
      VariantResult r = from_json(j.at("result"), variants_[i]);
      if (r.status == "not run" || interrupt.stop_requested()) result_.interrupted = true;
      record(i, r);
      hand_out(leader);
    }
  }

  // Under mpirun, ranks 1..R-1 in groups of ranks_per_variant: each group trains the variants
  // rank 0 hands its first rank (data-parallel within the group), and its first rank reports.
  void train_what_rank_zero_hands_out(dist::World& world) {
    const int k = options_.ranks_per_variant;
    std::unique_ptr<dist::World> group = world.split((world.rank() - 1) / k);
    constexpr uint64_t kDone = ~uint64_t{0};
    for (;;) {
      // The group's first rank hears from rank 0 and tells the others: index * 2 + resume.
      uint64_t word = kDone;
      if (group->root()) {
        const nlohmann::json job = nlohmann::json::parse(world.receive_text(0).second);
        if (job.contains("index")) word = job["index"].get<uint64_t>() * 2 + (job["resume"].get<bool>() ? 1 : 0);
      }
      const uint64_t mine[] = {word};
      word = group->all_gather(mine, "the next variant")[0];
      if (word == kDone) return;
      const size_t i = static_cast<size_t>(word / 2);
      const RunOptions run = options_of(i, word % 2 == 1);
      const VariantResult r = train_in_process(i, k == 1 ? &dist::World::alone() : group.get(), &run);
      if (group->root()) world.send_text(0, nlohmann::json{{"index", i}, {"result", to_json(r)}}.dump());
    }
  }

  // The `attnlab run` command line of a child process for `run`.
  std::vector<std::string> child_arguments(RunOptions run, int threads) const {
    run.threads = threads;
    run.data_root = options_.data_root;
    std::vector<std::string> args = {options_.executable.string()};
    for (std::string& a : run_arguments(run)) args.push_back(std::move(a));
    for (const auto& dir : options_.plugin_paths) args.insert(args.end(), {"--plugin-path", fs::absolute(dir).string()});
    return args;
  }

  // --parallel N: up to N `attnlab run` children at once, threads / N each.
  void run_as_children() {
    if (options_.executable.empty()) throw AblateError("parallel variants need the attnlab executable to start");
    const int total_threads =
        options_.threads > 0 ? options_.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int child_threads = std::max(1, total_threads / options_.parallel);
    InterruptGuard interrupt;  // the children get their own SIGINT from the terminal; a signal to us alone is passed on
    std::map<pid_t, size_t> running;
    size_t next = 0;
    bool forwarded = false;
    while ((may_start_more() && next < pending_.size()) || !running.empty()) {
      if (interrupt.stop_requested()) {
        result_.interrupted = true;
        if (!forwarded)
          for (const auto& [pid, i] : running) ::kill(pid, SIGINT);
        forwarded = true;
      }
      while (may_start_more() && next < pending_.size() && static_cast<int>(running.size()) < options_.parallel) {
        const size_t i = pending_[next++];
        RunOptions run = prepare(i);
        fs::create_directories(run.out_dir);
        running[spawn_logged(child_arguments(run, child_threads), run.out_dir / "run.log")] = i;
      }
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      auto it = running.find(pid);
      if (it == running.end()) continue;
      const size_t i = it->second;
      running.erase(it);
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      VariantResult r;
      r.variant = variants_[i];
      if (code == 0) {
        r = read_run_directory(dir_of(i), variants_[i]);
      } else if (code == 130 || code == 143) {
        result_.interrupted = true;
        r.status = "not run";
        r.reason = "interrupted (checkpoint saved)";
        log_ << variant_label(i, variants_) << ": interrupted (checkpoint saved); run the same command again to resume\n";
      } else {
        r.status = "failed";
        r.reason = error_lines(dir_of(i) / "run.log", code);
      }
      record(i, r);
    }
  }

  const AblateOptions& options_;
  const Registry& registry_;
  std::ostream& log_;
  const std::vector<AblateVariant> variants_;
  AblationResult result_;
  std::vector<size_t> pending_;
  std::string baseline_failure_;
};

}  // namespace

AblationResult run_ablation(const AblateOptions& options, const Registry& registry) {
  AblateBaseline baseline = load_baseline(options.experiment_file, options.sets, options.uses, registry);
  std::vector<AblateAxis> axes = sweep_axes(baseline, options.vary, registry);
  if (axes.empty())
    throw AblateError("nothing to vary: give --vary KEY=V1,V2 (such as heads=1,4,16) or an ablate section in the experiment");
  fs::path out_dir = options.out_dir.empty() ? fs::path("ablations") / baseline.experiment_name : options.out_dir;
  Sweep sweep(options, registry, expand_variants(axes, baseline, options.grid), std::move(out_dir));
  return sweep.run(baseline);
}

}  // namespace attnlab::sweep
