#pragma once
// The interface depass::Tokenizer forwards to. Each on-disk format has its own
// encoding and decoding rules, so each gets its own implementation; the public class
// only validates arguments and keeps the shared, immutable backend alive.

#include <string>
#include <vector>

namespace depass {
namespace detail {

class TokenizerBackend {
 public:
  virtual ~TokenizerBackend() = default;

  /// Ids of `text`; `with_bos` means a BOS is wanted and the tokenizer has one.
  virtual std::vector<int> encode(const std::string& text, bool with_bos) const = 0;
  /// Text of a sequence whose ids were already checked to be in range.
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  /// Decoded text of one in-range token, with no context.
  virtual std::string piece(int id) const = 0;
  /// Text appended when `id` follows `prev_id` (-1: nothing precedes it).
  virtual std::string token_text(int prev_id, int id) const = 0;

  int vocab_size = 0;
  int bos_id = -1;
  int eos_id = -1;
  bool add_bos_default = true;
};

}  // namespace detail
}  // namespace depass
