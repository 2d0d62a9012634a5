// core/onnx/onnx_export.h — a model's forward graph as an ONNX model (`attnlab export --format onnx`,
// docs/tools.md).
//
// Contract:
// - A GraphSelection names what one ONNX model computes: the values it takes (graph inputs, or graph
//   outputs fed from outside such as the encoder's `memory`) and the graph outputs it gives. Only
//   the nodes needed for the outputs from the inputs are exported (a fed value cuts off everything
//   upstream of it, as in exec::Plan).
// - task_graphs(task) is what a task exports: translation gives "model" (src, tgt_in → logits:
//   teacher forcing), "encoder" (src → memory) and "decoder" (src, memory, tgt_in → logits: decoding
//   recomputes the decoder over the prefix, one call per generated token); a language model gives
//   "model" (input_ids → logits; sampling recomputes over the prefix). A task with no ONNX graphs is
//   an ExportError naming it and the tasks that have some.
// - to_onnx(model, selection, metadata) returns a serialised onnx.ModelProto (IR version 8, opset
//   kOnnxOpset of the default domain) with dynamic batch and length axes: every graph input's
//   symbolic dimension is an ONNX dim_param of the same name (batch, src_len, ...). Id inputs are
//   int64 tensors; masks, real inputs, fed values and outputs are float32. Parameters are
//   initializers under their checkpoint names (tied parameters once). `metadata` goes to the
//   model's metadata_props.
// - Every node lowers itself (Node::lower_onnx, node/onnx_lowering.h); a node without a lowering is
//   an ExportError "FILE:LINE:COL: error: node 'NAME' (TYPE): has no ONNX lowering ...", and one whose
//   lowering throws is an ExportError with the same location and the lowering's message. The first
//   such node in topological order is reported; nothing is written by the caller on an error.
// - The lowered shapes come from infer() at two sets of representative sizes: a size that differs
//   between them is dynamic (see node/onnx_lowering.h for how lowerings see it).
#pragma once

#include "exec/model.h"
#include "task/task.h"

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::onnx {

struct ExportError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct GraphSelection {
  std::string name;                  // "model", "encoder", "decoder"
  std::string doc;                   // one line, stored as the ONNX graph's doc_string
  std::vector<std::string> inputs;   // graph input names, or graph output names fed from outside
  std::vector<std::string> outputs;  // graph output names
};

std::vector<GraphSelection> task_graphs(const task::Task& task);

std::string to_onnx(const exec::Model& model, const GraphSelection& selection,
                    const std::map<std::string, std::string>& metadata = {});

}  // namespace attnlab::onnx
