// core/eval/sampler.cpp — see sampler.h.
#include "eval/sampler.h"

#include "data/random.h"
#include "eval/decoder.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

namespace attnlab::eval {

int draw_token(const float* row, int64_t vocab, double temperature, int64_t top_k, data::SplitMix64& random,
               std::vector<float>& scratch) {
  float threshold = -INFINITY;
  if (top_k > 0 && top_k < vocab) {
    scratch.assign(row, row + vocab);
    std::nth_element(scratch.begin(), scratch.begin() + (top_k - 1), scratch.end(), std::greater<float>());
    threshold = scratch[static_cast<size_t>(top_k - 1)];
  }
  const float top = *std::max_element(row, row + vocab);
  double total = 0;
  std::vector<double> weights(static_cast<size_t>(vocab), 0.0);
  for (int64_t i = 0; i < vocab; ++i)
    if (row[i] >= threshold) total += weights[static_cast<size_t>(i)] = std::exp((static_cast<double>(row[i]) - top) / temperature);
  const double u = static_cast<double>(random.next() >> 11) * 0x1.0p-53 * total;
  double cumulative = 0;
  int last = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (weights[static_cast<size_t>(i)] == 0) continue;
    cumulative += weights[static_cast<size_t>(i)];
    last = static_cast<int>(i);
    if (u < cumulative) return last;
  }
  return last;  // rounding: the last id with weight
}

std::vector<int> sample(exec::Model& model, const std::vector<int>& prompt, const SampleOptions& options) {
  if (prompt.empty()) throw SampleError("sampling needs a prompt of at least one token");
  if (!(options.temperature > 0) || !std::isfinite(options.temperature))
    throw SampleError("the temperature must be a finite number above 0, got " + std::to_string(options.temperature));
  if (options.tokens < 0) throw SampleError("the number of tokens must not be negative, got " + std::to_string(options.tokens));
  if (options.top_k < 0) throw SampleError("top-k must not be negative, got " + std::to_string(options.top_k));
  if (options.context == 1) throw SampleError("a context of one token cannot be sampled from");
  const int64_t wanted = static_cast<int64_t>(prompt.size()) + options.tokens;
  const int64_t capacity = options.context > 0 ? std::min(options.context, wanted) : wanted;
  data::SplitMix64 random(options.seed);
  std::vector<float> scratch;
  std::vector<int> sequence(prompt);
  if (options.context > 0 && static_cast<int64_t>(sequence.size()) > options.context)
    sequence.erase(sequence.begin(), sequence.end() - options.context);  // the prompt's last context tokens
  std::vector<int> out;
  out.reserve(static_cast<size_t>(options.tokens));
  std::unique_ptr<DecodeSession> session;
  const float* logits = nullptr;
  // (Re)primes a session with the last `keep` tokens of the sequence.
  auto prime = [&](size_t keep) {
    session.reset();  // one session per model at a time
    session = std::make_unique<DecodeSession>(model, 1, capacity, options.threads);
    for (size_t i = sequence.size() - keep; i < sequence.size(); ++i) {
      const int token = sequence[i];
      logits = session->step(std::span<const int>(&token, 1));
    }
  };
  prime(sequence.size());
  while (static_cast<int64_t>(out.size()) < options.tokens) {
    const int next = draw_token(logits, session->vocab(), options.temperature, options.top_k, random, scratch);
    out.push_back(next);
    sequence.push_back(next);
    if (static_cast<int64_t>(out.size()) == options.tokens) break;
    if (session->position() >= session->max_steps()) {
      prime(static_cast<size_t>(std::max<int64_t>(1, capacity / 2)));
      continue;  // priming fed the new token already
    }
    logits = session->step(std::span<const int>(&next, 1));
  }
  return out;
}

}  // namespace attnlab::eval
