// core/node/plugin_api.h — what a plugin library exports. Include this in exactly one file of a
// plugin and define the registration function with ATTNLAB_PLUGIN.
//
// A plugin is a shared library with two extern "C" entry points and no static initializers:
//   uint32_t    attnlab_plugin_abi_version();                   // must equal ATTNLAB_ABI_VERSION
//   void        attnlab_plugin_register(attnlab::PluginRegistrar&);  // adds node types
// The loader reads the version first and refuses a mismatch before calling anything else, so a
// plugin built against another node contract is never run. Registration may throw; the loader
// reports the exception with the library's name and loads nothing from it.
#pragma once

#include "node/registry.h"

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

// Bump whenever node.h, attrs.h, tensor.h or registry.h change in a way that breaks binaries.
// 2: DecodeState::stepwise, StepInfo::batch_offset/batch_rows
// 3: Node::positional_scheme (node/positional.h), ParamSpec::scope, Init::Constant, factories see the
//    registry; StepInfo::recorder
// 4: ParamSpec::kind (ParamKind::State: running statistics), StepInfo::report (StepReport: auxiliary
//    losses and metrics), StepInfo::objective_scale, Node::lower_onnx (node/onnx_lowering.h),
//    PositionalScheme::lower_score_bias/rotation/relative_index
#define ATTNLAB_ABI_VERSION 4u

namespace attnlab {

// What a plugin sees while registering. It collects the plugin's types; the loader commits them to
// the registry only when registration finished without error, so a failing plugin adds nothing.
class PluginRegistrar {
 public:
  void add(NodeSchema schema, NodeFactory factory) { pending_.push_back({std::move(schema), std::move(factory)}); }

  // Convenience for the common case of a type whose constructor takes `const Attrs&` (or
  // `const Attrs&, const Registry&` for a node that composes other node types).
  template <class NodeType>
  void add(NodeSchema schema) {
    add(std::move(schema), [](const Attrs& attrs, const Registry& registry) -> std::unique_ptr<Node> {
      if constexpr (std::is_constructible_v<NodeType, const Attrs&, const Registry&>)
        return std::make_unique<NodeType>(attrs, registry);
      else
        return std::make_unique<NodeType>(attrs);
    });
  }

  struct Pending {
    NodeSchema schema;
    NodeFactory factory;
  };
  std::vector<Pending>& pending() { return pending_; }

 private:
  std::vector<Pending> pending_;
};

}  // namespace attnlab

#define ATTNLAB_PLUGIN_ABI_SYMBOL "attnlab_plugin_abi_version"
#define ATTNLAB_PLUGIN_REGISTER_SYMBOL "attnlab_plugin_register"

// Defines both entry points; the body registers the plugin's types into `registrar`.
#define ATTNLAB_PLUGIN(registrar)                                                                \
  extern "C" __attribute__((visibility("default"))) uint32_t attnlab_plugin_abi_version() {     \
    return ATTNLAB_ABI_VERSION;                                                                  \
  }                                                                                              \
  extern "C" __attribute__((visibility("default"))) void attnlab_plugin_register(               \
      attnlab::PluginRegistrar& registrar)
