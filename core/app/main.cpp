// attnlab — the command-line entry point. Subcommands are set up in their own files (cli.h).
#include "app/cli.h"
#include "dist/world.h"
#include "node/plugin_loader.h"

#include <iostream>

#ifndef ATTNLAB_VERSION
#define ATTNLAB_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  using namespace attnlab;
  CLI::App app{"attnlab: a research toolkit for Transformer models"};
  app.set_version_flag("--version", std::string("attnlab " ATTNLAB_VERSION) + " (distributed: " +
                                        (dist::mpi_built_in() ? dist::mpi_description() : std::string("no, built without MPI")) + ")");
  app.require_subcommand(1);
  cli::CommonOptions options;
  cli::add_plugins_command(app, options);
  cli::add_bleu_command(app);
  cli::add_check_command(app, options);
  cli::add_graph_command(app, options);
  cli::add_params_command(app, options);
  cli::add_translate_command(app, options);
  cli::add_run_command(app, options);
  cli::add_ablate_command(app, options);
  cli::add_bench_command(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const PluginError& e) {
    std::cerr << "attnlab: error: " << e.what() << '\n';
    return kPluginErrorExit;
  } catch (const cli::CliError& e) {
    std::cerr << "attnlab: error: " << e.what() << '\n';
    return e.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "attnlab: error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
