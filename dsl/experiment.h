// dsl/experiment.h — experiment files: the same language as model specs, read into plain data.
//
//   experiment multi30k {
//     model  = "transformer_base.attn" with { layers = 3, d_model = 256 }
//     data   = parallel(src: "de", tgt: "en", dir: "multi30k")
//     train  { adam(0.9, 0.98, 1e-9), noam(warmup: 4000), label_smoothing: 0.1, max_steps: 20000 }
//     decode { beam: 4, alpha: 0.6 }
//     ablate { heads = [1, 4, 16, 32]; posenc = [posenc.learned] }
//   }
//
// Contract:
// - load_experiment() parses the file and checks its structure: exactly one `model = "FILE"`,
//   top-level settings among kExperimentSettings, sections among kExperimentSections, no key twice
//   in one place, every ablate entry a non-empty list. Values are constants (numbers, strings, bools,
//   names such as posenc.learned, lists, calls with constant arguments, arithmetic on numbers).
//   Errors are located diagnostics (DslError). What the settings mean is the trainer's business.
// - apply_set() is `--set` on an experiment: "SECTION.KEY=VALUE" replaces or adds a setting of that
//   section; "NAME=VALUE" (no dot) becomes a model override, as `with { ... }` would.
// - elaborate_experiment_model() elaborates the experiment's model with its overrides followed by
//   `extra` ones (the command line wins).
#pragma once

#include "dsl/elaborate.h"

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace attnlab::dsl {

inline const std::vector<std::string> kExperimentSections = {"train", "decode", "ablate"};
inline const std::vector<std::string> kExperimentSettings = {"data", "seed", "description", "task"};

struct NamedConstValue;

struct ConstValue {
  enum class Kind { Int, Float, Bool, String, Name, List, Call } kind = Kind::Int;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string text;                // String value, Name, or the called function's name
  std::vector<ConstValue> items;   // List items, or a Call's positional arguments
  // A Call's named arguments. (A struct declared after ConstValue, not a std::pair<.., ConstValue>:
  // a pair of an incomplete type does not compile with every standard library.)
  std::vector<NamedConstValue> named;
  ir::SourceLoc loc;

  bool is_number() const { return kind == Kind::Int || kind == Kind::Float; }
  double number() const { return kind == Kind::Int ? static_cast<double>(i) : f; }
  const ConstValue* arg(const std::string& name) const;  // a Call's named argument, or null
  std::string to_string() const;  // in the language's syntax: 0.1, "de", posenc.learned, [1, 2], adam(0.9)
};

struct NamedConstValue {
  std::string name;
  ConstValue value;
};

struct ExperimentSetting {
  std::string key;  // for a bare call such as adam(0.9, 0.98, 1e-9), the function name
  ConstValue value;
  ir::SourceLoc loc;
};

struct ExperimentSpec {
  std::string name;
  ir::SourceLoc loc;
  std::filesystem::path file;
  std::filesystem::path model_path;       // resolved relative to the experiment file
  std::vector<Override> model_overrides;  // `with { ... }`, then --set NAME=VALUE
  std::vector<ExperimentSetting> settings;                          // top level: data, seed, ...
  std::map<std::string, std::vector<ExperimentSetting>> sections;   // train, decode, ablate

  // "data", "train.max_steps": the setting, or null.
  const ExperimentSetting* find(const std::string& dotted_key) const;
};

// The experiment named `name` ("" for the first) of `path`; throws DslError.
ExperimentSpec load_experiment(const std::filesystem::path& path, const std::string& name = "");

// Structure-checks every experiment of a loaded program (diagnostics added to `diagnostics`).
std::vector<ExperimentSpec> read_experiments(const Program& program, Diagnostics& diagnostics);

void apply_set(ExperimentSpec& spec, const std::string& text);  // throws DslError

ElaboratedModel elaborate_experiment_model(const ExperimentSpec& spec, const Registry& registry,
                                           const std::vector<Override>& extra = {},
                                           const ir::DimBindings& dims = default_dims());

}  // namespace attnlab::dsl

namespace attnlab::dsl {

// Checks an experiment's ablate section against its elaborated model: every key a parameter or slot
// of the model or SECTION.KEY, and a slot's values registered node types. Throws DslError.
void check_ablate(const ExperimentSpec& spec, const ElaboratedModel& model, const Registry& registry);

// What `attnlab check/graph/params FILE` elaborate: the model of a model file (`model_name`, or
// its first), or for an experiment file the model of its experiment (`model_name` selects the
// experiment) with the experiment's overrides. `sets` ("NAME=VALUE"; "SECTION.KEY=VALUE" for an
// experiment's settings) and `uses` ("SLOT=TYPE") apply last. For an experiment file, `experiment`
// (when given) receives the experiment with `sets` applied. Throws DslError.
ElaboratedModel elaborate_target(const std::filesystem::path& path, const Registry& registry,
                                 const std::vector<std::string>& sets, const std::vector<std::string>& uses,
                                 const std::string& model_name = "", ExperimentSpec* experiment = nullptr);

}  // namespace attnlab::dsl
