// libattnlab_sentencepiece.so: SentencePiece behind a table of plain functions
// (see sentencepiece_module.h for why it is a separately loaded module).
#include "data/sentencepiece_module.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unordered_map>

namespace {

class ViewIterator : public sentencepiece::SentenceIterator {
 public:
  explicit ViewIterator(const std::vector<std::string_view>& sentences) : sentences_(sentences) { load(); }
  bool done() const override { return index_ >= sentences_.size(); }
  void Next() override { ++index_; load(); }
  const std::string& value() const override { return current_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void load() { if (!done()) current_.assign(sentences_[index_]); }
  const std::vector<std::string_view>& sentences_;
  size_t index_ = 0;
  std::string current_;
};

bool train(const std::vector<std::string_view>* sentences, const std::vector<std::pair<std::string, std::string>>* flags,
           std::string* model, std::string* error) {
  std::unordered_map<std::string, std::string> kwargs(flags->begin(), flags->end());
  ViewIterator iterator(*sentences);
  const sentencepiece::util::Status status = sentencepiece::SentencePieceTrainer::Train(kwargs, &iterator, model);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

void* load(const std::string* model, std::string* error) {
  auto* processor = new sentencepiece::SentencePieceProcessor();
  const sentencepiece::util::Status status = processor->LoadFromSerializedProto(*model);
  if (!status.ok()) {
    *error = status.ToString();
    delete processor;
    return nullptr;
  }
  return processor;
}

void destroy(void* processor) { delete static_cast<sentencepiece::SentencePieceProcessor*>(processor); }

bool encode(const void* processor, std::string_view text, std::vector<int>* ids, std::string* error) {
  const auto status = static_cast<const sentencepiece::SentencePieceProcessor*>(processor)->Encode(
      absl::string_view(text.data(), text.size()), ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

bool decode(const void* processor, const std::vector<int>* ids, std::string* text, std::string* error) {
  const auto status = static_cast<const sentencepiece::SentencePieceProcessor*>(processor)->Decode(*ids, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

int piece_size(const void* processor) {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(processor)->GetPieceSize();
}

void id_to_piece(const void* processor, int id, std::string* piece) {
  *piece = static_cast<const sentencepiece::SentencePieceProcessor*>(processor)->IdToPiece(id);
}

void set_random_seed(unsigned seed) { sentencepiece::SetRandomGeneratorSeed(seed); }

const AttnlabSentencePieceApi kApi{kAttnlabSentencePieceAbi, &train, &load, &destroy, &encode, &decode, &piece_size,
                                   &id_to_piece, &set_random_seed};

}  // namespace

extern "C" __attribute__((visibility("default"))) const AttnlabSentencePieceApi* attnlab_sentencepiece_api() {
  return &kApi;
}
