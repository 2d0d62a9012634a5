// tests/fuzz/fuzz_checkpoint.cpp — libFuzzer target: any bytes as a checkpoint file. Reading
// either succeeds or throws CheckpointError; a readable checkpoint's parameters are then loaded
// by name into tensors of their own stored shapes, and its graph bytes parsed, as translate does.
#include "fuzz_support.h"
#include "ir/graph.h"
#include "train/checkpoint.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnlab;
  const auto path = fuzz::write_scratch("input.ckpt", std::string(reinterpret_cast<const char*>(data), size));
  ckpt::Checkpoint checkpoint;
  try {
    checkpoint = train::read_checkpoint(path);
  } catch (const train::CheckpointError&) {
    return 0;
  }
  // Loading into tensors shaped as stored (small ones only: the fuzzer's memory is bounded).
  std::vector<Tensor> values, grads;
  std::vector<train::ParamRef> refs;
  int64_t elements = 0;
  for (const ckpt::TensorData& t : checkpoint.parameters()) {
    Shape shape(t.shape().begin(), t.shape().end());
    int64_t n = 1;
    for (int64_t d : shape)
      if (d < 0 || __builtin_mul_overflow(n, d, &n)) return 0;  // read_checkpoint must have refused it
    elements += n;
    if (n > (1 << 20) || elements > (1 << 20)) return 0;
    values.emplace_back(shape, 0.0f);
    grads.emplace_back(shape, 0.0f);
  }
  for (size_t i = 0; i < values.size(); ++i) refs.push_back({checkpoint.parameters(static_cast<int>(i)).name(), values[i].view(), grads[i].view()});
  try {
    train::load_parameters(checkpoint, refs, path.string());
  } catch (const train::CheckpointError&) {
  }
  ir::GraphDef graph;
  (void)graph.ParseFromString(checkpoint.graph());
  return 0;
}
