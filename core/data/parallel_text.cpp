#include "data/parallel_text.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <ostream>
#include <sstream>

namespace attnlab::data {

namespace {

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// Splits a whole file's bytes into lines ("\n" separated, CR before it dropped).
std::vector<std::string> split_lines(std::string_view bytes) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < bytes.size()) {
    size_t end = bytes.find('\n', start);
    if (end == std::string_view::npos) end = bytes.size();
    std::string_view line = bytes.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.emplace_back(line);
    start = end + 1;
  }
  return lines;
}

std::string read_plain(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  std::string bytes;
  char buffer[1 << 16];
  size_t got;
  while ((got = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) bytes.append(buffer, got);
  if (std::ferror(file.get())) throw DataError("cannot read " + path + ": " + std::strerror(errno));
  return bytes;
}

std::string read_gzip(const std::string& path) {
  // zlib does not promise errno on failure: open with fopen first so the message carries the
  // system's reason for a missing or unreadable file.
  { std::unique_ptr<FILE, int (*)(FILE*)> probe(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!probe) throw DataError("cannot open " + path + ": " + std::strerror(errno)); }
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) throw DataError("cannot open " + path + ": zlib could not open it");
  std::string bytes;
  char buffer[1 << 16];
  int got;
  while ((got = gzread(file, buffer, sizeof buffer)) > 0) bytes.append(buffer, static_cast<size_t>(got));
  // A truncated stream ends with a short read and the error left in the stream state.
  int code = Z_OK;
  const std::string reason = gzerror(file, &code);
  if (got < 0 || code != Z_OK) {
    gzclose(file);
    throw DataError(path + ": corrupt gzip data: " + reason);
  }
  gzclose(file);
  return bytes;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

std::vector<std::string> read_lines(const std::string& path) {
  return split_lines(ends_with(path, ".gz") ? read_gzip(path) : read_plain(path));
}

std::optional<size_t> find_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) { ++i; continue; }
    size_t length;
    uint32_t min_code;
    uint32_t code;
    if ((c & 0xE0) == 0xC0) { length = 2; min_code = 0x80; code = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { length = 3; min_code = 0x800; code = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { length = 4; min_code = 0x10000; code = c & 0x07; }
    else return i;  // a continuation byte where a sequence should start, or 0xF8..0xFF
    if (i + length > n) return i;
    for (size_t k = 1; k < length; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      code = (code << 6) | (s[i + k] & 0x3F);
    }
    if (code < min_code || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return i;
    i += length;
  }
  return std::nullopt;
}

std::vector<std::string_view> split_whitespace(std::string_view text) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) tokens.push_back(text.substr(start, i - start));
  }
  return tokens;
}

int64_t count_tokens(std::string_view text) {
  int64_t count = 0;
  bool in_token = false;
  for (char c : text) {
    const bool space = is_space(c);
    if (!space && !in_token) ++count;
    in_token = !space;
  }
  return count;
}

std::vector<std::string_view> joint_sentences(const std::vector<SentencePair>& pairs) {
  std::vector<std::string_view> out;
  out.reserve(pairs.size() * 2);
  for (const SentencePair& p : pairs) out.push_back(p.source);
  for (const SentencePair& p : pairs) out.push_back(p.target);
  return out;
}

ParallelText read_parallel_text(const std::string& source_path, const std::string& target_path,
                                const ParallelTextOptions& options) {
  std::vector<std::string> source = read_lines(source_path);
  std::vector<std::string> target = read_lines(target_path);
  if (source.empty()) throw DataError(source_path + ": empty file");
  if (target.empty()) throw DataError(target_path + ": empty file");
  if (source.size() != target.size())
    throw DataError("line counts differ: " + source_path + " has " + std::to_string(source.size()) + " lines, " +
                    target_path + " has " + std::to_string(target.size()) + " lines");

  ParallelText text;
  text.lines = static_cast<int64_t>(source.size());
  int64_t first_empty = 0, first_too_long = 0;
  for (size_t i = 0; i < source.size(); ++i) {
    const int64_t line_number = static_cast<int64_t>(i) + 1;
    for (const auto& [line, path] : {std::pair{&source[i], &source_path}, std::pair{&target[i], &target_path}}) {
      if (auto bad = find_invalid_utf8(*line)) {
        char byte[8];
        std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>((*line)[*bad]));
        throw DataError(*path + ":" + std::to_string(line_number) + ":" + std::to_string(*bad + 1) +
                        ": invalid UTF-8 (byte " + byte + ")");
      }
    }
    const int64_t source_tokens = count_tokens(source[i]);
    const int64_t target_tokens = count_tokens(target[i]);
    if (source_tokens == 0 || target_tokens == 0) {
      if (text.skipped_empty++ == 0) first_empty = line_number;
      continue;
    }
    if (options.max_tokens > 0 && (source_tokens > options.max_tokens || target_tokens > options.max_tokens)) {
      if (text.skipped_too_long++ == 0) first_too_long = line_number;
      continue;
    }
    text.pairs.push_back({std::move(source[i]), std::move(target[i])});
  }

  const std::string files = source_path + " / " + target_path;
  if (text.skipped_empty > 0)
    text.warnings.push_back("warning: " + files + ": skipped " + std::to_string(text.skipped_empty) +
                            " pair(s) with an empty line (first at line " + std::to_string(first_empty) + ")");
  if (text.skipped_too_long > 0)
    text.warnings.push_back("warning: " + files + ": skipped " + std::to_string(text.skipped_too_long) +
                            " pair(s) longer than " + std::to_string(options.max_tokens) +
                            " tokens (first at line " + std::to_string(first_too_long) + ")");
  if (options.warnings_to)
    for (const std::string& w : text.warnings) *options.warnings_to << w << '\n';
  if (text.pairs.empty())
    throw DataError("no sentence pairs left in " + files + " after skipping " + std::to_string(text.skipped_empty) +
                    " empty and " + std::to_string(text.skipped_too_long) + " over-long pair(s)");
  return text;
}

}  // namespace attnlab::data
