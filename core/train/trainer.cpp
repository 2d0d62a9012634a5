// core/train/trainer.cpp — the training loop behind `attnlab run` (see trainer.h).
#include "node/suggest.h"
#include "train/trainer.h"

#include "data/batcher.h"
#include "data/parallel_text.h"
#include "data/synthetic.h"
#include "data/tokenizer.h"
#include "dist/gradient_reducer.h"
#include "dist/world.h"
#include "dsl/builtin_files.h"
#include "dsl/experiment.h"
#include "eval/bleu.h"
#include "exec/hash.h"
#include "eval/sacrebleu.h"
#include "eval/sampler.h"
#include "exec/model.h"
#include "exec/plan.h"
#include "exec/tbb_executor.h"
#include "task/task.h"
#include "train/checkpoint.h"
#include "train/interrupt.h"
#include "train/optimizer.h"
#include "train/run_corpus.h"
#include "train/run_settings.h"
#include "train/run_log.h"
#include "train/safetensors.h"
#include "train/schedule.h"
#include "train/svg_chart.h"
#include "train/training_stream.h"
#include "train/translate.h"


#include <nlohmann/json.hpp>
#include <tbb/global_control.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

namespace attnlab::train {

namespace fs = std::filesystem;
using dsl::ConstValue;
using dsl::ExperimentSetting;
using dsl::ExperimentSpec;

const std::vector<std::string>& train_setting_names() {
  static const std::vector<std::string> names = {
      "adam", "adamw", "noam", "constant", "cosine", "label_smoothing", "dropout", "batch_tokens", "batch", "valid_blocks", "accumulate", "clip_norm",
      "max_steps", "max_epochs", "max_minutes", "valid_every", "checkpoint_every", "keep_checkpoints",
      "valid_bleu_sentences", "valid_metric", "patience", "valid_beam", "samples", "pad_to", "plan_memory_mb", "log_every_s"};
  return names;
}

namespace {

// The model parameter evaluation sets to 0, so that the dev loss is the plain cross-entropy.
constexpr const char* kLabelSmoothing = "label_smoothing";
// The language model's context length: a model parameter, and the setting generate reads.
constexpr const char* kBlockSize = "block_size";
// The model parameter the noam schedule reads.
constexpr const char* kModelDimension = "d_model";

// Settings that may change when a run is resumed (they decide when to stop, not what is computed).
const std::set<std::string> kResumableChanges = {"train.max_steps", "train.max_epochs", "train.max_minutes"};

// ---- Helpers ----------------------------------------------------------------------------------------

std::string utc_stamp(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RunError("cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_text(const fs::path& path, const std::string& text) { write_file_atomically(path, text); }

// Every parameter of the store (what checkpoints and exports hold: weights and State), or only the
// trainable ones (what Adam updates, decays, clips and reduces; node.h, ParamKind).
enum class Which { All, Trainable };
std::vector<ParamRef> param_refs(exec::ParameterStore& store, Which which = Which::All) {
  std::vector<ParamRef> refs;
  refs.reserve(store.size());
  for (exec::Parameter& p : store)
    if (which == Which::All || p.spec.kind == ParamKind::Trainable) refs.push_back({p.name, p.value.view(), p.grad.view()});
  return refs;
}

// What the nodes of one training forward report (node.h, StepReport): the sum of their auxiliary
// losses and their metrics by "NODE.NAME", summed over the nodes that report under a name.
class MicroBatchReport final : public exec::ReportSink {
 public:
  void aux_loss(const std::string&, double value) override {
    std::lock_guard lock(mutex_);
    aux_ += value;
  }
  void metric(const std::string& node, const std::string& name, double value) override {
    std::lock_guard lock(mutex_);
    metrics_[node + "." + name] += value;
  }
  // Adds this micro-batch's report into the step's (the auxiliary loss weighted by the micro-batch's
  // objective scale, as its gradient is) and clears it.
  void drain_into(double weight, double& aux_sum, std::map<std::string, double>& metrics) {
    aux_sum += weight * aux_;
    for (const auto& [name, value] : metrics_) metrics[name] += value;
    aux_ = 0;
    metrics_.clear();
  }

 private:
  std::mutex mutex_;
  double aux_ = 0;
  std::map<std::string, double> metrics_;
};

// AdamW's choice of parameters (optimizer.h): matrices decay; vectors (biases, norm gains) never;
// tables of the embedding and posenc families (looked up, not multiplied) only when asked. A
// parameter is named SCOPE.LOCAL, its scope that of the nodes declaring it (model.h).
void mark_weight_decay(std::vector<ParamRef>& refs, const ir::GraphDef& graph, bool decay_embeddings) {
  std::set<std::string> table_scopes;
  for (const ir::NodeDef& node : graph.nodes()) {
    const std::string family = node.type().substr(0, node.type().find('.'));
    if (family == "embedding" || family == "posenc") table_scopes.insert(node.param_scope().empty() ? node.name() : node.param_scope());
  }
  for (ParamRef& ref : refs) {
    const std::string scope = ref.name.substr(0, ref.name.rfind('.'));
    ref.decay = ref.value.shape().size() >= 2 && (decay_embeddings || !table_scopes.count(scope));
  }
}

// A batch of sentence pairs as the translation task feeds it.
task::TrainingFeeds translation_feeds(const exec::Model& model, const data::Batch& b) {
  return task::translation().feeds(model.graph(), b.src, b.tgt_in, b.tgt_out);
}

// The objective's sums over the micro-batches of a step (or an evaluation pass).
struct ObjectiveSums {
  double loss = 0, tokens = 0, correct = 0;
  // Adds the plan's objective values: the loss is a mean over its tokens, so it is weighted by them.
  double add(const exec::Plan& plan, const task::Objective& objective) {
    const double n = plan.value(objective.tokens).data()[0];
    loss += plan.value(objective.loss).data()[0] * n;
    tokens += n;
    correct += plan.value(objective.correct).data()[0];
    return n;
  }
};

struct EvalFigures {
  double loss = 0, accuracy = 0, tokens = 0;
  double bleu = -1, sacrebleu = -1, chrf = -1;  // -1: not computed (bleu: multi-bleu on the text as it is)
  double bits_per_char = -1;    // language_model with a character vocabulary; -1: not computed
  eval::BleuScore bleu_score;
  std::vector<std::string> hypotheses;
  // The test set only: sacreBLEU's lines with their signatures (docs/evaluation.md).
  std::string sacrebleu_line, chrf_line;
};

// Loss and accuracy over every pair of `batcher`'s epoch 0 (no dropout).
void evaluate_loss(exec::Model& model, exec::Executor& executor, const data::Batcher& batcher, EvalFigures& out) {
  const task::Task& task = task::translation();
  ObjectiveSums sums;
  for (const std::vector<int64_t>& indices : batcher.epoch_plan(0)) {
    data::Batch b = batcher.make_batch(indices);
    const task::TrainingFeeds batch = translation_feeds(model, b);
    exec::Plan& plan = model.plan(batch.dims, task.feed_names(), task.objective().fetches(), exec::Pass::ForwardOnly);
    executor.forward(plan, batch.feeds, StepInfo{false, 0, nullptr}, 0);
    sums.add(plan, task.objective());
  }
  model.clear_plans();
  out.loss = sums.tokens > 0 ? sums.loss / sums.tokens : 0;
  out.accuracy = sums.tokens > 0 ? sums.correct / sums.tokens : 0;
  out.tokens = sums.tokens;
}

std::string fmt(double v, int precision = 4) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << v;
  return out.str();
}

// Where the ranks other than 0 send their log: nowhere (rank 0 owns the output).
std::ostream& discarded_log() {
  static std::ostream nowhere(nullptr);
  return nowhere;
}

// The executable's bytes, hashed: ranks must run the very same binary.
uint64_t executable_fingerprint() {
  std::ifstream in("/proc/self/exe", std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return exec::fnv1a(bytes.str());
}

uint64_t bits_of(double v) { return std::bit_cast<uint64_t>(v); }

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// ---- The run --------------------------------------------------------------------------------------

// One invocation of `attnlab run`, in the order the phases happen: the constructor loads the
// experiment, the data and the models and writes the run directory's description; run() resumes
// if asked, trains until a stop condition, then validates, tests, averages and reports. The
// members are the state those phases share (the loop's counters travel in checkpoints).
class TrainingRun {
 public:
  TrainingRun(const RunOptions& options, const Registry& registry);
  RunResult run();

 private:
  void load_experiment();
  void choose_run_directory();
  void read_seed();
  void build_models();
  void make_batchers();
  void identify_run();
  void check_ranks_agree();
  void describe_run();
  bool owns_output() const { return world_.root(); }
  bool language_model() const { return task_ == &task::language_model(); }
  const data::Tokenizer& tokenizer() const { return lm_ ? *lm_->tokenizer : *corpus_.tokenizer; }
  const std::string& data_description() const { return lm_ ? lm_->description : corpus_.description; }
  EvalFigures evaluate_text(const std::vector<int>& tokens, const std::vector<int64_t>& offsets);
  ckpt::Checkpoint make_checkpoint() const;
  void resume_from_latest_checkpoint();
  void restart_run_that_saved_nothing();
  std::vector<std::string> differences_from(const std::string& experiment_text, const std::string& model_text,
                                            const std::vector<std::string>& overrides) const;
  void init_from_safetensors();  // --init-from
  eval::SacreBleuOptions reported_bleu_options() const;
  EvalFigures evaluate(const data::Batcher& set, const std::vector<data::SentencePair>& pairs, int64_t bleu_sentences,
                       Translator& translator);
  // `scheduled`: a validation of the train.valid_every schedule, which early stopping counts; the
  // end-of-run validation at a step off the schedule only records figures and the best.
  void validate(double elapsed, bool scheduled);
  // One event into metrics.jsonl and the TensorBoard events (rank 0), and its numbers into the checkpoint's latest metrics
  // ("valid_loss", "train_lr", ...).
  void log_event(const std::string& event, const nlohmann::json& fields);
  std::map<std::string, double> sum_node_metrics_over_ranks(const std::map<std::string, double>& mine, uint64_t count);
  std::string train(InterruptGuard& interrupt);  // returns why it stopped
  EvalFigures test_and_save_translations();
  struct AverageFigures {
    size_t checkpoints = 0;
    EvalFigures test;
  };
  std::optional<AverageFigures> evaluate_average();  // nothing without --average
  void write_report(const std::string& reason, const EvalFigures& test, const std::optional<AverageFigures>& average);
  void write_language_model_report(const std::string& reason);
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

  const RunOptions& options_;
  const Registry& registry_;
  dist::World& world_;
  std::ostream& log_;
  RunResult result_;

  std::string experiment_text_, model_text_;
  ExperimentSpec spec_;
  const task::Task* task_ = nullptr;  // what the experiment trains (task_of: translation by default)
  std::vector<dsl::Override> uses_;
  std::set<std::string> declared_params_;  // the task's model parameters the model declares
  fs::path run_dir_;
  uint64_t seed_ = 1;
  Corpus corpus_;                 // translation
  std::unique_ptr<LmText> lm_;    // language_model
  int64_t vocab_ = 0;
  dsl::ElaboratedModel elaborated_, eval_elaborated_;  // training (dropout, label smoothing) and evaluation
  TrainSettings settings_;

  std::unique_ptr<tbb::global_control> parallelism_;
  std::unique_ptr<exec::TbbExecutor> executor_;
  std::unique_ptr<exec::Model> model_, eval_model_;
  std::vector<ParamRef> refs_;     // trainable: what Adam updates
  std::vector<ParamRef> weights_;  // every parameter (State too): what checkpoints and exports hold
  std::set<std::string> metric_names_;  // the node metrics reported so far (data-parallel sums)
  std::unique_ptr<data::Batcher> batcher_, dev_batcher_, test_batcher_;  // translation
  std::unique_ptr<data::BlockSampler> sampler_;                           // language_model
  std::vector<int64_t> valid_offsets_;  // language_model: the held-out windows validation scores
  std::unique_ptr<TrainingStream> stream_;

  // What identifies the run for a resume, and what checkpoints record of it.
  std::vector<std::string> override_texts_;
  std::map<std::string, std::string> resolved_;
  std::string graph_bytes_;

  std::unique_ptr<CheckpointDirectory> checkpoints_;
  std::unique_ptr<Adam> adam_;
  std::unique_ptr<LearningRateSchedule> schedule_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<EventLog> events_;  // TensorBoard's copy of metrics_
  std::unique_ptr<Translator> valid_translator_, test_translator_;
  std::unique_ptr<ProgressDisplay> progress_;
  std::unique_ptr<dist::GradientReducer> reducer_;  // data-parallel only

  // The loop's state.
  int64_t step_ = 0;
  bool has_best_ = false;
  double best_score_ = 0;
  int64_t validations_without_improvement_ = 0;  // train.patience
  int64_t best_step_ = 0;
  // The best over the scheduled validations only, which train.patience compares against: a
  // resumed run then stops where an uninterrupted one would, whatever the end-of-run validation
  // before the resume found.
  bool schedule_has_best_ = false;
  double schedule_best_score_ = 0;
  std::map<std::string, double> last_metrics_;  // Checkpoint.metrics.last
  bool bleu_on_ = false;
  double last_loss_ = 0;
  int64_t last_validated_ = -1;
  std::chrono::steady_clock::time_point start_;
};

TrainingRun::TrainingRun(const RunOptions& options, const Registry& registry)
    : options_(options),
      registry_(registry),
      world_(options.world ? *options.world : dist::World::instance()),
      log_(!world_.root() ? discarded_log() : options.log ? *options.log : std::cerr) {
  // Nothing is written to the run directory until every check that can refuse the run (or the
  // resume) has passed: a refused command leaves an existing run's files as they were.
  world_.set_rank_timeout(options.rank_timeout_s);
  if (options_.resume && !options_.init_from.empty())
    throw RunError("--init-from " + options_.init_from.string() + ": not with --resume (a resumed run continues from its own checkpoint)");
  load_experiment();
  choose_run_directory();
  // d_model for the schedule comes from the elaborated model, so the settings are read once the
  // model is known; load_experiment() has already checked the sections' keys, so that a typo fails
  // before any data is read.
  read_seed();
  if (language_model()) lm_ = std::make_unique<LmText>(load_lm_text(spec_, options_, log_));
  else corpus_ = load_corpus(spec_, options_, log_);
  vocab_ = tokenizer().vocab_size();
  build_models();
  make_batchers();
  identify_run();
  check_ranks_agree();
  adam_ = std::make_unique<Adam>(settings_.adam);
  schedule_ = make_schedule(settings_.schedule);
  bleu_on_ = settings_.valid_bleu_sentences > 0;
  if (options_.resume) {
    checkpoints_ = std::make_unique<CheckpointDirectory>(run_dir_ / "checkpoints", static_cast<int>(settings_.keep_checkpoints));
    resume_from_latest_checkpoint();  // refuses a checkpoint of another experiment before any write
  } else if (!options_.init_from.empty()) {
    init_from_safetensors();  // refuses weights of another model before any write
  }
  // Accepted: from here on rank 0 writes the run directory (the other ranks only read checkpoints,
  // to resume; rank 0 creates and rotates them).
  if (owns_output()) {
    std::error_code ec;
    fs::create_directories(run_dir_, ec);
    if (ec) throw RunError("--out " + run_dir_.string() + ": cannot create the run directory: " + ec.message());
    describe_run();
    if (!checkpoints_)
      checkpoints_ = std::make_unique<CheckpointDirectory>(run_dir_ / "checkpoints", static_cast<int>(settings_.keep_checkpoints));
    checkpoints_->remove_stale_temporaries();
  }
  if (world_.distributed()) reducer_ = std::make_unique<dist::GradientReducer>(world_, model_->parameters(), options_.bucket_bytes);
}

// The named experiment file, or the built-in default, with --set applied.
void TrainingRun::load_experiment() {
  fs::path experiment_path = options_.experiment_file;
  if (!experiment_path.empty()) {
    if (!fs::exists(experiment_path)) throw RunError("experiment file " + experiment_path.string() + " does not exist");
    experiment_text_ = read_text(experiment_path);
  } else {
    experiment_path = dsl::builtin_default_experiment();
    experiment_text_ = *dsl::builtin_file_text(experiment_path);
  }
  spec_ = dsl::load_experiment(experiment_path);
  for (const std::string& s : options_.sets) dsl::apply_set(spec_, s);
  for (const std::string& u : options_.uses) uses_.push_back(dsl::parse_override(u, "--use"));
  model_text_ = dsl::SourceFile::read(spec_.model_path)->text();
  task_ = &task::task_of(spec_);

  // Unknown section keys fail before anything is written.
  (void)Section(spec_, "train", train_setting_names());
  (void)Section(spec_, "decode", kDecodeSettingNames);
}

// Where the run goes, and whether that is allowed; creates nothing (the constructor does, once the
// run is accepted).
void TrainingRun::choose_run_directory() {
  run_dir_ = options_.out_dir;
  if (run_dir_.empty()) {
    if (options_.resume) throw RunError("--resume needs --out DIR: the run directory to continue");
    run_dir_ = fs::path("runs") / (spec_.name + "-" + utc_stamp("%Y%m%d-%H%M%S"));
  }
  if (options_.resume && !fs::is_directory(run_dir_ / "checkpoints"))
    throw RunError("--resume: " + run_dir_.string() + " holds no checkpoints/ directory to resume from");
  if (!options_.resume && fs::exists(run_dir_ / "metrics.jsonl"))
    throw RunError("run directory " + run_dir_.string() + " already holds a run; give another --out DIR, or --resume to continue it");
  result_.run_dir = run_dir_;
}

void TrainingRun::read_seed() {
  seed_ = options_.seed;
  if (seed_ != 0) return;
  seed_ = 1;
  if (const ExperimentSetting* s = spec_.find("seed")) {
    if (s->value.kind != ConstValue::Kind::Int || !in_range(kSeedLimit, s->value.i))
      throw_at(s->loc, "seed must be a whole number in " + describe(kSeedLimit) + ", got " + s->value.to_string());
    seed_ = static_cast<uint64_t>(s->value.i);
  }
}

// The model with the experiment's overrides, then the train section's label_smoothing/dropout
// (unless the model overrides name them), --use, and the tokenizer's vocabulary size; and the same
// with label_smoothing 0 for evaluation (so that perplexity is the true one).
void TrainingRun::build_models() {
  auto overrides_name = [&](const std::string& name) {
    for (const dsl::Override& o : spec_.model_overrides)
      if (o.name == name) return true;
    return false;
  };
  // The model as the experiment and --use give it, checked against the task once (its inputs,
  // outputs and the parameters the trainer sets) before anything is set from the data or settings.
  {
    const dsl::ElaboratedModel declared = dsl::elaborate_experiment_model(spec_, registry_, uses_);
    task::check_graph(*task_, declared.graph);
    task::check_params(*task_, declared, spec_);
    for (const task::ModelParam& p : task_->params())
      if (task::has_param(declared, p.name)) declared_params_.insert(p.name);
  }
  // train.label_smoothing / train.dropout (validated fully by read_settings) unless the model
  // overrides name them.
  std::vector<dsl::Override> extra;
  for (const task::ModelParam& p : task_->params()) {
    if (p.use != task::ModelParam::Use::SetFromTrainSetting) continue;
    const ExperimentSetting* s = spec_.find("train." + p.name);
    if (s && !overrides_name(p.name)) extra.push_back(dsl::parse_override(p.name + "=" + s->value.to_string(), "--set"));
  }
  for (const dsl::Override& u : uses_) extra.push_back(u);
  extra.push_back(dsl::parse_override("vocab=" + std::to_string(vocab_), "--set"));
  elaborated_ = dsl::elaborate_experiment_model(spec_, registry_, extra);
  if (declared_params_.count(kLabelSmoothing)) extra.push_back(dsl::parse_override(std::string(kLabelSmoothing) + "=0", "--set"));
  eval_elaborated_ = dsl::elaborate_experiment_model(spec_, registry_, extra);

  // The noam schedule's d_model is the model's, never a silent default.
  if (const ExperimentSetting* noam = spec_.find("train.noam"); noam && !declared_params_.count(kModelDimension))
    throw_at(noam->loc, "noam(...) scales the rate by the model's d_model^-0.5, but model '" + elaborated_.name +
                            "' declares no parameter d_model; use constant(...) or declare `param d_model`");
  settings_ = read_settings(spec_, elaborated_.integer_param(kModelDimension, 512));
  if (language_model()) {
    // A language model is judged by its held-out loss: no translations, no BLEU.
    if (const ExperimentSetting* metric = spec_.find("train.valid_metric"); metric && metric->value.text != "loss")
      throw_at(metric->loc, "train.valid_metric: the language_model task validates by loss only");
    if (const ExperimentSetting* epochs = spec_.find("train.max_epochs"))
      throw_at(epochs->loc, "train.max_epochs: the language_model task samples random blocks and has no epochs; use train.max_steps");
    if (options_.average > 0) throw RunError("--average: the language_model task does not average checkpoints");
    settings_.valid_metric = "loss";
    settings_.valid_bleu_sentences = 0;
  }
  if (options_.average > settings_.keep_checkpoints)
    throw RunError("--average " + std::to_string(options_.average) + ": the run keeps only its last " +
                   std::to_string(settings_.keep_checkpoints) + " step checkpoints (train.keep_checkpoints); give --average " +
                   std::to_string(settings_.keep_checkpoints) + " or less, or raise train.keep_checkpoints");

  parallelism_ = std::make_unique<tbb::global_control>(
      tbb::global_control::max_allowed_parallelism,
      options_.threads > 0 ? static_cast<size_t>(options_.threads) : tbb::this_task_arena::max_concurrency());
  executor_ = std::make_unique<exec::TbbExecutor>(options_.threads);
  const ir::DimBindings rep = dsl::default_dims();
  model_ = std::make_unique<exec::Model>(elaborated_.graph, registry_, seed_, rep);
  eval_model_ = std::make_unique<exec::Model>(eval_elaborated_.graph, registry_, seed_, rep);
  result_.parameters = model_->parameters().element_count();
  refs_ = param_refs(model_->parameters(), Which::Trainable);
  weights_ = param_refs(model_->parameters());
  mark_weight_decay(refs_, model_->graph(), settings_.adam.decay_embeddings);
  graph_bytes_ = elaborated_.graph.SerializeAsString();
}

void TrainingRun::make_batchers() {
  if (language_model()) {
    const int64_t block = elaborated_.integer_param(kBlockSize, 0);  // task::check_params: declared
    try {
      sampler_ = std::make_unique<data::BlockSampler>(lm_->train, block, seed_);
      valid_offsets_ = data::tile(static_cast<int64_t>(lm_->valid.size()), block);
    } catch (const data::DataError& e) {
      throw RunError(std::string(e.what()) + " (the model's block_size is " + std::to_string(block) + ")");
    }
    if (settings_.valid_blocks > 0 && static_cast<int64_t>(valid_offsets_.size()) > settings_.valid_blocks)
      valid_offsets_.resize(static_cast<size_t>(settings_.valid_blocks));
    stream_ = std::make_unique<LanguageModelStream>(*model_, *sampler_, settings_.batch);
    return;
  }
  data::BatcherOptions bo;
  bo.batch_tokens = settings_.batch_tokens;
  bo.seed = seed_;
  try {
    batcher_ = std::make_unique<data::Batcher>(data::encode_pairs(*corpus_.tokenizer, corpus_.train), bo);
    dev_batcher_ = std::make_unique<data::Batcher>(data::encode_pairs(*corpus_.tokenizer, corpus_.dev), bo);
    test_batcher_ = std::make_unique<data::Batcher>(data::encode_pairs(*corpus_.tokenizer, corpus_.test), bo);
  } catch (const data::DataError& e) {
    throw RunError(std::string(e.what()) + " (raise train.batch_tokens)");
  }
  stream_ = std::make_unique<TranslationStream>(*model_, *batcher_, settings_.pad_to);
}

// The run's identity: what a resume and the ranks' start-up check compare, and what checkpoints
// record of it.
void TrainingRun::identify_run() {
  for (const std::string& s : options_.sets) override_texts_.push_back("--set " + s);
  for (const std::string& u : options_.uses) override_texts_.push_back("--use " + u);
  for (const ExperimentSetting& s : spec_.settings) resolved_[s.key] = s.value.to_string();
  for (const auto& [section, list] : spec_.sections)
    for (const ExperimentSetting& s : list) resolved_[section + "." + s.key] = s.value.to_string();
  resolved_["seed"] = std::to_string(seed_);
  // What translate and generate check a checkpoint for (absent: translation, as before tasks).
  if (task_ != &task::translation()) resolved_["task"] = task_->name();
  if (sampler_) resolved_[kBlockSize] = std::to_string(sampler_->block());  // generate's context
}

// Every rank must train the same thing on the same data with the same code; checked before
// rank 0 writes anything.
void TrainingRun::check_ranks_agree() {
  if (!world_.distributed()) return;
  std::string plugins;
  for (const std::string& type : registry_.type_names()) plugins += type + "\n";
  std::string overrides = "seed " + std::to_string(seed_) + (options_.resume ? " resume" : "") + " out " + options_.out_dir.string();
  for (const std::string& o : override_texts_) overrides += "\n" + o;
  uint64_t held_out = 0;
  if (lm_)
    for (int id : lm_->valid) held_out = exec::hash_combine(held_out, static_cast<uint64_t>(id));
  else
    held_out = exec::hash_combine(dev_batcher_->fingerprint(), test_batcher_->fingerprint());
  const uint64_t data = exec::hash_combine(exec::hash_combine(stream_->fingerprint(), exec::fnv1a(tokenizer().serialize())), held_out);
  try {
    dist::check_same_everywhere(world_, {{"the attnlab binary", executable_fingerprint()},
                                         {"the experiment", exec::fnv1a(experiment_text_ + "\n" + model_text_)},
                                         {"the overrides (--set, --use, --seed, --resume, --out)", exec::fnv1a(overrides)},
                                         {"the plugins", exec::fnv1a(plugins)},
                                         {"the data", data}});
  } catch (const dist::DistError& e) {
    throw RunError(std::string("the ranks disagree: ") + e.what());
  }
}

// The run directory's descriptive files (rank 0).
void TrainingRun::describe_run() {
  write_text(run_dir_ / "experiment.attn", experiment_text_);
  write_text(run_dir_ / spec_.model_path.filename(), model_text_);
  const std::string command = options_.command_line.empty() ? "attnlab run" : options_.command_line;
  write_text(run_dir_ / "command.txt", command + "\n");
  nlohmann::ordered_json sj;
  sj["experiment"] = spec_.name;
  sj["model"] = elaborated_.name;
  if (task_ != &task::translation()) sj["task"] = task_->name();
  sj["data"] = data_description();
  sj["vocab"] = vocab_;
  sj["parameters"] = result_.parameters;
  sj["settings"] = resolved_;
  sj["overrides"] = override_texts_;
  nlohmann::ordered_json params;
  for (const auto& [name, value] : elaborated_.params) params[name] = to_string(value);
  sj["model_params"] = params;
  nlohmann::ordered_json slots;
  for (const auto& [slot, type] : elaborated_.slots) slots[slot] = type;
  sj["slots"] = slots;
  write_text(run_dir_ / "settings.json", sj.dump(2) + "\n");
}

ckpt::Checkpoint TrainingRun::make_checkpoint() const {
  ckpt::Checkpoint c;
  c.set_spec_text(model_text_);
  c.set_experiment_text(experiment_text_);
  for (const std::string& o : override_texts_) c.add_overrides(o);
  for (const auto& [k, v] : resolved_) (*c.mutable_settings())[k] = v;
  c.set_tokenizer_kind(tokenizer().kind());
  c.set_tokenizer(tokenizer().serialize());
  c.set_graph(graph_bytes_);
  store_parameters(c, weights_);
  store_optimizer(c, *adam_);
  c.set_step(step_);
  c.set_epoch(stream_->position().epoch);
  c.mutable_data_position()->set_epoch(stream_->position().epoch);
  c.mutable_data_position()->set_batch_index(stream_->position().batch);
  c.mutable_data_position()->set_fingerprint(stream_->fingerprint());
  c.mutable_random()->set_seed(seed_);
  (*c.mutable_random()->mutable_counters())["micro_batches"] = static_cast<uint64_t>(step_ * settings_.accumulate);
  c.mutable_metrics()->set_best_metric("valid_" + settings_.valid_metric);
  c.mutable_metrics()->set_validations_without_improvement(validations_without_improvement_);
  c.mutable_metrics()->set_has_best(has_best_);
  c.mutable_metrics()->set_best_score(best_score_);
  c.mutable_metrics()->set_best_step(best_step_);
  c.mutable_metrics()->set_schedule_has_best(schedule_has_best_);
  c.mutable_metrics()->set_schedule_best_score(schedule_best_score_);
  for (const auto& [name, value] : last_metrics_) (*c.mutable_metrics()->mutable_last())[name] = value;
  c.set_created_utc(utc_stamp("%Y-%m-%dT%H:%M:%SZ"));
  return c;
}

// What must match for a resume: the overrides except those that only decide when to stop.
std::vector<std::string> identity_overrides(const std::vector<std::string>& all) {
  std::vector<std::string> out;
  for (const std::string& o : all) {
    const size_t eq = o.find('=');
    const std::string key = o.rfind("--set ", 0) == 0 && eq != std::string::npos ? o.substr(6, eq - 6) : "";
    if (!kResumableChanges.count(key)) out.push_back(o);
  }
  return out;
}

// What differs between a saved run (its experiment, model and overrides) and this one.
std::vector<std::string> TrainingRun::differences_from(const std::string& experiment_text, const std::string& model_text,
                                                       const std::vector<std::string>& overrides) const {
  std::vector<std::string> differs;
  if (experiment_text != experiment_text_) differs.push_back("the experiment file");
  if (model_text != model_text_) differs.push_back("the model file");
  if (identity_overrides(overrides) != identity_overrides(override_texts_))
    differs.push_back("the overrides (" + join_names(identity_overrides(overrides)) + " then, " +
                      join_names(identity_overrides(override_texts_)) + " now)");
  return differs;
}

// A run stopped before its first step checkpoint left nothing to resume from: --resume starts it
// again from step 0 in its own directory (as a user would, instead of looking for a new one), once
// the files it wrote at its start show the same experiment, model and overrides.
void TrainingRun::restart_run_that_saved_nothing() {
  std::vector<std::string> differs;
  const fs::path saved_experiment = run_dir_ / "experiment.attn", saved_model = run_dir_ / spec_.model_path.filename(),
                 saved_settings = run_dir_ / "settings.json";
  if (fs::exists(saved_experiment) && fs::exists(saved_model) && fs::exists(saved_settings)) {
    const nlohmann::json settings = nlohmann::json::parse(read_text(saved_settings), nullptr, false);
    std::vector<std::string> overrides;
    if (!settings.is_discarded() && settings.contains("overrides") && settings["overrides"].is_array())
      for (const auto& o : settings["overrides"])
        if (o.is_string()) overrides.push_back(o.get<std::string>());
    differs = differences_from(read_text(saved_experiment), read_text(saved_model), overrides);
  }
  if (!differs.empty())
    throw RunError("cannot resume: " + run_dir_.string() + " holds a run of another experiment (" + join_names(differs) +
                   " differ from this run's), which saved no checkpoint; give another --out");
  const fs::path metrics_path = run_dir_ / "metrics.jsonl";
  if (owns_output()) {
    if (fs::exists(metrics_path)) fs::remove(metrics_path);
    for (const fs::path& f : event_files(run_dir_)) fs::remove(f);
  }
  log_ << "no step checkpoint in " << checkpoints_->dir().string() << " (the run stopped before its first one): starting it again from step 0\n";
}

void TrainingRun::resume_from_latest_checkpoint() {
  std::optional<fs::path> latest = checkpoints_->latest();
  if (!latest) return restart_run_that_saved_nothing();
  ckpt::Checkpoint c = read_checkpoint(*latest);
  const std::string source = latest->string();
  std::vector<std::string> differs =
      differences_from(c.experiment_text(), c.spec_text(), std::vector<std::string>(c.overrides().begin(), c.overrides().end()));
  if (c.random().seed() != seed_)
    differs.push_back("the seed (" + std::to_string(c.random().seed()) + " then, " + std::to_string(seed_) + " now)");
  if (!differs.empty())
    throw RunError("cannot resume: checkpoint " + source + " belongs to another experiment (" + join_names(differs) +
                   " differ from this run's); resume with the same experiment and overrides, or start a new run with another --out");
  if (c.data_position().fingerprint() != stream_->fingerprint())
    throw RunError("cannot resume: checkpoint " + source + " was trained on other data (data fingerprint " +
                   std::to_string(c.data_position().fingerprint()) + ", this run's " + std::to_string(stream_->fingerprint()) +
                   "); resume with the same data, or start a new run with another --out");
  if (c.tokenizer() != tokenizer().serialize())
    throw RunError("cannot resume: checkpoint " + source + " was trained on other data (its vocabulary differs from the one built "
                   "from this run's data); resume with the same data, or start a new run with another --out");
  load_parameters(c, weights_, source);
  adam_->import_state(adam_state_from(c, source), refs_, source);
  step_ = c.step();
  stream_->set_position({c.data_position().epoch(), c.data_position().batch_index()});
  has_best_ = c.metrics().has_best();
  best_score_ = c.metrics().best_score();
  best_step_ = c.metrics().best_step();
  schedule_has_best_ = c.metrics().schedule_has_best();
  schedule_best_score_ = c.metrics().schedule_best_score();
  if (!schedule_has_best_ && has_best_) {  // a checkpoint from before the two were told apart
    schedule_has_best_ = true;
    schedule_best_score_ = best_score_;
  }
  validations_without_improvement_ = c.metrics().validations_without_improvement();
  last_metrics_ = {c.metrics().last().begin(), c.metrics().last().end()};
  const fs::path metrics_path = run_dir_ / "metrics.jsonl";
  if (owns_output() && fs::exists(metrics_path)) truncate_metrics_after(metrics_path, step_);
  if (owns_output()) truncate_events_after(run_dir_, step_);
  log_ << "resuming " << run_dir_.string() << " at step " << step_ << " (epoch " << c.data_position().epoch() << ", batch "
       << c.data_position().batch_index() << ")\n";
}

// The initial weights from an exported file instead of the seed's initialisation; the optimizer
// starts afresh. Every parameter must be there with the model's shape (load_parameters names
// each one that is missing, unexpected or of another shape).
void TrainingRun::init_from_safetensors() {
  const std::string source = options_.init_from.string();
  try {
    const SafetensorsFile file = read_safetensors(options_.init_from);
    load_parameters(file.tensors, weights_, source);
    log_ << "initial weights: " << file.tensors.parameters_size() << " parameters from " << source << "\n";
  } catch (const SafetensorsError& e) {
    throw RunError(std::string("--init-from ") + e.what());
  } catch (const CheckpointError& e) {
    throw RunError(std::string("--init-from ") + source + ": " + e.what());
  }
}

// Loss and accuracy of `set` with the current weights, and BLEU of the first `bleu_sentences`
// of `pairs` translated by `translator`.
EvalFigures TrainingRun::evaluate(const data::Batcher& set, const std::vector<data::SentencePair>& pairs, int64_t bleu_sentences,
                                  Translator& translator) {
  for (exec::Parameter& p : eval_model_->parameters()) p.value.view().copy_from(model_->parameters().at(p.name).value.view());
  EvalFigures f;
  evaluate_loss(*eval_model_, *executor_, set, f);
  if (bleu_sentences > 0) {
    const size_t n = std::min<size_t>(pairs.size(), static_cast<size_t>(bleu_sentences));
    std::vector<std::vector<int>> sources;
    std::vector<std::string> references;
    for (size_t i = 0; i < n; ++i) {
      sources.push_back(encode_source(*corpus_.tokenizer, pairs[i].source, InputForm::kTokenized));
      references.push_back(pairs[i].target);
    }
    std::vector<std::vector<int>> ids = translator.translate(sources);
    for (const auto& h : ids) f.hypotheses.push_back(corpus_.tokenizer->decode(h));
    f.bleu_score = eval::corpus_bleu(f.hypotheses, references);
    f.bleu = f.bleu_score.bleu;
    f.sacrebleu = eval::corpus_sacrebleu(f.hypotheses, {references}, reported_bleu_options()).score;
    f.chrf = eval::corpus_chrf(f.hypotheses, {references}, eval::ChrfOptions{}).score;
  }
  return f;
}

// The language model's loss over the windows at `offsets` of `tokens` (no dropout, no label
// smoothing), train.batch windows at a time; bits per character for a character vocabulary.
EvalFigures TrainingRun::evaluate_text(const std::vector<int>& tokens, const std::vector<int64_t>& offsets) {
  for (exec::Parameter& p : eval_model_->parameters()) p.value.view().copy_from(model_->parameters().at(p.name).value.view());
  const task::LanguageModelTask& task = task::language_model();
  ObjectiveSums sums;
  Tensor inputs, labels;
  for (size_t first = 0; first < offsets.size(); first += static_cast<size_t>(settings_.batch)) {
    const std::vector<int64_t> window(offsets.begin() + static_cast<std::ptrdiff_t>(first),
                                      offsets.begin() + static_cast<std::ptrdiff_t>(std::min(offsets.size(), first + static_cast<size_t>(settings_.batch))));
    data::fill_windows(tokens, window, sampler_->block(), inputs, labels);
    const task::TrainingFeeds batch = task.feeds(eval_model_->graph(), inputs, labels);
    exec::Plan& plan = eval_model_->plan(batch.dims, task.feed_names(), task.objective().fetches(), exec::Pass::ForwardOnly);
    executor_->forward(plan, batch.feeds, StepInfo{false, 0, nullptr}, 0);
    sums.add(plan, task.objective());
  }
  eval_model_->clear_plans();
  EvalFigures f;
  f.loss = sums.tokens > 0 ? sums.loss / sums.tokens : 0;
  f.accuracy = sums.tokens > 0 ? sums.correct / sums.tokens : 0;
  f.tokens = sums.tokens;
  if (tokenizer().kind() == "char") f.bits_per_char = f.loss / std::log(2.0);  // one token per character
  return f;
}

// Dev figures into metrics.jsonl and the log; best.ckpt when they are the best so far.
void TrainingRun::validate(double elapsed, bool scheduled) {
  EvalFigures f = lm_ ? evaluate_text(lm_->valid, valid_offsets_)
                      : evaluate(*dev_batcher_, corpus_.dev, settings_.valid_bleu_sentences, *valid_translator_);
  nlohmann::json fields = {{"step", step_},        {"epoch", stream_->position().epoch}, {"loss", finite_or_null(f.loss)},
                           {"ppl", finite_or_null(std::exp(f.loss))}, {"accuracy", f.accuracy}, {"elapsed_s", elapsed}};
  if (f.bleu >= 0) fields["bleu"] = f.bleu;
  if (f.sacrebleu >= 0) fields["sacrebleu"] = f.sacrebleu;
  if (f.chrf >= 0) fields["chrf"] = f.chrf;
  if (f.bits_per_char >= 0) fields["bpc"] = f.bits_per_char;
  log_event("valid", fields);
  // Higher is better: BLEU, chrF, or the negated loss.
  const double score = settings_.valid_metric == "bleu" ? f.bleu : settings_.valid_metric == "chrf" ? f.chrf : -f.loss;
  std::string line = "step " + std::to_string(step_) + "  valid loss " + fmt(f.loss) + "  ppl " + fmt(std::exp(f.loss), 2) +
                     "  accuracy " + fmt(100 * f.accuracy, 1) + "%";
  if (f.bleu >= 0) line += "  BLEU " + fmt(f.bleu, 2);
  if (f.chrf >= 0) line += "  chrF " + fmt(f.chrf, 2);
  if (f.bits_per_char >= 0) line += "  bpc " + fmt(f.bits_per_char);
  const bool best = !has_best_ || score > best_score_;
  if (scheduled) {
    if (!schedule_has_best_ || score > schedule_best_score_) {
      validations_without_improvement_ = 0;
      schedule_has_best_ = true;
      schedule_best_score_ = score;
    } else {
      ++validations_without_improvement_;
      if (settings_.patience > 0)
        line += "  (no improvement for " + std::to_string(validations_without_improvement_) + " of patience " +
                std::to_string(settings_.patience) + ")";
    }
  }
  if (best) {
    has_best_ = true;
    best_score_ = score;
    best_step_ = step_;
    if (owns_output()) checkpoints_->save_best(make_checkpoint());
    line += "  (best)";
  }
  progress_->print_line(line);
  result_.valid_loss = f.loss;
  result_.valid_accuracy = f.accuracy;
  result_.valid_bleu = f.bleu;
  result_.valid_bits_per_char = f.bits_per_char;
}

// Data-parallel: the step's node metrics summed over ranks, in rank order. Every rank that has
// reported names the same metrics (the same graph); they are sent by position in name order, and a
// rank that has reported none yet (no rows so far) sends zeros. The names are this rank's.
std::map<std::string, double> TrainingRun::sum_node_metrics_over_ranks(const std::map<std::string, double>& mine,
                                                                       uint64_t count) {
  std::vector<uint64_t> words(count, bits_of(0.0));
  if (metric_names_.size() == count) {
    size_t i = 0;
    for (const std::string& name : metric_names_) {
      auto it = mine.find(name);
      words[i++] = bits_of(it == mine.end() ? 0.0 : it->second);
    }
  } else if (!metric_names_.empty()) {
    throw RunError("data-parallel training: the ranks' nodes report different metrics (" + std::to_string(metric_names_.size()) +
                   " here, " + std::to_string(count) + " elsewhere)");
  }
  const std::vector<uint64_t> all = world_.all_gather(words, "node metrics of step " + std::to_string(step_ + 1));
  std::map<std::string, double> sums;
  size_t i = 0;
  for (const std::string& name : metric_names_) {
    double sum = 0;
    for (int r = 0; r < world_.size(); ++r) sum += std::bit_cast<double>(all[static_cast<size_t>(r) * count + i]);
    sums[name] = sum;
    ++i;
  }
  return sums;
}

void TrainingRun::log_event(const std::string& event, const nlohmann::json& fields) {
  if (metrics_) metrics_->append(event, fields);
  if (events_) events_->append(event, fields);
  for (const auto& [key, value] : fields.items())
    if (value.is_number() && key != "step") last_metrics_[event + "_" + key] = value.get<double>();
}

RunResult TrainingRun::run() {
  if (owns_output()) {
    metrics_ = std::make_unique<MetricsLog>(run_dir_ / "metrics.jsonl");
    events_ = std::make_unique<EventLog>(run_dir_);
  }

  log_ << "experiment " << spec_.name << (lm_ ? " (" + task_->name() + ")" : std::string()) << ": model " << elaborated_.name << ", "
       << result_.parameters << " parameters, vocab " << vocab_;
  if (lm_)
    log_ << ", " << lm_->train.size() << " training tokens, " << valid_offsets_.size() << " validation blocks of " << sampler_->block() << "\n";
  else
    log_ << ", " << corpus_.train.size() << " training pairs, " << corpus_.dev.size() << " dev, " << corpus_.test.size() << " test\n";
  log_ << "data: " << data_description() << "\n"
       << "schedule: " << schedule_->describe() << ", "
       << (lm_ ? "batch " + std::to_string(settings_.batch) + " blocks" : "batch_tokens " + std::to_string(settings_.batch_tokens))
       << " x accumulate " << settings_.accumulate << ", threads " << executor_->threads();
  if (world_.distributed()) log_ << " on each of " << world_.size() << " ranks (data-parallel, " << reducer_->bucket_count() << " gradient buckets)";
  log_ << "\n"
       << "run directory: " << run_dir_.string() << "\n";
  if (settings_.valid_every > 0)
    log_ << "validation: every " << settings_.valid_every << " steps, best by dev " << settings_.valid_metric
         << (bleu_on_ ? ", dev translations " + std::string(settings_.valid_beam == 1 ? "greedy" : "beam " + std::to_string(settings_.valid_beam))
                      : std::string())
         << (settings_.patience > 0 ? ", patience " + std::to_string(settings_.patience) : std::string()) << "\n";

  eval::DecodeOptions decode_options;
  decode_options.beam = static_cast<int>(settings_.beam);
  decode_options.alpha = settings_.alpha;
  decode_options.max_len_extra = settings_.max_length_extra;
  decode_options.threads = options_.threads;
  // Validation decodes greedily (cheap, and enough to follow progress); the test set with the
  // decode section's search (beam, alpha).
  eval::DecodeOptions greedy_options = decode_options;
  greedy_options.beam = static_cast<int>(settings_.valid_beam);
  valid_translator_ = std::make_unique<Translator>(*eval_model_, *executor_, greedy_options);
  test_translator_ = std::make_unique<Translator>(*eval_model_, *executor_, decode_options);

  ProgressOptions po;
  po.terminal = options_.progress_terminal;
  po.log_interval_s = settings_.log_every_s > 0 ? settings_.log_every_s : options_.log_interval_s;
  progress_ = std::make_unique<ProgressDisplay>(log_, po);
  InterruptGuard interrupt;

  const int64_t start_step = step_;
  const std::string reason = train(interrupt);
  // The last validation comes before the last checkpoint, so that the checkpoint knows whether
  // it is the best one (and holds its figures).
  if (!result_.interrupted && last_validated_ != step_)
    validate(seconds(), settings_.valid_every > 0 && step_ % settings_.valid_every == 0);
  if (owns_output() && (step_ > start_step || !checkpoints_->latest())) checkpoints_->save_step(make_checkpoint());
  // The other ranks leave only once rank 0 has saved (a rank that leaves with a non-zero code,
  // as after a signal, makes mpirun end the others); rank 0 then evaluates and reports alone.
  if (world_.distributed()) {
    const uint64_t saved[] = {static_cast<uint64_t>(step_)};
    (void)world_.all_gather(saved, "the last checkpoint");
  }
  if (!owns_output()) return result_;
  if (result_.interrupted) {
    log_ << "interrupted: checkpoint saved in " << checkpoints_->dir().string() << "; continue with --resume --out " << run_dir_.string()
         << "\n";
    return result_;
  }
  if (lm_) {
    write_language_model_report(reason);
    return result_;
  }
  EvalFigures test = test_and_save_translations();
  const std::optional<AverageFigures> average = evaluate_average();
  write_report(reason, test, average);
  return result_;
}

// Training steps until a stop condition or a signal; validation and checkpoints on their schedules.
std::string TrainingRun::train(InterruptGuard& interrupt) {
  start_ = std::chrono::steady_clock::now();
  const double plan_budget_bytes = settings_.plan_memory_mb * 1024.0 * 1024.0;
  Tensor loss_seed(Shape{}, 0.0f);
  MicroBatchReport micro_report;
  int64_t trained_tokens = 0, trained_source_tokens = 0;
  last_validated_ = options_.resume ? step_ : -1;
  auto stop_reason = [&]() -> std::string {
    if (settings_.max_steps > 0 && step_ >= settings_.max_steps) return "max_steps";
    if (settings_.max_epochs > 0 && stream_->position().epoch >= settings_.max_epochs) return "max_epochs";
    if (settings_.max_minutes > 0 && seconds() >= settings_.max_minutes * 60) return "max_minutes";
    if (settings_.patience > 0 && validations_without_improvement_ >= settings_.patience) return "patience";
    return "";
  };
  bool stop_after_step = false;  // a rank was asked to stop (data-parallel)
  std::string reason = stop_reason();
  while (reason.empty()) {
    // One process stops before the step; ranks agree on stopping after it (see below).
    if (!world_.distributed() && interrupt.stop_requested()) {
      reason = "signal";
      break;
    }
    double loss_sum = 0, tokens = 0, correct = 0;
    double aux_sum = 0;  // the nodes' auxiliary losses, each micro-batch's weighted by its tokens
    std::map<std::string, double> node_metrics;
    int64_t source_tokens = 0;
    bool has_gradient = false;  // whether the store holds this step's gradient yet
    bool reported = false;      // whether the last micro-batch's backward told the reducer
    for (int64_t micro = 0; micro < settings_.accumulate; ++micro) {
      const bool last_micro = micro + 1 == settings_.accumulate;
      if (reducer_ && last_micro) reducer_->begin_step("step " + std::to_string(step_ + 1));
      // This rank's shard of the global batch (all of it in a world of one).
      const uint64_t micro_index = static_cast<uint64_t>(step_ * settings_.accumulate + micro);
      const MicroBatch b = stream_->next(micro_index, world_.rank(), world_.size());
      StepInfo info{true, seed_, nullptr};
      info.batch_offset = b.batch_offset;
      info.batch_rows = b.batch_rows;
      if (b.rows == 0) continue;  // a batch with fewer rows than ranks leaves some ranks idle
      const task::TrainingFeeds& batch = b.feeds;
      exec::Plan& plan = model_->plan(batch.dims, task_->feed_names(), task_->objective().fetches());
      executor_->forward(plan, batch.feeds, info, micro_index, nullptr, &micro_report);
      ObjectiveSums micro_sums;
      const double n = micro_sums.add(plan, task_->objective());
      micro_report.drain_into(n, aux_sum, node_metrics);
      loss_sum += micro_sums.loss;
      tokens += micro_sums.tokens;
      correct += micro_sums.correct;
      source_tokens += b.source_tokens;
      // The seed n turns the mean loss's gradient into the sum's; summed over the micro-batches
      // (and the ranks) and scaled by 1/tokens below, it is the gradient of the mean over the
      // whole step.
      loss_seed.data()[0] = static_cast<float>(n);
      executor_->backward(plan, {{task_->objective().loss, loss_seed}},
                          exec::BackwardOptions{has_gradient, reducer_ && last_micro ? reducer_.get() : nullptr, n});
      has_gradient = true;
      reported = last_micro;
      if (static_cast<double>(plan.bytes()) * static_cast<double>(model_->cached_plans()) > plan_budget_bytes) model_->clear_plans();
    }
    if (world_.distributed()) {
      // The last micro-batch's shard was empty here: this rank's share (zero when it had no rows
      // in the whole step) still joins the sum.
      if (!has_gradient) model_->parameters().zero_grads();
      if (!reported) reducer_->report_all();
      // The step's sums over ranks, in rank order (the same on every rank), and whether any rank
      // was asked to stop. Sent after this rank's backward: a rank that does not get this far is
      // named by rank 0.
      for (const auto& [name, value] : node_metrics) metric_names_.insert(name);
      const uint64_t mine[] = {bits_of(loss_sum), bits_of(tokens), bits_of(correct), static_cast<uint64_t>(source_tokens),
                               interrupt.stop_requested() ? 1u : 0u, bits_of(aux_sum), metric_names_.size()};
      const std::vector<uint64_t> all = world_.all_gather(mine, "step " + std::to_string(step_ + 1));
      uint64_t metric_count = 0;
      for (int r = 0; r < world_.size(); ++r) metric_count = std::max(metric_count, all[static_cast<size_t>(r) * std::size(mine) + 6]);
      if (metric_count > 0) node_metrics = sum_node_metrics_over_ranks(node_metrics, metric_count);
      loss_sum = tokens = correct = aux_sum = 0;
      source_tokens = 0;
      bool stop = false;
      for (int r = 0; r < world_.size(); ++r) {
        const uint64_t* row = all.data() + static_cast<size_t>(r) * std::size(mine);
        loss_sum += std::bit_cast<double>(row[0]);
        tokens += std::bit_cast<double>(row[1]);
        correct += std::bit_cast<double>(row[2]);
        source_tokens += static_cast<int64_t>(row[3]);
        stop = stop || row[4] != 0;
        aux_sum += std::bit_cast<double>(row[5]);
      }
      reducer_->finish_step();
      if (stop) stop_after_step = true;
    }
    ++step_;
    const double lr = schedule_->rate(step_);
    StepStats stats = adam_->step(refs_, lr, tokens > 0 ? 1.0 / tokens : 1.0);
    last_loss_ = tokens > 0 ? loss_sum / tokens : 0;
    trained_tokens += static_cast<int64_t>(tokens);
    trained_source_tokens += source_tokens;
    const double elapsed = seconds();
    const double tps = elapsed > 0 ? static_cast<double>(trained_tokens) / elapsed : 0;
    nlohmann::json train_fields = {{"step", step_},
                               {"epoch", stream_->position().epoch},
                               {"loss", finite_or_null(last_loss_)},
                               {"accuracy", tokens > 0 ? correct / tokens : 0.0},
                               {"lr", lr},
                               {"tokens", tokens},
                               {"grad_norm", finite_or_null(stats.grad_norm)},
                               {"tokens_per_s", tps},
                               {"elapsed_s", elapsed}};
    // Nodes' auxiliary losses (the mean over the step's tokens, as the objective weights them) and
    // metrics (node.h, StepReport), only for models whose nodes report any.
    if (aux_sum != 0) train_fields["aux_loss"] = finite_or_null(tokens > 0 ? aux_sum / tokens : 0.0);
    for (const auto& [name, value] : node_metrics) train_fields[name] = value;
    if (reducer_) {
      const dist::GradientReducer::Timing t = reducer_->last_timing();
      train_fields["allreduce_s"] = t.reduce_seconds;
      train_fields["allreduce_exposed_s"] = t.exposed_seconds;
    }
    log_event("train", train_fields);
    if (!std::isfinite(last_loss_))
      throw RunError("training diverged at step " + std::to_string(step_) +
                     " (loss is not finite); lower the learning rate (noam factor) or enable train.clip_norm");
    progress_->update({step_, settings_.max_steps, stream_->position().epoch, last_loss_, lr, tps, elapsed});
    reason = stop_after_step ? "signal" : stop_reason();
    if (settings_.valid_every > 0 && step_ % settings_.valid_every == 0 && reason.empty()) {
      validate(elapsed, true);
      last_validated_ = step_;
      reason = stop_reason();  // early stopping (train.patience) decides after a validation
    }
    if (settings_.checkpoint_every > 0 && step_ % settings_.checkpoint_every == 0 && reason.empty() && owns_output())
      checkpoints_->save_step(make_checkpoint());
  }
  result_.train_seconds = seconds();
  result_.tokens_per_second = result_.train_seconds > 0 ? static_cast<double>(trained_tokens) / result_.train_seconds : 0;
  result_.last_train_loss = last_loss_;
  result_.steps = step_;
  result_.epoch = stream_->position().epoch;
  result_.interrupted = reason == "signal";
  progress_->finish();
  log_ << "stopped at step " << step_ << " (" << reason << ") after " << format_duration(result_.train_seconds) << "; "
       << static_cast<int64_t>(result_.tokens_per_second) << " target tokens/s, "
       << static_cast<int64_t>(result_.train_seconds > 0 ? (trained_tokens + trained_source_tokens) / result_.train_seconds : 0)
       << " source+target tokens/s\n";
  return reason;
}

// The test set: loss, accuracy and (with BLEU on) translations with the decode section's search,
// written as test.src/test.ref/test.hyp for `attnlab bleu` and inspection.
EvalFigures TrainingRun::test_and_save_translations() {
  EvalFigures test =
      evaluate(*test_batcher_, corpus_.test, bleu_on_ ? static_cast<int64_t>(corpus_.test.size()) : 0, *test_translator_);
  if (!test.hypotheses.empty()) {
    std::string src_text, ref_text, hyp_text;
    for (size_t i = 0; i < test.hypotheses.size(); ++i) {
      src_text += corpus_.test[i].source + "\n";
      ref_text += corpus_.test[i].target + "\n";
      hyp_text += test.hypotheses[i] + "\n";
    }
    write_text(run_dir_ / "test.src", src_text);
    write_text(run_dir_ / "test.ref", ref_text);
    write_text(run_dir_ / "test.hyp", hyp_text);
  }
  nlohmann::json test_fields = {{"step", step_}, {"loss", test.loss}, {"ppl", finite_or_null(std::exp(test.loss))}, {"accuracy", test.accuracy}};
  if (!test.hypotheses.empty()) {
    // As papers report it: sacreBLEU's 13a on raw data; on tokenized data its text is scored as it
    // is (tok:none), which the signature says.
    std::vector<std::vector<std::string>> references(1);
    for (const auto& pair : corpus_.test) references[0].push_back(pair.target);
    const eval::SacreBleuOptions bleu = reported_bleu_options();
    const eval::SacreBleuScore sacre = eval::corpus_sacrebleu(test.hypotheses, references, bleu);
    const eval::ChrfOptions chrf_options;
    const eval::ChrfScore chrf = eval::corpus_chrf(test.hypotheses, references, chrf_options);
    test_fields["sacrebleu"] = sacre.score;
    test_fields["sacrebleu_signature"] = eval::bleu_signature(bleu, 1);
    test_fields["chrf"] = chrf.score;
    result_.test_chrf = chrf.score;
    test_fields["chrf_signature"] = eval::chrf_signature(chrf_options, 1);
    test.sacrebleu_line = "BLEU|" + eval::bleu_signature(bleu, 1) + " = " + fmt(sacre.score, 2) + " " + sacre.breakdown();
    test.chrf_line = chrf.name + "|" + eval::chrf_signature(chrf_options, 1) + " = " + fmt(chrf.score, 2);
  }
  result_.test_loss = test.loss;
  result_.test_accuracy = test.accuracy;
  result_.test_bleu = test.bleu;
  if (test.bleu >= 0) test_fields["bleu"] = test.bleu;
  log_event("test", test_fields);
  log_ << "test: loss " << fmt(test.loss) << "  ppl " << fmt(std::exp(test.loss), 2) << "  accuracy " << fmt(100 * test.accuracy, 1) << "%";
  if (test.bleu >= 0) log_ << "  " << test.bleu_score.to_string();
  log_ << "\n";
  return test;
}

// The sacreBLEU of reports (dev, test and average): 13a on raw data; on tokenized data its text is
// scored as it is (tok:none), which the signature says.
eval::SacreBleuOptions TrainingRun::reported_bleu_options() const {
  eval::SacreBleuOptions bleu;
  const auto data = resolved_.find("data");
  if (data != resolved_.end() && data_input_form(data->second) == InputForm::kTokenized) bleu.tokenizer = eval::BleuTokenizer::kNone;
  return bleu;
}

// --average K: the mean of the last K step checkpoints, saved as average.ckpt and tested.
std::optional<TrainingRun::AverageFigures> TrainingRun::evaluate_average() {
  if (options_.average <= 0) return std::nullopt;
  std::vector<fs::path> files = checkpoints_->last(options_.average);
  if (static_cast<int>(files.size()) < options_.average)
    log_ << "warning: --average " << options_.average << ": the run has only " << files.size() << " step checkpoint"
         << (files.size() == 1 ? "" : "s") << "; averaging those\n";
  ckpt::Checkpoint averaged = average_checkpoints(files);
  write_checkpoint(checkpoints_->dir() / "average.ckpt", averaged);
  std::vector<ParamRef> eval_refs = param_refs(eval_model_->parameters());
  load_parameters(averaged, eval_refs, (checkpoints_->dir() / "average.ckpt").string());
  EvalFigures avg;
  evaluate_loss(*eval_model_, *executor_, *test_batcher_, avg);
  if (bleu_on_) {
    std::vector<std::vector<int>> sources;
    std::vector<std::string> refs_text;
    for (const auto& p : corpus_.test)
      sources.push_back(encode_source(*corpus_.tokenizer, p.source, InputForm::kTokenized)), refs_text.push_back(p.target);
    std::vector<std::string> hyps;
    for (const auto& h : test_translator_->translate(sources)) hyps.push_back(corpus_.tokenizer->decode(h));
    avg.bleu = eval::corpus_bleu(hyps, refs_text).bleu;
    avg.sacrebleu = eval::corpus_sacrebleu(hyps, {refs_text}, reported_bleu_options()).score;
    avg.chrf = eval::corpus_chrf(hyps, {refs_text}, eval::ChrfOptions{}).score;
  }
  result_.average_test_bleu = avg.bleu;
  nlohmann::json average_fields = {{"step", step_}, {"checkpoints", files.size()}, {"loss", avg.loss}, {"accuracy", avg.accuracy}};
  if (avg.bleu >= 0) average_fields["bleu"] = avg.bleu;
  if (avg.sacrebleu >= 0) average_fields["sacrebleu"] = avg.sacrebleu;
  if (avg.chrf >= 0) average_fields["chrf"] = avg.chrf;
  log_event("test_average", average_fields);
  log_ << "average of " << files.size() << " checkpoints: test loss " << fmt(avg.loss)
       << (avg.bleu >= 0 ? ", BLEU " + fmt(avg.bleu, 2) + " (sacreBLEU " + fmt(avg.sacrebleu, 2) + ", chrF " + fmt(avg.chrf, 2) + ")"
                         : std::string(" (BLEU off: train.valid_bleu_sentences = 0)"))
       << "\n";
  return AverageFigures{files.size(), avg};
}

// report.md and learning_curve.svg.
void TrainingRun::write_report(const std::string& reason, const EvalFigures& test, const std::optional<AverageFigures>& average) {
  const std::string average_name = average ? "average of the last " + std::to_string(average->checkpoints) + " checkpoints" : "";
  std::string average_row;
  if (average) {
    const EvalFigures& avg = average->test;
    average_row = "| test, " + average_name + " | " + fmt(avg.loss) + " | " + fmt(std::exp(avg.loss), 2) + " | " +
                  fmt(100 * avg.accuracy, 1) + "% | " + (avg.bleu >= 0 ? fmt(avg.bleu, 2) : "—") + " |\n";
  }
  std::vector<nlohmann::json> events = read_metrics(run_dir_ / "metrics.jsonl");
  write_svg(run_dir_ / "learning_curve.svg", render_svg(learning_curve(events, spec_.name + ": learning curve")));
  std::ostringstream report;
  report << "# " << spec_.name << "\n\n"
         << "Model `" << elaborated_.name << "`, " << result_.parameters << " parameters; vocabulary " << vocab_ << " ("
         << corpus_.tokenizer->kind() << "); " << corpus_.description << ": " << corpus_.train.size() << " training pairs, "
         << corpus_.dev.size() << " dev, " << corpus_.test.size() << " test.\n\n"
         << "Command: `" << (options_.command_line.empty() ? "attnlab run" : options_.command_line) << "`\n\n"
         << "Trained " << step_ << " steps (" << result_.epoch << " full epochs), stopped by " << reason << "; this invocation: "
         << format_duration(result_.train_seconds) << " of training, " << static_cast<int64_t>(result_.tokens_per_second)
         << " target tokens/s on " << executor_->threads() << " threads. Schedule " << schedule_->describe() << ".\n\n"
         << "| set | loss | perplexity | accuracy | BLEU |\n|---|---|---|---|---|\n"
         << "| last training step | " << fmt(last_loss_) << " | | | |\n"
         << "| dev | " << fmt(result_.valid_loss) << " | " << fmt(std::exp(result_.valid_loss), 2) << " | "
         << fmt(100 * result_.valid_accuracy, 1) << "% | " << (result_.valid_bleu >= 0 ? fmt(result_.valid_bleu, 2) : "—") << " |\n"
         << "| test | " << fmt(test.loss) << " | " << fmt(std::exp(test.loss), 2) << " | " << fmt(100 * test.accuracy, 1) << "% | "
         << (test.bleu >= 0 ? fmt(test.bleu, 2) : "—") << " |\n"
         << average_row << "\n"
         << "The training loss includes label smoothing (so it stays above the smoothed targets' entropy); dev and test losses are "
            "the plain cross-entropy (no label smoothing), so perplexity = exp(loss); accuracy is the share of "
            "target tokens (with </s>) whose most likely prediction, given the reference prefix, is right. Test BLEU: "
         << (settings_.beam == 1 ? std::string("greedy decoding")
                                 : "beam " + std::to_string(settings_.beam) + ", length penalty alpha " + fmt(settings_.alpha, 2))
         << " (key/value cache; dev BLEU greedy), corpus BLEU as multi-bleu.perl on the tokenized text.\n\n";
  if (test.bleu >= 0) report << "Test BLEU in full: `" << test.bleu_score.to_string() << "`\n\n";
  if (!test.sacrebleu_line.empty()) {
    report << "Test scores as sacreBLEU gives them (docs/evaluation.md):\n\n- `" << test.sacrebleu_line << "`\n- `" << test.chrf_line
           << "`\n";
    if (average && average->test.sacrebleu >= 0)
      report << "- the " << average_name << ", with the same signatures: BLEU " << fmt(average->test.sacrebleu, 2) << ", chrF "
             << fmt(average->test.chrf, 2) << "\n";
    report << "\n";
  }
  if (has_best_)
    report << "Best dev "
           << (settings_.valid_metric == "bleu"   ? "BLEU " + fmt(best_score_, 2)
               : settings_.valid_metric == "chrf" ? "chrF " + fmt(best_score_, 2)
                                                  : "loss " + fmt(-best_score_))
           << " at step " << best_step_
           << " (checkpoints/best.ckpt).\n\n";
  report << "![learning curve](learning_curve.svg)\n\n";
  if (!test.hypotheses.empty() && settings_.samples > 0) {
    report << "## Sample translations (test set)\n\n";
    for (int64_t i = 0; i < std::min<int64_t>(settings_.samples, static_cast<int64_t>(test.hypotheses.size())); ++i)
      report << "- source: " << corpus_.test[i].source << "\n  - reference: " << corpus_.test[i].target << "\n  - output: "
             << test.hypotheses[i] << "\n";
  }
  write_text(run_dir_ / "report.md", report.str());
  log_ << "report: " << (run_dir_ / "report.md").string() << "\n";
}

// report.md and learning_curve.svg of a language model: the validation figures (the held-out text
// is the only one scored; there is no separate test split).
void TrainingRun::write_language_model_report(const std::string& reason) {
  std::vector<nlohmann::json> events = read_metrics(run_dir_ / "metrics.jsonl");
  write_svg(run_dir_ / "learning_curve.svg", render_svg(learning_curve(events, spec_.name + ": learning curve")));
  std::ostringstream report;
  report << "# " << spec_.name << "\n\n"
         << "Task " << task_->name() << ". Model `" << elaborated_.name << "`, " << result_.parameters << " parameters; vocabulary "
         << vocab_ << " (" << tokenizer().kind() << "); " << lm_->description << "; blocks of " << sampler_->block() << " tokens.\n\n"
         << "Command: `" << (options_.command_line.empty() ? "attnlab run" : options_.command_line) << "`\n\n"
         << "Trained " << step_ << " steps of " << settings_.batch * settings_.accumulate << " random blocks, stopped by " << reason
         << "; this invocation: " << format_duration(result_.train_seconds) << " of training, "
         << static_cast<int64_t>(result_.tokens_per_second) << " tokens/s on " << executor_->threads() << " threads. Schedule "
         << schedule_->describe() << ".\n\n"
         << "| set | loss | perplexity | bits per character | accuracy |\n|---|---|---|---|---|\n"
         << "| last training step | " << fmt(last_loss_) << " | | | |\n"
         << "| validation (" << valid_offsets_.size() << " blocks) | " << fmt(result_.valid_loss) << " | "
         << fmt(std::exp(result_.valid_loss), 2) << " | " << (result_.valid_bits_per_char >= 0 ? fmt(result_.valid_bits_per_char) : "—")
         << " | " << fmt(100 * result_.valid_accuracy, 1) << "% |\n\n"
         << "Validation scores consecutive, non-overlapping blocks of the held-out text with the plain cross-entropy (no "
            "dropout, no label smoothing), so perplexity = exp(loss); accuracy is the share of next tokens predicted right.\n\n";
  if (has_best_) report << "Best validation loss " << fmt(-best_score_) << " at step " << best_step_ << " (checkpoints/best.ckpt).\n\n";
  report << "![learning curve](learning_curve.svg)\n\n";
  if (settings_.samples > 0) {
    // attnlab generate's defaults: a line break as the prompt, temperature 0.8, top-k 200.
    eval::SampleOptions sample;
    sample.tokens = settings_.samples * 100;
    sample.temperature = 0.8;
    sample.top_k = 200;
    sample.seed = seed_;
    sample.context = sampler_->block();
    sample.threads = options_.threads;
    for (exec::Parameter& p : eval_model_->parameters()) p.value.view().copy_from(model_->parameters().at(p.name).value.view());
    const std::vector<int> ids = eval::sample(*eval_model_, encode_lm_text(tokenizer(), "\n"), sample);
    eval_model_->clear_plans();
    report << "## A sample\n\n" << sample.tokens << " tokens sampled with the key/value cache from the last weights after a "
           << "line break (temperature 0.8, top-k 200, seed " << seed_ << "; `attnlab generate --checkpoint RUN` samples "
           << "from checkpoints/best.ckpt):\n\n```\n" << decode_lm_text(tokenizer(), ids) << "\n```\n";
  }
  write_text(run_dir_ / "report.md", report.str());
  log_ << "report: " << (run_dir_ / "report.md").string() << "\n";
}

}  // namespace

RunResult run_experiment(const RunOptions& options, const Registry& registry) {
  TrainingRun run(options, registry);
  return run.run();
}

std::vector<std::string> run_arguments(const RunOptions& o) {
  const RunOptions defaults;
  std::vector<std::string> args = {"run"};
  if (!o.experiment_file.empty()) args.push_back(o.experiment_file.string());
  for (const std::string& s : o.sets) args.insert(args.end(), {"--set", s});
  for (const std::string& u : o.uses) args.insert(args.end(), {"--use", u});
  if (!o.out_dir.empty()) args.insert(args.end(), {"--out", o.out_dir.string()});
  if (!o.data_root.empty()) args.insert(args.end(), {"--data", o.data_root.string()});
  if (o.resume) args.push_back("--resume");
  if (o.average > 0) args.insert(args.end(), {"--average", std::to_string(o.average)});
  if (!o.init_from.empty()) args.insert(args.end(), {"--init-from", o.init_from.string()});
  if (o.threads > 0) args.insert(args.end(), {"--threads", std::to_string(o.threads)});
  if (o.seed != 0) args.insert(args.end(), {"--seed", std::to_string(o.seed)});
  if (o.rank_timeout_s != defaults.rank_timeout_s) {
    std::ostringstream t;
    t << o.rank_timeout_s;
    args.insert(args.end(), {"--rank-timeout", t.str()});
  }
  if (o.bucket_bytes != defaults.bucket_bytes) {
    std::ostringstream b;
    b << static_cast<double>(o.bucket_bytes) / (1024.0 * 1024.0);
    args.insert(args.end(), {"--bucket-mb", b.str()});
  }
  return args;
}

std::string shell_line(const std::vector<std::string>& arguments) {
  std::string line;
  for (const std::string& a : arguments) {
    if (!line.empty()) line += ' ';
    const bool plain = !a.empty() && a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./=:,+-") ==
                                         std::string::npos;
    if (plain) {
      line += a;
      continue;
    }
    line += '\'';
    for (char c : a) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line += '\'';
  }
  return line;
}

}  // namespace attnlab::train
