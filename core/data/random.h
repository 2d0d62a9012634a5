// core/data/random.h — the data pipeline's random numbers, identical on every platform.
//
// Contract: SplitMix64's output sequence is fixed by its definition (no standard-library
// distributions, whose results differ between implementations), so shuffles and generated data
// are a pure function of the seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace attnlab::data {

// SplitMix64: a small, fast, well-mixed generator whose output is fixed by its definition.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint64_t below(uint64_t bound);  // uniform in [0, bound), bound > 0
 private:
  uint64_t state_;
};

// Fisher–Yates shuffle driven by SplitMix64 (deterministic everywhere).
template <typename T>
void shuffle(std::vector<T>& items, SplitMix64& random) {
  using std::swap;  // vector<bool> swaps its proxies through its own overload
  for (size_t i = items.size(); i > 1; --i) swap(items[i - 1], items[random.below(i)]);
}

}  // namespace attnlab::data
