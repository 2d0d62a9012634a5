// core/train/run_corpus.h — the data section of an experiment for `attnlab run`: the sentence
// pairs and the tokenizer learned from them.
//
// Contract:
// - load_corpus(spec, options, log) reads `data = synthetic(train:, dev:, test:, seed:)` (the
//   invented language pair generated in-process) or `data = parallel(src:, tgt:, dir:, train:,
//   valid:, test:, suffix:, vocab:, min_count:, vocab_size:, max_tokens:)` (files
//   <part><suffix>.<lang>[.gz] in DATA/<dir> or DATA itself, DATA from options.data_root or
//   $ATTNLAB_DATA), then learns the joint tokenizer on the training pairs: a word vocabulary
//   (min_count) or SentencePiece BPE (vocab_size). Skipped lines are reported on `log`.
// - A missing data setting or directory, missing files (all named), bad arguments and unreadable
//   data are errors that say what to do: RunErrors, or DslErrors quoting the data setting when
//   the mistake is in the experiment file (see throw_at in run_settings.h).
#pragma once

#include "data/parallel_text.h"
#include "data/tokenizer.h"
#include "dsl/experiment.h"
#include "train/trainer.h"

#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::train {

struct Corpus {
  std::string description;
  std::vector<data::SentencePair> train, dev, test;
  std::unique_ptr<data::Tokenizer> tokenizer;
};

Corpus load_corpus(const dsl::ExperimentSpec& spec, const RunOptions& options, std::ostream& log);

// The language_model task's text: `data = text(file:, valid_file:, valid_fraction:, vocab:,
// vocab_size:, min_count:)`. FILE (relative to the data root, as parallel's dir; ".gz" accepted)
// is read whole; validation is VALID_FILE when given, else the last valid_fraction of FILE's
// characters (default 0.1: nanoGPT's split). The vocabulary is learned on the training part:
// vocab "char" (default: every distinct character), "word" or "sentencepiece" (vocab_size).
// Word and SentencePiece tokens are encoded per line, each line break as </s> (encode_lm_text),
// so that generated text keeps its lines.
struct LmText {
  std::string description;
  std::vector<int> train, valid;  // token ids of the two parts
  int64_t train_chars = 0, valid_chars = 0;  // characters (UTF-8 code points) of the two parts
  std::unique_ptr<data::Tokenizer> tokenizer;
};
LmText load_lm_text(const dsl::ExperimentSpec& spec, const RunOptions& options, std::ostream& log);

// A language model's text as ids and back, for training, prompts and samples alike: a character
// vocabulary maps every character (line breaks included); word and SentencePiece vocabularies
// encode each line and stand for each line break with </s> (decode_lm_text writes it back as one).
std::vector<int> encode_lm_text(const data::Tokenizer& tokenizer, std::string_view text);
std::string decode_lm_text(const data::Tokenizer& tokenizer, const std::vector<int>& ids);

}  // namespace attnlab::train
