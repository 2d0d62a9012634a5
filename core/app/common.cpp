#include "app/cli.h"
#include "data/parallel_text.h"
#include "node/plugin_loader.h"

#include <filesystem>
#include <optional>

namespace attnlab::cli {

void add_common_options(CLI::App& command, CommonOptions& options) {
  command.add_option("--threads", options.threads, "Worker threads (TBB arena size); 0 uses every core")
      ->check(integer_in(train::threads_limit()));
  command.add_option("--seed", options.seed, "Random seed")->check(integer_in(train::kSeedLimit));
  command.add_option("--plugin-path", options.plugin_path, "Another directory to load plugins from (repeatable)")->check(non_empty_path());
}

CLI::Validator integer_in(const train::IntLimit& limit) {
  return CLI::Validator([limit](std::string& text) { return train::check_integer_text(limit, text); },
                        "INT in " + train::describe(limit), "");
}

CLI::Validator non_empty_path() {
  return CLI::Validator([](std::string& text) { return text.empty() ? std::string("must not be empty (give a path)") : std::string(); },
                        "PATH", "");
}

CLI::Validator real_in(const train::RealLimit& limit) {
  return CLI::Validator([limit](std::string& text) { return train::check_real_text(limit, text); },
                        "NUMBER in " + train::describe(limit), "");
}

std::vector<std::string> read_lines(std::istream& in, const std::string& what) {
  std::vector<std::string> lines;
  std::string line;
  auto finish = [&] {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (std::optional<std::string> problem = data::check_text_line(line))
      throw CliError(1, what + ":" + std::to_string(lines.size() + 1) + ":" + *problem);
    lines.push_back(std::move(line));
    line.clear();
  };
  // Byte by byte from the stream's buffer, so that a line without end (/dev/zero) is refused at
  // the bound instead of growing until memory runs out.
  std::streambuf& buffer = *in.rdbuf();
  for (int c; (c = buffer.sbumpc()) != std::char_traits<char>::eof();) {
    if (c == '\n') {
      finish();
      continue;
    }
    if (line.size() == data::kMaxLineBytes)
      throw CliError(1, what + ":" + std::to_string(lines.size() + 1) + ": a line longer than " + std::to_string(data::kMaxLineBytes >> 20) +
                            " MiB");
    line.push_back(static_cast<char>(c));
  }
  if (!line.empty()) finish();
  return lines;
}

std::unique_ptr<Registry> load_registry(const CommonOptions& options) {
  for (const std::string& dir : options.plugin_path)
    if (!std::filesystem::is_directory(dir))
      throw CliError(kPluginErrorExit, "--plugin-path " + dir + ": not a directory (give the directory holding the plugins' .so files)");
  auto registry = std::make_unique<Registry>();
  load_plugins(*registry, plugin_search_path(options.plugin_path));
  return registry;
}

}  // namespace attnlab::cli
