#include "data/tokenizer.h"

#include "data/sentencepiece_module.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <unordered_map>

#ifndef ATTNLAB_SENTENCEPIECE_BUILD_PATH
#define ATTNLAB_SENTENCEPIECE_BUILD_PATH ""
#endif
#ifndef ATTNLAB_INSTALL_LIBDIR
#define ATTNLAB_INSTALL_LIBDIR "lib"
#endif

namespace attnlab::data {

namespace {

constexpr std::string_view kMagic = "attnlab-tokenizer 1 ";
const char* const kSpecialPieces[] = {"<pad>", "<unk>", "<s>", "</s>"};

bool is_special(int id) { return id >= 0 && id < kFirstPieceId; }

// ---- Word vocabulary ---------------------------------------------------------------------------

class WordVocab final : public Tokenizer {
 public:
  explicit WordVocab(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {
    for (size_t i = 0; i < pieces_.size(); ++i) ids_.emplace(pieces_[i], kFirstPieceId + static_cast<int>(i));
  }
  std::string kind() const override { return "word"; }
  int64_t vocab_size() const override { return kFirstPieceId + static_cast<int64_t>(pieces_.size()); }
  std::vector<int> encode(std::string_view text) const override {
    std::vector<int> ids;
    for (std::string_view token : split_whitespace(text)) {
      auto it = ids_.find(std::string(token));
      ids.push_back(it == ids_.end() ? kUnkId : it->second);
    }
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override {
    std::string text;
    for (int id : ids) {
      if (id == kPadId || id == kBosId || id == kEosId) continue;
      if (!text.empty()) text += ' ';
      text += piece(id);
    }
    return text;
  }
  std::string piece(int id) const override {
    if (is_special(id)) return kSpecialPieces[id];
    if (id < 0 || id >= vocab_size()) return kSpecialPieces[kUnkId];
    return pieces_[static_cast<size_t>(id - kFirstPieceId)];
  }
  std::string serialize() const override {
    std::string bytes(kMagic);
    bytes += "word " + std::to_string(pieces_.size()) + "\n";
    for (const std::string& p : pieces_) bytes += p + "\n";
    return bytes;
  }

 private:
  std::vector<std::string> pieces_;  // ids kFirstPieceId..
  std::unordered_map<std::string, int> ids_;
};

// ---- Character vocabulary ----------------------------------------------------------------------

// The length of the UTF-8 sequence starting with byte `lead` (1 for an invalid lead byte, which
// then stands for itself).
size_t utf8_length(unsigned char lead) {
  if (lead >= 0xF0 && lead < 0xF8) return 4;
  if (lead >= 0xE0) return lead < 0xF0 ? 3 : 1;
  if (lead >= 0xC0) return 2;
  return 1;
}

std::vector<std::string_view> split_characters(std::string_view text) {
  std::vector<std::string_view> out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
    out.push_back(text.substr(i, n));
    i += n;
  }
  return out;
}

class CharVocab final : public Tokenizer {
 public:
  explicit CharVocab(std::vector<std::string> chars) : chars_(std::move(chars)) {
    for (size_t i = 0; i < chars_.size(); ++i) ids_.emplace(chars_[i], kFirstPieceId + static_cast<int>(i));
  }
  std::string kind() const override { return "char"; }
  int64_t vocab_size() const override { return kFirstPieceId + static_cast<int64_t>(chars_.size()); }
  std::vector<int> encode(std::string_view text) const override {
    std::vector<int> ids;
    ids.reserve(text.size());
    for (std::string_view c : split_characters(text)) {
      auto it = ids_.find(std::string(c));
      ids.push_back(it == ids_.end() ? kUnkId : it->second);
    }
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override {
    std::string text;
    for (int id : ids)
      if (id != kPadId && id != kBosId && id != kEosId) text += piece(id);
    return text;
  }
  std::string piece(int id) const override {
    if (is_special(id)) return kSpecialPieces[id];
    if (id < 0 || id >= vocab_size()) return kSpecialPieces[kUnkId];
    return chars_[static_cast<size_t>(id - kFirstPieceId)];
  }
  std::string serialize() const override {
    std::string bytes(kMagic);
    bytes += "char " + std::to_string(chars_.size()) + "\n";
    for (const std::string& c : chars_) bytes += c;
    return bytes;
  }

 private:
  std::vector<std::string> chars_;  // ids kFirstPieceId.., in byte order
  std::unordered_map<std::string, int> ids_;
};

// ---- SentencePiece, through its module -------------------------------------------------------

std::filesystem::path executable_dir() {
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::path() : exe.parent_path();
}

const AttnlabSentencePieceApi& sentencepiece_api() {
  static const AttnlabSentencePieceApi* api = nullptr;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string name = "libattnlab_sentencepiece.so";
    std::vector<std::filesystem::path> candidates;
    const char* env = std::getenv("ATTNLAB_SENTENCEPIECE_MODULE");
    if (env && *env) candidates.emplace_back(env);  // an explicit choice: nothing else is tried
    const std::filesystem::path exe_dir = executable_dir();
    if (candidates.empty() && !exe_dir.empty()) {
      candidates.push_back(exe_dir / name);
      candidates.push_back(exe_dir / ".." / ATTNLAB_INSTALL_LIBDIR / "attnlab" / name);
    }
    if (!(env && *env) && std::string_view(ATTNLAB_SENTENCEPIECE_BUILD_PATH).size() > 0)
      candidates.emplace_back(ATTNLAB_SENTENCEPIECE_BUILD_PATH);
    std::string searched;
    for (const std::filesystem::path& path : candidates) {
      searched += (searched.empty() ? "" : ", ") + path.string();
      if (!std::filesystem::exists(path)) continue;
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (!handle) {
        failure = "cannot load the SentencePiece module " + path.string() + ": " + dlerror();
        return;
      }
      auto entry = reinterpret_cast<const AttnlabSentencePieceApi* (*)()>(dlsym(handle, kAttnlabSentencePieceEntry));
      if (!entry || entry()->abi_version != kAttnlabSentencePieceAbi) {
        failure = "the SentencePiece module " + path.string() + " is not compatible with this attnlab";
        return;
      }
      api = entry();  // the module stays loaded for the life of the process
      return;
    }
    failure = "cannot find the SentencePiece module " + name + " (searched: " + searched + ")";
  });
  if (!api) throw DataError(failure);
  return *api;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::string model) : model_(std::move(model)), api_(sentencepiece_api()) {
    std::string error;
    processor_ = api_.load(&model_, &error);
    if (!processor_) throw DataError("tokenizer bytes: not a valid SentencePiece model: " + error);
    if (api_.piece_size(processor_) <= kEosId) throw DataError("tokenizer bytes: SentencePiece model has too few pieces");
    for (int id = 0; id < kFirstPieceId; ++id) {
      std::string p;
      api_.id_to_piece(processor_, id, &p);
      if (p != kSpecialPieces[id])
        throw DataError("tokenizer bytes: SentencePiece model has '" + p + "' at id " + std::to_string(id) +
                        " where attnlab expects '" + kSpecialPieces[id] + "'");
    }
  }
  ~SentencePieceTokenizer() override { api_.destroy(processor_); }
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  std::string kind() const override { return "sentencepiece"; }
  int64_t vocab_size() const override { return api_.piece_size(processor_); }
  std::vector<int> encode(std::string_view text) const override {
    std::vector<int> ids;
    std::string error;
    if (!api_.encode(processor_, text, &ids, &error)) throw DataError("SentencePiece encode failed: " + error);
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override {
    std::vector<int> kept;
    for (int id : ids)
      if (id != kPadId && id != kBosId && id != kEosId) kept.push_back(id >= 0 && id < vocab_size() ? id : kUnkId);
    std::string text, error;
    if (!api_.decode(processor_, &kept, &text, &error)) throw DataError("SentencePiece decode failed: " + error);
    return text;
  }
  std::string piece(int id) const override {
    if (id < 0 || id >= vocab_size()) return kSpecialPieces[kUnkId];
    std::string p;
    api_.id_to_piece(processor_, id, &p);
    return p;
  }
  std::string serialize() const override {
    return std::string(kMagic) + "sentencepiece " + std::to_string(model_.size()) + "\n" + model_;
  }

 private:
  std::string model_;
  const AttnlabSentencePieceApi& api_;
  void* processor_ = nullptr;
};

// ---- Normalizer helpers ------------------------------------------------------------------------

void append_utf8(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

// Decodes UTF-8 leniently (an invalid byte becomes U+FFFD) into code points.
std::vector<uint32_t> decode_utf8(std::string_view text) {
  std::vector<uint32_t> codes;
  size_t i = 0;
  while (i < text.size()) {
    const std::string_view rest = text.substr(i);
    auto bad = find_invalid_utf8(rest.substr(0, std::min<size_t>(4, rest.size())));
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const size_t length = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    if ((bad && *bad == 0) || i + length > text.size()) {
      codes.push_back(0xFFFD);
      ++i;
      continue;
    }
    uint32_t code = length == 1 ? c : length == 2 ? (c & 0x1F) : length == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < length; ++k) code = (code << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    codes.push_back(code);
    i += length;
  }
  return codes;
}

uint32_t to_lower(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;           // Latin-1 capitals (À..Þ, not ×)
  if (c >= 0x100 && c <= 0x137 && c % 2 == 0) return c + 1;           // Latin Extended-A pairs
  if (c >= 0x139 && c <= 0x148 && c % 2 == 1) return c + 1;
  if (c >= 0x14A && c <= 0x177 && c % 2 == 0) return c + 1;
  if (c == 0x178) return 0xFF;                                        // Ÿ
  if (c >= 0x179 && c <= 0x17E && c % 2 == 1) return c + 1;
  if (c == 0x1E9E) return 0xDF;                                       // capital ß
  return c;
}

bool is_letter(uint32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c >= 0xC0 && c != 0xD7 && c != 0xF7);
}

bool is_split_punctuation(uint32_t c) {
  switch (c) {
    case '.': case ',': case '!': case '?': case ';': case ':': case '(': case ')': case '[': case ']':
    case '{': case '}': case '"': return true;
    default: return false;
  }
}

}  // namespace

// ---- Public functions --------------------------------------------------------------------------

std::unique_ptr<Tokenizer> build_word_vocab(const std::vector<std::string_view>& sentences,
                                            const WordVocabOptions& options) {
  std::unordered_map<std::string_view, int64_t> counts;
  for (std::string_view s : sentences)
    for (std::string_view token : split_whitespace(s)) ++counts[token];
  std::vector<std::pair<std::string_view, int64_t>> kept;
  for (const auto& [token, count] : counts)
    if (count >= std::max<int64_t>(options.min_count, 1) && token != kSpecialPieces[0] && token != kSpecialPieces[1] &&
        token != kSpecialPieces[2] && token != kSpecialPieces[3])
      kept.emplace_back(token, count);
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (options.max_size > 0 && static_cast<int64_t>(kept.size()) > options.max_size - kFirstPieceId)
    kept.resize(static_cast<size_t>(std::max<int64_t>(options.max_size - kFirstPieceId, 0)));
  std::vector<std::string> pieces;
  pieces.reserve(kept.size());
  for (const auto& entry : kept) pieces.emplace_back(entry.first);
  return std::make_unique<WordVocab>(std::move(pieces));
}

// The reasoning: see tokenizer.h.
int64_t sentencepiece_vocab_floor(const std::vector<std::string_view>& sentences, double character_coverage) {
  enum class Kind { Latin, Digit, Punct, Other };
  auto kind_of = [](uint32_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7)) return Kind::Latin;
    if (c >= '0' && c <= '9') return Kind::Digit;
    if (c > 0x20 && c < 0x7F) return Kind::Punct;
    return Kind::Other;
  };
  std::unordered_map<std::string, int> parts;  // distinct word parts (value unused)
  std::unordered_map<uint32_t, int> chars;
  for (std::string_view sentence : sentences) {
    size_t i = 0;
    std::string part;
    int part_chars = 0;
    Kind part_kind = Kind::Other;
    auto flush = [&] {
      if (part_chars >= 2 && part_chars <= 16) parts.emplace(part, 0);
      part.clear();
      part_chars = 0;
    };
    bool word_start = true;
    while (i < sentence.size()) {
      const unsigned char b = static_cast<unsigned char>(sentence[i]);
      const size_t length = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
      uint32_t c = length == 1 ? b : b & (0x7F >> length);
      for (size_t k = 1; k < length && i + k < sentence.size(); ++k) c = (c << 6) | (static_cast<unsigned char>(sentence[i + k]) & 0x3F);
      const std::string_view bytes = sentence.substr(i, length);
      i += length;
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        flush();
        word_start = true;
        continue;
      }
      ++chars[c];
      const Kind kind = kind_of(c);
      if (word_start) {
        flush();
        part = "\xE2\x96\x81";  // U+2581, the word-start mark the trainer prefixes
        part_chars = 1;
        part_kind = kind;
        word_start = false;
      } else if (kind != part_kind || kind == Kind::Other) {
        flush();
        part_kind = kind;
      }
      part.append(bytes);
      ++part_chars;
      if (kind == Kind::Other) flush();
    }
    flush();
  }
  const int64_t characters = character_coverage >= 1.0 ? static_cast<int64_t>(chars.size()) : 0;
  return kFirstPieceId + characters + static_cast<int64_t>(parts.size());
}

std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string_view>& sentences,
                                               const SentencePieceOptions& options) {
  if (sentences.empty()) throw DataError("cannot train SentencePiece: no sentences");
  if (options.vocab_size <= kFirstPieceId)
    throw DataError("SentencePiece vocab_size must be larger than " + std::to_string(kFirstPieceId) + ", got " +
                    std::to_string(options.vocab_size));
  const AttnlabSentencePieceApi& api = sentencepiece_api();
  // The floor is counted on every sentence. With sampling (max_sentences, which `attnlab run`
  // does not set) the trainer sees fewer, so the check is then weaker.
  const int64_t floor = sentencepiece_vocab_floor(sentences, options.character_coverage);
  if (options.vocab_size > floor)
    throw DataError("SentencePiece vocab_size " + std::to_string(options.vocab_size) + " is more than this corpus is sure to give (" +
                    std::to_string(floor) + " pieces: the special pieces, every character and every distinct word part); "
                    "SentencePiece's BPE training crashes when asked for more pieces than it can merge, so give vocab_size " +
                    std::to_string(floor) + " or less, or train on more text");
  std::vector<std::pair<std::string, std::string>> flags = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"hard_vocab_limit", "false"},
      {"character_coverage", std::to_string(options.character_coverage)},
      {"pad_id", std::to_string(kPadId)}, {"unk_id", std::to_string(kUnkId)},
      {"bos_id", std::to_string(kBosId)}, {"eos_id", std::to_string(kEosId)},
      {"pad_piece", kSpecialPieces[kPadId]}, {"unk_piece", kSpecialPieces[kUnkId]},
      {"bos_piece", kSpecialPieces[kBosId]}, {"eos_piece", kSpecialPieces[kEosId]},
      {"num_threads", std::to_string(std::max(options.num_threads, 1))},
      {"minloglevel", "1"},  // no INFO lines: training prints hundreds of them
  };
  if (options.max_sentences > 0) {
    flags.emplace_back("input_sentence_size", std::to_string(options.max_sentences));
    flags.emplace_back("shuffle_input_sentence", "true");
  }
  api.set_random_seed(options.seed);
  std::string model, error;
  if (!api.train(&sentences, &flags, &model, &error)) throw DataError("SentencePiece training failed: " + error);
  return std::make_unique<SentencePieceTokenizer>(std::move(model));
}

std::unique_ptr<Tokenizer> build_char_vocab(std::string_view text) {
  std::vector<std::string> chars;
  {
    std::vector<std::string_view> all = split_characters(text);
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    for (std::string_view c : all) chars.emplace_back(c);
  }
  return std::make_unique<CharVocab>(std::move(chars));
}

std::unique_ptr<Tokenizer> load_tokenizer(std::string_view bytes) {
  if (bytes.substr(0, kMagic.size()) != kMagic) throw DataError("tokenizer bytes: not an attnlab tokenizer");
  const size_t header_end = bytes.find('\n');
  if (header_end == std::string_view::npos) throw DataError("tokenizer bytes: truncated header");
  const std::string_view header = bytes.substr(kMagic.size(), header_end - kMagic.size());
  const size_t space = header.find(' ');
  if (space == std::string_view::npos) throw DataError("tokenizer bytes: malformed header");
  const std::string kind(header.substr(0, space));
  const std::string count_text(header.substr(space + 1));
  char* end = nullptr;
  const unsigned long long count = std::strtoull(count_text.c_str(), &end, 10);
  if (count_text.empty() || *end != '\0') throw DataError("tokenizer bytes: malformed header");
  const std::string_view payload = bytes.substr(header_end + 1);
  if (kind == "char") {
    std::vector<std::string> chars;
    for (std::string_view c : split_characters(payload)) chars.emplace_back(c);
    if (chars.size() != count)
      throw DataError("tokenizer bytes: character list has " + std::to_string(chars.size()) + " entries, header says " +
                      std::to_string(count));
    return std::make_unique<CharVocab>(std::move(chars));
  }
  if (kind == "word") {
    std::vector<std::string> pieces;
    size_t start = 0;
    while (start < payload.size()) {
      const size_t newline = payload.find('\n', start);
      if (newline == std::string_view::npos) throw DataError("tokenizer bytes: truncated word list");
      pieces.emplace_back(payload.substr(start, newline - start));
      start = newline + 1;
    }
    if (pieces.size() != count)
      throw DataError("tokenizer bytes: word list has " + std::to_string(pieces.size()) + " entries, header says " +
                      std::to_string(count));
    return std::make_unique<WordVocab>(std::move(pieces));
  }
  if (kind == "sentencepiece") {
    if (payload.size() != count)
      throw DataError("tokenizer bytes: SentencePiece model has " + std::to_string(payload.size()) +
                      " bytes, header says " + std::to_string(count));
    return std::make_unique<SentencePieceTokenizer>(std::string(payload));
  }
  throw DataError("tokenizer bytes: unknown tokenizer kind '" + kind + "'");
}

std::string normalize_for_word_vocab(std::string_view raw) {
  const std::vector<uint32_t> codes = decode_utf8(raw);
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (size_t i = 0; i < codes.size(); ++i) {
    const uint32_t c = to_lower(codes[i]);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      flush();
    } else if (is_split_punctuation(c)) {
      flush();
      tokens.push_back(c == '"' ? "&quot;" : std::string(1, static_cast<char>(c)));
    } else if (c == '\'' || c == 0x2019) {  // ASCII or typographic apostrophe
      const bool between_letters = i > 0 && i + 1 < codes.size() && is_letter(codes[i - 1]) && is_letter(codes[i + 1]);
      flush();
      if (between_letters) current = "&apos;";  // starts the next token: kid's → kid 's
      else tokens.push_back("&apos;");
    } else if (c == '&') {
      current += "&amp;";
    } else if (c == '<') {
      current += "&lt;";
    } else if (c == '>') {
      current += "&gt;";
    } else {
      append_utf8(current, c);
    }
  }
  flush();
  std::string out;
  for (const std::string& t : tokens) out += (out.empty() ? "" : " ") + t;
  return out;
}

}  // namespace attnlab::data
