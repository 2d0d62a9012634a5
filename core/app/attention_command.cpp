// `attnlab attention --checkpoint RUN --src TEXT [--tgt TEXT] [--out FILE.html]`: the attention
// probabilities of a trained translation model on one sentence pair, as one self-contained HTML
// page of heatmaps (app/attention_page.h; docs/tools.md).
//
// The source (and the target, when given; otherwise the model's greedy translation of the
// source) are encoded as `translate` encodes input (train::encode_source, in the checkpoint's
// input form), and one teacher-forced forward pass runs with a recorder (exec::RecordSink, the
// node contract's StepInfo::recorder): every node that records "probs" [batch, heads, queries,
// keys] contributes a map. Which kind of attention a node is comes from the graph, not from its
// type or name: its query (input 0) and its keys (input 1) depend on the graph inputs src or
// tgt_in — queries from the target and keys from the target are decoder self-attention, keys
// from the source only are cross-attention, queries from the source are encoder self-attention.
// Layers are numbered in graph order within each kind. Every user error is one line, exit 1: a
// checkpoint that is not a translation model (no src and tgt_in inputs), text that is not UTF-8 or
// holds a control byte (as translate's input), text that encodes to no tokens or to more than
// train::kAttentionTokensLimit, a model with no recording node, an --out that cannot be written.
#include "app/attention_page.h"
#include "app/checkpoint_model.h"
#include "data/parallel_text.h"
#include "exec/executor.h"
#include "exec/tbb_executor.h"
#include "train/checkpoint.h"
#include "train/limits.h"
#include "train/translate.h"

#include <iostream>
#include <map>
#include <mutex>

namespace attnlab::cli {

namespace {

struct AttentionArgs {
  std::string checkpoint, src, tgt, out = "attention.html", input;
};

// Keeps each node's records, in buffers it owns.
class CollectingSink final : public exec::RecordSink {
 public:
  TensorView record(const std::string& node, const std::string& what, const Shape& shape) override {
    std::lock_guard<std::mutex> lock(mutex_);
    Tensor& t = records_[{node, what}];
    t = Tensor(shape, 0.0f);
    return t.view();
  }
  const std::map<std::pair<std::string, std::string>, Tensor>& records() const { return records_; }

 private:
  std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, Tensor> records_;
};

constexpr unsigned kFromSource = 1, kFromTarget = 2;

// Which of the graph inputs src and tgt_in each value depends on.
class Dependencies {
 public:
  explicit Dependencies(const ir::GraphDef& graph) {
    for (const auto& node : graph.nodes()) producers_[node.name()] = &node;
  }
  unsigned of(const std::string& value) {
    const std::string node = value.substr(0, value.find(':'));
    if (node == task::translation().src) return kFromSource;
    if (node == task::translation().tgt_in) return kFromTarget;
    const auto memo = memo_.find(node);
    if (memo != memo_.end()) return memo->second;
    unsigned deps = 0;
    memo_[node] = 0;  // the graph is acyclic (validated); this only stops a malformed one
    const auto producer = producers_.find(node);
    if (producer != producers_.end())
      for (const std::string& input : producer->second->inputs())
        if (!input.empty()) deps |= of(input);
    return memo_[node] = deps;
  }

 private:
  std::map<std::string, const ir::NodeDef*> producers_;
  std::map<std::string, unsigned> memo_;
};

std::vector<std::string> pieces(const data::Tokenizer& tokenizer, const std::vector<int>& ids) {
  std::vector<std::string> out;
  for (const int id : ids) out.push_back(tokenizer.piece(id));
  return out;
}

Tensor ids_tensor(const std::vector<int>& ids) {
  Tensor t(Shape{1, static_cast<int64_t>(ids.size())});
  for (size_t i = 0; i < ids.size(); ++i) t.data()[i] = static_cast<float>(ids[i]);
  return t;
}

// A page of maps for more tokens than kAttentionTokensLimit is too large to open (limits.h).
void check_side_length(const std::string& what, size_t tokens) {
  const train::IntLimit& limit = train::kAttentionTokensLimit;
  if (static_cast<int64_t>(tokens) > limit.max)
    throw CliError(1, what + " " + std::to_string(tokens) + " tokens; the page shows at most " + std::to_string(limit.max) +
                          " (each map has tokens x tokens cells): give a shorter sentence");
}

// `text` (the value of `flag`) as the model's input ids: UTF-8 text of one line, encoded as
// translate encodes a line, to at least one and at most kAttentionTokensLimit tokens.
std::vector<int> encode_side(const std::string& flag, const std::string& text, const data::Tokenizer& tokenizer,
                             train::InputForm form) {
  if (const auto wrong = data::check_text_line(text)) throw CliError(1, flag + ":1:" + *wrong);
  std::vector<int> ids;
  try {
    ids = train::encode_source(tokenizer, text, form);
  } catch (const std::exception& e) {
    throw CliError(1, flag + ": " + e.what());
  }
  if (ids.empty()) throw CliError(1, flag + ": the text encodes to no tokens");
  check_side_length(flag + ": the text encodes to", ids.size());
  return ids;
}

void run_attention(const AttentionArgs& args, const CommonOptions& options) {
  CheckpointModel m = load_checkpoint_model(args.checkpoint, options, task::translation(), "attention");
  const std::string where = m.where();
  const task::TranslationTask& names = task::translation();  // the checkpoint is a translation model (checked above)
  train::InputForm form = train::checkpoint_input_form(m.checkpoint);
  if (!args.input.empty()) {
    const auto given = train::parse_input_form(args.input);
    if (!given) throw CliError(1, "--input: must be raw or tokenized, got '" + args.input + "'");
    form = *given;
  }
  const std::vector<int> src = encode_side("--src", args.src, *m.tokenizer, form);

  exec::TbbExecutor executor(options.threads);
  std::vector<int> tgt;
  if (!args.tgt.empty()) {
    tgt = encode_side("--tgt", args.tgt, *m.tokenizer, form);
  } else {
    eval::DecodeOptions greedy;
    greedy.beam = 1;
    greedy.threads = options.threads;
    train::Translator translator(*m.model, executor, greedy, 1);
    try {
      tgt = translator.translate({src}).at(0);
    } catch (const std::exception& e) {
      throw CliError(1, where + ": decoding failed: " + e.what());
    }
    check_side_length("--src: the model's greedy translation is", tgt.size());
  }
  std::vector<int> tgt_in = {data::kBosId};
  tgt_in.insert(tgt_in.end(), tgt.begin(), tgt.end());

  const Tensor src_t = ids_tensor(src), tgt_t = ids_tensor(tgt_in);
  ir::DimBindings dims;
  for (const ir::GraphInput& input : m.graph.inputs()) {
    const Tensor* fed = input.name() == names.src ? &src_t : input.name() == names.tgt_in ? &tgt_t : nullptr;
    if (!fed) continue;
    for (int d = 0; d < input.shape_size() && d < 2; ++d)
      if (!input.shape(d).symbol().empty()) dims[input.shape(d).symbol()] = fed->shape()[static_cast<size_t>(d)];
  }
  CollectingSink sink;
  try {
    exec::Plan& plan = m.model->plan(dims, {names.src, names.tgt_in}, {names.logits}, exec::Pass::ForwardOnly);
    executor.forward(plan, {{names.src, src_t.view()}, {names.tgt_in, tgt_t.view()}}, StepInfo{}, 0, &sink);
  } catch (const std::exception& e) {
    throw CliError(1, where + ": the forward pass failed: " + e.what());
  }

  AttentionPage page;
  page.title = "Attention: " + m.file.string() + " (step " + std::to_string(m.checkpoint.step()) + ")";
  page.src_tokens = pieces(*m.tokenizer, src);
  page.tgt_tokens = pieces(*m.tokenizer, tgt_in);
  Dependencies deps(m.graph);
  std::map<std::string, int> layers;
  for (const auto& node : m.graph.nodes()) {  // graph order: the layers in order
    const auto rec = sink.records().find({node.name(), "probs"});
    if (rec == sink.records().end()) continue;
    const Tensor& probs = rec->second;
    if (probs.shape().size() != 4 || node.inputs_size() < 2) continue;
    const unsigned query = deps.of(node.inputs(0)), keys = deps.of(node.inputs(1));
    AttentionMap map;
    if (query & kFromTarget) {
      map.kind = keys & kFromTarget ? "decoder self-attention" : "cross-attention";
      map.rows = "tgt";
      map.cols = keys & kFromTarget ? "tgt" : "src";
    } else {
      map.kind = "encoder self-attention";
      map.rows = map.cols = "src";
    }
    map.layer = layers[map.kind]++;
    map.node = node.name();
    map.heads = static_cast<int>(probs.shape()[1]);
    map.row_count = static_cast<int>(probs.shape()[2]);
    map.col_count = static_cast<int>(probs.shape()[3]);
    map.probs.assign(probs.data(), probs.data() + probs.numel());
    page.maps.push_back(std::move(map));
  }
  if (page.maps.empty())
    throw CliError(1, where + ": no node of the model recorded attention probabilities (its attention types do not record "
                              "through the node contract's recorder)");
  try {
    train::write_file_atomically(args.out, attention_page(page));
  } catch (const std::exception& e) {
    throw CliError(1, "--out " + args.out + ": " + e.what());
  }
  std::cerr << "attention of " << page.maps.size() << " nodes (" << layers["encoder self-attention"] << " encoder, "
            << layers["decoder self-attention"] << " decoder self, " << layers["cross-attention"] << " cross) written to "
            << args.out << "\n";
}

}  // namespace

void add_attention_command(CLI::App& app, CommonOptions& options) {
  CLI::App* command =
      app.add_subcommand("attention", "Attention heatmaps of a translation checkpoint on one sentence, as an HTML page");
  auto args = std::make_shared<AttentionArgs>();
  add_checkpoint_option(*command, args->checkpoint);
  command->add_option("--src", args->src, "Source sentence")->required();
  command->add_option("--tgt", args->tgt, "Target sentence (default: the model's greedy translation of --src)");
  command->add_option("--out", args->out, "HTML file to write")->capture_default_str()->check(non_empty_path());
  command->add_option("--input", args->input, "Input form: raw or tokenized (default: the checkpoint's data form)");
  add_common_options(*command, options);
  command->callback([args, &options] { run_attention(*args, options); });
}

}  // namespace attnlab::cli
