#pragma once
// The llama2.c tokenizer (tok*.bin): parsing and run.c's encode()/decode().
//
// File layout (little-endian): int32 max_token_length, then per token
// f32 score, int32 len, len bytes. The vocabulary size is not stored.
// Conventions fixed by llama2.c: id 0 <unk>, 1 BOS, 2 EOS, the piece of byte b
// at id b + 3, SentencePiece's "▁" already replaced by " " at export.

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <queue>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "../../Error.hpp"
#include "../File.hpp"
#include "Backend.hpp"
#include "Utf8.hpp"

namespace depass {
namespace detail {

class Llama2cTokenizer final : public TokenizerBackend {
 public:
  static constexpr std::int32_t kMaxTokenLengthLimit = 1 << 16;

  /// Parses the bytes of a tok*.bin file; `source` names it in error messages.
  /// `vocab_size_hint` < 0 reads tokens until the end of the data, otherwise
  /// exactly that many tokens must be present and nothing after them.
  Llama2cTokenizer(const std::string& bytes, const std::string& source, int vocab_size_hint)
      : source_(source) {
    ByteReader in(bytes.data(), bytes.size(), source);
    max_token_length_ = in.read<std::int32_t>("max_token_length");
    if (max_token_length_ < 1 || max_token_length_ > kMaxTokenLengthLimit)
      throw FormatError(source + ": max_token_length " + std::to_string(max_token_length_) +
                        " is out of range [1, " + std::to_string(kMaxTokenLengthLimit) + "]");
    const bool until_eof = vocab_size_hint < 0;
    for (int i = 0; until_eof ? in.remaining() > 0 : i < vocab_size_hint; ++i) {
      const std::string index = "token " + std::to_string(i);
      if (in.remaining() == 0)
        throw FormatError(source + ": has only " + std::to_string(i) + " tokens, expected " +
                          std::to_string(vocab_size_hint));
      const float score = in.read<float>((index + " score").c_str());
      const std::int32_t len = in.read<std::int32_t>((index + " length").c_str());
      if (!std::isfinite(score))
        throw FormatError(source + ": " + index + " has a non-finite score");
      if (len < 0 || len > max_token_length_)
        throw FormatError(source + ": " + index + " has length " + std::to_string(len) +
                          ", outside [0, max_token_length " + std::to_string(max_token_length_) +
                          "]");
      const char* text = in.take(static_cast<std::size_t>(len), (index + " bytes").c_str());
      pieces_.emplace_back(text, static_cast<std::size_t>(len));
      scores_.push_back(score);
      if (pieces_.size() > static_cast<std::size_t>(std::numeric_limits<int>::max() / 2))
        throw FormatError(source + ": too many tokens");
    }
    if (in.remaining() != 0)
      throw FormatError(source + ": " + std::to_string(in.remaining()) +
                        " unexpected bytes after the " + std::to_string(pieces_.size()) +
                        " tokens that vocab_size " + std::to_string(vocab_size_hint) + " asks for");
    if (pieces_.empty()) throw FormatError(source + ": contains no tokens");

    vocab_size = static_cast<int>(pieces_.size());
    bos_id = vocab_size > 1 ? 1 : -1;
    eos_id = vocab_size > 2 ? 2 : -1;
    add_bos_default = true;
    // run.c finds pieces by binary search in a sorted copy; with duplicate pieces
    // which one it finds is unspecified, so we pick the lowest id.
    lookup_.reserve(pieces_.size() * 2);
    for (int id = 0; id < vocab_size; ++id) lookup_.emplace(pieces_[id], id);
  }

  int max_token_length() const { return max_token_length_; }
  float score(int id) const { return scores_[static_cast<std::size_t>(id)]; }
  const std::string& raw_piece(int id) const { return pieces_[static_cast<std::size_t>(id)]; }

  std::vector<int> encode(const std::string& text, bool with_bos) const override {
    std::vector<int> ids;
    ids.reserve(text.size() + 2);
    if (with_bos) ids.push_back(bos_id);
    if (!text.empty()) {
      // SentencePiece's add_dummy_prefix, as run.c does it: the token of " ".
      // run.c would push -1 if " " were missing; we fall back to its byte token.
      const int space = find(" ");
      if (space >= 0)
        ids.push_back(space);
      else
        push_byte(ids, ' ');
    }
    // Group bytes like run.c: a byte plus the continuation bytes after it, at most
    // 4 in all. This does not validate UTF-8, it only mirrors run.c's grouping.
    // Unlike run.c (which reads a C string), an embedded NUL byte is encoded too.
    for (std::size_t i = 0; i < text.size();) {
      std::size_t len = 1;
      while (len < 4 && i + len < text.size() &&
             utf8::is_continuation(static_cast<unsigned char>(text[i + len])))
        ++len;
      const int id = find(text.substr(i, len));
      if (id >= 0) {
        ids.push_back(id);
      } else {
        for (std::size_t k = 0; k < len; ++k) push_byte(ids, static_cast<unsigned char>(text[i + k]));
      }
      i += len;
    }
    merge(ids);
    return ids;
  }

  std::string decode(const std::vector<int>& ids) const override {
    // run.c's generate loop: a leading BOS is not printed, and decode(prev, tok)
    // strips one leading space from the piece right after a BOS. Without a leading
    // BOS nothing is stripped, so the dummy-prefix space stays.
    std::string bytes;
    std::size_t start = 0;
    int prev = -1;
    if (!ids.empty() && bos_id >= 0 && ids[0] == bos_id) {
      start = 1;
      prev = bos_id;
    }
    for (std::size_t i = start; i < ids.size(); ++i) {
      bytes += token_text(prev, ids[i]);
      prev = ids[i];
    }
    // Pieces are raw bytes and byte tokens can split a character: keep the result
    // valid UTF-8 the way Python's errors="replace" does.
    return utf8::sanitize(bytes);
  }

  std::string piece(int id) const override {
    const std::string& p = raw_piece(id);
    int byte = -1;
    if (parse_byte_piece(p, &byte)) return std::string(1, static_cast<char>(byte));
    return p;
  }

  std::string token_text(int prev_id, int id) const override {
    std::string p = raw_piece(id);
    // run.c decode(): following BOS, SentencePiece strips the leading whitespace.
    if (prev_id >= 0 && prev_id == bos_id && !p.empty() && p[0] == ' ') p.erase(0, 1);
    int byte = -1;
    if (parse_byte_piece(p, &byte)) return std::string(1, static_cast<char>(byte));
    return p;
  }

  /// "<0xNN>" (two hex digits, either case) is the raw byte NN.
  static bool parse_byte_piece(const std::string& p, int* byte) {
    if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return false;
    const int hi = hex_value(p[3]), lo = hex_value(p[4]);
    if (hi < 0 || lo < 0) return false;
    *byte = hi * 16 + lo;
    return true;
  }

 private:
  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  int find(const std::string& piece) const {
    const auto it = lookup_.find(piece);
    return it == lookup_.end() ? -1 : it->second;
  }

  // Byte fallback: byte b is token b + 3 (after <unk>, BOS, EOS). A vocabulary too
  // small to hold byte tokens gets <unk> (id 0) rather than an out-of-range id.
  void push_byte(std::vector<int>& ids, unsigned char byte) const {
    const int id = static_cast<int>(byte) + 3;
    ids.push_back(id < vocab_size ? id : 0);
  }

  // run.c's merge loop picks, over all adjacent pairs whose concatenation is a
  // piece, the one whose piece has the highest score (strictly greater than
  // -1e10 and than any pair to its left, so the leftmost wins ties), merges it and
  // rescans: O(n^2) per prompt. This does the same with a linked list and a heap
  // ordered by (score desc, position asc); positions keep their order under merging
  // (the left symbol keeps its slot), and a version stamp per slot discards heap
  // entries for pairs that no longer exist, so the choices are identical.
  void merge(std::vector<int>& ids) const {
    const int n = static_cast<int>(ids.size());
    if (n < 2) return;
    std::vector<int> next(n), prev(n);
    std::vector<unsigned> version(n, 0);
    std::vector<char> alive(n, 1);
    for (int i = 0; i < n; ++i) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    struct Candidate {
      float score;
      int left, right, merged;
      unsigned left_version, right_version;
    };
    struct Worse {
      bool operator()(const Candidate& a, const Candidate& b) const {
        if (a.score != b.score) return a.score < b.score;
        return a.left > b.left;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, Worse> heap;
    std::string joined;
    auto consider = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      joined = raw_piece(ids[left]);
      joined += raw_piece(ids[right]);
      const int merged = find(joined);
      if (merged < 0) return;
      const float s = score(merged);
      if (!(s > -1e10f)) return;  // run.c's best_score starts at -1e10
      heap.push(Candidate{s, left, right, merged, version[left], version[right]});
    };
    for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
    while (!heap.empty()) {
      const Candidate c = heap.top();
      heap.pop();
      if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
          version[c.left] != c.left_version || version[c.right] != c.right_version)
        continue;
      ids[c.left] = c.merged;
      ++version[c.left];
      alive[c.right] = 0;
      next[c.left] = next[c.right];
      if (next[c.right] >= 0) prev[next[c.right]] = c.left;
      consider(prev[c.left], c.left);
      consider(c.left, next[c.left]);
    }
    std::vector<int> out;
    out.reserve(ids.size());
    for (int i = 0; i < n; ++i)
      if (alive[i]) out.push_back(ids[i]);
    ids.swap(out);
  }

  std::string source_;
  std::int32_t max_token_length_ = 0;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> lookup_;
};

}  // namespace detail
}  // namespace depass
