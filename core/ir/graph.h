// core/ir/graph.h — the graph IR (core/proto/attnlab/ir/graph.proto) as the rest of attnlab uses it: reading
// and writing, printing, and the validation and shape-inference pass.
//
// Contract:
// - validate_and_infer() checks a GraphDef against a registry and concrete sizes for the symbolic
//   dimensions of its inputs: unique node names, known types, attributes valid for the schema,
//   every input value defined, no cycles, input counts matching the schema, shapes inferred node
//   by node with each node's infer(). It collects every error it can (it does not stop at the
//   first) and throws GraphError carrying them all. Each diagnostic names the node, its type and
//   its source location.
// - It is pure: the graph and registry are not changed. The result gives a topological order and
//   the shape of every value, which the planner reuses.
// - Diagnostics print as "file:line:col: error: message"; a location without a file prints as
//   "<graph>" and one without a line leaves out ":line:col". Messages about a node start with
//   "node 'NAME' (TYPE): ". A node downstream of a node with an error is not inferred and not
//   reported again.
// - An unconnected optional input reaches infer() as an empty Shape and forward()/backward() as an
//   absent view.
// - read_graph() and write_graph() report a missing, unreadable or unparsable file as a GraphError
//   whose diagnostic carries the file's path (and line:col for text-format parse errors).
#pragma once

#include "attnlab/ir/graph.pb.h"
#include "node/registry.h"

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::ir {

struct Diagnostic {
  SourceLoc loc;        // file may be empty when the graph did not come from a spec
  std::string message;  // "node 'enc.0.attn' (attention.scaled_dot): heads=7 does not divide d_model=512"
};

// "file:line:col" ("<graph>" when the file is empty; ":line:col" left out when the line is 0).
std::string format_location(const SourceLoc& loc);
// "file:line:col: error: message" lines, one per diagnostic.
std::string format(const std::vector<Diagnostic>& diagnostics);

struct GraphError : std::runtime_error {
  explicit GraphError(std::vector<Diagnostic> diagnostics);
  std::vector<Diagnostic> diagnostics;
};

// A value reference "NAME" or "NAME:K".
struct ValueRef {
  std::string name;
  int port = 0;
};
ValueRef parse_value(const std::string& value);
std::string value_name(const std::string& node, int port);  // "NAME" for port 0, else "NAME:K"

Attrs to_attrs(const NodeDef& node);
void set_attrs(NodeDef& node, const Attrs& attrs);
attnlab::AttrValue from_proto(const ir::AttrValue& value);  // throws std::invalid_argument when unset
ir::AttrValue to_proto(const attnlab::AttrValue& value);

// Binary protobuf, or text format when the path ends in .pbtxt.
GraphDef read_graph(const std::filesystem::path& path);
void write_graph(const GraphDef& graph, const std::filesystem::path& path);
std::string to_pbtxt(const GraphDef& graph);
std::string to_dot(const GraphDef& graph);
std::string to_text(const GraphDef& graph);  // one line a node: name = type(attrs)(inputs)  @ file:line:col

// Concrete sizes for symbolic input dimensions: {"batch": 2, "src_len": 7, ...}.
using DimBindings = std::map<std::string, int64_t>;

struct InferredGraph {
  std::vector<int> order;                            // indices into graph.nodes(), topological
  std::map<std::string, Shape> value_shapes;         // every graph input and node output value
  std::vector<NodeShapes> node_shapes;               // by node index
};

InferredGraph validate_and_infer(const GraphDef& graph, const Registry& registry, const DimBindings& dims);

// Shared by validate_and_infer and exec::Plan, which infers again at a plan's own sizes:
// - bind_input_shape: graph input `input`'s shape with `dims` bound; each symbolic dimension
//   without a size, and each negative size, is described in `problems` (the shape is then unusable).
// - infer_node_shapes: node.infer() on `input_shapes` padded to the schema's inputs (trailing
//   optional inputs left out), its number of output shapes checked against the schema (a
//   ShapeError otherwise).
Shape bind_input_shape(const GraphInput& input, const DimBindings& dims, std::vector<std::string>& problems);
NodeShapes infer_node_shapes(const Node& node, const NodeSchema& schema, std::vector<Shape> input_shapes);

}  // namespace attnlab::ir
