// `attnlab translate --checkpoint RUN_DIR_OR_FILE [--beam N] [--alpha A] [--max-len-extra E]
//  [--input raw|tokenized]`: text on standard input, one translation a line on standard output, in
// input order.
//
// The checkpoint alone is enough: it carries the elaborated graph (Checkpoint.graph), the tokenizer
// bytes and the parameters by name. RUN_DIR_OR_FILE is resolved by train::find_checkpoint (a file;
// or a directory's best.ckpt, else its newest step checkpoint, in DIR/checkpoints or DIR). Raw text
// goes through the tokenizer (a word vocabulary gets normalize_for_word_vocab first); tokenized text
// (--input tokenized, the default when the checkpoint's data was tokenized) is encoded as it is.
// Encoding and batched decoding are the run's own (train::encode_source, train::Translator), so
// translating a run's test.src with its decode settings reproduces its test.hyp. Every user error
// is one line and exit code 1. Flags are
// bounded by train/limits.h; input must be UTF-8 text; lines over --max-tokens are cut, counted.
#include "app/checkpoint_model.h"
#include "app/cli.h"
#include "data/tokenizer.h"
#include "eval/decoder.h"
#include "exec/model.h"
#include "exec/tbb_executor.h"
#include "train/checkpoint.h"
#include "train/translate.h"

#include <cstdio>
#include <iostream>

namespace attnlab::cli {

namespace {

struct TranslateArgs {
  std::string checkpoint;
  int beam = 4;
  double alpha = 0.6;
  int64_t max_len_extra = 50;
  int batch_sentences = static_cast<int>(train::kEvalBatchSentences);
  int64_t max_tokens = 1000;
  std::string input;  // "raw" or "tokenized"; empty: the checkpoint's data form
  bool scores = false;
};

// --scores: "<TAB>ids ID ID ...<TAB>log_prob L" after the text; L sums the natural-log
// probabilities of the output tokens and, when the search ended it, of </s> (no length penalty).
std::string scores_columns(const eval::Translation& t) {
  std::string columns = "\tids";
  for (const int id : t.tokens) columns.append(" ").append(std::to_string(id));
  char log_prob[64];
  std::snprintf(log_prob, sizeof log_prob, "\tlog_prob %.6f", t.log_prob);
  return columns + log_prob;
}


void run_translate(const TranslateArgs& args, const CommonOptions& options) {
  const CheckpointModel loaded = load_checkpoint_model(args.checkpoint, options, task::translation(), "translate");
  const ckpt::Checkpoint& checkpoint = loaded.checkpoint;
  const std::string where = loaded.where();
  const data::Tokenizer* tokenizer = loaded.tokenizer.get();
  exec::Model* model = loaded.model.get();

  train::InputForm form = train::checkpoint_input_form(checkpoint);
  if (!args.input.empty()) {
    const auto given = train::parse_input_form(args.input);
    if (!given) throw CliError(1, "--input: must be raw or tokenized, got '" + args.input + "'");
    form = *given;
  }
  const std::vector<std::string> lines = read_lines(std::cin);
  std::vector<std::vector<int>> sources(lines.size());
  int64_t truncated = 0;
  size_t first_truncated = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    try {
      sources[i] = train::encode_source(*tokenizer, lines[i], form);
    } catch (const std::exception& e) {
      throw CliError(1, "input line " + std::to_string(i + 1) + ": " + e.what());
    }
    // Decoding time grows with the square of the length: an over-long line is cut (and counted),
    // as training skips pairs over parallel(max_tokens: ...).
    if (static_cast<int64_t>(sources[i].size()) > args.max_tokens) {
      if (truncated++ == 0) first_truncated = i + 1;
      sources[i].resize(static_cast<size_t>(args.max_tokens));
    }
  }
  if (truncated > 0)
    std::cerr << "warning: standard input: " << truncated << " line(s) longer than " << args.max_tokens
              << " tokens translated from their first " << args.max_tokens << " tokens only (first at line " << first_truncated
              << "; raise --max-tokens to keep more)\n";

  exec::TbbExecutor executor(options.threads);
  eval::DecodeOptions decode;
  decode.beam = args.beam;
  decode.alpha = args.alpha;
  decode.max_len_extra = args.max_len_extra;
  decode.threads = options.threads;
  train::Translator translator(*model, executor, decode, args.batch_sentences);
  std::vector<eval::Translation> translations;
  try {
    translations = translator.translate_with_scores(sources);
  } catch (const std::exception& e) {
    throw CliError(1, where + ": decoding failed: " + e.what());
  }
  std::vector<std::string> out;
  for (const eval::Translation& t : translations) {
    out.push_back(tokenizer->decode(t.tokens));
    if (args.scores) out.back() += scores_columns(t);
  }
  for (const std::string& line : out) std::cout << line << '\n';
  std::cout.flush();
}

}  // namespace

void add_translate_command(CLI::App& app, CommonOptions& options) {
  CLI::App* command = app.add_subcommand(
      "translate", "Translate text (standard input, one sentence a line) with a checkpoint; one line out per line in");
  auto args = std::make_shared<TranslateArgs>();
  add_checkpoint_option(*command, args->checkpoint);
  command->add_option("--beam", args->beam, "Beam size; 1 is greedy decoding")
      ->capture_default_str()
      ->check(integer_in(train::kBeamLimit));
  command->add_option("--alpha", args->alpha, "Length-penalty exponent α of ((5+|Y|)/6)^α")
      ->capture_default_str()
      ->check(real_in(train::kAlphaLimit));
  command->add_option("--max-len-extra", args->max_len_extra, "Output tokens at most source tokens + this")
      ->capture_default_str()
      ->check(integer_in(train::kMaxLengthExtraLimit));
  command->add_option("--input", args->input,
                      "Input form: raw (normalized for a word vocabulary) or tokenized (encoded as is); default: the "
                      "form of the checkpoint's training data");
  command->add_flag("--scores", args->scores,
                    "After each translation: a tab, its token ids (\"ids 5 17 4\"), a tab and the sum of their "
                    "log-probabilities with </s> (\"log_prob -3.214159\")");
  command->add_option("--batch-sentences", args->batch_sentences, "Sentences decoded together (as the run's test decoding)")
      ->capture_default_str()
      ->check(integer_in(train::kBatchSentencesLimit));
  command->add_option("--max-tokens", args->max_tokens,
                      "Input tokens per line at most; a longer line is translated from its first tokens (with a warning)")
      ->capture_default_str()
      ->check(integer_in(train::kTranslateMaxTokensLimit));
  add_common_options(*command, options);
  command->callback([args, &options] { run_translate(*args, options); });
}

}  // namespace attnlab::cli
