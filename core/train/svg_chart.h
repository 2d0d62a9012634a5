// core/train/svg_chart.h — small self-contained SVG charts: line charts (learning curves, several
// overlaid series) and grouped bar charts (a metric per variant).
//
// Contract:
// - render_svg() returns a complete, well-formed SVG 1.1 document (XML declaration, one <svg>
//   root) with no external references: no fonts, scripts, stylesheets or images to fetch.
// - Axes carry "nice" ticks (1, 2 or 5 × 10^k steps; powers of ten on a log axis), tick labels,
//   axis labels, a title and a legend naming every series (in rows above the plot, so it never
//   covers data; a bar chart with one series has none). Text is XML-escaped.
// - Each line series is one <g class="series" data-name="NAME"> group holding <polyline> pieces
//   (a non-finite point breaks the line; on a log axis, so does a value ≤ 0) and, when `markers`
//   is set or a piece is a single point, <circle> markers.
// - Each bar series is one <g class="series" data-name="NAME"> group with one <rect> per category
//   (a non-finite value draws no bar). Bars start at zero; the value axis always includes zero.
// - Empty charts (no series or no finite points) render axes and a "no data" note.
// - Invalid input is a ChartError naming the series: x and y of different lengths, a bar series
//   whose value count differs from the category count, a width or height below 200×150.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::train {

struct ChartError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct LineSeries {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;
  std::string color;     // CSS colour; empty: the next colour of the palette
  bool dashed = false;
  bool markers = false;  // a circle at every point (for sparse series such as dev loss)
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<LineSeries> series;
  bool log_y = false;
  int width = 760;
  int height = 460;
};

struct BarSeries {
  std::string name;
  std::vector<double> values;  // one per category
  std::string color;           // empty: palette
};

struct BarChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<std::string> categories;  // e.g. the variants of an ablation
  std::vector<BarSeries> series;        // e.g. one metric, or dev and test BLEU side by side
  int width = 760;
  int height = 460;
};

std::string render_svg(const LineChart& chart);
std::string render_svg(const BarChart& chart);

// Writes `svg` to `file` (via a temporary file and rename, so a reader never sees half a chart).
void write_svg(const std::filesystem::path& file, const std::string& svg);

// Axis helpers, exposed for tests.
struct AxisTicks {
  double lo = 0;  // the axis range, widened to whole ticks
  double hi = 1;
  std::vector<double> ticks;
};
AxisTicks linear_ticks(double min_value, double max_value, int target_count = 6);
AxisTicks log_ticks(double min_value, double max_value);  // both > 0
std::string format_tick(double value, double step);
std::string xml_escape(const std::string& text);

}  // namespace attnlab::train
