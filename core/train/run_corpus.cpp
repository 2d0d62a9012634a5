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

// --data DIR or $ATTNLAB_DATA, which must exist; `what` and `files` say what is read from it.
fs::path data_root(const ExperimentSpec& spec, const RunOptions& options, const std::string& what, const std::string& files) {
  fs::path root = options.data_root;
  if (root.empty()) {
    const char* env = std::getenv("ATTNLAB_DATA");
    if (!env || !*env)
      throw RunError("experiment " + spec.name + " reads " + what + ": give its data directory with --data DIR or the ATTNLAB_DATA environment variable");
    root = env;
  }
  if (!fs::is_directory(root))
    throw RunError("data directory " + root.string() + " does not exist; give the directory holding the " + files +
                   " files with --data DIR or ATTNLAB_DATA");
  return root;
}

// A whole text file (".gz" decompressed), lines joined with "\n" and ended by one.
std::string read_whole_text(const fs::path& path) {
  std::string text;
  for (const std::string& line : data::read_lines(path.string(), data::kMaxTextLineBytes)) text += line + "\n";
  return text;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

int64_t count_characters(std::string_view text) {
  int64_t n = 0;
  for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

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
    const fs::path root = data_root(spec, options, "parallel text", dir);
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

std::vector<int> encode_lm_text(const data::Tokenizer& tokenizer, std::string_view text) {
  if (tokenizer.kind() == "char") return tokenizer.encode(text);
  std::vector<int> ids;
  for (size_t start = 0;;) {
    const size_t end = text.find('\n', start);
    const std::vector<int> line = tokenizer.encode(text.substr(start, end == std::string_view::npos ? end : end - start));
    ids.insert(ids.end(), line.begin(), line.end());
    if (end == std::string_view::npos) break;
    ids.push_back(data::kEosId);
    start = end + 1;
  }
  return ids;
}

std::string decode_lm_text(const data::Tokenizer& tokenizer, const std::vector<int>& ids) {
  if (tokenizer.kind() == "char") return tokenizer.decode(ids);
  std::string text;
  std::vector<int> line;
  for (size_t i = 0; i <= ids.size(); ++i) {
    if (i < ids.size() && ids[i] != data::kEosId) {
      line.push_back(ids[i]);
      continue;
    }
    text += tokenizer.decode(line);
    if (i < ids.size()) text += '\n';
    line.clear();
  }
  return text;
}

LmText load_lm_text(const ExperimentSpec& spec, const RunOptions& options, std::ostream& log) {
  const ExperimentSetting* data = spec.find("data");
  if (!data) throw RunError("experiment " + spec.name + " has no data setting; write data = text(file: \"FILE\")");
  const ConstValue& call = data->value;
  if (call.kind != ConstValue::Kind::Call || call.text != "text")
    throw_at(data->loc, "the language_model task reads data = text(file: ...), got " + call.to_string());
  check_call_args(call, {"file", "valid_file", "valid_fraction", "vocab", "vocab_size", "min_count"});
  const std::string file = text_arg(call, "file", ""), valid_file = text_arg(call, "valid_file", "");
  if (file.empty()) throw_at(data->loc, "data: text(...) needs file: (the text to train on, relative to the data directory)");
  const ConstValue* fraction_value = call.arg("valid_fraction");
  if (fraction_value && !valid_file.empty()) throw_at(fraction_value->loc, "data: give valid_file: or valid_fraction:, not both");
  const double valid_fraction = fraction_value ? fraction_value->number() : 0.1;
  if (fraction_value && (!fraction_value->is_number() || !(valid_fraction > 0 && valid_fraction < 1)))
    throw_at(fraction_value->loc, "data: valid_fraction must be a number between 0 and 1 (exclusive), got " + fraction_value->to_string());
  const std::string vocab_kind = text_arg(call, "vocab", "char");
  if (vocab_kind != "char" && vocab_kind != "word" && vocab_kind != "sentencepiece")
    throw_at(data->loc, "data: vocab must be \"char\", \"word\" or \"sentencepiece\", got \"" + vocab_kind + "\"");
  const fs::path root = data_root(spec, options, "a text", file);
  auto resolve = [&](const std::string& name) {
    fs::path p = root / name;
    if (!fs::exists(p) && fs::exists(fs::path(p.string() + ".gz"))) p = p.string() + ".gz";
    if (!fs::exists(p)) throw RunError("missing data file " + p.string() + "; give the directory holding it with --data DIR or ATTNLAB_DATA");
    return p;
  };
  std::string train_text, valid_text;
  const fs::path train_path = resolve(file);
  try {
    train_text = read_whole_text(train_path);
    if (!valid_file.empty()) {
      valid_text = read_whole_text(resolve(valid_file));
    } else {
      // The last valid_fraction of the characters (never splitting a UTF-8 sequence).
      size_t cut = static_cast<size_t>(static_cast<double>(train_text.size()) * (1.0 - valid_fraction));
      while (cut > 0 && cut < train_text.size() && (static_cast<unsigned char>(train_text[cut]) & 0xC0) == 0x80) --cut;
      valid_text = train_text.substr(cut);
      train_text.resize(cut);
    }
  } catch (const data::DataError& e) {
    throw RunError(e.what());
  }
  LmText out;
  if (vocab_kind == "char") {
    out.tokenizer = data::build_char_vocab(train_text);
  } else if (vocab_kind == "word") {
    data::WordVocabOptions wo;
    wo.min_count = int_arg(call, "min_count", 1, kMinCountLimit);
    out.tokenizer = data::build_word_vocab(lines_of(train_text), wo);
  } else {
    data::SentencePieceOptions so;
    so.vocab_size = int_arg(call, "vocab_size", 8000, kVocabSizeLimit);
    try {
      out.tokenizer = data::train_sentencepiece(lines_of(train_text), so);
    } catch (const data::DataError& e) {
      throw RunError(e.what());
    }
  }
  out.train = encode_lm_text(*out.tokenizer, train_text);
  out.valid = encode_lm_text(*out.tokenizer, valid_text);
  out.train_chars = count_characters(train_text);
  out.valid_chars = count_characters(valid_text);
  out.description = "text " + train_path.string() + " (" + std::to_string(out.train_chars) + " characters to train, " +
                    std::to_string(out.valid_chars) + " to validate: " +
                    (valid_file.empty() ? "the last " + std::to_string(static_cast<int>(valid_fraction * 100 + 0.5)) + " %" : valid_file) + ")";
  log << "data: " << out.description << "; " << out.tokenizer->kind() << " vocabulary of " << out.tokenizer->vocab_size() << "\n";
  return out;
}

}  // namespace attnlab::train
