// core/train/run_settings.h — the train and decode sections of an experiment, read and checked
// for `attnlab run` (part of the trainer; see trainer.h for the settings' meaning).
//
// Contract:
// - read_settings(spec, d_model) reads every setting of the experiment's `train` and `decode`
//   sections into TrainSettings, with the defaults written there. An unknown setting, a value of
//   the wrong type or out of range, a malformed adam(...)/noam(...)/constant(...) call, both
//   noam and constant, or no stopping rule (max_steps, max_epochs, max_minutes all 0) is an
//   error: a dsl::DslError quoting the setting (file:line:col: error: ..., the line and a caret)
//   when it has a location in the experiment file or a --set, otherwise a RunError.
// - The helpers below are shared with the data section's reader (run_corpus.h).
#pragma once

#include "dsl/experiment.h"
#include "train/limits.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "train/trainer.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace attnlab::train {

inline const std::vector<std::string> kDecodeSettingNames = {"beam", "alpha", "max_length_extra"};

struct TrainSettings {
  AdamConfig adam;
  ScheduleConfig schedule;
  int64_t batch_tokens = 4096;
  int64_t batch = 12;        // language_model: rows (blocks) per micro-batch
  int64_t valid_blocks = 0;  // language_model: held-out blocks each validation scores (0: all)
  int64_t accumulate = 1;
  int64_t max_steps = 0, max_epochs = 0;
  double max_minutes = 0;
  int64_t valid_every = 1000, checkpoint_every = 0, keep_checkpoints = 5;
  int64_t valid_bleu_sentences = 500, samples = 5;
  // What picks best.ckpt: "loss", "bleu" or "chrf" (default bleu when valid_bleu_sentences > 0,
  // else loss); patience > 0 stops the run after that many validations without improvement;
  // valid_beam is the dev translations' beam (1: greedy).
  std::string valid_metric = "loss";
  int64_t patience = 0;
  int64_t valid_beam = 1;
  int64_t pad_to = 1;
  double plan_memory_mb = 3000;
  double log_every_s = 0;  // 0: the run option's interval
  std::optional<double> label_smoothing, dropout;
  int64_t max_length_extra = 50;
  int64_t beam = 1;
  double alpha = 0.6;
};

TrainSettings read_settings(const dsl::ExperimentSpec& spec, int64_t d_model);

// Throws the error `message` about the setting or value at `loc`: a DslError quoting the line when
// the location has a source (the experiment file, a --set), otherwise a RunError.
[[noreturn]] void throw_at(const ir::SourceLoc& loc, const std::string& message);

// A section's settings with typed, checked access; constructing it rejects unknown keys.
class Section {
 public:
  Section(const dsl::ExperimentSpec& spec, std::string name, const std::vector<std::string>& known);
  const dsl::ExperimentSetting* find(const std::string& key) const;
  double number(const std::string& key, double fallback, double min, double max) const;
  int64_t integer(const std::string& key, int64_t fallback, int64_t min, int64_t max) const;
  // The same with a shared bound (train/limits.h), so that a flag and a setting agree.
  double number(const std::string& key, double fallback, const RealLimit& limit) const {
    return number(key, fallback, limit.min, limit.max);
  }
  int64_t integer(const std::string& key, int64_t fallback, const IntLimit& limit) const {
    return integer(key, fallback, limit.min, limit.max);
  }

 private:
  std::string name_;
  std::map<std::string, const dsl::ExperimentSetting*> settings_;
};

// Argument `name` (or the one at `position`) of a call such as noam(factor: 1, warmup: 4000).
double call_number(const dsl::ConstValue& call, const std::string& name, size_t position, double fallback);
// Rejects more positional arguments than `names` and any named argument not among them.
void check_call_args(const dsl::ConstValue& call, const std::vector<std::string>& names);

}  // namespace attnlab::train
