// Smoke test on the real data: Multi30k at ../shared/data/multi30k (skipped when absent).
#include "data/batcher.h"
#include "data/parallel_text.h"
#include "data/tokenizer.h"
#include "eval/bleu.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>

using namespace attnlab;
using namespace attnlab::data;

namespace {

std::string multi30k(const std::string& name) { return std::string(MULTI30K_DIR) + "/" + name; }

bool have_multi30k() { return std::filesystem::exists(multi30k("train.lc.norm.tok.de")); }

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST(Multi30k, LoadsAllSplitsAndBuildsAWordVocabulary) {
  if (!have_multi30k()) GTEST_SKIP() << "no Multi30k at " << MULTI30K_DIR;
  const ParallelText train = read_parallel_text(multi30k("train.lc.norm.tok.de"), multi30k("train.lc.norm.tok.en"));
  EXPECT_EQ(train.pairs.size(), 29000u);
  EXPECT_TRUE(train.warnings.empty());
  EXPECT_EQ(read_parallel_text(multi30k("val.lc.norm.tok.de"), multi30k("val.lc.norm.tok.en")).pairs.size(), 1014u);
  EXPECT_EQ(read_parallel_text(multi30k("test_2016_flickr.lc.norm.tok.de"), multi30k("test_2016_flickr.lc.norm.tok.en"))
                .pairs.size(),
            1000u);
  EXPECT_EQ(read_lines(multi30k("train.de.gz")).size(), 29000u);  // the raw text, through zlib

  WordVocabOptions options;
  options.min_count = 2;
  const auto vocab = build_word_vocab(joint_sentences(train.pairs), options);
  std::cout << "[ multi30k ] joint word vocabulary, min count 2: " << vocab->vocab_size() << " ids\n";
  RecordProperty("word_vocab_size", static_cast<int>(vocab->vocab_size()));
  EXPECT_GT(vocab->vocab_size(), 5000);
  EXPECT_LT(vocab->vocab_size(), 20000);

  std::vector<EncodedPair> encoded;
  int64_t unknown = 0, tokens = 0;
  for (const SentencePair& p : train.pairs) {
    encoded.push_back({vocab->encode(p.source), vocab->encode(p.target)});
    for (const auto* side : {&encoded.back().source, &encoded.back().target})
      for (int id : *side) {
        unknown += id == kUnkId;
        ++tokens;
      }
  }
  std::cout << "[ multi30k ] <unk> rate on train: " << 100.0 * static_cast<double>(unknown) / static_cast<double>(tokens)
            << "%\n";
  EXPECT_EQ(vocab->decode(vocab->encode(train.pairs[0].target)), train.pairs[0].target);  // all its words are frequent
  Batcher batcher(std::move(encoded), {.batch_tokens = 4096, .seed = 1});
  const auto plan = batcher.epoch_plan(0);
  std::cout << "[ multi30k ] batches of <= 4096 tokens per epoch: " << plan.size() << "\n";
  EXPECT_GT(plan.size(), 100u);

  // Raw text through the normalizer matches the tokenized file for a typical line.
  EXPECT_EQ(normalize_for_word_vocab("Two young, White males are outside near many bushes."),
            "two young , white males are outside near many bushes .");
}

TEST(Multi30k, TrainsSentencePieceWith8000Pieces) {
  if (!have_multi30k()) GTEST_SKIP() << "no Multi30k at " << MULTI30K_DIR;
  const ParallelText train = read_parallel_text(multi30k("train.lc.norm.tok.de"), multi30k("train.lc.norm.tok.en"));
  SentencePieceOptions options;
  options.vocab_size = 8000;
  const auto start = std::chrono::steady_clock::now();
  const auto sp = train_sentencepiece(joint_sentences(train.pairs), options);
  const double elapsed = seconds_since(start);
  std::cout << "[ multi30k ] SentencePiece BPE, 8000 pieces, 58000 sentences: " << elapsed << " s\n";
  RecordProperty("sentencepiece_seconds", std::to_string(elapsed));
  EXPECT_EQ(sp->vocab_size(), 8000);
  const auto loaded = load_tokenizer(sp->serialize());
  const ParallelText test = read_parallel_text(multi30k("test_2016_flickr.lc.norm.tok.de"),
                                               multi30k("test_2016_flickr.lc.norm.tok.en"));
  std::vector<std::string> decoded, references;
  for (const SentencePair& p : test.pairs) {
    decoded.push_back(loaded->decode(loaded->encode(p.target)));
    references.push_back(p.target);
  }
  // SentencePiece round-trips the test set's text exactly (BLEU 100 against itself).
  EXPECT_EQ(eval::corpus_bleu(decoded, references).bleu, 100.0);
}
