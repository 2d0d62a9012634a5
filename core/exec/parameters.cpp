#include "exec/parameters.h"

#include "exec/hash.h"

#include <cmath>

namespace attnlab::exec {

size_t ParameterStore::declare(const std::string& scope, const ParamSpec& spec, const std::string& node) {
  const std::string name = scope + "." + spec.name;
  if (auto it = index_.find(name); it != index_.end()) {
    const Parameter& existing = params_[it->second];
    if (existing.spec.kind == ParamKind::State || spec.kind == ParamKind::State)
      throw ParameterError("parameter '" + name + "' is declared by node '" + existing.owner + "' and node '" + node +
                           "', but state (running statistics) belongs to one node and cannot be shared; give the nodes "
                           "different param_scopes");
    if (existing.spec.shape != spec.shape)
      throw ParameterError("parameter '" + name + "' is shared by node '" + existing.owner + "' with shape " +
                           to_string(existing.spec.shape) + " and node '" + node + "' with shape " +
                           to_string(spec.shape) + "; tied parameters must have equal shapes");
    return it->second;
  }
  for (int64_t d : spec.shape)
    if (d < 0) throw ParameterError("node '" + node + "': parameter '" + name + "' has a negative dimension " + to_string(spec.shape));
  params_.push_back({name, spec, node, Tensor(spec.shape), Tensor(spec.shape)});
  index_[name] = params_.size() - 1;
  return params_.size() - 1;
}

void initialize_parameter(const ParamSpec& spec, const std::string& full_name, uint64_t seed, const TensorView& out) {
  const uint64_t stream = hash_combine(seed, fnv1a(full_name));
  const int64_t n = out.numel();
  float* data = out.data();
  switch (spec.init) {
    case Init::Zeros: out.fill(0.0f); break;
    case Init::Ones: out.fill(1.0f); break;
    case Init::Constant: out.fill(spec.init_scale); break;
    case Init::XavierUniform: {
      const Shape& s = spec.shape;
      const double fan_in = s.empty() ? 1.0 : s.size() == 1 ? s[0] : s[s.size() - 2];
      const double fan_out = s.empty() ? 1.0 : s.back();
      const float a = static_cast<float>(std::sqrt(6.0 / std::max(1.0, fan_in + fan_out)));
      for (int64_t i = 0; i < n; ++i) data[i] = (2.0f * unit_float(splitmix64(stream + i)) - 1.0f) * a;
      break;
    }
    case Init::Normal: {
      // Box-Muller on two independent uniforms per element; 1 - u keeps the logarithm finite.
      for (int64_t i = 0; i < n; ++i) {
        const double u1 = 1.0 - unit_float(splitmix64(stream + 2 * i));
        const double u2 = unit_float(splitmix64(stream + 2 * i + 1));
        data[i] = static_cast<float>(spec.init_scale * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
      }
      break;
    }
  }
}

void ParameterStore::initialize(uint64_t seed) {
  for (Parameter& p : params_) {
    initialize_parameter(p.spec, p.name, seed, p.value);
    p.grad.view().set_zero();
  }
}

void ParameterStore::zero_grads() {
  for (Parameter& p : params_) p.grad.view().set_zero();
}

std::optional<size_t> ParameterStore::find(const std::string& full_name) const {
  auto it = index_.find(full_name);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

Parameter& ParameterStore::at(const std::string& full_name) {
  auto i = find(full_name);
  if (!i) throw ParameterError("no parameter named '" + full_name + "'");
  return params_[*i];
}

const Parameter& ParameterStore::at(const std::string& full_name) const {
  return const_cast<ParameterStore*>(this)->at(full_name);
}

int64_t ParameterStore::element_count() const {
  int64_t n = 0;
  for (const Parameter& p : params_)
    if (p.spec.kind == ParamKind::Trainable) n += p.value.numel();
  return n;
}

}  // namespace attnlab::exec
