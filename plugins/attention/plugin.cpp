// plugins/attention/plugin.cpp — registers the attention node types with their schemas and
// gradient-check examples (the examples cover the shapes and settings each type supports).
#include "attention.h"

#include "node/plugin_api.h"

namespace {

using namespace attnlab;
using attnlab::attention::AttentionNode;
using attnlab::attention::config_from_attrs;

AttrValue I(int64_t v) { return AttrValue{v}; }
AttrValue S(const char* v) { return AttrValue{std::string(v)}; }
AttrValue Bo(bool v) { return AttrValue{v}; }

std::vector<AttrSchema> common_attrs() {
  return {
      {"heads", AttrType::Int, I(8), "number of attention heads"},
      {"d_k", AttrType::Int, I(64), "query/key size per head"},
      {"d_v", AttrType::Int, I(64), "value size per head"},
      {"causal", AttrType::Bool, Bo(false), "each query sees only keys at positions up to its own"},
      {"bias", AttrType::Bool, Bo(false), "add biases to the q, k, v and output projections"},
      {"posenc", AttrType::String, S(""),
       "the positional node type whose scheme acts inside attention (a score bias, a rotation of q and k, or "
       "nothing for absolute schemes): any node type offering a PositionalScheme, optionally with attributes "
       "(\"TYPE(NAME: VALUE, ...)\", as a slot bound with attributes passes it); empty: none"},
      {"shared_qk", AttrType::Bool, Bo(false), "keys use the query projection (one shared matrix for Q and K)"},
      {"score_scale", AttrType::String, S("rsqrt_d_k"),
       "dot products times 1/sqrt(d_k) (\"rsqrt_d_k\"), 1/d_k (\"inv_d_k\") or 1 (\"none\")"},
      {"qk_norm", AttrType::String, S("none"),
       "normalise each head's query and key vector: \"none\", \"layer\" (LayerNorm) or \"rms\" (RMSNorm)"},
      {"posenc_scope", AttrType::String, S(""),
       "where the scheme's parameters live: empty, this attention; a name, shared by every attention naming it"},
  };
}

std::vector<PortSchema> inputs() {
  return {{"query", "queries [B, Tq, D]"},
          {"memory", "keys/values source [B, Tk, D]; the query value itself for self-attention"},
          {"mask", "1 keep, 0 masked: [B, Tk] key padding, [Tq, Tk], or [B|1, Tq|1, Tk]", true, false}};
}

std::vector<PortSchema> outputs() { return {{"y", "attended values projected back to [B, Tq, D]"}}; }

// Key padding mask [2, n]: batch 0 keeps everything, batch 1 masks its last `pad` keys.
CheckInput key_padding(int64_t n, int64_t pad) {
  std::vector<float> v(2 * n, 1.0f);
  for (int64_t j = n - pad; j < n; ++j) v[n + j] = 0.0f;
  return CheckInput::fixed({2, n}, v);
}

// Lower-triangular [t, t] mask.
CheckInput causal_mask(int64_t t) {
  std::vector<float> v(t * t, 0.0f);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j <= i; ++j) v[i * t + j] = 1.0f;
  return CheckInput::fixed({t, t}, v);
}

// A full [2, tq, tk] mask with a scattered pattern that keeps at least one key per query.
CheckInput full_mask(int64_t tq, int64_t tk) {
  std::vector<float> v(2 * tq * tk);
  for (int64_t i = 0; i < 2 * tq * tk; ++i) v[i] = (i % tk == 0 || (i * 7) % 3 != 0) ? 1.0f : 0.0f;
  return CheckInput::fixed({2, tq, tk}, v);
}

// The dot-product types' choice of kernel (AttentionConfig::tile in attention.h).
AttrSchema tile_attr() {
  return {"tile", AttrType::Int, I(0),
          "score kernel: 0 chooses from the shapes (tiled online softmax with 128x128 tiles when Tq*Tk >= 256*256, "
          "else the materialised score matrix); n > 0 always streams n x n tiles; -1 always materialises"};
}

CheckInput x(int64_t b, int64_t t, int64_t d) { return CheckInput::real({b, t, d}); }

GradCheckExample example(std::string name, Attrs attrs, std::vector<CheckInput> in) {
  GradCheckExample e;
  e.name = std::move(name);
  e.attrs = std::move(attrs);
  e.inputs = std::move(in);
  return e;
}

// Examples cover each type's shapes, masks and kernels without a positional scheme; the gradient
// check runs every example again with each positional scheme loaded (any node type offering one),
// so these are also the examples of rotations and score biases inside attention.
std::vector<GradCheckExample> scaled_dot_examples() {
  return {
      example("self", {{"heads", I(2)}, {"d_k", I(4)}, {"d_v", I(3)}}, {x(2, 4, 6), x(2, 4, 6)}),
      // With dot-product scores the key bias shifts every score of a query row equally, so its
      // gradient is exactly zero unless a rotation makes the shift position-dependent: the composed
      // checks with a rotating scheme check b_k against something non-zero.
      example("cross_key_padding_bias_dk_ne_dv", {{"heads", I(3)}, {"d_k", I(4)}, {"d_v", I(2)}, {"bias", Bo(true)}},
              {x(2, 3, 6), x(2, 5, 6), key_padding(5, 2)}),
      example("causal_attribute", {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(3)}, {"causal", Bo(true)}},
              {x(2, 5, 5), x(2, 5, 5)}),
      example("causal_mask_input", {{"heads", I(1)}, {"d_k", I(4)}, {"d_v", I(4)}}, {x(2, 3, 4), x(2, 3, 4), causal_mask(3)}),
      example("full_mask", {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(2)}}, {x(2, 3, 4), x(2, 4, 4), full_mask(3, 4)}),
      example("cross_odd_d_k", {{"heads", I(3)}, {"d_k", I(3)}, {"d_v", I(2)}}, {x(2, 3, 5), x(2, 4, 5), key_padding(4, 1)}),
      // The tiled kernel, forced with tiles smaller than the lengths so that blocks are partial.
      example("tiled_causal_padding", {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(2)}, {"causal", Bo(true)}, {"tile", I(2)}},
              {x(2, 5, 4), x(2, 5, 4), key_padding(5, 2)}),
      example("tiled_cross_full_mask", {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(2)}, {"tile", I(2)}},
              {x(2, 3, 4), x(2, 5, 4), full_mask(3, 5)}),
      example("tiled_bias_cross", {{"heads", I(2)}, {"d_k", I(4)}, {"d_v", I(3)}, {"bias", Bo(true)}, {"tile", I(3)}},
              {x(2, 5, 6), x(2, 4, 6)}),
      example("shared_qk_causal_bias", {{"heads", I(2)}, {"d_k", I(3)}, {"d_v", I(2)}, {"causal", Bo(true)},
                                         {"bias", Bo(true)}, {"shared_qk", Bo(true)}},
              {x(2, 4, 5), x(2, 4, 5)}),
      example("shared_qk_cross_no_scale", {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(2)}, {"shared_qk", Bo(true)},
                                            {"score_scale", S("none")}},
              {x(2, 3, 4), x(2, 4, 4), key_padding(4, 1)}),
      example("inv_d_k_scale_tiled", {{"heads", I(2)}, {"d_k", I(4)}, {"d_v", I(2)}, {"causal", Bo(true)},
                                       {"score_scale", S("inv_d_k")}, {"tile", I(2)}},
              {x(2, 5, 4), x(2, 5, 4)}),
      example("qk_layer_norm_causal_bias", {{"heads", I(2)}, {"d_k", I(4)}, {"d_v", I(2)}, {"causal", Bo(true)},
                                             {"bias", Bo(true)}, {"qk_norm", S("layer")}},
              {x(2, 4, 5), x(2, 4, 5)}),
      example("qk_rms_norm_cross_padding", {{"heads", I(3)}, {"d_k", I(2)}, {"d_v", I(2)}, {"qk_norm", S("rms")}},
              {x(2, 3, 4), x(2, 5, 4), key_padding(5, 2)}),
      example("tiled_qk_layer_norm_causal", {{"heads", I(2)}, {"d_k", I(4)}, {"d_v", I(2)}, {"causal", Bo(true)},
                                              {"qk_norm", S("layer")}, {"tile", I(2)}},
              {x(2, 5, 4), x(2, 5, 4)}),
  };
}

std::vector<GradCheckExample> additive_examples() {
  return {
      example("self", {{"heads", I(2)}, {"d_k", I(3)}, {"d_v", I(3)}}, {x(2, 4, 5), x(2, 4, 5)}),
      example("cross_key_padding_bias", {{"heads", I(3)}, {"d_k", I(2)}, {"d_v", I(4)}, {"bias", Bo(true)}},
              {x(2, 3, 4), x(2, 5, 4), key_padding(5, 2)}),
      example("causal", {{"heads", I(2)}, {"d_k", I(3)}, {"d_v", I(2)}, {"causal", Bo(true)}}, {x(2, 4, 4), x(2, 4, 4)}),
      example("qk_rms_norm_causal", {{"heads", I(2)}, {"d_k", I(3)}, {"d_v", I(2)}, {"causal", Bo(true)}, {"qk_norm", S("rms")}},
              {x(2, 4, 4), x(2, 4, 4)}),
  };
}

std::vector<GradCheckExample> grouped_query_examples() {
  return {
      example("multi_query", {{"heads", I(4)}, {"kv_heads", I(1)}, {"d_k", I(2)}, {"d_v", I(3)}},
              {x(2, 3, 5), x(2, 3, 5)}),
      example("two_groups_cross_padding_bias",
              {{"heads", I(4)}, {"kv_heads", I(2)}, {"d_k", I(4)}, {"d_v", I(2)}, {"bias", Bo(true)}},
              {x(2, 3, 6), x(2, 5, 6), key_padding(5, 2)}),
      example("two_groups_causal", {{"heads", I(4)}, {"kv_heads", I(2)}, {"d_k", I(4)}, {"d_v", I(2)}, {"causal", Bo(true)}},
              {x(2, 4, 4), x(2, 4, 4)}),
      example("tiled_causal_padding",
              {{"heads", I(4)}, {"kv_heads", I(2)}, {"d_k", I(2)}, {"d_v", I(2)}, {"causal", Bo(true)}, {"tile", I(2)}},
              {x(2, 5, 4), x(2, 5, 4), key_padding(5, 1)}),
      example("qk_layer_norm_two_groups_causal",
              {{"heads", I(4)}, {"kv_heads", I(2)}, {"d_k", I(4)}, {"d_v", I(2)}, {"causal", Bo(true)}, {"qk_norm", S("layer")}},
              {x(2, 4, 4), x(2, 4, 4)}),
  };
}

std::vector<GradCheckExample> local_examples() {
  std::vector<GradCheckExample> out;
  for (const char* mode : {"causal", "centred"})
    for (int64_t w : {1, 3})
      out.push_back(example(std::string(mode) + "_window_" + std::to_string(w),
                            {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(2)}, {"window", I(w)}, {"mode", S(mode)}},
                            {x(2, 5, 4), x(2, 5, 4)}));
  out.push_back(example("centred_padding",
                        {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(2)}, {"window", I(3)}, {"mode", S("centred")}},
                        {x(2, 5, 4), x(2, 5, 4), key_padding(5, 2)}));
  out.push_back(example("causal_bias", {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(3)}, {"window", I(2)}, {"bias", Bo(true)}},
                        {x(2, 4, 5), x(2, 4, 5)}));
  out.push_back(example("tiled_centred_padding",
                        {{"heads", I(2)}, {"d_k", I(2)}, {"d_v", I(2)}, {"window", I(3)}, {"mode", S("centred")}, {"tile", I(2)}},
                        {x(2, 5, 4), x(2, 5, 4), key_padding(5, 2)}));
  return out;
}

NodeSchema schema(std::string name, std::string doc, std::vector<AttrSchema> extra,
                  std::vector<GradCheckExample> examples) {
  NodeSchema s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.inputs = inputs();
  s.outputs = outputs();
  s.attrs = common_attrs();
  for (auto& a : extra) s.attrs.push_back(std::move(a));
  s.examples = std::move(examples);
  return s;
}

void add(PluginRegistrar& registrar, NodeSchema s) {
  const std::string type = s.name;
  registrar.add(std::move(s), [type](const Attrs& attrs, const Registry& registry) -> std::unique_ptr<Node> {
    return std::make_unique<AttentionNode>(config_from_attrs(type, attrs), registry);
  });
}

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  add(registrar, schema("attention.scaled_dot", "multi-head scaled dot-product attention (Vaswani et al. 2017)",
                        {tile_attr()}, scaled_dot_examples()));
  add(registrar, schema("attention.additive", "multi-head additive (MLP) attention, scores v^T tanh(q + k) (Bahdanau et al. 2015)",
                        {}, additive_examples()));
  add(registrar, schema("attention.grouped_query",
                        "grouped-query attention: kv_heads key/value heads shared by the query heads (kv_heads=1: multi-query)",
                        {{"kv_heads", AttrType::Int, I(1), "number of key/value heads; must divide heads"}, tile_attr()},
                        grouped_query_examples()));
  add(registrar, schema("attention.local", "scaled dot-product attention restricted to a window of key positions",
                        {{"window", AttrType::Int, I(16), "number of key positions each query may see (at least 1)"},
                         {"mode", AttrType::String, S("causal"),
                          "\"causal\": the window ends at the query; \"centred\": the window is centred on it"},
                         tile_attr()},
                        local_examples()));
}
