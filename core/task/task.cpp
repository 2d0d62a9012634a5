// core/task/task.cpp — the tasks and the check of a graph against one (see task.h).
#include "task/task.h"

#include "dsl/source.h"
#include "node/suggest.h"

#include <map>
#include <sstream>

namespace attnlab::task {

namespace {

std::string describe_port(const InputPort& port) {
  std::string dims;
  for (const std::string& d : port.dims) dims += (dims.empty() ? "" : ", ") + d;
  return "input '" + port.name + "': " + port.kind + "[" + dims + "]";
}

const ir::GraphInput* find_input(const ir::GraphDef& graph, const std::string& name) {
  for (const ir::GraphInput& input : graph.inputs())
    if (input.name() == name) return &input;
  return nullptr;
}

// The sizes of `graph`'s symbolic input dimensions for tensors fed to the named inputs: every
// symbol of a fed input gets that tensor's size along the axis; other symbols are left out.
ir::DimBindings bind_dims(const ir::GraphDef& graph, const exec::TensorMap& feeds) {
  ir::DimBindings dims;
  for (const auto& [name, tensor] : feeds) {
    const ir::GraphInput* input = find_input(graph, name);
    if (!input) continue;
    for (int axis = 0; axis < input->shape_size() && axis < static_cast<int>(tensor.shape().size()); ++axis)
      if (!input->shape(axis).symbol().empty()) dims[input->shape(axis).symbol()] = tensor.shape()[axis];
  }
  return dims;
}

std::vector<std::string> output_names(const ir::GraphDef& graph) {
  std::vector<std::string> names;
  for (const ir::GraphOutput& output : graph.outputs()) names.push_back(output.name());
  return names;
}

std::vector<std::string> input_names(const ir::GraphDef& graph) {
  std::vector<std::string> names;
  for (const ir::GraphInput& input : graph.inputs()) names.push_back(input.name());
  return names;
}

[[noreturn]] void throw_diagnostics(dsl::Diagnostics& diags) { throw dsl::DslError(diags.format(), diags.items()); }

void add_source_of(dsl::Diagnostics& diags, const ir::SourceLoc& loc) {
  if (auto source = dsl::source_of(loc)) diags.add_source(source);
}

}  // namespace

std::vector<std::string> Task::feed_names() const {
  std::vector<std::string> names;
  for (const InputPort& input : inputs()) names.push_back(input.name);
  return names;
}

std::string Task::describe() const {
  std::ostringstream out;
  out << "task " << name() << "\n  graph inputs:\n";
  for (const InputPort& input : inputs()) out << "    " << describe_port(input) << " — " << input.doc << "\n";
  out << "  graph outputs:\n";
  for (const OutputPort& output : outputs()) out << "    output '" << output.name << "' — " << output.doc << "\n";
  out << "  model parameters:\n";
  for (const ModelParam& p : params()) out << "    " << p.name << (p.required ? " (required)" : "") << " — " << p.doc << "\n";
  out << "  batches: " << batches() << "\n  validation: " << validation() << "\n  decoding: " << decoding() << "\n";
  return out.str();
}

// ---- Translation --------------------------------------------------------------------------------

TranslationTask::TranslationTask() : Task("translation") {
  inputs_ = {{src, "ids", {"batch", "source length"}, "source token ids, <pad>-padded"},
             {tgt_in, "ids", {"batch", "target length"}, "<s> followed by the target ids (teacher forcing)"},
             {tgt_out, "ids", {"batch", "target length"}, "the target ids followed by </s>: what each position predicts"}};
  const Objective& o = objective();
  outputs_ = {{o.loss, "scalar mean cross-entropy over the non-padding tgt_out tokens (with label smoothing)"},
              {o.tokens, "scalar count of non-padding tgt_out tokens"},
              {o.correct, "scalar count of tokens whose arg-max is right"},
              {logits, "[batch, target length, vocab] next-token scores (decoding)"},
              {memory, "the encoder output (decoding runs the encoder once)"}};
  params_ = {{"vocab", ModelParam::Use::SetFromData, true, "set to the size of the vocabulary built from the data"},
             {"label_smoothing", ModelParam::Use::SetFromTrainSetting, false,
              "train.label_smoothing sets it; evaluation sets it to 0 (so perplexity is the true one)"},
             {"dropout", ModelParam::Use::SetFromTrainSetting, false, "train.dropout sets it"},
             {"d_model", ModelParam::Use::Read, false, "read by the noam schedule (its d_model^-0.5)"}};
}

std::string TranslationTask::batches() const {
  return "sentence pairs bucketed by length up to train.batch_tokens tokens, shuffled by the seed each epoch";
}
std::string TranslationTask::validation() const {
  return "dev loss, perplexity and accuracy without label smoothing; BLEU and chrF of greedy translations";
}
std::string TranslationTask::decoding() const {
  return "the encoder once, then the decoder one position at a time with the key/value cache; greedy or beam search";
}

TrainingFeeds TranslationTask::feeds(const ir::GraphDef& graph, const TensorView& source, const TensorView& target_in,
                                     const TensorView& target_out) const {
  TrainingFeeds out;
  out.feeds = {{src, source}, {tgt_in, target_in}, {tgt_out, target_out}};
  out.dims = bind_dims(graph, out.feeds);
  return out;
}

// ---- Language modelling -------------------------------------------------------------------------

LanguageModelTask::LanguageModelTask() : Task("language_model") {
  inputs_ = {{input_ids, "ids", {"batch", "length"}, "a block of token ids"},
             {labels, "ids", {"batch", "length"}, "the same block shifted by one: the token after each position"}};
  const Objective& o = objective();
  outputs_ = {{o.loss, "scalar mean cross-entropy over the block's tokens"},
              {o.tokens, "scalar count of predicted tokens"},
              {o.correct, "scalar count of tokens whose arg-max is right"},
              {logits, "[batch, length, vocab] next-token scores (sampling)"}};
  params_ = {{"vocab", ModelParam::Use::SetFromData, true, "set to the size of the vocabulary built from the text"},
             {"block_size", ModelParam::Use::Read, true, "the context length: training blocks have this many tokens"},
             {"dropout", ModelParam::Use::SetFromTrainSetting, false, "train.dropout sets it"},
             {"label_smoothing", ModelParam::Use::SetFromTrainSetting, false,
              "train.label_smoothing sets it; evaluation sets it to 0"},
             {"d_model", ModelParam::Use::Read, false, "read by the noam schedule (its d_model^-0.5)"}};
}

std::string LanguageModelTask::batches() const {
  return "train.batch rows, each `block_size` consecutive tokens of the training text starting at an offset drawn "
         "uniformly from the run's random stream (nanoGPT's sampling); labels are the same rows shifted by one";
}
std::string LanguageModelTask::validation() const {
  return "loss over train.valid_blocks blocks of the held-out text (always the same ones), perplexity, and bits per "
         "character for a character vocabulary";
}
std::string LanguageModelTask::decoding() const {
  return "the prompt then one token at a time with the key/value cache, sampled from softmax(logits / temperature), "
         "optionally among the top k";
}

TrainingFeeds LanguageModelTask::feeds(const ir::GraphDef& graph, const TensorView& inputs, const TensorView& targets) const {
  TrainingFeeds out;
  out.feeds = {{input_ids, inputs}, {labels, targets}};
  out.dims = bind_dims(graph, out.feeds);
  return out;
}

// ---- Registry of tasks ----------------------------------------------------------------------------

const TranslationTask& translation() {
  static const TranslationTask task;
  return task;
}
const LanguageModelTask& language_model() {
  static const LanguageModelTask task;
  return task;
}

std::vector<std::string> task_names() { return {translation().name(), language_model().name()}; }

const Task& find_task(const std::string& name) {
  for (const Task* task : std::initializer_list<const Task*>{&translation(), &language_model()})
    if (task->name() == name) return *task;
  throw TaskError("unknown task '" + name + "'; tasks: " + join_names(task_names()) + did_you_mean(name, task_names()));
}

const Task& task_of(const dsl::ExperimentSpec& spec) {
  const dsl::ExperimentSetting* s = spec.find("task");
  if (!s) return translation();
  const bool named = s->value.kind == dsl::ConstValue::Kind::Name || s->value.kind == dsl::ConstValue::Kind::String;
  try {
    if (!named) throw TaskError("task must be a name such as language_model, got " + s->value.to_string());
    return find_task(s->value.text);
  } catch (const TaskError& e) {
    dsl::Diagnostics diags;
    add_source_of(diags, s->loc);
    diags.error(s->loc, e.what());
    throw_diagnostics(diags);
  }
}

void check_graph(const Task& task, const ir::GraphDef& graph) {
  dsl::Diagnostics diags;
  add_source_of(diags, graph.loc());
  const std::string model = "model '" + graph.name() + "'";
  std::map<std::string, std::pair<std::string, std::string>> role_symbols;  // role -> (symbol, input)
  for (const InputPort& port : task.inputs()) {
    const ir::GraphInput* input = find_input(graph, port.name);
    if (!input) {
      diags.error(graph.loc(), "the " + task.name() + " task needs " + model + " to declare " + describe_port(port) + " (" +
                                   port.doc + "); the model's inputs: " + join_names(input_names(graph)) +
                                   did_you_mean(port.name, input_names(graph)));
      continue;
    }
    add_source_of(diags, input->loc());
    if (input->kind() != port.kind)
      diags.error(input->loc(), "the " + task.name() + " task feeds " + describe_port(port) + ", but the model declares it " +
                                    input->kind());
    if (input->shape_size() != static_cast<int>(port.dims.size())) {
      diags.error(input->loc(), "the " + task.name() + " task feeds " + describe_port(port) + " (" +
                                    std::to_string(port.dims.size()) + " dimensions), but the model declares " +
                                    std::to_string(input->shape_size()));
      continue;
    }
    for (size_t axis = 0; axis < port.dims.size(); ++axis) {
      const std::string& symbol = input->shape(static_cast<int>(axis)).symbol();
      const std::string& role = port.dims[axis];
      if (symbol.empty()) {
        diags.error(input->loc(), "the " + task.name() + " task needs the " + role + " of input '" + port.name +
                                      "' to be a size symbol such as batch or len, not a fixed size");
        continue;
      }
      auto [it, inserted] = role_symbols.emplace(role, std::make_pair(symbol, port.name));
      if (!inserted && it->second.first != symbol)
        diags.error(input->loc(), "the " + role + " of input '" + port.name + "' is '" + symbol + "' but that of input '" +
                                      it->second.second + "' is '" + it->second.first + "'; the " + task.name() +
                                      " task needs them to be the same size");
    }
  }
  const std::vector<std::string> outputs = output_names(graph);
  for (const OutputPort& port : task.outputs()) {
    bool found = false;
    for (const std::string& name : outputs) found = found || name == port.name;
    if (!found)
      diags.error(graph.loc(), "the " + task.name() + " task needs " + model + " to declare output '" + port.name + "' (" +
                                   port.doc + "); the model's outputs: " + join_names(outputs) + did_you_mean(port.name, outputs));
  }
  if (!diags.empty()) throw_diagnostics(diags);
}

bool has_param(const dsl::ElaboratedModel& model, const std::string& name) {
  for (const auto& [param, value] : model.params)
    if (param == name) return true;
  return false;
}

void check_params(const Task& task, const dsl::ElaboratedModel& model, const dsl::ExperimentSpec& spec) {
  dsl::Diagnostics diags;
  add_source_of(diags, model.graph.loc());
  for (const ModelParam& p : task.params()) {
    if (has_param(model, p.name)) continue;
    if (p.required)
      diags.error(model.graph.loc(), "the " + task.name() + " task needs model '" + model.name + "' to declare `param " + p.name +
                                         "` (" + p.doc + ")");
    if (p.use == ModelParam::Use::SetFromTrainSetting)
      if (const dsl::ExperimentSetting* s = spec.find("train." + p.name)) {
        add_source_of(diags, s->loc);
        diags.error(s->loc, "train." + p.name + " sets the model's parameter '" + p.name + "', but model '" + model.name +
                                "' declares none");
      }
  }
  if (!diags.empty()) throw_diagnostics(diags);
}

}  // namespace attnlab::task
