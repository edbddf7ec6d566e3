#pragma once
// A self-contained SVG line chart (no script): named series over shared x positions, a
// y grid with ticks, x ticks (numbers, or one label per point), a legend, and each point's
// exact value in a <title> (shown on hover). Used by the HTML report's layer traces and by
// the faithfulness curves of `depass evaluate` (docs/faithfulness.md).

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "Text.hpp"

namespace depass {
namespace output {

struct ChartSeries {
  std::string name;
  std::vector<double> ys;  // one per x; a non-finite value leaves the point out
  std::string colour;      // CSS colour; empty: the palette's next one
  bool dashed = false;
};

struct LineChart {
  std::vector<double> xs;             // strictly increasing
  std::vector<std::string> x_labels;  // empty: numeric ticks at the xs; else one label per x
  std::vector<std::string> x_names;   // the xs as the hover titles name them; empty: as labelled
  bool rotate_x_labels = false;       // long labels at -40 degrees
  std::string x_title, y_title;
  std::string aria_label = "line chart";
  std::string css_class = "chart";
  bool fixed_y = false;  // y range [y_min, y_max] as given; else the data's range, 0 included
  double y_min = 0, y_max = 1;
  double width = 760, height = 340;
  bool standalone = false;  // a .svg file of its own (declares the SVG namespace); else inline in HTML
  std::vector<ChartSeries> series;
};

namespace detail_chart {

inline const char* palette(std::size_t i) {
  static const char* colours[] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e",
                                  "#e6ab02", "#a6761d", "#1f78b4", "#b2182b", "#555555"};
  return colours[i % 10];
}

inline std::string num(double v) { return fixed(v, 1); }

inline std::string line(double x1, double y1, double x2, double y2, const std::string& style) {
  return "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) + "\" " + style + "/>";
}

inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&quot;";
    else if (c == '\'') out += "&#39;";
    else out += c;
  }
  return out;
}

inline void check(const LineChart& c) {
  if (c.xs.empty()) throw std::invalid_argument("chart xs is empty: a chart needs at least one x");
  for (std::size_t i = 0; i + 1 < c.xs.size(); ++i)
    if (!(c.xs[i + 1] > c.xs[i])) throw std::invalid_argument("chart xs must be strictly increasing (entry " + std::to_string(i + 1) + ")");
  if (!c.x_labels.empty() && c.x_labels.size() != c.xs.size())
    throw std::invalid_argument("chart has " + std::to_string(c.x_labels.size()) + " x labels for " + std::to_string(c.xs.size()) + " xs");
  if (!c.x_names.empty() && c.x_names.size() != c.xs.size())
    throw std::invalid_argument("chart has " + std::to_string(c.x_names.size()) + " x names for " + std::to_string(c.xs.size()) + " xs");
  for (const ChartSeries& s : c.series)
    if (s.ys.size() != c.xs.size())
      throw std::invalid_argument("chart series '" + s.name + "' has " + std::to_string(s.ys.size()) + " values for " +
                                  std::to_string(c.xs.size()) + " xs");
  if (c.fixed_y && !(c.y_max > c.y_min)) throw std::invalid_argument("chart y range must have y_max > y_min");
}

/// [lo, hi]: the fixed range, or the data's with 0 included (never empty).
inline std::pair<double, double> y_range(const LineChart& c) {
  if (c.fixed_y) return {c.y_min, c.y_max};
  double lo = 0, hi = 0;
  for (const ChartSeries& s : c.series)
    for (double v : s.ys)
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
  if (hi - lo < 1e-12) hi = lo + 1;
  return {lo, hi};
}

}  // namespace detail_chart

/// The chart as one <svg> element. Throws std::invalid_argument for empty or decreasing
/// xs, labels or series of the wrong length, or an empty fixed y range.
inline std::string svg_line_chart(const LineChart& c) {
  using namespace detail_chart;
  check(c);
  // Plain variables, not a structured binding: C++17 does not let lambdas capture bindings
  // (GCC accepts it, Clang refuses).
  const std::pair<double, double> range = y_range(c);
  const double lo = range.first, hi = range.second;
  const double left = 56, right = 210, top = 16, bottom = c.rotate_x_labels ? 64 : (c.x_title.empty() ? 30 : 44);
  const double pw = c.width - left - right, ph = c.height - top - bottom;
  const double x0 = c.xs.front(), x1 = c.xs.back();
  auto x = [&](double v) { return left + (x1 > x0 ? pw * (v - x0) / (x1 - x0) : pw / 2); };
  auto y = [&](double v) { return top + ph * (hi - v) / (hi - lo); };
  std::string svg = "<svg class=\"" + escape(c.css_class) + "\"" + (c.standalone ? " xmlns=\"http://www.w3.org/2000/svg\"" : "") +
                    " width=\"" + num(c.width) +
                    "\" height=\"" + num(c.height) + "\" viewBox=\"0 0 " + num(c.width) + " " + num(c.height) +
                    "\" role=\"img\" aria-label=\"" + escape(c.aria_label) + "\" font-family=\"sans-serif\" font-size=\"11\">";
  for (int t = 0; t <= 4; ++t) {  // y grid and ticks
    const double v = lo + (hi - lo) * t / 4.0;
    svg += line(left, y(v), left + pw, y(v), "stroke=\"#eeeeee\"") + "<text x=\"" + num(left - 6) + "\" y=\"" + num(y(v) + 4) +
           "\" text-anchor=\"end\">" + fixed(v, 2) + "</text>";
  }
  if (lo < 0 && hi > 0) svg += line(left, y(0), left + pw, y(0), "class=\"zero\" stroke=\"#888888\"");
  svg += line(left, top + ph, left + pw, top + ph, "stroke=\"#888888\"");
  for (std::size_t i = 0; i < c.xs.size(); ++i) {  // x ticks
    const std::string label = c.x_labels.empty() ? exact_number(c.xs[i]) : c.x_labels[i];
    const double tx = x(c.xs[i]), ty = top + ph + 14;
    svg += "<text x=\"" + num(tx) + "\" y=\"" + num(ty) + "\" text-anchor=\"" + (c.rotate_x_labels ? "end" : "middle") + "\"" +
           (c.rotate_x_labels ? " transform=\"rotate(-40 " + num(tx) + " " + num(ty) + ")\"" : "") + ">" + escape(label) + "</text>";
  }
  if (!c.x_title.empty())
    svg += "<text x=\"" + num(left + pw / 2) + "\" y=\"" + num(c.height - 6) + "\" text-anchor=\"middle\">" + escape(c.x_title) + "</text>";
  if (!c.y_title.empty())
    svg += "<text x=\"12\" y=\"" + num(top + ph / 2) + "\" text-anchor=\"middle\" transform=\"rotate(-90 12 " + num(top + ph / 2) +
           ")\">" + escape(c.y_title) + "</text>";
  for (std::size_t k = 0; k < c.series.size(); ++k) {
    const ChartSeries& s = c.series[k];
    const std::string colour = s.colour.empty() ? palette(k) : s.colour;
    const std::string stroke = "stroke=\"" + colour + "\" stroke-width=\"2\"" + (s.dashed ? " stroke-dasharray=\"6 4\"" : "");
    std::string points, dots;
    for (std::size_t i = 0; i < c.xs.size(); ++i) {
      if (!std::isfinite(s.ys[i])) continue;
      points += (points.empty() ? "" : " ") + num(x(c.xs[i])) + "," + num(y(s.ys[i]));
      const std::string at = !c.x_names.empty() ? c.x_names[i] : c.x_labels.empty() ? exact_number(c.xs[i]) : c.x_labels[i];
      dots += "<circle cx=\"" + num(x(c.xs[i])) + "\" cy=\"" + num(y(s.ys[i])) + "\" r=\"2.5\" fill=\"" + colour + "\"><title>" +
              escape(s.name + " at " + at + ": " + exact_number(s.ys[i])) + "</title></circle>";
    }
    svg += "<polyline class=\"series\" data-name=\"" + escape(s.name) + "\" fill=\"none\" " + stroke + " points=\"" + points + "\"/>" + dots;
    const double ly = top + 14.0 * static_cast<double>(k) + 6;
    svg += line(c.width - right + 12, ly, c.width - right + 34, ly, stroke) + "<text x=\"" + num(c.width - right + 40) + "\" y=\"" +
           num(ly + 4) + "\">" + escape(s.name) + "</text>";
  }
  return svg + "</svg>";
}

}  // namespace output
}  // namespace depass
