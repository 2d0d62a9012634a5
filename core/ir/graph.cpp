#include "ir/graph.h"

#include "ir/protobuf_log.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace attnlab::ir {

// ---- Diagnostics --------------------------------------------------------------------------------

std::string format_location(const SourceLoc& loc) {
  std::string out = loc.file().empty() ? std::string("<graph>") : loc.file();
  if (loc.line() > 0) {
    out += ':' + std::to_string(loc.line());
    if (loc.column() > 0) out += ':' + std::to_string(loc.column());
  }
  return out;
}

std::string format(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics) out += format_location(d.loc) + ": error: " + d.message + "\n";
  return out;
}

static std::string what_of(const std::vector<Diagnostic>& diagnostics) {
  std::string text = format(diagnostics);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

GraphError::GraphError(std::vector<Diagnostic> d) : std::runtime_error(what_of(d)), diagnostics(std::move(d)) {}

// ---- Values and attributes ----------------------------------------------------------------------

ValueRef parse_value(const std::string& value) {
  const size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon + 1 == value.size()) return {value, 0};
  const std::string digits = value.substr(colon + 1);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) || digits.size() > 9)
    return {value, 0};
  return {value.substr(0, colon), std::stoi(digits)};
}

std::string value_name(const std::string& node, int port) {
  return port == 0 ? node : node + ":" + std::to_string(port);
}

attnlab::AttrValue from_proto(const ir::AttrValue& value) {
  switch (value.value_case()) {
    case ir::AttrValue::kI: return value.i();
    case ir::AttrValue::kF: return value.f();
    case ir::AttrValue::kB: return value.b();
    case ir::AttrValue::kS: return value.s();
    case ir::AttrValue::VALUE_NOT_SET: break;
  }
  throw std::invalid_argument("attribute has no value");
}

ir::AttrValue to_proto(const attnlab::AttrValue& value) {
  ir::AttrValue out;
  std::visit(
      [&](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, int64_t>) out.set_i(v);
        else if constexpr (std::is_same_v<V, double>) out.set_f(v);
        else if constexpr (std::is_same_v<V, bool>) out.set_b(v);
        else out.set_s(v);
      },
      value);
  return out;
}

Attrs to_attrs(const NodeDef& node) {
  Attrs attrs;
  for (const auto& [name, value] : node.attrs()) {
    if (value.value_case() == ir::AttrValue::VALUE_NOT_SET)
      throw std::invalid_argument("attribute '" + name + "' has no value");
    attrs.set(name, from_proto(value));
  }
  return attrs;
}

void set_attrs(NodeDef& node, const Attrs& attrs) {
  node.mutable_attrs()->clear();
  for (const auto& [name, value] : attrs.values()) (*node.mutable_attrs())[name] = to_proto(value);
}

// ---- Reading and writing ------------------------------------------------------------------------

static bool is_text_path(const std::filesystem::path& path) { return path.extension() == ".pbtxt"; }

static GraphError file_error(const std::filesystem::path& path, const std::string& message, int line = 0,
                             int column = 0) {
  Diagnostic d;
  d.loc.set_file(path.string());
  d.loc.set_line(line);
  d.loc.set_column(column);
  d.message = message;
  return GraphError({d});
}

namespace {
// Keeps the first error of protobuf's text parser with its position (0-based from protobuf).
struct FirstError : google::protobuf::io::ErrorCollector {
  bool seen = false;
  int line = 0, column = 0;
  std::string message;
  void AddError(int l, google::protobuf::io::ColumnNumber c, const std::string& m) override {
    if (seen) return;
    seen = true, line = l + 1, column = c + 1, message = m;
  }
};
}  // namespace

GraphDef read_graph(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const std::string reason = std::filesystem::exists(path) ? std::strerror(errno) : "no such file";
    throw file_error(path, "cannot read graph: " + reason);
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  const std::string content = bytes.str();
  GraphDef graph;
  if (is_text_path(path)) {
    google::protobuf::TextFormat::Parser parser;
    FirstError errors;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(content, &graph))
      throw file_error(path, "not a valid graph in protobuf text format: " + errors.message, errors.line,
                       errors.column);
  } else {
    const ProtobufLogCapture log;
    if (!graph.ParseFromString(content)) {
      const std::string reason = log.reason();
      throw file_error(path, "not a valid graph in binary protobuf format (" +
                                 (reason.empty() ? std::string("text graphs must end in .pbtxt") : reason) + ")");
    }
  }
  return graph;
}

void write_graph(const GraphDef& graph, const std::filesystem::path& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw file_error(path, std::string("cannot write graph: ") + std::strerror(errno));
  if (is_text_path(path)) {
    out << to_pbtxt(graph);  // the text printer sorts map entries
  } else {
    // Deterministic: attribute maps in key order, so equal graphs give equal files.
    std::string bytes;
    {
      google::protobuf::io::StringOutputStream stream(&bytes);
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      if (!graph.SerializeToCodedStream(&coded)) throw file_error(path, "cannot serialize graph");
    }
    out << bytes;
  }
  out.flush();
  if (!out) throw file_error(path, std::string("cannot write graph: ") + std::strerror(errno));
}

std::string to_pbtxt(const GraphDef& graph) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(graph, &text);
  return text;
}

// ---- Printing -----------------------------------------------------------------------------------

static std::string dims_text(const GraphInput& input) {
  std::string out = "[";
  for (int i = 0; i < input.shape_size(); ++i) {
    const Dim& d = input.shape(i);
    out += (i ? ", " : "") + (d.dim_case() == Dim::kSymbol ? d.symbol() : std::to_string(d.size()));
  }
  return out + "]";
}

static std::string attrs_text(const NodeDef& node) {
  // Sorted by name so that the text is stable (protobuf maps have no order).
  std::map<std::string, std::string> sorted;
  for (const auto& [name, value] : node.attrs())
    sorted[name] = value.value_case() == ir::AttrValue::VALUE_NOT_SET ? "?" : attnlab::to_string(from_proto(value));
  std::string out;
  for (const auto& [name, text] : sorted) out += (out.empty() ? "" : ", ") + name + ": " + text;
  return out;
}

std::string to_text(const GraphDef& graph) {
  std::string out = "graph " + graph.name() + "\n";
  for (const GraphInput& input : graph.inputs()) {
    out += "input " + input.name() + dims_text(input);
    if (!input.kind().empty()) out += " " + input.kind();
    if (input.bound() > 0) out += " < " + std::to_string(input.bound());
    out += "\n";
  }
  for (const NodeDef& node : graph.nodes()) {
    out += node.name() + " = " + node.type() + "(" + attrs_text(node) + ")(";
    for (int i = 0; i < node.inputs_size(); ++i) out += (i ? ", " : "") + node.inputs(i);
    out += ")";
    if (!node.param_scope().empty()) out += " params " + node.param_scope();
    if (node.has_loc() && (node.loc().line() > 0 || !node.loc().file().empty()))
      out += "  @ " + format_location(node.loc());
    out += "\n";
  }
  for (const GraphOutput& output : graph.outputs()) out += "output " + output.name() + " = " + output.value() + "\n";
  return out;
}

static std::string dot_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";  // Graphviz's line break inside a label
      continue;
    }
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string to_dot(const GraphDef& graph) {
  std::string out = "digraph " + dot_quote(graph.name().empty() ? "graph" : graph.name()) + " {\n";
  out += "  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n";
  std::set<std::string> inputs;
  for (const GraphInput& input : graph.inputs()) {
    inputs.insert(input.name());
    out += "  " + dot_quote("in:" + input.name()) + " [shape=ellipse, label=" +
           dot_quote(input.name() + "\n" + dims_text(input)) + "];\n";
  }
  for (const NodeDef& node : graph.nodes())
    out += "  " + dot_quote(node.name()) + " [shape=box, label=" + dot_quote(node.name() + "\n" + node.type()) + "];\n";
  auto source_of = [&](const std::string& value) {
    const ValueRef ref = parse_value(value);
    return inputs.count(ref.name) && ref.port == 0 ? "in:" + ref.name : ref.name;
  };
  for (const NodeDef& node : graph.nodes()) {
    for (int i = 0; i < node.inputs_size(); ++i) {
      if (node.inputs(i).empty()) continue;
      const ValueRef ref = parse_value(node.inputs(i));
      out += "  " + dot_quote(source_of(node.inputs(i))) + " -> " + dot_quote(node.name());
      // (append, not const char* + std::string: GCC 12 warns falsely, -Wrestrict, on the latter.)
      if (ref.port != 0) out += " [label=" + dot_quote(std::string(":").append(std::to_string(ref.port))) + "]";
      out += ";\n";
    }
  }
  for (const GraphOutput& output : graph.outputs()) {
    out += "  " + dot_quote("out:" + output.name()) + " [shape=doublecircle, label=" + dot_quote(output.name()) + "];\n";
    out += "  " + dot_quote(source_of(output.value())) + " -> " + dot_quote("out:" + output.name()) + ";\n";
  }
  return out + "}\n";
}

// ---- Validation and shape inference -------------------------------------------------------------

namespace {

std::string node_prefix(const NodeDef& node) { return "node '" + node.name() + "' (" + node.type() + "): "; }

// Registry messages start with "TYPE: "; the node prefix already names the type.
std::string strip_type_prefix(const std::string& message, const std::string& type) {
  const std::string prefix = type + ": ";
  return message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
}

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string port_list(const std::vector<PortSchema>& ports) {
  std::vector<std::string> names;
  for (const PortSchema& p : ports) names.push_back(p.name + (p.optional ? "?" : ""));
  return join(names);
}

}  // namespace

Shape bind_input_shape(const GraphInput& input, const DimBindings& dims, std::vector<std::string>& problems) {
  Shape shape;
  for (const Dim& d : input.shape()) {
    if (d.dim_case() == Dim::kSymbol) {
      auto it = dims.find(d.symbol());
      if (it == dims.end()) problems.push_back("graph input '" + input.name() + "': dimension '" + d.symbol() + "' has no size bound");
      else shape.push_back(it->second);
    } else {
      if (d.size() < 0) problems.push_back("graph input '" + input.name() + "': negative dimension " + std::to_string(d.size()));
      shape.push_back(d.size());
    }
  }
  return shape;
}

NodeShapes infer_node_shapes(const Node& node, const NodeSchema& schema, std::vector<Shape> input_shapes) {
  input_shapes.resize(schema.inputs.size());
  NodeShapes shapes = node.infer(input_shapes);
  if (shapes.outputs.size() != schema.outputs.size())
    throw ShapeError("infer() gave " + std::to_string(shapes.outputs.size()) + " output shapes; the schema declares " +
                     std::to_string(schema.outputs.size()));
  return shapes;
}

InferredGraph validate_and_infer(const GraphDef& graph, const Registry& registry, const DimBindings& dims) {
  std::vector<Diagnostic> diagnostics;
  auto report = [&](const SourceLoc& loc, std::string message) { diagnostics.push_back({loc, std::move(message)}); };

  const int n = graph.nodes_size();
  InferredGraph result;
  result.node_shapes.resize(n);

  // Graph inputs: unique names, every symbolic dimension bound.
  std::map<std::string, int> input_index;
  std::set<std::string> failed_values;  // values whose shape is unknown because of a reported error
  for (int i = 0; i < graph.inputs_size(); ++i) {
    const GraphInput& input = graph.inputs(i);
    if (!input_index.emplace(input.name(), i).second) {
      report(input.loc(), "duplicate graph input '" + input.name() + "'");
      continue;
    }
    std::vector<std::string> problems;
    Shape shape = bind_input_shape(input, dims, problems);
    for (std::string& p : problems) report(input.loc(), std::move(p));
    if (problems.empty()) result.value_shapes[input.name()] = std::move(shape);
    else failed_values.insert(input.name());
  }

  // Node names: unique, distinct from graph inputs.
  std::map<std::string, int> node_index;
  std::vector<bool> broken(n, false);  // a structural error was reported for the node
  for (int i = 0; i < n; ++i) {
    const NodeDef& node = graph.nodes(i);
    if (node.name().empty()) {
      report(node.loc(), "a node of type '" + node.type() + "' has an empty name");
      broken[i] = true;
      continue;
    }
    if (input_index.count(node.name())) {  // references to the name keep meaning the graph input
      report(node.loc(), "node name '" + node.name() + "' is also the name of a graph input");
      broken[i] = true;
      continue;
    }
    auto [it, inserted] = node_index.emplace(node.name(), i);
    if (!inserted) {
      report(node.loc(), "duplicate node name '" + node.name() + "' (first defined at " +
                             format_location(graph.nodes(it->second).loc()) + ")");
      broken[i] = true;
    }
  }

  // Types, attributes, input wiring. preds[i]: nodes whose outputs node i reads.
  std::vector<const NodeSchema*> schemas(n, nullptr);
  std::vector<Attrs> attrs(n);
  std::vector<std::vector<int>> preds(n);
  for (int i = 0; i < n; ++i) {
    const NodeDef& node = graph.nodes(i);
    if (!registry.contains(node.type())) {
      report(node.loc(), "node '" + node.name() + "': " + registry.unknown_type_message(node.type()));
      broken[i] = true;
    } else {
      schemas[i] = &registry.schema(node.type());
      try {
        attrs[i] = registry.resolve_attrs(node.type(), to_attrs(node));
      } catch (const std::exception& e) {
        report(node.loc(), node_prefix(node) + strip_type_prefix(e.what(), node.type()));
        broken[i] = true;
      }
    }
    const NodeSchema* schema = schemas[i];
    if (schema) {
      const auto& ports = schema->inputs;
      const int given = node.inputs_size();
      int required = 0;  // inputs up to the last required one must be listed
      for (int p = 0; p < static_cast<int>(ports.size()); ++p)
        if (!ports[p].optional) required = p + 1;
      if (given > static_cast<int>(ports.size()) || given < required) {
        report(node.loc(), node_prefix(node) + "expects " + std::to_string(ports.size()) + " input" +
                               (ports.size() == 1 ? "" : "s") + " (" + port_list(ports) + "), got " +
                               std::to_string(given));
        broken[i] = true;
      }
    }
    for (int p = 0; p < node.inputs_size(); ++p) {
      const std::string& value = node.inputs(p);
      const std::string port_name =
          schema && p < static_cast<int>(schema->inputs.size()) ? schema->inputs[p].name : std::string("#").append(std::to_string(p));
      if (value.empty()) {
        if (schema && p < static_cast<int>(schema->inputs.size()) && !schema->inputs[p].optional) {
          report(node.loc(), node_prefix(node) + "input '" + port_name + "' is required but not connected");
          broken[i] = true;
        }
        continue;
      }
      const ValueRef ref = parse_value(value);
      if (auto it = node_index.find(ref.name); it != node_index.end()) {
        const int producer = it->second;
        const NodeSchema* ps = schemas[producer] ? schemas[producer]
                               : registry.contains(graph.nodes(producer).type()) ? &registry.schema(graph.nodes(producer).type())
                                                                                  : nullptr;
        if (ps && ref.port >= static_cast<int>(ps->outputs.size())) {
          report(node.loc(), node_prefix(node) + "input '" + port_name + "' reads '" + value + "', but node '" +
                                 ref.name + "' (" + ps->name + ") has " + std::to_string(ps->outputs.size()) +
                                 " output" + (ps->outputs.size() == 1 ? "" : "s"));
          broken[i] = true;
        } else {
          preds[i].push_back(producer);
        }
      } else if (input_index.count(ref.name) && ref.port == 0) {
        // a graph input
      } else {
        std::vector<std::string> known;
        for (const auto& [name, index] : input_index) known.push_back(name);
        for (const auto& [name, index] : node_index) known.push_back(name);
        std::string message = node_prefix(node) + "input '" + port_name + "' reads undefined value '" + value + "'";
        if (std::string near = nearest_match(ref.name, known); !near.empty() && ref.port == 0)
          message += "; did you mean '" + near + "'?";
        report(node.loc(), message);
        broken[i] = true;
      }
    }
  }

  // Graph outputs: unique names, defined values.
  std::set<std::string> output_names;
  for (const GraphOutput& output : graph.outputs()) {
    if (!output_names.insert(output.name()).second) report(SourceLoc(), "duplicate graph output '" + output.name() + "'");
    const ValueRef ref = parse_value(output.value());
    bool defined = input_index.count(ref.name) && ref.port == 0;
    if (auto it = node_index.find(ref.name); it != node_index.end()) {
      const NodeDef& producer = graph.nodes(it->second);
      defined = !registry.contains(producer.type()) ||
                ref.port < static_cast<int>(registry.schema(producer.type()).outputs.size());
    }
    if (!defined) report(SourceLoc(), "graph output '" + output.name() + "' exposes undefined value '" + output.value() + "'");
  }

  // Topological order (Kahn's algorithm; ties broken by graph order, so the order is stable).
  std::vector<std::vector<int>> succs(n);
  std::vector<int> pending(n, 0);
  for (int i = 0; i < n; ++i) {
    std::sort(preds[i].begin(), preds[i].end());
    preds[i].erase(std::unique(preds[i].begin(), preds[i].end()), preds[i].end());
    pending[i] = static_cast<int>(preds[i].size());
    for (int p : preds[i]) succs[p].push_back(i);
  }
  std::set<int> ready;
  for (int i = 0; i < n; ++i)
    if (pending[i] == 0) ready.insert(i);
  while (!ready.empty()) {
    const int i = *ready.begin();
    ready.erase(ready.begin());
    result.order.push_back(i);
    for (int s : succs[i])
      if (--pending[s] == 0) ready.insert(s);
  }
  if (static_cast<int>(result.order.size()) < n) {
    // Every node left has a predecessor left: walking predecessors always closes a cycle. Report
    // each cycle once, at its first node in graph order; nodes merely downstream of one are skipped.
    std::vector<bool> in_cycle(n, false);
    for (int start = 0; start < n; ++start) {
      if (pending[start] == 0 || in_cycle[start]) continue;
      std::vector<int> path;
      std::map<int, size_t> position;
      int at = start;
      while (!position.count(at)) {
        position[at] = path.size();
        path.push_back(at);
        for (int p : preds[at])
          if (pending[p] > 0) { at = p; break; }
      }
      std::vector<int> cycle(path.begin() + position[at], path.end());
      if (std::any_of(cycle.begin(), cycle.end(), [&](int c) { return in_cycle[c]; })) continue;
      for (int c : cycle) in_cycle[c] = true;
      // The walk went against the edges; print the cycle along them, from its first node.
      std::reverse(cycle.begin(), cycle.end());
      std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
      std::vector<std::string> names;
      for (int c : cycle) names.push_back(graph.nodes(c).name());
      names.push_back(graph.nodes(cycle.front()).name());
      const NodeDef& first = graph.nodes(cycle.front());
      report(first.loc(), node_prefix(first) + "is part of a cycle: " + join(names, " -> "));
    }
  }

  // Shapes, node by node in topological order. A node downstream of a failure is skipped silently.
  std::vector<bool> failed(n, false);
  for (int i = 0; i < n; ++i) failed[i] = broken[i] || pending[i] > 0;
  for (int i : result.order) {
    const NodeDef& node = graph.nodes(i);
    bool skip = failed[i];
    std::vector<Shape> input_shapes;
    for (const std::string& value : node.inputs()) {
      if (skip) break;
      if (value.empty()) {
        input_shapes.push_back({});  // an unconnected optional input
        continue;
      }
      const ValueRef ref = parse_value(value);
      if (auto it = node_index.find(ref.name); it != node_index.end() && failed[it->second]) skip = true;
      else if (failed_values.count(ref.name)) skip = true;
      else input_shapes.push_back(result.value_shapes.at(value_name(ref.name, ref.port)));
    }
    if (skip) {
      failed[i] = true;
      continue;
    }
    try {
      NodeHandle instance = registry.create(node.type(), to_attrs(node));
      NodeShapes shapes = infer_node_shapes(*instance, *schemas[i], std::move(input_shapes));
      for (size_t k = 0; k < shapes.outputs.size(); ++k)
        result.value_shapes[value_name(node.name(), static_cast<int>(k))] = shapes.outputs[k];
      result.node_shapes[i] = std::move(shapes);
    } catch (const ShapeError& e) {
      report(node.loc(), node_prefix(node) + e.what());
      failed[i] = true;
    } catch (const std::exception& e) {
      report(node.loc(), node_prefix(node) + strip_type_prefix(e.what(), node.type()));
      failed[i] = true;
    }
  }

  if (!diagnostics.empty()) throw GraphError(std::move(diagnostics));
  return result;
}

}  // namespace attnlab::ir
