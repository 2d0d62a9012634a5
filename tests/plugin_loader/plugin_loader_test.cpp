// The plugin loader: each way a library can fail to load gives one clear line naming the file,
// a failing library registers nothing, and a library stays loaded while its nodes live.
#include "node/plugin_api.h"
#include "node/plugin_loader.h"

#include "../support/run_command.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace attnlab;

namespace {

const fs::path kPluginDir = TEST_PLUGIN_DIR;

fs::path test_plugin(const std::string& name) { return kPluginDir / ("lib" + name + ".so"); }

std::string load_error(Registry& registry, const fs::path& path) {
  try {
    load_plugin(registry, path);
  } catch (const PluginError& e) {
    return e.what();
  }
  return "(loaded without error)";
}

bool library_is_loaded(const fs::path& path) {
  // RTLD_NOLOAD only looks; it still takes a reference when it finds the library, so give it back.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!handle) return false;
  dlclose(handle);
  return true;
}

}  // namespace

TEST(PluginLoader, LoadsAPluginAndRecordsWhereEachTypeCameFrom) {
  Registry registry;
  load_plugin(registry, test_plugin("attnlab_plugin_test_scale"));
  ASSERT_TRUE(registry.contains("test.scale"));
  EXPECT_EQ(registry.origin("test.scale"), "libattnlab_plugin_test_scale.so");
  EXPECT_EQ(registry.schema("test.scale").doc, "y = factor * x");
}

TEST(PluginLoader, MissingFileIsNamed) {
  Registry registry;
  EXPECT_EQ(load_error(registry, kPluginDir / "libattnlab_plugin_nowhere.so"),
            "plugin " + (kPluginDir / "libattnlab_plugin_nowhere.so").string() + ": no such file");
}

TEST(PluginLoader, AFileThatIsNotASharedLibraryIsRefused) {
  const fs::path dir = test::make_temp_dir();
  const fs::path fake = dir / "libattnlab_plugin_fake.so";
  std::ofstream(fake) << "this is a text file, not an ELF shared object\n";
  Registry registry;
  const std::string message = load_error(registry, fake);
  EXPECT_EQ(message.rfind("plugin " + fake.string() + ": cannot be loaded as a shared library (", 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  fs::remove_all(dir);
}

TEST(PluginLoader, ASharedLibraryWithoutEntryPointsIsNotAPlugin) {
  Registry registry;
  const fs::path path = test_plugin("attnlab_test_no_entry");
  EXPECT_EQ(load_error(registry, path),
            "plugin " + path.string() + ": not an attnlab plugin (it exports no attnlab_plugin_abi_version entry point)");
}

TEST(PluginLoader, AnotherAbiVersionIsRefusedBeforeRegistering) {
  Registry registry;
  const fs::path path = test_plugin("attnlab_plugin_test_wrong_abi");
  // The plugin's register function aborts: reaching it would kill this test.
  EXPECT_EQ(load_error(registry, path),
            "plugin " + path.string() + ": built for plugin ABI version " + std::to_string(ATTNLAB_ABI_VERSION + 41) +
                ", but this attnlab needs version " + std::to_string(ATTNLAB_ABI_VERSION) +
                "; rebuild the plugin against this attnlab's headers");
  EXPECT_TRUE(registry.type_names().empty());
}

TEST(PluginLoader, AnExceptionWhileRegisteringIsReportedAndNothingIsRegistered) {
  Registry registry;
  const fs::path path = test_plugin("attnlab_plugin_test_throwing");
  EXPECT_EQ(load_error(registry, path),
            "plugin " + path.string() + ": failed while registering its node types: table of constants is missing");
  EXPECT_FALSE(registry.contains("test.half_registered"));
}

TEST(PluginLoader, DuplicateTypeNamesNameBothLibraries) {
  Registry registry;
  load_plugin(registry, test_plugin("attnlab_plugin_test_scale"));
  EXPECT_EQ(load_error(registry, test_plugin("attnlab_plugin_test_scale_again")),
            "duplicate node type 'test.scale': provided by both libattnlab_plugin_test_scale.so and "
            "libattnlab_plugin_test_scale_again.so");
  EXPECT_EQ(registry.origin("test.scale"), "libattnlab_plugin_test_scale.so");
}

TEST(PluginLoader, TheLibraryStaysLoadedWhileANodeFromItLives) {
  const fs::path path = test_plugin("attnlab_plugin_test_scale");
  ASSERT_FALSE(library_is_loaded(path)) << "another test left it loaded";
  NodeHandle node;
  {
    Registry registry;
    load_plugin(registry, path);
    node = registry.create("test.scale", {{"factor", 3.0}});
  }  // the registry is gone; the node's code must still be there
  ASSERT_TRUE(library_is_loaded(path));
  Tensor x({4}, {1, 2, 3, 4}), y({4});
  std::vector<TensorView> inputs{x.view()}, outputs{y.view()};
  ForwardContext ctx;
  ctx.inputs = inputs;
  ctx.outputs = outputs;
  node->forward(ctx);
  EXPECT_FLOAT_EQ(y.data()[3], 12.0f);
  node = NodeHandle{};
  EXPECT_FALSE(library_is_loaded(path)) << "the last node is gone; the library should be unloaded";
}

TEST(PluginLoader, LoadsOnlyAttnlabPluginFilesFromADirectoryFirstFoundWins) {
  const fs::path first = test::make_temp_dir(), second = test::make_temp_dir();
  fs::copy_file(test_plugin("attnlab_plugin_test_scale"), first / "libattnlab_plugin_test_scale.so");
  fs::copy_file(test_plugin("attnlab_plugin_test_scale"), second / "libattnlab_plugin_test_scale.so");
  std::ofstream(first / "README.txt") << "not a plugin, ignored\n";
  fs::copy_file(test_plugin("attnlab_test_no_entry"), first / "libsomething_else.so");  // other prefix: ignored
  Registry registry;
  const auto loaded = load_plugins(registry, {first, second, first / "missing-dir"});
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0], first / "libattnlab_plugin_test_scale.so");
  fs::remove_all(first);
  fs::remove_all(second);
}

TEST(PluginLoader, SearchPathIsExecutableDirThenInstallDirThenFlagsThenEnvironment) {
  setenv("ATTNLAB_PLUGIN_PATH", "/env/one::/env/two", 1);
  const auto dirs = plugin_search_path({"/flag/a", "/flag/b"});
  unsetenv("ATTNLAB_PLUGIN_PATH");
  const fs::path exe_dir = fs::canonical("/proc/self/exe").parent_path();
  ASSERT_EQ(dirs.size(), 6u);
  EXPECT_EQ(dirs[0], exe_dir);
  EXPECT_EQ(dirs[1], exe_dir.parent_path() / "lib" / "attnlab" / "plugins");
  EXPECT_EQ(dirs[2], "/flag/a");
  EXPECT_EQ(dirs[3], "/flag/b");
  EXPECT_EQ(dirs[4], "/env/one");
  EXPECT_EQ(dirs[5], "/env/two");
}
