// core/data/synthetic.h — an invented translation task generated in-process (no files needed).
//
// Contract: generate_synthetic_task(options) is a pure function of the options. The lexicon
// (invented words) depends only on the seed; the dev and test sets are drawn first, then the
// training set, and no source sentence occurs twice across the three sets, so dev and test do not
// change when train_size changes. Sentences are 5..15 tokens; source and target of a pair have the
// same number of tokens. Both sides come out tokenized (words separated by single spaces).
//
// The grammar. Each sentence expresses one event: a subject, a transitive verb, an object,
// optionally a place (a noun phrase with an adposition) and optionally an adverb. A noun phrase has
// a definiteness (definite 60%), a number (plural 30%) and 0, 1 or 2 adjectives (50/35/15%).
// The place occurs in 40% of sentences, the adverb in 30%.
//
//   Source language (SVO, adjectives before the noun, prepositions, adverb last):
//     S   → NP_subj V NP_obj [P NP] [ADV]
//     NP  → DET ADJ* N
//     DET : definite "ta"; indefinite singular "ek"; indefinite plural "som"
//     N   : stem (singular) or stem+"s" (plural)
//     ADJ : invariable
//     V   : stem+"s" when the subject is singular, bare stem when plural (subject agreement)
//
//   Target language (SOV, nouns before adjectives in mirror order, postpositions, adverb before
//   the verb, grammatical gender):
//     S   → NP_subj NP_obj [NP P] [ADV] V
//     NP  → DET N ADJ*      (source "DET A1 A2 N" becomes "DET N A2 A1")
//     every noun has a gender (masculine or feminine, fixed by the seed, about half each)
//     DET : definite lo/la/li/le, indefinite un/una/dei/dee (masc sg / fem sg / masc pl / fem pl)
//     N   : stem+"o" / stem+"a" / stem+"i" / stem+"e" (masc sg / fem sg / masc pl / fem pl)
//     ADJ : stem + the same ending as its noun (agreement in gender and number)
//     V   : stem+"an" / "en" / "anu" / "enu": agrees with the SUBJECT's gender and number
//
// Lexicon: 40 nouns, 16 adjectives, 20 verbs, 6 adpositions, 8 adverbs (source 153 word forms,
// target 246). Content words are invented syllable strings (source CV syllables from one
// alphabet, target CV syllables from another), unique within each language.
#pragma once

#include "data/parallel_text.h"

#include <cstdint>
#include <string>
#include <vector>

namespace attnlab::data {

struct SyntheticOptions {
  uint64_t seed = 1;
  int64_t train_size = 20000;
  int64_t dev_size = 500;
  int64_t test_size = 500;
};

struct SyntheticTask {
  std::vector<SentencePair> train, dev, test;
};

SyntheticTask generate_synthetic_task(const SyntheticOptions& options);

// Every word form the grammar can produce for `seed`, one side at a time, sorted.
std::vector<std::string> synthetic_vocabulary(uint64_t seed, bool target_side);

}  // namespace attnlab::data
