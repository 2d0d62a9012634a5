// plugins/ffn/moe.h — registration of ffn.moe (moe.cpp states its contract) in the ffn plugin.
#pragma once

#include "node/plugin_api.h"

namespace attnlab {

void register_moe(PluginRegistrar& registrar);

}  // namespace attnlab
