// A plugin built against another node contract: it reports an ABI version this attnlab does not
// have. The loader must refuse it before calling its registration function.
#include "node/plugin_api.h"

#include <cstdlib>

extern "C" __attribute__((visibility("default"))) uint32_t attnlab_plugin_abi_version() {
  return ATTNLAB_ABI_VERSION + 41;
}

extern "C" __attribute__((visibility("default"))) void attnlab_plugin_register(attnlab::PluginRegistrar&) {
  std::abort();  // never reached: the version check comes first
}
