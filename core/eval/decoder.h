// core/eval/decoder.h — incremental decoding of an encoder-decoder graph: greedy and beam search.
//
// Contract:
// - A language model (second constructor) has no encoder: the session plans input_ids → logits
//   for one position and steps it exactly as below, with input_ids in the place of tgt_in.
// - The model's graph has inputs `src`[batch, src_len] and `tgt_in`[batch, tgt_len] and outputs
//   `memory` (the encoder output) and `logits`[batch, tgt_len, V]. Token ids follow
//   core/data/tokenizer.h: <pad>=0, <s>=2, </s>=3.
// - DecodeSession runs the encoder once (a plan feeding `src`, fetching `memory`, run by the given
//   executor), then drives the decoder one target position at a time: it plans the decoder for
//   tgt_len = 1 (feeding src, memory, tgt_in; fetching logits) and calls the nodes that depend on
//   tgt_in itself, in plan order, with StepInfo{training=false, decode=&state} where each node's
//   DecodeState points at cache buffers shaped by Node::cache_shapes() — allocated once per session,
//   reused by every step. Nodes that do not depend on tgt_in (the source padding mask, anything
//   computed from memory alone) run once per session. Each step feeds one token per row; a
//   generated prefix never contains padding, so mask.padding of tgt_in sees real tokens only.
// - Rows: N sentences × `beams` rows each (row = sentence·beams + beam). The encoder runs on the N
//   sentences; its memory is copied to each sentence's rows. reorder() gathers whole rows of every
//   cache buffer (dimension 0 is the batch: the rule in core/node/node.h).
// - After construction, step() and reorder() allocate nothing. The plans are cached in the Model
//   and their buffers are shared: one session per Model at a time.
// - Scores: log-probabilities (log-softmax of the logits; summed over tokens in double). The length
//   penalty is GNMT's (Wu et al. 2016, eq. 14): lp(Y) = ((5 + |Y|) / 6)^α, score = log P(Y) / lp(Y),
//   where |Y| counts the generated tokens including the final </s> when one was produced.
// - Limits: a sentence with L source tokens gets at most L + max_len_extra output tokens (the
//   paper's input length + 50); a hypothesis reaching that many tokens without </s> is ended there
//   (finished = false). Sources are padded with <pad> to the longest in the batch (at least 1).
// - greedy(): the arg-max token at every step (ties: the lowest id) until every sentence has
//   produced </s> or reached its limit.
// - beam_search(): `beam` hypotheses per sentence. Each step extends every live hypothesis by every
//   token, keeps the 2·beam best candidates per sentence by cumulative log-probability; a </s>
//   candidate ranked among the first `beam` ends a hypothesis (scored with the length penalty),
//   the best `beam` others stay live (their rows' caches gathered into place). A sentence stops when
//   `beam` hypotheses have finished, or when no live hypothesis can still beat the best finished
//   one (its bound: current log-probability over the largest lp it can reach — exact, the answer
//   does not change), or at its length limit. The answer is the best finished hypothesis by score.
//   beam = 1 gives exactly greedy()'s answer.
// - Output tokens exclude <s> and </s>.
#pragma once

#include "exec/executor.h"
#include "exec/model.h"
#include "exec/plan.h"
#include "tensor/tensor.h"

#include <tbb/task_arena.h>

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::eval {

inline constexpr int kDecodePadId = 0;
inline constexpr int kDecodeBosId = 2;
inline constexpr int kDecodeEosId = 3;

// A graph that cannot be decoded (missing inputs/outputs) or a bad request (beam < 1, ...).
struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// GNMT's length penalty ((5 + length) / 6)^alpha.
double length_penalty(int64_t length, double alpha);

struct DecodeOptions {
  int beam = 4;                // 1: greedy
  double alpha = 0.6;          // length-penalty exponent; 0: plain log-probability
  int64_t max_len_extra = 50;  // output tokens ≤ source tokens + this
  int threads = 0;             // the decoder's task arena (0: TBB's default)
};

struct Translation {
  std::vector<int> tokens;  // without <s> and </s>
  double log_prob = 0.0;    // of the tokens and, when finished, the </s>
  double score = 0.0;       // log_prob / length_penalty(length, alpha)
  int64_t length = 0;       // |Y|: tokens.size() + (finished ? 1 : 0)
  bool finished = false;    // ended by </s> (false: cut at the length limit)
};

class DecodeSession {
 public:
  // Encodes `sources` (ids without <s>/</s>) and prepares N·beams rows with caches for
  // `max_steps` positions. Throws DecodeError for a graph without src/tgt_in/memory/logits.
  DecodeSession(exec::Model& model, exec::Executor& encoder_executor, const std::vector<std::vector<int>>& sources,
                int beams, int64_t max_steps, int threads = 0);
  // A decoder-only language model (core/task/task.h: input input_ids, output logits): no encoder;
  // `rows` rows, each step() feeding input_ids one token a row. Throws DecodeError for a graph
  // without them.
  DecodeSession(exec::Model& model, int64_t rows, int64_t max_steps, int threads = 0);
  ~DecodeSession();
  DecodeSession(const DecodeSession&) = delete;
  DecodeSession& operator=(const DecodeSession&) = delete;

  int64_t sentences() const { return sentences_; }
  int beams() const { return beams_; }
  int64_t rows() const { return rows_; }
  int64_t vocab() const { return vocab_; }
  int64_t source_len() const { return source_len_; }
  int64_t position() const { return position_; }  // the position the next step() decodes
  int64_t max_steps() const { return max_steps_; }
  int64_t cache_bytes() const { return cache_bytes_; }

  // Feeds tokens[r] to row r at position(), runs the decoder nodes, advances the position and
  // returns the logits of that position, rows × vocab, valid until the next call. Throws
  // DecodeError beyond max_steps, and a node's error prefixed with its name and location.
  const float* step(std::span<const int> tokens);

  // Row r takes over the decoding state of row from[r] (from.size() == rows()).
  void reorder(std::span<const int> from);

 private:
  struct NodeCache;
  void prepare_steps();
  void run_node(size_t step_index, const DecodeState* state);

  int64_t sentences_ = 0;
  int beams_ = 1;
  int64_t rows_ = 0;
  int64_t vocab_ = 0;
  int64_t source_len_ = 0;
  int64_t max_steps_ = 0;
  int64_t position_ = 0;
  int64_t cache_bytes_ = 0;
  exec::Plan* plan_ = nullptr;
  TensorView tgt_in_, logits_;
  std::vector<size_t> static_steps_, dynamic_steps_;
  std::vector<NodeCache> caches_;  // one per dynamic step
  Tensor reorder_scratch_;         // one row of the widest cache buffer per row
  std::vector<int> moved_;
  std::unique_ptr<tbb::task_arena> arena_;
};

// Log-probabilities from one row of logits: log_softmax(x)[i] = x[i] - log_normalizer(x).
double log_normalizer(const float* logits, int64_t vocab);

class Decoder {
 public:
  // `executor` runs the encoder; the decoder steps run in a task arena of options.threads slots.
  Decoder(exec::Model& model, exec::Executor& executor) : model_(model), executor_(executor) {}

  // options.beam == 1: greedy(); otherwise beam_search().
  std::vector<Translation> translate(const std::vector<std::vector<int>>& sources, const DecodeOptions& options);
  std::vector<Translation> greedy(const std::vector<std::vector<int>>& sources, const DecodeOptions& options);
  std::vector<Translation> beam_search(const std::vector<std::vector<int>>& sources, const DecodeOptions& options);

  // The same search as greedy() without a cache: every step runs the whole decoder on the whole
  // prefix (a plan for tgt_len = step + 1). The reference the cached decoder is tested against.
  std::vector<Translation> greedy_without_cache(const std::vector<std::vector<int>>& sources,
                                                const DecodeOptions& options);

 private:
  exec::Model& model_;
  exec::Executor& executor_;
};

}  // namespace attnlab::eval
