// core/train/training_stream.h — where the training loop takes its micro-batches from, whatever
// the task (part of the trainer; see trainer.h and core/task/task.h).
//
// Contract:
// - next(micro_index, rank, ranks) returns this rank's shard of the global micro-batch number
//   `micro_index` (the whole batch in a world of one) as the task's feeds, with the shard's place
//   in the whole batch (StepInfo's batch_offset/batch_rows when ranks > 1) and its source-token
//   count (for the log). A shard may be empty (rows 0) when the batch has fewer rows than ranks.
//   The MicroBatch owns the tensors its feeds point into.
// - position()/set_position() are the data position a checkpoint stores and a resume restores;
//   fingerprint() is what a checkpoint must match to be resumed on this data.
// - TranslationStream: length-bucketed sentence pairs from data::Batcher (stateful; micro_index is
//   not used), padded to train.pad_to, cut into shards balanced by tokens (data::shard_cuts).
// - LanguageModelStream: `rows` random blocks from data::BlockSampler, a pure function of
//   (seed, micro_index), so its position is the micro-batch counter itself; shards are equal runs
//   of rows. Its epoch is always 0.
#pragma once

#include "data/batcher.h"
#include "data/blocks.h"
#include "exec/model.h"
#include "task/task.h"

#include <cstdint>
#include <memory>

namespace attnlab::train {

struct MicroBatch {
  task::TrainingFeeds feeds;
  int64_t rows = 0;
  int64_t batch_offset = 0, batch_rows = 0;  // StepInfo's (0, 0 for a whole batch)
  int64_t source_tokens = 0;
  data::Batch pairs;      // translation: owns the tensors
  Tensor inputs, labels;  // language model: owns the tensors
};

class TrainingStream {
 public:
  virtual ~TrainingStream() = default;
  virtual MicroBatch next(uint64_t micro_index, int rank, int ranks) = 0;
  virtual data::BatchPosition position() const = 0;
  virtual void set_position(data::BatchPosition position) = 0;
  virtual uint64_t fingerprint() const = 0;
};

class TranslationStream final : public TrainingStream {
 public:
  TranslationStream(const exec::Model& model, data::Batcher& batcher, int64_t pad_to)
      : model_(model), batcher_(batcher), pad_to_(pad_to) {}
  MicroBatch next(uint64_t micro_index, int rank, int ranks) override;
  data::BatchPosition position() const override { return batcher_.position(); }
  void set_position(data::BatchPosition position) override { batcher_.set_position(position); }
  uint64_t fingerprint() const override { return batcher_.fingerprint(); }

 private:
  const exec::Model& model_;
  data::Batcher& batcher_;
  int64_t pad_to_;
};

class LanguageModelStream final : public TrainingStream {
 public:
  LanguageModelStream(const exec::Model& model, const data::BlockSampler& sampler, int64_t rows)
      : model_(model), sampler_(sampler), rows_(rows) {}
  MicroBatch next(uint64_t micro_index, int rank, int ranks) override;
  data::BatchPosition position() const override { return {0, static_cast<int64_t>(next_)}; }
  void set_position(data::BatchPosition position) override { next_ = static_cast<uint64_t>(position.batch); }
  uint64_t fingerprint() const override { return sampler_.fingerprint(); }

 private:
  const exec::Model& model_;
  const data::BlockSampler& sampler_;
  int64_t rows_;
  uint64_t next_ = 0;  // the micro-batch after the last one served
};

// Pads a batch's lengths up to a multiple of `pad_to` (fewer distinct shapes, fewer plans).
void pad_batch(data::Batch& batch, int64_t pad_to);

}  // namespace attnlab::train
