// Tests of the language_model task through the trainer (core/train/trainer.h, core/task/task.h):
// a tiny GPT (experiments/gpt.attn) on a small text trains, validates (loss, perplexity, bits per
// character), reports a sample, resumes exactly (the block sampler's position restored), swaps
// components; a model that does not fit the task is a located error; `attnlab generate` samples
// from the checkpoint alone and refuses bad flags.
#include "../support/installed_plugins.h"
#include "train/trainer.h"

#include "dsl/source.h"
#include "train/checkpoint.h"
#include "train/run_log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace attnlab::train {
namespace {

namespace fs = std::filesystem;

const Registry& registry() { return test::plugins_beside_executable(); }

struct LmDir {
  fs::path path;
  LmDir() {
    path = fs::temp_directory_path() / ("attnlab-lm-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::create_directories(path);
    std::ofstream text(path / "text.txt");
    for (int i = 0; i < 150; ++i) text << "to be, or not to be, that is the question:\nwhether 'tis nobler in the mind to suffer\n";
    fs::copy_file(fs::path(ATTNLAB_SOURCE_DIR) / "experiments/gpt.attn", path / "gpt.attn");
  }
  ~LmDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  fs::path experiment(const std::string& train_extra = "", const std::string& model = "gpt.attn",
                      const std::string& with = "layers = 1, heads = 2, d_model = 16, block_size = 16") const {
    const fs::path file = path / "tiny_lm.attn";
    std::ofstream(file) << "experiment tiny_lm {\n"
                           "  task  = language_model\n"
                           "  model = \"" << model << "\" with { " << with << " }\n"
                           "  data  = text(file: \"text.txt\", vocab: \"char\")\n"
                           "  seed  = 3\n"
                           "  train {\n"
                           "    adamw(0.9, 0.99, 1e-8, weight_decay: 0.1), cosine(warmup: 2, max_lr: 1e-2, min_lr: 1e-3, steps: 16),\n"
                           "    clip_norm: 1.0, dropout: 0.1, batch: 4, max_steps: 16, valid_every: 8, checkpoint_every: 4,\n"
                           "    valid_blocks: 20, samples: 1" << train_extra << "\n"
                           "  }\n"
                           "}\n";
    return file;
  }
};

RunOptions options_for(const LmDir& dir, const fs::path& experiment, const std::string& out, std::vector<std::string> sets = {}) {
  RunOptions o;
  o.experiment_file = experiment;
  o.out_dir = dir.path / out;
  o.data_root = dir.path;
  o.sets = std::move(sets);
  o.threads = 2;
  static std::ostringstream sink;
  o.log = &sink;
  return o;
}

std::vector<nlohmann::json> events(const fs::path& run, const std::string& kind) {
  std::vector<nlohmann::json> out;
  for (const nlohmann::json& e : read_metrics(run / "metrics.jsonl"))
    if (e["event"] == kind) out.push_back(e);
  return out;
}

std::string read(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(LanguageModel, TrainsValidatesAndReportsASample) {
  LmDir dir;
  const RunResult r = run_experiment(options_for(dir, dir.experiment(), "run"), registry());
  EXPECT_EQ(r.steps, 16);
  const std::vector<nlohmann::json> train = events(dir.path / "run", "train");
  ASSERT_EQ(train.size(), 16u);
  EXPECT_LT(train.back()["loss"].get<double>(), train.front()["loss"].get<double>());
  EXPECT_EQ(train.front()["tokens"].get<double>(), 4 * 16);  // batch rows × block
  const std::vector<nlohmann::json> valid = events(dir.path / "run", "valid");
  ASSERT_EQ(valid.size(), 2u);
  EXPECT_NEAR(valid.back()["bpc"].get<double>(), valid.back()["loss"].get<double>() / std::log(2.0), 1e-9);
  EXPECT_NEAR(valid.back()["ppl"].get<double>(), std::exp(valid.back()["loss"].get<double>()), 1e-6);
  EXPECT_GT(r.valid_bits_per_char, 0);
  // A character vocabulary: the specials and the text's distinct characters.
  const std::string settings = read(dir.path / "run/settings.json");
  EXPECT_NE(settings.find("\"task\": \"language_model\""), std::string::npos) << settings;
  const std::string report = read(dir.path / "run/report.md");
  EXPECT_NE(report.find("bits per character"), std::string::npos) << report;
  EXPECT_NE(report.find("## A sample"), std::string::npos) << report;
  const size_t sample = report.find("```\n");
  ASSERT_NE(sample, std::string::npos);
  EXPECT_GT(report.size() - sample, 100u);  // 100 sampled characters
}

TEST(LanguageModel, AResumedRunComputesTheLossesOfAnUninterruptedRun) {
  LmDir dir;
  const fs::path exp = dir.experiment();
  run_experiment(options_for(dir, exp, "whole"), registry());
  run_experiment(options_for(dir, exp, "split", {"train.max_steps=6"}), registry());
  RunOptions again = options_for(dir, exp, "split", {"train.max_steps=16"});
  again.resume = true;
  run_experiment(again, registry());
  const std::vector<nlohmann::json> a = events(dir.path / "whole", "train"), b = events(dir.path / "split", "train");
  ASSERT_EQ(a.size(), 16u);
  ASSERT_EQ(b.size(), 16u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
}

TEST(LanguageModel, EveryComponentSwapTrains) {
  LmDir dir;
  int n = 0;
  for (const char* use : {"posenc=posenc.rotary", "posenc=posenc.alibi", "norm=norm.rms", "ffn=ffn.swiglu"}) {
    RunOptions o = options_for(dir, dir.experiment(), "swap" + std::to_string(n++), {"train.max_steps=4", "train.valid_every=0"});
    o.uses = {use};
    const RunResult r = run_experiment(o, registry());
    EXPECT_EQ(r.steps, 4) << use;
    EXPECT_TRUE(std::isfinite(r.valid_loss)) << use;
  }
}

TEST(LanguageModel, ATranslationModelIsALocatedErrorNamingWhatTheTaskExpects) {
  LmDir dir;
  fs::copy_file(fs::path(ATTNLAB_SOURCE_DIR) / "experiments/transformer_base.attn", dir.path / "transformer_base.attn");
  const fs::path exp = dir.experiment("", "transformer_base.attn", "layers = 1, heads = 2, d_model = 16");
  try {
    run_experiment(options_for(dir, exp, "mismatch"), registry());
    FAIL() << "no error";
  } catch (const dsl::DslError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("transformer_base.attn:12:1: error: the language_model task needs model 'transformer_base' to declare "
                        "input 'input_ids': ids[batch, length]"),
              std::string::npos)
        << what;
  }
  EXPECT_FALSE(fs::exists(dir.path / "mismatch")) << "a refused run writes nothing";
}

TEST(LanguageModel, TranslationOnlySettingsAreRefused) {
  LmDir dir;
  try {
    run_experiment(options_for(dir, dir.experiment(", max_epochs: 2"), "epochs"), registry());
    FAIL() << "no error";
  } catch (const dsl::DslError& e) {
    EXPECT_NE(std::string(e.what()).find("train.max_epochs: the language_model task samples random blocks and has no epochs"),
              std::string::npos)
        << e.what();
  }
}

TEST(LanguageModel, WordVocabularyGzipTextAndAValidationFile) {
  LmDir dir;
  // text.txt.gz (read through its .gz twin) to train, valid.txt to validate, words as tokens.
  ASSERT_EQ(std::system(("gzip -k " + (dir.path / "text.txt").string()).c_str()), 0);
  fs::remove(dir.path / "text.txt");
  std::ofstream(dir.path / "valid.txt") << "to be, or not to be\nthat is the question:\n";
  std::string text = read(dir.experiment());
  const std::string data = "text(file: \"text.txt\", vocab: \"char\")";
  text.replace(text.find(data), data.size(), "text(file: \"text.txt\", valid_file: \"valid.txt\", vocab: \"word\")");
  std::ofstream(dir.path / "words.attn") << text;
  RunOptions o = options_for(dir, dir.path / "words.attn", "words", {"train.max_steps=3", "train.valid_blocks=0"});
  o.sets.push_back("block_size=4");
  const RunResult r = run_experiment(o, registry());
  EXPECT_EQ(r.steps, 3);
  EXPECT_EQ(r.valid_bits_per_char, -1) << "bits per character only for a character vocabulary";
  const std::vector<nlohmann::json> valid = events(dir.path / "words", "valid");
  ASSERT_EQ(valid.size(), 1u);
  EXPECT_FALSE(valid[0].contains("bpc"));
  // valid.txt is 12 tokens (10 words, 2 line ends): 2 windows of 4 and their next token.
  EXPECT_GT(valid[0]["loss"].get<double>(), 0);
  EXPECT_NE(read(dir.path / "words/settings.json").find("valid.txt"), std::string::npos);
}

TEST(LanguageModel, AMissingTextFileIsNamed) {
  LmDir dir;
  std::string text = read(dir.experiment());
  const std::string file = "\"text.txt\"";
  text.replace(text.find(file), file.size(), "\"nothing.txt\"");
  std::ofstream(dir.path / "missing.attn") << text;
  try {
    run_experiment(options_for(dir, dir.path / "missing.attn", "missing"), registry());
    FAIL() << "no error";
  } catch (const RunError& e) {
    EXPECT_NE(std::string(e.what()).find("missing data file " + (dir.path / "nothing.txt").string()), std::string::npos) << e.what();
  }
}

// ---- attnlab generate -------------------------------------------------------------------------

struct Command {
  int exit_code = 0;
  std::string out, err;
};

Command attnlab(const std::string& args) {
  const fs::path err = fs::temp_directory_path() / ("attnlab-lm-test-err-" + std::to_string(::getpid()));
  const std::string command = std::string(ATTNLAB_EXE) + " " + args + " 2>" + err.string();
  Command c;
  FILE* pipe = ::popen(command.c_str(), "r");
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) c.out.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  c.err = read(err);
  fs::remove(err);
  return c;
}

TEST(Generate, SamplesFromTheCheckpointAloneAndRefusesBadFlags) {
  LmDir dir;
  run_experiment(options_for(dir, dir.experiment(), "run"), registry());
  const std::string run = (dir.path / "run").string();
  const Command a = attnlab("generate --checkpoint " + run + " --prompt 'to be' --tokens 40 --top-k 5 --seed 7 --threads 1");
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out.rfind("to be", 0), 0u) << a.out;  // the prompt, then the sample
  EXPECT_EQ(a.out.size(), 5u + 40u + 1u) << a.out;  // one character a token, and a line break
  const Command b = attnlab("generate --checkpoint " + run + " --prompt 'to be' --tokens 40 --top-k 5 --seed 7 --threads 1");
  EXPECT_EQ(a.out, b.out) << "a sample is a function of the seed";
  // More tokens than the model's block: the context slides.
  const Command longer = attnlab("generate --checkpoint " + run + " --tokens 50 --top-k 5 --temperature 0.5 --threads 1");
  EXPECT_EQ(longer.exit_code, 0) << longer.err;

  for (const auto& [flags, message] : std::vector<std::pair<std::string, std::string>>{
           {" --temperature 0", "--temperature"},
           {" --top-k -1", "--top-k"},
           {" --tokens x", "--tokens"},
           {" --prompt ''", "--prompt: the prompt is empty"},
           {" --prompt \"$(printf 'to\\nbe \\377')\"", "--prompt:2:4: invalid UTF-8 (byte 0xFF)"},
           {" --prompt \"$(printf 'a\\001')\"", "--prompt:1:2: control byte 0x01 in text"},
       }) {
    const Command bad = attnlab("generate --checkpoint " + run + flags);
    EXPECT_EQ(bad.exit_code, 1) << flags << ": " << bad.err;
    EXPECT_NE(bad.err.find(message), std::string::npos) << flags << ": " << bad.err;
  }
  // Characters the model's vocabulary lacks are read as <unk>, with a warning that counts them.
  const Command unknown = attnlab("generate --checkpoint " + run + " --prompt 'to be 日本' --tokens 5 --threads 1");
  EXPECT_EQ(unknown.exit_code, 0) << unknown.err;
  EXPECT_EQ(unknown.err, "warning: --prompt: 2 of its 8 tokens are outside the model's vocabulary and are read as <unk>\n");
  EXPECT_EQ(unknown.out.rfind("to be 日本", 0), 0u) << unknown.out;
  EXPECT_EQ(a.err, "") << "a prompt the vocabulary covers gets no warning";
  const Command missing = attnlab("generate --checkpoint " + (dir.path / "nothing").string());
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("nothing"), std::string::npos) << missing.err;
  const Command translate = attnlab("translate --checkpoint " + run + " </dev/null");
  EXPECT_EQ(translate.exit_code, 1);
  EXPECT_NE(translate.err.find("it was trained for the language_model task; attnlab translate needs a translation checkpoint"),
            std::string::npos)
      << translate.err;
}

TEST(Ablate, SweepsALanguageModelThroughTheSameTrainer) {
  LmDir dir;
  const fs::path exp = dir.experiment();
  const fs::path out = dir.path / "sweep";
  const Command c = attnlab("ablate " + exp.string() + " --vary posenc=posenc.learned,posenc.rotary --set train.max_steps=3 "
                            "--set train.valid_every=0 --data " + dir.path.string() + " --out " + out.string() + " --threads 1");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const std::string results = read(out / "results.md");
  EXPECT_NE(results.find("posenc.rotary"), std::string::npos) << results;
  size_t runs = 0;
  for (const auto& entry : fs::directory_iterator(out))
    if (fs::exists(entry.path() / "metrics.jsonl")) ++runs;
  EXPECT_EQ(runs, 2u) << results;
}

}  // namespace
}  // namespace attnlab::train
