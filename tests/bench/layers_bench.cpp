// tests/bench/layers_bench.cpp — attention and norms as the training step runs them: nodes created
// through the registry from the plugins beside this executable (attention, norm), driven directly
// (no executor), forward and forward+backward, on one layer's activations at the two shapes of
// `attnlab bench`:
//   small: batch 128, 24 positions, d_model 256, 8 heads of 32   (B·T = 3072 rows)
//   base:  batch 64,  32 positions, d_model 512, 8 heads of 64   (B·T = 2048 rows)
// Attention is self-attention with a key-padding mask [B, T] (all ones: the encoder's case), or
// causal with it (the decoder's); the score softmax is inside the node (a private step of
// plugins/attention) and is timed as part of it. Norms are norm.layer and norm.rms over [B, T, D].
//
// Run with 1 and 2 TBB threads. Times are wall-clock (UseRealTime); the CPU column is the whole
// process's. Counters: GFLOP/s of attention's matrix products (forward 2·(4·BT·D² + 2·B·H·T²·d_k);
// forward+backward three times that), GB/s for norms (forward reads x and writes y; backward reads
// x, dy and writes dx: 8 and 12 bytes per element, 20 for both; parameter traffic ignored).
//
// Run: build/layers_bench [--benchmark_filter=REGEX]
#include "node/plugin_loader.h"

#include <benchmark/benchmark.h>
#include <tbb/task_arena.h>

#include <random>
#include <string>
#include <vector>

namespace {

using attnlab::Tensor;
using attnlab::TensorView;

attnlab::Registry& registry() {
  static attnlab::Registry r;
  static bool loaded = [] {
    const auto dir = attnlab::plugin_search_path({}).front();
    for (const char* family : {"attention", "norm"})
      attnlab::load_plugin(r, dir / (std::string("libattnlab_plugin_") + family + ".so"));
    return true;
  }();
  (void)loaded;
  return r;
}

struct Shape {
  int64_t batch, len, d_model, heads;
};
constexpr Shape kSmall{128, 24, 256, 8};
constexpr Shape kBase{64, 32, 512, 8};

std::vector<TensorView> views(const std::vector<Tensor>& ts) {
  std::vector<TensorView> v;
  for (const auto& t : ts) v.push_back(t.view());
  return v;
}

// One node with every buffer it needs; x is both query and memory for attention.
struct Layer {
  attnlab::NodeHandle node;
  Tensor x, dx, mask;
  bool attention;
  std::vector<Tensor> params, param_grads, outputs, output_grads, saved, workspace;
  std::vector<TensorView> in, dx_views, p, dp, o, dy, sv, ws;

  Layer(const std::string& type, const attnlab::Attrs& attrs, const Shape& s)
      : node(registry().create(type, attrs)),
        x({s.batch, s.len, s.d_model}),
        dx({s.batch, s.len, s.d_model}, 0.0f),
        mask({s.batch, s.len}, 1.0f),
        attention(type.rfind("attention.", 0) == 0) {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    auto fill = [&](Tensor& t) {
      for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(rng);
    };
    fill(x);
    in = {x.view()};
    if (attention) in = {x.view(), x.view(), mask.view()};
    std::vector<attnlab::Shape> shapes;
    for (const auto& v : in) shapes.push_back(v.shape());
    const attnlab::NodeShapes ns = node->infer(shapes);
    for (const auto& ps : ns.params) {
      params.emplace_back(ps.shape);
      fill(params.back());
      param_grads.emplace_back(ps.shape);
    }
    for (const auto& os : ns.outputs) {
      outputs.emplace_back(os);
      output_grads.emplace_back(os);
      fill(output_grads.back());
    }
    for (const auto& ss : ns.saved) saved.emplace_back(ss);
    for (const auto& w : ns.workspace) workspace.emplace_back(w);
    dx_views = {dx.view()};
    if (attention) dx_views = {dx.view(), dx.view(), TensorView()};  // self-attention: both add into dx
    p = views(params), dp = views(param_grads), o = views(outputs), dy = views(output_grads), sv = views(saved),
    ws = views(workspace);
  }

  void forward() { node->forward({in, p, o, sv, ws, attnlab::StepInfo{true, 1, nullptr}}); }
  void backward() { node->backward({in, p, o, sv, ws, dy, dx_views, dp, attnlab::StepInfo{true, 1, nullptr}}); }
};

void run(benchmark::State& state, Layer& layer, bool backward) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  arena.execute([&] {
    layer.forward();
    if (backward) layer.backward();
  });
  for (auto _ : state)
    arena.execute([&] {
      layer.forward();
      if (backward) layer.backward();
    });
}

void BM_Attention(benchmark::State& state, Shape s, bool causal, bool backward) {
  const int64_t dk = s.d_model / s.heads;
  attnlab::Attrs attrs = {{"heads", s.heads}, {"d_k", dk}, {"d_v", dk}, {"causal", causal}};
  Layer layer("attention.scaled_dot", attrs, s);
  run(state, layer, backward);
  const double rows = static_cast<double>(s.batch * s.len);
  const double fwd_flops = 2.0 * (4.0 * rows * s.d_model * s.d_model +
                                  2.0 * s.batch * s.heads * static_cast<double>(s.len) * s.len * dk);
  state.counters["GFLOP/s"] = benchmark::Counter((backward ? 3 : 1) * fwd_flops * state.iterations() * 1e-9,
                                                 benchmark::Counter::kIsRate);
}

void BM_Norm(benchmark::State& state, std::string type, Shape s, bool backward) {
  Layer layer(type, {}, s);
  run(state, layer, backward);
  const double elements = static_cast<double>(s.batch * s.len * s.d_model);
  state.counters["GB/s"] = benchmark::Counter((backward ? 20.0 : 8.0) * elements * state.iterations() * 1e-9,
                                              benchmark::Counter::kIsRate);
}

void threads(benchmark::internal::Benchmark* b) {
  b->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK_CAPTURE(BM_Attention, small_self_fwd, kSmall, false, false)->Apply(threads);
BENCHMARK_CAPTURE(BM_Attention, small_self_fwd_bwd, kSmall, false, true)->Apply(threads);
BENCHMARK_CAPTURE(BM_Attention, small_causal_fwd_bwd, kSmall, true, true)->Apply(threads);
BENCHMARK_CAPTURE(BM_Attention, base_self_fwd, kBase, false, false)->Apply(threads);
BENCHMARK_CAPTURE(BM_Attention, base_self_fwd_bwd, kBase, false, true)->Apply(threads);
BENCHMARK_CAPTURE(BM_Attention, base_causal_fwd_bwd, kBase, true, true)->Apply(threads);
BENCHMARK_CAPTURE(BM_Norm, layer_small_fwd, "norm.layer", kSmall, false)->Apply(threads);
BENCHMARK_CAPTURE(BM_Norm, layer_small_fwd_bwd, "norm.layer", kSmall, true)->Apply(threads);
BENCHMARK_CAPTURE(BM_Norm, layer_base_fwd, "norm.layer", kBase, false)->Apply(threads);
BENCHMARK_CAPTURE(BM_Norm, layer_base_fwd_bwd, "norm.layer", kBase, true)->Apply(threads);
BENCHMARK_CAPTURE(BM_Norm, rms_small_fwd, "norm.rms", kSmall, false)->Apply(threads);
BENCHMARK_CAPTURE(BM_Norm, rms_small_fwd_bwd, "norm.rms", kSmall, true)->Apply(threads);
BENCHMARK_CAPTURE(BM_Norm, rms_base_fwd, "norm.rms", kBase, false)->Apply(threads);
BENCHMARK_CAPTURE(BM_Norm, rms_base_fwd_bwd, "norm.rms", kBase, true)->Apply(threads);

BENCHMARK_MAIN();
