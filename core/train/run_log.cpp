#include "train/run_log.h"

#include "train/checkpoint.h"  // write_file_atomically

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace attnlab::train {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// JSON has no NaN or infinity; nlohmann writes them as null, but only when asked to dump, so the
// replacement is explicit here to make it independent of the library's defaults.
void replace_non_finite(json& j) {
  if (j.is_number_float()) {
    if (!std::isfinite(j.get<double>())) j = nullptr;
  } else if (j.is_structured()) {
    for (auto& item : j) replace_non_finite(item);
  }
}

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw RunLogError("cannot read " + file.string() + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

MetricsLog::MetricsLog(fs::path file) : file_(std::move(file)) {
  fd_ = ::open(file_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RunLogError("cannot open " + file_.string() + " for appending: " + std::strerror(errno));
  // Drop an incomplete last line left by a killed run, so the next event starts on its own line.
  // Only the tail is read, backwards, until the last newline.
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw RunLogError("cannot stat " + file_.string() + ": " + std::strerror(errno));
  off_t end = st.st_size;
  char last = '\n';
  if (end > 0 && ::pread(fd_, &last, 1, end - 1) != 1)
    throw RunLogError("cannot read " + file_.string() + ": " + std::strerror(errno));
  if (last != '\n') {
    off_t keep = 0;
    char chunk[4096];
    for (off_t pos = end; pos > 0 && keep == 0;) {
      const off_t start = std::max<off_t>(0, pos - off_t(sizeof chunk));
      const ssize_t n = ::pread(fd_, chunk, size_t(pos - start), start);
      if (n != pos - start) throw RunLogError("cannot read " + file_.string() + ": " + std::strerror(errno));
      for (ssize_t i = n - 1; i >= 0; --i)
        if (chunk[i] == '\n') {
          keep = start + i + 1;
          break;
        }
      pos = start;
    }
    if (::ftruncate(fd_, keep) != 0)
      throw RunLogError("cannot repair the incomplete last line of " + file_.string() + ": " + std::strerror(errno));
  }
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::append(const std::string& event, const json& fields) {
  if (!fields.is_object()) throw RunLogError("metrics event '" + event + "': fields must be a JSON object");
  json line = json::object();
  line["event"] = event;
  for (auto it = fields.begin(); it != fields.end(); ++it)
    if (it.key() != "event") line[it.key()] = it.value();
  replace_non_finite(line);
  // nlohmann's object is ordered by key; "event" is put first by writing it separately.
  json rest = line;
  rest.erase("event");
  std::string text = "{\"event\":" + json(event).dump();
  const std::string tail = rest.dump(-1, ' ', false, json::error_handler_t::replace);
  if (tail.size() > 2) text += "," + tail.substr(1, tail.size() - 1);
  else text += "}";
  text += '\n';
  // One write per line: O_APPEND makes it land whole at the end.
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw RunLogError("cannot write to " + file_.string() + ": " + std::strerror(errno));
    done += size_t(n);
  }
}

std::vector<json> read_metrics(const fs::path& file) {
  const std::string text = slurp(file);
  std::vector<json> events;
  size_t start = 0;
  int line_no = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    ++line_no;
    if (end == std::string::npos) break;  // incomplete last line: the writer was killed mid-line
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      throw RunLogError(file.string() + ":" + std::to_string(line_no) + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw RunLogError(file.string() + ":" + std::to_string(line_no) + ": expected a JSON object");
    events.push_back(std::move(j));
  }
  return events;
}

void truncate_metrics_after(const fs::path& file, int64_t step) {
  if (!fs::exists(file)) return;
  const std::string text = slurp(file);
  std::string kept;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    if (end == std::string::npos) break;
    const std::string line = text.substr(start, end + 1 - start);
    start = end + 1;
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("step") && j["step"].is_number()) {
      const double at = j["step"].get<double>();
      const std::string event = j.contains("event") && j["event"].is_string() ? j["event"].get<std::string>() : "";
      // The end-of-run evaluation is done again by a resumed run: its events at `step` go too.
      if (at > double(step) || (at == double(step) && (event == "test" || event == "test_average"))) continue;
    }
    kept += line;
  }
  write_file_atomically(file, kept);
}

LineChart learning_curve(const std::vector<json>& events, const std::string& title) {
  LineSeries train{"train loss", {}, {}, "", false, false};
  LineSeries valid{"dev loss", {}, {}, "", false, true};
  for (const json& e : events) {
    if (!e.contains("event") || !e.contains("step") || !e.contains("loss")) continue;
    if (!e["step"].is_number() || !e["loss"].is_number()) continue;
    const std::string kind = e["event"].is_string() ? e["event"].get<std::string>() : "";
    LineSeries* s = kind == "train" ? &train : kind == "valid" ? &valid : nullptr;
    if (!s) continue;
    s->x.push_back(e["step"].get<double>());
    s->y.push_back(e["loss"].get<double>());
  }
  LineChart chart;
  chart.title = title;
  chart.x_label = "step";
  chart.y_label = "loss (nats per token)";
  chart.series = {std::move(train), std::move(valid)};
  return chart;
}

// ---- Progress display ----------------------------------------------------------------------------

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const long long s = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  return buf;
}

ProgressOptions progress_options_for_stderr(double log_interval_s) {
  ProgressOptions o;
  o.log_interval_s = log_interval_s;
  o.terminal = ::isatty(STDERR_FILENO) == 1;
  if (o.terminal) {
    struct winsize ws {};
    if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) o.columns = ws.ws_col;
  }
  return o;
}

ProgressDisplay::ProgressDisplay(std::ostream& out, ProgressOptions options) : out_(out), options_(options) {}

std::string ProgressDisplay::describe(const ProgressInfo& info, double eta_s) {
  char buf[256];
  std::string step = "step " + std::to_string(info.step);
  if (info.max_steps > 0) step += "/" + std::to_string(info.max_steps);
  const double tps = info.tokens_per_s;
  char tokens[32];
  if (tps >= 1e4) std::snprintf(tokens, sizeof tokens, "%.1fk", tps / 1e3);
  else std::snprintf(tokens, sizeof tokens, "%.0f", tps);
  std::snprintf(buf, sizeof buf, "%s | epoch %lld | loss %.4f | lr %.2e | %s tok/s | %s", step.c_str(),
                static_cast<long long>(info.epoch), info.loss, info.lr, tokens, format_duration(info.elapsed_s).c_str());
  std::string text = buf;
  if (info.max_steps > 0) text += " | ETA " + format_duration(eta_s);
  return text;
}

double ProgressDisplay::eta(const ProgressInfo& info) const {
  if (info.max_steps <= 0 || !have_first_) return -1;
  const double steps_done = double(info.step - first_.step);
  const double time = info.elapsed_s - first_.elapsed_s;
  if (steps_done <= 0 || time <= 0) return -1;
  return double(std::max<int64_t>(0, info.max_steps - info.step)) * time / steps_done;
}

void ProgressDisplay::draw(const ProgressInfo& info) {
  std::string text = describe(info, eta(info));
  if (options_.terminal) {
    if (info.max_steps > 0) {
      constexpr int kBar = 20;
      const double frac = std::clamp(double(info.step) / double(info.max_steps), 0.0, 1.0);
      const int filled = int(frac * kBar);
      text = "[" + std::string(size_t(filled), '#') + std::string(size_t(kBar - filled), '-') + "] " + text;
    }
    if (options_.columns > 1 && int(text.size()) > options_.columns - 1) text.resize(size_t(options_.columns - 1));
    out_ << "\r\x1b[K" << text << std::flush;
    line_open_ = true;
  } else {
    out_ << text << '\n' << std::flush;
  }
  last_output_s_ = info.elapsed_s;
  last_shown_ = true;
}

void ProgressDisplay::update(const ProgressInfo& info) {
  const bool first = !have_first_;
  if (first) {
    have_first_ = true;
    first_ = info;
  }
  last_ = info;
  last_shown_ = false;
  const double interval = options_.terminal ? options_.redraw_interval_s : options_.log_interval_s;
  const bool done = info.max_steps > 0 && info.step >= info.max_steps;
  if (first || done || info.elapsed_s - last_output_s_ >= interval) draw(info);
}

void ProgressDisplay::print_line(const std::string& line) {
  if (options_.terminal && line_open_) {
    out_ << "\r\x1b[K" << line << '\n';
    line_open_ = false;
    if (have_first_) draw(last_);
    else out_ << std::flush;
  } else {
    out_ << line << '\n' << std::flush;
  }
}

void ProgressDisplay::finish() {
  if (have_first_ && !last_shown_) draw(last_);
  if (options_.terminal && line_open_) {
    out_ << '\n' << std::flush;
    line_open_ = false;
  }
}

}  // namespace attnlab::train
