// `attnlab generate --checkpoint RUN_DIR_OR_FILE [--prompt TEXT] [--tokens N] [--temperature T]
//  [--top-k K] [--seed S]`: text sampled from a language-model checkpoint, on standard output.
//
// The checkpoint alone is enough (app/checkpoint_model.h: graph, tokenizer, weights); it must be a
// language_model run's. The prompt (default a line break, as nanoGPT's sample.py) is encoded with
// the run's tokenizer, then eval::sample draws --tokens ids with the key/value cache at
// --temperature among the --top-k most likely (0: all), from --seed; the context is the model's
// block_size (the run's settings). The prompt and the sample are printed as one text. Every user error
// is one line and exit code 1. The prompt must be UTF-8 text, as translate's input; the part of it
// outside the model's vocabulary (read as <unk>, which a character vocabulary never showed the
// model) is counted in a warning.
#include "app/checkpoint_model.h"
#include "data/parallel_text.h"
#include "data/tokenizer.h"
#include "eval/sampler.h"
#include "train/run_corpus.h"

#include <algorithm>
#include <iostream>

namespace attnlab::cli {

namespace {

struct GenerateArgs {
  std::string checkpoint;
  std::string prompt = "\n";
  int64_t tokens = 500;
  double temperature = 0.8;
  int64_t top_k = 200;
};

void run_generate(const GenerateArgs& args, const CommonOptions& options) {
  const CheckpointModel loaded = load_checkpoint_model(args.checkpoint, options, task::language_model(), "generate");
  size_t line = 1;
  for (size_t start = 0; start <= args.prompt.size(); ++line) {
    const size_t end = std::min(args.prompt.find('\n', start), args.prompt.size());
    if (const auto wrong = data::check_text_line(std::string_view(args.prompt).substr(start, end - start)))
      throw CliError(1, "--prompt:" + std::to_string(line) + ":" + *wrong);
    start = end + 1;
  }
  const std::vector<int> prompt = train::encode_lm_text(*loaded.tokenizer, args.prompt);
  if (prompt.empty()) throw CliError(1, "--prompt: the prompt is empty; give at least one character (the default is a line break)");
  if (const auto unknown = std::count(prompt.begin(), prompt.end(), data::kUnkId); unknown > 0)
    std::cerr << "warning: --prompt: " << unknown << " of its " << prompt.size() << " tokens are outside the model's vocabulary and are read as <unk>\n";
  eval::SampleOptions sample;
  sample.tokens = args.tokens;
  sample.temperature = args.temperature;
  sample.top_k = args.top_k;
  sample.seed = options.seed;
  sample.threads = options.threads;
  const auto block = loaded.checkpoint.settings().find("block_size");
  if (block != loaded.checkpoint.settings().end()) sample.context = std::stoll(block->second);
  std::vector<int> ids;
  try {
    ids = eval::sample(*loaded.model, prompt, sample);
  } catch (const std::exception& e) {
    throw CliError(1, loaded.where() + ": sampling failed: " + e.what());
  }
  std::cout << args.prompt << train::decode_lm_text(*loaded.tokenizer, ids) << '\n';
  std::cout.flush();
}

}  // namespace

void add_generate_command(CLI::App& app, CommonOptions& options) {
  CLI::App* command = app.add_subcommand("generate", "Sample text from a language-model checkpoint (key/value cache)");
  auto args = std::make_shared<GenerateArgs>();
  add_checkpoint_option(*command, args->checkpoint);
  command->add_option("--prompt", args->prompt, "Text the sample continues (default: a line break)");
  command->add_option("--tokens", args->tokens, "Tokens to sample")->capture_default_str()->check(integer_in(train::kGenerateTokensLimit));
  command->add_option("--temperature", args->temperature, "Softmax temperature (lower: more conservative)")
      ->capture_default_str()
      ->check(real_in(train::kTemperatureLimit));
  command->add_option("--top-k", args->top_k, "Sample among the K most likely tokens; 0: all")
      ->capture_default_str()
      ->check(integer_in(train::kTopKLimit));
  add_common_options(*command, options);
  command->callback([args, &options] { run_generate(*args, options); });
}

}  // namespace attnlab::cli
