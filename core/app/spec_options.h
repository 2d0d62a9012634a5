// core/app/spec_options.h — the options shared by the commands that read a spec file (check,
// graph, params): FILE, --set NAME=VALUE, --use SLOT=TYPE, --model NAME, and elaborating it with
// located errors printed on stderr (exit 1).
#pragma once

#include "app/cli.h"
#include "dsl/elaborate.h"
#include "dsl/experiment.h"

#include <string>
#include <vector>

namespace attnlab::cli {

struct SpecOptions {
  std::string file;
  std::vector<std::string> sets;
  std::vector<std::string> uses;
  std::string model;
};

void add_spec_options(CLI::App& command, SpecOptions& spec);

// Loads the plugins and elaborates the spec. On a DslError prints its diagnostics on stderr and
// throws CliError(1) with a one-line summary. For an experiment file, `experiment` (when given)
// receives the experiment with the --set options applied.
dsl::ElaboratedModel elaborate_spec(const SpecOptions& spec, const CommonOptions& options,
                                    dsl::ExperimentSpec* experiment = nullptr);

}  // namespace attnlab::cli
