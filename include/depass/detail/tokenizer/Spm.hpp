#pragma once
// SentencePiece-style BPE as llama2.c's run.c encodes it (and llama.cpp's SPM tokenizer,
// which makes the same choices on valid UTF-8): the text, with a dummy-prefix space, is
// split into characters; characters missing from the vocabulary become byte tokens; then
// the adjacent pair whose concatenation is the highest-scoring piece is merged (leftmost
// on ties) until no pair forms a piece. Shared by llama2.c tok*.bin files and the "llama"
// tokenizer embedded in GGUF files, which differ only in how they describe the vocabulary.

#include <cstdint>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "Backend.hpp"
#include "Utf8.hpp"

namespace depass {
namespace detail {

/// Everything the SPM algorithm needs to know about a vocabulary.
struct SpmVocab {
  std::vector<std::string> pieces;  // token text as stored (spaces written as `space`)
  std::vector<float> scores;        // merge priority of each piece
  std::vector<int> byte_value;      // the raw byte a token decodes to, or -1
  int byte_ids[256];                // token of each raw byte (byte fallback), or -1
  std::string space = " ";          // how pieces write a space: " " (llama2.c) or U+2581
  int bos_id = -1, eos_id = -1, unk_id = -1;
  bool add_bos = true;
  bool add_space_prefix = true;  // SentencePiece's add_dummy_prefix
  bool merge_bos = false;        // run.c merges over the BOS too (its piece never matches)

  SpmVocab() {
    for (int& id : byte_ids) id = -1;
  }
};

/// "<0xNN>" (two hex digits, either case) is the raw byte NN.
inline bool parse_spm_byte_piece(const std::string& p, int* byte) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return false;
  const int hi = hex(p[3]), lo = hex(p[4]);
  if (hi < 0 || lo < 0) return false;
  *byte = hi * 16 + lo;
  return true;
}

class SpmTokenizer : public TokenizerBackend {
 public:
  explicit SpmTokenizer(SpmVocab vocab) : vocab_(std::move(vocab)) {
    vocab_size = static_cast<int>(vocab_.pieces.size());
    bos_id = vocab_.bos_id;
    eos_id = vocab_.eos_id;
    add_bos_default = vocab_.add_bos;
    // run.c finds pieces by binary search in a sorted copy; with duplicate pieces
    // which one it finds is unspecified, so we pick the lowest id.
    lookup_.reserve(vocab_.pieces.size() * 2);
    for (int id = 0; id < vocab_size; ++id) lookup_.emplace(vocab_.pieces[id], id);
  }

  float score(int id) const { return vocab_.scores[static_cast<std::size_t>(id)]; }
  const std::string& raw_piece(int id) const { return vocab_.pieces[static_cast<std::size_t>(id)]; }

  std::vector<int> encode(const std::string& raw_text, bool with_bos) const override {
    std::vector<int> ids;
    ids.reserve(raw_text.size() + 2);
    if (with_bos) ids.push_back(bos_id);
    if (raw_text.empty()) return ids;
    // The dummy prefix is one more space in front (run.c pushes the token of " " first,
    // which is the same thing).
    const std::string text = vocab_.add_space_prefix ? " " + raw_text : raw_text;
    // Group bytes like run.c: a byte plus the continuation bytes after it, at most
    // 4 in all. This does not validate UTF-8, it only mirrors run.c's grouping.
    // Unlike run.c (which reads a C string), an embedded NUL byte is encoded too.
    // Spaces are looked up the vocabulary's way, but a group that is not a piece falls
    // back to its original bytes (a space is byte 0x20, not the bytes of U+2581).
    std::string key;
    for (std::size_t i = 0; i < text.size();) {
      std::size_t len = 1;
      while (len < 4 && i + len < text.size() &&
             utf8::is_continuation(static_cast<unsigned char>(text[i + len])))
        ++len;
      key.assign(text, i, len);
      if (vocab_.space != " " && key.find(' ') != std::string::npos)
        key = replace_spaces(key, vocab_.space);
      const int id = find(key);
      if (id >= 0) {
        ids.push_back(id);
      } else {
        for (std::size_t k = 0; k < len; ++k)
          push_byte(ids, static_cast<unsigned char>(text[i + k]));
      }
      i += len;
    }
    merge(ids, with_bos && !vocab_.merge_bos ? 1 : 0);
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
    const int byte = vocab_.byte_value[static_cast<std::size_t>(id)];
    if (byte >= 0) return std::string(1, static_cast<char>(byte));
    return text_of(raw_piece(id));
  }

  std::string token_text(int prev_id, int id) const override {
    std::string p = piece(id);
    // run.c decode(): following BOS, SentencePiece strips the leading whitespace.
    // A byte token is a raw byte, not a piece with a leading space.
    if (vocab_.add_space_prefix && prev_id >= 0 && prev_id == bos_id &&
        vocab_.byte_value[static_cast<std::size_t>(id)] < 0 && !p.empty() && p[0] == ' ')
      p.erase(0, 1);
    return p;
  }

 private:
  static std::string replace_spaces(const std::string& text, const std::string& space) {
    std::string out;
    out.reserve(text.size() + 8);
    for (char c : text) {
      if (c == ' ')
        out += space;
      else
        out += c;
    }
    return out;
  }

  std::string text_of(const std::string& p) const {
    if (vocab_.space == " " || p.find(vocab_.space) == std::string::npos) return p;
    std::string out;
    for (std::size_t i = 0; i < p.size();) {
      if (p.compare(i, vocab_.space.size(), vocab_.space) == 0) {
        out += ' ';
        i += vocab_.space.size();
      } else {
        out += p[i++];
      }
    }
    return out;
  }

  int find(const std::string& piece) const {
    const auto it = lookup_.find(piece);
    return it == lookup_.end() ? -1 : it->second;
  }

  // Byte fallback; a vocabulary without the byte's token gets <unk> (or, lacking that
  // too, id 0 as run.c's tok512 layout would: loaders refuse vocabularies where that
  // would be out of range).
  void push_byte(std::vector<int>& ids, unsigned char byte) const {
    const int id = vocab_.byte_ids[byte];
    ids.push_back(id >= 0 ? id : (vocab_.unk_id >= 0 ? vocab_.unk_id : 0));
  }

  // run.c's merge loop picks, over all adjacent pairs whose concatenation is a
  // piece, the one whose piece has the highest score (strictly greater than
  // -1e10 and than any pair to its left, so the leftmost wins ties), merges it and
  // rescans: O(n^2) per prompt. This does the same with a linked list and a heap
  // ordered by (score desc, position asc); positions keep their order under merging
  // (the left symbol keeps its slot), and a version stamp per slot discards heap
  // entries for pairs that no longer exist, so the choices are identical.
  // Symbols before `first` (a BOS) are left alone.
  void merge(std::vector<int>& all, std::size_t first) const {
    if (all.size() - first < 2) return;
    std::vector<int> ids(all.begin() + static_cast<std::ptrdiff_t>(first), all.end());
    const int n = static_cast<int>(ids.size());
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
    all.resize(first);
    for (int i = 0; i < n; ++i)
      if (alive[i]) all.push_back(ids[i]);
  }

  SpmVocab vocab_;
  std::unordered_map<std::string, int> lookup_;
};

}  // namespace detail
}  // namespace depass
