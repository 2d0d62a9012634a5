// Golden diagnostics: every tests/dsl/broken/NAME.attn is checked (as `attnlab check` would) and its
// formatted errors compared with NAME.expected. A first line "// args: --set K=V --use S=T" gives
// overrides. Run with ATTNLAB_UPDATE_GOLDEN=1 to rewrite the .expected files (then review them).
#include "../support/installed_plugins.h"
#include "dsl/experiment.h"
#include "node/plugin_loader.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace attnlab::dsl {
namespace {

const Registry& registry() { return test::plugins_beside_executable(); }

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> broken_specs() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(DSL_TEST_DIR) / "broken"))
    if (entry.path().extension() == ".attn") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, DiagnosticsMatchExpected) {
  // Paths in messages are relative to tests/dsl, as a user in that directory would see them.
  std::filesystem::current_path(DSL_TEST_DIR);
  const std::filesystem::path spec = std::filesystem::path("broken") / (GetParam() + ".attn");
  const std::filesystem::path expected_path = std::filesystem::path("broken") / (GetParam() + ".expected");
  std::vector<std::string> sets, uses;
  std::istringstream first_line(read(spec).substr(0, read(spec).find('\n')));
  std::string word;
  if (first_line >> word && word == "//" && first_line >> word && word == "args:") {
    while (first_line >> word) {
      std::string value;
      first_line >> value;
      (word == "--use" ? uses : sets).push_back(value);
    }
  }
  std::string actual;
  try {
    elaborate_target(spec, registry(), sets, uses);
    actual = "(no errors)\n";
  } catch (const DslError& e) {
    actual = e.what();
  }
  if (std::getenv("ATTNLAB_UPDATE_GOLDEN")) {
    std::ofstream(expected_path) << actual;
    GTEST_SKIP() << "rewrote " << expected_path;
  }
  ASSERT_TRUE(std::filesystem::exists(expected_path)) << "missing " << expected_path;
  EXPECT_EQ(actual, read(expected_path)) << "spec " << spec;
  EXPECT_NE(actual, "(no errors)\n") << "a broken spec was accepted";
}

INSTANTIATE_TEST_SUITE_P(Broken, Golden, ::testing::ValuesIn(broken_specs()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace attnlab::dsl
