// safetensors files (core/train/safetensors.h): the layout byte for byte, a round trip, and every
// error of the reader naming the file and the tensor.
#include "train/safetensors.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>

namespace attnlab::train {
namespace {

ckpt::Checkpoint two_parameters() {
  ckpt::Checkpoint c;
  c.set_spec_text("model m {}");
  c.set_tokenizer_kind("word");
  c.set_tokenizer(std::string("\0\xff tok", 6));
  c.set_step(7);
  ckpt::TensorData* a = c.add_parameters();
  a->set_name("b.table");
  for (int64_t d : {2, 3}) a->add_shape(d);
  for (int i = 0; i < 6; ++i) a->add_data(0.5f * static_cast<float>(i) - 1.0f);
  ckpt::TensorData* s = c.add_parameters();
  s->set_name("a.scale");
  s->add_data(3.25f);  // a scalar: shape []
  return c;
}

std::string message_of(const std::string& bytes) {
  try {
    decode_safetensors(bytes, "w.safetensors");
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "(no error)";
}

// The bytes of a file with `header` (JSON text) and `data`.
std::string file_of(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

TEST(Safetensors, LayoutAndRoundTrip) {
  const ckpt::Checkpoint c = two_parameters();
  const std::string bytes = encode_safetensors(c.parameters(), export_metadata(c));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["b.table"]["dtype"], "F32");
  EXPECT_EQ(header["b.table"]["shape"], nlohmann::json::array({2, 3}));
  EXPECT_EQ(header["b.table"]["data_offsets"], nlohmann::json::array({0, 24}));  // the checkpoint's order
  EXPECT_EQ(header["a.scale"]["data_offsets"], nlohmann::json::array({24, 28}));
  EXPECT_EQ(header["__metadata__"]["attnlab.spec"], "model m {}");
  EXPECT_EQ(header["__metadata__"]["attnlab.tokenizer"], base64_encode(c.tokenizer()));
  EXPECT_EQ(bytes.size(), 8 + n + 28);
  float first = 0;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  EXPECT_EQ(first, -1.0f);

  const SafetensorsFile back = decode_safetensors(bytes, "w.safetensors");
  ASSERT_EQ(back.tensors.parameters_size(), 2);
  EXPECT_EQ(back.tensors.parameters(0).name(), "b.table");  // file order
  EXPECT_EQ(back.tensors.parameters(0).shape_size(), 2);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back.tensors.parameters(0).data(i), c.parameters(0).data(i));
  EXPECT_EQ(back.tensors.parameters(1).data(0), 3.25f);
  EXPECT_EQ(back.metadata.at("attnlab.step"), "7");

  testing::TempDir dir;
  write_safetensors(dir / "m.safetensors", c);
  EXPECT_EQ(read_safetensors(dir / "m.safetensors").tensors.parameters_size(), 2);
  EXPECT_NE(std::string(message_of("")).find("w.safetensors: not a safetensors file"), std::string::npos);
}

TEST(Safetensors, Base64) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

TEST(Safetensors, EveryLayoutErrorNamesFileAndTensor) {
  const std::string four(4, '\0');
  const std::string eight(8, '\0');
  struct Case {
    std::string bytes, expected;
  };
  const std::vector<Case> cases = {
      {"abc", "w.safetensors: not a safetensors file (3 bytes"},
      {std::string("\xff\0\0\0\0\0\0\0", 8) + "{}", "header length 255 with 10 bytes"},
      {file_of("[1]", ""), "w.safetensors: the header is not a JSON object"},
      {file_of(R"({"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", four), "tensor 'x': dtype \"F16\""},
      {file_of(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four), "tensor 'x': data_offsets [0, 4] do not hold 2"},
      {file_of(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four), "tensor 'x': data_offsets end at 8, past the 4"},
      {file_of(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})", eight), "tensor 'x': shape [-1] is not a list"},
      {file_of(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight), "tensor 'x': data starts at 4, expected 0"},
      {file_of(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight), "4 bytes after the last tensor"},
      {file_of(R"({"x":{"shape":[1]}})", four), "tensor 'x': needs dtype, shape and data_offsets"},
      {file_of(R"({"__metadata__":{"k":1}})", ""), "__metadata__ 'k' is not a string"},
  };
  for (const Case& c : cases) {
    const std::string m = message_of(c.bytes);
    EXPECT_NE(m.find(c.expected), std::string::npos) << "expected '" << c.expected << "' in: " << m;
    EXPECT_EQ(m.rfind("w.safetensors: ", 0), 0u) << m;
  }
}

}  // namespace
}  // namespace attnlab::train
