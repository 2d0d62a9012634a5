#include "app/checkpoint_model.h"

#include "train/checkpoint.h"
#include "train/optimizer.h"

namespace attnlab::cli {

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

CheckpointModel load_checkpoint_model(const std::string& path, const CommonOptions& options) {
  CheckpointModel m;
  static_cast<CheckpointFile&>(m) = read_checkpoint_arg(path);
  const std::string where = m.where();
  if (m.checkpoint.graph().empty())
    throw CliError(1, where + ": no model graph in it (it cannot be translated with; was it written by a trainer that "
                              "stores the graph?)");
  if (m.checkpoint.tokenizer().empty()) throw CliError(1, where + ": no tokenizer in it (it cannot translate raw text)");
  if (!m.graph.ParseFromString(m.checkpoint.graph())) throw CliError(1, where + ": the stored model graph is unreadable");
  try {
    m.tokenizer = data::load_tokenizer(m.checkpoint.tokenizer());
  } catch (const std::exception& e) {
    throw CliError(1, where + ": its tokenizer cannot be loaded: " + e.what());
  }

  m.registry = load_registry(options);
  ir::DimBindings dims;
  for (const ir::GraphInput& input : m.graph.inputs())
    for (const ir::Dim& dim : input.shape())
      if (!dim.symbol().empty()) dims[dim.symbol()] = 8;
  try {
    m.model = std::make_unique<exec::Model>(m.graph, *m.registry, options.seed, dims);
  } catch (const std::exception& e) {
    throw CliError(1, where + ": its model graph does not build: " + e.what());
  }
  for (const ir::GraphInput& input : m.graph.inputs())
    if (input.name() == "src" && input.bound() > 0 && m.tokenizer->vocab_size() > input.bound())
      throw CliError(1, where + ": the tokenizer has " + std::to_string(m.tokenizer->vocab_size()) +
                            " ids but the model's vocabulary has " + std::to_string(input.bound()));
  std::vector<train::ParamRef> params;
  for (exec::Parameter& p : m.model->parameters()) params.push_back({p.name, p.value.view(), p.grad.view()});
  try {
    train::load_parameters(m.checkpoint, params, m.file.string());
  } catch (const train::CheckpointError& e) {
    throw CliError(1, e.what());
  }
  return m;
}

}  // namespace attnlab::cli
