#include "node/plugin_loader.h"

#include "node/plugin_api.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

namespace attnlab {

namespace fs = std::filesystem;

namespace {

// Why the dynamic loader refuses `path`. Boost.DLL reports an error code ("Bad file descriptor"
// for a file of random bytes) and drops dlerror()'s text ("invalid ELF header", "file too short"),
// so the library is opened once more with dlopen to read it. dlerror() starts with the path;
// only what follows is kept.
std::string dlopen_reason(const fs::path& path, const std::string& fallback) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle) {
    ::dlclose(handle);
    return fallback;
  }
  std::string reason = ::dlerror();
  const std::string prefix = path.string() + ": ";
  if (reason.rfind(prefix, 0) == 0) reason = reason.substr(prefix.size());
  return reason;
}

}  // namespace

void load_plugin(Registry& registry, const fs::path& path) {
  const std::string name = path.filename().string();
  auto fail = [&](const std::string& reason) { throw PluginError("plugin " + path.string() + ": " + reason); };

  std::error_code ec;
  if (!fs::exists(path, ec)) fail("no such file");
  if (fs::is_directory(path, ec)) fail("is a directory, not a shared library");

  auto library = std::make_shared<boost::dll::shared_library>();
  boost::system::error_code load_error;
  library->load(boost::dll::fs::path(path.string()),
                boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, load_error);
  if (load_error) {
    fail("cannot be loaded as a shared library (" + dlopen_reason(path, load_error.message()) + ")");
  }
  if (!library->has(ATTNLAB_PLUGIN_ABI_SYMBOL))
    fail("not an attnlab plugin (it exports no " ATTNLAB_PLUGIN_ABI_SYMBOL " entry point)");
  const uint32_t version = library->get<uint32_t()>(ATTNLAB_PLUGIN_ABI_SYMBOL)();
  if (version != ATTNLAB_ABI_VERSION)
    fail("built for plugin ABI version " + std::to_string(version) + ", but this attnlab needs version " +
         std::to_string(ATTNLAB_ABI_VERSION) + "; rebuild the plugin against this attnlab's headers");
  if (!library->has(ATTNLAB_PLUGIN_REGISTER_SYMBOL))
    fail("not an attnlab plugin (it exports no " ATTNLAB_PLUGIN_REGISTER_SYMBOL " entry point)");

  PluginRegistrar registrar;
  try {
    library->get<void(PluginRegistrar&)>(ATTNLAB_PLUGIN_REGISTER_SYMBOL)(registrar);
  } catch (const std::exception& e) {
    fail(std::string("failed while registering its node types: ") + e.what());
  } catch (...) {
    fail("failed while registering its node types: unknown exception");
  }

  // Check everything before adding anything, so that a failing plugin registers nothing.
  std::set<std::string> names;
  for (const auto& p : registrar.pending()) {
    const std::string& type = p.schema.name;
    if (type.empty()) fail("registers a node type with an empty name");
    if (!names.insert(type).second) fail("registers node type '" + type + "' twice");
    if (registry.contains(type))
      throw PluginError("duplicate node type '" + type + "': provided by both " + registry.origin(type) + " and " + name);
  }
  std::shared_ptr<void> keep_alive = library;
  for (auto& p : registrar.pending()) registry.add(std::move(p.schema), std::move(p.factory), keep_alive, name);
}

std::vector<fs::path> plugin_search_path(const std::vector<std::string>& plugin_path_flags) {
  std::vector<fs::path> dirs;
  boost::system::error_code ec;
  auto exe_dir = boost::dll::program_location(ec).parent_path();
  if (!ec) {
    dirs.emplace_back(exe_dir.string());
    dirs.emplace_back((fs::path(exe_dir.string()) / ".." / "lib" / "attnlab" / "plugins").lexically_normal());
  }
  for (const std::string& d : plugin_path_flags) dirs.emplace_back(d);
  if (const char* env = std::getenv("ATTNLAB_PLUGIN_PATH")) {
    std::stringstream entries(env);
    std::string entry;
    while (std::getline(entries, entry, ':'))
      if (!entry.empty()) dirs.emplace_back(entry);
  }
  return dirs;
}

std::vector<fs::path> load_plugins(Registry& registry, const std::vector<fs::path>& dirs) {
  std::vector<fs::path> loaded;
  std::set<std::string> seen;
  for (const fs::path& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string file = entry.path().filename().string();
      if (file.rfind("libattnlab_plugin_", 0) == 0 && entry.path().extension() == ".so") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      if (!seen.insert(file.filename().string()).second) continue;
      load_plugin(registry, file);
      loaded.push_back(file);
    }
  }
  return loaded;
}

}  // namespace attnlab
