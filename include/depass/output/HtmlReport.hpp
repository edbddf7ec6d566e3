#pragma once
// A self-contained HTML report for any depass document: inline CSS and JavaScript, no
// network access, no external fonts or scripts. Tokens are coloured by attribution on a
// diverging scale (red positive, blue negative, near-white zero); hovering a token or a
// cell shows its exact score; a selector switches between target tokens (tokens) or
// generated steps (generate); heads and modules are layer heatmaps. The document itself
// is embedded as JSON (<script type="application/json" id="depass-data">).

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "Json.hpp"
#include "LineChart.hpp"
#include "Text.hpp"

namespace depass {
namespace output {

/// Text escaped for HTML element content and attribute values (valid UTF-8).
inline std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : valid_utf8(text)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace detail_html {

inline const char* kStyle = R"CSS(
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 24px; color: #1b1b1b; background: #ffffff; max-width: 1100px; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
h2 { font-size: 16px; margin: 18px 0 8px 0; }
.meta { color: #555; font-size: 13px; margin: 0 0 12px 0; }
.controls { margin: 12px 0; font-size: 14px; }
select { font-size: 14px; padding: 2px 4px; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 12px; color: #444; margin: 8px 0; }
.legend .bar { display: inline-block; width: 220px; height: 12px; border: 1px solid #ccc;
               background: linear-gradient(to right, #2166ac, #f7f7f7, #b2182b); }
.tokens { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 15px;
          line-height: 2.0; white-space: pre-wrap; word-break: break-word; border: 1px solid #e3e3e3;
          padding: 10px 12px; border-radius: 6px; background: #fff; }
.tok { padding: 2px 0; border-radius: 3px; cursor: default; }
.tok:hover, td.cell:hover { outline: 2px solid #222; }
.tok.target { outline: 2px dashed #222; padding: 2px 3px; margin-left: 4px; }
.arrow { color: #777; margin-left: 6px; }
.nl { color: #999; }
.summary { font-size: 14px; margin: 6px 0 10px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px 0; }
th, td { border: 1px solid #e0e0e0; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; font-weight: 600; }
td.label, th.label { text-align: left; }
td.mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; text-align: left; }
#hover { position: sticky; bottom: 0; background: #fafafa; border-top: 1px solid #ddd; padding: 6px 8px;
         font-size: 13px; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; min-height: 18px; }
.note { color: #666; font-size: 12px; }
.tok.unreachable, .unreachable { color: #9a9a9a; background: #f0f0f0; text-decoration: line-through; }
svg.trace { border: 1px solid #e3e3e3; border-radius: 6px; background: #fff; }
svg.trace text { font-size: 11px; fill: #333; }
)CSS";

inline const char* kScript = R"JS(
(function () {
  'use strict';
  var select = document.getElementById('view-select');
  var views = document.querySelectorAll('.view');
  function show(index) {
    for (var i = 0; i < views.length; ++i) {
      if (String(i) === String(index)) views[i].removeAttribute('hidden');
      else views[i].setAttribute('hidden', '');
    }
  }
  if (select) {
    select.addEventListener('change', function () { show(select.value); });
    show(select.value);
  }
  var hover = document.getElementById('hover');
  document.addEventListener('mouseover', function (event) {
    var el = event.target;
    if (!el || !el.getAttribute) return;
    var info = el.getAttribute('data-info');
    if (info !== null && hover) hover.textContent = info;
  });
  var data = JSON.parse(document.getElementById('depass-data').textContent);
  document.body.setAttribute('data-schema', data.schema);
  document.body.setAttribute('data-ready', '1');
})();
)JS";

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v)
    if (std::isfinite(x)) m = std::max(m, std::abs(x));
  return m;
}

inline std::vector<double> numbers(const nlohmann::json& list) {
  std::vector<double> v;
  for (const auto& x : list) v.push_back(x.get<double>());
  return v;
}

/// Visible token text: a newline shows as a return symbol; it also breaks the line when
/// the token is only whitespace (a real line break in the text), not inside a token such
/// as llama2.c's "\n<s>\n" BOS piece.
inline std::string token_html(const std::string& text) {
  const bool only_space = text.find_first_not_of(" \t\r\n") == std::string::npos;
  std::string out;
  std::size_t start = 0;
  while (true) {
    const std::size_t nl = text.find('\n', start);
    out += html_escape(text.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    out += std::string("<span class=\"nl\">\xE2\x86\xB5</span>") + (only_space ? "\n" : "");
    start = nl + 1;
  }
  return out;
}

inline std::string styled(const Rgb& bg) {
  return "background:" + hex(bg) + ";color:" + hex(text_colour_on(bg));
}

/// One coloured token span.
inline std::string token_span(const std::string& text, double score, double scale, const std::string& info,
                              long position) {
  return "<span class=\"tok\" data-pos=\"" + std::to_string(position) + "\" data-score=\"" + exact_number(score) +
         "\" style=\"" + styled(diverging_colour(score, scale)) + "\" title=\"" + html_escape(info) +
         "\" data-info=\"" + html_escape(info) + "\">" + token_html(text) + "</span>";
}

/// A heatmap cell.
inline std::string cell(double score, double scale, const std::string& info) {
  return "<td class=\"cell\" data-score=\"" + exact_number(score) + "\" style=\"" + styled(diverging_colour(score, scale)) +
         "\" title=\"" + html_escape(info) + "\" data-info=\"" + html_escape(info) + "\">" + signed_fixed(score, 3) + "</td>";
}

inline std::string legend(double scale) {
  return "<div class=\"legend\"><span>" + signed_fixed(-scale, 3) +
         "</span><span class=\"bar\"></span><span>" + signed_fixed(scale, 3) +
         "</span><span class=\"note\">red: pushes the target up, blue: pushes it down (square-root colour "
         "scale; hover for exact values)</span></div>";
}

inline std::string target_text(const nlohmann::json& target) {
  return "'" + printable(target.at("text").get<std::string>()) + "' (id " + std::to_string(target.at("id").get<long>()) + ")";
}

/// The token strip of one view: every token coloured by its score; tokens from position
/// `reach` on come after the explained position, cannot affect it and are marked so.
inline std::string token_strip(const nlohmann::json& tokens, const std::vector<double>& scores, const std::string& target,
                               std::size_t reach) {
  reach = std::min(reach, scores.size());
  const double scale = max_abs(std::vector<double>(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(reach)));
  std::string out = legend(scale) + "<div class=\"tokens\">";
  for (std::size_t i = 0; i < scores.size() && i < tokens.size(); ++i) {
    const std::string text = tokens[i].at("text").get<std::string>();
    if (i >= reach) {
      const std::string info = "position " + std::to_string(i) + "  '" + printable(text) +
                               "'  unreachable: after the explained position (causal mask)";
      out += "<span class=\"tok unreachable\" data-pos=\"" + std::to_string(i) + "\" title=\"" + html_escape(info) +
             "\" data-info=\"" + html_escape(info) + "\">" + token_html(text) + "</span>";
      continue;
    }
    const std::string info = "position " + std::to_string(i) + "  '" + printable(text) + "'  score " +
                             exact_number(scores[i]) + "  (toward " + target + ")";
    out += token_span(text, scores[i], scale, info, static_cast<long>(i));
  }
  return out + "</div>";
}

/// The ranked table of a view (positions before `reach` only).
inline std::string ranking(const nlohmann::json& tokens, const std::vector<double>& scores, std::size_t top,
                           std::size_t reach = static_cast<std::size_t>(-1)) {
  std::vector<std::size_t> order(std::min(reach, scores.size()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return std::abs(scores[a]) > std::abs(scores[b]); });
  const double scale = max_abs(scores);
  std::string out = "<table class=\"ranking\"><tr><th>rank</th><th>position</th><th class=\"label\">token</th><th>score</th></tr>";
  for (std::size_t r = 0; r < std::min(top, order.size()); ++r) {
    const std::size_t i = order[r];
    const std::string text = tokens[i].at("text").get<std::string>();
    out += "<tr><td>" + std::to_string(r + 1) + "</td><td>" + std::to_string(i) + "</td><td class=\"mono\">'" +
           html_escape(printable(text)) + "'</td>" + cell(scores[i], scale, "score " + exact_number(scores[i])) + "</tr>";
  }
  return out + "</table>";
}

/// Short x-axis name of a boundary: "attn 0", "mlp 0", ..., "out".
inline std::string boundary_short(const std::string& name) {
  if (name == "output") return "out";
  if (name.rfind("before attention ", 0) == 0) return "attn " + name.substr(17);
  if (name.rfind("before mlp ", 0) == 0) return "mlp " + name.substr(11);
  return name;
}

/// One line of a trace chart.
struct TraceSeries {
  std::string name, colour;
  std::vector<double> values;  // one per boundary
  bool dashed = false;
};

/// The lines of a trace chart: the `top` components strongest at the output (by |score|),
/// the others summed as "rest", and the real state's lens logit (dashed).
inline std::vector<TraceSeries> trace_series(const nlohmann::json& trace, const nlohmann::json& tokens, std::size_t top) {
  static const char* palette[] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#1f78b4"};
  const auto& rows = trace.at("scores");
  const std::size_t B = rows.size();
  const std::vector<double> last = numbers(rows.back());
  std::vector<std::size_t> order(last.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return std::abs(last[a]) > std::abs(last[b]); });
  order.resize(std::min(top, order.size()));
  std::vector<TraceSeries> series;
  std::vector<double> rest(B, 0.0);
  for (std::size_t b = 0; b < B; ++b)
    for (const auto& v : rows[b]) rest[b] += v.get<double>();
  for (std::size_t k = 0; k < order.size(); ++k) {
    std::string name = trace.at("components")[order[k]].get<std::string>();
    if (name.rfind("token ", 0) == 0) {  // a token component shows its text
      const std::size_t m = static_cast<std::size_t>(std::stoul(name.substr(6)));
      if (m < tokens.size()) name = std::to_string(m) + " '" + printable(tokens[m].at("text").get<std::string>()) + "'";
    }
    TraceSeries sr{name, palette[k % 8], {}, false};
    for (std::size_t b = 0; b < B; ++b) {
      sr.values.push_back(rows[b][order[k]].get<double>());
      rest[b] -= sr.values.back();
    }
    series.push_back(sr);
  }
  series.push_back(TraceSeries{"rest (" + std::to_string(last.size() - order.size()) + " summed)", "#999999", rest, false});
  series.push_back(TraceSeries{"total (logit lens)", "#222222", numbers(trace.at("lens")), true});
  return series;
}

/// A layer trace as an inline SVG line chart (see trace_series). x: boundaries in pass
/// order ("attn l" / "mlp l": before the attention / MLP of layer l); y: logit
/// (difference). No script: each point's exact value is in its <title> (hover).
inline std::string trace_chart(const nlohmann::json& trace, const nlohmann::json& tokens, std::size_t top = 6) {
  const std::size_t B = trace.at("scores").size();
  if (B == 0) return "";
  LineChart chart;
  chart.css_class = "trace";
  chart.aria_label = "layer trace";
  chart.rotate_x_labels = true;
  const auto& names = trace.at("boundary_names");
  for (std::size_t b = 0; b < B; ++b) {
    chart.xs.push_back(static_cast<double>(b));
    chart.x_labels.push_back(boundary_short(names[b].get<std::string>()));
    chart.x_names.push_back(names[b].get<std::string>());
  }
  for (const TraceSeries& sr : trace_series(trace, tokens, top)) chart.series.push_back({sr.name, sr.values, sr.colour, sr.dashed});
  const std::string svg = svg_line_chart(chart);
  return "<h2>Layer trace</h2><p class=\"note\">Each component's logit-lens value for the target at every layer boundary "
         "(\"attn l\" / \"mlp l\": before the attention / MLP of layer l; the final norm's scale frozen from the real state "
         "there). The components sum to the lens logit of the real state, and at the output to the final scores.</p>" +
         svg;
}

inline std::string selector(const std::vector<std::string>& options, const std::string& label) {
  if (options.size() < 2) return "";
  std::string out = "<div class=\"controls\"><label>" + html_escape(label) + " <select id=\"view-select\">";
  for (std::size_t i = 0; i < options.size(); ++i)
    out += "<option value=\"" + std::to_string(i) + "\">" + html_escape(options[i]) + "</option>";
  return out + "</select></label></div>";
}

inline std::string view(std::size_t index, const std::string& body) {
  return "<div class=\"view\" data-view=\"" + std::to_string(index) + "\"" + (index ? " hidden" : "") + ">" + body + "</div>";
}

inline std::string meta(const nlohmann::json& doc) {
  std::string m;
  auto add = [&](const std::string& key, const std::string& label) {
    if (!doc.contains(key)) return;
    const auto& v = doc[key];
    if (!m.empty()) m += " &middot; ";
    m += html_escape(label) + " " + html_escape(v.is_string() ? v.get<std::string>() : v.dump());
  };
  add("model", "model");
  add("precision", "precision");
  add("method", "method");
  add("objective", "objective");
  add("mlp_split", "MLP split");
  add("temperature", "temperature");
  add("bos_sink", "BOS sink");
  add("sink_ratio", "sink ratio");
  add("chunk_size", "chunk size");
  add("memory_budget_bytes", "memory budget (bytes)");
  add("chunks", "chunks");
  add("residual_max_abs", "completeness residual");
  return "<p class=\"meta\">" + m + "</p>";
}

/// "target ' to' (id 267) at position 21: logit 15.4065, probability 0.679[; sum of scores S +
/// bias B (+ positions, chunk residual)]"; with a contrast in `holder`, the logit difference.
/// `entry` holds the bias and the other non-token scores of the view.
inline std::string summary(const nlohmann::json& holder, const nlohmann::json& target, long position,
                           const nlohmann::json* entry = nullptr, double total_scores = std::nan("")) {
  const double logit = target.at("logit").get<double>();
  std::string s = "<p class=\"summary\">target " + html_escape(target_text(target));
  if (holder.contains("contrast")) {
    const nlohmann::json& foil = holder.at("contrast");
    s += " vs contrast " + html_escape(target_text(foil)) + " at position " + std::to_string(position) +
         ": logit difference <b>" + fixed(logit - foil.at("logit").get<double>(), 4) + "</b> (" + fixed(logit, 4) + " - " +
         fixed(foil.at("logit").get<double>(), 4) + "), probability " + significant(target.at("prob").get<double>()) + " vs " +
         significant(foil.at("prob").get<double>());
  } else {
    s += " at position " + std::to_string(position) + ": logit <b>" + fixed(logit, 4) + "</b>, probability " +
         significant(target.at("prob").get<double>());
  }
  if (entry != nullptr && std::isfinite(total_scores) && !entry->contains("bias_score")) {
    s += "; sum of scores " + fixed(total_scores, 4);
    if (entry->contains("value")) s += ", f(x) " + fixed(entry->at("value").get<double>(), 4);
    if (entry->contains("completeness_gap"))
      s += ", f(baseline) " + fixed(entry->at("baseline_value").get<double>(), 4) + ", completeness gap " +
           fixed(entry->at("completeness_gap").get<double>(), 4);
  } else if (entry != nullptr && std::isfinite(total_scores)) {
    s += "; sum of scores " + fixed(total_scores, 4) + " + bias " + fixed(entry->at("bias_score").get<double>(), 4);
    if (entry->contains("position_score")) s += " + positions " + fixed(entry->at("position_score").get<double>(), 4);
  }
  if (entry != nullptr && entry->contains("chunk_residual_score"))
    s += "; chunk residual " + fixed(entry->at("chunk_residual_score").get<double>(), 4) +
         " (the chunked run's difference from the real state, part of the sum)";
  return s + "</p>";
}

inline double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

inline std::string prompt_strip(const nlohmann::json& tokens, long position) {
  std::string out = "<div class=\"tokens\">";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string text = tokens[i].at("text").get<std::string>();
    const long at = static_cast<long>(i);
    const std::string attributes = at == position  ? " style=\"text-decoration:underline\""
                                   : at > position ? " class=\"unreachable\" title=\"after the explained position\""
                                                   : "";
    out += "<span" + attributes + ">" + token_html(text) + "</span>";
  }
  return out + "</div>";
}

}  // namespace detail_html

/// Options of render_html.
struct HtmlOptions {
  std::string title;     // page title; default from the document
  std::size_t top = 10;  // rows of ranked tables
};

namespace detail_html {

/// Views chosen by a selector: one per name.
inline std::string selected_views(const std::vector<std::string>& names, const std::vector<std::string>& views,
                                  const std::string& label) {
  std::string body = selector(names, label);
  for (std::size_t i = 0; i < views.size(); ++i) body += view(i, views[i]);
  return body;
}

/// Several methods on the same prompt: one strip per method, each on its own scale.
inline std::string methods_strips(const nlohmann::json& doc, std::size_t reach) {
  std::string out = "<h2>Methods side by side</h2><p>Each row is one method's scores for the same target, coloured on "
                    "that method's own scale (the methods measure different quantities).</p>";
  const std::string target = target_text(doc.at("target"));
  for (const auto& m : doc.at("methods")) {
    const auto scores = numbers(m.at("scores"));
    out += "<h3>" + html_escape(m.at("method").get<std::string>()) + "</h3>" + token_strip(doc.at("tokens"), scores, target, reach);
  }
  return out;
}

/// One view for the explained target, then one per alternative candidate.
inline std::string tokens_body(const nlohmann::json& doc, const HtmlOptions& options) {
  std::vector<std::string> names, views;
  const std::size_t reach = doc.value("reachable_positions", doc.at("tokens").size());
  auto add_view = [&](const nlohmann::json& entry, const nlohmann::json& target, const std::string& extra) {
    const auto scores = numbers(entry.at("scores"));
    names.push_back(target_text(target) + "  p=" + significant(target.at("prob").get<double>()));
    views.push_back(summary(doc, target, doc.at("position").get<long>(), &entry, sum(scores)) +
                    token_strip(doc.at("tokens"), scores, target_text(target), reach) + "<h2>Strongest contributions</h2>" +
                    ranking(doc.at("tokens"), scores, options.top, reach) + extra);
  };
  add_view(doc, doc.at("target"),
           (doc.contains("methods") ? methods_strips(doc, reach) : "") +
               (doc.contains("trace") ? trace_chart(doc.at("trace"), doc.at("tokens")) : ""));
  for (const auto& alt : doc.value("alternatives", nlohmann::json::array()))
    if (alt.at("target").at("id") != doc.at("target").at("id")) add_view(alt, alt.at("target"), "");
  return selected_views(names, views, "Target token:");
}

inline std::string generate_body(const nlohmann::json& doc, const HtmlOptions& options) {
  std::vector<std::string> names, views;
  const auto& tokens = doc.at("tokens");
  for (const auto& s : doc.at("steps")) {
    const auto scores = numbers(s.at("scores"));
    const nlohmann::json& target = s.at("token");
    names.push_back("step " + std::to_string(s.at("step").get<long>()) + ": " + target_text(target));
    std::string strip = token_strip(tokens, scores, target_text(target), scores.size());
    // The chosen token, after the sequence it was predicted from.
    const std::string arrow = "<span class=\"arrow\">&rarr;</span><span class=\"tok target\" title=\"generated token\">" +
                              token_html(target.at("text").get<std::string>()) + "</span></div>";
    strip.replace(strip.size() - 6, 6, arrow);
    views.push_back(summary(s, target, s.at("position").get<long>(), &s, sum(scores)) + strip +
                    "<h2>Strongest contributions</h2>" + ranking(tokens, scores, options.top));
  }
  return "<p class=\"summary\">prompt <b>" + html_escape(printable(doc.at("prompt").get<std::string>())) +
         "</b> &rarr; generated <b>" + html_escape(printable(doc.at("text").get<std::string>())) + "</b></p>" +
         selected_views(names, views, "Generated step:");
}

/// A layer x column heat map (heads: layer x head, modules: layer x {attention, mlp}),
/// with each run's chunk residual and trace.
struct Grid {
  std::vector<std::string> cols, rows;
  std::vector<std::vector<double>> values, residual;  // residual: heads' (residual, bias) per layer
  std::string chunk_note, traces;
};

inline Grid heads_grid(const nlohmann::json& doc) {
  Grid g;
  for (std::size_t h = 0; h < doc.at("n_heads").get<std::size_t>(); ++h) g.cols.push_back("head " + std::to_string(h));
  for (const auto& l : doc.at("layers")) {
    g.rows.push_back("layer " + std::to_string(l.at("layer").get<long>()));
    g.values.push_back(numbers(l.at("heads")));
    if (l.contains("residual_score")) g.residual.push_back({l.at("residual_score").get<double>(), l.at("bias_score").get<double>()});
    if (l.contains("chunk_residual_score"))
      g.chunk_note += " " + g.rows.back() + " " + fixed(l.at("chunk_residual_score").get<double>(), 4) + ";";
    if (l.contains("trace")) g.traces += "<h3>" + html_escape(g.rows.back()) + "</h3>" + trace_chart(l.at("trace"), doc.at("tokens"));
  }
  return g;
}

inline Grid modules_grid(const nlohmann::json& doc) {
  Grid g;
  g.cols = {"attention", "mlp"};
  for (const auto& m : doc.at("modules")) {
    const std::size_t layer = m.at("layer").get<std::size_t>();
    if (g.values.size() <= layer) {
      g.values.resize(layer + 1, std::vector<double>(2, 0.0));
      g.rows.resize(layer + 1);
      g.rows[layer] = "layer " + std::to_string(layer);
    }
    g.values[layer][m.at("site").get<std::string>() == "mlp" ? 1 : 0] = m.at("score").get<double>();
    const std::string label = m.at("label").get<std::string>();
    if (m.contains("chunk_residual_score"))
      g.chunk_note += " " + label + " " + fixed(m.at("chunk_residual_score").get<double>(), 4) + ";";
    if (m.contains("trace")) g.traces += "<h3>" + html_escape(label) + "</h3>" + trace_chart(m.at("trace"), doc.at("tokens"));
  }
  return g;
}

/// "Each head's output ..." for DePass; a baseline method's name and what it measures.
inline std::string grid_note(const nlohmann::json& doc, bool heads, bool decomposed) {
  if (!decomposed)
    return "<p class=\"note\">Scores by method " + html_escape(doc.at("method").get<std::string>()) +
           (doc.contains("ablation") ? " (" + html_escape(doc.at("ablation").get<std::string>()) + " ablation)" : "") +
           " for objective " + html_escape(doc.value("objective", std::string("logit"))) +
           (doc.contains("value") ? ", f(x) = " + fixed(doc.at("value").get<double>(), 4) : "") + " (docs/methods.md).</p>";
  return "<p class=\"note\">Each " + std::string(heads ? "head's" : "module's") +
         " output at its layer, propagated to the logits with frozen attention, norms and neuron splits." +
         (heads ? " Per layer: residual + heads + bias = the target logit." : "") + "</p>";
}

inline std::string grid_body(const nlohmann::json& doc, const std::string& kind) {
  const Grid g = kind == "heads" ? heads_grid(doc) : modules_grid(doc);
  const bool heads = kind == "heads" && !g.residual.empty();  // a baseline has no residual and bias columns
  const long position = doc.at("position").get<long>();
  std::string body = summary(doc, doc.at("target"), position) + prompt_strip(doc.at("tokens"), position);
  double scale = 0;
  for (const auto& r : g.values) scale = std::max(scale, max_abs(r));
  body += "<h2>" + std::string(kind == "heads" ? "Head" : "Module") + (kind != "heads" || heads ? " contributions to the target logit" : " scores") + "</h2>" + legend(scale) +
          "<table class=\"heatmap\"><tr><th></th>";
  for (const auto& c : g.cols) body += "<th>" + html_escape(c) + "</th>";
  if (heads) body += "<th>residual</th><th>bias</th>";
  body += "</tr>";
  for (std::size_t r = 0; r < g.values.size(); ++r) {
    body += "<tr><th class=\"label\">" + html_escape(g.rows[r]) + "</th>";
    for (std::size_t c = 0; c < g.values[r].size(); ++c)
      body += cell(g.values[r][c], scale, g.rows[r] + ", " + (c < g.cols.size() ? g.cols[c] : "") + ": score " + exact_number(g.values[r][c]));
    if (heads) body += "<td>" + signed_fixed(g.residual[r][0], 3) + "</td><td>" + signed_fixed(g.residual[r][1], 3) + "</td>";
    body += "</tr>";
  }
  body += "</table>" + grid_note(doc, kind == "heads", kind != "heads" || heads);
  if (!g.chunk_note.empty()) body += "<p class=\"note chunk\">chunk residual (part of each run's sum):" + html_escape(g.chunk_note) + "</p>";
  return body + g.traces;
}

inline std::string neurons_body(const nlohmann::json& doc) {
  const long position = doc.at("position").get<long>();
  std::string body = summary(doc, doc.at("target"), position, &doc) + prompt_strip(doc.at("tokens"), position);
  double scale = 0;
  for (const auto& t : doc.at("top")) scale = std::max(scale, std::abs(t.at("score").get<double>()));
  body += "<h2>Top neurons of layer " + std::to_string(doc.at("layer").get<long>()) + " (ranked by " +
          html_escape(doc.at("order").get<std::string>()) + ")</h2>" + legend(scale) +
          "<table><tr><th>rank</th><th>neuron</th><th>score</th></tr>";
  for (const auto& t : doc.at("top")) {
    const double s = t.at("score").get<double>();
    const std::string neuron = std::to_string(t.at("neuron").get<long>());
    body += "<tr><td>" + std::to_string(t.at("rank").get<long>()) + "</td><td>" + neuron + "</td>" +
            cell(s, scale, "neuron " + neuron + ": score " + exact_number(s)) + "</tr>";
  }
  if (!doc.contains("residual_score")) return body + "</table>" + grid_note(doc, false, false);
  return body + "</table><p class=\"note\">residual " + signed_fixed(doc.at("residual_score").get<double>(), 4) +
         ", other neurons " + signed_fixed(doc.at("other_score").get<double>(), 4) + "</p>";
}

inline std::string components_body(const nlohmann::json& doc, bool subspace) {
  const long position = doc.at("position").get<long>();
  std::string body = summary(doc, doc.at("target"), position, subspace ? &doc : nullptr) + prompt_strip(doc.at("tokens"), position);
  double scale = 0;
  for (const auto& c : doc.at("components")) scale = std::max(scale, std::abs(c.at("score").get<double>()));
  body += "<h2>Components</h2>" + legend(scale) +
          "<table><tr><th class=\"label\">component</th><th>score</th><th class=\"label\">top tokens (logit)</th></tr>";
  for (const auto& c : doc.at("components")) {
    const double s = c.at("score").get<double>();
    const std::string label = c.at("label").get<std::string>();
    std::string top;
    for (const auto& t : c.value("top_tokens", nlohmann::json::array()))
      top += "'" + html_escape(printable(t.at("text").get<std::string>())) + "' " + fixed(t.at("logit").get<double>(), 2) + "&nbsp;&nbsp; ";
    body += "<tr><td class=\"label\">" + html_escape(label) + "</td>" + cell(s, scale, label + ": score " + exact_number(s)) +
            "<td class=\"mono\">" + top + "</td></tr>";
  }
  return body + "</table>";
}

inline std::string field_row(const std::string& key, const nlohmann::json& value) {
  return "<tr><th class=\"label\">" + html_escape(key) + "</th><td class=\"mono\">" +
         html_escape(value.is_string() ? value.get<std::string>() : value.dump()) + "</td></tr>";
}

/// Any other document: its fields (one level of nesting flattened) as a table.
inline std::string fields_body(const nlohmann::json& doc) {
  std::string body = "<table>";
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.value().is_object()) {
      for (auto jt = it.value().begin(); jt != it.value().end(); ++jt) body += field_row(it.key() + "." + jt.key(), jt.value());
    } else {
      body += field_row(it.key(), it.value());
    }
  }
  return body + "</table>";
}

inline std::string page(const nlohmann::json& doc, const std::string& title, const std::string& body) {
  // The embedded document: "</" must not appear inside a script element.
  std::string data = doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (std::size_t p = data.find("</"); p != std::string::npos; p = data.find("</", p + 3)) data.replace(p, 2, "<\\/");
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
         html_escape(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n<h1>" + html_escape(title) +
         "</h1>\n" + meta(doc) + "\n" + body + "\n<div id=\"hover\">hover a token or cell for its exact score</div>\n"
         "<script type=\"application/json\" id=\"depass-data\">" + data + "</script>\n<script>" + kScript +
         "</script>\n</body>\n</html>\n";
}

}  // namespace detail_html

/// The report as one HTML page.
inline std::string render_html(const nlohmann::json& doc, const HtmlOptions& options = {}) {
  using namespace detail_html;
  const std::string kind = document_kind(doc);
  std::string title = options.title.empty() ? "depass " + kind : options.title;
  if (kind == "heads") title += " (layer x head)";
  if (kind == "tokens") return page(doc, title, tokens_body(doc, options));
  if (kind == "generate") return page(doc, title, generate_body(doc, options));
  if (kind == "heads" || kind == "modules") return page(doc, title, grid_body(doc, kind));
  if (kind == "neurons") return page(doc, title, neurons_body(doc));
  if (kind == "subspace" || kind == "decode") return page(doc, title, components_body(doc, kind == "subspace"));
  return page(doc, title, fields_body(doc));
}

inline void write_html(std::ostream& out, const nlohmann::json& doc, const HtmlOptions& options = {}) {
  out << render_html(doc, options);
}

}  // namespace output
}  // namespace depass
