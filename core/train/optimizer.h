// core/train/optimizer.h — the Adam optimizer, gradient clipping and gradient accumulation.
//
// Contract:
// - The optimizer works on a plain view of the parameters: a span of ParamRef (name, value, grad).
//   It does not own parameters; the same names must be passed on every step (their order may
//   change). A name seen for the first time gets zero moments; a known name whose shape changed is
//   an OptimizerError naming it.
// - Adam (Kingma & Ba, 2015, Algorithm 1, with bias correction of both moments):
//     t ← t + 1
//     g ← grad_scale · grad, then clipped (below)
//     m ← β1·m + (1−β1)·g            v ← β2·v + (1−β2)·g²
//     m̂ = m / (1−β1^t)              v̂ = v / (1−β2^t)
//     θ ← θ − lr · m̂ / (sqrt(v̂) + ε)
//   ε is added to sqrt(v̂) (the bias-corrected estimate), as in Algorithm 1 and PyTorch's Adam —
//   not the "ε-hat" variant of the paper's section 2. Defaults β1=0.9, β2=0.98, ε=1e-9 (the
//   Transformer paper's).
// - AdamW (Loshchilov & Hutter, 2019; PyTorch's AdamW): with weight_decay λ > 0, every parameter
//   whose ParamRef::decay is set is first shrunk, decoupled from the gradient's moments:
//     θ ← θ · (1 − lr·λ)      then the Adam update above.
//   Which parameters decay is the caller's choice (the trainer: matrices, not biases, norm gains
//   or embedding tables unless adamw(decay_embeddings: true)).
// - Clipping by global norm (clip_norm > 0): with N = sqrt(Σ over all parameters of ‖g‖²) after
//   scaling, every g is multiplied by clip_norm / N when N > clip_norm. The norm is summed in double
//   per fixed chunk and the chunks added in a fixed order, so it does not depend on thread count.
// - A non-finite gradient (NaN or infinity, or a norm that overflows) is an OptimizerError naming
//   the first such parameter and element; nothing is changed (parameters, moments, step count).
// - The gradients passed in are read, never modified.
// - Work is split into fixed chunks of elements across all parameters and run with
//   tbb::parallel_for; the result is bit-identical for any number of threads.
// - Gradient accumulation: backward ASSIGNS parameter gradients, so summing over micro-batches
//   needs a buffer: GradientAccumulator adds weight·grad per micro-batch and writes the sum back
//   into the grads; the step then takes grad_scale = 1 / (total weight), e.g. the token count.
// - State (step count and per-parameter m, v) can be exported and imported for checkpoints;
//   import checks names and shapes against the parameters and names any mismatch.
#pragma once

#include "tensor/tensor.h"

#include <cstdint>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::train {

struct OptimizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One trainable parameter as the optimizer sees it. `value` and `grad` have the same shape.
struct ParamRef {
  std::string name;
  TensorView value;
  TensorView grad;
  bool decay = false;  // AdamW: weight decay applies to this parameter
};

struct AdamConfig {
  double beta1 = 0.9;
  double beta2 = 0.98;
  double eps = 1e-9;
  double clip_norm = 0.0;  // > 0: clip gradients by global norm to this value; 0: no clipping
  double weight_decay = 0.0;      // AdamW's λ (0: plain Adam)
  bool decay_embeddings = false;  // AdamW: embedding tables decay too (the trainer's choice of ParamRef::decay)
};

// Checks 0 ≤ β < 1, ε > 0, clip_norm ≥ 0, weight_decay ≥ 0; throws OptimizerError naming the bad field.
void validate(const AdamConfig& config);

// The optimizer's state, in a form a checkpoint can store.
struct AdamState {
  struct Slot {
    std::string name;
    Tensor m;
    Tensor v;
  };
  int64_t step = 0;  // updates applied so far
  std::vector<Slot> slots;
};

struct StepStats {
  double grad_norm = 0.0;    // global norm of the scaled gradients, before clipping
  double clip_factor = 1.0;  // the factor applied by clipping (1 when not clipped)
  bool clipped = false;
  double lr = 0.0;           // the learning rate used
};

class Adam {
 public:
  explicit Adam(AdamConfig config = {});

  // Applies one update to every parameter in `params` with learning rate `lr`; gradients are first
  // multiplied by `grad_scale` (1 / accumulated weight), then clipped when configured.
  StepStats step(std::span<const ParamRef> params, double lr, double grad_scale = 1.0);

  const AdamConfig& config() const { return config_; }
  int64_t steps() const { return step_; }

  AdamState export_state() const;
  // Replaces the state. Every parameter in `params` must have a slot of the same shape and every
  // slot a parameter; otherwise OptimizerError lists the names that differ. `source` names where
  // the state came from (a checkpoint file) for the message.
  void import_state(AdamState state, std::span<const ParamRef> params, const std::string& source = "");

 private:
  struct Moments {
    Tensor m;
    Tensor v;
  };
  Moments& moments_for(const ParamRef& param);

  AdamConfig config_;
  int64_t step_ = 0;
  std::map<std::string, Moments> moments_;
};

// The global L2 norm of the gradients (scaled by `scale`), deterministic for any thread count.
double global_grad_norm(std::span<const ParamRef> params, double scale = 1.0);

// Sums weighted gradients over micro-batches.
class GradientAccumulator {
 public:
  // Adds weight · grad of every parameter into the sum (buffers are created on first use; a
  // parameter must keep its shape).
  void accumulate(std::span<const ParamRef> params, double weight = 1.0);
  // Writes the sums into the parameters' grads (ASSIGNS), then clears the sums. Every parameter
  // must have been accumulated at least once since the last clear.
  void write_to(std::span<const ParamRef> params);
  void clear();

  int64_t micro_batches() const { return micro_batches_; }
  double total_weight() const { return total_weight_; }

 private:
  struct Sum {
    Tensor value;
    bool touched = false;  // accumulated into since the last clear
  };
  std::map<std::string, Sum> sums_;
  int64_t micro_batches_ = 0;
  double total_weight_ = 0.0;
};

}  // namespace attnlab::train
