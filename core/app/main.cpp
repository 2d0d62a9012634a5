// attnlab — the command-line entry point. Subcommands are set up in their own files (cli.h).
#include "app/cli.h"
#include "dist/world.h"
#include "node/plugin_loader.h"
#include "tensor/gemm.h"

#include <iostream>
#include <new>

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
  cli::add_gradcheck_command(app, options);
  cli::add_bleu_command(app);
  cli::add_check_command(app, options);
  cli::add_graph_command(app, options);
  cli::add_params_command(app, options);
  cli::add_translate_command(app, options);
  cli::add_generate_command(app, options);
  cli::add_run_command(app, options);
  cli::add_ablate_command(app, options);
  cli::add_bench_command(app, options);
  cli::add_export_command(app, options);
  cli::add_attention_command(app, options);
  // Under mpirun an error names the rank, and ends every rank at once (the others would wait for
  // this one until --rank-timeout).
  auto fail = [](int code, const std::string& message) {
    const bool distributed = dist::World::started() && dist::World::instance().distributed();
    std::cerr << "attnlab: error: " << (distributed ? dist::World::instance().prefix() : "") << message << '\n';
    // Also after a stop by signal: mpirun is then ending the job, and MPI_Finalize would wait for it.
    if (distributed) dist::World::instance().abort(code);
    return code;
  };
  try {
    // A bad ATTNLAB_GEMM_KERNEL is an error of the whole invocation: reported as such before any
    // command starts, not from inside the first node that multiplies.
    (void)gemm_backend();
    app.parse(argc, argv);
  } catch (const CLI::ValidationError& e) {
    // A flag outside its bounds (train/limits.h): a user error like any other.
    std::cerr << "attnlab: error: " << e.what() << '\n';
    return 1;
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const PluginError& e) {
    return fail(kPluginErrorExit, e.what());
  } catch (const cli::CliError& e) {
    return fail(e.exit_code, e.what());
  } catch (const std::bad_alloc&) {
    // An allocation outside the plans' buffers (which check the machine's memory themselves).
    return fail(1, "out of memory: an allocation failed (the sizes or the input asked for more than this process can have)");
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
  return 0;
}
