// tests/onnx/onnx_export_test.cpp — exported ONNX models run in ONNX Runtime (onnxruntime-node,
// installed into the build directory by install_onnxruntime.sh) against attnlab's own forward
// pass: teacher-forced logits of the Multi30k-size model at two batch and length shapes (one file:
// the axes are dynamic), the encoder and decoder graphs and greedy decoding with them, a language
// model of shakespeare_char_cpu's size, every component swap's logits and loss, and the errors
// (a node type without a lowering, a scheme inside attention, bad `attnlab export` arguments).
#include "dsl/elaborate.h"
#include "eval/decoder.h"
#include "exec/model.h"
#include "exec/serial_executor.h"
#include "node/plugin_loader.h"
#include "onnx/onnx_export.h"
#include "support/run_command.h"
#include "support/tiny_experiment.h"
#include "task/task.h"
#include "train/checkpoint.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>

namespace attnlab {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr float kTolerance = 1e-4f;  // the bound on |ONNX Runtime − attnlab| per logit

// ---- ONNX Runtime ----------------------------------------------------------------------------------

// Installs onnxruntime-node once per build directory. Empty: ready; otherwise why not.
struct RuntimeStatus {
  bool skip = false;
  std::string message;
};

const RuntimeStatus& onnx_runtime() {
  static const RuntimeStatus status = [] {
    const test::CommandResult r = test::run_command(std::string(ATTNLAB_SOURCE_DIR) + "/tests/onnx/install_onnxruntime.sh " +
                                                    ATTNLAB_ORT_DIR + " " + ATTNLAB_ORT_VERSION);
    RuntimeStatus s;
    if (r.exit_code == 77) s = {true, r.out + r.err};
    else if (r.exit_code != 0) s = {false, "install_onnxruntime.sh failed (exit " + std::to_string(r.exit_code) + "):\n" + r.out + r.err};
    return s;
  }();
  return status;
}

#define REQUIRE_ONNX_RUNTIME()                                                    \
  do {                                                                            \
    const RuntimeStatus& runtime = onnx_runtime();                                \
    if (runtime.skip) GTEST_SKIP() << "ONNX Runtime unavailable: " << runtime.message; \
    ASSERT_TRUE(runtime.message.empty()) << runtime.message;                      \
  } while (0)

// A tensor as attnlab holds it (floats) plus what ONNX Runtime is fed (int64 for ids).
struct Feed {
  Tensor value;
  bool ids = true;
};

void write_bytes(const fs::path& file, const void* data, size_t size) {
  std::ofstream out(file, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

json feed_json(const fs::path& dir, const std::string& name, const Feed& feed) {
  const fs::path file = dir / (name + ".feed.bin");
  const float* v = feed.value.data();
  const size_t n = static_cast<size_t>(feed.value.numel());
  if (feed.ids) {
    std::vector<int64_t> ids(v, v + n);
    write_bytes(file, ids.data(), n * sizeof(int64_t));
  } else {
    write_bytes(file, v, n * sizeof(float));
  }
  return {{"type", feed.ids ? "int64" : "float32"}, {"dims", feed.value.shape()}, {"file", file.string()}};
}

// Runs ort_run.js on `request` (its "answer" path set here) and returns the answer.
json run_ort(const fs::path& dir, json request) {
  const fs::path request_file = dir / "request.json", answer_file = dir / "answer.json";
  request["answer"] = answer_file.string();
  std::ofstream(request_file) << request.dump();
  const test::CommandResult r = test::run_command("NODE_PATH=" + std::string(ATTNLAB_ORT_DIR) + "/node_modules node " +
                                                  ATTNLAB_SOURCE_DIR + "/tests/onnx/ort_run.js " + request_file.string());
  if (r.exit_code != 0) throw std::runtime_error("ort_run.js failed (exit " + std::to_string(r.exit_code) + "):\n" + r.err);
  return json::parse(test::read_text_file(answer_file));
}

// One model run in ONNX Runtime: each fetched output as a tensor.
std::map<std::string, Tensor> ort_outputs(const fs::path& dir, const fs::path& model, const std::map<std::string, Feed>& feeds,
                                          const std::vector<std::string>& fetches) {
  json run = {{"model", model.string()}, {"fetches", fetches}, {"out", (dir / "out").string()}, {"feeds", json::object()}};
  for (const auto& [name, feed] : feeds) run["feeds"][name] = feed_json(dir, name, feed);
  const json answer = run_ort(dir, {{"runs", {run}}});
  std::map<std::string, Tensor> out;
  for (const std::string& name : fetches) {
    const json& o = answer["runs"][0][name];
    Tensor t(o["dims"].get<Shape>());
    std::ifstream in(o["file"].get<std::string>(), std::ios::binary);
    in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
    out[name] = std::move(t);
  }
  return out;
}

// ---- attnlab's side ------------------------------------------------------------------------------

const fs::path& plugin_dir() {  // holds the test plugin whose type has no ONNX lowering
  static const fs::path dir = ATTNLAB_ONNX_TEST_PLUGIN_DIR;
  return dir;
}

const Registry& registry() {
  static Registry* r = [] {
    auto* registry = new Registry();
    load_plugins(*registry, plugin_search_path({plugin_dir().string()}));
    return registry;
  }();
  return *r;
}

ir::GraphDef elaborate(const std::string& file, const std::vector<std::string>& sets, const std::vector<std::string>& uses = {}) {
  dsl::ElaborateOptions options;
  for (const std::string& s : sets) options.overrides.push_back(dsl::parse_override(s, "--set"));
  for (const std::string& u : uses) options.overrides.push_back(dsl::parse_override(u, "--use"));
  return dsl::elaborate_file(std::string(ATTNLAB_SOURCE_DIR) + "/experiments/" + file, registry(), options).graph;
}

std::unique_ptr<exec::Model> make_model(const ir::GraphDef& graph, uint64_t seed = 7) {
  return std::make_unique<exec::Model>(graph, registry(), seed, dsl::default_dims());
}

// Token ids [rows, length]: row r has lengths[r] ids in [4, vocab) (no <pad>, <s>, </s>, <unk>), then <pad>.
Tensor ids(const std::vector<int64_t>& lengths, int64_t length, int64_t vocab, uint32_t seed, float first = -1) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> id(4, vocab - 1);
  Tensor t({static_cast<int64_t>(lengths.size()), length}, 0.0f);
  for (size_t r = 0; r < lengths.size(); ++r)
    for (int64_t i = 0; i < lengths[r]; ++i) t.data()[r * length + i] = static_cast<float>(id(rng));
  if (first >= 0)
    for (size_t r = 0; r < lengths.size(); ++r) t.data()[r * length] = first;
  return t;
}

// attnlab's forward pass (inference) on `feeds`: each fetched graph output.
// The forward plan of `fetches` at the feeds' sizes, and the feeds as views.
exec::Plan& forward_plan(exec::Model& model, const std::map<std::string, Feed>& feeds, const std::vector<std::string>& fetches,
                         exec::TensorMap& views) {
  ir::DimBindings dims;
  std::vector<std::string> names;
  for (const auto& [name, feed] : feeds) {
    views[name] = feed.value.view();
    names.push_back(name);
    for (const ir::GraphInput& input : model.graph().inputs())
      if (input.name() == name)
        for (int d = 0; d < input.shape_size(); ++d)
          if (!input.shape(d).symbol().empty()) dims[input.shape(d).symbol()] = feed.value.shape()[d];
  }
  return model.plan(dims, names, fetches, exec::Pass::ForwardOnly);
}

std::map<std::string, Tensor> attnlab_outputs(exec::Model& model, const std::map<std::string, Feed>& feeds,
                                              const std::vector<std::string>& fetches) {
  exec::TensorMap views;
  exec::Plan& plan = forward_plan(model, feeds, fetches, views);
  exec::SerialExecutor executor;
  executor.forward(plan, views, StepInfo{}, 0);
  std::map<std::string, Tensor> out;
  for (const std::string& name : fetches) {
    const TensorView& v = plan.value(name);
    Tensor t(v.shape());
    std::copy(v.data(), v.data() + v.numel(), t.data());
    out[name] = std::move(t);
  }
  return out;
}

// Every element within kTolerance, shapes equal; the message names the first bad element.
// Running statistics (ParamKind::State, norm.batch) that match the activations of `feeds`: forty
// training forward passes (momentum 0.1 leaves 1.5 % of the start). Statistics far from the
// activations scale them up layer by layer, to logits where float32 resolves less than the
// comparison's 1e-4.
void settle_running_statistics(exec::Model& model, const std::map<std::string, Feed>& feeds, const std::vector<std::string>& fetches) {
  bool has_state = false;
  for (const exec::Parameter& p : model.parameters()) has_state = has_state || p.spec.kind == ParamKind::State;
  if (!has_state) return;
  exec::TensorMap views;
  exec::Plan& plan = forward_plan(model, feeds, fetches, views);
  exec::SerialExecutor executor;
  StepInfo training;
  training.training = true;
  for (int pass = 0; pass < 40; ++pass) executor.forward(plan, views, training, 0);
}

::testing::AssertionResult close(const Tensor& ort, const Tensor& ours, const std::string& what) {
  if (ort.shape() != ours.shape())
    return ::testing::AssertionFailure() << what << ": ONNX Runtime gives " << to_string(ort.shape()) << ", attnlab "
                                         << to_string(ours.shape());
  float worst = 0.0f;
  for (int64_t i = 0; i < ours.numel(); ++i) {
    const float d = std::fabs(ort.data()[i] - ours.data()[i]);
    if (!(d <= kTolerance))
      return ::testing::AssertionFailure() << what << "[" << i << "]: ONNX Runtime " << ort.data()[i] << ", attnlab "
                                           << ours.data()[i];
    worst = std::max(worst, d);
  }
  std::cout << what << ": " << ours.numel() << " values, largest difference " << worst << "\n";
  return ::testing::AssertionSuccess();
}

// The graph of `selection` exported and written to dir/NAME.onnx.
fs::path export_to(const exec::Model& model, const onnx::GraphSelection& selection, const fs::path& dir) {
  const fs::path file = dir / (selection.name + ".onnx");
  const std::string bytes = onnx::to_onnx(model, selection);
  write_bytes(file, bytes.data(), bytes.size());
  return file;
}

const onnx::GraphSelection& selection(const task::Task& task, const std::string& name) {
  static std::map<std::string, std::vector<onnx::GraphSelection>> all;
  auto& graphs = all[task.name()];
  if (graphs.empty()) graphs = onnx::task_graphs(task);
  for (const onnx::GraphSelection& s : graphs)
    if (s.name == name) return s;
  throw std::runtime_error("no graph " + name);
}

// ---- The Multi30k-size translation model -------------------------------------------------------

// experiments/multi30k.attn's model (3 layers, d_model 256, 8 heads, FFN 512) with a vocabulary of
// Multi30k's size, freshly initialised, exported once for the tests below.
class Multi30kSize : public ::testing::Test {
 protected:
  static constexpr int64_t kVocab = 6000;
  static void SetUpTestSuite() {
    dir_ = new fs::path(test::make_temp_dir("attnlab-onnx-"));
    model_ = make_model(elaborate("transformer_base.attn", {"layers=3", "d_model=256", "d_ff=512", "heads=8",
                                                            "vocab=" + std::to_string(kVocab)}))
                 .release();
    const task::Task& t = task::translation();
    for (const char* name : {"model", "encoder", "decoder"}) export_to(*model_, selection(t, name), *dir_);
  }
  static void TearDownTestSuite() {
    delete model_;
    fs::remove_all(*dir_);
    delete dir_;
  }
  static fs::path* dir_;
  static exec::Model* model_;
};
fs::path* Multi30kSize::dir_ = nullptr;
exec::Model* Multi30kSize::model_ = nullptr;

TEST_F(Multi30kSize, TeacherForcedLogitsEqualAttnlabsAtTwoShapesOfOneFile) {
  REQUIRE_ONNX_RUNTIME();
  // Two batch sizes and lengths through the same file (dynamic axes), with padded rows.
  for (const auto& [src_lengths, src_len, tgt_lengths, tgt_len] :
       {std::tuple<std::vector<int64_t>, int64_t, std::vector<int64_t>, int64_t>{{9, 5, 7}, 9, {7, 4, 6}, 7},
        {{3, 12}, 12, {11, 2}, 11}}) {
    const std::map<std::string, Feed> feeds = {{"src", {ids(src_lengths, src_len, kVocab, 1)}},
                                               {"tgt_in", {ids(tgt_lengths, tgt_len, kVocab, 2, 2.0f)}}};
    const auto ours = attnlab_outputs(*model_, feeds, {"logits"});
    const auto ort = ort_outputs(*dir_, *dir_ / "model.onnx", feeds, {"logits"});
    EXPECT_TRUE(close(ort.at("logits"), ours.at("logits"), "logits " + to_string(ours.at("logits").shape())));
  }
}

TEST_F(Multi30kSize, EncoderThenDecoderGraphsGiveTheSameLogits) {
  REQUIRE_ONNX_RUNTIME();
  const std::map<std::string, Feed> feeds = {{"src", {ids({6, 8}, 8, kVocab, 3)}}, {"tgt_in", {ids({5, 3}, 5, kVocab, 4, 2.0f)}}};
  const auto ours = attnlab_outputs(*model_, feeds, {"logits", "memory"});
  const auto memory = ort_outputs(*dir_, *dir_ / "encoder.onnx", {{"src", feeds.at("src")}}, {"memory"});
  EXPECT_TRUE(close(memory.at("memory"), ours.at("memory"), "memory"));
  std::map<std::string, Feed> decoder_feeds = feeds;
  decoder_feeds["memory"] = {memory.at("memory"), false};
  const auto logits = ort_outputs(*dir_, *dir_ / "decoder.onnx", decoder_feeds, {"logits"});
  EXPECT_TRUE(close(logits.at("logits"), ours.at("logits"), "decoder logits"));
}

TEST_F(Multi30kSize, GreedyDecodingWithTheExportedGraphsEqualsAttnlabs) {
  REQUIRE_ONNX_RUNTIME();
  const std::vector<std::vector<int>> sources = {{17, 230, 4512, 9, 88}, {1200, 5, 61}, {42, 42, 7, 3001, 15, 600, 2999}};
  exec::SerialExecutor executor;
  eval::Decoder decoder(*model_, executor);
  eval::DecodeOptions options;
  options.beam = 1;
  options.alpha = 0.0;
  options.max_len_extra = 3;
  const std::vector<eval::Translation> ours = decoder.greedy(sources, options);

  size_t longest = 0;
  for (const auto& s : sources) longest = std::max(longest, s.size());
  Tensor src({static_cast<int64_t>(sources.size()), static_cast<int64_t>(longest)}, 0.0f);
  for (size_t r = 0; r < sources.size(); ++r)
    for (size_t i = 0; i < sources[r].size(); ++i) src.data()[r * longest + i] = static_cast<float>(sources[r][i]);
  const json greedy = {{"encoder", (*dir_ / "encoder.onnx").string()}, {"decoder", (*dir_ / "decoder.onnx").string()},
                       {"src", feed_json(*dir_, "greedy_src", {src})},  {"steps", longest + 3},
                       {"bos", eval::kDecodeBosId}};
  const json answer = run_ort(*dir_, {{"greedy", {greedy}}});
  for (size_t r = 0; r < sources.size(); ++r) {
    // attnlab's rule: at most L + max_len_extra tokens, ending at </s> (not part of the output).
    std::vector<int> theirs;
    for (int token : answer["greedy"][0][r].get<std::vector<int>>()) {
      if (token == eval::kDecodeEosId || theirs.size() == sources[r].size() + 3) break;
      theirs.push_back(token);
    }
    EXPECT_EQ(theirs, ours[r].tokens) << "sentence " << r;
    EXPECT_GE(theirs.size(), 1u);
    std::cout << "sentence " << r << ": " << theirs.size() << " tokens, the same from both\n";
  }
}

// ---- A language model ------------------------------------------------------------------------------

TEST(OnnxExport, LanguageModelLogitsEqualAttnlabs) {
  REQUIRE_ONNX_RUNTIME();
  // experiments/shakespeare_char_cpu.attn's model.
  auto model = make_model(elaborate("gpt.attn", {"layers=4", "heads=4", "d_model=128", "block_size=64", "vocab=65"},
                                    {"posenc=posenc.learned(max_len: 64)"}));
  const fs::path dir = test::make_temp_dir("attnlab-onnx-");
  const fs::path file = export_to(*model, selection(task::language_model(), "model"), dir);
  for (int64_t length : {64, 9}) {
    const std::map<std::string, Feed> feeds = {{"input_ids", {ids({length, length}, length, 65, 5)}}};
    EXPECT_TRUE(close(ort_outputs(dir, file, feeds, {"logits"}).at("logits"), attnlab_outputs(*model, feeds, {"logits"}).at("logits"),
                      "language model logits, length " + std::to_string(length)));
  }
  fs::remove_all(dir);
}

// ---- Every component's lowering ----------------------------------------------------------------

struct Swap {
  std::string model;
  std::vector<std::string> uses;
};

void PrintTo(const Swap& swap, std::ostream* os) {
  *os << swap.model;
  for (const std::string& use : swap.uses) *os << " --use " << use;
}

class ComponentSwap : public ::testing::TestWithParam<Swap> {};

// Logits, and the loss with its counts (loss.cross_entropy's lowering), of a small model with one
// component swapped.
TEST_P(ComponentSwap, LogitsAndLossEqualAttnlabs) {
  REQUIRE_ONNX_RUNTIME();
  const Swap& swap = GetParam();
  const bool lm = swap.model == "gpt.attn";
  const int64_t vocab = 50;
  auto model = make_model(elaborate(swap.model, {"layers=2", "d_model=32", "heads=4", "vocab=" + std::to_string(vocab),
                                                 lm ? "d_ff=64" : "d_ff=48", "label_smoothing=0.1"},
                                    swap.uses));
  // Noise on every parameter: biases, norm offsets and T5's table start at zero, which would hide
  // a lowering that drops them.
  std::mt19937 rng(17);
  std::normal_distribution<float> noise(0.0f, 0.2f);
  for (exec::Parameter& p : model->parameters())
    for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data()[i] += noise(rng);
  onnx::GraphSelection everything = lm ? onnx::GraphSelection{"all", "", {"input_ids", "labels"}, {"logits", "loss", "tokens", "correct"}}
                                       : onnx::GraphSelection{"all", "", {"src", "tgt_in", "tgt_out"}, {"logits", "loss", "tokens", "correct"}};
  std::map<std::string, Feed> feeds;
  if (lm) {
    feeds = {{"input_ids", {ids({7, 7}, 7, vocab, 6)}}, {"labels", {ids({7, 7}, 7, vocab, 7)}}};
  } else {
    feeds = {{"src", {ids({6, 4}, 6, vocab, 6)}}, {"tgt_in", {ids({5, 3}, 5, vocab, 7, 2.0f)}}, {"tgt_out", {ids({5, 3}, 5, vocab, 8)}}};
  }
  settle_running_statistics(*model, feeds, everything.outputs);
  const fs::path dir = test::make_temp_dir("attnlab-onnx-");
  const fs::path file = export_to(*model, everything, dir);
  const auto ours = attnlab_outputs(*model, feeds, everything.outputs);
  const auto ort = ort_outputs(dir, file, feeds, everything.outputs);
  for (const std::string& name : everything.outputs) EXPECT_TRUE(close(ort.at(name), ours.at(name), name));
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    OnnxExport, ComponentSwap,
    ::testing::Values(Swap{"transformer_base.attn", {}}, Swap{"transformer_base.attn", {"attention=attention.additive"}},
                      Swap{"transformer_base.attn", {"attention=attention.grouped_query(kv_heads: 2, bias: true)"}},
                      Swap{"transformer_base.attn", {"attention=attention.local(window: 3, mode: \"centred\")"}},
                      Swap{"transformer_base.attn", {"attention=attention.scaled_dot(qk_norm: \"layer\", shared_qk: true)"}},
                      Swap{"transformer_base.attn", {"attention=attention.scaled_dot(qk_norm: \"rms\", score_scale: \"inv_d_k\")"}},
                      Swap{"transformer_base.attn", {"norm=norm.rms", "ffn=ffn.swiglu", "posenc=posenc.learned"}},
                      Swap{"transformer_base.attn", {"ffn=ffn.gelu", "posenc=posenc.none"}},
                      Swap{"transformer_base.attn", {"posenc=posenc.rotary"}},
                      Swap{"transformer_base.attn", {"posenc=posenc.alibi", "attention=attention.grouped_query(kv_heads: 2)"}},
                      Swap{"transformer_base.attn", {"posenc=posenc.t5(num_buckets: 8, max_distance: 6)"}},
                      Swap{"transformer_base.attn", {"posenc=posenc.shaw(clip: 2)"}},
                      // The design-question variants: BatchNorm (running statistics settled on the
                      // inputs), mixture of experts (k of E, ties by index), pre-norm, no residuals.
                      Swap{"transformer_base.attn", {"norm=norm.batch"}},
                      Swap{"transformer_base.attn", {"ffn=ffn.moe(experts: 4, k: 2)"}},
                      Swap{"transformer_base.attn", {"sublayer=pre_norm", "stack_end=final_norm"}},
                      Swap{"transformer_base.attn", {"sublayer=no_residual"}},
                      Swap{"gpt.attn", {}}, Swap{"gpt.attn", {"attention=attention.local(window: 2)", "norm=norm.rms"}},
                      Swap{"gpt.attn", {"posenc=posenc.rotary", "attention=attention.scaled_dot(qk_norm: \"layer\")"}},
                      Swap{"gpt.attn", {"posenc=posenc.alibi", "ffn=ffn.swiglu"}},
                      Swap{"gpt.attn", {"ffn=ffn.moe(experts: 3, k: 1)", "norm=norm.batch"}}),
    [](const ::testing::TestParamInfo<Swap>& info) {
      std::string name = info.param.model.substr(0, info.param.model.find('.')) + "_" + std::to_string(info.index);
      return name;
    });

// ---- Errors --------------------------------------------------------------------------------------

std::string export_error(const ir::GraphDef& graph) {
  auto model = make_model(graph);
  try {
    onnx::to_onnx(*model, selection(task::translation(), "model"));
  } catch (const onnx::ExportError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(OnnxExport, ANodeTypeWithoutALoweringIsAnErrorNamingTheNodeAndType) {
  // test.scale (tests/plugin_loader/test_plugins/scale_plugin.cpp) implements no lowering.
  const std::string message = export_error(elaborate("transformer_base.attn", {"layers=1", "d_model=16", "d_ff=32", "heads=2", "vocab=20"},
                                                     {"norm=test.scale"}));
  EXPECT_NE(message.find("transformer_base.attn:"), std::string::npos) << message;
  EXPECT_NE(message.find("(test.scale): has no ONNX lowering"), std::string::npos) << message;
  EXPECT_NE(message.find("node 'encoder.encoder_layer0.sublayer"), std::string::npos) << message;
}

TEST(OnnxExport, APositionalSchemeWithoutALoweringInsideAttentionIsAnErrorNamingIt) {
  // posenc.probe (tests/plugin_sdk/probe_posenc), an out-of-tree score bias with no lowering, inside
  // attention only (the model's posenc slot stays sinusoidal).
  const std::string message =
      export_error(elaborate("transformer_base.attn", {"layers=1", "d_model=16", "d_ff=32", "heads=2", "vocab=20"},
                             {"attention=attention.scaled_dot(posenc: \"posenc.probe\")"}));
  EXPECT_NE(message.find("(attention.scaled_dot): cannot be lowered to ONNX: its positional scheme posenc.probe adds a score "
                         "bias inside attention, which has no ONNX lowering"),
            std::string::npos)
      << message;
}

// ---- `attnlab export --format onnx` ------------------------------------------------------------

std::string attnlab(const std::string& args) { return std::string(ATTNLAB_EXE) + " " + args; }

// The model of a run directory's checkpoint, as attnlab export rebuilds it.
std::unique_ptr<exec::Model> checkpoint_model(const fs::path& run) {
  const ckpt::Checkpoint checkpoint = train::read_checkpoint(train::find_checkpoint(run.string()));
  ir::GraphDef graph;
  if (!graph.ParseFromString(checkpoint.graph())) throw std::runtime_error("no graph in " + run.string());
  auto model = make_model(graph);
  std::vector<train::ParamRef> params;
  for (exec::Parameter& p : model->parameters()) params.push_back({p.name, p.value.view(), p.grad.view()});
  train::load_parameters(checkpoint, params, run.string());
  return model;
}

int64_t vocab_of(const exec::Model& model, const std::string& ids_input) {
  for (const ir::GraphInput& input : model.graph().inputs())
    if (input.name() == ids_input) return input.bound();
  throw std::runtime_error("no input " + ids_input);
}

// The tiny experiment (tests/support/tiny_experiment.h) trained for two steps, shared by the tests.
class ExportCommand : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(test::make_temp_dir("attnlab-onnx-cli-"));
    experiment_ = new fs::path(test::write_tiny_experiment(
        *dir_ / "tiny.attn",
        test::tiny_experiment_text("batch_tokens: 256, max_steps: 2, valid_every: 0, checkpoint_every: 0, valid_bleu_sentences: 5"),
        ATTNLAB_SOURCE_DIR));
    run_ = new test::CommandResult(train("run"));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete experiment_;
    delete run_;
  }
  static test::CommandResult train(const std::string& name, const std::string& options = "") {
    return test::run_command(attnlab("run " + experiment_->string() + " --threads 2 --out " + (*dir_ / name).string() + " " + options));
  }
  static fs::path* dir_;
  static fs::path* experiment_;
  static test::CommandResult* run_;
};
fs::path* ExportCommand::dir_ = nullptr;
fs::path* ExportCommand::experiment_ = nullptr;
test::CommandResult* ExportCommand::run_ = nullptr;

// The Multi30k-size model (experiments/multi30k.attn's sizes), trained 20 steps on the synthetic task.
TEST_F(ExportCommand, WritesTheThreeGraphsOfATrainedRunAndTheirLogitsEqualAttnlabs) {
  const fs::path run = *dir_ / "m30k";
  const test::CommandResult trained =
      train("m30k", "--set layers=3 --set d_model=256 --set d_ff=512 --set heads=8 --set train.max_steps=20");
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const fs::path out = *dir_ / "m30k.onnx";
  const test::CommandResult r = test::run_command(attnlab("export --checkpoint " + run.string() + " --format onnx --out " + out.string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* file : {"m30k.onnx", "m30k.encoder.onnx", "m30k.decoder.onnx"}) {
    EXPECT_TRUE(fs::exists(*dir_ / file)) << file;
    EXPECT_NE(r.err.find((*dir_ / file).string()), std::string::npos) << r.err;
  }
  REQUIRE_ONNX_RUNTIME();
  const auto model = checkpoint_model(run);
  EXPECT_GT(model->parameters().element_count(), 4'000'000);  // 3 layers of width 256 (4.0M with this vocabulary)
  const int64_t vocab = vocab_of(*model, "src");
  const std::map<std::string, Feed> feeds = {{"src", {ids({8, 6, 3}, 8, vocab, 11)}}, {"tgt_in", {ids({9, 9, 2}, 9, vocab, 12, 2.0f)}}};
  EXPECT_TRUE(close(ort_outputs(*dir_, out, feeds, {"logits"}).at("logits"), attnlab_outputs(*model, feeds, {"logits"}).at("logits"),
                    "trained model's logits"));
}

// A language model (experiments/gpt.attn) trained 8 steps on a small text: one graph, input_ids → logits.
TEST_F(ExportCommand, WritesTheGraphOfALanguageModelRunAndItsLogitsEqualAttnlabs) {
  const fs::path data = *dir_ / "lm";
  fs::create_directories(data);
  std::ofstream text(data / "text.txt");
  for (int i = 0; i < 100; ++i) text << "to be, or not to be, that is the question:\nwhether 'tis nobler in the mind to suffer\n";
  text.close();
  fs::copy_file(fs::path(ATTNLAB_SOURCE_DIR) / "experiments/gpt.attn", data / "gpt.attn");
  std::ofstream(data / "lm.attn") << "experiment lm {\n  task = language_model\n"
                                     "  model = \"gpt.attn\" with { layers = 2, heads = 4, d_model = 32, block_size = 16,\n"
                                     "                            posenc = posenc.learned(max_len: block_size) }\n"
                                     "  data = text(file: \"text.txt\", vocab: \"char\")\n  seed = 3\n"
                                     "  train { adamw(0.9, 0.99, 1e-8, weight_decay: 0.1), cosine(warmup: 2, max_lr: 1e-2, min_lr: 1e-3, steps: 8),\n"
                                     "          dropout: 0.1, batch: 4, max_steps: 8, valid_every: 0, checkpoint_every: 0, valid_blocks: 4, samples: 0 }\n}\n";
  const fs::path run = *dir_ / "lm_run";
  const test::CommandResult trained = test::run_command(attnlab("run " + (data / "lm.attn").string() + " --threads 2 --data " +
                                                                data.string() + " --out " + run.string()));
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const fs::path out = *dir_ / "lm.onnx";
  const test::CommandResult r = test::run_command(attnlab("export --checkpoint " + run.string() + " --format onnx --out " + out.string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("exported the language_model model"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(*dir_ / "lm.encoder.onnx"));
  REQUIRE_ONNX_RUNTIME();
  const auto model = checkpoint_model(run);
  const std::map<std::string, Feed> feeds = {{"input_ids", {ids({16, 16, 16}, 16, vocab_of(*model, "input_ids"), 13)}}};
  EXPECT_TRUE(close(ort_outputs(*dir_, out, feeds, {"logits"}).at("logits"), attnlab_outputs(*model, feeds, {"logits"}).at("logits"),
                    "trained language model's logits"));
}

TEST_F(ExportCommand, AnUnknownFormatIsAnErrorNamingIt) {
  const test::CommandResult r =
      test::run_command(attnlab("export --checkpoint " + (*dir_ / "run").string() + " --format tflite --out " + (*dir_ / "x").string()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--format"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tflite"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(*dir_ / "x"));
}

TEST_F(ExportCommand, ACheckpointOfATaskWithoutAnExportIsAnError) {
  ASSERT_EQ(run_->exit_code, 0) << run_->err;
  ckpt::Checkpoint checkpoint = train::read_checkpoint(train::find_checkpoint((*dir_ / "run").string()));
  (*checkpoint.mutable_settings())["task"] = "image_classification";
  const fs::path file = *dir_ / "classifier.ckpt";
  train::write_checkpoint(file, checkpoint);
  const test::CommandResult r = test::run_command(attnlab("export --checkpoint " + file.string() + " --format onnx --out " + (*dir_ / "c.onnx").string()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("checkpoint " + file.string() + ": it was trained for the image_classification task, which cannot be exported to ONNX"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(*dir_ / "c.onnx"));
}

TEST_F(ExportCommand, ANodeWithoutALoweringFailsTheExportAndWritesNothing) {
  const fs::path run = *dir_ / "unlowered";
  const std::string plugins = " --plugin-path " + plugin_dir().string();
  const test::CommandResult trained = train("unlowered", "--use norm=test.scale --set train.max_steps=1" + plugins);
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const fs::path out = *dir_ / "unlowered.onnx";
  const test::CommandResult r = test::run_command(attnlab("export --checkpoint " + run.string() + " --format onnx --out " + out.string() + plugins));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the model graph cannot be exported to ONNX"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(test.scale): has no ONNX lowering"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(*dir_ / "unlowered.encoder.onnx"));
}

}  // namespace
}  // namespace attnlab
