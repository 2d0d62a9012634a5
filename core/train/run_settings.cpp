// core/train/run_settings.cpp — see run_settings.h.
#include "train/run_settings.h"

#include "dsl/source.h"
#include "node/suggest.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace attnlab::train {

using dsl::ConstValue;
using dsl::ExperimentSetting;
using dsl::ExperimentSpec;

void throw_at(const ir::SourceLoc& loc, const std::string& message) {
  // Quoted like the language's own errors: a setting is part of the experiment file (or of --set).
  if (std::shared_ptr<const dsl::SourceFile> source = dsl::source_of(loc); source && loc.line() > 0) {
    dsl::Diagnostics diags;
    diags.add_source(source);
    diags.error(loc, message);
    throw dsl::DslError(diags.format(), diags.items());
  }
  throw RunError(message);
}

Section::Section(const ExperimentSpec& spec, std::string name, const std::vector<std::string>& known) : name_(std::move(name)) {
  auto it = spec.sections.find(name_);
  if (it == spec.sections.end()) return;
  for (const ExperimentSetting& s : it->second) {
    if (std::find(known.begin(), known.end(), s.key) == known.end())
      throw_at(s.loc, "unknown " + name_ + " setting '" + s.key + "'; known settings: " + join_names(known) +
                     did_you_mean(s.key, known));
    settings_[s.key] = &s;
  }
}

const ExperimentSetting* Section::find(const std::string& key) const {
  auto it = settings_.find(key);
  return it == settings_.end() ? nullptr : it->second;
}

namespace {
std::string format_number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}
}  // namespace

double Section::number(const std::string& key, double fallback, double min, double max) const {
  const ExperimentSetting* s = find(key);
  if (!s) return fallback;
  if (!s->value.is_number()) throw_at(s->loc, name_ + "." + key + " must be a number, got " + s->value.to_string());
  const double v = s->value.number();
  if (!(v >= min && v <= max))
    throw_at(s->loc, name_ + "." + key + " = " + s->value.to_string() + " is out of range [" +
                   format_number(min) + ", " + format_number(max) + "]");
  return v;
}

int64_t Section::integer(const std::string& key, int64_t fallback, int64_t min, int64_t max) const {
  const ExperimentSetting* s = find(key);
  if (!s) return fallback;
  if (s->value.kind != ConstValue::Kind::Int)
    throw_at(s->loc, name_ + "." + key + " must be a whole number, got " + s->value.to_string());
  // Compared as integers: through a double, values near 2^63 would round into the range.
  if (s->value.i < min || s->value.i > max)
    throw_at(s->loc, name_ + "." + key + " = " + s->value.to_string() + " is out of range " + describe(IntLimit{"", min, max}));
  return s->value.i;
}

double call_number(const ConstValue& call, const std::string& name, size_t position, double fallback) {
  if (const ConstValue* v = call.arg(name)) {
    if (!v->is_number()) throw_at(v->loc, call.text + "(" + name + ": ...) must be a number");
    return v->number();
  }
  if (position < call.items.size()) {
    if (!call.items[position].is_number()) throw_at(call.loc, call.text + ": argument " + std::to_string(position + 1) + " must be a number");
    return call.items[position].number();
  }
  return fallback;
}

// A count of steps among a call's arguments: a whole number in [0, kMaxStepCount] (4e3 is 4000;
// 400.5 and 1e30 are refused by name: a cast would truncate the one and overflow on the other).
constexpr int64_t kMaxStepCount = int64_t{1} << 40;
int64_t call_step_count(const ConstValue& call, const std::string& name, size_t position, int64_t fallback) {
  const ConstValue* v = call.arg(name);
  if (!v && position < call.items.size()) v = &call.items[position];
  if (!v) return fallback;
  const bool whole = v->kind == ConstValue::Kind::Int ? v->i >= 0 && v->i <= kMaxStepCount
                     : v->kind == ConstValue::Kind::Float
                         ? v->f >= 0 && v->f <= static_cast<double>(kMaxStepCount) && v->f == std::floor(v->f)
                         : false;
  if (!whole)
    throw_at(v->loc.line() > 0 ? v->loc : call.loc, call.text + "(" + name + ": ...) must be a whole number of steps in " +
                                                       describe(IntLimit{"", 0, kMaxStepCount}) + ", got " + v->to_string());
  return v->kind == ConstValue::Kind::Int ? v->i : static_cast<int64_t>(v->f);
}

void check_call_args(const ConstValue& call, const std::vector<std::string>& names) {
  if (call.items.size() > names.size())
    throw_at(call.loc, call.text + " takes at most " + std::to_string(names.size()) + " arguments (" + join_names(names) + ")");
  for (const auto& [name, value] : call.named)
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw_at(value.loc, call.text + " has no argument '" + name + "'; its arguments: " + join_names(names) +
                     did_you_mean(name, names));
}



TrainSettings read_settings(const ExperimentSpec& spec, int64_t d_model) {
  TrainSettings t;
  Section train(spec, "train", train_setting_names());
  Section decode(spec, "decode", kDecodeSettingNames);
  const ExperimentSetting* adamw = train.find("adamw");
  if (adamw && train.find("adam")) throw_at(adamw->loc, "train: give either adam(...) or adamw(...), not both");
  if (const ExperimentSetting* s = adamw ? adamw : train.find("adam")) {
    const std::string name = adamw ? "adamw" : "adam";
    if (s->value.kind != ConstValue::Kind::Call)
      throw_at(s->loc, "train: write " + name + "(beta1, beta2, eps" + (adamw ? ", weight_decay: W)" : ")"));
    if (adamw) check_call_args(s->value, {"beta1", "beta2", "eps", "weight_decay", "decay_embeddings"});
    else check_call_args(s->value, {"beta1", "beta2", "eps"});
    t.adam.beta1 = call_number(s->value, "beta1", 0, 0.9);
    t.adam.beta2 = call_number(s->value, "beta2", 1, adamw ? 0.999 : 0.98);
    t.adam.eps = call_number(s->value, "eps", 2, adamw ? 1e-8 : 1e-9);
    if (adamw) {
      t.adam.weight_decay = call_number(s->value, "weight_decay", 3, 0.01);
      if (const ConstValue* e = s->value.arg("decay_embeddings")) {
        if (e->kind != ConstValue::Kind::Bool) throw_at(e->loc, "train: adamw's decay_embeddings must be true or false");
        t.adam.decay_embeddings = e->b;
      }
    }
  }
  t.adam.clip_norm = train.number("clip_norm", 0.0, 0.0, 1e9);
  try {
    validate(t.adam);
  } catch (const OptimizerError& e) {
    const ExperimentSetting* adam = adamw ? adamw : train.find("adam");
    throw_at(adam ? adam->loc : ir::SourceLoc(), std::string("train: ") + e.what());
  }
  const ExperimentSetting* noam = train.find("noam");
  const ExperimentSetting* constant = train.find("constant");
  const ExperimentSetting* cosine = train.find("cosine");
  if ((noam != nullptr) + (constant != nullptr) + (cosine != nullptr) > 1)
    throw_at((cosine ? cosine : constant)->loc, "train: give one schedule: noam(...), constant(...) or cosine(...)");
  t.schedule.d_model = d_model;
  if (constant) {
    if (constant->value.kind != ConstValue::Kind::Call) throw_at(constant->loc, "train: write constant(lr: RATE)");
    check_call_args(constant->value, {"lr"});
    t.schedule.kind = "constant";
    t.schedule.lr = call_number(constant->value, "lr", 0, 1e-4);
  } else if (cosine) {
    if (cosine->value.kind != ConstValue::Kind::Call)
      throw_at(cosine->loc, "train: write cosine(warmup: STEPS, max_lr: RATE, min_lr: RATE, steps: STEPS)");
    check_call_args(cosine->value, {"warmup", "max_lr", "min_lr", "steps"});
    t.schedule.kind = "cosine";
    t.schedule.warmup = call_step_count(cosine->value, "warmup", 0, 0);
    t.schedule.max_lr = call_number(cosine->value, "max_lr", 1, 1e-3);
    t.schedule.min_lr = call_number(cosine->value, "min_lr", 2, t.schedule.max_lr / 10);
    t.schedule.steps = call_step_count(cosine->value, "steps", 3, 0);
  } else if (noam) {
    if (noam->value.kind != ConstValue::Kind::Call) throw_at(noam->loc, "train: write noam(factor: F, warmup: STEPS)");
    check_call_args(noam->value, {"factor", "warmup"});
    t.schedule.factor = call_number(noam->value, "factor", 0, 1.0);
    t.schedule.warmup = call_step_count(noam->value, "warmup", 1, 4000);
  }
  try {
    make_schedule(t.schedule);
  } catch (const ScheduleError& e) {
    const ExperimentSetting* schedule = cosine ? cosine : constant ? constant : noam;
    throw_at(schedule ? schedule->loc : ir::SourceLoc(), std::string("train: ") + e.what());
  }
  t.batch_tokens = train.integer("batch_tokens", 4096, 8, int64_t{1} << 30);
  t.batch = train.integer("batch", 12, 1, 1 << 20);
  t.valid_blocks = train.integer("valid_blocks", 0, 0, int64_t{1} << 30);
  t.accumulate = train.integer("accumulate", 1, 1, 1 << 20);
  t.max_steps = train.integer("max_steps", 0, 0, int64_t{1} << 40);
  t.max_epochs = train.integer("max_epochs", 0, 0, int64_t{1} << 30);
  t.max_minutes = train.number("max_minutes", 0, 0, 1e7);
  if (t.max_steps == 0 && t.max_epochs == 0 && t.max_minutes == 0)
    throw RunError("train: no stopping rule; set train.max_steps, train.max_epochs or train.max_minutes");
  t.valid_every = train.integer("valid_every", 1000, 0, int64_t{1} << 40);
  t.checkpoint_every = train.integer("checkpoint_every", t.valid_every, 0, int64_t{1} << 40);
  t.keep_checkpoints = train.integer("keep_checkpoints", 5, 1, 100000);
  t.valid_bleu_sentences = train.integer("valid_bleu_sentences", 500, 0, int64_t{1} << 30);
  t.valid_metric = t.valid_bleu_sentences > 0 ? "bleu" : "loss";
  if (const ExperimentSetting* metric = train.find("valid_metric")) {
    const bool word = metric->value.kind == ConstValue::Kind::Name || metric->value.kind == ConstValue::Kind::String;
    if (!word || (metric->value.text != "loss" && metric->value.text != "bleu" && metric->value.text != "chrf"))
      throw_at(metric->loc, "train.valid_metric must be loss, bleu or chrf, got " + metric->value.to_string());
    t.valid_metric = metric->value.text;
    if (t.valid_metric != "loss" && t.valid_bleu_sentences == 0)
      throw_at(metric->loc, "train.valid_metric = " + t.valid_metric +
                                " needs dev translations; set train.valid_bleu_sentences above 0");
  }
  t.patience = train.integer("patience", 0, 0, 1000000);
  if (t.patience > 0 && t.valid_every == 0)
    throw_at(train.find("patience")->loc, "train.patience needs validations; set train.valid_every above 0");
  t.valid_beam = train.integer("valid_beam", 1, kBeamLimit);
  t.samples = train.integer("samples", 5, 0, 1000);
  t.pad_to = train.integer("pad_to", 1, 1, 256);
  // 256 MB, by measurement (docs/performance.md, "Plan memory"): a larger cache keeps every new
  // batch shape from reusing released buffers, so each step faults its buffers in afresh.
  t.plan_memory_mb = train.number("plan_memory_mb", 256, 16, 1e7);
  t.log_every_s = train.number("log_every_s", 0, 0, 1e7);
  if (train.find("label_smoothing")) t.label_smoothing = train.number("label_smoothing", 0, 0, 1);
  if (train.find("dropout")) t.dropout = train.number("dropout", 0, 0, 1);
  t.beam = decode.integer("beam", 1, kBeamLimit);
  t.alpha = decode.number("alpha", 0.6, kAlphaLimit);
  t.max_length_extra = decode.integer("max_length_extra", 50, kMaxLengthExtraLimit);
  return t;
}

}  // namespace attnlab::train
