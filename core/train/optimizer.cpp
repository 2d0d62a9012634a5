#include "train/optimizer.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace attnlab::train {
namespace {

// Elements per task. Fixed (not derived from the thread count) so that the per-chunk partial sums
// of the gradient norm, and so the norm itself, are the same for every number of threads.
constexpr int64_t kChunkElements = 1 << 14;

struct Chunk {
  size_t param;
  int64_t begin;
  int64_t end;
};

std::vector<Chunk> make_chunks(std::span<const ParamRef> params) {
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].value.numel();
    for (int64_t b = 0; b < n; b += kChunkElements) chunks.push_back({i, b, std::min(n, b + kChunkElements)});
  }
  return chunks;
}

template <class Body>
void for_each_chunk(const std::vector<Chunk>& chunks, const Body& body) {
  tbb::parallel_for(tbb::blocked_range<size_t>(0, chunks.size(), 1), [&](const tbb::blocked_range<size_t>& r) {
    for (size_t c = r.begin(); c != r.end(); ++c) body(c, chunks[c]);
  });
}

void check_param(const ParamRef& p) {
  if (!p.value.present() || !p.grad.present())
    throw OptimizerError("parameter '" + p.name + "': value or gradient is absent");
  if (p.value.shape() != p.grad.shape())
    throw OptimizerError("parameter '" + p.name + "': value shape " + to_string(p.value.shape()) +
                         " differs from gradient shape " + to_string(p.grad.shape()));
}

void check_unique_names(std::span<const ParamRef> params) {
  std::set<std::string> seen;
  for (const ParamRef& p : params)
    if (!seen.insert(p.name).second) throw OptimizerError("parameter '" + p.name + "' is passed twice");
}

double norm_from_chunks(std::span<const ParamRef> params, const std::vector<Chunk>& chunks, double scale) {
  std::vector<double> partial(chunks.size(), 0.0);
  for_each_chunk(chunks, [&](size_t c, const Chunk& chunk) {
    const float* g = params[chunk.param].grad.data();
    // Eight running sums instead of one: a single accumulator chains every addition to the one
    // before (the compiler may not reorder them), eight independent ones vectorise. The order is
    // fixed by the chunk, so the norm stays deterministic.
    double lanes[8] = {};
    int64_t i = chunk.begin;
    for (; i + 8 <= chunk.end; i += 8)
      for (int l = 0; l < 8; ++l) lanes[l] += double(g[i + l]) * double(g[i + l]);
    for (; i < chunk.end; ++i) lanes[0] += double(g[i]) * double(g[i]);
    partial[c] = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  });
  double total = 0.0;
  for (double s : partial) total += s;  // fixed order: deterministic
  return std::sqrt(total) * std::abs(scale);
}

}  // namespace

void validate(const AdamConfig& c) {
  auto fail = [](const std::string& what) { throw OptimizerError("adam: " + what); };
  if (!(c.beta1 >= 0.0 && c.beta1 < 1.0)) fail("beta1 must be in [0, 1), got " + std::to_string(c.beta1));
  if (!(c.beta2 >= 0.0 && c.beta2 < 1.0)) fail("beta2 must be in [0, 1), got " + std::to_string(c.beta2));
  if (!(c.eps > 0.0)) fail("eps must be > 0, got " + std::to_string(c.eps));
  if (!(c.clip_norm >= 0.0)) fail("clip_norm must be >= 0 (0 disables clipping), got " + std::to_string(c.clip_norm));
  if (!(c.weight_decay >= 0.0 && std::isfinite(c.weight_decay)))
    fail("weight_decay must be finite and >= 0, got " + std::to_string(c.weight_decay));
}

double global_grad_norm(std::span<const ParamRef> params, double scale) {
  for (const ParamRef& p : params) check_param(p);
  return norm_from_chunks(params, make_chunks(params), scale);
}

Adam::Adam(AdamConfig config) : config_(config) { validate(config_); }

Adam::Moments& Adam::moments_for(const ParamRef& param) {
  auto it = moments_.find(param.name);
  if (it == moments_.end())
    return moments_.emplace(param.name, Moments{Tensor(param.value.shape()), Tensor(param.value.shape())}).first->second;
  if (it->second.m.shape() != param.value.shape())
    throw OptimizerError("parameter '" + param.name + "' changed shape: optimizer state is " +
                         to_string(it->second.m.shape()) + ", parameter is " + to_string(param.value.shape()));
  return it->second;
}

StepStats Adam::step(std::span<const ParamRef> params, double lr, double grad_scale) {
  if (!std::isfinite(lr) || lr < 0.0) throw OptimizerError("adam: learning rate must be finite and >= 0, got " + std::to_string(lr));
  if (!std::isfinite(grad_scale)) throw OptimizerError("adam: gradient scale must be finite, got " + std::to_string(grad_scale));
  check_unique_names(params);
  for (const ParamRef& p : params) check_param(p);

  std::vector<Moments*> moments;
  moments.reserve(params.size());
  for (const ParamRef& p : params) moments.push_back(&moments_for(p));

  const std::vector<Chunk> chunks = make_chunks(params);
  StepStats stats;
  stats.lr = lr;
  double factor = grad_scale;
  stats.grad_norm = norm_from_chunks(params, chunks, grad_scale);  // reported even without clipping
  if (!std::isfinite(stats.grad_norm)) {
    // A NaN or infinite gradient would silently poison every parameter it touches.
    std::string where;
    for (const ParamRef& p : params) {
      const float* g = p.grad.data();
      for (int64_t i = 0; i < p.grad.numel() && where.empty(); ++i)
        if (!std::isfinite(g[i])) where = "parameter '" + p.name + "' element " + std::to_string(i) + " is " + std::to_string(g[i]);
      if (!where.empty()) break;
    }
    if (where.empty()) where = "the gradients' norm overflows";
    throw OptimizerError("adam: non-finite gradient at update " + std::to_string(step_ + 1) + " (" + where +
                         "); no parameter was changed");
  }
  if (config_.clip_norm > 0.0 && stats.grad_norm > config_.clip_norm) {
    stats.clip_factor = config_.clip_norm / stats.grad_norm;
    stats.clipped = true;
    factor *= stats.clip_factor;
  }

  ++step_;
  const double t = double(step_);
  const double bias1 = 1.0 - std::pow(config_.beta1, t);
  const double bias2 = 1.0 - std::pow(config_.beta2, t);
  const float b1 = float(config_.beta1), b2 = float(config_.beta2);
  const float one_minus_b1 = float(1.0 - config_.beta1), one_minus_b2 = float(1.0 - config_.beta2);
  const float g_factor = float(factor);
  const float step_size = float(lr / bias1);         // lr · m / (1 − β1^t) = step_size · m
  const float inv_sqrt_bias2 = float(1.0 / std::sqrt(bias2));  // sqrt(v̂) = sqrt(v) / sqrt(1 − β2^t)
  const float eps = float(config_.eps);
  const float shrink = float(1.0 - lr * config_.weight_decay);  // AdamW's decoupled decay

  for_each_chunk(chunks, [&](size_t, const Chunk& chunk) {
    const ParamRef& p = params[chunk.param];
    float* theta = p.value.data();
    if (p.decay && config_.weight_decay > 0.0)
      for (int64_t i = chunk.begin; i < chunk.end; ++i) theta[i] *= shrink;
    const float* grad = p.grad.data();
    float* m = moments[chunk.param]->m.data();
    float* v = moments[chunk.param]->v.data();
    for (int64_t i = chunk.begin; i < chunk.end; ++i) {
      const float g = grad[i] * g_factor;
      m[i] = b1 * m[i] + one_minus_b1 * g;
      v[i] = b2 * v[i] + one_minus_b2 * g * g;
      theta[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bias2 + eps);
    }
  });
  return stats;
}

AdamState Adam::export_state() const {
  AdamState state;
  state.step = step_;
  for (const auto& [name, mom] : moments_) state.slots.push_back({name, mom.m, mom.v});
  return state;
}

void Adam::import_state(AdamState state, std::span<const ParamRef> params, const std::string& source) {
  const std::string where = source.empty() ? std::string("optimizer state") : "optimizer state in " + source;
  if (state.step < 0) throw OptimizerError(where + ": negative step " + std::to_string(state.step));
  std::map<std::string, Moments> imported;
  for (AdamState::Slot& slot : state.slots) {
    if (slot.m.shape() != slot.v.shape())
      throw OptimizerError(where + ": parameter '" + slot.name + "': first moment " + to_string(slot.m.shape()) +
                           " and second moment " + to_string(slot.v.shape()) + " differ in shape");
    if (!imported.emplace(slot.name, Moments{std::move(slot.m), std::move(slot.v)}).second)
      throw OptimizerError(where + ": parameter '" + slot.name + "' appears twice");
  }
  std::vector<std::string> missing, shape_errors;
  std::set<std::string> wanted;
  for (const ParamRef& p : params) {
    wanted.insert(p.name);
    auto it = imported.find(p.name);
    if (it == imported.end()) missing.push_back(p.name);
    else if (it->second.m.shape() != p.value.shape())
      shape_errors.push_back("'" + p.name + "' is " + to_string(it->second.m.shape()) + " in the state, " +
                             to_string(p.value.shape()) + " in the model");
  }
  std::vector<std::string> extra;
  for (const auto& [name, mom] : imported)
    if (!wanted.count(name)) extra.push_back(name);
  if (!missing.empty() || !extra.empty() || !shape_errors.empty()) {
    std::ostringstream msg;
    msg << where << " does not match the model's parameters:";
    auto list = [&](const char* what, const std::vector<std::string>& names, bool quote) {
      if (names.empty()) return;
      msg << "\n  " << what << ":";
      for (const std::string& n : names) msg << (quote ? " '" : " ") << n << (quote ? "'" : "");
    };
    list("no state for", missing, true);
    list("state for unknown parameters", extra, true);
    list("shape differs", shape_errors, false);
    throw OptimizerError(msg.str());
  }
  moments_ = std::move(imported);
  step_ = state.step;
}

void GradientAccumulator::accumulate(std::span<const ParamRef> params, double weight) {
  if (!std::isfinite(weight)) throw OptimizerError("gradient accumulation: weight must be finite, got " + std::to_string(weight));
  check_unique_names(params);
  std::vector<float*> sums;
  for (const ParamRef& p : params) {
    check_param(p);
    auto it = sums_.find(p.name);
    if (it == sums_.end()) it = sums_.emplace(p.name, Sum{Tensor(p.grad.shape()), false}).first;
    else if (it->second.value.shape() != p.grad.shape())
      throw OptimizerError("gradient accumulation: parameter '" + p.name + "' changed shape from " +
                           to_string(it->second.value.shape()) + " to " + to_string(p.grad.shape()));
    it->second.touched = true;
    sums.push_back(it->second.value.data());
  }
  const float w = float(weight);
  for_each_chunk(make_chunks(params), [&](size_t, const Chunk& chunk) {
    const float* g = params[chunk.param].grad.data();
    float* s = sums[chunk.param];
    for (int64_t i = chunk.begin; i < chunk.end; ++i) s[i] += w * g[i];
  });
  ++micro_batches_;
  total_weight_ += weight;
}

void GradientAccumulator::write_to(std::span<const ParamRef> params) {
  for (const ParamRef& p : params) {
    check_param(p);
    auto it = sums_.find(p.name);
    if (it == sums_.end() || !it->second.touched)
      throw OptimizerError("gradient accumulation: no gradient accumulated for parameter '" + p.name + "'");
    if (it->second.value.shape() != p.grad.shape())
      throw OptimizerError("gradient accumulation: parameter '" + p.name + "' changed shape from " +
                           to_string(it->second.value.shape()) + " to " + to_string(p.grad.shape()));
  }
  for (const ParamRef& p : params) p.grad.copy_from(sums_.at(p.name).value.view());
  clear();
}

void GradientAccumulator::clear() {
  // Buffers are kept (zeroed) so that accumulation does not allocate on every step.
  for (auto& [name, sum] : sums_) {
    sum.value.view().set_zero();
    sum.touched = false;
  }
  micro_batches_ = 0;
  total_weight_ = 0.0;
}

}  // namespace attnlab::train
