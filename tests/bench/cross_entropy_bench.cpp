// tests/bench/cross_entropy_bench.cpp — the row-wise softmax cross-entropy (loss.cross_entropy
// from the basic plugin, loaded from beside this executable) on [rows, V] logits, forward and
// backward, with 1 and 2 TBB threads. Reported: GB/s of logits streamed (forward reads the logits
// once; backward reads them and read-modify-writes their gradient) and logits elements per second,
// per second of the whole process's CPU time: the rate per busy core, which other work on a shared
// machine does not distort the way it distorts wall-clock time.
//
// Run: build/cross_entropy_bench [--benchmark_filter=REGEX]
#include "node/plugin_loader.h"

#include <benchmark/benchmark.h>
#include <tbb/task_arena.h>

#include <random>
#include <string>
#include <vector>

namespace {

attnlab::Registry& registry() {
  static attnlab::Registry r;
  static bool loaded = [] {
    attnlab::load_plugin(r, attnlab::plugin_search_path({}).front() / "libattnlab_plugin_basic.so");
    return true;
  }();
  (void)loaded;
  return r;
}

struct Setup {
  attnlab::NodeHandle node;
  attnlab::NodeShapes shapes;
  attnlab::Tensor logits, targets, dlogits;
  std::vector<attnlab::Tensor> outputs, saved, workspace, output_grads;

  Setup(int64_t rows, int64_t vocab)
      : node(registry().create("loss.cross_entropy", {{"label_smoothing", 0.1}})),
        logits({rows, vocab}),
        targets({rows}),
        dlogits({rows, vocab}, 0.0f) {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<int> pick(1, int(vocab) - 1);
    for (int64_t i = 0; i < logits.numel(); ++i) logits.data()[i] = normal(rng);
    for (int64_t i = 0; i < rows; ++i) targets.data()[i] = float(i % 10 == 9 ? 0 : pick(rng));  // 10% padding
    const std::vector<attnlab::Shape> in = {logits.shape(), targets.shape()};
    shapes = node->infer(in);
    for (auto& s : shapes.outputs) outputs.emplace_back(s), output_grads.emplace_back(s, 1.0f);
    for (auto& s : shapes.saved) saved.emplace_back(s);
    for (auto& s : shapes.workspace) workspace.emplace_back(s);
  }

  static std::vector<attnlab::TensorView> views(const std::vector<attnlab::Tensor>& ts) {
    std::vector<attnlab::TensorView> v;
    for (auto& t : ts) v.push_back(t.view());
    return v;
  }

  void forward() {
    const std::vector<attnlab::TensorView> in = {logits.view(), targets.view()}, out = views(outputs),
                                           sv = views(saved), ws = views(workspace);
    node->forward({in, {}, out, sv, ws, {}});
  }

  void backward() {
    const std::vector<attnlab::TensorView> in = {logits.view(), targets.view()}, out = views(outputs),
                                           sv = views(saved), ws = views(workspace), og = views(output_grads),
                                           ig = {dlogits.view(), attnlab::TensorView()};
    node->backward({in, {}, out, sv, ws, og, ig, {}, {}});
  }
};

void BM_CrossEntropy(benchmark::State& state, bool backward) {
  const int64_t rows = state.range(0), vocab = state.range(1);
  const int threads = int(state.range(2));
  Setup setup(rows, vocab);
  tbb::task_arena arena(threads);
  arena.execute([&] { setup.forward(); });
  for (auto _ : state) arena.execute([&] { backward ? setup.backward() : setup.forward(); });
  const double bytes = double(rows) * vocab * sizeof(float) * (backward ? 3 : 1);
  state.counters["GB/s"] = benchmark::Counter(bytes * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
  state.counters["Gelem/s"] =
      benchmark::Counter(double(rows) * vocab * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_CrossEntropy, forward, false)
    ->ArgsProduct({{2048}, {8000, 37000}, {1, 2}})
    ->ArgNames({"rows", "V", "threads"})
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CrossEntropy, backward, true)
    ->ArgsProduct({{2048}, {8000, 37000}, {1, 2}})
    ->ArgNames({"rows", "V", "threads"})
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
