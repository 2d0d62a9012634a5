// tests/gradcheck/gradcheck_test.cpp — the registry-driven gradient check: every node type of
// every plugin found next to this executable, every example in its schema. Test names are
// GradCheck/<type>__<example> with non-alphanumerics as '_', e.g. GradCheck/embedding_project__tied.
#include "check/gradcheck.h"

#include "node/plugin_loader.h"

#include <gtest/gtest.h>

#include <set>

namespace attnlab::gradcheck {
namespace {

// The registry lives for the whole process: loaded libraries must outlive every test.
struct LoadedPlugins {
  Registry registry;
  std::string error;
  LoadedPlugins() {
    try {
      if (load_plugins(registry, plugin_search_path({})).empty())
        error = "no plugin libraries (libattnlab_plugin_*.so) were found next to the test executable";
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
};

LoadedPlugins& plugins() {
  static LoadedPlugins loaded;
  return loaded;
}

std::vector<Case> all_cases() {
  LoadedPlugins& p = plugins();
  std::vector<Case> out = cases(p.registry);
  if (!p.error.empty()) out.push_back({"", -1, "plugin_loading", p.error, "", false});
  return out;
}

class GradCheck : public ::testing::TestWithParam<Case> {};

TEST_P(GradCheck, MatchesCentralDifferences) {
  for (const std::string& failure : check_case(plugins().registry, GetParam())) ADD_FAILURE() << failure;
}

INSTANTIATE_TEST_SUITE_P(, GradCheck, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.test_name; });

// The basic plugin must be among those checked: without it this suite would silently cover less.
TEST(GradCheckCoverage, BasicTypesAreChecked) {
  for (const char* type : {"embedding", "embedding.project", "linear", "add", "dropout", "mask.padding", "mask.causal",
                           "loss.cross_entropy"})
    EXPECT_TRUE(plugins().registry.contains(type)) << type << " is not registered by any plugin next to the test";
}

// Positional schemes are checked inside attention, and decoding against the full pass, from the
// registry: no scheme or attention type is listed here except to prove that the cases exist.
TEST(GradCheckCoverage, SchemesAreComposedIntoAttentionAndDecodingIsChecked) {
  std::set<std::string> names;
  for (const Case& c : cases(plugins().registry)) names.insert(c.test_name);
  for (const char* name : {"attention_scaled_dot__causal_attribute__with_posenc_rotary",
                           "attention_additive__causal__with_posenc_alibi",
                           "attention_grouped_query__tiled_causal_padding__with_posenc_t5",
                           "attention_scaled_dot__decodes_incrementally",
                           "attention_local__decodes_incrementally__with_posenc_t5",
                           "posenc_sinusoidal__decodes_incrementally"})
    EXPECT_EQ(names.count(name), 1u) << name;
  EXPECT_EQ(names.count("attention_additive__causal__with_posenc_rotary"), 0u) << "a refused combination was kept";
}

}  // namespace
}  // namespace attnlab::gradcheck
