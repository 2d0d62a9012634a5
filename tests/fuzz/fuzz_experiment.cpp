// tests/fuzz/fuzz_experiment.cpp — libFuzzer target: any bytes as an experiment file, read and
// structure-checked, with its train and decode settings evaluated as `attnlab run` reads them.
// Accepting or refusing (DslError, RunError) is fine; a crash, a hang or another exception is not.
#include "dsl/experiment.h"
#include "fuzz_support.h"
#include "train/run_settings.h"
#include "train/trainer.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnlab;
  (void)fuzz::model_file();
  const auto path = fuzz::write_scratch("experiment.attn", std::string(reinterpret_cast<const char*>(data), size));
  std::unique_ptr<dsl::Program> program = dsl::load_program(path);
  dsl::Diagnostics diagnostics = program->diagnostics;
  std::vector<dsl::ExperimentSpec> specs = dsl::read_experiments(*program, diagnostics);
  (void)diagnostics.format();
  for (const dsl::ExperimentSpec& spec : specs) {
    for (const dsl::ExperimentSetting& s : spec.settings) (void)s.value.to_string();
    try {
      (void)train::read_settings(spec, 16);
    } catch (const dsl::DslError&) {
    } catch (const train::RunError&) {
    }
  }
  return 0;
}
