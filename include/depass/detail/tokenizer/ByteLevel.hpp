#pragma once
// Byte-level BPE pieces (GPT-2, Llama 3, Qwen2 families): GPT-2's byte-to-unicode alphabet,
// the split regexes these families publish, and the pre-tokenizer steps of tokenizers
// (Split, ByteLevel) that use them.
//
// The regexes are not run by a general engine: each published pattern is recognised by its
// exact text and matched by hand-written code with the same semantics (leftmost-first
// alternation, greedy quantifiers with backtracking, as Oniguruma runs them inside
// `tokenizers`). Any other pattern is refused when the tokenizer is loaded.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "Unicode.hpp"
#include "Utf8.hpp"

namespace depass {
namespace detail {
namespace hf {

// ---------------------------------------------------------------------------------------------
// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 bytes
// (controls, space, DEL, NBSP, soft hyphen...) for U+0100 upwards in byte order, so that
// every byte is a visible character and BPE never sees whitespace or control characters.

class ByteAlphabet {
 public:
  static const ByteAlphabet& get() {
    static const ByteAlphabet alphabet;
    return alphabet;
  }

  /// The character (as UTF-8) standing for byte b.
  const std::string& encode(unsigned char b) const { return chars_[b]; }

  /// The byte a code point stands for, or -1 if it is not in the alphabet.
  int decode(std::uint32_t cp) const { return cp < 0x144 ? bytes_[cp] : -1; }

  /// `text` with every byte replaced by its character.
  std::string map(const std::string& text) const {
    std::string out;
    out.reserve(text.size() * 2);
    for (unsigned char b : text) out += chars_[b];
    return out;
  }

 private:
  ByteAlphabet() {
    for (int& b : bytes_) b = -1;
    std::uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const std::uint32_t cp = printable ? static_cast<std::uint32_t>(b) : next++;
      unicode::append_utf8(cp, chars_[b]);
      bytes_[cp] = b;
    }
  }

  std::string chars_[256];
  int bytes_[0x144];  // the alphabet's highest code point is U+0143
};

// ---------------------------------------------------------------------------------------------
// The published split patterns

enum class SplitRegex { Gpt2, Llama3, Qwen2 };

inline const char* split_regex_name(SplitRegex r) {
  switch (r) {
    case SplitRegex::Gpt2:
      return "GPT-2";
    case SplitRegex::Llama3:
      return "Llama 3";
    case SplitRegex::Qwen2:
      return "Qwen2";
  }
  return "?";
}

// As they appear in tokenizer.json (after JSON unescaping).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// The pattern with exactly this text, if it is one we implement.
inline bool recognise_split_regex(const std::string& pattern, SplitRegex* out) {
  if (pattern == kGpt2Pattern) {
    *out = SplitRegex::Gpt2;
  } else if (pattern == kLlama3Pattern) {
    *out = SplitRegex::Llama3;
  } else if (pattern == kQwen2Pattern) {
    *out = SplitRegex::Qwen2;
  } else {
    return false;
  }
  return true;
}

/// Matches one of the published patterns against code points.
class SplitMatcher {
 public:
  explicit SplitMatcher(SplitRegex regex) : regex_(regex) {}

  /// Length (in code points) of the match starting at i, or 0 if none starts there.
  std::size_t match_at(const std::vector<std::uint32_t>& s, std::size_t i) const {
    const bool gpt2 = regex_ == SplitRegex::Gpt2;
    if (std::size_t n = contraction(s, i, !gpt2)) return n;
    if (gpt2) {
      // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
      if (std::size_t n = space_then_run(s, i, is_letter)) return n;
      if (std::size_t n = space_then_run(s, i, is_number)) return n;
      if (std::size_t n = space_then_run(s, i, is_other)) return n;
    } else {
      // '[^\r\n\p{L}\p{N}]?\p{L}+'
      if (i + 1 < s.size() && !is_newline(s[i]) && !is_letter(s[i]) && !is_number(s[i]) &&
          is_letter(s[i + 1]))
        return 1 + run(s, i + 1, is_letter);
      if (is_letter(s[i])) return run(s, i, is_letter);
      // '\p{N}{1,3}' (Llama 3) or '\p{N}' (Qwen2)
      if (is_number(s[i])) {
        const std::size_t most = regex_ == SplitRegex::Llama3 ? 3 : 1;
        std::size_t n = 1;
        while (n < most && i + n < s.size() && is_number(s[i + n])) ++n;
        return n;
      }
      // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
      if (std::size_t n = space_then_run(s, i, is_other)) return n + run(s, i + n, is_newline);
      // '\s*[\r\n]+': the whitespace run up to and including its last CR or LF (the
      // greedy \s* backs off until [\r\n]+ can match, which then stops there).
      if (is_space(s[i])) {
        const std::size_t end = i + run(s, i, is_space);
        for (std::size_t k = end; k > i; --k)
          if (is_newline(s[k - 1])) return k - i;
      }
    }
    // '\s+(?!\S)': a whitespace run, less its last character when something follows it
    // (which the next match then takes, e.g. as the space before a word).
    if (is_space(s[i])) {
      const std::size_t n = run(s, i, is_space);
      if (i + n == s.size()) return n;
      if (n >= 2) return n - 1;
      return 1;  // '\s+'
    }
    return 0;
  }

 private:
  static bool is_letter(std::uint32_t cp) { return unicode::is_letter(cp); }
  static bool is_number(std::uint32_t cp) { return unicode::is_number(cp); }
  static bool is_space(std::uint32_t cp) { return unicode::is_space(cp); }
  static bool is_newline(std::uint32_t cp) { return cp == '\r' || cp == '\n'; }
  static bool is_other(std::uint32_t cp) {
    return !unicode::is_space(cp) && !unicode::is_letter(cp) && !unicode::is_number(cp);
  }

  template <typename Pred>
  static std::size_t run(const std::vector<std::uint32_t>& s, std::size_t i, Pred pred) {
    std::size_t n = 0;
    while (i + n < s.size() && pred(s[i + n])) ++n;
    return n;
  }

  // ' ?X+': an optional U+0020 (taken only if an X follows it), then a run of X.
  template <typename Pred>
  static std::size_t space_then_run(const std::vector<std::uint32_t>& s, std::size_t i, Pred pred) {
    const std::size_t space = s[i] == ' ' && i + 1 < s.size() && pred(s[i + 1]) ? 1 : 0;
    const std::size_t n = run(s, i + space, pred);
    return n == 0 ? 0 : space + n;
  }

  // "'s|'t|'re|'ve|'m|'ll|'d", optionally case-insensitive as (?i:...) is: Unicode simple
  // case folding, under which U+017F (long s) also matches s.
  static std::size_t contraction(const std::vector<std::uint32_t>& s, std::size_t i,
                                 bool fold_case) {
    if (s[i] != '\'' || i + 1 >= s.size()) return 0;
    auto is = [&](std::size_t k, char lower) {
      if (i + k >= s.size()) return false;
      const std::uint32_t c = s[i + k];
      if (c == static_cast<std::uint32_t>(lower)) return true;
      if (!fold_case) return false;
      return c == static_cast<std::uint32_t>(lower - 'a' + 'A') || (lower == 's' && c == 0x17F);
    };
    if (is(1, 's') || is(1, 't') || is(1, 'm') || is(1, 'd')) return 2;
    if ((is(1, 'r') && is(2, 'e')) || (is(1, 'v') && is(2, 'e')) || (is(1, 'l') && is(2, 'l')))
      return 3;
    return 0;
  }

  SplitRegex regex_;
};

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer steps

/// tokenizers' SplitDelimiterBehavior.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel } kind = Kind::ByteLevel;
  // Split
  bool literal = false;  // a String pattern (else one of the published regexes)
  std::string text;      // the String pattern
  SplitRegex regex = SplitRegex::Gpt2;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  // ByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;  // split with the GPT-2 pattern first
};

/// Byte ranges of `text` that the pattern matches and that it does not, in order and
/// covering all of it (tokenizers' Pattern::find_matches).
inline std::vector<std::pair<std::pair<std::size_t, std::size_t>, bool>> find_matches(
    const PreTokenizerStep& step, const std::string& text) {
  std::vector<std::pair<std::pair<std::size_t, std::size_t>, bool>> out;
  std::size_t gap = 0;  // start of the text not matched yet
  auto emit = [&](std::size_t begin, std::size_t end) {
    if (gap < begin) out.push_back({{gap, begin}, false});
    out.push_back({{begin, end}, true});
    gap = end;
  };
  if (step.literal) {
    if (!step.text.empty())
      for (std::size_t at = text.find(step.text); at != std::string::npos;
           at = text.find(step.text, at + step.text.size()))
        emit(at, at + step.text.size());
  } else {
    // Code points plus the byte offset of each (and of the end).
    const std::vector<std::uint32_t> cps = unicode::code_points(text);
    std::vector<std::size_t> offsets;
    offsets.reserve(cps.size() + 1);
    for (std::size_t i = 0; i < text.size();) {
      offsets.push_back(i);
      const std::size_t len = utf8::sequence_length(text, i);
      i += len == 0 ? 1 : len;
    }
    offsets.push_back(text.size());
    const SplitMatcher matcher(step.regex);
    for (std::size_t i = 0; i < cps.size();) {
      const std::size_t n = matcher.match_at(cps, i);
      if (n == 0) {
        ++i;  // no match starts here: it stays in the gap
        continue;
      }
      emit(offsets[i], offsets[i + n]);
      i += n;
    }
  }
  if (gap < text.size()) out.push_back({{gap, text.size()}, false});
  return out;
}

/// tokenizers' NormalizedString::split: pieces of `text` by the step's behavior.
inline void split_pieces(const PreTokenizerStep& step, const std::string& text,
                         std::vector<std::string>& out) {
  auto matches = find_matches(step, text);
  if (step.invert)
    for (auto& m : matches) m.second = !m.second;
  using Span = std::pair<std::size_t, std::size_t>;
  std::vector<Span> spans;
  switch (step.behavior) {
    case SplitBehavior::Removed:
      for (const auto& m : matches)
        if (!m.second) spans.push_back(m.first);
      break;
    case SplitBehavior::Isolated:
      for (const auto& m : matches) spans.push_back(m.first);
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool previous_match = false;
      for (const auto& m : matches) {
        if (m.second && !previous_match && !spans.empty())
          spans.back().second = m.first.second;
        else
          spans.push_back(m.first);
        previous_match = m.second;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous_match = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->second && !previous_match && !spans.empty())
          spans.back().first = it->first.first;
        else
          spans.push_back(it->first);
        previous_match = it->second;
      }
      std::reverse(spans.begin(), spans.end());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool previous_match = false;
      for (const auto& m : matches) {
        if (m.second == previous_match && !spans.empty())
          spans.back().second = m.first.second;
        else
          spans.push_back(m.first);
        previous_match = m.second;
      }
      break;
    }
  }
  for (const Span& s : spans)
    if (s.second > s.first) out.push_back(text.substr(s.first, s.second - s.first));
}

/// Runs the steps over one segment of normalised text: the words the BPE model sees.
inline std::vector<std::string> pre_tokenize(const std::vector<PreTokenizerStep>& steps,
                                             const std::string& text) {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  std::vector<std::string> next;
  for (const PreTokenizerStep& step : steps) {
    next.clear();
    for (std::string& piece : pieces) {
      if (step.kind == PreTokenizerStep::Kind::Split) {
        split_pieces(step, piece, next);
        continue;
      }
      // ByteLevel: the prefix space goes on every piece that lacks one, as in tokenizers.
      if (step.add_prefix_space && piece.compare(0, 1, " ") != 0) piece.insert(0, " ");
      std::vector<std::string> words;
      if (step.use_regex) {
        PreTokenizerStep gpt2;
        gpt2.kind = PreTokenizerStep::Kind::Split;
        gpt2.regex = SplitRegex::Gpt2;
        split_pieces(gpt2, piece, words);
      } else {
        words.push_back(std::move(piece));
      }
      for (const std::string& w : words) next.push_back(ByteAlphabet::get().map(w));
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace hf
}  // namespace detail
}  // namespace depass
