// tests/components/harness.h — drives component nodes directly in tests.
//
// Contract: component_registry() loads the four component plugins from the test executable's
// directory (the first entry of plugin_search_path) once per process. A Driven node owns every
// buffer its infer() asks for; forward()/backward() run the node on them. Random values come from
// a fixed-seed generator so runs are reproducible.
#pragma once

#include "node/plugin_loader.h"
#include "node/registry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace attnlab::components_test {

inline Registry& component_registry() {
  static Registry* registry = [] {
    auto* r = new Registry();
    const auto dir = plugin_search_path({}).front();
    for (const char* family : {"attention", "posenc", "norm", "ffn"})
      load_plugin(*r, dir / (std::string("libattnlab_plugin_") + family + ".so"));
    return r;
  }();
  return *registry;
}

inline std::mt19937& rng() {
  static std::mt19937 gen(20261121);
  return gen;
}

inline void fill_normal(Tensor& t, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = dist(rng());
}

inline Tensor random_tensor(Shape shape, float stddev = 1.0f) {
  Tensor t(std::move(shape));
  fill_normal(t, stddev);
  return t;
}

inline std::vector<TensorView> views(const std::vector<Tensor>& ts) {
  std::vector<TensorView> out;
  for (const auto& t : ts) out.push_back(t.view());
  return out;
}

// A node with all of its buffers. Inputs are views so that one buffer can feed two ports
// (self-attention); params are owned.
struct Driven {
  NodeHandle node;
  NodeShapes shapes;
  std::vector<TensorView> inputs;
  std::vector<Tensor> params, outputs, saved, workspace;

  Driven(const std::string& type, const Attrs& attrs, std::vector<TensorView> in)
      : node(component_registry().create(type, attrs)), inputs(std::move(in)) {
    std::vector<Shape> in_shapes;
    for (const auto& v : inputs) in_shapes.push_back(v.shape());
    shapes = node->infer(in_shapes);
    for (const auto& p : shapes.params) params.push_back(random_tensor(p.shape, 0.5f));
    for (const auto& s : shapes.outputs) outputs.emplace_back(s, std::nanf(""));
    for (const auto& s : shapes.saved) saved.emplace_back(s, std::nanf(""));
    for (const auto& s : shapes.workspace) workspace.emplace_back(s, std::nanf(""));
  }

  // Copies parameters by name from another node (shapes must match).
  void copy_params_from(const Driven& other) {
    for (size_t i = 0; i < shapes.params.size(); ++i)
      for (size_t j = 0; j < other.shapes.params.size(); ++j)
        if (shapes.params[i].name == other.shapes.params[j].name) params[i] = other.params[j];
  }

  const Tensor& param(const std::string& name) const {
    for (size_t i = 0; i < shapes.params.size(); ++i)
      if (shapes.params[i].name == name) return params[i];
    throw std::out_of_range("no parameter " + name);
  }

  void forward(StepInfo step = {}) {
    auto p = views(params), o = views(outputs), s = views(saved), w = views(workspace);
    node->forward(ForwardContext{inputs, p, o, s, w, step});
  }

  // Runs backward with the given output gradients into the given input/param gradient buffers.
  void backward(const std::vector<Tensor>& output_grads, std::vector<TensorView> input_grads,
                std::vector<Tensor>& param_grads) {
    auto p = views(params), o = views(outputs), s = views(saved), w = views(workspace), dy = views(output_grads),
         dp = views(param_grads);
    node->backward(BackwardContext{inputs, p, o, s, w, dy, input_grads, dp, StepInfo{}});
  }
};

inline double max_abs_diff(const float* a, const float* b, int64_t n) {
  double m = 0.0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::abs(a[i] - b[i])));
  return m;
}

// Creating TYPE with ATTRS fails with exactly "TYPE: MESSAGE".
inline void expect_rejected(const std::string& type, const Attrs& attrs, const std::string& message) {
  try {
    component_registry().create(type, attrs);
    FAIL() << type << ": expected \"" << message << "\"";
  } catch (const RegistryError& e) {
    EXPECT_EQ(std::string(e.what()), type + ": " + message);
  }
}

}  // namespace attnlab::components_test
