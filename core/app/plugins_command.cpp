// `attnlab plugins [--json]`: every loaded node type with its ports, attributes and docs.
#include "app/cli.h"

#include <nlohmann/json.hpp>

#include <iostream>

namespace attnlab::cli {

static nlohmann::json attr_default_json(const AttrValue& value) {
  return std::visit([](const auto& v) { return nlohmann::json(v); }, value);
}

static nlohmann::json ports_json(const std::vector<PortSchema>& ports) {
  nlohmann::json out = nlohmann::json::array();
  for (const PortSchema& p : ports) out.push_back({{"name", p.name}, {"doc", p.doc}, {"optional", p.optional}});
  return out;
}

void add_plugins_command(CLI::App& app, CommonOptions& options) {
  CLI::App* command = app.add_subcommand("plugins", "List node types with their attributes and docs");
  add_common_options(*command, options);
  auto json = std::make_shared<bool>(false);
  command->add_flag("--json", *json, "Print one JSON object");
  command->callback([&options, json] {
    auto registry = load_registry(options);
    if (*json) {
      nlohmann::json types = nlohmann::json::array();
      for (const std::string& name : registry->type_names()) {
        const NodeSchema& s = registry->schema(name);
        nlohmann::json attrs = nlohmann::json::array();
        for (const AttrSchema& a : s.attrs)
          attrs.push_back({{"name", a.name},
                           {"type", to_string(a.type)},
                           {"default", a.default_value ? attr_default_json(*a.default_value) : nlohmann::json()},
                           {"doc", a.doc}});
        types.push_back({{"name", s.name},
                         {"plugin", registry->origin(name)},
                         {"doc", s.doc},
                         {"inputs", ports_json(s.inputs)},
                         {"outputs", ports_json(s.outputs)},
                         {"attrs", attrs}});
      }
      std::cout << nlohmann::json{{"types", types}}.dump() << '\n';
      return;
    }
    for (const std::string& name : registry->type_names()) {
      const NodeSchema& s = registry->schema(name);
      std::cout << s.name << "  (" << registry->origin(name) << ")\n    " << s.doc << '\n';
      auto ports = [](const std::vector<PortSchema>& list) {
        std::string out;
        for (size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + list[i].name + (list[i].optional ? "?" : "");
        return out;
      };
      std::cout << "    inputs: " << ports(s.inputs) << "  outputs: " << ports(s.outputs) << '\n';
      for (const AttrSchema& a : s.attrs)
        std::cout << "    " << a.name << ": " << to_string(a.type)
                  << (a.default_value ? " = " + to_string(*a.default_value) : std::string(" (required)")) << "  "
                  << a.doc << '\n';
    }
  });
}

}  // namespace attnlab::cli
