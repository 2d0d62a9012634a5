// tests/fuzz/fuzz_text.cpp — libFuzzer target: the text readers. The first byte picks plain or
// gzip; the rest is a file read with data::read_lines and, split at its first 0xFF byte, as the
// two sides of read_parallel_text. Every line that passes the checks goes through the word
// normalizer and the token counter. Reading either succeeds or throws DataError.
#include "data/parallel_text.h"
#include "data/tokenizer.h"
#include "fuzz_support.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnlab;
  if (size == 0) return 0;
  const bool gzip = data[0] & 1;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string suffix = gzip ? ".gz" : "";
  try {
    const auto file = fuzz::write_scratch("text" + suffix, bytes);
    for (const std::string& line : data::read_lines(file.string())) {
      if (data::check_text_line(line)) continue;
      (void)data::count_tokens(data::normalize_for_word_vocab(line));
    }
  } catch (const data::DataError&) {
  }
  const size_t split = bytes.find('\xff');
  const auto source = fuzz::write_scratch("side.src" + suffix, bytes.substr(0, split));
  const auto target = fuzz::write_scratch("side.tgt" + suffix, split == std::string::npos ? "" : bytes.substr(split + 1));
  try {
    data::ParallelTextOptions options;
    options.max_tokens = 8;
    const data::ParallelText text = data::read_parallel_text(source.string(), target.string(), options);
    (void)data::joint_sentences(text.pairs);
  } catch (const data::DataError&) {
  }
  return 0;
}
