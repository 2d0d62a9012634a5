// metrics.jsonl writing and reading, TensorBoard event files, the progress display in both modes, the learning curve.
#include "train/run_log.h"
#include "temp_dir.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

namespace attnlab::train {
namespace {
using nlohmann::json;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(MetricsLog, OneFlushedObjectPerLineWithEventFirst) {
  TempDir dir;
  const auto file = dir / "metrics.jsonl";
  MetricsLog log(file);
  log.append("train", {{"step", 1}, {"epoch", 0}, {"loss", 9.5}, {"lr", 1e-4}, {"tokens_per_s", 1234.5}, {"elapsed_s", 0.5}});
  // Readable while the log is still open: every line is flushed.
  EXPECT_EQ(read_metrics(file).size(), 1u);
  log.append("valid", {{"step", 1}, {"loss", 8.0}, {"bleu", 1.5}, {"nested", {{"a", 1}}}});
  const std::string text = read_file(file);
  EXPECT_EQ(text.rfind("{\"event\":\"train\",", 0), 0u) << text;
  EXPECT_TRUE(contains(text, "\n{\"event\":\"valid\",")) << text;
  const auto events = read_metrics(file);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["event"], "train");
  EXPECT_EQ(events[0]["step"], 1);
  EXPECT_DOUBLE_EQ(events[0]["tokens_per_s"].get<double>(), 1234.5);
  EXPECT_EQ(events[1]["nested"]["a"], 1);
}

TEST(MetricsLog, NonFiniteNumbersBecomeNull) {
  TempDir dir;
  MetricsLog log(dir / "m.jsonl");
  log.append("train", {{"step", 3}, {"loss", NAN}, {"lr", INFINITY}});
  const auto events = read_metrics(dir / "m.jsonl");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0]["loss"].is_null());
  EXPECT_TRUE(events[0]["lr"].is_null());
}

TEST(MetricsLog, AppendsToAnExistingLogAndDropsAnIncompleteLastLine) {
  TempDir dir;
  const auto file = dir / "m.jsonl";
  write_file(file, "{\"event\":\"train\",\"step\":1}\n{\"event\":\"tra");  // killed mid-line
  EXPECT_EQ(read_metrics(file).size(), 1u);
  {
    MetricsLog log(file);
    log.append("train", {{"step", 2}});
  }
  EXPECT_EQ(read_file(file), "{\"event\":\"train\",\"step\":1}\n{\"event\":\"train\",\"step\":2}\n");
}

TEST(MetricsLog, RepairFindsTheLastNewlineFarBack) {
  TempDir dir;
  const auto file = dir / "m.jsonl";
  const std::string first = "{\"event\":\"train\",\"step\":1}\n";
  write_file(file, first + "{\"event\":\"train\",\"note\":\"" + std::string(10000, 'x'));  // a long cut line
  { MetricsLog log(file); }
  EXPECT_EQ(read_file(file), first);
  write_file(file, "{\"cut");  // no complete line at all
  { MetricsLog log(file); }
  EXPECT_EQ(read_file(file), "");
}

TEST(MetricsLog, Errors) {
  TempDir dir;
  const auto file = dir / "m.jsonl";
  MetricsLog log(file);
  EXPECT_THROW(log.append("train", json::array({1, 2})), RunLogError);
  write_file(dir / "bad.jsonl", "{\"event\":\"train\"}\nnot json\n");
  try {
    read_metrics(dir / "bad.jsonl");
    FAIL();
  } catch (const RunLogError& e) {
    EXPECT_TRUE(contains(e.what(), (dir / "bad.jsonl").string() + ":2: not valid JSON")) << e.what();
  }
  write_file(dir / "array.jsonl", "[1]\n");
  EXPECT_THROW(read_metrics(dir / "array.jsonl"), RunLogError);
  EXPECT_THROW(MetricsLog(dir / "no_dir" / "m.jsonl"), RunLogError);
  EXPECT_THROW(read_metrics(dir / "missing.jsonl"), RunLogError);
}

TEST(MetricsLog, TruncateAfterStepForResume) {
  TempDir dir;
  const auto file = dir / "m.jsonl";
  {
    MetricsLog log(file);
    for (int step = 1; step <= 5; ++step) log.append("train", {{"step", step}});
    log.append("run", {{"note", "no step"}});
  }
  truncate_metrics_after(file, 3);
  const auto events = read_metrics(file);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[2]["step"], 3);
  EXPECT_EQ(events[3]["event"], "run");
}

TEST(EventLog, MaskedCrc32cOfTheCheckValue) {
  // CRC32C("123456789") is 0xE3069283 (RFC 3720's check value); TFRecord masks it.
  const uint32_t crc = 0xE3069283u;
  EXPECT_EQ(masked_crc32c("123456789"), ((crc >> 15) | (crc << 17)) + 0xA282EAD8u);
  EXPECT_NE(masked_crc32c("123456788"), masked_crc32c("123456789"));
}

TEST(EventLog, ScalarsPerNumericFieldTaggedByEvent) {
  TempDir dir;
  EventLog log(dir.path());
  EXPECT_EQ(log.file().filename().string().rfind("events.out.tfevents.", 0), 0u);
  log.append("train", {{"step", 3}, {"loss", 2.5}, {"lr", 1e-3}, {"note", "text"}, {"nan", std::nan("")}});
  log.append("valid", {{"step", 4}, {"bleu", 12.25}});
  const std::vector<EventScalar> got = read_events(log.file());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].tag, "train/loss");
  EXPECT_EQ(got[0].step, 3);
  EXPECT_FLOAT_EQ(got[0].value, 2.5f);
  EXPECT_EQ(got[1].tag, "train/lr");
  EXPECT_EQ(got[2].tag, "valid/bleu");
  EXPECT_EQ(got[2].step, 4);
  EXPECT_GT(got[2].wall_time, 1.6e9);
  EXPECT_THROW(log.append("train", {{"loss", 1.0}}), RunLogError);  // no step
  EventLog second(dir.path());
  EXPECT_NE(second.file(), log.file());
  EXPECT_EQ(event_files(dir.path()).size(), 2u);
}

TEST(EventLog, DamagedRecordIsNamedWithItsOffset) {
  TempDir dir;
  std::filesystem::path file;
  {
    EventLog log(dir.path());
    log.append("train", {{"step", 1}, {"loss", 2.0}});
    file = log.file();
  }
  std::string bytes = read_file(file);
  bytes[bytes.size() - 6] ^= 0x40;  // inside the last record's payload
  write_file(file, bytes);
  try {
    read_events(file);
    FAIL() << "no error";
  } catch (const RunLogError& e) {
    EXPECT_TRUE(contains(e.what(), file.string() + ": byte ")) << e.what();
    EXPECT_TRUE(contains(e.what(), "record data fails its CRC32C")) << e.what();
  }
}

TEST(EventLog, TruncateAfterStepForResume) {
  TempDir dir;
  std::filesystem::path file;
  {
    EventLog log(dir.path());
    for (int step = 1; step <= 4; ++step) log.append("train", {{"step", step}, {"loss", 1.0 * step}});
    log.append("test", {{"step", 2}, {"loss", 9.0}});
    file = log.file();
  }
  write_file(file, read_file(file) + std::string("\x10\0\0\0\0\0\0\0\1", 9));  // half a record, as a kill leaves
  truncate_events_after(dir.path(), 2);
  const std::vector<EventScalar> got = read_events(file);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].step, 1);
  EXPECT_EQ(got[1].step, 2);
  EXPECT_EQ(got[1].tag, "train/loss");  // the end-of-run test at step 2 is dropped too
}

TEST(LearningCurve, TrainAndDevLossAgainstStep) {
  std::vector<json> events = {
      {{"event", "train"}, {"step", 1}, {"loss", 9.0}},  {{"event", "train"}, {"step", 2}, {"loss", 8.0}},
      {{"event", "valid"}, {"step", 2}, {"loss", 8.5}},  {{"event", "train"}, {"step", 3}, {"loss", nullptr}},
      {{"event", "test"}, {"step", 3}, {"loss", 7.0}},   {{"event", "train"}, {"step", 4}, {"loss", 6.0}}};
  const LineChart chart = learning_curve(events);
  ASSERT_EQ(chart.series.size(), 2u);
  EXPECT_EQ(chart.series[0].name, "train loss");
  EXPECT_EQ(chart.series[0].x, (std::vector<double>{1, 2, 4}));
  EXPECT_EQ(chart.series[0].y, (std::vector<double>{9, 8, 6}));
  EXPECT_EQ(chart.series[1].name, "dev loss");
  EXPECT_EQ(chart.series[1].x, (std::vector<double>{2}));
  EXPECT_TRUE(chart.series[1].markers);
  EXPECT_EQ(chart.x_label, "step");
}

ProgressInfo at(int64_t step, double elapsed) {
  ProgressInfo p;
  p.step = step;
  p.max_steps = 1000;
  p.epoch = 2;
  p.loss = 3.14159;
  p.lr = 7e-4;
  p.tokens_per_s = 25300;
  p.elapsed_s = elapsed;
  return p;
}

TEST(ProgressDisplay, PlainLinesAtAnInterval) {
  std::ostringstream out;
  ProgressOptions options;
  options.terminal = false;
  options.log_interval_s = 30;
  ProgressDisplay progress(out, options);
  for (auto [step, t] : std::vector<std::pair<int, double>>{{0, 0}, {10, 10}, {20, 20}, {31, 31}, {45, 45}, {62, 62}, {70, 70}})
    progress.update(at(step, t));
  progress.finish();
  const std::string text = out.str();
  EXPECT_FALSE(contains(text, "\r"));
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << text;  // step 0 (first), 31, 62 (interval), 70 (finish)
  EXPECT_TRUE(contains(lines[0], "step 0/1000")) << lines[0];
  EXPECT_TRUE(contains(lines[1], "step 31/1000")) << lines[1];
  EXPECT_TRUE(contains(lines[2], "step 62/1000")) << lines[2];
  EXPECT_TRUE(contains(lines[3], "step 70/1000")) << lines[3];
  EXPECT_TRUE(contains(lines[1], "epoch 2 | loss 3.1416 | lr 7.00e-04 | 25.3k tok/s | 31s | ETA ")) << lines[1];
}

TEST(ProgressDisplay, EtaFromTheRateSinceTheFirstUpdate) {
  // A resumed run starts at step 500: the rate is measured from there.
  ProgressInfo first = at(500, 100), later = at(600, 110);
  std::ostringstream out;
  ProgressDisplay progress(out, ProgressOptions{false, 1.0, 0.1, 100});
  progress.update(first);
  progress.update(later);
  // 100 steps in 10 s, 400 left → 40 s.
  EXPECT_TRUE(contains(out.str(), "step 600/1000 | epoch 2 | loss 3.1416 | lr 7.00e-04 | 25.3k tok/s | 1m50s | ETA 40s")) << out.str();
}

TEST(ProgressDisplay, TerminalRedrawsOneLine) {
  std::ostringstream out;
  ProgressOptions options;
  options.terminal = true;
  options.redraw_interval_s = 0.5;
  options.columns = 200;
  ProgressDisplay progress(out, options);
  progress.update(at(0, 0.0));
  progress.update(at(1, 0.1));  // too soon: not drawn
  progress.update(at(500, 0.6));
  EXPECT_EQ(out.str().find('\n'), std::string::npos) << "the progress line must stay on one line";
  EXPECT_TRUE(contains(out.str(), "\r\x1b[K[----------"));
  EXPECT_TRUE(contains(out.str(), "\r\x1b[K[##########----------] step 500/1000"));
  EXPECT_FALSE(contains(out.str(), "step 1/1000"));
  progress.print_line("valid loss 2.5");
  // The message replaces the progress line, which is drawn again below it.
  EXPECT_TRUE(contains(out.str(), "\r\x1b[Kvalid loss 2.5\n\r\x1b[K[##########"));
  progress.update(at(1000, 0.7));  // the last step is always drawn
  progress.finish();
  EXPECT_TRUE(contains(out.str(), "[####################] step 1000/1000"));
  EXPECT_EQ(out.str().back(), '\n');
}

TEST(ProgressDisplay, TerminalLineIsCutToTheWidth) {
  std::ostringstream out;
  ProgressDisplay progress(out, ProgressOptions{true, 30, 0.1, 40});
  progress.update(at(10, 1));
  const std::string text = out.str();
  ASSERT_EQ(text.rfind("\r\x1b[K", 0), 0u);
  EXPECT_EQ(text.size() - 4, 39u);
}

TEST(ProgressDisplay, UnknownTotalHasNoBarOrEta) {
  std::ostringstream out;
  ProgressDisplay progress(out, ProgressOptions{true, 30, 0.1, 200});
  ProgressInfo p = at(10, 1);
  p.max_steps = 0;
  progress.update(p);
  EXPECT_FALSE(contains(out.str(), "[-")) << "no bar";
  EXPECT_FALSE(contains(out.str(), "[#")) << "no bar";
  EXPECT_FALSE(contains(out.str(), "ETA"));
  EXPECT_TRUE(contains(out.str(), "step 10 | epoch 2"));
}

TEST(FormatDuration, Units) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(725), "12m05s");
  EXPECT_EQ(format_duration(3 * 3600 + 7 * 60 + 20), "3h07m");
  EXPECT_EQ(format_duration(-1), "--");
  EXPECT_EQ(format_duration(NAN), "--");
}

}  // namespace
}  // namespace attnlab::train
