// dsl/elaborate.cpp — loading spec files with their imports, and elaborating a model to the IR.
#include "node/suggest.h"
#include "dsl/elaborate.h"

#include "dsl/arithmetic.h"
#include "dsl/parser.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

namespace attnlab::dsl {

// ---- Loading ------------------------------------------------------------------------------------

namespace {

struct Loader {
  Program& program;
  std::vector<std::filesystem::path> stack;  // files being loaded (for cycle detection)
  std::set<std::filesystem::path> done;

  static std::filesystem::path key(const std::filesystem::path& p) {
    std::error_code ec;
    auto canonical = std::filesystem::weakly_canonical(p, ec);
    return ec ? p.lexically_normal() : canonical;
  }

  void load(const std::filesystem::path& path, const SourceFile* from, int from_offset) {
    const auto k = key(path);
    if (done.count(k)) return;
    auto in_stack = std::find(stack.begin(), stack.end(), k);
    if (in_stack != stack.end()) {
      std::string chain;
      for (auto it = in_stack; it != stack.end(); ++it) chain += it->filename().string() + " -> ";
      chain += k.filename().string();
      program.diagnostics.error(*from, from_offset, "import cycle: " + chain);
      return;
    }
    if (static_cast<int>(stack.size()) >= kMaxImportDepth) {
      program.diagnostics.error(*from, from_offset, "imports nested deeper than " + std::to_string(kMaxImportDepth));
      return;
    }
    std::shared_ptr<const SourceFile> source;
    try {
      if (std::filesystem::is_directory(path)) throw std::runtime_error("'" + path.string() + "' is a directory");
      source = SourceFile::read(path);
    } catch (const std::exception& e) {
      if (!from) throw;
      program.diagnostics.error(*from, from_offset, std::string("cannot import: ") + e.what());
      return;
    }
    program.diagnostics.add_source(source);
    stack.push_back(k);
    ast::File file = parse_file(*source, program.diagnostics);
    for (const ast::ImportDecl& import : file.imports) {
      const std::filesystem::path target = (path.parent_path() / import.path.value).lexically_normal();
      load(target, source.get(), import.offset);
    }
    stack.pop_back();
    done.insert(k);
    program.files.push_back({source, path, std::move(file)});
  }
};

}  // namespace

std::unique_ptr<Program> load_program(const std::filesystem::path& path) {
  auto program = std::make_unique<Program>();
  Loader loader{*program, {}, {}};
  loader.load(path, nullptr, -1);
  return program;
}

ir::DimBindings default_dims() { return {{"batch", 2}, {"src_len", 7}, {"tgt_len", 5}, {"seq_len", 6}}; }

Override parse_override(const std::string& text, const std::string& flag) {
  auto source = std::make_shared<SourceFile>(flag + " " + text, text);
  Diagnostics diags;
  diags.add_source(source);
  Override o;
  o.source = source;
  o.slot_only = flag == "--use";
  const size_t eq = text.find('=');
  size_t name_end = eq == std::string::npos ? text.size() : eq;
  while (name_end > 0 && text[name_end - 1] == ' ') --name_end;
  o.name = text.substr(0, name_end);
  const bool name_ok = !o.name.empty() && std::all_of(o.name.begin(), o.name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
  });
  if (eq == std::string::npos || !name_ok) {
    diags.error(source->loc(0), flag + " expects NAME=VALUE, got '" + text + "'");
  } else {
    parse_expression(*source, o.value, diags, static_cast<int>(eq + 1));
  }
  if (!diags.empty()) throw DslError(diags.format(), diags.items());
  return o;
}

// ---- Elaboration --------------------------------------------------------------------------------

namespace {

namespace x3 = boost::spirit::x3;

struct Abort {};  // a limit was hit: stop elaborating, report what was collected

struct BlockClosure;

struct Component {
  std::string type;
  std::string display;   // the slot or type name as written (node names derive from it)
  std::string identity;  // the scope of its weights
  std::map<std::string, std::pair<AttrValue, ir::SourceLoc>> attrs;
  // Attributes bound with the slot (`--use attention=attention.local(window: 4)`): they hold at
  // every call, over what the call itself says, because the binding is the more specific choice.
  std::map<std::string, std::pair<AttrValue, ir::SourceLoc>> bound_attrs;
  std::map<std::string, std::string> inputs;  // port -> value
  std::shared_ptr<int> applications = std::make_shared<int>(0);
  bool bare = true;  // a slot or type name with nothing bound yet
};

struct TensorValue {
  std::string ref;
  std::string node;                // "" for a graph input
  std::vector<std::string> ports;  // output names of `node`
};

struct Value {
  enum class Kind { None, Int, Float, Bool, String, Tensor, Component, Block, Builtin, List } kind = Kind::None;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;  // string value, builtin name
  TensorValue tensor;
  std::shared_ptr<Component> component;
  std::shared_ptr<BlockClosure> block;
  std::vector<Value> list;

  bool is_number() const { return kind == Kind::Int || kind == Kind::Float; }
  double number() const { return kind == Kind::Int ? static_cast<double>(i) : f; }
};

// A numeric Value as the shared arithmetic's Number (dsl/arithmetic.h).
arithmetic::Number as_number(const Value& v) {
  return v.kind == Value::Kind::Int ? arithmetic::Number::of(v.i) : arithmetic::Number::of_real(v.f);
}

Value int_value(int64_t v) { Value r; r.kind = Value::Kind::Int; r.i = v; return r; }
Value float_value(double v) { Value r; r.kind = Value::Kind::Float; r.f = v; return r; }

struct BlockDef {
  const ast::BlockDecl* decl = nullptr;
  const SourceFile* file = nullptr;
};

struct BlockClosure {
  BlockDef def;
  std::map<std::string, Value> bound;
  std::string display;  // the name its nodes are under: the slot that binds it, else the block's name
  const std::string& name() const { return display.empty() ? def.decl->name : display; }
};

std::string describe(const Value& v) {
  switch (v.kind) {
    case Value::Kind::None: return "nothing";
    case Value::Kind::Int: return "int " + std::to_string(v.i);
    case Value::Kind::Float: return "float " + to_string(AttrValue(v.f));
    case Value::Kind::Bool: return std::string("bool ") + (v.b ? "true" : "false");
    case Value::Kind::String: return "string \"" + v.s + "\"";
    case Value::Kind::Tensor: return "tensor '" + v.tensor.ref + "'";
    case Value::Kind::Component: return "component " + v.component->type;
    case Value::Kind::Block: return "block '" + v.block->def.decl->name + "'";
    case Value::Kind::Builtin: return "function '" + v.s + "'";
    case Value::Kind::List: return "list";
  }
  return "value";
}


struct ParamEntry {
  std::string name;
  const ast::Expr* expr = nullptr;
  const SourceFile* file = nullptr;
  int offset = -1;
  enum class State { Pending, Evaluating, Done, Failed } state = State::Pending;
  Value value;
};

struct SlotEntry {
  std::string name;
  std::string type;
  ir::SourceLoc loc;  // where the binding came from (use declaration or override)
  const ast::CallArgs* bound = nullptr;  // named attributes given with an override's type
  const SourceFile* bound_file = nullptr;
};

struct Frame {
  std::string name;           // this scope's name in node names
  std::string identity_name;  // this scope's name in weight identities (differs in shared repeats)
  std::map<std::string, int> counters;
};

class Elaborator {
 public:
  Elaborator(const Program& program, const Registry& registry, Diagnostics& diags)
      : program_(program), registry_(registry), diags_(diags) {}

  ElaboratedModel run(const ElaborateOptions& options);

 private:
  // ---- errors ----
  ir::SourceLoc loc(int offset) const { return file_->loc(offset); }
  void error(int offset, std::string message) { diags_.error(loc(offset), std::move(message)); }

  // ---- names and scopes ----
  std::string unique_in_frame(const std::string& base) {
    int& n = frames_.back().counters[base];
    std::string name = n == 0 ? base : base + "_" + std::to_string(n);
    ++n;
    return name;
  }
  std::string path_of(bool identity) const {
    std::string p;
    for (const Frame& f : frames_) {
      const std::string& part = identity ? f.identity_name : f.name;
      if (part.empty()) continue;
      p += (p.empty() ? "" : ".") + part;
    }
    return p;
  }
  static std::string dotted(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
  }
  void push_frame(const std::string& base, std::string identity_name = {}) {
    std::string name = unique_in_frame(base);
    frames_.push_back({name, identity_name.empty() ? name : identity_name, {}});
  }

  // ---- declarations ----
  // The phases of run(), in order.
  const ast::Model* select_model(const ElaborateOptions& options);
  void collect_declarations(const ast::Model& model);
  void elaborate_input(const ast::InputDecl& in);
  void elaborate_assign(const ast::Assign& a);
  void elaborate_output(const ast::OutputDecl& o, std::set<std::string>& outputs);
  void share_repeated_identities();
  void check_sizes(const ir::InferredGraph& shapes);

  void declare(const std::string& name, const SourceFile& file, int offset);
  void collect(const ast::ParamDecl& d, const SourceFile& file);
  void collect(const ast::UseDecl& d, const SourceFile& file);
  void collect(const ast::BlockDecl& d, const SourceFile& file);
  void apply_override(const Override& o);
  void check_slot_bindings();
  std::string unknown_binding_message(const std::string& name) const;

  Value param(ParamEntry& p);
  Value lookup(const ast::Name& name);
  Value make_component(const std::string& type, const std::string& display);
  bool bind_slot_attrs(Component& c, const SlotEntry& slot);

  // ---- evaluation ----
  Value eval(const ast::Expr& e);
  Value eval(const ast::Operand& o);
  Value eval_postfix(const ast::Postfix& p);
  Value eval_callee(const ast::Operand& o);
  Value eval_repeat(const ast::Repeat& r);
  Value binary(const std::string& op, const Value& a, const Value& b, int offset);
  Value number_literal(const ast::Number& n);
  Value from_arithmetic(const arithmetic::Result& r, int offset);

  struct Args {
    std::vector<std::pair<Value, int>> positional;  // value, offset
    std::vector<std::tuple<std::string, Value, int>> named;
  };
  Args eval_args(const ast::CallArgs& call);
  Value call(const Value& callee, const Args& args, int offset, bool repeat_copy = false);
  Value call_builtin(const std::string& fn, const Args& args, int offset);
  Value call_component(const Component& c, const Args& args, int offset);
  Value call_block(const BlockClosure& b, const Args& args, int offset, bool repeat_copy);
  Value apply(Component c, int offset);
  Value tensor_add(const Value& a, const Value& b, int offset);
  std::optional<AttrValue> to_attr(const Value& v) const;
  bool check_attr_type(const std::string& type, const AttrSchema& schema, const Value& v, int offset);

  const Program& program_;
  const Registry& registry_;
  Diagnostics& diags_;
  const SourceFile* file_ = nullptr;  // the file whose offsets are being evaluated

  std::map<std::string, ir::SourceLoc> declared_;  // every global name -> where declared
  std::vector<ParamEntry> params_;
  std::map<std::string, size_t> param_index_;
  std::vector<SlotEntry> slots_;
  std::map<std::string, size_t> slot_index_;
  std::map<std::string, BlockDef> blocks_;
  std::map<std::string, Value> vars_;                  // model-level assignments and inputs
  std::vector<std::map<std::string, Value>> locals_;   // block invocations
  std::vector<Frame> frames_{Frame{}};
  int block_depth_ = 0;
  ir::GraphDef graph_;
  std::map<std::string, std::vector<int>> identity_nodes_;
};

void Elaborator::declare(const std::string& name, const SourceFile& file, int offset) {
  auto [it, inserted] = declared_.emplace(name, file.loc(offset));
  if (!inserted) {
    const ir::SourceLoc& first = it->second;
    diags_.error(file.loc(offset), "redefinition of '" + name + "' (first defined at " + first.file() + ":" +
                                       std::to_string(first.line()) + ":" + std::to_string(first.column()) + ")");
  }
}

void Elaborator::collect(const ast::ParamDecl& d, const SourceFile& file) {
  for (const ast::ParamDef& p : d.params) {
    if (declared_.count(p.name)) {
      declare(p.name, file, p.offset);
      continue;
    }
    declare(p.name, file, p.offset);
    param_index_[p.name] = params_.size();
    ParamEntry entry;
    entry.name = p.name;
    entry.expr = &p.value;
    entry.file = &file;
    entry.offset = p.offset;
    params_.push_back(std::move(entry));
  }
}

void Elaborator::collect(const ast::UseDecl& d, const SourceFile& file) {
  if (declared_.count(d.slot)) {
    declare(d.slot, file, d.offset);
    return;
  }
  declare(d.slot, file, d.offset);
  // Whether the name is a node type or one of the model's blocks is checked once every block is
  // known (check_slot_bindings).
  slot_index_[d.slot] = slots_.size();
  slots_.push_back({d.slot, d.type.text, file.loc(d.type.offset)});
}

void Elaborator::collect(const ast::BlockDecl& d, const SourceFile& file) {
  if (declared_.count(d.name)) {
    declare(d.name, file, d.offset);
    return;
  }
  declare(d.name, file, d.offset);
  std::set<std::string> seen;
  for (const std::string& p : d.params)
    if (!seen.insert(p).second) diags_.error(file.loc(d.offset), "block '" + d.name + "' has two parameters named '" + p + "'");
  blocks_[d.name] = {&d, &file};
}

// A slot binds a node type or a block of the model (`use sublayer = post_norm`: every use of the
// slot is that block, and --use sublayer=pre_norm swaps it as a node type is swapped).
void Elaborator::check_slot_bindings() {
  for (const SlotEntry& s : slots_)
    if (!registry_.contains(s.type) && !blocks_.count(s.type)) diags_.error(s.loc, unknown_binding_message(s.type));
}

std::string Elaborator::unknown_binding_message(const std::string& name) const {
  if (name.find('.') != std::string::npos || blocks_.empty()) return registry_.unknown_type_message(name);
  std::vector<std::string> names;
  for (const auto& [block, unused] : blocks_) names.push_back(block);
  return "unknown node type or block '" + name + "'; the model's blocks: " + join_names(names) + did_you_mean(name, names);
}

void Elaborator::apply_override(const Override& o) {
  const SourceFile* saved = file_;
  file_ = o.source.get();
  diags_.add_source(o.source);
  if (auto s = slot_index_.find(o.name); s != slot_index_.end()) {
    // The value names a node type: a (qualified) name or a string.
    // The value names a node type, optionally with named attributes: TYPE or TYPE(name: value, ...).
    std::string type;
    const ast::CallArgs* bound = nullptr;
    bool positional = false;
    const ast::Expr& e = o.value;
    if (e.rest.empty()) {
      if (auto* fwd = boost::get<x3::forward_ast<ast::Expr>>(&e.first)) {
        const ast::Expr& inner = fwd->get();
        if (inner.rest.empty())
          if (auto* pf = boost::get<x3::forward_ast<ast::Postfix>>(&inner.first); pf && pf->get().calls.size() <= 1) {
            if (auto* n = boost::get<ast::Name>(&pf->get().primary)) type = n->text;
            if (auto* st = boost::get<ast::String>(&pf->get().primary)) type = st->value;
            if (!pf->get().calls.empty()) {
              bound = &pf->get().calls.front();
              for (const ast::Arg& a : bound->args) positional = positional || !a.name;
            }
          }
      }
    }
    if (type.empty() || positional) {
      error(e.offset, "slot '" + o.name + "' takes a node type name, such as " + slots_[s->second].type +
                          ", optionally with named attributes: " + slots_[s->second].type + "(name: value)");
    } else if (!registry_.contains(type) && !blocks_.count(type)) {
      error(e.offset, unknown_binding_message(type));
    } else if (!registry_.contains(type) && bound) {
      error(e.offset, "slot '" + o.name + "' names block '" + type + "', which takes no attributes");
    } else {
      slots_[s->second].type = type;
      slots_[s->second].loc = loc(e.offset);
      slots_[s->second].bound = bound;
      slots_[s->second].bound_file = o.source.get();
    }
  } else if (auto p = param_index_.find(o.name); p != param_index_.end() && !o.slot_only) {
    params_[p->second].expr = &o.value;
    params_[p->second].file = o.source.get();
    params_[p->second].offset = o.value.offset;
  } else {
    std::vector<std::string> valid;
    for (const SlotEntry& s : slots_) valid.push_back(s.name);
    std::string what = "slot";
    if (!o.slot_only) {
      for (const ParamEntry& p : params_) valid.push_back(p.name);
      what = "parameter or slot";
    }
    std::string message;
    if (o.slot_only && param_index_.count(o.name)) {
      message = "'" + o.name + "' is a parameter, not a slot; use --set " + o.name + "=VALUE";
    } else {
      std::sort(valid.begin(), valid.end());
      message = "unknown " + what + " '" + o.name + "'; valid names: " + join_names(valid) + did_you_mean(o.name, valid);
    }
    diags_.error(o.source->loc(o.name_offset), message);
  }
  file_ = saved;
}

Value Elaborator::param(ParamEntry& p) {
  if (p.state == ParamEntry::State::Done) return p.value;
  if (p.state == ParamEntry::State::Failed) return {};
  if (p.state == ParamEntry::State::Evaluating) {
    diags_.error(p.file->loc(p.offset), "parameter '" + p.name + "' depends on itself");
    p.state = ParamEntry::State::Failed;
    return {};
  }
  p.state = ParamEntry::State::Evaluating;
  const SourceFile* saved = file_;
  auto saved_locals = std::move(locals_);
  locals_.clear();
  file_ = p.file;
  Value v = eval(*p.expr);
  file_ = saved;
  locals_ = std::move(saved_locals);
  if (p.state == ParamEntry::State::Failed) return {};
  if (v.kind == Value::Kind::None) {
    p.state = ParamEntry::State::Failed;
    return {};
  }
  if (!(v.is_number() || v.kind == Value::Kind::Bool || v.kind == Value::Kind::String)) {
    diags_.error(p.file->loc(p.offset), "parameter '" + p.name + "' must be a number, bool or string, not " + describe(v));
    p.state = ParamEntry::State::Failed;
    return {};
  }
  p.value = v;
  p.state = ParamEntry::State::Done;
  return v;
}

Value Elaborator::make_component(const std::string& type, const std::string& display) {
  Value v;
  v.kind = Value::Kind::Component;
  v.component = std::make_shared<Component>();
  v.component->type = type;
  v.component->display = display;
  v.component->identity = dotted(path_of(true), unique_in_frame(display));
  return v;
}

// Evaluates the attributes an override bound with a slot's type, in the override's own source (so
// errors point into the --use text), and records them on the component.
bool Elaborator::bind_slot_attrs(Component& c, const SlotEntry& slot) {
  const SourceFile* saved = file_;
  auto saved_locals = std::move(locals_);
  locals_.clear();
  file_ = slot.bound_file;
  const NodeSchema& schema = registry_.schema(c.type);
  std::vector<std::string> attr_names;
  for (const AttrSchema& a : schema.attrs) attr_names.push_back(a.name);
  bool ok = true;
  const Args args = eval_args(*slot.bound);
  for (const auto& [name, v, off] : args.named) {
    const AttrSchema* a = schema.find_attr(name);
    if (!a) {
      error(off, c.type + " has no attribute '" + name + "'; attributes: " +
                     (attr_names.empty() ? "none" : join_names(attr_names)) + did_you_mean(name, attr_names));
      ok = false;
    } else if (check_attr_type(c.type, *a, v, off)) {
      c.bound_attrs[name] = c.attrs[name] = {*to_attr(v), loc(off)};
    } else {
      ok = false;
    }
  }
  file_ = saved;
  locals_ = std::move(saved_locals);
  return ok;
}

Value Elaborator::lookup(const ast::Name& name) {
  const std::string& text = name.text;
  const size_t dot = text.find('.');
  const std::string head = text.substr(0, dot);
  auto find_var = [&](const std::string& n) -> const Value* {
    // A block sees its own parameters and locals (not its caller's), then the model's values.
    if (!locals_.empty())
      if (auto f = locals_.back().find(n); f != locals_.back().end()) return &f->second;
    if (auto f = vars_.find(n); f != vars_.end()) return &f->second;
    return nullptr;
  };
  if (const Value* v = find_var(head)) {
    if (dot == std::string::npos) return *v;
    const std::string port = text.substr(dot + 1);
    if (v->kind == Value::Kind::None) return {};  // already reported
    if (v->kind != Value::Kind::Tensor || v->tensor.node.empty()) {
      error(name.offset, "'" + head + "' is " + describe(*v) + ", it has no output named '" + port + "'");
      return {};
    }
    const auto& ports = v->tensor.ports;
    auto it = std::find(ports.begin(), ports.end(), port);
    if (it == ports.end()) {
      error(name.offset, "'" + head + "' has no output '" + port + "'; outputs: " + join_names(ports) + did_you_mean(port, ports));
      return {};
    }
    Value r = *v;
    r.tensor.ref = ir::value_name(v->tensor.node, static_cast<int>(it - ports.begin()));
    return r;
  }
  if (dot == std::string::npos) {
    if (auto p = param_index_.find(text); p != param_index_.end()) return param(params_[p->second]);
    if (auto s = slot_index_.find(text); s != slot_index_.end()) {
      const SlotEntry& slot = slots_[s->second];
      if (!registry_.contains(slot.type)) {
        // A slot bound to a block of the model (use sublayer = post_norm) is that block.
        auto b = blocks_.find(slot.type);
        if (b == blocks_.end()) return {};  // already reported
        Value v;
        v.kind = Value::Kind::Block;
        v.block = std::make_shared<BlockClosure>();
        v.block->def = b->second;
        v.block->display = text;  // node names as if the block were written under the slot's name
        return v;
      }
      Value v = make_component(slot.type, text);
      if (slot.bound && !bind_slot_attrs(*v.component, slot)) return {};
      return v;
    }
    if (auto b = blocks_.find(text); b != blocks_.end()) {
      Value v;
      v.kind = Value::Kind::Block;
      v.block = std::make_shared<BlockClosure>();
      v.block->def = b->second;
      return v;
    }
    if (text == "sqrt" || text == "min" || text == "max") {
      Value v;
      v.kind = Value::Kind::Builtin;
      v.s = text;
      return v;
    }
  }
  if (registry_.contains(text)) {
    std::string display = text;
    std::replace(display.begin(), display.end(), '.', '_');
    return make_component(text, display);
  }
  // Unknown: list what is visible.
  std::vector<std::string> visible;
  if (!locals_.empty())
    for (const auto& [n, _] : locals_.back()) visible.push_back(n);
  for (const auto& [n, _] : vars_) visible.push_back(n);
  for (const auto& [n, _] : declared_) visible.push_back(n);
  std::vector<std::string> candidates = visible;
  for (const std::string& t : registry_.type_names()) candidates.push_back(t);
  std::sort(visible.begin(), visible.end());
  std::string message = "unknown name '" + text + "'";
  if (dot != std::string::npos) message = "unknown name '" + text + "' (not a node type, nor an output of a value)";
  message += did_you_mean(text, candidates);
  error(name.offset, message);
  return {};
}

Value Elaborator::number_literal(const ast::Number& n) {
  return from_arithmetic(arithmetic::parse_number(n.text), n.offset);
}

// A number of the shared arithmetic as a Value, or nothing after reporting its error at `offset`.
Value Elaborator::from_arithmetic(const arithmetic::Result& r, int offset) {
  if (!r.value) {
    error(offset, r.error);
    return {};
  }
  return r.value->whole ? int_value(r.value->i) : float_value(r.value->f);
}

Value Elaborator::eval(const ast::Expr& e) {
  Value v = eval(e.first);
  for (const ast::Operation& op : e.rest) {
    Value rhs = eval(op.operand);
    if (v.kind == Value::Kind::None || rhs.kind == Value::Kind::None) v = {};
    else v = binary(op.op, v, rhs, op.offset);
  }
  return v;
}

Value Elaborator::eval(const ast::Operand& o) {
  struct Visitor {
    Elaborator& self;
    Value operator()(const ast::Number& n) const { return self.number_literal(n); }
    Value operator()(const ast::String& s) const {
      Value v;
      v.kind = Value::Kind::String;
      v.s = s.value;
      return v;
    }
    Value operator()(const ast::Bool& b) const {
      Value v;
      v.kind = Value::Kind::Bool;
      v.b = b.value;
      return v;
    }
    Value operator()(const ast::Name& n) const { return self.lookup(n); }
    Value operator()(const x3::forward_ast<ast::List>& l) const {
      Value v;
      v.kind = Value::Kind::List;
      for (const ast::Expr& e : l.get().items) {
        v.list.push_back(self.eval(e));
        if (v.list.back().kind == Value::Kind::None) return {};
      }
      return v;
    }
    Value operator()(const x3::forward_ast<ast::Postfix>& p) const { return self.eval_postfix(p.get()); }
    Value operator()(const x3::forward_ast<ast::Unary>& u) const {
      Value v = self.eval(u.get().operand);
      if (v.kind == Value::Kind::None) return v;
      if (v.is_number()) return self.from_arithmetic(arithmetic::negate(as_number(v)), u.get().offset);
      self.error(u.get().offset, "cannot negate " + describe(v));
      return {};
    }
    Value operator()(const x3::forward_ast<ast::Repeat>& r) const { return self.eval_repeat(r.get()); }
    Value operator()(const x3::forward_ast<ast::Expr>& e) const { return self.eval(e.get()); }
  };
  return boost::apply_visitor(Visitor{*this}, o);
}

Value Elaborator::binary(const std::string& op, const Value& a, const Value& b, int offset) {
  if (a.kind == Value::Kind::Tensor || b.kind == Value::Kind::Tensor) {
    if (op == "+" && a.kind == Value::Kind::Tensor && b.kind == Value::Kind::Tensor) return tensor_add(a, b, offset);
    error(offset, "'" + op + "' is not defined for " + describe(a) + " and " + describe(b) +
                      (op == "+" ? "" : " (tensors support only '+', a residual connection)"));
    return {};
  }
  if (!a.is_number() || !b.is_number()) {
    error(offset, "'" + op + "' needs numbers, got " + describe(a) + " and " + describe(b));
    return {};
  }
  if ((op == "div" || op == "mod") && (a.kind != Value::Kind::Int || b.kind != Value::Kind::Int)) {
    error(offset, "'" + op + "' needs integers, got " + describe(a) + " and " + describe(b));
    return {};
  }
  return from_arithmetic(arithmetic::apply(op, as_number(a), as_number(b)), offset);
}

Elaborator::Args Elaborator::eval_args(const ast::CallArgs& call) {
  Args args;
  for (const ast::Arg& a : call.args) {
    Value v = eval(a.value);
    if (a.name) args.named.emplace_back(*a.name, std::move(v), a.offset);
    else args.positional.emplace_back(std::move(v), a.value.offset);
  }
  return args;
}

Value Elaborator::eval_callee(const ast::Operand& o) {
  Value v = eval(o);
  // A called name that is a parameter but also a node type means the type: `dropout(x, p: dropout)`.
  if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Float || v.kind == Value::Kind::Bool || v.kind == Value::Kind::String)
    if (const ast::Name* n = boost::get<ast::Name>(&o); n && registry_.contains(n->text)) {
      std::string display = n->text;
      std::replace(display.begin(), display.end(), '.', '_');
      return make_component(n->text, display);
    }
  return v;
}

Value Elaborator::eval_postfix(const ast::Postfix& p) {
  Value v = p.calls.empty() ? eval(p.primary) : eval_callee(p.primary);
  for (const ast::CallArgs& c : p.calls) {
    if (v.kind == Value::Kind::None) return v;
    Args args = eval_args(c);
    v = call(v, args, p.offset);  // located at the callee: "attention(...)" points at 'a'

  }
  return v;
}

Value Elaborator::eval_repeat(const ast::Repeat& r) {
  Value count = eval(r.count);
  if (count.kind == Value::Kind::None) return {};
  if (count.kind != Value::Kind::Int) {
    error(r.count.offset, "repeat count must be an integer, got " + describe(count));
    return {};
  }
  if (count.i < 0 || count.i > kMaxRepeat) {
    error(r.count.offset, "repeat count " + std::to_string(count.i) + " is outside [0, " + std::to_string(kMaxRepeat) + "]");
    return {};
  }
  const ast::Postfix& body = r.body;
  if (body.calls.empty()) {
    error(body.offset, "repeat needs a call, such as repeat(6) layer(x)");
    return {};
  }
  Value callee = eval_callee(body.primary);
  for (size_t i = 0; i + 1 < body.calls.size() && callee.kind != Value::Kind::None; ++i)
    callee = call(callee, eval_args(body.calls[i]), body.offset);
  if (callee.kind == Value::Kind::None) return {};
  if (callee.kind != Value::Kind::Block && callee.kind != Value::Kind::Component) {
    error(body.offset, "repeat needs a block or a component to apply, got " + describe(callee));
    return {};
  }
  const ast::CallArgs& last = body.calls.back();
  Args args = eval_args(last);
  if (args.positional.empty() || args.positional[0].first.kind != Value::Kind::Tensor) {
    if (args.positional.empty() || args.positional[0].first.kind != Value::Kind::None)
      error(last.offset, "the first argument of a repeated call must be the tensor passed from copy to copy");
    return {};
  }
  const std::string base = callee.kind == Value::Kind::Block ? callee.block->name() : callee.component->display;
  const bool shared = r.shared.has_value();
  std::string first_copy;
  Value current = args.positional[0].first;
  for (int64_t k = 0; k < count.i; ++k) {
    std::string name = unique_in_frame(base + std::to_string(k));
    if (k == 0) first_copy = name;
    frames_.push_back({name, shared ? first_copy : name, {}});
    Value copy_callee = callee;
    if (callee.kind == Value::Kind::Component && !shared) {
      // A component repeated gets fresh weights in every copy.
      copy_callee.component = std::make_shared<Component>(*callee.component);
      copy_callee.component->applications = std::make_shared<int>(0);
      copy_callee.component->identity = dotted(path_of(true), unique_in_frame(callee.component->display));
    }
    args.positional[0].first = current;
    Value out = call(copy_callee, args, body.offset, /*repeat_copy=*/true);
    frames_.pop_back();
    if (out.kind == Value::Kind::None) return {};
    if (out.kind != Value::Kind::Tensor) {
      error(last.offset, "a repeated call must return a tensor, got " + describe(out));
      return {};
    }
    current = out;
  }
  return current;
}

Value Elaborator::call(const Value& callee, const Args& args, int offset, bool repeat_copy) {
  for (const auto& a : args.positional)
    if (a.first.kind == Value::Kind::None) return {};
  for (const auto& a : args.named)
    if (std::get<1>(a).kind == Value::Kind::None) return {};
  switch (callee.kind) {
    case Value::Kind::Builtin: return call_builtin(callee.s, args, offset);
    case Value::Kind::Component: return call_component(*callee.component, args, offset);
    case Value::Kind::Block: return call_block(*callee.block, args, offset, repeat_copy);
    case Value::Kind::None: return {};
    default: error(offset, describe(callee) + " cannot be called"); return {};
  }
}

Value Elaborator::call_builtin(const std::string& fn, const Args& args, int offset) {
  if (!args.named.empty()) {
    error(std::get<2>(args.named[0]), fn + "() takes no named arguments");
    return {};
  }
  for (const auto& [v, off] : args.positional)
    if (!v.is_number()) {
      error(off, fn + "() needs numbers, got " + describe(v));
      return {};
    }
  if (fn == "sqrt") {
    if (args.positional.size() != 1) {
      error(offset, "sqrt() takes one argument");
      return {};
    }
    const double x = args.positional[0].first.number();
    if (x < 0) {
      error(args.positional[0].second, "sqrt() of a negative number");
      return {};
    }
    return float_value(std::sqrt(x));
  }
  if (args.positional.empty()) {
    error(offset, fn + "() needs at least one argument");
    return {};
  }
  Value best = args.positional[0].first;
  bool all_int = true;
  for (const auto& [v, off] : args.positional) {
    all_int = all_int && v.kind == Value::Kind::Int;
    if (fn == "min" ? v.number() < best.number() : v.number() > best.number()) best = v;
  }
  if (!all_int && best.kind == Value::Kind::Int) best = float_value(static_cast<double>(best.i));
  return best;
}

std::optional<AttrValue> Elaborator::to_attr(const Value& v) const {
  switch (v.kind) {
    case Value::Kind::Int: return AttrValue(v.i);
    case Value::Kind::Float: return AttrValue(v.f);
    case Value::Kind::Bool: return AttrValue(v.b);
    case Value::Kind::String: return AttrValue(v.s);
    case Value::Kind::Component:
      // A slot or type name given as a value names its type and the attributes bound with the
      // slot (posenc: posenc, with --use 'posenc=posenc.t5(num_buckets: 16)'): node/attrs.h.
      if (v.component->bare) {
        Attrs bound;
        for (const auto& [name, value] : v.component->bound_attrs) bound.set(name, value.first);
        return AttrValue(format_type_call(v.component->type, bound));
      }
      return std::nullopt;
    default: return std::nullopt;
  }
}

bool Elaborator::check_attr_type(const std::string& type, const AttrSchema& schema, const Value& v, int offset) {
  std::optional<AttrValue> a = to_attr(v);
  if (!a) {
    error(offset, type + ": attribute '" + schema.name + "' must be " + to_string(schema.type) + ", got " + describe(v));
    return false;
  }
  const AttrType got = type_of(*a);
  if (got == schema.type || (schema.type == AttrType::Float && got == AttrType::Int)) return true;
  std::string hint;
  if (schema.type == AttrType::Int && got == AttrType::Float) hint = " (use 'div' for integer division)";
  error(offset, type + ": attribute '" + schema.name + "' must be " + to_string(schema.type) + ", got " + describe(v) + hint);
  return false;
}

Value Elaborator::call_component(const Component& original, const Args& args, int offset) {
  Component c = original;
  c.bare = false;
  const NodeSchema& schema = registry_.schema(c.type);
  std::vector<std::string> port_names, attr_names;
  for (const PortSchema& p : schema.inputs) port_names.push_back(p.name);
  for (const AttrSchema& a : schema.attrs) attr_names.push_back(a.name);
  bool ok = true;
  for (const auto& [name, v, off] : args.named) {
    if (name == "share") {
      if (v.kind != Value::Kind::Component) {
        error(off, "share: needs a component whose weights to share, got " + describe(v));
        ok = false;
      } else {
        c.identity = v.component->identity;
        c.applications = v.component->applications;
      }
      continue;
    }
    if (std::find(port_names.begin(), port_names.end(), name) != port_names.end()) {
      if (v.kind != Value::Kind::Tensor) {
        error(off, c.type + ": input '" + name + "' needs a tensor, got " + describe(v));
        ok = false;
      } else if (c.inputs.count(name)) {
        error(off, c.type + ": input '" + name + "' is already connected");
        ok = false;
      } else {
        c.inputs[name] = v.tensor.ref;
      }
    } else if (const AttrSchema* a = schema.find_attr(name)) {
      if (check_attr_type(c.type, *a, v, off)) c.attrs[name] = {*to_attr(v), loc(off)};
      else ok = false;
    } else {
      std::vector<std::string> valid = port_names;
      valid.insert(valid.end(), attr_names.begin(), attr_names.end());
      error(off, c.type + " has no input or attribute '" + name + "'; inputs: " + join_names(port_names) +
                     "; attributes: " + (attr_names.empty() ? "none" : join_names(attr_names)) + did_you_mean(name, valid));
      ok = false;
    }
  }
  size_t next_attr = 0;
  for (const auto& [v, off] : args.positional) {
    if (v.kind == Value::Kind::Tensor) {
      auto port = std::find_if(schema.inputs.begin(), schema.inputs.end(),
                               [&](const PortSchema& p) { return !c.inputs.count(p.name); });
      if (port == schema.inputs.end()) {
        error(off, c.type + " takes " + std::to_string(schema.inputs.size()) + " input(s) (" + join_names(port_names) +
                       "), all already connected");
        ok = false;
      } else {
        c.inputs[port->name] = v.tensor.ref;
      }
      continue;
    }
    while (next_attr < schema.attrs.size() && c.attrs.count(schema.attrs[next_attr].name)) ++next_attr;
    if (next_attr == schema.attrs.size()) {
      error(off, c.type + ": too many positional attributes (attributes: " + (attr_names.empty() ? "none" : join_names(attr_names)) + ")");
      ok = false;
      continue;
    }
    const AttrSchema& a = schema.attrs[next_attr];
    if (check_attr_type(c.type, a, v, off)) c.attrs[a.name] = {*to_attr(v), loc(off)};
    else ok = false;
  }
  if (!ok) return {};
  for (const auto& [name, bound] : c.bound_attrs) c.attrs[name] = bound;
  bool complete = true;
  for (const PortSchema& p : schema.inputs)
    if (!p.optional && !c.inputs.count(p.name)) complete = false;
  if (!complete) {
    Value v;
    v.kind = Value::Kind::Component;
    v.component = std::make_shared<Component>(std::move(c));
    return v;
  }
  return apply(std::move(c), offset);
}

Value Elaborator::apply(Component c, int offset) {
  if (graph_.nodes_size() >= kMaxNodes) {
    error(offset, "the model has more than " + std::to_string(kMaxNodes) + " nodes");
    throw Abort{};
  }
  const NodeSchema& schema = registry_.schema(c.type);
  Attrs attrs;
  for (const auto& [name, value] : c.attrs) attrs.set(name, value.first);
  try {
    registry_.resolve_attrs(c.type, attrs);
  } catch (const RegistryError& e) {
    error(offset, e.what());
    return {};
  }
  const std::string path = path_of(false);
  const size_t last_dot = c.identity.rfind('.');
  const std::string identity_parent = last_dot == std::string::npos ? "" : c.identity.substr(0, last_dot);
  std::string name;
  if (*c.applications == 0 && identity_parent == path && path_of(true) == path) name = c.identity;  // created here
  else name = dotted(path, unique_in_frame(c.display));
  ++*c.applications;
  ir::NodeDef* node = graph_.add_nodes();
  node->set_name(name);
  node->set_type(c.type);
  ir::set_attrs(*node, attrs);
  for (const PortSchema& p : schema.inputs) {
    auto it = c.inputs.find(p.name);
    node->add_inputs(it == c.inputs.end() ? "" : it->second);
  }
  *node->mutable_loc() = loc(offset);
  identity_nodes_[c.identity].push_back(graph_.nodes_size() - 1);
  Value v;
  v.kind = Value::Kind::Tensor;
  v.tensor.ref = name;
  v.tensor.node = name;
  for (const PortSchema& p : schema.outputs) v.tensor.ports.push_back(p.name);
  return v;
}

Value Elaborator::tensor_add(const Value& a, const Value& b, int offset) {
  if (!registry_.contains("add")) {
    error(offset, "adding tensors needs the node type 'add' (plugins/basic), which is not loaded");
    return {};
  }
  Value c = make_component("add", "add");
  Args args;
  args.positional = {{a, offset}, {b, offset}};
  return call_component(*c.component, args, offset);
}

Value Elaborator::call_block(const BlockClosure& original, const Args& args, int offset, bool repeat_copy) {
  BlockClosure b = original;
  const ast::BlockDecl& decl = *b.def.decl;
  bool ok = true;
  for (const auto& [name, v, off] : args.named) {
    if (std::find(decl.params.begin(), decl.params.end(), name) == decl.params.end()) {
      error(off, "block '" + decl.name + "' has no parameter '" + name + "'; parameters: " + join_names(decl.params) +
                     did_you_mean(name, decl.params));
      ok = false;
    } else if (b.bound.count(name)) {
      error(off, "block '" + decl.name + "': parameter '" + name + "' is already given");
      ok = false;
    } else {
      b.bound[name] = v;
    }
  }
  for (const auto& [v, off] : args.positional) {
    auto p = std::find_if(decl.params.begin(), decl.params.end(), [&](const std::string& n) { return !b.bound.count(n); });
    if (p == decl.params.end()) {
      error(off, "too many arguments to block '" + decl.name + "' (parameters: " + join_names(decl.params) + ")");
      ok = false;
      break;
    }
    b.bound[*p] = v;
  }
  if (!ok) return {};
  if (b.bound.size() < decl.params.size()) {
    Value v;
    v.kind = Value::Kind::Block;
    v.block = std::make_shared<BlockClosure>(std::move(b));
    return v;
  }
  if (block_depth_ >= kMaxBlockDepth) {
    error(offset, "blocks nested deeper than " + std::to_string(kMaxBlockDepth) + " levels (is block '" + decl.name +
                      "' recursive?)");
    throw Abort{};
  }
  ++block_depth_;
  if (!repeat_copy) push_frame(b.name());
  const SourceFile* saved = file_;
  file_ = b.def.file;
  locals_.push_back(b.bound);
  Value result;
  bool failed = false;
  for (const ast::Assign& a : decl.body) {
    Value v = eval(a.value);
    if (v.kind == Value::Kind::None) failed = true;
    locals_.back()[a.name] = v;
  }
  if (!failed) result = eval(decl.result);
  locals_.pop_back();
  file_ = saved;
  if (!repeat_copy) frames_.pop_back();
  --block_depth_;
  return result;
}

// The model the options name (the file's first model by default), or nullptr after an error.
const ast::Model* Elaborator::select_model(const ElaborateOptions& options) {
  const LoadedFile& main = program_.main();
  if (main.ast.models.empty()) {
    diags_.error(main.source->loc(-1), "no model in this file");
    return nullptr;
  }
  if (options.model.empty()) return &main.ast.models.front();
  std::vector<std::string> names;
  for (const ast::Model& m : main.ast.models) {
    names.push_back(m.name);
    if (m.name == options.model) return &m;
  }
  diags_.error(main.source->loc(-1), "no model named '" + options.model + "'; models: " + join_names(names) +
                                         did_you_mean(options.model, names));
  return nullptr;
}

// Globals: every file's top-level declarations (imports first), then the model's own.
void Elaborator::collect_declarations(const ast::Model& model) {
  for (const LoadedFile& f : program_.files) {
    for (const auto& d : f.ast.params) collect(d, *f.source);
    for (const auto& d : f.ast.uses) collect(d, *f.source);
    for (const auto& d : f.ast.blocks) collect(d, *f.source);
  }
  const SourceFile& main = *program_.main().source;
  for (const ast::ModelItem& item : model.items) {
    if (auto* d = boost::get<ast::ParamDecl>(&item)) collect(*d, main);
    if (auto* d = boost::get<ast::UseDecl>(&item)) collect(*d, main);
    if (auto* d = boost::get<ast::BlockDecl>(&item)) collect(*d, main);
  }
}

void Elaborator::elaborate_input(const ast::InputDecl& in) {
  if (vars_.count(in.name) || declared_.count(in.name)) {
    error(in.offset, "redefinition of '" + in.name + "'");
    return;
  }
  ir::GraphInput* gi = graph_.add_inputs();
  gi->set_name(in.name);
  if (in.kind != "ids" && in.kind != "mask" && in.kind != "real")
    error(in.offset, "input kind must be ids, mask or real, not '" + in.kind + "'");
  gi->set_kind(in.kind);
  if (in.bound) {
    Value b = eval(*in.bound);
    if (b.kind == Value::Kind::Int && b.i > 0) gi->set_bound(b.i);
    else if (b.kind != Value::Kind::None) error(in.bound->offset, "an input's bound must be a positive integer, got " + describe(b));
  } else if (in.kind == "ids") {
    error(in.offset, "ids input '" + in.name + "' needs its bound: ids(vocab)");
  }
  for (const ast::Expr& d : in.dims) {
    // A bare name that is not a parameter is a symbolic dimension.
    const ast::Name* bare = nullptr;
    if (d.rest.empty())
      if (auto* fwd = boost::get<x3::forward_ast<ast::Expr>>(&d.first); fwd && fwd->get().rest.empty())
        if (auto* pf = boost::get<x3::forward_ast<ast::Postfix>>(&fwd->get().first); pf && pf->get().calls.empty())
          bare = boost::get<ast::Name>(&pf->get().primary);
    if (bare && !param_index_.count(bare->text)) {
      gi->add_shape()->set_symbol(bare->text);
      continue;
    }
    Value v = eval(d);
    if (v.kind == Value::Kind::Int && v.i >= 0) gi->add_shape()->set_size(v.i);
    else if (v.kind != Value::Kind::None) error(d.offset, "a dimension must be a non-negative integer or a symbol, got " + describe(v));
  }
  *gi->mutable_loc() = loc(in.offset);
  Value v;
  v.kind = Value::Kind::Tensor;
  v.tensor.ref = in.name;
  vars_[in.name] = v;
}

void Elaborator::elaborate_assign(const ast::Assign& a) {
  if (declared_.count(a.name)) {
    error(a.offset, "'" + a.name + "' is a parameter, slot or block and cannot be assigned");
    return;
  }
  if (auto it = vars_.find(a.name); it != vars_.end() && it->second.kind == Value::Kind::Tensor &&
                                    it->second.tensor.node.empty() && it->second.tensor.ref == a.name) {
    error(a.offset, "'" + a.name + "' is a graph input and cannot be assigned");
    return;
  }
  push_frame(a.name);
  Value v = eval(a.value);
  frames_.pop_back();
  vars_[a.name] = v;
}

void Elaborator::elaborate_output(const ast::OutputDecl& o, std::set<std::string>& outputs) {
  Value v = eval(o.value);
  if (v.kind == Value::Kind::None) return;
  if (v.kind != Value::Kind::Tensor) {
    error(o.value.offset, "output '" + o.name + "' must be a tensor, got " + describe(v));
    return;
  }
  if (!outputs.insert(o.name).second) {
    error(o.offset, "duplicate output '" + o.name + "'");
    return;
  }
  ir::GraphOutput* go = graph_.add_outputs();
  go->set_name(o.name);
  go->set_value(v.tensor.ref);
  *go->mutable_loc() = loc(o.offset);
}

// Weight sharing: every node of an identity applied more than once gets that identity as scope.
void Elaborator::share_repeated_identities() {
  for (const auto& [identity, nodes] : identity_nodes_)
    if (nodes.size() > 1)
      for (int n : nodes) graph_.mutable_nodes(n)->set_param_scope(identity);
}

// Bounded sizes: every graph input, parameter and output at the representative dimensions. An
// output over the bound is reported only where it starts (no input of its node is over the bound:
// downstream, the excess only follows), and after kMaxSizeErrors reports the rest are counted in
// one line, so that one mistyped size does not bury its own error under hundreds.
void Elaborator::check_sizes(const ir::InferredGraph& shapes) {
  constexpr int kMaxSizeErrors = 10;
  auto too_big = [](const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) {
      if (d < 0) return true;
      if (d != 0 && n > kMaxTensorElements / d) return true;
      n *= d;
    }
    return n > kMaxTensorElements;
  };
  auto value_too_big = [&](const std::string& value) {
    auto it = shapes.value_shapes.find(value);
    return it != shapes.value_shapes.end() && too_big(it->second);
  };
  const std::string bound = " is larger than " + std::to_string(kMaxTensorElements) + " elements";
  int reported = 0, more = 0;
  ir::SourceLoc first_unreported;
  auto report = [&](const ir::SourceLoc& where, const std::string& message) {
    if (reported < kMaxSizeErrors) {
      diags_.error(where, message);
      ++reported;
    } else if (more++ == 0) {
      first_unreported = where;
    }
  };
  for (const ir::GraphInput& input : graph_.inputs()) {
    auto it = shapes.value_shapes.find(input.name());
    if (it != shapes.value_shapes.end() && too_big(it->second))
      report(input.loc(), "graph input '" + input.name() + "' " + attnlab::to_string(it->second) + bound);
  }
  for (int i = 0; i < graph_.nodes_size(); ++i) {
    const ir::NodeDef& node = graph_.nodes(i);
    const NodeShapes& ns = shapes.node_shapes[i];
    const std::string what = "node '" + node.name() + "' (" + node.type() + "): ";
    for (const ParamSpec& p : ns.params)
      if (too_big(p.shape)) report(node.loc(), what + "parameter '" + p.name + "' " + attnlab::to_string(p.shape) + bound);
    if (std::any_of(node.inputs().begin(), node.inputs().end(), value_too_big)) continue;
    for (size_t k = 0; k < ns.outputs.size(); ++k)
      if (too_big(ns.outputs[k])) report(node.loc(), what + "output " + attnlab::to_string(ns.outputs[k]) + bound);
  }
  if (more > 0)
    diags_.error(first_unreported, "and " + std::to_string(more) + " more parameters and outputs are larger than " +
                                       std::to_string(kMaxTensorElements) + " elements (the first " + std::to_string(kMaxSizeErrors) +
                                       " are above)");
}

ElaboratedModel Elaborator::run(const ElaborateOptions& options) {
  const ast::Model* model = select_model(options);
  if (!model) return {};
  collect_declarations(*model);
  check_slot_bindings();
  for (const Override& o : options.overrides) apply_override(o);
  for (ParamEntry& p : params_) param(p);
  if (!diags_.empty()) return {};  // inputs, blocks and nodes would only repeat the errors

  ElaboratedModel result;
  result.name = model->name;
  graph_.set_name(model->name);
  file_ = program_.main().source.get();
  *graph_.mutable_loc() = loc(model->offset);
  std::set<std::string> outputs;
  try {
    for (const ast::ModelItem& item : model->items) {
      if (auto* in = boost::get<ast::InputDecl>(&item)) elaborate_input(*in);
      else if (auto* a = boost::get<ast::Assign>(&item)) elaborate_assign(*a);
      else if (auto* o = boost::get<ast::OutputDecl>(&item)) elaborate_output(*o, outputs);
    }
  } catch (const Abort&) {
    return {};
  }
  share_repeated_identities();
  if (graph_.outputs_size() == 0 && diags_.empty())
    diags_.error(program_.main().source->loc(model->offset), "model '" + model->name + "' has no outputs");
  if (!diags_.empty()) return {};

  try {
    result.shapes = ir::validate_and_infer(graph_, registry_, options.dims);
  } catch (const ir::GraphError& e) {
    for (const ir::Diagnostic& d : e.diagnostics) diags_.error(d.loc, d.message);
    return {};
  }
  check_sizes(result.shapes);
  if (!diags_.empty()) return {};
  for (const ParamEntry& p : params_) {
    if (auto a = to_attr(p.value)) result.params.emplace_back(p.name, *a);
  }
  for (const SlotEntry& s : slots_) result.slots.emplace_back(s.name, s.type);
  for (const auto& [name, unused] : blocks_) result.blocks.push_back(name);
  result.graph = std::move(graph_);
  return result;
}

}  // namespace

ElaboratedModel elaborate(const Program& program, const Registry& registry, const ElaborateOptions& options) {
  Diagnostics diags = program.diagnostics;
  ElaboratedModel result;
  if (diags.empty()) {
    for (const Override& o : options.overrides) diags.add_source(o.source);
    Elaborator elaborator(program, registry, diags);
    result = elaborator.run(options);
  }
  if (!diags.empty()) throw DslError(diags.format(), diags.items());
  return result;
}

int64_t ElaboratedModel::integer_param(const std::string& name, int64_t fallback) const {
  for (const auto& [key, value] : params)
    if (key == name && std::holds_alternative<int64_t>(value)) return std::get<int64_t>(value);
  return fallback;
}

ElaboratedModel elaborate_file(const std::filesystem::path& path, const Registry& registry,
                               const ElaborateOptions& options) {
  std::unique_ptr<Program> program;
  try {
    program = load_program(path);
  } catch (const std::runtime_error& e) {
    ir::SourceLoc loc;
    throw DslError(std::string("error: ") + e.what() + "\n", {{loc, e.what()}});
  }
  return elaborate(*program, registry, options);
}

}  // namespace attnlab::dsl
