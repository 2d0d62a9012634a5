// dsl/params.h — counting the parameters of an elaborated model.
//
// Contract: every trainable parameter tensor is counted once (State, e.g. running statistics, is not). A parameter is identified by its scope (the
// node's param_scope, or its name when that is empty) and its local name, so tied weights (one
// embedding for source, target and output projection; repeat(N, shared)) count once. Components:
//   by_component — the first segment of the scope: the model-level value that created it
//                  ("embed", "encoder", "decoder", ...);
//   by_slot      — the slot or node type of the node that owns it ("attention", "ffn", "norm",
//                  "embedding", ...): the node's slot when the node's type is bound to a slot,
//                  else its type.
#pragma once

#include "dsl/elaborate.h"

#include <map>
#include <string>

namespace attnlab::dsl {

struct ParamCount {
  int64_t total = 0;
  std::map<std::string, int64_t> by_component;
  std::map<std::string, int64_t> by_slot;
};

ParamCount count_params(const ElaboratedModel& model);

}  // namespace attnlab::dsl
