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

inline std::string target_line(const nlohmann::json& target, long position) {
  return "target " + std::to_string(target.at("id").get<long>()) + " '" +
         printable(target.at("text").get<std::string>()) + "' at position " + std::to_string(position) + ": logit " +
         fixed(target.at("logit").get<double>(), 4) + ", prob " + fixed(target.at("prob").get<double>(), 4) + "\n";
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

}  // namespace detail_terminal

/// Human-readable rendering of any depass document: heatmaps, grids and ranked tables.
inline std::string render_terminal(const nlohmann::json& doc, const TerminalOptions& options = {}) {
  using namespace detail_terminal;
  const std::string kind = document_kind(doc);
  const ColorMode mode = options.color;
  std::ostringstream out;
  auto footer = [&](double bias) {
    out << "  bias score " << signed_fixed(bias, 6) << ", completeness residual "
        << exact_number(doc.value("residual_max_abs", 0.0)) << "\n";
  };
  if (kind == "tokens") {
    const auto texts = token_texts(doc.at("tokens"));
    const auto scores = numbers(doc.at("scores"));
    out << target_line(doc.at("target"), doc.at("position").get<long>());
    double scale = 0;
    for (double s : scores) scale = std::max(scale, std::abs(s));
    out << token_heatmap(texts, scores, mode, options.width) << legend(scale, mode);
    std::vector<std::string> labels;
    std::vector<std::vector<std::string>> extra;
    for (std::size_t i = 0; i < texts.size(); ++i) {
      labels.push_back(std::to_string(i));
      extra.push_back({"'" + printable(texts[i]) + "'"});
    }
    out << ranking(labels, scores, options.top, "pos", {"token"}, extra);
    footer(doc.at("bias_score").get<double>());
  } else if (kind == "modules") {
    out << target_line(doc.at("target"), doc.at("position").get<long>());
    std::vector<std::string> rows;
    std::vector<std::vector<double>> values;
    for (const auto& m : doc.at("modules")) {
      const std::size_t layer = m.at("layer").get<std::size_t>();
      if (values.size() <= layer) {
        values.resize(layer + 1, std::vector<double>(2, 0.0));
        rows.resize(layer + 1);
        rows[layer] = "layer " + std::to_string(layer);
      }
      values[layer][m.at("site").get<std::string>() == "mlp" ? 1 : 0] = m.at("score").get<double>();
    }
    out << heat_grid(rows, {"attention", "mlp"}, values, mode);
    out << "  (each module's output propagated to the logits; residual + module + bias = logit)\n";
  } else if (kind == "heads") {
    out << target_line(doc.at("target"), doc.at("position").get<long>());
    std::vector<std::string> rows, cols;
    std::vector<std::vector<double>> values;
    const std::size_t H = doc.at("n_heads").get<std::size_t>();
    for (std::size_t h = 0; h < H; ++h) cols.push_back("h" + std::to_string(h));
    std::vector<std::string> labels;
    std::vector<double> flat;
    for (const auto& l : doc.at("layers")) {
      const long layer = l.at("layer").get<long>();
      rows.push_back("layer " + std::to_string(layer));
      values.push_back(numbers(l.at("heads")));
      for (std::size_t h = 0; h < values.back().size(); ++h) {
        labels.push_back("L" + std::to_string(layer) + " h" + std::to_string(h));
        flat.push_back(values.back()[h]);
      }
    }
    out << heat_grid(rows, cols, values, mode) << ranking(labels, flat, options.top, "head");
  } else if (kind == "neurons") {
    out << target_line(doc.at("target"), doc.at("position").get<long>());
    out << "  layer " << doc.at("layer").get<long>() << ": " << doc.at("n_neurons").get<long>() << " neurons, ranked by "
        << doc.at("order").get<std::string>() << "\n";
    std::vector<std::vector<std::string>> rows;
    double scale = 0;
    for (const auto& t : doc.at("top")) scale = std::max(scale, std::abs(t.at("score").get<double>()));
    for (const auto& t : doc.at("top")) {
      const double s = t.at("score").get<double>();
      rows.push_back({std::to_string(t.at("rank").get<long>()), std::to_string(t.at("neuron").get<long>()),
                      colourise(signed_fixed(s, 4), diverging_colour(s, scale), mode)});
    }
    out << table({"rank", "neuron", "score"}, rows, {true, true, true});
    out << "  residual " << signed_fixed(doc.at("residual_score").get<double>(), 4) << ", other neurons "
        << signed_fixed(doc.at("other_score").get<double>(), 4) << "\n";
    footer(doc.at("bias_score").get<double>());
  } else if (kind == "subspace" || kind == "decode") {
    out << target_line(doc.at("target"), doc.at("position").get<long>());
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
      rows.push_back({printable(c.at("label").get<std::string>()), colourise(signed_fixed(s, 4), diverging_colour(s, scale), mode), top});
    }
    out << table({"component", "score", "top tokens"}, rows, {false, true, false});
    if (kind == "subspace") footer(doc.at("bias_score").get<double>());
  } else if (kind == "generate") {
    const auto texts = token_texts(doc.at("tokens"));
    out << bold("prompt:", mode) << " " << printable(doc.at("prompt").get<std::string>()) << "\n"
        << bold("generated:", mode) << " " << printable(doc.at("text").get<std::string>()) << "\n";
    for (const auto& s : doc.at("steps")) {
      const auto scores = numbers(s.at("scores"));
      std::vector<std::string> shown(texts.begin(), texts.begin() + static_cast<std::ptrdiff_t>(scores.size()));
      out << "\nstep " << s.at("step").get<long>() << ": "
          << bold("'" + printable(s.at("token").at("text").get<std::string>()) + "'", mode) << " (logit "
          << fixed(s.at("token").at("logit").get<double>(), 3) << ", prob " << fixed(s.at("token").at("prob").get<double>(), 3)
          << ", bias " << signed_fixed(s.at("bias_score").get<double>(), 3) << ")\n";
      out << token_heatmap(shown, scores, mode, options.width);
      std::vector<std::size_t> order(scores.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
      out << "  top:";
      for (std::size_t r = 0; r < std::min<std::size_t>(3, order.size()); ++r)
        out << " '" << printable(shown[order[r]]) << "'@" << order[r] << " " << signed_fixed(scores[order[r]], 3);
      out << "\n";
    }
  } else if (kind == "info") {
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
    out << table({"field", "value"}, rows);
  } else {
    out << to_json_text(doc);
  }
  return out.str();
}

/// A one-line progress bar, redrawn in place with '\r' (at most every 50 ms) and cleared
/// by finish(). Disabled bars print nothing: pass enabled = false when the stream is
/// not a terminal.
class ProgressBar {
 public:
  ProgressBar(std::ostream& out, std::string label, long total, bool enabled)
      : out_(out), label_(std::move(label)), total_(std::max(1L, total)), enabled_(enabled),
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

  /// Erases the bar (if drawn); later advances print nothing.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (enabled_ && drawn_) out_ << "\r\x1b[2K" << std::flush;
  }

  /// The bar as text, e.g. "tokens [#######.............]  35% 7/20 layers 0.4s".
  static std::string format(const std::string& label, long done, long total, double seconds, int width = 30) {
    const double f = total > 0 ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total)) : 0.0;
    const int filled = static_cast<int>(f * width);
    std::string s = label + " [" + std::string(static_cast<std::size_t>(filled), '#') +
                    std::string(static_cast<std::size_t>(width - filled), '.') + "] ";
    char tail[96];
    std::snprintf(tail, sizeof tail, "%3d%% %ld/%ld layers %.1fs", static_cast<int>(f * 100 + 0.5), std::min(done, total), total,
                  seconds);
    return s + tail;
  }

 private:
  void draw(std::chrono::steady_clock::time_point now) {
    const double seconds = std::chrono::duration<double>(now - start_).count();
    out_ << "\r" << format(label_, done_, total_, seconds) << std::flush;
  }

  std::ostream& out_;
  std::string label_;
  long total_;
  long done_ = 0;
  bool enabled_;
  bool drawn_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace output
}  // namespace depass
