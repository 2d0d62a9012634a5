// core/app/checkpoint_model.h — a checkpoint named on the command line, and a model rebuilt from
// it alone, for the commands that use a trained run (translate, generate, attention, export).
//
// Contract:
// - add_checkpoint_option(command, path) declares the required `--checkpoint FILE_OR_RUN_DIR` that
//   translate, generate, export and attention share.
// - read_checkpoint_arg(PATH) resolves PATH as train::find_checkpoint does (a file, or a run
//   directory's best.ckpt, else its newest step checkpoint) and reads it; a missing or damaged
//   checkpoint is CliError(1) with the checkpoint reader's message.
// - load_checkpoint_model(PATH, options, task, command) reads it so, then its graph, tokenizer and
//   parameters, loads the plugins (`options`) and builds the model with representative sizes for
//   the symbolic dimensions. It checks the checkpoint against `task`: the task the run trained
//   (its settings' "task", translation when absent) must be `task`, and the graph must fit the task
//   (task::check_graph, its located diagnostics on stderr); the tokenizer must not have more ids
//   than the model's vocabulary. Every failure is a CliError(1) naming the checkpoint file and what
//   is wrong (no graph, no tokenizer, a graph that does not build, parameters that do not match,
//   "attnlab COMMAND needs a TASK checkpoint" when the run trained another task); plugin failures
//   are PluginError as for every command.
#pragma once

#include "app/cli.h"
#include "attnlab/ckpt/checkpoint.pb.h"
#include "data/tokenizer.h"
#include "exec/model.h"
#include "ir/graph.h"
#include "task/task.h"

#include <filesystem>
#include <memory>
#include <string>

namespace attnlab::cli {

struct CheckpointFile {
  std::filesystem::path file;
  ckpt::Checkpoint checkpoint;
  std::string where() const { return "checkpoint " + file.string(); }  // for messages
};
void add_checkpoint_option(CLI::App& command, std::string& path);

CheckpointFile read_checkpoint_arg(const std::string& path);

// The task the run trained: its settings' "task", translation when absent (older checkpoints).
std::string trained_task_of(const ckpt::Checkpoint& checkpoint);

struct CheckpointModel : CheckpointFile {
  ir::GraphDef graph;
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::unique_ptr<Registry> registry;  // outlives the model (its nodes hold plugin handles)
  std::unique_ptr<exec::Model> model;
};

CheckpointModel load_checkpoint_model(const std::string& path, const CommonOptions& options, const task::Task& task,
                                      const std::string& command);

}  // namespace attnlab::cli
