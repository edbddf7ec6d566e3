// depass::output::svg_line_chart: point coordinates computed by hand for the default
// geometry, missing values, escaping, and the argument checks.

#include <catch2/catch.hpp>
#include <depass/output/LineChart.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

using depass::output::ChartSeries;
using depass::output::LineChart;
using depass::output::svg_line_chart;

namespace {

/// The "points" attribute of the first polyline of `svg`.
std::string first_points(const std::string& svg) {
  const std::size_t at = svg.find("points=\"");
  REQUIRE(at != std::string::npos);
  const std::size_t from = at + 8;
  return svg.substr(from, svg.find('"', from) - from);
}

LineChart unit_chart() {
  LineChart c;
  c.xs = {0, 50, 100};
  c.fixed_y = true;
  c.y_min = 0;
  c.y_max = 1;
  return c;
}

}  // namespace

TEST_CASE("svg_line_chart: points land where the geometry puts them", "[output][chart]") {
  // 760 x 340, margins left 56, right 210, top 16, bottom 30: the plot spans x 56..550
  // and y 16..310; y = 0 is the bottom, y = 1 the top.
  LineChart c = unit_chart();
  c.series.push_back({"curve", {0.0, 0.5, 1.0}, "", false});
  const std::string svg = svg_line_chart(c);
  CHECK(first_points(svg) == "56.0,310.0 303.0,163.0 550.0,16.0");
  CHECK(svg.rfind("<svg ", 0) == 0);
  CHECK(svg.substr(svg.size() - 6) == "</svg>");
  CHECK(svg.find("#1b9e77") != std::string::npos);  // the palette's first colour
  CHECK(svg.find("<title>curve at 50: 0.5</title>") != std::string::npos);
  CHECK(svg.find("xmlns") == std::string::npos);  // inline in HTML
  c.standalone = true;                              // a file of its own
  CHECK(svg_line_chart(c).find("xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
}

TEST_CASE("svg_line_chart: the data's range includes 0 when none is fixed", "[output][chart]") {
  LineChart c;
  c.xs = {1, 2};
  c.series.push_back({"neg", {-2.0, 2.0}, "#000000", true});
  const std::string svg = svg_line_chart(c);
  CHECK(first_points(svg) == "56.0,310.0 550.0,16.0");
  CHECK(svg.find("class=\"zero\"") != std::string::npos);  // 0 is inside the range
  CHECK(svg.find("stroke-dasharray") != std::string::npos);
}

TEST_CASE("svg_line_chart: a missing value leaves its point out; names and labels are escaped", "[output][chart]") {
  LineChart c = unit_chart();
  c.x_labels = {"a", "<b>", "c&d"};
  c.series.push_back({"x<y \"q\"", {0.0, std::numeric_limits<double>::quiet_NaN(), 1.0}, "", false});
  const std::string svg = svg_line_chart(c);
  CHECK(first_points(svg) == "56.0,310.0 550.0,16.0");
  CHECK(svg.find("data-name=\"x&lt;y &quot;q&quot;\"") != std::string::npos);
  CHECK(svg.find(">&lt;b&gt;<") != std::string::npos);
  CHECK(svg.find(">c&amp;d<") != std::string::npos);
  CHECK(svg.find("<b>") == std::string::npos);
  c.x_names = {"first", "second", "third's"};  // hover titles name the xs
  CHECK(svg_line_chart(c).find("<title>x&lt;y &quot;q&quot; at third&#39;s: 1</title>") != std::string::npos);
}

TEST_CASE("svg_line_chart: bad charts are refused naming the problem", "[output][chart][errors]") {
  LineChart empty;
  CHECK_THROWS_WITH(svg_line_chart(empty), Catch::Contains("xs is empty"));
  LineChart down = unit_chart();
  down.xs = {0, 2, 1};
  CHECK_THROWS_WITH(svg_line_chart(down), Catch::Contains("strictly increasing (entry 2)"));
  LineChart short_series = unit_chart();
  short_series.series.push_back({"s", {1.0}, "", false});
  CHECK_THROWS_WITH(svg_line_chart(short_series), Catch::Contains("series 's' has 1 values for 3 xs"));
  LineChart labels = unit_chart();
  labels.x_labels = {"a"};
  CHECK_THROWS_WITH(svg_line_chart(labels), Catch::Contains("1 x labels for 3 xs"));
  LineChart flat = unit_chart();
  flat.y_max = 0;
  CHECK_THROWS_WITH(svg_line_chart(flat), Catch::Contains("y_max > y_min"));
  CHECK_THROWS_AS(svg_line_chart(flat), std::invalid_argument);
}
