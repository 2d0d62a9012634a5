#include "data/batcher.h"

#include "data/parallel_text.h"
#include "data/tokenizer.h"

#include <algorithm>
#include <numeric>

namespace attnlab::data {

namespace {

int64_t padded_source(const EncodedPair& p) { return static_cast<int64_t>(p.source.size()); }
int64_t padded_target(const EncodedPair& p) { return static_cast<int64_t>(p.target.size()) + 1; }

}  // namespace

Batcher::Batcher(std::vector<EncodedPair> pairs, BatcherOptions options)
    : pairs_(std::move(pairs)), options_(options) {
  if (pairs_.empty()) throw DataError("cannot batch an empty data set");
  if (options_.batch_tokens <= 0)
    throw DataError("batch_tokens must be positive, got " + std::to_string(options_.batch_tokens));
  for (size_t i = 0; i < pairs_.size(); ++i) {
    const EncodedPair& p = pairs_[i];
    if (p.source.empty() || p.target.empty())
      throw DataError("pair " + std::to_string(i) + " has an empty " + (p.source.empty() ? "source" : "target"));
    const int64_t size = padded_source(p) + padded_target(p);
    if (size > options_.batch_tokens)
      throw DataError("pair " + std::to_string(i) + " needs " + std::to_string(size) + " tokens (source " +
                      std::to_string(p.source.size()) + ", target " + std::to_string(p.target.size()) +
                      " + 1), more than batch_tokens " + std::to_string(options_.batch_tokens));
  }
}

std::vector<std::vector<int64_t>> Batcher::epoch_plan(int64_t epoch) const {
  SplitMix64 random(options_.seed * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(epoch) + 0x632BE59BD9B4E019ull));
  std::vector<int64_t> order(pairs_.size());
  std::iota(order.begin(), order.end(), 0);
  shuffle(order, random);
  std::stable_sort(order.begin(), order.end(), [this](int64_t a, int64_t b) {
    const EncodedPair& x = pairs_[static_cast<size_t>(a)];
    const EncodedPair& y = pairs_[static_cast<size_t>(b)];
    if (x.source.size() != y.source.size()) return x.source.size() < y.source.size();
    return x.target.size() < y.target.size();
  });

  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> current;
  int64_t max_source = 0, max_target = 0;
  for (int64_t index : order) {
    const EncodedPair& p = pairs_[static_cast<size_t>(index)];
    const int64_t s = std::max(max_source, padded_source(p));
    const int64_t t = std::max(max_target, padded_target(p));
    if (!current.empty() && static_cast<int64_t>(current.size() + 1) * (s + t) > options_.batch_tokens) {
      batches.push_back(std::move(current));
      current.clear();
      max_source = padded_source(p);
      max_target = padded_target(p);
    } else {
      max_source = s;
      max_target = t;
    }
    current.push_back(index);
  }
  if (!current.empty()) batches.push_back(std::move(current));
  shuffle(batches, random);
  return batches;
}

const std::vector<std::vector<int64_t>>& Batcher::plan_for(int64_t epoch) {
  if (cached_epoch_ != epoch) {
    cached_plan_ = epoch_plan(epoch);
    cached_epoch_ = epoch;
  }
  return cached_plan_;
}

int64_t Batcher::batches_in_epoch(int64_t epoch) const {
  if (cached_epoch_ == epoch) return static_cast<int64_t>(cached_plan_.size());
  return static_cast<int64_t>(epoch_plan(epoch).size());
}

void Batcher::set_position(BatchPosition position) {
  if (position.epoch < 0 || position.batch < 0)
    throw DataError("invalid batch position (epoch " + std::to_string(position.epoch) + ", batch " +
                    std::to_string(position.batch) + ")");
  const int64_t count = static_cast<int64_t>(plan_for(position.epoch).size());
  if (position.batch > count)
    throw DataError("batch position " + std::to_string(position.batch) + " is past the end of epoch " +
                    std::to_string(position.epoch) + " (" + std::to_string(count) + " batches)");
  position_ = position;
}

Batch Batcher::next() {
  if (position_.batch >= static_cast<int64_t>(plan_for(position_.epoch).size())) position_ = {position_.epoch + 1, 0};
  const std::vector<int64_t>& indices = plan_for(position_.epoch)[static_cast<size_t>(position_.batch)];
  Batch batch = make_batch(indices);
  ++position_.batch;
  if (position_.batch == static_cast<int64_t>(cached_plan_.size())) position_ = {position_.epoch + 1, 0};
  return batch;
}

uint64_t Batcher::fingerprint() const {
  // FNV-1a over the ids and settings, with a separator between fields and pairs.
  uint64_t hash = 0xCBF29CE484222325ull;
  auto mix = [&hash](uint64_t value) {
    for (int byte = 0; byte < 8; ++byte) {
      hash ^= (value >> (8 * byte)) & 0xFF;
      hash *= 0x100000001B3ull;
    }
  };
  mix(static_cast<uint64_t>(options_.batch_tokens));
  mix(options_.seed);
  for (const EncodedPair& p : pairs_) {
    mix(p.source.size());
    for (int id : p.source) mix(static_cast<uint64_t>(id));
    mix(p.target.size());
    for (int id : p.target) mix(static_cast<uint64_t>(id));
  }
  return hash;
}

std::vector<EncodedPair> encode_pairs(const Tokenizer& tokenizer, const std::vector<SentencePair>& pairs) {
  std::vector<EncodedPair> encoded;
  encoded.reserve(pairs.size());
  for (const SentencePair& p : pairs) encoded.push_back({tokenizer.encode(p.source), tokenizer.encode(p.target)});
  return encoded;
}

Batch Batcher::make_batch(const std::vector<int64_t>& pair_indices) const {
  Batch batch;
  batch.pair_indices = pair_indices;
  int64_t s = 0, t = 0;
  for (int64_t i : pair_indices) {
    s = std::max(s, padded_source(pairs_.at(static_cast<size_t>(i))));
    t = std::max(t, padded_target(pairs_.at(static_cast<size_t>(i))));
  }
  const int64_t rows = static_cast<int64_t>(pair_indices.size());
  batch.src = Tensor({rows, s}, static_cast<float>(kPadId));
  batch.tgt_in = Tensor({rows, t}, static_cast<float>(kPadId));
  batch.tgt_out = Tensor({rows, t}, static_cast<float>(kPadId));
  for (int64_t b = 0; b < rows; ++b) {
    const EncodedPair& p = pairs_[static_cast<size_t>(pair_indices[static_cast<size_t>(b)])];
    float* src = batch.src.data() + b * s;
    float* tgt_in = batch.tgt_in.data() + b * t;
    float* tgt_out = batch.tgt_out.data() + b * t;
    for (size_t k = 0; k < p.source.size(); ++k) src[k] = static_cast<float>(p.source[k]);
    tgt_in[0] = static_cast<float>(kBosId);
    for (size_t k = 0; k < p.target.size(); ++k) {
      tgt_in[k + 1] = static_cast<float>(p.target[k]);
      tgt_out[k] = static_cast<float>(p.target[k]);
    }
    tgt_out[p.target.size()] = static_cast<float>(kEosId);
    batch.source_tokens += static_cast<int64_t>(p.source.size());
    batch.target_tokens += static_cast<int64_t>(p.target.size()) + 1;
  }
  return batch;
}

namespace {
int64_t non_padding(const Tensor& t, int64_t row) {
  const int64_t cols = t.shape()[1];
  const float* p = t.data() + row * cols;
  return static_cast<int64_t>(std::count_if(p, p + cols, [](float v) { return v != static_cast<float>(kPadId); }));
}
}  // namespace

std::vector<int64_t> shard_cuts(const Batch& batch, int parts) {
  const int64_t rows = batch.rows();
  std::vector<int64_t> running(static_cast<size_t>(rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r)
    running[static_cast<size_t>(r) + 1] = running[static_cast<size_t>(r)] + non_padding(batch.src, r) + non_padding(batch.tgt_out, r);
  const int64_t total = running.back();
  std::vector<int64_t> cuts(static_cast<size_t>(parts) + 1, rows);
  cuts[0] = 0;
  for (int k = 1; k < parts; ++k) {
    // The first row boundary whose running count reaches k/parts of the total (exact in integers).
    int64_t r = cuts[static_cast<size_t>(k) - 1];
    while (r < rows && running[static_cast<size_t>(r)] * parts < total * k) ++r;
    cuts[static_cast<size_t>(k)] = r;
  }
  return cuts;
}

Batch shard_rows(const Batch& batch, int64_t first, int64_t count) {
  if (first < 0 || count < 0 || first + count > batch.rows())
    throw DataError("shard_rows: rows [" + std::to_string(first) + ", " + std::to_string(first + count) + ") of a batch of " +
                    std::to_string(batch.rows()));
  auto rows_of = [&](const Tensor& t) {
    const int64_t cols = t.shape()[1];
    Tensor out({count, cols});
    std::copy(t.data() + first * cols, t.data() + (first + count) * cols, out.data());
    return out;
  };
  Batch shard;
  shard.src = rows_of(batch.src);
  shard.tgt_in = rows_of(batch.tgt_in);
  shard.tgt_out = rows_of(batch.tgt_out);
  shard.pair_indices.assign(batch.pair_indices.begin() + first, batch.pair_indices.begin() + first + count);
  for (int64_t r = 0; r < count; ++r) {
    shard.source_tokens += non_padding(shard.src, r);
    shard.target_tokens += non_padding(shard.tgt_out, r);
  }
  return shard;
}

}  // namespace attnlab::data
