#include "dsl/params.h"

#include <set>

namespace attnlab::dsl {

ParamCount count_params(const ElaboratedModel& model) {
  ParamCount count;
  std::map<std::string, std::string> slot_of_type;
  for (const auto& [slot, type] : model.slots) slot_of_type.emplace(type, slot);
  std::set<std::pair<std::string, std::string>> seen;
  for (int i = 0; i < model.graph.nodes_size(); ++i) {
    const ir::NodeDef& node = model.graph.nodes(i);
    const std::string scope = node.param_scope().empty() ? node.name() : node.param_scope();
    const std::string component = scope.substr(0, scope.find('.'));
    auto slot = slot_of_type.find(node.type());
    const std::string& kind = slot == slot_of_type.end() ? node.type() : slot->second;
    for (const ParamSpec& p : model.shapes.node_shapes.at(i).params) {
      // Shared as the parameter store shares it (exec/parameters.h): by its own scope, when it has one.
      if (p.kind == ParamKind::State) continue;  // running statistics are not trained (node.h)
      if (!seen.insert({p.scope.empty() ? scope : p.scope, p.name}).second) continue;
      const int64_t n = numel(p.shape);
      count.total += n;
      count.by_component[component] += n;
      count.by_slot[kind] += n;
    }
  }
  return count;
}

}  // namespace attnlab::dsl
