#pragma once
// Small text and colour helpers shared by the depass::output writers.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <system_error>

namespace depass {
namespace output {

/// `text` with every invalid UTF-8 sequence replaced by U+FFFD, so that it can go into
/// JSON and HTML (token pieces can be single bytes of a multi-byte character).
inline std::string valid_utf8(const std::string& text) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) len = 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    bool ok = len > 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) {
      const unsigned char b = static_cast<unsigned char>(text[i + k]);
      ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    }
    if (ok) {
      out.append(text, i, len);
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

/// Token text for a terminal or a table cell: valid UTF-8, control characters escaped
/// (newline as \n, tab as \t, others as \xNN).
inline std::string printable(const std::string& text) {
  std::string out;
  for (unsigned char c : valid_utf8(text)) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

/// Number of terminal columns `text` takes: code points (UTF-8 continuation bytes do not
/// count) outside ANSI escape sequences (ESC [ ... final byte, which take no room).
/// Assumes no wide (East Asian) characters.
inline std::size_t display_width(const std::string& text) {
  std::size_t w = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == 0x1b && i + 1 < text.size() && text[i + 1] == '[') {
      i += 2;
      while (i < text.size() && !(text[i] >= 0x40 && text[i] <= 0x7e)) ++i;  // up to the final byte
      continue;
    }
    if ((c & 0xC0) != 0x80) ++w;
  }
  return w;
}

/// `value` with `digits` significant digits: "0.679", "0.0312", "3.21e-05" (scientific
/// below 1e-4, as printf's %g), "1" for exactly one.
inline std::string significant(double value, int digits = 3) {
  if (std::isnan(value)) return "nan";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*g", digits, value);
  return buffer;
}

/// Shortest decimal text that reads back as exactly `value` ("nan", "inf", "-inf" for
/// non-finite values).
inline std::string exact_number(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  const auto r = std::to_chars(buffer, buffer + sizeof buffer, value);
  if (r.ec != std::errc()) return std::to_string(value);
  return std::string(buffer, r.ptr);
}

/// `value` with a fixed number of decimals and an explicit sign: "+0.4483", "-1.2000".
inline std::string signed_fixed(double value, int decimals = 4) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%+.*f", decimals, value);
  return buffer;
}

/// `value` with a fixed number of decimals: "0.4483".
inline std::string fixed(double value, int decimals = 4) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

struct Rgb {
  int r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

/// "#rrggbb".
inline std::string hex(const Rgb& c) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "#%02x%02x%02x", c.r, c.g, c.b);
  return buffer;
}

/// Diverging colour scale (ColorBrewer RdBu end points): value / scale = -1 is blue,
/// 0 is near-white, +1 is red. The magnitude goes through a square root so that small
/// contributions stay visible next to one dominant token; the exact values are always
/// shown beside or on hover. Values beyond the scale saturate; scale <= 0 gives white.
inline Rgb diverging_colour(double value, double scale) {
  static const Rgb kNegative{33, 102, 172}, kZero{247, 247, 247}, kPositive{178, 24, 43};
  double t = (scale > 0 && std::isfinite(value)) ? value / scale : 0.0;
  t = std::max(-1.0, std::min(1.0, t));
  const double s = std::sqrt(std::abs(t));
  const Rgb& end = t >= 0 ? kPositive : kNegative;
  auto mix = [&](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * s)); };
  return Rgb{mix(kZero.r, end.r), mix(kZero.g, end.g), mix(kZero.b, end.b)};
}

/// Black or white, whichever reads better on `background`.
inline Rgb text_colour_on(const Rgb& background) {
  const double luminance = 0.2126 * background.r + 0.7152 * background.g + 0.0722 * background.b;
  return luminance > 140 ? Rgb{0, 0, 0} : Rgb{255, 255, 255};
}

}  // namespace output
}  // namespace depass
