// tests/fuzz/fuzz_support.h — what the fuzz targets share: a private scratch directory for the
// inputs that the code under test reads from files, and the model file experiments name.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace attnlab::fuzz {

// A directory of this process, created once (the targets run one input at a time).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d = std::filesystem::temp_directory_path() / ("attnlab-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// Writes `bytes` as scratch_dir()/name and returns the path.
inline std::filesystem::path write_scratch(const std::string& name, const std::string& bytes) {
  const std::filesystem::path path = scratch_dir() / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return path;
}

// A model that needs no node types (its output is its input), so that elaboration — parameters,
// overrides, shapes — runs without plugins. Written as scratch_dir()/model.attn.
inline const std::filesystem::path& model_file() {
  static const std::filesystem::path path = write_scratch("model.attn",
                                                          "model m {\n"
                                                          "  param vocab = 100, d_model = 16, layers = 2, heads = 2\n"
                                                          "  param d_k = d_model div heads, scale = d_model / heads\n"
                                                          "  input src: ids(vocab)[batch, src_len]\n"
                                                          "  output y = src\n"
                                                          "}\n");
  return path;
}

}  // namespace attnlab::fuzz
