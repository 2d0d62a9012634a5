// tests/components/components_bench.cpp — times forward and forward+backward of each component type
// on one layer's worth of activations, driving the nodes directly (no executor). Not a test: a tool
// for locating where a model's time goes among its components.
//
//   components_bench [BATCH LEN D_MODEL HEADS D_FF REPS]     defaults: 32 32 512 8 2048 10
//
// Prints one line per type: milliseconds per forward and per forward+backward (mean over REPS after
// one warm-up call). Plugins are loaded from the executable's directory.
#include "node/plugin_loader.h"
#include "node/registry.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using namespace attnlab;

namespace {

std::vector<TensorView> views(const std::vector<Tensor>& ts) {
  std::vector<TensorView> out;
  for (const auto& t : ts) out.push_back(t.view());
  return out;
}

struct Case {
  std::string type;
  Attrs attrs;
  bool self_attention;  // query and memory are one buffer
};

}  // namespace

int main(int argc, char** argv) {
  auto arg = [&](int i, int64_t fallback) { return argc > i ? std::atoll(argv[i]) : fallback; };
  const int64_t B = arg(1, 32), T = arg(2, 32), D = arg(3, 512), H = arg(4, 8), F = arg(5, 2048);
  const int reps = static_cast<int>(arg(6, 10));
  if (B < 1 || T < 1 || D < 1 || H < 1 || F < 1 || reps < 1 || D % H != 0) {
    std::fprintf(stderr, "usage: components_bench [BATCH LEN D_MODEL HEADS D_FF REPS] (positive; HEADS divides D_MODEL)\n");
    return 2;
  }
  Registry registry;
  try {
    const auto dir = plugin_search_path({}).front();
    for (const char* family : {"attention", "posenc", "norm", "ffn"})
      load_plugin(registry, dir / (std::string("libattnlab_plugin_") + family + ".so"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return kPluginErrorExit;
  }

  const Attrs attn = {{"heads", H}, {"d_k", D / H}, {"d_v", D / H}};
  auto with = [&](Attrs a, const std::string& k, AttrValue v) {
    a.set(k, std::move(v));
    return a;
  };
  const std::vector<Case> cases = {
      {"attention.scaled_dot", attn, true},
      {"attention.scaled_dot", with(attn, "causal", true), true},
      {"attention.scaled_dot", with(attn, "posenc", std::string("posenc.rotary")), true},
      {"attention.grouped_query", with(attn, "kv_heads", int64_t{1}), true},
      {"attention.local", with(attn, "window", int64_t{16}), true},
      {"attention.additive", attn, true},
      {"posenc.sinusoidal", {}, false},
      {"norm.layer", {}, false},
      {"norm.rms", {}, false},
      {"ffn.relu", {{"hidden", F}}, false},
      {"ffn.gelu", {{"hidden", F}}, false},
      {"ffn.swiglu", {{"hidden", F}}, false},
  };

  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  auto random = [&](const Shape& s) {
    Tensor t(s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(gen);
    return t;
  };
  std::printf("batch %lld, length %lld, d_model %lld, heads %lld, d_ff %lld, %d reps\n", (long long)B, (long long)T,
              (long long)D, (long long)H, (long long)F, reps);
  for (const Case& c : cases) {
    NodeHandle node = registry.create(c.type, c.attrs);
    Tensor x = random({B, T, D});
    std::vector<TensorView> in = {x.view()};
    if (c.self_attention) in.push_back(x.view());
    std::vector<Shape> shapes;
    for (const auto& v : in) shapes.push_back(v.shape());
    const NodeShapes s = node->infer(shapes);
    std::vector<Tensor> params, param_grads, outputs, output_grads, saved, workspace, input_grads;
    for (const auto& p : s.params) {
      params.push_back(random(p.shape));
      param_grads.emplace_back(p.shape);
    }
    for (const auto& o : s.outputs) {
      outputs.emplace_back(o);
      output_grads.push_back(random(o));
    }
    for (const auto& sv : s.saved) saved.emplace_back(sv);
    for (const auto& w : s.workspace) workspace.emplace_back(w);
    input_grads.emplace_back(x.shape());
    std::vector<TensorView> dx = {input_grads[0].view()};
    if (c.self_attention) dx.push_back(input_grads[0].view());
    const auto p = views(params), dp = views(param_grads), o = views(outputs), dy = views(output_grads),
               sv = views(saved), ws = views(workspace);
    const ForwardContext fwd{in, p, o, sv, ws, {}};
    const BackwardContext bwd{in, p, o, sv, ws, dy, dx, dp, {}};
    node->forward(fwd);
    node->backward(bwd);
    double forward_seconds = 0.0, total_seconds = 0.0;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      node->forward(fwd);
      const auto t1 = std::chrono::steady_clock::now();
      node->backward(bwd);
      const auto t2 = std::chrono::steady_clock::now();
      forward_seconds += std::chrono::duration<double>(t1 - t0).count();
      total_seconds += std::chrono::duration<double>(t2 - t0).count();
    }
    std::string label = c.type;
    for (const auto& [k, v] : c.attrs.values())
      if (k != "heads" && k != "d_k" && k != "d_v" && k != "hidden") label += " " + k + "=" + to_string(v);
    std::printf("%-44s forward %8.2f ms   forward+backward %8.2f ms\n", label.c_str(), 1e3 * forward_seconds / reps,
                1e3 * total_seconds / reps);
  }
  return 0;
}
