#include "data/parallel_text.h"
#include "data/synthetic.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

using namespace attnlab::data;

namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

TEST(Synthetic, DeterministicFromTheSeed) {
  SyntheticOptions options;
  options.train_size = 2000;
  const SyntheticTask a = generate_synthetic_task(options);
  const SyntheticTask b = generate_synthetic_task(options);
  ASSERT_EQ(a.train.size(), 2000u);
  ASSERT_EQ(a.dev.size(), 500u);
  ASSERT_EQ(a.test.size(), 500u);
  for (size_t i = 0; i < a.train.size(); ++i) {
    EXPECT_EQ(a.train[i].source, b.train[i].source);
    EXPECT_EQ(a.train[i].target, b.train[i].target);
  }
  options.seed = 2;
  const SyntheticTask c = generate_synthetic_task(options);
  EXPECT_NE(a.train[0].source, c.train[0].source);
  EXPECT_NE(synthetic_vocabulary(1, true), synthetic_vocabulary(2, true));  // the lexicon depends on the seed
}

TEST(Synthetic, HeldOutSetsAreDisjointAndIndependentOfTrainSize) {
  SyntheticOptions small, large;
  small.train_size = 100;
  large.train_size = 5000;
  const SyntheticTask a = generate_synthetic_task(small);
  const SyntheticTask b = generate_synthetic_task(large);
  for (size_t i = 0; i < a.dev.size(); ++i) EXPECT_EQ(a.dev[i].source, b.dev[i].source);
  for (size_t i = 0; i < a.test.size(); ++i) EXPECT_EQ(a.test[i].target, b.test[i].target);
  std::set<std::string> sources;
  for (const auto* set : {&b.train, &b.dev, &b.test})
    for (const SentencePair& p : *set) EXPECT_TRUE(sources.insert(p.source).second) << "repeated: " << p.source;
}

TEST(Synthetic, SentenceLengthsAndVocabulary) {
  SyntheticOptions options;
  options.train_size = 20000;
  const SyntheticTask task = generate_synthetic_task(options);
  const std::vector<std::string> src_vocab = synthetic_vocabulary(options.seed, false);
  const std::vector<std::string> tgt_vocab = synthetic_vocabulary(options.seed, true);
  EXPECT_EQ(src_vocab.size(), 153u);  // every form distinct
  EXPECT_EQ(tgt_vocab.size(), 246u);
  const std::set<std::string> src_set(src_vocab.begin(), src_vocab.end()), tgt_set(tgt_vocab.begin(), tgt_vocab.end());
  std::set<std::string> src_seen, tgt_seen;
  std::map<int64_t, int64_t> lengths;
  for (const SentencePair& p : task.train) {
    const auto src = split_whitespace(p.source);
    const auto tgt = split_whitespace(p.target);
    ASSERT_EQ(src.size(), tgt.size()) << p.source << " | " << p.target;
    ASSERT_GE(src.size(), 5u);
    ASSERT_LE(src.size(), 15u);
    ++lengths[static_cast<int64_t>(src.size())];
    for (auto w : src) ASSERT_TRUE(src_set.count(std::string(w))) << w;
    for (auto w : tgt) ASSERT_TRUE(tgt_set.count(std::string(w))) << w;
    src_seen.insert(src.begin(), src.end());
    tgt_seen.insert(tgt.begin(), tgt.end());
  }
  EXPECT_EQ(lengths.begin()->first, 5);
  EXPECT_GE(lengths.rbegin()->first, 14);
  // 20000 sentences use (nearly) the whole grammar.
  EXPECT_GE(src_seen.size(), 150u);
  EXPECT_GE(tgt_seen.size(), 240u);
}

TEST(Synthetic, TargetAgreementAndWordOrder) {
  SyntheticOptions options;
  options.train_size = 3000;
  const SyntheticTask task = generate_synthetic_task(options);
  const std::map<std::string, std::string> article_ending = {{"lo", "o"}, {"un", "o"}, {"la", "a"}, {"una", "a"},
                                                             {"li", "i"}, {"dei", "i"}, {"le", "e"}, {"dee", "e"}};
  const std::map<std::string, std::string> verb_ending = {{"o", "an"}, {"a", "en"}, {"i", "anu"}, {"e", "enu"}};
  for (const SentencePair& p : task.train) {
    const auto src = split_whitespace(p.source);
    const auto tgt = split_whitespace(p.target);
    ASSERT_TRUE(src[0] == "ta" || src[0] == "ek" || src[0] == "som") << p.source;
    // Target subject: article, noun, adjectives, all with the same gender/number ending.
    const auto article = article_ending.find(std::string(tgt[0]));
    ASSERT_NE(article, article_ending.end()) << p.target;
    const std::string ending = article->second;
    size_t k = 1;
    while (k < tgt.size() && !article_ending.count(std::string(tgt[k]))) {
      EXPECT_TRUE(ends_with(std::string(tgt[k]), ending)) << "agreement in " << p.target;
      ++k;
    }
    // The verb is last and agrees with the subject.
    const std::string verb(tgt.back());
    const std::string expected = verb_ending.at(ending);
    EXPECT_EQ(verb.substr(3), expected) << p.target;  // target verb stems have 3 letters
    // Source (SVO): the subject phrase has as many tokens as the target's, so the verb is src[k];
    // it takes "s" (7 letters instead of 6) exactly when the subject is singular.
    const bool subject_plural = ending == "i" || ending == "e";
    const std::string source_verb(src[k]);
    EXPECT_EQ(source_verb.size() % 2 == 1, !subject_plural) << "source verb agreement in " << p.source;
  }
}
