// core/sweep/variants.h — `attnlab ablate`, part 1: what a sweep varies. Axes (the experiment's
// ablate section and --vary), their resolution against the baseline experiment, and the variants
// they expand to. Pure except load_baseline, which reads and elaborates the experiment.
//
// Contract (the whole sweep: runners.h runs the variants, results.h writes the tables):
// Contract:
// - Axes come from the experiment's `ablate` section (in file order) and then from --vary
//   (parse_vary: "KEY=V1,V2,..."; commas inside (), [] or quotes do not split, so
//   "attention=attention.grouped_query(kv_heads: 2),attention.scaled_dot" has two values). A
//   --vary axis with the key of an ablate entry replaces that entry.
// - A key is resolved against the baseline experiment (resolve_axes): a model parameter
//   (heads=1,4 → --set heads=1), a component slot (posenc=posenc.learned → --use posenc=...; a slot
//   may also bind one of the model's blocks: sublayer=pre_norm), or
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
// - Under mpirun with R > 1 ranks (dist::World), --parallel is ignored: rank 0 hands the pending
//   variants out one at a time to ranks 1..R-1, each rank taking the next as soon as it reports
//   its last (dynamic assignment); a rank trains its variant in process, alone
//   (RunOptions::world = World::alone()), with options.threads, in OUT/<id>/ on the shared
//   filesystem, and sends its VariantResult back. With ranks_per_variant K, ranks 1..R-1 form
//   groups of K (World::split; R-1 must be a multiple of K, else AblateError): a variant goes to
//   a group's first rank, the group trains it data-parallel, and its first rank reports; rank 0 records results (result.json) and writes the tables. A failed
//   variant is recorded as failed and the rest go on; a failing baseline or a stop signal hands
//   out nothing more. See docs/distributed.md.
// - Outputs in OUT: results.md (grouped like Table 3: a column per changed key, the baseline row
//   in full, variant cells blank where equal to the baseline), results.csv, results.json (one row
//   per variant plus the baseline: changes, parameters, train seconds, tokens/s, final train loss,
//   dev perplexity, dev and test BLEU when the task has them, status, reason), curves.svg (train
//   loss of every variant overlaid, from each metrics.jsonl) and quality.svg (dev BLEU per variant,
//   dev perplexity when the task has no BLEU).
#pragma once

#include "node/registry.h"

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace attnlab::sweep {

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
  std::vector<std::pair<std::string, std::string>> slots;   // slot → node type (or block)
  std::vector<std::string> blocks;                          // the model's blocks (a slot may bind one)
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

// "heads=4 posenc=posenc.learned": a variant's changes, as the log and the tables show them.
std::string change_text(const AblateChange& change);
std::string describe_changes(const std::vector<AblateChange>& changes);
// "[3/19] heads=4" (the baseline: "[1/19] baseline").
std::string variant_label(size_t index, const std::vector<AblateVariant>& variants);
std::string trim_whitespace(const std::string& text);

}  // namespace attnlab::sweep
