// core/train/translate.cpp — batched decoding for evaluation during training.
#include "train/translate.h"

#include <algorithm>
#include <numeric>

namespace attnlab::train {

std::optional<InputForm> parse_input_form(std::string_view name) {
  if (name == "raw") return InputForm::kRaw;
  if (name == "tokenized") return InputForm::kTokenized;
  return std::nullopt;
}

std::string_view input_form_name(InputForm form) { return form == InputForm::kRaw ? "raw" : "tokenized"; }

std::vector<int> encode_source(const data::Tokenizer& tokenizer, std::string_view line, InputForm form) {
  if (form == InputForm::kRaw && tokenizer.kind() == "word") return tokenizer.encode(data::normalize_for_word_vocab(line));
  return tokenizer.encode(line);
}

InputForm data_input_form(std::string_view data) {
  return data.rfind("synthetic", 0) == 0 || data.find(".tok") != std::string_view::npos ? InputForm::kTokenized
                                                                                         : InputForm::kRaw;
}

InputForm checkpoint_input_form(const ckpt::Checkpoint& checkpoint) {
  const auto it = checkpoint.settings().find("data");
  return it == checkpoint.settings().end() ? InputForm::kRaw : data_input_form(it->second);
}

Translator::Translator(exec::Model& model, exec::Executor& executor, eval::DecodeOptions options, int64_t batch_sentences)
    : model_(model), executor_(executor), options_(options), batch_sentences_(std::max<int64_t>(1, batch_sentences)) {}

std::vector<std::vector<int>> Translator::translate(const std::vector<std::vector<int>>& sources) {
  std::vector<std::vector<int>> out;
  for (eval::Translation& t : translate_with_scores(sources)) out.push_back(std::move(t.tokens));
  return out;
}

std::vector<eval::Translation> Translator::translate_with_scores(const std::vector<std::vector<int>>& sources) {
  std::vector<eval::Translation> out(sources.size());
  std::vector<size_t> order(sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sources[a].size() < sources[b].size(); });
  eval::Decoder decoder(model_, executor_);
  for (size_t first = 0; first < order.size(); first += static_cast<size_t>(batch_sentences_)) {
    const size_t last = std::min(order.size(), first + static_cast<size_t>(batch_sentences_));
    std::vector<std::vector<int>> batch;
    for (size_t i = first; i < last; ++i) batch.push_back(sources[order[i]]);
    std::vector<eval::Translation> translations = decoder.translate(batch, options_);
    for (size_t i = first; i < last; ++i) out[order[i]] = std::move(translations[i - first]);
    model_.clear_plans();
  }
  return out;
}

}  // namespace attnlab::train
