// Reading faithfulness data (methods/FaithfulnessData.hpp): every kind of bad line gives a
// line-numbered error and the lines after it are still read; the shipped files read
// without errors; a prompt-only record encodes to the ids the Python reference wrote.

#include <catch2/catch.hpp>
#include <depass/methods/FaithfulnessData.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "support/TestSupport.hpp"

using namespace depass;

TEST_CASE("bad data lines give line-numbered errors and the rest is read", "[faithfulness-data]") {
  const std::string text =
      "{\"ids\": [1, 5, 6], \"target\": 7, \"evidence\": [1, 2], \"kind\": \"name\"}\n"  // 1 good
      "{\"ids\": [1, 5, 6], \"target\": 7, \"colour\": \"red\"}\n"                      // 2 unknown field
      "{\"ids\": [1, 512, 6], \"target\": 7}\n"                                         // 3 id out of range
      "{\"ids\": [1, 5, 6], \"target\": 600}\n"                                         // 4 target not in vocab
      "{\"prompt\": \"\", \"target\": 7}\n"                                             // 5 empty prompt
      "\n"                                                                               // 6 blank: skipped
      "{\"ids\": [1, 5, 6], \"target\": 7, \"evidence\": [0]}\n"                       // 7 evidence at BOS
      "{\"ids\": [1, 5, 6], \"target\": 7, \"evidence\": [3]}\n"                       // 8 evidence past the ids
      "{\"ids\": [1, 5, 6], \"target\": 7, \"label\": 2}\n"                            // 9 label not 0/1
      "{\"target\": 7}\n"                                                                // 10 no prompt, no ids
      "{\"ids\": [1, 5, 6\n"                                                             // 11 not JSON
      "[1, 5, 6]\n"                                                                      // 12 not an object
      "{\"ids\": [1], \"target\": 7}\n"                                                 // 13 BOS only
      "{\"ids\": [1, 5.5], \"target\": 7}\n"                                            // 14 not an integer
      "{\"ids\": [1, 5, 6]}\n"                                                           // 15 no target (required)
      "{\"ids\": [1, 8, 9], \"target\": 3, \"label\": 1}\n";                           // 16 good
  std::istringstream in(text);
  DataRequirements req;
  req.vocab_size = 512;
  req.target = true;
  const FaithfulnessData data = read_faithfulness_data(in, req);
  REQUIRE(data.records.size() == 2);
  CHECK(data.records[0].line == 1);
  CHECK(data.records[0].ids == (std::vector<int>{1, 5, 6}));
  CHECK(data.records[0].target == 7);
  CHECK(data.records[0].evidence == (std::vector<long>{1, 2}));
  CHECK(data.records[0].label == -1);
  CHECK(data.records[1].line == 16);
  CHECK(data.records[1].label == 1);
  const std::vector<std::pair<long, std::string>> want = {
      {2, "unknown field 'colour'"},
      {3, "field 'ids' entry 1 = 512 is out of range [0, 512)"},
      {4, "field 'target' = 600 is out of range [0, 512)"},
      {5, "field 'prompt' is empty"},
      {7, "field 'evidence' entry 0 = 0 is out of range [1, 3)"},
      {8, "field 'evidence' entry 0 = 3 is out of range [1, 3)"},
      {9, "field 'label' = 2 is out of range [0, 2)"},
      {10, "neither 'prompt' nor 'ids'"},
      {11, "not valid JSON"},
      {12, "not a JSON object"},
      {13, "1 ids: BOS and at least one more are needed"},
      {14, "field 'ids' entry 1 is not an integer"},
      {15, "no 'target'"}};
  REQUIRE(data.errors.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("error " << i << ": " << data.errors[i].message);
    CHECK(data.errors[i].line == want[i].first);
    CHECK_THAT(data.errors[i].message, Catch::Matchers::StartsWith("line " + std::to_string(want[i].first) + ": "));
    CHECK_THAT(data.errors[i].message, Catch::Matchers::Contains(want[i].second));
  }
}

TEST_CASE("the shipped faithfulness data reads without errors", "[faithfulness-data]") {
  DataRequirements req;
  req.vocab_size = 512;
  req.target = true;
  const FaithfulnessData prompts = load_faithfulness_data(test::source_dir() + "/data/faithfulness/stories260K.jsonl", req);
  CHECK(prompts.errors.empty());
  CHECK(prompts.records.size() == 240);  // docs/faithfulness-data.md
  req.target = false;
  req.label = true;
  const FaithfulnessData probe = load_faithfulness_data(test::source_dir() + "/data/faithfulness/stories260K_pronoun.jsonl", req);
  CHECK(probe.errors.empty());
  REQUIRE(probe.records.size() == 240);
  long she = 0;
  for (const FaithfulnessRecord& r : probe.records) she += r.label;
  CHECK(she == 120);
  CHECK_THROWS_WITH(load_faithfulness_data(test::source_dir() + "/data/faithfulness/absent.jsonl"),
                    Catch::Matchers::Contains("cannot open faithfulness data file"));
}

TEST_CASE("a prompt-only record is encoded by the tokenizer", "[faithfulness-data]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/tok512.bin");
  const Tokenizer tokenizer = Tokenizer::from_llama2c(path, 512);
  std::istringstream shipped(test::read_file(test::source_dir() + "/data/faithfulness/stories260K.jsonl"));
  const FaithfulnessData all = read_faithfulness_data(shipped);
  REQUIRE(all.records.size() == 240);
  std::string lines;
  for (std::size_t i = 0; i < 3; ++i)
    lines += nlohmann::json{{"prompt", all.records[i].prompt}, {"target", all.records[i].target}}.dump() + "\n";
  std::istringstream in(lines);
  DataRequirements req;
  CHECK(read_faithfulness_data(in, req).errors.size() == 3);  // no tokenizer: refused, line by line
  std::istringstream again(lines);
  req.tokenizer = &tokenizer;
  const FaithfulnessData encoded = read_faithfulness_data(again, req);
  REQUIRE(encoded.records.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) CHECK(encoded.records[i].ids == all.records[i].ids);  // the reference's ids
}
