// decode_throughput — greedy decoding speed on the Multi30k-sized model (transformer_base with
// layers=3 d_model=256 heads=8 d_ff=1024 vocab=8000, random weights): a batch of 128 sentences,
// 24 target tokens each, with the key/value cache and, for comparison, recomputing the decoder on
// the whole prefix every step. Prints tokens/s (best of --reps). Usage:
//   decode_throughput [--threads N] [--batch B] [--tokens T] [--reps R] [--no-recompute]
#include "dsl/elaborate.h"
#include "eval/decoder.h"
#include "exec/tbb_executor.h"
#include "model_fixture.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

using namespace attnlab;

int main(int argc, char** argv) {
  int threads = 0, batch = 128, tokens = 24, reps = 3;
  bool recompute = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--threads") threads = next();
    else if (a == "--batch") batch = next();
    else if (a == "--tokens") tokens = next();
    else if (a == "--reps") reps = next();
    else if (a == "--no-recompute") recompute = false;
    else {
      std::fprintf(stderr, "decode_throughput: unknown argument %s\n", a.c_str());
      return 1;
    }
  }
  const ir::GraphDef graph =
      test::base_graph({"layers=3", "d_model=256", "heads=8", "d_ff=1024", "vocab=8000"});
  auto model = test::make_model(graph, 1);
  exec::TbbExecutor executor(threads);
  // Sources of 24 tokens; the target is forced to `tokens` steps (no early </s>).
  std::vector<std::vector<int>> sources(batch, std::vector<int>(24));
  for (int i = 0; i < batch; ++i)
    for (int j = 0; j < 24; ++j) sources[i][j] = 4 + (i * 31 + j * 7) % 7990;

  auto now = [] { return std::chrono::steady_clock::now(); };
  double best_cached = 0.0, best_steps = 0.0, setup_seconds = 0.0;
  for (int r = 0; r < reps; ++r) {
    const auto start = now();
    eval::DecodeSession session(*model, executor, sources, 1, tokens, threads);
    const auto stepping = now();
    std::vector<int> feed(batch, eval::kDecodeBosId);
    for (int p = 0; p < tokens; ++p) {
      const float* logits = session.step(feed);
      for (int i = 0; i < batch; ++i) {
        const float* row = logits + static_cast<int64_t>(i) * session.vocab();
        feed[i] = static_cast<int>(std::max_element(row, row + session.vocab()) - row);
        if (feed[i] == eval::kDecodeEosId) feed[i] = 4;  // keep going: the measurement is per token
      }
    }
    const auto end = now();
    const double seconds = std::chrono::duration<double>(end - start).count();
    const double step_seconds = std::chrono::duration<double>(end - stepping).count();
    if (batch * tokens / seconds > best_cached) setup_seconds = std::chrono::duration<double>(stepping - start).count();
    best_cached = std::max(best_cached, batch * tokens / seconds);
    best_steps = std::max(best_steps, batch * tokens / step_seconds);
  }
  std::printf("greedy, key/value cache: %.0f tokens/s including the encoder and cache set-up (%.3f s); "
              "%.0f tokens/s in the decode steps alone  (batch %d, %d tokens)\n",
              best_cached, setup_seconds, best_steps, batch, tokens);

  {  // Decoder::greedy end to end (stops rows at </s>; the limit is source length + extra).
    eval::Decoder decoder(*model, executor);
    eval::DecodeOptions options;
    options.beam = 1;
    options.max_len_extra = tokens - 24;
    options.threads = threads;
    const auto start = now();
    const auto out = decoder.greedy(sources, options);
    const double seconds = std::chrono::duration<double>(now() - start).count();
    int64_t produced = 0;
    for (const auto& t : out) produced += t.length;
    std::printf("Decoder::greedy: %lld tokens in %.3f s: %.0f tokens/s\n", static_cast<long long>(produced), seconds,
                produced / seconds);
  }

  if (recompute) {
    eval::Decoder decoder(*model, executor);
    eval::DecodeOptions options;
    options.beam = 1;
    options.max_len_extra = tokens - 24;
    const auto start = now();
    const auto out = decoder.greedy_without_cache(sources, options);
    const double seconds = std::chrono::duration<double>(now() - start).count();
    int64_t produced = 0;
    for (const auto& t : out) produced += t.length;
    std::printf("greedy, recomputing the prefix: %lld tokens in %.3f s: %.0f tokens/s\n",
                static_cast<long long>(produced), seconds, produced / seconds);
  }
  return 0;
}
