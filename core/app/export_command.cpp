// `attnlab export --checkpoint RUN_DIR_OR_FILE --format safetensors --out FILE`: a checkpoint's
// weights in another tool's format (docs/tools.md).
//
// safetensors: every parameter under its checkpoint name, with the resolved spec, the settings
// and the tokenizer in the metadata (train/safetensors.h); readable by the safetensors library,
// by numpy alone, and by `attnlab run --init-from`. The checkpoint is found as `translate` finds
// it (train::find_checkpoint). Every user error is one line and exit code 1: an unknown format
// (CLI11's check), a missing or damaged checkpoint, an output that cannot be written. `onnx` is
// a known format that this build cannot write yet: it says so and exits 1, writing nothing.
#include "app/checkpoint_model.h"
#include "app/cli.h"
#include "train/checkpoint.h"
#include "train/safetensors.h"

#include <iostream>

namespace attnlab::cli {

namespace {

struct ExportArgs {
  std::string checkpoint;
  std::string format;
  std::string out;
};

void run_export(const ExportArgs& args) {
  if (args.format == "onnx")
    throw CliError(1, "--format onnx: ONNX export is not available yet (export --format safetensors gives the weights)");
  const auto [file, checkpoint] = read_checkpoint_arg(args.checkpoint);
  if (checkpoint.parameters().empty()) throw CliError(1, "checkpoint " + file.string() + ": holds no parameters");
  const std::filesystem::path out(args.out);
  if (out.has_parent_path() && !std::filesystem::is_directory(out.parent_path()))
    throw CliError(1, "--out " + args.out + ": directory " + out.parent_path().string() + " does not exist");
  if (std::filesystem::is_directory(out)) throw CliError(1, "--out " + args.out + ": is a directory");
  try {
    train::write_safetensors(out, checkpoint);
  } catch (const std::exception& e) {
    throw CliError(1, "--out " + args.out + ": " + e.what());
  }
  std::cerr << "exported " << checkpoint.parameters_size() << " parameters of " << file.string() << " (step " << checkpoint.step()
            << ") to " << out.string() << "\n";
}

}  // namespace

void add_export_command(CLI::App& app) {
  CLI::App* command = app.add_subcommand("export", "Write a checkpoint's weights in another format (safetensors)");
  auto args = std::make_shared<ExportArgs>();
  command
      ->add_option("--checkpoint", args->checkpoint,
                   "Checkpoint file, or a run directory (its checkpoints/best.ckpt, else the newest step checkpoint)")
      ->required();
  command->add_option("--format", args->format, "Output format: safetensors (onnx: not yet)")
      ->required()
      ->check(CLI::IsMember({"safetensors", "onnx"}));
  command->add_option("--out", args->out, "Output file")->required();
  command->callback([args] { run_export(*args); });
}

}  // namespace attnlab::cli
