#pragma once
// UTF-8 helpers shared by the tokenizers. Text reaching a tokenizer is untrusted
// bytes: the llama2.c format deliberately does not validate it (run.c does not),
// the Hugging Face pipeline works on Unicode scalar values and so needs it valid.

#include <cstddef>
#include <cstdint>
#include <string>

namespace depass {
namespace detail {
namespace utf8 {

inline bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

/// Length of the well-formed UTF-8 sequence starting at `pos` (Unicode Table 3-7:
/// no overlong forms, no surrogates, nothing above U+10FFFF), or 0 if the bytes there
/// are ill-formed. When 0, `*maximal_subpart` (if given) receives the length of the
/// maximal ill-formed prefix that a decoder replaces by one U+FFFD (at least 1), the
/// convention Python's errors="replace" follows.
inline std::size_t sequence_length(const std::string& s, std::size_t pos,
                                   std::size_t* maximal_subpart = nullptr) {
  const std::size_t n = s.size();
  const unsigned char b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return 1;
  std::size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // excludes surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // caps at U+10FFFF
  } else {
    if (maximal_subpart) *maximal_subpart = 1;
    return 0;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    const std::size_t at = pos + k;
    const unsigned char b = at < n ? static_cast<unsigned char>(s[at]) : 0;
    const unsigned char l = k == 1 ? lo : 0x80;
    const unsigned char h = k == 1 ? hi : 0xBF;
    if (at >= n || b < l || b > h) {
      if (maximal_subpart) *maximal_subpart = k;
      return 0;
    }
  }
  return need + 1;
}

/// Byte offset of the first ill-formed sequence, or std::string::npos if `s` is valid.
inline std::size_t find_invalid(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = sequence_length(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string::npos;
}

inline bool is_valid(const std::string& s) { return find_invalid(s) == std::string::npos; }

/// `s` with every maximal ill-formed subsequence replaced by U+FFFD, so the result is
/// always valid UTF-8 (what Python's bytes.decode("utf-8", errors="replace") gives).
inline std::string sanitize(const std::string& s) {
  if (is_valid(s)) return s;
  std::string out;
  out.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size();) {
    std::size_t bad = 0;
    const std::size_t len = sequence_length(s, i, &bad);
    if (len > 0) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

/// Scalar value of the valid sequence of `len` bytes at `pos`.
inline std::uint32_t decode_at(const std::string& s, std::size_t pos, std::size_t len) {
  const unsigned char b0 = static_cast<unsigned char>(s[pos]);
  if (len == 1) return b0;
  std::uint32_t cp = b0 & (0x7F >> len);
  for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
  return cp;
}

/// Unicode White_Space property (what `\s` matches in the Rust regex crate, which
/// Hugging Face uses for the lstrip/rstrip of added tokens).
inline bool is_whitespace(std::uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

/// Number of Unicode scalar values in the valid UTF-8 string `s`.
inline std::size_t count_chars(const std::string& s) {
  std::size_t count = 0;
  for (unsigned char c : s)
    if (!is_continuation(c)) ++count;
  return count;
}

}  // namespace utf8
}  // namespace detail
}  // namespace depass
