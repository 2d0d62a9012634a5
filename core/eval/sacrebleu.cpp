#include "eval/sacrebleu.h"

#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/locid.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <unordered_map>

namespace attnlab::eval {

namespace {

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  int32_t i = 0;
  const auto length = static_cast<int32_t>(text.size());
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  while (i < length) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    out.push_back(c < 0 ? U'\uFFFD' : static_cast<char32_t>(c));
  }
  return out;
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char32_t c : text) {
    uint8_t buffer[4];
    int32_t n = 0;
    U8_APPEND_UNSAFE(buffer, n, static_cast<UChar32>(c));
    out.append(reinterpret_cast<const char*>(buffer), static_cast<size_t>(n));
  }
  return out;
}

// Whitespace as Python's str.split() and str.rstrip() see it (sacreBLEU relies on both).
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::vector<std::u32string> split_python(std::u32string_view text) {
  std::vector<std::u32string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_python_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_python_space(text[i])) ++i;
    if (i > start) words.emplace_back(text.substr(start, i - start));
  }
  return words;
}

std::u32string join_words(const std::vector<std::u32string>& words) {
  std::u32string out;
  for (const auto& word : words) {
    if (!out.empty()) out.push_back(U' ');
    out += word;
  }
  return out;
}

std::u32string rstrip_python(std::u32string text) {
  while (!text.empty() && is_python_space(text.back())) text.pop_back();
  return text;
}

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
}

// One left-to-right, non-overlapping pass of a two-character pattern `(A)(B)`, as re.sub applies
// it: a match becomes "a b " (space_before false) or " a b" (space_before true).
template <typename First, typename Second>
std::u32string separate_pairs(const std::u32string& text, First first, Second second, bool space_before) {
  std::u32string out;
  out.reserve(text.size() + text.size() / 2);
  size_t i = 0;
  while (i < text.size()) {
    if (i + 1 < text.size() && first(text[i]) && second(text[i + 1])) {
      if (space_before) out.push_back(U' ');
      out.push_back(text[i]);
      out.push_back(U' ');
      out.push_back(text[i + 1]);
      if (!space_before) out.push_back(U' ');
      i += 2;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

template <typename Predicate>
std::u32string surround_with_spaces(const std::u32string& text, Predicate matches) {
  std::u32string out;
  out.reserve(text.size() * 2);
  for (const char32_t c : text) {
    if (matches(c)) {
      out.push_back(U' ');
      out.push_back(c);
      out.push_back(U' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool is_digit(char32_t c) { return c >= U'0' && c <= U'9'; }
bool is_period_or_comma(char32_t c) { return c == U'.' || c == U','; }
// mteval-v13a's punctuation class: {|}~ [\]^_` space!"#$%& ()*+ :;<=>?@ and /.
bool is_13a_punctuation(char32_t c) {
  return (c >= U'{' && c <= U'~') || (c >= U'[' && c <= U'`') || (c >= U' ' && c <= U'&') ||
         (c >= U'(' && c <= U'+') || (c >= U':' && c <= U'@') || c == U'/';
}
bool has_category(char32_t c, uint32_t mask) { return (U_GET_GC_MASK(static_cast<UChar32>(c)) & mask) != 0; }
bool is_unicode_punctuation(char32_t c) { return has_category(c, U_GC_P_MASK); }
bool is_unicode_symbol(char32_t c) { return has_category(c, U_GC_S_MASK); }
bool is_not_unicode_number(char32_t c) { return !has_category(c, U_GC_N_MASK); }

std::string tokenize_13a(std::string line) {
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  // mteval pads the line with spaces so that punctuation at either end is split too.
  std::u32string text(1, U' ');
  text += decode_utf8(line);
  text.push_back(U' ');
  text = surround_with_spaces(text, is_13a_punctuation);
  text = separate_pairs(text, [](char32_t c) { return !is_digit(c); }, is_period_or_comma, false);
  text = separate_pairs(text, is_period_or_comma, [](char32_t c) { return !is_digit(c); }, true);
  text = separate_pairs(text, is_digit, [](char32_t c) { return c == U'-'; }, false);
  return encode_utf8(join_words(split_python(text)));
}

std::string tokenize_intl(std::string_view line) {
  std::u32string text = decode_utf8(line);
  text = separate_pairs(text, is_not_unicode_number, is_unicode_punctuation, false);
  text = separate_pairs(text, is_unicode_punctuation, is_not_unicode_number, true);
  text = surround_with_spaces(text, is_unicode_symbol);
  return encode_utf8(join_words(split_python(text)));
}

std::string tokenize_characters(std::string_view line) {
  std::u32string out;
  for (const char32_t c : decode_utf8(line)) {
    if (!out.empty()) out.push_back(U' ');
    out.push_back(c);
  }
  return encode_utf8(out);
}

void check_reference_streams(size_t hypotheses, const std::vector<std::vector<std::string>>& references) {
  if (references.empty()) throw std::invalid_argument("scoring needs at least one reference stream");
  for (size_t k = 0; k < references.size(); ++k)
    if (references[k].size() != hypotheses)
      throw std::invalid_argument("scoring needs as many references as hypotheses: " + std::to_string(hypotheses) +
                                  " hypotheses, reference stream " + std::to_string(k + 1) + " has " +
                                  std::to_string(references[k].size()) + " segments");
}

// Word n-grams of orders 1..max_order keyed by their words joined with single spaces.
using NgramCounts = std::unordered_map<std::string, int64_t>;

NgramCounts word_ngrams(const std::vector<std::string>& words, int min_order, int max_order) {
  NgramCounts counts;
  for (int n = min_order; n <= max_order; ++n)
    for (size_t start = 0; start + static_cast<size_t>(n) <= words.size(); ++start) {
      std::string key = words[start];
      for (size_t j = start + 1; j < start + static_cast<size_t>(n); ++j) key += ' ' + words[j];
      ++counts[key];
    }
  return counts;
}

std::vector<std::string> words_of(std::string_view line) {
  std::vector<std::string> words;
  for (const auto& word : split_python(decode_utf8(line))) words.push_back(encode_utf8(word));
  return words;
}

std::string preprocess_for_bleu(std::string_view line, const SacreBleuOptions& options) {
  const std::string cased = options.lowercase ? unicode_lowercase(line) : std::string(line);
  return tokenize_for_bleu(encode_utf8(rstrip_python(decode_utf8(cased))), options.tokenizer);
}

// sacreBLEU's defaults: floor 0.1, add-k 1 (unused by exp and none).
double smooth_value_of(const SacreBleuOptions& options) {
  return options.smooth_value.value_or(options.smoothing == BleuSmoothing::kFloor ? 0.1 : 1.0);
}

double my_log(double x) { return x == 0 ? -9999999999.0 : std::log(x); }

std::string format_fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

}  // namespace

std::optional<BleuTokenizer> parse_bleu_tokenizer(std::string_view name) {
  for (const auto t : {BleuTokenizer::k13a, BleuTokenizer::kIntl, BleuTokenizer::kChar, BleuTokenizer::kNone})
    if (to_string(t) == name) return t;
  return std::nullopt;
}

std::optional<BleuSmoothing> parse_bleu_smoothing(std::string_view name) {
  for (const auto s : {BleuSmoothing::kExp, BleuSmoothing::kFloor, BleuSmoothing::kAddK, BleuSmoothing::kNone})
    if (to_string(s) == name) return s;
  return std::nullopt;
}

std::string_view to_string(BleuTokenizer tokenizer) {
  switch (tokenizer) {
    case BleuTokenizer::k13a: return "13a";
    case BleuTokenizer::kIntl: return "intl";
    case BleuTokenizer::kChar: return "char";
    case BleuTokenizer::kNone: return "none";
  }
  return "?";
}

std::string_view to_string(BleuSmoothing smoothing) {
  switch (smoothing) {
    case BleuSmoothing::kExp: return "exp";
    case BleuSmoothing::kFloor: return "floor";
    case BleuSmoothing::kAddK: return "add-k";
    case BleuSmoothing::kNone: return "none";
  }
  return "?";
}

std::string tokenize_for_bleu(std::string_view line, BleuTokenizer tokenizer) {
  switch (tokenizer) {
    case BleuTokenizer::k13a: return tokenize_13a(std::string(line));
    case BleuTokenizer::kIntl: return tokenize_intl(line);
    case BleuTokenizer::kChar: return tokenize_characters(line);
    case BleuTokenizer::kNone: return std::string(line);
  }
  return std::string(line);
}

std::string unicode_lowercase(std::string_view line) {
  std::string out;
  icu::UnicodeString::fromUTF8(icu::StringPiece(line.data(), static_cast<int32_t>(line.size())))
      .toLower(icu::Locale::getRoot())
      .toUTF8String(out);
  return out;
}

SacreBleuStats bleu_statistics(const std::vector<std::string>& hypotheses,
                               const std::vector<std::vector<std::string>>& references, const SacreBleuOptions& options) {
  check_reference_streams(hypotheses.size(), references);
  if (options.max_ngram_order < 1) throw std::invalid_argument("BLEU's n-gram order must be at least 1");
  const auto order = static_cast<size_t>(options.max_ngram_order);
  SacreBleuStats stats;
  stats.correct.assign(order, 0);
  stats.total.assign(order, 0);
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    NgramCounts reference_max;
    std::vector<int64_t> reference_lengths;
    for (const auto& stream : references) {
      const std::vector<std::string> words = words_of(preprocess_for_bleu(stream[i], options));
      reference_lengths.push_back(static_cast<int64_t>(words.size()));
      for (const auto& [ngram, count] : word_ngrams(words, 1, options.max_ngram_order))
        reference_max[ngram] = std::max(reference_max[ngram], count);
    }
    const std::vector<std::string> hypothesis = words_of(preprocess_for_bleu(hypotheses[i], options));
    const auto hyp_len = static_cast<int64_t>(hypothesis.size());
    // The closest reference length; the shorter one on a tie.
    int64_t closest = reference_lengths.front();
    for (const int64_t length : reference_lengths) {
      const int64_t diff = std::llabs(hyp_len - length), best = std::llabs(hyp_len - closest);
      if (diff < best || (diff == best && length < closest)) closest = length;
    }
    stats.sys_len += hyp_len;
    stats.ref_len += closest;
    for (const auto& [ngram, count] : word_ngrams(hypothesis, 1, options.max_ngram_order)) {
      const auto n = static_cast<size_t>(std::count(ngram.begin(), ngram.end(), ' '));
      stats.total[n] += static_cast<double>(count);
      const auto it = reference_max.find(ngram);
      if (it != reference_max.end()) stats.correct[n] += static_cast<double>(std::min(count, it->second));
    }
  }
  return stats;
}

SacreBleuScore compute_bleu(SacreBleuStats stats, const SacreBleuOptions& options) {
  const size_t order = stats.correct.size();
  if (order == 0 || stats.total.size() != order)
    throw std::invalid_argument("BLEU statistics need matches and totals for the same orders");
  const double smooth_value = smooth_value_of(options);
  SacreBleuScore result;
  result.sys_len = stats.sys_len;
  result.ref_len = stats.ref_len;
  result.ratio = stats.ref_len ? static_cast<double>(stats.sys_len) / static_cast<double>(stats.ref_len) : 0.0;
  result.brevity_penalty = 1.0;
  if (stats.sys_len < stats.ref_len)
    result.brevity_penalty =
        stats.sys_len > 0 ? std::exp(1.0 - static_cast<double>(stats.ref_len) / static_cast<double>(stats.sys_len)) : 0.0;
  result.precisions.assign(order, 0.0);
  const bool any_match = std::any_of(stats.correct.begin(), stats.correct.end(), [](double c) { return c != 0; });
  if (any_match) {
    double exp_factor = 1.0;
    size_t effective_order = order;
    for (size_t n = 1; n <= order; ++n) {
      double& correct = stats.correct[n - 1];
      double& total = stats.total[n - 1];
      if (options.smoothing == BleuSmoothing::kAddK && n > 1) {
        correct += smooth_value;
        total += smooth_value;
      }
      if (total == 0) break;
      if (options.effective_order) effective_order = n;
      if (correct == 0) {
        if (options.smoothing == BleuSmoothing::kExp) {
          exp_factor *= 2;
          result.precisions[n - 1] = 100.0 / (exp_factor * total);
        } else if (options.smoothing == BleuSmoothing::kFloor) {
          result.precisions[n - 1] = 100.0 * smooth_value / total;
        }
      } else {
        result.precisions[n - 1] = 100.0 * correct / total;
      }
    }
    double log_sum = 0;
    for (size_t n = 0; n < effective_order; ++n) log_sum += my_log(result.precisions[n]);
    result.score = result.brevity_penalty * std::exp(log_sum / static_cast<double>(effective_order));
  }
  result.counts = stats.correct;
  result.totals = stats.total;
  return result;
}

SacreBleuScore corpus_sacrebleu(const std::vector<std::string>& hypotheses,
                                const std::vector<std::vector<std::string>>& references, const SacreBleuOptions& options) {
  return compute_bleu(bleu_statistics(hypotheses, references, options), options);
}

std::string SacreBleuScore::breakdown() const {
  std::string text;
  for (size_t n = 0; n < precisions.size(); ++n) {
    if (n) text += '/';
    text += format_fixed(precisions[n], 1);
  }
  return text + " (BP = " + format_fixed(brevity_penalty, 3) + " ratio = " + format_fixed(ratio, 3) +
         " hyp_len = " + std::to_string(sys_len) + " ref_len = " + std::to_string(ref_len) + ")";
}

namespace {

using CharNgramCounts = std::unordered_map<std::u32string, int64_t>;

// Per order: character n-grams 1..char_order, then word n-grams 1..word_order.
struct ChrfNgrams {
  std::vector<CharNgramCounts> characters;
  std::vector<NgramCounts> words;
};

bool is_ascii_punctuation(char32_t c) { return c < 0x80 && c > 0x20 && std::ispunct(static_cast<int>(c)); }

// chrF++'s word split: a word's trailing (else leading) ASCII punctuation mark becomes its own word.
std::vector<std::string> chrf_words(const std::u32string& line) {
  std::vector<std::string> words;
  for (const auto& word : split_python(line)) {
    if (word.size() == 1) {
      words.push_back(encode_utf8(word));
    } else if (is_ascii_punctuation(word.back())) {
      words.push_back(encode_utf8(std::u32string_view(word).substr(0, word.size() - 1)));
      words.push_back(encode_utf8(std::u32string(1, word.back())));
    } else if (is_ascii_punctuation(word.front())) {
      words.push_back(encode_utf8(std::u32string(1, word.front())));
      words.push_back(encode_utf8(std::u32string_view(word).substr(1)));
    } else {
      words.push_back(encode_utf8(word));
    }
  }
  return words;
}

ChrfNgrams chrf_ngrams(std::string_view segment, const ChrfOptions& options) {
  const std::u32string line = decode_utf8(options.lowercase ? unicode_lowercase(segment) : std::string(segment));
  std::u32string characters = line;
  if (!options.whitespace) {
    characters.clear();
    for (const auto& word : split_python(line)) characters += word;
  }
  ChrfNgrams ngrams;
  for (int n = 1; n <= options.char_order; ++n) {
    CharNgramCounts counts;
    for (size_t start = 0; start + static_cast<size_t>(n) <= characters.size(); ++start)
      ++counts[characters.substr(start, static_cast<size_t>(n))];
    ngrams.characters.push_back(std::move(counts));
  }
  if (options.word_order > 0) {
    const std::vector<std::string> words = chrf_words(line);
    for (int n = 1; n <= options.word_order; ++n) ngrams.words.push_back(word_ngrams(words, n, n));
  }
  return ngrams;
}

// [hypothesis n-grams, reference n-grams, matches] of one order.
template <typename Counts>
void append_match_statistics(const Counts& hypothesis, const Counts& reference, std::vector<int64_t>& stats) {
  int64_t hyp_count = 0, ref_count = 0, matches = 0;
  for (const auto& [ngram, count] : hypothesis) {
    hyp_count += count;
    const auto it = reference.find(ngram);
    if (it != reference.end()) matches += std::min(count, it->second);
  }
  for (const auto& entry : reference) ref_count += entry.second;
  stats.push_back(reference.empty() ? 0 : hyp_count);
  stats.push_back(ref_count);
  stats.push_back(matches);
}

double chrf_f_score(const std::vector<int64_t>& stats, const ChrfOptions& options) {
  const double eps = 1e-16;
  const double factor = static_cast<double>(options.beta) * static_cast<double>(options.beta);
  const size_t orders = stats.size() / 3;
  double eps_score = 0, average_precision = 0, average_recall = 0;
  int effective_order = 0;
  for (size_t i = 0; i < orders; ++i) {
    const auto n_hyp = static_cast<double>(stats[3 * i]), n_ref = static_cast<double>(stats[3 * i + 1]),
               n_match = static_cast<double>(stats[3 * i + 2]);
    const double precision = n_hyp > 0 ? n_match / n_hyp : eps;
    const double recall = n_ref > 0 ? n_match / n_ref : eps;
    const double denominator = factor * precision + recall;
    eps_score += denominator > 0 ? (1 + factor) * precision * recall / denominator : eps;
    if (n_hyp > 0 && n_ref > 0) {
      average_precision += precision;
      average_recall += recall;
      ++effective_order;
    }
  }
  if (options.eps_smoothing) return 100.0 * eps_score / static_cast<double>(orders);
  if (effective_order == 0) return 0.0;
  average_precision /= effective_order;
  average_recall /= effective_order;
  if (average_precision + average_recall == 0) return 0.0;
  return 100.0 * (1 + factor) * average_precision * average_recall / (factor * average_precision + average_recall);
}

}  // namespace

ChrfScore corpus_chrf(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, const ChrfOptions& options) {
  check_reference_streams(hypotheses.size(), references);
  if (options.char_order < 1 || options.word_order < 0 || options.beta < 1)
    throw std::invalid_argument("chrF needs char_order >= 1, word_order >= 0 and beta >= 1");
  const size_t orders = static_cast<size_t>(options.char_order + options.word_order);
  std::vector<int64_t> corpus(3 * orders, 0);
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const ChrfNgrams hypothesis = chrf_ngrams(hypotheses[i], options);
    std::vector<int64_t> best;
    double best_f = -1.0;
    for (const auto& stream : references) {
      const ChrfNgrams reference = chrf_ngrams(stream[i], options);
      std::vector<int64_t> stats;
      for (size_t n = 0; n < hypothesis.characters.size(); ++n)
        append_match_statistics(hypothesis.characters[n], reference.characters[n], stats);
      for (size_t n = 0; n < hypothesis.words.size(); ++n)
        append_match_statistics(hypothesis.words[n], reference.words[n], stats);
      const double f = chrf_f_score(stats, options);
      if (f > best_f) {
        best_f = f;
        best = std::move(stats);
      }
    }
    for (size_t j = 0; j < corpus.size(); ++j) corpus[j] += best[j];
  }
  ChrfScore result;
  result.score = chrf_f_score(corpus, options);
  result.name = "chrF" + std::to_string(options.beta) + std::string(static_cast<size_t>(options.word_order), '+');
  return result;
}

std::string bleu_signature(const SacreBleuOptions& options, size_t nrefs) {
  std::string smooth(to_string(options.smoothing));
  if (options.smoothing == BleuSmoothing::kFloor || options.smoothing == BleuSmoothing::kAddK)
    smooth.append("[").append(format_fixed(smooth_value_of(options), 2)).append("]");
  return std::string("nrefs:") + std::to_string(nrefs) + "|case:" + (options.lowercase ? "lc" : "mixed") +
         "|eff:" + (options.effective_order ? "yes" : "no") + "|tok:" + std::string(to_string(options.tokenizer)) +
         "|smooth:" + smooth + "|version:" + std::string(kSacreBleuVersion);
}

std::string chrf_signature(const ChrfOptions& options, size_t nrefs) {
  return std::string("nrefs:") + std::to_string(nrefs) + "|case:" + (options.lowercase ? "lc" : "mixed") +
         "|eff:" + (options.eps_smoothing ? "no" : "yes") + "|nc:" + std::to_string(options.char_order) +
         "|nw:" + std::to_string(options.word_order) + "|space:" + (options.whitespace ? "yes" : "no") +
         "|version:" + std::string(kSacreBleuVersion);
}

}  // namespace attnlab::eval
