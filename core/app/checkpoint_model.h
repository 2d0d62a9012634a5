// core/app/checkpoint_model.h — a checkpoint named on the command line, and a model rebuilt from
// it alone, for the commands that use a trained model (translate, export, attention).
//
// Contract: read_checkpoint_arg(PATH) resolves PATH as train::find_checkpoint does and reads it;
// a missing or damaged checkpoint is CliError(1) with the checkpoint reader's message.
// load_checkpoint_model(PATH) resolves PATH as train::find_checkpoint does (a file, or a
// run directory's best.ckpt, else its newest step checkpoint), reads it, parses its graph
// (Checkpoint.graph), loads its tokenizer, loads the plugins (`options`), builds the model with
// representative sizes for the symbolic dimensions and copies the stored parameters in. Every
// problem is CliError(1) naming the checkpoint file and what is wrong (no graph, no tokenizer, a
// graph that does not build, a tokenizer larger than the model's vocabulary, parameters that do
// not match); plugin failures are PluginError as for every command.
#pragma once

#include "app/cli.h"
#include "attnlab/ckpt/checkpoint.pb.h"
#include "data/tokenizer.h"
#include "exec/model.h"
#include "ir/graph.h"

#include <filesystem>
#include <memory>
#include <string>

namespace attnlab::cli {

struct CheckpointFile {
  std::filesystem::path file;
  ckpt::Checkpoint checkpoint;
  std::string where() const { return "checkpoint " + file.string(); }
};
CheckpointFile read_checkpoint_arg(const std::string& path);

struct CheckpointModel : CheckpointFile {
  ir::GraphDef graph;
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<exec::Model> model;  // after the registry: destroyed first
};

CheckpointModel load_checkpoint_model(const std::string& path, const CommonOptions& options);

}  // namespace attnlab::cli
