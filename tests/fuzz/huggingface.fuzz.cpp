// Fuzz harness: Hugging Face model directories (io::load_huggingface, and load_checkpoint's
// dispatch). Input: config.json, kSplit, model.safetensors[, kSplit,
// model.safetensors.index.json]. With an index, the weights are written as the shard
// "model-00001-of-00001.safetensors" instead, so the sharded path is exercised.

#include <depass/io/Format.hpp>
#include <depass/io/HuggingFace.hpp>

#include "FuzzSupport.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace depass;
  const std::vector<std::string> parts = fuzz::split(data, size, 3);
  const std::string shard = "model-00001-of-00001.safetensors";
  fuzz::remove_file("hf/model.safetensors");
  fuzz::remove_file("hf/" + shard);
  fuzz::remove_file("hf/model.safetensors.index.json");
  std::filesystem::create_directories(fuzz::scratch_path("hf"));
  fuzz::write_file("hf/config.json", parts[0]);
  if (parts.size() > 1) {
    if (parts.size() > 2) {
      fuzz::write_file("hf/" + shard, parts[1]);
      fuzz::write_file("hf/model.safetensors.index.json", parts[2]);
    } else {
      fuzz::write_file("hf/model.safetensors", parts[1]);
    }
  }
  const std::string dir = fuzz::scratch_path("hf");
  // Without a weight file the loader reports a missing file (runtime_error), by design.
  if (parts.size() == 1) {
    try {
      (void)io::load_huggingface<float>(dir);
    } catch (const FormatError&) {
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).find("no model.safetensors") == std::string::npos)
        fuzz::finding("runtime_error", e.what());
    }
    return 0;
  }
  fuzz::expect_only_format_errors([&] {
    const Checkpoint<float> ck = io::load_huggingface<float>(dir);
    ck.weights.validate(ck.config);
  });
  return 0;
}
