// tests/components/attention_test.cpp — attention types against a naive reference written here,
// fused variants against their decompositions, incremental decoding against the full forward pass,
// and every rejected setting with its message.
#include "harness.h"

#include "check/gradcheck.h"

#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <deque>

namespace attnlab::components_test {
namespace {

// ---- A naive reference, written from the formulas in docs/components.md -------------------------

struct RefSpec {
  bool additive = false;
  int64_t heads = 1, kv_heads = 1, d_k = 1, d_v = 1;
  bool causal = false, bias = false;
  int64_t window = 0;  // 0: none
  bool centred = false;
  std::string posenc = "posenc.none";
  std::string qk_norm = "none";
  bool shared_qk = false;
  std::string score_scale = "rsqrt_d_k";
};

RefSpec spec_of(const std::string& type, const Attrs& a) {
  RefSpec s;
  s.additive = type == "attention.additive";
  s.heads = a.get_int("heads");
  s.kv_heads = a.has("kv_heads") ? a.get_int("kv_heads") : s.heads;
  s.d_k = a.get_int("d_k");
  s.d_v = a.get_int("d_v");
  s.causal = a.get_bool("causal");
  s.bias = a.get_bool("bias");
  if (a.has("window")) {
    s.window = a.get_int("window");
    s.centred = a.get_string("mode") == "centred";
  }
  s.posenc = a.get_string("posenc");
  s.qk_norm = a.get_string("qk_norm");
  s.shared_qk = a.get_bool("shared_qk");
  s.score_scale = a.get_string("score_scale");
  return s;
}

// ALiBi slopes as tabulated by Press et al. (2022) for these head counts.
std::vector<double> ref_slopes(int64_t heads) {
  auto p = [](double e) { return std::pow(2.0, -e); };
  switch (heads) {
    case 1: return {p(8)};
    case 2: return {p(4), p(8)};
    case 3: return {p(4), p(8), p(2)};
    case 4: return {p(2), p(4), p(6), p(8)};
    case 6: return {p(2), p(4), p(6), p(8), p(1), p(3)};
    case 8: return {p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(8)};
  }
  throw std::logic_error("no reference slopes for this head count");
}

// T5's bucket of relative position n = query − key with its defaults (32 buckets, bidirectional,
// max_distance 128), written out from the paper's description: 16 buckets per direction (keys after
// the query in 16..31), distances 0..7 exact, then log-spaced buckets 8..15 up to 128.
int64_t ref_t5_bucket(int64_t n) {
  const int64_t base = n < 0 ? 16 : 0;
  const double a = std::abs(static_cast<double>(n));
  if (a < 8) return base + static_cast<int64_t>(a);
  return base + std::min<int64_t>(15, 8 + static_cast<int64_t>(std::floor(std::log(a / 8.0) / std::log(16.0) * 8.0)));
}

TEST(PositionalSchemes, T5BucketsByHand) {
  EXPECT_EQ(ref_t5_bucket(0), 0);
  EXPECT_EQ(ref_t5_bucket(1), 1);
  EXPECT_EQ(ref_t5_bucket(-1), 17);
  EXPECT_EQ(ref_t5_bucket(7), 7);
  EXPECT_EQ(ref_t5_bucket(8), 8);
  EXPECT_EQ(ref_t5_bucket(16), 10);   // 8 + floor(log 2 / log 16 · 8) = 8 + 2
  EXPECT_EQ(ref_t5_bucket(127), 15);
  EXPECT_EQ(ref_t5_bucket(-1000), 31);
}

// Dense [B, Tq, Tk] mask from the forms the attention contract accepts.
std::vector<float> dense_mask(const Tensor* mask, int64_t B, int64_t Tq, int64_t Tk) {
  std::vector<float> out(B * Tq * Tk, 1.0f);
  if (!mask) return out;
  const Shape& s = mask->shape();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t j = 0; j < Tk; ++j) {
        int64_t idx;
        if (s.size() == 2) idx = s[0] == B ? b * Tk + j : (s[0] == Tq ? i * Tk + j : j);
        else idx = (s[0] == 1 ? 0 : b) * s[1] * Tk + (s[1] == 1 ? 0 : i) * Tk + j;
        out[(b * Tq + i) * Tk + j] = mask->data()[idx];
      }
  return out;
}

// y for query [B,Tq,D], memory [B,Tk,D]; query row i sits at position query_offset + i.
std::vector<double> reference(const RefSpec& r, const Driven& d, const Tensor& query, const Tensor& memory,
                              const Tensor* mask, int64_t query_offset = 0) {
  const int64_t B = query.shape()[0], Tq = query.shape()[1], D = query.shape()[2], Tk = memory.shape()[1];
  const int64_t H = r.heads, G = r.kv_heads, dk = r.d_k, dv = r.d_v;
  const float* wq = d.param("w_q").data();
  const float* wk = r.shared_qk ? wq : d.param("w_k").data();  // shared_qk: keys use the query projection
  const float* wv = d.param("w_v").data();
  const float* wo = d.param("w_o").data();
  const std::vector<float> m = dense_mask(mask, B, Tq, Tk);
  auto proj = [&](const float* x, const float* w, int64_t cols, int64_t col, const char* bias_name) {
    double s = r.bias ? d.param(bias_name).data()[col] : 0.0;
    for (int64_t k = 0; k < D; ++k) s += static_cast<double>(x[k]) * w[k * cols + col];
    return s;
  };
  auto rotate = [&](std::vector<double>& v, int64_t pos) {
    if (r.posenc != "posenc.rotary") return;
    for (int64_t t = 0; t < dk / 2; ++t) {
      const double angle = pos * std::pow(10000.0, -2.0 * t / dk);
      const double a = v[2 * t], b = v[2 * t + 1];
      v[2 * t] = a * std::cos(angle) - b * std::sin(angle);
      v[2 * t + 1] = a * std::sin(angle) + b * std::cos(angle);
    }
  };
  // qk-norm over one head's vector, in double.
  auto qk_normalise = [&](std::vector<double>& v, bool keys) {
    if (r.qk_norm == "none") return;
    const bool centre = r.qk_norm == "layer";
    double mean = 0.0, var = 0.0;
    if (centre) {
      for (double e : v) mean += e;
      mean /= dk;
    }
    for (double e : v) var += (e - mean) * (e - mean);
    var /= dk;
    const float* gain = d.param(keys ? "k_gain" : "q_gain").data();
    for (int64_t c = 0; c < dk; ++c) {
      v[c] = (v[c] - mean) / std::sqrt(var + 1e-6) * gain[c];
      if (centre) v[c] += d.param(keys ? "k_beta" : "q_beta").data()[c];
    }
  };
  std::vector<double> y(B * Tq * D, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> heads_out(Tq * H * dv, 0.0);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      std::vector<std::vector<double>> q(Tq, std::vector<double>(dk)), k(Tk, std::vector<double>(dk)),
          v(Tk, std::vector<double>(dv));
      for (int64_t i = 0; i < Tq; ++i) {
        for (int64_t c = 0; c < dk; ++c) q[i][c] = proj(query.data() + (b * Tq + i) * D, wq, H * dk, h * dk + c, "b_q");
        qk_normalise(q[i], false);
        rotate(q[i], query_offset + i);
      }
      for (int64_t j = 0; j < Tk; ++j) {
        for (int64_t c = 0; c < dk; ++c)
          k[j][c] = proj(memory.data() + (b * Tk + j) * D, wk, G * dk, g * dk + c, r.shared_qk ? "b_q" : "b_k");
        qk_normalise(k[j], true);
        rotate(k[j], j);
        for (int64_t c = 0; c < dv; ++c) v[j][c] = proj(memory.data() + (b * Tk + j) * D, wv, G * dv, g * dv + c, "b_v");
      }
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t qpos = query_offset + i;
        std::vector<double> score(Tk);
        std::vector<bool> allowed(Tk);
        for (int64_t j = 0; j < Tk; ++j) {
          double s = 0.0;
          if (r.additive) {
            for (int64_t c = 0; c < dk; ++c) s += d.param("v").data()[h * dk + c] * std::tanh(q[i][c] + k[j][c]);
          } else {
            for (int64_t c = 0; c < dk; ++c) s += q[i][c] * k[j][c];
            if (r.score_scale == "rsqrt_d_k") s /= std::sqrt(static_cast<double>(dk));
            if (r.score_scale == "inv_d_k") s /= static_cast<double>(dk);
          }
          if (r.posenc == "posenc.alibi") s -= ref_slopes(H)[h] * std::abs(static_cast<double>(qpos - j));
          if (r.posenc == "posenc.t5") s += d.param("posenc.bias").data()[ref_t5_bucket(qpos - j) * H + h];
          if (r.posenc == "posenc.shaw") {  // e_ij = q_i (k_j + a_K[clip(j − i)])ᵀ / √d_k, clip 16
            const float* a_k = d.param("posenc.keys").data() + (std::clamp<int64_t>(j - qpos, -16, 16) + 16) * dk;
            double e = 0.0;
            for (int64_t c = 0; c < dk; ++c) e += q[i][c] * a_k[c];
            // scaled as the dot product is (score_scale)
            s += r.score_scale == "rsqrt_d_k" ? e / std::sqrt(static_cast<double>(dk))
                 : r.score_scale == "inv_d_k" ? e / static_cast<double>(dk)
                                              : e;
          }
          score[j] = s;
          bool ok = m[(b * Tq + i) * Tk + j] != 0.0f;
          if (r.causal && j > qpos) ok = false;
          if (r.window > 0) {
            if (r.centred) ok = ok && j >= qpos - r.window / 2 && j <= qpos + (r.window - 1) / 2;
            else ok = ok && j <= qpos && j > qpos - r.window;
          }
          allowed[j] = ok;
        }
        double mx = -1e300, sum = 0.0;
        for (int64_t j = 0; j < Tk; ++j)
          if (allowed[j]) mx = std::max(mx, score[j]);
        for (int64_t j = 0; j < Tk; ++j) sum += allowed[j] ? std::exp(score[j] - mx) : 0.0;
        for (int64_t j = 0; j < Tk; ++j) {
          const double p = allowed[j] ? std::exp(score[j] - mx) / sum : 0.0;
          for (int64_t c = 0; c < dv; ++c) heads_out[i * H * dv + h * dv + c] += p * v[j][c];
          if (r.posenc == "posenc.shaw") {  // z_i = Σ_j α_ij (v_j + a_V[clip(j − i)])
            const float* a_v = d.param("posenc.values").data() + (std::clamp<int64_t>(j - qpos, -16, 16) + 16) * dv;
            for (int64_t c = 0; c < dv; ++c) heads_out[i * H * dv + h * dv + c] += p * a_v[c];
          }
        }
      }
    }
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t o = 0; o < D; ++o) {
        double s = r.bias ? d.param("b_o").data()[o] : 0.0;
        for (int64_t c = 0; c < H * dv; ++c) s += heads_out[i * H * dv + c] * wo[c * D + o];
        y[(b * Tq + i) * D + o] = s;
      }
  }
  return y;
}

void expect_close(const float* got, const std::vector<double>& want, double tol, const std::string& what) {
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << " element " << i;
}

Attrs resolved(const std::string& type, Attrs a) { return component_registry().resolve_attrs(type, a); }

// Every schema example of every attention type, forward against the reference.
TEST(Attention, EveryExampleMatchesNaiveReference) {
  Registry& registry = component_registry();
  int checked = 0;
  for (const std::string& type : registry.type_names()) {
    if (type.rfind("attention.", 0) != 0) continue;
    for (const char* posenc : {"", "posenc.rotary", "posenc.alibi", "posenc.t5", "posenc.shaw"})
    for (auto ex : registry.schema(type).examples) {
      ex.attrs.set("posenc", std::string(posenc));
      try {
        registry.create(type, ex.attrs);
      } catch (const RegistryError&) {
        continue;  // the scheme refuses this configuration (odd d_k, additive scores)
      }
      SCOPED_TRACE(type + " / " + ex.name + " / posenc '" + posenc + "'");
      Tensor query = random_tensor(ex.inputs[0].shape), memory = random_tensor(ex.inputs[1].shape);
      Tensor mask;
      std::vector<TensorView> in = {query.view(), memory.view()};
      if (ex.inputs.size() > 2) {
        mask = Tensor(ex.inputs[2].shape);
        std::copy(ex.inputs[2].values.begin(), ex.inputs[2].values.end(), mask.data());
        in.push_back(mask.view());
      }
      const Attrs attrs = resolved(type, ex.attrs);
      Driven d(type, attrs, in);
      d.forward();
      expect_close(d.outputs[0].data(), reference(spec_of(type, attrs), d, query, memory, ex.inputs.size() > 2 ? &mask : nullptr),
                   1e-4, "y");
      ++checked;
    }
  }
  EXPECT_GE(checked, 90);
}

TEST(Attention, ReferenceAtLargerSizesWithEightHeads) {
  for (const char* posenc : {"posenc.none", "posenc.alibi", "posenc.rotary", "posenc.t5", "posenc.shaw"}) {
    SCOPED_TRACE(posenc);
    const Attrs attrs = resolved("attention.scaled_dot", {{"heads", int64_t{8}}, {"d_k", int64_t{8}}, {"d_v", int64_t{4}},
                                                          {"causal", true}, {"bias", true}, {"posenc", std::string(posenc)}});
    Tensor x = random_tensor({2, 40, 32});  // distances up to 39: T5's exact and logarithmic buckets
    Driven d("attention.scaled_dot", attrs, {x.view(), x.view()});
    d.forward();
    expect_close(d.outputs[0].data(), reference(spec_of("attention.scaled_dot", attrs), d, x, x, nullptr), 1e-4, "y");
  }
}

// ---- Fused variants against their decompositions ------------------------------------------------

void expect_same_output(const std::string& type_a, const Attrs& a, const std::string& type_b, const Attrs& b,
                        const Tensor& query, const Tensor& memory, const Tensor* mask = nullptr) {
  std::vector<TensorView> in = {query.view(), memory.view()};
  if (mask) in.push_back(mask->view());
  Driven da(type_a, resolved(type_a, a), in), db(type_b, resolved(type_b, b), in);
  db.copy_params_from(da);
  da.forward();
  db.forward();
  EXPECT_LT(max_abs_diff(da.outputs[0].data(), db.outputs[0].data(), da.outputs[0].numel()), 1e-5);
}

TEST(Attention, GroupedQueryWithAllKvHeadsEqualsScaledDot) {
  Tensor q = random_tensor({2, 5, 12}), m = random_tensor({2, 7, 12});
  Tensor mask({2, 7}, 1.0f);
  mask.data()[7 + 6] = 0.0f;
  for (const char* posenc : {"posenc.none", "posenc.rotary", "posenc.alibi"})
    expect_same_output("attention.scaled_dot",
                       {{"heads", int64_t{4}}, {"d_k", int64_t{4}}, {"d_v", int64_t{3}}, {"bias", true},
                        {"posenc", std::string(posenc)}},
                       "attention.grouped_query",
                       {{"heads", int64_t{4}}, {"kv_heads", int64_t{4}}, {"d_k", int64_t{4}}, {"d_v", int64_t{3}},
                        {"bias", true}, {"posenc", std::string(posenc)}},
                       q, m, &mask);
}

TEST(Attention, GroupedQueryEqualsScaledDotWithRepeatedKeyValueWeights) {
  // kv_heads = 2 of 4 heads: scaled_dot whose head h uses the key/value weights of group h / 2.
  const int64_t D = 6, dk = 3, dv = 2;
  Tensor x = random_tensor({2, 4, D});
  Driven gqa("attention.grouped_query",
             resolved("attention.grouped_query", {{"heads", int64_t{4}}, {"kv_heads", int64_t{2}}, {"d_k", dk}, {"d_v", dv}}),
             {x.view(), x.view()});
  Driven full("attention.scaled_dot", resolved("attention.scaled_dot", {{"heads", int64_t{4}}, {"d_k", dk}, {"d_v", dv}}),
              {x.view(), x.view()});
  full.copy_params_from(gqa);  // w_q, w_o match; w_k, w_v differ in shape and are rebuilt below
  auto repeat = [&](const Tensor& grouped, const std::string& name, int64_t size) {
    Tensor out({D, 4 * size});
    for (int64_t r = 0; r < D; ++r)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t c = 0; c < size; ++c) out.data()[r * 4 * size + h * size + c] = grouped.data()[r * 2 * size + (h / 2) * size + c];
    for (size_t i = 0; i < full.shapes.params.size(); ++i)
      if (full.shapes.params[i].name == name) full.params[i] = out;
  };
  repeat(gqa.param("w_k"), "w_k", dk);
  repeat(gqa.param("w_v"), "w_v", dv);
  gqa.forward();
  full.forward();
  EXPECT_LT(max_abs_diff(gqa.outputs[0].data(), full.outputs[0].data(), gqa.outputs[0].numel()), 1e-5);
}

TEST(Attention, LocalWithWideWindowEqualsScaledDot) {
  const int64_t T = 6;
  Tensor x = random_tensor({2, T, 8});
  const Attrs base = {{"heads", int64_t{2}}, {"d_k", int64_t{4}}, {"d_v", int64_t{4}}};
  auto with = [](Attrs a, std::initializer_list<std::pair<const std::string, AttrValue>> more) {
    for (const auto& [k, v] : more) a.set(k, v);
    return a;
  };
  // Causal mode: a window of at least T keys is plain causal attention (with or without causal:true).
  for (int64_t w : {T, T + 3}) {
    expect_same_output("attention.local", with(base, {{"window", w}, {"mode", std::string("causal")}}),
                       "attention.scaled_dot", with(base, {{"causal", true}}), x, x);
    expect_same_output("attention.local", with(base, {{"window", w}, {"mode", std::string("causal")}, {"causal", true}}),
                       "attention.scaled_dot", with(base, {{"causal", true}}), x, x);
  }
  // Centred mode: a window reaching T-1 positions both ways is full attention; with causal:true, causal.
  expect_same_output("attention.local", with(base, {{"window", 2 * T}, {"mode", std::string("centred")}}),
                     "attention.scaled_dot", base, x, x);
  expect_same_output("attention.local", with(base, {{"window", 2 * T}, {"mode", std::string("centred")}, {"causal", true}}),
                     "attention.scaled_dot", with(base, {{"causal", true}}), x, x);
}

TEST(Attention, LocalWindowOneAttendsOnlyToItself) {
  // With one key per query the attention distribution is one-hot: y = (x w_v) w_o per position.
  Tensor x = random_tensor({1, 4, 4});
  for (const char* mode : {"causal", "centred"}) {
    Driven d("attention.local",
             resolved("attention.local", {{"heads", int64_t{1}}, {"d_k", int64_t{2}}, {"d_v", int64_t{2}}, {"window", int64_t{1}},
                                          {"mode", std::string(mode)}}),
             {x.view(), x.view()});
    d.forward();
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t o = 0; o < 4; ++o) {
        double want = 0.0;
        for (int64_t c = 0; c < 2; ++c) {
          double v = 0.0;
          for (int64_t k = 0; k < 4; ++k) v += x.data()[i * 4 + k] * d.param("w_v").data()[k * 2 + c];
          want += v * d.param("w_o").data()[c * 4 + o];
        }
        EXPECT_NEAR(d.outputs[0].data()[i * 4 + o], want, 1e-5);
      }
  }
}

TEST(Attention, FullyMaskedQueryGivesOutputBias) {
  Tensor q = random_tensor({1, 2, 4}), m = random_tensor({1, 3, 4});
  Tensor mask({1, 2, 3}, {1, 0, 1, 0, 0, 0});  // the second query sees no key
  Driven d("attention.scaled_dot",
           resolved("attention.scaled_dot", {{"heads", int64_t{2}}, {"d_k", int64_t{2}}, {"d_v", int64_t{2}}, {"bias", true}}),
           {q.view(), m.view(), mask.view()});
  d.forward();
  for (int64_t o = 0; o < 4; ++o) EXPECT_FLOAT_EQ(d.outputs[0].data()[4 + o], d.param("b_o").data()[o]);
}

// ---- Incremental decoding ------------------------------------------------------------------------

struct DecodeCase {
  std::string type;
  Attrs attrs;
};

// Every loaded type that keeps a decode cache (attention), without a positional scheme and with
// each loaded scheme that acts inside attention and accepts it: from the registry, not a list.
std::vector<DecodeCase> decode_cases() {
  Registry& registry = component_registry();
  std::vector<std::string> schemes = {""};
  for (const std::string& s : gradcheck::acting_positional_schemes(registry)) schemes.push_back(s);
  std::vector<DecodeCase> out;
  for (const std::string& type : registry.type_names()) {
    const NodeSchema& schema = registry.schema(type);
    if (!schema.find_attr("heads") || !schema.find_attr("posenc")) continue;
    Attrs base = {{"heads", int64_t{4}}, {"d_k", int64_t{4}}, {"d_v", int64_t{3}}, {"bias", true}};
    if (schema.find_attr("kv_heads")) base.set("kv_heads", int64_t{2});
    if (schema.find_attr("window")) base.set("window", int64_t{3});
    if (registry.create(type, base)->cache_shapes(std::vector<Shape>{{2, 1, 8}, {2, 1, 8}}, 6).empty()) continue;
    for (const std::string& scheme : schemes)
      for (const char* qk_norm : {"none", "layer"}) {
        Attrs attrs = base;
        attrs.set("posenc", scheme);
        attrs.set("qk_norm", std::string(qk_norm));
        try {
          registry.create(type, attrs);
        } catch (const RegistryError&) {
          continue;  // the scheme refuses this type (a rotation and additive scores)
        }
        out.push_back({type, attrs});
      }
  }
  EXPECT_GE(out.size(), 20u) << "fewer decode cases than the built-in attention types and schemes give";
  return out;
}

std::string describe(const DecodeCase& c) {
  std::string s = c.type;
  for (const auto& [k, v] : c.attrs.values()) s += " " + k + "=" + to_string(v);
  return s;
}

std::vector<Tensor> allocate(const std::vector<Shape>& shapes) {
  std::vector<Tensor> out;
  for (const auto& s : shapes) out.emplace_back(s, std::nanf(""));
  return out;
}

// DecodeState::stepwise for self-attention (query, keys and mask depend on the target) and for
// cross-attention (only the query does).
constexpr uint8_t kSelfFlags[] = {1, 1, 1}, kCrossFlags[] = {1, 0, 0};
constexpr std::span<const uint8_t> kSelf{kSelfFlags}, kCross{kCrossFlags};

// Position p of a one-position decode step's output equals position p of the full forward pass.
void expect_step_equals_full(const Driven& step, const Driven& full, int64_t B, int64_t T, int64_t D, int64_t p) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < D; ++o)
      ASSERT_NEAR(step.outputs[0].data()[b * D + o], full.outputs[0].data()[(b * T + p) * D + o], 1e-5)
          << "position " << p << " batch " << b;
}

TEST(AttentionDecode, SelfAttentionStepByStepEqualsCausalForward) {
  const int64_t B = 2, T = 6, D = 8;
  for (const auto& c : decode_cases()) {
    SCOPED_TRACE(describe(c));
    Tensor x = random_tensor({B, T, D});
    Attrs causal = c.attrs;
    causal.set("causal", true);
    Driven full(c.type, resolved(c.type, causal), {x.view(), x.view()});
    full.forward();

    Tensor step_x({B, 1, D});
    Driven step(c.type, resolved(c.type, causal), {step_x.view(), step_x.view()});
    step.copy_params_from(full);
    const std::vector<Shape> step_shapes = {{B, 1, D}, {B, 1, D}};
    std::vector<Tensor> cache = allocate(step.node->cache_shapes(step_shapes, T));
    const std::vector<TensorView> cache_views = views(cache);
    for (int64_t p = 0; p < T; ++p) {
      for (int64_t b = 0; b < B; ++b) std::copy_n(x.data() + (b * T + p) * D, D, step_x.data() + b * D);
      DecodeState state{p, cache_views, kSelf};
      step.forward(StepInfo{false, 0, &state});
      expect_step_equals_full(step, full, B, T, D, p);
    }
  }
}

TEST(AttentionDecode, SelfAttentionInChunksOfTwoPositionsEqualsCausalForward) {
  const int64_t B = 2, T = 6, D = 8, chunk = 2;
  for (const auto& c : decode_cases()) {
    SCOPED_TRACE(describe(c));
    Tensor x = random_tensor({B, T, D});
    Attrs causal = c.attrs;
    causal.set("causal", true);
    Driven full(c.type, resolved(c.type, causal), {x.view(), x.view()});
    full.forward();

    Tensor step_x({B, chunk, D});
    Driven step(c.type, resolved(c.type, causal), {step_x.view(), step_x.view()});
    step.copy_params_from(full);
    std::vector<Tensor> cache = allocate(step.node->cache_shapes(std::vector<Shape>{{B, chunk, D}, {B, chunk, D}}, T));
    const std::vector<TensorView> cache_views = views(cache);
    for (int64_t p = 0; p < T; p += chunk) {
      for (int64_t b = 0; b < B; ++b) std::copy_n(x.data() + (b * T + p) * D, chunk * D, step_x.data() + b * chunk * D);
      DecodeState state{p, cache_views, kSelf};
      step.forward(StepInfo{false, 0, &state});
      for (int64_t b = 0; b < B; ++b)
        for (int64_t k = 0; k < chunk * D; ++k)
          ASSERT_NEAR(step.outputs[0].data()[b * chunk * D + k], full.outputs[0].data()[(b * T + p) * D + k], 1e-5)
              << "position " << p + k / D << " batch " << b;
    }
  }
}

TEST(AttentionDecode, CrossAttentionComputesMemoryOnceAndEqualsFullForward) {
  const int64_t B = 2, T = 5, S = 4, D = 8;
  for (const auto& c : decode_cases()) {
    SCOPED_TRACE(describe(c));
    Tensor q = random_tensor({B, T, D}), memory = random_tensor({B, S, D});
    Tensor mask({B, S}, 1.0f);
    mask.data()[S + S - 1] = 0.0f;  // batch 1: the last source position is padding
    Driven full(c.type, resolved(c.type, c.attrs), {q.view(), memory.view(), mask.view()});
    full.forward();

    Tensor step_q({B, 1, D});
    Tensor step_memory = memory;
    Driven step(c.type, resolved(c.type, c.attrs), {step_q.view(), step_memory.view(), mask.view()});
    step.copy_params_from(full);
    std::vector<Tensor> cache = allocate(step.node->cache_shapes(std::vector<Shape>{{B, 1, D}, {B, S, D}, {B, S}}, T));
    const std::vector<TensorView> cache_views = views(cache);
    for (int64_t p = 0; p < T; ++p) {
      for (int64_t b = 0; b < B; ++b) std::copy_n(q.data() + (b * T + p) * D, D, step_q.data() + b * D);
      DecodeState state{p, cache_views, kCross};
      step.forward(StepInfo{false, 0, &state});
      // After position 0 the memory must come from the cache: poison it.
      step_memory.view().fill(std::nanf(""));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t o = 0; o < D; ++o)
          ASSERT_NEAR(step.outputs[0].data()[b * D + o], full.outputs[0].data()[(b * T + p) * D + o], 1e-5)
              << "position " << p << " batch " << b;
    }
  }
}

TEST(AttentionDecode, CentredLocalSelfAttentionCannotDecode) {
  Tensor x = random_tensor({1, 1, 4});
  Driven d("attention.local",
           resolved("attention.local", {{"heads", int64_t{1}}, {"d_k", int64_t{2}}, {"d_v", int64_t{2}}, {"window", int64_t{3}},
                                        {"mode", std::string("centred")}}),
           {x.view(), x.view()});
  std::vector<Tensor> cache = allocate(d.node->cache_shapes(std::vector<Shape>{{1, 1, 4}, {1, 1, 4}}, 4));
  const std::vector<TensorView> cache_views = views(cache);
  DecodeState state{0, cache_views, kSelf};
  try {
    d.forward(StepInfo{false, 0, &state});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("mode \"centred\" cannot decode incrementally"), std::string::npos) << e.what();
  }
}

void expect_decode_error(const std::string& type, Driven& d, std::vector<Tensor>& cache, int64_t position,
                         const std::string& message, std::span<const uint8_t> stepwise = kSelf) {
  const std::vector<TensorView> cache_views = views(cache);
  DecodeState state{position, cache_views, stepwise};
  try {
    d.forward(StepInfo{false, 0, &state});
    FAIL() << "expected \"" << message << "\"";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), type + ": " + message);
  }
}

TEST(AttentionDecode, MisuseOfTheCacheIsReported) {
  const Attrs attrs = resolved("attention.scaled_dot",
                               {{"heads", int64_t{1}}, {"d_k", int64_t{2}}, {"d_v", int64_t{2}}, {"causal", true}});
  Tensor x = random_tensor({1, 1, 4});
  Driven self("attention.scaled_dot", attrs, {x.view(), x.view()});
  std::vector<Tensor> cache = allocate(self.node->cache_shapes(std::vector<Shape>{{1, 1, 4}, {1, 1, 4}}, 3));
  expect_decode_error("attention.scaled_dot", self, cache, 3, "decode position 3 is beyond the cache length 3");
  std::vector<Tensor> too_few(cache.begin(), cache.begin() + 2);
  expect_decode_error("attention.scaled_dot", self, too_few, 0,
                      "incremental decoding needs the 6 cache buffers of cache_shapes()");
  Tensor two = random_tensor({1, 2, 4});
  Driven wider("attention.scaled_dot", attrs, {two.view(), two.view()});
  expect_decode_error("attention.scaled_dot", wider, cache, 0,
                      "decode step of 2 positions does not match the cache planned for 1");
  Tensor memory = random_tensor({1, 5, 4});
  Driven cross("attention.scaled_dot", attrs, {x.view(), memory.view()});
  expect_decode_error("attention.scaled_dot", cross, cache, 0, "memory length 5 exceeds the cache length 3", kCross);
}

// Self-attention is told by the graph (DecodeState::stepwise), not by comparing buffers: keys in a
// buffer of their own that depend on the target (attention(y, identity(y))) are self-attention.
TEST(AttentionDecode, KeysThatDependOnTheTargetAreSelfAttentionWhateverTheirBuffer) {
  const int64_t B = 2, T = 5, D = 8;
  const Attrs attrs = resolved("attention.scaled_dot",
                               {{"heads", int64_t{2}}, {"d_k", int64_t{4}}, {"d_v", int64_t{4}}, {"causal", true}});
  Tensor x = random_tensor({B, T, D});
  Driven full("attention.scaled_dot", attrs, {x.view(), x.view()});
  full.forward();
  Tensor step_q({B, 1, D}), step_k({B, 1, D});  // the same values in two buffers
  Driven step("attention.scaled_dot", attrs, {step_q.view(), step_k.view()});
  step.copy_params_from(full);
  std::vector<Tensor> cache = allocate(step.node->cache_shapes(std::vector<Shape>{{B, 1, D}, {B, 1, D}}, T));
  const std::vector<TensorView> cache_views = views(cache);
  for (int64_t p = 0; p < T; ++p) {
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(x.data() + (b * T + p) * D, D, step_q.data() + b * D);
      std::copy_n(x.data() + (b * T + p) * D, D, step_k.data() + b * D);
    }
    DecodeState state{p, cache_views, kSelf};
    step.forward(StepInfo{false, 0, &state});
    expect_step_equals_full(step, full, B, T, D, p);
  }
}

// A key padding mask on the target is honoured step by step: each step's mask joins the cached mask
// of the earlier keys, so later queries still skip the padded ones.
TEST(AttentionDecode, SelfAttentionKeepsTheKeyPaddingOfEarlierSteps) {
  const int64_t B = 2, T = 5, D = 8;
  const Attrs attrs = resolved("attention.scaled_dot",
                               {{"heads", int64_t{2}}, {"d_k", int64_t{4}}, {"d_v", int64_t{4}}, {"causal", true}});
  Tensor x = random_tensor({B, T, D});
  Tensor mask({B, T}, 1.0f);
  mask.data()[1] = 0.0f;      // batch 0: key 1 is padding
  mask.data()[T + 2] = 0.0f;  // batch 1: key 2 is padding
  Driven full("attention.scaled_dot", attrs, {x.view(), x.view(), mask.view()});
  full.forward();
  Tensor step_x({B, 1, D}), step_mask({B, 1});
  Driven step("attention.scaled_dot", attrs, {step_x.view(), step_x.view(), step_mask.view()});
  step.copy_params_from(full);
  std::vector<Tensor> cache =
      allocate(step.node->cache_shapes(std::vector<Shape>{{B, 1, D}, {B, 1, D}, {B, 1}}, T));
  const std::vector<TensorView> cache_views = views(cache);
  for (int64_t p = 0; p < T; ++p) {
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(x.data() + (b * T + p) * D, D, step_x.data() + b * D);
      step_mask.data()[b] = mask.data()[b * T + p];
    }
    DecodeState state{p, cache_views, kSelf};
    step.forward(StepInfo{false, 0, &state});
    for (int64_t b = 0; b < B; ++b) {
      if (mask.data()[b * T + p] == 0.0f) continue;  // a padded query's own row is not compared
      for (int64_t o = 0; o < D; ++o)
        ASSERT_NEAR(step.outputs[0].data()[b * D + o], full.outputs[0].data()[(b * T + p) * D + o], 1e-5)
            << "position " << p << " batch " << b;
    }
  }
}

TEST(AttentionDecode, SelfAttentionThatCannotDecodeIncrementallyIsRefused) {
  const int64_t D = 4;
  Tensor x = random_tensor({1, 1, D});
  const Attrs open = resolved("attention.scaled_dot", {{"heads", int64_t{1}}, {"d_k", int64_t{2}}, {"d_v", int64_t{2}}});
  Driven bidirectional("attention.scaled_dot", open, {x.view(), x.view()});
  std::vector<Tensor> cache = allocate(bidirectional.node->cache_shapes(std::vector<Shape>{{1, 1, D}, {1, 1, D}}, 3));
  expect_decode_error("attention.scaled_dot", bidirectional, cache, 0,
                      "self-attention over the target with causal: false cannot decode one position at a time (its "
                      "earlier outputs depend on later positions); set causal: true");
  const uint8_t keys_only[] = {0, 1};
  expect_decode_error("attention.scaled_dot", bidirectional, cache, 0,
                      "incremental decoding: the query does not depend on the target but the keys do; nothing can be "
                      "decoded position by position here",
                      keys_only);
  const Attrs causal = resolved("attention.scaled_dot",
                                {{"heads", int64_t{1}}, {"d_k", int64_t{2}}, {"d_v", int64_t{2}}, {"causal", true}});
  Tensor per_query({1, 1, 1}, 1.0f);
  Driven masked("attention.scaled_dot", causal, {x.view(), x.view(), per_query.view()});
  std::vector<Tensor> masked_cache =
      allocate(masked.node->cache_shapes(std::vector<Shape>{{1, 1, D}, {1, 1, D}, {1, 1, 1}}, 3));
  const uint8_t fixed_mask[] = {1, 1, 0};
  expect_decode_error("attention.scaled_dot", masked, masked_cache, 0,
                      "incremental self-attention takes a mask per key of the target ([B, T] padding); a mask of "
                      "shape [1, 1, 1] does not depend on the target",
                      fixed_mask);
}

// ---- Rejected settings ---------------------------------------------------------------------------


TEST(AttentionErrors, InvalidSettingsAreRejectedAtConstruction) {
  expect_rejected("attention.local", {{"window", int64_t{0}}}, "window must be at least 1, got 0");
  expect_rejected("attention.local", {{"mode", std::string("both")}}, "mode must be \"causal\" or \"centred\", got \"both\"");
  expect_rejected("attention.grouped_query", {{"heads", int64_t{8}}, {"kv_heads", int64_t{3}}},
                  "kv_heads (3) must divide heads (8)");
  expect_rejected("attention.grouped_query", {{"kv_heads", int64_t{0}}}, "kv_heads must be at least 1, got 0");
  expect_rejected("attention.scaled_dot", {{"heads", int64_t{0}}}, "heads must be at least 1, got 0");
  expect_rejected("attention.scaled_dot", {{"d_k", int64_t{0}}}, "d_k must be at least 1, got 0");
  expect_rejected("attention.scaled_dot", {{"d_v", int64_t{-1}}}, "d_v must be at least 1, got -1");
  expect_rejected("attention.scaled_dot", {{"score_scale", std::string("sqrt")}},
                  "score_scale must be \"rsqrt_d_k\", \"inv_d_k\" or \"none\", got \"sqrt\"");
  expect_rejected("attention.additive", {{"score_scale", std::string("none")}},
                  "score_scale applies to dot-product scores; additive scores are not scaled");
  expect_rejected("attention.grouped_query", {{"heads", int64_t{4}}, {"kv_heads", int64_t{2}}, {"shared_qk", true}},
                  "shared_qk needs one key head per query head (kv_heads = heads), got kv_heads = 2");
  expect_rejected("attention.scaled_dot", {{"qk_norm", std::string("batch")}},
                  "qk_norm must be \"none\", \"layer\" or \"rms\", got \"batch\"");
  expect_rejected("attention.scaled_dot", {{"posenc", std::string("norm.layer")}},
                  "posenc 'norm.layer' is not a positional scheme (its node type offers no PositionalScheme)");
  expect_rejected("attention.scaled_dot", {{"d_k", int64_t{5}}, {"posenc", std::string("posenc.rotary")}},
                  "posenc.rotary needs an even d_k (it rotates pairs of features), got d_k = 5");
  expect_rejected("attention.additive", {{"posenc", std::string("posenc.rotary")}},
                  "posenc.rotary is not supported: rotary encoding works through dot products of rotated queries and "
                  "keys, which additive scores do not form (use posenc.alibi or an absolute scheme)");
}

// A learned scheme's parameters are attention's, named posenc.NAME; posenc_scope shares them.
TEST(PositionalSchemes, T5BiasIsDeclaredByAttentionAndSharedByScope) {
  NodeHandle own = component_registry().create("attention.scaled_dot", {{"heads", int64_t{4}}, {"posenc", std::string("posenc.t5")}});
  NodeHandle shared = component_registry().create(
      "attention.scaled_dot", {{"heads", int64_t{4}}, {"posenc", std::string("posenc.t5")}, {"posenc_scope", std::string("enc_rel")}});
  const std::vector<Shape> in = {{2, 5, 8}, {2, 5, 8}};
  const NodeShapes a = own->infer(in), b = shared->infer(in);
  ASSERT_EQ(a.params.back().name, "posenc.bias");
  EXPECT_EQ(a.params.back().shape, (Shape{32, 4}));
  EXPECT_EQ(a.params.back().scope, "");
  EXPECT_EQ(b.params.back().scope, "enc_rel");
  EXPECT_EQ(a.params.size(), 5u);  // w_q, w_k, w_v, w_o and the bias table
}

TEST(PositionalSchemes, ShawNeedsDotProductsAndAPositiveClip) {
  expect_rejected("posenc.shaw", {{"clip", int64_t{0}}}, "clip must be at least 1, got 0");
  expect_rejected("attention.additive", {{"posenc", std::string("posenc.shaw")}},
                  "posenc.shaw adds relative key embeddings to dot products of queries and keys, which additive scores "
                  "do not form");
  NodeHandle node = component_registry().create("attention.scaled_dot", {{"heads", int64_t{2}}, {"d_k", int64_t{3}},
                                                                         {"d_v", int64_t{5}}, {"posenc", std::string("posenc.shaw")}});
  const NodeShapes s = node->infer(std::vector<Shape>{{2, 4, 6}, {2, 4, 6}});
  ASSERT_GE(s.params.size(), 2u);
  EXPECT_EQ(s.params[s.params.size() - 2].name, "posenc.keys");
  EXPECT_EQ(s.params[s.params.size() - 2].shape, (Shape{33, 3}));
  EXPECT_EQ(s.params.back().shape, (Shape{33, 5}));
}

TEST(PositionalSchemes, T5SettingsAreChecked) {
  expect_rejected("posenc.t5", {{"num_buckets", int64_t{3}}},
                  "num_buckets must give at least 2 buckets per direction, got num_buckets = 3");
  expect_rejected("posenc.t5", {{"max_distance", int64_t{8}}},
                  "max_distance (8) must exceed the exact range, half the buckets per direction (8)");
}

// An unknown scheme is reported by the registry (known types, nearest match), not by a list in attention.
TEST(AttentionErrors, UnknownPosencNamesTheNearestType) {
  try {
    component_registry().create("attention.scaled_dot", {{"posenc", std::string("posenc.rotory")}});
    FAIL() << "posenc.rotory was accepted";
  } catch (const RegistryError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("attention.scaled_dot: posenc 'posenc.rotory': unknown node type 'posenc.rotory'; known types: ", 0), 0u)
        << what;
    EXPECT_NE(what.find("did you mean 'posenc.rotary'?"), std::string::npos) << what;
  }
}

TEST(AttentionErrors, AcceptedPosencCombinations) {
  for (const std::string type : {"attention.scaled_dot", "attention.grouped_query", "attention.local", "attention.additive"})
    for (const char* p : {"posenc.none", "posenc.sinusoidal", "posenc.learned", "posenc.alibi", "posenc.rotary"}) {
      if (type == "attention.additive" && std::string(p) == "posenc.rotary") continue;
      EXPECT_NO_THROW(component_registry().create(type, {{"posenc", std::string(p)}})) << type << " " << p;
    }
}

void expect_shape_error(const std::string& type, const Attrs& attrs, const std::vector<Shape>& shapes,
                        const std::string& message) {
  NodeHandle node = component_registry().create(type, attrs);
  try {
    node->infer(shapes);
    FAIL() << "expected \"" << message << "\"";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(AttentionErrors, MaskThatDoesNotBroadcastIsAShapeError) {
  const std::string tail = "; expected [B, Tk] key padding, [Tq, Tk], or [B|1, Tq|1, Tk]";
  expect_shape_error("attention.scaled_dot", {}, {{2, 3, 8}, {2, 5, 8}, {2, 4}},
                     "mask shape [2, 4] does not broadcast to [batch, queries, keys] = [2, 3, 5]" + tail);
  expect_shape_error("attention.scaled_dot", {}, {{2, 3, 8}, {2, 5, 8}, {4, 5}},
                     "mask shape [4, 5] does not broadcast to [batch, queries, keys] = [2, 3, 5]" + tail);
  expect_shape_error("attention.additive", {}, {{2, 3, 8}, {2, 5, 8}, {2, 2, 5}},
                     "mask shape [2, 2, 5] does not broadcast to [batch, queries, keys] = [2, 3, 5]" + tail);
  expect_shape_error("attention.local", {}, {{2, 3, 8}, {2, 5, 8}, {5}},
                     "mask shape [5] does not broadcast to [batch, queries, keys] = [2, 3, 5]" + tail);
}

TEST(AttentionErrors, InputShapeErrors) {
  expect_shape_error("attention.scaled_dot", {}, {{2, 3}, {2, 5, 8}}, "query must be [batch, length, width], got [2, 3]");
  expect_shape_error("attention.scaled_dot", {}, {{2, 3, 8}, {3, 5, 8}}, "memory batch 3 differs from query batch 2");
  expect_shape_error("attention.scaled_dot", {}, {{2, 3, 8}, {2, 5, 6}}, "memory width 6 differs from query width 8");
}

TEST(Attention, TwoDimensionalMaskIsKeyPaddingWhenBatchEqualsQueryLength) {
  // B = Tq = 2: the documented reading of a [2, Tk] mask is key padding, i.e. the same as [B, 1, Tk].
  Tensor q = random_tensor({2, 2, 4}), m = random_tensor({2, 3, 4});
  Tensor padding({2, 3}, {1, 1, 1, 1, 0, 0});
  Tensor explicit_padding({2, 1, 3}, {1, 1, 1, 1, 0, 0});
  const Attrs attrs = resolved("attention.scaled_dot", {{"heads", int64_t{2}}, {"d_k", int64_t{2}}, {"d_v", int64_t{2}}});
  Driven a("attention.scaled_dot", attrs, {q.view(), m.view(), padding.view()});
  Driven b("attention.scaled_dot", attrs, {q.view(), m.view(), explicit_padding.view()});
  b.copy_params_from(a);
  a.forward();
  b.forward();
  EXPECT_EQ(max_abs_diff(a.outputs[0].data(), b.outputs[0].data(), a.outputs[0].numel()), 0.0);
}

TEST(AttentionErrors, AcceptedMaskForms) {
  NodeHandle node = component_registry().create("attention.scaled_dot", {});
  for (const Shape& mask : std::vector<Shape>{{2, 5}, {3, 5}, {2, 3, 5}, {1, 3, 5}, {2, 1, 5}, {1, 1, 5}})
    EXPECT_NO_THROW(node->infer(std::vector<Shape>{{2, 3, 8}, {2, 5, 8}, mask})) << to_string(mask);
}

// ---- The tiled (online-softmax) kernel against the materialised one ------------------------------

enum class MaskKind { None, KeyPadding, Full };

// Key padding [B, Tk]: batch b masks its last b keys. Full [B, Tq, Tk]: a scattered pattern in which
// query row 1 of batch 0 sees no key at all (a zero distribution on both paths).
Tensor tiled_test_mask(MaskKind kind, int64_t B, int64_t Tq, int64_t Tk) {
  if (kind == MaskKind::KeyPadding) {
    Tensor m({B, Tk}, 1.0f);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = std::max<int64_t>(0, Tk - b); j < Tk; ++j) m.data()[b * Tk + j] = 0.0f;
    return m;
  }
  Tensor m({B, Tq, Tk});
  for (int64_t i = 0; i < m.numel(); ++i) m.data()[i] = (i % Tk == 0 || (i * 7) % 3 != 0) ? 1.0f : 0.0f;
  if (Tq > 1) std::fill_n(m.data() + Tk, Tk, 0.0f);
  return m;
}

struct TiledCase {
  std::string name, type;
  Attrs attrs;
  int64_t batch, queries, keys, width;
  bool self;
  MaskKind mask;
};

std::vector<TiledCase> tiled_cases() {
  using I = int64_t;
  const std::string sd = "attention.scaled_dot", gq = "attention.grouped_query", lo = "attention.local";
  const Attrs base = {{"heads", I{3}}, {"d_k", I{4}}, {"d_v", I{5}}};
  auto with = [&](Attrs a, std::initializer_list<std::pair<const std::string, AttrValue>> extra) {
    for (const auto& [k, v] : extra) a.set(k, v);
    return a;
  };
  return {
      {"plain_self", sd, base, 2, 13, 13, 12, true, MaskKind::None},
      {"cross_key_padding", sd, base, 3, 11, 17, 12, false, MaskKind::KeyPadding},
      {"causal_attribute", sd, with(base, {{"causal", true}}), 2, 13, 13, 12, true, MaskKind::None},
      {"causal_and_padding", sd, with(base, {{"causal", true}}), 3, 13, 13, 12, true, MaskKind::KeyPadding},
      {"full_mask_with_empty_row", sd, base, 2, 9, 14, 12, false, MaskKind::Full},
      {"causal_cross_longer_queries", sd, with(base, {{"causal", true}}), 2, 15, 7, 12, false, MaskKind::None},
      {"alibi_causal_padding", sd, with(base, {{"causal", true}, {"posenc", std::string("posenc.alibi")}}), 2, 13, 13, 12,
       true, MaskKind::KeyPadding},
      {"rotary_bias_cross", sd, with(base, {{"bias", true}, {"posenc", std::string("posenc.rotary")}}), 2, 10, 13, 12,
       false, MaskKind::KeyPadding},
      {"grouped_rotary_causal", gq,
       {{"heads", I{4}}, {"kv_heads", I{2}}, {"d_k", I{4}}, {"d_v", I{3}}, {"causal", true},
        {"posenc", std::string("posenc.rotary")}},
       2, 13, 13, 10, true, MaskKind::KeyPadding},
      {"multi_query_alibi_full_mask", gq,
       {{"heads", I{4}}, {"kv_heads", I{1}}, {"d_k", I{2}}, {"d_v", I{3}}, {"posenc", std::string("posenc.alibi")}}, 2, 9,
       11, 8, false, MaskKind::Full},
      {"local_causal_window", lo, with(base, {{"window", I{4}}}), 2, 13, 13, 12, true, MaskKind::None},
      {"local_centred_window_padding", lo, with(base, {{"window", I{5}}, {"mode", std::string("centred")}}), 2, 13, 13,
       12, true, MaskKind::KeyPadding},
      // Per-head products of at least 16384 multiply-adds (24x24x32): the materialised kernel runs
      // them as batched library products (gemm_batched), the tiled one one product at a time.
      {"wide_heads_self_padding", sd, {{"heads", I{4}}, {"d_k", I{32}}, {"d_v", I{32}}}, 3, 24, 24, 16, true,
       MaskKind::KeyPadding},
      {"wide_grouped_cross", gq, {{"heads", I{4}}, {"kv_heads", I{2}}, {"d_k", I{32}}, {"d_v", I{32}}}, 2, 24, 29, 16,
       false, MaskKind::None},
  };
}

void expect_all_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  for (int64_t i = 0; i < got.numel(); ++i)
    ASSERT_NEAR(got.data()[i], want.data()[i], tol * (1.0 + std::abs(want.data()[i]))) << what << " element " << i;
}

// Forward output and every gradient (query, memory, each parameter) of the tiled kernel against the
// materialised one, with tiles that leave partial blocks at both ends.
TEST(AttentionTiled, EqualsMaterialisedForwardAndEveryGradient) {
  for (const TiledCase& c : tiled_cases()) {
    for (int64_t tile : {1, 4, 5, 64}) {
      SCOPED_TRACE(c.name + " / tile " + std::to_string(tile));
      const Tensor query = random_tensor({c.batch, c.queries, c.width});
      const Tensor memory = c.self ? query : random_tensor({c.batch, c.keys, c.width});
      Tensor mask;
      std::vector<TensorView> in = {query.view(), c.self ? query.view() : memory.view()};
      if (c.mask != MaskKind::None) {
        mask = tiled_test_mask(c.mask, c.batch, c.queries, c.keys);
        in.push_back(mask.view());
      }
      Attrs dense_attrs = c.attrs, tiled_attrs = c.attrs;
      dense_attrs.set("tile", int64_t{-1});
      tiled_attrs.set("tile", tile);
      Driven dense(c.type, resolved(c.type, dense_attrs), in), tiled(c.type, resolved(c.type, tiled_attrs), in);
      tiled.copy_params_from(dense);
      const int64_t H = c.attrs.get_int("heads");
      ASSERT_EQ(dense.shapes.saved[3], (Shape{c.batch, H, c.queries, c.keys}));
      ASSERT_EQ(tiled.shapes.saved[3], (Shape{c.batch, H, c.queries}));  // only the log-sum-exp
      dense.forward();
      tiled.forward();
      expect_all_close(tiled.outputs[0], dense.outputs[0], 1e-5, "y");

      const Tensor dy = random_tensor(dense.outputs[0].shape());
      auto run_backward = [&](Driven& d, std::vector<Tensor>& input_grads, std::vector<Tensor>& param_grads) {
        // Gradients are added into: start both from the same non-zero values.
        input_grads = {Tensor(query.shape(), 0.25f), Tensor(memory.shape(), 0.25f)};
        for (const auto& p : d.params) param_grads.emplace_back(p.shape(), std::nanf(""));
        d.backward({dy}, {input_grads[0].view(), input_grads[1].view()}, param_grads);
      };
      std::vector<Tensor> dense_in, tiled_in, dense_param, tiled_param;
      run_backward(dense, dense_in, dense_param);
      run_backward(tiled, tiled_in, tiled_param);
      expect_all_close(tiled_in[0], dense_in[0], 1e-4, "d query");
      expect_all_close(tiled_in[1], dense_in[1], 1e-4, "d memory");
      for (size_t i = 0; i < dense_param.size(); ++i)
        expect_all_close(tiled_param[i], dense_param[i], 1e-4, "d " + dense.shapes.params[i].name);
    }
  }
}

TEST(AttentionTiled, FullyMaskedQueryGivesOutputBias) {
  Tensor q = random_tensor({1, 2, 4}), m = random_tensor({1, 3, 4});
  Tensor mask({1, 2, 3}, {1, 0, 1, 0, 0, 0});  // the second query sees no key
  Driven d("attention.scaled_dot",
           resolved("attention.scaled_dot",
                    {{"heads", int64_t{2}}, {"d_k", int64_t{2}}, {"d_v", int64_t{2}}, {"bias", true}, {"tile", int64_t{2}}}),
           {q.view(), m.view(), mask.view()});
  ASSERT_EQ(d.shapes.saved[3], (Shape{1, 2, 2}));
  d.forward();
  for (int64_t o = 0; o < 4; ++o) EXPECT_FLOAT_EQ(d.outputs[0].data()[4 + o], d.param("b_o").data()[o]);
}

// The same result whatever the number of threads (tasks own their rows; chunks are fixed).
TEST(AttentionTiled, ResultDoesNotDependOnThreadCount) {
  Tensor x = random_tensor({2, 37, 16});
  const Attrs attrs = resolved("attention.scaled_dot", {{"heads", int64_t{4}}, {"d_k", int64_t{4}}, {"d_v", int64_t{4}},
                                                        {"causal", true}, {"tile", int64_t{8}}});
  Driven one("attention.scaled_dot", attrs, {x.view(), x.view()});
  Driven two("attention.scaled_dot", attrs, {x.view(), x.view()});
  two.copy_params_from(one);
  const Tensor dy = random_tensor({2, 37, 16});
  std::vector<Tensor> grads_one, grads_two;
  for (const auto& p : one.params) grads_one.emplace_back(p.shape());
  for (const auto& p : two.params) grads_two.emplace_back(p.shape());
  Tensor dx_one({2, 37, 16}, 0.0f), dx_two({2, 37, 16}, 0.0f);
  tbb::task_arena(1).execute([&] {
    one.forward();
    one.backward({dy}, {dx_one.view(), dx_one.view()}, grads_one);
  });
  tbb::task_arena(2).execute([&] {
    two.forward();
    two.backward({dy}, {dx_two.view(), dx_two.view()}, grads_two);
  });
  EXPECT_EQ(max_abs_diff(one.outputs[0].data(), two.outputs[0].data(), one.outputs[0].numel()), 0.0);
  EXPECT_EQ(max_abs_diff(dx_one.data(), dx_two.data(), dx_one.numel()), 0.0);
  for (size_t i = 0; i < grads_one.size(); ++i)
    EXPECT_EQ(max_abs_diff(grads_one[i].data(), grads_two[i].data(), grads_one[i].numel()), 0.0);
}

int64_t declared_bytes(const NodeShapes& s) {
  int64_t floats = 0;
  for (const auto* list : {&s.saved, &s.workspace})
    for (const Shape& shape : *list) floats += numel(shape);
  return 4 * floats;
}

// Self-attention at the long-input benchmark's shape (batch 1, 8 heads of 64, d_model 512): the automatic choice
// takes the tiled kernel at 4096 tokens, and its saved + workspace bytes grow linearly with the
// length; the materialised kernel's grow quadratically.
TEST(AttentionTiled, DeclaredMemoryIsLinearInLength) {
  auto bytes_at = [](int64_t tile, int64_t len) {
    NodeHandle node = component_registry().create("attention.scaled_dot", {{"tile", tile}});
    return declared_bytes(node->infer(std::vector<Shape>{{1, len, 512}, {1, len, 512}}));
  };
  // The scratch tiles (kTileChunks sets of two 128×128 tiles, 2 MB) are a constant term: the ratios
  // fall a little short of 2 (1.97 from 4096 to 8192).
  const double tiled_ratio = static_cast<double>(bytes_at(0, 8192)) / static_cast<double>(bytes_at(0, 4096));
  EXPECT_NEAR(tiled_ratio, 2.0, 0.05);
  EXPECT_NEAR(static_cast<double>(bytes_at(0, 4096)) / static_cast<double>(bytes_at(0, 2048)), 2.0, 0.08);
  // Linear, not merely smaller: bytes(2L) − 2·bytes(L) is the same negative constant at every L.
  EXPECT_EQ(bytes_at(0, 8192) - 2 * bytes_at(0, 4096), bytes_at(0, 2048) - 2 * bytes_at(0, 1024));
  const double dense_ratio = static_cast<double>(bytes_at(-1, 8192)) / static_cast<double>(bytes_at(-1, 4096));
  EXPECT_GT(dense_ratio, 3.8);
  // No buffer of the tiled kernel at 4096 tokens has Tq·Tk elements (8 heads: 2^27).
  NodeHandle node = component_registry().create("attention.scaled_dot", {});
  const NodeShapes s = node->infer(std::vector<Shape>{{1, 4096, 512}, {1, 4096, 512}});
  for (const auto* list : {&s.saved, &s.workspace})
    for (const Shape& shape : *list) EXPECT_LT(numel(shape), 4096 * 4096) << to_string(shape);
  EXPECT_EQ(s.saved[3], (Shape{1, 8, 4096}));
}

// The automatic choice depends on the shapes only: short sequences keep the materialised scores.
TEST(AttentionTiled, AutomaticChoiceFollowsTheScoreCount) {
  NodeHandle node = component_registry().create("attention.scaled_dot", {});
  auto saved_scores = [&](int64_t tq, int64_t tk) {
    return node->infer(std::vector<Shape>{{2, tq, 16}, {2, tk, 16}}).saved[3].size();
  };
  EXPECT_EQ(saved_scores(32, 32), 4u);      // [B, H, Tq, Tk]
  EXPECT_EQ(saved_scores(255, 256), 4u);
  EXPECT_EQ(saved_scores(256, 256), 3u);  // [B, H, Tq]: the tiled kernel
  EXPECT_EQ(saved_scores(1, 300000), 3u);
  // Additive scores are always materialised.
  NodeHandle additive = component_registry().create("attention.additive", {});
  EXPECT_EQ(additive->infer(std::vector<Shape>{{1, 1024, 16}, {1, 1024, 16}}).saved[3].size(), 4u);
}

TEST(AttentionErrors, TileBelowMinusOneIsRejected) {
  expect_rejected("attention.scaled_dot", {{"tile", int64_t{-2}}},
                  "tile must be 0 (automatic), -1 (materialise the scores) or a positive tile size, got -2");
}

// ---- Recording (node.h: Recorder) ---------------------------------------------------------------

// Owns what the node records.
class TestRecorder final : public Recorder {
 public:
  TensorView record(const std::string& what, const Shape& shape) override {
    names.push_back(what);
    tensors.emplace_back(shape, std::nanf(""));
    return tensors.back().view();
  }
  std::vector<std::string> names;
  std::deque<Tensor> tensors;
};

// Every attention type records its probabilities in an inspecting pass: [B, H, Tq, Tk], each row
// a distribution over the allowed keys (masked and future keys 0), the output unchanged; the
// tiled kernel records what the materialised one computes.
TEST(Attention, EveryTypeRecordsItsProbabilities) {
  Registry& registry = component_registry();
  int recorded = 0;
  Tensor q = random_tensor({2, 5, 16}), m = random_tensor({2, 7, 16});
  Tensor mask({2, 7}, 1.0f);
  mask.data()[7 + 6] = 0.0f;  // the second sentence's last key is padding
  for (const std::string& type : registry.type_names()) {
    if (type.rfind("attention.", 0) != 0) continue;
    SCOPED_TRACE(type);
    Attrs attrs = {{"heads", int64_t{2}}, {"d_k", int64_t{8}}, {"d_v", int64_t{8}}};
    Driven plain(type, resolved(type, attrs), {q.view(), m.view(), mask.view()});
    Driven inspected(type, resolved(type, attrs), {q.view(), m.view(), mask.view()});
    inspected.copy_params_from(plain);
    plain.forward();
    TestRecorder recorder;
    StepInfo info;
    info.recorder = &recorder;
    inspected.forward(info);
    ASSERT_EQ(recorder.names, std::vector<std::string>{"probs"});
    const Tensor& p = recorder.tensors.front();
    ASSERT_EQ(p.shape(), (Shape{2, 2, 5, 7}));
    for (int64_t row = 0; row < 2 * 2 * 5; ++row) {
      double sum = 0;
      for (int64_t k = 0; k < 7; ++k) sum += p.data()[row * 7 + k];
      EXPECT_NEAR(sum, 1.0, 1e-5) << "row " << row;
    }
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(p.data()[((1 * 2 + h) * 5 + i) * 7 + 6], 0.0f) << "a padded key";
    EXPECT_LT(max_abs_diff(plain.outputs[0].data(), inspected.outputs[0].data(), plain.outputs[0].numel()), 1e-6);
    ++recorded;
  }
  EXPECT_GE(recorded, 4);

  // The tiled kernel (forced with tile: 4) records the same probabilities as the materialised one.
  const Attrs base = {{"heads", int64_t{2}}, {"d_k", int64_t{8}}, {"d_v", int64_t{8}}, {"causal", true}};
  Attrs tiled_attrs = base, dense_attrs = base;
  tiled_attrs.set("tile", int64_t{4});
  dense_attrs.set("tile", int64_t{-1});
  Tensor x = random_tensor({2, 9, 16});
  Driven tiled("attention.scaled_dot", resolved("attention.scaled_dot", tiled_attrs), {x.view(), x.view()});
  Driven dense("attention.scaled_dot", resolved("attention.scaled_dot", dense_attrs), {x.view(), x.view()});
  dense.copy_params_from(tiled);
  TestRecorder rt, rd;
  StepInfo it, id;
  it.recorder = &rt;
  id.recorder = &rd;
  tiled.forward(it);
  dense.forward(id);
  const Tensor& pt = rt.tensors.front();
  const Tensor& pd = rd.tensors.front();
  EXPECT_LT(max_abs_diff(pt.data(), pd.data(), pd.numel()), 1e-6);
  EXPECT_EQ(pd.data()[1], 0.0f) << "causal: the first query sees no later key";
  EXPECT_LT(max_abs_diff(tiled.outputs[0].data(), dense.outputs[0].data(), dense.outputs[0].numel()), 1e-5);
}

}  // namespace
}  // namespace attnlab::components_test
