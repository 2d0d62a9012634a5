#include "train/run_log.h"

#include "ir/protobuf_log.h"
#include "train/checkpoint.h"  // write_file_atomically

#include "attnlab/tensorboard/event.pb.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
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

// Writes all of `bytes` at the end of `fd` (opened O_APPEND) with one write(2) where the kernel
// takes it whole, so a record or line lands in one piece.
void append_whole(int fd, std::string_view bytes, const fs::path& file) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw RunLogError("cannot write to " + file.string() + ": " + std::strerror(errno));
    done += size_t(n);
  }
}

// The events a resumed run writes again at its resume step: the end-of-run evaluation.
bool is_end_of_run_event(std::string_view event) { return event == "test" || event == "test_average"; }

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
  append_whole(fd_, text, file_);  // one write per line: O_APPEND makes it land whole at the end
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
      if (at > double(step) || (at == double(step) && is_end_of_run_event(event))) continue;
    }
    kept += line;
  }
  write_file_atomically(file, kept);
}

// ---- TensorBoard event files ---------------------------------------------------------------------

namespace {

constexpr std::array<uint32_t, 256> kCrc32cTable = [] {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // Castagnoli, reflected
    table[i] = c;
  }
  return table;
}();

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

uint64_t get_le(std::string_view in, size_t at, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t(static_cast<unsigned char>(in[at + size_t(i)])) << (8 * i);
  return value;
}

std::string tfrecord(std::string_view payload) {
  std::string length;
  put_le(length, payload.size(), 8);
  std::string record = length;
  put_le(record, masked_crc32c(length), 4);
  record.append(payload);
  put_le(record, masked_crc32c(payload), 4);
  return record;
}

// The payloads of the TFRecords in `bytes`. An incomplete last record is left out; a record whose
// length or data fails its CRC ends the scan and, unless `damage_ends_file`, is a RunLogError.
std::vector<std::string> tfrecord_payloads(std::string_view bytes, const fs::path& file, bool damage_ends_file) {
  std::vector<std::string> out;
  size_t at = 0;
  while (bytes.size() - at >= 12) {
    const uint64_t length = get_le(bytes, at, 8);
    if (get_le(bytes, at + 8, 4) != masked_crc32c(bytes.substr(at, 8))) {
      if (damage_ends_file) break;
      throw RunLogError(file.string() + ": byte " + std::to_string(at) + ": record length fails its CRC32C");
    }
    if (bytes.size() - at - 12 < length + 4) break;  // written by a killed run
    const std::string_view payload = bytes.substr(at + 12, length);
    if (get_le(bytes, at + 12 + length, 4) != masked_crc32c(payload)) {
      if (damage_ends_file) break;
      throw RunLogError(file.string() + ": byte " + std::to_string(at) + ": record data fails its CRC32C");
    }
    out.emplace_back(payload);
    at += 12 + length + 4;
  }
  return out;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || !name[0]) return "localhost";
  return name;
}

double wall_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t masked_crc32c(std::string_view bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (const char ch : bytes) c = kCrc32cTable[(c ^ static_cast<unsigned char>(ch)) & 0xFF] ^ (c >> 8);
  c ^= 0xFFFFFFFFu;
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

EventLog::EventLog(const fs::path& run_dir) {
  // Unique within the directory: a second writer in the same second (a resume) gets its own file.
  static std::atomic<int> counter{0};
  const auto seconds = static_cast<long long>(wall_time_now());
  file_ = run_dir / ("events.out.tfevents." + std::to_string(seconds) + "." + host_name() + "." + std::to_string(::getpid()) + "." +
                     std::to_string(counter++));
  fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RunLogError("cannot create " + file_.string() + ": " + std::strerror(errno));
  tensorboard::Event version;
  version.set_wall_time(wall_time_now());
  version.set_file_version("brain.Event:2");
  append_whole(fd_, tfrecord(version.SerializeAsString()), file_);
}

EventLog::~EventLog() {
  if (fd_ >= 0) ::close(fd_);
}

void EventLog::append(const std::string& event, const json& fields) {
  if (!fields.is_object() || !fields.contains("step") || !fields["step"].is_number())
    throw RunLogError("event '" + event + "': fields must be a JSON object with a numeric step");
  tensorboard::Event e;
  e.set_wall_time(wall_time_now());
  e.set_step(fields["step"].get<int64_t>());
  tensorboard::Summary* summary = e.mutable_summary();
  for (const auto& [key, value] : fields.items()) {
    if (key == "step" || !value.is_number() || !std::isfinite(value.get<double>())) continue;
    tensorboard::Summary::Value* v = summary->add_value();
    v->set_tag(event + "/" + key);
    v->set_simple_value(static_cast<float>(value.get<double>()));
  }
  append_whole(fd_, tfrecord(e.SerializeAsString()), file_);
}

std::vector<fs::path> event_files(const fs::path& run_dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(run_dir, ec))
    if (entry.is_regular_file() && entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<EventScalar> read_events(const fs::path& file) {
  std::vector<EventScalar> out;
  for (const std::string& payload : tfrecord_payloads(slurp(file), file, false)) {
    tensorboard::Event e;
    const ir::ProtobufLogCapture log;
    if (!e.ParseFromString(payload))
      throw RunLogError(file.string() + ": a record that is not an Event" + (log.reason().empty() ? "" : " (" + log.reason() + ")"));
    for (const auto& v : e.summary().value()) out.push_back({e.step(), e.wall_time(), v.tag(), v.simple_value()});
  }
  return out;
}

void truncate_events_after(const fs::path& run_dir, int64_t step) {
  for (const fs::path& file : event_files(run_dir)) {
    const std::string bytes = slurp(file);
    std::string kept;
    for (const std::string& payload : tfrecord_payloads(bytes, file, true)) {
      tensorboard::Event e;
      const ir::ProtobufLogCapture log;  // an unparsable record ends what is kept; protobuf need not print why
      if (!e.ParseFromString(payload)) break;
      if (e.has_summary() && !e.summary().value().empty()) {
        const std::string& tag = e.summary().value(0).tag();
        const std::string event = tag.substr(0, tag.find('/'));
        if (e.step() > step || (e.step() == step && is_end_of_run_event(event))) continue;
      }
      kept += tfrecord(payload);
    }
    if (kept != bytes) write_file_atomically(file, kept);
  }
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
