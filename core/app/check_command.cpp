// attnlab check FILE [--set K=V]... [--use SLOT=TYPE]... — elaborate a model or experiment file and
// report every located error (exit 1), or a one-line summary (exit 0).
#include "app/spec_options.h"
#include "dsl/experiment.h"
#include "dsl/params.h"

#include <iostream>

namespace attnlab::cli {

void add_spec_options(CLI::App& command, SpecOptions& spec) {
  command.add_option("file", spec.file, "A model (.attn) or experiment file")->required();
  command.add_option("--set", spec.sets, "Override a parameter: NAME=VALUE (SECTION.KEY=VALUE for experiment settings)")
      ->allow_extra_args(false);
  command.add_option("--use", spec.uses, "Bind a slot to a node type: SLOT=TYPE")->allow_extra_args(false);
  command.add_option("--model", spec.model, "Which model (or experiment) of the file; default the first");
}

dsl::ElaboratedModel elaborate_spec(const SpecOptions& spec, const CommonOptions& options) {
  std::unique_ptr<Registry> registry = load_registry(options);
  try {
    return dsl::elaborate_target(spec.file, *registry, spec.sets, spec.uses, spec.model);
  } catch (const dsl::DslError& e) {
    std::cerr << e.what();
    const size_t n = e.diagnostics.size();
    throw CliError(1, spec.file + ": " + std::to_string(n) + (n == 1 ? " error" : " errors"));
  }
}

void add_check_command(CLI::App& app, CommonOptions& options) {
  auto spec = std::make_shared<SpecOptions>();
  CLI::App* command = app.add_subcommand("check", "Check a model or experiment file: exit 0, or located errors on stderr");
  add_spec_options(*command, *spec);
  add_common_options(*command, options);
  command->callback([spec, &options] {
    dsl::ElaboratedModel model = elaborate_spec(*spec, options);
    const dsl::ParamCount params = dsl::count_params(model);
    std::cout << spec->file << ": ok: model " << model.name << ", " << model.graph.nodes_size() << " nodes, "
              << params.total << " parameters\n";
  });
}

}  // namespace attnlab::cli
