// attnlab run [EXPERIMENT] [--set ...] [--use ...] [--out DIR] [--data DIR] [--resume] [--average K]
// [--init-from FILE.safetensors]
// — train an experiment (the embedded default when no file is given); see core/train/trainer.h.
#include "app/cli.h"
#include "dist/world.h"
#include "dsl/builtin_files.h"
#include "dsl/source.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

#include <unistd.h>

#include <iostream>

namespace attnlab::cli {

namespace {

struct RunArgs {
  std::string experiment;
  std::vector<std::string> sets, uses;
  std::string out, data, init_from;
  bool resume = false;
  int average = 0;
  bool print_default = false;
  double rank_timeout = 300;
  double bucket_mb = 4;
};

}  // namespace

void add_run_command(CLI::App& app, CommonOptions& options) {
  auto args = std::make_shared<RunArgs>();
  auto argv_text = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand("run", "Train an experiment (no argument: the embedded default experiment)");
  command->add_option("EXPERIMENT", args->experiment, "Experiment file (.attn); omitted: the built-in default experiment");
  // One value per flag, so that EXPERIMENT may come after them.
  command->add_option("--set", args->sets, "SECTION.KEY=VALUE (train/decode settings) or NAME=VALUE (model parameter); repeatable")
      ->allow_extra_args(false);
  command->add_option("--use", args->uses, "SLOT=TYPE: bind a component slot to a node type; repeatable")
      ->allow_extra_args(false);
  command->add_option("--out", args->out, "Run directory (default: runs/<experiment>-<UTC time>)")->check(non_empty_path());
  command->add_option("--data", args->data, "Data directory for experiments that read files (default: $ATTNLAB_DATA)")
      ->check(non_empty_path());
  command->add_flag("--resume", args->resume, "Continue the run in --out DIR from its newest checkpoint");
  command->add_option("--init-from", args->init_from,
                      "Start from the weights of a safetensors file (attnlab export) instead of a fresh initialisation")
      ->check(non_empty_path());
  command->add_option("--average", args->average, "At the end, average the last K checkpoints and evaluate the average")
      ->check(integer_in(train::kAverageLimit));
  command->add_option("--rank-timeout", args->rank_timeout,
                      "Under mpirun: seconds a rank may go without answering before every rank stops (default 300)")
      ->check(real_in(train::kRankTimeoutLimit));
  command->add_option("--bucket-mb", args->bucket_mb, "Under mpirun: size of a gradient reduction bucket in MiB (default 4)")
      ->check(real_in(train::kBucketMbLimit));
  command->add_flag("--print-default", args->print_default, "Print the built-in default experiment and exit");
  add_common_options(*command, options);
  command->callback([args, &options, command] {
    if (args->print_default) {
      std::cout << *dsl::builtin_file_text(dsl::builtin_default_experiment());
      return;
    }
    train::RunOptions run;
    run.experiment_file = args->experiment;
    run.sets = args->sets;
    run.uses = args->uses;
    run.out_dir = args->out;
    run.data_root = args->data;
    run.resume = args->resume;
    run.init_from = args->init_from;
    run.average = args->average;
    run.threads = options.threads;
    run.seed = command->count("--seed") ? options.seed : 0;
    run.rank_timeout_s = args->rank_timeout;
    run.bucket_bytes = static_cast<size_t>(args->bucket_mb * 1024 * 1024);
    run.command_line = "attnlab " + train::shell_line(train::run_arguments(run));
    run.log = &std::cerr;
    run.progress_terminal = ::isatty(2) != 0;
    std::unique_ptr<Registry> registry = load_registry(options);
    try {
      train::RunResult result = train::run_experiment(run, *registry);
      if (result.interrupted) throw CliError(130, "interrupted at step " + std::to_string(result.steps) + "; checkpoint saved");
      if (dist::World::instance().root()) {
        std::cout << "run directory: " << result.run_dir.string() << "\n";
        if (result.test_bleu >= 0) std::cout << "test BLEU: " << result.test_bleu << "\n";
      }
    } catch (const train::RunError& e) {
      throw CliError(1, e.what());
    } catch (const train::CheckpointError& e) {
      throw CliError(1, e.what());
    } catch (const dsl::DslError& e) {
      std::cerr << e.what();
      if (!std::string(e.what()).empty() && std::string(e.what()).back() != '\n') std::cerr << '\n';
      throw CliError(1, "the experiment has errors");
    }
  });
}

}  // namespace attnlab::cli
