#include "eval/bleu.h"
#include "support/run_command.h"
#include "test_files.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

using namespace attnlab;
using attnlab::test::run_command;
using attnlab::test::TempDir;
using attnlab::test::write_file;

// Each expected line below was computed by hand from the definition (multi-bleu.perl's counts).

TEST(Bleu, PerfectMatchIs100) {
  const eval::BleuScore s = eval::corpus_bleu({"the cat sat on the mat"}, {"the cat sat on the mat"});
  EXPECT_DOUBLE_EQ(s.bleu, 100.0);
  EXPECT_EQ(s.to_string(), "BLEU = 100.00, 100.0/100.0/100.0/100.0 (BP=1.000, ratio=1.000, hyp_len=6, ref_len=6)");
}

TEST(Bleu, RepeatedNgramsAreClippedByTheReferenceCount) {
  // unigrams: "a" twice in the hypothesis but once in the reference → 4/5 (not 5/5);
  // bigrams 3/4, trigrams 2/3, 4-grams 1/2; BLEU = (0.8·0.75·⅔·0.5)^¼ = 0.2^¼ = 0.66874.
  const eval::BleuScore s = eval::corpus_bleu({"a a b c d"}, {"a b c d e"});
  EXPECT_NEAR(s.bleu, 100.0 * std::pow(0.2, 0.25), 1e-9);
  EXPECT_EQ(s.to_string(), "BLEU = 66.87, 80.0/75.0/66.7/50.0 (BP=1.000, ratio=1.000, hyp_len=5, ref_len=5)");
}

TEST(Bleu, BrevityPenaltyWhenTheHypothesisIsShorter) {
  // All precisions 1; BP = exp(1 − 6/4) = exp(−0.5) = 0.60653.
  const eval::BleuScore s = eval::corpus_bleu({"a b c d"}, {"a b c d e f"});
  EXPECT_NEAR(s.brevity_penalty, std::exp(-0.5), 1e-12);
  EXPECT_EQ(s.to_string(), "BLEU = 60.65, 100.0/100.0/100.0/100.0 (BP=0.607, ratio=0.667, hyp_len=4, ref_len=6)");
  // A longer hypothesis has no penalty (only lower precision).
  EXPECT_DOUBLE_EQ(eval::corpus_bleu({"a b c d e f g"}, {"a b c d e f"}).brevity_penalty, 1.0);
}

TEST(Bleu, AnyZeroPrecisionGivesZero) {
  const eval::BleuScore s = eval::corpus_bleu({"a b c"}, {"a c b"});
  EXPECT_EQ(s.bleu, 0.0);
  EXPECT_EQ(s.to_string(), "BLEU = 0.00, 100.0/0.0/0.0/0.0 (BP=1.000, ratio=1.000, hyp_len=3, ref_len=3)");
  // Too short for any 4-gram: also zero (no smoothing).
  EXPECT_EQ(eval::corpus_bleu({"a b c"}, {"a b c"}).bleu, 0.0);
}

TEST(Bleu, CountsAreSummedOverTheCorpusBeforeDividing) {
  // unigrams (4+1)/(4+2), bigrams 3/4, trigrams 2/2, 4-grams 1/1 → (5/6 · 3/4)^¼ = 0.625^¼.
  const eval::BleuScore s = eval::corpus_bleu({"a b c d", "x y"}, {"a b c d", "x z"});
  EXPECT_NEAR(s.bleu, 100.0 * std::pow(0.625, 0.25), 1e-9);
  EXPECT_EQ(s.to_string(), "BLEU = 88.91, 83.3/75.0/100.0/100.0 (BP=1.000, ratio=1.000, hyp_len=6, ref_len=6)");
}

TEST(Bleu, CaseSensitiveWhitespaceTokenized) {
  EXPECT_EQ(eval::corpus_bleu({"  the\tcat sat   down "}, {"the cat sat down"}).bleu, 100.0);
  EXPECT_LT(eval::corpus_bleu({"The cat sat down"}, {"the cat sat down"}).precisions[0], 100.0);
}

TEST(Bleu, DegenerateInputs) {
  EXPECT_THROW(eval::corpus_bleu({"a"}, {"a", "b"}), std::invalid_argument);
  EXPECT_THROW(eval::corpus_bleu({"a"}, {""}), std::invalid_argument);
  const eval::BleuScore empty_hyp = eval::corpus_bleu({""}, {"a b c d"});
  EXPECT_EQ(empty_hyp.bleu, 0.0);
  EXPECT_EQ(empty_hyp.brevity_penalty, 0.0);
}

class BleuCommand : public ::testing::Test {
 protected:
  TempDir dir;
  std::string ref = write_file(dir / "ref.txt", "a b c d\nx z\n");
  std::string hyp = write_file(dir / "hyp.txt", "a b c d\nx y\n");
};

// `attnlab bleu` prints sacreBLEU's text line; on tokenized text `--tokenize none` gives
// multi-bleu.perl's figure (88.91 here, as corpus_bleu above).
TEST_F(BleuCommand, TokenizeNoneGivesTheMultiBleuFigure) {
  const auto result = run_command(std::string(ATTNLAB_EXE) + " bleu --tokenize none --ref " + ref + " --hyp " + hyp);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "BLEU|nrefs:1|case:mixed|eff:no|tok:none|smooth:exp|version:attnlab-sacrebleu2 = 88.91 "
            "83.3/75.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)\n");
  // Where a precision is zero, multi-bleu.perl's 0 needs `--smooth none` as well.
  const std::string short_ref = write_file(dir / "short_ref.txt", "a b c\n");
  const std::string short_hyp = write_file(dir / "short_hyp.txt", "a b c\n");
  const auto unsmoothed = run_command(std::string(ATTNLAB_EXE) + " bleu --tokenize none --smooth none --ref " +
                                      short_ref + " --hyp " + short_hyp);
  EXPECT_EQ(unsmoothed.exit_code, 0) << unsmoothed.err;
  EXPECT_NE(unsmoothed.out.find(" = 0.00 100.0/100.0/100.0/0.0 "), std::string::npos) << unsmoothed.out;
  EXPECT_EQ(eval::corpus_bleu({"a b c"}, {"a b c"}).bleu, 0.0);
}

TEST_F(BleuCommand, ReadsTheHypothesisFromStandardInput) {
  const auto result = run_command("sh -c '" + std::string(ATTNLAB_EXE) + " bleu --tokenize none --ref " + ref + " < " + hyp + "'");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find(" = 88.91 83.3/75.0/100.0/100.0 "), std::string::npos) << result.out;
}

// sacreBLEU's README example (README.md, "Using the Python API"): two reference streams, default
// settings: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)".
class SacreBleuCommand : public ::testing::Test {
 protected:
  TempDir dir;
  std::string ref1 = write_file(dir / "ref1.txt", "The dog bit the man.\nIt was not unexpected.\nThe man bit him first.\n");
  std::string ref2 = write_file(dir / "ref2.txt", "The dog had bit the man.\nNo one was surprised.\nThe man had bitten the dog.\n");
  std::string hyp = write_file(dir / "hyp.txt", "The dog bit the man.\nIt wasn't surprising.\nThe man had just bitten him.\n");
  std::string bleu(const std::string& flags) const {
    return std::string(ATTNLAB_EXE) + " bleu --ref " + ref1 + " --ref " + ref2 + " --hyp " + hyp + " " + flags;
  }
};

TEST_F(SacreBleuCommand, SeveralReferencesAndMetricsWithSignatures) {
  const auto result = run_command(bleu("--metric bleu,chrf,chrf++"));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  std::istringstream lines(result.out);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:attnlab-sacrebleu2 = 48.53 "
                  "82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
  std::getline(lines, line);
  // chrF2 59.73 and chrF2++ 59.15 are what sacreBLEU 2.6.0 gives on the same files.
  EXPECT_EQ(line, "chrF2|nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:attnlab-sacrebleu2 = 59.73");
  std::getline(lines, line);
  EXPECT_EQ(line, "chrF2++|nrefs:2|case:mixed|eff:yes|nc:6|nw:2|space:no|version:attnlab-sacrebleu2 = 59.15");
}

TEST_F(SacreBleuCommand, TokenizerSmoothingAndCaseReachTheScore) {
  // test/test_bleu.py::test_corpus_bleu: intl gives 43.92 on the same data.
  auto result = run_command(bleu("--tokenize intl"));
  EXPECT_NE(result.out.find("|tok:intl|smooth:exp|version:attnlab-sacrebleu2 = 43.92 "), std::string::npos) << result.out;
  result = run_command(bleu("--smooth floor --smooth-value 0.5 --lowercase"));
  EXPECT_NE(result.out.find("nrefs:2|case:lc|eff:no|tok:13a|smooth:floor[0.50]|"), std::string::npos) << result.out;
}

TEST_F(SacreBleuCommand, JsonIsOneObjectKeyedByMetric) {
  const auto result = run_command(bleu("--metric bleu,chrf --json"));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const auto json = nlohmann::json::parse(result.out);
  EXPECT_NEAR(json["bleu"]["score"].get<double>(), 48.530827, 1e-5);
  EXPECT_EQ(json["bleu"]["tok"], "13a");
  EXPECT_EQ(json["bleu"]["nrefs"], "2");
  EXPECT_EQ(json["bleu"]["hyp_len"], 17);
  EXPECT_EQ(json["bleu"]["ref_len"], 18);
  EXPECT_EQ(json["bleu"]["verbose_score"], "82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
  EXPECT_EQ(json["chrf"]["name"], "chrF2");
  EXPECT_EQ(json["chrf"]["nc"], "6");
}

TEST_F(SacreBleuCommand, BadFlagValuesAreNamed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--metric bleu,ter", "attnlab: error: --metric: 'ter' is not a metric (bleu, chrf, chrf++; separated by commas)\n"},
      {"--metric bleu,bleu", "attnlab: error: --metric: 'bleu' is given twice\n"},
      {"--metric ''", "attnlab: error: --metric: no metric given (bleu, chrf, chrf++)\n"},
      {"--tokenize moses", "attnlab: error: --tokenize: must be 13a, intl, char or none, got 'moses'\n"},
      {"--smooth laplace", "attnlab: error: --smooth: must be exp, floor, add-k or none, got 'laplace'\n"},
      {"--smooth-value 0.5", "attnlab: error: --smooth-value: only floor and add-k smoothing take a value (--smooth is exp)\n"},
      {"--smooth floor --smooth-value -1",
       "attnlab: error: --smooth-value: Value -1 not in range 0.000000 to 1000000.000000\n"},
      {"--smooth floor --smooth-value abc",
       "attnlab: error: --smooth-value: Value abc not in range 0.000000 to 1000000.000000\n"}};
  for (const auto& [flags, message] : cases) {
    const auto result = run_command(bleu(flags));
    EXPECT_EQ(result.exit_code, 1) << flags;
    EXPECT_EQ(result.err, message) << flags;
    EXPECT_EQ(result.out, "") << flags;
  }
  const std::string longer = write_file(dir / "longer.txt", "a\nb\nc\nd\n");
  const auto result = run_command(std::string(ATTNLAB_EXE) + " bleu --ref " + ref1 + " --ref " + longer + " --hyp " + hyp);
  EXPECT_EQ(result.err, "attnlab: error: line counts differ: " + longer + " has 4 lines, " + hyp + " has 3 lines\n");
}

TEST_F(SacreBleuCommand, EveryFlagHasAHelpLine) {
  const auto result = run_command(std::string(ATTNLAB_EXE) + " bleu --help");
  EXPECT_EQ(result.exit_code, 0);
  for (const char* flag : {"--ref", "--hyp", "--metric", "--tokenize", "--smooth ", "--smooth-value", "--lowercase", "--json"})
    EXPECT_NE(result.out.find(flag), std::string::npos) << flag;
}

TEST_F(BleuCommand, MissingFilesAreNamed) {
  const std::string missing = (dir / "nope.txt").string();
  auto result = run_command(std::string(ATTNLAB_EXE) + " bleu --ref " + missing + " --hyp " + hyp);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "attnlab: error: cannot open " + missing + ": No such file or directory\n");
  result = run_command(std::string(ATTNLAB_EXE) + " bleu --ref " + ref + " --hyp " + missing);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "attnlab: error: cannot open " + missing + ": No such file or directory\n");
  result = run_command(std::string(ATTNLAB_EXE) + " bleu --hyp " + hyp);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("--ref is required"), std::string::npos) << result.err;
}

TEST_F(BleuCommand, DifferentLineCountsNameBoth) {
  const std::string longer = write_file(dir / "longer.txt", "a b c d\nx y\nextra line\n");
  auto result = run_command(std::string(ATTNLAB_EXE) + " bleu --ref " + ref + " --hyp " + longer);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "attnlab: error: line counts differ: " + ref + " has 2 lines, " + longer + " has 3 lines\n");
  result = run_command("sh -c '" + std::string(ATTNLAB_EXE) + " bleu --ref " + ref + " < " + longer + "'");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "attnlab: error: line counts differ: " + ref + " has 2 lines, standard input has 3 lines\n");
}

TEST_F(BleuCommand, EmptyReferenceIsAnError) {
  const std::string blank = write_file(dir / "blank.txt", "\n\n");
  const auto result = run_command(std::string(ATTNLAB_EXE) + " bleu --ref " + blank + " --hyp " + hyp);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "attnlab: error: " + blank + ": the reference has no tokens\n");
}
