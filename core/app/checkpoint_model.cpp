// core/app/checkpoint_model.cpp — see checkpoint_model.h.
#include "app/checkpoint_model.h"

#include "ir/protobuf_log.h"
#include "train/checkpoint.h"

#include <iostream>

namespace attnlab::cli {

void add_checkpoint_option(CLI::App& command, std::string& path) {
  command
      .add_option("--checkpoint", path,
                  "Checkpoint file, or a run directory (its checkpoints/best.ckpt, else the newest step checkpoint)")
      ->required()
      ->check(non_empty_path());
}

CheckpointFile read_checkpoint_arg(const std::string& path) {
  CheckpointFile f;
  try {
    f.file = train::find_checkpoint(path);
    f.checkpoint = train::read_checkpoint(f.file);
  } catch (const train::CheckpointError& e) {
    throw CliError(1, e.what());
  }
  return f;
}

std::string trained_task_of(const ckpt::Checkpoint& checkpoint) {
  const auto trained = checkpoint.settings().find("task");
  return trained == checkpoint.settings().end() ? task::translation().name() : trained->second;
}

CheckpointModel load_checkpoint_model(const std::string& path, const CommonOptions& options, const task::Task& task,
                                      const std::string& command) {
  CheckpointModel out;
  static_cast<CheckpointFile&>(out) = read_checkpoint_arg(path);
  const ckpt::Checkpoint& checkpoint = out.checkpoint;
  const std::string where = out.where();
  if (checkpoint.graph().empty())
    throw CliError(1, where + ": no model graph in it (attnlab " + command + " cannot use it; was it written by a trainer that "
                              "stores the graph?)");
  if (checkpoint.tokenizer().empty()) throw CliError(1, where + ": no tokenizer in it (it cannot read raw text)");
  const std::string trained_task = trained_task_of(checkpoint);
  if (trained_task != task.name())
    throw CliError(1, where + ": it was trained for the " + trained_task + " task; attnlab " + command + " needs a " + task.name() +
                          " checkpoint");
  {
    const ir::ProtobufLogCapture log;
    if (!out.graph.ParseFromString(checkpoint.graph()))
      throw CliError(1, where + ": the stored model graph is unreadable" + (log.reason().empty() ? "" : " (" + log.reason() + ")"));
  }
  try {
    task::check_graph(task, out.graph);
  } catch (const dsl::DslError& e) {
    std::cerr << e.what();
    throw CliError(1, where + ": its model graph is not a " + task.name() + " model");
  }
  try {
    out.tokenizer = data::load_tokenizer(checkpoint.tokenizer());
  } catch (const std::exception& e) {
    throw CliError(1, where + ": its tokenizer cannot be loaded: " + e.what());
  }
  out.registry = load_registry(options);
  ir::DimBindings dims;
  for (const ir::GraphInput& input : out.graph.inputs())
    for (const ir::Dim& dim : input.shape())
      if (!dim.symbol().empty()) dims[dim.symbol()] = 8;
  try {
    out.model = std::make_unique<exec::Model>(out.graph, *out.registry, options.seed, dims);
  } catch (const std::exception& e) {
    throw CliError(1, where + ": its model graph does not build: " + e.what());
  }
  const std::string& ids_input = task.inputs().front().name;
  for (const ir::GraphInput& input : out.graph.inputs())
    if (input.name() == ids_input && input.bound() > 0 && out.tokenizer->vocab_size() > input.bound())
      throw CliError(1, where + ": the tokenizer has " + std::to_string(out.tokenizer->vocab_size()) +
                            " ids but the model's vocabulary has " + std::to_string(input.bound()));
  std::vector<train::ParamRef> params;
  for (exec::Parameter& p : out.model->parameters()) params.push_back({p.name, p.value.view(), p.grad.view()});
  try {
    train::load_parameters(checkpoint, params, out.file.string());
  } catch (const train::CheckpointError& e) {
    throw CliError(1, e.what());
  }
  return out;
}

}  // namespace attnlab::cli
