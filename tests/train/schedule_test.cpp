// The paper's learning-rate schedule and the constant schedule.
#include "train/schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace attnlab::train {
namespace {

// cosine(warmup: 100, max_lr: 1e-3, min_lr: 1e-4, steps: 5000) by hand: 1e-3·50/100 at step 50;
// the peak at step 100; half-way through the decay (step 2550) min + ½(max − min) = 5.5e-4; at
// step 100 + 4900/3, cos(π/3) = ½ gives min + ¾(max − min) = 7.75e-4; the floor from step 5000.
TEST(CosineSchedule, WarmupPeakDecayAndFloorByHand) {
  CosineSchedule s(100, 1e-3, 1e-4, 5000);
  EXPECT_DOUBLE_EQ(s.rate(0), 0.0);
  EXPECT_DOUBLE_EQ(s.rate(50), 5e-4);
  EXPECT_DOUBLE_EQ(s.rate(100), 1e-3);
  EXPECT_NEAR(s.rate(2550), 5.5e-4, 1e-15);
  CosineSchedule third(100, 1e-3, 1e-4, 100 + 4900 * 3);
  EXPECT_NEAR(third.rate(100 + 4900), 7.75e-4, 1e-15);
  EXPECT_DOUBLE_EQ(s.rate(5000), 1e-4);
  EXPECT_DOUBLE_EQ(s.rate(9000), 1e-4);
  EXPECT_EQ(s.describe(), "cosine(warmup=100, max_lr=0.001, min_lr=0.0001, steps=5000)");
}

TEST(CosineSchedule, BadSettingsAreNamed) {
  EXPECT_THROW(CosineSchedule(100, 1e-3, 1e-2, 5000), ScheduleError);  // floor above the peak
  try {
    CosineSchedule(100, 1e-3, 1e-4, 100);
    FAIL() << "no error";
  } catch (const ScheduleError& e) {
    EXPECT_STREQ(e.what(), "cosine: steps (100) must be greater than warmup (100)");
  }
}

TEST(NoamSchedule, PeaksAtWarmup) {
  NoamSchedule s(512, 4000);
  const double peak = 1.0 / std::sqrt(512.0 * 4000.0);  // ≈ 6.988e-4
  EXPECT_NEAR(s.rate(4000), peak, 1e-15);
  EXPECT_NEAR(s.peak_rate(), peak, 1e-15);
  EXPECT_NEAR(peak, 6.9877e-4, 1e-7);
  int64_t argmax = 0;
  double best = -1;
  for (int64_t step = 1; step <= 20000; ++step)
    if (s.rate(step) > best) best = s.rate(step), argmax = step;
  EXPECT_EQ(argmax, 4000);
}

TEST(NoamSchedule, ValuesOnBothSidesOfWarmup) {
  NoamSchedule s(512, 4000);
  const double peak = s.peak_rate();
  // Linear warm-up: step·warmup^-1.5·d^-0.5.
  EXPECT_NEAR(s.rate(1), std::pow(512.0, -0.5) * std::pow(4000.0, -1.5), 1e-18);
  EXPECT_NEAR(s.rate(2000), peak / 2, 1e-15);
  EXPECT_NEAR(s.rate(1000), peak / 4, 1e-15);
  // Inverse square root decay: 4× the warm-up → half the peak.
  EXPECT_NEAR(s.rate(16000), peak / 2, 1e-15);
  EXPECT_NEAR(s.rate(100000), std::pow(512.0, -0.5) / std::sqrt(100000.0), 1e-15);
  EXPECT_LT(s.rate(3999), s.rate(4000));
  EXPECT_LT(s.rate(4001), s.rate(4000));
  EXPECT_EQ(s.rate(0), 0.0);
}

TEST(NoamSchedule, FactorAndModelWidthScale) {
  NoamSchedule base(256, 100), doubled(256, 100, 2.0), wider(1024, 100);
  for (int64_t step : {1, 50, 100, 400, 10000}) {
    EXPECT_NEAR(doubled.rate(step), 2 * base.rate(step), 1e-15);
    EXPECT_NEAR(wider.rate(step), base.rate(step) / 2, 1e-15);
  }
  EXPECT_EQ(doubled.describe(), "noam(factor=2, d_model=256, warmup=100)");
}

TEST(ConstantSchedule, SameRateEveryStep) {
  ConstantSchedule s(3e-4);
  EXPECT_EQ(s.rate(0), 3e-4);
  EXPECT_EQ(s.rate(1), 3e-4);
  EXPECT_EQ(s.rate(1000000), 3e-4);
}

TEST(MakeSchedule, FromSettings) {
  ScheduleConfig c;
  c.d_model = 256;
  c.warmup = 8000;
  auto noam = make_schedule(c);
  EXPECT_NEAR(noam->rate(8000), 1 / std::sqrt(256.0 * 8000.0), 1e-15);
  c.kind = "constant";
  c.lr = 0.5;
  EXPECT_EQ(make_schedule(c)->rate(7), 0.5);
}

TEST(MakeSchedule, Errors) {
  auto message = [](ScheduleConfig c) {
    try {
      make_schedule(c);
    } catch (const ScheduleError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ScheduleConfig c;
  c.kind = "linear";
  EXPECT_EQ(message(c), "unknown learning-rate schedule 'linear' (known: noam, constant, cosine)");
  c = {};
  c.warmup = 0;
  EXPECT_EQ(message(c), "noam schedule: warmup must be >= 1 step, got 0");
  c = {};
  c.d_model = -3;
  EXPECT_EQ(message(c), "noam schedule: d_model must be >= 1, got -3");
  c = {};
  c.factor = 0;
  EXPECT_NE(message(c).find("factor must be a finite number > 0"), std::string::npos);
  c = {};
  c.kind = "constant";
  c.lr = -1;
  EXPECT_NE(message(c).find("lr must be a finite number >= 0"), std::string::npos);
  EXPECT_THROW(NoamSchedule(512, 10).rate(-1), ScheduleError);
}

}  // namespace
}  // namespace attnlab::train
