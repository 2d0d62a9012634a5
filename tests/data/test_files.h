// tests/data/test_files.h — writing small text and gzip files for the data tests.
#pragma once

#include "support/run_command.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace attnlab::test {

inline std::string write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  return path.string();
}

inline std::string write_gzip(const std::filesystem::path& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  if (!file) throw std::runtime_error("gzopen failed for " + path.string());
  if (!bytes.empty() && gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) <= 0)
    throw std::runtime_error("gzwrite failed for " + path.string());
  gzclose(file);
  return path.string();
}

// A temporary directory removed when the fixture ends.
struct TempDir {
  std::filesystem::path path = make_temp_dir("attnlab-data-");
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

}  // namespace attnlab::test
