// attnlab params FILE [--set ...] [--use ...] [--json] — parameter counts, total and by component.
#include "app/spec_options.h"
#include "dsl/params.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace attnlab::cli {

namespace {

std::string grouped(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string millions(int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / 1e6);
  return buf;
}

}  // namespace

void add_params_command(CLI::App& app, CommonOptions& options) {
  auto spec = std::make_shared<SpecOptions>();
  auto json = std::make_shared<bool>(false);
  CLI::App* command = app.add_subcommand("params", "Count a model's parameters, total and by component");
  add_spec_options(*command, *spec);
  command->add_flag("--json", *json, "One JSON object: {\"total\": N, \"by_component\": {...}, \"by_slot\": {...}}");
  add_common_options(*command, options);
  command->callback([spec, json, &options] {
    dsl::ElaboratedModel model = elaborate_spec(*spec, options);
    const dsl::ParamCount count = dsl::count_params(model);
    if (*json) {
      nlohmann::ordered_json out;
      out["model"] = model.name;
      out["total"] = count.total;
      out["by_component"] = count.by_component;
      out["by_slot"] = count.by_slot;
      std::cout << out.dump() << '\n';
      return;
    }
    auto row = [&](const std::string& name, int64_t n) {
      char line[128];
      std::snprintf(line, sizeof line, "  %-24s %15s  %5.1f%%\n", name.c_str(), grouped(n).c_str(),
                    100.0 * static_cast<double>(n) / static_cast<double>(std::max<int64_t>(count.total, 1)));
      std::cout << line;
    };
    std::cout << model.name << ": " << grouped(count.total) << " parameters (" << millions(count.total) << ")\n";
    std::cout << "by component:\n";
    for (const auto& [name, n] : count.by_component) row(name, n);
    std::cout << "by slot or type:\n";
    for (const auto& [name, n] : count.by_slot) row(name, n);
  });
}

}  // namespace attnlab::cli
