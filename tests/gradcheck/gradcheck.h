// tests/gradcheck/gradcheck.h — the registry-driven gradient check.
//
// Contract: for a node type and one of its schema's GradCheckExamples, check_example() builds the
// node, infers shapes, fills inputs (CheckInput: Real ~ N(0,1), Index uniform in [0, bound),
// Fixed as given) and parameters (small random values), and verifies:
//   - forward writes every output element (outputs are pre-filled with NaN) and leaves inputs and
//     parameters untouched; two forwards give bitwise identical outputs;
//   - backward ADDS into input gradients (they are pre-filled with a sentinel, and the analytic
//     gradient is read as result − sentinel) and ASSIGNS every parameter-gradient element (they
//     are pre-filled with NaN);
//   - the analytic gradient of L = Σ w·y (w random, over the differentiable outputs) matches
//     central differences of L computed in double, within the example's relative tolerance.
// Non-differentiable ports (PortSchema::differentiable = false) and Index/Fixed inputs take no
// gradient and are not checked. A type with no examples is a failure of its own.
//
// Every function returns failure messages (empty: passed) rather than asserting, so that the
// same code is run on real plugins and on deliberately broken test types.
#pragma once

#include "node/registry.h"

#include <ostream>
#include <string>
#include <vector>

namespace attnlab::gradcheck {

struct Case {
  std::string type;
  int example = -1;       // index into the schema's examples; -1: the type has none
  std::string test_name;  // "embedding_project__tied": letters, digits and underscores only
  std::string load_error; // non-empty: plugins could not be loaded (a case that fails with it)
};
inline void PrintTo(const Case& c, std::ostream* out) { *out << c.test_name; }

// "type__example" with every character outside [A-Za-z0-9] replaced by '_'.
std::string test_name(const std::string& type, const std::string& example);

// One case per (type, example), and one failing case per type without examples.
std::vector<Case> cases(const Registry& registry);

// "" when the type has at least one example; otherwise the failure message.
std::string missing_examples_message(const Registry& registry, const std::string& type);

std::vector<std::string> check_example(const Registry& registry, const std::string& type,
                                       const GradCheckExample& example);

std::vector<std::string> check_case(const Registry& registry, const Case& c);

}  // namespace attnlab::gradcheck
