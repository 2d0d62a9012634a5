// core/sweep/results.h — `attnlab ablate`, part 3: a variant's outcome (OUT/<id>/result.json) and
// the sweep's tables and charts (results.md, results.csv, results.json, curves.svg, quality.svg),
// every file written with write_file_atomically. The contract of the whole sweep is in variants.h.
#pragma once

#include "sweep/variants.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace attnlab::sweep {

// A variant's outcome (also the content of OUT/<id>/result.json).
struct VariantResult {
  AblateVariant variant;
  std::string status;  // "ok", "failed", "not run" (the sweep was interrupted before it)
  std::string reason;  // why it failed
  int64_t parameters = 0;
  int64_t steps = 0;
  double train_seconds = 0;
  double tokens_per_second = 0;
  double last_train_loss = 0;
  double dev_loss = 0;
  double dev_perplexity = 0;
  double dev_bleu = -1;   // -1: not computed
  double test_bleu = -1;
  double test_chrf = -1;  // sacreBLEU's chrF2 (docs/evaluation.md)
};

// result.json's content, and back (a missing number reads as NaN, a missing BLEU as -1).
nlohmann::json to_json(const VariantResult& result);
VariantResult from_json(const nlohmann::json& json, const AblateVariant& variant);
// json[key] when it is a number, else fallback (metrics and results may hold null).
double json_number(const nlohmann::json& json, const char* key, double fallback);

// Writes results.md, results.csv, results.json, curves.svg and quality.svg into `out_dir`.
void write_ablation_results(const std::filesystem::path& out_dir, const std::string& experiment_name,
                            const AblateBaseline& baseline, const std::vector<VariantResult>& results);

}  // namespace attnlab::sweep
