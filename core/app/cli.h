// core/app/cli.h — the attnlab command line: shared options and one setup function per subcommand.
//
// Contract: each subcommand lives in its own file and is added by a function that attaches a
// CLI11 subcommand and its callback. Callbacks report user errors by throwing CliError (exit code
// and message); main() prints "attnlab: error: MESSAGE" on stderr and exits with that code.
// Plugin loading failures exit 2 (kPluginErrorExit).
#pragma once

#include "node/registry.h"
#include "train/limits.h"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::cli {

struct CliError : std::runtime_error {
  CliError(int code, const std::string& message) : std::runtime_error(message), exit_code(code) {}
  int exit_code;
};

struct CommonOptions {
  int threads = 0;  // 0: all cores
  uint64_t seed = 1;
  std::vector<std::string> plugin_path;
};

// Adds --threads, --seed and --plugin-path to a subcommand, bound to `options`.
void add_common_options(CLI::App& command, CommonOptions& options);

// A CLI11 check of a flag against the shared bounds (train/limits.h): the flag's text must be a
// whole number (a number) in the limit's range, with the same words as an experiment file gets.
// A failed check is "attnlab: error: --FLAG: must be ..." and exit code 1 (main.cpp).
CLI::Validator integer_in(const train::IntLimit& limit);
// For a flag that names a file or directory: "" is refused ("must not be empty"), instead of
// reaching the file system as a path that names nothing.
CLI::Validator non_empty_path();
CLI::Validator real_in(const train::RealLimit& limit);

// Every line of a stream (a trailing CR dropped): text given on standard input. Each line must be
// valid UTF-8 without NUL or other control bytes (tab and CR excepted), and at most
// data::kMaxLineBytes long; otherwise CliError(1) naming `what` ("standard input"), the line and
// the byte or the bound.
std::vector<std::string> read_lines(std::istream& in, const std::string& what = "standard input");

// Loads every plugin on the search path (throws PluginError on the first that fails). A
// --plugin-path that is not a directory is a CliError(2) naming it.
std::unique_ptr<Registry> load_registry(const CommonOptions& options);

void add_plugins_command(CLI::App& app, CommonOptions& options);
// `attnlab gradcheck [TYPE...]` (gradcheck_command.cpp): gradient and decode checks of node types.
void add_gradcheck_command(CLI::App& app, CommonOptions& options);

// `attnlab bleu --ref FILE... [--hyp FILE] [--metric ...] [--tokenize ...]` (core/app/bleu_command.cpp).
void add_bleu_command(CLI::App& app);
void add_check_command(CLI::App& app, CommonOptions& options);   // check_command.cpp (needs attnlab_dsl)
void add_graph_command(CLI::App& app, CommonOptions& options);   // graph_command.cpp
void add_params_command(CLI::App& app, CommonOptions& options);  // params_command.cpp
// `attnlab translate --checkpoint RUN_DIR_OR_FILE [--beam N] [--alpha A]` (translate_command.cpp).
void add_translate_command(CLI::App& app, CommonOptions& options);
// `attnlab generate --checkpoint RUN [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]` (generate_command.cpp).
void add_generate_command(CLI::App& app, CommonOptions& options);
void add_run_command(CLI::App& app, CommonOptions& options);     // run_command.cpp (needs attnlab_trainer)
// `attnlab ablate [EXPERIMENT] [--vary K=V1,V2]... [--grid] [--out DIR]` (ablate_command.cpp).
void add_ablate_command(CLI::App& app, CommonOptions& options);
// `attnlab export --checkpoint RUN --format safetensors|onnx --out FILE` (export_command.cpp).
void add_export_command(CLI::App& app, CommonOptions& options);
// `attnlab attention --checkpoint RUN --src TEXT [--tgt TEXT] [--out FILE.html]` (attention_command.cpp).
void add_attention_command(CLI::App& app, CommonOptions& options);
// `attnlab bench`: training and decoding throughput against the PyTorch reference (bench_command.cpp).
void add_bench_command(CLI::App& app, CommonOptions& options);

}  // namespace attnlab::cli
