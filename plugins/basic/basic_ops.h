// plugins/basic/basic_ops.h — internal to the basic plugin: the registration function of each
// node type and the small helpers they share. Nothing here is exported from the library.
//
// Every node type follows core/node/node.h: infer() is pure, forward() writes every output
// element, backward() ADDS into present input gradients and ASSIGNS parameter gradients, and
// nothing is kept between calls except in the executor-owned "saved" buffers.
#pragma once

#include "node/onnx_lowering.h"
#include "node/plugin_api.h"

#include <cstdint>
#include <string>

namespace attnlab::basic {

void register_embedding(PluginRegistrar& registrar);   // embedding, embedding.project
void register_linear(PluginRegistrar& registrar);      // linear
void register_elementwise(PluginRegistrar& registrar); // add, dropout
void register_masks(PluginRegistrar& registrar);       // mask.padding, mask.causal
void register_cross_entropy(PluginRegistrar& registrar);  // loss.cross_entropy

// The basic ops are linear or smooth, and their examples keep values O(1): central differences
// in float32 agree with their analytic gradients to ~1e-4, so their examples use a tolerance well
// below the default. A tight tolerance catches small errors (a wrong smoothing constant, a
// missing scale) that 2e-2 would let through.
constexpr double kBasicTolerance = 5e-3;
inline NodeSchema tight(NodeSchema schema) {
  for (GradCheckExample& example : schema.examples) example.tolerance = kBasicTolerance;
  return schema;
}

// Rows processed per tbb::parallel_for task in row-wise loops: enough work per task to hide the
// scheduling cost, small enough to balance two or more workers.
inline int64_t row_grain(int64_t row_length) {
  const int64_t target = 1 << 14;  // ~16K elements per task
  return row_length >= target ? 1 : target / (row_length > 0 ? row_length : 1);
}

// splitmix64's finaliser: a bijective 64-bit mix with full avalanche. Used as a counter-based
// random generator: hash(seed, index) depends on nothing else, so a mask is the same whatever the
// thread count, the executor or the order elements are visited in.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// uniform01's two parts, for loops over many indices under one seed: the seed's key (computed
// once per loop), and the 24 random bits of an index.
inline uint64_t uniform01_key(uint64_t seed) { return mix64(seed + 0x9e3779b97f4a7c15ULL); }
inline uint64_t uniform01_bits(uint64_t key, uint64_t index) {
  return mix64(key ^ (index * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL)) >> 40;
}

// Uniform in [0, 1) with 24 random bits (exactly representable as float) for element `index`
// under `seed`. The seed is mixed on its own first so that neighbouring seeds give unrelated
// streams rather than shifted copies of one stream.
inline float uniform01(uint64_t seed, uint64_t index) {
  return static_cast<float>(uniform01_bits(uniform01_key(seed), index)) * (1.0f / 16777216.0f);
}

// An id stored as a float: checks it is an integer in [0, bound) and returns it; otherwise throws
// std::out_of_range naming the node type, what the value is, where it was found and the bound.
int64_t checked_id(float value, int64_t bound, const char* type, const char* what, int64_t position,
                   const char* bound_name);

}  // namespace attnlab::basic
