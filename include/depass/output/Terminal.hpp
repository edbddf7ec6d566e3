#pragma once
// Terminal output: token heatmaps with ANSI background colours (256-colour or truecolor),
// ranked tables, coloured layer x head grids and a progress bar. Everything here formats
// into strings or writes to a given stream; deciding whether a stream is a terminal is
// left to the caller (see detect_color_mode).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "Json.hpp"
#include "Text.hpp"

namespace depass {
namespace output {

enum class ColorMode { None, Ansi256, TrueColor };

/// The colour mode for a stream: None unless it is a terminal; None when NO_COLOR is set
/// to a non-empty value (https://no-color.org) or TERM is "dumb"; TrueColor when
/// COLORTERM is "truecolor" or "24bit"; else 256 colours. Pass getenv() results
/// (nullptr when unset).
inline ColorMode detect_color_mode(bool is_tty, const char* no_color, const char* colorterm,
                                   const char* term) {
  if (!is_tty) return ColorMode::None;
  if (no_color != nullptr && *no_color != '\0') return ColorMode::None;
  if (term != nullptr && std::string(term) == "dumb") return ColorMode::None;
  if (colorterm != nullptr) {
    const std::string ct = colorterm;
    if (ct == "truecolor" || ct == "24bit") return ColorMode::TrueColor;
  }
  return ColorMode::Ansi256;
}

/// Index of the nearest colour in the xterm 256-colour palette (6x6x6 cube or grey ramp).
inline int xterm256(const Rgb& c) {
  static const int levels[6] = {0, 95, 135, 175, 215, 255};
  auto nearest_level = [&](int v) {
    int best = 0;
    for (int i = 1; i < 6; ++i)
      if (std::abs(levels[i] - v) < std::abs(levels[best] - v)) best = i;
    return best;
  };
  const int r = nearest_level(c.r), g = nearest_level(c.g), b = nearest_level(c.b);
  auto dist = [](int r1, int g1, int b1, const Rgb& o) {
    return (r1 - o.r) * (r1 - o.r) + (g1 - o.g) * (g1 - o.g) + (b1 - o.b) * (b1 - o.b);
  };
  const int cube = 16 + 36 * r + 6 * g + b;
  const int cube_dist = dist(levels[r], levels[g], levels[b], c);
  const int grey_level = std::max(0, std::min(23, static_cast<int>(std::lround(((c.r + c.g + c.b) / 3.0 - 8) / 10.0))));
  const int grey = 8 + 10 * grey_level;
  return dist(grey, grey, grey, c) < cube_dist ? 232 + grey_level : cube;
}

/// `text` on a coloured background (and a readable foreground); plain text for None.
inline std::string colourise(const std::string& text, const Rgb& background, ColorMode mode) {
  if (mode == ColorMode::None) return text;
  const Rgb fg = text_colour_on(background);
  std::ostringstream s;
  if (mode == ColorMode::TrueColor)
    s << "\x1b[48;2;" << background.r << ';' << background.g << ';' << background.b << "m\x1b[38;2;" << fg.r << ';'
      << fg.g << ';' << fg.b << 'm';
  else
    s << "\x1b[48;5;" << xterm256(background) << "m\x1b[38;5;" << (fg.r ? 231 : 16) << 'm';
  s << text << "\x1b[0m";
  return s.str();
}

inline std::string bold(const std::string& text, ColorMode mode) {
  return mode == ColorMode::None ? text : "\x1b[1m" + text + "\x1b[0m";
}

/// Tokens laid out as running text, each on a background coloured by its score (diverging
/// scale, red positive, blue negative, scaled to the largest |score|). Without colour each
/// token is followed by its score: [' Once' +0.448]. Lines wrap at `width` columns.
inline std::string token_heatmap(const std::vector<std::string>& tokens, const std::vector<double>& scores,
                                 ColorMode mode, std::size_t width = 80) {
  double scale = 0;
  for (double s : scores)
    if (std::isfinite(s)) scale = std::max(scale, std::abs(s));
  std::string out, line;
  std::size_t column = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const double score = i < scores.size() ? scores[i] : 0.0;
    std::string cell = printable(tokens[i]);
    if (mode == ColorMode::None) cell = "['" + cell + "' " + signed_fixed(score, 3) + "]";
    const std::size_t w = display_width(cell) + (mode == ColorMode::None ? 1 : 0);
    if (column > 0 && column + w > width) {
      out += line + "\n";
      line.clear();
      column = 0;
    }
    line += mode == ColorMode::None ? cell + " " : colourise(cell, diverging_colour(score, scale), mode);
    column += w;
  }
  if (!line.empty()) out += line + "\n";
  return out;
}

/// A colour legend line: "-2.1 [blue ... white ... red] +2.1" (nothing without colour).
inline std::string legend(double scale, ColorMode mode) {
  if (mode == ColorMode::None) return "";
  std::string bar;
  for (int i = -8; i <= 8; ++i) bar += colourise(" ", diverging_colour(i / 8.0 * scale, scale), mode);
  return "  " + signed_fixed(-scale, 3) + " " + bar + " " + signed_fixed(scale, 3) + "\n";
}

/// A plain table: a header row, then rows; right-aligned columns where `right[i]`.
inline std::string table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                         const std::vector<bool>& right = {}) {
  std::vector<std::size_t> widths(header.size(), 0);
  auto measure = [&](const std::vector<std::string>& r) {
    for (std::size_t i = 0; i < r.size() && i < widths.size(); ++i) widths[i] = std::max(widths[i], display_width(r[i]));
  };
  measure(header);
  for (const auto& r : rows) measure(r);
  auto line = [&](const std::vector<std::string>& r) {
    std::string out = " ";
    for (std::size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < r.size() ? r[i] : "";
      const std::string pad(widths[i] - std::min(widths[i], display_width(cell)), ' ');
      out += " " + ((i < right.size() && right[i]) ? pad + cell : cell + pad);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) out += line(r);
  return out;
}

/// A grid of numbers (e.g. layers x heads), every cell coloured by its value on one
/// diverging scale; without colour the numbers alone.
inline std::string heat_grid(const std::vector<std::string>& row_labels, const std::vector<std::string>& col_labels,
                             const std::vector<std::vector<double>>& values, ColorMode mode, int decimals = 3) {
  double scale = 0;
  for (const auto& r : values)
    for (double v : r)
      if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  std::size_t label_w = 0, cell_w = 0;
  for (const auto& l : row_labels) label_w = std::max(label_w, display_width(l));
  for (const auto& l : col_labels) cell_w = std::max(cell_w, display_width(l));
  for (const auto& r : values)
    for (double v : r) cell_w = std::max(cell_w, signed_fixed(v, decimals).size());
  auto pad_left = [](const std::string& s, std::size_t w) { return std::string(w - std::min(w, display_width(s)), ' ') + s; };
  std::string out = "  " + std::string(label_w, ' ');
  for (const auto& c : col_labels) out += " " + pad_left(c, cell_w);
  out += "\n";
  for (std::size_t r = 0; r < values.size(); ++r) {
    out += "  " + pad_left(r < row_labels.size() ? row_labels[r] : "", label_w);
    for (double v : values[r]) out += " " + colourise(pad_left(signed_fixed(v, decimals), cell_w), diverging_colour(v, scale), mode);
    out += "\n";
  }
  return out;
}

/// Options of render_terminal.
struct TerminalOptions {
  ColorMode color = ColorMode::None;
  std::size_t top = 10;     // rows in ranked tables
  std::size_t step_top = 3;  // generate: strongest tokens listed per step
  std::size_t width = 80;   // heatmap line width
};

namespace detail_terminal {

inline std::vector<std::string> token_texts(const nlohmann::json& tokens) {
  std::vector<std::string> t;
  for (const auto& x : tokens) t.push_back(x.at("text").get<std::string>());
  return t;
}

inline std::vector<double> numbers(const nlohmann::json& list) {
  std::vector<double> v;
  for (const auto& x : list) v.push_back(x.get<double>());
  return v;
}

inline std::string token_name(const nlohmann::json& token) {
  return std::to_string(token.at("id").get<long>()) + " '" + printable(token.at("text").get<std::string>()) + "'";
}

/// "target 267 ' to' at position 21: logit 15.4065, prob 0.679", or with a contrast
/// "target ... vs contrast 298 ' with' at position 21: logit difference 3.2100 (15.4065 - 12.1965), prob 0.679 vs 0.0312".
inline std::string target_line(const nlohmann::json& doc, const nlohmann::json& target, long position) {
  const double logit = target.at("logit").get<double>(), prob = target.at("prob").get<double>();
  if (!doc.contains("contrast"))
    return "target " + token_name(target) + " at position " + std::to_string(position) + ": logit " + fixed(logit, 4) +
           ", prob " + significant(prob) + "\n";
  const nlohmann::json& foil = doc.at("contrast");
  return "target " + token_name(target) + " vs contrast " + token_name(foil) + " at position " + std::to_string(position) +
         ": logit difference " + fixed(logit - foil.at("logit").get<double>(), 4) + " (" + fixed(logit, 4) + " - " +
         fixed(foil.at("logit").get<double>(), 4) + "), prob " + significant(prob) + " vs " +
         significant(foil.at("prob").get<double>()) + "\n";
}

inline std::string target_line(const nlohmann::json& doc) {
  return target_line(doc, doc.at("target"), doc.at("position").get<long>());
}

/// Ranked rows of (label, score), strongest |score| first.
inline std::string ranking(const std::vector<std::string>& labels, const std::vector<double>& scores, std::size_t top,
                           const std::string& what, const std::vector<std::string>& extra_header = {},
                           const std::vector<std::vector<std::string>>& extra = {}) {
  std::vector<std::size_t> order(scores.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return std::abs(scores[a]) > std::abs(scores[b]); });
  std::vector<std::vector<std::string>> rows;
  for (std::size_t r = 0; r < std::min(top, order.size()); ++r) {
    const std::size_t i = order[r];
    std::vector<std::string> row = {std::to_string(r + 1), labels[i]};
    if (i < extra.size()) row.insert(row.end(), extra[i].begin(), extra[i].end());
    row.push_back(signed_fixed(scores[i], 4));
    rows.push_back(row);
  }
  std::vector<std::string> header = {"rank", what};
  header.insert(header.end(), extra_header.begin(), extra_header.end());
  header.push_back("score");
  std::vector<bool> right(header.size(), false);
  right[0] = true;
  right.back() = true;
  return table(header, rows, right);
}

/// A baseline method's line: "  method ig (riemann, 100 steps, baseline zero), objective
/// logit: f(x) 16.695449, f(baseline) 0.000000, completeness gap -2.838511".
inline std::string method_footer(const nlohmann::json& entry) {
  std::string s = "  method " + entry.at("method").get<std::string>();
  if (entry.contains("ig")) {
    const nlohmann::json& ig = entry.at("ig");
    s += " (" + ig.at("rule").get<std::string>() + ", " + std::to_string(ig.at("steps").get<long>()) + " steps, baseline " +
         ig.at("baseline").get<std::string>() + ")";
  }
  if (entry.contains("ablation")) s += " (" + entry.at("ablation").get<std::string>() + " ablation)";
  s += ", objective " + entry.value("objective", std::string("logit"));
  if (entry.contains("value")) s += ": f(x) " + signed_fixed(entry.at("value").get<double>(), 6);
  if (entry.contains("baseline_value"))
    s += ", f(baseline) " + signed_fixed(entry.at("baseline_value").get<double>(), 6) + ", completeness gap " +
         signed_fixed(entry.at("completeness_gap").get<double>(), 6);
  return s + "\n";
}

/// A bf16 run: "  bf16 products (KERNEL); vs float: max score error E (R of the largest),
/// top-10 overlap k/10, Spearman rho" (the comparison with --compare-float).
inline std::string precision_footer(const nlohmann::json& doc) {
  if (doc.value("precision", "") != "bf16") return "";
  const std::string kernel = doc.value("gemm_kernel", std::string());
  // Components that start after the last products (the last MLP's neurons) meet none.
  std::string s = "  bf16 products (" + (kernel.empty() ? std::string("none in this run") : kernel) + ")";
  if (doc.contains("bf16_vs_float")) {
    const nlohmann::json& a = doc.at("bf16_vs_float");
    s += "; vs float: max score error " + significant(a.at("max_abs_error").get<double>()) + " (" +
         significant(a.at("relative_error").get<double>()) + " of the largest), top-" +
         std::to_string(a.at("top_k").get<long>()) + " overlap " + std::to_string(a.at("top_k_overlap").get<long>()) + "/" +
         std::to_string(a.at("top_k").get<long>()) + ", Spearman " + fixed(a.at("spearman").get<double>(), 4);
  }
  return s + "\n";
}

/// "  bias score +0.000000[, position score ...][, chunk residual ... (K chunks)], completeness residual R";
/// a baseline method's entry (no bias component) gets method_footer.
inline std::string footer(const nlohmann::json& doc, const nlohmann::json& entry) {
  if (!entry.contains("bias_score")) return entry.contains("method") ? method_footer(entry) : "";
  std::string s = "  bias score " + signed_fixed(entry.at("bias_score").get<double>(), 6);
  if (entry.contains("position_score")) s += ", position score " + signed_fixed(entry.at("position_score").get<double>(), 6);
  if (entry.contains("chunk_residual_score")) {
    s += ", chunk residual " + signed_fixed(entry.at("chunk_residual_score").get<double>(), 6);
    if (doc.contains("chunks")) s += " (" + std::to_string(doc.at("chunks").get<long>()) + " chunks)";
  }
  return s + ", completeness residual " + exact_number(doc.value("residual_max_abs", 0.0)) + "\n" + precision_footer(doc);
}

/// Display name of a trace component: a token component shows its text.
inline std::string component_name(const std::string& label, const nlohmann::json& tokens) {
  if (label.rfind("token ", 0) == 0) {
    const std::size_t m = static_cast<std::size_t>(std::stoul(label.substr(6)));
    if (m < tokens.size()) return std::to_string(m) + " '" + printable(tokens[m].at("text").get<std::string>()) + "'";
  }
  return label;
}

/// The components that end strongest (|score at the last boundary|), at most `top`.
inline std::vector<std::size_t> strongest_at_end(const nlohmann::json& trace, std::size_t top) {
  const auto last = numbers(trace.at("scores").back());
  std::vector<std::size_t> order(last.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return std::abs(last[a]) > std::abs(last[b]); });
  order.resize(std::min(top, order.size()));
  return order;
}

/// A layer trace as a table: one row per boundary; the lens logit of the real state, the
/// strongest components and the rest summed.
inline std::string trace_table(const nlohmann::json& trace, const nlohmann::json& tokens, std::size_t top = 4) {
  if (!trace.contains("scores") || trace.at("scores").empty()) return "";
  const auto labels = trace.at("components");
  const std::vector<std::size_t> shown = strongest_at_end(trace, top);
  std::vector<std::string> header = {"boundary", "lens"};
  for (std::size_t m : shown) header.push_back(component_name(labels[m].get<std::string>(), tokens));
  header.push_back("rest");
  std::vector<std::vector<std::string>> rows;
  const auto& names = trace.at("boundary_names");
  for (std::size_t b = 0; b < trace.at("scores").size(); ++b) {
    const auto row = numbers(trace.at("scores")[b]);
    std::vector<std::string> cells = {names[b].get<std::string>(), signed_fixed(trace.at("lens")[b].get<double>(), 3)};
    double rest = 0;
    for (double v : row) rest += v;
    for (std::size_t m : shown) {
      cells.push_back(signed_fixed(row[m], 3));
      rest -= row[m];
    }
    cells.push_back(signed_fixed(rest, 3));
    rows.push_back(cells);
  }
  std::vector<bool> right(header.size(), true);
  right[0] = false;
  return "  layer trace (logit lens of each component at each boundary):\n" + table(header, rows, right);
}

/// Several methods side by side: one row per reachable position, one column per method,
/// each cell coloured on its method's own scale.
inline std::string methods_table(const nlohmann::json& doc, std::size_t reach, const TerminalOptions& options) {
  const auto texts = token_texts(doc.at("tokens"));
  std::vector<std::string> header = {"pos", "token"};
  std::vector<std::vector<double>> columns;
  std::vector<double> scales;
  for (const auto& m : doc.at("methods")) {
    header.push_back(m.at("method").get<std::string>());
    columns.push_back(numbers(m.at("scores")));
    double scale = 0;
    for (std::size_t i = 0; i < std::min(reach, columns.back().size()); ++i) scale = std::max(scale, std::abs(columns.back()[i]));
    scales.push_back(scale);
  }
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < reach; ++i) {
    std::vector<std::string> row = {std::to_string(i), "'" + printable(texts[i]) + "'"};
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const double v = i < columns[c].size() ? columns[c][i] : 0.0;
      row.push_back(colourise(signed_fixed(v, 4), diverging_colour(v, scales[c]), options.color));
    }
    rows.push_back(row);
  }
  std::vector<bool> right(header.size(), true);
  right[1] = false;
  std::string out = "  methods side by side (each column on its own scale):\n" + table(header, rows, right);
  for (const auto& m : doc.at("methods")) out += footer(doc, m);
  return out;
}

inline std::string render_tokens(const nlohmann::json& doc, const TerminalOptions& options) {
  const ColorMode mode = options.color;
  const auto texts = token_texts(doc.at("tokens"));
  const auto scores = numbers(doc.at("scores"));
  const std::size_t reach = std::min(texts.size(), doc.value("reachable_positions", texts.size()));
  const std::vector<std::string> reachable(texts.begin(), texts.begin() + static_cast<std::ptrdiff_t>(reach));
  const std::vector<double> reached(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(std::min(reach, scores.size())));
  std::string out = target_line(doc);
  double scale = 0;
  for (double s : reached) scale = std::max(scale, std::abs(s));
  out += token_heatmap(reachable, reached, mode, options.width);
  if (reach < texts.size()) {
    out += "  unreachable (after position " + std::to_string(reach - 1) + ", causal mask):";
    for (std::size_t i = reach; i < texts.size(); ++i) out += " '" + printable(texts[i]) + "'";
    out += "\n";
  }
  out += legend(scale, mode);
  std::vector<std::string> labels;
  std::vector<std::vector<std::string>> extra;
  for (std::size_t i = 0; i < reach; ++i) {
    labels.push_back(std::to_string(i));
    extra.push_back({"'" + printable(texts[i]) + "'"});
  }
  out += ranking(labels, reached, options.top, "pos", {"token"}, extra) + footer(doc, doc);
  if (doc.contains("methods")) out += methods_table(doc, reach, options);
  if (doc.contains("trace")) out += trace_table(doc.at("trace"), doc.at("tokens"));
  return out;
}

inline std::string render_modules(const nlohmann::json& doc, const TerminalOptions& options) {
  std::vector<std::string> rows;
  std::vector<std::vector<double>> values;
  std::string chunk;
  for (const auto& m : doc.at("modules")) {
    const std::size_t layer = m.at("layer").get<std::size_t>();
    if (values.size() <= layer) {
      values.resize(layer + 1, std::vector<double>(2, 0.0));
      rows.resize(layer + 1);
      rows[layer] = "layer " + std::to_string(layer);
    }
    values[layer][m.at("site").get<std::string>() == "mlp" ? 1 : 0] = m.at("score").get<double>();
    if (m.contains("chunk_residual_score"))
      chunk += " " + m.at("label").get<std::string>() + " " + signed_fixed(m.at("chunk_residual_score").get<double>(), 4) + ";";
  }
  std::string out = target_line(doc) + heat_grid(rows, {"attention", "mlp"}, values, options.color);
  out += "  (each module's output propagated to the logits; residual + module + bias = logit)\n";
  if (!chunk.empty()) out += "  chunk residual per run:" + chunk + "\n";
  return out + precision_footer(doc);
}

inline std::string render_heads(const nlohmann::json& doc, const TerminalOptions& options) {
  std::vector<std::string> rows, cols, labels;
  std::vector<std::vector<double>> values;
  std::vector<double> flat;
  const std::size_t H = doc.at("n_heads").get<std::size_t>();
  for (std::size_t h = 0; h < H; ++h) cols.push_back("h" + std::to_string(h));
  std::string chunk, traces;
  for (const auto& l : doc.at("layers")) {
    const long layer = l.at("layer").get<long>();
    rows.push_back("layer " + std::to_string(layer));
    values.push_back(numbers(l.at("heads")));
    for (std::size_t h = 0; h < values.back().size(); ++h) {
      labels.push_back("L" + std::to_string(layer) + " h" + std::to_string(h));
      flat.push_back(values.back()[h]);
    }
    if (l.contains("chunk_residual_score"))
      chunk += " layer " + std::to_string(layer) + " " + signed_fixed(l.at("chunk_residual_score").get<double>(), 4) + ";";
    if (l.contains("trace")) traces += "  layer " + std::to_string(layer) + ":\n" + trace_table(l.at("trace"), doc.at("tokens"));
  }
  std::string out = target_line(doc) + heat_grid(rows, cols, values, options.color) + ranking(labels, flat, options.top, "head");
  if (!chunk.empty()) out += "  chunk residual per layer:" + chunk + "\n";
  if (doc.contains("method") && doc.at("method") != "depass") out += method_footer(doc);
  return out + precision_footer(doc) + traces;
}

inline std::string render_neurons(const nlohmann::json& doc, const TerminalOptions& options) {
  std::string out = target_line(doc) + "  layer " + std::to_string(doc.at("layer").get<long>()) + ": " +
                    std::to_string(doc.at("n_neurons").get<long>()) + " neurons, ranked by " + doc.at("order").get<std::string>() +
                    "\n";
  std::vector<std::vector<std::string>> rows;
  double scale = 0;
  for (const auto& t : doc.at("top")) scale = std::max(scale, std::abs(t.at("score").get<double>()));
  for (const auto& t : doc.at("top")) {
    const double s = t.at("score").get<double>();
    rows.push_back({std::to_string(t.at("rank").get<long>()), std::to_string(t.at("neuron").get<long>()),
                    colourise(signed_fixed(s, 4), diverging_colour(s, scale), options.color)});
  }
  out += table({"rank", "neuron", "score"}, rows, {true, true, true});
  if (doc.contains("residual_score"))
    out += "  residual " + signed_fixed(doc.at("residual_score").get<double>(), 4) + ", other neurons " +
           signed_fixed(doc.at("other_score").get<double>(), 4) + "\n";
  return out + footer(doc, doc);
}

inline std::string render_components(const nlohmann::json& doc, const TerminalOptions& options, bool with_footer) {
  std::vector<std::vector<std::string>> rows;
  double scale = 0;
  for (const auto& c : doc.at("components")) scale = std::max(scale, std::abs(c.at("score").get<double>()));
  for (const auto& c : doc.at("components")) {
    const double s = c.at("score").get<double>();
    std::string top;
    for (const auto& t : c.value("top_tokens", nlohmann::json::array())) {
      if (!top.empty()) top += " ";
      top += "'" + printable(t.at("text").get<std::string>()) + "'";
    }
    rows.push_back({printable(c.at("label").get<std::string>()),
                    colourise(signed_fixed(s, 4), diverging_colour(s, scale), options.color), top});
  }
  std::string out = target_line(doc) + table({"component", "score", "top tokens"}, rows, {false, true, false});
  return with_footer ? out + footer(doc, doc) : out;
}

inline std::string render_generate(const nlohmann::json& doc, const TerminalOptions& options) {
  const ColorMode mode = options.color;
  const auto texts = token_texts(doc.at("tokens"));
  std::ostringstream out;
  out << bold("prompt:", mode) << " " << printable(doc.at("prompt").get<std::string>()) << "\n"
      << bold("generated:", mode) << " " << printable(doc.at("text").get<std::string>()) << "\n";
  for (const auto& s : doc.at("steps")) {
    const auto scores = numbers(s.at("scores"));
    std::vector<std::string> shown(texts.begin(), texts.begin() + static_cast<std::ptrdiff_t>(scores.size()));
    out << "\nstep " << s.at("step").get<long>() << ": " << bold("'" + printable(s.at("token").at("text").get<std::string>()) + "'", mode);
    if (s.contains("contrast"))
      out << " vs '" << printable(s.at("contrast").at("text").get<std::string>()) << "' (logit difference "
          << fixed(s.at("logit_difference").get<double>(), 3) << ", prob " << significant(s.at("token").at("prob").get<double>())
          << " vs " << significant(s.at("contrast").at("prob").get<double>());
    else
      out << " (logit " << fixed(s.at("token").at("logit").get<double>(), 3) << ", prob "
          << significant(s.at("token").at("prob").get<double>());
    out << ", bias " << signed_fixed(s.at("bias_score").get<double>(), 3);
    if (s.contains("chunk_residual_score")) out << ", chunk residual " << signed_fixed(s.at("chunk_residual_score").get<double>(), 3);
    out << ")\n" << token_heatmap(shown, scores, mode, options.width);
    std::vector<std::size_t> order(scores.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
    out << "  top:";
    for (std::size_t r = 0; r < std::min<std::size_t>(options.step_top, order.size()); ++r)
      out << " '" << printable(shown[order[r]]) << "'@" << order[r] << " " << signed_fixed(scores[order[r]], 3);
    out << "\n";
  }
  return out.str();
}

/// Key/value table of a flat document (objects one level deep as key.subkey).
inline std::string render_fields(const nlohmann::json& doc) {
  std::vector<std::vector<std::string>> rows;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.key() == "schema") continue;
    if (it.value().is_object()) {
      for (auto jt = it.value().begin(); jt != it.value().end(); ++jt)
        rows.push_back({it.key() + "." + jt.key(), jt.value().is_string() ? jt.value().get<std::string>() : jt.value().dump()});
    } else {
      rows.push_back({it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump()});
    }
  }
  return table({"field", "value"}, rows);
}

/// Tokens as running text on alternating backgrounds, so that their boundaries show (as
/// tokenizer playgrounds do); nothing without colour, where the table says it all.
inline std::string token_boundaries(const std::vector<std::string>& tokens, ColorMode mode, std::size_t width = 80) {
  if (mode == ColorMode::None) return "";
  const Rgb shades[2] = {{204, 229, 255}, {255, 224, 178}};
  std::string out, line;
  std::size_t column = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string cell = printable(tokens[i]);
    const std::size_t w = display_width(cell);
    if (column > 0 && column + w > width) {
      out += line + "\n";
      line.clear();
      column = 0;
    }
    line += colourise(cell, shades[i % 2], mode);
    column += w;
  }
  return out + line + "\n\n";
}

/// depass tokenize: the tokens as coloured running text (with colour), then one row per
/// token (position, id, piece).
inline std::string render_tokenize(const nlohmann::json& doc, ColorMode mode) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> pieces;
  const auto& tokens = doc.at("tokens");
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    pieces.push_back(tokens[i].at("text").get<std::string>());
    rows.push_back({std::to_string(i), std::to_string(tokens[i].at("id").get<long>()), "'" + printable(pieces.back()) + "'"});
  }
  return token_boundaries(pieces, mode) + table({"pos", "id", "piece"}, rows, {true, true, false}) + "  " +
         std::to_string(tokens.size()) + " tokens" + (doc.value("bos", false) ? " (BOS included)" : "") + "\n";
}

}  // namespace detail_terminal

/// Human-readable rendering of any depass document: heatmaps, grids and ranked tables.
inline std::string render_terminal(const nlohmann::json& doc, const TerminalOptions& options = {}) {
  using namespace detail_terminal;
  const std::string kind = document_kind(doc);
  if (kind == "tokens") return render_tokens(doc, options);
  if (kind == "modules") return render_modules(doc, options);
  if (kind == "heads") return render_heads(doc, options);
  if (kind == "neurons") return render_neurons(doc, options);
  if (kind == "subspace" || kind == "decode") return render_components(doc, options, kind == "subspace");
  if (kind == "generate") return render_generate(doc, options);
  if (kind == "tokenize") return render_tokenize(doc, options.color);
  if (kind == "info") return render_fields(doc);
  return to_json_text(doc);
}

/// A one-line progress bar, redrawn in place with '\r' (at most every 50 ms) and cleared
/// by finish(). Disabled bars print nothing: pass enabled = false when the stream is
/// not a terminal.
class ProgressBar {
 public:
  ProgressBar(std::ostream& out, std::string label, long total, bool enabled, std::string unit = "layers")
      : out_(out), label_(std::move(label)), unit_(std::move(unit)), total_(std::max(1L, total)), enabled_(enabled),
        start_(std::chrono::steady_clock::now()) {}
  ~ProgressBar() { finish(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  long done() const { return done_; }
  long total() const { return total_; }
  void set_total(long total) { total_ = std::max(1L, total); }

  void advance(long n = 1) {
    done_ += n;
    if (!enabled_ || finished_) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_draw_ < std::chrono::milliseconds(50) && done_ < total_) return;
    last_draw_ = now;
    drawn_ = true;
    draw(now);
  }

  /// Erases the bar for now (to print a message); the next advance draws it again.
  void suspend() {
    if (enabled_ && drawn_ && !finished_) out_ << "\r\x1b[2K" << std::flush;
    drawn_ = false;
  }

  /// Erases the bar (if drawn); later advances print nothing.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (enabled_ && drawn_) out_ << "\r\x1b[2K" << std::flush;
  }

  /// The bar as text, e.g. "tokens [#######.............]  35% 7/20 layers 0.4s".
  static std::string format(const std::string& label, long done, long total, double seconds, int width = 30,
                            const std::string& unit = "layers") {
    const double f = total > 0 ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total)) : 0.0;
    const int filled = static_cast<int>(f * width);
    std::string s = label + " [" + std::string(static_cast<std::size_t>(filled), '#') +
                    std::string(static_cast<std::size_t>(width - filled), '.') + "] ";
    char tail[96];
    std::snprintf(tail, sizeof tail, "%3d%% %ld/%ld ", static_cast<int>(f * 100 + 0.5), std::min(done, total), total);
    char time[32];
    std::snprintf(time, sizeof time, " %.1fs", seconds);
    return s + tail + unit + time;
  }

 private:
  void draw(std::chrono::steady_clock::time_point now) {
    const double seconds = std::chrono::duration<double>(now - start_).count();
    out_ << "\r" << format(label_, done_, total_, seconds, 30, unit_) << std::flush;
  }

  std::ostream& out_;
  std::string label_;
  std::string unit_;
  long total_;
  long done_ = 0;
  bool enabled_;
  bool drawn_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace output
}  // namespace depass
