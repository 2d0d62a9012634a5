// tests/decode/model_fixture.h — small random-initialised models of experiments/transformer_base.attn
// for the decoding tests: the real plugins, elaborated with --set/--use overrides.
#pragma once

#include "dsl/elaborate.h"
#include "exec/model.h"
#include "node/plugin_loader.h"

#include <memory>
#include <string>
#include <vector>

namespace attnlab::test {

inline const Registry& plugin_registry() {
  static Registry* registry = [] {
    auto* r = new Registry();
    load_plugins(*r, plugin_search_path({}));
    return r;
  }();
  return *registry;
}

// transformer_base with the given "--set" overrides (NAME=VALUE) and "--use" slot choices.
inline ir::GraphDef base_graph(const std::vector<std::string>& sets, const std::vector<std::string>& uses = {}) {
  dsl::ElaborateOptions options;
  for (const std::string& s : sets) options.overrides.push_back(dsl::parse_override(s, "--set"));
  for (const std::string& u : uses) options.overrides.push_back(dsl::parse_override(u, "--use"));
  return dsl::elaborate_file(std::string(ATTNLAB_SOURCE_DIR) + "/experiments/transformer_base.attn", plugin_registry(),
                             options)
      .graph;
}

inline std::vector<std::string> small_sets(int vocab = 40) {
  return {"layers=2", "d_model=32", "d_ff=64", "heads=4", "vocab=" + std::to_string(vocab)};
}

inline std::unique_ptr<exec::Model> make_model(const ir::GraphDef& graph, uint64_t seed) {
  return std::make_unique<exec::Model>(graph, plugin_registry(), seed, dsl::default_dims());
}

}  // namespace attnlab::test
