// core/data/blocks.h — a token stream cut into blocks for language modelling.
//
// Contract:
// - BlockSampler(tokens, block, seed) serves training batches nanoGPT's way: each row is `block`
//   consecutive tokens starting at an offset drawn uniformly from [0, tokens - block - 1], and its
//   labels are the same window shifted by one token. Offsets are counter-based: row r of batch
//   number k starts at SplitMix64(hash(seed, k)) draw r, so a batch depends only on (seed, k) and
//   resuming needs no state but the batch number (the trainer's micro-batch counter). Random
//   windows rather than a shuffled tiling: every offset is equally likely at every step, so no
//   block boundary is privileged, and an "epoch" has no meaning (the run counts steps).
// - fill(k, first_row, rows, inputs, labels) writes rows first_row..first_row+rows-1 of batch k
//   into [rows, block] tensors (a data-parallel shard computes the same rows as the whole batch).
// - tile(tokens, block) gives the validation windows: consecutive, non-overlapping offsets
//   0, block, 2·block, ... while a whole window and its next token fit (always the same ones).
// - A stream with fewer than block + 1 tokens is a DataError naming both sizes.
// - fingerprint() hashes the tokens, the block and the seed (what a checkpoint must match).
#pragma once

#include "tensor/tensor.h"

#include <cstdint>
#include <vector>

namespace attnlab::data {

class BlockSampler {
 public:
  BlockSampler(const std::vector<int>& tokens, int64_t block, uint64_t seed);
  void fill(uint64_t batch_number, int64_t first_row, int64_t rows, Tensor& inputs, Tensor& labels) const;
  int64_t block() const { return block_; }
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  const std::vector<int>& tokens_;
  int64_t block_;
  uint64_t seed_;
  uint64_t fingerprint_;
};

// The offsets of the consecutive whole windows of `block` tokens (and their next token) in a
// stream of `tokens` tokens; throws DataError when not even one fits.
std::vector<int64_t> tile(int64_t tokens, int64_t block);

// Writes the windows at `offsets` (and their labels) into [offsets.size(), block] tensors.
void fill_windows(const std::vector<int>& tokens, const std::vector<int64_t>& offsets, int64_t block, Tensor& inputs,
                  Tensor& labels);

}  // namespace attnlab::data
