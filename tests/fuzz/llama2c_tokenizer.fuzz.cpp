// Fuzz harness: llama2.c tokenizer files (Tokenizer::from_llama2c), then encoding and
// decoding with whatever loaded. Input: the whole tok*.bin file.

#include <optional>

#include "FuzzSupport.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace depass;
  const std::string path =
      fuzz::write_file("tok.bin", std::string(reinterpret_cast<const char*>(data), size));
  std::optional<Tokenizer> tok;
  fuzz::expect_only_format_errors([&] { tok = Tokenizer::from_llama2c(path); });
  if (!tok) return 0;
  fuzz::expect_no_exception([&] { fuzz::exercise(*tok, data, size); });
  // The file holds exactly vocab_size tokens, so that hint must load too.
  const int n = tok->vocab_size();
  fuzz::expect_no_exception([&] { (void)Tokenizer::from_llama2c(path, n); });
  return 0;
}
