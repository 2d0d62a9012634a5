// Tests of the training loop (core/train/trainer.h) on a tiny model and the synthetic task: a run
// interrupted and resumed computes exactly the losses of an uninterrupted one; settings reach the
// train section and the model; the run directory's files; checkpoint averaging; and the user
// errors (missing data, unknown settings, resuming a checkpoint of another experiment or data).
#include "../support/installed_plugins.h"
#include "../support/tiny_experiment.h"
#include "train/trainer.h"

#include "dsl/builtin_files.h"
#include "dsl/source.h"
#include "node/plugin_loader.h"
#include "train/checkpoint.h"
#include "train/run_log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <atomic>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

namespace attnlab::train {
namespace {

namespace fs = std::filesystem;

const Registry& registry() { return test::plugins_beside_executable(); }

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/attnlab_trainer_test.XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string read(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const std::string kTinyExperiment = test::tiny_experiment_text(
    "batch_tokens: 256, accumulate: 2, max_steps: 12, valid_every: 0, checkpoint_every: 0, valid_bleu_sentences: 0");

fs::path tiny_experiment(const TempDir& dir, const std::string& text = kTinyExperiment) {
  return test::write_tiny_experiment(dir / "exp/tiny.attn", text, ATTNLAB_SOURCE_DIR);
}

RunOptions options_for(const fs::path& experiment, const fs::path& out, std::vector<std::string> sets = {}) {
  RunOptions o;
  o.experiment_file = experiment;
  o.out_dir = out;
  o.sets = std::move(sets);
  o.threads = 2;
  static std::ostringstream sink;  // keep test output short
  o.log = &sink;
  return o;
}

std::vector<double> train_losses(const fs::path& run_dir) {
  std::vector<double> losses;
  for (const nlohmann::json& e : read_metrics(run_dir / "metrics.jsonl"))
    if (e["event"] == "train") losses.push_back(e["loss"].get<double>());
  return losses;
}

std::string error_of(const RunOptions& o) {
  try {
    run_experiment(o, registry());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Trainer, ResumedRunComputesTheLossesOfAnUninterruptedRun) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  RunResult whole = run_experiment(options_for(exp, dir / "whole"), registry());
  EXPECT_EQ(whole.steps, 12);

  RunResult first = run_experiment(options_for(exp, dir / "split", {"train.max_steps=6"}), registry());
  EXPECT_EQ(first.steps, 6);
  RunOptions again = options_for(exp, dir / "split", {"train.max_steps=12"});
  again.resume = true;
  RunResult second = run_experiment(again, registry());
  EXPECT_EQ(second.steps, 12);

  const std::vector<double> a = train_losses(dir / "whole"), b = train_losses(dir / "split");
  ASSERT_EQ(a.size(), 12u);
  ASSERT_EQ(b.size(), 12u) << "the resumed run's log holds each step once";
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << "step " << i + 1;
  // The weights end equal too.
  ckpt::Checkpoint wa = read_checkpoint(*CheckpointDirectory(dir / "whole/checkpoints").latest());
  ckpt::Checkpoint wb = read_checkpoint(*CheckpointDirectory(dir / "split/checkpoints").latest());
  ASSERT_EQ(wa.parameters_size(), wb.parameters_size());
  for (int i = 0; i < wa.parameters_size(); ++i)
    for (int j = 0; j < wa.parameters(i).data_size(); ++j)
      ASSERT_FLOAT_EQ(wa.parameters(i).data(j), wb.parameters(i).data(j)) << wa.parameters(i).name();
  // Training learns something even in 12 tiny steps.
  EXPECT_LT(a.back(), a.front());
}

TEST(Trainer, EveryComponentSwapTrains) {
  // Every slot swap into transformer_base.attn elaborates, counts and trains.
  // Each swap trains the tiny model for 24 steps; the loss must stay finite and fall.
  const std::vector<std::string> swaps = {
      "attention=attention.additive",      "attention=attention.grouped_query", "attention=attention.local",
      "posenc=posenc.learned",             "posenc=posenc.none",                "posenc=posenc.rotary",
      "posenc=posenc.alibi",               "norm=norm.rms",                     "ffn=ffn.gelu",
      "ffn=ffn.swiglu"};
  for (const std::string& swap : swaps) {
    SCOPED_TRACE(swap);
    TempDir dir;
    RunOptions o = options_for(tiny_experiment(dir), dir / "run", {"train.max_steps=24"});
    o.uses = {swap};
    const RunResult r = run_experiment(o, registry());
    const std::vector<double> losses = train_losses(r.run_dir);
    ASSERT_EQ(losses.size(), 24u);
    for (double loss : losses) ASSERT_TRUE(std::isfinite(loss));
    const double first = (losses[0] + losses[1] + losses[2]) / 3, last = (losses[21] + losses[22] + losses[23]) / 3;
    EXPECT_LT(last, first - 0.5) << "first steps " << first << ", last steps " << last;
  }
}

TEST(Trainer, SigintSavesACheckpointAndStopsThenResumeContinues) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  const fs::path run_dir = dir / "run";
  // Send SIGINT once training is under way (the first "train" event is written inside the loop,
  // where the stop handler is installed).
  std::atomic<bool> finished{false};
  std::thread signaller([&] {
    while (!finished) {
      if (fs::exists(run_dir / "metrics.jsonl") && !train_losses(run_dir).empty()) {
        ::kill(::getpid(), SIGINT);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  RunResult r;
  try {
    r = run_experiment(options_for(exp, run_dir, {"train.max_steps=100000"}), registry());
  } catch (...) {
    finished = true;
    signaller.join();
    throw;
  }
  finished = true;
  signaller.join();
  EXPECT_TRUE(r.interrupted);
  ASSERT_LT(r.steps, 100000);
  auto latest = CheckpointDirectory(run_dir / "checkpoints").latest();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(read_checkpoint(*latest).step(), r.steps);
  EXPECT_FALSE(fs::exists(run_dir / "report.md")) << "an interrupted run stops without the final evaluation";
  RunOptions again = options_for(exp, run_dir, {"train.max_steps=" + std::to_string(r.steps + 2)});
  again.resume = true;
  EXPECT_EQ(run_experiment(again, registry()).steps, r.steps + 2);
  EXPECT_EQ(train_losses(run_dir).size(), static_cast<size_t>(r.steps + 2));
}

TEST(Trainer, CheckpointDescribesTheRun) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  run_experiment(options_for(exp, dir / "run", {"train.max_steps=3", "layers=2"}), registry());
  ckpt::Checkpoint c = read_checkpoint(*CheckpointDirectory(dir / "run/checkpoints").latest());
  EXPECT_EQ(c.step(), 3);
  EXPECT_EQ(c.experiment_text(), kTinyExperiment);
  EXPECT_NE(c.spec_text().find("model transformer_base"), std::string::npos);
  ASSERT_EQ(c.overrides_size(), 2);
  EXPECT_EQ(c.overrides(1), "--set layers=2");
  EXPECT_EQ(c.settings().at("train.max_steps"), "3");
  EXPECT_EQ(c.tokenizer_kind(), "word");
  EXPECT_FALSE(c.tokenizer().empty());
  ir::GraphDef graph;
  ASSERT_TRUE(graph.ParseFromString(c.graph()));
  bool second_layer = false;
  for (const auto& node : graph.nodes()) second_layer |= node.name().find("encoder_layer1") != std::string::npos;
  EXPECT_TRUE(second_layer) << "--set layers=2 reached the model";
  EXPECT_EQ(c.optimizer().step(), 3);
  EXPECT_NE(c.data_position().fingerprint(), 0u);
  EXPECT_EQ(c.random().seed(), 5u);
}

TEST(Trainer, RunDirectoryHoldsSpecMetricsCheckpointsAndReport) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  RunOptions o = options_for(exp, dir / "run",
                             {"train.max_steps=8", "train.valid_every=4", "train.valid_bleu_sentences=10", "train.checkpoint_every=2",
                              "train.keep_checkpoints=2"});
  o.command_line = "attnlab run tiny.attn --set train.max_steps=8";
  o.average = 2;
  RunResult r = run_experiment(o, registry());
  EXPECT_EQ(r.steps, 8);
  EXPECT_GE(r.test_bleu, 0.0);
  EXPECT_GE(r.average_test_bleu, 0.0);
  for (const char* f : {"experiment.attn", "transformer_base.attn", "command.txt", "settings.json", "metrics.jsonl", "report.md",
                        "learning_curve.svg", "checkpoints/best.ckpt", "checkpoints/average.ckpt"})
    EXPECT_TRUE(fs::exists(dir / "run" / f)) << f;
  EXPECT_EQ(read(dir / "run/command.txt"), "attnlab run tiny.attn --set train.max_steps=8\n");
  // Rotation keeps the last 2 step checkpoints.
  auto steps = CheckpointDirectory(dir / "run/checkpoints").step_checkpoints();
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps.back().first, 8);
  ckpt::Checkpoint avg = read_checkpoint(dir / "run/checkpoints/average.ckpt");
  EXPECT_EQ(avg.averaged_from_size(), 2);
  int valid = 0, test = 0, average = 0;
  for (const nlohmann::json& e : read_metrics(dir / "run/metrics.jsonl")) {
    if (e["event"] == "valid" || e["event"] == "test_average") {
      // Dev and the average report sacreBLEU (the test's options) and chrF beside multi-bleu.
      ++(e["event"] == "valid" ? valid : average);
      EXPECT_TRUE(e.contains("bleu")) << e.dump();
      EXPECT_GE(e.value("sacrebleu", -1.0), 0.0) << e.dump();
      EXPECT_GE(e.value("chrf", -1.0), 0.0) << e.dump();
    }
    if (e["event"] == "valid") {
      EXPECT_TRUE(e.contains("ppl"));
    }
    if (e["event"] == "test") {
      ++test;
      // sacreBLEU's figures beside multi-bleu's; synthetic data is tokenized, hence tok:none.
      EXPECT_GE(e.value("sacrebleu", -1.0), 0.0) << e.dump();
      EXPECT_GE(e.value("chrf", -1.0), 0.0) << e.dump();
      EXPECT_EQ(e.value("sacrebleu_signature", ""), "nrefs:1|case:mixed|eff:no|tok:none|smooth:exp|version:attnlab-sacrebleu2");
      EXPECT_EQ(e.value("chrf_signature", ""), "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:attnlab-sacrebleu2");
    }
  }
  EXPECT_EQ(valid, 2);  // steps 4 and 8
  EXPECT_EQ(test, 1);
  EXPECT_EQ(average, 1);
  const std::string report = read(dir / "run/report.md");
  EXPECT_NE(report.find("- `BLEU|nrefs:1|case:mixed|eff:no|tok:none|smooth:exp|version:attnlab-sacrebleu2 = "), std::string::npos)
      << report;
  EXPECT_NE(report.find("- `chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:attnlab-sacrebleu2 = "), std::string::npos)
      << report;
  EXPECT_NE(report.find("| test |"), std::string::npos) << report;
  EXPECT_NE(report.find("| test, average of the last 2 checkpoints |"), std::string::npos) << report;
  EXPECT_NE(report.find("- the average of the last 2 checkpoints, with the same signatures: BLEU "), std::string::npos) << report;
  EXPECT_NE(report.find("Sample translations"), std::string::npos) << report;
  EXPECT_NE(report.find("learning_curve.svg"), std::string::npos);
  const nlohmann::json settings = nlohmann::json::parse(read(dir / "run/settings.json"));
  EXPECT_EQ(settings["settings"]["train.max_steps"], "8");
  EXPECT_EQ(settings["model_params"]["d_model"], "16");
}

// The final checkpoint is written after the final validation: it holds that validation's figures
// in metrics.last, and its best_step agrees with the best dev loss in metrics.jsonl.
TEST(Trainer, FinalCheckpointKnowsTheFinalValidationAndTheBest) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  // valid_every 4 with 10 steps: validations at 4 and 8 during training, 10 at the end.
  run_experiment(options_for(exp, dir / "run", {"train.max_steps=10", "train.valid_every=4"}), registry());
  ckpt::Checkpoint c = read_checkpoint(*CheckpointDirectory(dir / "run/checkpoints").latest());
  ASSERT_EQ(c.step(), 10);
  nlohmann::json last_valid, last_train;
  int64_t best_step = 0;
  double best_loss = 1e300, scheduled_best_loss = 1e300;
  for (const nlohmann::json& e : read_metrics(dir / "run/metrics.jsonl")) {
    if (e["event"] == "train") last_train = e;
    if (e["event"] != "valid") continue;
    last_valid = e;
    if (e["loss"].get<double>() < best_loss) best_loss = e["loss"].get<double>(), best_step = e["step"].get<int64_t>();
    if (e["step"].get<int64_t>() % 4 == 0) scheduled_best_loss = std::min(scheduled_best_loss, e["loss"].get<double>());
  }
  ASSERT_EQ(last_valid["step"], 10) << "the final validation is logged";
  const auto& m = c.metrics();
  EXPECT_EQ(m.best_metric(), "valid_loss");
  EXPECT_TRUE(m.has_best());
  EXPECT_EQ(m.best_step(), best_step);
  EXPECT_DOUBLE_EQ(m.best_score(), -best_loss);
  // Early stopping compares against the validations of the schedule (steps 4 and 8) only, so a
  // resumed run stops where an uninterrupted one would (TrainerEarlyStopping below).
  EXPECT_TRUE(m.schedule_has_best());
  EXPECT_DOUBLE_EQ(m.schedule_best_score(), -scheduled_best_loss);
  ASSERT_TRUE(m.last().contains("valid_loss")) << "metrics.last holds the final validation";
  EXPECT_DOUBLE_EQ(m.last().at("valid_loss"), last_valid["loss"].get<double>());
  EXPECT_DOUBLE_EQ(m.last().at("valid_accuracy"), last_valid["accuracy"].get<double>());
  EXPECT_DOUBLE_EQ(m.last().at("train_loss"), last_train["loss"].get<double>());
  EXPECT_DOUBLE_EQ(m.last().at("train_lr"), last_train["lr"].get<double>());
  EXPECT_FALSE(m.last().contains("valid_step"));
}

TEST(Trainer, MaxEpochsStopsAfterWholeEpochs) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  RunResult r = run_experiment(options_for(exp, dir / "run", {"train.max_steps=0", "train.max_epochs=1", "train.batch_tokens=2048",
                                                              "train.accumulate=1"}),
                               registry());
  EXPECT_EQ(r.epoch, 1);
  EXPECT_GT(r.steps, 1);
}

TEST(Trainer, DefaultExperimentIsBuiltIn) {
  const std::string& default_experiment_text = *dsl::builtin_file_text(dsl::builtin_default_experiment());
  // Two steps of the default with a shrunken model: the built-in files load and train.
  TempDir dir;
  RunOptions o = options_for("", dir / "run",
                             {"train.max_steps=2", "train.valid_bleu_sentences=0", "layers=1", "d_model=16", "d_ff=32", "heads=2"});
  RunResult r = run_experiment(o, registry());
  EXPECT_EQ(r.steps, 2);
  EXPECT_EQ(read(dir / "run/experiment.attn"), default_experiment_text);
  EXPECT_EQ(read(dir / "run/transformer_base.attn"), *dsl::builtin_file_text(dsl::builtin_transformer_base()));
}

// ---- Errors -------------------------------------------------------------------------------------

const char* kParallelExperiment = R"(
experiment par {
  model = "transformer_base.attn" with { layers = 1, d_model = 16, d_ff = 32, heads = 2 }
  data  = parallel(src: "de", tgt: "en", dir: "corpus", train: "train", valid: "val", test: "test")
  train { batch_tokens: 256, max_steps: 2, valid_every: 0, valid_bleu_sentences: 0 }
}
)";

void write_corpus(const fs::path& dir, const std::string& flavour) {
  for (const char* part : {"train", "val", "test"}) {
    std::string de, en;
    for (int i = 0; i < 8; ++i) {
      de += "ein " + flavour + " hund " + std::to_string(i) + "\n";
      en += "a " + flavour + " dog " + std::to_string(i) + "\n";
    }
    write(dir / (std::string(part) + ".de"), de);
    write(dir / (std::string(part) + ".en"), en);
  }
}

TEST(TrainerErrors, MissingDataDirectoryNamesItAndTheOption) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir, kParallelExperiment);
  RunOptions o = options_for(exp, dir / "run");
  o.data_root = dir / "nowhere";
  const std::string e = error_of(o);
  EXPECT_NE(e.find("data directory " + (dir / "nowhere").string() + " does not exist"), std::string::npos) << e;
  EXPECT_NE(e.find("--data DIR"), std::string::npos) << e;
}

TEST(TrainerErrors, NoDataDirectoryGiven) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir, kParallelExperiment);
  ::unsetenv("ATTNLAB_DATA");
  const std::string e = error_of(options_for(exp, dir / "run"));
  EXPECT_NE(e.find("experiment par reads parallel text: give its data directory with --data DIR or the ATTNLAB_DATA"), std::string::npos) << e;
}

TEST(TrainerErrors, MissingDataFilesAreListed) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir, kParallelExperiment);
  write_corpus(dir / "data/corpus", "roter");
  fs::remove(dir / "data/corpus/val.en");
  fs::remove(dir / "data/corpus/test.de");
  RunOptions o = options_for(exp, dir / "run");
  o.data_root = dir / "data";
  const std::string e = error_of(o);
  EXPECT_NE(e.find("missing data files in " + (dir / "data/corpus").string() + ": " + (dir / "data/corpus/val.en").string() + ", " +
                   (dir / "data/corpus/test.de").string()),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("give the directory holding them with --data DIR or ATTNLAB_DATA"), std::string::npos) << e;
}

TEST(TrainerErrors, UnknownTrainSettingSuggestsTheNearest) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  const std::string e = error_of(options_for(exp, dir / "run", {"train.max_stpes=3"}));
  EXPECT_NE(e.find("unknown train setting 'max_stpes'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'max_steps'?"), std::string::npos) << e;
}

TEST(TrainerErrors, BadSetKeysForSectionsAndModelComeFromTheLanguage) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  std::string e = error_of(options_for(exp, dir / "run", {"trian.max_steps=3"}));
  EXPECT_NE(e.find("unknown section 'trian'"), std::string::npos) << e;
  e = error_of(options_for(exp, dir / "run2", {"layerz=2"}));
  EXPECT_NE(e.find("layerz"), std::string::npos) << e;
  e = error_of(options_for(exp, dir / "run3", {"train.accumulate=0"}));
  EXPECT_NE(e.find("train.accumulate = 0 is out of range [1, "), std::string::npos) << e;
}

TEST(TrainerErrors, ResumingAnotherExperimentIsRefused) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  run_experiment(options_for(exp, dir / "run", {"train.max_steps=2"}), registry());
  RunOptions o = options_for(exp, dir / "run", {"train.max_steps=4", "dropout=0.2"});
  o.resume = true;
  const std::string e = error_of(o);
  EXPECT_NE(e.find("cannot resume: checkpoint " + (dir / "run/checkpoints/step-000000002.ckpt").string() +
                   " belongs to another experiment (the overrides"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("--set dropout=0.2"), std::string::npos) << e;
}

TEST(TrainerErrors, ResumingOnOtherDataIsRefusedByFingerprint) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir, kParallelExperiment);
  write_corpus(dir / "a/corpus", "roter");
  write_corpus(dir / "b/corpus", "blauer");
  RunOptions o = options_for(exp, dir / "run");
  o.data_root = dir / "a";
  run_experiment(o, registry());
  const std::string checkpoint = (dir / "run/checkpoints/step-000000002.ckpt").string();
  o.resume = true;
  // Other words: the vocabulary differs.
  o.data_root = dir / "b";
  std::string e = error_of(o);
  EXPECT_NE(e.find("cannot resume: checkpoint " + checkpoint + " was trained on other data (its vocabulary differs"), std::string::npos) << e;
  // The same words in another order: the vocabulary is equal, the batches are not.
  write_corpus(dir / "c/corpus", "roter");
  write(dir / "c/corpus/train.de", "ein roter hund 7\nein roter hund 0\nein roter hund 1\nein roter hund 2\n"
                                   "ein roter hund 3\nein roter hund 4\nein roter hund 5\nein roter hund 6\n");
  write(dir / "c/corpus/train.en", "a roter dog 7\na roter dog 0\na roter dog 1\na roter dog 2\n"
                                   "a roter dog 3\na roter dog 4\na roter dog 5\na roter dog 6\n");
  o.data_root = dir / "c";
  e = error_of(o);
  EXPECT_NE(e.find("cannot resume: checkpoint " + checkpoint + " was trained on other data (data fingerprint "), std::string::npos) << e;
  // The same data resumes fine.
  o.data_root = dir / "a";
  o.sets = {"train.max_steps=3"};
  EXPECT_EQ(run_experiment(o, registry()).steps, 3);
}

TEST(TrainerErrors, ResumeNeedsARunAndANewRunNeedsAFreshDirectory) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  RunOptions o = options_for(exp, dir / "empty");
  o.resume = true;
  EXPECT_NE(error_of(o).find("--resume: " + (dir / "empty").string() + " holds no checkpoints/ directory"), std::string::npos) << error_of(o);
  run_experiment(options_for(exp, dir / "run", {"train.max_steps=1"}), registry());
  const std::string e = error_of(options_for(exp, dir / "run", {"train.max_steps=1"}));
  EXPECT_NE(e.find("already holds a run; give another --out DIR, or --resume"), std::string::npos) << e;
}

// A run stopped before its first step checkpoint (here: a finished run whose checkpoints are
// removed, the state a kill in its first steps leaves) starts again from step 0 on --resume, and
// ends as an uninterrupted run does; a run of another experiment in that directory is refused.
TEST(TrainerResume, ARunThatSavedNoCheckpointStartsAgainFromStepZero) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  run_experiment(options_for(exp, dir / "reference"), registry());
  run_experiment(options_for(exp, dir / "run"), registry());
  for (const auto& entry : fs::directory_iterator(dir / "run" / "checkpoints")) fs::remove(entry.path());

  RunOptions other = options_for(exp, dir / "run", {"train.label_smoothing=0"});
  other.resume = true;
  const std::string refused = error_of(other);
  EXPECT_NE(refused.find("cannot resume: " + (dir / "run").string() + " holds a run of another experiment (the overrides"),
            std::string::npos) << refused;
  EXPECT_TRUE(fs::exists(dir / "run" / "metrics.jsonl"));  // the refusal touched nothing

  RunOptions again = options_for(exp, dir / "run");
  again.resume = true;
  std::ostringstream log;
  again.log = &log;
  const RunResult r = run_experiment(again, registry());
  EXPECT_NE(log.str().find("no step checkpoint in " + (dir / "run" / "checkpoints").string() +
                           " (the run stopped before its first one): starting it again from step 0"),
            std::string::npos) << log.str();
  EXPECT_EQ(r.steps, 12);
  EXPECT_EQ(train_losses(dir / "run"), train_losses(dir / "reference"));  // once each, as uninterrupted
}

// ---- State parameters and auxiliary losses (node.h: ParamKind::State, StepReport) --------------

std::vector<nlohmann::json> train_events(const fs::path& run_dir) {
  std::vector<nlohmann::json> events;
  for (const nlohmann::json& e : read_metrics(run_dir / "metrics.jsonl"))
    if (e["event"] == "train") events.push_back(e);
  return events;
}

const ckpt::TensorData* stored(const ckpt::Checkpoint& c, const std::string& suffix) {
  for (const ckpt::TensorData& t : c.parameters())
    if (t.name().size() >= suffix.size() && t.name().compare(t.name().size() - suffix.size(), suffix.size(), suffix) == 0) return &t;
  return nullptr;
}

TEST(TrainerState, BatchNormRunningStatisticsAreCheckpointedResumedExactlyAndUsedAtEvaluation) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  auto with_batch_norm = [&](const fs::path& out, std::vector<std::string> sets) {
    RunOptions o = options_for(exp, out, std::move(sets));
    o.uses = {"norm=norm.batch(momentum: 0.2)"};
    return o;
  };
  const RunResult whole = run_experiment(with_batch_norm(dir / "whole", {}), registry());
  run_experiment(with_batch_norm(dir / "split", {"train.max_steps=6"}), registry());
  RunOptions again = with_batch_norm(dir / "split", {"train.max_steps=12"});
  again.resume = true;
  const RunResult resumed = run_experiment(again, registry());
  EXPECT_EQ(train_losses(dir / "whole"), train_losses(dir / "split")) << "resume is exact";
  EXPECT_EQ(whole.valid_loss, resumed.valid_loss);

  // The running statistics are in the checkpoint, moved away from their initial 0 and 1, and the
  // same after the resume as without it.
  const fs::path latest = *CheckpointDirectory(dir / "whole/checkpoints").latest();
  ckpt::Checkpoint a = read_checkpoint(latest);
  const ckpt::Checkpoint b = read_checkpoint(*CheckpointDirectory(dir / "split/checkpoints").latest());
  const ckpt::TensorData* mean = stored(a, ".running_mean");
  const ckpt::TensorData* var = stored(a, ".running_var");
  ASSERT_TRUE(mean && var);
  double moved = 0;
  for (int i = 0; i < mean->data_size(); ++i) moved += std::abs(mean->data(i)) + std::abs(var->data(i) - 1.0f);
  EXPECT_GT(moved, 1e-3);
  ASSERT_EQ(a.parameters_size(), b.parameters_size());
  for (int i = 0; i < a.parameters_size(); ++i)
    for (int j = 0; j < a.parameters(i).data_size(); ++j)
      ASSERT_EQ(a.parameters(i).data(j), b.parameters(i).data(j)) << a.parameters(i).name();

  // Evaluation reads them: evaluating the finished run again (a resume at its last step tests it
  // again) gives its test loss, and gives another one once the checkpoint's running variances
  // are changed.
  RunOptions evaluate = with_batch_norm(dir / "whole", {});
  evaluate.resume = true;
  EXPECT_EQ(run_experiment(evaluate, registry()).test_loss, whole.test_loss);
  for (ckpt::TensorData& t : *a.mutable_parameters())
    if (t.name().find(".running_var") != std::string::npos)
      for (int j = 0; j < t.data_size(); ++j) t.set_data(j, 25.0f * t.data(j));
  write_checkpoint(latest, a);
  EXPECT_GT(std::abs(run_experiment(evaluate, registry()).test_loss - whole.test_loss), 1e-3);
}

TEST(TrainerState, CheckpointAveragingAveragesTheRunningStatistics) {
  TempDir dir;
  RunOptions o = options_for(tiny_experiment(dir), dir / "run", {"train.checkpoint_every=4"});
  o.uses = {"norm=norm.batch"};
  o.average = 2;
  run_experiment(o, registry());
  const std::vector<fs::path> last = CheckpointDirectory(dir / "run/checkpoints").last(2);
  ASSERT_EQ(last.size(), 2u);
  const ckpt::Checkpoint a = read_checkpoint(last[0]), b = read_checkpoint(last[1]);
  const ckpt::Checkpoint avg = read_checkpoint(dir / "run/checkpoints/average.ckpt");
  for (const char* name : {".running_mean", ".running_var"}) {
    const ckpt::TensorData *ta = stored(a, name), *tb = stored(b, name), *tv = stored(avg, name);
    ASSERT_TRUE(ta && tb && tv) << name;
    ASSERT_EQ(tv->data_size(), ta->data_size());
    for (int j = 0; j < tv->data_size(); ++j) EXPECT_NEAR(tv->data(j), 0.5f * (ta->data(j) + tb->data(j)), 1e-6) << name;
  }
}

TEST(TrainerAux, MixtureOfExpertsLogsExpertTokensAndItsLoss) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  RunOptions o = options_for(exp, dir / "run", {"train.max_steps=4"});
  o.uses = {"ffn=ffn.moe(experts: 3, k: 2, capacity_factor: 0.75, aux_loss_weight: 0.1)"};
  run_experiment(o, registry());
  const std::vector<nlohmann::json> events = train_events(dir / "run");
  ASSERT_EQ(events.size(), 4u);
  for (const nlohmann::json& e : events) {
    ASSERT_TRUE(e.contains("aux_loss")) << e.dump();
    EXPECT_GT(e["aux_loss"].get<double>(), 0.0) << e.dump();
    std::map<std::string, double> served, dropped;  // by node
    for (const auto& [key, value] : e.items()) {
      if (const size_t at = key.find(".expert_tokens."); at != std::string::npos) served[key.substr(0, at)] += value.get<double>();
      if (const size_t at = key.find(".dropped_tokens"); at != std::string::npos) dropped[key.substr(0, at)] += value.get<double>();
    }
    ASSERT_EQ(served.size(), 2u) << "the encoder's and the decoder's feed-forward layers: " << e.dump();
    for (const auto& [node, n] : served) {
      EXPECT_GT(n, 0) << node;
      EXPECT_GT(dropped.at(node), 0) << node << ": capacity 0.75 of two choices per token drops some";
    }
  }
}

TEST(TrainerAux, TheLoadBalancingLossIsPartOfTheObjective) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  std::vector<std::vector<double>> losses;
  for (const char* weight : {"0", "1"}) {
    RunOptions o = options_for(exp, dir / (std::string("w") + weight), {"train.max_steps=3"});
    o.uses = {std::string("ffn=ffn.moe(experts: 3, aux_loss_weight: ") + weight + ")"};
    run_experiment(o, registry());
    losses.push_back(train_losses(dir / (std::string("w") + weight)));
    EXPECT_EQ(train_events(dir / (std::string("w") + weight))[0].contains("aux_loss"), std::string(weight) != "0");
  }
  EXPECT_EQ(losses[0][0], losses[1][0]) << "the same first forward";
  EXPECT_NE(losses[0][2], losses[1][2]) << "its gradient changed the updates";
}

TEST(TrainerAux, MixtureOfExpertsAndBatchNormTrainBitIdenticallyOnOneAndTwoThreads) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  std::vector<std::vector<nlohmann::json>> logs;
  std::vector<ckpt::Checkpoint> checkpoints;
  for (int threads : {1, 2}) {
    const fs::path out = dir / ("t" + std::to_string(threads));
    RunOptions o = options_for(exp, out, {"train.max_steps=4"});
    o.uses = {"ffn=ffn.moe(experts: 4, k: 2, capacity_factor: 1.0)", "norm=norm.batch"};
    o.threads = threads;
    run_experiment(o, registry());
    std::vector<nlohmann::json> events = train_events(out);
    for (nlohmann::json& e : events)
      for (const char* timing : {"tokens_per_s", "elapsed_s"}) e.erase(timing);
    logs.push_back(events);
    checkpoints.push_back(read_checkpoint(*CheckpointDirectory(out / "checkpoints").latest()));
  }
  EXPECT_EQ(logs[0], logs[1]);
  ASSERT_EQ(checkpoints[0].parameters_size(), checkpoints[1].parameters_size());
  for (int i = 0; i < checkpoints[0].parameters_size(); ++i)
    for (int j = 0; j < checkpoints[0].parameters(i).data_size(); ++j)
      ASSERT_EQ(checkpoints[0].parameters(i).data(j), checkpoints[1].parameters(i).data(j)) << checkpoints[0].parameters(i).name();
}

// ---- The command ---------------------------------------------------------------------------------

struct Result {
  int exit_code;
  std::string out;
};

Result run_cli(const std::string& args) {
  const std::string command = std::string(ATTNLAB_EXE) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(RunCommand, Multi30kWithoutDataExplainsWhereToPointIt) {
  TempDir dir;
  Result r = run_cli("run " + std::string(ATTNLAB_SOURCE_DIR) + "/experiments/multi30k.attn --data " + (dir / "none").string() + " --out " +
                     (dir / "run").string());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("attnlab: error: data directory " + (dir / "none").string() + " does not exist"), std::string::npos) << r.out;
}

TEST(RunCommand, RawMulti30kExperimentChecksAndNamesItsRawFiles) {
  const std::string file = std::string(ATTNLAB_SOURCE_DIR) + "/experiments/multi30k_raw.attn";
  Result r = run_cli("check " + file);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("ok: model transformer_base"), std::string::npos) << r.out;
  // Without the data, the raw files (no .lc.norm.tok suffix) are the ones it asks for.
  TempDir dir;
  fs::create_directories(dir / "data/multi30k");
  r = run_cli("run " + file + " --data " + (dir / "data").string() + " --out " + (dir / "run").string());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("train.de"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(".lc.norm.tok"), std::string::npos) << r.out;
}

TEST(RunCommand, TrainsFromTheCommandLineAndResumes) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  const std::string base = "run " + exp.string() + " --threads 2 --out " + (dir / "run").string();
  Result r = run_cli(base + " --set train.max_steps=3");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("stopped at step 3 (max_steps)"), std::string::npos) << r.out;
  r = run_cli(base + " --set train.max_steps=5 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("resuming " + (dir / "run").string() + " at step 3"), std::string::npos) << r.out;
  EXPECT_EQ(train_losses(dir / "run").size(), 5u);
  // The experiment may follow the flags: each --set takes one value.
  r = run_cli("run --set train.max_steps=2 --set train.valid_every=0 " + exp.string() + " --out " + (dir / "run3").string());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("stopped at step 2 (max_steps)"), std::string::npos) << r.out;
  r = run_cli("run " + exp.string() + " --out " + (dir / "run2").string() + " --set train.max_stepz=5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("attnlab: error: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("unknown train setting 'max_stepz'; known settings: "), std::string::npos) << r.out;
}

}  // namespace
}  // namespace attnlab::train

// One encoding of a run as a command line: command.txt and a sweep's child processes use it.
TEST(RunArguments, GiveTheOptionsAndQuoteWhatTheShellWouldSplit) {
  attnlab::train::RunOptions o;
  o.experiment_file = "exp.attn";
  o.sets = {"train.max_steps=8", "note=it's"};
  o.uses = {"attention=attention.grouped_query(kv_heads: 2)"};
  o.out_dir = "runs/x";
  o.resume = true;
  o.threads = 2;
  o.seed = 7;
  EXPECT_EQ(attnlab::train::run_arguments(o),
            (std::vector<std::string>{"run", "exp.attn", "--set", "train.max_steps=8", "--set", "note=it's", "--use",
                                      "attention=attention.grouped_query(kv_heads: 2)", "--out", "runs/x", "--resume", "--threads",
                                      "2", "--seed", "7"}));
  EXPECT_EQ(attnlab::train::shell_line(attnlab::train::run_arguments(o)),
            "run exp.attn --set train.max_steps=8 --set 'note=it'\\''s' --use 'attention=attention.grouped_query(kv_heads: 2)' "
            "--out runs/x --resume --threads 2 --seed 7");
  EXPECT_EQ(attnlab::train::run_arguments(attnlab::train::RunOptions{}), std::vector<std::string>{"run"});
}

namespace attnlab::train {
namespace {

// The step at which a run validated every `every` steps with `patience` stops, replayed from the
// dev figures it recorded (higher `metric` is better), and the step of its best validation.
std::pair<int64_t, int64_t> replay_patience(const fs::path& run_dir, const std::string& metric, int64_t patience) {
  double best = 0;
  int64_t best_step = -1, stale = 0;
  for (const nlohmann::json& e : read_metrics(run_dir / "metrics.jsonl")) {
    if (e["event"] != "valid") continue;
    const double value = e[metric].get<double>();
    if (best_step < 0 || value > best) {
      best = value, best_step = e["step"].get<int64_t>(), stale = 0;
    } else if (++stale >= patience) {
      return {e["step"].get<int64_t>(), best_step};
    }
  }
  return {-1, best_step};
}

TEST(TrainerEarlyStopping, PatienceStopsAtTheRightValidationAndKeepsTheBestCheckpoint) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  // Dev chrF of a barely trained model stalls within a few validations; 200 steps is far beyond.
  RunOptions o = options_for(exp, dir / "run",
                             {"train.max_steps=200", "train.valid_every=2", "train.valid_bleu_sentences=10",
                              "train.valid_metric=chrf", "train.patience=2", "train.checkpoint_every=0"});
  const RunResult r = run_experiment(o, registry());
  const auto [stop_step, best_step] = replay_patience(dir / "run", "chrf", 2);
  ASSERT_GT(stop_step, 0) << "no stall within 200 steps";
  EXPECT_EQ(r.steps, stop_step);
  EXPECT_LT(r.steps, 200);
  const ckpt::Checkpoint best = read_checkpoint(dir / "run/checkpoints/best.ckpt");
  EXPECT_EQ(best.step(), best_step);
  EXPECT_EQ(best.metrics().best_metric(), "valid_chrf");
  // Then the run tests and reports as usual.
  int tests = 0, valids = 0;
  for (const nlohmann::json& e : read_metrics(dir / "run/metrics.jsonl")) {
    tests += e["event"] == "test";
    if (e["event"] == "valid") {
      ++valids;
      EXPECT_TRUE(e.contains("loss") && e.contains("bleu") && e.contains("chrf")) << e.dump();
    }
  }
  EXPECT_EQ(tests, 1);
  EXPECT_EQ(valids, stop_step / 2);
  const std::string report = read(dir / "run/report.md");
  EXPECT_NE(report.find("stopped by patience"), std::string::npos) << report;
  EXPECT_NE(report.find("Best dev chrF "), std::string::npos) << report;
}

TEST(TrainerEarlyStopping, AResumedRunStopsAtTheSameValidation) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  const std::vector<std::string> sets = {"train.valid_every=2", "train.valid_bleu_sentences=10", "train.valid_metric=chrf",
                                         "train.patience=2", "train.checkpoint_every=2"};
  auto with = [&](const std::string& max_steps) {
    std::vector<std::string> all = sets;
    all.push_back("train.max_steps=" + max_steps);
    return all;
  };
  const RunResult whole = run_experiment(options_for(exp, dir / "whole", with("200")), registry());
  ASSERT_LT(whole.steps, 200);
  ASSERT_GE(whole.steps, 6);
  // Stop one step before, after at least one validation without improvement, then resume.
  const RunResult first = run_experiment(options_for(exp, dir / "split", with(std::to_string(whole.steps - 1))), registry());
  EXPECT_EQ(first.steps, whole.steps - 1);
  RunOptions again = options_for(exp, dir / "split", with("200"));
  again.resume = true;
  EXPECT_EQ(run_experiment(again, registry()).steps, whole.steps);
}

TEST(TrainerEarlyStopping, ValidBeamAndTheMetricAreInTheLog) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  for (const auto& [extra, expected] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{}, "validation: every 4 steps, best by dev bleu, dev translations greedy\n"},
           {{"train.valid_beam=4", "train.valid_metric=chrf", "train.patience=3"},
            "validation: every 4 steps, best by dev chrf, dev translations beam 4, patience 3\n"}}) {
    std::vector<std::string> sets = {"train.max_steps=4", "train.valid_every=4", "train.valid_bleu_sentences=10"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    RunOptions o = options_for(exp, dir / ("run" + std::to_string(extra.size())), sets);
    std::ostringstream log;
    o.log = &log;
    run_experiment(o, registry());
    EXPECT_NE(log.str().find(expected), std::string::npos) << log.str();
  }
}

TEST(TrainerEarlyStopping, BadSettingsAreNamed) {
  TempDir dir;
  const fs::path exp = tiny_experiment(dir);
  std::string e = error_of(options_for(exp, dir / "r1", {"train.valid_metric=ter", "train.valid_bleu_sentences=10"}));
  EXPECT_NE(e.find("train.valid_metric must be loss, bleu or chrf, got ter"), std::string::npos) << e;
  e = error_of(options_for(exp, dir / "r2", {"train.valid_metric=bleu"}));
  EXPECT_NE(e.find("train.valid_metric = bleu needs dev translations; set train.valid_bleu_sentences above 0"),
            std::string::npos)
      << e;
  e = error_of(options_for(exp, dir / "r3", {"train.patience=3"}));
  EXPECT_NE(e.find("train.patience needs validations; set train.valid_every above 0"), std::string::npos) << e;
  e = error_of(options_for(exp, dir / "r4", {"train.patience=-1", "train.valid_every=2"}));
  EXPECT_NE(e.find("train.patience = -1 is out of range [0, 1000000]"), std::string::npos) << e;
  e = error_of(options_for(exp, dir / "r5", {"train.valid_beam=0"}));
  EXPECT_NE(e.find("train.valid_beam = 0 is out of range [1, 64]"), std::string::npos) << e;
}

}  // namespace
}  // namespace attnlab::train
