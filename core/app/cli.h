// core/app/cli.h — the attnlab command line: shared options and one setup function per subcommand.
//
// Contract: each subcommand lives in its own file and is added by a function that attaches a
// CLI11 subcommand and its callback. Callbacks report user errors by throwing CliError (exit code
// and message); main() prints "attnlab: error: MESSAGE" on stderr and exits with that code.
// Plugin loading failures exit 2 (kPluginErrorExit).
#pragma once

#include "node/registry.h"

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

// Every line of a stream (a trailing CR dropped): text given on standard input.
std::vector<std::string> read_lines(std::istream& in);

// Loads every plugin on the search path (throws PluginError on the first that fails).
std::unique_ptr<Registry> load_registry(const CommonOptions& options);

void add_plugins_command(CLI::App& app, CommonOptions& options);

// `attnlab bleu --ref FILE [--hyp FILE]` (core/app/bleu_command.cpp).
void add_bleu_command(CLI::App& app);
void add_check_command(CLI::App& app, CommonOptions& options);   // check_command.cpp (needs attnlab_dsl)
void add_graph_command(CLI::App& app, CommonOptions& options);   // graph_command.cpp
void add_params_command(CLI::App& app, CommonOptions& options);  // params_command.cpp
// `attnlab translate --checkpoint RUN_DIR_OR_FILE [--beam N] [--alpha A]` (translate_command.cpp).
void add_translate_command(CLI::App& app, CommonOptions& options);
void add_run_command(CLI::App& app, CommonOptions& options);     // run_command.cpp (needs attnlab_trainer)
// `attnlab ablate [EXPERIMENT] [--vary K=V1,V2]... [--grid] [--out DIR]` (ablate_command.cpp).
void add_ablate_command(CLI::App& app, CommonOptions& options);
// `attnlab bench`: training and decoding throughput against the PyTorch reference (bench_command.cpp).
void add_bench_command(CLI::App& app, CommonOptions& options);

}  // namespace attnlab::cli
