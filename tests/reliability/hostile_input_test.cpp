// Hostile input given to the built attnlab as a user (or an attacker) would: arithmetic that
// overflows, flags far out of range, refused resumes, broken gzip and binary text, bad plugins,
// huge data sizes. Each case checks the message and the exit code, and where a run directory is
// involved, that no file was written or changed (docs/reliability.md lists them all).
#include "data/test_files.h"
#include "support/run_command.h"
#include "support/tiny_experiment.h"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace attnlab {
namespace {

namespace fs = std::filesystem;
using test::CommandResult;
using test::read_text_file;

const std::string kExe = ATTNLAB_EXE;
const std::string kMinDivMinusOne = "(0 - 9223372036854775807 - 1) div (0 - 1)";

struct TempDir {
  fs::path path = test::make_temp_dir("attnlab-hostile-");
  ~TempDir() { fs::remove_all(path); }
  fs::path operator/(const std::string& name) const { return path / name; }
};

CommandResult attnlab(const std::string& args) { return test::run_command(kExe + " " + args); }

// A refused command: exit code `code`, nothing on stdout, and `needle` in its error output.
void expect_refused(const CommandResult& r, const std::string& needle, int code = 1) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "missing: " << needle << "\nstderr:\n" << r.err;
}

std::string tiny_text(const std::string& train = "batch_tokens: 256, max_steps: 2, valid_every: 0, valid_bleu_sentences: 0",
                      const std::string& sections = "") {
  return test::tiny_experiment_text(train, sections);
}

fs::path tiny(const TempDir& dir, const std::string& text = tiny_text(), const std::string& name = "tiny.attn") {
  return test::write_tiny_experiment(dir / ("exp/" + name), text, ATTNLAB_SOURCE_DIR);
}

// Built by appending: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
std::string quoted(const fs::path& p) { return std::string("'").append(p.string()).append("'"); }

// ---- one arithmetic ---------------------------------------------------------------------------

TEST(HostileArithmetic, MinDivMinusOneInASetIsALocatedErrorNotSigfpe) {
  TempDir dir;
  const fs::path exp = tiny(dir);
  for (const std::string& command : {"run " + quoted(exp) + " --out " + quoted(dir / "run"), "check " + quoted(exp)}) {
    const CommandResult r = attnlab(command + " --set 'train.max_steps=" + kMinDivMinusOne + "'");
    expect_refused(r, "--set train.max_steps=" + kMinDivMinusOne + ":1:47: error: integer overflow in 'div'");
    EXPECT_NE(r.err.find("^"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "run"));
  const CommandResult mod = attnlab("check " + quoted(exp) + " --set 'train.max_steps=(0 - 9223372036854775807 - 1) mod (0 - 1) + 3'");
  EXPECT_EQ(mod.exit_code, 0) << mod.err;  // every remainder by -1 is 0
}

TEST(HostileArithmetic, InEverySectionOfAnExperimentFile) {
  TempDir dir;
  const std::map<std::string, std::string> texts = {
      {"train", tiny_text("batch_tokens: 256, max_steps: " + kMinDivMinusOne)},
      {"decode", tiny_text("batch_tokens: 256, max_steps: 2", "decode { beam: 1 + " + kMinDivMinusOne + " }")},
      {"ablate", tiny_text("batch_tokens: 256, max_steps: 2", "ablate { heads = [1, " + kMinDivMinusOne + "] }")},
      {"mul", tiny_text("batch_tokens: 256, max_steps: 4611686018427387904 * 2")},
  };
  for (const auto& [what, text] : texts) {
    const fs::path exp = tiny(dir, text, what + ".attn");
    const CommandResult r = attnlab("check " + quoted(exp));
    expect_refused(r, what + ".attn:");
    expect_refused(r, what == "mul" ? ": error: integer overflow in '*'" : ": error: integer overflow in 'div'");
  }
  std::string text = tiny_text();
  text.replace(text.find("seed: 3"), 7, "seed: " + kMinDivMinusOne);
  const CommandResult r = attnlab("run " + quoted(tiny(dir, text, "seed.attn")) + " --out " + quoted(dir / "run"));
  expect_refused(r, "seed.attn:4:");
  expect_refused(r, "integer overflow in 'div'");
}

TEST(HostileArithmetic, ModelParametersUnderParams) {
  const std::string base = std::string(ATTNLAB_SOURCE_DIR) + "/experiments/transformer_base.attn";
  expect_refused(attnlab("params " + base + " --set 'layers=" + kMinDivMinusOne + "'"), "integer overflow in 'div'");
  // Flooring: (0-7) div 2 + 10 = 6 layers (the base model), (0-7) mod 2 = 1 layer.
  auto total = [&](const std::string& set) {
    const CommandResult r = attnlab("params " + base + " --json --set '" + set + "'");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out)["total"].get<int64_t>();
  };
  EXPECT_EQ(total("layers=(0-7) div 2 + 10"), total("layers=6"));
  EXPECT_EQ(total("layers=(0-7) mod 2"), total("layers=1"));
}

TEST(HostileArithmetic, SettingsFloorLikeTheModel) {
  TempDir dir;
  const CommandResult r = attnlab("run " + quoted(tiny(dir)) + " --threads 2 --out " + quoted(dir / "run") +
                                  " --set 'train.max_steps=(0-7) div 2 + 10'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json settings = nlohmann::json::parse(read_text_file(dir / "run/settings.json"));
  EXPECT_EQ(settings["settings"]["train.max_steps"], "6");
  EXPECT_NE(r.err.find("stopped at step 6 (max_steps)"), std::string::npos) << r.err;
}

// Found by fuzzing (tests/fuzz, fuzz_experiment): noam(warmup: 1.3e44) was cast to int64_t,
// undefined behaviour (UBSan); 1e30 wrapped to -2^63, and 400.5 was cut to 400 without a word.
TEST(HostileArithmetic, ScheduleStepCountsAreWholeNumbersInRange) {
  TempDir dir;
  const std::string run = "run " + quoted(tiny(dir)) + " --out " + quoted(dir / "r") + " --set ";
  expect_refused(attnlab(run + "'train.noam=noam(warmup: 1e30)'"),
                 "--set train.noam=noam(warmup: 1e30):1:25: error: noam(warmup: ...) must be a whole number of steps in [0, "
                 "1099511627776], got 1e+30");
  expect_refused(attnlab(run + "'train.noam=noam(2.0, 400.5)'"), "noam(warmup: ...) must be a whole number of steps in [0, 1099511627776], got 400.5");
  std::string text = tiny_text();
  text.replace(text.find("noam(factor: 2.0, warmup: 10)"), 29, "cosine(warmup: 2, max_lr: 1e-3, min_lr: 0, steps: 1e31)");
  expect_refused(attnlab("run " + quoted(tiny(dir, text, "cosine.attn")) + " --out " + quoted(dir / "r")),
                 "cosine(steps: ...) must be a whole number of steps in [0, 1099511627776], got 1e+31");
  EXPECT_FALSE(fs::exists(dir / "r"));
  // A whole number written as a real is a whole number.
  const CommandResult whole = attnlab(run + "'train.noam=noam(2.0, 1e1)' --threads 2");
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  EXPECT_NE(whole.err.find("noam(factor=2, d_model="), std::string::npos) << whole.err;
  EXPECT_NE(whole.err.find(", warmup=10)"), std::string::npos) << whole.err;
}

TEST(HostileArithmetic, AblateRecordsABadVariantAsFailedAndGoesOn) {
  TempDir dir;
  const CommandResult r = attnlab("ablate " + quoted(tiny(dir)) + " --threads 2 --out " + quoted(dir / "sweep") +
                                  " --vary 'train.max_steps=" + kMinDivMinusOne + ",3'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("1 of 3 runs failed"), std::string::npos) << r.out;
  const nlohmann::json results = nlohmann::json::parse(read_text_file(dir / "sweep/results.json"));
  ASSERT_EQ(results["variants"].size(), 3u);
  EXPECT_EQ(results["variants"][0]["status"], "ok");
  EXPECT_EQ(results["variants"][1]["status"], "failed");
  EXPECT_NE(results["variants"][1]["reason"].get<std::string>().find("integer overflow in 'div'"), std::string::npos)
      << results["variants"][1]["reason"];
  EXPECT_EQ(results["variants"][2]["status"], "ok");
}

// ---- bounds on flags and settings ---------------------------------------------------------------

TEST(HostileFlags, TranslateSearchAndLengthsAreBounded) {
  const std::string translate = "translate --checkpoint /nonexistent ";
  expect_refused(attnlab(translate + "--max-len-extra 4611686018427387904"), "--max-len-extra: must be in [0, 10000], got 4611686018427387904");
  expect_refused(attnlab(translate + "--max-len-extra 99999999999999999999"), "--max-len-extra: must be in [0, 10000]");
  expect_refused(attnlab(translate + "--max-len-extra 1e6"), "--max-len-extra: must be a whole number in [0, 10000], got '1e6'");
  expect_refused(attnlab(translate + "--beam 100000"), "--beam: must be in [1, 64], got 100000");
  expect_refused(attnlab(translate + "--alpha -1"), "--alpha: must be in [0, 10], got -1");
  expect_refused(attnlab(translate + "--alpha nan"), "--alpha: must be a number in [0, 10], got 'nan'");
  expect_refused(attnlab(translate + "--batch-sentences 0"), "--batch-sentences: must be in [1, 4096], got 0");
  expect_refused(attnlab(translate + "--max-tokens 0"), "--max-tokens: must be in [1, 100000], got 0");
}

TEST(HostileFlags, ThreadsAndSeedsAreBoundedWithTheLimitNamed) {
  const CommandResult many = attnlab("run --threads 100000");
  expect_refused(many, "--threads: must be in [0, ");
  expect_refused(many, " cores; 0 uses every core), got 100000");
  const CommandResult abc = attnlab("translate --checkpoint x --threads abc");
  expect_refused(abc, "--threads: must be a whole number in [0, ");
  EXPECT_LT(abc.err.size(), 200u) << abc.err;  // no 309-digit range
  expect_refused(attnlab("run --seed -1"), "--seed: must be in [0, 9223372036854775807], got -1");
  expect_refused(attnlab("ablate --seed 18446744073709551615"), "--seed: must be in [0, 9223372036854775807]");
  expect_refused(attnlab("run --average 100000"), "--average: must be in [0, 1000], got 100000");
}

TEST(HostileFlags, RunFlagsThatNameNoFileOrAreNotNumbers) {
  TempDir dir;
  const fs::path exp = tiny(dir);
  const std::string run = "run " + quoted(exp) + " --out " + quoted(dir / "r") + " ";
  expect_refused(attnlab(run + "--rank-timeout nan"), "--rank-timeout: must be a number in [0.1, 1e+06], got 'nan'");  // was accepted
  expect_refused(attnlab(run + "--bucket-mb 0"), "--bucket-mb: must be in [0.001, 4096], got 0");
  expect_refused(attnlab(run + "--init-from /dev/zero"), "--init-from /dev/zero: not a regular file");  // was read without end
  expect_refused(attnlab(run + "--init-from " + quoted(dir.path)), "--init-from " + dir.path.string() + ": is a directory");
  EXPECT_FALSE(fs::exists(dir / "r"));
  test::write_file(dir / "file", "");
  expect_refused(attnlab("run " + quoted(exp) + " --out " + quoted(dir / "file" / "r")),
                 "--out " + (dir / "file" / "r").string() + ": cannot create the run directory: Not a directory");
}

TEST(HostileFlags, AnUnknownGemmKernelIsAnErrorOfTheInvocation) {
  const CommandResult r = test::run_command("ATTNLAB_GEMM_KERNEL=nonsense " + kExe + " check /nonexistent.attn");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("attnlab: error: ATTNLAB_GEMM_KERNEL='nonsense' is not a GEMM kernel this CPU can run: expected auto, ", 0), 0u)
      << r.err;  // before the command, not from inside a node's forward
}

TEST(HostileFlags, AnEmptyPathIsRefusedByItsFlag) {
  // An empty path used to reach the file system ("--out : cannot write : rename of ./..tmp.N.0").
  for (const auto& [args, flag] : std::vector<std::pair<std::string, std::string>>{
           {"attention --checkpoint x --src a --out ''", "--out"},
           {"export --checkpoint x --format safetensors --out ''", "--out"},
           {"translate --checkpoint ''", "--checkpoint"},
           {"bleu --ref ''", "--ref"},
           {"bleu --ref x --hyp ''", "--hyp"},
           {"run --out ''", "--out"},
           {"run --init-from ''", "--init-from"},
           {"run --data ''", "--data"},
           {"ablate --out ''", "--out"},
           {"plugins --plugin-path ''", "--plugin-path"},
       }) {
    const CommandResult r = attnlab(args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_EQ(r.err, "attnlab: error: " + flag + ": must not be empty (give a path)\n") << args;
  }
}

TEST(HostileFlags, FileSettingsUseTheSameBounds) {
  TempDir dir;
  const fs::path exp = tiny(dir);
  expect_refused(attnlab("run " + quoted(exp) + " --out " + quoted(dir / "r") + " --set decode.beam=100000"),
                 "decode.beam = 100000 is out of range [1, 64]");
  expect_refused(attnlab("run " + quoted(exp) + " --out " + quoted(dir / "r") + " --set 'decode.alpha=0-1'"),
                 "decode.alpha = -1 is out of range [0, 10]");
  expect_refused(attnlab("run " + quoted(exp) + " --out " + quoted(dir / "r") + " --set decode.max_length_extra=4611686018427387904"),
                 "decode.max_length_extra = 4611686018427387904 is out of range [0, 10000]");
  std::string text = tiny_text();
  text.replace(text.find("seed  = 5"), 9, "seed  = 0 - 1");
  expect_refused(attnlab("run " + quoted(tiny(dir, text, "seed.attn")) + " --out " + quoted(dir / "r")),
                 "seed must be a whole number in [0, 9223372036854775807], got -1");
  EXPECT_FALSE(fs::exists(dir / "r"));
}

TEST(HostileFlags, HugeSyntheticSizesAreClearErrors) {
  TempDir dir;
  std::string text = tiny_text();
  text.replace(text.find("train: 300"), 10, "train: 9223372036854775807");
  const CommandResult r = attnlab("run " + quoted(tiny(dir, text)) + " --out " + quoted(dir / "r"));
  expect_refused(r, "data: train must be a whole number in [1, 10000000], got 9223372036854775807");
  EXPECT_EQ(r.err.find("vector::reserve"), std::string::npos) << r.err;
}

TEST(HostileFlags, AverageMoreCheckpointsThanTheRunKeepsIsRefusedBeforeTraining) {
  TempDir dir;
  const CommandResult r = attnlab("run " + quoted(tiny(dir)) + " --out " + quoted(dir / "r") + " --average 100");
  expect_refused(r, "--average 100: the run keeps only its last 5 step checkpoints (train.keep_checkpoints)");
  EXPECT_FALSE(fs::exists(dir / "r"));
}

// ---- nothing is written before a run is accepted -------------------------------------------------

std::map<std::string, std::string> snapshot(const fs::path& run) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(run))
    if (e.is_regular_file()) files[fs::relative(e.path(), run).string()] = read_text_file(e.path());
  return files;
}

TEST(HostileResume, EveryRefusalLeavesTheRunDirectoryUntouched) {
  TempDir dir;
  const fs::path exp = tiny(dir);
  const fs::path run = dir / "run";
  const std::string base = quoted(exp) + " --threads 2 --out " + quoted(run);
  ASSERT_EQ(attnlab("run " + base).exit_code, 0);
  const auto before = snapshot(run);
  ASSERT_TRUE(before.count("experiment.attn") && before.count("settings.json") && before.count("command.txt"));

  const fs::path other = tiny(dir, tiny_text("batch_tokens: 128, max_steps: 2, valid_every: 0, valid_bleu_sentences: 0"), "other.attn");
  struct Refusal { std::string args, needle; };
  for (const Refusal& refusal : {
           Refusal{"run " + quoted(other) + " --threads 2 --out " + quoted(run) + " --resume", "belongs to another experiment"},
           Refusal{"run " + base + " --resume --seed 9", "the seed (5 then, 9 now)"},
           Refusal{"run " + base + " --resume --set heads=1", "the overrides"},
           Refusal{"run " + base + " --resume --set train.max_steps=abc", "train.max_steps"},
           Refusal{"run " + base + " --resume --average 100", "--average 100: the run keeps only"},
           Refusal{"run " + base, "already holds a run"},
           Refusal{"run " + base + " --resume --set 'train.max_steps=" + kMinDivMinusOne + "'", "integer overflow in 'div'"},
       }) {
    expect_refused(attnlab(refusal.args), refusal.needle);
    EXPECT_EQ(snapshot(run), before) << "changed by: " << refusal.args;
  }
  // A refused resume of a directory without checkpoints creates nothing either.
  expect_refused(attnlab("run " + quoted(exp) + " --out " + quoted(dir / "empty") + " --resume"), "holds no checkpoints/ directory");
  EXPECT_FALSE(fs::exists(dir / "empty"));
}

int count_events(const fs::path& metrics, const std::string& event) {
  std::ifstream in(metrics);
  int n = 0;
  for (std::string line; std::getline(in, line);)
    if (nlohmann::json::parse(line)["event"] == event) ++n;
  return n;
}

TEST(HostileResume, ResumingAFinishedRunDoesNotRepeatItsTestEvent) {
  TempDir dir;
  const std::string args = "run " + quoted(tiny(dir)) + " --threads 2 --out " + quoted(dir / "run");
  ASSERT_EQ(attnlab(args).exit_code, 0);
  ASSERT_EQ(count_events(dir / "run/metrics.jsonl", "test"), 1);
  for (int again = 0; again < 2; ++again) {
    const CommandResult r = attnlab(args + " --resume");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(count_events(dir / "run/metrics.jsonl", "test"), 1);
    EXPECT_EQ(count_events(dir / "run/metrics.jsonl", "train"), 2);
  }
}

// ---- data that is not what it claims ----------------------------------------------------------

TEST(HostileData, SentencePieceVocabularyBeyondTheCorpusIsRefusedBeforeTraining) {
  TempDir dir;
  std::ostringstream de, en;
  for (int i = 0; i < 60; ++i) {
    de << "ein mann " << i << " fährt ein rotes auto nummer " << i * 7 << " .\n";
    en << "a man " << i << " drives a red car number " << i * 7 << " .\n";
  }
  fs::create_directories(dir / "data");
  for (const char* part : {"train", "val", "test"}) {
    test::write_file(dir / ("data/" + std::string(part) + ".de"), de.str());
    test::write_file(dir / ("data/" + std::string(part) + ".en"), en.str());
  }
  std::string text = tiny_text();
  text.replace(text.find("synthetic(train: 300, dev: 20, test: 20, seed: 3)"), 49,
               "parallel(src: \"de\", tgt: \"en\", vocab: \"sentencepiece\", vocab_size: 4000)");
  const CommandResult r = attnlab("run " + quoted(tiny(dir, text)) + " --data " + quoted(dir / "data") + " --out " + quoted(dir / "r"));
  expect_refused(r, "SentencePiece vocab_size 4000 is more than this corpus is sure to give");
  EXPECT_FALSE(fs::exists(dir / "r"));
  text.replace(text.find("vocab_size: 4000"), 16, "vocab_size: 100000000");
  expect_refused(attnlab("run " + quoted(tiny(dir, text, "huge.attn")) + " --data " + quoted(dir / "data")),
                 "data: vocab_size must be a whole number in [16, 1000000], got 100000000");
}

TEST(HostileData, BleuRefusesBinaryAndBrokenInput) {
  TempDir dir;
  const std::string ref = test::write_file(dir / "ref.txt", "a b c d\n");
  const std::string binary = test::write_file(dir / "bin", std::string("a b\0c d\n", 8));
  expect_refused(attnlab("bleu --ref " + binary + " --hyp " + binary), binary + ":1:4: control byte 0x00 in text");
  const std::string latin1 = test::write_file(dir / "latin1", "caf\xe9\n");
  expect_refused(attnlab("bleu --ref " + ref + " --hyp " + latin1), latin1 + ":1:4: invalid UTF-8 (byte 0xE9)");
  const std::string control = test::write_file(dir / "control", "a\001b\n");
  expect_refused(test::run_command("(" + kExe + " bleu --ref " + ref + " < " + control + ")"),
                 "standard input:1:2: control byte 0x01 in text");
  const std::string random_gz = test::write_file(dir / "random.gz", "\x37\x91\x02 not gzip at all\n");
  expect_refused(attnlab("bleu --ref " + random_gz + " --hyp " + ref), random_gz + ": not gzip data");
  const std::string gz = test::write_gzip(dir / "ref.gz", "a b c d\n");
  test::write_file(dir / "trailing.gz", read_text_file(gz) + "GARBAGE");
  expect_refused(attnlab("bleu --ref " + (dir / "trailing.gz").string() + " --hyp " + ref),
                 "trailing.gz: corrupt gzip data: 7 byte(s) of trailing data after the gzip stream");
  const CommandResult ok = attnlab("bleu --ref " + gz + " --hyp " + ref);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find(" = 100.00 "), std::string::npos) << ok.out;
}

// Found by fuzzing (tests/fuzz, fuzz_experiment): a model name longer than the system allows made
// std::filesystem throw out of the experiment reader.
TEST(HostileData, AModelFileNameTooLongIsADiagnostic) {
  TempDir dir;
  const fs::path exp = dir / "long.attn";
  test::write_file(exp, "experiment e {\n  model = \"" + std::string(5000, 'm') + ".attn\"\n}\n");
  const CommandResult r = attnlab("check " + quoted(exp));
  expect_refused(r, "long.attn:2:11: error: model file '");
  expect_refused(r, "' cannot be read: File name too long");
}

// Inputs without end: a model "file" that never ends, a line of standard input that never ends.
TEST(HostileData, EndlessInputsStopAtTheirBoundWithAMessage) {
  const CommandResult model = attnlab("graph /dev/zero");
  expect_refused(model, "/dev/zero: error: file is larger than 1048576 bytes");
  TempDir dir;
  const fs::path imports = dir / "imports.attn";
  test::write_file(imports, "import \"/dev/zero\"\n");
  expect_refused(attnlab("check " + quoted(imports)), "/dev/zero: error: file is larger than 1048576 bytes");
  const CommandResult line = test::run_command("(" + kExe + " bleu --ref /dev/null < /dev/zero)");
  expect_refused(line, "attnlab: error: standard input:1: a line longer than 1 MiB");
  expect_refused(attnlab("bleu --ref /dev/zero --hyp " + quoted(imports)), "attnlab: error: /dev/zero:1: a line longer than 1 MiB");
  std::string two_mib(2 << 20, 'a');
  const std::string file = test::write_file(dir / "long.txt", "a b\n" + two_mib + "\n");
  expect_refused(attnlab("bleu --ref " + file + " --hyp " + file), "attnlab: error: " + file + ":2: a line longer than 1 MiB");
  const std::string ref = test::write_file(dir / "ref.txt", "a b\nc d\n");
  expect_refused(test::run_command("(" + kExe + " bleu --ref " + ref + " < " + file + ")"),
                 "attnlab: error: standard input:2: a line longer than 1 MiB");
}

// ---- plugins ------------------------------------------------------------------------------------

TEST(HostilePlugins, BrokenLibrariesReportTheLoadersReason) {
  TempDir dir;
  fs::create_directories(dir / "random");
  std::string bytes(4096, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 2654435761u) >> 13);
  test::write_file(dir / "random/libattnlab_plugin_random.so", bytes);
  expect_refused(attnlab("plugins --plugin-path " + quoted(dir / "random")), "cannot be loaded as a shared library (invalid ELF header)", 2);
  fs::create_directories(dir / "empty");
  test::write_file(dir / "empty/libattnlab_plugin_empty.so", "");
  expect_refused(attnlab("plugins --plugin-path " + quoted(dir / "empty")), "cannot be loaded as a shared library (file too short)", 2);
  expect_refused(attnlab("plugins --plugin-path " + quoted(dir / "nowhere")), "--plugin-path " + (dir / "nowhere").string() + ": not a directory", 2);
}

}  // namespace
}  // namespace attnlab
