// attnlab ablate [EXPERIMENT] [--vary KEY=V1,V2,...]... [--grid] [--out DIR] [--set ...] [--use ...]
// [--data DIR] — a sweep of variants of an experiment, each a full run; see core/sweep/variants.h.
#include "app/cli.h"
#include "dist/world.h"
#include "sweep/runners.h"

#include <unistd.h>

#include <filesystem>
#include <iostream>

namespace attnlab::cli {

namespace {

struct AblateArgs {
  std::string experiment;
  std::vector<std::string> vary, sets, uses;
  std::string out, data;
  bool grid = false;
  int parallel = 1;
  int ranks_per_variant = 1;
};

}  // namespace

void add_ablate_command(CLI::App& app, CommonOptions& options) {
  auto args = std::make_shared<AblateArgs>();
  CLI::App* command = app.add_subcommand(
      "ablate", "Train variants of an experiment (one setting changed at a time, or --grid) and tabulate them like Table 3");
  command->add_option("EXPERIMENT", args->experiment, "Experiment file (.attn); omitted: the built-in default experiment");
  command->add_option("--vary", args->vary,
                      "KEY=V1,V2,...: a model parameter (heads=1,4,16), a slot (posenc=posenc.learned,posenc.rotary) or "
                      "SECTION.KEY (train.label_smoothing=0,0.2); repeatable; replaces the ablate entry of the same key")
      ->allow_extra_args(false);  // one value per --vary, so EXPERIMENT may follow
  command->add_flag("--grid", args->grid, "Every combination of the varied settings (default: one at a time)");
  command->add_option("--out", args->out, "Sweep directory (default: ablations/<experiment>); run again to resume")
      ->check(non_empty_path());
  command->add_option("--set", args->sets, "SECTION.KEY=VALUE or NAME=VALUE applied to the baseline and every variant; repeatable")
      ->allow_extra_args(false);
  command->add_option("--use", args->uses, "SLOT=TYPE applied to the baseline and every variant; repeatable")
      ->allow_extra_args(false);
  command->add_option("--data", args->data, "Data directory for experiments that read files (default: $ATTNLAB_DATA)")
      ->check(non_empty_path());
  command->add_option("--parallel", args->parallel,
                      "Variants at once: 1 runs them one after another in this process with all threads; N > 1 runs N "
                      "`attnlab run` processes with threads/N each (docs/experiments.md compares them)");
  command->add_option("--ranks-per-variant", args->ranks_per_variant,
                      "Under mpirun: ranks that train one variant together, data-parallel (ranks 1..R-1 in groups of K; "
                      "rank 0 hands out the variants)")
      ->check(CLI::PositiveNumber);
  add_common_options(*command, options);
  command->callback([args, &options, command] {
    if (args->parallel < 1)
      throw CliError(1, "--parallel " + std::to_string(args->parallel) + ": give the number of variants to run at once, 1 or more");
    std::unique_ptr<Registry> registry = load_registry(options);
    sweep::AblateOptions ablate;
    ablate.experiment_file = args->experiment;
    ablate.vary = args->vary;
    ablate.sets = args->sets;
    ablate.uses = args->uses;
    ablate.grid = args->grid;
    ablate.out_dir = args->out;
    ablate.data_root = args->data;
    ablate.threads = options.threads;
    ablate.seed = command->count("--seed") ? options.seed : 0;
    ablate.parallel = args->parallel;
    ablate.ranks_per_variant = args->ranks_per_variant;
    std::error_code ec;
    ablate.executable = std::filesystem::read_symlink("/proc/self/exe", ec);
    ablate.plugin_paths.assign(options.plugin_path.begin(), options.plugin_path.end());
    ablate.log = &std::cerr;
    ablate.progress_terminal = ::isatty(2) != 0;
    try {
      sweep::AblationResult result = sweep::run_ablation(ablate, *registry);
      if (!dist::World::instance().root()) return;  // under mpirun rank 0 reports the sweep
      int failed = 0;
      for (const auto& v : result.variants) failed += v.status == "failed";
      std::cout << "results: " << (result.out_dir / "results.md").string() << "\n";
      if (failed > 0) std::cout << failed << " of " << result.variants.size() << " runs failed (see their status in results.md)\n";
      if (result.interrupted) throw CliError(130, "interrupted; run the same command again to resume the sweep");
    } catch (const sweep::AblateError& e) {
      throw CliError(1, e.what());
    }
  });
}

}  // namespace attnlab::cli
