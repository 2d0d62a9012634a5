// core/check/gradcheck.h — the registry-driven gradient and decode checks of node types, used by
// `attnlab gradcheck` and by the test suite (tests/gradcheck).
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
//     central differences of L computed in double, within the example's relative tolerance. In a
//     training example L also holds the auxiliary losses the node reports (node.h, StepReport);
//     backward runs with StepInfo::objective_scale = 2 and output gradients 2w, and the analytic
//     gradients are halved, so the scale must be honoured;
//   - State parameters (ParamKind::State) are neither perturbed nor given a gradient (an absent
//     view); each forward starts from the same state, which must be unchanged outside training
//     and left identical by two training forwards.
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
  std::string scheme;     // non-empty: the example runs with attribute posenc = this scheme
  bool decode = false;    // the decode check of every example of the type (example is -1)
};
inline void PrintTo(const Case& c, std::ostream* out) { *out << c.test_name; }

// "type__example" with every character outside [A-Za-z0-9] replaced by '_'.
std::string test_name(const std::string& type, const std::string& example);

// One case per (type, example), and one failing case per type without examples. Positional schemes
// act inside other nodes, so they are checked there too: for every type offering a
// PositionalScheme that does something inside attention (node/positional.h) and every type with a
// string attribute `posenc`, one case per example of that type that accepts the scheme
// ("attention_scaled_dot__self__with_posenc_rotary"), and a failing case for a scheme no example
// accepts.
std::vector<Case> cases(const Registry& registry);

// Decode cases ("TYPE__decodes_incrementally", and "..__with_SCHEME" for composed schemes): for
// every type with an example whose first input is a real [B, T, D...] value (and no token ids), a check
// that incremental decoding equals the full pass (check_decoding).
//
// The types whose nodes offer a PositionalScheme with an effect inside attention (sorted).
std::vector<std::string> acting_positional_schemes(const Registry& registry);

// "" when the type has at least one example; otherwise the failure message.
std::string missing_examples_message(const Registry& registry, const std::string& type);

std::vector<std::string> check_example(const Registry& registry, const std::string& type,
                                       const GradCheckExample& example);

// The decode check of one type: for each of its examples (with attribute posenc = scheme when
// given) whose first input is real [B, T, D...] with T ≥ 2 and which has no Index input, the node
// runs once on the whole sequence and then position by position with a DecodeState (position p,
// the buffers of cache_shapes() for the one-position shapes and max_len T, stepwise flags), and each
// step's outputs must equal row p of the full outputs (|a − b| ≤ 1e-4·(1 + |b|)). Inputs of the
// first input's shape are that same value (self-attention: the keys depend on the target) and are
// fed one position at a time, as is a [B, T] mask beside them (key padding of the target); other
// inputs (an encoder's memory and its mask) are whole at every step. An example whose outputs are
// not per position is left out; one the node refuses to decode at position 0 (non-causal
// self-attention, a centred window) is skipped; a type none of whose examples decodes is a failure.
std::vector<std::string> check_decoding(const Registry& registry, const std::string& type, const std::string& scheme);

// The example as case `c` runs it (with the case's scheme as attribute posenc).
GradCheckExample example_of(const Registry& registry, const Case& c);

std::vector<std::string> check_case(const Registry& registry, const Case& c);

}  // namespace attnlab::gradcheck
