#pragma once
// JSON documents of the depass tool. Every document is an object with a versioned
// "schema" field ("depass.tokens/1", "depass.heads/1", ...; docs/cli.md lists the fields
// of each). The other writers (Csv, Npy, HtmlReport, Terminal) render these documents,
// so every output format shows the same numbers.

#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>
#include <string>

#include "Text.hpp"

namespace depass {
namespace output {

namespace schema {
inline constexpr const char* kTokens = "depass.tokens/1";
inline constexpr const char* kModules = "depass.modules/1";
inline constexpr const char* kHeads = "depass.heads/1";
inline constexpr const char* kNeurons = "depass.neurons/1";
inline constexpr const char* kSubspace = "depass.subspace/1";
inline constexpr const char* kDecode = "depass.decode/1";
inline constexpr const char* kGenerate = "depass.generate/1";
inline constexpr const char* kInfo = "depass.info/1";
inline constexpr const char* kTokenize = "depass.tokenize/1";
inline constexpr const char* kError = "depass.error/1";  // a failed batch line
}  // namespace schema

/// The schema name without its version: "tokens" for "depass.tokens/1". Throws
/// std::invalid_argument if the document has no depass schema field.
inline std::string document_kind(const nlohmann::json& doc) {
  if (!doc.is_object() || !doc.contains("schema") || !doc["schema"].is_string())
    throw std::invalid_argument("not a depass document: no \"schema\" field");
  const std::string s = doc["schema"].get<std::string>();
  const std::size_t slash = s.find('/');
  if (s.rfind("depass.", 0) != 0 || slash == std::string::npos)
    throw std::invalid_argument("not a depass schema: '" + s + "'");
  return s.substr(7, slash - 7);
}

/// {"id": id, "text": text} with text made valid UTF-8.
inline nlohmann::json token_json(int id, const std::string& text) {
  return {{"id", id}, {"text", valid_utf8(text)}};
}

/// Pretty-printed document, newline-terminated. Doubles are written with enough digits
/// to read back exactly; invalid UTF-8 (should any slip through) becomes U+FFFD.
inline std::string to_json_text(const nlohmann::json& doc, int indent = 2) {
  return doc.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

inline void write_json(std::ostream& out, const nlohmann::json& doc, int indent = 2) {
  out << to_json_text(doc, indent);
}

}  // namespace output
}  // namespace depass
