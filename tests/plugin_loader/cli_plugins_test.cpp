// `attnlab plugins`: the JSON contract, and a plugin that cannot load ends the command with one
// line naming the file and exit code 2.
#include "node/plugin_api.h"
#include "node/plugin_loader.h"

#include "../support/run_command.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace fs = std::filesystem;
using attnlab::test::run_command;

namespace {
const std::string kExe = ATTNLAB_EXE;
const fs::path kPluginDir = TEST_PLUGIN_DIR;

fs::path dir_with(const std::string& plugin) {
  fs::path dir = attnlab::test::make_temp_dir();
  fs::copy_file(kPluginDir / ("lib" + plugin + ".so"), dir / ("lib" + plugin + ".so"));
  return dir;
}
}  // namespace

TEST(CliPlugins, JsonListsTypesWithTheirLibraryAndAttributes) {
  const fs::path dir = dir_with("attnlab_plugin_test_scale");
  auto r = run_command(kExe + " plugins --json --plugin-path " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(R"({"attrs":[{"default":2.0,"doc":"the multiplier","name":"factor","type":"float"}],)"
                       R"("doc":"y = factor * x","inputs":[{"doc":"any tensor","name":"x","optional":false}],)"
                       R"("name":"test.scale","outputs":[{"doc":"same shape as x","name":"y","optional":false}],)"
                       R"("plugin":"libattnlab_plugin_test_scale.so"})"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.rfind("{\"types\":[", 0), 0u);
  fs::remove_all(dir);
}

TEST(CliPlugins, EnvironmentPathIsSearched) {
  const fs::path dir = dir_with("attnlab_plugin_test_scale");
  auto r = run_command("ATTNLAB_PLUGIN_PATH=" + dir.string() + " " + kExe + " plugins");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("test.scale  (libattnlab_plugin_test_scale.so)"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

TEST(CliPlugins, APluginThatCannotLoadExitsWithCode2AndOneLine) {
  const fs::path dir = dir_with("attnlab_plugin_test_wrong_abi");
  auto r = run_command(kExe + " plugins --plugin-path " + dir.string());
  EXPECT_EQ(r.exit_code, attnlab::kPluginErrorExit);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "attnlab: error: plugin " + (dir / "libattnlab_plugin_test_wrong_abi.so").string() +
                       ": built for plugin ABI version " + std::to_string(ATTNLAB_ABI_VERSION + 41) +
                       ", but this attnlab needs version " + std::to_string(ATTNLAB_ABI_VERSION) +
                       "; rebuild the plugin against this attnlab's headers\n");
  fs::remove_all(dir);
}

TEST(CliPlugins, VersionAndHelp) {
  auto version = run_command(kExe + " --version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("attnlab ", 0), 0u) << version.out;
  auto help = run_command(kExe + " plugins --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--plugin-path"), std::string::npos);
  auto bad_flag = run_command(kExe + " plugins --no-such-flag");
  EXPECT_NE(bad_flag.exit_code, 0);
  EXPECT_NE(bad_flag.err.find("--no-such-flag"), std::string::npos) << bad_flag.err;
}
