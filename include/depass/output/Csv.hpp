#pragma once
// CSV (RFC 4180: comma separated, CRLF-free "\n" line ends, fields quoted when they hold a
// comma, quote or line break) for every depass document. One row per component, with a
// header row; numbers are written exactly (shortest round-trip form). The columns of
// each document kind are listed in docs/cli.md.

#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "Json.hpp"
#include "Text.hpp"

namespace depass {
namespace output {

/// One CSV field, quoted if needed.
inline std::string csv_field(const std::string& text) {
  const std::string t = valid_utf8(text);
  if (t.find_first_of(",\"\n\r") == std::string::npos && (t.empty() || (t.front() != ' ' && t.back() != ' ')))
    return t;
  std::string out = "\"";
  for (char c : t) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

inline std::string csv_field(double value) { return exact_number(value); }
inline std::string csv_field(long long value) { return std::to_string(value); }
inline std::string csv_field(int value) { return std::to_string(value); }

/// Rows written from a list of already formatted fields.
class CsvWriter {
 public:
  explicit CsvWriter(std::ostream& out) : out_(out) {}
  CsvWriter& row(const std::vector<std::string>& fields) {
    for (std::size_t i = 0; i < fields.size(); ++i) out_ << (i ? "," : "") << fields[i];
    out_ << "\n";
    return *this;
  }

 private:
  std::ostream& out_;
};

namespace detail_csv {

inline std::string num(const nlohmann::json& v) {
  return v.is_number() ? exact_number(v.get<double>()) : std::string();
}
inline std::string text(const nlohmann::json& v) { return csv_field(v.get<std::string>()); }
inline std::string integer(const nlohmann::json& v) { return std::to_string(v.get<long long>()); }

}  // namespace detail_csv

namespace detail_csv {

/// Positions after the explained one cannot affect it (causal mask): reachable 0, no score.
/// With several methods ("methods"), one more column per method, "score_<method>".
inline void tokens_rows(CsvWriter& csv, const nlohmann::json& doc) {
  const nlohmann::json methods = doc.value("methods", nlohmann::json::array());
  std::vector<std::string> header = {"component", "position", "token_id", "token_text", "score", "reachable"};
  for (const auto& m : methods) header.push_back(csv_field("score_" + m["method"].get<std::string>()));
  csv.row(header);
  const auto& tokens = doc["tokens"];
  const std::size_t reach = doc.value("reachable_positions", tokens.size());
  auto extra_row = [&](const char* label, const char* key) {
    if (!doc.contains(key)) return;
    std::vector<std::string> r = {label, "", "", "", num(doc[key]), ""};
    for (const auto& m : methods) r.push_back(m.contains(key) ? num(m[key]) : "");
    csv.row(r);
  };
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    std::vector<std::string> r = {csv_field("token " + std::to_string(i)), std::to_string(i), integer(tokens[i]["id"]),
                                  text(tokens[i]["text"]), i < reach ? num(doc["scores"][i]) : "", i < reach ? "1" : "0"};
    for (const auto& m : methods) r.push_back(i < reach ? num(m["scores"][i]) : "");
    csv.row(r);
  }
  extra_row("positions", "position_score");
  extra_row("bias", "bias_score");
  extra_row("chunk residual", "chunk_residual_score");
}

/// chunk_residual_score: empty unless the runs were chunked.
inline void modules_rows(CsvWriter& csv, const nlohmann::json& doc) {
  csv.row({"layer", "site", "score", "residual_score", "bias_score", "chunk_residual_score"});
  for (const auto& m : doc["modules"])
    csv.row({integer(m["layer"]), text(m["site"]), num(m["score"]), num(m["residual_score"]), num(m["bias_score"]),
             m.contains("chunk_residual_score") ? num(m["chunk_residual_score"]) : ""});
}

inline void heads_rows(CsvWriter& csv, const nlohmann::json& doc) {
  csv.row({"layer", "component", "head", "score"});
  for (const auto& l : doc["layers"]) {
    const std::string layer = integer(l["layer"]);
    if (l.contains("residual_score")) csv.row({layer, "residual", "", num(l["residual_score"])});
    for (std::size_t h = 0; h < l["heads"].size(); ++h) csv.row({layer, "head", std::to_string(h), num(l["heads"][h])});
    if (l.contains("bias_score")) csv.row({layer, "bias", "", num(l["bias_score"])});
    if (l.contains("chunk_residual_score")) csv.row({layer, "chunk residual", "", num(l["chunk_residual_score"])});
  }
}

inline void neurons_rows(CsvWriter& csv, const nlohmann::json& doc) {
  csv.row({"layer", "rank", "neuron", "score"});
  const std::string layer = integer(doc["layer"]);
  for (const auto& t : doc["top"]) csv.row({layer, integer(t["rank"]), integer(t["neuron"]), num(t["score"])});
  if (doc.contains("chunk_residual_score")) csv.row({layer, "", "chunk residual", num(doc["chunk_residual_score"])});
}

/// One row per (component, top token); a component without top tokens gets one row.
inline void components_rows(CsvWriter& csv, const nlohmann::json& doc, bool subspace) {
  csv.row({"component", "label", "score", "rank", "token_id", "token_text", "logit"});
  const auto& comps = doc["components"];
  for (std::size_t m = 0; m < comps.size(); ++m) {
    const auto& c = comps[m];
    const std::string index = std::to_string(m), label = text(c["label"]), score = num(c["score"]);
    if (!c.contains("top_tokens") || c["top_tokens"].empty()) {
      csv.row({index, label, score, "", "", "", ""});
      continue;
    }
    for (std::size_t r = 0; r < c["top_tokens"].size(); ++r) {
      const auto& t = c["top_tokens"][r];
      csv.row({index, label, score, std::to_string(r + 1), integer(t["id"]), text(t["text"]), num(t["logit"])});
    }
  }
  if (!subspace) return;
  csv.row({"", "bias", num(doc["bias_score"]), "", "", "", ""});
  if (doc.contains("chunk_residual_score")) csv.row({"", "chunk residual", num(doc["chunk_residual_score"]), "", "", "", ""});
}

/// One row per (step, component), each led by the step's target.
inline void generate_rows(CsvWriter& csv, const nlohmann::json& doc) {
  csv.row({"step", "target_position", "target_id", "target_text", "target_logit", "component", "token_id",
           "token_text", "score"});
  const auto& tokens = doc["tokens"];
  for (const auto& s : doc["steps"]) {
    const std::vector<std::string> lead = {integer(s["step"]), integer(s["position"]), integer(s["token"]["id"]),
                                           text(s["token"]["text"]), num(s["token"]["logit"])};
    for (std::size_t m = 0; m < s["scores"].size(); ++m) {
      std::vector<std::string> r = lead;
      r.insert(r.end(), {std::to_string(m), integer(tokens[m]["id"]), text(tokens[m]["text"]), num(s["scores"][m])});
      csv.row(r);
    }
    for (const auto& [key, label] : {std::make_pair("position_score", "positions"), std::make_pair("bias_score", "bias"),
                                     std::make_pair("chunk_residual_score", "chunk residual")}) {
      if (!s.contains(key)) continue;
      std::vector<std::string> r = lead;
      r.insert(r.end(), {label, "", "", num(s[key])});
      csv.row(r);
    }
  }
}

inline void tokenize_rows(CsvWriter& csv, const nlohmann::json& doc) {
  csv.row({"position", "token_id", "token_text"});
  const auto& tokens = doc["tokens"];
  for (std::size_t i = 0; i < tokens.size(); ++i) csv.row({std::to_string(i), integer(tokens[i]["id"]), text(tokens[i]["text"])});
}

inline std::string value_text(const nlohmann::json& v) {
  return csv_field(v.is_string() ? v.get<std::string>() : v.dump());
}

/// key,value rows; one level of nesting flattened to "outer.inner".
inline void info_rows(CsvWriter& csv, const nlohmann::json& doc) {
  csv.row({"key", "value"});
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.value().is_object()) {
      for (auto jt = it.value().begin(); jt != it.value().end(); ++jt)
        csv.row({csv_field(it.key() + "." + jt.key()), value_text(jt.value())});
    } else {
      csv.row({csv_field(it.key()), value_text(it.value())});
    }
  }
}

}  // namespace detail_csv

/// Writes `doc` (any depass document) as CSV.
inline void write_csv(std::ostream& out, const nlohmann::json& doc) {
  using namespace detail_csv;
  CsvWriter csv(out);
  const std::string kind = document_kind(doc);
  if (kind == "tokens") return tokens_rows(csv, doc);
  if (kind == "modules") return modules_rows(csv, doc);
  if (kind == "heads") return heads_rows(csv, doc);
  if (kind == "neurons") return neurons_rows(csv, doc);
  if (kind == "subspace" || kind == "decode") return components_rows(csv, doc, kind == "subspace");
  if (kind == "generate") return generate_rows(csv, doc);
  if (kind == "tokenize") return tokenize_rows(csv, doc);
  if (kind == "info") return info_rows(csv, doc);
  throw std::invalid_argument("CSV: unknown document kind '" + kind + "'");
}

inline std::string to_csv_text(const nlohmann::json& doc) {
  std::ostringstream out;
  write_csv(out, doc);
  return out.str();
}

}  // namespace output
}  // namespace depass
