// attnlab bench [FILE] [--set ...] [--use ...] --batch B (--src-len S --tgt-len T | --block L) --vocab V
//               [--threads N] [--steps K] [--peak [--peak-size N]] [--products] [--json]
//
// The same work as the PyTorch reference (../shared/bench/torch_transformer.py, seen from the
// repository root; described in docs/performance.md "attnlab bench"), timed the same way:
// - a model file (default: the built-in copy of experiments/transformer_base.attn) elaborated with
//   --set/--use and vocab = --vocab; dropout and label smoothing are the file's (0.1 and 0.1);
// - full training steps on fixed random tokens: forward, backward (gradient of the mean loss),
//   Adam (0.9, 0.98, 1e-9; core/train/optimizer.h), with the TBB executor in an arena of --threads;
//   one warm-up step, then K timed steps (default 3). Train tokens/s = B·(S+T) / step time, as the
//   reference counts them;
// - greedy decoding of B sentences with the key/value cache (eval::DecodeSession), always exactly
//   T steps (like the reference, which decodes T tokens whatever they are); the timing includes
//   running the encoder and setting up the session. Decode tokens/s = B·T / decode time;
// - gflops: multiply-adds of every gemm()/gemm_batched() call during the timed steps (the counter
//   in core/tensor/gemm.h), ×2 / step time: matrix products only;
// - peak_rss_mb: getrusage's ru_maxrss of this process, read after decoding (before --peak);
//   train_peak_rss_mb: the same read after the timed training steps (before decoding);
// - --peak: the machine's single-precision rate on the same threads, measured after everything
//   else: attnlab::gemm() on a square product of --peak-size (default 2048; best of 5), and a
//   register-blocked FMA loop on every arena thread at once (the method of docs/performance.md's
//   GEMM section), with gflops as a fraction of each;
// - --products: the timed steps' matrix products by shape (tensor/gemm.h's profile): calls and
//   seconds per step, GFLOP/s of each shape, its share of all product time; the shapes that make
//   up 99 % of that time are printed, the rest summed (JSON: every shape).
// Random tokens avoid the reserved ids 0–3 (<pad>, <unk>, <s>, </s>), so there is no padding.
#include "app/cli.h"
#include "dsl/builtin_files.h"
#include "dsl/experiment.h"
#include "data/random.h"
#include "eval/decoder.h"
#include "eval/sampler.h"
#include "task/task.h"
#include "exec/tbb_executor.h"
#include "tensor/gemm.h"
#include "train/optimizer.h"
#include "train/trainer.h"

#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>

namespace attnlab::cli {

namespace {

namespace fs = std::filesystem;

// Ids 0..3 are <pad>, <unk>, <s>, </s> (core/data/tokenizer.h); random tokens are drawn above.
constexpr int kFirstWordId = 4;

struct BenchOptions {
  std::string file;
  std::vector<std::string> sets;
  std::vector<std::string> uses;
  std::string model;
  int64_t batch = 0, src_len = 0, tgt_len = 0, vocab = 0;
  int64_t block = 0;  // > 0: the language_model task, rows of this many tokens
  int64_t steps = 3;
  int beam = 0;  // > 1: also time beam search with this many hypotheses per sentence
  bool peak = false;
  int64_t peak_size = 2048;
  bool json = false;
  bool products = false;
};

// --products: the profile of the timed steps, per step.
nlohmann::ordered_json products_json(const std::vector<GemmShapeTime>& shapes, int64_t steps) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const GemmShapeTime& t : shapes) {
    const GemmShape& s = t.shape;
    const double madds = static_cast<double>(s.batch * s.m * s.n * s.k) * static_cast<double>(t.calls);
    out.push_back({{"layout", std::string(s.trans_a == Trans::Yes ? "T" : "N") + (s.trans_b == Trans::Yes ? "T" : "N")},
                   {"batched", s.batched},
                   {"batch", s.batch},
                   {"m", s.m},
                   {"n", s.n},
                   {"k", s.k},
                   {"calls_per_step", static_cast<double>(t.calls) / static_cast<double>(steps)},
                   {"seconds_per_step", t.seconds / static_cast<double>(steps)},
                   {"gflops", t.seconds > 0 ? 2.0 * madds / t.seconds * 1e-9 : 0.0}});
  }
  return out;
}

void print_products(const std::vector<GemmShapeTime>& shapes, int64_t steps) {
  double total = 0;
  for (const GemmShapeTime& t : shapes) total += t.seconds;
  const double per_step = 1.0 / static_cast<double>(steps);
  char line[200];
  std::snprintf(line, sizeof line, "  products  %.3f ms per step, summed over threads (m x n x k; batched: batch x (m x n x k))\n",
                1e3 * total * per_step);
  std::cout << line;
  double shown = 0;
  size_t i = 0;
  for (; i < shapes.size() && shown < 0.99 * total; ++i) {
    const GemmShapeTime& t = shapes[i];
    const GemmShape& s = t.shape;
    const double madds = static_cast<double>(s.batch * s.m * s.n * s.k) * static_cast<double>(t.calls);
    std::string dims = std::to_string(s.m) + " x " + std::to_string(s.n) + " x " + std::to_string(s.k);
    if (s.batched) dims = std::to_string(s.batch) + " x (" + dims + ")";
    std::snprintf(line, sizeof line, "    %c%c %-28s %5.1f%%  %9.3f ms  %7.1f GFLOP/s  %8.0f calls\n",
                  s.trans_a == Trans::Yes ? 'T' : 'N', s.trans_b == Trans::Yes ? 'T' : 'N', dims.c_str(),
                  total > 0 ? 100.0 * t.seconds / total : 0.0, 1e3 * t.seconds * per_step,
                  t.seconds > 0 ? 2.0 * madds / t.seconds * 1e-9 : 0.0, static_cast<double>(t.calls) * per_step);
    std::cout << line;
    shown += t.seconds;
  }
  if (i < shapes.size()) {
    std::snprintf(line, sizeof line, "    %-3zu other shapes              %5.1f%%  %9.3f ms\n", shapes.size() - i,
                  total > 0 ? 100.0 * (total - shown) / total : 0.0, 1e3 * (total - shown) * per_step);
    std::cout << line;
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void check_options(const BenchOptions& o) {
  // The ranges are train/limits.h's; the message names the flag, its range and the value.
  auto within = [](const train::IntLimit& limit, int64_t value, const std::string& why = "") {
    if (!train::in_range(limit, value))
      throw CliError(1, std::string(limit.name) + " must be in " + train::describe(limit) + ", got " + std::to_string(value) + why);
  };
  within(train::kBenchBatchLimit, o.batch);
  if (o.block > 0) {
    if (o.src_len > 0 || o.tgt_len > 0 || o.beam != 0)
      throw CliError(1, "--block times a language model; --src-len, --tgt-len and --beam are for translation");
    within(train::kBenchBlockLimit, o.block);
  } else {
    if (o.src_len == 0 && o.tgt_len == 0) throw CliError(1, "give --src-len and --tgt-len (translation) or --block (a language model)");
    within(train::kBenchSrcLenLimit, o.src_len);
    within(train::kBenchTgtLenLimit, o.tgt_len);
  }
  const int64_t length = o.block > 0 ? o.block : std::max(o.src_len, o.tgt_len);
  if (o.batch * length > train::kBenchTokensLimit.max)  // each factor is at most 2^16: no overflow
    throw CliError(1, "--batch " + std::to_string(o.batch) + " of " + std::to_string(length) + " tokens is " + std::to_string(o.batch * length) +
                          " tokens a batch, more than " + std::to_string(train::kBenchTokensLimit.max) +
                          ": give a smaller --batch or shorter sequences");
  static_assert(train::kBenchVocabLimit.min == kFirstWordId + 1);
  within(train::kBenchVocabLimit, o.vocab, " (ids 0-3 are reserved for <pad>, <unk>, <s>, </s>)");
  within(train::kBenchStepsLimit, o.steps);
  if (o.beam != 0 && (o.beam < 2 || o.beam > train::kBeamLimit.max))
    throw CliError(1, "--beam must be between 2 and " + std::to_string(train::kBeamLimit.max) + " (greedy decoding is always timed), got " +
                          std::to_string(o.beam));
  if (o.peak) within(train::kPeakSizeLimit, o.peak_size);
  for (const std::string& s : o.sets) {
    std::string name = s.substr(0, s.find('='));
    name.erase(0, name.find_first_not_of(' '));
    name.erase(name.find_last_not_of(' ') + 1);
    if (name == "vocab") throw CliError(1, "--set vocab=... is not allowed here: the vocabulary size is --vocab");
  }
}


#if defined(__x86_64__)
// 12 independent accumulators of 16 lanes hide the FMA latency: 384 flops per iteration, no
// memory traffic (docs/performance.md, GEMM section).
__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iterations) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
  __m512 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0;
  for (float f : lanes) total += f;
  return total;
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iterations) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
  __m256 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0;
  for (float f : lanes) total += f;
  return total;
}
#endif

struct PeakFigures {
  double gemm_gflops = 0;  // attnlab::gemm() on a square product
  double fma_gflops = 0;   // the FMA loop on every thread (0: not measured on this CPU)
  std::string fma_isa;
};

PeakFigures measure_peak(tbb::task_arena& arena, int64_t n) {
  PeakFigures out;
  std::vector<float> a(static_cast<size_t>(n * n)), b(a.size()), c(a.size());
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (size_t i = 0; i < a.size(); ++i) a[i] = uniform(rng), b[i] = uniform(rng);
  auto product = [&] {
    arena.execute([&] { gemm(Trans::No, Trans::No, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n); });
  };
  product();  // warm-up: pages touched, threads started
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    product();
    best = std::min(best, seconds_since(t0));
  }
  out.gemm_gflops = 2.0 * static_cast<double>(n) * n * n / best * 1e-9;

#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx512 || avx2) {
    out.fma_isa = avx512 ? "avx512" : "avx2";
    const double flops_per_iteration = avx512 ? 384.0 : 192.0;
    const int threads = arena.max_concurrency();
    const int64_t iterations = int64_t{1} << 22;  // ~10 ms per thread at ~150 GFLOP/s
    std::vector<float> sink(static_cast<size_t>(threads));
    auto run = [&] {
      arena.execute([&] {
        tbb::parallel_for(
            tbb::blocked_range<int>(0, threads, 1),
            [&](const tbb::blocked_range<int>& r) {
              for (int t = r.begin(); t < r.end(); ++t)
                sink[static_cast<size_t>(t)] = avx512 ? fma_loop_avx512(iterations) : fma_loop_avx2(iterations);
            },
            tbb::simple_partitioner());
      });
    };
    run();
    double best_fma = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      run();
      best_fma = std::min(best_fma, seconds_since(t0));
    }
    out.fma_gflops = flops_per_iteration * static_cast<double>(iterations) * threads / best_fma * 1e-9;
    volatile float keep = sink[0];
    (void)keep;
  }
#endif
  return out;
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

// The language_model task at the reference's shape (../shared/bench/torch_gpt.py): training steps
// on fixed random rows of B × (L + 1) tokens (inputs the first L, labels the last L) with AdamW
// (0.9, 0.99, weight decay 0.1 on matrices) and clipping 1.0, one warm-up step then K timed;
// train tokens/s = B·L / step time. Then sampling as the reference does: B rows of L new tokens
// each from one start token, with the key/value cache (eval::DecodeSession), each drawn from the
// softmax of the logits (eval::draw_token); sample tokens/s = B·L / sampling time.
void bench_language_model(const BenchOptions& o, const dsl::ElaboratedModel& elaborated, exec::Model& model,
                          std::vector<train::ParamRef>& refs, exec::TbbExecutor& executor, int threads, uint64_t seed) {
  const task::LanguageModelTask& task = task::language_model();
  const int64_t B = o.batch, L = o.block, V = o.vocab;
  for (train::ParamRef& r : refs) r.decay = r.value.shape().size() >= 2;
  train::Adam adamw(train::AdamConfig{0.9, 0.99, 1e-8, 1.0, 0.1});
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> word(kFirstWordId, static_cast<int>(V) - 1);
  Tensor inputs({B, L}), labels({B, L});
  for (int64_t r = 0; r < B; ++r) {
    int previous = word(rng);
    for (int64_t i = 0; i < L; ++i) {
      const int next = word(rng);
      inputs.data()[r * L + i] = static_cast<float>(previous);
      labels.data()[r * L + i] = static_cast<float>(next);
      previous = next;
    }
  }
  const task::TrainingFeeds batch = task.feeds(elaborated.graph, inputs.view(), labels.view());
  double last_loss = 0;
  auto train_step = [&](uint64_t step) {
    exec::Plan& plan = model.plan(batch.dims, task.feed_names(), task.objective().fetches());
    executor.forward(plan, batch.feeds, StepInfo{true, seed, nullptr}, step);
    executor.backward(plan);
    adamw.step(refs, 1e-3);
    last_loss = plan.value(task.objective().loss).data()[0];
  };
  train_step(0);
  gemm_count_reset();
  gemm_count_enable(true);
  gemm_profile_reset();
  gemm_profile_enable(o.products);
  const auto train_t0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < o.steps; ++k) train_step(static_cast<uint64_t>(k + 1));
  const double step_s = seconds_since(train_t0) / static_cast<double>(o.steps);
  gemm_count_enable(false);
  gemm_profile_enable(false);
  const std::vector<GemmShapeTime> products = gemm_profile();
  const double madds_per_step = static_cast<double>(gemm_counted_madds()) / static_cast<double>(o.steps);
  const double train_rss_mb = peak_rss_mb();
  if (!std::isfinite(last_loss)) throw CliError(1, "the training loss is not finite: " + std::to_string(last_loss));
  model.clear_plans();

  const auto sample_t0 = std::chrono::steady_clock::now();
  {
    eval::DecodeSession session(model, B, L, threads);
    std::vector<int> tokens(static_cast<size_t>(B), kFirstWordId);
    data::SplitMix64 random(seed);
    std::vector<float> scratch;
    for (int64_t t = 0; t < L; ++t) {
      const float* logits = session.step(tokens);
      for (int64_t r = 0; r < B; ++r)
        tokens[static_cast<size_t>(r)] = eval::draw_token(logits + r * session.vocab(), session.vocab(), 1.0, 0, random, scratch);
    }
  }
  const double sample_s = seconds_since(sample_t0);
  const double train_tps = static_cast<double>(B * L) / step_s, sample_tps = static_cast<double>(B * L) / sample_s;
  const double gflops = 2.0 * madds_per_step / step_s * 1e-9;
  nlohmann::ordered_json out;
  out["engine"] = std::string("attnlab-") + ATTNLAB_VERSION;
  out["task"] = task.name();
  out["model"] = elaborated.name;
  out["threads"] = executor.threads();
  out["batch"] = B;
  out["block"] = L;
  out["vocab"] = V;
  for (const char* name : {"d_model", "layers", "heads"})
    if (const int64_t value = elaborated.integer_param(name, -1); value >= 0) out[name] = value;
  out["parameters"] = model.parameters().element_count();
  out["backend"] = gemm_backend();
  out["steps"] = o.steps;
  out["train_step_s"] = step_s;
  out["train_tokens_per_s"] = train_tps;
  out["train_loss"] = last_loss;
  out["gflops"] = gflops;
  out["sample_s"] = sample_s;
  out["sample_tokens_per_s"] = sample_tps;
  out["train_peak_rss_mb"] = train_rss_mb;
  out["peak_rss_mb"] = peak_rss_mb();
  if (o.products) out["products"] = products_json(products, o.steps);
  if (o.json) {
    std::cout << out.dump() << '\n';
    return;
  }
  char line[160];
  std::cout << "model " << elaborated.name << " (language_model), " << model.parameters().element_count() << " parameters; batch " << B
            << ", block " << L << ", vocab " << V << "; " << executor.threads() << " threads (" << gemm_backend() << " gemm)\n";
  std::snprintf(line, sizeof line, "  train   %10.1f tokens/s   %8.4f s/step   %7.1f GFLOP/s (matrix products)\n", train_tps, step_s,
                gflops);
  std::cout << line;
  std::snprintf(line, sizeof line, "  sample  %10.1f tokens/s   %8.4f s (%lld rows x %lld tokens, cached)\n", sample_tps, sample_s,
                static_cast<long long>(B), static_cast<long long>(L));
  std::cout << line;
  if (o.products) print_products(products, o.steps);
}

void run_bench(const BenchOptions& o, const CommonOptions& common) {
  check_options(o);
  std::unique_ptr<Registry> registry = load_registry(common);

  const fs::path file = o.file.empty() ? dsl::builtin_transformer_base() : fs::path(o.file);
  std::vector<std::string> sets = o.sets;
  sets.push_back("vocab=" + std::to_string(o.vocab));
  dsl::ElaboratedModel elaborated;
  try {
    elaborated = dsl::elaborate_target(file, *registry, sets, o.uses, o.model);
  } catch (const dsl::DslError& e) {
    std::cerr << e.what();
    const size_t n = e.diagnostics.size();
    throw CliError(1, (o.file.empty() ? std::string("the default model") : o.file) + ": " + std::to_string(n) +
                          (n == 1 ? " error" : " errors"));
  }
  const task::TranslationTask& task = task::translation();
  const task::Task& benched = o.block > 0 ? static_cast<const task::Task&>(task::language_model()) : task;
  try {
    task::check_graph(benched, elaborated.graph);
  } catch (const dsl::DslError& e) {
    std::cerr << e.what();
    throw CliError(1, "model " + elaborated.name + " cannot be benchmarked as the " + benched.name() + " task" +
                          (o.block > 0 ? "" : " (--block times a language model)"));
  }

  const int threads = common.threads;
  tbb::global_control parallelism(tbb::global_control::max_allowed_parallelism,
                                  threads > 0 ? static_cast<size_t>(threads)
                                              : static_cast<size_t>(tbb::this_task_arena::max_concurrency()));
  exec::TbbExecutor executor(threads);
  const uint64_t seed = common.seed;
  exec::Model model(elaborated.graph, *registry, seed, dsl::default_dims());
  std::vector<train::ParamRef> refs;
  for (exec::Parameter& p : model.parameters())
    if (p.spec.kind == ParamKind::Trainable) refs.push_back({p.name, p.value.view(), p.grad.view()});  // Adam's
  if (o.block > 0) {
    bench_language_model(o, elaborated, model, refs, executor, threads, seed);
    return;
  }
  train::Adam adam(train::AdamConfig{0.9, 0.98, 1e-9, 0.0});

  const int64_t B = o.batch, S = o.src_len, T = o.tgt_len, V = o.vocab;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> word(kFirstWordId, static_cast<int>(V) - 1);
  Tensor src({B, S}), tgt_in({B, T}), tgt_out({B, T});
  std::vector<std::vector<int>> sources(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r) {
    for (int64_t i = 0; i < S; ++i) {
      const int id = word(rng);
      src.data()[r * S + i] = static_cast<float>(id);
      sources[static_cast<size_t>(r)].push_back(id);
    }
    int previous = word(rng);  // target sequence of T+1 tokens: tgt_in = [:-1], tgt_out = [1:]
    for (int64_t i = 0; i < T; ++i) {
      const int next = word(rng);
      tgt_in.data()[r * T + i] = static_cast<float>(previous);
      tgt_out.data()[r * T + i] = static_cast<float>(next);
      previous = next;
    }
  }

  const task::TrainingFeeds batch = task.feeds(elaborated.graph, src.view(), tgt_in.view(), tgt_out.view());
  double last_loss = 0;
  auto train_step = [&](uint64_t step) {
    exec::Plan& plan = model.plan(batch.dims, task.feed_names(), task.objective().fetches());
    executor.forward(plan, batch.feeds, StepInfo{true, seed, nullptr}, step);
    executor.backward(plan);  // d loss = 1: the gradient of the mean loss, as the reference
    adam.step(refs, 1e-4);
    last_loss = plan.value(task.objective().loss).data()[0];
  };
  train_step(0);  // warm-up: plans, buffers, optimizer moments
  gemm_count_reset();
  gemm_count_enable(true);
  gemm_profile_reset();
  gemm_profile_enable(o.products);
  const auto train_t0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < o.steps; ++k) train_step(static_cast<uint64_t>(k + 1));
  const double train_s = seconds_since(train_t0);
  gemm_count_enable(false);
  gemm_profile_enable(false);
  const std::vector<GemmShapeTime> products = gemm_profile();
  const double step_s = train_s / static_cast<double>(o.steps);
  const double madds_per_step = static_cast<double>(gemm_counted_madds()) / static_cast<double>(o.steps);
  const double train_rss_mb = peak_rss_mb();
  if (!std::isfinite(last_loss)) throw CliError(1, "the training loss is not finite: " + std::to_string(last_loss));
  model.clear_plans();  // training buffers go back to the pool for the decoder's plans

  const auto decode_t0 = std::chrono::steady_clock::now();
  int64_t eos_tokens = 0;
  {
    eval::DecodeSession session(model, executor, sources, 1, T, threads);
    std::vector<int> tokens(static_cast<size_t>(B), eval::kDecodeBosId);
    for (int64_t t = 0; t < T; ++t) {
      const float* logits = session.step(tokens);
      for (int64_t r = 0; r < B; ++r) {
        const float* row = logits + r * session.vocab();
        tokens[static_cast<size_t>(r)] = static_cast<int>(std::max_element(row, row + session.vocab()) - row);
        eos_tokens += tokens[static_cast<size_t>(r)] == eval::kDecodeEosId;
      }
    }
  }
  const double decode_s = seconds_since(decode_t0);

  // Beam search on the same sources, as translate runs it (length penalty 0.6), up to T output
  // tokens a sentence (fewer where a hypothesis ends): tokens/s counts the output tokens.
  double beam_s = 0;
  int64_t beam_tokens = 0;
  if (o.beam > 1) {
    model.clear_plans();
    eval::DecodeOptions options;
    options.beam = o.beam;
    options.alpha = 0.6;
    options.max_len_extra = std::max<int64_t>(0, T - S);
    options.threads = threads;
    eval::Decoder decoder(model, executor);
    const auto beam_t0 = std::chrono::steady_clock::now();
    for (const eval::Translation& t : decoder.beam_search(sources, options))
      beam_tokens += static_cast<int64_t>(t.tokens.size()) + (t.finished ? 1 : 0);
    beam_s = seconds_since(beam_t0);
  }
  const double rss_mb = peak_rss_mb();

  std::optional<PeakFigures> peak;
  if (o.peak) {
    tbb::task_arena arena(threads > 0 ? threads : tbb::task_arena::automatic);
    peak = measure_peak(arena, o.peak_size);
  }

  const double train_tps = static_cast<double>(B * (S + T)) / step_s;
  const double decode_tps = static_cast<double>(B * T) / decode_s;
  const double gflops = 2.0 * madds_per_step / step_s * 1e-9;
  nlohmann::ordered_json out;
  out["engine"] = std::string("attnlab-") + ATTNLAB_VERSION;
  out["model"] = elaborated.name;
  out["threads"] = executor.threads();
  out["batch"] = B;
  out["src_len"] = S;
  out["tgt_len"] = T;
  out["vocab"] = V;
  for (const char* name : {"d_model", "layers", "d_ff", "heads"})
    if (const int64_t value = elaborated.integer_param(name, -1); value >= 0) out[name] = value;
  out["parameters"] = model.parameters().element_count();
  out["executor"] = executor.name();
  out["backend"] = gemm_backend();
  out["steps"] = o.steps;
  out["train_step_s"] = step_s;
  out["train_tokens_per_s"] = train_tps;
  out["train_loss"] = last_loss;
  out["gemm_gflop_per_step"] = 2.0 * madds_per_step * 1e-9;
  out["gflops"] = gflops;
  out["decode_steps"] = T;
  out["decode_eos_tokens"] = eos_tokens;
  out["decode_s"] = decode_s;
  out["decode_tokens_per_s"] = decode_tps;
  if (o.beam > 1) {
    out["beam"] = o.beam;
    out["beam_decode_tokens"] = beam_tokens;
    out["beam_decode_s"] = beam_s;
    out["beam_decode_tokens_per_s"] = static_cast<double>(beam_tokens) / beam_s;
  }
  out["train_peak_rss_mb"] = train_rss_mb;
  out["peak_rss_mb"] = rss_mb;
  if (o.products) out["products"] = products_json(products, o.steps);
  if (peak) {
    out["peak_size"] = o.peak_size;
    out["gemm_peak_gflops"] = peak->gemm_gflops;
    out["gemm_peak_fraction"] = gflops / peak->gemm_gflops;
    if (peak->fma_gflops > 0) {
      out["fma_peak_isa"] = peak->fma_isa;
      out["fma_peak_gflops"] = peak->fma_gflops;
      out["fma_peak_fraction"] = gflops / peak->fma_gflops;
    }
  }
  if (o.json) {
    std::cout << out.dump() << '\n';
    return;
  }
  char line[160];
  std::cout << "model " << elaborated.name << ", " << model.parameters().element_count() << " parameters; batch " << B
            << ", " << S << "+" << T << " tokens, vocab " << V << "; " << executor.threads() << " threads ("
            << executor.name() << " executor, " << gemm_backend() << " gemm)\n";
  std::snprintf(line, sizeof line, "  train   %10.1f tokens/s   %8.4f s/step   %7.1f GFLOP/s (matrix products)\n",
                train_tps, step_s, gflops);
  std::cout << line;
  std::snprintf(line, sizeof line, "  decode  %10.1f tokens/s   %8.4f s (greedy, %lld steps, cached)\n", decode_tps,
                decode_s, static_cast<long long>(T));
  std::cout << line;
  if (o.beam > 1) {
    std::snprintf(line, sizeof line, "  beam %-2d %10.1f tokens/s   %8.4f s (%lld output tokens, alpha 0.6)\n", o.beam,
                  static_cast<double>(beam_tokens) / beam_s, beam_s, static_cast<long long>(beam_tokens));
    std::cout << line;
  }
  std::snprintf(line, sizeof line, "  peak RSS %9.1f MB (%.1f MB after training)\n", rss_mb, train_rss_mb);
  std::cout << line;
  if (peak) {
    std::snprintf(line, sizeof line, "  peak    %10.1f GFLOP/s gemm %lld^3 (training reaches %.0f%%)\n",
                  peak->gemm_gflops, static_cast<long long>(o.peak_size), 100.0 * gflops / peak->gemm_gflops);
    std::cout << line;
    if (peak->fma_gflops > 0) {
      std::snprintf(line, sizeof line, "          %10.1f GFLOP/s %s FMA loop (training reaches %.0f%%)\n",
                    peak->fma_gflops, peak->fma_isa.c_str(), 100.0 * gflops / peak->fma_gflops);
      std::cout << line;
    }
  }
  if (o.products) print_products(products, o.steps);
}

}  // namespace

void add_bench_command(CLI::App& app, CommonOptions& options) {
  auto bench = std::make_shared<BenchOptions>();
  CLI::App* command = app.add_subcommand(
      "bench", "Time training steps and greedy decoding on random tokens (the PyTorch reference's work)");
  command->add_option("file", bench->file,
                      "A model (.attn) or experiment file; default the built-in experiments/transformer_base.attn");
  command->add_option("--set", bench->sets, "Override a model parameter: NAME=VALUE")->allow_extra_args(false);
  command->add_option("--use", bench->uses, "Bind a slot to a node type: SLOT=TYPE")->allow_extra_args(false);
  command->add_option("--model", bench->model, "Which model (or experiment) of the file; default the first");
  command->add_option("--batch", bench->batch, "Sentences per batch")->required();
  command->add_option("--src-len", bench->src_len, "Source tokens per sentence (translation)");
  command->add_option("--tgt-len", bench->tgt_len, "Target tokens per sentence (and greedy decode steps; translation)");
  command->add_option("--block", bench->block,
                      "Time a language model (the language_model task): tokens per row, and tokens sampled per row");
  command->add_option("--vocab", bench->vocab, "Vocabulary size (sets the model's vocab)")->required();
  command->add_option("--steps", bench->steps, "Timed training steps after one warm-up step (default 3)");
  command->add_option("--beam", bench->beam,
                      "Also time beam search with this many hypotheses per sentence (2-64; alpha 0.6)");
  command->add_flag("--peak", bench->peak, "Also measure the machine's GEMM and FMA peak on the same threads");
  command->add_option("--peak-size", bench->peak_size, "Side of the square product --peak times (default 2048)");
  command->add_flag("--json", bench->json, "Print one JSON object");
  command->add_flag("--products", bench->products,
                    "Also time the training steps' matrix products by shape (their GFLOP/s and share of product time)");
  add_common_options(*command, options);
  command->callback([bench, &options] { run_bench(*bench, options); });
}

}  // namespace attnlab::cli
