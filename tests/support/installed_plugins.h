// tests/support/installed_plugins.h — the registry of every plugin beside the test executable
// (the build root), loaded once per test binary and kept for its whole life.
#pragma once

#include "node/plugin_loader.h"

namespace attnlab::test {

inline const Registry& plugins_beside_executable() {
  // Never destroyed: node handles in static test fixtures may outlive any destruction order.
  static const Registry* registry = [] {
    auto* r = new Registry();
    load_plugins(*r, plugin_search_path({}));
    return r;
  }();
  return *registry;
}

}  // namespace attnlab::test
