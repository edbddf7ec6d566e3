#pragma once
// JSON parsing for untrusted checkpoint metadata: parse errors and type mismatches become
// FormatErrors naming the file and the field, never nlohmann exceptions or asserts.

#include <climits>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "../../Error.hpp"

namespace depass {
namespace detail {

using Json = nlohmann::json;

/// Parses text as JSON. With reject_duplicate_keys, an object that repeats a key is an
/// error instead of nlohmann's silent last-one-wins (a safetensors header that names a
/// tensor twice is ambiguous about which bytes hold it).
inline Json parse_json(const std::string& text, const std::string& source,
                       bool reject_duplicate_keys = false) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto watch = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default:
        break;
    }
    return true;  // keep everything; we only observe
  };
  Json result;
  try {
    result = reject_duplicate_keys ? Json::parse(text, watch) : Json::parse(text);
  } catch (const Json::exception& e) {
    throw FormatError(source + ": not valid JSON: " + e.what());
  }
  if (!duplicate.empty()) throw FormatError(source + ": duplicate key '" + duplicate + "'");
  return result;
}

/// Appends value.dump() to out, stopping once out is longer than limit. Json::dump()
/// recurses once per nesting level, so dumping a hostile [[[[...]]]] a million deep would
/// overflow the stack; here every level adds a character first, so the recursion is at
/// most limit + 1 deep. Output up to limit characters is exactly dump()'s.
inline void dump_prefix(const Json& value, std::string& out, std::size_t limit) {
  if (!value.is_structured()) {
    out += value.dump();
    return;
  }
  const bool array = value.is_array();
  out += array ? '[' : '{';
  bool first = true;
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (out.size() > limit) return;
    if (!first) out += ',';
    first = false;
    if (!array) out += Json(it.key()).dump() + ':';
    dump_prefix(it.value(), out, limit);
  }
  out += array ? ']' : '}';
}

/// Short human-readable description of a JSON value for error messages.
inline std::string describe_json(const Json& value) {
  std::string text;
  dump_prefix(value, text, 40);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(value.type_name()) + " " + text;
}

/// The field, or nullptr when it is absent or null (Hugging Face writes null for "use the
/// default", e.g. "head_dim": null).
inline const Json* find_field(const Json& object, const std::string& name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

/// Reads typed fields of one JSON object, naming the source file in every error.
class JsonFields {
 public:
  JsonFields(const Json& object, std::string source) : object_(object), source_(std::move(source)) {
    if (!object_.is_object())
      throw FormatError(source_ + ": expected a JSON object, got " + describe_json(object_));
  }

  const std::string& source() const { return source_; }
  bool has(const std::string& name) const { return find_field(object_, name) != nullptr; }
  const Json* find(const std::string& name) const { return find_field(object_, name); }
  /// The field is present with the value null (has() counts null as absent).
  bool is_null(const std::string& name) const {
    const auto it = object_.find(name);
    return it != object_.end() && it->is_null();
  }

  int require_int(const std::string& name) const { return to_int(name, require(name)); }
  int optional_int(const std::string& name, int fallback) const {
    const Json* v = find(name);
    return v ? to_int(name, *v) : fallback;
  }

  double require_number(const std::string& name) const { return to_number(name, require(name)); }
  double optional_number(const std::string& name, double fallback) const {
    const Json* v = find(name);
    return v ? to_number(name, *v) : fallback;
  }

  bool optional_bool(const std::string& name, bool fallback) const {
    const Json* v = find(name);
    if (!v) return fallback;
    if (!v->is_boolean()) wrong_type(name, "a boolean", *v);
    return v->get<bool>();
  }

  std::string require_string(const std::string& name) const {
    return to_string(name, require(name));
  }
  std::string optional_string(const std::string& name, const std::string& fallback) const {
    const Json* v = find(name);
    return v ? to_string(name, *v) : fallback;
  }

  [[noreturn]] void fail(const std::string& name, const std::string& problem) const {
    throw FormatError(source_ + ": field '" + name + "' " + problem);
  }

 private:
  const Json& require(const std::string& name) const {
    const Json* v = find(name);
    if (!v) throw FormatError(source_ + ": missing required field '" + name + "'");
    return *v;
  }

  [[noreturn]] void wrong_type(const std::string& name, const char* expected, const Json& v) const {
    fail(name, std::string("must be ") + expected + ", got " + describe_json(v));
  }

  int to_int(const std::string& name, const Json& v) const {
    if (v.is_number_unsigned()) {
      const auto u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT_MAX)) fail(name, "= " + v.dump() + " is out of range");
      return static_cast<int>(u);
    }
    if (v.is_number_integer()) {
      const auto i = v.get<std::int64_t>();
      if (i < INT_MIN || i > INT_MAX) fail(name, "= " + v.dump() + " is out of range");
      return static_cast<int>(i);
    }
    // Some exporters write integral values as floats (128.0); accept exactly those.
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && d >= INT_MIN && d <= INT_MAX)
        return static_cast<int>(d);
    }
    wrong_type(name, "an integer", v);
  }

  double to_number(const std::string& name, const Json& v) const {
    if (!v.is_number()) wrong_type(name, "a number", v);
    return v.get<double>();
  }

  std::string to_string(const std::string& name, const Json& v) const {
    if (!v.is_string()) wrong_type(name, "a string", v);
    return v.get<std::string>();
  }

  const Json& object_;
  std::string source_;
};

}  // namespace detail
}  // namespace depass
