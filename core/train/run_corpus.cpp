// core/train/run_corpus.cpp — see run_corpus.h.
#include "train/run_corpus.h"

#include "data/synthetic.h"
#include "node/suggest.h"
#include "train/run_settings.h"

#include <cstdlib>
#include <filesystem>

namespace attnlab::train {

namespace fs = std::filesystem;
using dsl::ConstValue;
using dsl::ExperimentSetting;
using dsl::ExperimentSpec;

namespace {

std::string text_arg(const ConstValue& call, const std::string& name, const std::string& fallback) {
  const ConstValue* v = call.arg(name);
  if (!v) return fallback;
  if (v->kind != ConstValue::Kind::String && v->kind != ConstValue::Kind::Name)
    throw_at(v->loc, "data: " + name + " must be a string, got " + v->to_string());
  return v->text;
}

int64_t int_arg(const ConstValue& call, const std::string& name, int64_t fallback, const IntLimit& limit) {
  const ConstValue* v = call.arg(name);
  if (!v) return fallback;
  if (v->kind != ConstValue::Kind::Int || !in_range(limit, v->i))
    throw_at(v->loc, "data: " + name + " must be a whole number in " + describe(limit) + ", got " + v->to_string());
  return v->i;
}

constexpr IntLimit kMinCountLimit{"min_count", 1, int64_t{1} << 40};
constexpr IntLimit kMaxTokensLimit{"max_tokens", 0, int64_t{1} << 30};

}  // namespace

Corpus load_corpus(const ExperimentSpec& spec, const RunOptions& options, std::ostream& log) {
  const ExperimentSetting* data = spec.find("data");
  if (!data) throw RunError("experiment " + spec.name + " has no data setting; write data = synthetic(...) or data = parallel(...)");
  const ConstValue& call = data->value;
  if (call.kind != ConstValue::Kind::Call || (call.text != "synthetic" && call.text != "parallel"))
    throw_at(data->loc, "data must be synthetic(...) or parallel(...), got " + call.to_string());
  Corpus corpus;
  std::string vocab_kind = "word";
  int64_t min_count = 1, vocab_size = 8000;
  if (call.text == "synthetic") {
    check_call_args(call, {"train", "dev", "test", "seed"});
    data::SyntheticOptions o;
    o.train_size = int_arg(call, "train", 20000, kSyntheticSizeLimit);
    o.dev_size = int_arg(call, "dev", 500, kSyntheticSizeLimit);
    o.test_size = int_arg(call, "test", 500, kSyntheticSizeLimit);
    o.seed = static_cast<uint64_t>(int_arg(call, "seed", 1, kSeedLimit));
    data::SyntheticTask task = data::generate_synthetic_task(o);
    corpus.train = std::move(task.train);
    corpus.dev = std::move(task.dev);
    corpus.test = std::move(task.test);
    corpus.description = "synthetic translation task (seed " + std::to_string(o.seed) + ")";
  } else {
    check_call_args(call, {"src", "tgt", "dir", "train", "valid", "test", "suffix", "vocab", "min_count", "vocab_size", "max_tokens"});
    const std::string src = text_arg(call, "src", ""), tgt = text_arg(call, "tgt", "");
    if (src.empty() || tgt.empty()) throw_at(data->loc, "data: parallel(...) needs src: and tgt: (the language suffixes)");
    const std::string dir = text_arg(call, "dir", "");
    const std::string suffix = text_arg(call, "suffix", "");
    vocab_kind = text_arg(call, "vocab", "word");
    if (vocab_kind != "word" && vocab_kind != "sentencepiece")
      throw_at(data->loc, "data: vocab must be \"word\" or \"sentencepiece\", got \"" + vocab_kind + "\"");
    min_count = int_arg(call, "min_count", 1, kMinCountLimit);
    vocab_size = int_arg(call, "vocab_size", 8000, kVocabSizeLimit);
    fs::path root = options.data_root;
    if (root.empty()) {
      const char* env = std::getenv("ATTNLAB_DATA");
      if (!env || !*env)
        throw RunError("experiment " + spec.name + " reads parallel text: give its data directory with --data DIR or the ATTNLAB_DATA environment variable");
      root = env;
    }
    if (!fs::is_directory(root))
      throw RunError("data directory " + root.string() + " does not exist; give the directory holding the " + dir +
                     " files with --data DIR or ATTNLAB_DATA");
    // DIR/<dir> when it exists (a data root holding several corpora), else DIR itself.
    fs::path base = (!dir.empty() && fs::is_directory(root / dir)) ? root / dir : root;
    std::vector<std::string> missing;
    auto file = [&](const std::string& part, const std::string& lang) {
      fs::path p = base / (part + suffix + "." + lang);
      if (!fs::exists(p) && fs::exists(fs::path(p.string() + ".gz"))) p = p.string() + ".gz";
      if (!fs::exists(p)) missing.push_back(p.string());
      return p.string();
    };
    const std::string parts[3] = {text_arg(call, "train", "train"), text_arg(call, "valid", "val"), text_arg(call, "test", "test")};
    std::string paths[3][2];
    for (int i = 0; i < 3; ++i) paths[i][0] = file(parts[i], src), paths[i][1] = file(parts[i], tgt);
    if (!missing.empty())
      throw RunError("missing data file" + std::string(missing.size() > 1 ? "s" : "") + " in " + base.string() + ": " + join_names(missing) +
                     "; give the directory holding them with --data DIR or ATTNLAB_DATA");
    data::ParallelTextOptions po;
    po.max_tokens = int_arg(call, "max_tokens", 250, kMaxTokensLimit);
    po.warnings_to = &log;
    std::vector<data::SentencePair>* outs[3] = {&corpus.train, &corpus.dev, &corpus.test};
    for (int i = 0; i < 3; ++i) {
      try {
        *outs[i] = data::read_parallel_text(paths[i][0], paths[i][1], po).pairs;
      } catch (const data::DataError& e) {
        throw RunError(e.what());
      }
    }
    corpus.description = "parallel text " + src + "→" + tgt + " from " + base.string();
  }
  std::vector<std::string_view> sentences = data::joint_sentences(corpus.train);
  if (vocab_kind == "word") {
    data::WordVocabOptions wo;
    wo.min_count = min_count;
    corpus.tokenizer = data::build_word_vocab(sentences, wo);
  } else {
    data::SentencePieceOptions so;
    so.vocab_size = vocab_size;
    try {
      corpus.tokenizer = data::train_sentencepiece(sentences, so);
    } catch (const data::DataError& e) {
      throw RunError(e.what());
    }
  }
  return corpus;
}

}  // namespace attnlab::train
