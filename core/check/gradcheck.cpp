// core/check/gradcheck.cpp — see gradcheck.h for the contract.
#include "check/gradcheck.h"

#include "node/positional.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

namespace attnlab::gradcheck {

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// Input gradients start at this value: backward must add to it, so result − sentinel is the
// analytic gradient. A node that assigns instead of adding loses the sentinel and fails.
constexpr float kSentinel = 0.5f;
constexpr uint64_t kSeed = 0x5eed5eedULL;
// Elements perturbed per tensor at most; larger tensors are sampled at random.
constexpr int64_t kMaxChecked = 64;

std::string describe(const Shape& shape, int64_t flat) {
  std::vector<int64_t> index(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    index[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return to_string(index);
}

std::vector<TensorView> views(const std::vector<Tensor>& tensors) {
  std::vector<TensorView> out;
  for (const Tensor& t : tensors) out.push_back(t.view());
  return out;
}

std::vector<Tensor> make(const std::vector<Shape>& shapes, float value) {
  std::vector<Tensor> out;
  for (const Shape& s : shapes) out.emplace_back(s, value);
  return out;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), sizeof(float) * a.numel()) == 0;
}

// The auxiliary losses a node reports in a training forward (node.h, StepReport): part of L.
class AuxLosses final : public StepReport {
 public:
  void aux_loss(double value) override { sum += value; }
  void metric(const std::string&, double) override {}
  double sum = 0.0;
};

// Backward runs with this objective scale (StepInfo::objective_scale) and output gradients scaled
// alike, and the analytic gradients are divided by it: a node that ignores the scale on its
// auxiliary loss fails. A power of two, so the scaling itself is exact.
constexpr double kObjectiveScale = 2.0;

// Everything one check needs: the node, its tensors, and the random weights w of L = Σ w·y (+ the
// auxiliary losses the node reports in training).
struct Harness {
  const NodeSchema& schema;
  const GradCheckExample& example;
  NodeHandle node;
  NodeShapes shapes;
  std::vector<Tensor> inputs, params, weights;
  std::vector<bool> output_differentiable;
  StepInfo step;
  std::vector<Tensor> state_start;  // each State parameter's value before a forward (else empty)

  bool is_state(size_t p) const { return shapes.params[p].kind == ParamKind::State; }

  struct Run {
    std::vector<Tensor> outputs, saved, workspace;
    std::vector<Tensor> state;  // the State parameters after the forward
    double aux = 0.0;
  };

  // A forward on fresh buffers: outputs, saved and workspace start as NaN so that any element the
  // node does not write shows up. State parameters start from state_start every time, so that each
  // forward is the same function of inputs and parameters.
  Run forward() {
    Run run{make(shapes.outputs, kNaN), make(shapes.saved, kNaN), make(shapes.workspace, kNaN), {}, 0.0};
    for (size_t p = 0; p < params.size(); ++p)
      if (is_state(p)) params[p].view().copy_from(state_start[p].view());
    AuxLosses aux;
    StepInfo info = step;
    if (info.training) info.report = &aux;
    const std::vector<TensorView> in = views(inputs), p = views(params), out = views(run.outputs),
                                  sv = views(run.saved), ws = views(run.workspace);
    node->forward(ForwardContext{in, p, out, sv, ws, info});
    for (size_t q = 0; q < params.size(); ++q) run.state.push_back(is_state(q) ? params[q] : Tensor());
    run.aux = aux.sum;
    return run;
  }

  // L = Σ over differentiable outputs of Σ w·y, accumulated in double, plus the auxiliary losses.
  double loss(const Run& run) const {
    double total = run.aux;
    for (size_t o = 0; o < run.outputs.size(); ++o) {
      if (!output_differentiable[o]) continue;
      const float* y = run.outputs[o].data();
      const float* w = weights[o].data();
      for (int64_t i = 0; i < run.outputs[o].numel(); ++i) total += static_cast<double>(w[i]) * static_cast<double>(y[i]);
    }
    return total;
  }
};

// Example inputs: Real ~ N(0, 1), Index uniform in [0, bound), Fixed as given. Returns an error
// message for a malformed example ("" when the inputs are filled).
std::string fill_inputs(const NodeSchema& schema, const GradCheckExample& example, std::mt19937_64& rng,
                        std::vector<Tensor>& out) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t i = 0; i < example.inputs.size(); ++i) {
    const CheckInput& in = example.inputs[i];
    Tensor t(in.shape);
    switch (in.kind) {
      case CheckInput::Kind::Real:
        for (int64_t j = 0; j < t.numel(); ++j) t.data()[j] = normal(rng);
        break;
      case CheckInput::Kind::Index: {
        if (in.bound <= 0) return "input '" + schema.inputs[i].name + "' is Index with bound " + std::to_string(in.bound);
        std::uniform_int_distribution<int64_t> pick(0, in.bound - 1);
        for (int64_t j = 0; j < t.numel(); ++j) t.data()[j] = static_cast<float>(pick(rng));
        break;
      }
      case CheckInput::Kind::Fixed:
        if (static_cast<int64_t>(in.values.size()) != t.numel())
          return "input '" + schema.inputs[i].name + "' is Fixed with " + std::to_string(in.values.size()) +
                 " values for shape " + to_string(in.shape);
        std::copy(in.values.begin(), in.values.end(), t.data());
        break;
    }
    out.push_back(std::move(t));
  }
  return "";
}

// Parameters: small random values of a scale that keeps activations O(1) — N(0, 1/fan_in) for
// matrices, and near the initial value for gains (ones), biases (zeros) and constants — so that no
// nonlinearity sits saturated where finite differences say nothing.
std::vector<Tensor> random_params(const std::vector<ParamSpec>& specs, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<Tensor> out;
  for (const ParamSpec& spec : specs) {
    Tensor t(spec.shape);
    float centre = spec.init == Init::Ones ? 1.0f : spec.init == Init::Constant ? spec.init_scale : 0.0f, spread = 0.5f;
    if (spec.init == Init::Ones || spec.init == Init::Zeros || spec.init == Init::Constant) spread = 0.2f;
    else if (spec.shape.size() >= 2) spread = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(1, spec.shape[spec.shape.size() - 2])));
    for (int64_t j = 0; j < t.numel(); ++j) t.data()[j] = centre + spread * normal(rng);
    out.push_back(std::move(t));
  }
  return out;
}

// One tensor whose gradient is checked: an input or a parameter.
struct Checked {
  std::string what;           // "input 'x'" or "parameter 'weight'"
  Tensor* values;             // perturbed in place (restored after each evaluation)
  std::vector<double> analytic;
};

// An example the decode check can drive: a real [B, T, D...] first input, T ≥ 2, no token ids.
bool decodable_example(const GradCheckExample& e) {
  if (e.inputs.empty() || e.inputs[0].kind != CheckInput::Kind::Real || e.inputs[0].shape.size() < 3 ||
      e.inputs[0].shape[1] < 2)
    return false;
  for (const CheckInput& in : e.inputs)
    if (in.kind == CheckInput::Kind::Index) return false;
  return true;
}

// ... and whose outputs are per position ([B, T, ...] like the first input).
bool decodable_example(const Registry& registry, const std::string& type, const GradCheckExample& e) {
  if (!decodable_example(e)) return false;
  try {
    std::vector<Shape> shapes;
    for (const CheckInput& in : e.inputs) shapes.push_back(in.shape);
    for (const Shape& o : registry.create(type, e.attrs)->infer(shapes).outputs)
      if (o.size() < 2 || o[0] != shapes[0][0] || o[1] != shapes[0][1]) return false;
    return true;
  } catch (const std::exception&) {
    return false;  // the gradient check reports what is wrong with the example
  }
}

bool decodable_shapes(const Registry& registry, const std::string& type) {
  for (const GradCheckExample& e : registry.schema(type).examples)
    if (decodable_example(registry, type, e)) return true;
  return false;
}

}  // namespace

std::string test_name(const std::string& type, const std::string& example) {
  std::string name = type + "__" + example;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

std::string missing_examples_message(const Registry& registry, const std::string& type) {
  if (!registry.schema(type).examples.empty()) return "";
  return "node type '" + type + "' (from " + registry.origin(type) +
         ") has no gradient-check examples; every node type must list at least one in its schema";
}

std::vector<std::string> acting_positional_schemes(const Registry& registry) {
  std::vector<std::string> out;
  for (const std::string& type : registry.type_names()) {
    try {
      NodeHandle node = registry.create(type, {});
      const PositionalScheme* scheme = node->positional_scheme();
      if (scheme && (scheme->effects().score_bias || scheme->effects().rotation)) out.push_back(type);
    } catch (const std::exception&) {
      // A type that cannot be built with default attributes offers nothing to compose.
    }
  }
  return out;
}

std::vector<Case> cases(const Registry& registry) {
  std::vector<Case> out;
  std::vector<std::string> hosts;  // types that take a positional scheme by attribute
  for (const std::string& type : registry.type_names()) {
    const NodeSchema& schema = registry.schema(type);
    if (schema.examples.empty()) out.push_back({type, -1, test_name(type, "no_examples"), "", "", false});
    for (size_t e = 0; e < schema.examples.size(); ++e)
      out.push_back({type, static_cast<int>(e), test_name(type, schema.examples[e].name), "", "", false});
    if (const AttrSchema* a = schema.find_attr("posenc"); a && a->type == AttrType::String) hosts.push_back(type);
    if (decodable_shapes(registry, type))
      out.push_back({type, -1, test_name(type, "decodes_incrementally"), "", "", true});
  }
  for (const std::string& scheme : acting_positional_schemes(registry)) {
    size_t accepted = 0;
    for (const std::string& host : hosts) {
      const NodeSchema& schema = registry.schema(host);
      bool decodable = false;  // some accepted example can be decoded
      for (size_t e = 0; e < schema.examples.size(); ++e) {
        Case c{host, static_cast<int>(e), test_name(host, schema.examples[e].name + "__with_" + scheme), "", scheme,
               false};
        try {
          registry.create(host, example_of(registry, c).attrs);
        } catch (const RegistryError&) {
          continue;  // the scheme refuses this configuration (e.g. a rotation and an odd d_k)
        }
        decodable = decodable || decodable_example(registry, host, example_of(registry, c));
        out.push_back(std::move(c));
        ++accepted;
      }
      if (decodable)
        out.push_back({host, -1, test_name(host, "decodes_incrementally__with_" + scheme), "", scheme, true});
    }
    if (accepted == 0)
      out.push_back({scheme, -1, test_name(scheme, "inside_attention"),
                     "positional scheme '" + scheme + "' acts inside attention, but no example of a type with a posenc "
                     "attribute (" + std::to_string(hosts.size()) + " such types) accepts it, so it is never checked",
                     scheme, false});
  }
  return out;
}

GradCheckExample example_of(const Registry& registry, const Case& c) {
  GradCheckExample example = registry.schema(c.type).examples.at(c.example);
  if (!c.scheme.empty()) {
    example.attrs.set("posenc", c.scheme);
    example.name += " with posenc " + c.scheme;
  }
  return example;
}

std::vector<std::string> check_case(const Registry& registry, const Case& c) {
  if (!c.load_error.empty()) return {c.load_error};
  if (c.decode) return check_decoding(registry, c.type, c.scheme);
  if (c.example < 0) {
    std::string message = missing_examples_message(registry, c.type);
    return message.empty() ? std::vector<std::string>{} : std::vector<std::string>{message};
  }
  return check_example(registry, c.type, example_of(registry, c));
}

static std::vector<std::string> check_example_unguarded(const Registry& registry, const std::string& type,
                                                        const GradCheckExample& example) {
  std::vector<std::string> failures;
  auto fail = [&](const std::string& message) { failures.push_back(message); };
  const NodeSchema& schema = registry.schema(type);

  if (example.inputs.size() > schema.inputs.size())
    return {"the example gives " + std::to_string(example.inputs.size()) + " inputs but the type has only " +
            std::to_string(schema.inputs.size())};
  for (size_t i = example.inputs.size(); i < schema.inputs.size(); ++i)
    if (!schema.inputs[i].optional)
      return {"the example omits required input '" + schema.inputs[i].name + "'"};

  Harness h{schema, example, registry.create(type, example.attrs), {}, {}, {}, {}, {}, {}, {}};
  h.step.training = example.training;
  h.step.seed = kSeed;

  std::vector<Shape> input_shapes;
  for (const CheckInput& in : example.inputs) input_shapes.push_back(in.shape);
  h.shapes = h.node->infer(input_shapes);
  if (h.shapes.outputs.size() != schema.outputs.size())
    return {"infer() returned " + std::to_string(h.shapes.outputs.size()) + " output shapes for " +
            std::to_string(schema.outputs.size()) + " declared outputs"};
  if (h.node->infer(input_shapes).outputs != h.shapes.outputs) fail("infer() is not pure: two calls disagree");

  // Inputs and parameters. The generator is seeded from the type and example names, so a failure
  // reproduces.
  std::mt19937_64 rng(std::hash<std::string>{}(type + "/" + example.name));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (std::string error = fill_inputs(schema, example, rng, h.inputs); !error.empty()) return {error};
  h.params = random_params(h.shapes.params, rng);
  for (size_t p = 0; p < h.params.size(); ++p) h.state_start.push_back(h.is_state(p) ? h.params[p] : Tensor());
  for (size_t o = 0; o < h.shapes.outputs.size(); ++o) {
    h.output_differentiable.push_back(schema.outputs[o].differentiable);
    Tensor w(h.shapes.outputs[o], 0.0f);
    if (schema.outputs[o].differentiable)
      for (int64_t j = 0; j < w.numel(); ++j) w.data()[j] = normal(rng);
    h.weights.push_back(std::move(w));
  }

  // ---- forward: every element written, inputs untouched, deterministic -----------------------
  const std::vector<Tensor> inputs_before = h.inputs, params_before = h.params;
  const Harness::Run base = h.forward();
  for (size_t o = 0; o < base.outputs.size(); ++o) {
    const Tensor& y = base.outputs[o];
    for (int64_t j = 0; j < y.numel(); ++j)
      if (!std::isfinite(y.data()[j])) {
        fail("forward left output '" + schema.outputs[o].name + "' element " + describe(y.shape(), j) +
             " unwritten or non-finite (" + std::to_string(y.data()[j]) + ")");
        break;
      }
  }
  for (size_t i = 0; i < h.inputs.size(); ++i)
    if (!same_bits(h.inputs[i], inputs_before[i])) fail("forward modified input '" + schema.inputs[i].name + "'");
  // State (running statistics) may change in training only (node.h, ParamKind::State).
  for (size_t p = 0; p < h.params.size(); ++p)
    if ((!h.is_state(p) || !example.training) && !same_bits(h.params[p], params_before[p]))
      fail("forward modified " + std::string(h.is_state(p) ? "state '" : "parameter '") + h.shapes.params[p].name + "'" +
           (h.is_state(p) ? " outside training" : ""));
  const Harness::Run again = h.forward();
  for (size_t o = 0; o < base.outputs.size(); ++o)
    if (!same_bits(base.outputs[o], again.outputs[o]))
      fail("forward is not deterministic: two runs gave different '" + schema.outputs[o].name + "'");
  for (size_t p = 0; p < h.params.size(); ++p)
    if (h.is_state(p) && !same_bits(base.state[p], again.state[p]))
      fail("forward is not deterministic: two runs left different state '" + h.shapes.params[p].name + "'");
  if (base.aux != again.aux) fail("forward is not deterministic: two runs reported different auxiliary losses");
  if (!failures.empty()) return failures;

  // ---- backward: ADD into input gradients, ASSIGN parameter gradients -----------------------
  std::vector<Tensor> input_grads;
  std::vector<TensorView> input_grad_views;
  for (size_t i = 0; i < h.inputs.size(); ++i) {
    const bool wanted = schema.inputs[i].differentiable && example.inputs[i].kind == CheckInput::Kind::Real;
    input_grads.emplace_back(wanted ? h.inputs[i].shape() : Shape{0}, kSentinel);
    input_grad_views.push_back(wanted ? input_grads.back().view() : TensorView());
  }
  // State has no gradient: an absent view, which backward leaves alone.
  std::vector<Tensor> param_grads = make([&] {
    std::vector<Shape> s;
    for (const ParamSpec& spec : h.shapes.params) s.push_back(spec.kind == ParamKind::State ? Shape{0} : spec.shape);
    return s;
  }(), kNaN);
  {
    const std::vector<Tensor> workspace = make(h.shapes.workspace, kNaN);
    std::vector<Tensor> scaled_weights;  // the output gradients of kObjectiveScale · L
    for (const Tensor& w : h.weights) {
      scaled_weights.push_back(w);
      Eigen::Map<Eigen::ArrayXf>(scaled_weights.back().data(), w.numel()) *= static_cast<float>(kObjectiveScale);
    }
    std::vector<TensorView> pg = views(param_grads);
    for (size_t p = 0; p < pg.size(); ++p)
      if (h.is_state(p)) pg[p] = TensorView();
    const std::vector<TensorView> in = views(h.inputs), p = views(h.params), out = views(base.outputs),
                                  sv = views(base.saved), ws = views(workspace), og = views(scaled_weights);
    StepInfo info = h.step;
    info.objective_scale = kObjectiveScale;
    h.node->backward(BackwardContext{in, p, out, sv, ws, og, input_grad_views, pg, info});
  }
  for (size_t i = 0; i < h.inputs.size(); ++i)
    if (!same_bits(h.inputs[i], inputs_before[i])) fail("backward modified input '" + schema.inputs[i].name + "'");

  std::vector<Checked> checked;
  for (size_t i = 0; i < h.inputs.size(); ++i) {
    if (!input_grad_views[i].present()) continue;
    Checked c{"input '" + schema.inputs[i].name + "'", &h.inputs[i], {}};
    for (int64_t j = 0; j < input_grads[i].numel(); ++j)
      c.analytic.push_back((static_cast<double>(input_grads[i].data()[j]) - kSentinel) / kObjectiveScale);
    checked.push_back(std::move(c));
  }
  for (size_t p = 0; p < h.params.size(); ++p) {
    if (h.is_state(p)) continue;  // not differentiated (node.h)
    Checked c{"parameter '" + h.shapes.params[p].name + "'", &h.params[p], {}};
    bool unassigned = false;
    for (int64_t j = 0; j < param_grads[p].numel(); ++j) {
      const float g = param_grads[p].data()[j];
      if (std::isnan(g) && !unassigned) {
        fail("backward did not assign every element of the gradient of " + c.what + " (element " +
             describe(param_grads[p].shape(), j) + " is still NaN; parameter gradients are ASSIGNED, not added)");
        unassigned = true;
      }
      c.analytic.push_back(g / kObjectiveScale);
    }
    checked.push_back(std::move(c));
  }
  for (const Checked& c : checked)
    for (size_t j = 0; j < c.analytic.size(); ++j)
      if (!std::isfinite(c.analytic[j])) {
        if (c.what.rfind("input", 0) == 0)
          fail("the gradient of " + c.what + " is not finite at " + describe(c.values->shape(), j));
        break;
      }
  if (!failures.empty()) return failures;

  // ---- central differences ---------------------------------------------------------------------
  // Step h = 1e-2·max(1, |x|). In float32 the forward's rounding error is ~1e-7 relative, and it is
  // divided by 2h: at h = 1e-2 that noise is ~1e-5 relative, while the truncation error of the
  // central difference, O(h²·f'''), stays ~1e-4 for the smooth, O(1)-scaled functions the
  // examples use. Much smaller steps drown in float32 rounding; much larger ones in curvature.
  // Every checked tensor's numeric gradient first, so that each comparison also knows the scale of
  // the whole example.
  struct Numeric {
    std::vector<int64_t> picks;
    std::vector<double> values;
    double sum_sq = 0.0;
  };
  std::vector<Numeric> numerics;
  double example_sum_sq = 0.0;
  size_t example_count = 0;
  for (Checked& c : checked) {
    Tensor& x = *c.values;
    const int64_t n = x.numel();
    Numeric num;
    num.picks.resize(n);
    std::iota(num.picks.begin(), num.picks.end(), 0);
    if (n > kMaxChecked) {
      std::shuffle(num.picks.begin(), num.picks.end(), rng);
      num.picks.resize(kMaxChecked);
      std::sort(num.picks.begin(), num.picks.end());
    }
    for (int64_t j : num.picks) {
      const float original = x.data()[j];
      const float step = 1e-2f * std::max(1.0f, std::fabs(original));
      const float up = original + step, down = original - step;
      x.data()[j] = up;
      const double l_up = h.loss(h.forward());
      x.data()[j] = down;
      const double l_down = h.loss(h.forward());
      x.data()[j] = original;
      // Divide by the distance actually moved in float32, not the nominal 2·step.
      num.values.push_back((l_up - l_down) / (static_cast<double>(up) - static_cast<double>(down)));
      num.sum_sq += std::max(c.analytic[j] * c.analytic[j], num.values.back() * num.values.back());
    }
    example_sum_sq += num.sum_sq;
    example_count += num.picks.size();
    numerics.push_back(std::move(num));
  }
  // A gradient that is zero in exact arithmetic (a key bias under plain dot-product scores shifts
  // every score of a row alike) comes out of float32 central differences as noise of ~1e-5 relative
  // to the example's gradients; it is judged against a floor of 5e-2 of the example's RMS gradient.
  const double floor = 5e-2 * std::sqrt(example_sum_sq / std::max<size_t>(1, example_count));
  for (size_t t = 0; t < checked.size(); ++t) {
    const Checked& c = checked[t];
    const Tensor& x = *c.values;
    const std::vector<int64_t>& picks = numerics[t].picks;
    const std::vector<double>& numeric = numerics[t].values;
    const double sum_sq = numerics[t].sum_sq;
    // Robust comparison: |a − n| ≤ tol · max(|a|, |n|, scale), where scale is the RMS gradient of
    // the checked elements, so that elements whose gradient is tiny next to the others are judged
    // on the tensor's scale instead of on their own (where float noise dominates).
    const double scale = std::max(floor, std::sqrt(sum_sq / std::max<size_t>(1, picks.size())));
    int reported = 0, bad = 0;
    std::ostringstream detail;
    for (size_t k = 0; k < picks.size(); ++k) {
      const double a = c.analytic[picks[k]], num = numeric[k];
      const double allowed = example.tolerance * std::max({std::fabs(a), std::fabs(num), scale});
      if (!(std::fabs(a - num) <= allowed)) {
        ++bad;
        if (reported++ < 4)
          detail << " at " << describe(x.shape(), picks[k]) << ": analytic " << a << ", numeric " << num << ";";
      }
    }
    if (bad)
      fail("gradient of " + c.what + " differs from central differences at " + std::to_string(bad) + " of " +
           std::to_string(picks.size()) + " checked elements (tolerance " + std::to_string(example.tolerance) +
           "):" + detail.str());
  }
  return failures;
}

std::vector<std::string> check_example(const Registry& registry, const std::string& type,
                                       const GradCheckExample& example) {
  std::vector<std::string> failures;
  try {
    failures = check_example_unguarded(registry, type, example);
  } catch (const std::exception& e) {
    failures.push_back(std::string("threw: ") + e.what());
  }
  for (std::string& f : failures) f = type + " / " + example.name + ": " + f;
  return failures;
}

}  // namespace attnlab::gradcheck

namespace attnlab::gradcheck {

namespace {

// Row p of dimension 1 of a [B, T, ...] tensor, as a [B, 1, ...] tensor.
Tensor position_of(const Tensor& full, int64_t p) {
  Shape shape = full.shape();
  const int64_t B = shape[0], T = shape[1];
  const int64_t inner = T ? full.numel() / (B * T) : 0;
  shape[1] = 1;
  Tensor out(shape);
  for (int64_t b = 0; b < B; ++b) std::copy_n(full.data() + (b * T + p) * inner, inner, out.data() + b * inner);
  return out;
}

struct DecodeOutcome {
  std::vector<std::string> failures;
  bool decoded = false;    // every position was compared
  bool has_cache = false;  // the node asked for cache buffers
};

DecodeOutcome decode_example(const Registry& registry, const std::string& type, const GradCheckExample& example) {
  DecodeOutcome r;
  const NodeSchema& schema = registry.schema(type);
  const Shape& first = example.inputs[0].shape;
  const int64_t B = first[0], T = first[1];
  NodeHandle node = registry.create(type, example.attrs);
  std::mt19937_64 rng(std::hash<std::string>{}(type + "/" + example.name + "/decode"));
  std::vector<Tensor> inputs;
  if (std::string error = fill_inputs(schema, example, rng, inputs); !error.empty()) return {{error}, false, false};

  // Which inputs depend on the target: the first, every real input of its shape (the same value:
  // self-attention), and a [B, T] mask beside such a second input (the target's key padding).
  std::vector<uint8_t> stepwise(inputs.size(), 0);
  stepwise[0] = 1;
  bool self = false;
  for (size_t i = 1; i < inputs.size(); ++i)
    if (example.inputs[i].kind == CheckInput::Kind::Real && example.inputs[i].shape == first) {
      inputs[i] = inputs[0];
      stepwise[i] = 1;
      self = true;
    }
  for (size_t i = 1; i < inputs.size(); ++i)
    if (self && example.inputs[i].kind == CheckInput::Kind::Fixed && example.inputs[i].shape == Shape{B, T})
      stepwise[i] = 1;

  std::vector<Shape> full_shapes, step_shapes;
  for (size_t i = 0; i < inputs.size(); ++i) {
    full_shapes.push_back(inputs[i].shape());
    Shape s = inputs[i].shape();
    if (stepwise[i]) s[1] = 1;
    step_shapes.push_back(s);
  }
  const NodeShapes full = node->infer(full_shapes);
  for (const Shape& o : full.outputs)
    if (o.size() < 2 || o[0] != B || o[1] != T) return r;  // outputs are not per position
  const std::vector<Tensor> params = random_params(full.params, rng);
  const std::vector<TensorView> param_views = views(params);

  std::vector<Tensor> full_out = make(full.outputs, kNaN), full_saved = make(full.saved, kNaN),
                      full_ws = make(full.workspace, kNaN);
  {
    const std::vector<TensorView> in = views(inputs), out = views(full_out), sv = views(full_saved), ws = views(full_ws);
    node->forward(ForwardContext{in, param_views, out, sv, ws, StepInfo{}});
  }

  NodeShapes step;
  std::vector<Shape> cache_shapes;
  try {
    step = node->infer(step_shapes);
    cache_shapes = node->cache_shapes(step_shapes, T);
  } catch (const ShapeError&) {
    return r;  // one position at a time is not a shape this node takes (a mask per query, say)
  }
  r.has_cache = !cache_shapes.empty();
  std::vector<Tensor> cache = make(cache_shapes, kNaN), step_out = make(step.outputs, kNaN),
                      step_saved = make(step.saved, kNaN), step_ws = make(step.workspace, kNaN);
  const std::vector<TensorView> cache_views = views(cache);
  for (int64_t p = 0; p < T; ++p) {
    std::vector<Tensor> step_in;
    for (size_t i = 0; i < inputs.size(); ++i) step_in.push_back(stepwise[i] ? position_of(inputs[i], p) : inputs[i]);
    DecodeState state;
    state.position = p;
    state.cache = cache_views;
    state.stepwise = stepwise;
    StepInfo info;
    info.decode = &state;
    const std::vector<TensorView> in = views(step_in), out = views(step_out), sv = views(step_saved), ws = views(step_ws);
    try {
      node->forward(ForwardContext{in, param_views, out, sv, ws, info});
    } catch (const std::exception& e) {
      if (p == 0) return r;  // this configuration does not decode incrementally (and says so)
      r.failures.push_back("incremental decoding threw at position " + std::to_string(p) + " after decoding position 0: " +
                           e.what());
      return r;
    }
    for (size_t o = 0; o < full_out.size(); ++o) {
      const Tensor want = position_of(full_out[o], p);
      const Tensor& got = step_out[o];
      for (int64_t j = 0; j < want.numel(); ++j) {
        const double w = want.data()[j], g = got.data()[j];
        if (!(std::fabs(w - g) <= 1e-4 * (1.0 + std::fabs(w)))) {
          r.failures.push_back("incremental decoding differs from the full pass at position " + std::to_string(p) +
                               ", output '" + schema.outputs[o].name + "' element " + describe(want.shape(), j) +
                               ": full " + std::to_string(w) + ", incremental " + std::to_string(g));
          return r;
        }
      }
    }
  }
  r.decoded = true;
  return r;
}

}  // namespace

std::vector<std::string> check_decoding(const Registry& registry, const std::string& type, const std::string& scheme) {
  std::vector<std::string> failures;
  bool any_cache = false;
  int decoded = 0;
  const NodeSchema& schema = registry.schema(type);
  for (size_t e = 0; e < schema.examples.size(); ++e) {
    const GradCheckExample example = example_of(registry, Case{type, static_cast<int>(e), "", "", scheme, false});
    try {
      registry.create(type, example.attrs);
    } catch (const RegistryError&) {
      continue;  // the scheme refuses this configuration
    }
    if (!decodable_example(registry, type, example)) continue;
    try {
      DecodeOutcome r = decode_example(registry, type, example);
      any_cache = any_cache || r.has_cache;
      decoded += r.decoded ? 1 : 0;
      for (const std::string& f : r.failures) failures.push_back(type + " / " + example.name + ": " + f);
    } catch (const std::exception& e) {
      failures.push_back(type + " / " + example.name + ": decode check threw: " + e.what());
    }
  }
  if (decoded == 0 && failures.empty())
    failures.push_back(type + (scheme.empty() ? "" : " with posenc " + scheme) +
                       (any_cache ? ": asks for cache buffers (cache_shapes), but none of its examples decodes "
                                    "incrementally; add an example that does (e.g. causal self-attention)"
                                  : ": none of its examples decodes incrementally (each refused at position 0)"));
  return failures;
}

}  // namespace attnlab::gradcheck
