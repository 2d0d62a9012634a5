// plugins/basic/plugin.cpp — the plugin's entry points: registers every basic node type.
#include "basic_ops.h"

#include <cmath>
#include <stdexcept>

namespace attnlab::basic {

int64_t checked_id(float value, int64_t bound, const char* type, const char* what, int64_t position,
                   const char* bound_name) {
  if (!(value >= 0.0f) || value >= static_cast<float>(bound) || value != std::floor(value)) {
    std::string shown = std::isfinite(value) && value == std::floor(value) ? std::to_string(static_cast<int64_t>(value))
                                                                           : std::to_string(value);
    throw std::out_of_range(std::string(type) + ": " + what + " " + shown + " at position " +
                            std::to_string(position) + " is outside [0, " + std::to_string(bound) + ") (" +
                            bound_name + " = " + std::to_string(bound) + ")");
  }
  return static_cast<int64_t>(value);
}

}  // namespace attnlab::basic

ATTNLAB_PLUGIN(registrar) {
  attnlab::basic::register_embedding(registrar);
  attnlab::basic::register_linear(registrar);
  attnlab::basic::register_elementwise(registrar);
  attnlab::basic::register_masks(registrar);
  attnlab::basic::register_cross_entropy(registrar);
}
