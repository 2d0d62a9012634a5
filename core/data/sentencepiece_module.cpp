// libattnlab_sentencepiece.so: SentencePiece behind a table of plain functions
// (see sentencepiece_module.h for why it is a separately loaded module).
#include "data/sentencepiece_module.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <exception>
#include <memory>
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

// Runs `call` (which returns a SentencePiece status) and reports its failure in `error`. An exception
// is a failure too: SentencePiece reports most bad models by status, but its trie builder (Darts)
// throws on a piece that begins with a NUL byte, a zero-length key to it (found by fuzzing,
// tests/fuzz/fuzz_sentencepiece.cpp). Nothing but the return value and `error` crosses this table.
template <class Call>
bool reported(std::string* error, Call call) {
  try {
    const sentencepiece::util::Status status = call();
    if (!status.ok()) *error = status.ToString();
    return status.ok();
  } catch (const std::exception& e) {
    *error = std::string("SentencePiece failed: ") + e.what();
    return false;
  }
}

bool train(const std::vector<std::string_view>* sentences, const std::vector<std::pair<std::string, std::string>>* flags,
           std::string* model, std::string* error) {
  std::unordered_map<std::string, std::string> kwargs(flags->begin(), flags->end());
  ViewIterator iterator(*sentences);
  return reported(error, [&] { return sentencepiece::SentencePieceTrainer::Train(kwargs, &iterator, model); });
}

void* load(const std::string* model, std::string* error) {
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  if (!reported(error, [&] { return processor->LoadFromSerializedProto(*model); })) return nullptr;
  return processor.release();
}

void destroy(void* processor) { delete static_cast<sentencepiece::SentencePieceProcessor*>(processor); }

bool encode(const void* processor, std::string_view text, std::vector<int>* ids, std::string* error) {
  return reported(error, [&] {
    return static_cast<const sentencepiece::SentencePieceProcessor*>(processor)->Encode(
        absl::string_view(text.data(), text.size()), ids);
  });
}

bool decode(const void* processor, const std::vector<int>* ids, std::string* text, std::string* error) {
  return reported(error, [&] { return static_cast<const sentencepiece::SentencePieceProcessor*>(processor)->Decode(*ids, text); });
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
