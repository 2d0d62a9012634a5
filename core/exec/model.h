// core/exec/model.h — a validated graph with its node instances and parameters.
//
// Contract:
// - Model(graph, registry, seed, dims) runs ir::validate_and_infer() on the graph with the
//   representative sizes `dims` (throws ir::GraphError with every diagnostic), creates one node
//   instance per NodeDef (registry.create with the node's attributes), declares every node's
//   parameters in its ParameterStore (in graph order; tied scopes share) and initialises them from
//   `seed`. Parameter shapes must not depend on the batch/length sizes.
// - The registry is only used during construction; node instances keep their plugin library loaded
//   for as long as the Model lives.
// - plan(dims, feeds, fetches, pass) returns the Plan for that combination, building it on first use and
//   caching it: the same batch shape reuses the same buffers. Feeds and fetches are compared as
//   sets. Plans reference the Model: it can be neither copied nor moved.
#pragma once

#include "exec/buffer_pool.h"
#include "exec/parameters.h"
#include "exec/plan.h"
#include "ir/graph.h"
#include "node/registry.h"

#include <map>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <vector>

namespace attnlab::exec {

class Plan;

class Model {
 public:
  Model(ir::GraphDef graph, const Registry& registry, uint64_t seed, const ir::DimBindings& dims);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ir::GraphDef& graph() const { return graph_; }
  const ir::InferredGraph& inferred() const { return inferred_; }  // for the representative dims
  ParameterStore& parameters() { return store_; }
  const ParameterStore& parameters() const { return store_; }

  int node_count() const { return graph_.nodes_size(); }
  const Node& node(int index) const { return *nodes_[index]; }
  const NodeSchema& schema(int index) const { return schemas_[index]; }
  int node_index(const std::string& name) const;  // -1 when there is none
  // Store indices of a node's parameters, in the order of its ParamSpecs.
  std::span<const size_t> node_parameters(int index) const { return node_params_[index]; }

  // `feeds`: values supplied from outside (graph inputs or node outputs); `fetches`: graph output
  // names or value names the caller reads (and may seed gradients at).
  Plan& plan(const ir::DimBindings& dims, std::vector<std::string> feeds, std::vector<std::string> fetches,
             Pass pass = Pass::ForwardAndBackward);
  size_t cached_plans() const { return plans_.size(); }
  void clear_plans();  // their memory goes back to the pool, for the next plans
  // Where every plan's buffers come from (see exec/buffer_pool.h).
  BufferPool& buffer_pool() { return pool_; }

 private:
  ir::GraphDef graph_;
  ir::InferredGraph inferred_;
  std::vector<NodeSchema> schemas_;
  std::vector<NodeHandle> nodes_;
  std::vector<std::vector<size_t>> node_params_;
  std::map<std::string, int> node_index_;
  ParameterStore store_;
  BufferPool pool_;  // declared before plans_: outlives them
  using PlanKey = std::tuple<ir::DimBindings, std::vector<std::string>, std::vector<std::string>, Pass>;
  std::map<PlanKey, std::unique_ptr<Plan>> plans_;
};

}  // namespace attnlab::exec
