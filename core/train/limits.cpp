// core/train/limits.cpp — see limits.h.
#include "train/limits.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

namespace attnlab::train {

namespace {

std::string format_real(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

int hardware_cores() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace

IntLimit threads_limit() { return {"threads", 0, int64_t{kThreadsPerCore} * hardware_cores()}; }

bool in_range(const IntLimit& limit, int64_t v) { return v >= limit.min && v <= limit.max; }
bool in_range(const RealLimit& limit, double v) { return v >= limit.min && v <= limit.max; }

// Messages are built with streams: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
std::string describe(const IntLimit& limit) {
  std::ostringstream s;
  s << "[" << limit.min << ", " << limit.max << "]";
  if (std::strcmp(limit.name, "threads") == 0)
    s << " (" << kThreadsPerCore << " × the " << hardware_cores() << " cores; 0 uses every core)";
  return s.str();
}

std::string describe(const RealLimit& limit) {
  std::ostringstream s;
  s << "[" << format_real(limit.min) << ", " << format_real(limit.max) << "]";
  return s.str();
}

std::string check_integer_text(const IntLimit& limit, std::string_view text) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  const bool whole = !digits.empty() && ec != std::errc::invalid_argument && end == digits.data() + digits.size();
  std::ostringstream s;
  if (!whole) s << "must be a whole number in " << describe(limit) << ", got '" << text << "'";
  else if (ec == std::errc::result_out_of_range || !in_range(limit, v)) s << "must be in " << describe(limit) << ", got " << text;
  return s.str();
}

std::string check_real_text(const RealLimit& limit, std::string_view text) {
  const std::string t(text);
  char* end = nullptr;
  const double v = t.empty() ? 0 : std::strtod(t.c_str(), &end);
  std::ostringstream s;
  if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(v)) s << "must be a number in " << describe(limit) << ", got '" << t << "'";
  else if (!in_range(limit, v)) s << "must be in " << describe(limit) << ", got " << t;
  return s.str();
}

}  // namespace attnlab::train
