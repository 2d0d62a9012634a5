// tests/gradcheck/gradcheck_test.cpp — the registry-driven gradient check: every node type of
// every plugin found next to this executable, every example in its schema. Test names are
// GradCheck/<type>__<example> with non-alphanumerics as '_', e.g. GradCheck/embedding_project__tied.
#include "gradcheck.h"

#include "node/plugin_loader.h"

#include <gtest/gtest.h>

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
  if (!p.error.empty()) out.push_back({"", -1, "plugin_loading", p.error});
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

}  // namespace
}  // namespace attnlab::gradcheck
