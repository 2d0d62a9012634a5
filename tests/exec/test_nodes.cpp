#include "tensor/simd_intrinsics.h"  // first: see there

#include "test_nodes.h"

#include "exec/hash.h"

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <chrono>
#include <cmath>
#include <thread>
#include <stdexcept>

namespace attnlab::test {

std::atomic<int> forward_calls{0};
std::atomic<int> rendezvous_arrived{0}, rendezvous_parties{2}, rendezvous_met{0}, nested_concurrency{0},
    rendezvous_timeout_ms{5000};

namespace {

class MatMul : public Node {
 public:
  explicit MatMul(const Attrs& attrs) : out_(attrs.get_int("out")) {
    if (out_ <= 0) throw std::invalid_argument("out must be positive, got " + std::to_string(out_));
  }
  NodeShapes infer(std::span<const Shape> in) const override {
    if (in[0].empty()) throw ShapeError("x must have at least one dimension");
    Shape y = in[0];
    const int64_t width = y.back();
    y.back() = out_;
    return {{y}, {{"weight", {width, out_}, Init::XavierUniform}}, {}, {}};
  }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    c.outputs[0].matrix().noalias() = c.inputs[0].matrix() * c.params[0].matrix();
  }
  void backward(const BackwardContext& c) const override {
    if (c.input_grads[0].present())
      c.input_grads[0].matrix().noalias() += c.output_grads[0].matrix() * c.params[0].matrix().transpose();
    c.param_grads[0].matrix().noalias() = c.inputs[0].matrix().transpose() * c.output_grads[0].matrix();
  }

 private:
  int64_t out_;
};

class Tanh : public Node {
 public:
  explicit Tanh(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override { return {{in[0]}, {}, {in[0]}, {in[0]}}; }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    c.outputs[0].flat() = c.inputs[0].flat().array().tanh();
    c.saved[0].copy_from(c.outputs[0]);
  }
  void backward(const BackwardContext& c) const override {
    if (!c.input_grads[0].present()) return;
    // workspace = 1 - y^2, then dx += dy * workspace
    c.workspace[0].flat() = 1.0f - c.saved[0].flat().array().square();
    c.input_grads[0].flat().array() += c.output_grads[0].flat().array() * c.workspace[0].flat().array();
  }
};

class Add : public Node {
 public:
  explicit Add(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override {
    if (in[0] != in[1]) throw ShapeError("shapes " + to_string(in[0]) + " and " + to_string(in[1]) + " differ");
    return {{in[0]}, {}, {}, {}};
  }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    c.outputs[0].flat() = c.inputs[0].flat() + c.inputs[1].flat();
  }
  void backward(const BackwardContext& c) const override {
    for (int i = 0; i < 2; ++i)
      if (c.input_grads[i].present()) c.input_grads[i].flat() += c.output_grads[0].flat();
  }
};

class Fork : public Node {
 public:
  explicit Fork(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override { return {{in[0], in[0]}, {}, {}, {}}; }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    c.outputs[0].flat() = 2.0f * c.inputs[0].flat();
    c.outputs[1].flat() = c.inputs[0].flat().array().square();
  }
  void backward(const BackwardContext& c) const override {
    if (!c.input_grads[0].present()) return;
    c.input_grads[0].flat().array() += 2.0f * c.output_grads[0].flat().array() +
                                       2.0f * c.inputs[0].flat().array() * c.output_grads[1].flat().array();
  }
};

class Noise : public Node {
 public:
  explicit Noise(const Attrs& attrs) : amount_(static_cast<float>(attrs.get_float("amount"))) {}
  NodeShapes infer(std::span<const Shape> in) const override { return {{in[0]}, {}, {}, {}}; }
  float factor(const StepInfo& step, int64_t i) const {
    if (!step.training) return 1.0f;
    return 1.0f + amount_ * (2.0f * exec::unit_float(exec::hash_combine(step.seed, i)) - 1.0f);
  }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    for (int64_t i = 0; i < c.inputs[0].numel(); ++i) c.outputs[0].data()[i] = c.inputs[0].data()[i] * factor(c.step, i);
  }
  void backward(const BackwardContext& c) const override {
    if (!c.input_grads[0].present()) return;
    for (int64_t i = 0; i < c.inputs[0].numel(); ++i) c.input_grads[0].data()[i] += c.output_grads[0].data()[i] * factor(c.step, i);
  }

 private:
  float amount_;
};

class Loss : public Node {
 public:
  explicit Loss(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override {
    if (!in[1].empty() && in[1] != in[0])
      throw ShapeError("target shape " + to_string(in[1]) + " differs from x shape " + to_string(in[0]));
    return {{Shape{}, Shape{}}, {}, {}, {}};
  }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    const int64_t n = c.inputs[0].numel();
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = c.inputs[0].data()[i] - (c.inputs[1].present() ? c.inputs[1].data()[i] : 0.0f);
      sum += d * d;
    }
    c.outputs[0].data()[0] = static_cast<float>(0.5 * sum / n);
    c.outputs[1].data()[0] = static_cast<float>(n);
  }
  void backward(const BackwardContext& c) const override {
    if (!c.input_grads[0].present()) return;
    const int64_t n = c.inputs[0].numel();
    const float g = c.output_grads[0].data()[0] / n;
    for (int64_t i = 0; i < n; ++i)
      c.input_grads[0].data()[i] += g * (c.inputs[0].data()[i] - (c.inputs[1].present() ? c.inputs[1].data()[i] : 0.0f));
  }
};

class Check : public Node {
 public:
  explicit Check(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override { return {{in[0]}, {}, {}, {}}; }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    if (c.inputs[0].flat().minCoeff() < 0) throw std::runtime_error("negative input");
    c.outputs[0].copy_from(c.inputs[0]);
  }
  void backward(const BackwardContext& c) const override {
    if (c.output_grads[0].flat().minCoeff() < 0) throw std::runtime_error("negative gradient");
    if (c.input_grads[0].present()) c.input_grads[0].flat() += c.output_grads[0].flat();
  }
};

class Rendezvous : public Node {
 public:
  explicit Rendezvous(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override { return {{in[0]}, {}, {}, {}}; }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    tbb::parallel_for(0, 4, [](int) {
      const int seen = tbb::this_task_arena::max_concurrency();
      int old = nested_concurrency.load();
      while (seen > old && !nested_concurrency.compare_exchange_weak(old, seen)) {
      }
    });
    ++rendezvous_arrived;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(rendezvous_timeout_ms.load());
    while (rendezvous_arrived.load() < rendezvous_parties.load() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    if (rendezvous_arrived.load() >= rendezvous_parties.load()) ++rendezvous_met;
    c.outputs[0].copy_from(c.inputs[0]);
  }
  void backward(const BackwardContext& c) const override {
    if (c.input_grads[0].present()) c.input_grads[0].flat() += c.output_grads[0].flat();
  }
};

// x -> x, keeping State `seen`[1] (+1 per training forward) and, in training, the auxiliary loss
// aux·Σx² and the metric "rows".
class Tally : public Node {
 public:
  explicit Tally(const Attrs& attrs) : aux_(attrs.get_float("aux")) {}
  NodeShapes infer(std::span<const Shape> in) const override {
    NodeShapes s{{in[0]}, {{"seen", {1}, Init::Zeros}}, {}, {}};
    s.params[0].kind = ParamKind::State;
    return s;
  }
  void forward(const ForwardContext& c) const override {
    ++forward_calls;
    double sq = 0;
    for (int64_t i = 0; i < c.inputs[0].numel(); ++i) {
      c.outputs[0].data()[i] = c.inputs[0].data()[i];
      sq += static_cast<double>(c.inputs[0].data()[i]) * c.inputs[0].data()[i];
    }
    if (!c.step.training) return;
    c.params[0].data()[0] += 1.0f;
    if (c.step.report) {
      c.step.report->aux_loss(aux_ * sq);
      c.step.report->metric("rows", static_cast<double>(c.inputs[0].dim(0)));
    }
  }
  void backward(const BackwardContext& c) const override {
    if (c.param_grads[0].present()) throw std::logic_error("state got a gradient buffer");
    if (!c.input_grads[0].present()) return;
    const double scale = c.step.training ? 2.0 * aux_ * c.step.objective_scale : 0.0;
    for (int64_t i = 0; i < c.inputs[0].numel(); ++i)
      c.input_grads[0].data()[i] += c.output_grads[0].data()[i] + static_cast<float>(scale * c.inputs[0].data()[i]);
  }

 private:
  double aux_;
};

PortSchema port(const std::string& name, bool optional = false, bool differentiable = true) {
  return {name, name, optional, differentiable};
}

template <class T>
void add(Registry& r, NodeSchema schema) {
  schema.doc = schema.name + " (test node)";
  GradCheckExample example{"basic", {}, {}};
  for (const AttrSchema& a : schema.attrs)
    if (!a.default_value) example.attrs.set(a.name, int64_t{3});
  for (size_t i = 0; i < schema.inputs.size(); ++i) example.inputs.push_back(CheckInput::real({2, 3}));
  schema.examples.push_back(example);
  r.add(std::move(schema), [](const Attrs& a, const Registry&) -> std::unique_ptr<Node> { return std::make_unique<T>(a); }, nullptr,
        "builtin");
}

}  // namespace

void register_test_nodes(Registry& r) {
  add<MatMul>(r, {"test.matmul", "", {port("x")}, {port("y")}, {{"out", AttrType::Int, std::nullopt, "output width"}}, {}});
  add<Tanh>(r, {"test.tanh", "", {port("x")}, {port("y")}, {}, {}});
  add<Add>(r, {"test.add", "", {port("a"), port("b")}, {port("y")}, {}, {}});
  add<Fork>(r, {"test.fork", "", {port("x")}, {port("twice"), port("square")}, {}, {}});
  add<Noise>(r, {"test.noise", "", {port("x")}, {port("y")}, {{"amount", AttrType::Float, AttrValue(0.1), "noise"}}, {}});
  add<Loss>(r, {"test.loss", "", {port("x"), port("target", true, false)}, {port("loss"), port("count", false, false)}, {}, {}});
  add<Rendezvous>(r, {"test.rendezvous", "", {port("x")}, {port("y")}, {}, {}});
  add<Check>(r, {"test.check", "", {port("x")}, {port("y")}, {}, {}});
  add<Tally>(r, {"test.tally", "", {port("x")}, {port("y")}, {{"aux", AttrType::Float, AttrValue(0.0), "aux loss weight"}}, {}});
}

GraphBuilder& GraphBuilder::input(const std::string& name, std::vector<std::variant<int64_t, std::string>> dims,
                                  const std::string& kind, int line) {
  ir::GraphInput* in = graph.add_inputs();
  in->set_name(name);
  in->set_kind(kind);
  for (const auto& d : dims) {
    if (std::holds_alternative<int64_t>(d)) in->add_shape()->set_size(std::get<int64_t>(d));
    else in->add_shape()->set_symbol(std::get<std::string>(d));
  }
  in->mutable_loc()->set_file(file);
  in->mutable_loc()->set_line(line);
  in->mutable_loc()->set_column(1);
  return *this;
}

ir::NodeDef& GraphBuilder::node(const std::string& name, const std::string& type, std::vector<std::string> inputs,
                                const Attrs& attrs, int line, int column, const std::string& scope) {
  ir::NodeDef* n = graph.add_nodes();
  n->set_name(name);
  n->set_type(type);
  for (const std::string& i : inputs) n->add_inputs(i);
  ir::set_attrs(*n, attrs);
  if (line > 0) {
    n->mutable_loc()->set_file(file);
    n->mutable_loc()->set_line(line);
    n->mutable_loc()->set_column(column);
  }
  n->set_param_scope(scope);
  return *n;
}

GraphBuilder& GraphBuilder::output(const std::string& name, const std::string& value) {
  ir::GraphOutput* out = graph.add_outputs();
  out->set_name(name);
  out->set_value(value);
  return *this;
}

}  // namespace attnlab::test
