#include "data/parallel_text.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
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

// Appends text to `bytes` as it is read, refusing a line over the bound as soon as it is seen:
// a file with no line break (/dev/zero, a gzip bomb of one line) ends with a message, not with
// memory exhausted.
class TextAccumulator {
 public:
  TextAccumulator(std::string& bytes, const std::string& path, size_t max_line_bytes)
      : bytes_(bytes), path_(path), max_line_bytes_(max_line_bytes) {}
  void append(const char* data, size_t n) {
    const char* const end = data + n;
    for (const char* p = data; p < end;) {
      const char* newline = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      const size_t run = static_cast<size_t>((newline ? newline : end) - p);
      if (line_bytes_ + run > max_line_bytes_)
        throw DataError(path_ + ":" + std::to_string(line_) + ": a line longer than " + std::to_string(max_line_bytes_ >> 20) + " MiB");
      if (!newline) {
        line_bytes_ += run;
        break;
      }
      ++line_;
      line_bytes_ = 0;
      p = newline + 1;
    }
    bytes_.append(data, n);
  }

 private:
  std::string& bytes_;
  const std::string& path_;
  const size_t max_line_bytes_;
  int64_t line_ = 1;
  size_t line_bytes_ = 0;
};

// The file's bytes; text (not gzip's packed bytes) goes through a TextAccumulator.
// max_line_bytes == 0: packed bytes, not text.
std::string read_plain(const std::string& path, size_t max_line_bytes) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  std::string bytes;
  TextAccumulator lines(bytes, path, max_line_bytes);
  char buffer[1 << 16];
  size_t got;
  while ((got = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) {
    if (max_line_bytes > 0) lines.append(buffer, got);
    else bytes.append(buffer, got);
  }
  if (std::ferror(file.get())) throw DataError("cannot read " + path + ": " + std::strerror(errno));
  return bytes;
}

// The whole file through zlib's inflate, member after member. Unlike gzread, which passes
// non-gzip bytes through unchanged and stops quietly at trailing garbage, every byte must belong
// to a gzip member that is complete and whose CRC checks.
std::string read_gzip(const std::string& path, size_t max_line_bytes) {
  const std::string packed = read_plain(path, 0);
  auto magic_at = [&](size_t at) {
    return packed.size() >= at + 2 && static_cast<unsigned char>(packed[at]) == 0x1F && static_cast<unsigned char>(packed[at + 1]) == 0x8B;
  };
  if (packed.empty()) return {};
  if (!magic_at(0)) throw DataError(path + ": not gzip data (the file does not start with the gzip signature 1f 8b)");
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) throw DataError(path + ": zlib could not start decompressing");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, &inflateEnd);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(packed.data()));
  z.avail_in = static_cast<uInt>(packed.size());
  if (packed.size() > std::numeric_limits<uInt>::max()) throw DataError(path + ": compressed file too large (over 4 GiB)");
  std::string bytes;
  TextAccumulator lines(bytes, path, max_line_bytes);
  char buffer[1 << 16];
  while (true) {
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof buffer;
    const int code = inflate(&z, Z_NO_FLUSH);
    lines.append(buffer, sizeof buffer - z.avail_out);
    if (code == Z_STREAM_END) {
      const size_t at = packed.size() - z.avail_in;
      if (z.avail_in == 0) break;
      if (!magic_at(at))
        throw DataError(path + ": corrupt gzip data: " + std::to_string(z.avail_in) + " byte(s) of trailing data after the gzip stream (at byte " +
                        std::to_string(at) + ")");
      inflateReset(&z);  // a concatenated member follows
      continue;
    }
    if (code == Z_OK) continue;
    if (code == Z_BUF_ERROR && z.avail_in == 0) throw DataError(path + ": corrupt gzip data: the stream is truncated");
    throw DataError(path + ": corrupt gzip data: " + std::string(z.msg ? z.msg : "inflate failed"));
  }
  return bytes;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

std::vector<std::string> read_lines(const std::string& path, size_t max_line_bytes) {
  return split_lines(ends_with(path, ".gz") ? read_gzip(path, max_line_bytes) : read_plain(path, max_line_bytes));
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

namespace {
std::string hex_byte(unsigned char c) {
  char byte[8];
  std::snprintf(byte, sizeof byte, "0x%02X", c);
  return byte;
}
}  // namespace

std::optional<std::string> check_text_line(std::string_view line) {
  if (auto bad = find_invalid_utf8(line))
    return std::to_string(*bad + 1) + ": invalid UTF-8 (byte " + hex_byte(static_cast<unsigned char>(line[*bad])) + ")";
  for (size_t i = 0; i < line.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(line[i]);
    const bool allowed_space = c == '\t' || c == '\v' || c == '\f' || c == '\r';
    if ((c < 0x20 && !allowed_space) || c == 0x7F) return std::to_string(i + 1) + ": control byte " + hex_byte(c) + " in text";
  }
  return std::nullopt;
}

void check_text_lines(const std::vector<std::string>& lines, const std::string& path) {
  for (size_t i = 0; i < lines.size(); ++i)
    if (std::optional<std::string> problem = check_text_line(lines[i]))
      throw DataError(path + ":" + std::to_string(i + 1) + ":" + *problem);
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
  check_text_lines(source, source_path);
  check_text_lines(target, target_path);
  for (size_t i = 0; i < source.size(); ++i) {
    const int64_t line_number = static_cast<int64_t>(i) + 1;
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
