// Incremental decoding against recomputation, beam search against greedy, limits and errors, on
// small random-initialised transformer_base models with the real plugins.
#include "eval/decoder.h"
#include "exec/plan.h"
#include "exec/serial_executor.h"
#include "exec/tbb_executor.h"
#include "model_fixture.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iterator>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <random>

namespace attnlab {
namespace {

using eval::DecodeOptions;
using eval::Decoder;
using eval::DecodeSession;
using eval::Translation;

std::vector<std::vector<int>> random_sources(int count, int vocab, uint32_t seed, int min_len = 1, int max_len = 7) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> length(min_len, max_len), id(4, vocab - 1);
  std::vector<std::vector<int>> out(count);
  for (auto& s : out) {
    s.resize(length(gen));
    for (int& t : s) t = id(gen);
  }
  return out;
}

// Logits of the last position of `prefix` for one source, recomputing the whole decoder.
std::vector<float> full_logits(exec::Model& model, exec::Executor& executor, const std::vector<int>& source,
                               const std::vector<int>& prefix) {
  const int64_t S = std::max<int64_t>(1, source.size()), T = prefix.size();
  Tensor src({1, S}), tgt({1, T});
  for (size_t j = 0; j < source.size(); ++j) src.data()[j] = static_cast<float>(source[j]);
  for (int64_t t = 0; t < T; ++t) tgt.data()[t] = static_cast<float>(prefix[t]);
  exec::Plan& plan = model.plan({{"batch", 1}, {"src_len", S}, {"tgt_len", T}}, {"src", "tgt_in"}, {"logits"});
  executor.forward(plan, {{"src", src.view()}, {"tgt_in", tgt.view()}}, StepInfo{}, 0);
  const TensorView& logits = plan.value("logits");
  const int64_t V = logits.dim(-1);
  return std::vector<float>(logits.data() + (T - 1) * V, logits.data() + T * V);
}

struct Variant {
  const char* name;
  std::vector<std::string> uses;
};

class CachedDecoding : public ::testing::TestWithParam<Variant> {};

// Greedy with the cache equals greedy recomputing the decoder on the whole prefix every step.
void expect_greedy_equals_recomputation(exec::Model& model) {
  exec::SerialExecutor executor;
  Decoder decoder(model, executor);
  const auto sources = random_sources(5, 40, 11, 1, 9);
  DecodeOptions options;
  options.beam = 1;
  options.max_len_extra = 8;
  const auto cached = decoder.greedy(sources, options);
  const auto reference = decoder.greedy_without_cache(sources, options);
  ASSERT_EQ(cached.size(), sources.size());
  int64_t total = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    EXPECT_EQ(cached[i].tokens, reference[i].tokens) << "sentence " << i;
    EXPECT_EQ(cached[i].finished, reference[i].finished) << "sentence " << i;
    EXPECT_NEAR(cached[i].log_prob, reference[i].log_prob, 1e-3) << "sentence " << i;
    total += cached[i].length;
  }
  EXPECT_GT(total, static_cast<int64_t>(sources.size()) * 2) << "too short to test the cache";
}

TEST_P(CachedDecoding, GreedyEqualsRecomputation) {
  auto model = test::make_model(test::base_graph(test::small_sets(), GetParam().uses), 7);
  expect_greedy_equals_recomputation(*model);
}

// Step by step, with beams reordered between steps: every row's logits equal a full recomputation
// of the prefix that row now holds.
TEST_P(CachedDecoding, StepLogitsAfterReorderEqualRecomputation) {
  const Variant& v = GetParam();
  auto model = test::make_model(test::base_graph(test::small_sets(), v.uses), 3);
  exec::SerialExecutor executor;
  const std::vector<std::vector<int>> sources = {{5, 9, 12, 30}, {7, 8}};
  DecodeSession session(*model, executor, sources, 2, 4);
  ASSERT_EQ(session.rows(), 4);
  ASSERT_EQ(session.vocab(), 40);
  std::vector<std::vector<int>> prefixes(4, std::vector<int>{eval::kDecodeBosId});
  const std::vector<std::vector<int>> feeds = {{2, 2, 2, 2}, {10, 11, 12, 13}, {20, 21, 22, 23}, {4, 5, 6, 7}};
  const std::vector<std::vector<int>> reorders = {{0, 1, 2, 3}, {1, 0, 3, 3}, {0, 0, 2, 3}, {1, 1, 2, 2}};
  for (size_t s = 0; s < feeds.size(); ++s) {
    session.reorder(reorders[s]);
    std::vector<std::vector<int>> moved(4);
    for (int r = 0; r < 4; ++r) moved[r] = prefixes[reorders[s][r]];
    prefixes = moved;
    for (int r = 0; r < 4; ++r)
      if (s > 0) prefixes[r].push_back(feeds[s][r]);
    const float* logits = session.step(feeds[s]);
    for (int r = 0; r < 4; ++r) {
      const auto expected = full_logits(*model, executor, sources[r / 2], prefixes[r]);
      float worst = 0.0f;
      for (int64_t t = 0; t < 40; ++t) worst = std::max(worst, std::abs(expected[t] - logits[r * 40 + t]));
      EXPECT_LT(worst, 2e-4f) << "step " << s << " row " << r;
    }
  }
  EXPECT_THROW(session.step(feeds[0]), eval::DecodeError);  // all 4 prepared steps are used
}

INSTANTIATE_TEST_SUITE_P(
    Variants, CachedDecoding,
    ::testing::Values(Variant{"scaled_dot_sinusoidal", {}},
                      Variant{"scaled_dot_rotary", {"posenc=posenc.rotary"}},
                      Variant{"scaled_dot_learned", {"posenc=posenc.learned"}},
                      Variant{"additive_sinusoidal", {"attention=attention.additive"}},
                      Variant{"grouped_query_rotary", {"attention=attention.grouped_query", "posenc=posenc.rotary"}},
                      Variant{"local_alibi", {"attention=attention.local", "posenc=posenc.alibi"}}),
    [](const auto& info) { return std::string(info.param.name); });

// Self-attention whose keys are a copy of the queries in a buffer of their own,
// attention(y, dropout(y, p: 0)): the decoder tells it is self-attention from the graph (the keys
// depend on the target), so cached decoding still equals recomputation. Telling self-attention by
// comparing buffers took it for cross-attention and decoded wrongly without an error.
TEST(CachedDecoding, SelfAttentionOnACopyOfItsInputIsStillSelfAttention) {
  std::ifstream in(std::string(ATTNLAB_SOURCE_DIR) + "/experiments/transformer_base.attn");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string self = "attention(x, x, mask,";
  ASSERT_NE(text.find(self), std::string::npos);
  text.replace(text.find(self), self.size(), "attention(x, dropout(x, p: 0.0), mask,");
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("attnlab-copied-keys-" + std::to_string(::getpid()) + ".attn");
  std::ofstream(path) << text;
  dsl::ElaborateOptions options;
  for (const std::string& set : test::small_sets()) options.overrides.push_back(dsl::parse_override(set, "--set"));
  const ir::GraphDef graph = dsl::elaborate_file(path, test::plugin_registry(), options).graph;
  std::filesystem::remove(path);
  auto model = test::make_model(graph, 7);
  expect_greedy_equals_recomputation(*model);
}

TEST(StepLimit, ThrowsBeyondPreparedSteps) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 3);
  exec::SerialExecutor executor;
  DecodeSession session(*model, executor, {{5, 6}}, 1, 2);
  const std::vector<int> feed = {eval::kDecodeBosId};
  session.step(feed);
  session.step(feed);
  try {
    session.step(feed);
    FAIL() << "expected DecodeError";
  } catch (const eval::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("beyond the 2 steps"), std::string::npos) << e.what();
  }
}

TEST(Reorder, RejectsMovesAcrossSentences) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 3);
  exec::SerialExecutor executor;
  DecodeSession session(*model, executor, {{5, 6}, {7}}, 2, 3);
  const std::vector<int> across = {0, 2, 2, 3};
  EXPECT_THROW(session.reorder(across), eval::DecodeError);
}

TEST(BeamSearch, BeamOneEqualsGreedy) {
  for (uint64_t seed : {1, 2, 3}) {
    auto model = test::make_model(test::base_graph(test::small_sets()), seed);
    exec::TbbExecutor executor(2);
    Decoder decoder(*model, executor);
    const auto sources = random_sources(6, 40, static_cast<uint32_t>(seed) + 100);
    DecodeOptions options;
    options.beam = 1;
    options.max_len_extra = 10;
    const auto greedy = decoder.greedy(sources, options);
    const auto beam = decoder.beam_search(sources, options);
    for (size_t i = 0; i < sources.size(); ++i) {
      EXPECT_EQ(beam[i].tokens, greedy[i].tokens) << "seed " << seed << " sentence " << i;
      EXPECT_EQ(beam[i].finished, greedy[i].finished);
      EXPECT_DOUBLE_EQ(beam[i].log_prob, greedy[i].log_prob);
      EXPECT_DOUBLE_EQ(beam[i].score, greedy[i].score);
    }
  }
}

TEST(BeamSearch, BestScoreAtLeastGreedys) {
  int strictly_better = 0;
  for (uint64_t seed : {4, 5, 6}) {
    auto model = test::make_model(test::base_graph(test::small_sets()), seed);
    exec::TbbExecutor executor(2);
    Decoder decoder(*model, executor);
    const auto sources = random_sources(8, 40, static_cast<uint32_t>(seed) + 200);
    for (double alpha : {0.0, 0.6, 1.0}) {
      DecodeOptions options;
      options.alpha = alpha;
      options.max_len_extra = 10;
      options.beam = 1;
      const auto greedy = decoder.greedy(sources, options);
      options.beam = 4;
      const auto beam = decoder.beam_search(sources, options);
      for (size_t i = 0; i < sources.size(); ++i) {
        // Up to float rounding: beam search scores 4 rows per sentence where greedy scores one, and
        // a GEMM library's rounding may depend on a product's row count.
        EXPECT_GE(beam[i].score, greedy[i].score - 1e-5 * std::abs(greedy[i].score))
            << "seed " << seed << " alpha " << alpha << " sentence " << i;
        if (beam[i].score > greedy[i].score + 1e-6) ++strictly_better;
        // The reported score is the length-penalised log-probability of the reported tokens.
        EXPECT_NEAR(beam[i].score, beam[i].log_prob / eval::length_penalty(beam[i].length, alpha), 1e-9);
        EXPECT_EQ(beam[i].length, static_cast<int64_t>(beam[i].tokens.size()) + (beam[i].finished ? 1 : 0));
      }
    }
  }
  EXPECT_GT(strictly_better, 0) << "beam search never found anything better than greedy";
}

// The log-probability beam search reports is that of its tokens under the model.
TEST(BeamSearch, ReportedLogProbMatchesRescoring) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 9);
  exec::SerialExecutor executor;
  Decoder decoder(*model, executor);
  const auto sources = random_sources(4, 40, 77);
  DecodeOptions options;
  options.beam = 3;
  options.max_len_extra = 6;
  const auto beam = decoder.beam_search(sources, options);
  for (size_t i = 0; i < sources.size(); ++i) {
    std::vector<int> prefix = {eval::kDecodeBosId};
    double log_prob = 0.0;
    std::vector<int> targets = beam[i].tokens;
    if (beam[i].finished) targets.push_back(eval::kDecodeEosId);
    for (int target : targets) {
      const auto logits = full_logits(*model, executor, sources[i], prefix);
      log_prob += logits[target] - eval::log_normalizer(logits.data(), 40);
      prefix.push_back(target);
    }
    EXPECT_NEAR(beam[i].log_prob, log_prob, 1e-3) << "sentence " << i;
  }
}

TEST(Limits, OutputLengthAtMostSourcePlusExtra) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 12);
  exec::TbbExecutor executor(2);
  Decoder decoder(*model, executor);
  const auto sources = random_sources(10, 40, 5, 1, 6);
  for (int64_t extra : {0, 1, 3}) {
    for (int beam : {1, 4}) {
      DecodeOptions options;
      options.beam = beam;
      options.max_len_extra = extra;
      const auto out = decoder.translate(sources, options);
      int cut = 0;
      for (size_t i = 0; i < sources.size(); ++i) {
        const size_t limit = sources[i].size() + extra;
        EXPECT_LE(out[i].tokens.size(), limit) << "extra " << extra << " beam " << beam;
        if (!out[i].finished) {
          EXPECT_EQ(out[i].tokens.size(), limit) << "an unfinished hypothesis ends only at the limit";
          ++cut;
        }
        for (int t : out[i].tokens) {
          EXPECT_NE(t, eval::kDecodeBosId);
          EXPECT_NE(t, eval::kDecodeEosId);
        }
      }
      EXPECT_GT(cut, 0) << "no hypothesis reached the limit; the test shows nothing";
    }
  }
}

TEST(Limits, EmptySourceDecodes) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 12);
  exec::SerialExecutor executor;
  Decoder decoder(*model, executor);
  DecodeOptions options;
  options.max_len_extra = 3;
  const auto out = decoder.translate({{}, {5, 6, 7}}, options);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_LE(out[0].tokens.size(), 3u);
}

TEST(LengthPenalty, GnmtFormula) {
  EXPECT_DOUBLE_EQ(eval::length_penalty(1, 0.6), 1.0);
  EXPECT_NEAR(eval::length_penalty(7, 0.6), std::pow(2.0, 0.6), 1e-12);
  EXPECT_DOUBLE_EQ(eval::length_penalty(30, 0.0), 1.0);
}

// A confident model: the decoder's final layer norm gets gain 0 and bias 40·E[favoured] (E the tied
// output embedding), so every position's logits strongly prefer one token. Favouring a word, both
// searches produce it up to the length limit; favouring </s>, they produce nothing, finished.
void make_confident(exec::Model& model, int favoured) {
  const ir::GraphDef& graph = model.graph();
  int project = -1;
  for (int i = 0; i < graph.nodes_size(); ++i)
    if (graph.nodes(i).type() == "embedding.project") project = i;
  ASSERT_GE(project, 0);
  const int norm = model.node_index(graph.nodes(project).inputs(0));
  ASSERT_GE(norm, 0);
  ASSERT_EQ(graph.nodes(norm).type(), "norm.layer");
  auto& store = model.parameters();
  const TensorView table = store[model.node_parameters(project)[0]].value.view();
  const TensorView gain = store[model.node_parameters(norm)[0]].value.view();
  const TensorView bias = store[model.node_parameters(norm)[1]].value.view();
  const int64_t D = table.dim(1);
  gain.set_zero();
  for (int64_t d = 0; d < D; ++d) bias.data()[d] = 40.0f * table.data()[favoured * D + d];
}

TEST(Confident, FavouredTokenRepeatsToTheLimit) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 21);
  make_confident(*model, 17);
  exec::SerialExecutor executor;
  Decoder decoder(*model, executor);
  const std::vector<std::vector<int>> sources = {{5, 6, 7}, {8, 9}};
  for (int beam : {1, 4}) {
    DecodeOptions options;
    options.beam = beam;
    options.max_len_extra = 4;
    const auto out = decoder.translate(sources, options);
    for (size_t i = 0; i < sources.size(); ++i) {
      EXPECT_EQ(out[i].tokens, std::vector<int>(sources[i].size() + 4, 17)) << "beam " << beam;
      EXPECT_FALSE(out[i].finished);
      EXPECT_GT(out[i].log_prob, -0.01 * static_cast<double>(out[i].tokens.size()));
    }
  }
}

TEST(Confident, FavouredEndGivesEmptyFinishedOutput) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 21);
  make_confident(*model, eval::kDecodeEosId);
  exec::SerialExecutor executor;
  Decoder decoder(*model, executor);
  for (int beam : {1, 4}) {
    DecodeOptions options;
    options.beam = beam;
    const auto out = decoder.translate({{5, 6, 7}, {8, 9}}, options);
    for (const Translation& t : out) {
      EXPECT_TRUE(t.tokens.empty()) << "beam " << beam;
      EXPECT_TRUE(t.finished);
      EXPECT_EQ(t.length, 1);
      EXPECT_GT(t.log_prob, -0.01);
    }
  }
}

TEST(Errors, GraphWithoutDecoderOutputs) {
  ir::GraphDef graph = test::base_graph(test::small_sets());
  for (int i = graph.outputs_size() - 1; i >= 0; --i)
    if (graph.outputs(i).name() == "memory") graph.mutable_outputs()->DeleteSubrange(i, 1);
  auto model = test::make_model(graph, 1);
  exec::SerialExecutor executor;
  Decoder decoder(*model, executor);
  DecodeOptions options;
  try {
    decoder.translate({{5}}, options);
    FAIL() << "expected DecodeError";
  } catch (const eval::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("lacks output 'memory'"), std::string::npos) << e.what();
  }
}

TEST(Errors, BadOptions) {
  auto model = test::make_model(test::base_graph(test::small_sets()), 1);
  exec::SerialExecutor executor;
  Decoder decoder(*model, executor);
  DecodeOptions options;
  options.beam = 0;
  EXPECT_THROW(decoder.translate({{5}}, options), eval::DecodeError);
  options.beam = 2;
  options.max_len_extra = -1;
  EXPECT_THROW(decoder.translate({{5}}, options), eval::DecodeError);
}

}  // namespace
}  // namespace attnlab
