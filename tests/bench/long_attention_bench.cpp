// tests/bench/long_attention_bench.cpp — self-attention over long inputs: time and memory of one
// forward+backward of attention.scaled_dot against the sequence length, for the tiled online-softmax
// kernel (tile = 64) and the materialised score matrix (tile = -1), at the long-input benchmark's shape: batch 1,
// 8 heads, d_k = d_v = 64, d_model 512, no mask, lengths 256, 512, ..., 8192 (the materialised kernel
// up to 4096: at 8192 its probabilities and score gradients alone take 4 GiB).
//
// The node is created through the registry from the plugin beside this executable and driven
// directly (no executor), in a task arena of 1 or 2 threads. Counters:
//   declared_MB  saved + workspace bytes the node's infer() declares (what an executor allocates for
//                it besides inputs, outputs and parameters);
//   rss_MB       resident set after the timed iterations, with every buffer of the node live;
//   peak_rss_MB  the process's peak resident set (getrusage): meaningful per configuration only when
//                each configuration runs in its own process, as long_attention_report.py does;
//   GFLOP/s      nominal matrix-product rate, 3 × forward = 3 · 2 · (4·T·D² + 2·H·T²·d_k) per step
//                (the tiled backward recomputes the score tiles: that extra work is not counted).
//
// Run: build/long_attention_bench [--benchmark_filter=REGEX]; the report (table and
// docs/long_attention.svg): python3 tests/bench/long_attention_report.py --bench build/long_attention_bench
#include "node/plugin_loader.h"
#include "../../plugins/attention/attention.h"

#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

using attnlab::Tensor;
using attnlab::TensorView;

constexpr int64_t kHeads = 8, kDk = 64, kDModel = 512;

attnlab::Registry& registry() {
  static attnlab::Registry r;
  static bool loaded = [] {
    attnlab::load_plugin(r, attnlab::plugin_search_path({}).front() / "libattnlab_plugin_attention.so");
    return true;
  }();
  (void)loaded;
  return r;
}

std::vector<TensorView> views(const std::vector<Tensor>& ts) {
  std::vector<TensorView> v;
  for (const auto& t : ts) v.push_back(t.view());
  return v;
}

double resident_mb() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

double peak_resident_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

// Self-attention over x[1, T, 512] with every buffer infer() declares.
struct SelfAttention {
  attnlab::NodeHandle node;
  Tensor x, dx;
  std::vector<Tensor> params, param_grads, outputs, output_grads, saved, workspace;
  std::vector<TensorView> in, dx_views, p, dp, o, dy, sv, ws;
  int64_t declared_bytes = 0;

  SelfAttention(int64_t len, int64_t tile)
      : node(registry().create("attention.scaled_dot",
                               {{"heads", kHeads}, {"d_k", kDk}, {"d_v", kDk}, {"tile", tile}})),
        x({1, len, kDModel}),
        dx({1, len, kDModel}, 0.0f) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    auto fill = [&](Tensor& t) {
      for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(rng);
    };
    fill(x);
    in = {x.view(), x.view()};
    const attnlab::NodeShapes ns = node->infer(std::vector<attnlab::Shape>{x.shape(), x.shape()});
    for (const auto& ps : ns.params) {
      params.emplace_back(ps.shape);
      fill(params.back());
      for (int64_t i = 0; i < params.back().numel(); ++i) params.back().data()[i] *= 0.1f;
      param_grads.emplace_back(ps.shape);
    }
    for (const auto& os : ns.outputs) {
      outputs.emplace_back(os);
      output_grads.emplace_back(os);
      fill(output_grads.back());
    }
    for (const auto& ss : ns.saved) {
      saved.emplace_back(ss, 0.0f);  // touched, so that the resident set counts them
      declared_bytes += 4 * saved.back().numel();
    }
    for (const auto& w : ns.workspace) {
      workspace.emplace_back(w, 0.0f);
      declared_bytes += 4 * workspace.back().numel();
    }
    dx_views = {dx.view(), dx.view()};  // self-attention: query and memory gradients both add into dx
    p = views(params), dp = views(param_grads), o = views(outputs), dy = views(output_grads), sv = views(saved),
    ws = views(workspace);
  }

  void step() {
    node->forward({in, p, o, sv, ws, attnlab::StepInfo{true, 1, nullptr}});
    node->backward({in, p, o, sv, ws, dy, dx_views, dp, attnlab::StepInfo{true, 1, nullptr}});
  }
};

// range(0): length, range(1): threads, range(2): tile (64: tiled, -1: materialised).
void BM_SelfAttentionFwdBwd(benchmark::State& state) {
  const int64_t len = state.range(0);
  SelfAttention layer(len, state.range(2));
  tbb::task_arena arena(static_cast<int>(state.range(1)));
  arena.execute([&] { layer.step(); });
  for (auto _ : state) arena.execute([&] { layer.step(); });
  const double t = static_cast<double>(len);
  const double fwd_flops = 2.0 * (4.0 * t * kDModel * kDModel + 2.0 * kHeads * t * t * kDk);
  state.counters["GFLOP/s"] =
      benchmark::Counter(3.0 * fwd_flops * static_cast<double>(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  state.counters["declared_MB"] = static_cast<double>(layer.declared_bytes) / (1 << 20);
  state.counters["rss_MB"] = resident_mb();
  state.counters["peak_rss_MB"] = peak_resident_mb();
}

void lengths(benchmark::internal::Benchmark* b, int64_t tile, int64_t max_len) {
  b->ArgNames({"len", "threads", "tile"});
  for (int threads : {1, 2})
    for (int64_t len = 256; len <= max_len; len *= 2) b->Args({len, threads, tile});
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_SelfAttentionFwdBwd)->Name("tiled")->Apply([](auto* b) { lengths(b, attnlab::attention::kDefaultTile, 8192); });
BENCHMARK(BM_SelfAttentionFwdBwd)->Name("materialised")->Apply([](auto* b) { lengths(b, -1, 4096); });
// The tile size behind kDefaultTile: tiles of 32 to 256 at 2048 tokens.
BENCHMARK(BM_SelfAttentionFwdBwd)->Name("tile_size")->Apply([](auto* b) {
  b->ArgNames({"len", "threads", "tile"});
  for (int64_t tile : {32, 64, 128, 256}) b->Args({2048, 1, tile});
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
});

BENCHMARK_MAIN();
