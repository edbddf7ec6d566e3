#pragma once
// Records of the shipped faithfulness data (data/faithfulness/*.jsonl, docs/faithfulness-data.md)
// for the protocol tests: the first few short ones of a file.

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "TestSupport.hpp"

namespace depass::test {

struct FaithfulnessRecord {
  std::vector<int> ids;
  int target = -1;            // -1: none (probe records)
  std::vector<long> evidence;
  double top1_prob = -1;      // the float64 reference's probability of target, 6 digits; -1: none
  int label = -1;             // probe records: 1 she, 0 he
};

/// The first `count` records of data/faithfulness/<file> with at most `max_ids` ids;
/// fails the test case when the file cannot be read or has too few.
inline std::vector<FaithfulnessRecord> faithfulness_records(const std::string& file, std::size_t count,
                                                            std::size_t max_ids) {
  const std::string path = source_dir() + "/data/faithfulness/" + file;
  std::ifstream in(path);
  INFO("data file " << path);
  REQUIRE(in.good());
  std::vector<FaithfulnessRecord> out;
  std::string line;
  while (out.size() < count && std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    FaithfulnessRecord r;
    r.ids = j.at("ids").get<std::vector<int>>();
    if (r.ids.size() > max_ids) continue;
    if (j.contains("target")) r.target = j["target"];
    if (j.contains("evidence")) r.evidence = j["evidence"].get<std::vector<long>>();
    if (j.contains("top1_prob")) r.top1_prob = j["top1_prob"];
    if (j.contains("label")) r.label = j["label"];
    out.push_back(r);
  }
  REQUIRE(out.size() == count);
  return out;
}

}  // namespace depass::test
