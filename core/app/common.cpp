#include "app/cli.h"
#include "node/plugin_loader.h"

namespace attnlab::cli {

void add_common_options(CLI::App& command, CommonOptions& options) {
  command.add_option("--threads", options.threads, "Worker threads (TBB arena size); 0 uses every core")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--seed", options.seed, "Random seed");
  command.add_option("--plugin-path", options.plugin_path, "Another directory to load plugins from (repeatable)");
}

std::vector<std::string> read_lines(std::istream& in) {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

std::unique_ptr<Registry> load_registry(const CommonOptions& options) {
  auto registry = std::make_unique<Registry>();
  load_plugins(*registry, plugin_search_path(options.plugin_path));
  return registry;
}

}  // namespace attnlab::cli
