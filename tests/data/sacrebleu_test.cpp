// sacreBLEU agreement: the expected values below are the published test cases of sacreBLEU 2.x
// (github.com/mjpost/sacrebleu, test/ directory); each table names the file and the test that
// holds it. Agreement is required to 0.01 (BLEU and chrF points), as the project promises.
#include "eval/sacrebleu.h"
#include "data/parallel_text.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

using namespace attnlab::eval;

namespace {

constexpr double kTolerance = 0.01;

// test/test_bleu.py: _hyps and _refs (the README example; two reference streams).
const std::vector<std::string> kReadmeHyps = {"The dog bit the man.", "It wasn't surprising.",
                                              "The man had just bitten him."};
const std::vector<std::vector<std::string>> kReadmeRefs = {
    {"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
    {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};

SacreBleuOptions options_for(BleuTokenizer tokenizer, BleuSmoothing smoothing, std::optional<double> value = std::nullopt,
                             bool lowercase = false, bool effective_order = false, int order = 4) {
  SacreBleuOptions options;
  options.tokenizer = tokenizer;
  options.smoothing = smoothing;
  options.smooth_value = value;
  options.lowercase = lowercase;
  options.effective_order = effective_order;
  options.max_ngram_order = order;
  return options;
}

// sacreBLEU's raw_corpus_bleu: tokenize none, floor smoothing, effective order.
SacreBleuOptions raw_options(std::optional<double> floor_value) {
  return options_for(BleuTokenizer::kNone, BleuSmoothing::kFloor, floor_value, false, true);
}

}  // namespace

// test/test_bleu.py::test_corpus_bleu (test_corpus_bleu_cases).
TEST(SacreBleu, CorpusBleuCases) {
  struct Case { BleuTokenizer tokenizer; BleuSmoothing smoothing; double expected; };
  for (const Case& c : {Case{BleuTokenizer::k13a, BleuSmoothing::kExp, 48.530827},
                        Case{BleuTokenizer::kNone, BleuSmoothing::kExp, 49.1919566},
                        Case{BleuTokenizer::kIntl, BleuSmoothing::kExp, 43.91623493},
                        Case{BleuTokenizer::k13a, BleuSmoothing::kNone, 48.530827}}) {
    EXPECT_NEAR(corpus_sacrebleu(kReadmeHyps, kReadmeRefs, options_for(c.tokenizer, c.smoothing)).score, c.expected,
                kTolerance)
        << to_string(c.tokenizer) << " " << to_string(c.smoothing);
  }
  // Empty hypotheses are scored (not removed): 0.
  EXPECT_EQ(corpus_sacrebleu({"", "", ""}, kReadmeRefs, SacreBleuOptions{}).score, 0.0);
}

// test/test_bleu.py::test_max_ngram_order (test_bleu_max_order, compared as "%.2f").
TEST(SacreBleu, MaxNgramOrder) {
  const std::vector<std::string> expected = {"77.65", "60.50", "53.93", "48.53", "46.14", "43.28"};
  for (int order = 1; order <= 6; ++order) {
    SacreBleuOptions options;
    options.max_ngram_order = order;
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", corpus_sacrebleu(kReadmeHyps, kReadmeRefs, options).score);
    EXPECT_EQ(text, expected[static_cast<size_t>(order - 1)]) << "order " << order;
  }
}

// test/test_bleu.py::test_raw_bleu (test_raw_bleu_cases, smooth value 0.01; expected in 0..1).
TEST(SacreBleu, RawBleuCases) {
  EXPECT_NEAR(corpus_sacrebleu({"this is a test", "another test"}, {{"ref1", "ref2"}}, raw_options(0.01)).score, 0.0,
              kTolerance);
  EXPECT_NEAR(corpus_sacrebleu({"this is a test"}, {{"this is a test"}}, raw_options(0.01)).score, 100.0, kTolerance);
  EXPECT_NEAR(corpus_sacrebleu({"this is a fest"}, {{"this is a test"}}, raw_options(0.01)).score,
              100 * 0.223606797749979, kTolerance);
}

// test/test_bleu.py::test_effective_order (test_case_effective_order).
TEST(SacreBleu, EffectiveOrderCases) {
  EXPECT_NEAR(corpus_sacrebleu({"test"}, {{"a test"}}, raw_options(0.01)).score, 100 * 0.3678794411714425, kTolerance);
  EXPECT_NEAR(corpus_sacrebleu({"a test"}, {{"a test"}}, raw_options(0.01)).score, 100.0, kTolerance);
  EXPECT_NEAR(corpus_sacrebleu({"a little test"}, {{"a test"}}, raw_options(0.01)).score, 100 * 0.03218297948685433,
              kTolerance);
}

// test/test_bleu.py::test_statistics (test_case_statistics) and ::test_offset (test_case_offset).
TEST(SacreBleu, StatisticsAndOffset) {
  const std::vector<std::string> hyp = {"am I am a character sequence"};
  const std::vector<std::vector<std::string>> ref = {{"I am a symbol string sequence a a"}};
  const SacreBleuScore s = corpus_sacrebleu(hyp, ref, raw_options(0.01));
  EXPECT_EQ(s.counts, (std::vector<double>{4, 2, 1, 0}));
  EXPECT_EQ(s.totals, (std::vector<double>{6, 5, 4, 3}));
  EXPECT_NEAR(corpus_sacrebleu(hyp, ref, raw_options(0.0)).score, 0.0, kTolerance);
  EXPECT_NEAR(corpus_sacrebleu(hyp, ref, raw_options(std::nullopt)).score, 100 * 0.1555722182, kTolerance);
}

// test/test_bleu.py::test_scoring (test_case_scoring; compute_bleu's default smoothing is none)
// and ::test_degenerate_statistics (test_case_degenerate_stats, floor smoothing).
TEST(SacreBleu, ScoringFromStatistics) {
  SacreBleuStats stats{{9, 7, 5, 3}, {10, 8, 6, 4}, 11, 11};
  EXPECT_NEAR(compute_bleu(stats, options_for(BleuTokenizer::kNone, BleuSmoothing::kNone)).score, 100 * 0.8375922397,
              kTolerance);
  struct Case { std::vector<double> correct, total; int64_t sys_len, ref_len; double offset; };
  for (const Case& c : {Case{{0, 0, 0, 0}, {4, 4, 2, 1}, 0, 1, 0.0}, Case{{0, 0, 0, 0}, {10, 11, 12, 0}, 14, 10, 0.0},
                        Case{{0, 0, 0, 0}, {0, 0, 0, 0}, 0, 0, 0.0}, Case{{6, 5, 4, 0}, {6, 5, 4, 3}, 6, 6, 0.0},
                        Case{{0, 0, 0, 0}, {0, 0, 0, 0}, 0, 0, 0.1}, Case{{0, 0, 0, 0}, {0, 0, 0, 0}, 1, 5, 0.01}}) {
    EXPECT_EQ(compute_bleu({c.correct, c.total, c.sys_len, c.ref_len},
                           options_for(BleuTokenizer::kNone, BleuSmoothing::kFloor, c.offset))
                  .score,
              0.0);
  }
}

// test/test_sentence_bleu.py::test_api_sentence_bleu (test_cases; sentence BLEU is corpus BLEU of
// one segment with effective order) and ::test_api_sentence_bleu_zero (test_cases_zero_bleu).
TEST(SacreBleu, SentenceBleuSmoothingTokenizersAndCase) {
  const std::vector<std::string> sys = {"Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;"};
  const std::vector<std::vector<std::string>> ref = {{"producţia de zahăr brut se exprimă în zahăr alb;"}};
  struct Case { BleuSmoothing smoothing; std::optional<double> value; bool lowercase; BleuTokenizer tokenizer; double expected; };
  using T = BleuTokenizer;
  using S = BleuSmoothing;
  for (const Case& c : {Case{S::kExp, {}, false, T::k13a, 8.493}, Case{S::kNone, {}, false, T::k13a, 0.0},
                        Case{S::kFloor, {}, false, T::k13a, 4.51688}, Case{S::kFloor, 0.1, false, T::k13a, 4.51688},
                        Case{S::kFloor, 0.5, false, T::k13a, 10.10}, Case{S::kAddK, {}, false, T::k13a, 14.882},
                        Case{S::kAddK, 1, false, T::k13a, 14.882}, Case{S::kAddK, 2, false, T::k13a, 21.389},
                        Case{S::kExp, {}, false, T::kNone, 7.347}, Case{S::kExp, {}, false, T::kIntl, 8.493},
                        Case{S::kExp, {}, false, T::kChar, 40.8759}, Case{S::kExp, {}, true, T::kChar, 42.0267}}) {
    EXPECT_NEAR(corpus_sacrebleu(sys, ref, options_for(c.tokenizer, c.smoothing, c.value, c.lowercase, true)).score,
                c.expected, kTolerance)
        << to_string(c.smoothing) << " " << to_string(c.tokenizer) << (c.lowercase ? " lc" : "");
  }
  for (const auto smoothing : {S::kExp, S::kNone, S::kFloor, S::kAddK})
    EXPECT_EQ(corpus_sacrebleu({"this is a cat"}, {{"okay thanks"}}, options_for(T::k13a, smoothing, {}, false, true)).score,
              0.0);
}

TEST(SacreBleu, Tokenizer13aAsMteval) {
  // Escapes undone, punctuation split, "." and "," kept between digits, "-" split after a digit.
  EXPECT_EQ(tokenize_for_bleu("He said &quot;3,5 km&quot; (e.g. 10-20).", BleuTokenizer::k13a),
            "He said \" 3,5 km \" ( e . g . 10 - 20 ) .");
  EXPECT_EQ(tokenize_for_bleu("It wasn't <skipped>here.", BleuTokenizer::k13a), "It wasn't here .");
  EXPECT_EQ(tokenize_for_bleu("日本語、テスト。", BleuTokenizer::kChar), "日 本 語 、 テ ス ト 。");
  EXPECT_EQ(tokenize_for_bleu("«Hallo», sagte er: 1.000€!", BleuTokenizer::kIntl), "« Hallo » , sagte er : 1.000 € !");
  EXPECT_EQ(unicode_lowercase("ÄÖÜ ΣΑΣ Straße"), "äöü σας straße");
}

// test/test_chrf.py::test_chrf (test_cases: beta 3, eps smoothing).
TEST(SacreBleuChrf, EpsSmoothingCases) {
  ChrfOptions options;
  options.beta = 3;
  options.eps_smoothing = true;
  struct Case { std::vector<std::string> hyp, ref; double expected; };
  for (const Case& c : std::vector<Case>{
           {{"abcdefg"}, {"hijklmnop"}, 0.0}, {{"a"}, {"b"}, 0.0}, {{""}, {"b"}, 0.0}, {{""}, {"ref"}, 0.0},
           {{""}, {"reference"}, 0.0}, {{"aa"}, {"ab"}, 8.3333}, {{"a", "b"}, {"a", "c"}, 8.3333},
           {{"a"}, {"a"}, 16.6667}, {{"a b c"}, {"a b c"}, 50.0}, {{"a b c"}, {"abc"}, 50.0},
           {{" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."},
            {"risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."},
            63.361730},
           {{" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. "},
            {"Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."}, 64.1302698},
           {{"Niemand hat die Absicht, eine Mauer zu errichten"}, {"Niemand hat die Absicht, eine Mauer zu errichten"}, 100.0}})
    EXPECT_NEAR(corpus_chrf(c.hyp, {c.ref}, options).score, c.expected, kTolerance) << c.hyp.front();
}

// test/test_chrf.py::test_chrf_eff_order (test_cases_effective_order, beta 3) and
// ::test_chrf_keep_whitespace (test_cases_keep_whitespace, beta 3).
TEST(SacreBleuChrf, EffectiveOrderAndWhitespaceCases) {
  ChrfOptions options;
  options.beta = 3;
  struct Case { std::vector<std::string> hyp, ref; double expected; };
  for (const Case& c : std::vector<Case>{{{"a"}, {"a"}, 100.0}, {{""}, {"reference"}, 0.0}, {{"a b c"}, {"a b c"}, 100.0},
                                         {{"a b c"}, {"abc"}, 100.0}, {{""}, {"c"}, 0.0}, {{"a", "b"}, {"a", "c"}, 50.0},
                                         {{"aa"}, {"ab"}, 25.0}})
    EXPECT_NEAR(corpus_chrf(c.hyp, {c.ref}, options).score, c.expected, kTolerance) << c.hyp.front();
  options.whitespace = true;
  EXPECT_NEAR(corpus_chrf({"Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."},
                          {{"Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."}}, options)
                  .score,
              67.3481606, kTolerance);
  EXPECT_NEAR(corpus_chrf({"risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."},
                          {{"risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."}},
                          options)
                  .score,
              65.2414427, kTolerance);
}

// test/test_chrf.py::test_chrf_sentence_level (test_sentence_level_chrf: beta 2, eps smoothing).
TEST(SacreBleuChrf, SentenceLevelCases) {
  ChrfOptions options;
  options.eps_smoothing = true;
  struct Case { std::string hyp, ref; double expected; };
  for (const Case& c : std::vector<Case>{
           {"Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.",
            "Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.", 39.14078509},
           {"Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.",
            "A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.", 31.22557079},
           {"Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.",
            "Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.", 57.15704367}})
    EXPECT_NEAR(corpus_chrf({c.hyp}, {{c.ref}}, options).score, c.expected, kTolerance) << c.hyp;
}

TEST(SacreBleuChrf, ChrfPlusPlusAndMultipleReferences) {
  ChrfOptions plus;
  plus.word_order = 2;
  const ChrfScore perfect = corpus_chrf({"Hello, world!"}, {{"Hello, world!"}}, plus);
  EXPECT_EQ(perfect.name, "chrF2++");
  EXPECT_DOUBLE_EQ(perfect.score, 100.0);
  // Word n-grams lower the score when words differ but characters largely match.
  EXPECT_LT(corpus_chrf({"the cats sat"}, {{"the cat sat"}}, plus).score,
            corpus_chrf({"the cats sat"}, {{"the cat sat"}}, ChrfOptions{}).score);
  // The best reference of each segment is used.
  EXPECT_DOUBLE_EQ(corpus_chrf({"a b c"}, {{"x y z"}, {"a b c"}}, ChrfOptions{}).score, 100.0);
}

TEST(SacreBleu, Signatures) {
  EXPECT_EQ(bleu_signature(SacreBleuOptions{}, 1), "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:attnlab-sacrebleu2");
  EXPECT_EQ(bleu_signature(options_for(BleuTokenizer::kIntl, BleuSmoothing::kFloor, {}, true), 2),
            "nrefs:2|case:lc|eff:no|tok:intl|smooth:floor[0.10]|version:attnlab-sacrebleu2");
  ChrfOptions plus;
  plus.word_order = 2;
  EXPECT_EQ(chrf_signature(plus, 1), "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:attnlab-sacrebleu2");
}

TEST(SacreBleu, MismatchedSizesAreErrors) {
  EXPECT_THROW(corpus_sacrebleu({"a"}, {{"a", "b"}}, SacreBleuOptions{}), std::invalid_argument);
  EXPECT_THROW(corpus_sacrebleu({"a"}, {}, SacreBleuOptions{}), std::invalid_argument);
  EXPECT_THROW(corpus_chrf({"a"}, {{"a"}, {}}, ChrfOptions{}), std::invalid_argument);
}

// Perturbed Multi30k references: test2016's German side (raw, cased) with words dropped, swapped,
// repeated, lines lowercased and punctuation split off is the hypothesis; a second reference
// stream is the reference with its first word moved to the end or dropped. The expected scores
// were computed by sacreBLEU 2.6.0 (github.com/mjpost/sacrebleu at f615c72, metrics.BLEU and
// metrics.CHRF corpus_score) on the same perturbation, written in Python as below.
namespace {

std::string join_words(const std::vector<std::string_view>& words) {
  std::string line;
  for (const auto word : words) line.append(line.empty() ? "" : " ").append(word);
  return line;
}

std::string perturbed_hypothesis(size_t i, const std::string& line) {
  std::vector<std::string_view> words = attnlab::data::split_whitespace(line);
  if (i % 4 == 0 && !words.empty()) words.erase(words.begin() + static_cast<std::ptrdiff_t>((i / 4) % words.size()));
  else if (i % 4 == 1 && words.size() > 1) std::swap(words[0], words[1]);
  else if (i % 4 == 2 && !words.empty()) words.push_back(words.back());
  std::string out = join_words(words);
  if (i % 5 == 0) out = unicode_lowercase(out);
  if (i % 7 == 0) {
    std::string spaced;
    for (const char c : out) {
      if (c == '.' || c == ',') spaced += ' ';
      spaced += c;
    }
    out = spaced;
  }
  return out;
}

std::string second_reference(size_t i, const std::string& line) {
  std::vector<std::string_view> words = attnlab::data::split_whitespace(line);
  if (i % 3 == 0 && words.size() > 2) std::rotate(words.begin(), words.begin() + 1, words.end());
  if (i % 3 == 1 && words.size() > 1) words.erase(words.begin());
  return join_words(words);
}

}  // namespace

TEST(SacreBleuMulti30k, PerturbedReferencesAgreeWithSacreBleu) {
  const std::string file = std::string(MULTI30K_DIR) + "/test_2016_flickr.de.gz";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << "no Multi30k at " << MULTI30K_DIR;
  const std::vector<std::string> reference = attnlab::data::read_lines(file);
  ASSERT_EQ(reference.size(), 1000u);
  std::vector<std::string> hypothesis, reference2;
  for (size_t i = 0; i < reference.size(); ++i) {
    hypothesis.push_back(perturbed_hypothesis(i, reference[i]));
    reference2.push_back(second_reference(i, reference[i]));
  }
  const std::vector<std::vector<std::string>> one = {reference}, two = {reference, reference2};
  using T = BleuTokenizer;
  struct BleuCase { T tokenizer; bool lowercase; bool both; double expected; int64_t hyp_len, ref_len; };
  for (const BleuCase& c : {BleuCase{T::k13a, false, false, 76.63646005272834, 12311, 12106},
                            BleuCase{T::kIntl, false, false, 76.7502499451413, 12457, 12248},
                            BleuCase{T::kChar, false, false, 91.77579700792737, 59219, 58604},
                            BleuCase{T::kNone, false, false, 74.1331260340339, 11107, 10905},
                            BleuCase{T::k13a, true, false, 89.02438410244503, 12311, 12106},
                            BleuCase{T::k13a, false, true, 76.63646005272834, 12311, 12021},
                            BleuCase{T::kIntl, true, true, 89.10839806602641, 12457, 12163}}) {
    SacreBleuOptions options;
    options.tokenizer = c.tokenizer;
    options.lowercase = c.lowercase;
    const SacreBleuScore s = corpus_sacrebleu(hypothesis, c.both ? two : one, options);
    EXPECT_NEAR(s.score, c.expected, kTolerance) << bleu_signature(options, c.both ? 2 : 1);
    EXPECT_EQ(s.sys_len, c.hyp_len) << bleu_signature(options, c.both ? 2 : 1);
    EXPECT_EQ(s.ref_len, c.ref_len) << bleu_signature(options, c.both ? 2 : 1);
  }
  struct ChrfCase { int word_order; bool lowercase; bool both; double expected; };
  for (const ChrfCase& c : {ChrfCase{0, false, false, 90.4639177164992}, ChrfCase{2, false, false, 89.06081261603819},
                            ChrfCase{0, true, false, 94.62017883100074}, ChrfCase{2, false, true, 89.48422452427816},
                            ChrfCase{0, true, true, 94.89889434145773}}) {
    ChrfOptions options;
    options.word_order = c.word_order;
    options.lowercase = c.lowercase;
    EXPECT_NEAR(corpus_chrf(hypothesis, c.both ? two : one, options).score, c.expected, kTolerance)
        << chrf_signature(options, c.both ? 2 : 1);
  }
}
