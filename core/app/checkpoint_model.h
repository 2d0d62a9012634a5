// core/app/checkpoint_model.h — a model rebuilt from a checkpoint alone, for the commands that
// use a trained run (translate, generate).
//
// Contract: load_checkpoint_model(arg, options, task, command) resolves ARG (train::find_checkpoint:
// a file, or a run directory's best.ckpt, else its newest step checkpoint), reads the checkpoint,
// its graph, tokenizer and parameters, loads the plugins and builds the model. It checks the
// checkpoint against `task`: the task the run trained (its settings' "task", translation when
// absent) must be `task`, and the graph must fit the task (task::check_graph, its located
// diagnostics on stderr); the tokenizer must not have more ids than the model's vocabulary.
// Every failure is a CliError(1) naming the checkpoint file and what is wrong ("`command` needs a
// TASK checkpoint" when the run trained another task).
#pragma once

#include "app/cli.h"
#include "checkpoint.pb.h"
#include "data/tokenizer.h"
#include "exec/model.h"
#include "task/task.h"

#include <filesystem>
#include <memory>
#include <string>

namespace attnlab::cli {

struct CheckpointModel {
  std::filesystem::path file;
  std::string where;  // "checkpoint FILE", for messages
  ckpt::Checkpoint checkpoint;
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::unique_ptr<Registry> registry;  // outlives the model (its nodes hold plugin handles)
  std::unique_ptr<exec::Model> model;
};

CheckpointModel load_checkpoint_model(const std::string& arg, const CommonOptions& options, const task::Task& task,
                                      const std::string& command);

}  // namespace attnlab::cli
