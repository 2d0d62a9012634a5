// core/train/trainer.h — `attnlab run`: an experiment file (or the embedded default) trained,
// validated, checkpointed and reported in a run directory.
//
// Contract:
// - The experiment's task (core/task/task.h; `task = NAME`, translation by default) decides what
//   the model must provide (checked once after elaboration: a mismatch is a located DslError), the
//   data (translation: synthetic or parallel text; language_model: text, docs/language-models.md),
//   where micro-batches come from (training_stream.h), what validation measures (language_model:
//   held-out loss, perplexity, bits per character; no BLEU, no test split, no --average) and the
//   report (language_model: a sample drawn with the key/value cache). The loop below is the same.
// - run_experiment(options, registry) loads the experiment (options.experiment_file, or the
//   embedded default experiment and its model when empty), applies --set (SECTION.KEY=VALUE reaches
//   the train/decode sections, NAME=VALUE the model) and --use, prepares the data (the synthetic
//   task in-process, or parallel text from the data root), builds the tokenizer, elaborates the
//   model with vocab = the tokenizer's size, and trains with the TBB executor in an arena of
//   options.threads.
// - Training step: `accumulate` batches from the Batcher, each forward (fetching loss, tokens,
//   correct) and backward with the loss gradient seeded with the batch's token count, summed in the
//   store (BackwardOptions::accumulate); then Adam with grad_scale = 1 / (tokens of the step) — the
//   gradient of the mean loss over every token of the step — and the schedule's rate. Dropout seeds
//   come from (seed, micro-batch number, node name) (Executor::node_seed), so a run is a pure
//   function of its settings and seed. Adam sees the trainable parameters only; checkpoints and
//   --init-from hold every parameter, State too (node.h, ParamKind). Each training forward
//   collects the nodes' auxiliary losses and metrics (node.h, StepReport); backward runs with
//   objective_scale = the micro-batch's token count, so an auxiliary loss weighs as the mean loss
//   per token. Every "train" line of metrics.jsonl then carries aux_loss (the step's, per token;
//   only when a node reported one) and NODE.NAME for each metric, summed over micro-batches
//   (and ranks).
// - Stops at train.max_steps, train.max_epochs or train.max_minutes (whichever comes first), or on
//   SIGINT/SIGTERM (checkpoint, then return with interrupted = true).
// - Validation every train.valid_every steps and at the end: loss and accuracy on the dev set with
//   a model elaborated with label_smoothing = 0 (so perplexity = exp(loss) is the true one), and
//   BLEU of greedy translations of the first train.valid_bleu_sentences dev pairs. "best.ckpt" keeps
//   the best dev BLEU (dev loss when BLEU is off).
// - Checkpoints every train.checkpoint_every steps, at the end and on interrupt, in RUN/checkpoints,
//   keeping the last train.keep_checkpoints plus best. Each holds the experiment and model texts,
//   the overrides, the resolved settings, the elaborated graph, the tokenizer, weights, Adam state,
//   step, epoch, seed, data position and data fingerprint.
// - Resume (options.resume): the newest step checkpoint of RUN/checkpoints is loaded; its experiment
//   (texts and overrides) and data fingerprint must equal this run's, otherwise RunError says which
//   differs. The resumed run then computes exactly the losses an uninterrupted run would
//   (metrics.jsonl events after the checkpoint's step are dropped first).
// - Nothing is written before the run is accepted: every check that can refuse it (the experiment
//   and its settings, the data, the models, --average against train.keep_checkpoints, and for a
//   resume the checkpoint's experiment, seed and data) comes before the first file is written, so
//   a refused command leaves an existing run directory byte for byte as it was. Resuming a finished
//   run evaluates it again without repeating its "test" event (run_log.h).
// - The run directory holds: experiment.attn and the model file (as run), command.txt,
//   settings.json, metrics.jsonl, checkpoints/, report.md and learning_curve.svg.
// - Data-parallel (under an MPI launcher with R > 1 ranks, dist::World): every rank builds the
//   same data, batches and initial weights; each global batch (the one a single process takes)
//   is cut into R shards of contiguous rows balanced by tokens (data::shard_cuts), kept at the
//   batch's padded widths, and each rank trains its shard with StepInfo's batch_offset/batch_rows
//   set, so dropout draws the whole batch's mask. Each rank seeds its loss gradient with its
//   shard's token count; the gradients are summed across ranks by dist::GradientReducer during
//   the last micro-batch's backward, and the loss, token and accuracy sums by an all_gather
//   (summed in rank order, the same on every rank), so Adam's grad_scale is 1 / (tokens of the
//   global step) and the run computes what a single process computes (to rounding) at any R.
//   A stop signal on any rank stops every rank after the same step. Before anything is written,
//   the ranks compare the binary, the experiment, the overrides, the plugins and the data
//   (dist::check_same_everywhere). Rank 0 alone writes the run directory, checkpoints, metrics
//   and the log; checkpoints hold nothing that depends on R. Validation runs on every rank
//   (identical weights, identical results, no waiting); the other ranks end after training.
// - User errors (missing data, unknown settings, bad values, a mismatched checkpoint) throw RunError
//   with a message naming the problem and what to do; errors in the experiment's text (including a
//   bad setting, quoted with its line) are dsl::DslError.
#pragma once

#include "node/registry.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::dist {
class World;
}

namespace attnlab::train {

struct RunError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RunOptions {
  std::filesystem::path experiment_file;  // empty: the embedded default experiment
  std::vector<std::string> sets;          // --set
  std::vector<std::string> uses;          // --use
  std::filesystem::path out_dir;          // empty: runs/<experiment>-<UTC timestamp>
  std::filesystem::path data_root;        // empty: $ATTNLAB_DATA
  bool resume = false;
  std::filesystem::path init_from;  // safetensors weights to start from (attnlab export); not with resume
  int average = 0;          // > 0: average the last K step checkpoints at the end and evaluate them
  int threads = 0;          // TBB arena size; 0: every core
  uint64_t seed = 0;        // 0: the experiment's seed (or 1)
  std::string command_line; // written to command.txt
  std::ostream* log = nullptr;   // progress and messages (nullptr: std::cerr)
  bool progress_terminal = false;  // redraw a progress line in place (else plain log lines)
  double log_interval_s = 30;      // plain log lines at most this often
  // Data-parallel training (under mpirun; see docs/distributed.md):
  double rank_timeout_s = 300;            // a rank that does not answer this long ends the job
  size_t bucket_bytes = size_t{4} << 20;  // gradient reduction buckets
  // The ranks that train this run: null, the process's world (dist::World::instance()); a sweep
  // gives World::alone() or a group of ranks.
  dist::World* world = nullptr;
};

struct RunResult {
  std::filesystem::path run_dir;
  int64_t steps = 0;           // optimizer steps done (in total, including before a resume)
  int64_t epoch = 0;
  bool interrupted = false;
  double train_seconds = 0;    // this invocation's training time
  double tokens_per_second = 0;
  double last_train_loss = 0;  // of the last step
  double valid_loss = 0, valid_accuracy = 0, valid_bleu = -1;  // BLEU -1: not computed
  double valid_bits_per_char = -1;  // language_model with a character vocabulary (-1: not computed)
  double test_loss = 0, test_accuracy = 0, test_bleu = -1;
  double test_chrf = -1;  // sacreBLEU's chrF2 of the test translations (-1: BLEU off)
  double average_test_bleu = -1;  // with --average K
  int64_t parameters = 0;
};

RunResult run_experiment(const RunOptions& options, const Registry& registry);

// The `attnlab run` arguments (without the program name) that give `options`: the one encoding
// of a run as a command line, used for command.txt and to start a sweep's child processes.
// Options at their defaults are left out.
std::vector<std::string> run_arguments(const RunOptions& options);
// The arguments as one shell line, each quoted when it holds anything but [A-Za-z0-9_./=:,+-].
std::string shell_line(const std::vector<std::string>& arguments);

// The train-section settings understood by the trainer (others are an error naming the nearest).
const std::vector<std::string>& train_setting_names();

}  // namespace attnlab::train
