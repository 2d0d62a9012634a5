#include "exec/model.h"

#include "exec/plan.h"

#include <algorithm>

namespace attnlab::exec {

Model::Model(ir::GraphDef graph, const Registry& registry, uint64_t seed, const ir::DimBindings& dims)
    : graph_(std::move(graph)), inferred_(ir::validate_and_infer(graph_, registry, dims)) {
  const int n = graph_.nodes_size();
  schemas_.reserve(n);
  nodes_.reserve(n);
  node_params_.resize(n);
  for (int i = 0; i < n; ++i) {
    const ir::NodeDef& def = graph_.nodes(i);
    schemas_.push_back(registry.schema(def.type()));
    nodes_.push_back(registry.create(def.type(), ir::to_attrs(def)));
    node_index_[def.name()] = i;
    const std::string scope = def.param_scope().empty() ? def.name() : def.param_scope();
    for (const ParamSpec& spec : inferred_.node_shapes[i].params)
      node_params_[i].push_back(store_.declare(spec.scope.empty() ? scope : spec.scope, spec, def.name()));
  }
  store_.initialize(seed);
}

Model::~Model() = default;

int Model::node_index(const std::string& name) const {
  auto it = node_index_.find(name);
  return it == node_index_.end() ? -1 : it->second;
}

Plan& Model::plan(const ir::DimBindings& dims, std::vector<std::string> feeds, std::vector<std::string> fetches,
                  Pass pass) {
  std::sort(feeds.begin(), feeds.end());
  feeds.erase(std::unique(feeds.begin(), feeds.end()), feeds.end());
  std::sort(fetches.begin(), fetches.end());
  fetches.erase(std::unique(fetches.begin(), fetches.end()), fetches.end());
  PlanKey key{dims, feeds, fetches, pass};
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  auto plan = std::make_unique<Plan>(*this, dims, std::move(feeds), std::move(fetches), pass);
  return *plans_.emplace(std::move(key), std::move(plan)).first->second;
}

void Model::clear_plans() { plans_.clear(); }

}  // namespace attnlab::exec
