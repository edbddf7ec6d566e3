#pragma once
// Reader for the safetensors format: an 8-byte little-endian header length N, N bytes
// of JSON describing each tensor (dtype, shape, byte range), then the raw data.
// The header is parsed and fully validated on open; tensor bytes are read on demand, so
// opening a multi-gigabyte shard costs one small read.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../Error.hpp"
#include "../Weights.hpp"
#include "../detail/File.hpp"
#include "../detail/io/BinaryFile.hpp"
#include "../detail/io/Convert.hpp"
#include "../detail/io/Json.hpp"

namespace depass {
namespace io {

/// One tensor as described by a safetensors header.
struct TensorInfo {
  std::string name;
  std::string dtype;                // as written in the header: "F32", "BF16", "I8", ...
  std::vector<std::int64_t> shape;  // empty for a scalar
  std::uint64_t element_count = 0;  // product of shape (1 for a scalar)
  std::uint64_t data_begin = 0;     // data_offsets[0], relative to the start of the data
  std::uint64_t data_end = 0;       // data_offsets[1], one past the last byte
  std::uint64_t file_offset = 0;    // absolute file offset of the first byte

  std::uint64_t byte_size() const { return data_end - data_begin; }
};

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

class SafetensorsFile {
 public:
  /// Headers larger than this are refused before being read (the reference implementation
  /// uses the same limit); real headers are a few hundred kilobytes at most.
  static constexpr std::uint64_t max_header_size = 100000000;

  /// Reads and validates the header. std::runtime_error if the file cannot be read,
  /// FormatError if anything in the header is malformed or inconsistent with the file.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  std::uint64_t file_size() const { return file_size_; }

  /// Tensor names in sorted order (the header's own order carries no meaning).
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    result.reserve(tensors_.size());
    for (const auto& entry : tensors_) result.push_back(entry.first);
    return result;
  }

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  /// FormatError naming the file and the tensor if it is absent.
  const TensorInfo& info(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw FormatError(path_ + ": no tensor named '" + name + "'");
    return it->second;
  }

  /// The free-form string map stored under "__metadata__" (non-string values are dropped).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// A 2-D tensor converted to Scalar, in its stored [rows, cols] row-major layout.
  template <typename Scalar>
  RowMatrix<Scalar> matrix(const std::string& name) const {
    const TensorInfo& t = info(name);
    if (t.shape.size() != 2)
      throw FormatError(path_ + ": tensor '" + name + "' has shape " + shape_string(t.shape) +
                        ", expected a 2-D matrix");
    const detail::ElementType type = element_type(t);
    RowMatrix<Scalar> result(static_cast<Eigen::Index>(t.shape[0]),
                             static_cast<Eigen::Index>(t.shape[1]));
    read_into(t, type, result.data());
    return result;
  }

  /// As matrix(name), after checking that the shape is exactly [rows, cols].
  template <typename Scalar>
  RowMatrix<Scalar> matrix(const std::string& name, std::int64_t rows, std::int64_t cols) const {
    check(name, {rows, cols});
    return matrix<Scalar>(name);
  }

  /// A 1-D tensor converted to Scalar.
  template <typename Scalar>
  Vector<Scalar> vector(const std::string& name) const {
    const TensorInfo& t = info(name);
    if (t.shape.size() != 1)
      throw FormatError(path_ + ": tensor '" + name + "' has shape " + shape_string(t.shape) +
                        ", expected a 1-D vector");
    const detail::ElementType type = element_type(t);
    Vector<Scalar> result(static_cast<Eigen::Index>(t.shape[0]));
    read_into(t, type, result.data());
    return result;
  }

  /// As vector(name), after checking that the shape is exactly [size].
  template <typename Scalar>
  Vector<Scalar> vector(const std::string& name, std::int64_t size) const {
    check(name, {size});
    return vector<Scalar>(name);
  }

  /// FormatError naming the tensor unless it exists, has exactly the expected shape and a
  /// dtype we can convert; lets callers vet a whole checkpoint before reading any of it.
  void check(const std::string& name, const std::vector<std::int64_t>& expected) const {
    const TensorInfo& t = info(name);
    if (t.shape != expected)
      throw FormatError(path_ + ": tensor '" + name + "' has shape " + shape_string(t.shape) +
                        ", expected " + shape_string(expected));
    element_type(t);
  }

 private:
  SafetensorsFile() = default;

  static const std::map<std::string, int>& dtype_sizes() {
    // Every dtype with a whole number of bytes per element, so sizes can be validated
    // even for tensors we cannot convert; only the floating-point ones are readable.
    static const std::map<std::string, int> sizes = {
        {"F64", 8},  {"F32", 4},     {"F16", 2},     {"BF16", 2},    {"I64", 8}, {"U64", 8},
        {"I32", 4},  {"U32", 4},     {"I16", 2},     {"U16", 2},     {"I8", 1},  {"U8", 1},
        {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}, {"C64", 8}};
    return sizes;
  }

  /// The conversion for t's dtype. Checked before allocating: for dtypes we cannot size,
  /// the element count was never bounded by the file size.
  detail::ElementType element_type(const TensorInfo& t) const {
    if (t.dtype == "F32") return detail::ElementType::F32;
    if (t.dtype == "F16") return detail::ElementType::F16;
    if (t.dtype == "BF16") return detail::ElementType::BF16;
    if (t.dtype == "F64") return detail::ElementType::F64;
    throw FormatError(path_ + ": unsupported dtype '" + t.dtype + "' for tensor '" + t.name +
                      "' (supported: F32, F16, BF16, F64)");
  }

  template <typename Scalar>
  void read_into(const TensorInfo& t, detail::ElementType type, Scalar* out) const {
    detail::BinaryFile file(path_);
    if (file.size() != file_size_)
      throw std::runtime_error("file '" + path_ + "' changed size since its header was read");
    detail::read_elements(file, t.file_offset, type, static_cast<std::size_t>(t.element_count), out,
                          "tensor '" + t.name + "'");
  }

  TensorInfo parse_entry(const std::string& name, const detail::Json& entry,
                         std::uint64_t data_size) const;

  std::string path_;
  std::uint64_t file_size_ = 0;
  std::uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

inline SafetensorsFile SafetensorsFile::open(const std::string& path) {
  detail::BinaryFile file(path);
  SafetensorsFile result;
  result.path_ = path;
  result.file_size_ = file.size();
  if (file.size() < 8)
    throw FormatError(path + ": " + std::to_string(file.size()) +
                      "-byte file is too small for the 8-byte safetensors header length");
  char prefix[8];
  file.read(0, 8, prefix, "header length");
  const auto header_size = detail::ByteReader(prefix, 8, path).read<std::uint64_t>("header length");
  if (header_size > file.size() - 8)
    throw FormatError(path + ": header length " + std::to_string(header_size) + " exceeds the " +
                      std::to_string(file.size() - 8) + " bytes that follow it");
  if (header_size > max_header_size)
    throw FormatError(path + ": header length " + std::to_string(header_size) +
                      " exceeds the limit of " + std::to_string(max_header_size) + " bytes");
  std::string text(static_cast<std::size_t>(header_size), '\0');
  file.read(8, header_size, &text[0], "header");
  result.data_start_ = 8 + header_size;
  const std::uint64_t data_size = file.size() - result.data_start_;

  const detail::Json header = detail::parse_json(text, path + ": header", true);
  if (!header.is_object())
    throw FormatError(path + ": header must be a JSON object, got " +
                      detail::describe_json(header));
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) result.metadata_[m.key()] = m->get<std::string>();
      continue;
    }
    TensorInfo t = result.parse_entry(it.key(), *it, data_size);
    t.file_offset = result.data_start_ + t.data_begin;
    result.tensors_.emplace(it.key(), std::move(t));
  }
  return result;
}

inline TensorInfo SafetensorsFile::parse_entry(const std::string& name, const detail::Json& entry,
                                               std::uint64_t data_size) const {
  const std::string where = path_ + ": tensor '" + name + "'";
  if (!entry.is_object())
    throw FormatError(where + ": entry must be a JSON object, got " + detail::describe_json(entry));
  auto field = [&](const char* key) -> const detail::Json& {
    auto it = entry.find(key);
    if (it == entry.end()) throw FormatError(where + ": missing '" + key + "'");
    return *it;
  };
  // A non-negative integer that fits in int64 (so it also fits Eigen::Index and uint64).
  auto natural = [&](const detail::Json& v, const std::string& what) -> std::uint64_t {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX))
      return v.get<std::uint64_t>();
    if (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() >= 0)
      return static_cast<std::uint64_t>(v.get<std::int64_t>());
    throw FormatError(where + ": " + what + " must be a non-negative integer below 2^63, got " +
                      detail::describe_json(v));
  };

  TensorInfo t;
  t.name = name;
  const detail::Json& dtype = field("dtype");
  if (!dtype.is_string())
    throw FormatError(where + ": dtype must be a string, got " + detail::describe_json(dtype));
  t.dtype = dtype.get<std::string>();

  const detail::Json& shape = field("shape");
  if (!shape.is_array())
    throw FormatError(where + ": shape must be an array, got " + detail::describe_json(shape));
  t.element_count = 1;
  for (const auto& dim : shape) {
    const std::uint64_t n = natural(dim, "shape dimension");
    t.shape.push_back(static_cast<std::int64_t>(n));
    if (t.element_count != 0 && n > UINT64_MAX / t.element_count)
      throw FormatError(where + ": shape " + detail::describe_json(shape) +
                        " has too many elements");
    t.element_count *= n;
  }

  const detail::Json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2)
    throw FormatError(where + ": data_offsets must be an array [begin, end], got " +
                      detail::describe_json(offsets));
  t.data_begin = natural(offsets[0], "data_offsets begin");
  t.data_end = natural(offsets[1], "data_offsets end");
  if (t.data_end < t.data_begin)
    throw FormatError(where + ": data_offsets [" + std::to_string(t.data_begin) + ", " +
                      std::to_string(t.data_end) + "] end before they begin");
  if (t.data_end > data_size)
    throw FormatError(where + ": data_offsets [" + std::to_string(t.data_begin) + ", " +
                      std::to_string(t.data_end) + "] reach beyond the " +
                      std::to_string(data_size) + "-byte data section");

  auto size = dtype_sizes().find(t.dtype);
  if (size != dtype_sizes().end()) {
    if (t.element_count > UINT64_MAX / static_cast<std::uint64_t>(size->second))
      throw FormatError(where + ": shape " + shape_string(t.shape) + " has too many elements");
    const std::uint64_t expected = t.element_count * static_cast<std::uint64_t>(size->second);
    if (t.byte_size() != expected)
      throw FormatError(where + ": data_offsets span " + std::to_string(t.byte_size()) +
                        " bytes but shape " + shape_string(t.shape) + " of dtype " + t.dtype +
                        " needs " + std::to_string(expected));
  }
  // Unknown dtypes (e.g. sub-byte formats) keep only the bounds check above; they are
  // refused when read, so a shard holding one tensor we never use still opens.
  return t;
}

}  // namespace io
}  // namespace depass
