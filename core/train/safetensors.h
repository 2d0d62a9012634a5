// core/train/safetensors.h — model weights as a safetensors file, and back.
//
// Contract:
// - The file is safetensors' layout: an 8-byte little-endian header length N, N bytes of JSON
//   (padded with spaces to a multiple of 8), then the tensor bytes. The JSON maps each
//   parameter's name to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} (offsets
//   into the bytes after the header, little-endian float32, row-major, in the checkpoint's
//   parameter order, back to back), and "__metadata__" to string values.
// - Names are the checkpoint's parameter names, which are stable for a given model spec:
//   SCOPE.LOCAL, where SCOPE is the node's param_scope or its name in the elaborated graph
//   ("embed.embedding.weight", "encoder.encoder_layer0.sublayer.self_attention.attention.w_q",
//   ...; docs/tools.md). Tied parameters appear once.
// - export_metadata(checkpoint) is what an exported file carries: "format" = "attnlab",
//   "attnlab.spec" (the resolved model spec), "attnlab.experiment", "attnlab.overrides" and
//   "attnlab.settings" (JSON), "attnlab.step", "attnlab.tokenizer_kind" and "attnlab.tokenizer"
//   (the serialized tokenizer, base64).
// - read_safetensors() checks the whole layout and names the file and the tensor in every error
//   (a header longer than the file, JSON that is not an object, a dtype other than F32, offsets
//   that do not match the shape, overlap or leave gaps, bytes after the last tensor). The result
//   holds the tensors as checkpoint TensorData, so load_parameters() (checkpoint.h) matches them
//   against a model by name and shape.
#pragma once

#include "attnlab/ckpt/checkpoint.pb.h"

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::train {

struct SafetensorsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  ckpt::Checkpoint tensors;  // only `parameters` is set, in file order
};

std::map<std::string, std::string> export_metadata(const ckpt::Checkpoint& checkpoint);

// The bytes of a safetensors file holding `tensors` (name, shape, data) and `metadata`.
std::string encode_safetensors(const google::protobuf::RepeatedPtrField<ckpt::TensorData>& tensors,
                               const std::map<std::string, std::string>& metadata);
// Written atomically (write_file_atomically).
void write_safetensors(const std::filesystem::path& file, const ckpt::Checkpoint& checkpoint);

SafetensorsFile decode_safetensors(std::string_view bytes, const std::string& source);
SafetensorsFile read_safetensors(const std::filesystem::path& file);

std::string base64_encode(std::string_view bytes);

}  // namespace attnlab::train
