// tests/fuzz/fuzz_sentencepiece.cpp — libFuzzer target: any bytes as the SentencePiece model a
// checkpoint's tokenizer carries after its header, given to the SentencePiece module
// (core/data/sentencepiece_module.h) and then used through it as data::load_tokenizer and the
// SentencePiece tokenizer use it: load, piece count, the pieces at the special ids, encode,
// decode. Loading either succeeds or reports an error; it must never crash.
//
// Why this target links the module's source and not attnlab: attnlab opens the module with
// RTLD_DEEPBIND, because the module's SentencePiece carries a private Protocol Buffers that
// collides with attnlab's, and the sanitizers' runtime refuses RTLD_DEEPBIND. A process without
// attnlab's libraries has no second Protocol Buffers, so here the module is linked in directly
// and fuzz_tokenizer covers the header in front of the model bytes.
//
// Property checked beyond "no crash": every id encode() returns lies in [0, piece count), since
// the model's embedding rows are indexed by it.
#include "data/sentencepiece_module.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const AttnlabSentencePieceApi& api = *attnlab_sentencepiece_api();
  const std::string model(reinterpret_cast<const char*>(data), size);
  std::string error;
  void* processor = api.load(&model, &error);
  if (!processor) return 0;
  const int pieces = api.piece_size(processor);
  std::string piece;
  for (int id = 0; id < pieces && id < 64; ++id) api.id_to_piece(processor, id, &piece);
  std::vector<int> ids;
  for (const char* text : {"a man rides a horse .", "", "ein mann \xc3\xa4 \xff unknown", "<unk> <s> </s> <pad>"}) {
    ids.clear();
    if (!api.encode(processor, text, &ids, &error)) continue;
    for (int id : ids)
      if (id < 0 || id >= pieces) __builtin_trap();
    std::string decoded;
    (void)api.decode(processor, &ids, &decoded, &error);
  }
  // The ids the tokenizer passes to decode: in range (out-of-range ids become <unk>, id 1).
  std::vector<int> kept;
  for (int id : {1, 4, pieces - 1, pieces / 2})
    if (id >= 0 && id < pieces) kept.push_back(id);
  std::string decoded;
  (void)api.decode(processor, &kept, &decoded, &error);
  api.destroy(processor);
  return 0;
}
