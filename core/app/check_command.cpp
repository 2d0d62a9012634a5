// attnlab check FILE [--set K=V]... [--use SLOT=TYPE]... — elaborate a model or experiment file and
// report every located error (exit 1), or a one-line summary (exit 0). An experiment file's train
// and decode sections are read as `attnlab run` reads them, so that a misspelt or out-of-range
// setting fails here and not after the data is loaded; the data section is left to `run`, which
// needs the files to check it.
#include "app/spec_options.h"
#include "dsl/experiment.h"
#include "dsl/params.h"
#include "train/run_settings.h"

#include <iostream>

namespace attnlab::cli {

void add_spec_options(CLI::App& command, SpecOptions& spec) {
  command.add_option("file", spec.file, "A model (.attn) or experiment file")->required();
  command.add_option("--set", spec.sets, "Override a parameter: NAME=VALUE (SECTION.KEY=VALUE for experiment settings)")
      ->allow_extra_args(false);
  command.add_option("--use", spec.uses, "Bind a slot to a node type: SLOT=TYPE")->allow_extra_args(false);
  command.add_option("--model", spec.model, "Which model (or experiment) of the file; default the first");
}

dsl::ElaboratedModel elaborate_spec(const SpecOptions& spec, const CommonOptions& options, dsl::ExperimentSpec* experiment) {
  std::unique_ptr<Registry> registry = load_registry(options);
  try {
    return dsl::elaborate_target(spec.file, *registry, spec.sets, spec.uses, spec.model, experiment);
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
    dsl::ExperimentSpec experiment;
    dsl::ElaboratedModel model = elaborate_spec(*spec, options, &experiment);
    if (!experiment.name.empty()) {
      try {
        (void)train::read_settings(experiment, model.integer_param("d_model", 512));
      } catch (const dsl::DslError& e) {
        std::cerr << e.what();
        throw CliError(1, spec->file + ": 1 error");
      } catch (const train::RunError& e) {
        throw CliError(1, e.what());
      }
    }
    const dsl::ParamCount params = dsl::count_params(model);
    std::cout << spec->file << ": ok: model " << model.name << ", " << model.graph.nodes_size() << " nodes, "
              << params.total << " parameters\n";
  });
}

}  // namespace attnlab::cli
