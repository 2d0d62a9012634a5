// `attnlab bench` end to end on a tiny model (d_model 32, 1 layer, batch 2, 4+4 tokens, vocab 50):
// --json prints one object whose figures are all positive, finite and consistent with each other
// (tokens/s from the step time, GFLOP/s from the counted products); the table form prints every
// figure; the default model is the built-in copy of experiments/transformer_base.attn; and each user
// error gives one clear message and a non-zero exit code.
#include "support/run_command.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

namespace attnlab {
namespace {

namespace fs = std::filesystem;
using test::CommandResult;
using test::run_command;

const std::string kTinyModel = " --set d_model=32 --set layers=1 --set d_ff=64 --set heads=4 --threads 2";
const std::string kTinyShapes = " --batch 2 --src-len 4 --tgt-len 4 --vocab 50";

CommandResult bench(const std::string& args) { return run_command(std::string(ATTNLAB_EXE) + " bench" + args); }

double positive_number(const nlohmann::json& j, const std::string& key) {
  EXPECT_TRUE(j.contains(key)) << key << " missing in " << j.dump();
  if (!j.contains(key)) return 0;
  EXPECT_TRUE(j[key].is_number()) << key << " = " << j[key].dump();
  if (!j[key].is_number()) return 0;
  const double v = j[key].get<double>();
  EXPECT_TRUE(std::isfinite(v) && v > 0) << key << " = " << v;
  return v;
}

TEST(BenchCommand, JsonFiguresArePositiveFiniteAndConsistent) {
  const CommandResult r = bench(kTinyModel + kTinyShapes + " --steps 1 --peak --peak-size 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);  // throws (fails the test) unless one valid object
  ASSERT_TRUE(j.is_object());
  for (const char* key : {"train_tokens_per_s", "decode_tokens_per_s", "train_step_s", "gflops", "peak_rss_mb",
                          "parameters", "threads", "batch", "src_len", "tgt_len", "vocab", "d_model", "layers",
                          "d_ff", "heads", "steps", "train_loss", "gemm_gflop_per_step", "decode_s", "decode_steps", "train_peak_rss_mb",
                          "gemm_peak_gflops", "gemm_peak_fraction"})
    positive_number(j, key);
  EXPECT_EQ(j["threads"], 2);
  EXPECT_EQ(j["batch"], 2);
  EXPECT_EQ(j["src_len"], 4);
  EXPECT_EQ(j["tgt_len"], 4);
  EXPECT_EQ(j["vocab"], 50);
  EXPECT_EQ(j["d_model"], 32);
  EXPECT_EQ(j["layers"], 1);
  EXPECT_EQ(j["decode_steps"], 4);  // exactly tgt_len greedy steps
  EXPECT_EQ(j["executor"], "tbb");
  EXPECT_TRUE(j["backend"].is_string() && !j["backend"].get<std::string>().empty());
  if (j.contains("fma_peak_gflops")) positive_number(j, "fma_peak_gflops");
  EXPECT_LE(j["train_peak_rss_mb"].get<double>(), j["peak_rss_mb"].get<double>());  // a running maximum

  const double step_s = j["train_step_s"], decode_s = j["decode_s"];
  EXPECT_NEAR(j["train_tokens_per_s"].get<double>(), 2.0 * (4 + 4) / step_s, 1e-6 * 16 / step_s);
  EXPECT_NEAR(j["decode_tokens_per_s"].get<double>(), 2.0 * 4 / decode_s, 1e-6 * 8 / decode_s);
  EXPECT_NEAR(j["gflops"].get<double>(), j["gemm_gflop_per_step"].get<double>() / step_s, 1e-6 * j["gflops"].get<double>());
  EXPECT_NEAR(j["gemm_peak_fraction"].get<double>(), j["gflops"].get<double>() / j["gemm_peak_gflops"].get<double>(),
              1e-9);

  // The counted products of one step against the model's forward products (B=2, S=T=4, d=32,
  // d_ff=64, 4 heads of 8, V=50): every weight product runs forward and twice backward (input and
  // weight gradients), so a step counts about 3x the forward multiply-adds; 2x..4x allows for the
  // embedding lookups (no product) and for attention kernels that skip masked scores.
  const double BS = 8, BT = 8, d = 32, dff = 64, V = 50;
  const double weights_fwd = BS * 4 * d * d + BS * 2 * d * dff                      // encoder layer
                             + BT * 4 * d * d + BT * 2 * d * d + BS * 2 * d * d      // decoder attentions
                             + BT * 2 * d * dff + BT * d * V;                          // decoder ffn, logits
  const double scores_fwd = 3 * (2 * 2 * 4 * 4 * 4 * 8);  // three attentions: scores and values
  const double step_madds = j["gemm_gflop_per_step"].get<double>() * 1e9 / 2;
  EXPECT_GE(step_madds, 2 * weights_fwd);
  EXPECT_LE(step_madds, 4 * (weights_fwd + scores_fwd));
}

TEST(BenchCommand, BeamSearchIsTimedWhenAskedFor) {
  const CommandResult r = bench(kTinyModel + kTinyShapes + " --steps 1 --beam 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["beam"], 4);
  const double tokens = positive_number(j, "beam_decode_tokens"), s = positive_number(j, "beam_decode_s");
  EXPECT_LE(tokens, 2 * 4);  // at most tgt_len output tokens per sentence
  EXPECT_NEAR(j["beam_decode_tokens_per_s"].get<double>(), tokens / s, 1e-6 * tokens / s);
  const CommandResult plain = bench(kTinyModel + kTinyShapes + " --steps 1 --json");
  EXPECT_FALSE(nlohmann::json::parse(plain.out).contains("beam")) << "beam search timed without --beam";
}

TEST(BenchCommand, ProductsAccountForEveryCountedMultiplyAdd) {
  const CommandResult r = bench(kTinyModel + kTinyShapes + " --steps 2 --products --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("products") && j["products"].is_array() && !j["products"].empty()) << r.out;
  double madds = 0, seconds = 0, previous = INFINITY;
  for (const nlohmann::json& p : j["products"]) {
    const std::string layout = p["layout"];
    EXPECT_TRUE(layout == "NN" || layout == "NT" || layout == "TN" || layout == "TT") << layout;
    for (const char* key : {"batch", "m", "n", "k", "calls_per_step", "seconds_per_step", "gflops"}) positive_number(p, key);
    madds += p["batch"].get<double>() * p["m"].get<double>() * p["n"].get<double>() * p["k"].get<double>() *
             p["calls_per_step"].get<double>();
    const double s = p["seconds_per_step"];
    EXPECT_LE(s, previous) << "products not sorted by time";
    previous = s;
    seconds += s;
  }
  // The profile sees the same calls as the multiply-add counter, and its time fits in the step.
  EXPECT_NEAR(madds, j["gemm_gflop_per_step"].get<double>() * 1e9 / 2, 1e-6 * madds);
  EXPECT_LE(seconds, j["threads"].get<double>() * j["train_step_s"].get<double>());
  const CommandResult plain = bench(kTinyModel + kTinyShapes + " --steps 1 --json");
  EXPECT_FALSE(nlohmann::json::parse(plain.out).contains("products")) << "products timed without --products";
  const CommandResult table = bench(kTinyModel + kTinyShapes + " --steps 1 --products");
  ASSERT_EQ(table.exit_code, 0) << table.err;
  for (const char* text : {"products", "ms per step, summed over threads", "NT ", "GFLOP/s", "calls"})
    EXPECT_NE(table.out.find(text), std::string::npos) << text << " missing in:\n" << table.out;
}

TEST(BenchCommand, TablePrintsEveryFigure) {
  const CommandResult r = bench(kTinyModel + kTinyShapes + " --steps 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* text : {"transformer_base", "batch 2, 4+4 tokens, vocab 50", "2 threads", "train", "tokens/s",
                           "s/step", "GFLOP/s", "decode", "greedy, 4 steps", "peak RSS"})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << " missing in:\n" << r.out;
}

TEST(BenchCommand, DefaultModelIsTransformerBase) {
  const CommandResult builtin = bench(kTinyModel + kTinyShapes + " --steps 1 --json");
  const CommandResult file =
      bench(std::string(" ") + ATTNLAB_SOURCE_DIR + "/experiments/transformer_base.attn" + kTinyModel + kTinyShapes +
            " --steps 1 --json");
  ASSERT_EQ(builtin.exit_code, 0) << builtin.err;
  ASSERT_EQ(file.exit_code, 0) << file.err;
  const nlohmann::json a = nlohmann::json::parse(builtin.out), b = nlohmann::json::parse(file.out);
  EXPECT_EQ(a["model"], "transformer_base");
  EXPECT_EQ(a["parameters"], b["parameters"]);
  // Same seed, same tokens, thread-count-independent arithmetic (core/tensor/gemm.h): the same loss.
  EXPECT_EQ(a["train_loss"], b["train_loss"]);
}

// The language_model task: experiments/gpt.attn at a tiny size, training then cached sampling.
TEST(BenchCommand, TimesALanguageModel) {
  const std::string gpt = std::string(" ") + ATTNLAB_SOURCE_DIR + "/experiments/gpt.attn --set layers=1 --set d_model=16 --set heads=2";
  const CommandResult r = bench(gpt + " --batch 2 --block 8 --vocab 20 --steps 1 --threads 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["task"], "language_model");
  EXPECT_EQ(j["block"], 8);
  EXPECT_GT(j["train_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["sample_tokens_per_s"].get<double>(), 0);
  EXPECT_TRUE(std::isfinite(j["train_loss"].get<double>()));
  const CommandResult mixed = bench(gpt + " --batch 2 --block 8 --src-len 4 --vocab 20");
  EXPECT_EQ(mixed.exit_code, 1);
  EXPECT_NE(mixed.err.find("--block times a language model; --src-len, --tgt-len and --beam are for translation"), std::string::npos)
      << mixed.err;
  const CommandResult translation_model = bench(kTinyModel + " --batch 2 --block 8 --vocab 50");
  EXPECT_EQ(translation_model.exit_code, 1);
  EXPECT_NE(translation_model.err.find("the language_model task needs model 'transformer_base' to declare input 'input_ids'"),
            std::string::npos)
      << translation_model.err;
}

struct ErrorCase {
  std::string args;
  int exit_code;
  std::string message;
};

class BenchCommandError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(BenchCommandError, ClearMessage) {
  const CommandResult r = bench(GetParam().args);
  EXPECT_EQ(r.exit_code, GetParam().exit_code) << r.out << r.err;
  EXPECT_NE(r.err.find(GetParam().message), std::string::npos) << "stderr:\n" << r.err;
  EXPECT_EQ(r.out, "");
}

const std::string kShapesWithout(const std::string& flag) {
  std::string out;
  for (const auto& [f, v] : {std::pair<std::string, std::string>{"--batch", "2"}, {"--src-len", "4"},
                             {"--tgt-len", "4"}, {"--vocab", "50"}})
    if (f != flag) out += " " + f + " " + v;
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    Messages, BenchCommandError,
    ::testing::Values(
        ErrorCase{kTinyModel + kShapesWithout("--batch") + " --batch 0", 1,
                  "attnlab: error: --batch must be in [1, 65536], got 0"},
        ErrorCase{kTinyModel + kShapesWithout("--src-len") + " --src-len 0", 1,
                  "attnlab: error: --src-len must be in [1, 65536], got 0"},
        ErrorCase{kTinyModel + kShapesWithout("--tgt-len") + " --tgt-len -3", 1,
                  "attnlab: error: --tgt-len must be in [1, 65536], got -3"},
        ErrorCase{kTinyModel + kShapesWithout("--vocab") + " --vocab 4", 1,
                  "attnlab: error: --vocab must be in [5, 1000000], got 4 (ids 0-3 are reserved for <pad>, <unk>, <s>, "
                  "</s>)"},
        ErrorCase{kTinyModel + kTinyShapes + " --steps 0", 1, "attnlab: error: --steps must be in [1, 1000000], got 0"},
        ErrorCase{kTinyModel + kTinyShapes + " --beam 1", 1,
                  "attnlab: error: --beam must be between 2 and 64 (greedy decoding is always timed), got 1"},
        ErrorCase{kTinyModel + kTinyShapes + " --peak --peak-size 0", 1,
                  "attnlab: error: --peak-size must be in [16, 32768], got 0"},
        ErrorCase{kTinyModel + kTinyShapes + " --peak --peak-size 1000000", 1,
                  "attnlab: error: --peak-size must be in [16, 32768], got 1000000"},
        ErrorCase{kTinyModel + kShapesWithout("--batch") + " --batch 1000000000", 1,
                  "attnlab: error: --batch must be in [1, 65536], got 1000000000"},
        ErrorCase{kTinyModel + kShapesWithout("--src-len") + " --src-len 100000000", 1,
                  "attnlab: error: --src-len must be in [1, 65536], got 100000000"},
        ErrorCase{kTinyModel + kTinyShapes + " --steps 100000000000", 1,
                  "attnlab: error: --steps must be in [1, 1000000], got 100000000000"},
        ErrorCase{kTinyModel + " --batch 65536 --src-len 65536 --tgt-len 4 --vocab 50", 1,
                  "attnlab: error: --batch 65536 of 65536 tokens is 4294967296 tokens a batch, more than 1048576: give a "
                  "smaller --batch or shorter sequences"},
        ErrorCase{kTinyModel + " --batch 2 --vocab 50 --block 100000", 1,
                  "attnlab: error: --block must be in [1, 65536], got 100000"},
        ErrorCase{kTinyModel + kTinyShapes + " --set vocab=9", 1,
                  "attnlab: error: --set vocab=... is not allowed here: the vocabulary size is --vocab"},
        ErrorCase{kTinyModel + kTinyShapes + " --set nosuch=3", 1, "error: unknown parameter or slot 'nosuch'"},
        ErrorCase{kTinyModel + kTinyShapes + " --set nosuch=3", 1, "attnlab: error: the default model: 1 error"},
        ErrorCase{kTinyModel + kTinyShapes + " --use attention=attention.nosuch", 1,
                  "unknown node type 'attention.nosuch'"},
        ErrorCase{kTinyModel + kShapesWithout("--vocab"), 106, "--vocab is required"},
        ErrorCase{" /nonexistent/model.attn" + kTinyShapes, 1, "attnlab: error: /nonexistent/model.attn: 1 error"}));

TEST(BenchCommand, AFailedAllocationIsOutOfMemoryNotACrash) {
  // Under a 3 GB address-space limit the pool's own check (the machine's memory) passes and the
  // system refuses the allocation: the one-line message, exit 1.
  const CommandResult r = run_command("ulimit -v 3000000; " + std::string(ATTNLAB_EXE) + " bench" + kTinyModel +
                                      " --batch 1024 --src-len 1024 --tgt-len 1024 --vocab 50");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err, "attnlab: error: out of memory: an allocation failed (the sizes or the input asked for more than this process can have)\n");
}

TEST(BenchCommand, RejectsAModelWithoutSource) {
  const fs::path dir = test::make_temp_dir("attnlab-bench-test-");
  const fs::path file = dir / "lm.attn";
  std::ofstream(file) << "model lm {\n"
                         "  param vocab = 10\n"
                         "  input tgt_in: ids(vocab)[batch, tgt_len]\n"
                         "  input tgt_out: ids(vocab)[batch, tgt_len]\n"
                         "  embed = embedding(vocab, 8)\n"
                         "  logits = embedding.project(embed(tgt_in), vocab: vocab, dim: 8, share: embed)\n"
                         "  ce = loss.cross_entropy(logits, tgt_out)\n"
                         "  output loss = ce.loss\n"
                         "  output logits = logits\n"
                         "}\n";
  // (append, not const char* + std::string: GCC 12 warns falsely, -Wrestrict, on the latter.)
  const CommandResult r = bench(std::string(" ").append(file.string()).append(kTinyShapes));
  fs::remove_all(dir);
  EXPECT_EQ(r.exit_code, 1);
  // Located at the model declaration, naming what the translation task expects.
  EXPECT_NE(r.err.find("lm.attn:1:1: error: the translation task needs model 'lm' to declare input 'src': ids[batch, source length]"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("attnlab: error: model lm cannot be benchmarked as the translation task"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace attnlab
