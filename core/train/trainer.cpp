// core/train/trainer.cpp — the training loop behind `attnlab run` (see trainer.h).
#include "node/suggest.h"
#include "train/trainer.h"

#include "data/batcher.h"
#include "data/parallel_text.h"
#include "data/synthetic.h"
#include "data/tokenizer.h"
#include "dsl/experiment.h"
#include "eval/bleu.h"
#include "exec/model.h"
#include "exec/plan.h"
#include "exec/tbb_executor.h"
#include "train/checkpoint.h"
#include "train/interrupt.h"
#include "train/optimizer.h"
#include "train/run_corpus.h"
#include "train/run_settings.h"
#include "train/run_log.h"
#include "train/schedule.h"
#include "train/svg_chart.h"
#include "train/translate.h"

#include "embedded_experiments.h"

#include <nlohmann/json.hpp>
#include <tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

namespace attnlab::train {

namespace fs = std::filesystem;
using dsl::ConstValue;
using dsl::ExperimentSetting;
using dsl::ExperimentSpec;

const std::string& default_experiment_text() {
  static const std::string text = kEmbeddedDefaultExperiment;
  return text;
}
const std::string& default_model_text() {
  static const std::string text = kEmbeddedTransformerBase;
  return text;
}

const std::vector<std::string>& train_setting_names() {
  static const std::vector<std::string> names = {
      "adam", "noam", "constant", "label_smoothing", "dropout", "batch_tokens", "accumulate", "clip_norm",
      "max_steps", "max_epochs", "max_minutes", "valid_every", "checkpoint_every", "keep_checkpoints",
      "valid_bleu_sentences", "samples", "pad_to", "plan_memory_mb", "log_every_s"};
  return names;
}

namespace {

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

std::vector<ParamRef> param_refs(exec::ParameterStore& store) {
  std::vector<ParamRef> refs;
  refs.reserve(store.size());
  for (exec::Parameter& p : store) refs.push_back({p.name, p.value.view(), p.grad.view()});
  return refs;
}

// Pads a batch's lengths up to a multiple of `pad_to` (fewer distinct shapes, fewer plans).
void pad_batch(data::Batch& batch, int64_t pad_to) {
  if (pad_to <= 1) return;
  auto pad = [&](Tensor& t) {
    const int64_t rows = t.shape()[0], cols = t.shape()[1];
    const int64_t padded = (cols + pad_to - 1) / pad_to * pad_to;
    if (padded == cols) return;
    Tensor out({rows, padded}, static_cast<float>(data::kPadId));
    for (int64_t r = 0; r < rows; ++r) std::copy(t.data() + r * cols, t.data() + (r + 1) * cols, out.data() + r * padded);
    t = std::move(out);
  };
  pad(batch.src);
  pad(batch.tgt_in);
  pad(batch.tgt_out);
}

ir::DimBindings batch_dims(const data::Batch& b) {
  return {{"batch", b.src.shape()[0]}, {"src_len", b.src.shape()[1]}, {"tgt_len", b.tgt_in.shape()[1]}};
}

struct EvalFigures {
  double loss = 0, accuracy = 0, tokens = 0;
  double bleu = -1;
  eval::BleuScore bleu_score;
  std::vector<std::string> hypotheses;
};

// Loss and accuracy over every pair of `batcher`'s epoch 0 (no dropout).
void evaluate_loss(exec::Model& model, exec::Executor& executor, const data::Batcher& batcher, EvalFigures& out) {
  double loss_sum = 0, tokens = 0, correct = 0;
  for (const std::vector<int64_t>& indices : batcher.epoch_plan(0)) {
    data::Batch b = batcher.make_batch(indices);
    exec::Plan& plan = model.plan(batch_dims(b), {"src", "tgt_in", "tgt_out"}, {"loss", "tokens", "correct"},
                                  exec::Pass::ForwardOnly);
    executor.forward(plan, {{"src", b.src}, {"tgt_in", b.tgt_in}, {"tgt_out", b.tgt_out}}, StepInfo{false, 0, nullptr}, 0);
    const double n = plan.value("tokens").data()[0];
    loss_sum += plan.value("loss").data()[0] * n;
    tokens += n;
    correct += plan.value("correct").data()[0];
  }
  model.clear_plans();
  out.loss = tokens > 0 ? loss_sum / tokens : 0;
  out.accuracy = tokens > 0 ? correct / tokens : 0;
  out.tokens = tokens;
}

std::string fmt(double v, int precision = 4) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << v;
  return out.str();
}

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

// ---- The run --------------------------------------------------------------------------------------

RunResult run_experiment(const RunOptions& options, const Registry& registry) {
  std::ostream& log = options.log ? *options.log : std::cerr;
  RunResult result;

  // 1. The experiment: the named file, or the embedded default written into the run directory.
  std::string experiment_text, model_text;
  fs::path experiment_path = options.experiment_file;
  if (!experiment_path.empty()) {
    if (!fs::exists(experiment_path)) throw RunError("experiment file " + experiment_path.string() + " does not exist");
    experiment_text = read_text(experiment_path);
  } else {
    experiment_text = default_experiment_text();
  }

  // The run directory needs the experiment's name; read it from a first load of the file (the
  // default is loaded from a scratch copy).
  fs::path scratch;
  if (experiment_path.empty()) {
    scratch = fs::temp_directory_path() / ("attnlab-default-" + std::to_string(::getpid()));
    fs::create_directories(scratch);
    write_text(scratch / "default.attn", default_experiment_text());
    write_text(scratch / "transformer_base.attn", default_model_text());
    experiment_path = scratch / "default.attn";
  }
  struct ScratchCleanup {
    fs::path dir;
    ~ScratchCleanup() {
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  } cleanup{scratch};

  ExperimentSpec spec = dsl::load_experiment(experiment_path);
  for (const std::string& s : options.sets) dsl::apply_set(spec, s);
  std::vector<dsl::Override> uses;
  for (const std::string& u : options.uses) uses.push_back(dsl::parse_override(u, "--use"));
  model_text = read_text(spec.model_path);

  // Unknown section keys fail before anything is written.
  (void)Section(spec, "train", train_setting_names());
  (void)Section(spec, "decode", kDecodeSettingNames);

  fs::path run_dir = options.out_dir;
  if (run_dir.empty()) {
    if (options.resume) throw RunError("--resume needs --out DIR: the run directory to continue");
    run_dir = fs::path("runs") / (spec.name + "-" + utc_stamp("%Y%m%d-%H%M%S"));
  }
  if (options.resume && !fs::is_directory(run_dir / "checkpoints"))
    throw RunError("--resume: " + run_dir.string() + " holds no checkpoints/ directory to resume from");
  if (!options.resume && fs::exists(run_dir / "metrics.jsonl"))
    throw RunError("run directory " + run_dir.string() + " already holds a run; give another --out DIR, or --resume to continue it");
  fs::create_directories(run_dir);
  result.run_dir = run_dir;

  // 2. Settings, data, tokenizer.
  // d_model for the schedule comes from the elaborated model; read the settings once the model is
  // known, but check section keys first so that a typo fails before any data is read.
  uint64_t seed = options.seed;
  if (seed == 0) {
    seed = 1;
    if (const ExperimentSetting* s = spec.find("seed")) {
      if (s->value.kind != ConstValue::Kind::Int || s->value.i < 0) throw RunError(where(s->loc) + "seed must be a whole number ≥ 0");
      seed = static_cast<uint64_t>(s->value.i);
    }
  }

  Corpus corpus = load_corpus(spec, options, log);
  const int64_t vocab = corpus.tokenizer->vocab_size();

  // 3. The model: the experiment's overrides, then the train section's label_smoothing/dropout
  // (unless the model overrides name them), --use, and the tokenizer's vocabulary size.
  auto overrides_name = [&](const std::string& name) {
    for (const dsl::Override& o : spec.model_overrides)
      if (o.name == name) return true;
    return false;
  };
  // Peek at train.label_smoothing / train.dropout (validated fully below).
  std::vector<dsl::Override> extra;
  for (const char* key : {"label_smoothing", "dropout"}) {
    const ExperimentSetting* s = spec.find(std::string("train.") + key);
    if (s && !overrides_name(key)) extra.push_back(dsl::parse_override(std::string(key) + "=" + s->value.to_string(), "--set"));
  }
  for (const dsl::Override& u : uses) extra.push_back(u);
  extra.push_back(dsl::parse_override("vocab=" + std::to_string(vocab), "--set"));
  dsl::ElaboratedModel elaborated = dsl::elaborate_experiment_model(spec, registry, extra);
  std::vector<dsl::Override> eval_extra = extra;
  eval_extra.push_back(dsl::parse_override("label_smoothing=0", "--set"));
  dsl::ElaboratedModel eval_elaborated = dsl::elaborate_experiment_model(spec, registry, eval_extra);

  int64_t d_model = 512;
  for (const auto& [name, value] : elaborated.params)
    if (name == "d_model" && std::holds_alternative<int64_t>(value)) d_model = std::get<int64_t>(value);
  TrainSettings settings = read_settings(spec, d_model);

  tbb::global_control parallelism(tbb::global_control::max_allowed_parallelism,
                                  options.threads > 0 ? static_cast<size_t>(options.threads)
                                                      : tbb::this_task_arena::max_concurrency());
  exec::TbbExecutor executor(options.threads);
  const ir::DimBindings rep = dsl::default_dims();
  exec::Model model(elaborated.graph, registry, seed, rep);
  exec::Model eval_model(eval_elaborated.graph, registry, seed, rep);
  result.parameters = model.parameters().element_count();
  std::vector<ParamRef> refs = param_refs(model.parameters());

  auto copy_weights_to_eval = [&] {
    for (exec::Parameter& p : eval_model.parameters()) p.value.view().copy_from(model.parameters().at(p.name).value.view());
  };

  // 4. Batching.
  data::BatcherOptions bo;
  bo.batch_tokens = settings.batch_tokens;
  bo.seed = seed;
  std::unique_ptr<data::Batcher> batcher, dev_batcher, test_batcher;
  try {
    batcher = std::make_unique<data::Batcher>(data::encode_pairs(*corpus.tokenizer, corpus.train), bo);
    dev_batcher = std::make_unique<data::Batcher>(data::encode_pairs(*corpus.tokenizer, corpus.dev), bo);
    test_batcher = std::make_unique<data::Batcher>(data::encode_pairs(*corpus.tokenizer, corpus.test), bo);
  } catch (const data::DataError& e) {
    throw RunError(std::string(e.what()) + " (raise train.batch_tokens)");
  }

  // 5. Identity of the run (for resume) and the run directory's descriptive files.
  std::vector<std::string> override_texts;
  for (const std::string& s : options.sets) override_texts.push_back("--set " + s);
  for (const std::string& u : options.uses) override_texts.push_back("--use " + u);
  std::map<std::string, std::string> resolved;
  for (const ExperimentSetting& s : spec.settings) resolved[s.key] = s.value.to_string();
  for (const auto& [section, list] : spec.sections)
    for (const ExperimentSetting& s : list) resolved[section + "." + s.key] = s.value.to_string();
  resolved["seed"] = std::to_string(seed);
  // What must match for a resume: the overrides except those that only decide when to stop.
  auto identity_overrides = [&](const std::vector<std::string>& all) {
    std::vector<std::string> out;
    for (const std::string& o : all) {
      const size_t eq = o.find('=');
      const std::string key = o.rfind("--set ", 0) == 0 && eq != std::string::npos ? o.substr(6, eq - 6) : "";
      if (!kResumableChanges.count(key)) out.push_back(o);
    }
    return out;
  };

  write_text(run_dir / "experiment.attn", experiment_text);
  write_text(run_dir / spec.model_path.filename(), model_text);
  {
    std::string command = options.command_line.empty() ? "attnlab run" : options.command_line;
    write_text(run_dir / "command.txt", command + "\n");
    nlohmann::ordered_json sj;
    sj["experiment"] = spec.name;
    sj["model"] = elaborated.name;
    sj["data"] = corpus.description;
    sj["vocab"] = vocab;
    sj["parameters"] = result.parameters;
    sj["settings"] = resolved;
    sj["overrides"] = override_texts;
    nlohmann::ordered_json params;
    for (const auto& [name, value] : elaborated.params) params[name] = to_string(value);
    sj["model_params"] = params;
    nlohmann::ordered_json slots;
    for (const auto& [slot, type] : elaborated.slots) slots[slot] = type;
    sj["slots"] = slots;
    write_text(run_dir / "settings.json", sj.dump(2) + "\n");
  }

  CheckpointDirectory checkpoints(run_dir / "checkpoints", static_cast<int>(settings.keep_checkpoints));
  checkpoints.remove_stale_temporaries();
  Adam adam(settings.adam);
  std::unique_ptr<LearningRateSchedule> schedule = make_schedule(settings.schedule);

  int64_t step = 0;
  bool has_best = false;
  double best_score = 0;
  int64_t best_step = 0;
  const bool bleu_on = settings.valid_bleu_sentences > 0;
  const std::string best_metric = bleu_on ? "valid_bleu" : "valid_loss";
  const std::string graph_bytes = elaborated.graph.SerializeAsString();

  auto make_checkpoint = [&] {
    ckpt::Checkpoint c;
    c.set_spec_text(model_text);
    c.set_experiment_text(experiment_text);
    for (const std::string& o : override_texts) c.add_overrides(o);
    for (const auto& [k, v] : resolved) (*c.mutable_settings())[k] = v;
    c.set_tokenizer_kind(corpus.tokenizer->kind());
    c.set_tokenizer(corpus.tokenizer->serialize());
    c.set_graph(graph_bytes);
    store_parameters(c, refs);
    store_optimizer(c, adam);
    c.set_step(step);
    c.set_epoch(batcher->position().epoch);
    c.mutable_data_position()->set_epoch(batcher->position().epoch);
    c.mutable_data_position()->set_batch_index(batcher->position().batch);
    c.mutable_data_position()->set_fingerprint(batcher->fingerprint());
    c.mutable_random()->set_seed(seed);
    (*c.mutable_random()->mutable_counters())["micro_batches"] = static_cast<uint64_t>(step * settings.accumulate);
    c.mutable_metrics()->set_best_metric(best_metric);
    c.mutable_metrics()->set_has_best(has_best);
    c.mutable_metrics()->set_best_score(best_score);
    c.mutable_metrics()->set_best_step(best_step);
    c.set_created_utc(utc_stamp("%Y-%m-%dT%H:%M:%SZ"));
    return c;
  };

  // 6. Resume.
  const fs::path metrics_path = run_dir / "metrics.jsonl";
  if (options.resume) {
    std::optional<fs::path> latest = checkpoints.latest();
    if (!latest) throw RunError("--resume: no step checkpoint in " + checkpoints.dir().string());
    ckpt::Checkpoint c = read_checkpoint(*latest);
    const std::string source = latest->string();
    std::vector<std::string> differs;
    if (c.experiment_text() != experiment_text) differs.push_back("the experiment file");
    if (c.spec_text() != model_text) differs.push_back("the model file");
    const std::vector<std::string> saved_overrides(c.overrides().begin(), c.overrides().end());
    if (identity_overrides(saved_overrides) != identity_overrides(override_texts))
      differs.push_back("the overrides (" + join_names(identity_overrides(saved_overrides)) + " then, " +
                        join_names(identity_overrides(override_texts)) + " now)");
    if (c.random().seed() != seed)
      differs.push_back("the seed (" + std::to_string(c.random().seed()) + " then, " + std::to_string(seed) + " now)");
    if (!differs.empty())
      throw RunError("cannot resume: checkpoint " + source + " belongs to another experiment (" + join_names(differs) +
                     " differ from this run's); resume with the same experiment and overrides, or start a new run with another --out");
    if (c.data_position().fingerprint() != batcher->fingerprint())
      throw RunError("cannot resume: checkpoint " + source + " was trained on other data (data fingerprint " +
                     std::to_string(c.data_position().fingerprint()) + ", this run's " + std::to_string(batcher->fingerprint()) +
                     "); resume with the same data, or start a new run with another --out");
    if (c.tokenizer() != corpus.tokenizer->serialize())
      throw RunError("cannot resume: checkpoint " + source + " was trained on other data (its vocabulary differs from the one built "
                     "from this run's data); resume with the same data, or start a new run with another --out");
    load_parameters(c, refs, source);
    adam.import_state(adam_state_from(c, source), refs, source);
    step = c.step();
    batcher->set_position({c.data_position().epoch(), c.data_position().batch_index()});
    has_best = c.metrics().has_best();
    best_score = c.metrics().best_score();
    best_step = c.metrics().best_step();
    if (fs::exists(metrics_path)) truncate_metrics_after(metrics_path, step);
    log << "resuming " << run_dir.string() << " at step " << step << " (epoch " << c.data_position().epoch() << ", batch "
        << c.data_position().batch_index() << ")\n";
  }
  MetricsLog metrics(metrics_path);

  log << "experiment " << spec.name << ": model " << elaborated.name << ", " << result.parameters << " parameters, vocab " << vocab
      << ", " << corpus.train.size() << " training pairs, " << corpus.dev.size() << " dev, " << corpus.test.size() << " test\n"
      << "data: " << corpus.description << "\n"
      << "schedule: " << schedule->describe() << ", batch_tokens " << settings.batch_tokens << " x accumulate " << settings.accumulate
      << ", threads " << executor.threads() << "\n"
      << "run directory: " << run_dir.string() << "\n";

  // 7. Evaluation helpers.
  eval::DecodeOptions decode_options;
  decode_options.beam = static_cast<int>(settings.beam);
  decode_options.alpha = settings.alpha;
  decode_options.max_len_extra = settings.max_length_extra;
  decode_options.threads = options.threads;
  // Validation decodes greedily (cheap, and enough to follow progress); the test set with the
  // decode section's search (beam, alpha).
  eval::DecodeOptions greedy_options = decode_options;
  greedy_options.beam = 1;
  Translator valid_translator(eval_model, executor, greedy_options);
  Translator test_translator(eval_model, executor, decode_options);
  auto evaluate = [&](const data::Batcher& set, const std::vector<data::SentencePair>& pairs, int64_t bleu_sentences,
                      Translator& translator) {
    copy_weights_to_eval();
    EvalFigures f;
    evaluate_loss(eval_model, executor, set, f);
    if (bleu_sentences > 0) {
      const size_t n = std::min<size_t>(pairs.size(), static_cast<size_t>(bleu_sentences));
      std::vector<std::vector<int>> sources;
      std::vector<std::string> references;
      for (size_t i = 0; i < n; ++i) {
        sources.push_back(corpus.tokenizer->encode(pairs[i].source));
        references.push_back(pairs[i].target);
      }
      std::vector<std::vector<int>> ids = translator.translate(sources);
      for (const auto& h : ids) f.hypotheses.push_back(corpus.tokenizer->decode(h));
      f.bleu_score = eval::corpus_bleu(f.hypotheses, references);
      f.bleu = f.bleu_score.bleu;
    }
    return f;
  };

  ProgressOptions po;
  po.terminal = options.progress_terminal;
  po.log_interval_s = settings.log_every_s > 0 ? settings.log_every_s : options.log_interval_s;
  ProgressDisplay progress(log, po);
  InterruptGuard interrupt;

  auto validate_now = [&](double elapsed) {
    EvalFigures f = evaluate(*dev_batcher, corpus.dev, settings.valid_bleu_sentences, valid_translator);
    nlohmann::json fields = {{"step", step},        {"epoch", batcher->position().epoch}, {"loss", finite_or_null(f.loss)},
                             {"ppl", finite_or_null(std::exp(f.loss))}, {"accuracy", f.accuracy}, {"elapsed_s", elapsed}};
    if (f.bleu >= 0) fields["bleu"] = f.bleu;
    metrics.append("valid", fields);
    const double score = bleu_on ? f.bleu : -f.loss;
    std::string line = "step " + std::to_string(step) + "  valid loss " + fmt(f.loss) + "  ppl " + fmt(std::exp(f.loss), 2) +
                       "  accuracy " + fmt(100 * f.accuracy, 1) + "%";
    if (f.bleu >= 0) line += "  BLEU " + fmt(f.bleu, 2);
    if (!has_best || score > best_score) {
      has_best = true;
      best_score = score;
      best_step = step;
      checkpoints.save_best(make_checkpoint());
      line += "  (best)";
    }
    progress.print_line(line);
    result.valid_loss = f.loss;
    result.valid_accuracy = f.accuracy;
    result.valid_bleu = f.bleu;
  };

  // 8. The loop.
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const double plan_budget_bytes = settings.plan_memory_mb * 1024.0 * 1024.0;
  Tensor loss_seed(Shape{}, 0.0f);
  int64_t trained_tokens = 0, trained_source_tokens = 0;
  double last_loss = 0;
  int64_t last_validated = options.resume ? step : -1;
  const int64_t start_step = step;
  auto stop_reason = [&]() -> std::string {
    if (settings.max_steps > 0 && step >= settings.max_steps) return "max_steps";
    if (settings.max_epochs > 0 && batcher->position().epoch >= settings.max_epochs) return "max_epochs";
    if (settings.max_minutes > 0 && seconds() >= settings.max_minutes * 60) return "max_minutes";
    return "";
  };
  std::string reason = stop_reason();
  while (reason.empty()) {
    if (interrupt.stop_requested()) {
      reason = "signal";
      break;
    }
    double loss_sum = 0, tokens = 0, correct = 0;
    int64_t source_tokens = 0;
    for (int64_t micro = 0; micro < settings.accumulate; ++micro) {
      data::Batch b = batcher->next();
      pad_batch(b, settings.pad_to);
      exec::Plan& plan = model.plan(batch_dims(b), {"src", "tgt_in", "tgt_out"}, {"loss", "tokens", "correct"});
      const uint64_t micro_index = static_cast<uint64_t>(step * settings.accumulate + micro);
      executor.forward(plan, {{"src", b.src}, {"tgt_in", b.tgt_in}, {"tgt_out", b.tgt_out}}, StepInfo{true, seed, nullptr}, micro_index);
      const double n = plan.value("tokens").data()[0];
      loss_sum += plan.value("loss").data()[0] * n;
      tokens += n;
      correct += plan.value("correct").data()[0];
      source_tokens += b.source_tokens;
      // The seed n turns the mean loss's gradient into the sum's; summed over the micro-batches
      // and scaled by 1/tokens below, it is the gradient of the mean over the whole step.
      loss_seed.data()[0] = static_cast<float>(n);
      executor.backward(plan, {{"loss", loss_seed}}, exec::BackwardOptions{micro > 0});
      if (static_cast<double>(plan.bytes()) * static_cast<double>(model.cached_plans()) > plan_budget_bytes) model.clear_plans();
    }
    ++step;
    const double lr = schedule->rate(step);
    StepStats stats = adam.step(refs, lr, tokens > 0 ? 1.0 / tokens : 1.0);
    last_loss = tokens > 0 ? loss_sum / tokens : 0;
    trained_tokens += static_cast<int64_t>(tokens);
    trained_source_tokens += source_tokens;
    const double elapsed = seconds();
    const double tps = elapsed > 0 ? static_cast<double>(trained_tokens) / elapsed : 0;
    metrics.append("train", {{"step", step},
                             {"epoch", batcher->position().epoch},
                             {"loss", finite_or_null(last_loss)},
                             {"accuracy", tokens > 0 ? correct / tokens : 0.0},
                             {"lr", lr},
                             {"tokens", tokens},
                             {"grad_norm", finite_or_null(stats.grad_norm)},
                             {"tokens_per_s", tps},
                             {"elapsed_s", elapsed}});
    if (!std::isfinite(last_loss))
      throw RunError("training diverged at step " + std::to_string(step) + " (loss is not finite); lower the learning rate (noam factor) or enable train.clip_norm");
    progress.update({step, settings.max_steps, batcher->position().epoch, last_loss, lr, tps, elapsed});
    reason = stop_reason();
    if (settings.valid_every > 0 && step % settings.valid_every == 0 && reason.empty()) {
      validate_now(elapsed);
      last_validated = step;
    }
    if (settings.checkpoint_every > 0 && step % settings.checkpoint_every == 0 && reason.empty())
      checkpoints.save_step(make_checkpoint());
  }
  result.train_seconds = seconds();
  result.tokens_per_second = result.train_seconds > 0 ? static_cast<double>(trained_tokens) / result.train_seconds : 0;
  result.last_train_loss = last_loss;
  result.steps = step;
  result.epoch = batcher->position().epoch;
  result.interrupted = reason == "signal";
  progress.finish();
  log << "stopped at step " << step << " (" << reason << ") after " << format_duration(result.train_seconds) << "; "
      << static_cast<int64_t>(result.tokens_per_second) << " target tokens/s, "
      << static_cast<int64_t>(result.train_seconds > 0 ? (trained_tokens + trained_source_tokens) / result.train_seconds : 0)
      << " source+target tokens/s\n";
  if (step > start_step || !checkpoints.latest()) checkpoints.save_step(make_checkpoint());
  if (result.interrupted) {
    log << "interrupted: checkpoint saved in " << checkpoints.dir().string() << "; continue with --resume --out " << run_dir.string() << "\n";
    return result;
  }

  // 9. Final validation, test, averaging, report.
  if (last_validated != step) validate_now(seconds());
  EvalFigures test = evaluate(*test_batcher, corpus.test, bleu_on ? static_cast<int64_t>(corpus.test.size()) : 0, test_translator);
  if (!test.hypotheses.empty()) {
    // The test set's sources, references and translations, one a line, for `attnlab bleu` and inspection.
    std::string src_text, ref_text, hyp_text;
    for (size_t i = 0; i < test.hypotheses.size(); ++i) {
      src_text += corpus.test[i].source + "\n";
      ref_text += corpus.test[i].target + "\n";
      hyp_text += test.hypotheses[i] + "\n";
    }
    write_text(run_dir / "test.src", src_text);
    write_text(run_dir / "test.ref", ref_text);
    write_text(run_dir / "test.hyp", hyp_text);
  }
  result.test_loss = test.loss;
  result.test_accuracy = test.accuracy;
  result.test_bleu = test.bleu;
  nlohmann::json test_fields = {{"step", step}, {"loss", test.loss}, {"ppl", finite_or_null(std::exp(test.loss))}, {"accuracy", test.accuracy}};
  if (test.bleu >= 0) test_fields["bleu"] = test.bleu;
  metrics.append("test", test_fields);
  log << "test: loss " << fmt(test.loss) << "  ppl " << fmt(std::exp(test.loss), 2) << "  accuracy " << fmt(100 * test.accuracy, 1) << "%";
  if (test.bleu >= 0) log << "  " << test.bleu_score.to_string();
  log << "\n";

  std::string average_line;
  if (options.average > 0) {
    std::vector<fs::path> files = checkpoints.last(options.average);
    ckpt::Checkpoint averaged = average_checkpoints(files);
    write_checkpoint(checkpoints.dir() / "average.ckpt", averaged);
    std::vector<ParamRef> eval_refs = param_refs(eval_model.parameters());
    load_parameters(averaged, eval_refs, (checkpoints.dir() / "average.ckpt").string());
    EvalFigures avg;
    evaluate_loss(eval_model, executor, *test_batcher, avg);
    if (bleu_on) {
      std::vector<std::vector<int>> sources;
      std::vector<std::string> refs_text;
      for (const auto& p : corpus.test) sources.push_back(corpus.tokenizer->encode(p.source)), refs_text.push_back(p.target);
      std::vector<std::string> hyps;
      for (const auto& h : test_translator.translate(sources)) hyps.push_back(corpus.tokenizer->decode(h));
      avg.bleu = eval::corpus_bleu(hyps, refs_text).bleu;
    }
    result.average_test_bleu = avg.bleu;
    metrics.append("test_average", {{"step", step}, {"checkpoints", files.size()}, {"loss", avg.loss}, {"accuracy", avg.accuracy}, {"bleu", avg.bleu}});
    average_line = "| test, average of the last " + std::to_string(files.size()) + " checkpoints | " + fmt(avg.loss) + " | " +
                   fmt(std::exp(avg.loss), 2) + " | " + fmt(100 * avg.accuracy, 1) + "% | " + (avg.bleu >= 0 ? fmt(avg.bleu, 2) : "—") + " |\n";
    log << "average of " << files.size() << " checkpoints: test loss " << fmt(avg.loss) << ", BLEU " << fmt(avg.bleu, 2) << "\n";
  }

  std::vector<nlohmann::json> events = read_metrics(metrics_path);
  write_svg(run_dir / "learning_curve.svg", render_svg(learning_curve(events, spec.name + ": learning curve")));
  std::ostringstream report;
  report << "# " << spec.name << "\n\n"
         << "Model `" << elaborated.name << "`, " << result.parameters << " parameters; vocabulary " << vocab << " (" << corpus.tokenizer->kind()
         << "); " << corpus.description << ": " << corpus.train.size() << " training pairs, " << corpus.dev.size() << " dev, "
         << corpus.test.size() << " test.\n\n"
         << "Command: `" << (options.command_line.empty() ? "attnlab run" : options.command_line) << "`\n\n"
         << "Trained " << step << " steps (" << result.epoch << " full epochs), stopped by " << reason << "; this invocation: "
         << format_duration(result.train_seconds) << " of training, " << static_cast<int64_t>(result.tokens_per_second)
         << " target tokens/s on " << executor.threads() << " threads. Schedule " << schedule->describe() << ".\n\n"
         << "| set | loss | perplexity | accuracy | BLEU |\n|---|---|---|---|---|\n"
         << "| last training step | " << fmt(last_loss) << " | | | |\n"
         << "| dev | " << fmt(result.valid_loss) << " | " << fmt(std::exp(result.valid_loss), 2) << " | " << fmt(100 * result.valid_accuracy, 1)
         << "% | " << (result.valid_bleu >= 0 ? fmt(result.valid_bleu, 2) : "—") << " |\n"
         << "| test | " << fmt(test.loss) << " | " << fmt(std::exp(test.loss), 2) << " | " << fmt(100 * test.accuracy, 1) << "% | "
         << (test.bleu >= 0 ? fmt(test.bleu, 2) : "—") << " |\n"
         << average_line << "\n"
         << "The training loss includes label smoothing (so it stays above the smoothed targets' entropy); dev and test losses are "
            "the plain cross-entropy (no label smoothing), so perplexity = exp(loss); accuracy is the share of "
            "target tokens (with </s>) whose most likely prediction, given the reference prefix, is right. Test BLEU: " << (settings.beam == 1 ? std::string("greedy decoding") : "beam " + std::to_string(settings.beam) + ", length penalty alpha " + fmt(settings.alpha, 2))
         << " (key/value cache; dev BLEU greedy), corpus BLEU as multi-bleu.perl on the tokenized text.\n\n";
  if (test.bleu >= 0) report << "Test BLEU in full: `" << test.bleu_score.to_string() << "`\n\n";
  if (has_best) report << "Best dev " << (bleu_on ? "BLEU " + fmt(best_score, 2) : "loss " + fmt(-best_score)) << " at step " << best_step << " (checkpoints/best.ckpt).\n\n";
  report << "![learning curve](learning_curve.svg)\n\n";
  if (!test.hypotheses.empty() && settings.samples > 0) {
    report << "## Sample translations (test set)\n\n";
    for (int64_t i = 0; i < std::min<int64_t>(settings.samples, static_cast<int64_t>(test.hypotheses.size())); ++i)
      report << "- source: " << corpus.test[i].source << "\n  - reference: " << corpus.test[i].target << "\n  - output: " << test.hypotheses[i]
             << "\n";
  }
  write_text(run_dir / "report.md", report.str());
  log << "report: " << (run_dir / "report.md").string() << "\n";
  return result;
}

}  // namespace attnlab::train
