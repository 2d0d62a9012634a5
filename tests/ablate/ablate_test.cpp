// Tests of ablation sweeps (core/sweep/variants.h, runners.h, results.h) and `attnlab ablate`: variants from --vary, --grid
// and the ablate section (grouped set(...) values included); the rows of results.md/csv/json; a
// sweep run again skips finished variants and resumes an interrupted one to the very losses of an
// uninterrupted sweep; failing variants are recorded while the sweep goes on; user errors.
#include "../support/installed_plugins.h"
#include "../support/run_command.h"
#include "../support/tiny_experiment.h"
#include "sweep/runners.h"
#include "train/trainer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace attnlab::sweep {
using namespace attnlab::train;  // run_experiment, the tiny experiment's helpers
namespace {

namespace fs = std::filesystem;

const Registry& registry() { return test::plugins_beside_executable(); }

struct TempDir {
  fs::path path = test::make_temp_dir("attnlab-ablate-test-");
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};


fs::path write_experiment(const TempDir& dir, const std::string& ablate = "") {
  const std::string text = test::tiny_experiment_text(
      "batch_tokens: 256, max_steps: 6, valid_every: 0, checkpoint_every: 0, valid_bleu_sentences: 4", ablate);
  return test::write_tiny_experiment(dir.path / "tiny.attn", text, ATTNLAB_SOURCE_DIR);
}

std::vector<std::string> ids(const std::vector<AblateVariant>& variants) {
  std::vector<std::string> out;
  for (const auto& v : variants) out.push_back(v.id);
  return out;
}

std::vector<AblateVariant> expand(const fs::path& exp, const std::vector<std::string>& vary, bool grid) {
  AblateBaseline baseline = load_baseline(exp, {}, {}, registry());
  return expand_variants(sweep_axes(baseline, vary, registry()), baseline, grid);
}

nlohmann::json read_json(const fs::path& file) {
  std::ifstream in(file);
  return nlohmann::json::parse(in);
}


// A sweep of `experiment` along `vary`, on `threads` threads, logging into `log`.
AblateOptions sweep_options(const fs::path& experiment, std::vector<std::string> vary, int threads, std::ostream& log) {
  AblateOptions options;
  options.experiment_file = experiment;
  options.vary = std::move(vary);
  options.threads = threads;
  options.log = &log;
  return options;
}

// Runs the sweep, sending this process SIGINT as soon as `run_dir` holds a checkpoint (the way a
// user's Ctrl-C interrupts a variant part-way).
AblationResult run_interrupted_once_checkpointed(const AblateOptions& options, const fs::path& run_dir) {
  std::atomic<bool> finished{false};
  std::thread signaller([&] {
    while (!finished) {
      if (fs::exists(run_dir / "checkpoints") && !fs::is_empty(run_dir / "checkpoints")) {
        ::kill(::getpid(), SIGINT);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  AblationResult result = run_ablation(options, registry());
  finished = true;
  signaller.join();
  return result;
}

TEST(AblateValues, CommasInsideParenthesesDoNotSplit) {
  EXPECT_EQ(split_values("attention.grouped_query(kv_heads: 2), attention.scaled_dot"),
            (std::vector<std::string>{"attention.grouped_query(kv_heads: 2)", "attention.scaled_dot"}));
  EXPECT_EQ(split_values("noam(factor: 2, warmup: 10),[1, 2],\"a,b\""),
            (std::vector<std::string>{"noam(factor: 2, warmup: 10)", "[1, 2]", "\"a,b\""}));
  AblateAxis axis = parse_vary("heads=1,4,16,32");
  EXPECT_EQ(axis.key, "heads");
  EXPECT_EQ(axis.values, (std::vector<std::string>{"1", "4", "16", "32"}));
}

TEST(AblateVariants, OneAtATimeFromVaryResolvesParamsSlotsAndSettings) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  // heads=2 is the baseline's value: no variant repeats the baseline.
  std::vector<AblateVariant> v = expand(exp, {"heads=1,2,4", "posenc=posenc.learned,posenc.rotary",
                                               "attention=attention.grouped_query(kv_heads: 1)", "train.label_smoothing=0,0.2"},
                                        false);
  ASSERT_EQ(v.size(), 1u + 2 + 2 + 1 + 2);
  EXPECT_EQ(v[0].id, "baseline");
  EXPECT_TRUE(v[0].changes.empty());
  EXPECT_EQ(v[1].id, "heads=1");
  EXPECT_EQ(v[1].changes[0].kind, AblateChange::Kind::Param);
  EXPECT_EQ(v[2].id, "heads=4");
  EXPECT_EQ(v[3].changes[0].kind, AblateChange::Kind::Slot);
  EXPECT_EQ(v[3].changes[0].value, "posenc.learned");
  EXPECT_EQ(v[5].changes[0].value, "attention.grouped_query(kv_heads: 1)");
  EXPECT_EQ(v[5].group, "attention");
  EXPECT_EQ(v[6].changes[0].kind, AblateChange::Kind::Setting);
  EXPECT_EQ(v[6].changes[0].key, "train.label_smoothing");
  for (size_t i = 1; i < v.size(); ++i) EXPECT_EQ(v[i].changes.size(), 1u) << v[i].id;
}

TEST(AblateVariants, GridIsTheProductWithoutTheBaselineCombination) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  std::vector<AblateVariant> v = expand(exp, {"heads=2,4", "train.dropout=0.1,0,0.3"}, true);
  // 2 × 3 = 6 combinations; (heads 2, dropout 0.1) is the baseline itself.
  EXPECT_EQ(ids(v), (std::vector<std::string>{"baseline", "train.dropout=0", "train.dropout=0.3", "heads=4",
                                              "heads=4+train.dropout=0", "heads=4+train.dropout=0.3"}));
  EXPECT_EQ(v[4].changes.size(), 2u);
}

TEST(AblateVariants, AblateSectionWithGroupedSetsAndVaryReplacingAnEntry) {
  TempDir dir;
  const fs::path exp = write_experiment(
      dir, "ablate { heads = [set(heads: 1, d_k: 16, d_v: 16), set(heads: 4, d_k: 4, d_v: 4)]; train.label_smoothing = [0] }");
  std::vector<AblateVariant> v = expand(exp, {}, false);
  ASSERT_EQ(ids(v), (std::vector<std::string>{"baseline", "heads=1+d_k=16+d_v=16", "heads=4+d_k=4+d_v=4", "train.label_smoothing=0"}));
  EXPECT_EQ(v[1].group, "heads");
  EXPECT_EQ(v[1].changes.size(), 3u);
  // --vary with the key of an entry replaces it.
  v = expand(exp, {"heads=8"}, false);
  EXPECT_EQ(ids(v), (std::vector<std::string>{"baseline", "heads=8", "train.label_smoothing=0"}));
}

TEST(AblateVariants, UserErrorsNameTheProblem) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  auto message = [&](const std::string& vary) -> std::string {
    try {
      expand(exp, {vary}, false);
    } catch (const AblateError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message("heads").find("expected KEY=V1,V2"), std::string::npos);
  EXPECT_NE(message("heads=").find("the list of values is empty"), std::string::npos);
  EXPECT_NE(message("heads=1,,2").find("an empty value in the list"), std::string::npos);
  EXPECT_NE(message("=1").find("the key before '=' is empty"), std::string::npos);
  EXPECT_NE(message("hedas=1").find("'hedas' is not a parameter or slot of the experiment's model; valid names: attention"),
            std::string::npos);
  EXPECT_NE(message("train.max_stpes=3").find("'train.max_stpes' is not a train setting"), std::string::npos);
  EXPECT_NE(message("model.heads=3").find("unknown section 'model'"), std::string::npos);
  EXPECT_NE(message("posenc=posenc.nope").find("unknown node type 'posenc.nope'"), std::string::npos);
}

// The rows of every results file for a sweep with a variant that fails at construction
// (kv_heads 3 does not divide heads 2) and one that diverges (a huge learning rate).
TEST(AblateSweep, ResultsHoldEveryRowAndFailuresDoNotStopTheSweep) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  std::ostringstream log;
  AblateOptions o = sweep_options(exp,
                                  {"heads=1", "attention=attention.grouped_query(kv_heads: 3)",
                                   "train.noam=noam(factor: 1e20, warmup: 1)", "train.label_smoothing=0"},
                                  1, log);
  o.out_dir = dir.path / "sweep";
  AblationResult r = run_ablation(o, registry());
  ASSERT_EQ(r.variants.size(), 5u);
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(r.variants[0].status, "ok");
  EXPECT_EQ(r.variants[1].status, "ok");
  EXPECT_EQ(r.variants[2].status, "failed");
  EXPECT_NE(r.variants[2].reason.find("kv_heads"), std::string::npos) << r.variants[2].reason;
  EXPECT_EQ(r.variants[3].status, "failed");
  EXPECT_NE(r.variants[3].reason.find("non-finite"), std::string::npos) << r.variants[3].reason;
  EXPECT_EQ(r.variants[4].status, "ok");  // after two failures, the sweep went on
  EXPECT_GT(r.variants[1].parameters, 0);
  // heads=1 gets d_k = d_v = d_model div heads = 16: the projections keep their sizes.
  EXPECT_EQ(r.variants[1].parameters, r.variants[0].parameters);

  const nlohmann::json json = read_json(o.out_dir / "results.json");
  ASSERT_EQ(json["variants"].size(), 5u);
  EXPECT_EQ(json["baseline"]["heads"], "2");
  EXPECT_EQ(json["variants"][1]["changes"][0]["key"], "heads");
  EXPECT_EQ(json["variants"][3]["status"], "failed");
  EXPECT_TRUE(json["variants"][0]["dev_perplexity"].is_number());
  EXPECT_TRUE(json["variants"][0]["dev_bleu"].is_number());  // the synthetic task has BLEU
  EXPECT_TRUE(json["variants"][0]["test_chrf"].is_number());  // and chrF beside it
  for (const auto& v : r.variants) {
    const nlohmann::json own = read_json(o.out_dir / v.variant.id / "result.json");
    EXPECT_EQ(own["status"], v.status);
  }

  const std::string csv = test::read_text_file(o.out_dir / "results.csv");
  std::istringstream lines(csv);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 6u) << csv;
  EXPECT_EQ(rows[0].rfind("variant,group,heads,attention,train.noam,train.label_smoothing,parameters", 0), 0u) << rows[0];
  EXPECT_EQ(rows[1].rfind("baseline,,2,attention.scaled_dot,", 0), 0u) << rows[1];
  EXPECT_NE(rows[0].find(",dev_bleu,test_bleu,test_chrf,status,reason"), std::string::npos) << rows[0];
  // A failed row: no figures, its status and its reason on the same line.
  EXPECT_NE(rows[3].find(",,,,,,,,failed,"), std::string::npos) << rows[3];
  EXPECT_NE(rows[3].find("kv_heads (3) must divide heads (2)"), std::string::npos) << rows[3];

  const std::string md = test::read_text_file(o.out_dir / "results.md");
  EXPECT_NE(md.find("| | heads | attention | train.noam | train.label_smoothing | params |"), std::string::npos) << md;
  EXPECT_NE(md.find("| base | 2 | attention.scaled_dot | noam(factor: 2.0, warmup: 10) | 0.1 |"), std::string::npos) << md;
  // A variant row leaves the baseline's values blank.
  EXPECT_NE(md.find("| heads | 1 |  |  |  |"), std::string::npos) << md;
  EXPECT_NE(md.find("| train.label_smoothing |  |  |  | 0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| failed: adam: non-finite gradient"), std::string::npos) << md;
  EXPECT_NE(md.find(" | dev BLEU | test BLEU | test chrF |"), std::string::npos) << md;
  EXPECT_NE(md.find("test chrF as sacreBLEU gives it (`chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:attnlab-sacrebleu2`)"),
            std::string::npos)
      << md;

  const std::string curves = test::read_text_file(o.out_dir / "curves.svg");
  EXPECT_NE(curves.find("data-name=\"baseline\""), std::string::npos);
  EXPECT_NE(curves.find("data-name=\"heads=1\""), std::string::npos);
  EXPECT_NE(test::read_text_file(o.out_dir / "quality.svg").find("dev BLEU"), std::string::npos);

  // A variant directory left by a start that saved no checkpoint is started afresh (the trainer
  // would refuse a directory that already holds metrics.jsonl).
  fs::remove(o.out_dir / "heads=1" / "result.json");
  fs::remove_all(o.out_dir / "heads=1" / "checkpoints");
  ASSERT_TRUE(fs::exists(o.out_dir / "heads=1" / "metrics.jsonl"));
  std::ostringstream restart;
  o.log = &restart;
  AblationResult restarted = run_ablation(o, registry());
  EXPECT_NE(restart.str().find("[2/5] heads=1: running"), std::string::npos) << restart.str();
  EXPECT_EQ(restarted.variants[1].status, "ok") << restarted.variants[1].reason;
  EXPECT_EQ(restarted.variants[1].last_train_loss, r.variants[1].last_train_loss);

  // Run again: every variant, failed ones included, is finished and skipped.
  std::ostringstream again;
  o.log = &again;
  AblationResult r2 = run_ablation(o, registry());
  EXPECT_EQ(r2.variants.size(), 5u);
  size_t skipped = 0;
  for (size_t at = again.str().find("finished earlier"); at != std::string::npos; at = again.str().find("finished earlier", at + 1)) ++skipped;
  EXPECT_EQ(skipped, 5u) << again.str();
  EXPECT_EQ(r2.variants[4].last_train_loss, r.variants[4].last_train_loss);
}

// An interrupted sweep, run again, skips the finished baseline and resumes the interrupted variant
// from its checkpoint to the losses of a sweep that was never interrupted.
TEST(AblateSweep, InterruptedSweepResumesToTheUninterruptedResult) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  std::ostringstream quiet;
  AblateOptions o = sweep_options(exp, {"heads=1", "train.label_smoothing=0"}, 1, quiet);
  o.sets = {"train.max_steps=300", "train.checkpoint_every=5"};

  o.out_dir = dir.path / "reference";
  AblationResult reference = run_ablation(o, registry());
  ASSERT_EQ(reference.variants.size(), 3u);

  o.out_dir = dir.path / "sweep";
  const fs::path victim = o.out_dir / "heads=1";
  AblationResult first = run_interrupted_once_checkpointed(o, victim);
  ASSERT_TRUE(first.interrupted) << "the variant finished before the signal arrived";
  EXPECT_EQ(first.variants[0].status, "ok");
  EXPECT_EQ(first.variants[1].status, "not run");
  EXPECT_EQ(first.variants[2].status, "not run");
  EXPECT_FALSE(fs::exists(victim / "result.json"));
  const auto baseline_written = fs::last_write_time(o.out_dir / "baseline" / "result.json");

  std::ostringstream log;
  o.log = &log;
  AblationResult second = run_ablation(o, registry());
  EXPECT_FALSE(second.interrupted);
  EXPECT_NE(log.str().find("[1/3] baseline: finished earlier (ok), skipped"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("[2/3] heads=1: resuming from its checkpoint"), std::string::npos) << log.str();
  EXPECT_EQ(fs::last_write_time(o.out_dir / "baseline" / "result.json"), baseline_written);
  ASSERT_EQ(second.variants.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(second.variants[i].status, "ok");
    EXPECT_EQ(second.variants[i].steps, reference.variants[i].steps);
    EXPECT_EQ(second.variants[i].last_train_loss, reference.variants[i].last_train_loss) << second.variants[i].variant.id;
    EXPECT_EQ(second.variants[i].dev_perplexity, reference.variants[i].dev_perplexity) << second.variants[i].variant.id;
  }
}

// Variants run as concurrent `attnlab run` processes give the very figures of the serial sweep
// (runs are pure functions of their settings and seed), and a failing child is recorded.
TEST(AblateSweep, ParallelProcessesGiveTheSerialResults) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  std::ostringstream quiet;
  AblateOptions o = sweep_options(exp, {"heads=1,4", "attention=attention.grouped_query(kv_heads: 3)"}, 2, quiet);
  o.out_dir = dir.path / "serial";
  AblationResult serial = run_ablation(o, registry());
  o.out_dir = dir.path / "parallel";
  o.parallel = 2;
  o.executable = ATTNLAB_EXE;
  AblationResult parallel = run_ablation(o, registry());
  ASSERT_EQ(parallel.variants.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(parallel.variants[i].status, serial.variants[i].status) << i;
    EXPECT_EQ(parallel.variants[i].parameters, serial.variants[i].parameters) << i;
    EXPECT_EQ(parallel.variants[i].steps, serial.variants[i].steps) << i;
    if (serial.variants[i].status == "ok") {
      EXPECT_NEAR(parallel.variants[i].last_train_loss, serial.variants[i].last_train_loss, 1e-9) << i;
      EXPECT_NEAR(parallel.variants[i].dev_perplexity, serial.variants[i].dev_perplexity, 1e-6) << i;
    }
  }
  EXPECT_EQ(parallel.variants[3].status, "failed");
  EXPECT_NE(parallel.variants[3].reason.find("kv_heads (3) must divide heads (2)"), std::string::npos) << parallel.variants[3].reason;
  EXPECT_TRUE(fs::exists(o.out_dir / "heads=1" / "run.log"));
}

// A parallel sweep passes a stop request on to its children, which checkpoint; it returns (and
// starts no more variants), and the same sweep run again resumes them to the serial figures.
TEST(AblateSweep, InterruptedParallelSweepStopsAndResumes) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  std::ostringstream quiet;
  AblateOptions o = sweep_options(exp, {"heads=1", "train.label_smoothing=0"}, 2, quiet);
  o.sets = {"train.max_steps=300", "train.checkpoint_every=5"};
  o.out_dir = dir.path / "reference";
  AblationResult reference = run_ablation(o, registry());

  o.out_dir = dir.path / "sweep";
  o.parallel = 2;
  o.executable = ATTNLAB_EXE;
  const fs::path first_child = o.out_dir / "baseline";
  AblationResult first = run_interrupted_once_checkpointed(o, first_child);
  ASSERT_TRUE(first.interrupted) << "the variants finished before the signal arrived";
  EXPECT_EQ(first.variants[0].status, "not run");
  EXPECT_EQ(first.variants[2].status, "not run");  // never started: no third process after the stop
  EXPECT_FALSE(fs::exists(o.out_dir / "train.label_smoothing=0"));

  AblationResult second = run_ablation(o, registry());
  EXPECT_FALSE(second.interrupted);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(second.variants[i].status, "ok") << i << ": " << second.variants[i].reason << "\n" << test::read_text_file(o.out_dir / second.variants[i].variant.id / "run.log");
    EXPECT_EQ(second.variants[i].steps, reference.variants[i].steps) << i;
    EXPECT_NEAR(second.variants[i].last_train_loss, reference.variants[i].last_train_loss, 1e-9) << i;
  }
}

// Node types from a --plugin-path directory reach the child runs of a parallel sweep too.
TEST(AblateCommand, ParallelChildrenLoadPluginsFromPluginPath) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  const fs::path plugins = dir.path / "plugins";
  fs::create_directories(plugins);
  fs::copy_file(fs::path(TEST_PLUGIN_DIR) / "libattnlab_plugin_test_scale.so", plugins / "libattnlab_plugin_test_scale.so");
  test::CommandResult r = test::run_command(std::string(ATTNLAB_EXE) + " ablate " + exp.string() +
                                            " --vary norm=test.scale --set train.max_steps=3 --parallel 2 --threads 2" +
                                            " --plugin-path " + plugins.string() + " --out " + (dir.path / "out").string());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("runs failed"), std::string::npos) << r.out << r.err;
  const std::string log = test::read_text_file(dir.path / "out" / "norm=test.scale" / "run.log");
  EXPECT_EQ(log.find("error"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(dir.path / "out" / "norm=test.scale" / "result.json"));
}

// The command: exit codes and messages of user errors, and the table3 experiment checks.
TEST(AblateCommand, UserErrorsExitNonZeroWithAMessage) {
  TempDir dir;
  const fs::path exp = write_experiment(dir);
  const std::string base = std::string(ATTNLAB_EXE) + " ablate " + exp.string() + " --out " + (dir.path / "out").string();
  struct Case {
    std::string args, message;
  };
  for (const Case& c : std::vector<Case>{
           {"", "nothing to vary: give --vary KEY=V1,V2"},
           {"--vary heads", "--vary 'heads': expected KEY=V1,V2,..."},
           {"--vary heads=", "--vary heads: the list of values is empty"},
           {"--vary hedas=1,2", "--vary hedas=1: 'hedas' is not a parameter or slot"},
           {"--vary 'heads=1,,2'", "--vary 'heads=1,,2': an empty value in the list"},
           {"--vary heads=1 --parallel 0", "--parallel 0: give the number of variants to run at once, 1 or more"},
       }) {
    test::CommandResult r = test::run_command(base + " " + c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find("attnlab: error: " + c.message), std::string::npos) << c.args << "\n" << r.err;
  }
  // A baseline that cannot run (here: a data directory that does not exist) stops the sweep and
  // is not recorded as finished.
  const fs::path parallel_exp = dir.path / "parallel.attn";
  {
    std::string text = test::read_text_file(exp);
    text.replace(text.find("synthetic(train: 300, dev: 20, test: 20, seed: 3)"), 50, "parallel(src: \"de\", tgt: \"en\", dir: \"nowhere\")");
    std::ofstream(parallel_exp) << text;
  }
  test::CommandResult no_data = test::run_command(std::string(ATTNLAB_EXE) + " ablate " + parallel_exp.string() + " --vary heads=1 --out " +
                                                  (dir.path / "nodata").string() + " --data " + (dir.path / "nowhere").string());
  EXPECT_EQ(no_data.exit_code, 1);
  EXPECT_NE(no_data.err.find("attnlab: error: the baseline run failed, so the sweep stopped"), std::string::npos) << no_data.err;
  EXPECT_EQ(no_data.err.find("[2/2] heads=1: running"), std::string::npos) << no_data.err;
  EXPECT_FALSE(fs::exists(dir.path / "nodata" / "baseline" / "result.json"));

  test::CommandResult missing = test::run_command(std::string(ATTNLAB_EXE) + " ablate " + (dir.path / "nope.attn").string() + " --vary heads=1");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("the experiment has errors"), std::string::npos) << missing.err;
  // The command writes its tables and names them; EXPERIMENT may follow the options.
  test::CommandResult ok = test::run_command(std::string(ATTNLAB_EXE) + " ablate --vary heads=1 --set train.max_steps=3 " + exp.string() +
                                             " --out " + (dir.path / "out").string() + " --threads 1");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("results: "), std::string::npos);
  EXPECT_TRUE(fs::exists(dir.path / "out" / "results.md"));
}

// The variants of one of the repository's experiment files, after `attnlab check` accepted it.
std::vector<AblateVariant> checked_variants(const std::string& name) {
  const fs::path exp = fs::path(ATTNLAB_SOURCE_DIR) / "experiments" / name;
  test::CommandResult check = test::run_command(std::string(ATTNLAB_EXE) + " check " + exp.string());
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  AblateBaseline baseline = load_baseline(exp, {}, {}, registry());
  return expand_variants(sweep_axes(baseline, {}, registry()), baseline, false);
}

TEST(AblateCommand, QuestionsExperimentExpandsToOneVariantPerQuestion) {
  const std::vector<AblateVariant> v = checked_variants("questions.attn");
  std::vector<std::string> ids;
  for (const auto& variant : v) ids.push_back(variant.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"baseline", "heads=1+d_k=128+d_v=128", "emb_scale=1", "posenc=posenc.learned",
                                           "posenc=posenc.none", "ffn=ffn.gelu", "sublayer=no_residual",
                                           "sublayer=pre_norm+stack_end=final_norm", "norm=norm.batch", "train.dropout=0.0",
                                           "residual_dropout=0", "embed_dropout=0"}));
  // The blocks a slot binds are slot changes (--use sublayer=pre_norm), as node types are.
  for (const auto& variant : v)
    for (const AblateChange& c : variant.changes)
      if (c.key == "sublayer" || c.key == "stack_end") {
        EXPECT_EQ(c.kind, AblateChange::Kind::Slot) << variant.id;
      }
}

TEST(AblateCommand, Table3ExperimentChecksAndExpands) {
  const std::vector<AblateVariant> v = checked_variants("table3.attn");
  EXPECT_GE(v.size(), 15u);
  std::set<std::string> groups;
  for (const auto& variant : v) groups.insert(variant.group);
  for (const char* g : {"heads", "d_k", "layers", "d_model", "d_ff", "train.dropout", "train.label_smoothing", "posenc"})
    EXPECT_TRUE(groups.count(g)) << g;
  // experiments/table3_vs_paper.py pairs these run ids with the paper's rows.
  std::vector<std::string> ids;
  for (const auto& variant : v) ids.push_back(variant.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"baseline", "heads=1+d_k=256+d_v=256", "heads=4+d_k=64+d_v=64", "heads=16+d_k=16+d_v=16",
                                           "heads=32+d_k=8+d_v=8", "d_k=8", "d_k=16", "layers=1", "layers=2", "layers=4",
                                           "d_model=128", "d_model=512", "d_ff=256", "d_ff=1024", "train.dropout=0.0",
                                           "train.dropout=0.2", "train.label_smoothing=0.0", "train.label_smoothing=0.2",
                                           "posenc=posenc.learned"}));
}

}  // namespace
}  // namespace attnlab::sweep
