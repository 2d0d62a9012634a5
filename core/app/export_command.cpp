// `attnlab export --checkpoint RUN_DIR_OR_FILE --format safetensors|onnx --out FILE`: a checkpoint's
// weights, or its forward graph, in another tool's format (docs/tools.md).
//
// safetensors: every parameter under its checkpoint name, with the resolved spec, the settings
// and the tokenizer in the metadata (train/safetensors.h); readable by the safetensors library,
// by numpy alone, and by `attnlab run --init-from`.
// onnx: the forward graphs of the checkpoint's task (onnx/onnx_export.h) with dynamic batch and
// length axes. FILE is the first graph (teacher-forced logits for translation, next-token logits
// for a language model); translation also writes STEM.encoder.onnx and STEM.decoder.onnx beside it
// (STEM: FILE without its .onnx). Every graph is built before any file is written, so a node
// without a lowering writes nothing.
// The checkpoint is found as `translate` finds it (train::find_checkpoint). Every user error is one
// line and exit code 1: an unknown format (CLI11's check), a missing or damaged checkpoint, a task
// without ONNX graphs, a node without a lowering, an output that cannot be written.
#include "app/checkpoint_model.h"
#include "app/cli.h"
#include "onnx/onnx_export.h"
#include "train/checkpoint.h"
#include "train/safetensors.h"

#include <iostream>
#include <utility>
#include <vector>

namespace attnlab::cli {

namespace {

struct ExportArgs {
  std::string checkpoint;
  std::string format;
  std::string out;
};

void check_out(const ExportArgs& args) {
  const std::filesystem::path out(args.out);
  if (out.has_parent_path() && !std::filesystem::is_directory(out.parent_path()))
    throw CliError(1, "--out " + args.out + ": directory " + out.parent_path().string() + " does not exist");
  if (std::filesystem::is_directory(out)) throw CliError(1, "--out " + args.out + ": is a directory");
}

void export_safetensors(const ExportArgs& args) {
  const auto [file, checkpoint] = read_checkpoint_arg(args.checkpoint);
  if (checkpoint.parameters().empty()) throw CliError(1, "checkpoint " + file.string() + ": holds no parameters");
  check_out(args);
  try {
    train::write_safetensors(args.out, checkpoint);
  } catch (const std::exception& e) {
    throw CliError(1, "--out " + args.out + ": " + e.what());
  }
  std::cerr << "exported " << checkpoint.parameters_size() << " parameters of " << file.string() << " (step " << checkpoint.step()
            << ") to " << args.out << "\n";
}

// Where graph `name` goes: FILE for the first, STEM.NAME.onnx for the others.
std::filesystem::path onnx_path(const std::string& out, const std::string& name, bool first) {
  if (first) return out;
  const std::string suffix = ".onnx";
  const bool has_suffix = out.size() > suffix.size() && out.compare(out.size() - suffix.size(), suffix.size(), suffix) == 0;
  return (has_suffix ? out.substr(0, out.size() - suffix.size()) : out) + "." + name + suffix;
}

void export_onnx(const ExportArgs& args, const CommonOptions& options) {
  const std::string trained = trained_task_of(read_checkpoint_arg(args.checkpoint).checkpoint);
  const task::Task* task = nullptr;
  std::vector<onnx::GraphSelection> graphs;
  try {
    task = &task::find_task(trained);
    graphs = onnx::task_graphs(*task);
  } catch (const std::exception& e) {
    throw CliError(1, "checkpoint " + args.checkpoint + ": it was trained for the " + trained + " task, which cannot be exported to ONNX: " +
                          e.what());
  }
  check_out(args);
  const CheckpointModel loaded = load_checkpoint_model(args.checkpoint, options, *task, "export");
  const std::map<std::string, std::string> common = {{"attnlab.task", task->name()},
                                                     {"attnlab.checkpoint", loaded.file.string()},
                                                     {"attnlab.step", std::to_string(loaded.checkpoint.step())},
                                                     {"attnlab.tokenizer_kind", loaded.checkpoint.tokenizer_kind()}};
  std::vector<std::pair<std::filesystem::path, std::string>> files;
  for (size_t i = 0; i < graphs.size(); ++i) {
    std::map<std::string, std::string> metadata = common;
    metadata["attnlab.graph"] = graphs[i].name;
    try {
      files.emplace_back(onnx_path(args.out, graphs[i].name, i == 0), onnx::to_onnx(*loaded.model, graphs[i], metadata));
    } catch (const onnx::ExportError& e) {
      throw CliError(1, loaded.where() + ": the " + graphs[i].name + " graph cannot be exported to ONNX:\n" + e.what());
    }
  }
  for (const auto& [path, bytes] : files) {
    try {
      train::write_file_atomically(path, bytes);
    } catch (const std::exception& e) {
      throw CliError(1, "--out " + path.string() + ": " + e.what());
    }
    std::cerr << "exported the " << task->name() << " model of " << loaded.file.string() << " (step " << loaded.checkpoint.step()
              << ") to " << path.string() << "\n";
  }
}

}  // namespace

void add_export_command(CLI::App& app, CommonOptions& options) {
  CLI::App* command = app.add_subcommand("export", "Write a checkpoint's weights (safetensors) or forward graphs (onnx) in another format");
  auto args = std::make_shared<ExportArgs>();
  add_checkpoint_option(*command, args->checkpoint);
  command->add_option("--format", args->format, "Output format: safetensors (the weights) or onnx (the forward graphs)")
      ->required()
      ->check(CLI::IsMember({"safetensors", "onnx"}));
  command->add_option("--out", args->out,
                      "Output file (onnx, translation: also STEM.encoder.onnx and STEM.decoder.onnx beside it)")
      ->required()
      ->check(non_empty_path());
  add_common_options(*command, options);
  command->callback([args, &options] {
    if (args->format == "onnx") export_onnx(*args, options);
    else export_safetensors(*args);
  });
}

}  // namespace attnlab::cli
