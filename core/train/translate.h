// core/train/translate.h — translations of token ids for validation and test BLEU during training.
//
// Contract:
// - Translator::translate(sources) returns, for every source (ids without <s>/</s>), its
//   translation (target ids without <s>/</s>) by eval::Decoder (key/value cache; greedy when
//   beam = 1, else beam search with the length penalty alpha), with the model's current parameters
//   and no dropout. The output of source i is at index i.
// - Sources are sorted by length and decoded `batch_sentences` at a time (similar lengths share a
//   batch, so little padding); the model's plans are released (clear_plans) after each batch, so
//   the model given should be used for evaluation only. The run's test decoding and
//   `attnlab translate` both use it with kEvalBatchSentences, so that their batches, and so their
//   outputs, are the same.
// - encode_source() is how a source line becomes ids, for the run and for translate alike:
//   tokenized text (the form of a run's data files) is encoded as it is; raw text given to a word
//   vocabulary is first brought toward the tokenized form (data::normalize_for_word_vocab).
//   SentencePiece normalizes itself, so both forms encode alike for it.
// - checkpoint_input_form() is the form of the data the checkpoint was trained on: tokenized for
//   synthetic data and for data files with a ".tok" suffix (Multi30k's *.lc.norm.tok), raw otherwise
//   (also when the checkpoint does not say).
#pragma once

#include "attnlab/ckpt/checkpoint.pb.h"
#include "data/tokenizer.h"

#include "eval/decoder.h"
#include "exec/executor.h"
#include "exec/model.h"

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace attnlab::train {

inline constexpr int64_t kEvalBatchSentences = 64;

enum class InputForm { kRaw, kTokenized };
std::optional<InputForm> parse_input_form(std::string_view name);  // "raw", "tokenized"
std::string_view input_form_name(InputForm form);
std::vector<int> encode_source(const data::Tokenizer& tokenizer, std::string_view line, InputForm form);
InputForm data_input_form(std::string_view data_setting);  // the experiment's `data = ...` as written
InputForm checkpoint_input_form(const ckpt::Checkpoint& checkpoint);

class Translator {
 public:
  Translator(exec::Model& model, exec::Executor& executor, eval::DecodeOptions options,
             int64_t batch_sentences = kEvalBatchSentences);
  std::vector<std::vector<int>> translate(const std::vector<std::vector<int>>& sources);
  // The same translations with their search figures (log-probability, score, length, finished).
  std::vector<eval::Translation> translate_with_scores(const std::vector<std::vector<int>>& sources);

 private:
  exec::Model& model_;
  exec::Executor& executor_;
  eval::DecodeOptions options_;
  int64_t batch_sentences_;
};

}  // namespace attnlab::train
