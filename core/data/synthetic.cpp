#include "data/synthetic.h"

#include "data/random.h"

#include <algorithm>
#include <set>
#include <unordered_set>

namespace attnlab::data {

namespace {

constexpr int kNouns = 40, kAdjectives = 16, kVerbs = 20, kAdpositions = 6, kAdverbs = 8;

struct Lexicon {
  // Source stems and target stems of each category, aligned by index.
  std::vector<std::string> noun_src, noun_tgt, adj_src, adj_tgt, verb_src, verb_tgt, adp_src, adp_tgt, adv_src, adv_tgt;
  std::vector<bool> noun_feminine;
};

// Invents `count` words of `syllables` CV syllables from the given alphabets, unique among `used`
// (after dropping the final vowel when `drop_final_vowel`: target stems take endings instead).
std::vector<std::string> invent(SplitMix64& random, std::set<std::string>& used, int count, int syllables,
                                const std::string& consonants, const std::string& vowels,
                                bool drop_final_vowel = false) {
  std::vector<std::string> words;
  while (static_cast<int>(words.size()) < count) {
    std::string word;
    for (int s = 0; s < syllables; ++s) {
      word += consonants[random.below(consonants.size())];
      word += vowels[random.below(vowels.size())];
    }
    if (drop_final_vowel) word.pop_back();
    if (used.insert(word).second) words.push_back(word);
  }
  return words;
}

Lexicon make_lexicon(uint64_t seed) {
  SplitMix64 random(seed ^ 0x5EED1E7C0FFEEull);
  Lexicon lex;
  const std::string src_consonants = "bdfgkmnprtvz", src_vowels = "aeiou";
  const std::string tgt_consonants = "chjlmnqswxy", tgt_vowels = "aeiouy";
  // Word lengths keep every form distinct: source nouns have 4 letters (plural 5), adjectives,
  // verbs and adverbs 6 (verb + "s": 7), adpositions 2 (not "ta"/"ek"). Target stems have 3
  // letters (noun and adjective forms 4, verb forms 5-6), adpositions 2 (not a determiner),
  // adverbs 8.
  std::set<std::string> src_used = {"ta", "ek", "som"};
  std::set<std::string> tgt_used = {"lo", "la", "li", "le", "un", "una", "dei", "dee"};
  lex.noun_src = invent(random, src_used, kNouns, 2, src_consonants, src_vowels);
  lex.adj_src = invent(random, src_used, kAdjectives, 3, src_consonants, src_vowels);
  lex.verb_src = invent(random, src_used, kVerbs, 3, src_consonants, src_vowels);
  lex.adp_src = invent(random, src_used, kAdpositions, 1, src_consonants, src_vowels);
  lex.adv_src = invent(random, src_used, kAdverbs, 3, src_consonants, src_vowels);
  lex.noun_tgt = invent(random, tgt_used, kNouns, 2, tgt_consonants, tgt_vowels, true);
  lex.adj_tgt = invent(random, tgt_used, kAdjectives, 2, tgt_consonants, tgt_vowels, true);
  lex.verb_tgt = invent(random, tgt_used, kVerbs, 2, tgt_consonants, tgt_vowels, true);
  lex.adp_tgt = invent(random, tgt_used, kAdpositions, 1, tgt_consonants, tgt_vowels);
  lex.adv_tgt = invent(random, tgt_used, kAdverbs, 4, tgt_consonants, tgt_vowels);
  // Gender: exactly half feminine, positions shuffled by the seed.
  lex.noun_feminine.assign(kNouns, false);
  for (int i = 0; i < kNouns / 2; ++i) lex.noun_feminine[i] = true;
  shuffle(lex.noun_feminine, random);
  return lex;
}

// Gender/number cell: 0 masc sg, 1 fem sg, 2 masc pl, 3 fem pl.
int cell(bool feminine, bool plural) { return (plural ? 2 : 0) + (feminine ? 1 : 0); }
const char* const kNounEnding[] = {"o", "a", "i", "e"};
const char* const kVerbEnding[] = {"an", "en", "anu", "enu"};
const char* const kDefinite[] = {"lo", "la", "li", "le"};
const char* const kIndefinite[] = {"un", "una", "dei", "dee"};

struct NounPhrase {
  int noun;
  bool plural, definite;
  std::vector<int> adjectives;
};

NounPhrase draw_phrase(SplitMix64& random) {
  NounPhrase np;
  np.noun = static_cast<int>(random.below(kNouns));
  np.definite = random.below(100) < 60;
  np.plural = random.below(100) < 30;
  const uint64_t roll = random.below(100);
  const int adjectives = roll < 50 ? 0 : roll < 85 ? 1 : 2;
  while (static_cast<int>(np.adjectives.size()) < adjectives) {
    const int a = static_cast<int>(random.below(kAdjectives));
    if (std::find(np.adjectives.begin(), np.adjectives.end(), a) == np.adjectives.end()) np.adjectives.push_back(a);
  }
  return np;
}

void source_phrase(const Lexicon& lex, const NounPhrase& np, std::vector<std::string>& out) {
  out.push_back(np.definite ? "ta" : np.plural ? "som" : "ek");
  for (int a : np.adjectives) out.push_back(lex.adj_src[a]);
  out.push_back(lex.noun_src[np.noun] + (np.plural ? "s" : ""));
}

void target_phrase(const Lexicon& lex, const NounPhrase& np, std::vector<std::string>& out) {
  const int c = cell(lex.noun_feminine[np.noun], np.plural);
  out.push_back(np.definite ? kDefinite[c] : kIndefinite[c]);
  out.push_back(lex.noun_tgt[np.noun] + kNounEnding[c]);
  for (auto a = np.adjectives.rbegin(); a != np.adjectives.rend(); ++a) out.push_back(lex.adj_tgt[*a] + kNounEnding[c]);
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

SentencePair draw_sentence(const Lexicon& lex, SplitMix64& random) {
  const NounPhrase subject = draw_phrase(random);
  const int verb = static_cast<int>(random.below(kVerbs));
  const NounPhrase object = draw_phrase(random);
  const bool has_place = random.below(100) < 40;
  const NounPhrase place = has_place ? draw_phrase(random) : NounPhrase{};
  const int adposition = has_place ? static_cast<int>(random.below(kAdpositions)) : 0;
  const bool has_adverb = random.below(100) < 30;
  const int adverb = has_adverb ? static_cast<int>(random.below(kAdverbs)) : 0;

  std::vector<std::string> src, tgt;
  source_phrase(lex, subject, src);
  src.push_back(lex.verb_src[verb] + (subject.plural ? "" : "s"));
  source_phrase(lex, object, src);
  if (has_place) {
    src.push_back(lex.adp_src[adposition]);
    source_phrase(lex, place, src);
  }
  if (has_adverb) src.push_back(lex.adv_src[adverb]);

  target_phrase(lex, subject, tgt);
  target_phrase(lex, object, tgt);
  if (has_place) {
    target_phrase(lex, place, tgt);
    tgt.push_back(lex.adp_tgt[adposition]);
  }
  if (has_adverb) tgt.push_back(lex.adv_tgt[adverb]);
  tgt.push_back(lex.verb_tgt[verb] + kVerbEnding[cell(lex.noun_feminine[subject.noun], subject.plural)]);
  return {join(src), join(tgt)};
}

}  // namespace

SyntheticTask generate_synthetic_task(const SyntheticOptions& options) {
  if (options.train_size < 0 || options.dev_size < 0 || options.test_size < 0)
    throw DataError("synthetic task sizes must not be negative");
  const Lexicon lex = make_lexicon(options.seed);
  SplitMix64 random(options.seed ^ 0xD1CE5EED5A17ull);
  std::unordered_set<std::string> seen;
  auto fill = [&](std::vector<SentencePair>& set, int64_t size) {
    set.reserve(static_cast<size_t>(size));
    while (static_cast<int64_t>(set.size()) < size) {
      SentencePair pair = draw_sentence(lex, random);
      if (seen.insert(pair.source).second) set.push_back(std::move(pair));
    }
  };
  SyntheticTask task;
  fill(task.dev, options.dev_size);
  fill(task.test, options.test_size);
  fill(task.train, options.train_size);
  return task;
}

std::vector<std::string> synthetic_vocabulary(uint64_t seed, bool target_side) {
  const Lexicon lex = make_lexicon(seed);
  std::set<std::string> words;
  if (!target_side) {
    words.insert({"ta", "ek", "som"});
    for (const std::string& n : lex.noun_src) words.insert({n, n + "s"});
    for (const std::string& a : lex.adj_src) words.insert(a);
    for (const std::string& v : lex.verb_src) words.insert({v, v + "s"});
    for (const std::string& p : lex.adp_src) words.insert(p);
    for (const std::string& a : lex.adv_src) words.insert(a);
  } else {
    for (int c = 0; c < 4; ++c) words.insert({kDefinite[c], kIndefinite[c]});
    for (int n = 0; n < kNouns; ++n)
      for (bool plural : {false, true}) words.insert(lex.noun_tgt[n] + kNounEnding[cell(lex.noun_feminine[n], plural)]);
    for (const std::string& a : lex.adj_tgt)
      for (const char* ending : kNounEnding) words.insert(a + ending);
    for (const std::string& v : lex.verb_tgt)
      for (const char* ending : kVerbEnding) words.insert(v + ending);
    for (const std::string& p : lex.adp_tgt) words.insert(p);
    for (const std::string& a : lex.adv_tgt) words.insert(a);
  }
  return {words.begin(), words.end()};
}

}  // namespace attnlab::data
