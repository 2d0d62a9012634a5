#include "train/safetensors.h"

#include "train/checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace attnlab::train {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;  // as the reference reader's limit

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// Float32 values as little-endian bytes (the only byte order attnlab builds for: x86-64).
static_assert(std::endian::native == std::endian::little, "safetensors stores little-endian data");

}  // namespace

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t group = 0;
    for (size_t k = 0; k < 3; ++k)
      group = (group << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out.push_back(k <= n ? kAlphabet[(group >> (18 - 6 * k)) & 63] : '=');
  }
  return out;
}

std::map<std::string, std::string> export_metadata(const ckpt::Checkpoint& c) {
  json overrides = json::array();
  for (const std::string& o : c.overrides()) overrides.push_back(o);
  json settings = json::object();
  for (const auto& [k, v] : c.settings()) settings[k] = v;
  return {{"format", "attnlab"},
          {"attnlab.spec", c.spec_text()},
          {"attnlab.experiment", c.experiment_text()},
          {"attnlab.overrides", overrides.dump()},
          {"attnlab.settings", settings.dump()},
          {"attnlab.step", std::to_string(c.step())},
          {"attnlab.tokenizer_kind", c.tokenizer_kind()},
          {"attnlab.tokenizer", base64_encode(c.tokenizer())}};
}

std::string encode_safetensors(const google::protobuf::RepeatedPtrField<ckpt::TensorData>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  // nlohmann's json object orders keys; the data order is the tensors' order, given by offsets.
  json header = json::object();
  header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const ckpt::TensorData& t : tensors) {
    const uint64_t bytes = uint64_t(t.data_size()) * sizeof(float);
    header[t.name()] = {{"dtype", "F32"}, {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
                        {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump(-1, ' ', false, json::error_handler_t::strict);
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  put_u64(out, text.size());
  out += text;
  for (const ckpt::TensorData& t : tensors)
    out.append(reinterpret_cast<const char*>(t.data().data()), size_t(t.data_size()) * sizeof(float));
  return out;
}

void write_safetensors(const fs::path& file, const ckpt::Checkpoint& checkpoint) {
  write_file_atomically(file, encode_safetensors(checkpoint.parameters(), export_metadata(checkpoint)));
}

SafetensorsFile decode_safetensors(std::string_view bytes, const std::string& source) {
  auto fail = [&](const std::string& what) -> SafetensorsError { return SafetensorsError(source + ": " + what); };
  if (bytes.size() < 8) throw fail("not a safetensors file (" + std::to_string(bytes.size()) + " bytes, shorter than its 8-byte header length)");
  uint64_t header_bytes = 0;
  for (int i = 0; i < 8; ++i) header_bytes |= uint64_t(static_cast<unsigned char>(bytes[size_t(i)])) << (8 * i);
  if (header_bytes > kMaxHeaderBytes || header_bytes > bytes.size() - 8)
    throw fail("not a safetensors file (header length " + std::to_string(header_bytes) + " with " + std::to_string(bytes.size()) +
               " bytes in the file)");
  const json header = json::parse(bytes.substr(8, header_bytes), nullptr, false);
  if (header.is_discarded() || !header.is_object()) throw fail("the header is not a JSON object");
  const std::string_view data = bytes.substr(8 + header_bytes);
  SafetensorsFile out;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw fail("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw fail("__metadata__ '" + k + "' is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throw fail(where + ": needs dtype, shape and data_offsets");
    if (entry["dtype"] != "F32") throw fail(where + ": dtype " + entry["dtype"].dump() + " (attnlab reads F32 only)");
    uint64_t numel = 1;
    std::vector<int64_t> shape;
    for (const json& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t{1} << 40))
        throw fail(where + ": shape " + entry["shape"].dump() + " is not a list of sizes");
      shape.push_back(d.get<int64_t>());
      numel *= uint64_t(shape.back());
      if (numel > (uint64_t{1} << 40)) throw fail(where + ": shape " + entry["shape"].dump() + " is too large");
    }
    const json& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw fail(where + ": data_offsets must be [begin, end]");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (end < begin || end - begin != numel * sizeof(float))
      throw fail(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] do not hold " +
                 std::to_string(numel) + " float32 values of shape " + entry["shape"].dump());
    if (end > data.size())
      throw fail(where + ": data_offsets end at " + std::to_string(end) + ", past the " + std::to_string(data.size()) + " data bytes");
    spans.push_back({begin, end, name});
  }
  // Back to back from 0 to the end of the data, as the format requires.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t at = 0;
  for (const Span& s : spans) {
    if (s.begin != at)
      throw fail("tensor '" + s.name + "': data starts at " + std::to_string(s.begin) + ", expected " + std::to_string(at) +
                 " (tensors overlap or leave a gap)");
    at = s.end;
  }
  if (at != data.size()) throw fail(std::to_string(data.size() - at) + " bytes after the last tensor");
  for (const Span& s : spans) {
    ckpt::TensorData* t = out.tensors.add_parameters();
    t->set_name(s.name);
    for (const json& d : header[s.name]["shape"]) t->add_shape(d.get<int64_t>());
    const size_t n = size_t(s.end - s.begin) / sizeof(float);
    t->mutable_data()->Resize(static_cast<int>(n), 0.0f);
    if (n) std::memcpy(t->mutable_data()->mutable_data(), data.data() + s.begin, n * sizeof(float));
  }
  return out;
}

SafetensorsFile read_safetensors(const fs::path& file) {
  std::error_code ec;
  const fs::file_status status = fs::status(file, ec);
  if (fs::is_directory(status)) throw SafetensorsError(file.string() + ": is a directory, not a safetensors file");
  // A device or a pipe has no size to check the header against, and may never end (/dev/zero).
  if (fs::exists(status) && !fs::is_regular_file(status)) throw SafetensorsError(file.string() + ": not a regular file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw SafetensorsError(file.string() + ": cannot read: " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return decode_safetensors(s.str(), file.string());
}

}  // namespace attnlab::train
