// The paper's learning-rate schedule and the constant schedule.
#include "train/schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace attnlab::train {
namespace {

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
  c.kind = "cosine";
  EXPECT_EQ(message(c), "unknown learning-rate schedule 'cosine' (known: noam, constant)");
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
