// SVG charts: well-formed XML (parsed with closing-tag validation), the series present with their
// points, axes with ticks and labels, escaping, and errors.
#include "train/run_log.h"
#include "train/svg_chart.h"
#include "temp_dir.h"

#include <boost/property_tree/detail/rapidxml.hpp>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

namespace attnlab::train {
namespace {
namespace rx = boost::property_tree::detail::rapidxml;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A parsed SVG document. Parsing throws on malformed XML, including mismatched closing tags.
class Svg {
 public:
  explicit Svg(const std::string& text) : buffer_(text.begin(), text.end()) {
    buffer_.push_back('\0');
    doc_.parse<rx::parse_validate_closing_tags | rx::parse_declaration_node>(buffer_.data());
  }
  rx::xml_node<>* root() { return doc_.first_node("svg"); }

  static std::string attr(rx::xml_node<>* node, const char* name) {
    auto* a = node->first_attribute(name);
    return a ? std::string(a->value(), a->value_size()) : std::string();
  }

  // Every element in document order.
  std::vector<rx::xml_node<>*> elements() {
    std::vector<rx::xml_node<>*> out;
    walk(root(), out);
    return out;
  }

  // The <g class="series"> groups by data-name.
  std::map<std::string, rx::xml_node<>*> series() {
    std::map<std::string, rx::xml_node<>*> out;
    for (auto* e : elements())
      if (std::string(e->name()) == "g" && attr(e, "class") == "series") out[attr(e, "data-name")] = e;
    return out;
  }

  std::vector<std::string> texts_in(const std::string& group_class) {
    std::vector<std::string> out;
    for (auto* e : elements())
      if (std::string(e->name()) == "g" && attr(e, "class") == group_class)
        for (auto* t = e->first_node("text"); t; t = t->next_sibling("text")) out.emplace_back(t->value(), t->value_size());
    return out;
  }

 private:
  static void walk(rx::xml_node<>* node, std::vector<rx::xml_node<>*>& out) {
    if (!node) return;
    out.push_back(node);
    for (auto* c = node->first_node(); c; c = c->next_sibling())
      if (c->type() == rx::node_element) walk(c, out);
  }
  std::vector<char> buffer_;
  rx::xml_document<> doc_;
};

size_t count_points(rx::xml_node<>* group) {
  size_t n = 0;
  for (auto* p = group->first_node("polyline"); p; p = p->next_sibling("polyline")) {
    const std::string pts = Svg::attr(p, "points");
    n += size_t(std::count(pts.begin(), pts.end(), ',')) ;
  }
  return n;
}

TEST(SvgParserSelfTest, RejectsMalformedXml) {
  EXPECT_THROW(Svg("<svg><g></svg>"), rx::parse_error);
  EXPECT_THROW(Svg("<svg><text>a</tex></svg>"), rx::parse_error);
  EXPECT_THROW(Svg("<svg><text x=\"1>a</text></svg>"), rx::parse_error);
  EXPECT_NO_THROW(Svg("<svg><g><text>a &amp; b</text></g></svg>"));
}

TEST(LineChartSvg, LearningCurveIsWellFormedWithBothSeries) {
  std::vector<nlohmann::json> events;
  for (int step = 1; step <= 200; ++step) {
    events.push_back({{"event", "train"}, {"step", step}, {"loss", 10.0 / std::sqrt(double(step))}});
    if (step % 50 == 0) events.push_back({{"event", "valid"}, {"step", step}, {"loss", 11.0 / std::sqrt(double(step))}});
  }
  const std::string text = render_svg(learning_curve(events, "Learning curve"));
  Svg svg(text);
  ASSERT_NE(svg.root(), nullptr);
  EXPECT_EQ(Svg::attr(svg.root(), "xmlns"), "http://www.w3.org/2000/svg");
  auto series = svg.series();
  ASSERT_EQ(series.size(), 2u);
  ASSERT_TRUE(series.count("train loss"));
  ASSERT_TRUE(series.count("dev loss"));
  EXPECT_EQ(count_points(series["train loss"]), 200u);
  EXPECT_EQ(count_points(series["dev loss"]), 4u);
  size_t circles = 0;
  for (auto* c = series["dev loss"]->first_node("circle"); c; c = c->next_sibling("circle")) ++circles;
  EXPECT_EQ(circles, 4u);
  // Axes: x ticks are whole steps covering 0..200, labels present, legend names both series.
  const auto x_ticks = svg.texts_in("x-axis");
  ASSERT_GE(x_ticks.size(), 3u);
  EXPECT_EQ(x_ticks.front(), "0");
  EXPECT_EQ(x_ticks.back(), "200");
  EXPECT_GE(svg.texts_in("y-axis").size(), 3u);
  const auto legend = svg.texts_in("legend");
  EXPECT_EQ(legend, (std::vector<std::string>{"train loss", "dev loss"}));
  EXPECT_TRUE(contains(text, ">step</text>"));
  EXPECT_TRUE(contains(text, ">Learning curve</text>"));
  EXPECT_FALSE(contains(text, "href")) << "no external references";
}

TEST(LineChartSvg, OverlaidCurvesEscapingAndGaps) {
  LineChart chart;
  chart.title = "heads: 1 < 8 & \"16\"";
  chart.x_label = "step";
  chart.y_label = "dev loss";
  for (int h : {1, 4, 8, 16, 32}) {
    LineSeries s;
    s.name = "heads=" + std::to_string(h) + (h == 8 ? " <base>" : "");
    for (int i = 0; i < 10; ++i) {
      s.x.push_back(i * 100);
      s.y.push_back(i == 5 && h == 4 ? NAN : 5.0 - i * 0.1 * h / 8);
    }
    s.dashed = h == 32;
    chart.series.push_back(s);
  }
  const std::string text = render_svg(chart);
  Svg svg(text);
  auto series = svg.series();
  ASSERT_EQ(series.size(), 5u);
  EXPECT_TRUE(series.count("heads=8 <base>"));  // unescaped by the parser
  EXPECT_TRUE(contains(text, "heads=8 &lt;base&gt;"));
  EXPECT_TRUE(contains(text, "heads: 1 &lt; 8 &amp; &quot;16&quot;"));
  // The NaN splits heads=4 into two lines of 5 and 4 points.
  size_t pieces = 0;
  for (auto* p = series["heads=4"]->first_node("polyline"); p; p = p->next_sibling("polyline")) ++pieces;
  EXPECT_EQ(pieces, 2u);
  EXPECT_EQ(count_points(series["heads=4"]), 9u);
  EXPECT_EQ(count_points(series["heads=1"]), 10u);
  // Distinct colours from the palette.
  std::set<std::string> colours;
  for (auto& [name, g] : series) colours.insert(Svg::attr(g, "stroke"));
  EXPECT_EQ(colours.size(), 5u);
}

TEST(LineChartSvg, LogAxisAndEmptyChart) {
  LineChart chart;
  chart.log_y = true;
  chart.series.push_back({"ppl", {1, 2, 3, 4}, {1000, 100, -1, 20}, "", false, false});
  Svg svg(render_svg(chart));
  EXPECT_EQ(count_points(svg.series()["ppl"]), 2u);  // -1 cannot be drawn on a log axis: splits
  const auto y = svg.texts_in("y-axis");
  EXPECT_TRUE(std::find(y.begin(), y.end(), "1000") != y.end());
  EXPECT_TRUE(std::find(y.begin(), y.end(), "10") != y.end());

  LineChart empty;
  empty.title = "nothing yet";
  const std::string text = render_svg(empty);
  Svg parsed(text);
  EXPECT_TRUE(contains(text, ">no data</text>"));
}

TEST(BarChartSvg, MetricPerVariant) {
  BarChart chart;
  chart.title = "BLEU per variant";
  chart.y_label = "BLEU";
  chart.categories = {"base", "heads=1", "heads=16", "posenc.learned"};
  chart.series.push_back({"dev BLEU", {25.8, 24.9, 25.8, 25.7}, ""});
  chart.series.push_back({"test BLEU", {27.3, NAN, 26.9, 27.0}, ""});
  const std::string text = render_svg(chart);
  Svg svg(text);
  auto series = svg.series();
  ASSERT_EQ(series.size(), 2u);
  auto rects = [](rx::xml_node<>* g) {
    std::vector<double> heights;
    for (auto* r = g->first_node("rect"); r; r = r->next_sibling("rect")) heights.push_back(std::stod(Svg::attr(r, "height")));
    return heights;
  };
  const auto dev = rects(series["dev BLEU"]), test = rects(series["test BLEU"]);
  ASSERT_EQ(dev.size(), 4u);
  EXPECT_EQ(test.size(), 3u);  // NaN: no bar
  EXPECT_NEAR(dev[0] / dev[1], 25.8 / 24.9, 1e-3);  // heights proportional to values from zero
  EXPECT_TRUE(contains(text, ">posenc.learned</text>"));
  EXPECT_TRUE(contains(text, ">25.8</text>"));
  const auto y = svg.texts_in("y-axis");
  EXPECT_EQ(y.front(), "0");
  EXPECT_EQ(svg.texts_in("legend"), (std::vector<std::string>{"dev BLEU", "test BLEU"}));
}

TEST(BarChartSvg, NegativeValuesGoBelowZero) {
  BarChart chart;
  chart.categories = {"a", "b"};
  chart.series.push_back({"delta", {2.0, -1.0}, ""});
  Svg svg(render_svg(chart));
  const auto y = svg.texts_in("y-axis");
  EXPECT_TRUE(std::find(y.begin(), y.end(), "-1") != y.end() || std::find(y.begin(), y.end(), "-1.0") != y.end());
}

TEST(Charts, Errors) {
  LineChart line;
  line.title = "t";
  line.series.push_back({"bad", {1, 2, 3}, {1, 2}, "", false, false});
  try {
    render_svg(line);
    FAIL();
  } catch (const ChartError& e) {
    EXPECT_EQ(std::string(e.what()), "chart 't': series 'bad' has 3 x values and 2 y values");
  }
  BarChart bar;
  bar.title = "b";
  bar.categories = {"x", "y"};
  bar.series.push_back({"s", {1}, ""});
  try {
    render_svg(bar);
    FAIL();
  } catch (const ChartError& e) {
    EXPECT_EQ(std::string(e.what()), "chart 'b': bar series 's' has 1 values for 2 categories");
  }
  LineChart tiny;
  tiny.width = 50;
  EXPECT_THROW(render_svg(tiny), ChartError);
}

TEST(AxisTicks, NiceSteps) {
  const AxisTicks a = linear_ticks(0.3, 9.7, 6);
  EXPECT_EQ(a.lo, 0);
  EXPECT_EQ(a.hi, 10);
  EXPECT_EQ(a.ticks, (std::vector<double>{0, 2, 4, 6, 8, 10}));
  const AxisTicks b = linear_ticks(1, 100000, 7);
  EXPECT_EQ(b.ticks.front(), 0);
  EXPECT_EQ(b.ticks.back(), 100000);
  EXPECT_EQ(b.ticks[1] - b.ticks[0], 10000);  // 100000 / 7 ≈ 14286 rounds to 1 × 10^4
  const AxisTicks flat = linear_ticks(3, 3);
  EXPECT_LT(flat.lo, 3);
  EXPECT_GT(flat.hi, 3);
  const AxisTicks l = log_ticks(3, 700);
  EXPECT_EQ(l.lo, 1);
  EXPECT_EQ(l.hi, 1000);
  EXPECT_EQ(format_tick(0.25, 0.05), "0.25");
  EXPECT_EQ(format_tick(4000, 1000), "4000");
  EXPECT_EQ(format_tick(2e6, 1e6), "2e+06");
}

TEST(WriteSvg, WritesTheFile) {
  testing::TempDir dir;
  write_svg(dir / "curve.svg", render_svg(LineChart{}));
  EXPECT_TRUE(contains(testing::read_file(dir / "curve.svg"), "</svg>"));
  EXPECT_THROW(write_svg(dir / "missing" / "curve.svg", "x"), ChartError);
}

}  // namespace
}  // namespace attnlab::train
