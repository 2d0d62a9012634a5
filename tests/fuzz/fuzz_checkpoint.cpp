// tests/fuzz/fuzz_checkpoint.cpp — libFuzzer target: any bytes as a checkpoint file. Reading
// either succeeds or throws CheckpointError; a readable checkpoint's parameters are then loaded
// by name into tensors of their own stored shapes, and its graph bytes parsed, as translate does.
//
// Each input is read twice: as it is (the header and checksum checks), and, when it starts with
// the magic, again with its header's payload length and CRC32 made right for the bytes that follow.
// Without the second reading almost every mutation would stop at the checksum, and the protobuf
// payload and everything that reads it would be reached only by the seed files.
#include "fuzz_support.h"
#include "ir/graph.h"
#include "train/checkpoint.h"

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace {

using namespace attnlab;

void put_le(char* p, uint64_t x, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<char>((x >> (8 * i)) & 0xff);
}

// The header layout of train/checkpoint.h: magic, format version, CRC32 of the payload at bytes
// 12..15, payload length at 16..23 (little-endian).
std::string with_header_made_right(std::string bytes) {
  const size_t payload = bytes.size() - train::kCheckpointHeaderBytes;
  const uint32_t crc = static_cast<uint32_t>(
      crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data() + train::kCheckpointHeaderBytes), payload));
  put_le(bytes.data() + 12, crc, 4);
  put_le(bytes.data() + 16, payload, 8);
  return bytes;
}

void read_and_load(const std::string& bytes) {
  const auto path = fuzz::write_scratch("input.ckpt", bytes);
  ckpt::Checkpoint checkpoint;
  try {
    checkpoint = train::read_checkpoint(path);
  } catch (const train::CheckpointError&) {
    return;
  }
  // Loading into tensors shaped as stored (small ones only: the fuzzer's memory is bounded).
  std::vector<Tensor> values, grads;
  std::vector<train::ParamRef> refs;
  int64_t elements = 0;
  for (const ckpt::TensorData& t : checkpoint.parameters()) {
    Shape shape(t.shape().begin(), t.shape().end());
    int64_t n = 1;
    for (int64_t d : shape)
      if (d < 0 || __builtin_mul_overflow(n, d, &n)) return;  // read_checkpoint must have refused it
    elements += n;
    if (n > (1 << 20) || elements > (1 << 20)) return;
    values.emplace_back(shape, 0.0f);
    grads.emplace_back(shape, 0.0f);
  }
  for (size_t i = 0; i < values.size(); ++i)
    refs.push_back({checkpoint.parameters(static_cast<int>(i)).name(), values[i].view(), grads[i].view()});
  try {
    train::load_parameters(checkpoint, refs, path.string());
  } catch (const train::CheckpointError&) {
  }
  ir::GraphDef graph;
  (void)graph.ParseFromString(checkpoint.graph());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  read_and_load(bytes);
  if (size >= train::kCheckpointHeaderBytes &&
      std::memcmp(data, train::kCheckpointMagic.data(), train::kCheckpointMagic.size()) == 0)
    read_and_load(with_header_made_right(bytes));
  return 0;
}
