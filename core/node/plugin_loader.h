// core/node/plugin_loader.h — finding and loading plugin libraries with Boost.DLL.
//
// Contract:
// - load_plugin(path) loads one library, checks its ABI version, then lets it register its node
//   types. Any failure (missing file, not a shared library, no attnlab entry points, another ABI
//   version, an exception while registering, a duplicate type name) throws PluginError whose
//   message is one line naming the file and the reason. A library that fails registers nothing.
// - plugin_search_path() lists the directories searched, in order: the directory of the running
//   executable (a build tree), ../lib/attnlab/plugins beside it (an installation), each
//   --plugin-path directory, then each entry of ATTNLAB_PLUGIN_PATH (colon-separated).
// - load_plugins(dirs) loads every file named libattnlab_plugin_*.so in those directories, skipping
//   a file name already loaded from an earlier directory (the first one found wins).
#pragma once

#include "node/registry.h"

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab {

struct PluginError : RegistryError {
  using RegistryError::RegistryError;
};

void load_plugin(Registry& registry, const std::filesystem::path& library);

std::vector<std::filesystem::path> plugin_search_path(const std::vector<std::string>& plugin_path_flags);

// Returns the libraries loaded, in order.
std::vector<std::filesystem::path> load_plugins(Registry& registry, const std::vector<std::filesystem::path>& dirs);

// Process exit code for a plugin that cannot be loaded.
inline constexpr int kPluginErrorExit = 2;

}  // namespace attnlab
