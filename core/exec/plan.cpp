#include "exec/plan.h"

#include "exec/hash.h"
#include "exec/model.h"

#include <algorithm>
#include <functional>
#include <set>

namespace attnlab::exec {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

const TensorView& absent_view() {
  static const TensorView absent;
  return absent;
}

}  // namespace

Plan::~Plan() = default;

TensorView Plan::allocate(Shape shape) {
  const int64_t n = numel(shape);
  buffers_.push_back(model_.buffer_pool().acquire(n));
  bytes_ += static_cast<int64_t>(sizeof(float)) * n;
  return TensorView(buffers_.back().data(), std::move(shape));
}

const std::string& Plan::resolve(const std::string& name) const {
  auto it = output_values_.find(name);
  return it == output_values_.end() ? name : it->second;
}

bool Plan::has_value(const std::string& name) const { return values_.count(resolve(name)) != 0; }

const TensorView& Plan::value(const std::string& name) const {
  auto it = values_.find(resolve(name));
  if (it == values_.end()) throw std::out_of_range("the plan holds no value '" + name + "'");
  return it->second;
}

const TensorView& Plan::grad(const std::string& name) const {
  const std::string& resolved = resolve(name);
  if (!values_.count(resolved)) throw std::out_of_range("the plan holds no value '" + name + "'");
  auto it = grads_.find(resolved);
  return it == grads_.end() ? absent_view() : it->second;
}

// Building a plan, in stages that each read what the earlier ones found: the values asked for, the
// nodes needed, their shapes at the plan's sizes, value buffers, which values carry gradients,
// the steps with their views, parameter gradients, and the order between steps.
struct Plan::Builder {
  Plan& plan;
  Model& model;
  const ir::GraphDef& graph;
  const int n;
  std::map<std::string, int> input_index;
  std::vector<std::string> output_names;
  std::set<std::string> fed;
  std::vector<std::string> fetched_values;  // the fetches, resolved
  std::vector<bool> needed, shaped;
  std::set<std::string> shaped_inputs;
  std::map<std::string, Shape> shapes;
  std::vector<NodeShapes> node_shapes;
  std::vector<int> order;  // the needed nodes, topologically
  std::vector<bool> active;  // runs backward
  std::map<int, int> step_of;  // node -> step
  std::map<size_t, std::vector<std::pair<int, int>>> param_users;  // store index -> (step, slot)

  Builder(Plan& p, Model& m) : plan(p), model(m), graph(m.graph()), n(m.graph().nodes_size()) {
    for (int i = 0; i < graph.inputs_size(); ++i) input_index[graph.inputs(i).name()] = i;
    for (const ir::GraphOutput& out : graph.outputs()) {
      plan.output_values_[out.name()] = out.value();
      output_names.push_back(out.name());
    }
  }

  // Where a value comes from: a graph input (-1) or a node; anything else is not a value.
  int producer(const std::string& value, const std::string& role) const {
    const ir::ValueRef ref = ir::parse_value(value);
    const int node = model.node_index(ref.name);
    if (node >= 0 && ref.port < static_cast<int>(model.schema(node).outputs.size())) return node;
    if (node < 0 && ref.port == 0 && input_index.count(ref.name)) return -1;
    throw PlanError("cannot plan: " + role + " '" + value + "' is neither a graph output (" + join(output_names) +
                    ") nor a value of the graph");
  }

  void resolve_feeds_and_fetches(const std::vector<std::string>& feeds) {
    for (const std::string& f : feeds) {
      const std::string& value = plan.resolve(f);
      producer(value, "fed value");
      if (fed.insert(value).second) plan.feeds_.push_back(value);
    }
    for (const std::string& f : plan.fetches_) {
      const std::string& value = plan.resolve(f);
      producer(value, "fetch");
      fetched_values.push_back(value);
    }
  }

  // Walks back from the fetches, stopping at fed values.
  void select_needed_nodes() {
    needed.assign(n, false);
    std::function<void(const std::string&, const std::string&)> need = [&](const std::string& value, const std::string& consumer) {
      if (fed.count(value)) return;
      const int p = producer(value, "value");
      if (p < 0)
        throw PlanError("cannot plan: " + consumer + " needs graph input '" + value + "', which is not fed (fed: " +
                        (plan.feeds_.empty() ? std::string("nothing") : join(plan.feeds_)) + ")");
      if (needed[p]) return;
      needed[p] = true;
      for (const std::string& in : graph.nodes(p).inputs())
        if (!in.empty()) need(in, "node '" + graph.nodes(p).name() + "'");
    };
    for (size_t i = 0; i < fetched_values.size(); ++i) need(fetched_values[i], "fetch '" + plan.fetches_[i] + "'");
    for (const std::string& value : plan.feeds_) {
      const int p = producer(value, "fed value");
      if (p >= 0 && needed[p])
        throw PlanError("cannot plan: value '" + value + "' is fed, but its node '" + graph.nodes(p).name() +
                        "' also has to run for another of its outputs");
    }
    for (int i : model.inferred().order)
      if (needed[i]) order.push_back(i);
  }

  // Shapes of the needed nodes and of whatever produces the fed values (upstream of feeds too,
  // because a fed value's shape is the one its producer would give), at the plan's sizes.
  void infer_shapes() {
    shaped.assign(n, false);
    std::function<void(int)> shape_closure = [&](int node) {
      if (shaped[node]) return;
      shaped[node] = true;
      for (const std::string& in : graph.nodes(node).inputs()) {
        if (in.empty()) continue;
        const int p = producer(in, "value");
        if (p >= 0) shape_closure(p);
        else shaped_inputs.insert(in);
      }
    };
    for (int i = 0; i < n; ++i)
      if (needed[i]) shape_closure(i);
    for (const std::string& value : plan.feeds_) {
      const int p = producer(value, "fed value");
      if (p >= 0) shape_closure(p);
      else shaped_inputs.insert(value);
    }
    for (const std::string& value : fetched_values)
      if (producer(value, "fetch") < 0) shaped_inputs.insert(value);

    std::vector<ir::Diagnostic> diagnostics;
    for (const std::string& name : shaped_inputs) {
      const ir::GraphInput& input = graph.inputs(input_index.at(name));
      std::vector<std::string> problems;
      Shape shape = ir::bind_input_shape(input, plan.dims_, problems);
      for (const std::string& problem : problems) diagnostics.push_back({input.loc(), problem + " in this plan"});
      if (problems.empty()) shapes[name] = std::move(shape);
    }
    node_shapes.resize(n);
    std::vector<bool> failed(n, false);
    for (int i : model.inferred().order) {
      if (!shaped[i]) continue;
      const ir::NodeDef& def = graph.nodes(i);
      std::vector<Shape> in_shapes;
      for (const std::string& in : def.inputs()) {
        if (in.empty()) {
          in_shapes.push_back({});
          continue;
        }
        auto it = shapes.find(in);
        if (it == shapes.end()) {
          failed[i] = true;
          break;
        }
        in_shapes.push_back(it->second);
      }
      if (failed[i]) continue;
      try {
        node_shapes[i] = ir::infer_node_shapes(model.node(i), model.schema(i), std::move(in_shapes));
        check_parameters_do_not_depend_on_sizes(i);
        const NodeShapes& s = node_shapes[i];
        for (size_t k = 0; k < s.outputs.size(); ++k) shapes[ir::value_name(def.name(), static_cast<int>(k))] = s.outputs[k];
      } catch (const std::exception& e) {
        diagnostics.push_back({def.loc(), "node '" + def.name() + "' (" + def.type() + "): " + e.what()});
        failed[i] = true;
      }
    }
    if (!diagnostics.empty()) throw ir::GraphError(std::move(diagnostics));
  }

  void check_parameters_do_not_depend_on_sizes(int i) const {
    const NodeShapes& s = node_shapes[i];
    const auto params = model.node_parameters(i);
    if (s.params.size() != params.size())
      throw ShapeError("infer() declared " + std::to_string(s.params.size()) + " parameters for these sizes and " +
                       std::to_string(params.size()) + " for the model's; parameters must not depend on sizes");
    for (size_t k = 0; k < params.size(); ++k)
      if (s.params[k].shape != model.parameters()[params[k]].spec.shape)
        throw ShapeError("parameter '" + s.params[k].name + "' has shape " + to_string(s.params[k].shape) + " for these sizes and " +
                         to_string(model.parameters()[params[k]].spec.shape) + " for the model's; parameters must not depend on sizes");
  }

  // Whether a value can carry a gradient at all.
  bool differentiable(const std::string& value) const {
    const int p = producer(value, "value");
    if (p < 0) {
      const std::string& kind = graph.inputs(input_index.at(value)).kind();
      return kind != "ids" && kind != "mask";
    }
    return model.schema(p).outputs[ir::parse_value(value).port].differentiable;
  }

  // Fed values, then every output of every needed node.
  void allocate_values() {
    for (const std::string& value : plan.feeds_) plan.values_[value] = plan.allocate(shapes.at(value));
    for (int i : order)
      for (size_t k = 0; k < model.schema(i).outputs.size(); ++k) {
        const std::string name = ir::value_name(graph.nodes(i).name(), static_cast<int>(k));
        plan.values_[name] = plan.allocate(shapes.at(name));
      }
  }

  // Which nodes run backward and which values get gradient buffers, in reverse topological order.
  void route_gradients() {
    std::set<std::string> with_grad;
    for (const std::string& value : fetched_values)
      if (plan.pass_ == Pass::ForwardAndBackward && differentiable(value)) with_grad.insert(value);
    active.assign(n, false);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      const int i = *it;
      const ir::NodeDef& def = graph.nodes(i);
      const NodeSchema& schema = model.schema(i);
      bool output_grad = false;
      for (size_t k = 0; k < schema.outputs.size(); ++k)
        if (schema.outputs[k].differentiable && with_grad.count(ir::value_name(def.name(), static_cast<int>(k)))) output_grad = true;
      std::vector<std::string> grad_inputs;
      for (int j = 0; j < def.inputs_size(); ++j)
        if (!def.inputs(j).empty() && schema.inputs[j].differentiable && differentiable(def.inputs(j))) grad_inputs.push_back(def.inputs(j));
      if (!output_grad || (model.node_parameters(i).empty() && grad_inputs.empty())) continue;
      active[i] = true;
      for (size_t k = 0; k < schema.outputs.size(); ++k)
        if (schema.outputs[k].differentiable) with_grad.insert(ir::value_name(def.name(), static_cast<int>(k)));
      with_grad.insert(grad_inputs.begin(), grad_inputs.end());
    }
    for (const std::string& value : with_grad) {
      plan.grads_[value] = plan.allocate(shapes.at(value));
      plan.value_grad_views_.push_back(plan.grads_[value]);
    }
  }

  // One step per needed node, with views of its inputs, outputs, gradients, parameters and saved
  // tensors; records which steps use each parameter.
  void build_steps() {
    plan.steps_.resize(order.size());
    for (size_t s = 0; s < order.size(); ++s) {
      const int i = order[s];
      step_of[i] = static_cast<int>(s);
      const ir::NodeDef& def = graph.nodes(i);
      const NodeSchema& schema = model.schema(i);
      Step& step = plan.steps_[s];
      step.node = i;
      step.instance = &model.node(i);
      step.name = def.name();
      step.type = def.type();
      step.loc = def.loc();
      step.name_hash = fnv1a(def.name());
      step.runs_backward = active[i];
      for (int j = 0; j < static_cast<int>(schema.inputs.size()); ++j) {
        const std::string in = j < def.inputs_size() ? def.inputs(j) : std::string();
        step.inputs.push_back(in.empty() ? TensorView() : plan.values_.at(in));
        const bool wants = active[i] && !in.empty() && schema.inputs[j].differentiable && plan.grads_.count(in);
        step.input_grads.push_back(wants ? plan.grads_.at(in) : TensorView());
      }
      for (size_t k = 0; k < schema.outputs.size(); ++k) {
        const std::string name = ir::value_name(def.name(), static_cast<int>(k));
        step.outputs.push_back(plan.values_.at(name));
        auto g = plan.grads_.find(name);
        step.output_grads.push_back(active[i] && g != plan.grads_.end() ? g->second : TensorView());
      }
      const auto params = model.node_parameters(i);
      for (size_t k = 0; k < params.size(); ++k) {
        step.params.push_back(model.parameters()[params[k]].value.view());
        step.param_grads.push_back(TensorView());
        // State has no gradient (node.h): its gradient view stays absent, and nothing reduces it.
        if (model.parameters()[params[k]].spec.kind == ParamKind::State) continue;
        if (active[i]) param_users[params[k]].push_back({static_cast<int>(s), static_cast<int>(k)});
      }
      for (const Shape& shape : node_shapes[i].saved) step.saved.push_back(plan.allocate(shape));
    }
  }

  // A parameter with a single user lets it write the store; several users get a buffer each.
  void assign_parameter_gradients() {
    for (auto& [param, users] : param_users) {
      ParamGradient pg;
      pg.param = param;
      Parameter& p = model.parameters()[param];
      if (users.size() == 1) {
        plan.steps_[users[0].first].param_grads[users[0].second] = p.grad.view();
        pg.single_step = users[0].first;
        pg.single_slot = users[0].second;
      } else {
        for (auto [s, k] : users) {
          TensorView use = plan.allocate(p.spec.shape);
          plan.steps_[s].param_grads[k] = use;
          pg.uses.push_back(use);
        }
      }
      pg.writers = static_cast<int>(users.size());
      for (auto [s, k] : users) plan.steps_[s].writes_param_gradients.push_back(plan.param_gradients_.size());
      plan.param_gradients_.push_back(std::move(pg));
    }
    for (size_t p = 0; p < model.parameters().size(); ++p)
      if (!param_users.count(p) && model.parameters()[p].spec.kind == ParamKind::Trainable) plan.unused_params_.push_back(p);
  }

  // Forward: a node after the producers of its inputs. Backward: a producer after every consumer
  // that adds into its outputs' gradients, and those consumers one after another.
  void order_steps() {
    std::vector<Step>& steps = plan.steps_;
    std::map<const float*, std::vector<int>> writers;  // gradient buffer -> steps adding into it
    for (size_t s = 0; s < steps.size(); ++s) {
      Step& step = steps[s];
      std::set<int> preds;
      for (const std::string& in : graph.nodes(step.node).inputs()) {
        if (in.empty()) continue;
        const int p = producer(in, "value");
        if (p >= 0 && step_of.count(p)) preds.insert(step_of.at(p));
      }
      step.forward_after.assign(preds.begin(), preds.end());
      if (!step.runs_backward) continue;
      std::set<const float*> targets;
      for (const TensorView& g : step.input_grads)
        if (g.present()) targets.insert(g.data());
      for (const float* t : targets) writers[t].push_back(static_cast<int>(s));
    }
    std::vector<std::set<int>> backward_after(steps.size());
    for (auto& [buffer, ws] : writers) {
      std::sort(ws.rbegin(), ws.rend());
      for (size_t k = 1; k < ws.size(); ++k) backward_after[ws[k]].insert(ws[k - 1]);
    }
    for (size_t s = 0; s < steps.size(); ++s) {
      if (!steps[s].runs_backward) continue;
      std::set<const float*> mine;
      for (const TensorView& g : steps[s].output_grads)
        if (g.present()) mine.insert(g.data());
      for (const float* g : mine)
        if (auto it = writers.find(g); it != writers.end())
          for (int w : it->second) backward_after[s].insert(w);
    }
    for (size_t s = 0; s < steps.size(); ++s) steps[s].backward_after.assign(backward_after[s].begin(), backward_after[s].end());
  }

  std::vector<std::vector<Shape>> workspace_shapes() const {
    std::vector<std::vector<Shape>> out(plan.steps_.size());
    for (size_t s = 0; s < plan.steps_.size(); ++s) out[s] = node_shapes[plan.steps_[s].node].workspace;
    return out;
  }
};

Plan::Plan(Model& model, ir::DimBindings dims, std::vector<std::string> feeds, std::vector<std::string> fetches,
           Pass pass)
    : model_(model), dims_(std::move(dims)), pass_(pass), fetches_(std::move(fetches)) {
  Builder build(*this, model);
  build.resolve_feeds_and_fetches(feeds);
  build.select_needed_nodes();
  build.infer_shapes();
  build.allocate_values();
  build.route_gradients();
  build.build_steps();
  build.assign_parameter_gradients();
  build.order_steps();
  share_workspaces(build.workspace_shapes());
}

namespace {

// Reachability in a DAG given each vertex's direct predecessors: reach[v][u] says u must finish
// before v starts.
std::vector<std::vector<bool>> predecessors_closure(const std::vector<std::vector<int>>& after) {
  const size_t n = after.size();
  std::vector<std::vector<bool>> reach(n, std::vector<bool>(n, false));
  std::vector<int> state(n, 0);  // 0 new, 1 in progress, 2 done
  std::function<void(int)> visit = [&](int v) {
    if (state[v] == 2) return;
    state[v] = 1;
    for (int p : after[v]) {
      visit(p);
      reach[v][p] = true;
      for (size_t u = 0; u < n; ++u)
        if (reach[p][u]) reach[v][u] = true;
    }
    state[v] = 2;
  };
  for (size_t v = 0; v < n; ++v) visit(static_cast<int>(v));
  return reach;
}

}  // namespace

void Plan::share_workspaces(const std::vector<std::vector<Shape>>& shapes) {
  // Workspace is scratch for the duration of one forward or backward call (core/node/node.h), so
  // two steps may use the same memory when they can never run at the same time: one is ordered
  // before the other in the forward dependencies, and, when both run backward, in the backward
  // dependencies too (the executors finish every forward before any backward). Steps are put
  // greedily into groups of mutually ordered steps; each group gets one block as large as its
  // largest member. A chain of layers shares one block instead of a block per layer.
  const size_t n = steps_.size();
  std::vector<std::vector<int>> forward_deps(n), backward_deps(n);
  for (size_t s = 0; s < n; ++s) {
    forward_deps[s] = steps_[s].forward_after;
    backward_deps[s] = steps_[s].backward_after;
  }
  const auto forward_reach = predecessors_closure(forward_deps);
  const auto backward_reach = predecessors_closure(backward_deps);
  auto never_concurrent = [&](size_t a, size_t b) {
    if (!forward_reach[a][b] && !forward_reach[b][a]) return false;
    if (steps_[a].runs_backward && steps_[b].runs_backward) return backward_reach[a][b] || backward_reach[b][a];
    return true;
  };
  auto aligned = [](int64_t floats) { return (floats + 15) / 16 * 16; };  // 64-byte lines
  struct Group {
    std::vector<size_t> members;
    int64_t floats = 0;
  };
  std::vector<Group> groups;
  std::vector<size_t> group_of(n, 0);
  for (size_t s = 0; s < n; ++s) {
    if (shapes[s].empty()) continue;
    int64_t floats = 0;
    for (const Shape& shape : shapes[s]) floats += aligned(numel(shape));
    size_t g = 0;
    while (g < groups.size() &&
           !std::all_of(groups[g].members.begin(), groups[g].members.end(), [&](size_t m) { return never_concurrent(s, m); }))
      ++g;
    if (g == groups.size()) groups.emplace_back();
    groups[g].members.push_back(s);
    groups[g].floats = std::max(groups[g].floats, floats);
    group_of[s] = g;
  }
  std::vector<float*> base(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    buffers_.push_back(model_.buffer_pool().acquire(groups[g].floats));
    bytes_ += static_cast<int64_t>(sizeof(float)) * groups[g].floats;
    base[g] = buffers_.back().data();
  }
  for (size_t s = 0; s < n; ++s) {
    if (shapes[s].empty()) continue;
    float* next = base[group_of[s]];
    for (const Shape& shape : shapes[s]) {
      steps_[s].workspace.emplace_back(next, shape);
      next += aligned(numel(shape));
    }
  }
  workspace_groups_ = groups.size();
}

void Plan::prepare_accumulation() {
  if (accumulation_ready_) return;
  for (Step& step : steps_) step.param_grads_staged = step.param_grads;
  for (ParamGradient& pg : param_gradients_) {
    if (pg.single_step < 0) continue;
    pg.staged = allocate(model_.parameters()[pg.param].spec.shape);
    steps_[pg.single_step].param_grads_staged[pg.single_slot] = pg.staged;
  }
  accumulation_ready_ = true;
}

}  // namespace attnlab::exec
