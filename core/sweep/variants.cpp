// core/sweep/variants.cpp — see variants.h.
#include "sweep/variants.h"
#include "task/task.h"

#include "train/trainer.h"

#include "dsl/builtin_files.h"
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

namespace attnlab::sweep {

namespace fs = std::filesystem;
using train::train_setting_names;

namespace {

// The decode section's settings (the trainer's list; repeated here because the trainer keeps it
// private — a key outside it fails the variant's run anyway, this only makes the error early).
const std::vector<std::string> kDecodeKeys = {"beam", "alpha", "max_length_extra"};

}  // namespace

std::string trim_whitespace(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

namespace {

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

}  // namespace

std::string change_text(const AblateChange& c) { return c.key + "=" + c.value; }

namespace {

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

}  // namespace

std::string describe_changes(const std::vector<AblateChange>& changes) {
  std::vector<std::string> parts;
  for (const AblateChange& c : changes) parts.push_back(change_text(c));
  return join(parts, " ");
}

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
      out.push_back(trim_whitespace(current));
      current.clear();
      continue;
    }
    current += ch;
  }
  out.push_back(trim_whitespace(current));
  return out;
}

AblateAxis parse_vary(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos)
    throw AblateError("--vary '" + text + "': expected KEY=V1,V2,... such as heads=1,4,16 or train.label_smoothing=0,0.2");
  AblateAxis axis;
  axis.origin = "--vary";
  axis.key = trim_whitespace(text.substr(0, eq));
  if (axis.key.empty()) throw AblateError("--vary '" + text + "': the key before '=' is empty; expected KEY=V1,V2,...");
  for (char ch : axis.key)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.'))
      throw AblateError("--vary '" + text + "': '" + axis.key + "' is not a key (a parameter, a slot, or SECTION.KEY)");
  const std::string rest = trim_whitespace(text.substr(eq + 1));
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
  const fs::path file = experiment_file.empty() ? dsl::builtin_default_experiment() : experiment_file;
  AblateBaseline baseline;
  try {
    dsl::ExperimentSpec spec = dsl::load_experiment(file);
    for (const std::string& s : sets) dsl::apply_set(spec, s);
    std::vector<dsl::Override> extra;
    for (const std::string& u : uses) extra.push_back(dsl::parse_override(u, "--use"));
    dsl::ElaboratedModel model = dsl::elaborate_experiment_model(spec, registry, extra);
    // A model that does not fit its task fails here, once, not in every variant.
    const task::Task& task = task::task_of(spec);
    task::check_graph(task, model.graph);
    task::check_params(task, model, spec);
    if (!experiment_file.empty()) dsl::check_ablate(spec, model, registry);
    baseline.experiment_name = spec.name;
    for (const auto& [name, value] : model.params) baseline.params.emplace_back(name, to_string(value));
    baseline.slots = model.slots;
    baseline.blocks = model.blocks;
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
      const std::string type_name = trim_whitespace(value.substr(0, value.find('(')));
      if (!registry.contains(type_name) && !std::binary_search(baseline.blocks.begin(), baseline.blocks.end(), type_name))
        throw AblateError(where + ": " + registry.unknown_type_message(type_name));
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
          if (colon == std::string::npos || trim_whitespace(item.substr(0, colon)).empty())
            throw AblateError(where + ": expected set(KEY: VALUE, ...), got '" + item + "'");
          changes.push_back(resolve_change(trim_whitespace(item.substr(0, colon)), trim_whitespace(item.substr(colon + 1)), baseline, registry, where));
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


std::string variant_label(size_t i, const std::vector<AblateVariant>& variants) {
  const AblateVariant& v = variants[i];
  return "[" + std::to_string(i + 1) + "/" + std::to_string(variants.size()) + "] " +
         (v.changes.empty() ? std::string("baseline") : describe_changes(v.changes));
}

}  // namespace attnlab::sweep
