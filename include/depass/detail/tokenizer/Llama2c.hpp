#pragma once
// The llama2.c tokenizer (tok*.bin): parsing; run.c's encode()/decode() are SpmTokenizer's.
//
// File layout (little-endian): int32 max_token_length, then per token
// f32 score, int32 len, len bytes. The vocabulary size is not stored.
// Conventions fixed by llama2.c: id 0 <unk>, 1 BOS, 2 EOS, the piece of byte b
// at id b + 3, SentencePiece's "▁" already replaced by " " at export.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../Error.hpp"
#include "../File.hpp"
#include "Backend.hpp"
#include "Spm.hpp"
#include "Utf8.hpp"

namespace depass {
namespace detail {

class Llama2cTokenizer final : public SpmTokenizer {
 public:
  static constexpr std::int32_t kMaxTokenLengthLimit = 1 << 16;

  /// Parses the bytes of a tok*.bin file; `source` names it in error messages.
  /// `vocab_size_hint` < 0 reads tokens until the end of the data, otherwise
  /// exactly that many tokens must be present and nothing after them.
  Llama2cTokenizer(const std::string& bytes, const std::string& source, int vocab_size_hint)
      : SpmTokenizer(parse(bytes, source, vocab_size_hint)) {
    // parse() validated the field already.
    std::memcpy(&max_token_length_, bytes.data(), sizeof max_token_length_);
  }

  int max_token_length() const { return max_token_length_; }

  /// "<0xNN>" (two hex digits, either case) is the raw byte NN.
  static bool parse_byte_piece(const std::string& p, int* byte) {
    return parse_spm_byte_piece(p, byte);
  }

 private:
  static SpmVocab parse(const std::string& bytes, const std::string& source, int vocab_size_hint) {
    ByteReader in(bytes.data(), bytes.size(), source);
    const std::int32_t max_token_length = in.read<std::int32_t>("max_token_length");
    if (max_token_length < 1 || max_token_length > kMaxTokenLengthLimit)
      throw FormatError(source + ": max_token_length " + std::to_string(max_token_length) +
                        " is out of range [1, " + std::to_string(kMaxTokenLengthLimit) + "]");
    SpmVocab vocab;
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
      if (len < 0 || len > max_token_length)
        throw FormatError(source + ": " + index + " has length " + std::to_string(len) +
                          ", outside [0, max_token_length " + std::to_string(max_token_length) +
                          "]");
      const char* text = in.take(static_cast<std::size_t>(len), (index + " bytes").c_str());
      vocab.pieces.emplace_back(text, static_cast<std::size_t>(len));
      vocab.scores.push_back(score);
      if (vocab.pieces.size() > static_cast<std::size_t>(std::numeric_limits<int>::max() / 2))
        throw FormatError(source + ": too many tokens");
    }
    if (in.remaining() != 0)
      throw FormatError(source + ": " + std::to_string(in.remaining()) +
                        " unexpected bytes after the " + std::to_string(vocab.pieces.size()) +
                        " tokens that vocab_size " + std::to_string(vocab_size_hint) + " asks for");
    if (vocab.pieces.empty()) throw FormatError(source + ": contains no tokens");

    const int n = static_cast<int>(vocab.pieces.size());
    vocab.bos_id = n > 1 ? 1 : -1;
    vocab.eos_id = n > 2 ? 2 : -1;
    vocab.add_bos = true;
    vocab.merge_bos = true;
    vocab.space = " ";  // llama2.c's export already replaced SentencePiece's U+2581
    // Byte fallback: byte b is token b + 3 (after <unk>, BOS, EOS), whatever its piece
    // says; a vocabulary too small to hold byte tokens gets <unk> (id 0) rather than an
    // out-of-range id.
    vocab.unk_id = 0;
    for (int b = 0; b < 256; ++b) vocab.byte_ids[b] = b + 3 < n ? b + 3 : -1;
    vocab.byte_value.assign(vocab.pieces.size(), -1);
    for (std::size_t id = 0; id < vocab.pieces.size(); ++id) {
      int byte = -1;
      if (parse_spm_byte_piece(vocab.pieces[id], &byte)) vocab.byte_value[id] = byte;
    }
    return vocab;
  }

  std::int32_t max_token_length_ = 0;
};

}  // namespace detail
}  // namespace depass
