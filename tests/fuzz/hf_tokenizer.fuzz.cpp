// Fuzz harness: Hugging Face tokenizer.json (+ tokenizer_config.json) via
// Tokenizer::from_huggingface, then encoding and decoding with whatever loaded.
// Input: tokenizer.json[, kSplit, tokenizer_config.json].

#include <optional>

#include "FuzzSupport.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace depass;
  const std::vector<std::string> parts = fuzz::split(data, size, 2);
  std::filesystem::create_directories(fuzz::scratch_path("tok"));
  fuzz::write_file("tok/tokenizer.json", parts[0]);
  if (parts.size() > 1)
    fuzz::write_file("tok/tokenizer_config.json", parts[1]);
  else
    fuzz::remove_file("tok/tokenizer_config.json");
  std::optional<Tokenizer> tok;
  fuzz::expect_only_format_errors(
      [&] { tok = Tokenizer::from_huggingface(fuzz::scratch_path("tok")); });
  if (!tok) return 0;
  fuzz::expect_no_exception([&] { fuzz::exercise(*tok, data, size); });
  return 0;
}
