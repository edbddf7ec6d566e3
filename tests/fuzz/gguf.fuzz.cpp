// Fuzz harness: GGUF files, as a checkpoint (io::load_gguf) and as a tokenizer
// (Tokenizer::from_gguf, then encoding and decoding). Input: the whole .gguf file.

#include <depass/io/Format.hpp>
#include <depass/io/Gguf.hpp>
#include <optional>

#include "FuzzSupport.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace depass;
  const std::string path =
      fuzz::write_file("model.gguf", std::string(reinterpret_cast<const char*>(data), size));
  fuzz::expect_only_format_errors([&] { (void)io::detect_format(path); });
  fuzz::expect_only_format_errors([&] {
    const Checkpoint<float> ck = io::load_gguf<float>(path);
    ck.weights.validate(ck.config);
  });
  std::optional<Tokenizer> tok;
  fuzz::expect_only_format_errors([&] { tok = Tokenizer::from_gguf(path); });
  if (!tok) return 0;
  fuzz::expect_no_exception([&] { fuzz::exercise(*tok, data, size); });
  return 0;
}
