// core/train/schedule.h — learning-rate schedules.
//
// Contract:
// - A schedule maps the update number `step` (1 for the first update) to a learning rate. It is a
//   pure function of the step, so a resumed run gets the same rates as an uninterrupted one.
// - "noam" (Vaswani et al., 2017, eq. 3):
//     lrate = factor · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)
//   It rises linearly for `warmup` steps, peaks at step = warmup with factor · (d_model·warmup)^-0.5,
//   then decays with the inverse square root of the step. step 0 gives 0 (the formula's limit).
// - "constant": lrate = lr for every step.
// - "cosine" (nanoGPT's get_lr, with updates counted from 1): a linear warm-up
//     lrate = max_lr · step / warmup                                  for step ≤ warmup,
//   then a half cosine from max_lr down to the floor min_lr at step = steps,
//     lrate = min_lr + ½(1 + cos(π · (step − warmup) / (steps − warmup))) · (max_lr − min_lr),
//   and min_lr after that. Needs 0 ≤ min_lr ≤ max_lr, warmup ≥ 0 and steps > warmup.
// - Settings are checked when the schedule is made (ScheduleError names the bad setting); a
//   negative step is an error.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace attnlab::train {

struct ScheduleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class LearningRateSchedule {
 public:
  virtual ~LearningRateSchedule() = default;
  virtual double rate(int64_t step) const = 0;
  virtual std::string describe() const = 0;  // "noam(factor=1, d_model=512, warmup=4000)"
};

class NoamSchedule final : public LearningRateSchedule {
 public:
  NoamSchedule(int64_t d_model, int64_t warmup, double factor = 1.0);
  double rate(int64_t step) const override;
  std::string describe() const override;
  double peak_rate() const { return rate(warmup_); }
  int64_t warmup() const { return warmup_; }

 private:
  int64_t d_model_;
  int64_t warmup_;
  double factor_;
};

class ConstantSchedule final : public LearningRateSchedule {
 public:
  explicit ConstantSchedule(double lr);
  double rate(int64_t step) const override;
  std::string describe() const override;

 private:
  double lr_;
};

class CosineSchedule final : public LearningRateSchedule {
 public:
  CosineSchedule(int64_t warmup, double max_lr, double min_lr, int64_t steps);
  double rate(int64_t step) const override;
  std::string describe() const override;

 private:
  int64_t warmup_;
  double max_lr_, min_lr_;
  int64_t steps_;
};

// A schedule described by settings, as an experiment file gives them.
struct ScheduleConfig {
  std::string kind = "noam";  // "noam", "constant" or "cosine"
  double factor = 1.0;        // noam
  int64_t d_model = 512;      // noam
  int64_t warmup = 4000;      // noam
  double lr = 1e-4;           // constant
  double max_lr = 1e-3, min_lr = 1e-4;  // cosine (and its warmup)
  int64_t steps = 5000;                 // cosine: where the decay reaches min_lr
};

std::unique_ptr<LearningRateSchedule> make_schedule(const ScheduleConfig& config);

}  // namespace attnlab::train
