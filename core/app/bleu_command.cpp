// `attnlab bleu --ref FILE [--ref FILE ...] [--hyp FILE] [--metric bleu,chrf,chrf++] [--tokenize T]
//  [--smooth S] [--smooth-value V] [--lowercase] [--json]`: corpus scores as sacreBLEU 2.x gives them
// (core/eval/sacrebleu.h). Each metric prints sacreBLEU's text line, "NAME|SIGNATURE = SCORE [BREAKDOWN]";
// --json prints one object keyed by metric. `--tokenize none --smooth none` on tokenized text gives
// multi-bleu.perl's figure. All inputs must be text (UTF-8, no control bytes): the first bad line
// is an error naming it.
#include "app/cli.h"
#include "data/parallel_text.h"
#include "eval/sacrebleu.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <optional>
#include <sstream>

namespace attnlab::cli {

namespace {

struct BleuCommandOptions {
  std::vector<std::string> references;
  std::string hypotheses;  // empty: standard input
  std::string metrics = "bleu";
  std::string tokenize = "13a";
  std::string smooth = "exp";
  std::optional<double> smooth_value;
  bool lowercase = false;
  bool json = false;
};

std::vector<std::string> parse_metrics(const std::string& list) {
  std::vector<std::string> metrics;
  std::stringstream stream(list);
  for (std::string name; std::getline(stream, name, ',');) {
    if (name != "bleu" && name != "chrf" && name != "chrf++")
      throw CliError(1, "--metric: '" + name + "' is not a metric (bleu, chrf, chrf++; separated by commas)");
    if (std::find(metrics.begin(), metrics.end(), name) != metrics.end())
      throw CliError(1, "--metric: '" + name + "' is given twice");
    metrics.push_back(name);
  }
  if (metrics.empty()) throw CliError(1, "--metric: no metric given (bleu, chrf, chrf++)");
  return metrics;
}

eval::SacreBleuOptions bleu_options(const BleuCommandOptions& o) {
  eval::SacreBleuOptions options;
  const auto tokenizer = eval::parse_bleu_tokenizer(o.tokenize);
  if (!tokenizer) throw CliError(1, "--tokenize: must be 13a, intl, char or none, got '" + o.tokenize + "'");
  const auto smoothing = eval::parse_bleu_smoothing(o.smooth);
  if (!smoothing) throw CliError(1, "--smooth: must be exp, floor, add-k or none, got '" + o.smooth + "'");
  if (o.smooth_value && *smoothing != eval::BleuSmoothing::kFloor && *smoothing != eval::BleuSmoothing::kAddK)
    throw CliError(1, "--smooth-value: only floor and add-k smoothing take a value (--smooth is " + o.smooth + ")");
  options.tokenizer = *tokenizer;
  options.smoothing = *smoothing;
  options.smooth_value = o.smooth_value;
  options.lowercase = o.lowercase;
  return options;
}

// sacreBLEU's JSON fields: name, score, signature, verbose_score and the signature's fields.
nlohmann::ordered_json score_object(const std::string& name, double score, const std::string& signature,
                                    const std::string& verbose) {
  nlohmann::ordered_json object;
  object["name"] = name;
  object["score"] = score;
  object["signature"] = signature;
  if (!verbose.empty()) object["verbose_score"] = verbose;
  std::stringstream fields(signature);
  for (std::string field; std::getline(fields, field, '|');) {
    const size_t colon = field.find(':');
    object[field.substr(0, colon)] = field.substr(colon + 1);
  }
  return object;
}

std::string score_line(const std::string& name, double score, const std::string& signature, const std::string& verbose) {
  char value[32];
  std::snprintf(value, sizeof value, "%.2f", score);
  return name + "|" + signature + " = " + value + (verbose.empty() ? "" : " " + verbose);
}

void score(const BleuCommandOptions& o) {
  const std::vector<std::string> metrics = parse_metrics(o.metrics);
  const eval::SacreBleuOptions bleu = bleu_options(o);
  std::vector<std::vector<std::string>> references;
  std::vector<std::string> hypotheses;
  try {
    // Text only: a binary file (NUL or control bytes, invalid UTF-8) is refused, not scored.
    for (const std::string& file : o.references) {
      references.push_back(data::read_lines(file));
      data::check_text_lines(references.back(), file);
    }
    hypotheses = o.hypotheses.empty() ? read_lines(std::cin) : data::read_lines(o.hypotheses);
    if (!o.hypotheses.empty()) data::check_text_lines(hypotheses, o.hypotheses);
  } catch (const data::DataError& e) {
    throw CliError(1, e.what());
  }
  const std::string hyp_name = o.hypotheses.empty() ? "standard input" : o.hypotheses;
  for (size_t k = 0; k < references.size(); ++k)
    if (references[k].size() != hypotheses.size())
      throw CliError(1, "line counts differ: " + o.references[k] + " has " + std::to_string(references[k].size()) +
                            " lines, " + hyp_name + " has " + std::to_string(hypotheses.size()) + " lines");
  nlohmann::ordered_json json;
  for (const std::string& metric : metrics) {
    std::string name, signature, verbose;
    nlohmann::ordered_json details;
    double value = 0;
    if (metric == "bleu") {
      const eval::SacreBleuScore s = eval::corpus_sacrebleu(hypotheses, references, bleu);
      if (s.ref_len == 0)
        throw CliError(1, (references.size() == 1 ? o.references.front() : std::string("the references")) +
                              ": the reference has no tokens");
      name = "BLEU", value = s.score, signature = eval::bleu_signature(bleu, references.size()), verbose = s.breakdown();
      details = {{"counts", s.counts}, {"totals", s.totals}, {"precisions", s.precisions}, {"bp", s.brevity_penalty},
                 {"ratio", s.ratio}, {"hyp_len", s.sys_len}, {"ref_len", s.ref_len}};
    } else {
      eval::ChrfOptions chrf;
      chrf.lowercase = o.lowercase;
      chrf.word_order = metric == "chrf++" ? 2 : 0;
      const eval::ChrfScore s = eval::corpus_chrf(hypotheses, references, chrf);
      name = s.name, value = s.score, signature = eval::chrf_signature(chrf, references.size());
    }
    if (o.json) {
      nlohmann::ordered_json object = score_object(name, value, signature, verbose);
      for (const auto& [key, item] : details.items()) object[key] = item;
      json[metric] = object;
    } else {
      std::cout << score_line(name, value, signature, verbose) << '\n';
    }
  }
  if (o.json) std::cout << json.dump(1) << '\n';
}

}  // namespace

void add_bleu_command(CLI::App& app) {
  CLI::App* command = app.add_subcommand("bleu", "Corpus BLEU and chrF of detokenized text (as sacreBLEU 2.x)");
  auto o = std::make_shared<BleuCommandOptions>();
  command->add_option("--ref", o->references, "Reference file, one sentence a line (.gz accepted); repeat for several references")
      ->required()
      ->check(non_empty_path());
  command->add_option("--hyp", o->hypotheses, "Hypothesis file (default: standard input)")->check(non_empty_path());
  command->add_option("--metric", o->metrics, "Metrics, comma-separated: bleu, chrf, chrf++ (default: bleu)");
  command->add_option("--tokenize", o->tokenize,
                      "BLEU tokenizer: 13a (default, mteval-v13a), intl (mteval-v14 international), char, none "
                      "(text already tokenized)");
  command->add_option("--smooth", o->smooth, "BLEU smoothing: exp (default), floor, add-k, none");
  auto value = std::make_shared<double>(0.0);
  CLI::Option* smooth_value =
      command->add_option("--smooth-value", *value, "Value of floor (default 0.1) or add-k (default 1) smoothing")
          ->check(CLI::Range(0.0, 1e6));
  command->add_flag("--lowercase", o->lowercase, "Lowercase hypotheses and references before scoring");
  command->add_flag("--json", o->json, "Print one JSON object keyed by metric instead of text lines");
  command->callback([o, value, smooth_value] {
    if (smooth_value->count()) o->smooth_value = *value;
    score(*o);
  });
}

}  // namespace attnlab::cli
