// core/train/translate.cpp — batched decoding for evaluation during training.
#include "train/translate.h"

#include <algorithm>
#include <numeric>

namespace attnlab::train {

Translator::Translator(exec::Model& model, exec::Executor& executor, eval::DecodeOptions options, int64_t batch_sentences)
    : model_(model), executor_(executor), options_(options), batch_sentences_(std::max<int64_t>(1, batch_sentences)) {}

std::vector<std::vector<int>> Translator::translate(const std::vector<std::vector<int>>& sources) {
  std::vector<std::vector<int>> out(sources.size());
  std::vector<size_t> order(sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sources[a].size() < sources[b].size(); });
  eval::Decoder decoder(model_, executor_);
  for (size_t first = 0; first < order.size(); first += static_cast<size_t>(batch_sentences_)) {
    const size_t last = std::min(order.size(), first + static_cast<size_t>(batch_sentences_));
    std::vector<std::vector<int>> batch;
    for (size_t i = first; i < last; ++i) batch.push_back(sources[order[i]]);
    std::vector<eval::Translation> translations = decoder.translate(batch, options_);
    for (size_t i = first; i < last; ++i) out[order[i]] = std::move(translations[i - first].tokens);
    model_.clear_plans();
  }
  return out;
}

}  // namespace attnlab::train
