#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace attnlab::train {
namespace {

void check_step(int64_t step) {
  if (step < 0) throw ScheduleError("learning-rate schedule: step must be >= 0, got " + std::to_string(step));
}

std::string number(double x) {
  std::ostringstream out;
  out << x;
  return out.str();
}

}  // namespace

NoamSchedule::NoamSchedule(int64_t d_model, int64_t warmup, double factor)
    : d_model_(d_model), warmup_(warmup), factor_(factor) {
  if (d_model < 1) throw ScheduleError("noam schedule: d_model must be >= 1, got " + std::to_string(d_model));
  if (warmup < 1) throw ScheduleError("noam schedule: warmup must be >= 1 step, got " + std::to_string(warmup));
  if (!(factor > 0.0) || !std::isfinite(factor))
    throw ScheduleError("noam schedule: factor must be a finite number > 0, got " + number(factor));
}

double NoamSchedule::rate(int64_t step) const {
  check_step(step);
  if (step == 0) return 0.0;
  const double s = double(step);
  return factor_ / std::sqrt(double(d_model_)) * std::min(1.0 / std::sqrt(s), s * std::pow(double(warmup_), -1.5));
}

std::string NoamSchedule::describe() const {
  return "noam(factor=" + number(factor_) + ", d_model=" + std::to_string(d_model_) + ", warmup=" + std::to_string(warmup_) + ")";
}

ConstantSchedule::ConstantSchedule(double lr) : lr_(lr) {
  if (!(lr >= 0.0) || !std::isfinite(lr)) throw ScheduleError("constant schedule: lr must be a finite number >= 0, got " + number(lr));
}

double ConstantSchedule::rate(int64_t step) const {
  check_step(step);
  return lr_;
}

std::string ConstantSchedule::describe() const { return "constant(lr=" + number(lr_) + ")"; }

CosineSchedule::CosineSchedule(int64_t warmup, double max_lr, double min_lr, int64_t steps)
    : warmup_(warmup), max_lr_(max_lr), min_lr_(min_lr), steps_(steps) {
  if (warmup < 0) throw ScheduleError("cosine: warmup must be >= 0, got " + std::to_string(warmup));
  if (!(std::isfinite(max_lr) && max_lr > 0)) throw ScheduleError("cosine: max_lr must be finite and > 0, got " + number(max_lr));
  if (!(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= max_lr))
    throw ScheduleError("cosine: min_lr must be between 0 and max_lr (" + number(max_lr) + "), got " + number(min_lr));
  if (steps <= warmup)
    throw ScheduleError("cosine: steps (" + std::to_string(steps) + ") must be greater than warmup (" + std::to_string(warmup) + ")");
}

double CosineSchedule::rate(int64_t step) const {
  check_step(step);
  if (step <= warmup_) return warmup_ == 0 ? max_lr_ : max_lr_ * static_cast<double>(step) / static_cast<double>(warmup_);
  if (step >= steps_) return min_lr_;
  const double progress = static_cast<double>(step - warmup_) / static_cast<double>(steps_ - warmup_);
  return min_lr_ + 0.5 * (1.0 + std::cos(M_PI * progress)) * (max_lr_ - min_lr_);
}

std::string CosineSchedule::describe() const {
  return "cosine(warmup=" + std::to_string(warmup_) + ", max_lr=" + number(max_lr_) + ", min_lr=" + number(min_lr_) +
         ", steps=" + std::to_string(steps_) + ")";
}

std::unique_ptr<LearningRateSchedule> make_schedule(const ScheduleConfig& config) {
  if (config.kind == "noam") return std::make_unique<NoamSchedule>(config.d_model, config.warmup, config.factor);
  if (config.kind == "constant") return std::make_unique<ConstantSchedule>(config.lr);
  if (config.kind == "cosine") return std::make_unique<CosineSchedule>(config.warmup, config.max_lr, config.min_lr, config.steps);
  throw ScheduleError("unknown learning-rate schedule '" + config.kind + "' (known: noam, constant, cosine)");
}

}  // namespace attnlab::train
