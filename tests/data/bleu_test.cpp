#include "eval/bleu.h"
#include "support/run_command.h"
#include "test_files.h"

#include <gtest/gtest.h>

#include <cmath>

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

TEST_F(BleuCommand, PrintsTheMultiBleuLine) {
  const auto result = run_command(std::string(ATTNLAB_EXE) + " bleu --ref " + ref + " --hyp " + hyp);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "BLEU = 88.91, 83.3/75.0/100.0/100.0 (BP=1.000, ratio=1.000, hyp_len=6, ref_len=6)\n");
}

TEST_F(BleuCommand, ReadsTheHypothesisFromStandardInput) {
  const auto result = run_command("sh -c '" + std::string(ATTNLAB_EXE) + " bleu --ref " + ref + " < " + hyp + "'");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "BLEU = 88.91, 83.3/75.0/100.0/100.0 (BP=1.000, ratio=1.000, hyp_len=6, ref_len=6)\n");
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
