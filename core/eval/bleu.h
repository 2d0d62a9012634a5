// core/eval/bleu.h — corpus BLEU exactly as Moses's multi-bleu.perl computes it (one reference).
//
// Contract:
// - Text is tokenized by whitespace only (space, tab, CR, LF, FF, VT) and compared
//   case-sensitively; give it tokenized text (e.g. Multi30k's *.lc.norm.tok files).
// - For n = 1..4, hypothesis n-gram counts are clipped by the reference's count of the same n-gram
//   in the same sentence; clipped matches and totals are summed over the corpus before dividing
//   (corpus-level precisions p_n).
// - BLEU = BP · exp(¼ Σ log p_n), with BP = exp(1 − r/c) when c < r, else 1 (c: hypothesis
//   tokens, r: reference tokens). No smoothing: any p_n = 0 gives BLEU 0.
// - Degenerate corpora: no reference tokens is an error (multi-bleu.perl prints zeros and fails);
//   no hypothesis tokens gives BLEU 0 with BP 0 (where multi-bleu.perl divides by zero).
// - to_string() prints multi-bleu.perl's line:
//   "BLEU = 36.52, 70.1/45.0/30.5/21.1 (BP=1.000, ratio=1.012, hyp_len=9876, ref_len=9759)".
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::eval {

// Sufficient statistics; add() one sentence pair at a time, then score().
struct BleuStats {
  std::array<int64_t, 4> matches{};  // clipped n-gram matches, n = 1..4
  std::array<int64_t, 4> totals{};   // hypothesis n-grams, n = 1..4
  int64_t hyp_len = 0;
  int64_t ref_len = 0;
  void add(std::string_view hypothesis, std::string_view reference);
};

struct BleuScore {
  double bleu = 0;                     // 0..100
  std::array<double, 4> precisions{};  // 0..100
  double brevity_penalty = 0;
  double ratio = 0;  // hyp_len / ref_len
  int64_t hyp_len = 0;
  int64_t ref_len = 0;
  std::string to_string() const;
};

BleuScore score(const BleuStats& stats);  // throws std::invalid_argument when ref_len == 0

// Corpus BLEU of aligned lists; throws std::invalid_argument when their sizes differ.
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references);

}  // namespace attnlab::eval
