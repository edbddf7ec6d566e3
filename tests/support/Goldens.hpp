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

/// tests/golden/<name>, parsed; fails the test case when the file cannot be read.
inline nlohmann::json read_golden(const std::string& name) {
  std::ifstream in(golden_path(name));
  INFO("golden file " << golden_path(name));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

}  // namespace depass::test
