// core/sweep/results.cpp — see results.h.
#include "sweep/results.h"

#include "eval/sacrebleu.h"

#include "dsl/experiment.h"
#include "dsl/source.h"
#include "train/checkpoint.h"
#include "train/run_log.h"
#include "train/interrupt.h"
#include "train/svg_chart.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <chrono>
#include <cstring>
#include <thread>

namespace attnlab::sweep {

namespace fs = std::filesystem;
using namespace attnlab::train;  // charts, metrics, write_file_atomically

namespace {
nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
}  // namespace

double json_number(const nlohmann::json& j, const char* key, double fallback) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
}


nlohmann::json to_json(const VariantResult& r) {
  nlohmann::json changes = nlohmann::json::array();
  for (const AblateChange& c : r.variant.changes) {
    const char* kind = c.kind == AblateChange::Kind::Param ? "param" : c.kind == AblateChange::Kind::Slot ? "slot" : "setting";
    changes.push_back({{"key", c.key}, {"value", c.value}, {"kind", kind}});
  }
  nlohmann::json j = {{"id", r.variant.id},
                      {"group", r.variant.group},
                      {"changes", changes},
                      {"status", r.status},
                      {"reason", r.reason},
                      {"parameters", r.parameters},
                      {"steps", r.steps},
                      {"train_seconds", number_or_null(r.train_seconds)},
                      {"tokens_per_second", number_or_null(r.tokens_per_second)},
                      {"final_train_loss", number_or_null(r.last_train_loss)},
                      {"dev_loss", number_or_null(r.dev_loss)},
                      {"dev_perplexity", number_or_null(r.dev_perplexity)}};
  j["dev_bleu"] = r.dev_bleu >= 0 ? nlohmann::json(r.dev_bleu) : nlohmann::json(nullptr);
  j["test_bleu"] = r.test_bleu >= 0 ? nlohmann::json(r.test_bleu) : nlohmann::json(nullptr);
  j["test_chrf"] = r.test_chrf >= 0 ? nlohmann::json(r.test_chrf) : nlohmann::json(nullptr);
  return j;
}


VariantResult from_json(const nlohmann::json& j, const AblateVariant& variant) {
  VariantResult r;
  r.variant = variant;
  r.status = j.value("status", "failed");
  r.reason = j.value("reason", "");
  r.parameters = j.value("parameters", int64_t{0});
  r.steps = j.value("steps", int64_t{0});
  r.train_seconds = json_number(j, "train_seconds", NAN);
  r.tokens_per_second = json_number(j, "tokens_per_second", NAN);
  r.last_train_loss = json_number(j, "final_train_loss", NAN);
  r.dev_loss = json_number(j, "dev_loss", NAN);
  r.dev_perplexity = json_number(j, "dev_perplexity", NAN);
  r.dev_bleu = json_number(j, "dev_bleu", -1);
  r.test_bleu = json_number(j, "test_bleu", -1);
  r.test_chrf = json_number(j, "test_chrf", -1);
  return r;
}

namespace {

std::string fmt(double v, int precision) {
  if (!std::isfinite(v)) return "";
  std::ostringstream o;
  o << std::fixed << std::setprecision(precision) << v;
  return o.str();
}

std::string fmt_params(int64_t n) {
  if (n <= 0) return "";
  std::ostringstream o;
  if (n < 1'000'000) o << std::fixed << std::setprecision(1) << n / 1e3 << "K";
  else o << std::fixed << std::setprecision(n >= 10'000'000 ? 0 : 2) << n / 1e6 << "M";
  return o.str();
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// A reason on one line (DSL errors span several: diagnostics with source excerpts).
std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\n' ? ' ' : c;
  return out;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string md_cell(std::string s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : c == '\n' ? std::string(" ") : std::string(1, c);
  return out;
}

}  // namespace

void write_ablation_results(const fs::path& out_dir, const std::string& experiment_name, const AblateBaseline& baseline,
                            const std::vector<VariantResult>& results) {
  // The keys that any variant changes, in order of first appearance: the columns of Table 3.
  std::vector<std::string> keys;
  for (const VariantResult& r : results)
    for (const AblateChange& c : r.variant.changes)
      if (std::find(keys.begin(), keys.end(), c.key) == keys.end()) keys.push_back(c.key);
  bool any_bleu = false;
  for (const VariantResult& r : results) any_bleu = any_bleu || r.dev_bleu >= 0 || r.test_bleu >= 0;
  auto value_in = [](const VariantResult& r, const std::string& key) -> std::string {
    for (const AblateChange& c : r.variant.changes)
      if (c.key == key) return c.value;
    return "";
  };

  // results.json
  nlohmann::json rows = nlohmann::json::array();
  for (const VariantResult& r : results) rows.push_back(to_json(r));
  nlohmann::json base = nlohmann::json::object();
  for (const std::string& k : keys) base[k] = baseline.value_of(k);
  write_file_atomically(out_dir / "results.json",
                   nlohmann::json{{"experiment", experiment_name}, {"baseline", base}, {"variants", rows}}.dump(2) + "\n");

  // results.csv: every key's effective value in every row (the baseline's when unchanged).
  std::ostringstream csv;
  csv << "variant,group";
  for (const std::string& k : keys) csv << "," << csv_field(k);
  csv << ",parameters,steps,train_seconds,tokens_per_second,final_train_loss,dev_perplexity,dev_bleu,test_bleu,test_chrf,status,reason\n";
  for (const VariantResult& r : results) {
    csv << csv_field(r.variant.id) << "," << csv_field(r.variant.group);
    for (const std::string& k : keys) {
      std::string v = value_in(r, k);
      csv << "," << csv_field(v.empty() ? baseline.value_of(k) : v);
    }
    if (r.status == "ok")
      csv << "," << r.parameters << "," << r.steps << "," << fmt(r.train_seconds, 1) << "," << fmt(r.tokens_per_second, 0) << ","
          << fmt(r.last_train_loss, 4) << "," << fmt(r.dev_perplexity, 3) << "," << (r.dev_bleu >= 0 ? fmt(r.dev_bleu, 2) : "") << ","
          << (r.test_bleu >= 0 ? fmt(r.test_bleu, 2) : "") << "," << (r.test_chrf >= 0 ? fmt(r.test_chrf, 2) : "");
    else
      csv << ",,,,,,,,,";
    csv << "," << r.status << "," << csv_field(one_line(r.reason)) << "\n";
  }
  write_file_atomically(out_dir / "results.csv", csv.str());

  // results.md: Table 3's layout.
  std::ostringstream md;
  md << "# Ablation of " << experiment_name << "\n\n"
     << "Rows are grouped by what they vary; a blank cell is the baseline's value.\n\n| |";
  for (const std::string& k : keys) md << " " << md_cell(k) << " |";
  md << " params | train loss | dev PPL |";
  if (any_bleu) md << " dev BLEU | test BLEU | test chrF |";
  md << " train s | tokens/s | status |\n|---|";
  for (size_t i = 0; i < keys.size(); ++i) md << "---|";
  md << "---:|---:|---:|";
  if (any_bleu) md << "---:|---:|---:|";
  md << "---:|---:|---|\n";
  std::string previous_group = "\x01";
  for (const VariantResult& r : results) {
    const bool is_base = r.variant.changes.empty();
    std::string label = is_base ? "base" : (r.variant.group != previous_group ? r.variant.group : "");
    previous_group = is_base ? "" : r.variant.group;
    md << "| " << md_cell(label) << " |";
    for (const std::string& k : keys) md << " " << md_cell(is_base ? baseline.value_of(k) : value_in(r, k)) << " |";
    if (r.status == "ok") {
      md << " " << fmt_params(r.parameters) << " | " << fmt(r.last_train_loss, 3) << " | " << fmt(r.dev_perplexity, 2) << " |";
      if (any_bleu)
        md << " " << (r.dev_bleu >= 0 ? fmt(r.dev_bleu, 2) : "") << " | " << (r.test_bleu >= 0 ? fmt(r.test_bleu, 2) : "") << " | "
           << (r.test_chrf >= 0 ? fmt(r.test_chrf, 2) : "") << " |";
      md << " " << fmt(r.train_seconds, 0) << " | " << fmt(r.tokens_per_second, 0) << " | ok |\n";
    } else {
      md << "  |  |  |" << (any_bleu ? "  |  |  |" : "") << "  |  | " << md_cell(r.status + (r.reason.empty() ? "" : ": " + first_line(r.reason)))
         << " |\n";
    }
  }
  if (any_bleu)
    md << "\nBLEU as multi-bleu.perl on the data's text; test chrF as sacreBLEU gives it (`chrF2|"
       << eval::chrf_signature(eval::ChrfOptions{}, 1) << "`). Each run's report.md has sacreBLEU's BLEU with its signature.\n";
  md << "\n![learning curves](curves.svg)\n\n![quality per variant](quality.svg)\n";
  write_file_atomically(out_dir / "results.md", md.str());

  // curves.svg: the train loss of every variant that ran, overlaid.
  LineChart curves;
  curves.title = experiment_name + " ablation: train loss";
  curves.x_label = "step";
  curves.y_label = "train loss";
  for (const VariantResult& r : results) {
    const fs::path metrics = out_dir / r.variant.id / "metrics.jsonl";
    if (!fs::exists(metrics)) continue;
    LineSeries s;
    s.name = r.variant.changes.empty() ? "baseline" : describe_changes(r.variant.changes);
    try {
      for (const nlohmann::json& e : read_metrics(metrics))
        if (e.value("event", "") == "train" && e.contains("step") && e.contains("loss")) {
          s.x.push_back(json_number(e, "step", NAN));
          s.y.push_back(json_number(e, "loss", NAN));
        }
    } catch (const std::exception&) {
      continue;  // an unreadable metrics file: no curve for this variant (its row still says why)
    }
    if (r.variant.changes.empty()) s.color = "#000000";
    curves.series.push_back(std::move(s));
  }
  write_svg(out_dir / "curves.svg", render_svg(curves));

  // quality.svg: dev BLEU per variant (dev perplexity when the task has no BLEU).
  BarChart quality;
  quality.title = experiment_name + " ablation: " + (any_bleu ? "dev BLEU" : "dev perplexity");
  quality.x_label = "variant";
  quality.y_label = any_bleu ? "dev BLEU" : "dev perplexity";
  BarSeries bars;
  bars.name = quality.y_label;
  for (const VariantResult& r : results) {
    quality.categories.push_back(r.variant.changes.empty() ? "baseline" : describe_changes(r.variant.changes));
    double v = r.status != "ok" ? NAN : any_bleu ? (r.dev_bleu >= 0 ? r.dev_bleu : NAN) : r.dev_perplexity;
    bars.values.push_back(v);
  }
  quality.series.push_back(std::move(bars));
  write_svg(out_dir / "quality.svg", render_svg(quality));
}


}  // namespace attnlab::sweep
