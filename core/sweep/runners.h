// core/sweep/runners.h — `attnlab ablate`, part 2: running the variants — in this process one after
// another, as `attnlab run` child processes (--parallel N), or handed out to MPI ranks (under
// mpirun). The contract of the whole sweep is in variants.h.
#pragma once

#include "sweep/results.h"
#include "sweep/variants.h"

#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

namespace attnlab::sweep {

struct AblateOptions {
  std::filesystem::path experiment_file;  // empty: the embedded default experiment
  std::vector<std::string> vary;          // --vary KEY=V1,V2
  std::vector<std::string> sets, uses;    // applied to the baseline and every variant
  bool grid = false;
  std::filesystem::path out_dir;          // empty: ablations/<experiment>
  std::filesystem::path data_root;
  int threads = 0;                        // 0: every core
  uint64_t seed = 0;
  int parallel = 1;                       // variants at once (> 1: child processes)
  int ranks_per_variant = 1;              // under mpirun: ranks that train one variant data-parallel
  std::filesystem::path executable;       // the attnlab binary, for parallel > 1
  std::vector<std::filesystem::path> plugin_paths;  // --plugin-path directories, passed on to the child runs
  std::ostream* log = nullptr;            // nullptr: std::cerr
  bool progress_terminal = false;
};

struct AblationResult {
  std::filesystem::path out_dir;
  std::vector<VariantResult> variants;  // baseline first
  bool interrupted = false;
};

AblationResult run_ablation(const AblateOptions& options, const Registry& registry);

}  // namespace attnlab::sweep
