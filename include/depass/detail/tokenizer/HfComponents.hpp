#pragma once
// The pieces of a Hugging Face `tokenizers` pipeline that depass supports, with the
// semantics of the Rust library (huggingface/tokenizers): normalizers, the added-token
// splitter, the BPE model and the decoders. Parsing from tokenizer.json lives in
// HuggingFace.hpp; everything here works on already-validated data.

#include <algorithm>
#include <cstdint>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "ByteLevel.hpp"
#include "Unicode.hpp"
#include "Utf8.hpp"

namespace depass {
namespace detail {
namespace hf {

/// Replace every non-overlapping occurrence of `from` (scanning left to right).
inline std::string replace_all(const std::string& text, const std::string& from,
                               const std::string& to) {
  if (from.empty()) return text;
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  for (;;) {
    const std::size_t hit = text.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(text, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(text, pos, std::string::npos);
  return out;
}

// ---------------------------------------------------------------------------
// Normalizers (a Sequence is flattened into its steps)

struct NormalizerStep {
  enum class Kind { Prepend, Replace, NFC } kind = Kind::Prepend;
  std::string text;         // Prepend: what to prepend; Replace: the pattern
  std::string replacement;  // Replace only
};

inline std::string normalize(const std::vector<NormalizerStep>& steps, std::string text) {
  for (const NormalizerStep& step : steps) {
    if (step.kind == NormalizerStep::Kind::Prepend) {
      // tokenizers' Prepend leaves an empty string empty.
      if (!text.empty()) text = step.text + text;
    } else if (step.kind == NormalizerStep::Kind::NFC) {
      text = unicode::nfc(text);
    } else {
      text = replace_all(text, step.text, step.replacement);
    }
  }
  return text;
}

// ---------------------------------------------------------------------------
// Added tokens

struct AddedToken {
  int id = -1;
  std::string content;
  bool normalized = true;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

/// A piece of the input: either text still to be tokenized, or an added token.
struct Segment {
  std::string text;
  int id = -1;  // >= 0: an added token
};

/// Leftmost-longest, non-overlapping matching of a set of patterns, as the
/// Aho-Corasick automaton tokenizers builds (MatchKind::LeftmostLongest). A byte trie
/// is enough: patterns are few and short, and at each position we only need the
/// longest pattern starting there.
class PatternSplitter {
 public:
  /// `token` is the added token this pattern stands for (for its id and strip flags).
  /// When two tokens share a pattern the first one added wins, as in tokenizers.
  void add(const std::string& pattern, const AddedToken& token) {
    if (pattern.empty()) return;
    int node = 0;
    for (unsigned char c : pattern) {
      auto it = nodes_[node].children.find(c);
      if (it == nodes_[node].children.end()) {
        nodes_.push_back(Node{});
        it = nodes_[node].children.emplace(c, static_cast<int>(nodes_.size() - 1)).first;
      }
      node = it->second;
    }
    if (nodes_[node].token < 0) {
      nodes_[node].token = static_cast<int>(tokens_.size());
      tokens_.push_back(token);
    }
  }

  bool empty() const { return tokens_.empty(); }

  /// `text` cut into plain text and added tokens (empty text pieces dropped), with the
  /// lstrip/rstrip whitespace absorption of tokenizers' AddedVocabulary::find_matches.
  std::vector<Segment> split(const std::string& text) const {
    std::vector<Segment> out;
    if (tokens_.empty()) {
      if (!text.empty()) out.push_back(Segment{text, -1});
      return out;
    }
    std::size_t done = 0;  // everything before this offset is already emitted
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t match_len = 0;
      int match = -1;
      int node = 0;
      for (std::size_t k = pos; k < text.size(); ++k) {
        const auto it = nodes_[node].children.find(static_cast<unsigned char>(text[k]));
        if (it == nodes_[node].children.end()) break;
        node = it->second;
        if (nodes_[node].token >= 0) {
          match = nodes_[node].token;
          match_len = k + 1 - pos;
        }
      }
      if (match < 0) {
        ++pos;
        continue;
      }
      const AddedToken& token = tokens_[static_cast<std::size_t>(match)];
      std::size_t start = pos, stop = pos + match_len;
      if (token.lstrip) start = std::max(whitespace_run_start(text, done, start), done);
      if (token.rstrip) stop = whitespace_run_end(text, stop);
      if (done < start) out.push_back(Segment{text.substr(done, start - done), -1});
      out.push_back(Segment{text.substr(start, stop - start), token.id});
      done = stop;
      pos = stop;
    }
    if (done < text.size()) out.push_back(Segment{text.substr(done), -1});
    return out;
  }

 private:
  struct Node {
    std::unordered_map<unsigned char, int> children;
    int token = -1;
  };

  // Start of the run of Unicode whitespace that ends at `end` (not before `floor`).
  static std::size_t whitespace_run_start(const std::string& text, std::size_t floor,
                                          std::size_t end) {
    std::size_t start = end;
    while (start > floor) {
      std::size_t lead = start - 1;
      while (lead > floor && utf8::is_continuation(static_cast<unsigned char>(text[lead]))) --lead;
      const std::size_t len = utf8::sequence_length(text, lead);
      if (len == 0 || lead + len != start || !utf8::is_whitespace(utf8::decode_at(text, lead, len)))
        break;
      start = lead;
    }
    return start;
  }

  // End of the run of Unicode whitespace that starts at `begin`.
  static std::size_t whitespace_run_end(const std::string& text, std::size_t begin) {
    std::size_t end = begin;
    while (end < text.size()) {
      const std::size_t len = utf8::sequence_length(text, end);
      if (len == 0 || !utf8::is_whitespace(utf8::decode_at(text, end, len))) break;
      end += len;
    }
    return end;
  }

  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::vector<AddedToken> tokens_;
};

// ---------------------------------------------------------------------------
// BPE model

struct BpeModel {
  std::unordered_map<std::string, int> vocab;  // the model's own vocabulary
  // (left id, right id) -> (rank, merged id); a later duplicate overwrites, as in
  // tokenizers (its MergeMap is collected into a HashMap).
  std::unordered_map<std::uint64_t, std::pair<int, int>> merges;
  int unk_id = -1;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  int byte_ids[256];  // id of "<0xNN>", -1 if absent

  BpeModel() {
    for (int& id : byte_ids) id = -1;
  }

  static std::uint64_t pair_key(int left, int right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
  }

  /// tokenizers' BPE::tokenize on one pre-tokenized word (valid UTF-8).
  void tokenize(const std::string& word, std::vector<int>& out) const {
    if (word.empty()) return;
    if (ignore_merges) {
      const auto it = vocab.find(word);
      if (it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    std::vector<Symbol> symbols = initial_symbols(word);
    merge_all(symbols);
    for (const Symbol& s : symbols)
      if (s.len != 0) out.push_back(s.id);
  }

 private:
  struct Symbol {
    int id;
    int prev;
    int next;
    std::size_t len;  // bytes covered; 0 marks a symbol merged into its left neighbour
  };

  static void add(std::vector<Symbol>& symbols, int id, std::size_t len) {
    const int index = static_cast<int>(symbols.size());
    if (!symbols.empty()) symbols.back().next = index;
    symbols.push_back(Symbol{id, index - 1, -1, len});
  }

  // BPE::merge_word before merging: one symbol per character, characters missing from
  // the vocabulary become their <0xNN> byte tokens (if all exist) or <unk>, fused
  // with a preceding <unk> when fuse_unk.
  std::vector<Symbol> initial_symbols(const std::string& word) const {
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    int pending_unk = -1;
    std::size_t pending_len = 0;
    std::string key;
    for (std::size_t i = 0; i < word.size();) {
      std::size_t len = utf8::sequence_length(word, i);
      if (len == 0) len = 1;  // unreachable: the caller validated the text
      const bool first = i == 0, last = i + len == word.size();
      key.assign(word, i, len);
      if (!first && !continuing_subword_prefix.empty()) key = continuing_subword_prefix + key;
      if (last && !end_of_word_suffix.empty()) key += end_of_word_suffix;
      const auto it = vocab.find(key);
      if (it != vocab.end()) {
        if (pending_unk >= 0) {
          add(symbols, pending_unk, pending_len);
          pending_unk = -1;
        }
        add(symbols, it->second, len);
      } else if (byte_fallback && all_bytes_known(key)) {
        // tokenizers does not flush a pending <unk> here; neither do we.
        for (unsigned char b : key) add(symbols, byte_ids[b], 1);
      } else if (unk_id >= 0) {
        if (pending_unk >= 0 && fuse_unk) {
          pending_len += len;
        } else {
          if (pending_unk >= 0) add(symbols, pending_unk, pending_len);
          pending_unk = unk_id;
          pending_len = len;
        }
      }
      // With no unk token the character is dropped, as tokenizers does.
      i += len;
    }
    if (pending_unk >= 0) add(symbols, pending_unk, pending_len);
    return symbols;
  }

  bool all_bytes_known(const std::string& text) const {
    for (unsigned char b : text)
      if (byte_ids[b] < 0) return false;
    return true;
  }

  // Word::merge_all: a min-heap on (rank, position); an entry is stale when the pair
  // at its position no longer maps to the merge it was queued for.
  void merge_all(std::vector<Symbol>& symbols) const {
    struct Merge {
      int pos;
      int rank;
      int new_id;
    };
    struct Later {
      bool operator()(const Merge& a, const Merge& b) const {
        if (a.rank != b.rank) return a.rank > b.rank;
        return a.pos > b.pos;
      }
    };
    std::priority_queue<Merge, std::vector<Merge>, Later> queue;
    auto lookup = [&](int left, int right) -> const std::pair<int, int>* {
      const auto it = merges.find(pair_key(left, right));
      return it == merges.end() ? nullptr : &it->second;
    };
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i)
      if (const auto* m = lookup(symbols[i].id, symbols[i + 1].id))
        queue.push(Merge{static_cast<int>(i), m->first, m->second});

    while (!queue.empty()) {
      const Merge top = queue.top();
      queue.pop();
      Symbol& left = symbols[static_cast<std::size_t>(top.pos)];
      if (left.len == 0 || left.next == -1) continue;
      const int right_pos = left.next;
      const Symbol right = symbols[static_cast<std::size_t>(right_pos)];
      const auto* current = lookup(left.id, right.id);
      if (current == nullptr || current->second != top.new_id) continue;

      left.id = top.new_id;
      left.len += right.len;
      left.next = right.next;
      symbols[static_cast<std::size_t>(right_pos)].len = 0;
      if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.pos;

      if (left.prev >= 0) {
        const Symbol& before = symbols[static_cast<std::size_t>(left.prev)];
        if (const auto* m = lookup(before.id, left.id)) queue.push(Merge{left.prev, m->first, m->second});
      }
      if (left.next >= 0) {
        const Symbol& after = symbols[static_cast<std::size_t>(left.next)];
        if (const auto* m = lookup(left.id, after.id)) queue.push(Merge{top.pos, m->first, m->second});
      }
    }
  }
};

// ---------------------------------------------------------------------------
// Decoders (a Sequence is flattened into its steps)

struct DecoderStep {
  enum class Kind { Replace, ByteFallback, Fuse, Strip, ByteLevel } kind = Kind::Fuse;
  std::string pattern, content;  // Replace: pattern -> content; Strip: content (one char)
  std::size_t start = 0, stop = 0;  // Strip: at most this many chars at each end
};

/// "<0xNN>" with two hex digits is a byte token (the ByteFallback decoder's test).
inline bool parse_byte_token(const std::string& token, unsigned char* byte) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return false;
  int value = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = token[static_cast<std::size_t>(k)];
    int digit;
    if (c >= '0' && c <= '9')
      digit = c - '0';
    else if (c >= 'a' && c <= 'f')
      digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      digit = c - 'A' + 10;
    else
      return false;
    value = value * 16 + digit;
  }
  *byte = static_cast<unsigned char>(value);
  return true;
}

/// ByteFallback: runs of <0xNN> tokens become their bytes; an invalid UTF-8 run becomes one
/// U+FFFD per byte, unless `streaming` (the caller completes the character).
inline std::vector<std::string> decode_byte_fallback(std::vector<std::string> tokens, bool streaming) {
  std::vector<std::string> out;
  std::string bytes;
  std::size_t byte_count = 0;
  auto flush = [&]() {
    if (byte_count == 0) return;
    if (streaming || utf8::is_valid(bytes)) {
      out.push_back(bytes);
    } else {
      for (std::size_t k = 0; k < byte_count; ++k) out.push_back("\xEF\xBF\xBD");
    }
    bytes.clear();
    byte_count = 0;
  };
  for (std::string& t : tokens) {
    unsigned char byte = 0;
    if (parse_byte_token(t, &byte)) {
      bytes.push_back(static_cast<char>(byte));
      ++byte_count;
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  return out;
}

/// ByteLevel: each token's characters back to the bytes they stand for; a token with a
/// character outside the alphabet (an added token, say) keeps its own UTF-8. tokenizers then
/// decodes all bytes as one lossy UTF-8 string; streaming keeps the raw bytes so that a
/// character split over tokens is rebuilt by the caller.
inline std::vector<std::string> decode_byte_level(const std::vector<std::string>& tokens, bool streaming) {
  const ByteAlphabet& alphabet = ByteAlphabet::get();
  std::string bytes;
  for (const std::string& t : tokens) {
    std::string mapped;
    bool all = true;
    for (std::uint32_t cp : unicode::code_points(t)) {
      const int b = alphabet.decode(cp);
      if (b < 0) {
        all = false;
        break;
      }
      mapped += static_cast<char>(b);
    }
    bytes += all ? mapped : t;
  }
  return {streaming ? bytes : utf8::sanitize(bytes)};
}

/// Strip: up to `start` leading and `stop` trailing copies of the content from each token.
inline void strip_tokens(std::vector<std::string>& tokens, const std::string& content, std::size_t start,
                         std::size_t stop) {
  for (std::string& t : tokens) {
    std::size_t begin = 0;
    for (std::size_t k = 0; k < start && begin < t.size() && t.compare(begin, content.size(), content) == 0; ++k)
      begin += content.size();
    std::size_t end = t.size();
    for (std::size_t k = 0; k < stop && end >= begin + content.size() &&
                            t.compare(end - content.size(), content.size(), content) == 0;
         ++k)
      end -= content.size();
    t = t.substr(begin, end - begin);
  }
}

/// Applies the decoder steps to token strings, as tokenizers' decode_chain does.
/// `streaming` decodes a single token for incremental output: byte tokens become
/// their raw byte (a character split over several byte tokens is then completed by
/// the caller's concatenation, instead of each byte becoming U+FFFD), Strip removes
/// leading content only when `at_start`, and never trailing content (the end of the
/// text is not known yet).
inline std::vector<std::string> run_decoders(const std::vector<DecoderStep>& steps,
                                             std::vector<std::string> tokens, bool streaming,
                                             bool at_start) {
  for (const DecoderStep& step : steps) {
    switch (step.kind) {
      case DecoderStep::Kind::Replace:
        for (std::string& t : tokens) t = replace_all(t, step.pattern, step.content);
        break;
      case DecoderStep::Kind::ByteFallback:
        tokens = decode_byte_fallback(std::move(tokens), streaming);
        break;
      case DecoderStep::Kind::ByteLevel:
        tokens = decode_byte_level(tokens, streaming);
        break;
      case DecoderStep::Kind::Fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, all);
        break;
      }
      case DecoderStep::Kind::Strip:
        strip_tokens(tokens, step.content, streaming && !at_start ? 0 : step.start, streaming ? 0 : step.stop);
        break;
    }
  }
  return tokens;
}

}  // namespace hf
}  // namespace detail
}  // namespace depass
