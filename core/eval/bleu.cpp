#include "eval/bleu.h"

#include "data/parallel_text.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>

namespace attnlab::eval {

namespace {

// N-grams as token-index ranges into one sentence, counted by their text.
std::map<std::vector<std::string_view>, int64_t> count_ngrams(const std::vector<std::string_view>& tokens, size_t n) {
  std::map<std::vector<std::string_view>, int64_t> counts;
  for (size_t start = 0; start + n <= tokens.size(); ++start)
    ++counts[std::vector<std::string_view>(tokens.begin() + static_cast<std::ptrdiff_t>(start),
                                           tokens.begin() + static_cast<std::ptrdiff_t>(start + n))];
  return counts;
}

}  // namespace

void BleuStats::add(std::string_view hypothesis, std::string_view reference) {
  const std::vector<std::string_view> hyp = data::split_whitespace(hypothesis);
  const std::vector<std::string_view> ref = data::split_whitespace(reference);
  hyp_len += static_cast<int64_t>(hyp.size());
  ref_len += static_cast<int64_t>(ref.size());
  for (size_t n = 1; n <= 4; ++n) {
    const auto ref_counts = count_ngrams(ref, n);
    for (const auto& [ngram, count] : count_ngrams(hyp, n)) {
      totals[n - 1] += count;
      auto it = ref_counts.find(ngram);
      if (it != ref_counts.end()) matches[n - 1] += std::min(count, it->second);
    }
  }
}

BleuScore score(const BleuStats& stats) {
  if (stats.ref_len == 0) throw std::invalid_argument("BLEU is undefined: the reference has no tokens");
  BleuScore result;
  result.hyp_len = stats.hyp_len;
  result.ref_len = stats.ref_len;
  result.ratio = static_cast<double>(stats.hyp_len) / static_cast<double>(stats.ref_len);
  double log_sum = 0;
  bool any_zero = false;
  for (size_t n = 0; n < 4; ++n) {
    const double p = stats.totals[n] ? static_cast<double>(stats.matches[n]) / static_cast<double>(stats.totals[n]) : 0.0;
    result.precisions[n] = 100.0 * p;
    if (p == 0) any_zero = true;
    else log_sum += std::log(p);
  }
  if (stats.hyp_len == 0) {
    result.brevity_penalty = 0;
  } else {
    result.brevity_penalty = stats.hyp_len < stats.ref_len
                                 ? std::exp(1.0 - static_cast<double>(stats.ref_len) / static_cast<double>(stats.hyp_len))
                                 : 1.0;
  }
  result.bleu = any_zero ? 0.0 : 100.0 * result.brevity_penalty * std::exp(log_sum / 4.0);
  return result;
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size())
    throw std::invalid_argument("BLEU needs as many hypotheses as references: " + std::to_string(hypotheses.size()) +
                                " hypotheses, " + std::to_string(references.size()) + " references");
  BleuStats stats;
  for (size_t i = 0; i < hypotheses.size(); ++i) stats.add(hypotheses[i], references[i]);
  return score(stats);
}

std::string BleuScore::to_string() const {
  char line[256];
  std::snprintf(line, sizeof line, "BLEU = %.2f, %.1f/%.1f/%.1f/%.1f (BP=%.3f, ratio=%.3f, hyp_len=%lld, ref_len=%lld)",
                bleu, precisions[0], precisions[1], precisions[2], precisions[3], brevity_penalty, ratio,
                static_cast<long long>(hyp_len), static_cast<long long>(ref_len));
  return line;
}

}  // namespace attnlab::eval
