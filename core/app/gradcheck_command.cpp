// `attnlab gradcheck [--plugin-path DIR] [TYPE...]`: the gradient-check examples of node types, the
// same examples composed with every positional scheme that acts inside attention, and the check that
// incremental decoding equals the full pass (core/check/gradcheck.h) — the code the test suite runs.
// No TYPE: every loaded type. A TYPE selects its own cases and, for a positional scheme, the cases
// that compose it into other types. One line per case ("ok NAME" or "FAIL NAME" and the reasons),
// then a summary; exit 0 when every case passed, 1 otherwise or for an unknown TYPE.
#include "app/cli.h"
#include "check/gradcheck.h"

#include <algorithm>
#include <iostream>

namespace attnlab::cli {

void add_gradcheck_command(CLI::App& app, CommonOptions& options) {
  CLI::App* command = app.add_subcommand(
      "gradcheck", "Check node types' gradients (central differences) and incremental decoding (against the full pass)");
  add_common_options(*command, options);
  // One directory per --plugin-path, so that the type names after it stay positional.
  command->get_option("--plugin-path")->allow_extra_args(false);
  auto types = std::make_shared<std::vector<std::string>>();
  command->add_option("TYPE", *types, "Node types to check (default: every loaded type)");
  command->callback([&options, types] {
    auto registry = load_registry(options);
    for (const std::string& type : *types)
      if (!registry->contains(type)) throw CliError(1, registry->unknown_type_message(type));
    auto selected = [&](const gradcheck::Case& c) {
      if (types->empty()) return true;
      return std::find(types->begin(), types->end(), c.type) != types->end() ||
             std::find(types->begin(), types->end(), c.scheme) != types->end();
    };
    int passed = 0, failed = 0;
    for (const gradcheck::Case& c : gradcheck::cases(*registry)) {
      if (!selected(c)) continue;
      const std::vector<std::string> failures = gradcheck::check_case(*registry, c);
      if (failures.empty()) {
        ++passed;
        std::cout << "ok   " << c.test_name << '\n';
      } else {
        ++failed;
        std::cout << "FAIL " << c.test_name << '\n';
        for (const std::string& f : failures) std::cout << "     " << f << '\n';
      }
    }
    std::cout << passed + failed << " checks: " << passed << " passed, " << failed << " failed\n";
    if (failed > 0) throw CliError(1, std::to_string(failed) + " of " + std::to_string(passed + failed) + " checks failed");
  });
}

}  // namespace attnlab::cli
