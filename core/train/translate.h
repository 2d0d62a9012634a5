// core/train/translate.h — translations of token ids for validation and test BLEU during training.
//
// Contract:
// - Translator::translate(sources) returns, for every source (ids without <s>/</s>), its
//   translation (target ids without <s>/</s>) by eval::Decoder (key/value cache; greedy when
//   beam = 1, else beam search with the length penalty alpha), with the model's current parameters
//   and no dropout. The output of source i is at index i.
// - Sources are sorted by length and decoded `batch_sentences` at a time (similar lengths share a
//   batch, so little padding); the model's plans are released (clear_plans) after each batch, so
//   the model given should be used for evaluation only.
#pragma once

#include "eval/decoder.h"
#include "exec/executor.h"
#include "exec/model.h"

#include <cstdint>
#include <vector>

namespace attnlab::train {

class Translator {
 public:
  Translator(exec::Model& model, exec::Executor& executor, eval::DecodeOptions options, int64_t batch_sentences = 64);
  std::vector<std::vector<int>> translate(const std::vector<std::vector<int>>& sources);

 private:
  exec::Model& model_;
  exec::Executor& executor_;
  eval::DecodeOptions options_;
  int64_t batch_sentences_;
};

}  // namespace attnlab::train
