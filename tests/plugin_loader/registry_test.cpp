// The registry: attribute checking with defaults, and messages for unknown names.
#include "../support/error_of.h"
#include "node/registry.h"

#include <gtest/gtest.h>

using namespace attnlab;

namespace {

class NullNode final : public Node {
 public:
  explicit NullNode(const Attrs& attrs) : attrs_(attrs) {}
  NodeShapes infer(std::span<const Shape> inputs) const override { return {}; }
  void forward(const ForwardContext&) const override {}
  void backward(const BackwardContext&) const override {}
  Attrs attrs_;
};

NodeSchema schema(const std::string& name) {
  NodeSchema s;
  s.name = name;
  s.doc = "test";
  s.attrs = {{"heads", AttrType::Int, AttrValue(int64_t{8}), "number of heads"},
             {"p", AttrType::Float, AttrValue(0.1), "rate"},
             {"causal", AttrType::Bool, AttrValue(false), "mask the future"},
             {"hidden", AttrType::Int, std::nullopt, "inner width"}};
  return s;
}

Registry& test_registry() {
  static Registry registry;
  if (registry.type_names().empty()) {
    for (const char* name : {"attention.scaled_dot", "attention.additive", "norm.layer"})
      registry.add(schema(name), [](const Attrs& a, const Registry&) { return std::make_unique<NullNode>(a); }, nullptr, "builtin");
  }
  return registry;
}

std::string error_of(const std::function<void()>& f) { return attnlab::test::error_of<RegistryError>(f); }

}  // namespace

TEST(Registry, FillsDefaultsAndWidensIntToFloat) {
  Attrs resolved = test_registry().resolve_attrs("norm.layer", {{"hidden", int64_t{4}}, {"p", int64_t{0}}});
  EXPECT_EQ(resolved.get_int("heads"), 8);
  EXPECT_EQ(resolved.get_int("hidden"), 4);
  EXPECT_TRUE(std::holds_alternative<double>(resolved.get("p")));
  EXPECT_EQ(resolved.get_float("p"), 0.0);
  EXPECT_FALSE(resolved.get_bool("causal"));
}

TEST(Registry, UnknownTypeListsKnownTypesAndNearestMatch) {
  EXPECT_EQ(error_of([] { test_registry().create("attention.scaled_dpt", {}); }),
            "unknown node type 'attention.scaled_dpt'; known types: attention.additive, attention.scaled_dot, "
            "norm.layer; did you mean 'attention.scaled_dot'?");
  EXPECT_EQ(error_of([] { test_registry().schema("zzz"); }),
            "unknown node type 'zzz'; known types: attention.additive, attention.scaled_dot, norm.layer");
}

TEST(Registry, EmptyRegistrySaysNoTypesAreLoaded) {
  Registry empty;
  EXPECT_EQ(error_of([&] { empty.schema("norm.layer"); }),
            "unknown node type 'norm.layer'; no node types are loaded (are the plugins on the search path?)");
}

TEST(Registry, UnknownAttributeListsValidOnes) {
  EXPECT_EQ(error_of([] { test_registry().create("norm.layer", {{"haeds", int64_t{2}}, {"hidden", int64_t{1}}}); }),
            "norm.layer: unknown attribute 'haeds'; valid attributes: heads, p, causal, hidden; did you mean 'heads'?");
}

TEST(Registry, MistypedAttributeSaysWhatWasExpected) {
  EXPECT_EQ(error_of([] { test_registry().create("norm.layer", {{"causal", int64_t{1}}, {"hidden", int64_t{1}}}); }),
            "norm.layer: attribute 'causal' must be bool, got int 1");
  EXPECT_EQ(error_of([] { test_registry().create("norm.layer", {{"heads", 2.5}, {"hidden", int64_t{1}}}); }),
            "norm.layer: attribute 'heads' must be int, got float 2.5");
}

TEST(Registry, MissingRequiredAttributeIsNamed) {
  EXPECT_EQ(error_of([] { test_registry().create("norm.layer", {}); }),
            "norm.layer: missing required attribute 'hidden' (inner width)");
}

TEST(Registry, DuplicateNamesNameBothOrigins) {
  Registry registry;
  auto factory = [](const Attrs& a, const Registry&) { return std::make_unique<NullNode>(a); };
  registry.add(schema("ffn.relu"), factory, nullptr, "libattnlab_plugin_ffn.so");
  EXPECT_EQ(error_of([&] { registry.add(schema("ffn.relu"), factory, nullptr, "libmy_ffn.so"); }),
            "duplicate node type 'ffn.relu': provided by both libattnlab_plugin_ffn.so and libmy_ffn.so");
}

TEST(Registry, FactoryExceptionsArePrefixedWithTheType) {
  Registry registry;
  registry.add(schema("attention.local"),
               [](const Attrs&, const Registry&) -> std::unique_ptr<Node> { throw std::invalid_argument("window must be at least 1, got 0"); },
               nullptr, "builtin");
  EXPECT_EQ(error_of([&] { registry.create("attention.local", {{"hidden", int64_t{1}}}); }),
            "attention.local: window must be at least 1, got 0");
}

TEST(TypeCall, FormatsAndParsesATypeWithAttributes) {
  const Attrs attrs{{"num_buckets", int64_t{16}}, {"scale", 0.5}, {"bidirectional", false}, {"mode", std::string("c d")}};
  const std::string text = format_type_call("posenc.t5", attrs);
  EXPECT_EQ(text, "posenc.t5(bidirectional: false, mode: \"c d\", num_buckets: 16, scale: 0.5)");
  const auto [type, parsed] = parse_type_call(text);
  EXPECT_EQ(type, "posenc.t5");
  EXPECT_EQ(parsed.values(), attrs.values());
  EXPECT_EQ(format_type_call("posenc.rotary", {}), "posenc.rotary");
  EXPECT_EQ(parse_type_call("posenc.rotary").first, "posenc.rotary");
  EXPECT_TRUE(parse_type_call("posenc.rotary()").second.values().empty());
  EXPECT_EQ(std::get<double>(parse_type_call("x(a: 1e-3)").second.get("a")), 1e-3);
}

TEST(TypeCall, MalformedTextSaysWhere) {
  auto error = [](const std::string& text) {
    try {
      parse_type_call(text);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error("posenc.t5(num_buckets 16)"),
            "'posenc.t5(num_buckets 16)' at character 23: ':' is missing after 'num_buckets'; expected TYPE or TYPE(name: value, ...)");
  EXPECT_EQ(error("t(a: 1"), "'t(a: 1' at character 7: ',' or ')' is missing; expected TYPE or TYPE(name: value, ...)");
  EXPECT_EQ(error("t(a: one)"), "'t(a: one)' at character 6: 'one' is not a value; expected TYPE or TYPE(name: value, ...)");
  EXPECT_EQ(error("t(a: \"x)"), "'t(a: \"x)' at character 6: an unterminated string; expected TYPE or TYPE(name: value, ...)");
  EXPECT_EQ(error("(a: 1)"), "'(a: 1)' at character 1: no type name; expected TYPE or TYPE(name: value, ...)");
  EXPECT_EQ(error("t(a: 1) x"), "'t(a: 1) x' at character 9: text after ')'; expected TYPE or TYPE(name: value, ...)");
}

TEST(NearestMatch, OnlySuggestsPlausibleTypos) {
  EXPECT_EQ(nearest_match("posenc.rotray", {"posenc.rotary", "posenc.alibi"}), "posenc.rotary");
  EXPECT_EQ(nearest_match("completely_different", {"posenc.rotary", "posenc.alibi"}), "");
}
