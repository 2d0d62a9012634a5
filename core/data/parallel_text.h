// core/data/parallel_text.h — reading aligned parallel text (one sentence a line).
//
// Contract:
// - read_lines() reads a text file into lines; a name ending in ".gz" is decompressed with zlib
//   (concatenated gzip members included; anything after the last member that is not another gzip
//   member, such as trailing garbage, is an error). "\n" ends a line; a final line without "\n" counts; a
//   trailing "\r" is removed (CRLF files). A missing or unreadable file, or a corrupt gzip stream,
//   throws DataError naming the file; so does a line over max_line_bytes ("FILE:LINE: a line longer
//   than 1 MiB"), refused while it is read, so that a file without line breaks (/dev/zero) ends.
// - read_parallel_text() reads a source and a target file aligned by line and checks them. Errors
//   (DataError, message text fixed by the tests in tests/data):
//     "cannot open FILE: REASON"                              missing or unreadable file
//     "FILE: empty file"                                      zero lines (empty or zero bytes)
//     "line counts differ: SRC has N lines, TGT has M lines"  misaligned files
//     "FILE:LINE:COL: invalid UTF-8 (byte 0xNN)"              COL is the 1-based byte column
//     "FILE:LINE:COL: control byte 0xNN in text"              NUL and C0 controls other than
//                                                             tab, VT, FF and CR; and DEL
//     "no sentence pairs left in SRC / TGT after skipping ..."  everything was skipped
//   Counted skips (not errors), each reported by ONE warning line in ParallelText::warnings:
//     a pair where either side is empty (only whitespace) is skipped;
//     a pair where either side has more than `max_tokens` whitespace-separated tokens is skipped.
//   Skipped pairs never shift the alignment of the others. Warnings are also written to
//   `options.warnings_to` when it is set.
// - Sentences are kept as read (no normalization, no tokenization); UTF-8 is validated strictly
//   (no overlongs, no surrogates, nothing above U+10FFFF).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::data {

// The longest line a reader of sentences accepts (files here, standard input in the tools): far
// beyond a sentence or a paragraph. A language model's text is read with a bound of its own,
// kMaxTextLineBytes: corpora such as text8 are one line of 100 MB.
inline constexpr size_t kMaxLineBytes = size_t{1} << 20;
inline constexpr size_t kMaxTextLineBytes = size_t{1} << 30;

// Every user-facing data problem: bad files, bad tokenizer bytes, impossible batching settings.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SentencePair {
  std::string source;
  std::string target;
};

struct ParallelTextOptions {
  // A pair with more whitespace-separated tokens than this on either side is skipped (counted).
  // 0 disables the check.
  int64_t max_tokens = 250;
  // Where the warning lines are also printed as they are produced (nullptr: nowhere).
  std::ostream* warnings_to = nullptr;
};

struct ParallelText {
  std::vector<SentencePair> pairs;  // the kept pairs, in file order
  int64_t lines = 0;                // lines in each file
  int64_t skipped_empty = 0;        // pairs skipped because a side was empty
  int64_t skipped_too_long = 0;     // pairs skipped because a side exceeded max_tokens
  std::vector<std::string> warnings;
};

std::vector<std::string> read_lines(const std::string& path, size_t max_line_bytes = kMaxLineBytes);

ParallelText read_parallel_text(const std::string& source_path, const std::string& target_path,
                                const ParallelTextOptions& options = {});

// The 0-based byte offset of the first invalid UTF-8 sequence in `text`, or nullopt if valid.
std::optional<size_t> find_invalid_utf8(std::string_view text);

// What is wrong with one line of text, as "COL: invalid UTF-8 (byte 0xNN)" or "COL: control
// byte 0xNN in text" (COL 1-based), or nullopt when it is valid UTF-8 free of control bytes.
std::optional<std::string> check_text_line(std::string_view line);

// Throws DataError "PATH:LINE:COL: ..." for the first line check_text_line() refuses.
void check_text_lines(const std::vector<std::string>& lines, const std::string& path);

// Whitespace-separated tokens (space, tab, CR, LF, FF, VT), as multi-bleu.perl's split.
std::vector<std::string_view> split_whitespace(std::string_view text);
int64_t count_tokens(std::string_view text);

// Both sides of every pair, source then target, as one list: the input of joint vocabularies.
std::vector<std::string_view> joint_sentences(const std::vector<SentencePair>& pairs);

}  // namespace attnlab::data
