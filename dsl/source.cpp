#include "dsl/source.h"

#include "dsl/builtin_files.h"

#include <algorithm>
#include <array>
#include <fstream>

namespace attnlab::dsl {

SourceFile::SourceFile(std::string name, std::string text) : name_(std::move(name)), text_(std::move(text)) {
  line_starts_.push_back(0);
  for (size_t i = 0; i < text_.size(); ++i)
    if (text_[i] == '\n') line_starts_.push_back(static_cast<int>(i + 1));
}

std::shared_ptr<const SourceFile> SourceFile::read(const std::filesystem::path& path) {
  if (const std::string* text = builtin_file_text(path)) return std::make_shared<SourceFile>(path.string(), *text);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path.string() + "'");
  std::string text;
  std::array<char, 1 << 16> chunk;
  while (text.size() <= kMaxSourceBytes && (in.read(chunk.data(), chunk.size()) || in.gcount() > 0))
    text.append(chunk.data(), static_cast<size_t>(in.gcount()));
  if (in.bad()) throw std::runtime_error("cannot read '" + path.string() + "'");
  return std::make_shared<SourceFile>(path.string(), std::move(text));
}

std::shared_ptr<const SourceFile> source_of(const ir::SourceLoc& loc) {
  const std::string& name = loc.file();
  if (name.empty()) return nullptr;
  for (const char* flag : {"--set ", "--use "})
    if (name.rfind(flag, 0) == 0) return std::make_shared<SourceFile>(name, name.substr(std::string(flag).size()));
  try {
    return SourceFile::read(name);
  } catch (const std::runtime_error&) {
    return nullptr;
  }
}

ir::SourceLoc SourceFile::loc(int offset) const {
  ir::SourceLoc loc;
  loc.set_file(name_);
  if (offset < 0) return loc;
  offset = std::min<int>(offset, static_cast<int>(text_.size()));
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
  const int line = static_cast<int>(it - line_starts_.begin());  // 1-based
  loc.set_line(line);
  loc.set_column(offset - line_starts_[line - 1] + 1);
  return loc;
}

std::string SourceFile::line_text(int line) const {
  if (line < 1 || line > static_cast<int>(line_starts_.size())) return "";
  const size_t begin = line_starts_[line - 1];
  size_t end = text_.find('\n', begin);
  if (end == std::string::npos) end = text_.size();
  std::string s = text_.substr(begin, end - begin);
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

void Diagnostics::add_source(std::shared_ptr<const SourceFile> file) {
  for (const auto& f : sources_)
    if (f == file) return;
  sources_.push_back(std::move(file));
}

void Diagnostics::error(const ir::SourceLoc& loc, std::string message) {
  // The same error at the same place is reported once (a block applied many times, say).
  for (const Diagnostic& d : items_)
    if (d.message == message && d.loc.file() == loc.file() && d.loc.line() == loc.line() &&
        d.loc.column() == loc.column())
      return;
  items_.push_back({loc, std::move(message)});
}

std::string Diagnostics::format() const {
  std::string out;
  for (const Diagnostic& d : items_) {
    if (!d.loc.file().empty()) {
      out += d.loc.file();
      if (d.loc.line() > 0) {
        out += ':';
        out += std::to_string(d.loc.line());
        out += ':';
        out += std::to_string(d.loc.column());
      }
      out += ": ";
    }
    out += "error: " + d.message + "\n";
    if (d.loc.line() <= 0) continue;
    for (const auto& f : sources_) {
      if (f->name() != d.loc.file()) continue;
      const std::string line = f->line_text(d.loc.line());
      out += line + "\n";
      std::string caret;
      for (int i = 0; i + 1 < d.loc.column() && i < static_cast<int>(line.size()); ++i)
        caret += line[i] == '\t' ? '\t' : ' ';
      out += caret + "^\n";
      break;
    }
  }
  return out;
}

}  // namespace attnlab::dsl
