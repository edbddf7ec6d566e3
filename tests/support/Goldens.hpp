#pragma once
// Golden files (tests/golden/*.json) and the token ids they were made for.

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "TestSupport.hpp"

namespace depass::test {

/// Prompts (with BOS) the engine and CLI tests run on stories260K and tinystories-656k.
inline const std::vector<int> kStoriesIds = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
inline const std::vector<int> kTinyIds = {1, 1063, 279, 1012, 281, 349, 1409, 65, 294};

/// The random-weight family checkpoints of tests/data/families, each with its goldens
/// (family_<name>.json, gradients_<name>.json) from tools/reference.
inline const std::vector<std::string>& family_names() {
  static const std::vector<std::string> names = {"llama", "llama3", "llama_f16", "mistral", "qwen2",
                                                 "qwen2_untied", "gpt2", "gpt2_noprefix", "qwen3", "phi3",
                                                 "gemma", "gemma2", "gpt_neox", "gpt_neox_sequential"};
  return names;
}

/// tests/golden/<name>, parsed; fails the test case when the file cannot be read.
inline nlohmann::json read_golden(const std::string& name) {
  std::ifstream in(golden_path(name));
  INFO("golden file " << golden_path(name));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

}  // namespace depass::test
