// core/exec/hash.h — small deterministic hashes for counter-based randomness and seeds.
//
// Contract: pure functions with fixed definitions (FNV-1a and SplitMix64), identical on every
// platform, thread count and executor, so seeds derived from them reproduce runs exactly.
#pragma once

#include <cstdint>
#include <string_view>

namespace attnlab::exec {

inline uint64_t fnv1a(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline uint64_t hash_combine(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

// A float uniform in [0, 1) from the top 24 bits of a hash.
inline float unit_float(uint64_t bits) { return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f); }

}  // namespace attnlab::exec
