// core/train/ablate.h — `attnlab ablate`: a sweep of variants of one experiment (the paper's
// Table 3 as one command), each a full run directory, summarised in results tables and charts.
//
// Contract:
// - Axes come from the experiment's `ablate` section (in file order) and then from --vary
//   (parse_vary: "KEY=V1,V2,..."; commas inside (), [] or quotes do not split, so
//   "attention=attention.grouped_query(kv_heads: 2),attention.scaled_dot" has two values). A
//   --vary axis with the key of an ablate entry replaces that entry.
// - A key is resolved against the baseline experiment (resolve_axes): a model parameter
//   (heads=1,4 → --set heads=1), a component slot (posenc=posenc.learned → --use posenc=...), or
//   SECTION.KEY for the train/decode sections (train.label_smoothing=0,0.2 → --set). Anything
//   else is an AblateError naming the key and the valid names; so is an empty value list or an
//   empty value.
// - Grouped changes: in the ablate section a value may be `set(K1: V1, K2: V2, ...)`, a variant
//   that changes several model parameters or slots at once (Table 3 row (A): heads with d_k and
//   d_v), e.g. `heads = [set(heads: 1, d_k: 256, d_v: 256), set(heads: 4, d_k: 64, d_v: 64)]`.
// - expand_variants(): variant 0 is the baseline (no changes). One-at-a-time (default): each
//   value of each axis is a variant changing only that axis; a value whose changes equal the
//   baseline's values is skipped (it would repeat the baseline). Grid: the product of all axes
//   (every combination, the baseline combination skipped). Variant ids (directory names) are a
//   pure function of the changes, so a sweep run again finds its variants.
// - run_ablation(): each variant runs with train::run_experiment in OUT/<id>/. A variant whose
//   OUT/<id>/result.json exists is finished and is not run again (result.json is written last,
//   atomically, with status "ok" or "failed" and the reason). A variant with checkpoints but no
//   result resumes from its newest checkpoint (RunOptions::resume); one with neither starts
//   afresh (a partial directory without checkpoints is cleared). A variant that throws (RunError,
//   DslError, CheckpointError — a rejected combination, divergence to NaN) is recorded as failed
//   and the sweep goes on. A failing baseline instead stops the sweep with an AblateError giving
//   its reason, and is not recorded (nor is a variant that failed meanwhile): its cause, such as
//   missing data, would fail every variant, and nothing could be compared without it. When run_experiment returns interrupted (SIGINT/SIGTERM: it saved a
//   checkpoint), the sweep stops at once and AblationResult::interrupted is set; the tables are
//   written with the variants done so far.
// - parallel = 1: variants run one after another in this process, each with all options.threads.
//   run_experiment installs a process-wide InterruptGuard, of which only one may exist, so it is
//   never called from two threads at once. parallel = N > 1: up to N variants run at once, each an
//   `attnlab run` child process (options.executable) with threads / N threads (at least 1) and its
//   output in OUT/<id>/run.log; its figures are read back from its settings.json and
//   metrics.jsonl; exit code 130/143 is an interruption, any other non-zero a failure whose reason
//   is the log's error lines. SIGINT/SIGTERM to the sweep is passed on to the children, which
//   checkpoint; the sweep then stops as in the serial case. See docs/experiments.md "Ablations"
//   for the measured comparison.
// - Outputs in OUT: results.md (grouped like Table 3: a column per changed key, the baseline row
//   in full, variant cells blank where equal to the baseline), results.csv, results.json (one row
//   per variant plus the baseline: changes, parameters, train seconds, tokens/s, final train loss,
//   dev perplexity, dev and test BLEU when the task has them, status, reason), curves.svg (train
//   loss of every variant overlaid, from each metrics.jsonl) and quality.svg (dev BLEU per variant,
//   dev perplexity when the task has no BLEU).
#pragma once

#include "node/registry.h"
#include "train/trainer.h"

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::train {

struct AblateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One setting changed by a variant.
struct AblateChange {
  enum class Kind { Param, Slot, Setting } kind = Kind::Param;
  std::string key;    // "heads", "posenc", "train.label_smoothing"
  std::string value;  // in the language's syntax: "4", "posenc.learned", "0.2"
};

// One axis of the sweep: a group of Table 3 (a key and its alternatives). Each alternative is a
// list of changes (one, or several for a grouped set(...)).
struct AblateAxis {
  std::string key;
  std::string origin = "ablate";                         // for messages: "ablate" (the section) or "--vary"
  std::vector<std::string> values;                       // as written (before resolution)
  std::vector<std::vector<AblateChange>> alternatives;   // filled by resolve_axes
};

struct AblateVariant {
  std::string id;     // directory name; "baseline" for the baseline
  std::string group;  // the axis key(s) it varies; "" for the baseline
  std::vector<AblateChange> changes;
};

// "KEY=V1,V2,..." → an axis (values unresolved). Throws AblateError on bad syntax.
AblateAxis parse_vary(const std::string& text);

// Splits at top-level commas (outside (), [], {} and quotes); values trimmed.
std::vector<std::string> split_values(const std::string& text);

// What the baseline experiment offers to vary.
struct AblateBaseline {
  std::vector<std::pair<std::string, std::string>> params;  // model parameter → value
  std::vector<std::pair<std::string, std::string>> slots;   // slot → node type
  std::vector<std::pair<std::string, std::string>> settings;  // "train.dropout" → value as written
  std::vector<AblateAxis> ablate_section;                   // the experiment's ablate entries
  std::string experiment_name;
  // The baseline value of a change's key ("" when the experiment does not set it).
  std::string value_of(const std::string& key) const;
};

// Loads the experiment (empty path: the embedded default), applies `sets` and `uses`, elaborates
// its model; throws AblateError (DSL errors are included in the message).
AblateBaseline load_baseline(const std::filesystem::path& experiment_file, const std::vector<std::string>& sets,
                             const std::vector<std::string>& uses, const Registry& registry);

// Resolves every value of every axis into changes (see the contract). Throws AblateError.
void resolve_axes(std::vector<AblateAxis>& axes, const AblateBaseline& baseline, const Registry& registry);

// The experiment's ablate section merged with --vary axes (same key: --vary wins), resolved.
std::vector<AblateAxis> sweep_axes(const AblateBaseline& baseline, const std::vector<std::string>& vary,
                                   const Registry& registry);

std::vector<AblateVariant> expand_variants(const std::vector<AblateAxis>& axes, const AblateBaseline& baseline, bool grid);

// A variant's outcome (also the content of OUT/<id>/result.json).
struct VariantResult {
  AblateVariant variant;
  std::string status;  // "ok", "failed", "not run" (the sweep was interrupted before it)
  std::string reason;  // why it failed
  int64_t parameters = 0;
  int64_t steps = 0;
  double train_seconds = 0;
  double tokens_per_second = 0;
  double last_train_loss = 0;
  double dev_loss = 0;
  double dev_perplexity = 0;
  double dev_bleu = -1;   // -1: not computed
  double test_bleu = -1;
  double test_chrf = -1;  // sacreBLEU's chrF2 (docs/evaluation.md)
};

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

// Writes results.md, results.csv, results.json, curves.svg and quality.svg into `out_dir`.
void write_ablation_results(const std::filesystem::path& out_dir, const std::string& experiment_name,
                            const AblateBaseline& baseline, const std::vector<VariantResult>& results);

}  // namespace attnlab::train
