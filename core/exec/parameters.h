// core/exec/parameters.h — the trainable parameters of a model: values and gradients, by name.
//
// Contract:
// - A parameter's full name is SCOPE + "." + LOCAL, where SCOPE is the node's param_scope, or the
//   node's name when that is empty, and LOCAL is the ParamSpec name ("enc.0.attn.w_q",
//   "embed.weight"). Nodes sharing a scope share every parameter of the same local name (tying).
//   A ParamSpec with its own scope is named SCOPE.LOCAL by that scope instead, whatever node
//   declares it (Model::Model passes it as `scope`).
// - declare() adds a parameter, or returns the existing one when another node already declared the
//   name; the shapes must then be equal, otherwise a ParameterError names both nodes. The first
//   declaration's Init is the one used.
// - Parameters keep the order of their first declaration; indices are stable, and the value and
//   gradient storage never moves once declared (plans hold views into it).
// - A ParamKind::State parameter (node.h) is stored, initialised and copied like the others but has
//   no gradient that anything reads (its grad stays zero); it cannot be shared (declaring it twice
//   is a ParameterError naming both nodes), and element_count() leaves it out.
// - initialize(seed) is deterministic: each parameter draws from a counter-based stream keyed by
//   (seed, full name), so its values do not depend on which other parameters exist or on threads.
//   XavierUniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)) with fan_in, fan_out the last two
//   dimensions (a vector uses its length for both); Normal: N(0, init_scale^2); Zeros; Ones;
//   Constant: init_scale everywhere.
#pragma once

#include "node/node.h"
#include "tensor/tensor.h"

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::exec {

struct ParameterError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Parameter {
  std::string name;   // full name: scope.local
  ParamSpec spec;     // local name, shape, initialisation
  std::string owner;  // the node that declared it first
  Tensor value;
  Tensor grad;        // same shape as value
};

class ParameterStore {
 public:
  // `node` is the declaring node's name (for messages). Returns the parameter's index.
  size_t declare(const std::string& scope, const ParamSpec& spec, const std::string& node);

  void initialize(uint64_t seed);
  void zero_grads();

  size_t size() const { return params_.size(); }
  Parameter& operator[](size_t i) { return params_[i]; }
  const Parameter& operator[](size_t i) const { return params_[i]; }
  std::optional<size_t> find(const std::string& full_name) const;
  Parameter& at(const std::string& full_name);  // throws ParameterError naming it
  const Parameter& at(const std::string& full_name) const;
  int64_t element_count() const;  // total number of trainable scalars (State parameters excluded)

  auto begin() { return params_.begin(); }
  auto end() { return params_.end(); }
  auto begin() const { return params_.begin(); }
  auto end() const { return params_.end(); }

 private:
  std::vector<Parameter> params_;
  std::map<std::string, size_t> index_;
};


// Deterministic initial values for one parameter (exposed for tests and for re-initialisation).
void initialize_parameter(const ParamSpec& spec, const std::string& full_name, uint64_t seed, const TensorView& out);

}  // namespace attnlab::exec
