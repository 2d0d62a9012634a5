#include "train/svg_chart.h"

#include "train/checkpoint.h"  // write_file_atomically

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <sstream>

namespace attnlab::train {
namespace {

// Colour-blind-friendly palette (Okabe & Ito), then a few more distinct hues.
const char* const kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
                                "#56B4E9", "#F0E442", "#000000", "#7F7F7F", "#8C564B"};
constexpr int kPaletteSize = sizeof kPalette / sizeof kPalette[0];

std::string colour(const std::string& given, int index) { return given.empty() ? kPalette[index % kPaletteSize] : given; }

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

void check_size(int width, int height, const std::string& title) {
  if (width < 200 || height < 150)
    throw ChartError("chart '" + title + "': size " + std::to_string(width) + "x" + std::to_string(height) +
                     " is below the minimum 200x150");
}

struct Frame {
  double left, top, right, bottom;  // the plot area in pixels
  double w() const { return right - left; }
  double h() const { return bottom - top; }
};

void open_document(std::ostringstream& out, int width, int height, const std::string& title) {
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << ' ' << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<title>" << xml_escape(title) << "</title>\n"
      << "<rect x=\"0\" y=\"0\" width=\"" << width << "\" height=\"" << height << "\" fill=\"white\"/>\n";
  if (!title.empty())
    out << "<text x=\"" << num(width / 2.0) << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">"
        << xml_escape(title) << "</text>\n";
}

void axis_labels(std::ostringstream& out, const Frame& f, int height, const std::string& x_label, const std::string& y_label) {
  if (!x_label.empty())
    out << "<text class=\"x-label\" x=\"" << num((f.left + f.right) / 2) << "\" y=\"" << num(height - 10.0)
        << "\" text-anchor=\"middle\">" << xml_escape(x_label) << "</text>\n";
  if (!y_label.empty())
    out << "<text class=\"y-label\" x=\"16\" y=\"" << num((f.top + f.bottom) / 2) << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
        << num((f.top + f.bottom) / 2) << ")\">" << xml_escape(y_label) << "</text>\n";
}

// Horizontal grid lines and labels for the value axis.
void y_axis(std::ostringstream& out, const Frame& f, const AxisTicks& ticks, bool log_scale,
            const std::function<double(double)>& to_px) {
  const double step = ticks.ticks.size() > 1 ? ticks.ticks[1] - ticks.ticks[0] : 1.0;
  out << "<g class=\"y-axis\">\n";
  for (double t : ticks.ticks) {
    const double y = to_px(t);
    out << "<line x1=\"" << num(f.left) << "\" y1=\"" << num(y) << "\" x2=\"" << num(f.right) << "\" y2=\"" << num(y)
        << "\" stroke=\"#e0e0e0\"/>\n";
    out << "<line x1=\"" << num(f.left - 5) << "\" y1=\"" << num(y) << "\" x2=\"" << num(f.left) << "\" y2=\"" << num(y)
        << "\" stroke=\"black\"/>\n";
    out << "<text x=\"" << num(f.left - 8) << "\" y=\"" << num(y + 4) << "\" text-anchor=\"end\">"
        << xml_escape(log_scale ? format_tick(t, t) : format_tick(t, step)) << "</text>\n";
  }
  out << "<line x1=\"" << num(f.left) << "\" y1=\"" << num(f.top) << "\" x2=\"" << num(f.left) << "\" y2=\"" << num(f.bottom)
      << "\" stroke=\"black\"/>\n</g>\n";
}

struct LegendEntry {
  std::string name;
  std::string colour;
  bool dashed = false;
  double x = 0, y = 0;  // placed by layout_legend
};

// Lays the entries out in rows above the plot, wrapping at the chart's width, so that the legend
// never covers data. Returns the y just below the legend (the top of the plot area).
double layout_legend(std::vector<LegendEntry>& entries, int width, bool has_title) {
  const double row_h = 18, left = 72, right = double(width) - 20;
  double y = has_title ? 44 : 18;
  if (entries.empty()) return y - 4;
  double x = left;
  for (LegendEntry& e : entries) {
    const double w = 34 + 7.0 * double(std::min<size_t>(e.name.size(), 60)) + 14;
    if (x > left && x + w > right) {
      x = left;
      y += row_h;
    }
    e.x = x;
    e.y = y;
    x += w;
  }
  return y + 14;
}

void legend(std::ostringstream& out, const std::vector<LegendEntry>& entries) {
  if (entries.empty()) return;
  out << "<g class=\"legend\">\n";
  for (const LegendEntry& e : entries) {
    out << "<line x1=\"" << num(e.x) << "\" y1=\"" << num(e.y - 4) << "\" x2=\"" << num(e.x + 24) << "\" y2=\"" << num(e.y - 4)
        << "\" stroke=\"" << xml_escape(e.colour) << "\" stroke-width=\"3\"" << (e.dashed ? " stroke-dasharray=\"6 4\"" : "") << "/>\n";
    out << "<text x=\"" << num(e.x + 30) << "\" y=\"" << num(e.y) << "\">" << xml_escape(e.name) << "</text>\n";
  }
  out << "</g>\n";
}

void no_data(std::ostringstream& out, const Frame& f) {
  out << "<text class=\"no-data\" x=\"" << num((f.left + f.right) / 2) << "\" y=\"" << num((f.top + f.bottom) / 2)
      << "\" text-anchor=\"middle\" fill=\"#777777\">no data</text>\n";
}

}  // namespace

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters other than tab and newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') out += ' ';
        else out += c;
    }
  }
  return out;
}

AxisTicks linear_ticks(double lo, double hi, int target_count) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {  // a flat series: give it some room
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target_count);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double normalized = raw / magnitude;
  const double step = (normalized < 1.5 ? 1.0 : normalized < 3.0 ? 2.0 : normalized < 7.0 ? 5.0 : 10.0) * magnitude;
  AxisTicks axis;
  axis.lo = std::floor(lo / step + 1e-9) * step;
  axis.hi = std::ceil(hi / step - 1e-9) * step;
  for (double t = axis.lo; t <= axis.hi + step * 1e-6; t += step) axis.ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return axis;
}

AxisTicks log_ticks(double lo, double hi) {
  if (!(lo > 0) || !(hi > 0)) throw ChartError("log axis needs positive values");
  if (lo > hi) std::swap(lo, hi);
  int e_lo = int(std::floor(std::log10(lo) + 1e-9));
  int e_hi = int(std::ceil(std::log10(hi) - 1e-9));
  if (e_hi == e_lo) ++e_hi;
  AxisTicks axis;
  axis.lo = std::pow(10.0, e_lo);
  axis.hi = std::pow(10.0, e_hi);
  const bool few_decades = e_hi - e_lo <= 2;
  for (int e = e_lo; e <= e_hi; ++e) {
    const double base = std::pow(10.0, e);
    axis.ticks.push_back(base);
    if (few_decades && e < e_hi) {
      axis.ticks.push_back(2 * base);
      axis.ticks.push_back(5 * base);
    }
  }
  return axis;
}

std::string format_tick(double value, double step) {
  char buf[48];
  const double a = std::abs(value);
  step = std::abs(step);
  if (value == 0) return "0";
  if (a >= 1e6 || a < 1e-3 || (step > 0 && step < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.3g", value);
    return buf;
  }
  const int decimals = step >= 1 || step == 0 ? 0 : std::min(6, int(std::ceil(-std::log10(step) - 1e-9)));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

std::string render_svg(const LineChart& chart) {
  check_size(chart.width, chart.height, chart.title);
  double x_min = std::numeric_limits<double>::infinity(), x_max = -x_min, y_min = x_min, y_max = -x_min;
  for (const LineSeries& s : chart.series) {
    if (s.x.size() != s.y.size())
      throw ChartError("chart '" + chart.title + "': series '" + s.name + "' has " + std::to_string(s.x.size()) + " x values and " +
                       std::to_string(s.y.size()) + " y values");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (chart.log_y && s.y[i] <= 0)) continue;
      x_min = std::min(x_min, s.x[i]), x_max = std::max(x_max, s.x[i]);
      y_min = std::min(y_min, s.y[i]), y_max = std::max(y_max, s.y[i]);
    }
  }
  const bool empty = !std::isfinite(x_min);
  if (empty) x_min = 0, x_max = 1, y_min = chart.log_y ? 1 : 0, y_max = chart.log_y ? 10 : 1;

  std::ostringstream out;
  open_document(out, chart.width, chart.height, chart.title);
  std::vector<LegendEntry> entries;
  for (size_t si = 0; si < chart.series.size(); ++si)
    entries.push_back({chart.series[si].name, colour(chart.series[si].color, int(si)), chart.series[si].dashed});
  const double plot_top = layout_legend(entries, chart.width, !chart.title.empty());
  const Frame f{72, plot_top, double(chart.width) - 20, double(chart.height) - 52};
  const AxisTicks xt = linear_ticks(x_min, x_max, 7);
  const AxisTicks yt = chart.log_y ? log_ticks(y_min, y_max) : linear_ticks(y_min, y_max, 6);
  auto px = [&](double x) { return f.left + (x - xt.lo) / (xt.hi - xt.lo) * f.w(); };
  std::function<double(double)> py = [&](double y) {
    if (chart.log_y) return f.bottom - (std::log10(y) - std::log10(yt.lo)) / (std::log10(yt.hi) - std::log10(yt.lo)) * f.h();
    return f.bottom - (y - yt.lo) / (yt.hi - yt.lo) * f.h();
  };

  y_axis(out, f, yt, chart.log_y, py);
  const double x_step = xt.ticks.size() > 1 ? xt.ticks[1] - xt.ticks[0] : 1.0;
  out << "<g class=\"x-axis\">\n";
  for (double t : xt.ticks) {
    const double x = px(t);
    out << "<line x1=\"" << num(x) << "\" y1=\"" << num(f.bottom) << "\" x2=\"" << num(x) << "\" y2=\"" << num(f.bottom + 5)
        << "\" stroke=\"black\"/>\n";
    out << "<text x=\"" << num(x) << "\" y=\"" << num(f.bottom + 19) << "\" text-anchor=\"middle\">" << xml_escape(format_tick(t, x_step))
        << "</text>\n";
  }
  out << "<line x1=\"" << num(f.left) << "\" y1=\"" << num(f.bottom) << "\" x2=\"" << num(f.right) << "\" y2=\"" << num(f.bottom)
      << "\" stroke=\"black\"/>\n</g>\n";
  axis_labels(out, f, chart.height, chart.x_label, chart.y_label);

  for (size_t si = 0; si < chart.series.size(); ++si) {
    const LineSeries& s = chart.series[si];
    const std::string c = entries[si].colour;
    out << "<g class=\"series\" data-name=\"" << xml_escape(s.name) << "\" stroke=\"" << xml_escape(c) << "\" fill=\"none\">\n";
    // Split into pieces at points that cannot be drawn.
    std::vector<std::vector<std::pair<double, double>>> pieces(1);
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (chart.log_y && s.y[i] <= 0)) {
        if (!pieces.back().empty()) pieces.emplace_back();
        continue;
      }
      pieces.back().emplace_back(px(s.x[i]), py(s.y[i]));
    }
    for (const auto& piece : pieces) {
      if (piece.size() >= 2) {
        out << "<polyline stroke-width=\"2\"" << (s.dashed ? " stroke-dasharray=\"6 4\"" : "") << " points=\"";
        for (size_t i = 0; i < piece.size(); ++i) out << (i ? " " : "") << num(piece[i].first) << ',' << num(piece[i].second);
        out << "\"/>\n";
      }
      if (s.markers || piece.size() == 1)
        for (const auto& [x, y] : piece)
          out << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"3\" fill=\"" << xml_escape(c) << "\"/>\n";
    }
    out << "</g>\n";
  }
  if (empty) no_data(out, f);
  legend(out, entries);
  out << "</svg>\n";
  return out.str();
}

std::string render_svg(const BarChart& chart) {
  check_size(chart.width, chart.height, chart.title);
  double lo = 0, hi = 0;
  bool any = false;
  for (const BarSeries& s : chart.series) {
    if (s.values.size() != chart.categories.size())
      throw ChartError("chart '" + chart.title + "': bar series '" + s.name + "' has " + std::to_string(s.values.size()) +
                       " values for " + std::to_string(chart.categories.size()) + " categories");
    for (double v : s.values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v), any = true;
  }
  if (!any) hi = 1;
  std::ostringstream out;
  open_document(out, chart.width, chart.height, chart.title);
  size_t longest = 0;
  for (const std::string& c : chart.categories) longest = std::max(longest, c.size());
  const double n_cat = double(std::max<size_t>(1, chart.categories.size()));
  const double plot_w = double(chart.width) - 72 - 20;
  const bool rotate = 7.0 * double(longest) > plot_w / n_cat;  // labels that would overlap are slanted
  const double bottom_room = rotate ? std::min(120.0, 20 + 5.0 * double(longest)) : 52;
  std::vector<LegendEntry> entries;
  if (chart.series.size() > 1)  // one series needs no legend: the y label names it
    for (size_t si = 0; si < chart.series.size(); ++si) entries.push_back({chart.series[si].name, colour(chart.series[si].color, int(si))});
  const double plot_top = layout_legend(entries, chart.width, !chart.title.empty());
  const Frame f{72, plot_top, double(chart.width) - 20, double(chart.height) - bottom_room};
  const AxisTicks yt = linear_ticks(lo, hi, 6);
  std::function<double(double)> py = [&](double y) { return f.bottom - (y - yt.lo) / (yt.hi - yt.lo) * f.h(); };
  y_axis(out, f, yt, false, py);

  const double group_w = f.w() / n_cat;
  const double n_series = double(std::max<size_t>(1, chart.series.size()));
  const double bar_w = group_w * 0.8 / n_series;
  out << "<g class=\"x-axis\">\n<line x1=\"" << num(f.left) << "\" y1=\"" << num(py(0)) << "\" x2=\"" << num(f.right) << "\" y2=\""
      << num(py(0)) << "\" stroke=\"black\"/>\n";
  for (size_t ci = 0; ci < chart.categories.size(); ++ci) {
    const double cx = f.left + group_w * (double(ci) + 0.5);
    const double ly = f.bottom + 18;
    out << "<text x=\"" << num(cx) << "\" y=\"" << num(ly) << "\"";
    if (rotate) out << " text-anchor=\"end\" transform=\"rotate(-35 " << num(cx) << ' ' << num(ly) << ")\"";
    else out << " text-anchor=\"middle\"";
    out << '>' << xml_escape(chart.categories[ci]) << "</text>\n";
  }
  out << "</g>\n";
  axis_labels(out, Frame{f.left, f.top, f.right, f.bottom}, chart.height, chart.x_label, chart.y_label);

  for (size_t si = 0; si < chart.series.size(); ++si) {
    const BarSeries& s = chart.series[si];
    const std::string c = colour(s.color, int(si));
    out << "<g class=\"series\" data-name=\"" << xml_escape(s.name) << "\" fill=\"" << xml_escape(c) << "\">\n";
    for (size_t ci = 0; ci < s.values.size(); ++ci) {
      const double v = s.values[ci];
      if (!std::isfinite(v)) continue;
      const double x = f.left + group_w * double(ci) + group_w * 0.1 + bar_w * double(si);
      const double y0 = py(0), y1 = py(v);
      out << "<rect x=\"" << num(x) << "\" y=\"" << num(std::min(y0, y1)) << "\" width=\"" << num(bar_w * 0.95) << "\" height=\""
          << num(std::abs(y1 - y0)) << "\"><title>" << xml_escape(chart.categories[ci] + " " + s.name + ": " + format_tick(v, 0.001))
          << "</title></rect>\n";
      char label[32];
      std::snprintf(label, sizeof label, "%.3g", v);
      out << "<text x=\"" << num(x + bar_w * 0.475) << "\" y=\"" << num(v >= 0 ? y1 - 4 : y1 + 13)
          << "\" text-anchor=\"middle\" font-size=\"10\" fill=\"black\">" << label << "</text>\n";
    }
    out << "</g>\n";
  }
  if (!any) no_data(out, f);
  legend(out, entries);
  out << "</svg>\n";
  return out.str();
}

void write_svg(const std::filesystem::path& file, const std::string& svg) {
  try {
    write_file_atomically(file, svg);
  } catch (const CheckpointError& e) {
    throw ChartError(e.what());
  }
}

}  // namespace attnlab::train
