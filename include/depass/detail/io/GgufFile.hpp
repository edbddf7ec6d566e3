#pragma once
// GGUF container parsing (llama.cpp's format), versions 2 and 3:
//
//   "GGUF" u32 version, u64 tensor_count, u64 kv_count,
//   kv_count x (string key, u32 value type, value),
//   tensor_count x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset),
//   padding to general.alignment (default 32), then the data section.
//
// Strings are a u64 byte length followed by the bytes. Every count, length and offset comes
// from an untrusted file, so each is checked against the bytes that remain before anything is
// allocated for it, and the header is read through a small buffer rather than loaded (or
// mapped) whole: tensor data is only touched when a tensor is read.
//
// Only metadata and tensor bookkeeping live here; mapping tensors onto a model is
// io/Gguf.hpp's job, and the embedded tokenizer is read by detail/tokenizer/Gguf.hpp.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../Error.hpp"
#include "BinaryFile.hpp"
#include "Convert.hpp"
#include "GgmlQuants.hpp"

namespace depass {
namespace detail {

// ---------------------------------------------------------------------------------------------
// Metadata value types (gguf_type in ggml's gguf.h)

enum class GgufValueType : std::uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

inline bool gguf_value_type_known(std::uint32_t type) { return type <= 12; }

inline const char* gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::U8:
      return "u8";
    case GgufValueType::I8:
      return "i8";
    case GgufValueType::U16:
      return "u16";
    case GgufValueType::I16:
      return "i16";
    case GgufValueType::U32:
      return "u32";
    case GgufValueType::I32:
      return "i32";
    case GgufValueType::F32:
      return "f32";
    case GgufValueType::Bool:
      return "bool";
    case GgufValueType::String:
      return "string";
    case GgufValueType::Array:
      return "array";
    case GgufValueType::U64:
      return "u64";
    case GgufValueType::I64:
      return "i64";
    case GgufValueType::F64:
      return "f64";
  }
  return "unknown";
}

/// Bytes of one fixed-size value; 0 for strings and arrays.
inline std::size_t gguf_value_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::U8:
    case GgufValueType::I8:
    case GgufValueType::Bool:
      return 1;
    case GgufValueType::U16:
    case GgufValueType::I16:
      return 2;
    case GgufValueType::U32:
    case GgufValueType::I32:
    case GgufValueType::F32:
      return 4;
    case GgufValueType::U64:
    case GgufValueType::I64:
    case GgufValueType::F64:
      return 8;
    case GgufValueType::String:
    case GgufValueType::Array:
      break;
  }
  return 0;
}

/// The fewest bytes one value of the type can occupy in a file: what an array's item count
/// is checked against before anything is allocated for its items.
inline std::size_t gguf_min_value_size(GgufValueType type) {
  if (type == GgufValueType::String) return 8;  // u64 length, no bytes
  if (type == GgufValueType::Array) return 12;  // u32 item type + u64 count, no items
  return gguf_value_size(type);
}

inline bool gguf_is_unsigned(GgufValueType t) {
  return t == GgufValueType::U8 || t == GgufValueType::U16 || t == GgufValueType::U32 ||
         t == GgufValueType::U64;
}
inline bool gguf_is_signed(GgufValueType t) {
  return t == GgufValueType::I8 || t == GgufValueType::I16 || t == GgufValueType::I32 ||
         t == GgufValueType::I64;
}
inline bool gguf_is_float(GgufValueType t) {
  return t == GgufValueType::F32 || t == GgufValueType::F64;
}

/// One metadata value. Arrays of fixed-size items keep their little-endian bytes as read
/// (so a million-entry score table costs four bytes per entry, not a value object each);
/// arrays of strings and of arrays are unpacked.
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  std::uint64_t unsigned_value = 0;  // U8..U64, and Bool as 0/1
  std::int64_t signed_value = 0;     // I8..I64
  double float_value = 0.0;          // F64, or F32 widened exactly
  float f32_value = 0.0f;            // F32 as stored
  std::string string_value;          // String

  GgufValueType item_type = GgufValueType::U8;  // Array
  std::uint64_t count = 0;                      // Array: number of items
  std::string item_bytes;                       // Array of fixed-size items
  std::vector<std::string> strings;             // Array of strings
  std::vector<GgufValue> arrays;                // Array of arrays

  /// "u32", "string", "array of f32", "array of array of string", ...
  std::string type_name() const {
    if (type != GgufValueType::Array) return gguf_value_type_name(type);
    if (item_type == GgufValueType::Array)
      return "array of " + (arrays.empty() ? std::string("array") : arrays.front().type_name());
    return std::string("array of ") + gguf_value_type_name(item_type);
  }
};

// ---------------------------------------------------------------------------------------------
// Tensor types (ggml_type in ggml.h; gaps are numbers ggml retired)

struct GgmlTypeTraits {
  const char* name;
  std::uint32_t block_size;  // elements per block
  std::uint32_t type_size;   // bytes per block
};

/// Name, block size and block bytes of a ggml type, or nullptr for a number ggml does not
/// define. Knowing the sizes of types we cannot convert still lets a file that holds one
/// be validated (and its tensor named precisely when it is needed).
inline const GgmlTypeTraits* ggml_type_traits(std::uint32_t type) {
  static const GgmlTypeTraits kTypes[] = {
      {"F32", 1, 4},         // 0
      {"F16", 1, 2},         // 1
      {"Q4_0", 32, 18},      // 2
      {"Q4_1", 32, 20},      // 3
      {nullptr, 0, 0},       // 4: Q4_2, removed
      {nullptr, 0, 0},       // 5: Q4_3, removed
      {"Q5_0", 32, 22},      // 6
      {"Q5_1", 32, 24},      // 7
      {"Q8_0", 32, 34},      // 8
      {"Q8_1", 32, 36},      // 9
      {"Q2_K", 256, 84},     // 10
      {"Q3_K", 256, 110},    // 11
      {"Q4_K", 256, 144},    // 12
      {"Q5_K", 256, 176},    // 13
      {"Q6_K", 256, 210},    // 14
      {"Q8_K", 256, 292},    // 15
      {"IQ2_XXS", 256, 66},  // 16
      {"IQ2_XS", 256, 74},   // 17
      {"IQ3_XXS", 256, 98},  // 18
      {"IQ1_S", 256, 50},    // 19
      {"IQ4_NL", 32, 18},    // 20
      {"IQ3_S", 256, 110},   // 21
      {"IQ2_S", 256, 82},    // 22
      {"IQ4_XS", 256, 136},  // 23
      {"I8", 1, 1},          // 24
      {"I16", 1, 2},         // 25
      {"I32", 1, 4},         // 26
      {"I64", 1, 8},         // 27
      {"F64", 1, 8},         // 28
      {"IQ1_M", 256, 56},    // 29
      {"BF16", 1, 2},        // 30
      {nullptr, 0, 0},       // 31: Q4_0_4_4, removed
      {nullptr, 0, 0},       // 32: Q4_0_4_8, removed
      {nullptr, 0, 0},       // 33: Q4_0_8_8, removed
      {"TQ1_0", 256, 54},    // 34
      {"TQ2_0", 256, 66},    // 35
      {nullptr, 0, 0},       // 36: IQ4_NL_4_4, removed
      {nullptr, 0, 0},       // 37: IQ4_NL_4_8, removed
      {nullptr, 0, 0},       // 38: IQ4_NL_8_8, removed
      {"MXFP4", 32, 17},     // 39
  };
  if (type >= sizeof kTypes / sizeof kTypes[0] || kTypes[type].name == nullptr) return nullptr;
  return &kTypes[type];
}

enum GgmlType : std::uint32_t {
  kGgmlF32 = 0,
  kGgmlF16 = 1,
  kGgmlBF16 = 30,
};

/// Float types converted element by element, and the quantised types with a block decoder
/// (detail/io/GgmlQuants.hpp).
inline bool ggml_type_convertible(std::uint32_t type) {
  return type == kGgmlF32 || type == kGgmlF16 || type == kGgmlBF16 ||
         ggml::block_decoder(type) != nullptr;
}

constexpr const char* kGgmlSupportedTypes =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, "
    "IQ4_XS";

inline std::string ggml_type_label(std::uint32_t type) {
  const GgmlTypeTraits* t = ggml_type_traits(type);
  return (t ? std::string(t->name) : std::string("unknown")) + " (" + std::to_string(type) + ")";
}

/// One tensor as described by its tensor info.
struct GgufTensorInfo {
  std::string name;
  std::vector<std::uint64_t> ne;  // ggml order: ne[0] varies fastest (the row length)
  std::uint32_t type = 0;         // ggml_type
  std::uint64_t offset = 0;       // relative to the data section
  std::uint64_t file_offset = 0;  // absolute
  std::uint64_t element_count = 0;
  std::uint64_t byte_size = 0;
  std::size_t index = 0;  // position among the tensor infos

  /// PyTorch order (ne reversed): a weight [out, in] has ne = [in, out].
  std::vector<std::int64_t> shape() const {
    return std::vector<std::int64_t>(ne.rbegin(), ne.rend());
  }
};

inline std::string gguf_shape_string(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

/// The shortest decimal that rounds to f, as a double. GGUF stores hyper-parameters such as
/// the RMSNorm epsilon as f32; the model was specified (and its other checkpoints store it)
/// as a decimal like 1e-5, which this recovers, so double-precision inference agrees with
/// the same model loaded from llama2.c or Hugging Face files. For float it changes nothing:
/// the result rounds back to f.
inline double gguf_f32_as_decimal(float f) {
  if (!(f == f) || f - f != 0.0f) return static_cast<double>(f);  // NaN, infinities
  char text[64];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, static_cast<double>(f));
    if (std::strtof(text, nullptr) == f) return std::strtod(text, nullptr);
  }
  return static_cast<double>(f);  // unreachable: 9 significant digits always round-trip
}

// ---------------------------------------------------------------------------------------------
// Sequential bounded reading of the header

/// Reads the header front to back through a small buffer. Every read is checked against
/// the file size first, so a lying count or length becomes a FormatError naming it.
class GgufCursor {
 public:
  explicit GgufCursor(BinaryFile& file) : file_(file) {}

  std::uint64_t offset() const { return offset_; }
  std::uint64_t remaining() const { return file_.size() - offset_; }

  [[noreturn]] void truncated(const std::string& what, std::uint64_t wanted) const {
    throw FormatError(file_.path() + ": truncated: " + what + " needs " + std::to_string(wanted) +
                      " bytes at offset " + std::to_string(offset_) + " but the file has " +
                      std::to_string(file_.size()) + " bytes");
  }

  void bytes(void* dst, std::uint64_t n, const std::string& what) {
    if (n > remaining()) truncated(what, n);
    char* out = static_cast<char*>(dst);
    while (n > 0) {
      if (offset_ < buffer_start_ || offset_ >= buffer_start_ + buffer_.size()) fill();
      const std::uint64_t at = offset_ - buffer_start_;
      const std::uint64_t take = std::min<std::uint64_t>(n, buffer_.size() - at);
      std::memcpy(out, buffer_.data() + at, static_cast<std::size_t>(take));
      out += take;
      offset_ += take;
      n -= take;
    }
  }

  template <typename T>
  T read(const std::string& what) {
    static_assert(std::is_trivially_copyable<T>::value, "read<T> needs a trivially copyable T");
    T value;
    bytes(&value, sizeof value, what);
    return value;
  }

  /// A u64 length and that many bytes, refusing lengths above `limit` or beyond the file.
  std::string string(const std::string& what, std::uint64_t limit) {
    const auto length = read<std::uint64_t>(what + " length");
    if (length > remaining())
      throw FormatError(file_.path() + ": truncated or corrupt: " + what + " has length " +
                        std::to_string(length) + " but only " + std::to_string(remaining()) +
                        " bytes follow at offset " + std::to_string(offset_));
    if (length > limit)
      throw FormatError(file_.path() + ": " + what + " has length " + std::to_string(length) +
                        ", above the limit of " + std::to_string(limit) + " bytes");
    std::string text(static_cast<std::size_t>(length), '\0');
    bytes(&text[0], length, what);
    return text;
  }

 private:
  void fill() {
    constexpr std::uint64_t chunk = 1 << 16;
    buffer_start_ = offset_;
    buffer_.resize(static_cast<std::size_t>(std::min<std::uint64_t>(chunk, remaining())));
    file_.read(offset_, buffer_.size(), buffer_.data(), "GGUF header");
  }

  BinaryFile& file_;
  std::uint64_t offset_ = 0;
  std::uint64_t buffer_start_ = 0;
  std::vector<char> buffer_;
};

// ---------------------------------------------------------------------------------------------
// The file

class GgufFile {
 public:
  static constexpr std::uint64_t max_string_length = 1 << 20;  // keys, names, string values
  static constexpr int max_array_depth = 4;  // real files use 1; nesting is legal but rare
  // Arrays inside arrays, in the whole file. Each takes 12 bytes on disk but a GgufValue in
  // memory, so their count, not just the file size, bounds what a hostile file costs.
  static constexpr std::uint64_t max_nested_arrays = 1 << 16;
  static constexpr std::uint32_t max_dims = 4;  // GGML_MAX_DIMS
  static constexpr std::uint64_t default_alignment = 32;

  /// Parses and validates everything but the tensor data. std::runtime_error naming the
  /// path if it cannot be read; FormatError naming the file, the field and the problem if
  /// the content is malformed or unsupported.
  explicit GgufFile(const std::string& path) : file_(path) { parse(); }

  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return file_.path(); }
  std::uint64_t file_size() const { return file_.size(); }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }

  // --- metadata ----------------------------------------------------------------------------

  /// Keys in file order.
  const std::vector<std::string>& keys() const { return key_order_; }
  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  const GgufValue* find(const std::string& key) const {
    const auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
  }
  const GgufValue& require(const std::string& key) const {
    if (const GgufValue* v = find(key)) return *v;
    fail("missing required metadata key '" + key + "'");
  }

  /// Any integer type holding a value in [0, 2^64). Bool is not an integer.
  std::uint64_t get_uint(const std::string& key) const { return as_uint(key, require(key)); }
  std::uint64_t get_uint(const std::string& key, std::uint64_t fallback) const {
    const GgufValue* v = find(key);
    return v ? as_uint(key, *v) : fallback;
  }

  /// get_uint, at most `max` (e.g. INT_MAX for fields that become ints).
  std::uint64_t get_uint_at_most(const std::string& key, std::uint64_t max) const {
    return at_most(key, get_uint(key), max);
  }
  std::uint64_t get_uint_at_most(const std::string& key, std::uint64_t max,
                                 std::uint64_t fallback) const {
    return at_most(key, get_uint(key, fallback), max);
  }

  /// f32 (as the decimal it was written from, see gguf_f32_as_decimal) or f64.
  double get_float(const std::string& key) const { return as_float(key, require(key)); }
  double get_float(const std::string& key, double fallback) const {
    const GgufValue* v = find(key);
    return v ? as_float(key, *v) : fallback;
  }

  bool get_bool(const std::string& key, bool fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->type != GgufValueType::Bool) wrong_type(key, "a bool", *v);
    return v->unsigned_value != 0;
  }

  std::string get_string(const std::string& key) const { return as_string(key, require(key)); }
  std::string get_string(const std::string& key, const std::string& fallback) const {
    const GgufValue* v = find(key);
    return v ? as_string(key, *v) : fallback;
  }

  /// An array of strings.
  const std::vector<std::string>& get_strings(const std::string& key) const {
    const GgufValue& v = require(key);
    if (v.type != GgufValueType::Array || v.item_type != GgufValueType::String)
      wrong_type(key, "an array of strings", v);
    return v.strings;
  }

  /// An array of f32 or f64, as float.
  std::vector<float> get_floats(const std::string& key) const {
    const GgufValue& v = require(key);
    std::vector<float> out;
    if (v.type == GgufValueType::Array && v.item_type == GgufValueType::F32) {
      out.resize(static_cast<std::size_t>(v.count));
      if (!out.empty()) std::memcpy(out.data(), v.item_bytes.data(), out.size() * 4);
    } else if (v.type == GgufValueType::Array && v.item_type == GgufValueType::F64) {
      out.resize(static_cast<std::size_t>(v.count));
      for (std::size_t i = 0; i < out.size(); ++i) {
        double d;
        std::memcpy(&d, v.item_bytes.data() + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
    } else {
      wrong_type(key, "an array of f32", v);
    }
    return out;
  }

  /// An array of any integer type, as int64 (u64 items above INT64_MAX are refused).
  std::vector<std::int64_t> get_ints(const std::string& key) const {
    const GgufValue& v = require(key);
    if (v.type != GgufValueType::Array ||
        !(gguf_is_signed(v.item_type) || gguf_is_unsigned(v.item_type)))
      wrong_type(key, "an array of integers", v);
    std::vector<std::int64_t> out(static_cast<std::size_t>(v.count));
    const std::size_t width = gguf_value_size(v.item_type);
    for (std::size_t i = 0; i < out.size(); ++i) {
      const char* p = v.item_bytes.data() + width * i;
      switch (v.item_type) {
        case GgufValueType::U8:
          out[i] = static_cast<unsigned char>(*p);
          break;
        case GgufValueType::I8:
          out[i] = static_cast<signed char>(*p);
          break;
        case GgufValueType::U16:
          out[i] = load<std::uint16_t>(p);
          break;
        case GgufValueType::I16:
          out[i] = load<std::int16_t>(p);
          break;
        case GgufValueType::U32:
          out[i] = load<std::uint32_t>(p);
          break;
        case GgufValueType::I32:
          out[i] = load<std::int32_t>(p);
          break;
        case GgufValueType::I64:
          out[i] = load<std::int64_t>(p);
          break;
        default: {  // U64
          const auto u = load<std::uint64_t>(p);
          if (u > static_cast<std::uint64_t>(INT64_MAX))
            fail("metadata key '" + key + "' item " + std::to_string(i) + " = " +
                 std::to_string(u) + " is out of range");
          out[i] = static_cast<std::int64_t>(u);
        }
      }
    }
    return out;
  }

  [[noreturn]] void fail(const std::string& problem) const {
    throw FormatError(path() + ": " + problem);
  }

  // --- tensors -----------------------------------------------------------------------------

  /// Tensor infos in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }

  /// FormatError unless the tensor exists, has exactly `shape` (PyTorch order) and a type
  /// we convert. Lets a loader vet every tensor before allocating any of them.
  const GgufTensorInfo& check_tensor(const std::string& name,
                                     const std::vector<std::int64_t>& shape) const {
    const GgufTensorInfo* t = find_tensor(name);
    if (!t) fail("missing tensor '" + name + "'");
    check_convertible(*t);
    if (t->shape() != shape)
      fail("tensor '" + name + "' has shape " + gguf_shape_string(t->shape()) + ", expected " +
           gguf_shape_string(shape) + " (shapes in PyTorch order: ggml's ne reversed)");
    return *t;
  }

  void check_convertible(const GgufTensorInfo& t) const {
    if (!ggml_type_convertible(t.type))
      fail("unsupported GGUF tensor type " + ggml_type_label(t.type) + " for tensor '" + t.name +
           "' (supported: " + kGgmlSupportedTypes + ")");
  }

  /// The tensor's elements as Scalar, in storage order (ne[0] fastest), into out, which
  /// holds element_count values. Quantised types are dequantised block by block
  /// (detail/io/GgmlQuants.hpp); a block with a NaN or infinite scale is a FormatError
  /// naming the tensor, the block and the scale.
  template <typename Scalar>
  void read_tensor(const GgufTensorInfo& t, Scalar* out) {
    check_convertible(t);
    const std::string what = "tensor '" + t.name + "'";
    const auto count = static_cast<std::size_t>(t.element_count);
    switch (t.type) {
      case kGgmlF32:
        read_elements(file_, t.file_offset, ElementType::F32, count, out, what);
        return;
      case kGgmlF16:
        read_elements(file_, t.file_offset, ElementType::F16, count, out, what);
        return;
      case kGgmlBF16:
        read_elements(file_, t.file_offset, ElementType::BF16, count, out, what);
        return;
      default:
        read_blocks(t, out, what);
        return;
    }
  }

 private:
  template <typename T>
  static T load(const char* p) {
    T value;
    std::memcpy(&value, p, sizeof value);
    return value;
  }

  [[noreturn]] void wrong_type(const std::string& key, const char* expected,
                               const GgufValue& v) const {
    fail("metadata key '" + key + "' must be " + expected + ", got " + v.type_name());
  }

  std::uint64_t as_uint(const std::string& key, const GgufValue& v) const {
    if (gguf_is_unsigned(v.type)) return v.unsigned_value;
    if (gguf_is_signed(v.type)) {
      if (v.signed_value < 0)
        fail("metadata key '" + key + "' = " + std::to_string(v.signed_value) +
             " must not be negative");
      return static_cast<std::uint64_t>(v.signed_value);
    }
    wrong_type(key, "an unsigned integer", v);
  }

  std::uint64_t at_most(const std::string& key, std::uint64_t value, std::uint64_t max) const {
    if (value > max)
      fail("metadata key '" + key + "' = " + std::to_string(value) + " is out of range [0, " +
           std::to_string(max) + "]");
    return value;
  }

  double as_float(const std::string& key, const GgufValue& v) const {
    if (v.type == GgufValueType::F32) return gguf_f32_as_decimal(v.f32_value);
    if (v.type == GgufValueType::F64) return v.float_value;
    wrong_type(key, "a float", v);
  }

  std::string as_string(const std::string& key, const GgufValue& v) const {
    if (v.type != GgufValueType::String) wrong_type(key, "a string", v);
    return v.string_value;
  }

  void parse();
  void check_magic(GgufCursor& in);
  void read_metadata(GgufCursor& in, std::uint64_t kv_count);
  void read_alignment();
  void read_tensor_infos(GgufCursor& in, std::uint64_t tensor_count);
  void place_tensors(std::uint64_t end_of_infos);
  GgufValue read_value(GgufCursor& in, GgufValueType type, const std::string& what, int depth);
  void read_array(GgufCursor& in, GgufValue& v, const std::string& what, int depth);
  GgufTensorInfo read_tensor_info(GgufCursor& in, std::size_t index);

  /// Decodes a quantised tensor block by block, in chunks, to float (as ggml does) and then
  /// to Scalar. A block whose scale is NaN or infinite is refused, naming it.
  template <typename Scalar>
  void read_blocks(const GgufTensorInfo& t, Scalar* out, const std::string& what) {
    const GgmlTypeTraits& traits = *ggml_type_traits(t.type);
    const ggml::BlockDecoder decode = ggml::block_decoder(t.type);
    const std::size_t block = traits.block_size, block_bytes = traits.type_size;
    constexpr std::uint64_t blocks_per_chunk = 1024;
    const std::uint64_t blocks = t.element_count / block;
    std::vector<unsigned char> scratch(
        static_cast<std::size_t>(std::min(blocks, blocks_per_chunk)) * block_bytes);
    std::vector<float> values(block);
    for (std::uint64_t done = 0; done < blocks;) {
      const std::uint64_t n = std::min(blocks_per_chunk, blocks - done);
      file_.read(t.file_offset + done * block_bytes, n * block_bytes, scratch.data(), what);
      for (std::uint64_t b = 0; b < n; ++b) {
        if (const char* bad = decode(scratch.data() + b * block_bytes, values.data()))
          bad_scale(t, done + b, bad);
        Scalar* dst = out + (done + b) * block;
        for (std::size_t k = 0; k < block; ++k) dst[k] = static_cast<Scalar>(values[k]);
      }
      done += n;
    }
  }

  [[noreturn]] void bad_scale(const GgufTensorInfo& t, std::uint64_t block,
                              const char* field) const {
    const std::uint64_t per_block = ggml_type_traits(t.type)->block_size;
    const std::uint64_t first = block * per_block;
    fail("tensor '" + t.name + "' (" + ggml_type_traits(t.type)->name + ") block " +
         std::to_string(block) + " (row " + std::to_string(first / t.ne[0]) + ", columns " +
         std::to_string(first % t.ne[0]) + ".." + std::to_string(first % t.ne[0] + per_block - 1) +
         ") has a non-finite scale " + field + "; weights must be finite");
  }

  mutable BinaryFile file_;
  std::uint32_t version_ = 0;
  std::uint64_t nested_arrays_ = 0;
  std::uint64_t alignment_ = default_alignment;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<std::string> key_order_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

inline void GgufFile::parse() {
  GgufCursor in(file_);
  check_magic(in);
  version_ = in.read<std::uint32_t>("GGUF version");
  if (version_ == 1)
    fail("GGUF version 1 is not supported (it predates 64-bit counts; supported: 2 and 3)");
  if (version_ != 2 && version_ != 3)
    fail("GGUF version " + std::to_string(version_) + " is not supported (supported: 2 and 3)");
  const auto tensor_count = in.read<std::uint64_t>("tensor_count");
  const auto kv_count = in.read<std::uint64_t>("kv_count");
  read_metadata(in, kv_count);
  read_alignment();
  read_tensor_infos(in, tensor_count);
  place_tensors(in.offset());
}

inline void GgufFile::check_magic(GgufCursor& in) {
  if (file_.size() < 4)
    fail("not a GGUF file: " + std::to_string(file_.size()) +
         "-byte file is too short for the 'GGUF' magic");
  char magic[4];
  in.bytes(magic, 4, "magic");
  if (std::memcmp(magic, "GGUF", 4) == 0) return;
  std::string shown;
  for (char c : magic) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) {
      shown += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", u);
      shown += hex;
    }
  }
  fail("not a GGUF file: magic '" + shown + "', expected 'GGUF'");
}

inline void GgufFile::read_metadata(GgufCursor& in, std::uint64_t kv_count) {
  // The smallest key/value is an empty key, a type and a u8 (13 bytes).
  if (kv_count > in.remaining() / 13)
    fail("kv_count " + std::to_string(kv_count) + " cannot fit in the " +
         std::to_string(in.remaining()) + " bytes after the header (each key/value takes at " +
         "least 13 bytes)");
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    const std::string index = "metadata key/value " + std::to_string(i);
    std::string key = in.string(index + " key", max_string_length);
    const std::string what = "metadata key '" + key + "'";
    const auto type = in.read<std::uint32_t>(what + " value type");
    if (!gguf_value_type_known(type))
      fail(what + " has unknown value type " + std::to_string(type));
    GgufValue value = read_value(in, static_cast<GgufValueType>(type), what, 0);
    if (!metadata_.emplace(key, std::move(value)).second)
      fail("metadata key '" + key + "' appears twice");
    key_order_.push_back(std::move(key));
  }
}

inline void GgufFile::read_alignment() {
  const GgufValue* a = find("general.alignment");
  if (!a) return;
  if (!gguf_is_unsigned(a->type) && !gguf_is_signed(a->type))
    wrong_type("general.alignment", "an unsigned integer", *a);
  const std::uint64_t value = as_uint("general.alignment", *a);
  if (value == 0 || (value & (value - 1)) != 0 || value > (1u << 30))
    fail("general.alignment " + std::to_string(value) + " must be a power of two (at most 2^30)");
  alignment_ = value;
}

inline void GgufFile::read_tensor_infos(GgufCursor& in, std::uint64_t tensor_count) {
  // The smallest tensor info is an empty name, one dimension, a type and an offset (32 bytes).
  if (tensor_count > in.remaining() / 32)
    fail("tensor_count " + std::to_string(tensor_count) + " cannot fit in the " +
         std::to_string(in.remaining()) + " bytes after the metadata (each tensor info takes " +
         "at least 32 bytes)");
  tensors_.reserve(static_cast<std::size_t>(tensor_count));
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo t = read_tensor_info(in, static_cast<std::size_t>(i));
    const auto inserted = tensor_index_.emplace(t.name, tensors_.size());
    if (!inserted.second)
      fail("tensor name '" + t.name + "' appears twice (tensor infos " +
           std::to_string(inserted.first->second) + " and " + std::to_string(i) + ")");
    tensors_.push_back(std::move(t));
  }
}

/// The data section starts at the next multiple of the alignment after the tensor infos;
/// every tensor must lie inside it.
inline void GgufFile::place_tensors(std::uint64_t end_of_infos) {
  const std::uint64_t padding = (alignment_ - end_of_infos % alignment_) % alignment_;
  data_offset_ = end_of_infos + padding;
  if (!tensors_.empty() && data_offset_ > file_.size())
    fail("truncated: the data section should start at offset " + std::to_string(data_offset_) +
         " (after the tensor infos, aligned to " + std::to_string(alignment_) +
         ") but the file has " + std::to_string(file_.size()) + " bytes");
  const std::uint64_t data_size = data_offset_ <= file_.size() ? file_.size() - data_offset_ : 0;
  for (GgufTensorInfo& t : tensors_) {
    if (t.offset % alignment_ != 0)
      fail("tensor '" + t.name + "' has offset " + std::to_string(t.offset) +
           ", not a multiple of the alignment " + std::to_string(alignment_));
    if (t.offset > data_size || t.byte_size > data_size - t.offset)
      fail("truncated or corrupt: tensor '" + t.name + "' (" + ggml_type_traits(t.type)->name +
           " " + gguf_shape_string(t.shape()) + ", " + std::to_string(t.byte_size) +
           " bytes at data offset " + std::to_string(t.offset) + ") reaches beyond the " +
           std::to_string(data_size) + "-byte data section");
    t.file_offset = data_offset_ + t.offset;
  }
}

inline GgufValue GgufFile::read_value(GgufCursor& in, GgufValueType type, const std::string& what,
                                      int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufValueType::U8: v.unsigned_value = in.read<std::uint8_t>(what); break;
    case GgufValueType::I8: v.signed_value = in.read<std::int8_t>(what); break;
    case GgufValueType::U16: v.unsigned_value = in.read<std::uint16_t>(what); break;
    case GgufValueType::I16: v.signed_value = in.read<std::int16_t>(what); break;
    case GgufValueType::U32: v.unsigned_value = in.read<std::uint32_t>(what); break;
    case GgufValueType::I32: v.signed_value = in.read<std::int32_t>(what); break;
    case GgufValueType::U64: v.unsigned_value = in.read<std::uint64_t>(what); break;
    case GgufValueType::I64: v.signed_value = in.read<std::int64_t>(what); break;
    case GgufValueType::F32:
      v.f32_value = in.read<float>(what);
      v.float_value = v.f32_value;
      break;
    case GgufValueType::F64: v.float_value = in.read<double>(what); break;
    case GgufValueType::Bool: {
      const auto b = in.read<std::uint8_t>(what);
      if (b > 1) fail(what + " is a bool with invalid value " + std::to_string(b));
      v.unsigned_value = b;
      break;
    }
    case GgufValueType::String: v.string_value = in.string(what, max_string_length); break;
    case GgufValueType::Array: read_array(in, v, what, depth); break;
  }
  return v;
}

/// An array value: item type, count (checked against the bytes left), then the items
/// (strings, nested arrays within the depth and count limits, or raw fixed-size items).
inline void GgufFile::read_array(GgufCursor& in, GgufValue& v, const std::string& what, int depth) {
  if (depth >= max_array_depth)
    fail(what + " nests arrays more than " + std::to_string(max_array_depth) + " deep");
  const auto item = in.read<std::uint32_t>(what + " array item type");
  if (!gguf_value_type_known(item))
    fail(what + " is an array with unknown item type " + std::to_string(item));
  v.item_type = static_cast<GgufValueType>(item);
  v.count = in.read<std::uint64_t>(what + " array count");
  const std::size_t min_size = gguf_min_value_size(v.item_type);
  if (v.count > in.remaining() / min_size)
    fail("truncated or corrupt: " + what + " is an array of " + std::to_string(v.count) + " " +
         gguf_value_type_name(v.item_type) + " items, which needs at least " +
         (v.count > UINT64_MAX / min_size ? std::string("2^64") : std::to_string(v.count * min_size)) +
         " bytes but only " + std::to_string(in.remaining()) + " bytes follow");
  const auto count = static_cast<std::size_t>(v.count);
  if (v.item_type == GgufValueType::String) {
    v.strings.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
      v.strings.push_back(in.string(what + " item " + std::to_string(i), max_string_length));
  } else if (v.item_type == GgufValueType::Array) {
    if (v.count > max_nested_arrays - nested_arrays_)
      fail(what + " takes the number of arrays inside arrays above the limit of " +
           std::to_string(max_nested_arrays));
    nested_arrays_ += v.count;
    v.arrays.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
      v.arrays.push_back(read_value(in, GgufValueType::Array, what + " item " + std::to_string(i), depth + 1));
  } else {
    v.item_bytes.resize(count * min_size);
    in.bytes(&v.item_bytes[0], v.item_bytes.size(), what);
    if (v.item_type == GgufValueType::Bool)
      for (std::size_t i = 0; i < count; ++i)
        if (static_cast<unsigned char>(v.item_bytes[i]) > 1)
          fail(what + " item " + std::to_string(i) + " is a bool with invalid value " +
               std::to_string(static_cast<unsigned char>(v.item_bytes[i])));
  }
}

inline GgufTensorInfo GgufFile::read_tensor_info(GgufCursor& in, std::size_t index) {
  GgufTensorInfo t;
  t.index = index;
  t.name = in.string("tensor info " + std::to_string(index) + " name", max_string_length);
  const std::string what = "tensor '" + t.name + "'";
  const auto n_dims = in.read<std::uint32_t>(what + " n_dims");
  if (n_dims == 0 || n_dims > max_dims)
    fail(what + " has " + std::to_string(n_dims) + " dimensions (supported: 1 to " +
         std::to_string(max_dims) + ")");
  t.ne.resize(n_dims);
  t.element_count = 1;
  bool overflow = false;
  for (std::uint32_t d = 0; d < n_dims; ++d) {
    t.ne[d] = in.read<std::uint64_t>(what + " dimensions");
    // ggml keeps sizes in int64: anything above INT64_MAX is as corrupt as an overflow.
    if (t.ne[d] > static_cast<std::uint64_t>(INT64_MAX) ||
        (t.ne[d] != 0 && t.element_count > static_cast<std::uint64_t>(INT64_MAX) / t.ne[d]))
      overflow = true;
    else
      t.element_count *= t.ne[d];
  }
  if (overflow) {
    std::string ne = "[";
    for (std::size_t d = 0; d < t.ne.size(); ++d) ne += (d ? ", " : "") + std::to_string(t.ne[d]);
    fail(what + " has dimensions " + ne + "] whose element count overflows");
  }
  t.type = in.read<std::uint32_t>(what + " type");
  const GgmlTypeTraits* traits = ggml_type_traits(t.type);
  if (!traits) fail(what + " has unknown GGML type " + std::to_string(t.type));
  if (t.ne[0] % traits->block_size != 0)
    fail(what + " has rows of " + std::to_string(t.ne[0]) + " elements, not a multiple of the " +
         std::to_string(traits->block_size) + "-element blocks of type " + traits->name);
  const std::uint64_t blocks = t.element_count / traits->block_size;
  if (blocks > UINT64_MAX / traits->type_size)
    fail(what + " of type " + traits->name + " has too many elements to address");
  t.byte_size = blocks * traits->type_size;
  t.offset = in.read<std::uint64_t>(what + " offset");
  return t;
}

}  // namespace detail
}  // namespace depass
