// core/data/blocks.cpp — see blocks.h.
#include "data/blocks.h"

#include "data/parallel_text.h"
#include "data/random.h"
#include "exec/hash.h"

#include <string>

namespace attnlab::data {

namespace {

void check_fits(int64_t tokens, int64_t block) {
  if (block < 1) throw DataError("the block length must be at least 1, got " + std::to_string(block));
  if (tokens < block + 1)
    throw DataError("the text has " + std::to_string(tokens) + " tokens, fewer than one block of " + std::to_string(block) +
                    " and its next token; use a longer text or a smaller block");
}

}  // namespace

BlockSampler::BlockSampler(const std::vector<int>& tokens, int64_t block, uint64_t seed)
    : tokens_(tokens), block_(block), seed_(seed) {
  check_fits(static_cast<int64_t>(tokens.size()), block);
  uint64_t h = exec::hash_combine(static_cast<uint64_t>(block), seed);
  for (int id : tokens) h = exec::hash_combine(h, static_cast<uint64_t>(id));
  fingerprint_ = h;
}

void BlockSampler::fill(uint64_t batch_number, int64_t first_row, int64_t rows, Tensor& inputs, Tensor& labels) const {
  SplitMix64 random(exec::hash_combine(seed_, batch_number));
  const uint64_t starts = static_cast<uint64_t>(static_cast<int64_t>(tokens_.size()) - block_);  // offsets 0..starts-1
  std::vector<int64_t> offsets;
  offsets.reserve(static_cast<size_t>(rows));
  for (int64_t r = 0; r < first_row + rows; ++r) {
    const int64_t offset = static_cast<int64_t>(random.below(starts));
    if (r >= first_row) offsets.push_back(offset);
  }
  fill_windows(tokens_, offsets, block_, inputs, labels);
}

std::vector<int64_t> tile(int64_t tokens, int64_t block) {
  check_fits(tokens, block);
  std::vector<int64_t> offsets;
  for (int64_t offset = 0; offset + block + 1 <= tokens; offset += block) offsets.push_back(offset);
  return offsets;
}

void fill_windows(const std::vector<int>& tokens, const std::vector<int64_t>& offsets, int64_t block, Tensor& inputs,
                  Tensor& labels) {
  const int64_t rows = static_cast<int64_t>(offsets.size());
  if (inputs.shape() != Shape{rows, block}) inputs = Tensor({rows, block});
  if (labels.shape() != Shape{rows, block}) labels = Tensor({rows, block});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < block; ++i) {
      inputs.data()[r * block + i] = static_cast<float>(tokens[static_cast<size_t>(offsets[static_cast<size_t>(r)] + i)]);
      labels.data()[r * block + i] = static_cast<float>(tokens[static_cast<size_t>(offsets[static_cast<size_t>(r)] + i + 1)]);
    }
}

}  // namespace attnlab::data
