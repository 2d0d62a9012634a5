#include "../support/error_of.h"
#include "data/batcher.h"
#include "data/parallel_text.h"
#include "data/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>

using namespace attnlab;
using namespace attnlab::data;

namespace {

// Pairs of varied lengths (source 1..40, target within 4 tokens of it, as translations are)
// whose ids depend on the pair index.
std::vector<EncodedPair> make_pairs(int count, uint64_t seed = 7) {
  SplitMix64 random(seed);
  std::vector<EncodedPair> pairs(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const int s = 1 + static_cast<int>(random.below(40));
    const int t = std::max(1, s - 4 + static_cast<int>(random.below(9)));
    for (int k = 0; k < s; ++k) pairs[i].source.push_back(kFirstPieceId + (i + k) % 1000);
    for (int k = 0; k < t; ++k) pairs[i].target.push_back(kFirstPieceId + (3 * i + k) % 1000);
  }
  return pairs;
}

std::string error_of(const std::function<void()>& action) { return attnlab::test::error_of<DataError>(action); }

}  // namespace

TEST(Batcher, EveryPairOncePerEpochWithinTheTokenBudget) {
  const std::vector<EncodedPair> pairs = make_pairs(1000);
  Batcher batcher(pairs, {.batch_tokens = 600, .seed = 3});
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto plan = batcher.epoch_plan(epoch);
    std::multiset<int64_t> seen;
    int64_t real = 0, padded = 0;
    for (const auto& indices : plan) {
      const Batch batch = batcher.make_batch(indices);
      const int64_t b = batch.rows(), s = batch.src.shape()[1], t = batch.tgt_in.shape()[1];
      EXPECT_LE(b * (s + t), 600);
      EXPECT_EQ(batch.tgt_out.shape(), (Shape{b, t}));
      seen.insert(indices.begin(), indices.end());
      real += batch.source_tokens + batch.target_tokens * 2;
      padded += b * (s + 2 * t);
    }
    ASSERT_EQ(seen.size(), pairs.size());
    for (int64_t i = 0; i < static_cast<int64_t>(pairs.size()); ++i) EXPECT_EQ(seen.count(i), 1u) << "pair " << i;
    // Bucketing by length keeps padding small (random order would waste about half).
    EXPECT_GT(static_cast<double>(real) / static_cast<double>(padded), 0.85);
  }
}

TEST(Batcher, TensorsArePaddedAndFramedWithSpecialIds) {
  std::vector<EncodedPair> pairs = {{{10, 11, 12}, {20, 21}}, {{13}, {22, 23, 24, 25}}};
  Batcher batcher(pairs, {.batch_tokens = 100, .seed = 1});
  const Batch batch = batcher.make_batch({0, 1});
  ASSERT_EQ(batch.src.shape(), (Shape{2, 3}));
  ASSERT_EQ(batch.tgt_in.shape(), (Shape{2, 5}));
  const std::vector<float> src(batch.src.data(), batch.src.data() + 6);
  const std::vector<float> tgt_in(batch.tgt_in.data(), batch.tgt_in.data() + 10);
  const std::vector<float> tgt_out(batch.tgt_out.data(), batch.tgt_out.data() + 10);
  EXPECT_EQ(src, (std::vector<float>{10, 11, 12, 13, kPadId, kPadId}));
  EXPECT_EQ(tgt_in, (std::vector<float>{kBosId, 20, 21, kPadId, kPadId, kBosId, 22, 23, 24, 25}));
  EXPECT_EQ(tgt_out, (std::vector<float>{20, 21, kEosId, kPadId, kPadId, 22, 23, 24, 25, kEosId}));
  EXPECT_EQ(batch.source_tokens, 4);
  EXPECT_EQ(batch.target_tokens, 8);
}

TEST(Batcher, DeterministicBySeedAndReshuffledEachEpoch) {
  const std::vector<EncodedPair> pairs = make_pairs(500);
  Batcher a(pairs, {.batch_tokens = 400, .seed = 11});
  Batcher b(pairs, {.batch_tokens = 400, .seed = 11});
  Batcher other_seed(pairs, {.batch_tokens = 400, .seed = 12});
  EXPECT_EQ(a.epoch_plan(0), b.epoch_plan(0));
  EXPECT_EQ(a.epoch_plan(5), b.epoch_plan(5));
  EXPECT_NE(a.epoch_plan(0), other_seed.epoch_plan(0));
  EXPECT_NE(a.epoch_plan(0), a.epoch_plan(1));
  // Not only the batch order changes: the bucket contents do too.
  auto contents = [](std::vector<std::vector<int64_t>> plan) {
    for (auto& batch : plan) std::sort(batch.begin(), batch.end());
    std::sort(plan.begin(), plan.end());
    return plan;
  };
  EXPECT_NE(contents(a.epoch_plan(0)), contents(a.epoch_plan(1)));
}

TEST(Batcher, NextWalksThePlanAndRollsOverEpochs) {
  const std::vector<EncodedPair> pairs = make_pairs(200);
  Batcher batcher(pairs, {.batch_tokens = 500, .seed = 5});
  const auto plan0 = batcher.epoch_plan(0);
  const auto plan1 = batcher.epoch_plan(1);
  for (size_t i = 0; i < plan0.size(); ++i) {
    EXPECT_EQ(batcher.position(), (BatchPosition{0, static_cast<int64_t>(i)}));
    EXPECT_EQ(batcher.next().pair_indices, plan0[i]);
  }
  EXPECT_EQ(batcher.position(), (BatchPosition{1, 0}));
  EXPECT_EQ(batcher.next().pair_indices, plan1[0]);
  EXPECT_EQ(batcher.batches_in_epoch(0), static_cast<int64_t>(plan0.size()));
}

TEST(Batcher, ResumingFromASavedPositionGivesTheSameBatches) {
  const std::vector<EncodedPair> pairs = make_pairs(300);
  const BatcherOptions options{.batch_tokens = 450, .seed = 21};
  Batcher uninterrupted(pairs, options);
  const int64_t per_epoch = uninterrupted.batches_in_epoch(0);
  const int64_t stop_after = per_epoch - 3;  // resume shortly before an epoch boundary
  BatchPosition saved;
  std::vector<Batch> expected;
  for (int64_t step = 0; step < stop_after + 10; ++step) {
    if (step == stop_after) saved = uninterrupted.position();
    Batch batch = uninterrupted.next();
    if (step >= stop_after) expected.push_back(std::move(batch));
  }
  Batcher resumed(pairs, options);
  resumed.set_position(saved);
  for (const Batch& want : expected) {
    const Batch got = resumed.next();
    ASSERT_EQ(got.pair_indices, want.pair_indices);
    ASSERT_EQ(got.src.shape(), want.src.shape());
    ASSERT_EQ(got.tgt_in.shape(), want.tgt_in.shape());
    EXPECT_TRUE(std::equal(got.src.data(), got.src.data() + got.src.numel(), want.src.data()));
    EXPECT_TRUE(std::equal(got.tgt_in.data(), got.tgt_in.data() + got.tgt_in.numel(), want.tgt_in.data()));
    EXPECT_TRUE(std::equal(got.tgt_out.data(), got.tgt_out.data() + got.tgt_out.numel(), want.tgt_out.data()));
  }
  EXPECT_EQ(resumed.position(), uninterrupted.position());
  EXPECT_EQ(resumed.position().epoch, 1);
}

TEST(Batcher, BadSettingsAreClearErrors) {
  EXPECT_EQ(error_of([] { Batcher({}, {}); }), "cannot batch an empty data set");
  EXPECT_EQ(error_of([] { Batcher(make_pairs(3), {.batch_tokens = 0}); }), "batch_tokens must be positive, got 0");
  std::vector<EncodedPair> pairs = {{{5, 6}, {7}}, {std::vector<int>(10, 5), std::vector<int>(9, 6)}};
  EXPECT_EQ(error_of([&] { Batcher(pairs, {.batch_tokens = 19}); }),
            "pair 1 needs 20 tokens (source 10, target 9 + 1), more than batch_tokens 19");
  EXPECT_EQ(error_of([] { Batcher({{{5}, {}}}, {}); }), "pair 0 has an empty target");
  Batcher batcher(pairs, {.batch_tokens = 20});
  EXPECT_EQ(error_of([&] { batcher.set_position({0, 5}); }), "batch position 5 is past the end of epoch 0 (2 batches)");
  EXPECT_EQ(error_of([&] { batcher.set_position({-1, 0}); }), "invalid batch position (epoch -1, batch 0)");
}

TEST(Batcher, FingerprintChangesWithDataAndSettings) {
  const std::vector<EncodedPair> pairs = make_pairs(50);
  const uint64_t base = Batcher(pairs, {.batch_tokens = 400, .seed = 1}).fingerprint();
  EXPECT_EQ(Batcher(pairs, {.batch_tokens = 400, .seed = 1}).fingerprint(), base);
  EXPECT_NE(Batcher(pairs, {.batch_tokens = 401, .seed = 1}).fingerprint(), base);
  EXPECT_NE(Batcher(pairs, {.batch_tokens = 400, .seed = 2}).fingerprint(), base);
  std::vector<EncodedPair> changed = pairs;
  changed[17].target.back() += 1;
  EXPECT_NE(Batcher(changed, {.batch_tokens = 400, .seed = 1}).fingerprint(), base);
}

TEST(Batcher, EncodePairsUsesOneTokenizerForBothSides) {
  const std::vector<SentencePair> text = {{"a b", "b c"}, {"c", "a a"}};
  const auto vocab = build_word_vocab(joint_sentences(text));
  const std::vector<EncodedPair> encoded = encode_pairs(*vocab, text);
  ASSERT_EQ(encoded.size(), 2u);
  EXPECT_EQ(encoded[0].source, vocab->encode("a b"));
  EXPECT_EQ(encoded[1].target, vocab->encode("a a"));
  EXPECT_EQ(vocab->decode(encoded[0].target), "b c");
}

// ---- Data-parallel shards ------------------------------------------------------------------------

TEST(Shards, ContiguousRowsBalancedByTokensAtTheBatchWidths) {
  Batcher batcher(make_pairs(200), {600, 3});
  for (int parts : {1, 2, 3}) {
    const Batch whole = batcher.make_batch(batcher.epoch_plan(0)[1]);
    const std::vector<int64_t> cuts = shard_cuts(whole, parts);
    ASSERT_EQ(cuts.size(), static_cast<size_t>(parts) + 1);
    EXPECT_EQ(cuts.front(), 0);
    EXPECT_EQ(cuts.back(), whole.rows());
    int64_t rows = 0, source = 0, target = 0;
    const int64_t total = whole.source_tokens + whole.target_tokens;
    for (int k = 0; k < parts; ++k) {
      const Batch shard = shard_rows(whole, cuts[k], cuts[k + 1] - cuts[k]);
      EXPECT_EQ(shard.src.shape()[1], whole.src.shape()[1]);  // the whole batch's widths
      EXPECT_EQ(shard.tgt_in.shape()[1], whole.tgt_in.shape()[1]);
      for (int64_t r = 0; r < shard.rows(); ++r) {
        EXPECT_EQ(shard.pair_indices[r], whole.pair_indices[cuts[k] + r]);
        for (int64_t c = 0; c < shard.tgt_out.shape()[1]; ++c)
          EXPECT_EQ(shard.tgt_out.data()[r * shard.tgt_out.shape()[1] + c],
                    whole.tgt_out.data()[(cuts[k] + r) * whole.tgt_out.shape()[1] + c]);
      }
      // Balanced: each shard within one row's tokens of an equal share.
      const int64_t tokens = shard.source_tokens + shard.target_tokens;
      EXPECT_LE(std::abs(tokens * parts - total), 2 * (whole.src.shape()[1] + whole.tgt_out.shape()[1]) * parts) << parts;
      rows += shard.rows();
      source += shard.source_tokens;
      target += shard.target_tokens;
    }
    EXPECT_EQ(rows, whole.rows());
    EXPECT_EQ(source, whole.source_tokens);
    EXPECT_EQ(target, whole.target_tokens);
  }
}

TEST(Shards, MoreRanksThanRowsLeavesEmptyShardsAndBadRowsAreAnError) {
  Batcher batcher(make_pairs(3), {4000, 3});
  const Batch whole = batcher.make_batch({0, 1});
  const std::vector<int64_t> cuts = shard_cuts(whole, 4);
  EXPECT_EQ(cuts.back(), 2);
  int empty = 0;
  for (int k = 0; k < 4; ++k) empty += cuts[k + 1] == cuts[k];
  EXPECT_EQ(empty, 2);
  EXPECT_EQ(shard_rows(whole, 1, 0).rows(), 0);
  EXPECT_EQ(error_of([&] { shard_rows(whole, 1, 2); }), "shard_rows: rows [1, 3) of a batch of 2");
}
