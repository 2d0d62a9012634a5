// core/train/training_stream.cpp — see training_stream.h.
#include "train/training_stream.h"

#include "data/tokenizer.h"

#include <algorithm>

namespace attnlab::train {

void pad_batch(data::Batch& batch, int64_t pad_to) {
  if (pad_to <= 1) return;
  auto pad = [&](Tensor& t) {
    const int64_t rows = t.shape()[0], cols = t.shape()[1];
    const int64_t padded = (cols + pad_to - 1) / pad_to * pad_to;
    if (padded == cols) return;
    Tensor out({rows, padded}, static_cast<float>(data::kPadId));
    for (int64_t r = 0; r < rows; ++r) std::copy(t.data() + r * cols, t.data() + (r + 1) * cols, out.data() + r * padded);
    t = std::move(out);
  };
  pad(batch.src);
  pad(batch.tgt_in);
  pad(batch.tgt_out);
}

MicroBatch TranslationStream::next(uint64_t, int rank, int ranks) {
  MicroBatch m;
  m.pairs = batcher_.next();
  pad_batch(m.pairs, pad_to_);
  if (ranks > 1) {
    const std::vector<int64_t> cuts = data::shard_cuts(m.pairs, ranks);
    m.batch_offset = cuts[static_cast<size_t>(rank)];
    m.batch_rows = cuts[static_cast<size_t>(rank) + 1] - m.batch_offset;
    m.pairs = data::shard_rows(m.pairs, m.batch_offset, m.batch_rows);
  }
  m.rows = m.pairs.rows();
  m.source_tokens = m.pairs.source_tokens;
  if (m.rows > 0) m.feeds = task::translation().feeds(model_.graph(), m.pairs.src, m.pairs.tgt_in, m.pairs.tgt_out);
  return m;
}

MicroBatch LanguageModelStream::next(uint64_t micro_index, int rank, int ranks) {
  MicroBatch m;
  int64_t first = 0, count = rows_;
  if (ranks > 1) {
    first = rows_ * rank / ranks;
    count = rows_ * (rank + 1) / ranks - first;
    m.batch_offset = first;
    m.batch_rows = count;
  }
  next_ = micro_index + 1;
  m.rows = count;
  if (count == 0) return m;
  sampler_.fill(micro_index, first, count, m.inputs, m.labels);
  m.feeds = task::language_model().feeds(model_.graph(), m.inputs, m.labels);
  return m;
}

}  // namespace attnlab::train
