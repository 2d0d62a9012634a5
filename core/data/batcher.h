// core/data/batcher.h — length-bucketed batches by token count, reshuffled each epoch.
//
// Contract:
// - Input: encoded pairs (ids without <s>/</s>). A batch of B pairs has tensors
//     src     [B, S]  the source ids, padded with <pad> (S = longest source in the batch)
//     tgt_in  [B, T]  <s> followed by the target ids, padded (T = longest target + 1)
//     tgt_out [B, T]  the target ids followed by </s>, padded
//   as float32 (attnlab's only element type; ids are exact below 2^24).
// - Token budget: B · (S + T) ≤ batch_tokens for every batch (padding included). A pair that
//   alone exceeds the budget is an error at construction naming the pair and both sizes; so is an
//   empty pair list or an empty side.
// - Epoch plan: the pairs are shuffled with a generator seeded from (seed, epoch), stably sorted
//   by (source length, target length), cut greedily into batches that fill the budget, and the
//   batches are shuffled again. Every pair appears in exactly one batch per epoch. The plan is a
//   pure function of (pairs' lengths, batch_tokens, seed, epoch): the generator is attnlab's own
//   (SplitMix64), not the standard library's distributions, so it is the same on every platform.
// - Position: (epoch, batch index of the NEXT batch). next() returns the batch at the position and
//   advances, rolling over to (epoch + 1, 0) after the last batch. Restoring a saved position with
//   set_position() makes the following batches exactly those an uninterrupted run would see.
#pragma once

#include "data/random.h"
#include "tensor/tensor.h"

#include <cstdint>
#include <vector>

namespace attnlab::data {

struct EncodedPair {
  std::vector<int> source;
  std::vector<int> target;
};

class Tokenizer;
struct SentencePair;

// Encodes both sides of every pair with one (joint) tokenizer.
std::vector<EncodedPair> encode_pairs(const Tokenizer& tokenizer, const std::vector<SentencePair>& pairs);

struct Batch {
  Tensor src;
  Tensor tgt_in;
  Tensor tgt_out;
  std::vector<int64_t> pair_indices;  // row b holds pairs[pair_indices[b]]
  int64_t source_tokens = 0;          // non-padding source ids
  int64_t target_tokens = 0;          // non-padding tgt_out ids (target + </s>): the loss's token count
  int64_t rows() const { return static_cast<int64_t>(pair_indices.size()); }
};

// Data-parallel shards of one batch: contiguous runs of rows, each kept at the whole batch's
// padded widths (so a row is computed, and its dropout drawn, as in the whole batch).
// shard_cuts(batch, parts) returns parts + 1 row boundaries 0 = c0 ≤ c1 ≤ ... ≤ c_parts = rows,
// balanced by tokens (non-padding source and tgt_out ids): boundary k is the first row at which
// the running token count reaches k/parts of the total. A shard may be empty when the batch has
// fewer rows than parts. shard_rows(batch, first, count) is that run of rows (pair_indices and
// token counts with it).
std::vector<int64_t> shard_cuts(const Batch& batch, int parts);
Batch shard_rows(const Batch& batch, int64_t first, int64_t count);

struct BatchPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  bool operator==(const BatchPosition&) const = default;
};

struct BatcherOptions {
  int64_t batch_tokens = 4096;
  uint64_t seed = 1;
};

class Batcher {
 public:
  Batcher(std::vector<EncodedPair> pairs, BatcherOptions options);

  // The batches of `epoch`, each a list of pair indices, in the order they are served.
  std::vector<std::vector<int64_t>> epoch_plan(int64_t epoch) const;

  Batch next();
  BatchPosition position() const { return position_; }
  void set_position(BatchPosition position);  // a batch index past the epoch's end is an error
  int64_t batches_in_epoch(int64_t epoch) const;

  Batch make_batch(const std::vector<int64_t>& pair_indices) const;

  // A hash of everything the plan depends on (every pair's ids, batch_tokens, seed): a checkpoint
  // stores it with the position so that resuming on different data or settings can be refused.
  uint64_t fingerprint() const;
  const std::vector<EncodedPair>& pairs() const { return pairs_; }
  const BatcherOptions& options() const { return options_; }

 private:
  const std::vector<std::vector<int64_t>>& plan_for(int64_t epoch);

  std::vector<EncodedPair> pairs_;
  BatcherOptions options_;
  BatchPosition position_;
  int64_t cached_epoch_ = -1;
  std::vector<std::vector<int64_t>> cached_plan_;
};

}  // namespace attnlab::data
