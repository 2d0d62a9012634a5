// Elaboration tests with the real plugins (loaded from beside the test executable): the paper's
// base model and its Table 3 overrides, weight sharing, overrides, imports, experiments.
#include "../support/installed_plugins.h"
#include "dsl/builtin_files.h"
#include "dsl/elaborate.h"
#include "dsl/experiment.h"
#include "dsl/params.h"
#include "exec/model.h"
#include "node/plugin_loader.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>

namespace attnlab::dsl {
namespace {

const Registry& registry() { return test::plugins_beside_executable(); }

const std::string kBase = std::string(ATTNLAB_SOURCE_DIR) + "/experiments/transformer_base.attn";

ElaboratedModel base(const std::vector<std::string>& sets = {}, const std::vector<std::string>& uses = {}) {
  return elaborate_target(kBase, registry(), sets, uses);
}

// The base Transformer's parameter count by formula: shared embedding V*D; per attention
// 2*D*H*dk + 2*H*dv*D (no projection biases); FFN 2*D*F + F + D; LayerNorm 2*D.
int64_t expected_params(int64_t V, int64_t N, int64_t D, int64_t F, int64_t H, int64_t dk, int64_t dv) {
  const int64_t attention = 2 * D * H * dk + 2 * H * dv * D;
  const int64_t ffn = 2 * D * F + F + D;
  const int64_t norm = 2 * D;
  return V * D + N * (attention + ffn + 2 * norm) + N * (2 * attention + ffn + 3 * norm);
}

const ir::NodeDef* find_node(const ir::GraphDef& g, const std::string& name) {
  for (const auto& n : g.nodes())
    if (n.name() == name) return &n;
  return nullptr;
}

TEST(TransformerBase, ElaboratesToTheGraphContract) {
  ElaboratedModel m = base();
  std::vector<std::string> inputs, outputs;
  for (const auto& i : m.graph.inputs()) {
    inputs.push_back(i.name());
    EXPECT_EQ(i.kind(), "ids");
    EXPECT_EQ(i.bound(), 37000);
  }
  for (const auto& o : m.graph.outputs()) outputs.push_back(o.name());
  EXPECT_EQ(inputs, (std::vector<std::string>{"src", "tgt_in", "tgt_out"}));
  EXPECT_EQ(outputs, (std::vector<std::string>{"loss", "tokens", "correct", "logits", "memory"}));
  // Shapes at the representative sizes: batch 2, src_len 7, tgt_len 5.
  EXPECT_EQ(m.shapes.value_shapes.at(m.graph.outputs(3).value()), (Shape{2, 5, 37000}));
  EXPECT_EQ(m.shapes.value_shapes.at(m.graph.outputs(4).value()), (Shape{2, 7, 512}));
  EXPECT_EQ(m.shapes.value_shapes.at(m.graph.outputs(0).value()), Shape{});
}

TEST(TransformerBase, IsThePapersArchitecture) {
  ElaboratedModel m = base();
  std::map<std::string, int> types;
  for (const auto& n : m.graph.nodes()) ++types[n.type()];
  EXPECT_EQ(types["attention.scaled_dot"], 6 + 12);
  EXPECT_EQ(types["ffn.relu"], 12);
  EXPECT_EQ(types["norm.layer"], 12 + 18);  // post-norm: one per sublayer
  EXPECT_EQ(types["posenc.sinusoidal"], 2);
  EXPECT_EQ(types["dropout"], 2 + 30);  // embedding+position sums and every sublayer output
  EXPECT_EQ(types["embedding"], 2);
  EXPECT_EQ(types["embedding.project"], 1);
  // One embedding table: source, target and the pre-softmax projection share a scope.
  std::set<std::string> scopes;
  for (const auto& n : m.graph.nodes())
    if (n.type() == "embedding" || n.type() == "embedding.project") scopes.insert(n.param_scope());
  ASSERT_EQ(scopes.size(), 1u);
  EXPECT_FALSE(scopes.begin()->empty());
  // Embeddings scaled by sqrt(d_model); decoder self-attention causal; encoder's not.
  for (const auto& n : m.graph.nodes()) {
    Attrs a = registry().resolve_attrs(n.type(), ir::to_attrs(n));
    if (n.type() == "embedding") {
      EXPECT_NEAR(a.get_float("scale"), std::sqrt(512.0), 1e-9);
    }
    if (n.type() == "attention.scaled_dot") {
      EXPECT_EQ(a.get_int("d_k"), 64);
      EXPECT_EQ(a.get_int("heads"), 8);
      EXPECT_EQ(a.get_string("posenc"), "posenc.sinusoidal");
      const bool decoder_self = n.name().find("decoder") == 0 && n.name().find("self_attention") != std::string::npos;
      EXPECT_EQ(a.get_bool("causal"), decoder_self) << n.name();
      EXPECT_NE(n.inputs(2), "") << n.name() << " has no padding mask";
    }
    if (n.type() == "dropout") {
      EXPECT_DOUBLE_EQ(a.get_float("p"), 0.1);
    }
  }
  const ir::NodeDef* first = find_node(m.graph, "encoder.encoder_layer0.sublayer.self_attention.attention");
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->loc().line(), 40);
  EXPECT_NE(first->loc().file().find("transformer_base.attn"), std::string::npos);
}

// The embedding scale is a model parameter: sqrt(d_model) as in the paper (section 3.4), or any
// value by --set (the "why multiply the embeddings by sqrt(d_model)" ablation).
TEST(TransformerBase, EmbeddingScaleIsAParameter) {
  for (const auto& [sets, want] : std::vector<std::pair<std::vector<std::string>, double>>{
           {{}, std::sqrt(512.0)}, {{"emb_scale=1"}, 1.0}, {{"d_model=256", "heads=4"}, 16.0}}) {
    const ElaboratedModel m = base(sets);
    int seen = 0;
    for (const auto& n : m.graph.nodes())
      if (n.type() == "embedding") {
        EXPECT_NEAR(ir::to_attrs(n).get_float("scale"), want, 1e-5) << n.name();
        ++seen;
      }
    EXPECT_EQ(seen, 2);  // source and target
  }
}

// experiments/transformer_t5bias.attn shares T5's bias by posenc_scope: one [32, heads] table for
// the encoder's layers and one for the decoder's, in the count and in the parameter store.
std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(BuiltinFiles, AreTheExperimentsFilesAndLoadWithoutADisk) {
  ASSERT_NE(builtin_file_text(builtin_default_experiment()), nullptr);
  EXPECT_EQ(*builtin_file_text(builtin_default_experiment()), file_text(std::string(ATTNLAB_SOURCE_DIR) + "/experiments/default.attn"));
  EXPECT_EQ(*builtin_file_text(builtin_transformer_base()), file_text(kBase));
  EXPECT_EQ(builtin_file_text("default.attn"), nullptr);
  EXPECT_EQ(builtin_file_text("<built-in>/other.attn"), nullptr);
  // The default experiment names its model relative to itself, so that resolves to a built-in too,
  // and elaborates with the real plugins.
  ExperimentSpec spec = load_experiment(builtin_default_experiment());
  EXPECT_EQ(spec.name, "default");
  EXPECT_EQ(spec.model_path, builtin_transformer_base());
  EXPECT_EQ(elaborate_experiment_model(spec, registry()).name, "transformer_base");
}

TEST(BuiltinFiles, ErrorsQuoteTheBuiltinSource) {
  ExperimentSpec spec = load_experiment(builtin_default_experiment());
  try {
    (void)elaborate_experiment_model(spec, registry(), {parse_override("heads=0", "--set")});
    FAIL() << "heads=0 was accepted";
  } catch (const DslError& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("<built-in>/transformer_base.attn:"), std::string::npos) << text;
    EXPECT_NE(text.find("^"), std::string::npos) << text;
  }
}

// Plugins own their node types: no source file of one plugin names, in a string literal, a
// dotted type that another plugin registers (attention asks its positional scheme through
// core/node/positional.h, never by name). Comments may mention them.
TEST(PluginFamilies, NoPluginNamesAnotherFamilysTypes) {
  const std::regex literal(R"re("(?:[^"\\]|\\.)*")re");
  const std::filesystem::path plugins = std::filesystem::path(ATTNLAB_SOURCE_DIR) / "plugins";
  int files = 0;
  for (const auto& family : std::filesystem::directory_iterator(plugins)) {
    if (!family.is_directory()) continue;
    const std::string own = "libattnlab_plugin_" + family.path().filename().string() + ".so";
    for (const auto& file : std::filesystem::directory_iterator(family.path())) {
      if (file.path().extension() != ".cpp" && file.path().extension() != ".h") continue;
      ++files;
      std::ifstream in(file.path());
      std::string line;
      for (int number = 1; std::getline(in, line); ++number) {
        const size_t code = line.find_first_not_of(" \t");
        if (code == std::string::npos || line.compare(code, 2, "//") == 0) continue;
        for (auto m = std::sregex_iterator(line.begin(), line.end(), literal); m != std::sregex_iterator(); ++m)
          for (const std::string& type : registry().type_names()) {
            if (type.find('.') == std::string::npos || registry().origin(type) == own) continue;
            const std::string text = m->str();
            for (size_t at = text.find(type); at != std::string::npos; at = text.find(type, at + 1)) {
              const auto boundary = [](char c) { return !(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'); };
              const bool whole = (at == 0 || boundary(text[at - 1])) && (at + type.size() >= text.size() || boundary(text[at + type.size()]));
              EXPECT_FALSE(whole) << file.path().string() << ":" << number << " names " << type << " ("
                                  << registry().origin(type) << "): " << line;
            }
          }
      }
    }
  }
  EXPECT_GT(files, 5);
}

TEST(TransformerT5Bias, OneBiasTablePerStack) {
  const std::vector<std::string> sets = {"layers=2", "d_model=32", "d_ff=64", "heads=4", "vocab=50"};
  const std::string dir = std::string(ATTNLAB_SOURCE_DIR) + "/experiments/";
  const ElaboratedModel t5 = elaborate_target(dir + "transformer_t5bias.attn", registry(), sets, {});
  const ElaboratedModel prenorm = elaborate_target(dir + "transformer_prenorm.attn", registry(), sets, {});
  EXPECT_EQ(count_params(t5).total - count_params(prenorm).total, 2 * 32 * 4);
  exec::Model model(t5.graph, registry(), 1, default_dims());
  EXPECT_EQ(model.parameters().size(), exec::Model(prenorm.graph, registry(), 1, default_dims()).parameters().size() + 2);
  for (const char* name : {"encoder_relative_bias.posenc.bias", "decoder_relative_bias.posenc.bias"}) {
    ASSERT_TRUE(model.parameters().find(name)) << name;
    EXPECT_EQ(model.parameters().at(name).spec.shape, (Shape{32, 4})) << name;
  }
}

TEST(TransformerBase, ParameterCountsForTable3Rows) {
  EXPECT_EQ(count_params(base()).total, expected_params(37000, 6, 512, 2048, 8, 64, 64));
  EXPECT_EQ(count_params(base()).total, 63045632);
  // (A) heads: d_k = d_v = d_model / heads follow.
  EXPECT_EQ(count_params(base({"heads=1"})).total, expected_params(37000, 6, 512, 2048, 1, 512, 512));
  EXPECT_EQ(count_params(base({"heads=32"})).total, expected_params(37000, 6, 512, 2048, 32, 16, 16));
  // (B) keys shrink, values do not.
  ElaboratedModel b = base({"d_k=16"});
  EXPECT_EQ(count_params(b).total, expected_params(37000, 6, 512, 2048, 8, 16, 64));
  for (const auto& n : b.graph.nodes())
    if (n.type() == "attention.scaled_dot") {
      EXPECT_EQ(ir::to_attrs(n).get_int("d_k"), 16);
      EXPECT_EQ(ir::to_attrs(n).get_int("d_v"), 64);
    }
  // (C)
  EXPECT_EQ(count_params(base({"layers=2"})).total, expected_params(37000, 2, 512, 2048, 8, 64, 64));
  EXPECT_EQ(count_params(base({"d_model=256", "d_k=32", "d_v=32"})).total, expected_params(37000, 6, 256, 2048, 8, 32, 32));
  EXPECT_EQ(count_params(base({"d_ff=4096"})).total, expected_params(37000, 6, 512, 4096, 8, 64, 64));
  // (E) learned positions: one table of max_len 1024 for the source and one for the target.
  ElaboratedModel e = base({}, {"posenc=posenc.learned"});
  EXPECT_EQ(count_params(e).total, expected_params(37000, 6, 512, 2048, 8, 64, 64) + 2 * 1024 * 512);
  // big
  EXPECT_EQ(count_params(base({"d_model=1024", "d_ff=4096", "heads=16", "dropout=0.3"})).total,
            expected_params(37000, 6, 1024, 4096, 16, 64, 64));
}

TEST(TransformerBase, ParamsByComponent) {
  const ParamCount c = count_params(base());
  EXPECT_EQ(c.by_component.at("embed"), 37000 * 512);
  EXPECT_EQ(c.by_component.at("encoder") + c.by_component.at("decoder") + c.by_component.at("embed"), c.total);
  EXPECT_EQ(c.by_slot.at("attention"), 18 * 4 * 512 * 512);
  EXPECT_EQ(c.by_slot.at("norm"), 30 * 2 * 512);
}

TEST(TransformerBase, SwapsEverySlot) {
  for (const char* use : {"attention=attention.additive", "attention=attention.grouped_query", "attention=attention.local",
                          "norm=norm.rms", "ffn=ffn.gelu", "ffn=ffn.swiglu", "posenc=posenc.rotary", "posenc=posenc.alibi",
                          "posenc=posenc.none"}) {
    ElaboratedModel m = base({}, {use});
    const std::string type = std::string(use).substr(std::string(use).find('=') + 1);
    bool found = false;
    for (const auto& n : m.graph.nodes()) found = found || n.type() == type;
    EXPECT_TRUE(found) << use;
  }
}

std::string errors_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DslError& e) {
    return e.what();
  }
  return "";
}

TEST(Overrides, UnknownNameListsTheValidOnesAndTheNearest) {
  const std::string text = errors_of([] { base({"d_modle=256"}); });
  EXPECT_NE(text.find("--set d_modle=256:1:1: error: unknown parameter or slot 'd_modle'; valid names: attention, d_ff, d_k, "
                      "d_model, d_v, dropout, emb_scale, embed_dropout, ffn, heads, label_smoothing, layers, norm, posenc, "
                      "residual_dropout, stack_end, sublayer, vocab; did you mean 'd_model'?"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("d_modle=256\n^\n"), std::string::npos) << text;
}

TEST(Overrides, UseChecksSlotAndType) {
  std::string text = errors_of([] { base({}, {"posenc=posenc.learnt"}); });
  EXPECT_NE(text.find("unknown node type 'posenc.learnt'"), std::string::npos) << text;
  EXPECT_NE(text.find("did you mean 'posenc.learned'?"), std::string::npos) << text;
  text = errors_of([] { base({}, {"heads=4"}); });
  EXPECT_NE(text.find("'heads' is a parameter, not a slot; use --set heads=VALUE"), std::string::npos) << text;
  text = errors_of([] { base({}, {"poscenc=posenc.learned"}); });
  EXPECT_NE(text.find("unknown slot 'poscenc'; valid names: attention, ffn, norm, posenc, stack_end, sublayer; did you mean 'posenc'?"),
            std::string::npos)
      << text;
  text = errors_of([] { base({"heads"}); });
  EXPECT_NE(text.find("--set expects NAME=VALUE, got 'heads'"), std::string::npos) << text;
}

TEST(Overrides, ValuesAreExpressionsOverParameters) {
  ElaboratedModel m = base({"d_ff=4 * d_model", "posenc=posenc.learned"});
  for (const auto& [name, value] : m.params) {
    if (name == "d_ff") {
      EXPECT_EQ(std::get<int64_t>(value), 2048);
    }
  }
  for (const auto& [slot, type] : m.slots) {
    if (slot == "posenc") {
      EXPECT_EQ(type, "posenc.learned");
    }
  }
}

TEST(Overrides, InvalidCombinationIsLocatedInTheSpec) {
  // grouped-query attention needs kv_heads to divide heads: the error points at the attention call.
  const std::string text = errors_of([] { base({"heads=6"}, {"attention=attention.grouped_query"}); });
  EXPECT_EQ(text, "") << "kv_heads=1 divides 6; expected success";
  const std::string bad = errors_of([] { base({"d_k=0"}); });
  EXPECT_NE(bad.find("transformer_base.attn:40:"), std::string::npos) << bad;
}

TEST(Overrides, UseBindsNamedAttributesWithTheType) {
  // kv_heads is not a parameter of the spec: the binding reaches it, at every attention call.
  ElaboratedModel m = base({"heads=8"}, {"attention=attention.grouped_query(kv_heads: heads div 4)"});
  int attention_nodes = 0;
  for (const auto& n : m.graph.nodes()) {
    if (n.type() != "attention.grouped_query") continue;
    ++attention_nodes;
    ASSERT_TRUE(n.attrs().count("kv_heads")) << n.name();
    EXPECT_EQ(n.attrs().at("kv_heads").i(), 2) << n.name();
    EXPECT_EQ(n.attrs().at("heads").i(), 8) << n.name();  // the call's own attributes still hold
  }
  EXPECT_EQ(attention_nodes, 18);  // 6 encoder self, 6 decoder self, 6 decoder cross
  // Fewer key/value heads, fewer parameters than kv_heads = heads.
  ElaboratedModel full = base({}, {"attention=attention.grouped_query(kv_heads: 8)"});
  EXPECT_LT(count_params(m).total, count_params(full).total);
}

TEST(Overrides, UseAttributeErrorsPointIntoTheOverride) {
  std::string text = errors_of([] { base({}, {"attention=attention.local(windw: 4)"}); });
  EXPECT_NE(text.find("--use attention=attention.local(windw: 4):1:27: error: attention.local has no attribute 'windw'; "
                      "attributes: heads, d_k, d_v, causal, bias, posenc, shared_qk, score_scale, qk_norm, posenc_scope, window, mode, tile; did you mean 'window'?"),
            std::string::npos)
      << text;
  text = errors_of([] { base({}, {"attention=attention.local(4)"}); });
  EXPECT_NE(text.find("slot 'attention' takes a node type name, such as attention.scaled_dot, optionally with named "
                      "attributes: attention.scaled_dot(name: value)"),
            std::string::npos)
      << text;
  text = errors_of([] { base({}, {"attention=attention.local(window: true)"}); });
  EXPECT_NE(text.find("attention.local: attribute 'window' must be int, got"), std::string::npos) << text;
  text = errors_of([] { base({}, {"attention=attention.local(window: 0)"}); });
  EXPECT_NE(text.find("transformer_base.attn:40:5: error:"), std::string::npos) << text;
  EXPECT_NE(text.find("window must be at least 1"), std::string::npos) << text;
}

TEST(Overrides, PositionalSchemeAttributesReachAttention) {
  const std::vector<std::string> small = {"layers=1", "d_model=32", "d_ff=64", "heads=4", "vocab=50"};
  ElaboratedModel t5 = base(small, {"posenc=posenc.t5(num_buckets: 16, max_distance: 64)"});
  int attention_nodes = 0;
  for (const auto& n : t5.graph.nodes())
    if (n.type() == "attention.scaled_dot") {
      ++attention_nodes;
      EXPECT_EQ(ir::to_attrs(n).get_string("posenc"), "posenc.t5(max_distance: 64, num_buckets: 16)") << n.name();
    }
  EXPECT_EQ(attention_nodes, 3);
  exec::Model t5_model(t5.graph, registry(), 1, default_dims());
  int tables = 0;
  for (const exec::Parameter& p : t5_model.parameters())
    if (p.name.find("posenc.bias") != std::string::npos) {
      ++tables;
      EXPECT_EQ(p.spec.shape, (Shape{16, 4})) << p.name;
    }
  EXPECT_EQ(tables, 3);
  ElaboratedModel shaw = base(small, {"posenc=posenc.shaw(clip: 3)"});
  exec::Model shaw_model(shaw.graph, registry(), 1, default_dims());
  int key_tables = 0;
  for (const exec::Parameter& p : shaw_model.parameters())
    if (p.name.find("posenc.keys") != std::string::npos) {
      ++key_tables;
      EXPECT_EQ(p.spec.shape, (Shape{7, 8})) << p.name;  // 2·clip + 1 distances, d_k = 32 / 4
    }
  EXPECT_EQ(key_tables, 3);
  // The defaults otherwise: 32 buckets.
  ElaboratedModel plain = base(small, {"posenc=posenc.t5"});
  EXPECT_EQ(count_params(t5).total + 3 * (32 - 16) * 4, count_params(plain).total);
}

TEST(Overrides, BadPositionalSchemeAttributesAreLocatedErrors) {
  std::string text = errors_of([] { base({}, {"posenc=posenc.t5(num_buckets: 1)"}); });
  EXPECT_NE(text.find("transformer_base.attn:"), std::string::npos) << text;
  EXPECT_NE(text.find("num_buckets must give at least 2 buckets per direction, got num_buckets = 1"), std::string::npos) << text;
  text = errors_of([] { base({}, {"posenc=posenc.shaw(clip: 0)"}); });
  EXPECT_NE(text.find("clip must be at least 1, got 0"), std::string::npos) << text;
  text = errors_of([] { base({}, {"posenc=posenc.shaw(clips: 4)"}); });
  EXPECT_NE(text.find("--use posenc=posenc.shaw(clips: 4):1:20: error: posenc.shaw has no attribute 'clips'; attributes: clip; "
                      "did you mean 'clip'?"),
            std::string::npos)
      << text;
}

TEST(Overrides, BadMixtureAndBatchNormAttributesAreLocatedErrors) {
  std::string text = errors_of([] { base({}, {"ffn=ffn.moe(k: 5)"}); });
  EXPECT_NE(text.find("transformer_base.attn:33:46: error: node 'encoder.encoder_layer0.sublayer_1.ffn' (ffn.moe): k must be "
                      "between 1 and experts (4), got 5"),
            std::string::npos)
      << text;
  text = errors_of([] { base({}, {"norm=norm.batch(momentum: 2)"}); });
  EXPECT_NE(text.find("transformer_base.attn:33:29: error: node 'encoder.encoder_layer0.sublayer.norm' (norm.batch): momentum "
                      "must be in (0, 1], got 2.0"),
            std::string::npos)
      << text;
}

TEST(Overrides, ASlotMayBindABlockOfTheModel) {
  const std::vector<std::string> small = {"layers=2", "d_model=32", "d_ff=64", "heads=4", "vocab=50"};
  const ElaboratedModel post = base(small);
  // The paper's sublayer, bound through the slot, keeps the names its nodes always had.
  EXPECT_TRUE(find_node(post.graph, "encoder.encoder_layer0.sublayer.norm")) << ir::to_text(post.graph);
  const ElaboratedModel pre = base(small, {"sublayer=pre_norm", "stack_end=final_norm"});
  const ElaboratedModel prenorm_file =
      elaborate_target(std::string(ATTNLAB_SOURCE_DIR) + "/experiments/transformer_prenorm.attn", registry(), small, {});
  EXPECT_EQ(count_params(pre).total, count_params(prenorm_file).total);
  EXPECT_EQ(count_params(pre).total, count_params(post).total + 2 * 2 * 32) << "a final norm on each stack";
  const ElaboratedModel plain = base(small, {"sublayer=no_residual"});
  EXPECT_EQ(count_params(plain).total, count_params(post).total);
  EXPECT_LT(plain.graph.nodes_size(), post.graph.nodes_size()) << "no residual additions";

  std::string text = errors_of([] { base({}, {"sublayer=pre_nrom"}); });
  EXPECT_NE(text.find("--use sublayer=pre_nrom:1:10: error: unknown node type or block 'pre_nrom'; the model's blocks: "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("did you mean 'pre_norm'?"), std::string::npos) << text;
  text = errors_of([] { base({}, {"sublayer=pre_norm(p: 1)"}); });
  EXPECT_NE(text.find("slot 'sublayer' names block 'pre_norm', which takes no attributes"), std::string::npos) << text;
}

// ---- Small models written in the tests ----------------------------------------------------------

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() / ("attnlab_dsl_test_" + std::to_string(::getpid()) + "_" +
                                                     std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    std::filesystem::create_directories((path / name).parent_path());
    std::ofstream(path / name) << text;
    return path / name;
  }
};

ElaboratedModel elaborate_text(const std::string& text, const std::vector<std::string>& sets = {}) {
  TempDir dir;
  return elaborate_target(dir.write("m.attn", text), registry(), sets, {});
}

const std::string kHeader = R"(
  param vocab = 11, d = 8
  input src: ids(vocab)[batch, src_len]
)";

TEST(Language, RepeatGivesDistinctWeightsUnlessShared) {
  const std::string body = kHeader + R"(
  block layer(x) = x + linear(x, out: d)
  e = embedding(vocab, d)(src)
)";
  ElaboratedModel distinct = elaborate_text("model m {" + body + "  output y = repeat(3) layer(e)\n}\n");
  ElaboratedModel shared = elaborate_text("model m {" + body + "  output y = repeat(3, shared) layer(e)\n}\n");
  const int64_t linear = 8 * 8 + 8, table = 11 * 8;
  EXPECT_EQ(count_params(distinct).total, table + 3 * linear);
  EXPECT_EQ(count_params(shared).total, table + linear);
  std::set<std::string> scopes;
  for (const auto& n : shared.graph.nodes())
    if (n.type() == "linear") scopes.insert(n.param_scope());
  EXPECT_EQ(scopes.size(), 1u);
  EXPECT_FALSE(scopes.begin()->empty());
  int linears = 0;
  for (const auto& n : shared.graph.nodes()) linears += n.type() == "linear";
  EXPECT_EQ(linears, 3);
  // repeat(0) is the identity.
  ElaboratedModel none = elaborate_text("model m {" + body + "  output y = repeat(0) layer(e)\n}\n");
  EXPECT_EQ(count_params(none).total, table);
}

TEST(Language, AComponentValueAppliedTwiceSharesItsWeights) {
  ElaboratedModel m = elaborate_text("model m {" + kHeader + R"(
  proj = linear(out: d)
  e = embedding(vocab, d)(src)
  a = proj(e)
  b = proj(a)
  c = linear(out: d)(b)
  output y = c
}
)");
  EXPECT_EQ(count_params(m).total, 11 * 8 + 2 * (8 * 8 + 8));
}

TEST(Language, ArithmeticAndBuiltins) {
  ElaboratedModel m = elaborate_text("model m {" + kHeader + R"(
  param a = 7 div 2, b = -7 div 2, c = 7 mod 3, f = 7 / 2, g = sqrt(16), h = min(3, 2.5), i = max(1, 4)
  param j = (1 + 2) * 3 - 4
  output y = embedding(vocab, d)(src)
}
)");
  std::map<std::string, AttrValue> p(m.params.begin(), m.params.end());
  EXPECT_EQ(std::get<int64_t>(p["a"]), 3);
  EXPECT_EQ(std::get<int64_t>(p["b"]), -4);  // floor division
  EXPECT_EQ(std::get<int64_t>(p["c"]), 1);
  EXPECT_DOUBLE_EQ(std::get<double>(p["f"]), 3.5);
  EXPECT_DOUBLE_EQ(std::get<double>(p["g"]), 4.0);
  EXPECT_DOUBLE_EQ(std::get<double>(p["h"]), 2.5);
  EXPECT_EQ(std::get<int64_t>(p["i"]), 4);
  EXPECT_EQ(std::get<int64_t>(p["j"]), 5);
}

TEST(Language, ImportsAreRelativeToTheImportingFile) {
  TempDir dir;
  dir.write("lib/blocks.attn", "import \"more.attn\"\nblock residual(x, f) = x + f(x)\n");
  dir.write("lib/more.attn", "param width = 8\n");
  auto path = dir.write("models/m.attn", "import \"../lib/blocks.attn\"\nmodel m {\n  param vocab = 5\n"
                                          "  input src: ids(vocab)[batch, src_len]\n"
                                          "  output y = residual(embedding(vocab, width)(src), linear(out: width))\n}\n");
  ElaboratedModel m = elaborate_target(path, registry(), {}, {});
  EXPECT_EQ(count_params(m).total, 5 * 8 + 8 * 8 + 8);
}

TEST(Language, SlotUsedAsAValueGivesItsType) {
  ElaboratedModel m = elaborate_text("model m {" + kHeader + R"(
  use posenc = posenc.rotary
  use attention = attention.scaled_dot
  e = embedding(vocab, d)(src)
  output y = attention(e, e, heads: 2, d_k: 4, d_v: 4, posenc: posenc)
}
)");
  for (const auto& n : m.graph.nodes()) {
    if (n.type() == "attention.scaled_dot") {
      EXPECT_EQ(ir::to_attrs(n).get_string("posenc"), "posenc.rotary");
    }
  }
}

TEST(Experiment, ReadsSectionsAndAppliesSets) {
  TempDir dir;
  std::filesystem::copy_file(kBase, dir.path / "transformer_base.attn");
  auto path = dir.write("exp.attn", R"(
experiment small {
  model = "transformer_base.attn" with { layers = 2, d_model = 64, d_ff = 128, heads = 4, posenc = posenc.learned }
  data = parallel(src: "de", tgt: "en", dir: "multi30k")
  train { adam(0.9, 0.98, 1e-9), noam(warmup: 4000), label_smoothing: 0.1, batch_tokens: 4096 }
  decode { beam: 4, alpha: 0.6 }
  ablate { heads = [1, 2, 8]; posenc = [posenc.sinusoidal] }
}
)");
  ExperimentSpec spec = load_experiment(path);
  EXPECT_EQ(spec.name, "small");
  EXPECT_EQ(spec.model_path, dir.path / "transformer_base.attn");
  ASSERT_NE(spec.find("train.adam"), nullptr);
  EXPECT_EQ(spec.find("train.adam")->value.to_string(), "adam(0.9, 0.98, 1e-09)");
  EXPECT_EQ(spec.find("train.noam")->value.arg("warmup")->i, 4000);
  EXPECT_EQ(spec.find("decode.alpha")->value.f, 0.6);
  EXPECT_EQ(spec.find("ablate.heads")->value.items.size(), 3u);
  EXPECT_EQ(spec.find("data")->value.arg("src")->text, "de");
  EXPECT_EQ(spec.find("train.max_steps"), nullptr);
  apply_set(spec, "train.max_steps=200");
  apply_set(spec, "train.label_smoothing=0.2");
  apply_set(spec, "layers=3");
  EXPECT_EQ(spec.find("train.max_steps")->value.i, 200);
  EXPECT_DOUBLE_EQ(spec.find("train.label_smoothing")->value.f, 0.2);
  ElaboratedModel m = elaborate_experiment_model(spec, registry());
  std::map<std::string, AttrValue> p(m.params.begin(), m.params.end());
  EXPECT_EQ(std::get<int64_t>(p["layers"]), 3);  // the command line wins over `with`
  EXPECT_EQ(std::get<int64_t>(p["d_model"]), 64);
  std::map<std::string, std::string> s(m.slots.begin(), m.slots.end());
  EXPECT_EQ(s["posenc"], "posenc.learned");
  const std::string text = errors_of([&] { apply_set(spec, "trian.max_steps=1"); });
  EXPECT_NE(text.find("unknown section 'trian'; valid sections: train, decode, ablate; did you mean 'train'?"), std::string::npos) << text;
}

}  // namespace
}  // namespace attnlab::dsl

namespace attnlab::dsl {
namespace {

// The tutorial in docs/dsl.md, checked.
TEST(Tutorial, PreNormVariant) {
  ElaboratedModel pre = elaborate_target(std::string(ATTNLAB_SOURCE_DIR) + "/experiments/transformer_prenorm.attn",
                                         registry(), {}, {});
  EXPECT_EQ(count_params(pre).total, count_params(base()).total + 2 * 2 * 512);
  // The residual path is an identity: the first sublayer's add reads the embedding output directly.
  bool found = false;
  for (const auto& n : pre.graph.nodes())
    if (n.name() == "encoder.encoder_layer0.sublayer.add") {
      found = true;
      EXPECT_EQ(n.inputs(0), "encoder.embed_positions.dropout");
    }
  EXPECT_TRUE(found);
  EXPECT_EQ(count_params(elaborate_target(std::string(ATTNLAB_SOURCE_DIR) + "/experiments/transformer_prenorm.attn",
                                          registry(), {"layers=2"}, {})).total,
            count_params(base({"layers=2"})).total + 2 * 2 * 512);
}

std::string tutorial_model(const std::string& use) {
  std::string text;
  std::ifstream in(kBase);
  std::stringstream s;
  s << in.rdbuf();
  text = s.str();
  auto replace = [&](const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) text.replace(at, from.size(), to);
  };
  replace("use attention = attention.scaled_dot", "use attention = " + use + "\n  param window = 16");
  replace("attention(x, x, mask, heads: heads, d_k: d_k, d_v: d_v, causal: causal, posenc: posenc)",
          "attention(x, x, mask, heads: heads, d_k: d_k, d_v: d_v, causal: causal, posenc: posenc, window: window)");
  return text;
}

TEST(Tutorial, SwappingTheAttentionAndAddingAParameter) {
  TempDir dir;
  auto local = dir.write("local.attn", tutorial_model("attention.local"));
  ElaboratedModel m = elaborate_target(local, registry(), {"window=64"}, {});
  int windows = 0;
  for (const auto& n : m.graph.nodes())
    if (n.type() == "attention.local" && n.name().find("self_attention") != std::string::npos) {
      EXPECT_EQ(ir::to_attrs(n).get_int("window"), 64);
      ++windows;
    }
  EXPECT_EQ(windows, 12);  // encoder and decoder self-attention (cross-attention keeps the default)
  std::string text = errors_of([&] { elaborate_target(local, registry(), {"windw=64"}, {}); });
  EXPECT_NE(text.find("unknown parameter or slot 'windw'"), std::string::npos) << text;
  EXPECT_NE(text.find("did you mean 'window'?"), std::string::npos) << text;
  text = errors_of([&] { elaborate_target(local, registry(), {}, {"attention=attention.scaled_dot"}); });
  EXPECT_NE(text.find("attention.scaled_dot has no input or attribute 'window'"), std::string::npos) << text;
}

}  // namespace
}  // namespace attnlab::dsl
