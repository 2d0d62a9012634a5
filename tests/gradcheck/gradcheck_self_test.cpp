// tests/gradcheck/gradcheck_self_test.cpp — the gradient check itself can fail: a type without
// examples, and deliberately broken node types (registered as builtins into a private registry)
// are each rejected with a message that says what is wrong. A correct type passes.
#include "check/gradcheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

namespace attnlab::gradcheck {
namespace {

// y = 2·x + w (w a parameter shaped like x's last dim), with a switchable bug.
class ScaleShift final : public Node {
 public:
  explicit ScaleShift(const Attrs& attrs) : bug_(attrs.get_string("bug")) {}
  NodeShapes infer(std::span<const Shape> in) const override { return {{in[0]}, {{"w", {in[0].back()}}}, {}, {}}; }
  void forward(const ForwardContext& ctx) const override {
    const int64_t n = ctx.inputs[0].numel(), d = ctx.params[0].numel();
    for (int64_t i = 0; i < n; ++i) {
      if (bug_ == "unwritten_output" && i == n - 1) continue;
      ctx.outputs[0].data()[i] = 2.0f * ctx.inputs[0].data()[i] + ctx.params[0].data()[i % d];
    }
    if (bug_ == "nondeterministic") ctx.outputs[0].data()[0] += static_cast<float>(++calls_) * 1e-3f;
  }
  void backward(const BackwardContext& ctx) const override {
    const int64_t n = ctx.inputs[0].numel(), d = ctx.params[0].numel();
    const float factor = bug_ == "wrong_factor" ? 3.0f : 2.0f;
    if (ctx.input_grads[0].present())
      for (int64_t i = 0; i < n; ++i) {
        float& g = ctx.input_grads[0].data()[i];
        if (bug_ == "assigns_input_grad") g = factor * ctx.output_grads[0].data()[i];
        else g += factor * ctx.output_grads[0].data()[i];
      }
    float* dw = ctx.param_grads[0].data();
    if (bug_ != "adds_param_grad")
      for (int64_t j = 0; j < d; ++j) dw[j] = 0.0f;
    for (int64_t i = 0; i < n; ++i) dw[i % d] += ctx.output_grads[0].data()[i];
  }

 private:
  std::string bug_;
  mutable int calls_ = 0;
};

NodeSchema scale_shift_schema(std::vector<GradCheckExample> examples) {
  return {"test.scale_shift", "y = 2x + w", {{"x", "input"}}, {{"y", "output"}},
          {{"bug", AttrType::String, std::string("none"), "which bug to exhibit"}}, std::move(examples)};
}

NodeFactory scale_shift_factory() {
  return [](const Attrs& attrs, const Registry&) -> std::unique_ptr<Node> { return std::make_unique<ScaleShift>(attrs); };
}

std::string joined(const std::vector<std::string>& failures) {
  std::string out;
  for (const std::string& f : failures) out += f + "\n";
  return out;
}

TEST(GradCheckSuite, FailsATypeWithoutExamples) {
  Registry registry;
  registry.add(scale_shift_schema({}), scale_shift_factory(), nullptr, "builtin");
  const std::vector<Case> all = cases(registry);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].test_name, "test_scale_shift__no_examples");
  const std::vector<std::string> failures = check_case(registry, all[0]);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0],
            "node type 'test.scale_shift' (from builtin) has no gradient-check examples; every node type must list at "
            "least one in its schema");
}

struct BugCase {
  const char* bug;
  const char* expected;  // a part of the failure message
};
void PrintTo(const BugCase& c, std::ostream* out) { *out << c.bug; }

class GradCheckCatches : public ::testing::TestWithParam<BugCase> {};

TEST_P(GradCheckCatches, BrokenNode) {
  Registry registry;
  registry.add(scale_shift_schema({{"ex", Attrs{{"bug", std::string(GetParam().bug)}}, {CheckInput::real({3, 4})}}}),
               scale_shift_factory(), nullptr, "builtin");
  const std::vector<Case> all = cases(registry);
  ASSERT_EQ(all.size(), 1u);
  const std::string failures = joined(check_case(registry, all[0]));
  EXPECT_NE(failures.find(GetParam().expected), std::string::npos) << "failures were:\n" << failures;
}

INSTANTIATE_TEST_SUITE_P(
    , GradCheckCatches,
    ::testing::Values(BugCase{"wrong_factor", "gradient of input 'x' differs from central differences"},
                      BugCase{"assigns_input_grad", "gradient of input 'x' differs from central differences"},
                      BugCase{"adds_param_grad", "did not assign every element of the gradient of parameter 'w'"},
                      BugCase{"unwritten_output", "forward left output 'y' element [2, 3] unwritten"},
                      BugCase{"nondeterministic", "forward is not deterministic"}),
    [](const ::testing::TestParamInfo<BugCase>& info) { return std::string(info.param.bug); });

TEST(GradCheckSuite, PassesACorrectType) {
  Registry registry;
  registry.add(scale_shift_schema({{"ex", {}, {CheckInput::real({3, 4})}}}), scale_shift_factory(), nullptr, "builtin");
  const std::vector<Case> all = cases(registry);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].test_name, "test_scale_shift__ex");
  EXPECT_EQ(joined(check_case(registry, all[0])), "");
}

TEST(GradCheckSuite, ReportsAnExceptionFromTheNode) {
  Registry registry;
  // An example whose input shape the node cannot take (ScaleShift reads the last dimension).
  registry.add(scale_shift_schema({{"bad_attr", Attrs{{"bug", int64_t{3}}}, {CheckInput::real({2})}}}),
               scale_shift_factory(), nullptr, "builtin");
  const std::string failures = joined(check_case(registry, cases(registry)[0]));
  EXPECT_NE(failures.find("test.scale_shift / bad_attr: threw: test.scale_shift: attribute 'bug' must be string"),
            std::string::npos)
      << failures;
}

// y = x + position (row s of [B, T, D] at position s, or DecodeState::position + s while decoding),
// with a switchable bug: "ignores_position" forgets the decode position; "refuses" keeps a cache
// but throws whenever it is decoded.
class AddPosition final : public Node {
 public:
  explicit AddPosition(const Attrs& attrs) : bug_(attrs.get_string("bug")) {}
  NodeShapes infer(std::span<const Shape> in) const override { return {{in[0]}, {}, {}, {}}; }
  void forward(const ForwardContext& ctx) const override {
    if (ctx.step.decode && bug_ == "refuses") throw std::runtime_error("cannot decode");
    const int64_t offset = ctx.step.decode && bug_ != "ignores_position" ? ctx.step.decode->position : 0;
    const TensorView& x = ctx.inputs[0];
    const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
    for (int64_t i = 0; i < B * T * D; ++i)
      ctx.outputs[0].data()[i] = x.data()[i] + static_cast<float>(offset + (i / D) % T);
  }
  void backward(const BackwardContext& ctx) const override {
    if (ctx.input_grads[0].present()) ctx.input_grads[0].flat() += ctx.output_grads[0].flat();
  }
  std::vector<Shape> cache_shapes(std::span<const Shape> in, int64_t max_len) const override {
    if (bug_ == "refuses") return {{in[0][0], max_len}};
    return {};
  }

 private:
  std::string bug_;
};

Registry& add_position_registry(const std::string& bug) {
  static std::map<std::string, Registry> registries;
  Registry& registry = registries[bug];
  if (registry.type_names().empty())
    registry.add({"test.add_position", "y = x + position", {{"x", "input"}}, {{"y", "output"}},
                  {{"bug", AttrType::String, std::string(bug), "which bug to exhibit"}},
                  {{"ex", {}, {CheckInput::real({2, 4, 3})}}}},
                 [](const Attrs& attrs, const Registry&) -> std::unique_ptr<Node> { return std::make_unique<AddPosition>(attrs); },
                 nullptr, "builtin");
  return registry;
}

std::string decode_failures(const std::string& bug) {
  Registry& registry = add_position_registry(bug);
  for (const Case& c : cases(registry))
    if (c.decode) return joined(check_case(registry, c));
  return "no decode case";
}

TEST(DecodeCheck, PassesANodeThatReadsThePosition) { EXPECT_EQ(decode_failures("none"), ""); }

TEST(DecodeCheck, CatchesANodeThatIgnoresTheDecodePosition) {
  EXPECT_NE(decode_failures("ignores_position").find(
                "test.add_position / ex: incremental decoding differs from the full pass at position 1, output 'y' "
                "element [0, 0, 0]"),
            std::string::npos)
      << decode_failures("ignores_position");
}

TEST(DecodeCheck, FailsACachingTypeWithNoDecodableExample) {
  EXPECT_EQ(decode_failures("refuses"),
            "test.add_position: asks for cache buffers (cache_shapes), but none of its examples decodes incrementally; "
            "add an example that does (e.g. causal self-attention)\n");
}

}  // namespace
}  // namespace attnlab::gradcheck
