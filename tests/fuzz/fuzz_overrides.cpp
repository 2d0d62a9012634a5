// tests/fuzz/fuzz_overrides.cpp — libFuzzer target: any bytes as command-line overrides, one a
// line ("use SLOT=TYPE" for --use, anything else for --set), applied to a fixed experiment: the
// settings are read as `attnlab run` reads them and the model is elaborated with the overrides
// (parameters evaluated, shapes inferred; the model needs no plugins).
#include "dsl/experiment.h"
#include "fuzz_support.h"
#include "train/run_settings.h"
#include "train/trainer.h"

#include <cstddef>
#include <cstdint>
#include <sstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnlab;
  static const std::filesystem::path experiment = [] {
    (void)fuzz::model_file();
    return fuzz::write_scratch("overrides.attn",
                               "experiment e {\n"
                               "  model = \"model.attn\" with { layers = 1 }\n"
                               "  data = synthetic(train: 10, dev: 2, test: 2)\n"
                               "  train { adam(0.9, 0.98, 1e-9), noam(warmup: 10), max_steps: 2 }\n"
                               "  decode { beam: 2, alpha: 0.6 }\n"
                               "}\n");
  }();
  static const dsl::ExperimentSpec base = dsl::load_experiment(experiment);
  static const Registry registry;
  dsl::ExperimentSpec spec = base;
  std::vector<dsl::Override> uses;
  std::istringstream lines(std::string(reinterpret_cast<const char*>(data), size));
  try {
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("use ", 0) == 0) uses.push_back(dsl::parse_override(line.substr(4), "--use"));
      else dsl::apply_set(spec, line);
    }
  } catch (const dsl::DslError& e) {
    (void)std::string(e.what());
    return 0;
  }
  try {
    (void)dsl::elaborate_experiment_model(spec, registry, uses);
  } catch (const dsl::DslError&) {
  }
  try {
    (void)train::read_settings(spec, 16);
  } catch (const dsl::DslError&) {
  } catch (const train::RunError&) {
  }
  return 0;
}
