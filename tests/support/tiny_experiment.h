// tests/support/tiny_experiment.h — the tiny experiment the training tests run: a one-layer model
// (d_model 16, 2 heads) on a small synthetic task, so that a step takes milliseconds.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

namespace attnlab::test {

// The experiment's text. `train_limits` ends its train section (batching, stopping, validation);
// `sections` follows the train section (an ablate section, say).
inline std::string tiny_experiment_text(const std::string& train_limits, const std::string& sections = "") {
  return "\nexperiment tiny {\n"
         "  model = \"transformer_base.attn\" with { layers = 1, d_model = 16, d_ff = 32, heads = 2 }\n"
         "  data  = synthetic(train: 300, dev: 20, test: 20, seed: 3)\n"
         "  seed  = 5\n"
         "  train {\n"
         "    adam(0.9, 0.98, 1e-9), noam(factor: 2.0, warmup: 10), label_smoothing: 0.1, dropout: 0.1,\n"
         "    " + train_limits + "\n"
         "  }\n" +
         (sections.empty() ? "" : "  " + sections + "\n") + "}\n";
}

// Writes `text` as `file` with a copy of the repository's transformer_base.attn beside it (the
// model the experiment names); returns `file`.
inline std::filesystem::path write_tiny_experiment(const std::filesystem::path& file, const std::string& text,
                                                   const std::filesystem::path& source_dir) {
  std::filesystem::create_directories(file.parent_path());
  std::ofstream(file) << text;
  std::filesystem::copy_file(source_dir / "experiments/transformer_base.attn", file.parent_path() / "transformer_base.attn",
                             std::filesystem::copy_options::overwrite_existing);
  return file;
}

}  // namespace attnlab::test
