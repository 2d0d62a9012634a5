// validate_and_infer(): one test per kind of diagnostic, each checking the exact text and location.
#include "ir/graph.h"
#include "test_nodes.h"

#include <gtest/gtest.h>

namespace attnlab {
namespace {

using test::GraphBuilder;

class Validation : public ::testing::Test {
 protected:
  Validation() { test::register_test_nodes(registry); }

  // The formatted diagnostics validate_and_infer throws ("" when it accepts the graph).
  std::string diagnose(const ir::GraphDef& graph, ir::DimBindings dims = {{"batch", 2}}) {
    try {
      ir::validate_and_infer(graph, registry, dims);
      return "";
    } catch (const ir::GraphError& e) {
      // what() and the diagnostics agree.
      EXPECT_EQ(std::string(e.what()) + "\n", ir::format(e.diagnostics));
      return ir::format(e.diagnostics);
    }
  }

  GraphBuilder base() {
    GraphBuilder b;
    b.input("x", {std::string("batch"), int64_t{4}});
    return b;
  }

  Registry registry;
};

TEST_F(Validation, AcceptsAGoodGraphAndInfersShapes) {
  GraphBuilder b = base();
  b.node("loss", "test.loss", {"y"}, {}, 5, 3);  // listed before its input: order comes from the edges
  b.node("h", "test.matmul", {"x"}, {{"out", int64_t{5}}}, 2, 3);
  b.node("f", "test.fork", {"h"}, {}, 3, 3);
  b.node("y", "test.add", {"f", "f:1"}, {}, 4, 3);
  b.output("loss", "loss");
  const ir::InferredGraph inferred = ir::validate_and_infer(b.graph, registry, {{"batch", 3}});
  EXPECT_EQ(inferred.order, (std::vector<int>{1, 2, 3, 0}));
  EXPECT_EQ(inferred.value_shapes.at("x"), (Shape{3, 4}));
  EXPECT_EQ(inferred.value_shapes.at("h"), (Shape{3, 5}));
  EXPECT_EQ(inferred.value_shapes.at("f:1"), (Shape{3, 5}));
  EXPECT_EQ(inferred.value_shapes.at("loss"), Shape{});
  EXPECT_EQ(inferred.value_shapes.at("loss:1"), Shape{});
  ASSERT_EQ(inferred.node_shapes[1].params.size(), 1u);
  EXPECT_EQ(inferred.node_shapes[1].params[0].shape, (Shape{4, 5}));
}

TEST_F(Validation, DuplicateNodeName) {
  GraphBuilder b = base();
  b.node("a", "test.tanh", {"x"}, {}, 3, 3);
  b.node("a", "test.tanh", {"x"}, {}, 5, 7);
  EXPECT_EQ(diagnose(b.graph), "model.attn:5:7: error: duplicate node name 'a' (first defined at model.attn:3:3)\n");
}

TEST_F(Validation, NodeNamedLikeAGraphInput) {
  GraphBuilder b = base();
  b.node("x", "test.tanh", {"x"}, {}, 3, 3);
  EXPECT_EQ(diagnose(b.graph), "model.attn:3:3: error: node name 'x' is also the name of a graph input\n");
}

TEST_F(Validation, UnknownTypeListsKnownOnesAndNearest) {
  GraphBuilder b = base();
  b.node("h", "test.matmol", {"x"}, {{"out", int64_t{5}}}, 4, 9);
  EXPECT_EQ(diagnose(b.graph),
            "model.attn:4:9: error: node 'h': unknown node type 'test.matmol'; known types: test.add, test.check, "
            "test.fork, test.loss, test.matmul, test.noise, test.rendezvous, test.tally, test.tanh; did you mean 'test.matmul'?\n");
}

TEST_F(Validation, UnknownAttribute) {
  GraphBuilder b = base();
  b.node("h", "test.matmul", {"x"}, {{"out", int64_t{5}}, {"outs", int64_t{5}}}, 2, 3);
  EXPECT_EQ(diagnose(b.graph),
            "model.attn:2:3: error: node 'h' (test.matmul): unknown attribute 'outs'; valid attributes: out; did you "
            "mean 'out'?\n");
}

TEST_F(Validation, MissingAttribute) {
  GraphBuilder b = base();
  b.node("h", "test.matmul", {"x"}, {}, 2, 3);
  EXPECT_EQ(diagnose(b.graph), "model.attn:2:3: error: node 'h' (test.matmul): missing required attribute 'out' (output width)\n");
}

TEST_F(Validation, MistypedAttribute) {
  GraphBuilder b = base();
  b.node("h", "test.matmul", {"x"}, {{"out", std::string("5")}}, 2, 3);
  EXPECT_EQ(diagnose(b.graph), "model.attn:2:3: error: node 'h' (test.matmul): attribute 'out' must be int, got string \"5\"\n");
}

TEST_F(Validation, RejectedByTheNodeConstructor) {
  GraphBuilder b = base();
  b.node("h", "test.matmul", {"x"}, {{"out", int64_t{-1}}}, 2, 3);
  EXPECT_EQ(diagnose(b.graph), "model.attn:2:3: error: node 'h' (test.matmul): out must be positive, got -1\n");
}

TEST_F(Validation, UndefinedInputSuggestsNearest) {
  GraphBuilder b = base();
  b.node("t", "test.tanh", {"xx"}, {}, 6, 2);
  EXPECT_EQ(diagnose(b.graph), "model.attn:6:2: error: node 't' (test.tanh): input 'x' reads undefined value 'xx'; did you mean 'x'?\n");
}

TEST_F(Validation, InputPortBeyondTheProducersOutputs) {
  GraphBuilder b = base();
  b.node("f", "test.fork", {"x"}, {}, 2, 2);
  b.node("t", "test.tanh", {"f:2"}, {}, 3, 2);
  EXPECT_EQ(diagnose(b.graph), "model.attn:3:2: error: node 't' (test.tanh): input 'x' reads 'f:2', but node 'f' (test.fork) has 2 outputs\n");
}

TEST_F(Validation, WrongInputCount) {
  GraphBuilder b = base();
  b.node("y", "test.add", {"x"}, {}, 7, 4);
  b.node("z", "test.tanh", {"x", "x"}, {}, 8, 4);
  EXPECT_EQ(diagnose(b.graph),
            "model.attn:7:4: error: node 'y' (test.add): expects 2 inputs (a, b), got 1\n"
            "model.attn:8:4: error: node 'z' (test.tanh): expects 1 input (x), got 2\n");
}

TEST_F(Validation, OptionalInputsMayBeEmptyOrLeftOut) {
  GraphBuilder b = base();
  b.node("l1", "test.loss", {"x"}, {}, 2, 1);
  b.node("l2", "test.loss", {"x", ""}, {}, 3, 1);
  EXPECT_EQ(diagnose(b.graph), "");
  b.node("l3", "test.loss", {"", "x"}, {}, 4, 1);
  EXPECT_EQ(diagnose(b.graph), "model.attn:4:1: error: node 'l3' (test.loss): input 'x' is required but not connected\n");
}

TEST_F(Validation, CycleIsReportedOnceAndDownstreamIsSkipped) {
  GraphBuilder b = base();
  b.node("a", "test.add", {"x", "c"}, {}, 2, 1);
  b.node("b", "test.tanh", {"a"}, {}, 3, 1);
  b.node("c", "test.tanh", {"b"}, {}, 4, 1);
  b.node("d", "test.add", {"c", "x:0"}, {}, 5, 1);  // downstream of the cycle: not reported
  EXPECT_EQ(diagnose(b.graph), "model.attn:2:1: error: node 'a' (test.add): is part of a cycle: a -> b -> c -> a\n");
}

TEST_F(Validation, SelfLoop) {
  GraphBuilder b = base();
  b.node("s", "test.add", {"x", "s"}, {}, 9, 9);
  EXPECT_EQ(diagnose(b.graph), "model.attn:9:9: error: node 's' (test.add): is part of a cycle: s -> s\n");
}

TEST_F(Validation, ShapeErrorFromInferAndDownstreamSkipped) {
  GraphBuilder b = base();
  b.node("h", "test.matmul", {"x"}, {{"out", int64_t{5}}}, 2, 1);
  b.node("y", "test.add", {"x", "h"}, {}, 3, 5);
  b.node("t", "test.tanh", {"y"}, {}, 4, 1);
  b.node("l", "test.loss", {"t"}, {}, 5, 1);
  EXPECT_EQ(diagnose(b.graph), "model.attn:3:5: error: node 'y' (test.add): shapes [2, 4] and [2, 5] differ\n");
}

TEST_F(Validation, UnboundDimension) {
  GraphBuilder b = base();
  b.node("t", "test.tanh", {"x"}, {}, 2, 1);
  EXPECT_EQ(diagnose(b.graph, {{"batsh", 2}}), "model.attn:1:1: error: graph input 'x': dimension 'batch' has no size bound\n");
}

TEST_F(Validation, UndefinedGraphOutput) {
  GraphBuilder b = base();
  b.node("t", "test.tanh", {"x"}, {}, 2, 1);
  b.output("loss", "t:1");
  EXPECT_EQ(diagnose(b.graph), "<graph>: error: graph output 'loss' exposes undefined value 't:1'\n");
}

TEST_F(Validation, NodeWithoutLocationPrintsGraph) {
  GraphBuilder b = base();
  b.node("y", "test.add", {"x"});
  EXPECT_EQ(diagnose(b.graph), "<graph>: error: node 'y' (test.add): expects 2 inputs (a, b), got 1\n");
}

TEST_F(Validation, CollectsEveryError) {
  GraphBuilder b = base();
  b.node("a", "test.tanh", {"x"}, {}, 2, 1);
  b.node("a", "test.tanh", {"x"}, {}, 3, 1);
  b.node("u", "test.unknown", {"x"}, {}, 4, 1);
  b.node("m", "test.matmul", {"x"}, {}, 5, 1);
  b.node("v", "test.tanh", {"nothing"}, {}, 6, 1);
  b.node("w", "test.add", {"x", "a"}, {}, 7, 1);    // fine
  b.node("s", "test.add", {"x", "m"}, {}, 8, 1);    // downstream of m's error: skipped
  b.node("k", "test.add", {"x", "k"}, {}, 9, 1);
  const std::string text = diagnose(b.graph);
  EXPECT_NE(text.find("model.attn:3:1: error: duplicate node name 'a'"), std::string::npos) << text;
  EXPECT_NE(text.find("model.attn:4:1: error: node 'u': unknown node type 'test.unknown'"), std::string::npos) << text;
  EXPECT_NE(text.find("model.attn:5:1: error: node 'm' (test.matmul): missing required attribute 'out'"), std::string::npos) << text;
  EXPECT_NE(text.find("model.attn:6:1: error: node 'v' (test.tanh): input 'x' reads undefined value 'nothing'"), std::string::npos) << text;
  EXPECT_NE(text.find("model.attn:9:1: error: node 'k' (test.add): is part of a cycle: k -> k"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5) << text;
}

}  // namespace
}  // namespace attnlab
