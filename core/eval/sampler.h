// core/eval/sampler.h — sampling text from a decoder-only language model with the key/value cache.
//
// Contract:
// - sample(model, prompt, options) feeds the prompt's ids (at least one) one position at a time
//   through an eval::DecodeSession (language-model form: input_ids → logits, cached), then draws
//   options.tokens ids, each from softmax(logits / temperature) of the last position, restricted
//   to the top_k most likely ids when top_k > 0 (ties at the k-th score kept), feeding each back.
//   The draws come from SplitMix64(seed), so a sample is a pure function of (weights, prompt,
//   options). Returns the drawn ids (not the prompt).
// - context > 0 is the longest sequence the model takes (a learned position table's rows): when
//   the session is full, a new one is primed with the last context/2 tokens and sampling goes on
//   (nanoGPT crops to the last `block` tokens at every step; halving keeps the cache and costs at
//   most one re-priming per context/2 tokens).
// - A bad request (no prompt, temperature ≤ 0 or not finite, negative tokens or top_k) is a
//   SampleError saying which.
#pragma once

#include "data/random.h"
#include "exec/model.h"

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace attnlab::eval {

struct SampleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SampleOptions {
  int64_t tokens = 500;
  double temperature = 1.0;
  int64_t top_k = 0;    // 0: every id
  uint64_t seed = 1;
  int64_t context = 0;  // 0: no limit
  int threads = 0;      // the session's task arena (0: TBB's default)
};

std::vector<int> sample(exec::Model& model, const std::vector<int>& prompt, const SampleOptions& options);

// One id drawn from softmax(row / temperature) over the top_k largest of the vocab scores of
// `row` (all when 0), with one draw of `random`; `scratch` is reused working memory.
int draw_token(const float* row, int64_t vocab, double temperature, int64_t top_k, data::SplitMix64& random,
               std::vector<float>& scratch);

}  // namespace attnlab::eval
