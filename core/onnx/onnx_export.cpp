// core/onnx/onnx_export.cpp — see onnx_export.h.
#include "onnx/onnx_export.h"

#include "node/onnx_lowering.h"
#include "onnx/onnx.pb.h"

#include <algorithm>
#include <set>

namespace attnlab::onnx {

namespace {

// The graph under construction: ONNX's GraphProto behind the builder that lowerings see.
class ProtoBuilder final : public OnnxBuilder {
 public:
  explicit ProtoBuilder(::onnx::GraphProto& graph) : graph_(graph) {}

  // Names that lowerings must not take (the values of the attnlab graph, the exported inputs).
  void reserve(const std::string& name) { used_.insert(name); }
  void set_prefix(std::string prefix) { prefix_ = std::move(prefix); }

  std::string fresh(const std::string& hint) override {
    const std::string base = prefix_ + "/" + hint;
    std::string name = base;
    for (int k = 1; used_.count(name); ++k) name = base + "_" + std::to_string(k);
    used_.insert(name);
    return name;
  }

  void add_node(const std::string& op_type, const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
                const std::vector<OnnxAttr>& attrs) override {
    ::onnx::NodeProto& node = *graph_.add_node();
    node.set_op_type(op_type);
    node.set_name(prefix_ + "/" + op_type + "_" + std::to_string(graph_.node_size()));
    for (const std::string& in : inputs) node.add_input(in);
    for (const std::string& out : outputs) {
      node.add_output(out);
      produced_.insert(out);
      used_.insert(out);
    }
    for (const OnnxAttr& attr : attrs) set_attribute(*node.add_attribute(), attr);
  }

  std::string add_float_constant(const std::string& hint, const Shape& shape, std::span<const float> values) override {
    std::string name = fresh(hint);
    add_float_initializer(name, shape, values);
    return name;
  }

  std::string add_int64_constant(const std::string& hint, const Shape& shape, std::span<const int64_t> values) override {
    std::string name = fresh(hint);
    ::onnx::TensorProto& t = *graph_.add_initializer();
    t.set_name(name);
    t.set_data_type(::onnx::TensorProto::INT64);
    for (int64_t d : shape) t.add_dims(d);
    for (int64_t v : values) t.add_int64_data(v);
    produced_.insert(name);
    return name;
  }

  void add_float_initializer(const std::string& name, const Shape& shape, std::span<const float> values) {
    ::onnx::TensorProto& t = *graph_.add_initializer();
    t.set_name(name);
    t.set_data_type(::onnx::TensorProto::FLOAT);
    for (int64_t d : shape) t.add_dims(d);
    t.set_raw_data(values.data(), values.size() * sizeof(float));  // little-endian, as ONNX requires
    produced_.insert(name);
    used_.insert(name);
  }

  void mark_produced(const std::string& name) { produced_.insert(name); }
  bool produced(const std::string& name) const { return produced_.count(name) != 0; }

 private:
  static void set_attribute(::onnx::AttributeProto& a, const OnnxAttr& attr) {
    a.set_name(attr.name);
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, int64_t>) {
            a.set_type(::onnx::AttributeProto::INT);
            a.set_i(v);
          } else if constexpr (std::is_same_v<V, float>) {
            a.set_type(::onnx::AttributeProto::FLOAT);
            a.set_f(v);
          } else if constexpr (std::is_same_v<V, std::string>) {
            a.set_type(::onnx::AttributeProto::STRING);
            a.set_s(v);
          } else if constexpr (std::is_same_v<V, std::vector<int64_t>>) {
            a.set_type(::onnx::AttributeProto::INTS);
            for (int64_t x : v) a.add_ints(x);
          } else {
            a.set_type(::onnx::AttributeProto::FLOATS);
            for (float x : v) a.add_floats(x);
          }
        },
        attr.value);
  }

  ::onnx::GraphProto& graph_;
  std::string prefix_ = "graph";
  std::set<std::string> used_;
  std::set<std::string> produced_;
};

// Every value's shape, with sizes that depend on the symbolic dimensions coded as node/onnx_lowering.h
// says: infer() runs at two sets of representative sizes, and a size that differs is dynamic.
struct SymbolicShapes {
  std::vector<std::string> symbols;        // in order of first appearance among the graph inputs
  std::map<std::string, Shape> values;     // every graph input and node output
};

ir::DimBindings representative(const std::vector<std::string>& symbols, int64_t first, int64_t step) {
  ir::DimBindings dims;
  for (size_t k = 0; k < symbols.size(); ++k) dims[symbols[k]] = first + step * static_cast<int64_t>(k);
  return dims;
}

std::map<std::string, Shape> infer_at(const exec::Model& model, const ir::DimBindings& dims) {
  const ir::GraphDef& graph = model.graph();
  std::map<std::string, Shape> shapes;
  std::vector<std::string> problems;
  for (const ir::GraphInput& input : graph.inputs()) shapes[input.name()] = ir::bind_input_shape(input, dims, problems);
  if (!problems.empty()) throw ExportError("the model's inputs: " + problems.front());
  for (int index : model.inferred().order) {
    const ir::NodeDef& def = graph.nodes(index);
    std::vector<Shape> in;
    for (const std::string& value : def.inputs()) in.push_back(value.empty() ? Shape{} : shapes.at(value));
    NodeShapes out;
    try {
      out = ir::infer_node_shapes(model.node(index), model.schema(index), std::move(in));
    } catch (const std::exception& e) {
      throw ExportError(ir::format_location(def.loc()) + ": error: node '" + def.name() + "' (" + def.type() +
                        "): its shapes at the representative sizes used to find the dynamic axes: " + e.what());
    }
    for (size_t k = 0; k < out.outputs.size(); ++k) shapes[ir::value_name(def.name(), static_cast<int>(k))] = out.outputs[k];
  }
  return shapes;
}

SymbolicShapes symbolic_shapes(const exec::Model& model) {
  SymbolicShapes s;
  for (const ir::GraphInput& input : model.graph().inputs())
    for (const ir::Dim& dim : input.shape())
      if (!dim.symbol().empty() && std::find(s.symbols.begin(), s.symbols.end(), dim.symbol()) == s.symbols.end())
        s.symbols.push_back(dim.symbol());
  // Distinct sizes within each set, so that a dynamic size can be traced to its symbol.
  const ir::DimBindings a = representative(s.symbols, 3, 1), b = representative(s.symbols, 5, 2);
  const std::map<std::string, Shape> at_a = infer_at(model, a), at_b = infer_at(model, b);
  for (const auto& [name, shape_a] : at_a) {
    const Shape& shape_b = at_b.at(name);
    Shape coded = shape_a;
    for (size_t d = 0; d < coded.size(); ++d) {
      if (d >= shape_b.size() || shape_a[d] == shape_b[d]) continue;
      coded[d] = kDynamicDim;
      for (size_t k = 0; k < s.symbols.size(); ++k)
        if (shape_a[d] == a.at(s.symbols[k]) && shape_b[d] == b.at(s.symbols[k])) coded[d] = -1 - static_cast<int64_t>(k);
    }
    s.values[name] = coded;
  }
  return s;
}

void set_value_info(::onnx::ValueInfoProto& info, const std::string& name, ::onnx::TensorProto::DataType type,
                    const Shape& shape, const std::vector<std::string>& symbols) {
  info.set_name(name);
  ::onnx::TypeProto::Tensor& tensor = *info.mutable_type()->mutable_tensor_type();
  tensor.set_elem_type(type);
  ::onnx::TensorShapeProto& s = *tensor.mutable_shape();
  for (int64_t d : shape) {
    ::onnx::TensorShapeProto::Dimension& dim = *s.add_dim();
    if (d >= 0) dim.set_dim_value(d);
    else if (d != kDynamicDim) dim.set_dim_param(symbols.at(static_cast<size_t>(-1 - d)));
  }
}

std::string node_label(const ir::NodeDef& def) {
  return ir::format_location(def.loc()) + ": error: node '" + def.name() + "' (" + def.type() + ")";
}

}  // namespace

std::vector<GraphSelection> task_graphs(const task::Task& task) {
  if (&task == &task::translation()) {
    const task::TranslationTask& t = task::translation();
    return {{"model", "teacher-forced logits: src, tgt_in -> logits", {t.src, t.tgt_in}, {t.logits}},
            {"encoder", "the encoder: src -> memory", {t.src}, {t.memory}},
            {"decoder", "the decoder over a target prefix: src (for its padding mask), memory, tgt_in -> logits",
             {t.src, t.memory, t.tgt_in}, {t.logits}}};
  }
  if (&task == &task::language_model()) {
    const task::LanguageModelTask& t = task::language_model();
    return {{"model", "next-token logits: input_ids -> logits", {t.input_ids}, {t.logits}}};
  }
  throw ExportError("the " + task.name() + " task has no ONNX export (ONNX export knows the " + task::translation().name() +
                    " and " + task::language_model().name() + " tasks)");
}

std::string to_onnx(const exec::Model& model, const GraphSelection& selection, const std::map<std::string, std::string>& metadata) {
  const ir::GraphDef& graph = model.graph();
  std::map<std::string, std::string> output_value;  // graph output name -> value
  for (const ir::GraphOutput& out : graph.outputs()) output_value[out.name()] = out.value();
  std::map<std::string, const ir::GraphInput*> graph_input;
  for (const ir::GraphInput& in : graph.inputs()) graph_input[in.name()] = &in;
  std::map<std::string, int> producer;  // value -> node index
  for (int i = 0; i < graph.nodes_size(); ++i)
    for (size_t k = 0; k < model.schema(i).outputs.size(); ++k)
      producer[ir::value_name(graph.nodes(i).name(), static_cast<int>(k))] = i;

  const SymbolicShapes shapes = symbolic_shapes(model);

  ::onnx::ModelProto proto;
  proto.set_ir_version(8);
  proto.set_producer_name("attnlab");
  proto.set_model_version(1);
  ::onnx::OperatorSetIdProto& opset = *proto.add_opset_import();
  opset.set_domain("");
  opset.set_version(kOnnxOpset);
  for (const auto& [key, value] : metadata) {
    ::onnx::StringStringEntryProto& entry = *proto.add_metadata_props();
    entry.set_key(key);
    entry.set_value(value);
  }
  ::onnx::GraphProto& g = *proto.mutable_graph();
  g.set_name(graph.name() + "." + selection.name);
  g.set_doc_string(selection.doc);
  ProtoBuilder builder(g);
  for (const auto& [name, shape] : shapes.values) builder.reserve(name);
  for (const std::string& name : selection.inputs) builder.reserve(name);
  for (const std::string& name : selection.outputs) builder.reserve(name);

  // The exported inputs, and the ONNX name of every attnlab value computed so far.
  std::map<std::string, std::string> onnx_name;
  builder.set_prefix("input");
  for (const std::string& name : selection.inputs) {
    if (auto it = graph_input.find(name); it != graph_input.end()) {
      const Shape& shape = shapes.values.at(name);
      if (it->second->kind() == "ids") {  // int64 outside, float32 inside (node/onnx_lowering.h)
        set_value_info(*g.add_input(), name, ::onnx::TensorProto::INT64, shape, shapes.symbols);
        builder.mark_produced(name);
        onnx_name[name] = builder.cast(name, OnnxType::Float);
      } else {
        set_value_info(*g.add_input(), name, ::onnx::TensorProto::FLOAT, shape, shapes.symbols);
        builder.mark_produced(name);
        onnx_name[name] = name;
      }
    } else if (auto out = output_value.find(name); out != output_value.end()) {
      set_value_info(*g.add_input(), name, ::onnx::TensorProto::FLOAT, shapes.values.at(out->second), shapes.symbols);
      builder.mark_produced(name);
      onnx_name[out->second] = name;
    } else {
      throw ExportError("the " + selection.name + " graph's input '" + name + "' is neither an input nor an output of the model");
    }
  }

  // The nodes needed for the outputs, walking back from them and stopping at fed values.
  std::vector<bool> needed(graph.nodes_size(), false);
  std::vector<std::string> stack;
  for (const std::string& name : selection.outputs) {
    auto out = output_value.find(name);
    if (out == output_value.end()) throw ExportError("the model has no output '" + name + "' (the " + selection.name + " graph needs it)");
    stack.push_back(out->second);
  }
  while (!stack.empty()) {
    const std::string value = stack.back();
    stack.pop_back();
    if (value.empty() || onnx_name.count(value)) continue;
    auto p = producer.find(value);
    if (p == producer.end()) {
      throw ExportError("the " + selection.name + " graph needs the model input '" + value + "', which it does not take");
    }
    if (needed[p->second]) continue;
    needed[p->second] = true;
    for (const std::string& in : graph.nodes(p->second).inputs()) stack.push_back(in);
  }

  // Each needed node lowers itself, in topological order.
  std::set<size_t> declared_params;
  for (int index : model.inferred().order) {
    if (!needed[index]) continue;
    const ir::NodeDef& def = graph.nodes(index);
    const NodeSchema& schema = model.schema(index);
    std::vector<std::string> inputs;
    std::vector<Shape> input_shapes;
    for (const std::string& value : def.inputs()) {
      inputs.push_back(value.empty() ? std::string() : onnx_name.at(value));
      input_shapes.push_back(value.empty() ? Shape{} : shapes.values.at(value));
    }
    std::vector<std::string> params;
    for (size_t p : model.node_parameters(index)) {
      const exec::Parameter& param = model.parameters()[p];
      if (declared_params.insert(p).second)
        builder.add_float_initializer(param.name, param.value.shape(),
                                      std::span<const float>(param.value.data(), static_cast<size_t>(param.value.numel())));
      params.push_back(param.name);
    }
    std::vector<std::string> outputs;
    std::vector<Shape> output_shapes;
    for (size_t k = 0; k < schema.outputs.size(); ++k) {
      const std::string value = ir::value_name(def.name(), static_cast<int>(k));
      outputs.push_back(value);
      output_shapes.push_back(shapes.values.at(value));
    }
    builder.set_prefix(def.name());
    const OnnxLowering lowering{builder, inputs, input_shapes, params, outputs, output_shapes};
    bool lowered = false;
    try {
      lowered = model.node(index).lower_onnx(lowering);
    } catch (const std::exception& e) {
      throw ExportError(node_label(def) + ": cannot be lowered to ONNX: " + e.what());
    }
    if (!lowered)
      throw ExportError(node_label(def) + ": has no ONNX lowering (its node type does not implement Node::lower_onnx; "
                                          "see docs/plugins.md)");
    for (const std::string& out : outputs) {
      if (!builder.produced(out))
        throw ExportError(node_label(def) + ": its ONNX lowering does not produce its output '" + out + "'");
      onnx_name[out] = out;
    }
  }

  builder.set_prefix("output");
  for (const std::string& name : selection.outputs) {
    const std::string& value = output_value.at(name);
    if (onnx_name.at(value) != name) builder.add_node("Identity", {onnx_name.at(value)}, {name}, {});
    set_value_info(*g.add_output(), name, ::onnx::TensorProto::FLOAT, shapes.values.at(value), shapes.symbols);
  }
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) throw ExportError("the ONNX model could not be serialised");
  return bytes;
}

}  // namespace attnlab::onnx
