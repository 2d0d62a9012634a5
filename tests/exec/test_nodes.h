// tests/exec/test_nodes.h — small node types registered by the tests themselves (origin "builtin"),
// so that the IR and executor tests depend on no plugin. They follow the node contract exactly:
// forward writes every output, backward ADDS into input gradients and ASSIGNS parameter gradients.
//
//   test.matmul (out:int)         x[..., in] -> y[..., out] = x W; param weight[in, out]
//   test.tanh                     x -> tanh(x); keeps y in a "saved" buffer, uses a workspace
//   test.add                      a, b (equal shapes) -> a + b
//   test.fork                     x -> (2x, x*x): two outputs
//   test.noise (amount:float=0.1) x -> x * (1 + amount * u), u in [-1, 1) from (seed, index) in
//                                 training; identity otherwise
//   test.loss                     x, target? -> loss[] = 0.5 * mean((x - target)^2), count[] (not
//                                 differentiable; target not differentiable)
//   test.tally (aux:float=0)      x -> x; State seen[1] counts training forwards; in training it
//                                 reports the auxiliary loss aux·Σx² (its gradient in backward,
//                                 times objective_scale) and the metric "rows"
//   test.check                    x -> x; throws when an element is negative (forward) or a
//                                 gradient element is negative (backward)
//   test.rendezvous               x -> x; forward waits (up to rendezvous_timeout_ms) until `rendezvous_parties`
//                                 nodes have arrived: it only completes quickly when they run at
//                                 the same time. Records the arena's concurrency seen inside a
//                                 nested tbb::parallel_for.
#pragma once

#include "exec/model.h"
#include "ir/graph.h"
#include "node/registry.h"

#include <atomic>
#include <initializer_list>
#include <string>
#include <variant>
#include <vector>

namespace attnlab::test {

void register_test_nodes(Registry& registry);

// Forward calls made by all test nodes since the last reset (pruning tests read it).
extern std::atomic<int> forward_calls;
// test.rendezvous: arrivals, parties expected, how many met in time, the largest
// tbb::this_task_arena::max_concurrency() seen inside a nested parallel_for.
extern std::atomic<int> rendezvous_arrived, rendezvous_parties, rendezvous_met, nested_concurrency,
    rendezvous_timeout_ms;

// Builds GraphDefs tersely.
struct GraphBuilder {
  ir::GraphDef graph;
  std::string file = "model.attn";

  GraphBuilder& input(const std::string& name, std::vector<std::variant<int64_t, std::string>> dims,
                      const std::string& kind = "real", int line = 1);
  ir::NodeDef& node(const std::string& name, const std::string& type, std::vector<std::string> inputs,
                    const Attrs& attrs = {}, int line = 0, int column = 0, const std::string& scope = "");
  GraphBuilder& output(const std::string& name, const std::string& value);
};

}  // namespace attnlab::test
