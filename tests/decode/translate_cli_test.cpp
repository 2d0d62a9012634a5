// `attnlab translate` end to end: a checkpoint written here (small random model, word tokenizer)
// translates two raw lines into two lines equal to the library decoder's; missing, corrupt and
// incomplete checkpoints each give one clear error line and exit code 1.
#include "data/tokenizer.h"
#include "eval/decoder.h"
#include "exec/serial_executor.h"
#include "model_fixture.h"
#include "support/run_command.h"
#include "train/checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace attnlab {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kCorpus = {"a man rides a horse .", "the dog runs in the park .",
                                          "ein mann reitet ein pferd .", "der hund läuft im park ."};

struct Fixture {
  fs::path dir = test::make_temp_dir("attnlab-translate-");
  ir::GraphDef graph = test::base_graph(test::small_sets());
  std::unique_ptr<exec::Model> model = test::make_model(graph, 31);
  std::unique_ptr<data::Tokenizer> tokenizer;

  Fixture() {
    std::vector<std::string_view> views(kCorpus.begin(), kCorpus.end());
    tokenizer = data::build_word_vocab(views);
  }
  ~Fixture() { fs::remove_all(dir); }

  ckpt::Checkpoint checkpoint(bool with_graph = true, bool with_tokenizer = true) const {
    ckpt::Checkpoint c;
    if (with_graph) c.set_graph(graph.SerializeAsString());
    if (with_tokenizer) {
      c.set_tokenizer_kind(tokenizer->kind());
      c.set_tokenizer(tokenizer->serialize());
    }
    std::vector<train::ParamRef> params;
    for (exec::Parameter& p : model->parameters()) params.push_back({p.name, p.value.view(), p.grad.view()});
    train::store_parameters(c, params);
    c.set_step(10);
    return c;
  }

  fs::path input(const std::string& text) const {
    const fs::path file = dir / "input.txt";
    std::ofstream(file) << text;
    return file;
  }
};

std::string translate(const fs::path& checkpoint, const fs::path& input, const std::string& flags = "") {
  return std::string("(") + ATTNLAB_EXE + " translate --threads 2 --checkpoint '" + checkpoint.string() + "' " + flags +
         " < '" + input.string() + "')";
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(TranslateCommand, RunDirectoryTranslatesEachLineLikeTheLibrary) {
  Fixture f;
  fs::create_directories(f.dir / "run" / "checkpoints");
  train::write_checkpoint(f.dir / "run" / "checkpoints" / "best.ckpt", f.checkpoint());
  const std::vector<std::string> raw = {"A man rides a horse.", "The dog runs!"};
  const fs::path input = f.input(raw[0] + "\n" + raw[1] + "\n");

  for (int beam : {1, 3}) {
    const auto result = test::run_command(
        translate(f.dir / "run", input, "--beam " + std::to_string(beam) + " --alpha 0.6 --max-len-extra 4"));
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const auto out = lines_of(result.out);
    ASSERT_EQ(out.size(), 2u) << result.out;

    // The same translation in-process from the same weights and tokenizer.
    exec::SerialExecutor executor;
    eval::Decoder decoder(*f.model, executor);
    std::vector<std::vector<int>> sources;
    for (const std::string& line : raw) sources.push_back(f.tokenizer->encode(data::normalize_for_word_vocab(line)));
    eval::DecodeOptions options;
    options.beam = beam;
    options.max_len_extra = 4;
    const auto expected = decoder.translate(sources, options);
    for (size_t i = 0; i < raw.size(); ++i)
      EXPECT_EQ(out[i], f.tokenizer->decode(expected[i].tokens)) << "beam " << beam << " line " << i;

    // --scores: the text, then the token ids and their summed log-probability (with </s>).
    const auto scored = test::run_command(translate(f.dir / "run", input,
                                                    "--beam " + std::to_string(beam) + " --alpha 0.6 --max-len-extra 4 --scores"));
    ASSERT_EQ(scored.exit_code, 0) << scored.err;
    const auto scored_lines = lines_of(scored.out);
    ASSERT_EQ(scored_lines.size(), 2u) << scored.out;
    for (size_t i = 0; i < raw.size(); ++i) {
      std::string ids = "ids";
      for (const int id : expected[i].tokens) ids.append(" ").append(std::to_string(id));
      const std::string& line = scored_lines[i];
      const size_t tab = line.find('\t'), second = line.find('\t', tab + 1);
      ASSERT_NE(second, std::string::npos) << line;
      EXPECT_EQ(line.substr(0, tab), out[i]);
      EXPECT_EQ(line.substr(tab + 1, second - tab - 1), ids);
      ASSERT_EQ(line.compare(second + 1, 9, "log_prob "), 0) << line;
      EXPECT_NEAR(std::stod(line.substr(second + 10)), expected[i].log_prob, 1e-4) << line;
      EXPECT_LT(expected[i].log_prob, 0.0);
    }
  }
}

TEST(TranslateCommand, CheckpointFileAndEmptyLines) {
  Fixture f;
  const fs::path file = f.dir / "model.ckpt";
  train::write_checkpoint(file, f.checkpoint());
  const auto result = test::run_command(translate(file, f.input("\na horse\n\n"), "--beam 2 --max-len-extra 2"));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(lines_of(result.out).size(), 3u) << result.out;
}

void expect_one_line_error(const test::CommandResult& result, const std::string& needle) {
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
  EXPECT_EQ(result.err.rfind("attnlab: error: ", 0), 0u) << result.err;
  EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
  EXPECT_NE(result.err.find(needle), std::string::npos) << result.err;
}

TEST(TranslateCommand, MissingCheckpoint) {
  Fixture f;
  expect_one_line_error(test::run_command(translate(f.dir / "nowhere", f.input("a horse\n"))),
                        "no such file or directory");
  fs::create_directories(f.dir / "empty_run");
  expect_one_line_error(test::run_command(translate(f.dir / "empty_run", f.input("a horse\n"))), "no checkpoint in");
}

TEST(TranslateCommand, CorruptCheckpoint) {
  Fixture f;
  const fs::path garbage = f.dir / "garbage.ckpt";
  std::ofstream(garbage) << "this is not a checkpoint at all";
  expect_one_line_error(test::run_command(translate(garbage, f.input("a horse\n"))), "checkpoint " + garbage.string());

  // A real checkpoint cut short: the checkpoint module's "truncated" message.
  const fs::path good = f.dir / "good.ckpt";
  train::write_checkpoint(good, f.checkpoint());
  const fs::path cut = f.dir / "cut.ckpt";
  fs::copy_file(good, cut);
  fs::resize_file(cut, fs::file_size(good) / 2);
  const auto result = test::run_command(translate(cut, f.input("a horse\n")));
  expect_one_line_error(result, "truncated");
}

TEST(TranslateCommand, CheckpointWithoutGraph) {
  Fixture f;
  const fs::path file = f.dir / "nograph.ckpt";
  train::write_checkpoint(file, f.checkpoint(false, true));
  expect_one_line_error(test::run_command(translate(file, f.input("a horse\n"))), "no model graph");
}

TEST(TranslateCommand, CheckpointWithoutTokenizer) {
  Fixture f;
  const fs::path file = f.dir / "notok.ckpt";
  train::write_checkpoint(file, f.checkpoint(true, false));
  expect_one_line_error(test::run_command(translate(file, f.input("a horse\n"))), "no tokenizer");
}

// Translating "a horse" with a complete checkpoint and `flags` is refused with `message`.
void expect_flag_refused(const std::string& flags, const std::string& message) {
  Fixture f;
  const fs::path file = f.dir / "model.ckpt";
  train::write_checkpoint(file, f.checkpoint());
  expect_one_line_error(test::run_command(translate(file, f.input("a horse\n"), flags)), message);
}

TEST(TranslateCommand, BadBeam) { expect_flag_refused("--beam 0", "--beam: must be in [1, 64], got 0"); }

TEST(TranslateCommand, BadInputForm) {
  expect_flag_refused("--input detokenized", "attnlab: error: --input: must be raw or tokenized, got 'detokenized'");
  const auto help = test::run_command(std::string(ATTNLAB_EXE) + " translate --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--input"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--scores"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace attnlab

namespace attnlab {
namespace {

TEST(TranslateCommand, OverLongLinesAreCutWithOneCountedWarning) {
  Fixture f;
  const fs::path file = f.dir / "model.ckpt";
  train::write_checkpoint(file, f.checkpoint());
  std::string long_line;
  for (int i = 0; i < 5000; ++i) long_line += "a horse ";
  const auto result = test::run_command(translate(file, f.input("a horse\n" + long_line + "\n" + long_line + "\n"), "--max-tokens 40"));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(lines_of(result.out).size(), 3u);
  EXPECT_NE(result.err.find("warning: standard input: 2 line(s) longer than 40 tokens translated from their first 40 tokens only "
                            "(first at line 2; raise --max-tokens to keep more)"),
            std::string::npos)
      << result.err;
}

TEST(TranslateCommand, InputThatIsNotTextIsRefusedWithItsLine) {
  Fixture f;
  const fs::path file = f.dir / "model.ckpt";
  train::write_checkpoint(file, f.checkpoint());
  expect_one_line_error(test::run_command(translate(file, f.input("a horse\nthe d\xffg\n"))),
                        "standard input:2:6: invalid UTF-8 (byte 0xFF)");
  expect_one_line_error(test::run_command(translate(file, f.input(std::string("a horse\0\n", 9)))),
                        "standard input:1:8: control byte 0x00 in text");
}

TEST(TranslateCommand, NonFiniteWeightsAreRefusedNamingTheParameter) {
  Fixture f;
  ckpt::Checkpoint c = f.checkpoint();
  ASSERT_GT(c.parameters_size(), 1);
  ckpt::TensorData* t = c.mutable_parameters(1);
  ASSERT_GT(t->data_size(), 3);
  t->set_data(3, std::numeric_limits<float>::quiet_NaN());
  const fs::path file = f.dir / "nan.ckpt";
  train::write_checkpoint(file, c);
  expect_one_line_error(test::run_command(translate(file, f.input("a horse\n"))),
                        "parameter '" + t->name() + "' holds a non-finite value (nan at index 3)");
  t->set_data(3, -std::numeric_limits<float>::infinity());
  train::write_checkpoint(file, c);
  expect_one_line_error(test::run_command(translate(file, f.input("a horse\n"))), "(-inf at index 3)");
}

}  // namespace
}  // namespace attnlab
