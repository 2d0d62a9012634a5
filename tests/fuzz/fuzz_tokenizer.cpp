// tests/fuzz/fuzz_tokenizer.cpp — libFuzzer target: any bytes as the tokenizer a checkpoint
// carries (data::load_tokenizer), then used as translate uses it: encode a few sentences and
// decode ids in and out of range. Loading either succeeds or throws DataError.
//
// SentencePiece payloads are skipped: their model bytes are parsed by the SentencePiece library,
// which attnlab loads with RTLD_DEEPBIND (core/data/sentencepiece_module.h), and the sanitizers'
// runtime refuses that flag. The header in front of them is still fuzzed here, and the model bytes
// themselves by fuzz_sentencepiece.cpp.
#include "data/tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnlab;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const size_t header_end = bytes.find('\n');
  if (bytes.substr(0, header_end).find("sentencepiece") != std::string_view::npos) return 0;
  std::unique_ptr<data::Tokenizer> tokenizer;
  try {
    tokenizer = data::load_tokenizer(bytes);
  } catch (const data::DataError&) {
    return 0;
  }
  for (const char* text : {"a man rides a horse .", "", "ein mann \xc3\xa4 \xff unknown", "<unk> <s> </s> <pad>"})
    (void)tokenizer->decode(tokenizer->encode(text));
  const int n = static_cast<int>(tokenizer->vocab_size());
  (void)tokenizer->decode({0, 1, 2, 3, n - 1, n, -1, n + 100});
  for (int id = 0; id < n && id < 64; ++id) (void)tokenizer->piece(id);
  return 0;
}
