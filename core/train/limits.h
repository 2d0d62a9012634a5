// core/train/limits.h — the one table of bounds for every numeric command-line flag and experiment
// setting that the two can both give, so that a value is accepted or refused the same way wherever
// it comes from.
//
// Contract:
// - A Limit names a quantity and its closed range [min, max]; the ranges are fixed here, except
//   the thread count, whose maximum is kThreadsPerCore × the machine's cores (the message names
//   it), so that a typo cannot start thousands of threads.
// - check_integer_text(limit, text) parses TEXT as a whole number (decimal, optional sign, nothing
//   else) and returns an error message, or "" when it is in range: the same words for a flag and
//   a file ("must be a whole number in [1, 64], got 'abc'"). check_real_text likewise for reals.
// - in_range(limit, v) / describe(limit) are the building blocks the experiment-file reader uses
//   (train/run_settings.h), so that its message quotes the same range.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace attnlab::train {

struct IntLimit {
  const char* name;  // the flag or setting, as the user writes it
  int64_t min, max;
};

struct RealLimit {
  const char* name;
  double min, max;
};

inline constexpr int kThreadsPerCore = 8;

// Decoding (translate --beam/--alpha/--max-len-extra, the decode section).
inline constexpr IntLimit kBeamLimit{"beam", 1, 64};
inline constexpr RealLimit kAlphaLimit{"alpha", 0, 10};
inline constexpr IntLimit kMaxLengthExtraLimit{"max_length_extra", 0, 10000};
inline constexpr IntLimit kBatchSentencesLimit{"batch_sentences", 1, 4096};
// --seed and the experiment's seed (and synthetic(seed: ...)): what an int64 setting can hold.
inline constexpr IntLimit kSeedLimit{"seed", 0, std::numeric_limits<int64_t>::max()};
// --average K: checkpoints averaged at the end of a run.
inline constexpr IntLimit kAverageLimit{"average", 0, 1000};
// Vocabulary sizes (data = parallel(vocab_size: ...)); SentencePiece ids are 32-bit.
inline constexpr IntLimit kVocabSizeLimit{"vocab_size", 16, 1000000};
// Sentences of synthetic(train:, dev:, test:); each is generated in memory.
inline constexpr IntLimit kSyntheticSizeLimit{"synthetic size", 1, 10000000};
// translate --max-tokens: tokens kept of one input line (training skips longer pairs:
// parallel(max_tokens: ...)).
inline constexpr IntLimit kTranslateMaxTokensLimit{"max-tokens", 1, 100000};
// attnlab generate.
inline constexpr IntLimit kGenerateTokensLimit{"tokens", 0, 1000000};
inline constexpr IntLimit kTopKLimit{"top-k", 0, 1000000};
inline constexpr RealLimit kTemperatureLimit{"temperature", 1e-6, 1e6};
// attnlab bench: the timed batch. Far above what a benchmark uses, and low enough that one typo'd
// flag is refused at once instead of asking for terabytes (sizes that pass one by one and still
// do not fit are refused when the plan's buffers exceed the machine's memory: exec/buffer_pool.h).
inline constexpr IntLimit kBenchBatchLimit{"--batch", 1, 65536};
inline constexpr IntLimit kBenchSrcLenLimit{"--src-len", 1, 65536};
inline constexpr IntLimit kBenchTgtLenLimit{"--tgt-len", 1, 65536};
inline constexpr IntLimit kBenchBlockLimit{"--block", 1, 65536};
// Tokens of the batch's longest side (--batch × the longer of --src-len and --tgt-len, or × --block):
// the inputs are filled outside the plans' checked buffers, so the product is bounded as well.
inline constexpr IntLimit kBenchTokensLimit{"tokens a batch", 1, int64_t{1} << 20};
inline constexpr IntLimit kBenchVocabLimit{"--vocab", 5, kVocabSizeLimit.max};  // ids 0-3 are reserved
inline constexpr IntLimit kBenchStepsLimit{"--steps", 1, 1000000};
inline constexpr IntLimit kPeakSizeLimit{"--peak-size", 16, 32768};
// attnlab attention: tokens of --src and of the target (--tgt, or the greedy translation). Each
// map has queries × keys cells, written into the page (11.4 MB for 120 tokens of a 3-layer, 8-head
// model): at 256 tokens a 6-layer one's page is about 100 MB, what a browser still opens.
inline constexpr IntLimit kAttentionTokensLimit{"tokens", 1, 256};

// Under mpirun (run --rank-timeout, --bucket-mb): seconds a rank may go silent, and the size of a
// gradient reduction bucket in MiB.
inline constexpr RealLimit kRankTimeoutLimit{"rank-timeout", 0.1, 1e6};
inline constexpr RealLimit kBucketMbLimit{"bucket-mb", 0.001, 4096};

// --threads: 0 (every core) up to kThreadsPerCore × the cores of this machine.
IntLimit threads_limit();

bool in_range(const IntLimit& limit, int64_t v);
bool in_range(const RealLimit& limit, double v);
std::string describe(const IntLimit& limit);   // "[1, 64]" ("[0, 16] (8 × the 2 cores)" for threads)
std::string describe(const RealLimit& limit);  // "[0, 10]"

std::string check_integer_text(const IntLimit& limit, std::string_view text);
std::string check_real_text(const RealLimit& limit, std::string_view text);

}  // namespace attnlab::train
