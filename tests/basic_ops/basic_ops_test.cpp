// tests/basic_ops/basic_ops_test.cpp — the basic plugin's node types on hand-computed examples:
// cross-entropy values (with and without label smoothing, padding ignored), dropout masks
// (identical for 1 and 2 threads and across calls with one seed, different with another, rate
// close to p), mask values, and the messages of user errors.
#include "node/plugin_loader.h"
#include "basic_ops.h"  // uniform01, the mask's definition

#include <gtest/gtest.h>
#include <gmock/gmock.h>
#include <tbb/task_arena.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace attnlab {
namespace {

using ::testing::HasSubstr;

Registry& registry() {
  static Registry r;
  static bool loaded = [] {
    load_plugin(r, plugin_search_path({}).front() / "libattnlab_plugin_basic.so");
    return true;
  }();
  (void)loaded;
  return r;
}

// One node with its buffers: runs forward and backward the way an executor does.
struct NodeRun {
  NodeHandle node;
  std::vector<Tensor> inputs, params, outputs, saved, workspace;
  NodeShapes shapes;
  StepInfo step;

  NodeRun(const std::string& type, const Attrs& attrs, std::vector<Tensor> in) : node(registry().create(type, attrs)) {
    inputs = std::move(in);
    std::vector<Shape> in_shapes;
    for (const Tensor& t : inputs) in_shapes.push_back(t.shape());
    shapes = node->infer(in_shapes);
    for (const ParamSpec& p : shapes.params) params.emplace_back(p.shape, 0.0f);
    for (const Shape& s : shapes.outputs) outputs.emplace_back(s, std::nanf(""));
    for (const Shape& s : shapes.saved) saved.emplace_back(s);
    for (const Shape& s : shapes.workspace) workspace.emplace_back(s);
  }

  static std::vector<TensorView> views(const std::vector<Tensor>& ts) {
    std::vector<TensorView> v;
    for (const Tensor& t : ts) v.push_back(t.view());
    return v;
  }

  void forward() {
    const auto in = views(inputs), p = views(params), out = views(outputs), sv = views(saved), ws = views(workspace);
    node->forward({in, p, out, sv, ws, step});
  }

  // Gradients of inputs start at zero; returns them (absent ones for non-differentiable inputs).
  std::vector<Tensor> backward(const std::vector<Tensor>& output_grads, std::vector<bool> wanted) {
    std::vector<Tensor> input_grads;
    std::vector<TensorView> ig;
    for (size_t i = 0; i < inputs.size(); ++i) {
      input_grads.emplace_back(inputs[i].shape(), 0.0f);
      ig.push_back(wanted[i] ? input_grads.back().view() : TensorView());
    }
    std::vector<Tensor> param_grads;
    for (const Tensor& p : params) param_grads.emplace_back(p.shape());
    const auto in = views(inputs), p = views(params), out = views(outputs), sv = views(saved), ws = views(workspace),
               og = views(output_grads), pg = views(param_grads);
    node->backward({in, p, out, sv, ws, og, ig, pg, step});
    return input_grads;
  }
};

std::vector<float> values(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

// ---- loss.cross_entropy -------------------------------------------------------------------------

// Rows: z = [1, 2, 4] target 2; z = [0.5, -1, 0.5] target 1; z = [4, 0, -2] target 0 (padding
// when pad_id = 0). Expected values computed by hand from ce = lse - (1-ε)·z_t - (ε/V)·Σz.
Tensor ce_logits() { return Tensor({3, 3}, {1, 2, 4, 0.5f, -1, 0.5f, 4, 0, -2}); }
Tensor ce_targets() { return Tensor({3}, {2, 1, 0}); }

TEST(CrossEntropy, MatchesHandComputedValueIgnoringPadding) {
  NodeRun run("loss.cross_entropy", {}, {ce_logits(), ce_targets()});
  run.forward();
  EXPECT_NEAR(run.outputs[0].data()[0], 1.234381102, 1e-6);
  EXPECT_EQ(run.outputs[1].data()[0], 2.0f);  // tokens: the padding row is not counted
  EXPECT_EQ(run.outputs[2].data()[0], 1.0f);  // row 0's argmax is its target; row 1's (tie → 0) is not
}

TEST(CrossEntropy, MatchesHandComputedValueWithLabelSmoothing) {
  NodeRun run("loss.cross_entropy", {{"label_smoothing", 0.1}}, {ce_logits(), ce_targets()});
  run.forward();
  EXPECT_NEAR(run.outputs[0].data()[0], 1.267714436, 1e-6);
}

TEST(CrossEntropy, CountsEveryRowWhenPadIdIsUnused) {
  NodeRun run("loss.cross_entropy", {{"pad_id", int64_t{-1}}}, {ce_logits(), ce_targets()});
  run.forward();
  EXPECT_NEAR(run.outputs[0].data()[0], 0.829781114, 1e-6);
  EXPECT_EQ(run.outputs[1].data()[0], 3.0f);
  EXPECT_EQ(run.outputs[2].data()[0], 2.0f);
}

TEST(CrossEntropy, GradientIsSoftmaxMinusSmoothedTargetOverTokens) {
  NodeRun run("loss.cross_entropy", {{"label_smoothing", 0.1}}, {ce_logits(), ce_targets()});
  run.forward();
  const std::vector<Tensor> grads = run.backward({Tensor({}, {1.0f}), Tensor({}, {0.0f}), Tensor({}, {0.0f})}, {true, false});
  const std::vector<float> g = values(grads[0]);
  EXPECT_NEAR(g[0], 0.004338366, 1e-6);
  EXPECT_NEAR(g[1], 0.040430933, 1e-6);
  EXPECT_NEAR(g[2], -0.044769299, 1e-6);
  for (int j = 6; j < 9; ++j) EXPECT_EQ(g[j], 0.0f) << "the padding row takes no gradient";
}

TEST(CrossEntropy, ATiedMaximumCountsAsAHitOnlyAtItsFirstPosition) {
  NodeRun run("loss.cross_entropy", {{"pad_id", int64_t{-1}}},
              {Tensor({3, 3}, {0.5f, 0.5f, -1, 0.5f, 0.5f, -1, 0, 2, 2}), Tensor({3}, {1, 0, 1})});
  run.forward();
  EXPECT_EQ(run.outputs[2].data()[0], 2.0f);  // row 0 misses (argmax 0); rows 1 and 2 hit
}

TEST(CrossEntropy, AllPaddingGivesZeroLossAndZeroTokens) {
  NodeRun run("loss.cross_entropy", {}, {ce_logits(), Tensor({3}, {0, 0, 0})});
  run.forward();
  EXPECT_EQ(values(run.outputs[0])[0], 0.0f);
  EXPECT_EQ(values(run.outputs[1])[0], 0.0f);
}

TEST(CrossEntropy, RejectsATargetOutsideTheVocabulary) {
  NodeRun run("loss.cross_entropy", {}, {ce_logits(), Tensor({3}, {2, 3, 0})});
  try {
    run.forward();
    FAIL() << "a target of 3 with V = 3 was accepted";
  } catch (const std::exception& e) {
    EXPECT_STREQ(e.what(), "loss.cross_entropy: target 3 at position 1 is outside [0, 3) (vocabulary size V = 3)");
  }
}

TEST(CrossEntropy, RejectsTargetsNotShapedLikeTheLogits) {
  try {
    NodeRun run("loss.cross_entropy", {}, {Tensor({2, 3, 5}), Tensor({2, 4})});
    FAIL();
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(),
                 "loss.cross_entropy: targets must be logits' shape without the last dimension; logits are [2, 3, 5], "
                 "targets are [2, 4]");
  }
}

TEST(CrossEntropy, RejectsLabelSmoothingAboveOne) {
  EXPECT_THAT([] { registry().create("loss.cross_entropy", {{"label_smoothing", 1.5}}); },
              ::testing::ThrowsMessage<RegistryError>(HasSubstr("label_smoothing must be in [0, 1], got 1.5")));
}

// ---- dropout ------------------------------------------------------------------------------------

constexpr int64_t kDropoutSize = 1 << 18;  // large enough that two threads split the work

std::vector<float> dropout_output(uint64_t seed, int threads, float p = 0.1f, bool training = true) {
  NodeRun run("dropout", {{"p", double(p)}}, {Tensor({kDropoutSize}, 1.0f)});
  run.step.training = training;
  run.step.seed = seed;
  tbb::task_arena arena(threads);
  arena.execute([&] { run.forward(); });
  return values(run.outputs[0]);
}

TEST(Dropout, MaskIsTheSameForOneAndTwoThreads) {
  EXPECT_EQ(dropout_output(42, 1), dropout_output(42, 2));
}

TEST(Dropout, SameSeedSameMaskAcrossCalls) { EXPECT_EQ(dropout_output(42, 2), dropout_output(42, 2)); }

TEST(Dropout, AnotherSeedGivesAnotherMask) {
  const std::vector<float> a = dropout_output(42, 2), b = dropout_output(43, 2);
  int64_t differ = 0;
  for (int64_t i = 0; i < kDropoutSize; ++i) differ += a[i] != b[i];
  // Two independent masks with p = 0.1 differ where exactly one drops: 2·0.1·0.9 = 18% of elements.
  EXPECT_NEAR(double(differ) / kDropoutSize, 0.18, 0.01);
}

// A shard of a batch (data-parallel training) draws the mask the whole batch draws for its rows,
// forward and backward; without the shard position it would draw another.
TEST(Dropout, AShardDrawsTheWholeBatchsMaskForItsRows) {
  const int64_t rows = 6, per_row = 3 * 8;
  Tensor whole_x({rows, 3, 8});
  for (int64_t i = 0; i < whole_x.numel(); ++i) whole_x.data()[i] = 1.0f + 0.01f * static_cast<float>(i);
  NodeRun whole("dropout", {{"p", 0.5}}, {whole_x});
  whole.step = {true, 99, nullptr};
  whole.forward();
  for (int64_t first : {int64_t{1}, int64_t{4}}) {
    Tensor shard_x({2, 3, 8});
    std::copy(whole_x.data() + first * per_row, whole_x.data() + (first + 2) * per_row, shard_x.data());
    NodeRun shard("dropout", {{"p", 0.5}}, {shard_x});
    shard.step = {true, 99, nullptr, first, 2};
    shard.forward();
    const std::vector<float> expected(whole.outputs[0].data() + first * per_row, whole.outputs[0].data() + (first + 2) * per_row);
    EXPECT_EQ(values(shard.outputs[0]), expected) << "rows from " << first;
    const std::vector<Tensor> g = shard.backward({Tensor({2, 3, 8}, 1.0f)}, {true});
    for (int64_t i = 0; i < g[0].numel(); ++i) EXPECT_EQ(g[0].data()[i] != 0.0f, expected[i] != 0.0f) << i;
    NodeRun unplaced("dropout", {{"p", 0.5}}, {shard_x});
    unplaced.step = {true, 99, nullptr};
    unplaced.forward();
    EXPECT_NE(values(unplaced.outputs[0]), expected) << "rows from " << first;
  }
}

TEST(Dropout, DropsAFractionCloseToPAndScalesTheRest) {
  for (float p : {0.1f, 0.3f, 0.5f}) {
    const std::vector<float> y = dropout_output(7, 2, p);
    int64_t dropped = 0;
    for (float v : y) {
      if (v == 0.0f) ++dropped;
      else ASSERT_FLOAT_EQ(v, 1.0f / (1.0f - p));
    }
    // Binomial standard deviation sqrt(p(1-p)/n) ≤ 0.001 here; allow five of them.
    EXPECT_NEAR(double(dropped) / kDropoutSize, p, 0.005) << "p = " << p;
  }
}

// The mask is its definition, uniform01(seed, i) >= p, element for element, including values of p
// whose p·2^24 is not a whole number (the node compares the random bits with an integer threshold).
TEST(Dropout, MaskIsUniform01AtLeastP) {
  for (float p : {0.1f, 0.3f, 1.0f / 3.0f, 0.5f, 0.999f}) {
    const std::vector<float> y = dropout_output(11, 2, p);
    for (int64_t i = 0; i < kDropoutSize; ++i) {
      const float expected = basic::uniform01(11, static_cast<uint64_t>(i)) >= p ? 1.0f / (1.0f - p) : 0.0f;
      ASSERT_EQ(y[i], expected) << "p = " << p << ", element " << i;
    }
  }
}

TEST(Dropout, IsTheIdentityOutsideTraining) {
  for (float v : dropout_output(7, 2, 0.5f, /*training=*/false)) ASSERT_EQ(v, 1.0f);
}

TEST(Dropout, BackwardRegeneratesTheForwardMask) {
  NodeRun run("dropout", {{"p", 0.25}}, {Tensor({kDropoutSize}, 1.0f)});
  run.step = {true, 99, nullptr};
  run.forward();
  const std::vector<Tensor> grads = run.backward({Tensor({kDropoutSize}, 1.0f)}, {true});
  EXPECT_EQ(values(grads[0]), values(run.outputs[0]));
}

TEST(Dropout, RejectsPOutsideZeroToOne) {
  EXPECT_THAT([] { registry().create("dropout", {{"p", 1.0}}); },
              ::testing::ThrowsMessage<RegistryError>(HasSubstr("dropout: p must be in [0, 1), got 1")));
  EXPECT_THAT([] { registry().create("dropout", {{"p", -0.1}}); },
              ::testing::ThrowsMessage<RegistryError>(HasSubstr("dropout: p must be in [0, 1), got -0.1")));
}

// ---- embedding ----------------------------------------------------------------------------------

TEST(Embedding, LooksUpScaledRows) {
  NodeRun run("embedding", {{"vocab", int64_t{3}}, {"dim", int64_t{2}}, {"scale", 2.0}}, {Tensor({1, 2}, {2, 0})});
  std::vector<float> table = {1, 2, 3, 4, 5, 6};
  std::copy(table.begin(), table.end(), run.params[0].data());
  run.forward();
  EXPECT_EQ(values(run.outputs[0]), (std::vector<float>{10, 12, 2, 4}));
  EXPECT_EQ(run.outputs[0].shape(), (Shape{1, 2, 2}));
}

TEST(Embedding, RejectsAnIdOutsideTheVocabulary) {
  NodeRun run("embedding", {{"vocab", int64_t{5}}, {"dim", int64_t{2}}}, {Tensor({2, 2}, {1, 4, 0, 7})});
  try {
    run.forward();
    FAIL() << "id 7 with vocab 5 was accepted";
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "embedding: id 7 at position 3 is outside [0, 5) (vocab = 5)");
  }
}

TEST(Embedding, RejectsNegativeAndFractionalIds) {
  for (float bad : {-1.0f, 1.5f}) {
    NodeRun run("embedding", {{"vocab", int64_t{5}}, {"dim", int64_t{2}}}, {Tensor({1}, {bad})});
    EXPECT_THROW(run.forward(), std::out_of_range) << bad;
  }
}

TEST(Embedding, SharesItsTableWithTheProjection) {
  NodeRun lookup("embedding", {{"vocab", int64_t{11}}, {"dim", int64_t{4}}}, {Tensor({2, 3})});
  NodeRun project("embedding.project", {{"vocab", int64_t{11}}, {"dim", int64_t{4}}}, {Tensor({2, 3, 4})});
  ASSERT_EQ(lookup.shapes.params.size(), 1u);
  ASSERT_EQ(project.shapes.params.size(), 1u);
  EXPECT_EQ(lookup.shapes.params[0].name, project.shapes.params[0].name);
  EXPECT_EQ(lookup.shapes.params[0].shape, project.shapes.params[0].shape);
  EXPECT_EQ(project.shapes.outputs[0], (Shape{2, 3, 11}));
}

TEST(Embedding, ProjectionRejectsTheWrongWidth) {
  EXPECT_THAT([] { NodeRun run("embedding.project", {{"vocab", int64_t{11}}, {"dim", int64_t{4}}}, {Tensor({2, 3, 5})}); },
              ::testing::ThrowsMessage<ShapeError>(
                  HasSubstr("embedding.project: x's last dimension must be dim = 4, got shape [2, 3, 5]")));
}

// ---- masks, add, linear -------------------------------------------------------------------------

TEST(Masks, PaddingMaskMarksPadIds) {
  NodeRun run("mask.padding", {}, {Tensor({2, 3}, {5, 0, 2, 0, 0, 9})});
  run.forward();
  EXPECT_EQ(values(run.outputs[0]), (std::vector<float>{1, 0, 1, 0, 0, 1}));
  NodeRun other("mask.padding", {{"pad_id", int64_t{2}}}, {Tensor({1, 3}, {2, 0, 1})});
  other.forward();
  EXPECT_EQ(values(other.outputs[0]), (std::vector<float>{0, 1, 1}));
}

TEST(Masks, CausalMaskKeepsKeysAtOrBeforeTheQuery) {
  NodeRun run("mask.causal", {}, {Tensor({2, 3}, {4, 4, 4, 4, 4, 4})});
  run.forward();
  EXPECT_EQ(run.outputs[0].shape(), (Shape{3, 3}));
  EXPECT_EQ(values(run.outputs[0]), (std::vector<float>{1, 0, 0, 1, 1, 0, 1, 1, 1}));
}

TEST(Add, BroadcastsATrailingOperand) {
  NodeRun run("add", {}, {Tensor({2, 2}, {1, 2, 3, 4}), Tensor({2}, {10, 20})});
  run.forward();
  EXPECT_EQ(values(run.outputs[0]), (std::vector<float>{11, 22, 13, 24}));
}

TEST(Add, RejectsShapesThatDoNotBroadcast) {
  EXPECT_THAT([] { NodeRun run("add", {}, {Tensor({2, 3}), Tensor({2})}); },
              ::testing::ThrowsMessage<ShapeError>(HasSubstr("a is [2, 3], b is [2]")));
}

TEST(Linear, ComputesXWPlusBias) {
  NodeRun run("linear", {{"out", int64_t{2}}}, {Tensor({1, 3}, {1, 2, 3})});
  std::vector<float> w = {1, 0, 0, 1, 1, 1};  // [in = 3, out = 2]
  std::copy(w.begin(), w.end(), run.params[0].data());
  run.params[1].data()[0] = 0.5f, run.params[1].data()[1] = -1.0f;
  run.forward();
  EXPECT_EQ(values(run.outputs[0]), (std::vector<float>{4.5f, 4.0f}));
  NodeRun no_bias("linear", {{"out", int64_t{2}}, {"bias", false}}, {Tensor({1, 3})});
  EXPECT_EQ(no_bias.shapes.params.size(), 1u);
}

}  // namespace
}  // namespace attnlab
