// dsl/experiment.cpp — reading experiment files into ExperimentSpec and checking their structure.
#include "node/suggest.h"
#include "dsl/experiment.h"

#include "dsl/builtin_files.h"

#include "dsl/arithmetic.h"
#include "dsl/parser.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace attnlab::dsl {

namespace {

namespace x3 = boost::spirit::x3;


// Evaluates an expression of constants; returns false after reporting when it is not one.
class ConstEvaluator {
 public:
  ConstEvaluator(const SourceFile& file, Diagnostics& diags) : file_(file), diags_(diags) {}

  bool eval(const ast::Expr& e, ConstValue& out) {
    if (!eval(e.first, out)) return false;
    for (const ast::Operation& op : e.rest) {
      ConstValue rhs;
      if (!eval(op.operand, rhs)) return false;
      if (!out.is_number() || !rhs.is_number()) return fail(op.offset, "'" + op.op + "' needs numbers");
      if (!take(arithmetic::apply(op.op, as_number(out), as_number(rhs)), op.offset, out)) return false;
    }
    return true;
  }

 private:
  bool fail(int offset, std::string message) {
    diags_.error(file_, offset, std::move(message));
    return false;
  }

  static arithmetic::Number as_number(const ConstValue& v) {
    return v.kind == ConstValue::Kind::Int ? arithmetic::Number::of(v.i) : arithmetic::Number::of_real(v.f);
  }

  // Stores the shared arithmetic's result in `out` (keeping its location), or reports its error.
  bool take(const arithmetic::Result& r, int offset, ConstValue& out) {
    if (!r.value) return fail(offset, r.error);
    out.kind = r.value->whole ? ConstValue::Kind::Int : ConstValue::Kind::Float;
    out.i = r.value->i;
    out.f = r.value->f;
    return true;
  }

  bool eval(const ast::Operand& o, ConstValue& out) {
    if (auto* n = boost::get<ast::Number>(&o)) {
      out.loc = file_.loc(n->offset);
      return take(arithmetic::parse_number(n->text), n->offset, out);
    }
    if (auto* s = boost::get<ast::String>(&o)) {
      out.kind = ConstValue::Kind::String;
      out.text = s->value;
      out.loc = file_.loc(s->offset);
      return true;
    }
    if (auto* b = boost::get<ast::Bool>(&o)) {
      out.kind = ConstValue::Kind::Bool;
      out.b = b->value;
      out.loc = file_.loc(b->offset);
      return true;
    }
    if (auto* n = boost::get<ast::Name>(&o)) {
      out.kind = ConstValue::Kind::Name;
      out.text = n->text;
      out.loc = file_.loc(n->offset);
      return true;
    }
    if (auto* l = boost::get<x3::forward_ast<ast::List>>(&o)) {
      out.kind = ConstValue::Kind::List;
      out.loc = file_.loc(l->get().offset);
      for (const ast::Expr& e : l->get().items) {
        ConstValue item;
        if (!eval(e, item)) return false;
        out.items.push_back(std::move(item));
      }
      return true;
    }
    if (auto* u = boost::get<x3::forward_ast<ast::Unary>>(&o)) {
      if (!eval(u->get().operand, out)) return false;
      if (!out.is_number()) return fail(u->get().offset, "cannot negate this value");
      return take(arithmetic::negate(as_number(out)), u->get().offset, out);
    }
    if (auto* e = boost::get<x3::forward_ast<ast::Expr>>(&o)) return eval(e->get(), out);
    if (auto* r = boost::get<x3::forward_ast<ast::Repeat>>(&o)) return fail(r->get().offset, "repeat is not a constant");
    const ast::Postfix& p = boost::get<x3::forward_ast<ast::Postfix>>(o).get();
    if (p.calls.empty()) return eval(p.primary, out);
    if (p.calls.size() > 1) return fail(p.calls[1].offset, "a setting may call a function once, such as adam(0.9, 0.98, 1e-9)");
    ConstValue callee;
    if (!eval(p.primary, callee)) return false;
    if (callee.kind != ConstValue::Kind::Name) return fail(p.offset, "only a name can be called, such as noam(warmup: 4000)");
    out.kind = ConstValue::Kind::Call;
    out.text = callee.text;
    out.loc = callee.loc;
    std::set<std::string> seen;
    for (const ast::Arg& a : p.calls[0].args) {
      ConstValue v;
      if (!eval(a.value, v)) return false;
      if (a.name) {
        if (!seen.insert(*a.name).second) return fail(a.offset, "argument '" + *a.name + "' given twice");
        out.named.push_back({*a.name, std::move(v)});
      } else {
        out.items.push_back(std::move(v));
      }
    }
    return true;
  }

  const SourceFile& file_;
  Diagnostics& diags_;
};

std::string format_number(double f) {
  std::string s = attnlab::to_string(AttrValue(f));
  return s;
}

}  // namespace

const ConstValue* ConstValue::arg(const std::string& name) const {
  for (const auto& [n, v] : named)
    if (n == name) return &v;
  return nullptr;
}

std::string ConstValue::to_string() const {
  switch (kind) {
    case Kind::Int: return std::to_string(i);
    case Kind::Float: return format_number(f);
    case Kind::Bool: return b ? "true" : "false";
    case Kind::String: return attnlab::to_string(AttrValue(text));
    case Kind::Name: return text;
    case Kind::List: {
      std::string s = "[";
      for (size_t k = 0; k < items.size(); ++k) s += (k ? ", " : "") + items[k].to_string();
      return s + "]";
    }
    case Kind::Call: {
      std::string s = text + "(";
      bool first = true;
      for (const ConstValue& v : items) {
        s += (first ? "" : ", ") + v.to_string();
        first = false;
      }
      for (const auto& [n, v] : named) {
        s += (first ? "" : ", ") + n + ": " + v.to_string();
        first = false;
      }
      return s + ")";
    }
  }
  return "";
}

const ExperimentSetting* ExperimentSpec::find(const std::string& dotted_key) const {
  const size_t dot = dotted_key.find('.');
  const std::vector<ExperimentSetting>* list = &settings;
  std::string key = dotted_key;
  if (dot != std::string::npos) {
    auto it = sections.find(dotted_key.substr(0, dot));
    if (it == sections.end()) return nullptr;
    list = &it->second;
    key = dotted_key.substr(dot + 1);
  }
  for (const ExperimentSetting& s : *list)
    if (s.key == key) return &s;
  return nullptr;
}

namespace {

bool read_settings(const std::vector<ast::Setting>& in, const SourceFile& file, Diagnostics& diags,
                   std::vector<ExperimentSetting>& out, const std::string& where) {
  ConstEvaluator eval(file, diags);
  std::set<std::string> seen;
  bool ok = true;
  for (const ast::Setting& s : in) {
    ExperimentSetting setting;
    setting.loc = file.loc(s.offset);
    if (!eval.eval(s.value, setting.value)) {
      ok = false;
      continue;
    }
    setting.key = s.key;
    if (setting.key.find('.') != std::string::npos && where != "section 'ablate'") {
      diags.error(setting.loc, "'" + setting.key + "': a dotted name (SECTION.KEY) is only valid in the ablate section");
      ok = false;
      continue;
    }
    if (setting.key.empty()) {
      if (setting.value.kind != ConstValue::Kind::Call) {
        diags.error(setting.loc, "expected 'name: value' or a call such as adam(0.9, 0.98, 1e-9) in " + where);
        ok = false;
        continue;
      }
      setting.key = setting.value.text;
    }
    if (!seen.insert(setting.key).second) {
      diags.error(setting.loc, "'" + setting.key + "' is set twice in " + where);
      ok = false;
      continue;
    }
    out.push_back(std::move(setting));
  }
  return ok;
}

}  // namespace

std::vector<ExperimentSpec> read_experiments(const Program& program, Diagnostics& diags) {
  std::vector<ExperimentSpec> specs;
  const LoadedFile& main = program.main();
  const SourceFile& file = *main.source;
  for (const ast::Experiment& e : main.ast.experiments) {
    ExperimentSpec spec;
    spec.name = e.name;
    spec.loc = file.loc(e.offset);
    spec.file = main.path;
    if (e.models.empty()) diags.error(spec.loc, "experiment '" + e.name + "' names no model: add model = \"FILE.attn\"");
    for (size_t k = 1; k < e.models.size(); ++k)
      diags.error(file.loc(e.models[k].offset), "experiment '" + e.name + "' names more than one model");
    if (!e.models.empty()) {
      const ast::ModelRef& ref = e.models.front();
      spec.model_path = (main.path.parent_path() / ref.path.value).lexically_normal();
      // The error_code form: a name the system refuses (too long, say) is a diagnostic, not an exception.
      std::error_code ec;
      if (!builtin_file_text(spec.model_path) && !std::filesystem::is_regular_file(spec.model_path, ec))
        diags.error(file.loc(ref.path.offset), "model file '" + spec.model_path.string() + "' " +
                                                   (ec && ec != std::errc::no_such_file_or_directory ? "cannot be read: " + ec.message()
                                                                                                      : std::string("does not exist")));
      std::set<std::string> seen;
      for (const ast::Setting& s : ref.overrides) {
        if (s.key.empty()) {
          diags.error(file.loc(s.offset), "a model override is NAME = VALUE");
          continue;
        }
        if (!seen.insert(s.key).second) {
          diags.error(file.loc(s.offset), "'" + s.key + "' is overridden twice");
          continue;
        }
        Override o;
        o.name = s.key;
        o.value = s.value;
        o.source = main.source;
        o.name_offset = s.offset;
        spec.model_overrides.push_back(std::move(o));
      }
    }
    read_settings(e.settings, file, diags, spec.settings, "experiment '" + e.name + "'");
    for (const ExperimentSetting& s : spec.settings)
      if (std::find(kExperimentSettings.begin(), kExperimentSettings.end(), s.key) == kExperimentSettings.end())
        diags.error(s.loc, "unknown experiment setting '" + s.key + "'; valid settings: model, " + join_names(kExperimentSettings) +
                               ", and the sections " + join_names(kExperimentSections) + did_you_mean(s.key, kExperimentSettings));
    for (const ast::Section& section : e.sections) {
      const ir::SourceLoc loc = file.loc(section.offset);
      if (std::find(kExperimentSections.begin(), kExperimentSections.end(), section.name) == kExperimentSections.end()) {
        diags.error(loc, "unknown section '" + section.name + "'; valid sections: " + join_names(kExperimentSections) +
                             did_you_mean(section.name, kExperimentSections));
        continue;
      }
      if (spec.sections.count(section.name)) {
        diags.error(loc, "section '" + section.name + "' appears twice");
        continue;
      }
      read_settings(section.settings, file, diags, spec.sections[section.name], "section '" + section.name + "'");
    }
    if (auto it = spec.sections.find("ablate"); it != spec.sections.end())
      for (const ExperimentSetting& s : it->second)
        if (s.value.kind != ConstValue::Kind::List || s.value.items.empty())
          diags.error(s.loc, "ablate '" + s.key + "' needs a non-empty list of values, such as " + s.key + " = [1, 4, 16]");
    specs.push_back(std::move(spec));
  }
  return specs;
}

ExperimentSpec load_experiment(const std::filesystem::path& path, const std::string& name) {
  std::unique_ptr<Program> program;
  try {
    program = load_program(path);
  } catch (const std::runtime_error& e) {
    throw DslError(std::string("error: ") + e.what() + "\n", {{ir::SourceLoc(), e.what()}});
  }
  Diagnostics diags = program->diagnostics;
  std::vector<ExperimentSpec> specs = read_experiments(*program, diags);
  const ExperimentSpec* found = nullptr;
  std::vector<std::string> names;
  for (const ExperimentSpec& s : specs) {
    names.push_back(s.name);
    if (!found && (name.empty() || s.name == name)) found = &s;
  }
  if (!found && diags.empty()) {
    if (specs.empty()) diags.error(program->main().source->loc(-1), "no experiment in this file");
    else diags.error(program->main().source->loc(-1), "no experiment named '" + name + "'; experiments: " + join_names(names) + did_you_mean(name, names));
  }
  if (!diags.empty()) throw DslError(diags.format(), diags.items());
  return *found;
}

void apply_set(ExperimentSpec& spec, const std::string& text) {
  const size_t eq = text.find('=');
  const size_t dot = text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
    spec.model_overrides.push_back(parse_override(text, "--set"));
    return;
  }
  Override o = parse_override(text, "--set");  // checks the syntax; o.value is the value expression
  Diagnostics diags;
  diags.add_source(o.source);
  const std::string section = o.name.substr(0, dot);
  const std::string key = o.name.substr(dot + 1);
  if (std::find(kExperimentSections.begin(), kExperimentSections.end(), section) == kExperimentSections.end()) {
    diags.error(o.source->loc(0), "unknown section '" + section + "'; valid sections: " + join_names(kExperimentSections) +
                                      did_you_mean(section, kExperimentSections));
    throw DslError(diags.format(), diags.items());
  }
  ExperimentSetting setting;
  setting.key = key;
  setting.loc = o.source->loc(0);
  ConstEvaluator eval(*o.source, diags);
  if (key.empty() || key.find('.') != std::string::npos) diags.error(o.source->loc(0), "expected SECTION.KEY=VALUE, got '" + text + "'");
  else if (eval.eval(o.value, setting.value) && section == "ablate" &&
           (setting.value.kind != ConstValue::Kind::List || setting.value.items.empty()))
    diags.error(o.source->loc(static_cast<int>(eq + 1)), "ablate '" + key + "' needs a non-empty list of values");
  if (!diags.empty()) throw DslError(diags.format(), diags.items());
  auto& list = spec.sections[section];
  auto it = std::find_if(list.begin(), list.end(), [&](const ExperimentSetting& s) { return s.key == key; });
  if (it != list.end()) *it = std::move(setting);
  else list.push_back(std::move(setting));
}

ElaboratedModel elaborate_experiment_model(const ExperimentSpec& spec, const Registry& registry,
                                           const std::vector<Override>& extra, const ir::DimBindings& dims) {
  ElaborateOptions options;
  options.overrides = spec.model_overrides;
  options.overrides.insert(options.overrides.end(), extra.begin(), extra.end());
  options.dims = dims;
  std::unique_ptr<Program> program;
  try {
    program = load_program(spec.model_path);
  } catch (const std::runtime_error& e) {
    Diagnostics diags;
    diags.error(spec.loc, std::string("cannot read the model: ") + e.what());
    throw DslError(diags.format(), diags.items());
  }
  return elaborate(*program, registry, options);
}

}  // namespace attnlab::dsl

namespace attnlab::dsl {

void check_ablate(const ExperimentSpec& spec, const ElaboratedModel& model, const Registry& registry) {
  auto it = spec.sections.find("ablate");
  if (it == spec.sections.end()) return;
  Diagnostics diags;
  auto source = SourceFile::read(spec.file);
  diags.add_source(source);
  std::vector<std::string> valid;
  for (const auto& [name, value] : model.params) valid.push_back(name);
  for (const auto& [slot, type] : model.slots) valid.push_back(slot);
  std::sort(valid.begin(), valid.end());
  for (const ExperimentSetting& s : it->second) {
    const size_t dot = s.key.find('.');
    if (dot != std::string::npos) {
      const std::string section = s.key.substr(0, dot);
      if (std::find(kExperimentSections.begin(), kExperimentSections.end(), section) == kExperimentSections.end())
        diags.error(s.loc, "ablate '" + s.key + "': unknown section '" + section + "'; valid sections: " + join_names(kExperimentSections));
      continue;
    }
    auto slot = std::find_if(model.slots.begin(), model.slots.end(), [&](const auto& p) { return p.first == s.key; });
    if (slot != model.slots.end()) {
      for (const ConstValue& v : s.value.items) {
        if (v.kind == ConstValue::Kind::Call && v.text == "set") continue;  // grouped changes: resolved by the sweep
        const std::string type = v.kind == ConstValue::Kind::String ? v.text : v.kind == ConstValue::Kind::Name ? v.text : "";
        if (type.empty()) diags.error(v.loc, "ablate '" + s.key + "' is a slot: its values are node types, such as " + slot->second);
        else if (!registry.contains(type) && !std::binary_search(model.blocks.begin(), model.blocks.end(), type))
          diags.error(v.loc, registry.unknown_type_message(type));
      }
      continue;
    }
    if (std::find(valid.begin(), valid.end(), s.key) == valid.end())
      diags.error(s.loc, "ablate '" + s.key + "' is not a parameter or slot of the model; valid names: " + join_names(valid) +
                             did_you_mean(s.key, valid) + " (experiment settings are written SECTION.KEY)");
  }
  if (!diags.empty()) throw DslError(diags.format(), diags.items());
}

ElaboratedModel elaborate_target(const std::filesystem::path& path, const Registry& registry,
                                 const std::vector<std::string>& sets, const std::vector<std::string>& uses,
                                 const std::string& model_name, ExperimentSpec* experiment) {
  std::unique_ptr<Program> program;
  try {
    program = load_program(path);
  } catch (const std::runtime_error& e) {
    throw DslError(std::string("error: ") + e.what() + "\n", {{ir::SourceLoc(), e.what()}});
  }
  const ast::File& file = program->main().ast;
  if (file.models.empty() && !file.experiments.empty() && program->diagnostics.empty()) {
    ExperimentSpec spec = load_experiment(path, model_name);
    for (const std::string& s : sets) apply_set(spec, s);
    std::vector<Override> extra;
    for (const std::string& u : uses) extra.push_back(parse_override(u, "--use"));
    ElaboratedModel model = elaborate_experiment_model(spec, registry, extra);
    check_ablate(spec, model, registry);
    if (experiment) *experiment = std::move(spec);
    return model;
  }
  ElaborateOptions options;
  options.model = model_name;
  for (const std::string& s : sets) options.overrides.push_back(parse_override(s, "--set"));
  for (const std::string& u : uses) options.overrides.push_back(parse_override(u, "--use"));
  return elaborate(*program, registry, options);
}

}  // namespace attnlab::dsl
