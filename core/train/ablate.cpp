// core/train/ablate.cpp — see ablate.h.
#include "train/ablate.h"

#include "eval/sacrebleu.h"

#include "dsl/experiment.h"
#include "dsl/source.h"
#include "train/checkpoint.h"
#include "train/run_log.h"
#include "train/interrupt.h"
#include "train/svg_chart.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <chrono>
#include <cstring>
#include <thread>

namespace attnlab::train {

namespace fs = std::filesystem;

namespace {

// The decode section's settings (the trainer's list; repeated here because the trainer keeps it
// private — a key outside it fails the variant's run anyway, this only makes the error early).
const std::vector<std::string> kDecodeKeys = {"beam", "alpha", "max_length_extra"};

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

bool parse_number(const std::string& text, double& out) {
  if (text.empty()) return false;
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return end && *end == '\0';
}

// Equal as settings: numerically when both are numbers ("0.1" == "0.10"), else textually.
bool same_value(const std::string& a, const std::string& b) {
  double x, y;
  if (parse_number(a, x) && parse_number(b, y)) return x == y;
  return a == b;
}

std::string change_text(const AblateChange& c) { return c.key + "=" + c.value; }

std::string variant_id(const std::vector<AblateChange>& changes) {
  std::string raw;
  for (const AblateChange& c : changes) {
    if (!raw.empty()) raw += '+';
    raw += change_text(c);
  }
  std::string id;
  for (char ch : raw) {
    const bool ok = std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '=' || ch == '-' || ch == '+' || ch == '_';
    id += ok ? ch : '_';
  }
  if (id.size() > 100 || id != raw) {  // keep ids distinct when characters were replaced
    id = id.substr(0, 100) + "-" + [&] {
      std::ostringstream h;
      h << std::hex << std::hash<std::string>{}(raw) % 0xFFFFFF;
      return h.str();
    }();
  }
  return id;
}

std::string describe_changes(const std::vector<AblateChange>& changes) {
  std::vector<std::string> parts;
  for (const AblateChange& c : changes) parts.push_back(change_text(c));
  return join(parts, " ");
}

void write_atomically(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw AblateError("cannot write " + tmp.string());
  }
  fs::rename(tmp, file);
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json to_json(const VariantResult& r) {
  nlohmann::json changes = nlohmann::json::array();
  for (const AblateChange& c : r.variant.changes) {
    const char* kind = c.kind == AblateChange::Kind::Param ? "param" : c.kind == AblateChange::Kind::Slot ? "slot" : "setting";
    changes.push_back({{"key", c.key}, {"value", c.value}, {"kind", kind}});
  }
  nlohmann::json j = {{"id", r.variant.id},
                      {"group", r.variant.group},
                      {"changes", changes},
                      {"status", r.status},
                      {"reason", r.reason},
                      {"parameters", r.parameters},
                      {"steps", r.steps},
                      {"train_seconds", number_or_null(r.train_seconds)},
                      {"tokens_per_second", number_or_null(r.tokens_per_second)},
                      {"final_train_loss", number_or_null(r.last_train_loss)},
                      {"dev_loss", number_or_null(r.dev_loss)},
                      {"dev_perplexity", number_or_null(r.dev_perplexity)}};
  j["dev_bleu"] = r.dev_bleu >= 0 ? nlohmann::json(r.dev_bleu) : nlohmann::json(nullptr);
  j["test_bleu"] = r.test_bleu >= 0 ? nlohmann::json(r.test_bleu) : nlohmann::json(nullptr);
  j["test_chrf"] = r.test_chrf >= 0 ? nlohmann::json(r.test_chrf) : nlohmann::json(nullptr);
  return j;
}

double num(const nlohmann::json& j, const char* key, double fallback) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
}

VariantResult from_json(const nlohmann::json& j, const AblateVariant& variant) {
  VariantResult r;
  r.variant = variant;
  r.status = j.value("status", "failed");
  r.reason = j.value("reason", "");
  r.parameters = j.value("parameters", int64_t{0});
  r.steps = j.value("steps", int64_t{0});
  r.train_seconds = num(j, "train_seconds", NAN);
  r.tokens_per_second = num(j, "tokens_per_second", NAN);
  r.last_train_loss = num(j, "final_train_loss", NAN);
  r.dev_loss = num(j, "dev_loss", NAN);
  r.dev_perplexity = num(j, "dev_perplexity", NAN);
  r.dev_bleu = num(j, "dev_bleu", -1);
  r.test_bleu = num(j, "test_bleu", -1);
  r.test_chrf = num(j, "test_chrf", -1);
  return r;
}

// A temporary directory holding the embedded default experiment and its model, so that the DSL
// (which reads files) can load it; removed on destruction.
class EmbeddedDefault {
 public:
  EmbeddedDefault() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/attnlab_ablate.XXXXXX";
    if (!::mkdtemp(pattern.data())) throw AblateError("cannot create a temporary directory in " + pattern);
    dir_ = pattern;
    std::ofstream(dir_ / "default.attn") << default_experiment_text();
    std::ofstream(dir_ / "transformer_base.attn") << default_model_text();
  }
  ~EmbeddedDefault() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path file() const { return dir_ / "default.attn"; }

 private:
  fs::path dir_;
};

}  // namespace

std::vector<std::string> split_values(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  int depth = 0;
  char quote = 0;
  for (char ch : text) {
    if (quote) {
      if (ch == quote) quote = 0;
    } else if (ch == '"' || ch == '\'') {
      quote = ch;
    } else if (ch == '(' || ch == '[' || ch == '{') {
      ++depth;
    } else if (ch == ')' || ch == ']' || ch == '}') {
      --depth;
    } else if (ch == ',' && depth == 0) {
      out.push_back(trim(current));
      current.clear();
      continue;
    }
    current += ch;
  }
  out.push_back(trim(current));
  return out;
}

AblateAxis parse_vary(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos)
    throw AblateError("--vary '" + text + "': expected KEY=V1,V2,... such as heads=1,4,16 or train.label_smoothing=0,0.2");
  AblateAxis axis;
  axis.origin = "--vary";
  axis.key = trim(text.substr(0, eq));
  if (axis.key.empty()) throw AblateError("--vary '" + text + "': the key before '=' is empty; expected KEY=V1,V2,...");
  for (char ch : axis.key)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.'))
      throw AblateError("--vary '" + text + "': '" + axis.key + "' is not a key (a parameter, a slot, or SECTION.KEY)");
  const std::string rest = trim(text.substr(eq + 1));
  if (rest.empty()) throw AblateError("--vary " + axis.key + ": the list of values is empty; give at least one, such as " + axis.key + "=V1,V2");
  axis.values = split_values(rest);
  for (const std::string& v : axis.values)
    if (v.empty()) throw AblateError("--vary '" + text + "': an empty value in the list (two commas in a row, or a trailing comma)");
  return axis;
}

std::string AblateBaseline::value_of(const std::string& key) const {
  for (const auto* list : {&params, &slots, &settings})
    for (const auto& [k, v] : *list)
      if (k == key) return v;
  return "";
}

AblateBaseline load_baseline(const fs::path& experiment_file, const std::vector<std::string>& sets,
                             const std::vector<std::string>& uses, const Registry& registry) {
  std::unique_ptr<EmbeddedDefault> embedded;
  fs::path file = experiment_file;
  if (file.empty()) {
    embedded = std::make_unique<EmbeddedDefault>();
    file = embedded->file();
  }
  AblateBaseline baseline;
  try {
    dsl::ExperimentSpec spec = dsl::load_experiment(file);
    for (const std::string& s : sets) dsl::apply_set(spec, s);
    std::vector<dsl::Override> extra;
    for (const std::string& u : uses) extra.push_back(dsl::parse_override(u, "--use"));
    dsl::ElaboratedModel model = dsl::elaborate_experiment_model(spec, registry, extra);
    if (!experiment_file.empty()) dsl::check_ablate(spec, model, registry);
    baseline.experiment_name = spec.name;
    for (const auto& [name, value] : model.params) baseline.params.emplace_back(name, to_string(value));
    baseline.slots = model.slots;
    for (const char* section : {"train", "decode"})
      if (auto it = spec.sections.find(section); it != spec.sections.end())
        for (const dsl::ExperimentSetting& s : it->second)
          baseline.settings.emplace_back(std::string(section) + "." + s.key, s.value.to_string());
    if (auto it = spec.sections.find("ablate"); it != spec.sections.end())
      for (const dsl::ExperimentSetting& s : it->second) {
        AblateAxis axis;
        axis.key = s.key;
        for (const dsl::ConstValue& v : s.value.items) axis.values.push_back(v.to_string());
        baseline.ablate_section.push_back(std::move(axis));
      }
  } catch (const dsl::DslError& e) {
    std::string message = e.what();
    while (!message.empty() && message.back() == '\n') message.pop_back();
    throw AblateError("the experiment has errors:\n" + message);
  }
  return baseline;
}

namespace {

// One KEY=VALUE resolved against the baseline.
AblateChange resolve_change(const std::string& key, const std::string& value, const AblateBaseline& baseline,
                            const Registry& registry, const std::string& where) {
  AblateChange c;
  c.key = key;
  c.value = value;
  if (value.empty()) throw AblateError(where + ": an empty value");
  const size_t dot = key.find('.');
  if (dot != std::string::npos) {
    const std::string section = key.substr(0, dot), name = key.substr(dot + 1);
    const std::vector<std::string>* names = section == "train" ? &train_setting_names() : section == "decode" ? &kDecodeKeys : nullptr;
    if (!names) throw AblateError(where + ": unknown section '" + section + "' in '" + key + "'; settings are train.KEY or decode.KEY");
    if (std::find(names->begin(), names->end(), name) == names->end())
      throw AblateError(where + ": '" + key + "' is not a " + section + " setting; valid: " + join(*names, ", "));
    c.kind = AblateChange::Kind::Setting;
    return c;
  }
  for (const auto& [slot, type] : baseline.slots)
    if (slot == key) {
      c.kind = AblateChange::Kind::Slot;
      const std::string type_name = trim(value.substr(0, value.find('(')));
      if (!registry.contains(type_name)) throw AblateError(where + ": " + registry.unknown_type_message(type_name));
      return c;
    }
  for (const auto& [param, v] : baseline.params)
    if (param == key) {
      c.kind = AblateChange::Kind::Param;
      return c;
    }
  std::vector<std::string> valid;
  for (const auto& p : baseline.params) valid.push_back(p.first);
  for (const auto& s : baseline.slots) valid.push_back(s.first);
  std::sort(valid.begin(), valid.end());
  throw AblateError(where + ": '" + key + "' is not a parameter or slot of the experiment's model; valid names: " + join(valid, ", ") +
                    " (experiment settings are written SECTION.KEY, such as train.dropout)");
}

}  // namespace

void resolve_axes(std::vector<AblateAxis>& axes, const AblateBaseline& baseline, const Registry& registry) {
  for (AblateAxis& axis : axes) {
    if (axis.values.empty()) throw AblateError(axis.origin + " " + axis.key + ": the list of values is empty");
    axis.alternatives.clear();
    for (const std::string& value : axis.values) {
      const std::string where = axis.origin + " " + axis.key + "=" + value;
      std::vector<AblateChange> changes;
      if (value.rfind("set(", 0) == 0 && value.back() == ')') {
        // set(K1: V1, K2: V2): several keys at once.
        for (const std::string& item : split_values(value.substr(4, value.size() - 5))) {
          const size_t colon = item.find(':');
          if (colon == std::string::npos || trim(item.substr(0, colon)).empty())
            throw AblateError(where + ": expected set(KEY: VALUE, ...), got '" + item + "'");
          changes.push_back(resolve_change(trim(item.substr(0, colon)), trim(item.substr(colon + 1)), baseline, registry, where));
        }
        if (changes.empty()) throw AblateError(where + ": set() changes nothing");
      } else {
        changes.push_back(resolve_change(axis.key, value, baseline, registry, where));
      }
      axis.alternatives.push_back(std::move(changes));
    }
  }
}

std::vector<AblateAxis> sweep_axes(const AblateBaseline& baseline, const std::vector<std::string>& vary, const Registry& registry) {
  std::vector<AblateAxis> axes = baseline.ablate_section;
  for (const std::string& text : vary) {
    AblateAxis axis = parse_vary(text);
    auto same = std::find_if(axes.begin(), axes.end(), [&](const AblateAxis& a) { return a.key == axis.key; });
    if (same != axes.end()) *same = std::move(axis);
    else axes.push_back(std::move(axis));
  }
  resolve_axes(axes, baseline, registry);
  return axes;
}

std::vector<AblateVariant> expand_variants(const std::vector<AblateAxis>& axes, const AblateBaseline& baseline, bool grid) {
  auto is_baseline = [&](const std::vector<AblateChange>& changes) {
    for (const AblateChange& c : changes)
      if (!same_value(c.value, baseline.value_of(c.key))) return false;
    return true;
  };
  std::vector<AblateVariant> variants;
  variants.push_back({"baseline", "", {}});
  std::set<std::string> seen = {"baseline"};
  auto add = [&](std::vector<AblateChange> changes, const std::string& group) {
    if (is_baseline(changes)) return;
    AblateVariant v{variant_id(changes), group, std::move(changes)};
    if (seen.insert(v.id).second) variants.push_back(std::move(v));
  };
  if (!grid) {
    for (const AblateAxis& axis : axes)
      for (const auto& alternative : axis.alternatives) add(alternative, axis.key);
    return variants;
  }
  if (axes.empty()) return variants;
  std::vector<std::string> keys;
  for (const AblateAxis& a : axes) keys.push_back(a.key);
  const std::string group = join(keys, " × ");
  std::vector<size_t> index(axes.size(), 0);
  while (true) {
    std::vector<AblateChange> changes;
    for (size_t a = 0; a < axes.size(); ++a)
      for (const AblateChange& c : axes[a].alternatives[index[a]])
        if (!same_value(c.value, baseline.value_of(c.key))) changes.push_back(c);
    add(std::move(changes), group);
    size_t a = axes.size();
    while (a > 0) {
      --a;
      if (++index[a] < axes[a].alternatives.size()) break;
      index[a] = 0;
      if (a == 0) return variants;
    }
  }
}

namespace {

std::string label_of(size_t i, const std::vector<AblateVariant>& variants) {
  const AblateVariant& v = variants[i];
  return "[" + std::to_string(i + 1) + "/" + std::to_string(variants.size()) + "] " +
         (v.changes.empty() ? std::string("baseline") : describe_changes(v.changes));
}

// The training time of a run over all its invocations: a train event's elapsed_s counts from the
// start of its invocation, so it drops where a resumed invocation begins; the segments add up.
double total_train_seconds(const std::vector<nlohmann::json>& events) {
  double done = 0, segment = 0;
  for (const nlohmann::json& e : events) {
    if (e.value("event", "") != "train" || !e.contains("elapsed_s") || !e["elapsed_s"].is_number()) continue;
    const double t = e["elapsed_s"].get<double>();
    if (t < segment) done += segment;
    segment = t;
  }
  return done + segment;
}

// Starts `args` with stdout and stderr appended to `log_file`; returns its pid.
pid_t spawn_logged(const std::vector<std::string>& args, const fs::path& log_file) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw AblateError("cannot start " + args[0] + ": " + std::strerror(rc));
  return pid;
}

// The figures of a finished `attnlab run` directory (settings.json and metrics.jsonl).
VariantResult read_run_directory(const fs::path& dir, const AblateVariant& variant) {
  VariantResult r;
  r.variant = variant;
  r.status = "ok";
  r.dev_loss = r.dev_perplexity = NAN;  // unless a "valid" event says
  std::ifstream in(dir / "settings.json");
  nlohmann::json settings = nlohmann::json::parse(in, nullptr, false);
  if (!settings.is_discarded()) r.parameters = settings.value("parameters", int64_t{0});
  const std::vector<nlohmann::json> events = read_metrics(dir / "metrics.jsonl");
  r.train_seconds = total_train_seconds(events);
  for (const nlohmann::json& e : events) {
    const std::string event = e.value("event", "");
    if (event == "train") {
      r.steps = e.value("step", r.steps);
      r.last_train_loss = num(e, "loss", NAN);
      r.tokens_per_second = num(e, "tokens_per_s", NAN);
    } else if (event == "valid") {
      r.dev_loss = num(e, "loss", NAN);
      r.dev_perplexity = std::exp(r.dev_loss);
      r.dev_bleu = num(e, "bleu", -1);
    } else if (event == "test") {
      r.test_bleu = num(e, "bleu", -1);
      r.test_chrf = num(e, "chrf", -1);
    }
  }
  return r;
}

// Why a child run failed: the error lines of its log (DSL diagnostics and "attnlab: error: ...").
std::string error_lines(const fs::path& log_file, int code) {
  std::ifstream in(log_file);
  std::string out;
  for (std::string line; std::getline(in, line);)
    if (line.find("error:") != std::string::npos) out += (out.empty() ? "" : "\n") + line;
  const std::string prefix = "attnlab: error: ";
  if (out.rfind(prefix, 0) == 0) out = out.substr(prefix.size());
  return out.empty() ? "attnlab run exited with code " + std::to_string(code) + " (see " + log_file.string() + ")" : out;
}

// One invocation of a sweep: which variants are still to run, how each one's run is prepared and
// its result recorded, and the two ways of running them (in this process one after another, or as
// concurrent `attnlab run` children).
class Sweep {
 public:
  Sweep(const AblateOptions& options, const Registry& registry, std::vector<AblateVariant> variants, fs::path out_dir)
      : options_(options), registry_(registry), log_(options.log ? *options.log : std::cerr), variants_(std::move(variants)) {
    result_.out_dir = std::move(out_dir);
  }

  AblationResult run(const AblateBaseline& baseline) {
    fs::create_directories(result_.out_dir);
    log_ << "ablation of " << baseline.experiment_name << ": " << variants_.size() << " runs (baseline and "
         << variants_.size() - 1 << (variants_.size() == 2 ? " variant" : " variants") << ") in " << result_.out_dir.string() << "\n";
    find_pending();
    if (options_.parallel <= 1) run_in_process();
    else run_as_children();
    if (!baseline_failure_.empty())
      throw AblateError("the baseline run failed, so the sweep stopped (fix the cause and run the same command again):\n" +
                        baseline_failure_);
    write_ablation_results(result_.out_dir, baseline.experiment_name, baseline, result_.variants);
    return result_;
  }

 private:
  fs::path dir_of(size_t i) const { return result_.out_dir / variants_[i].id; }
  bool may_start_more() const { return !result_.interrupted && baseline_failure_.empty(); }

  // Each variant's slot in the results (baseline first): those with a result.json from an earlier
  // invocation are filled from it; the others are pending, "not run" until they finish.
  void find_pending() {
    result_.variants.resize(variants_.size());
    for (size_t i = 0; i < variants_.size(); ++i) {
      VariantResult& r = result_.variants[i];
      r.variant = variants_[i];
      r.status = "not run";
      r.reason = "the sweep was interrupted";
      const fs::path result_file = dir_of(i) / "result.json";
      if (fs::exists(result_file)) {
        std::ifstream in(result_file);
        nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
        if (!j.is_discarded()) {
          log_ << label_of(i, variants_) << ": finished earlier (" << j.value("status", "?") << "), skipped\n";
          r = from_json(j, variants_[i]);
          continue;
        }
      }
      pending_.push_back(i);
    }
  }

  // A variant's run options, and its directory (cleared when it holds a start that saved no
  // checkpoint, which cannot be resumed).
  RunOptions prepare(size_t i) const {
    const fs::path dir = dir_of(i);
    RunOptions run;
    run.experiment_file = options_.experiment_file;
    run.sets = options_.sets;
    run.uses = options_.uses;
    for (const AblateChange& c : variants_[i].changes)
      (c.kind == AblateChange::Kind::Slot ? run.uses : run.sets).push_back(change_text(c));
    run.out_dir = dir;
    run.data_root = options_.data_root;
    run.threads = options_.threads;
    run.seed = options_.seed;
    run.log = &log_;
    run.progress_terminal = options_.progress_terminal;
    const bool has_checkpoints = fs::is_directory(dir / "checkpoints") && !fs::is_empty(dir / "checkpoints");
    if (!has_checkpoints && fs::exists(dir)) fs::remove_all(dir);
    run.resume = has_checkpoints;
    std::string line = "attnlab run";
    if (!options_.experiment_file.empty()) line += " " + options_.experiment_file.string();
    for (const auto& s : run.sets) line += " --set '" + s + "'";
    for (const auto& u : run.uses) line += " --use '" + u + "'";
    line += " --out " + dir.string();
    run.command_line = line;
    log_ << label_of(i, variants_) << (run.resume ? ": resuming from its checkpoint" : ": running") << "\n";
    return run;
  }

  // A failing baseline stops the sweep: without it nothing can be compared, and its cause (a
  // missing data directory, a bad --set) would most likely fail every variant too. Neither it nor
  // a variant failing meanwhile is recorded as finished, so that the next invocation tries again.
  void record(size_t i, VariantResult r) {
    if (r.status == "failed") log_ << label_of(i, variants_) << ": FAILED: " << r.reason << "\n";
    if (r.status == "failed" && variants_[i].changes.empty()) baseline_failure_ = r.reason;
    if (r.status == "ok" || (r.status == "failed" && baseline_failure_.empty())) {
      fs::create_directories(dir_of(i));
      write_atomically(dir_of(i) / "result.json", to_json(r).dump(2) + "\n");
    }
    result_.variants[i] = std::move(r);
  }

  // --parallel 1: one variant after another in this process, each with all threads.
  void run_in_process() {
    for (size_t i : pending_) {
      if (!may_start_more()) break;
      RunOptions run = prepare(i);
      VariantResult r;
      r.variant = variants_[i];
      try {
        RunResult rr = run_experiment(run, registry_);
        if (rr.interrupted) {
          log_ << label_of(i, variants_) << ": interrupted at step " << rr.steps
               << " (checkpoint saved); run the same command again to resume\n";
          result_.interrupted = true;
          r.status = "not run";
          r.reason = "interrupted at step " + std::to_string(rr.steps);
          record(i, r);
          continue;
        }
        r.status = "ok";
        r.parameters = rr.parameters;
        r.steps = rr.steps;
        r.train_seconds = rr.train_seconds;
        r.tokens_per_second = rr.tokens_per_second;
        r.last_train_loss = rr.last_train_loss;
        r.dev_loss = rr.valid_loss;
        r.dev_perplexity = std::exp(rr.valid_loss);
        r.dev_bleu = rr.valid_bleu;
        r.test_bleu = rr.test_bleu;
        r.test_chrf = rr.test_chrf;
        // This invocation's time covers only the part after a resumed checkpoint: the whole run's.
        if (run.resume) r.train_seconds = total_train_seconds(read_metrics(run.out_dir / "metrics.jsonl"));
      } catch (const std::exception& e) {  // DslError, RunError, CheckpointError, errors of the data or plugins
        r.status = "failed";
        r.reason = trim(e.what());
      }
      record(i, r);
    }
  }

  // The `attnlab run` command line of a child process for `run`.
  std::vector<std::string> child_arguments(const RunOptions& run, int threads) const {
    std::vector<std::string> args = {options_.executable.string(), "run"};
    if (!run.experiment_file.empty()) args.push_back(run.experiment_file.string());
    for (const auto& s : run.sets) args.insert(args.end(), {"--set", s});
    for (const auto& u : run.uses) args.insert(args.end(), {"--use", u});
    args.insert(args.end(), {"--out", run.out_dir.string(), "--threads", std::to_string(threads)});
    if (run.resume) args.push_back("--resume");
    if (options_.seed != 0) args.insert(args.end(), {"--seed", std::to_string(options_.seed)});
    if (!options_.data_root.empty()) args.insert(args.end(), {"--data", options_.data_root.string()});
    for (const auto& dir : options_.plugin_paths) args.insert(args.end(), {"--plugin-path", fs::absolute(dir).string()});
    return args;
  }

  // --parallel N: up to N `attnlab run` children at once, threads / N each.
  void run_as_children() {
    if (options_.executable.empty()) throw AblateError("parallel variants need the attnlab executable to start");
    const int total_threads =
        options_.threads > 0 ? options_.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int child_threads = std::max(1, total_threads / options_.parallel);
    InterruptGuard interrupt;  // the children get their own SIGINT from the terminal; a signal to us alone is passed on
    std::map<pid_t, size_t> running;
    size_t next = 0;
    bool forwarded = false;
    while ((may_start_more() && next < pending_.size()) || !running.empty()) {
      if (interrupt.stop_requested()) {
        result_.interrupted = true;
        if (!forwarded)
          for (const auto& [pid, i] : running) ::kill(pid, SIGINT);
        forwarded = true;
      }
      while (may_start_more() && next < pending_.size() && static_cast<int>(running.size()) < options_.parallel) {
        const size_t i = pending_[next++];
        RunOptions run = prepare(i);
        fs::create_directories(run.out_dir);
        running[spawn_logged(child_arguments(run, child_threads), run.out_dir / "run.log")] = i;
      }
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      auto it = running.find(pid);
      if (it == running.end()) continue;
      const size_t i = it->second;
      running.erase(it);
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      VariantResult r;
      r.variant = variants_[i];
      if (code == 0) {
        r = read_run_directory(dir_of(i), variants_[i]);
      } else if (code == 130 || code == 143) {
        result_.interrupted = true;
        r.status = "not run";
        r.reason = "interrupted (checkpoint saved)";
        log_ << label_of(i, variants_) << ": interrupted (checkpoint saved); run the same command again to resume\n";
      } else {
        r.status = "failed";
        r.reason = error_lines(dir_of(i) / "run.log", code);
      }
      record(i, r);
    }
  }

  const AblateOptions& options_;
  const Registry& registry_;
  std::ostream& log_;
  const std::vector<AblateVariant> variants_;
  AblationResult result_;
  std::vector<size_t> pending_;
  std::string baseline_failure_;
};

}  // namespace

AblationResult run_ablation(const AblateOptions& options, const Registry& registry) {
  AblateBaseline baseline = load_baseline(options.experiment_file, options.sets, options.uses, registry);
  std::vector<AblateAxis> axes = sweep_axes(baseline, options.vary, registry);
  if (axes.empty())
    throw AblateError("nothing to vary: give --vary KEY=V1,V2 (such as heads=1,4,16) or an ablate section in the experiment");
  fs::path out_dir = options.out_dir.empty() ? fs::path("ablations") / baseline.experiment_name : options.out_dir;
  Sweep sweep(options, registry, expand_variants(axes, baseline, options.grid), std::move(out_dir));
  return sweep.run(baseline);
}

// ---- Results -----------------------------------------------------------------------------------

namespace {

std::string fmt(double v, int precision) {
  if (!std::isfinite(v)) return "";
  std::ostringstream o;
  o << std::fixed << std::setprecision(precision) << v;
  return o.str();
}

std::string fmt_params(int64_t n) {
  if (n <= 0) return "";
  std::ostringstream o;
  if (n < 1'000'000) o << std::fixed << std::setprecision(1) << n / 1e3 << "K";
  else o << std::fixed << std::setprecision(n >= 10'000'000 ? 0 : 2) << n / 1e6 << "M";
  return o.str();
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// A reason on one line (DSL errors span several: diagnostics with source excerpts).
std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\n' ? ' ' : c;
  return out;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string md_cell(std::string s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : c == '\n' ? std::string(" ") : std::string(1, c);
  return out;
}

}  // namespace

void write_ablation_results(const fs::path& out_dir, const std::string& experiment_name, const AblateBaseline& baseline,
                            const std::vector<VariantResult>& results) {
  // The keys that any variant changes, in order of first appearance: the columns of Table 3.
  std::vector<std::string> keys;
  for (const VariantResult& r : results)
    for (const AblateChange& c : r.variant.changes)
      if (std::find(keys.begin(), keys.end(), c.key) == keys.end()) keys.push_back(c.key);
  bool any_bleu = false;
  for (const VariantResult& r : results) any_bleu = any_bleu || r.dev_bleu >= 0 || r.test_bleu >= 0;
  auto value_in = [](const VariantResult& r, const std::string& key) -> std::string {
    for (const AblateChange& c : r.variant.changes)
      if (c.key == key) return c.value;
    return "";
  };

  // results.json
  nlohmann::json rows = nlohmann::json::array();
  for (const VariantResult& r : results) rows.push_back(to_json(r));
  nlohmann::json base = nlohmann::json::object();
  for (const std::string& k : keys) base[k] = baseline.value_of(k);
  write_atomically(out_dir / "results.json",
                   nlohmann::json{{"experiment", experiment_name}, {"baseline", base}, {"variants", rows}}.dump(2) + "\n");

  // results.csv: every key's effective value in every row (the baseline's when unchanged).
  std::ostringstream csv;
  csv << "variant,group";
  for (const std::string& k : keys) csv << "," << csv_field(k);
  csv << ",parameters,steps,train_seconds,tokens_per_second,final_train_loss,dev_perplexity,dev_bleu,test_bleu,test_chrf,status,reason\n";
  for (const VariantResult& r : results) {
    csv << csv_field(r.variant.id) << "," << csv_field(r.variant.group);
    for (const std::string& k : keys) {
      std::string v = value_in(r, k);
      csv << "," << csv_field(v.empty() ? baseline.value_of(k) : v);
    }
    if (r.status == "ok")
      csv << "," << r.parameters << "," << r.steps << "," << fmt(r.train_seconds, 1) << "," << fmt(r.tokens_per_second, 0) << ","
          << fmt(r.last_train_loss, 4) << "," << fmt(r.dev_perplexity, 3) << "," << (r.dev_bleu >= 0 ? fmt(r.dev_bleu, 2) : "") << ","
          << (r.test_bleu >= 0 ? fmt(r.test_bleu, 2) : "") << "," << (r.test_chrf >= 0 ? fmt(r.test_chrf, 2) : "");
    else
      csv << ",,,,,,,,,";
    csv << "," << r.status << "," << csv_field(one_line(r.reason)) << "\n";
  }
  write_atomically(out_dir / "results.csv", csv.str());

  // results.md: Table 3's layout.
  std::ostringstream md;
  md << "# Ablation of " << experiment_name << "\n\n"
     << "Rows are grouped by what they vary; a blank cell is the baseline's value.\n\n| |";
  for (const std::string& k : keys) md << " " << md_cell(k) << " |";
  md << " params | train loss | dev PPL |";
  if (any_bleu) md << " dev BLEU | test BLEU | test chrF |";
  md << " train s | tokens/s | status |\n|---|";
  for (size_t i = 0; i < keys.size(); ++i) md << "---|";
  md << "---:|---:|---:|";
  if (any_bleu) md << "---:|---:|---:|";
  md << "---:|---:|---|\n";
  std::string previous_group = "\x01";
  for (const VariantResult& r : results) {
    const bool is_base = r.variant.changes.empty();
    std::string label = is_base ? "base" : (r.variant.group != previous_group ? r.variant.group : "");
    previous_group = is_base ? "" : r.variant.group;
    md << "| " << md_cell(label) << " |";
    for (const std::string& k : keys) md << " " << md_cell(is_base ? baseline.value_of(k) : value_in(r, k)) << " |";
    if (r.status == "ok") {
      md << " " << fmt_params(r.parameters) << " | " << fmt(r.last_train_loss, 3) << " | " << fmt(r.dev_perplexity, 2) << " |";
      if (any_bleu)
        md << " " << (r.dev_bleu >= 0 ? fmt(r.dev_bleu, 2) : "") << " | " << (r.test_bleu >= 0 ? fmt(r.test_bleu, 2) : "") << " | "
           << (r.test_chrf >= 0 ? fmt(r.test_chrf, 2) : "") << " |";
      md << " " << fmt(r.train_seconds, 0) << " | " << fmt(r.tokens_per_second, 0) << " | ok |\n";
    } else {
      md << "  |  |  |" << (any_bleu ? "  |  |  |" : "") << "  |  | " << md_cell(r.status + (r.reason.empty() ? "" : ": " + first_line(r.reason)))
         << " |\n";
    }
  }
  if (any_bleu)
    md << "\nBLEU as multi-bleu.perl on the data's text; test chrF as sacreBLEU gives it (`chrF2|"
       << eval::chrf_signature(eval::ChrfOptions{}, 1) << "`). Each run's report.md has sacreBLEU's BLEU with its signature.\n";
  md << "\n![learning curves](curves.svg)\n\n![quality per variant](quality.svg)\n";
  write_atomically(out_dir / "results.md", md.str());

  // curves.svg: the train loss of every variant that ran, overlaid.
  LineChart curves;
  curves.title = experiment_name + " ablation: train loss";
  curves.x_label = "step";
  curves.y_label = "train loss";
  for (const VariantResult& r : results) {
    const fs::path metrics = out_dir / r.variant.id / "metrics.jsonl";
    if (!fs::exists(metrics)) continue;
    LineSeries s;
    s.name = r.variant.changes.empty() ? "baseline" : describe_changes(r.variant.changes);
    try {
      for (const nlohmann::json& e : read_metrics(metrics))
        if (e.value("event", "") == "train" && e.contains("step") && e.contains("loss")) {
          s.x.push_back(num(e, "step", NAN));
          s.y.push_back(num(e, "loss", NAN));
        }
    } catch (const std::exception&) {
      continue;  // an unreadable metrics file: no curve for this variant (its row still says why)
    }
    if (r.variant.changes.empty()) s.color = "#000000";
    curves.series.push_back(std::move(s));
  }
  write_svg(out_dir / "curves.svg", render_svg(curves));

  // quality.svg: dev BLEU per variant (dev perplexity when the task has no BLEU).
  BarChart quality;
  quality.title = experiment_name + " ablation: " + (any_bleu ? "dev BLEU" : "dev perplexity");
  quality.x_label = "variant";
  quality.y_label = any_bleu ? "dev BLEU" : "dev perplexity";
  BarSeries bars;
  bars.name = quality.y_label;
  for (const VariantResult& r : results) {
    quality.categories.push_back(r.variant.changes.empty() ? "baseline" : describe_changes(r.variant.changes));
    double v = r.status != "ok" ? NAN : any_bleu ? (r.dev_bleu >= 0 ? r.dev_bleu : NAN) : r.dev_perplexity;
    bars.values.push_back(v);
  }
  quality.series.push_back(std::move(bars));
  write_svg(out_dir / "quality.svg", render_svg(quality));
}

}  // namespace attnlab::train
