// dsl/builtin_files.cpp — the built-in spec files (contract in builtin_files.h).
#include "dsl/builtin_files.h"

#include "builtin_texts.h"

namespace attnlab::dsl {

namespace {
const std::filesystem::path kDirectory = "<built-in>";
}  // namespace

const std::filesystem::path& builtin_default_experiment() {
  static const std::filesystem::path path = kDirectory / "default.attn";
  return path;
}

const std::filesystem::path& builtin_transformer_base() {
  static const std::filesystem::path path = kDirectory / "transformer_base.attn";
  return path;
}

const std::string* builtin_file_text(const std::filesystem::path& path) {
  static const std::string experiment = kBuiltinDefaultExperiment, model = kBuiltinTransformerBase;
  const std::filesystem::path normal = path.lexically_normal();
  if (normal == builtin_default_experiment()) return &experiment;
  if (normal == builtin_transformer_base()) return &model;
  return nullptr;
}

}  // namespace attnlab::dsl
