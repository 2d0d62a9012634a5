// tests/components/gradient_test.cpp — central-difference gradient checks of every schema example of
// the component types, independent of the registry-wide check in tests/gradcheck: input gradients
// are pre-filled with a sentinel (backward must ADD), parameter gradients with garbage (backward
// must ASSIGN), and every element is compared.
#include "harness.h"

namespace attnlab::components_test {
namespace {

constexpr float kSentinel = 0.25f;
constexpr float kStep = 3e-3f;
constexpr double kAbsTol = 5e-3;

std::vector<Tensor> make_inputs(const GradCheckExample& ex) {
  std::vector<Tensor> out;
  for (const auto& ci : ex.inputs) {
    Tensor t(ci.shape);
    if (ci.kind == CheckInput::Kind::Real) fill_normal(t);
    else if (ci.kind == CheckInput::Kind::Fixed) std::copy(ci.values.begin(), ci.values.end(), t.data());
    else
      for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(i % ci.bound);
    out.push_back(std::move(t));
  }
  return out;
}

double weighted_sum(const Driven& d, const Tensor& weights) {
  double s = 0.0;
  for (int64_t i = 0; i < weights.numel(); ++i) s += static_cast<double>(weights.data()[i]) * d.outputs[0].data()[i];
  return s;
}

// Compares analytic and numeric gradients of L = Σ w·y for one tensor (an input or a parameter).
void check_tensor(Driven& d, const Tensor& weights, float* values, int64_t n, const float* analytic,
                  const std::string& what, double tolerance) {
  for (int64_t i = 0; i < n; ++i) {
    const float original = values[i];
    values[i] = original + kStep;
    d.forward();
    const double up = weighted_sum(d, weights);
    values[i] = original - kStep;
    d.forward();
    const double down = weighted_sum(d, weights);
    values[i] = original;
    const double numeric = (up - down) / (2.0 * kStep);
    const double a = analytic[i];
    EXPECT_LE(std::abs(a - numeric), kAbsTol + tolerance * std::max(std::abs(a), std::abs(numeric)))
        << what << " element " << i << ": analytic " << a << ", numeric " << numeric;
  }
}

void check_family(const std::string& prefix) {
  Registry& registry = component_registry();
  int checked = 0;
  for (const std::string& type : registry.type_names()) {
    if (type.rfind(prefix, 0) != 0) continue;
    const NodeSchema& schema = registry.schema(type);
    EXPECT_FALSE(schema.examples.empty()) << type << " has no gradient-check examples";
    for (const auto& ex : schema.examples) {
      SCOPED_TRACE(type + " / " + ex.name);
      // Each example's data depends on its name only, not on which tests ran before: a shared
      // generator let a new example elsewhere move a ReLU input onto its kink here.
      rng().seed(static_cast<std::mt19937::result_type>(std::hash<std::string>{}(type + "/" + ex.name)));
      std::vector<Tensor> inputs = make_inputs(ex);
      Driven d(type, registry.resolve_attrs(type, ex.attrs), views(inputs));
      d.forward();
      Tensor weights = random_tensor(d.outputs[0].shape());

      std::vector<Tensor> input_grads;
      std::vector<TensorView> input_grad_views;
      for (size_t i = 0; i < inputs.size(); ++i) {
        const bool differentiable = ex.inputs[i].kind == CheckInput::Kind::Real && schema.inputs[i].differentiable;
        input_grads.emplace_back(inputs[i].shape(), kSentinel);
        input_grad_views.push_back(differentiable ? input_grads.back().view() : TensorView{});
      }
      std::vector<Tensor> param_grads;
      for (const auto& p : d.params) param_grads.emplace_back(p.shape(), 12345.0f);
      d.backward({weights}, input_grad_views, param_grads);

      for (size_t i = 0; i < inputs.size(); ++i) {
        if (!input_grad_views[i].present()) continue;
        Tensor analytic = input_grads[i];
        for (int64_t k = 0; k < analytic.numel(); ++k) analytic.data()[k] -= kSentinel;
        check_tensor(d, weights, inputs[i].data(), inputs[i].numel(), analytic.data(), "input " + schema.inputs[i].name,
                     ex.tolerance);
      }
      for (size_t p = 0; p < d.params.size(); ++p)
        check_tensor(d, weights, d.params[p].data(), d.params[p].numel(), param_grads[p].data(),
                     "param " + d.shapes.params[p].name, ex.tolerance);
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << "no node types with prefix " << prefix;
}

TEST(ComponentGradients, Attention) { check_family("attention."); }
TEST(ComponentGradients, Posenc) { check_family("posenc."); }
TEST(ComponentGradients, Norm) { check_family("norm."); }
TEST(ComponentGradients, Ffn) { check_family("ffn."); }

}  // namespace
}  // namespace attnlab::components_test
