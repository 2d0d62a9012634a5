// dsl/builtin_files.h — the spec files compiled into the binary, so that `attnlab run`, `bench`
// and `ablate` need no file on disk.
//
// Contract:
// - The built-in files live in the directory "<built-in>", which is never looked up on disk:
//   SourceFile::read() and an experiment's model reference answer for a path in it from the
//   compiled text. Imports, `model = "..."` relative to a built-in experiment, diagnostics and
//   their quoted lines work as for files on disk ("<built-in>/default.attn:3:5: error: ...").
// - The files: default.attn (experiments/default.attn at build time: the experiment `attnlab run`
//   runs without a file) and transformer_base.attn (experiments/transformer_base.attn, the model
//   it names).
#pragma once

#include <filesystem>
#include <string>

namespace attnlab::dsl {

// <built-in>/default.attn and <built-in>/transformer_base.attn.
const std::filesystem::path& builtin_default_experiment();
const std::filesystem::path& builtin_transformer_base();

// The text of a built-in file; null when `path` does not name one.
const std::string* builtin_file_text(const std::filesystem::path& path);

}  // namespace attnlab::dsl
