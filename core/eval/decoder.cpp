#include "tensor/simd_intrinsics.h"  // first: see there
#include "eval/decoder.h"

#include "ir/graph.h"
#include "task/task.h"

#include <Eigen/Core>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_set>

namespace attnlab::eval {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

const ir::GraphInput* find_input(const ir::GraphDef& graph, const std::string& name) {
  for (const ir::GraphInput& input : graph.inputs())
    if (input.name() == name) return &input;
  return nullptr;
}

bool has_output(const ir::GraphDef& graph, const std::string& name) {
  for (const ir::GraphOutput& output : graph.outputs())
    if (output.name() == name) return true;
  return false;
}

// The symbolic sizes of the graph's inputs, bound for one kind of step: the batch, source length
// and target length symbols of src/tgt_in get the given sizes, any other symbol 1.
struct DimNames {
  std::string batch, src_len, tgt_len;

  explicit DimNames(const ir::GraphDef& graph) {
    const task::TranslationTask& task = task::translation();
    const ir::GraphInput* src = find_input(graph, task.src);
    const ir::GraphInput* tgt = find_input(graph, task.tgt_in);
    std::string missing;
    if (!src) missing += " input '" + task.src + "'";
    if (!tgt) missing += " input '" + task.tgt_in + "'";
    if (!has_output(graph, task.memory)) missing += " output '" + task.memory + "'";
    if (!has_output(graph, task.logits)) missing += " output '" + task.logits + "'";
    if (!missing.empty())
      throw DecodeError("graph '" + graph.name() + "' cannot be decoded: it lacks" + missing + " (an encoder-decoder graph has inputs " +
                        task.src + ", " + task.tgt_in + " and outputs " + task.memory + ", " + task.logits + ")");
    auto symbol = [](const ir::GraphInput& input, int axis) -> std::string {
      if (input.shape_size() != 2 || input.shape(axis).symbol().empty())
        throw DecodeError("graph input '" + input.name() + "' must be [batch, length] with symbolic sizes");
      return input.shape(axis).symbol();
    };
    batch = symbol(*src, 0);
    src_len = symbol(*src, 1);
    tgt_len = symbol(*tgt, 1);
    if (symbol(*tgt, 0) != batch)
      throw DecodeError("graph inputs '" + task.src + "' and '" + task.tgt_in + "' must share their batch size symbol");
  }

  ir::DimBindings bind(const ir::GraphDef& graph, int64_t rows, int64_t source, int64_t target) const {
    ir::DimBindings dims;
    for (const ir::GraphInput& input : graph.inputs())
      for (const ir::Dim& dim : input.shape())
        if (!dim.symbol().empty()) dims[dim.symbol()] = 1;
    dims[batch] = rows;
    dims[src_len] = source;
    dims[tgt_len] = target;
    return dims;
  }
};

int64_t padded_source_len(const std::vector<std::vector<int>>& sources) {
  size_t longest = 1;
  for (const auto& s : sources) longest = std::max(longest, s.size());
  return static_cast<int64_t>(longest);
}

// Writes the sources into `out` [N·copies, S], each sentence repeated `copies` times, padded.
void fill_sources(const std::vector<std::vector<int>>& sources, int64_t copies, int64_t S, float* out) {
  for (size_t i = 0; i < sources.size(); ++i)
    for (int64_t c = 0; c < copies; ++c) {
      float* row = out + (static_cast<int64_t>(i) * copies + c) * S;
      std::fill(row, row + S, static_cast<float>(kDecodePadId));
      for (size_t j = 0; j < sources[i].size(); ++j) row[j] = static_cast<float>(sources[i][j]);
    }
}

void check_options(const DecodeOptions& options) {
  if (options.beam < 1) throw DecodeError("beam size must be at least 1, got " + std::to_string(options.beam));
  if (options.max_len_extra < 0)
    throw DecodeError("the extra output length must not be negative, got " + std::to_string(options.max_len_extra));
  if (!std::isfinite(options.alpha)) throw DecodeError("the length-penalty alpha must be finite");
}

std::vector<int64_t> length_limits(const std::vector<std::vector<int>>& sources, const DecodeOptions& options) {
  std::vector<int64_t> limits;
  limits.reserve(sources.size());
  // Saturating: an extra length near INT64_MAX must not wrap (the bounds callers apply are in
  // train/limits.h; the loop stops at the model's own maximum length in any case).
  for (const auto& s : sources) {
    int64_t limit = 0;
    if (__builtin_add_overflow(static_cast<int64_t>(s.size()), options.max_len_extra, &limit)) limit = std::numeric_limits<int64_t>::max();
    limits.push_back(std::max<int64_t>(1, limit));
  }
  return limits;
}

// The shared greedy loop: `step(position, tokens)` returns the logits of that position for every
// sentence (row stride = vocab, read after the step); `parallel_rows(n, fn)` calls fn(0..n-1).
template <class StepFn, class ParallelFn>
std::vector<Translation> greedy_loop(size_t n, const int64_t& vocab, const std::vector<int64_t>& limits, double alpha,
                                     StepFn&& step, ParallelFn&& parallel_rows) {
  std::vector<Translation> out(n);
  std::vector<int> feed(n, kDecodeBosId);
  std::vector<char> done(n, 0);
  for (size_t i = 0; i < n; ++i) out[i].tokens.reserve(limits[i]);
  const int64_t max_steps = *std::max_element(limits.begin(), limits.end());
  size_t remaining = n;
  for (int64_t p = 0; p < max_steps && remaining > 0; ++p) {
    const float* logits = step(p, std::span<const int>(feed));
    parallel_rows(n, [&](size_t i) {
      if (done[i]) return;
      const float* row = logits + static_cast<int64_t>(i) * vocab;
      const int best = static_cast<int>(std::max_element(row, row + vocab) - row);  // first maximum
      out[i].log_prob += static_cast<double>(row[best]) - log_normalizer(row, vocab);
      if (best == kDecodeEosId) {
        out[i].finished = true;
        done[i] = 1;
      } else {
        out[i].tokens.push_back(best);
        if (p + 1 == limits[i]) done[i] = 1;
      }
      feed[i] = done[i] ? kDecodeEosId : best;
    });
    remaining = static_cast<size_t>(std::count(done.begin(), done.end(), 0));
  }
  for (Translation& t : out) {
    t.length = static_cast<int64_t>(t.tokens.size()) + (t.finished ? 1 : 0);
    t.score = t.log_prob / length_penalty(t.length, alpha);
  }
  return out;
}

}  // namespace

double length_penalty(int64_t length, double alpha) {
  return std::pow((5.0 + static_cast<double>(length)) / 6.0, alpha);
}

double log_normalizer(const float* logits, int64_t vocab) {
  // Eigen's vectorised float exp: this runs over every row's whole vocabulary at every step.
  const Eigen::Map<const Eigen::ArrayXf> x(logits, vocab);
  const float top = x.maxCoeff();
  const float sum = (x - top).exp().sum();
  return static_cast<double>(top) + std::log(static_cast<double>(sum));
}

// ---- DecodeSession ------------------------------------------------------------------------------

struct DecodeSession::NodeCache {
  size_t step = 0;
  std::vector<Tensor> buffers;
  std::vector<TensorView> views;
  std::vector<uint8_t> stepwise;  // per input: depends on the target (DecodeState::stepwise)
  DecodeState state;
};

DecodeSession::DecodeSession(exec::Model& model, exec::Executor& encoder_executor,
                             const std::vector<std::vector<int>>& sources, int beams, int64_t max_steps, int threads)
    : sentences_(static_cast<int64_t>(sources.size())),
      beams_(beams),
      rows_(static_cast<int64_t>(sources.size()) * beams),
      source_len_(padded_source_len(sources)),
      max_steps_(max_steps) {
  if (sources.empty()) throw DecodeError("nothing to decode: no source sentences");
  if (beams < 1) throw DecodeError("beam size must be at least 1, got " + std::to_string(beams));
  if (max_steps < 1) throw DecodeError("the number of decode steps must be at least 1");
  arena_ = threads > 0 ? std::make_unique<tbb::task_arena>(threads) : std::make_unique<tbb::task_arena>();
  const ir::GraphDef& graph = model.graph();
  const DimNames names(graph);
  const int64_t S = source_len_;

  // Encoder: once, on the N sentences.
  Tensor src({sentences_, S});
  fill_sources(sources, 1, S, src.data());
  const task::TranslationTask& task = task::translation();
  exec::Plan& encoder = model.plan(names.bind(graph, sentences_, S, 1), {task.src}, {task.memory}, exec::Pass::ForwardOnly);
  encoder_executor.forward(encoder, {{task.src, src.view()}}, StepInfo{}, 0);
  const TensorView& memory = encoder.value(task.memory);

  // Decoder: one position at a time on N·beams rows.
  plan_ = &model.plan(names.bind(graph, rows_, S, 1), {task.src, task.memory, task.tgt_in}, {task.logits}, exec::Pass::ForwardOnly);
  const TensorView& dec_memory = plan_->value(task.memory);
  if (dec_memory.numel() != memory.numel() * beams)
    throw DecodeError("the encoder output has " + to_string(memory.shape()) +
                      " elements per batch but the decoder plans memory as " + to_string(dec_memory.shape()));
  const int64_t memory_row = memory.numel() / sentences_;
  for (int64_t r = 0; r < rows_; ++r)
    std::memcpy(dec_memory.data() + r * memory_row, memory.data() + (r / beams) * memory_row,
                sizeof(float) * memory_row);
  fill_sources(sources, beams, S, plan_->value(task.src).data());
  tgt_in_ = plan_->value(task.tgt_in);
  logits_ = plan_->value(task.logits);
  vocab_ = logits_.dim(-1);
  prepare_steps();
}

DecodeSession::DecodeSession(exec::Model& model, int64_t rows, int64_t max_steps, int threads)
    : sentences_(rows), beams_(1), rows_(rows), source_len_(0), max_steps_(max_steps) {
  if (rows < 1) throw DecodeError("nothing to sample: no rows");
  if (max_steps < 1) throw DecodeError("the number of decode steps must be at least 1");
  arena_ = threads > 0 ? std::make_unique<tbb::task_arena>(threads) : std::make_unique<tbb::task_arena>();
  const ir::GraphDef& graph = model.graph();
  const task::LanguageModelTask& task = task::language_model();
  const ir::GraphInput* input = find_input(graph, task.input_ids);
  if (!input || !has_output(graph, task.logits) || input->shape_size() != 2 || input->shape(0).symbol().empty())
    throw DecodeError("graph '" + graph.name() + "' cannot be sampled: a language model has input " + task.input_ids +
                      "[batch, length] and output " + task.logits);
  ir::DimBindings dims;
  for (const ir::GraphInput& in : graph.inputs())
    for (const ir::Dim& dim : in.shape())
      if (!dim.symbol().empty()) dims[dim.symbol()] = 1;
  dims[input->shape(0).symbol()] = rows;
  plan_ = &model.plan(dims, {task.input_ids}, {task.logits}, exec::Pass::ForwardOnly);
  tgt_in_ = plan_->value(task.input_ids);
  logits_ = plan_->value(task.logits);
  vocab_ = logits_.dim(-1);
  prepare_steps();
}

// Shared by both constructors, once plan_, tgt_in_ (the input fed one token a row per step) and
// logits_ are set: splits the plan into nodes run once and nodes run per position, allocates the
// nodes' caches and runs the once-only nodes.
void DecodeSession::prepare_steps() {
  if (logits_.numel() != rows_ * vocab_)
    throw DecodeError("logits planned as " + to_string(logits_.shape()) + " for " + std::to_string(rows_) +
                      " rows of one position");

  // Which nodes depend on tgt_in: those are driven per position, the others run now, once.
  std::unordered_set<const float*> dynamic_values{tgt_in_.data()};
  const auto& steps = plan_->steps();
  for (size_t i = 0; i < steps.size(); ++i) {
    bool dynamic = false;
    for (const TensorView& input : steps[i].inputs)
      if (input.present() && dynamic_values.count(input.data())) dynamic = true;
    if (!dynamic) {
      static_steps_.push_back(i);
      continue;
    }
    dynamic_steps_.push_back(i);
    for (const TensorView& output : steps[i].outputs) dynamic_values.insert(output.data());
  }

  int64_t widest_row = 0;
  caches_.resize(dynamic_steps_.size());
  for (size_t d = 0; d < dynamic_steps_.size(); ++d) {
    const exec::Plan::Step& st = steps[dynamic_steps_[d]];
    std::vector<Shape> input_shapes;
    for (const TensorView& input : st.inputs) input_shapes.push_back(input.present() ? input.shape() : Shape{});
    NodeCache& cache = caches_[d];
    cache.step = dynamic_steps_[d];
    for (const TensorView& input : st.inputs)
      cache.stepwise.push_back(input.present() && dynamic_values.count(input.data()) ? 1 : 0);
    cache.state.stepwise = cache.stepwise;
    for (const Shape& shape : st.instance->cache_shapes(input_shapes, max_steps_)) {
      if (shape.empty() || shape[0] != rows_)
        throw DecodeError("node '" + st.name + "' (" + st.type + ") asks for a decode cache of shape " +
                          to_string(shape) + ": dimension 0 must be the batch (" + std::to_string(rows_) + ")");
      cache.buffers.emplace_back(shape);
      cache_bytes_ += numel(shape) * static_cast<int64_t>(sizeof(float));
      widest_row = std::max(widest_row, numel(shape) / rows_);
    }
    for (const Tensor& buffer : cache.buffers) cache.views.push_back(buffer.view());
    cache.state.cache = cache.views;
  }
  if (beams_ > 1) reorder_scratch_ = Tensor({rows_, std::max<int64_t>(widest_row, 1)});
  moved_.reserve(rows_);

  arena_->execute([&] {
    for (size_t i : static_steps_) run_node(i, nullptr);
  });
}

DecodeSession::~DecodeSession() = default;

void DecodeSession::run_node(size_t index, const DecodeState* state) {
  const exec::Plan::Step& st = plan_->steps()[index];
  const ForwardContext ctx{st.inputs, st.params, st.outputs, st.saved, st.workspace, StepInfo{false, 0, state}};
  try {
    st.instance->forward(ctx);
  } catch (const std::exception& e) {
    throw DecodeError(ir::format_location(st.loc) + ": error: node '" + st.name + "' (" + st.type +
                      "): decode: " + e.what());
  }
}

const float* DecodeSession::step(std::span<const int> tokens) {
  if (static_cast<int64_t>(tokens.size()) != rows_)
    throw DecodeError("decode step given " + std::to_string(tokens.size()) + " tokens for " + std::to_string(rows_) +
                      " rows");
  if (position_ >= max_steps_)
    throw DecodeError("decode position " + std::to_string(position_) + " is beyond the " + std::to_string(max_steps_) +
                      " steps the session was prepared for");
  float* ids = tgt_in_.data();
  for (int64_t r = 0; r < rows_; ++r) ids[r] = static_cast<float>(tokens[r]);
  arena_->execute([&] {
    for (NodeCache& cache : caches_) {
      cache.state.position = position_;
      run_node(cache.step, &cache.state);
    }
  });
  ++position_;
  return logits_.data();
}

void DecodeSession::reorder(std::span<const int> from) {
  if (static_cast<int64_t>(from.size()) != rows_)
    throw DecodeError("reorder given " + std::to_string(from.size()) + " rows for " + std::to_string(rows_));
  moved_.clear();
  for (int64_t r = 0; r < rows_; ++r) {
    if (from[r] < 0 || from[r] >= rows_ || from[r] / beams_ != r / beams_)
      throw DecodeError("reorder: row " + std::to_string(r) + " cannot take the state of row " +
                        std::to_string(from[r]) + " (hypotheses move only among their sentence's " +
                        std::to_string(beams_) + " rows)");
    if (from[r] != r) moved_.push_back(static_cast<int>(r));
  }
  if (moved_.empty()) return;
  float* scratch = reorder_scratch_.data();
  arena_->execute([&] {
    for (NodeCache& cache : caches_)
      for (const TensorView& buffer : cache.views) {
        const int64_t width = buffer.numel() / rows_;
        float* data = buffer.data();
        // Stage the source rows first: a row may be both a source and a destination.
        tbb::parallel_for(size_t{0}, moved_.size(), [&](size_t m) {
          const int64_t source = from[moved_[m]];
          std::memcpy(scratch + moved_[m] * width, data + source * width, sizeof(float) * width);
        });
        tbb::parallel_for(size_t{0}, moved_.size(), [&](size_t m) {
          std::memcpy(data + moved_[m] * width, scratch + moved_[m] * width, sizeof(float) * width);
        });
      }
  });
}

// ---- Decoder ------------------------------------------------------------------------------------

std::vector<Translation> Decoder::translate(const std::vector<std::vector<int>>& sources,
                                            const DecodeOptions& options) {
  return options.beam == 1 ? greedy(sources, options) : beam_search(sources, options);
}

std::vector<Translation> Decoder::greedy(const std::vector<std::vector<int>>& sources, const DecodeOptions& options) {
  check_options(options);
  if (sources.empty()) return {};
  const std::vector<int64_t> limits = length_limits(sources, options);
  const int64_t max_steps = *std::max_element(limits.begin(), limits.end());
  DecodeSession session(model_, executor_, sources, 1, max_steps, options.threads);
  tbb::task_arena arena = options.threads > 0 ? tbb::task_arena(options.threads) : tbb::task_arena();
  const int64_t vocab = session.vocab();
  return greedy_loop(
      sources.size(), vocab, limits, options.alpha,
      [&](int64_t, std::span<const int> feed) { return session.step(feed); },
      [&](size_t n, auto&& fn) {
        arena.execute([&] { tbb::parallel_for(size_t{0}, n, [&](size_t i) { fn(i); }); });
      });
}

std::vector<Translation> Decoder::greedy_without_cache(const std::vector<std::vector<int>>& sources,
                                                       const DecodeOptions& options) {
  check_options(options);
  if (sources.empty()) return {};
  const ir::GraphDef& graph = model_.graph();
  const DimNames names(graph);
  const std::vector<int64_t> limits = length_limits(sources, options);
  const int64_t n = static_cast<int64_t>(sources.size());
  const int64_t S = padded_source_len(sources);
  Tensor src({n, S});
  fill_sources(sources, 1, S, src.data());
  std::vector<std::vector<int>> prefixes(n, std::vector<int>{kDecodeBosId});
  std::vector<float> last;  // logits of the newest position, n × vocab
  int64_t vocab = 0;
  return greedy_loop(
      sources.size(), vocab, limits, options.alpha,
      [&](int64_t p, std::span<const int> feed) {
        for (int64_t i = 0; i < n; ++i)
          if (p > 0) prefixes[i].push_back(feed[i]);
        Tensor tgt({n, p + 1});
        for (int64_t i = 0; i < n; ++i)
          for (int64_t t = 0; t <= p; ++t) tgt.data()[i * (p + 1) + t] = static_cast<float>(prefixes[i][t]);
        const task::TranslationTask& task = task::translation();
        exec::Plan& plan = model_.plan(names.bind(graph, n, S, p + 1), {task.src, task.tgt_in}, {task.logits}, exec::Pass::ForwardOnly);
        executor_.forward(plan, {{task.src, src.view()}, {task.tgt_in, tgt.view()}}, StepInfo{}, 0);
        const TensorView& logits = plan.value(task.logits);
        vocab = logits.dim(-1);
        last.resize(n * vocab);
        for (int64_t i = 0; i < n; ++i)
          std::copy_n(logits.data() + (i * (p + 1) + p) * vocab, vocab, last.data() + i * vocab);
        return static_cast<const float*>(last.data());
      },
      [&](size_t count, auto&& fn) {
        for (size_t i = 0; i < count; ++i) fn(i);
      });
}

namespace {

struct Candidate {
  double score;  // cumulative log-probability
  int row;       // the row it extends
  int token;
};

// Descending score; ties by row, then token, so the order is a pure function of the scores.
bool better(const Candidate& a, const Candidate& b) {
  if (a.score != b.score) return a.score > b.score;
  if (a.row != b.row) return a.row < b.row;
  return a.token < b.token;
}

// The `k` best tokens of one row (ties: the lowest id first), appended to `out` as candidates
// extending `row` with cumulative score base + log-probability.
void top_tokens(const float* logits, int64_t vocab, int k, int row, double base, Candidate* out, int& count) {
  const int first = count;
  int kept = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    const float x = logits[v];
    if (kept == k && !(x > logits[out[first + kept - 1].token])) continue;
    int pos = kept < k ? kept++ : k - 1;
    while (pos > 0 && x > logits[out[first + pos - 1].token]) {
      out[first + pos] = out[first + pos - 1];
      --pos;
    }
    out[first + pos] = Candidate{0.0, row, static_cast<int>(v)};
  }
  const double normalizer = log_normalizer(logits, vocab);
  for (int j = 0; j < kept; ++j)
    out[first + j].score = base + (static_cast<double>(logits[out[first + j].token]) - normalizer);
  count += kept;
}

}  // namespace

std::vector<Translation> Decoder::beam_search(const std::vector<std::vector<int>>& sources,
                                              const DecodeOptions& options) {
  check_options(options);
  if (sources.empty()) return {};
  const int K = options.beam;
  const int64_t n = static_cast<int64_t>(sources.size());
  const std::vector<int64_t> limits = length_limits(sources, options);
  const int64_t max_steps = *std::max_element(limits.begin(), limits.end());
  DecodeSession session(model_, executor_, sources, K, max_steps, options.threads);
  const int64_t rows = session.rows(), vocab = session.vocab();
  const int width = static_cast<int>(std::min<int64_t>(2 * K, vocab));  // candidates kept per sentence

  std::vector<double> cumulative(rows, kNegInf), next_cumulative(rows);
  for (int64_t i = 0; i < n; ++i) cumulative[i * K] = 0.0;  // one live hypothesis to start with
  std::vector<int> feed(rows, kDecodeBosId), next_feed(rows), from(rows);
  std::vector<int> parent(max_steps * rows), token(max_steps * rows);  // back-pointers per step
  std::vector<std::vector<Translation>> finished(n);
  std::vector<char> done(n, 0);
  std::vector<Candidate> candidates(n * K * width);
  std::vector<int> candidate_count(n);

  auto history = [&](int64_t last_step, int row, std::vector<int>& out) {
    out.resize(last_step + 1);
    for (int64_t q = last_step; q >= 0; --q) {
      out[q] = token[q * rows + row];
      row = parent[q * rows + row];
    }
  };
  auto finish = [&](int64_t i, int64_t last_step, int row, double log_prob, bool ended) {
    Translation t;
    if (last_step >= 0) history(last_step, row, t.tokens);
    t.log_prob = log_prob;
    t.finished = ended;
    t.length = static_cast<int64_t>(t.tokens.size()) + (ended ? 1 : 0);
    t.score = log_prob / length_penalty(t.length, options.alpha);
    finished[i].push_back(std::move(t));
  };

  tbb::task_arena arena = options.threads > 0 ? tbb::task_arena(options.threads) : tbb::task_arena();
  for (int64_t p = 0; p < max_steps; ++p) {
    if (std::all_of(done.begin(), done.end(), [](char d) { return d != 0; })) break;
    const float* logits = session.step(feed);
    arena.execute([&] {
      tbb::parallel_for(int64_t{0}, n, [&](int64_t i) {
        const int first_row = static_cast<int>(i * K);
        for (int b = 0; b < K; ++b) {  // rows of a finished sentence stay as they are
          from[first_row + b] = first_row + b;
          next_feed[first_row + b] = kDecodeEosId;
          next_cumulative[first_row + b] = kNegInf;
        }
        if (done[i]) return;
        Candidate* cand = candidates.data() + i * K * width;
        int count = 0;
        for (int b = 0; b < K; ++b) {
          const int row = first_row + b;
          if (cumulative[row] == kNegInf) continue;
          top_tokens(logits + row * vocab, vocab, width, row, cumulative[row], cand, count);
        }
        const int kept = std::min(count, width);
        std::partial_sort(cand, cand + kept, cand + count, better);
        int live = 0;
        for (int j = 0; j < kept && live < K; ++j) {
          const Candidate& c = cand[j];
          if (c.token == kDecodeEosId) {
            if (j < K) finish(i, p - 1, c.row, c.score, true);
            continue;
          }
          const int row = first_row + live++;
          from[row] = c.row;
          next_feed[row] = c.token;
          next_cumulative[row] = c.score;
          parent[p * rows + row] = c.row;
          token[p * rows + row] = c.token;
        }
        if (p + 1 == limits[i]) {  // the length limit: every live hypothesis ends here
          for (int b = 0; b < live; ++b) finish(i, p, first_row + b, next_cumulative[first_row + b], false);
          done[i] = 1;
          return;
        }
        if (static_cast<int>(finished[i].size()) >= K || live == 0) {
          done[i] = 1;
          return;
        }
        if (!finished[i].empty()) {
          // No live hypothesis can beat the best finished one: its log-probability only falls, and
          // the largest penalty divisor it can reach is at the length limit (α ≥ 0) or at the
          // next step (α < 0).
          double best = kNegInf;
          for (const Translation& t : finished[i]) best = std::max(best, t.score);
          const int64_t reach = options.alpha >= 0.0 ? limits[i] : p + 2;
          const double divisor = length_penalty(reach, options.alpha);
          double bound = kNegInf;
          for (int b = 0; b < live; ++b) bound = std::max(bound, next_cumulative[first_row + b] / divisor);
          if (best >= bound) done[i] = 1;
        }
      });
    });
    session.reorder(from);
    feed.swap(next_feed);
    cumulative.swap(next_cumulative);
  }

  std::vector<Translation> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const auto& list = finished[i];
    if (list.empty()) throw DecodeError("beam search ended sentence " + std::to_string(i) + " without a hypothesis");
    const Translation* best = &list.front();
    for (const Translation& t : list)
      if (t.score > best->score) best = &t;
    out[i] = *best;
  }
  return out;
}

}  // namespace attnlab::eval
