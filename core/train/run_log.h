// core/train/run_log.h — what a run writes while it trains: metrics.jsonl, TensorBoard event
// files, the progress display, and the learning curve drawn from the metrics.
//
// Contract:
// - metrics.jsonl holds one JSON object per line, one line per event. Every object has "event"
//   ("train", "valid", "test", or another word the caller chooses) first, then the caller's fields
//   (step, epoch, loss, lr, tokens_per_s, elapsed_s, ...). Each line is written with a single
//   write(2) and flushed, so a kill leaves at most one incomplete last line; opening the log
//   again removes such a line before appending, and read_metrics() ignores it.
// - Non-finite numbers are written as null (JSON has no NaN).
// - truncate_metrics_after(file, step) drops the events of steps after `step` (used on resume, so
//   the log does not repeat the steps that are trained again).
// - EventLog writes the same events as TensorBoard scalars: a new file
//   `events.out.tfevents.SECONDS.HOST.PID.N` in the run directory per EventLog, starting with the
//   "brain.Event:2" file-version event, then one Event per metrics event: its step, the wall
//   time, and a Summary with one simple_value per numeric field except "step", tagged
//   "EVENT/FIELD" ("train/loss", "valid/bleu", "test/ppl"). Messages: core/proto/attnlab/
//   tensorboard/event.proto (TensorFlow's field numbers). Each record is TFRecord-framed —
//   uint64 length, uint32 masked CRC32C of the length, the bytes, uint32 masked CRC32C of the
//   bytes, little-endian; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 — and written with a
//   single write(2).
// - truncate_events_after(dir, step) does for every event file in `dir` what
//   truncate_metrics_after does for metrics.jsonl (same rule for "test"/"test_average"), and drops
//   an incomplete or damaged tail a kill left; files are rewritten atomically. A resumed run calls
//   it, then opens a new EventLog: TensorBoard reads the files in name order and sees each step
//   once.
// - read_events(file) returns the events of a file (records with a bad length or CRC are a
//   RunLogError naming the file and the byte offset; an incomplete last record is ignored).
// - ProgressDisplay: on a terminal, a single line redrawn in place (carriage return, erase to end
//   of line) at most every redraw_interval_s, with a bar when the total is known, step, epoch,
//   loss, lr, tokens/s, elapsed time and ETA; print_line() puts a message above it. Elsewhere (a
//   log file, CI), one plain line per log_interval_s of training time, plus the first and last
//   update. Times come from ProgressInfo::elapsed_s, so the display is deterministic to test.
#pragma once

#include "train/svg_chart.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::train {

struct RunLogError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class MetricsLog {
 public:
  // Opens (creating if needed) `file` for appending.
  explicit MetricsLog(std::filesystem::path file);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Writes {"event": event, ...fields} as one line. `fields` must be a JSON object.
  void append(const std::string& event, const nlohmann::json& fields);
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  int fd_ = -1;
};

// TensorBoard's view of the run (see the contract above).
class EventLog {
 public:
  // Creates a new event file in `run_dir` and writes its file-version event.
  explicit EventLog(const std::filesystem::path& run_dir);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // One Event with a scalar per numeric field of `fields` except "step" (a JSON object with a
  // numeric "step"; non-finite values are left out, as in metrics.jsonl).
  void append(const std::string& event, const nlohmann::json& fields);
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  int fd_ = -1;
};

// One scalar of an event file.
struct EventScalar {
  int64_t step = 0;
  double wall_time = 0;
  std::string tag;
  float value = 0;
};
std::vector<EventScalar> read_events(const std::filesystem::path& file);
// The event files of a run directory, in name order (the order TensorBoard reads them).
std::vector<std::filesystem::path> event_files(const std::filesystem::path& run_dir);
void truncate_events_after(const std::filesystem::path& run_dir, int64_t step);
// TFRecord's checksum: CRC32C (Castagnoli), masked.
uint32_t masked_crc32c(std::string_view bytes);

// All complete events of a metrics file, in order. A line that is not a JSON object is a
// RunLogError "FILE:LINE: ..."; an incomplete last line (no newline) is skipped.
std::vector<nlohmann::json> read_metrics(const std::filesystem::path& file);

// Rewrites `file` (atomically) without the events whose "step" is greater than `step`, nor the
// end-of-run events ("test", "test_average") at `step`, which a resumed run writes again (so that
// resuming a finished run does not repeat them).
void truncate_metrics_after(const std::filesystem::path& file, int64_t step);

// Train loss against step (every "train" event with a loss), and dev loss (every "valid" event
// with a loss, with markers), ready for render_svg().
LineChart learning_curve(const std::vector<nlohmann::json>& events, const std::string& title = "Learning curve");

// ---- Progress display ----------------------------------------------------------------------------

struct ProgressInfo {
  int64_t step = 0;
  int64_t max_steps = 0;  // 0: unknown (no bar, no ETA)
  int64_t epoch = 0;
  double loss = 0.0;
  double lr = 0.0;
  double tokens_per_s = 0.0;
  double elapsed_s = 0.0;  // training time since the run (or the resumed run) started
};

struct ProgressOptions {
  bool terminal = false;           // redraw one line in place
  double log_interval_s = 30.0;    // not a terminal: seconds between log lines
  double redraw_interval_s = 0.1;  // terminal: seconds between redraws
  int columns = 100;               // terminal width; the line is cut to fit
};

// Options for stderr: terminal when stderr is a tty, with its width.
ProgressOptions progress_options_for_stderr(double log_interval_s = 30.0);

class ProgressDisplay {
 public:
  ProgressDisplay(std::ostream& out, ProgressOptions options);

  void update(const ProgressInfo& info);
  // A message on its own line; on a terminal the progress line is cleared first and redrawn after.
  void print_line(const std::string& line);
  // Ends the progress line (terminal) or prints the last state (log) if it was not shown yet.
  void finish();

  // The text of one progress line, without the bar (exposed for tests).
  static std::string describe(const ProgressInfo& info, double eta_s);

 private:
  double eta(const ProgressInfo& info) const;
  void draw(const ProgressInfo& info);

  std::ostream& out_;
  ProgressOptions options_;
  bool have_first_ = false;
  ProgressInfo first_{};
  ProgressInfo last_{};
  bool last_shown_ = true;
  double last_output_s_ = -1e300;
  bool line_open_ = false;  // terminal: a progress line is on screen without a newline
};

// "45s", "12m05s", "3h07m".
std::string format_duration(double seconds);

}  // namespace attnlab::train
