// plugins/ffn/moe.cpp — ffn.moe, a mixture-of-experts feed-forward layer (part of the ffn plugin).
//
// Contract: x[..., D] → y[..., D] over the N = numel(x)/D rows (tokens).
//   Router (Shazeer et al. 2017; Fedus et al. 2021, "Switch Transformers", section 2.1):
//     p(x_t) = softmax(x_t·w_g) over the E experts; token t goes to its k most probable experts
//     (ties: the lower index first) and y_t = Σ_{e ∈ top-k(t)} p_e(x_t)·E_e(x_t) (Switch eq. 2, the
//     gates not renormalised), E_e(x) = relu(x·w1[e])·w2[e] (T5's feed-forward network, no biases).
//   Capacity (training forward passes only): each expert takes at most
//     C = ceil(capacity_factor · k · N / E) tokens. Choices are served by rank (every token's first
//     choice, then every token's second, …) and within a rank in token order; a choice beyond an
//     expert's capacity is dropped: it contributes nothing, so a token whose choices are all
//     dropped gets y_t = 0 and passes through the block's residual connection unchanged (Switch,
//     section 2.2). Evaluation and decoding drop nothing (every token is served; the layer is then
//     position-wise, so incremental decoding equals the full pass).
//   Load-balancing loss (training only; Switch eq. 4–6, GShard's m_e): A = aux_loss_weight · E ·
//     Σ_e f_e · P_e, f_e the fraction of the N tokens whose first choice is e (before capacity; not
//     differentiated), P_e = mean_t p_e(x_t). It is an auxiliary loss (node.h, StepReport): reported
//     with aux_loss(A) and its gradient added in backward, times StepInfo::objective_scale.
//   Metrics (training, with a report): expert_tokens.e — the choices expert e served this pass —
//     and dropped_tokens — the choices dropped for capacity. Padding positions are tokens like any
//     other (the layer sees no mask): they are routed, counted and take capacity.
//   Params: w_g[D, E], w1[E, D, hidden], w2[E, hidden, D] (Xavier-uniform); D·E + 2·E·D·hidden.
// Determinism: routing and capacity are decided serially in token order, each expert's rows are
// contiguous and multiplied by gemm(), and each token sums its experts' outputs in rank order, so
// results do not depend on the thread count.
// Backward ADDS into dx and ASSIGNS every parameter gradient (zero for an expert that served no
// token).
#include "moe.h"

#include "node/onnx_lowering.h"
#include "tensor/gemm.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab {
namespace {

class MixtureOfExperts : public Node {
 public:
  explicit MixtureOfExperts(const Attrs& attrs)
      : hidden_(attrs.get_int("hidden")),
        experts_(attrs.get_int("experts")),
        k_(attrs.get_int("k")),
        capacity_factor_(attrs.get_float("capacity_factor")),
        aux_weight_(attrs.get_float("aux_loss_weight")) {
    if (hidden_ < 1) throw std::invalid_argument("hidden must be at least 1, got " + std::to_string(hidden_));
    if (experts_ < 1) throw std::invalid_argument("experts must be at least 1, got " + std::to_string(experts_));
    if (k_ < 1 || k_ > experts_)
      throw std::invalid_argument("k must be between 1 and experts (" + std::to_string(experts_) + "), got " +
                                  std::to_string(k_));
    if (!(capacity_factor_ > 0.0))
      throw std::invalid_argument("capacity_factor must be positive, got " + to_string(attrs.get("capacity_factor")));
    if (!(aux_weight_ >= 0.0))
      throw std::invalid_argument("aux_loss_weight must be at least 0, got " + to_string(attrs.get("aux_loss_weight")));
  }

  NodeShapes infer(std::span<const Shape> in) const override {
    if (in.size() != 1) throw ShapeError("expects one input x [..., width]");
    const Shape& x = in[0];
    if (x.empty() || x.back() < 1) throw ShapeError("x must have a non-empty last dimension, got " + to_string(x));
    const int64_t D = x.back(), N = numel(x) / D, E = experts_, H = hidden_, S = N * k_;
    NodeShapes s;
    s.outputs = {x};
    s.params = {{"w_g", {D, E}}, {"w1", {E, D, H}}, {"w2", {E, H, D}}};
    // saved: probabilities; per (token, rank) the expert and its row among the served choices (−1:
    // dropped); per expert its first row and row count; the served rows' inputs, activated hidden
    // layers and expert outputs (rows grouped by expert)
    s.saved = {{N, E}, {N, k_}, {N, k_}, {2, E}, {S, D}, {S, H}, {S, D}};
    // workspace: router logits / their gradient, gradients of the expert outputs, hidden layers and
    // inputs of the served rows
    s.workspace = {{N, E}, {S, D}, {S, H}, {S, D}};
    return s;
  }

  void forward(const ForwardContext& ctx) const override {
    const float* x = ctx.inputs[0].data();
    const int64_t D = ctx.inputs[0].dim(-1), N = ctx.inputs[0].numel() / D, E = experts_, H = hidden_;
    const bool training = ctx.step.training;
    float* probs = ctx.saved[0].data();
    float* route = ctx.saved[1].data();
    float* row_of = ctx.saved[2].data();
    float* first_row = ctx.saved[3].data();
    float* rows_of = ctx.saved[3].data() + E;
    float *xs = ctx.saved[4].data(), *act = ctx.saved[5].data(), *out = ctx.saved[6].data();

    // Router: softmax of x·w_g per token, and each token's top-k.
    gemm(Trans::No, Trans::No, N, E, D, 1.0f, x, D, ctx.params[0].data(), E, 0.0f, probs, E);
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, N, 64), [&](const tbb::blocked_range<int64_t>& r) {
      std::vector<int64_t> order(E);
      for (int64_t t = r.begin(); t < r.end(); ++t) {
        float* p = probs + t * E;
        const float m = *std::max_element(p, p + E);
        float sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(p[e] - m);
        for (int64_t e = 0; e < E; ++e) p[e] /= sum;
        std::iota(order.begin(), order.end(), int64_t{0});
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
        for (int64_t j = 0; j < k_; ++j) route[t * k_ + j] = static_cast<float>(order[j]);
      }
    });

    // Capacity, by rank and then token order (serial: the order decides who is dropped).
    const int64_t capacity = training ? capacity_of(N) : N;
    std::vector<int64_t> served(E, 0), slot(N * k_, -1);
    int64_t dropped = 0;
    for (int64_t j = 0; j < k_; ++j)
      for (int64_t t = 0; t < N; ++t) {
        const int64_t e = static_cast<int64_t>(route[t * k_ + j]);
        if (served[e] < capacity) slot[t * k_ + j] = served[e]++;
        else ++dropped;
      }
    int64_t next = 0;
    for (int64_t e = 0; e < E; ++e) {
      first_row[e] = static_cast<float>(next);
      rows_of[e] = static_cast<float>(served[e]);
      next += served[e];
    }
    for (int64_t i = 0; i < N * k_; ++i) {
      const int64_t e = static_cast<int64_t>(route[i]);
      row_of[i] = slot[i] < 0 ? -1.0f : first_row[e] + static_cast<float>(slot[i]);
    }
    // Gather the served rows, run each expert on its rows, and combine by token.
    tbb::parallel_for(int64_t{0}, N, [&](int64_t t) {
      for (int64_t j = 0; j < k_; ++j)
        if (row_of[t * k_ + j] >= 0)
          std::copy(x + t * D, x + (t + 1) * D, xs + static_cast<int64_t>(row_of[t * k_ + j]) * D);
    });
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = static_cast<int64_t>(first_row[e]), n = served[e];
      if (n == 0) continue;
      float* a = act + r0 * H;
      gemm(Trans::No, Trans::No, n, H, D, 1.0f, xs + r0 * D, D, ctx.params[1].data() + e * D * H, H, 0.0f, a, H);
      for (int64_t i = 0; i < n * H; ++i) a[i] = std::max(a[i], 0.0f);
      gemm(Trans::No, Trans::No, n, D, H, 1.0f, a, H, ctx.params[2].data() + e * H * D, D, 0.0f, out + r0 * D, D);
    }
    float* y = ctx.outputs[0].data();
    tbb::parallel_for(int64_t{0}, N, [&](int64_t t) {
      float* yt = y + t * D;
      std::fill(yt, yt + D, 0.0f);
      for (int64_t j = 0; j < k_; ++j) {
        const float row = row_of[t * k_ + j];
        if (row < 0) continue;
        const float gate = probs[t * E + static_cast<int64_t>(route[t * k_ + j])];
        const float* o = out + static_cast<int64_t>(row) * D;
        for (int64_t c = 0; c < D; ++c) yt[c] += gate * o[c];
      }
    });

    if (!training || !ctx.step.report) return;
    if (aux_weight_ > 0) ctx.step.report->aux_loss(aux_loss(probs, route, N));
    for (int64_t e = 0; e < E; ++e) ctx.step.report->metric("expert_tokens." + std::to_string(e), static_cast<double>(served[e]));
    ctx.step.report->metric("dropped_tokens", static_cast<double>(dropped));
  }

  // Inference serves every token (no capacity), so the layer is Σ_e gate_e · E_e(x) with gate_e =
  // p_e for the k most probable experts (TopK puts the lower index first among equals, as the
  // router does) and 0 for the others. Every expert runs on every token, one batched MatMul over
  // the expert axis, and the gates zero the unchosen ones.
  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const std::string& x = l.inputs[0];
    const std::string probs = g.op("Softmax", {g.op("MatMul", {x, l.params[0]})}, {{"axis", int64_t{-1}}});
    const std::string topk_values = g.fresh("topk_values"), topk = g.fresh("topk_experts");
    g.add_node("TopK", {probs, g.ints({k_})}, {topk_values, topk}, {{"axis", int64_t{-1}}, {"largest", int64_t{1}}, {"sorted", int64_t{1}}});
    const float off_on[2] = {0.0f, 1.0f};
    const std::string one_hot = g.op("OneHot", {topk, g.ints0(experts_), g.add_float_constant("off_on", {2}, off_on)}, {{"axis", int64_t{-1}}});
    const std::string chosen = g.op("ReduceMax", {one_hot}, {{"axes", std::vector<int64_t>{-2}}, {"keepdims", int64_t{0}}});
    const std::string gates = g.op("Mul", {probs, chosen});                                   // [..., E]
    const std::string rows = g.op("Unsqueeze", {x, g.ints({-2, -3})});                        // [..., 1, 1, D]
    const std::string hidden = g.op("Relu", {g.op("MatMul", {rows, l.params[1]})});           // [..., E, 1, H]
    const std::string experts = g.op("Squeeze", {g.op("MatMul", {hidden, l.params[2]}), g.ints({-2})});  // [..., E, D]
    const std::string weighted = g.op("Mul", {experts, g.op("Unsqueeze", {gates, g.ints({-1})})});
    g.add_node("ReduceSum", {weighted, g.ints({-2})}, {l.outputs[0]}, {{"keepdims", int64_t{0}}});
    return true;
  }

  void backward(const BackwardContext& ctx) const override {
    const float* x = ctx.inputs[0].data();
    const float* dy = ctx.output_grads[0].data();
    const int64_t D = ctx.inputs[0].dim(-1), N = ctx.inputs[0].numel() / D, E = experts_, H = hidden_;
    const float* probs = ctx.saved[0].data();
    const float* route = ctx.saved[1].data();
    const float* row_of = ctx.saved[2].data();
    const float* first_row = ctx.saved[3].data();
    const float* rows_of = ctx.saved[3].data() + E;
    const float *xs = ctx.saved[4].data(), *act = ctx.saved[5].data(), *out = ctx.saved[6].data();
    float *dlogits = ctx.workspace[0].data(), *dout = ctx.workspace[1].data(), *dact = ctx.workspace[2].data(),
          *dxs = ctx.workspace[3].data();

    // Per token: the gradients of its served rows' outputs (gate · dy) and of its probabilities —
    // from the gates, and (training) from the load-balancing loss — then through the softmax.
    std::vector<float> balance(E, 0.0f);  // ∂A/∂p_e(x_t), the same for every token
    if (ctx.step.training && aux_weight_ > 0) {
      std::vector<int64_t> firsts(E, 0);
      for (int64_t t = 0; t < N; ++t) ++firsts[static_cast<int64_t>(route[t * k_])];
      for (int64_t e = 0; e < E; ++e)
        balance[e] = static_cast<float>(ctx.step.objective_scale * aux_weight_ * static_cast<double>(E) *
                                        (static_cast<double>(firsts[e]) / static_cast<double>(N)) / static_cast<double>(N));
    }
    tbb::parallel_for(int64_t{0}, N, [&](int64_t t) {
      const float* p = probs + t * E;
      float* dl = dlogits + t * E;
      for (int64_t e = 0; e < E; ++e) dl[e] = balance[e];
      for (int64_t j = 0; j < k_; ++j) {
        const float row = row_of[t * k_ + j];
        if (row < 0) continue;
        const int64_t e = static_cast<int64_t>(route[t * k_ + j]);
        const float* o = out + static_cast<int64_t>(row) * D;
        float* d = dout + static_cast<int64_t>(row) * D;
        float dgate = 0;
        for (int64_t c = 0; c < D; ++c) {
          dgate += dy[t * D + c] * o[c];
          d[c] = p[e] * dy[t * D + c];
        }
        dl[e] += dgate;
      }
      float dot = 0;
      for (int64_t e = 0; e < E; ++e) dot += p[e] * dl[e];
      for (int64_t e = 0; e < E; ++e) dl[e] = p[e] * (dl[e] - dot);
    });

    // Experts: every parameter gradient assigned, zero for an expert that served nothing.
    float *dw1 = ctx.param_grads[1].data(), *dw2 = ctx.param_grads[2].data();
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = static_cast<int64_t>(first_row[e]), n = static_cast<int64_t>(rows_of[e]);
      if (n == 0) {
        std::fill(dw1 + e * D * H, dw1 + (e + 1) * D * H, 0.0f);
        std::fill(dw2 + e * H * D, dw2 + (e + 1) * H * D, 0.0f);
        continue;
      }
      const float* a = act + r0 * H;
      float* da = dact + r0 * H;
      gemm(Trans::Yes, Trans::No, H, D, n, 1.0f, a, H, dout + r0 * D, D, 0.0f, dw2 + e * H * D, D);
      gemm(Trans::No, Trans::Yes, n, H, D, 1.0f, dout + r0 * D, D, ctx.params[2].data() + e * H * D, D, 0.0f, da, H);
      for (int64_t i = 0; i < n * H; ++i) da[i] = a[i] > 0.0f ? da[i] : 0.0f;
      gemm(Trans::Yes, Trans::No, D, H, n, 1.0f, xs + r0 * D, D, da, H, 0.0f, dw1 + e * D * H, H);
      gemm(Trans::No, Trans::Yes, n, D, H, 1.0f, da, H, ctx.params[1].data() + e * D * H, H, 0.0f, dxs + r0 * D, D);
    }
    gemm(Trans::Yes, Trans::No, D, E, N, 1.0f, x, D, dlogits, E, 0.0f, ctx.param_grads[0].data(), E);

    if (ctx.input_grads.empty() || !ctx.input_grads[0].present()) return;
    float* dx = ctx.input_grads[0].data();
    gemm(Trans::No, Trans::Yes, N, D, E, 1.0f, dlogits, E, ctx.params[0].data(), E, 1.0f, dx, D);
    tbb::parallel_for(int64_t{0}, N, [&](int64_t t) {
      for (int64_t j = 0; j < k_; ++j) {
        const float row = row_of[t * k_ + j];
        if (row < 0) continue;
        const float* d = dxs + static_cast<int64_t>(row) * D;
        for (int64_t c = 0; c < D; ++c) dx[t * D + c] += d[c];
      }
    });
  }

 private:
  int64_t capacity_of(int64_t tokens) const {
    return static_cast<int64_t>(std::ceil(capacity_factor_ * static_cast<double>(k_ * tokens) / static_cast<double>(experts_)));
  }

  // A = weight · E · Σ_e f_e · P_e (see the top of this file).
  double aux_loss(const float* probs, const float* route, int64_t N) const {
    const int64_t E = experts_;
    std::vector<double> firsts(E, 0.0), mean_p(E, 0.0);
    for (int64_t t = 0; t < N; ++t) {
      firsts[static_cast<int64_t>(route[t * k_])] += 1.0;
      for (int64_t e = 0; e < E; ++e) mean_p[e] += probs[t * E + e];
    }
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += (firsts[e] / static_cast<double>(N)) * (mean_p[e] / static_cast<double>(N));
    return aux_weight_ * static_cast<double>(E) * sum;
  }

  int64_t hidden_, experts_, k_;
  double capacity_factor_, aux_weight_;
};

GradCheckExample moe_example(const char* name, Attrs attrs, Shape shape, bool training) {
  GradCheckExample e;
  e.name = name;
  e.attrs = std::move(attrs);
  e.inputs = {CheckInput::real(std::move(shape))};
  e.training = training;
  return e;
}

}  // namespace

void register_moe(PluginRegistrar& registrar) {
  NodeSchema s;
  s.name = "ffn.moe";
  s.doc = "mixture of feed-forward experts with top-k routing, capacity and a load-balancing loss (Shazeer et al. 2017; "
          "Fedus et al. 2021)";
  s.inputs = {{"x", "activations [..., D]"}};
  s.outputs = {{"y", "activations [..., D]"}};
  s.attrs = {{"hidden", AttrType::Int, AttrValue{int64_t{2048}}, "width of each expert's hidden layer"},
             {"experts", AttrType::Int, AttrValue{int64_t{4}}, "number of experts E"},
             {"k", AttrType::Int, AttrValue{int64_t{1}}, "experts per token (1: Switch routing)"},
             {"capacity_factor", AttrType::Float, AttrValue{1.25},
              "each expert serves at most ceil(capacity_factor * k * tokens / E) tokens in training; the rest are dropped"},
             {"aux_loss_weight", AttrType::Float, AttrValue{0.01},
              "weight of the load-balancing loss E * sum_e f_e P_e added to the training loss (0: none)"}};
  // Routing is discrete: these draws keep every token's top-k away from ties under the check's
  // perturbations, and the small capacity factors make the capacity drop choices.
  s.examples = {
      moe_example("switch_train", {{"hidden", AttrValue{int64_t{5}}}, {"experts", AttrValue{int64_t{3}}}}, {2, 3, 4}, true),
      moe_example("top2_dropping",
                  {{"hidden", AttrValue{int64_t{4}}}, {"experts", AttrValue{int64_t{3}}}, {"k", AttrValue{int64_t{2}}},
                   {"capacity_factor", AttrValue{0.6}}},
                  {2, 3, 4}, true),
      moe_example("balance_loss_heavy",
                  {{"hidden", AttrValue{int64_t{3}}}, {"experts", AttrValue{int64_t{4}}}, {"aux_loss_weight", AttrValue{0.5}},
                   {"capacity_factor", AttrValue{0.5}}},
                  {6, 4}, true),
      moe_example("eval_top2", {{"hidden", AttrValue{int64_t{4}}}, {"experts", AttrValue{int64_t{3}}}, {"k", AttrValue{int64_t{2}}}},
                  {2, 3, 4}, false),
  };
  registrar.add<MixtureOfExperts>(std::move(s));
}

}  // namespace attnlab
