#pragma once
// NumPy .npy files (format versions 1.0, 2.0 and 3.0 read; 1.0 written), without NumPy.
//
//   output::NpyArray a = output::load_npy("basis.npy");           // validated
//   Eigen::MatrixXd B = output::to_matrix<double>(a);              // 2-D only
//   output::save_npy("scores.npy", output::NpyArray::from({3, 4}, values));
//
// Supported element types: little-endian float32 ('<f4') and float64 ('<f8') for reading
// and writing, and int64 ('<i8') for writing token ids. Every malformed file -- wrong
// magic, unknown version, a header that is not the dict NumPy writes, an unsupported
// dtype, a shape whose size overflows, data shorter or longer than the shape says --
// raises depass::FormatError naming the file and the problem.

#include <Eigen/Core>
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../ComponentTensor.hpp"
#include "../Error.hpp"
#include "Json.hpp"

namespace depass {
namespace output {

enum class NpyType { Float32, Float64, Int64 };

inline const char* npy_descr(NpyType type) {
  switch (type) {
    case NpyType::Float32: return "<f4";
    case NpyType::Float64: return "<f8";
    case NpyType::Int64: return "<i8";
  }
  return "?";
}

inline std::size_t npy_item_size(NpyType type) { return type == NpyType::Float32 ? 4 : 8; }

/// An n-dimensional array in C (row-major) order. Values are kept as double whatever the
/// file's dtype (float32 and int64 below 2^53 convert exactly); `type` is the dtype read
/// or to be written.
struct NpyArray {
  std::vector<std::size_t> shape;
  std::vector<double> data;  // product(shape) values, last index fastest
  NpyType type = NpyType::Float64;

  std::size_t size() const {
    std::size_t n = 1;
    for (std::size_t s : shape) n *= s;
    return n;
  }

  static NpyArray from(std::vector<std::size_t> shape, std::vector<double> data,
                       NpyType type = NpyType::Float64) {
    NpyArray a;
    a.shape = std::move(shape);
    a.data = std::move(data);
    a.type = type;
    if (a.size() != a.data.size())
      throw std::invalid_argument("NpyArray: shape holds " + std::to_string(a.size()) +
                                  " values but " + std::to_string(a.data.size()) + " were given");
    return a;
  }

  /// A 2-D array from an Eigen matrix (any storage order; the file is C order).
  template <typename Derived>
  static NpyArray from_matrix(const Eigen::MatrixBase<Derived>& m, NpyType type = NpyType::Float64) {
    NpyArray a;
    a.shape = {static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
    a.type = type;
    a.data.reserve(a.size());
    for (Eigen::Index i = 0; i < m.rows(); ++i)
      for (Eigen::Index j = 0; j < m.cols(); ++j) a.data.push_back(static_cast<double>(m(i, j)));
    return a;
  }
};

/// "(3,)", "(2, 5)", "()" as NumPy writes shapes.
inline std::string npy_shape_string(const std::vector<std::size_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

/// The magic, version 1.0, header length and the padded header dict (total a multiple of 64).
inline std::string npy_header(NpyType type, const std::vector<std::size_t>& shape) {
  std::string dict = "{'descr': '" + std::string(npy_descr(type)) +
                     "', 'fortran_order': False, 'shape': " + npy_shape_string(shape) + ", }";
  const std::size_t prefix = 10;  // magic (6) + version (2) + header length (2)
  std::size_t total = prefix + dict.size() + 1;
  const std::size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  if (dict.size() > 65535) throw std::invalid_argument("npy header too long for format 1.0");
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  return out + dict;
}

/// The whole .npy file as bytes (format 1.0, C order, little-endian).
inline std::string npy_bytes(const NpyArray& a) {
  if (a.size() != a.data.size())
    throw std::invalid_argument("NpyArray: shape holds " + std::to_string(a.size()) +
                                " values but data has " + std::to_string(a.data.size()));
  std::string out = npy_header(a.type, a.shape);
  const std::size_t item = npy_item_size(a.type);
  const std::size_t start = out.size();
  out.resize(start + item * a.data.size());
  char* p = &out[start];
  for (double v : a.data) {
    unsigned char bytes[8];
    if (a.type == NpyType::Float32) {
      const float f = static_cast<float>(v);
      std::uint32_t u;
      std::memcpy(&u, &f, 4);
      for (int b = 0; b < 4; ++b) bytes[b] = static_cast<unsigned char>(u >> (8 * b));
    } else {
      std::uint64_t u;
      if (a.type == NpyType::Float64) {
        std::memcpy(&u, &v, 8);
      } else {
        const std::int64_t i = static_cast<std::int64_t>(v);
        std::memcpy(&u, &i, 8);
      }
      for (int b = 0; b < 8; ++b) bytes[b] = static_cast<unsigned char>(u >> (8 * b));
    }
    std::memcpy(p, bytes, item);
    p += item;
  }
  return out;
}

inline void write_npy(std::ostream& out, const NpyArray& a) {
  const std::string bytes = npy_bytes(a);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void save_npy(const std::string& path, const NpyArray& a) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write '" + path + "'");
  write_npy(out, a);
  out.close();
  if (!out) throw std::runtime_error("error while writing '" + path + "'");
}

namespace detail_npy {

struct Cursor {
  const std::string& text;
  std::size_t pos;
  const std::string& name;

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(name + ": npy header: " + what + " (header: " + text + ")");
  }
  void skip_space() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' || text[pos] == '\r'))
      ++pos;
  }
  bool accept(char c) {
    skip_space();
    if (pos < text.size() && text[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) fail(std::string("expected '") + c + "'");
  }
  std::string string_literal() {
    skip_space();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"')) fail("expected a quoted string");
    const char quote = text[pos++];
    const std::size_t end = text.find(quote, pos);
    if (end == std::string::npos) fail("unterminated string");
    std::string s = text.substr(pos, end - pos);
    pos = end + 1;
    return s;
  }
  std::string word() {
    skip_space();
    std::size_t start = pos;
    while (pos < text.size() && (std::isalnum(static_cast<unsigned char>(text[pos])) || text[pos] == '_')) ++pos;
    return text.substr(start, pos - start);
  }
};

/// Where the header dict sits: the bytes after the magic, version and length fields.
struct HeaderSpan {
  std::size_t prefix = 0, length = 0;
};

inline HeaderSpan header_span(const std::string& bytes, const std::string& name) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY", 6) != 0)
    throw FormatError(name + ": not a NumPy .npy file (missing the \\x93NUMPY magic)");
  const int major = static_cast<unsigned char>(bytes[6]), minor = static_cast<unsigned char>(bytes[7]);
  HeaderSpan span;
  if (major == 1 && minor == 0) {
    span.length = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    span.prefix = 10;
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (bytes.size() < 12) throw FormatError(name + ": truncated header length");
    for (int b = 0; b < 4; ++b)
      span.length |= static_cast<std::size_t>(static_cast<unsigned char>(bytes[8 + b])) << (8 * b);
    span.prefix = 12;
  } else {
    throw FormatError(name + ": unsupported .npy format version " + std::to_string(major) + "." +
                      std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");
  }
  if (span.length > bytes.size() - span.prefix)
    throw FormatError(name + ": header of " + std::to_string(span.length) + " bytes is longer than the file");
  return span;
}

/// The header dict's three keys.
struct Header {
  std::string descr;
  bool fortran = false;
  std::vector<std::size_t> shape;
};

inline std::vector<std::size_t> parse_shape(Cursor& c) {
  std::vector<std::size_t> shape;
  c.expect('(');
  while (!c.accept(')')) {
    const std::string w = c.word();
    if (w.empty() || w.find_first_not_of("0123456789") != std::string::npos)
      c.fail("shape entries must be non-negative integers");
    if (w.size() > 18) c.fail("shape entry " + w + " is too large");
    shape.push_back(static_cast<std::size_t>(std::stoull(w)));
    if (!c.accept(',')) {
      c.expect(')');
      break;
    }
  }
  return shape;
}

inline bool parse_bool(Cursor& c) {
  const std::string w = c.word();
  if (w != "True" && w != "False") c.fail("fortran_order must be True or False");
  return w == "True";
}

inline Header parse_header(const std::string& text, const std::string& name) {
  Cursor c{text, 0, name};
  Header h;
  bool have_descr = false, have_order = false, have_shape = false;
  c.expect('{');
  while (!c.accept('}')) {
    const std::string key = c.string_literal();
    c.expect(':');
    if (key == "descr") {
      h.descr = c.string_literal();
      have_descr = true;
    } else if (key == "fortran_order") {
      h.fortran = parse_bool(c);
      have_order = true;
    } else if (key == "shape") {
      h.shape = parse_shape(c);
      have_shape = true;
    } else {
      c.fail("unexpected key '" + key + "'");
    }
    if (!c.accept(',')) {
      c.expect('}');
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape) c.fail("the dict must have the keys 'descr', 'fortran_order' and 'shape'");
  return h;
}

inline NpyType type_of(const std::string& descr, const std::string& name) {
  if (descr == "<f4" || descr == "|f4") return NpyType::Float32;
  if (descr == "<f8") return NpyType::Float64;
  if (descr == "<i8") return NpyType::Int64;
  throw FormatError(name + ": unsupported dtype '" + descr +
                    "' (supported: '<f4' float32, '<f8' float64, '<i8' int64; little-endian, no structured types)");
}

/// Number of elements of `shape`, refusing products that overflow a byte count.
inline std::size_t element_count(const std::vector<std::size_t>& shape, const std::string& name) {
  std::size_t count = 1;
  for (std::size_t s : shape) {
    if (s != 0 && count > std::numeric_limits<std::size_t>::max() / 8 / s)
      throw FormatError(name + ": shape " + npy_shape_string(shape) + " is too large");
    count *= s;
  }
  return count;
}

/// One little-endian element as a double.
inline double decode(const unsigned char* p, NpyType type) {
  if (type == NpyType::Float32) {
    std::uint32_t u = 0;
    for (int b = 0; b < 4; ++b) u |= static_cast<std::uint32_t>(p[b]) << (8 * b);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  std::uint64_t u = 0;
  for (int b = 0; b < 8; ++b) u |= static_cast<std::uint64_t>(p[b]) << (8 * b);
  if (type == NpyType::Float64) {
    double d;
    std::memcpy(&d, &u, 8);
    return d;
  }
  std::int64_t v;
  std::memcpy(&v, &u, 8);
  return static_cast<double>(v);
}

/// Column-major values (first index fastest) reordered to C order (first index slowest).
inline std::vector<double> fortran_to_c(const std::vector<double>& values, const std::vector<std::size_t>& shape) {
  std::vector<double> out(values.size());
  std::vector<std::size_t> index(shape.size(), 0);
  for (std::size_t f = 0; f < values.size(); ++f) {
    std::size_t c_offset = 0;
    for (std::size_t d = 0; d < shape.size(); ++d) c_offset = c_offset * shape[d] + index[d];
    out[c_offset] = values[f];
    for (std::size_t d = 0; d < shape.size(); ++d) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

}  // namespace detail_npy

/// Parses a whole .npy file held in memory. `name` (usually the path) prefixes errors.
inline NpyArray parse_npy(const std::string& bytes, const std::string& name = "npy") {
  const detail_npy::HeaderSpan span = detail_npy::header_span(bytes, name);
  const detail_npy::Header header = detail_npy::parse_header(bytes.substr(span.prefix, span.length), name);
  NpyArray a;
  a.shape = header.shape;
  a.type = detail_npy::type_of(header.descr, name);
  const std::size_t count = detail_npy::element_count(a.shape, name);
  const std::size_t item = npy_item_size(a.type);
  const std::size_t available = bytes.size() - span.prefix - span.length;
  if (available != count * item)
    throw FormatError(name + ": " + (available < count * item ? "truncated" : "trailing") + " data: shape " +
                      npy_shape_string(a.shape) + " of " + header.descr + " needs " + std::to_string(count * item) +
                      " bytes, the file has " + std::to_string(available));
  std::vector<double> values(count);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(bytes.data() + span.prefix + span.length);
  for (std::size_t i = 0; i < count; ++i, p += item) values[i] = detail_npy::decode(p, a.type);
  a.data = header.fortran && a.shape.size() > 1 ? detail_npy::fortran_to_c(values, a.shape) : std::move(values);
  return a;
}

/// Reads and validates a .npy file (see parse_npy). std::runtime_error if it cannot be read.
inline NpyArray load_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + path + "': no such file or not readable");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read '" + path + "'");
  return parse_npy(buffer.str(), path);
}

/// A 2-D array as an Eigen matrix; FormatError (naming `name`) for any other rank.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> to_matrix(const NpyArray& a,
                                                                 const std::string& name = "npy") {
  if (a.shape.size() != 2)
    throw FormatError(name + ": expected a 2-D array, got shape " + npy_shape_string(a.shape));
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(static_cast<Eigen::Index>(a.shape[0]),
                                                          static_cast<Eigen::Index>(a.shape[1]));
  for (std::size_t i = 0; i < a.shape[0]; ++i)
    for (std::size_t j = 0; j < a.shape[1]; ++j)
      m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) =
          static_cast<Scalar>(a.data[i * a.shape[1] + j]);
  return m;
}

/// The numbers a depass document ranks, as one float64 array (docs/cli.md):
///   tokens    (N,)       score of each input token (bias_score is in the JSON only)
///   modules   (L, 2)     [attention, mlp] score of each layer's module outputs
///   heads     (R, H)     one row per reported layer (all layers, or the one --layer)
///   neurons   (I,)       score of every neuron of the layer, in neuron order
///   subspace  (S+1,)     each subspace's score, then the remainder's
///   decode    (M,)       each component's score for the target (bias component last)
///   generate  (T, P+T-1) step t's score of each position; NaN where a position did not
///                        exist yet at that step (P = prompt length, T = steps)
///   tokenize  (N,)       the token ids, int64
/// Chunked runs append their chunk residual score(s) as a trailing entry: tokens (N+1,),
/// neurons (I+1,), subspace (S+2,), heads (R, H+1), generate (T, P+T) (the last column),
/// modules (L, 4) = [attention, mlp, attention's chunk residual, mlp's chunk residual].
/// decode lists the chunk residual among its components already.
/// std::invalid_argument for documents without scores (info).
inline NpyArray scores_array(const nlohmann::json& doc) {
  const std::string kind = document_kind(doc);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto numbers = [&](const nlohmann::json& list) {
    std::vector<double> v;
    for (const auto& x : list) v.push_back(x.is_number() ? x.get<double>() : nan);
    return v;
  };
  auto chunk = [](const nlohmann::json& entry) { return entry.contains("chunk_residual_score"); };
  auto chunk_score = [](const nlohmann::json& entry) { return entry.at("chunk_residual_score").get<double>(); };
  if (kind == "tokens" || kind == "neurons") {
    std::vector<double> v = numbers(doc.at("scores"));
    if (chunk(doc)) v.push_back(chunk_score(doc));
    return NpyArray::from({v.size()}, v);
  }
  if (kind == "modules") {
    const auto& mods = doc.at("modules");
    if (mods.size() % 2) throw std::invalid_argument("modules document: odd number of modules");
    const bool chunked = !mods.empty() && chunk(mods[0]);
    const std::size_t width = chunked ? 4 : 2;
    std::vector<double> v(mods.size() / 2 * width, nan);
    for (std::size_t i = 0; i < mods.size(); ++i) {
      v[i / 2 * width + i % 2] = mods[i].at("score").get<double>();
      if (chunked) v[i / 2 * width + 2 + i % 2] = chunk_score(mods[i]);
    }
    return NpyArray::from({mods.size() / 2, width}, v);
  }
  if (kind == "heads") {
    std::vector<double> v;
    const auto& layers = doc.at("layers");
    const bool chunked = !layers.empty() && chunk(layers[0]);
    const std::size_t H = doc.at("n_heads").get<std::size_t>();
    for (const auto& l : layers) {
      for (const auto& h : l.at("heads")) v.push_back(h.get<double>());
      if (chunked) v.push_back(chunk_score(l));
    }
    return NpyArray::from({layers.size(), H + (chunked ? 1 : 0)}, v);
  }
  if (kind == "subspace" || kind == "decode") {
    std::vector<double> v;
    for (const auto& c : doc.at("components")) v.push_back(c.at("score").get<double>());
    if (kind == "subspace" && chunk(doc)) v.push_back(chunk_score(doc));
    return NpyArray::from({v.size()}, v);
  }
  if (kind == "generate") {
    const auto& steps = doc.at("steps");
    std::size_t width = 0;
    bool chunked = false;
    for (const auto& s : steps) {
      width = std::max(width, s.at("scores").size());
      chunked = chunked || chunk(s);
    }
    const std::size_t columns = width + (chunked ? 1 : 0);
    std::vector<double> v(steps.size() * columns, nan);
    for (std::size_t t = 0; t < steps.size(); ++t) {
      const auto& sc = steps[t].at("scores");
      for (std::size_t i = 0; i < sc.size(); ++i) v[t * columns + i] = sc[i].get<double>();
      if (chunked && chunk(steps[t])) v[t * columns + width] = chunk_score(steps[t]);
    }
    return NpyArray::from({steps.size(), columns}, v);
  }
  if (kind == "tokenize") {
    std::vector<double> v;
    for (const auto& t : doc.at("tokens")) v.push_back(t.at("id").get<double>());
    return NpyArray::from({v.size()}, v, NpyType::Int64);
  }
  throw std::invalid_argument("a depass." + kind + " document has no score array to write as .npy "
                              "(use --format json, csv or text)");
}

/// Streams a component tensor (M x N x D, C order: component, position, feature) as a
/// .npy file without copying it: index [m, n, d] is C[m] at position n, feature d.
template <typename Scalar>
void write_components_npy(std::ostream& out, const ComponentTensor<Scalar>& C, NpyType type = NpyType::Float64) {
  if (type == NpyType::Int64) throw std::invalid_argument("write_components_npy: use a floating-point dtype");
  const std::vector<std::size_t> shape = {static_cast<std::size_t>(C.components()),
                                          static_cast<std::size_t>(C.positions()),
                                          static_cast<std::size_t>(C.width())};
  out << npy_header(type, shape);
  const std::size_t item = npy_item_size(type);
  std::string row(static_cast<std::size_t>(C.width()) * item, '\0');
  for (Eigen::Index r = 0; r < C.stacked().rows(); ++r) {
    for (Eigen::Index d = 0; d < C.width(); ++d) {
      unsigned char* p = reinterpret_cast<unsigned char*>(&row[static_cast<std::size_t>(d) * item]);
      const double v = static_cast<double>(C.stacked()(r, d));
      if (type == NpyType::Float32) {
        const float f = static_cast<float>(v);
        std::uint32_t u;
        std::memcpy(&u, &f, 4);
        for (int b = 0; b < 4; ++b) p[b] = static_cast<unsigned char>(u >> (8 * b));
      } else {
        std::uint64_t u;
        std::memcpy(&u, &v, 8);
        for (int b = 0; b < 8; ++b) p[b] = static_cast<unsigned char>(u >> (8 * b));
      }
    }
    out.write(row.data(), static_cast<std::streamsize>(row.size()));
  }
}

template <typename Scalar>
void save_components_npy(const std::string& path, const ComponentTensor<Scalar>& C, NpyType type = NpyType::Float64) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write '" + path + "'");
  write_components_npy(out, C, type);
  out.close();
  if (!out) throw std::runtime_error("error while writing '" + path + "'");
}

}  // namespace output
}  // namespace depass
