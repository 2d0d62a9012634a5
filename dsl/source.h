// dsl/source.h — source files and located diagnostics for the architecture language.
//
// Contract:
// - A SourceFile holds the text of one spec (or of one command-line override) and maps byte
//   offsets to 1-based line and column.
// - Diagnostics collects errors in the order found. format() prints each as
//     file:line:col: error: message
//     <the source line>
//     <spaces up to the column>^
//   (the source line and caret are omitted when the location is unknown). Tabs in the source line
//   are kept in the caret line so the caret lines up in a terminal.
// - source_of(loc) finds the text a location points into again, so that errors found after
//   parsing (an experiment's settings, read by the trainer) are quoted like the parser's own.
// - DslError carries every diagnostic of a failed parse or elaboration.
#pragma once

#include "attnlab/ir/graph.pb.h"

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::dsl {

// The largest spec the parser reads (dsl/parser.h): specs are text written by hand, and the bound
// keeps every byte offset well within an int.
inline constexpr size_t kMaxSourceBytes = 1 << 20;

class SourceFile {
 public:
  SourceFile(std::string name, std::string text);
  // Reads a file, or a built-in one (dsl/builtin_files.h); throws std::runtime_error naming it
  // when it cannot be read. Reading stops once the text is over kMaxSourceBytes: the parser
  // refuses such a text as too large, so the rest of a larger file (or of /dev/zero, which has
  // no end) is never needed.
  static std::shared_ptr<const SourceFile> read(const std::filesystem::path& path);

  const std::string& name() const { return name_; }  // as shown in messages
  const std::string& text() const { return text_; }
  ir::SourceLoc loc(int offset) const;               // line 0 when offset < 0
  std::string line_text(int line) const;             // without the newline; "" when out of range

 private:
  std::string name_;
  std::string text_;
  std::vector<int> line_starts_;
};

struct Diagnostic {
  ir::SourceLoc loc;
  std::string message;
};

class Diagnostics {
 public:
  // Files whose lines can be quoted under a diagnostic, looked up by SourceLoc.file.
  void add_source(std::shared_ptr<const SourceFile> file);

  void error(const ir::SourceLoc& loc, std::string message);
  void error(const SourceFile& file, int offset, std::string message) { error(file.loc(offset), std::move(message)); }

  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  const std::vector<Diagnostic>& items() const { return items_; }

  std::string format() const;

 private:
  std::vector<std::shared_ptr<const SourceFile>> sources_;
  std::vector<Diagnostic> items_;
};

// The source that `loc` points into, for quoting its line after parsing: a command-line override
// (named "--set TEXT" or "--use TEXT", as parse_override names its source) is rebuilt from that
// name, a file is read again. Null when the location has no file or the file cannot be read.
std::shared_ptr<const SourceFile> source_of(const ir::SourceLoc& loc);

struct DslError : std::runtime_error {
  explicit DslError(std::string formatted, std::vector<Diagnostic> diagnostics)
      : std::runtime_error(std::move(formatted)), diagnostics(std::move(diagnostics)) {}
  std::vector<Diagnostic> diagnostics;
};

}  // namespace attnlab::dsl
