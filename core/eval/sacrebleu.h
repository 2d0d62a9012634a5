// core/eval/sacrebleu.h — corpus BLEU and chrF/chrF++ computed as sacreBLEU 2.x computes them, on
// raw (detokenized) UTF-8 text, so that figures compare with those papers report.
//
// Contract (BLEU):
// - Each segment is lowercased on request (full Unicode lowercasing), stripped of trailing
//   whitespace, then tokenized: `13a` (mteval-v13a: `<skipped>` removed, `&quot; &amp; &lt; &gt;`
//   unescaped, ASCII punctuation split off, `.` and `,` split unless between digits, `-` split after
//   a digit), `intl` (mteval-v14 international: Unicode punctuation split unless beside a digit,
//   Unicode symbols split), `char` (every character a token) or `none` (text as given).
//   Tokens are then the whitespace-separated words (Unicode whitespace, as Python's str.split).
// - Several references: hypothesis n-gram counts are clipped by the largest count of that n-gram
//   in any reference of the segment; the reference length is the closest one to the hypothesis
//   (the shorter on a tie).
// - Corpus statistics are summed over segments; BP = exp(1 − r/c) when c < r (0 when c = 0).
//   Smoothing of zero precisions: `exp` (halved each time, mteval's), `floor` (value/total,
//   default 0.1), `add-k` (k added to matches and totals of n ≥ 2, default 1), `none`.
//   No matching n-gram at all gives 0. Effective order (off by default) stops at the first order
//   without hypothesis n-grams.
// Contract (chrF): character n-grams 1..char_order (whitespace removed unless `whitespace`), word
//   n-grams 1..word_order for chrF++ (a word's leading or trailing ASCII punctuation split off);
//   per segment the reference with the best F-score is used; corpus statistics are summed; the
//   score averages precision and recall over the orders that have both hypothesis and reference
//   n-grams ("eff:yes"), or averages per-order F-scores with ε for missing orders (eps_smoothing).
// All inputs must be valid UTF-8 (the CLI checks this when reading); sizes that differ throw
// std::invalid_argument naming the counts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::eval {

enum class BleuTokenizer { k13a, kIntl, kChar, kNone };
enum class BleuSmoothing { kExp, kFloor, kAddK, kNone };

// Parsing of the names sacreBLEU uses ("13a", "intl", "char", "none"; "exp", "floor", "add-k",
// "none"); nullopt for anything else.
std::optional<BleuTokenizer> parse_bleu_tokenizer(std::string_view name);
std::optional<BleuSmoothing> parse_bleu_smoothing(std::string_view name);
std::string_view to_string(BleuTokenizer tokenizer);
std::string_view to_string(BleuSmoothing smoothing);

std::string tokenize_for_bleu(std::string_view line, BleuTokenizer tokenizer);
std::string unicode_lowercase(std::string_view line);

struct SacreBleuOptions {
  BleuTokenizer tokenizer = BleuTokenizer::k13a;
  BleuSmoothing smoothing = BleuSmoothing::kExp;
  std::optional<double> smooth_value;  // floor: 0.1, add-k: 1 when unset
  bool lowercase = false;
  bool effective_order = false;
  int max_ngram_order = 4;
};

struct SacreBleuStats {
  std::vector<double> correct, total;  // per order (double: add-k adds to them)
  int64_t sys_len = 0, ref_len = 0;
};

struct SacreBleuScore {
  double score = 0;  // 0..100
  std::vector<double> counts, totals, precisions;
  double brevity_penalty = 0, ratio = 0;
  int64_t sys_len = 0, ref_len = 0;
  // sacreBLEU's breakdown: "82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)".
  std::string breakdown() const;
};

// references[k][i]: the k-th reference of segment i (one vector per reference file).
SacreBleuStats bleu_statistics(const std::vector<std::string>& hypotheses,
                               const std::vector<std::vector<std::string>>& references, const SacreBleuOptions& options);
SacreBleuScore compute_bleu(SacreBleuStats stats, const SacreBleuOptions& options);
SacreBleuScore corpus_sacrebleu(const std::vector<std::string>& hypotheses,
                                const std::vector<std::vector<std::string>>& references, const SacreBleuOptions& options);

struct ChrfOptions {
  int char_order = 6;
  int word_order = 0;  // 2 for chrF++
  int beta = 2;
  bool lowercase = false;
  bool whitespace = false;  // keep whitespace inside character n-grams
  bool eps_smoothing = false;
};

struct ChrfScore {
  double score = 0;  // 0..100
  std::string name;  // "chrF2", "chrF2++"
};

ChrfScore corpus_chrf(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, const ChrfOptions& options);

// Signatures in sacreBLEU 2.x's field order, e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:…"
// and "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:…"; `version` names this implementation.
inline constexpr std::string_view kSacreBleuVersion = "attnlab-sacrebleu2";
std::string bleu_signature(const SacreBleuOptions& options, size_t nrefs);
std::string chrf_signature(const ChrfOptions& options, size_t nrefs);

}  // namespace attnlab::eval
