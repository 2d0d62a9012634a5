#include "exec/tbb_executor.h"

#include <tbb/flow_graph.h>
#include <tbb/parallel_for.h>

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

namespace attnlab::exec {

namespace flow = tbb::flow;

static std::atomic<uint64_t> next_executor_id{1};

TbbExecutor::TbbExecutor(int threads)
    : arena_(threads > 0 ? threads : tbb::task_arena::automatic), id_(next_executor_id++) {}

// The flow graphs of one plan. Member order matters: graphs are destroyed after their nodes.
struct TbbExecutor::State : ExecutorState {
  std::unique_ptr<flow::graph> forward_graph, backward_graph;
  std::unique_ptr<flow::broadcast_node<flow::continue_msg>> forward_start, backward_start;
  std::vector<std::unique_ptr<flow::continue_node<flow::continue_msg>>> forward_nodes, backward_nodes;
  bool staged = false;  // which param_grads the backward bodies use; set before each run

  // The first error of a run. Bodies after it do nothing (but still signal their successors), so
  // the graph completes normally and stays reusable.
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;

  template <class Body>
  flow::continue_node<flow::continue_msg>* make_node(flow::graph& g, Body body) {
    auto node = std::make_unique<flow::continue_node<flow::continue_msg>>(
        g, [this, body](const flow::continue_msg&) -> flow::continue_msg {
          if (failed.load(std::memory_order_acquire)) return {};
          try {
            body();
          } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed.store(true, std::memory_order_release);
          }
          return {};
        });
    building->push_back(std::move(node));
    return building->back().get();
  }
  std::vector<std::unique_ptr<flow::continue_node<flow::continue_msg>>>* building = nullptr;  // the list make_node fills

  void rethrow_if_failed() {
    if (!failed.load()) return;
    std::exception_ptr e;
    {
      std::lock_guard<std::mutex> lock(error_mutex);
      std::swap(e, error);
      failed.store(false);
    }
    std::rethrow_exception(e);
  }
};

TbbExecutor::State& TbbExecutor::state(Plan& plan) {
  std::unique_ptr<ExecutorState>& slot = plan.executor_state(id_);
  if (slot) return static_cast<State&>(*slot);
  auto st = std::make_unique<State>();
  State* s = st.get();
  const auto& steps = plan.steps();
  // Built inside the arena: a flow graph runs its tasks in the arena it was created in.
  arena_.execute([&] {
    s->forward_graph = std::make_unique<flow::graph>();
    s->forward_start = std::make_unique<flow::broadcast_node<flow::continue_msg>>(*s->forward_graph);
    s->building = &s->forward_nodes;
    std::vector<flow::continue_node<flow::continue_msg>*> forward(steps.size());
    for (size_t i = 0; i < steps.size(); ++i) {
      forward[i] = s->make_node(*s->forward_graph, [&plan, i] { forward_step(plan, i); });
      if (steps[i].forward_after.empty()) flow::make_edge(*s->forward_start, *forward[i]);
      for (int p : steps[i].forward_after) flow::make_edge(*forward[p], *forward[i]);
    }

    s->backward_graph = std::make_unique<flow::graph>();
    s->backward_start = std::make_unique<flow::broadcast_node<flow::continue_msg>>(*s->backward_graph);
    s->building = &s->backward_nodes;
    std::vector<flow::continue_node<flow::continue_msg>*> backward(steps.size(), nullptr);
    // backward_after points to later steps: create nodes from the last step down.
    for (size_t i = steps.size(); i-- > 0;) {
      if (!steps[i].runs_backward) continue;
      backward[i] = s->make_node(*s->backward_graph, [&plan, i, s] { backward_step(plan, i, s->staged); });
      if (steps[i].backward_after.empty()) flow::make_edge(*s->backward_start, *backward[i]);
      for (int p : steps[i].backward_after) flow::make_edge(*backward[p], *backward[i]);
    }
    s->building = nullptr;
  });
  slot = std::move(st);
  return *s;
}

void TbbExecutor::run_forward(Plan& plan) {
  State& s = state(plan);
  arena_.execute([&] {
    s.forward_start->try_put(flow::continue_msg());
    s.forward_graph->wait_for_all();
  });
  s.rethrow_if_failed();
}

void TbbExecutor::run_backward(Plan& plan, bool staged) {
  State& s = state(plan);
  s.staged = staged;
  arena_.execute([&] {
    s.backward_start->try_put(flow::continue_msg());
    s.backward_graph->wait_for_all();
  });
  s.rethrow_if_failed();
}

void TbbExecutor::run_indexed(size_t n, void (*fn)(void*, size_t), void* ctx) {
  if (n == 0) return;
  arena_.execute([&] { tbb::parallel_for(size_t(0), n, [&](size_t i) { fn(ctx, i); }); });
}

}  // namespace attnlab::exec
