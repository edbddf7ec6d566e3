// Fuzz harness: llama2.c checkpoints (io::load_llama2c) and format detection.
// Input: the whole .bin file.

#include <depass/io/Format.hpp>
#include <depass/io/Llama2c.hpp>

#include "FuzzSupport.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace depass;
  const std::string path =
      fuzz::write_file("model.bin", std::string(reinterpret_cast<const char*>(data), size));
  fuzz::expect_only_format_errors([&] { (void)io::detect_format(path); });
  fuzz::expect_only_format_errors([&] {
    const Checkpoint<float> ck = io::load_llama2c<float>(path);
    ck.weights.validate(ck.config);  // a successful load must be self-consistent
  });
  return 0;
}
