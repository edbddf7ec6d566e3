#pragma once
// Reading the faithfulness data (JSON Lines, docs/faithfulness-data.md): one record per
// line, {"prompt" | "ids", "target"?, "evidence"?, "label"?, provenance fields}. A bad line
// (not JSON, an unknown field, ids out of range, a target outside the vocabulary, an empty
// prompt, evidence outside the ids, ...) becomes a line-numbered error value and the lines
// after it are still read, so a run can report every problem and go on with the good
// records. Blank lines are skipped.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <istream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "../Tokenizer.hpp"

namespace depass {

struct FaithfulnessRecord {
  long line = 0;               // 1-based line of the file
  std::string prompt;          // empty when the line gave only ids
  std::vector<int> ids;        // BOS first; from the line, or the prompt encoded
  int target = -1;             // -1: none given
  std::vector<long> evidence;  // positions in ids, never 0 (BOS)
  int label = -1;              // -1: none given; else 0 or 1
};

struct DataError {
  long line = 0;
  std::string message;
};

/// What the records must carry and fit.
struct DataRequirements {
  int vocab_size = 0;                  // > 0: ids and target must lie in [0, vocab_size)
  long max_length = 0;                 // > 0: at most this many ids (the model's context)
  bool target = false;                 // every record needs a target
  bool label = false;                  // every record needs a label
  const Tokenizer* tokenizer = nullptr;  // encodes records that give a prompt without ids
};

struct FaithfulnessData {
  std::vector<FaithfulnessRecord> records;
  std::vector<DataError> errors;
};

namespace detail {

inline const std::set<std::string>& known_data_fields() {
  static const std::set<std::string> fields = {"prompt", "ids",  "target", "target_text", "evidence", "top1_prob", "kind",
                                               "word",   "label", "name",  "pair",        "p_she",    "p_he"};
  return fields;
}

/// An integer field of j in [lo, hi), or an error message.
inline std::string integer_field(const nlohmann::json& j, const char* name, long lo, long hi, long& out) {
  const nlohmann::json& v = j.at(name);
  if (!v.is_number_integer()) return std::string("field '") + name + "' is not an integer";
  out = v.get<long>();
  if (out < lo || (hi > lo && out >= hi))
    return std::string("field '") + name + "' = " + std::to_string(out) + " is out of range [" + std::to_string(lo) + ", " +
           (hi > lo ? std::to_string(hi) : std::string("inf")) + ")";
  return {};
}

/// An integer list field of j, each entry in [lo, hi) (hi <= lo: no upper bound), or an error message.
inline std::string integer_list(const nlohmann::json& j, const char* name, long lo, long hi, std::vector<long>& out) {
  const nlohmann::json& v = j.at(name);
  if (!v.is_array()) return std::string("field '") + name + "' is not a list";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer()) return std::string("field '") + name + "' entry " + std::to_string(i) + " is not an integer";
    const long x = v[i].get<long>();
    if (x < lo || (hi > lo && x >= hi))
      return std::string("field '") + name + "' entry " + std::to_string(i) + " = " + std::to_string(x) +
             " is out of range [" + std::to_string(lo) + ", " + (hi > lo ? std::to_string(hi) : std::string("inf")) + ")";
    out.push_back(x);
  }
  return {};
}

/// The ids of a record: the line's, or its prompt encoded. An error message, or empty.
inline std::string record_ids(const nlohmann::json& j, const DataRequirements& req, FaithfulnessRecord& r) {
  if (j.contains("prompt")) {
    if (!j["prompt"].is_string()) return "field 'prompt' is not a string";
    r.prompt = j["prompt"].get<std::string>();
    if (r.prompt.empty()) return "field 'prompt' is empty";
  }
  if (j.contains("ids")) {
    std::vector<long> ids;
    const std::string e = integer_list(j, "ids", 0, req.vocab_size, ids);
    if (!e.empty()) return e;
    r.ids.assign(ids.begin(), ids.end());
  } else if (!j.contains("prompt")) {
    return "the record has neither 'prompt' nor 'ids'";
  } else if (!req.tokenizer) {
    return "the record gives a prompt but no ids, and no tokenizer was given to encode it";
  } else {
    r.ids = req.tokenizer->encode(r.prompt);
  }
  if (r.ids.size() < 2) return "the record has " + std::to_string(r.ids.size()) + " ids: BOS and at least one more are needed";
  if (req.max_length > 0 && static_cast<long>(r.ids.size()) > req.max_length)
    return "the record has " + std::to_string(r.ids.size()) + " ids, more than the context of " + std::to_string(req.max_length);
  return {};
}

/// One record from one line's JSON, or an error message.
inline std::string parse_record(const nlohmann::json& j, const DataRequirements& req, FaithfulnessRecord& r) {
  if (!j.is_object()) return "the line is not a JSON object";
  for (const auto& item : j.items())
    if (!known_data_fields().count(item.key())) return "unknown field '" + item.key() + "'";
  std::string e = record_ids(j, req, r);
  if (!e.empty()) return e;
  long value = 0;
  if (j.contains("target")) {
    if (!(e = integer_field(j, "target", 0, req.vocab_size, value)).empty()) return e;
    r.target = static_cast<int>(value);
  } else if (req.target) {
    return "the record has no 'target'";
  }
  if (j.contains("evidence") && !(e = integer_list(j, "evidence", 1, static_cast<long>(r.ids.size()), r.evidence)).empty())
    return e + " (positions of ids after BOS)";
  if (j.contains("label")) {
    if (!(e = integer_field(j, "label", 0, 2, value)).empty()) return e;
    r.label = static_cast<int>(value);
  } else if (req.label) {
    return "the record has no 'label'";
  }
  return {};
}

}  // namespace detail

/// Every line of `in`: the good records and one error per bad line.
inline FaithfulnessData read_faithfulness_data(std::istream& in, const DataRequirements& requirements = {}) {
  FaithfulnessData data;
  std::string text;
  for (long line = 1; std::getline(in, text); ++line) {
    if (std::all_of(text.begin(), text.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; })) continue;
    FaithfulnessRecord r;
    r.line = line;
    std::string error;
    try {
      error = detail::parse_record(nlohmann::json::parse(text), requirements, r);
    } catch (const nlohmann::json::parse_error& e) {
      error = std::string("not valid JSON: ") + e.what();
    } catch (const std::exception& e) {  // the tokenizer's refusals, integers beyond long
      error = e.what();
    }
    if (error.empty()) data.records.push_back(std::move(r));
    else data.errors.push_back({line, "line " + std::to_string(line) + ": " + error});
  }
  return data;
}

/// The file at `path`; std::runtime_error if it cannot be opened.
inline FaithfulnessData load_faithfulness_data(const std::string& path, const DataRequirements& requirements = {}) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open faithfulness data file " + path);
  FaithfulnessData data = read_faithfulness_data(in, requirements);
  if (in.bad()) throw std::runtime_error("cannot read faithfulness data file " + path);
  return data;
}

}  // namespace depass
