// `attnlab translate` reproduces a run's own test decoding: the run's test.src translated with the
// run's checkpoint and decode settings gives its test.hyp byte for byte, because both encode with
// train::encode_source (the checkpoint's input form) and decode with train::Translator. On a
// Multi30k subset (tokenized files with &quot; and abbreviations such as e.s.e.), --input raw
// would renormalize the tokenized text and changes lines; the default does not.
#include "data/tokenizer.h"
#include "support/run_command.h"
#include "support/tiny_experiment.h"
#include "train/translate.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace attnlab {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t differing_lines(const std::string& a, const std::string& b) {
  std::istringstream x(a), y(b);
  size_t differ = 0;
  for (std::string p, q; std::getline(x, p) && std::getline(y, q);) differ += p != q;
  return differ;
}

struct TempDir {
  fs::path path = test::make_temp_dir("attnlab-reproduce-");
  ~TempDir() { fs::remove_all(path); }
};

std::string attnlab(const std::string& args) { return std::string(ATTNLAB_EXE) + " " + args; }

std::string translate_run(const fs::path& run, const std::string& flags) {
  const auto result = test::run_command("(" + attnlab("translate --threads 2 --checkpoint '" + run.string() + "' " + flags) +
                                        " < '" + (run / "test.src").string() + "')");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return result.out;
}

TEST(TranslateReproducesRun, SyntheticRunsTestHypothesesExactly) {
  TempDir dir;
  const fs::path experiment = test::write_tiny_experiment(
      dir.path / "exp/tiny.attn",
      test::tiny_experiment_text("batch_tokens: 256, max_steps: 400, valid_every: 0, valid_bleu_sentences: 20",
                                 "decode { beam: 3, alpha: 0.6 }"),
      ATTNLAB_SOURCE_DIR);
  const auto run = test::run_command(attnlab("run '" + experiment.string() + "' --threads 2 --out '" + (dir.path / "run").string() + "'"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string expected = read_text(dir.path / "run/test.hyp");
  ASSERT_EQ(std::count(expected.begin(), expected.end(), '\n'), 20);
  EXPECT_EQ(translate_run(dir.path / "run", "--beam 3 --alpha 0.6"), expected);
}

TEST(TranslateReproducesRun, Multi30kSubsetTokenizedInputAsTheRunHadIt) {
  const fs::path multi30k = fs::path(ATTNLAB_SOURCE_DIR) / "../shared/data/multi30k";
  if (!fs::exists(multi30k / "train.lc.norm.tok.de")) GTEST_SKIP() << "no Multi30k at " << multi30k;
  TempDir dir;
  const fs::path data = dir.path / "data/multi30k";
  fs::create_directories(data);
  // 3000 training pairs, 40 dev, and 119 test lines that include &quot;, &apos; and e.s.e.
  for (const std::string language : {"de", "en"}) {
    const auto slice = [&](const std::string& from, const std::string& sed, const std::string& to) {
      ASSERT_EQ(test::run_command("(sed -n '" + sed + "' '" + (multi30k / (from + ".lc.norm.tok." + language)).string() + "' > '" +
                                  (data / (to + ".lc.norm.tok." + language)).string() + "')")
                    .exit_code,
                0);
    };
    slice("train", "1,3000p", "train");
    slice("val", "1,40p", "val");
    slice("test_2016_flickr", "220,240p;355,390p;450,460p;690,740p", "test_2016_flickr");
  }
  fs::create_directories(dir.path / "exp");
  fs::copy_file(fs::path(ATTNLAB_SOURCE_DIR) / "experiments/transformer_base.attn", dir.path / "exp/transformer_base.attn");
  std::ofstream(dir.path / "exp/small.attn")
      << "experiment small {\n"
         "  model = \"transformer_base.attn\" with { layers = 1, d_model = 32, d_ff = 64, heads = 2 }\n"
         "  data  = parallel(src: \"de\", tgt: \"en\", dir: \"multi30k\", train: \"train\", valid: \"val\",\n"
         "                   test: \"test_2016_flickr\", suffix: \".lc.norm.tok\", vocab: \"word\", min_count: 1)\n"
         "  seed  = 1\n"
         "  train {\n"
         "    adam(0.9, 0.98, 1e-9), noam(factor: 2.0, warmup: 50), label_smoothing: 0.1, dropout: 0.1,\n"
         "    batch_tokens: 1024, max_steps: 200, valid_every: 0, valid_bleu_sentences: 40\n"
         "  }\n"
         "  decode { beam: 4, alpha: 0.6 }\n"
         "}\n";
  const auto run = test::run_command(attnlab("run '" + (dir.path / "exp/small.attn").string() + "' --data '" +
                                             (dir.path / "data").string() + "' --threads 2 --out '" + (dir.path / "run").string() + "'"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string expected = read_text(dir.path / "run/test.hyp");
  ASSERT_EQ(std::count(expected.begin(), expected.end(), '\n'), 119);
  EXPECT_EQ(translate_run(dir.path / "run", "--beam 4 --alpha 0.6"), expected);
  EXPECT_EQ(translate_run(dir.path / "run", "--beam 4 --alpha 0.6 --input tokenized"), expected);
  // Raw-text normalization of tokenized input changes the sources, and so translations.
  EXPECT_GT(differing_lines(translate_run(dir.path / "run", "--beam 4 --alpha 0.6 --input raw"), expected), 0u);
}

TEST(TranslateReproducesRun, EncodeSourceNormalizesOnlyRawText) {
  const std::vector<std::string_view> corpus = {"ein schild , auf dem &quot; e.s.e. &quot; steht .", "10. januar"};
  const auto tokenizer = data::build_word_vocab(corpus);
  const std::string tokenized = "ein schild , auf dem &quot; e.s.e. &quot; steht .";
  const std::vector<int> as_is = train::encode_source(*tokenizer, tokenized, train::InputForm::kTokenized);
  EXPECT_EQ(as_is, tokenizer->encode(tokenized));
  EXPECT_EQ(tokenizer->decode(as_is), tokenized);
  // Renormalized, `&` is escaped again and `;` split off: the ids differ.
  EXPECT_NE(train::encode_source(*tokenizer, tokenized, train::InputForm::kRaw), as_is);
  EXPECT_EQ(train::parse_input_form("raw"), train::InputForm::kRaw);
  EXPECT_EQ(train::parse_input_form("tokenized"), train::InputForm::kTokenized);
  EXPECT_FALSE(train::parse_input_form("detokenized"));
  ckpt::Checkpoint checkpoint;
  EXPECT_EQ(train::checkpoint_input_form(checkpoint), train::InputForm::kRaw);
  (*checkpoint.mutable_settings())["data"] = "parallel(src: \"de\", tgt: \"en\", suffix: \".lc.norm.tok\")";
  EXPECT_EQ(train::checkpoint_input_form(checkpoint), train::InputForm::kTokenized);
  (*checkpoint.mutable_settings())["data"] = "synthetic(train: 300)";
  EXPECT_EQ(train::checkpoint_input_form(checkpoint), train::InputForm::kTokenized);
  (*checkpoint.mutable_settings())["data"] = "parallel(src: \"de\", tgt: \"en\", suffix: \"\")";
  EXPECT_EQ(train::checkpoint_input_form(checkpoint), train::InputForm::kRaw);
}

}  // namespace
}  // namespace attnlab
