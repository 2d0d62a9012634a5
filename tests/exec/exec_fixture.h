// tests/exec/exec_fixture.h — the graphs the executor tests share.
#pragma once

#include "exec/model.h"
#include "exec/plan.h"
#include "test_nodes.h"

#include <cmath>
#include <memory>

namespace attnlab::test {

// x[batch,4] fans out to two matmuls (independent branches); a = tanh(h1) fans out again; a fork
// node has two outputs; noise is random in training; loss compares with a non-differentiable target.
//   h1 = matmul(x)  a = tanh(h1)  b = matmul(x)  f, f:1 = fork(a)  c = f + b  d = f:1 + a
//   e = c + d (graph output "hidden")  n = noise(e)  loss, count = loss(n, target)
inline ir::GraphDef branchy_graph() {
  GraphBuilder g;
  g.graph.set_name("branchy");
  g.input("x", {std::string("batch"), int64_t{4}}, "real", 1);
  g.input("target", {std::string("batch"), int64_t{5}}, "real", 1);
  g.node("h1", "test.matmul", {"x"}, {{"out", int64_t{5}}}, 2, 5);
  g.node("a", "test.tanh", {"h1"}, {}, 3, 5);
  g.node("b", "test.matmul", {"x"}, {{"out", int64_t{5}}}, 4, 5);
  g.node("f", "test.fork", {"a"}, {}, 5, 5);
  g.node("c", "test.add", {"f", "b"}, {}, 6, 5);
  g.node("d", "test.add", {"f:1", "a"}, {}, 7, 5);
  g.node("e", "test.add", {"c", "d"}, {}, 8, 5);
  g.node("n", "test.noise", {"e"}, {{"amount", 0.2}}, 9, 5);
  g.node("loss", "test.loss", {"n", "target"}, {}, 10, 5);
  g.output("loss", "loss").output("count", "loss:1").output("hidden", "e");
  return g.graph;
}

// Deterministic, varied contents.
inline Tensor pattern(Shape shape, float phase) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = 0.8f * std::sin(0.7f * static_cast<float>(i) + phase);
  return t;
}

struct Fixture {
  Registry registry;
  std::unique_ptr<exec::Model> model;
  Fixture(const ir::GraphDef& graph, uint64_t seed = 42) {
    register_test_nodes(registry);
    model = std::make_unique<exec::Model>(graph, registry, seed, ir::DimBindings{{"batch", 2}});
  }
};

}  // namespace attnlab::test
