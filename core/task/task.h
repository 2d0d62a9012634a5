// core/task/task.h — what a task (translation, language modelling) needs from a model graph, and
// the one place its graph names are written.
//
// Contract:
// - A Task names the graph inputs it feeds (name, kind, dimension roles) and the graph outputs it
//   reads, the model parameters the trainer sets or reads, and says in words how its batches are
//   built, what validation measures and how the model is decoded or sampled (`describe()` gives
//   all of it as text; docs/language-models.md tabulates it).
// - Every task that trains has an Objective: a scalar `loss` (the mean over the step's counted
//   tokens, the one value backward is seeded at), its token count `tokens` and the count of
//   arg-max hits `correct`. The training loop reads only the Objective and TrainingFeeds, so a new
//   task (an encoder-only classifier, a masked LM) brings its own inputs and batches and leaves the
//   loop as it is.
// - check_graph(task, graph) is run once, right after elaboration. Each problem is a located
//   diagnostic (file:line:col, as the language's own errors): a missing input or output at the
//   model declaration, naming what the task expects (kind and dimensions) and the nearest name the
//   graph has; an input of the wrong kind or rank at its declaration; two inputs whose dimension
//   roles must agree (the batch of src and tgt_in) but use different symbols. All problems are
//   thrown together as one dsl::DslError.
// - check_params(task, model, spec) checks the model parameters the task's trainer uses: a
//   required one (vocab: the trainer sets it to the vocabulary's size) missing is a located error
//   at the model; a train-section setting that becomes a model parameter (train.label_smoothing,
//   train.dropout) on a model without that parameter is a located error at the setting.
// - find_task(name) returns the registered task of that name ("translation", "language_model");
//   an unknown name is a TaskError listing the known ones and the nearest match. The experiment's
//   top-level `task = NAME` chooses it; without one, translation (task_of(spec)).
#pragma once

#include "dsl/elaborate.h"
#include "dsl/experiment.h"
#include "exec/executor.h"
#include "ir/graph.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace attnlab::task {

struct TaskError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A graph input the task feeds. `dims` are roles ("batch", "source length"): inputs sharing a
// role must use the same size symbol; the symbols themselves are the model's choice.
struct InputPort {
  std::string name;
  std::string kind;  // "ids", "mask" or "real" (ir::GraphInput::kind)
  std::vector<std::string> dims;
  std::string doc;
};

struct OutputPort {
  std::string name;
  std::string doc;
};

// A model parameter the trainer uses: set from the data (vocab), from a train-section setting of
// the same name (label_smoothing, dropout), or read (d_model for the noam schedule).
struct ModelParam {
  enum class Use { SetFromData, SetFromTrainSetting, Read };
  std::string name;
  Use use = Use::Read;
  bool required = false;
  std::string doc;
};

// The scalar outputs every trained task provides (see the contract above).
struct Objective {
  std::string loss = "loss";
  std::string tokens = "tokens";
  std::string correct = "correct";
  std::vector<std::string> fetches() const { return {loss, tokens, correct}; }
};

// One training or evaluation batch as the graph takes it: the fed tensors and the sizes of the
// inputs' symbolic dimensions.
struct TrainingFeeds {
  exec::TensorMap feeds;
  ir::DimBindings dims;
};

class Task {
 public:
  virtual ~Task() = default;
  const std::string& name() const { return name_; }
  const std::vector<InputPort>& inputs() const { return inputs_; }
  const std::vector<OutputPort>& outputs() const { return outputs_; }
  const std::vector<ModelParam>& params() const { return params_; }
  virtual std::string batches() const = 0;     // how batches are built
  virtual std::string validation() const = 0;  // what validation measures
  virtual std::string decoding() const = 0;    // how the model is decoded or sampled
  const Objective& objective() const { return objective_; }
  // The names of the inputs a training step feeds (every input, in the task's order).
  std::vector<std::string> feed_names() const;
  // The task in words: inputs, outputs, parameters, batches, validation, decoding.
  std::string describe() const;

 protected:
  explicit Task(std::string name) : name_(std::move(name)) {}
  std::string name_;
  std::vector<InputPort> inputs_;
  std::vector<OutputPort> outputs_;
  std::vector<ModelParam> params_;

 private:
  Objective objective_;
};

// Encoder-decoder translation: the default task.
class TranslationTask final : public Task {
 public:
  // The graph names, for the trainer, the decoder, translate and bench.
  const std::string src = "src", tgt_in = "tgt_in", tgt_out = "tgt_out";
  const std::string memory = "memory", logits = "logits";

  TranslationTask();
  std::string batches() const override;
  std::string validation() const override;
  std::string decoding() const override;

  // The feeds of a batch of padded [rows, length] id tensors.
  TrainingFeeds feeds(const ir::GraphDef& graph, const TensorView& source, const TensorView& target_in,
                      const TensorView& target_out) const;
};

// Decoder-only language modelling (docs/language-models.md).
class LanguageModelTask final : public Task {
 public:
  const std::string input_ids = "input_ids", labels = "labels";
  const std::string logits = "logits";

  LanguageModelTask();
  std::string batches() const override;
  std::string validation() const override;
  std::string decoding() const override;

  TrainingFeeds feeds(const ir::GraphDef& graph, const TensorView& inputs, const TensorView& labels) const;
};

const TranslationTask& translation();
const LanguageModelTask& language_model();

// The task called `name`; throws TaskError naming the known tasks.
const Task& find_task(const std::string& name);
std::vector<std::string> task_names();

// The task an experiment runs: its top-level `task = NAME` (a name or a string), else translation.
// An unknown name is a located dsl::DslError at the setting.
const Task& task_of(const dsl::ExperimentSpec& spec);

// Throws dsl::DslError with every mismatch between the task and the graph (see the contract).
void check_graph(const Task& task, const ir::GraphDef& graph);

// Throws dsl::DslError when the model lacks a parameter the task requires, or the experiment's
// train section sets one the model does not have.
void check_params(const Task& task, const dsl::ElaboratedModel& model, const dsl::ExperimentSpec& spec);

// Whether the elaborated model declares parameter `name`.
bool has_param(const dsl::ElaboratedModel& model, const std::string& name);

}  // namespace attnlab::task
