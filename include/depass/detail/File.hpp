#pragma once
// Bounded reading of untrusted files: every read is checked against the bytes that
// exist, so a header that lies about sizes produces a FormatError, never a wild read.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <type_traits>

#include "../Error.hpp"

namespace depass {
namespace detail {

/// Whole file as bytes. Throws std::runtime_error naming the path if it cannot be read.
inline std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error("'" + path + "' is a directory, expected a file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open file '" + path + "'");
  const std::streamoff size = in.tellg();
  if (size < 0) throw std::runtime_error("cannot determine the size of '" + path + "'");
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.seekg(0);
  if (size > 0 && !in.read(&bytes[0], size))
    throw std::runtime_error("cannot read file '" + path + "'");
  return bytes;
}

/// A cursor over an in-memory byte buffer that refuses to read past its end.
class ByteReader {
 public:
  ByteReader(const char* data, std::size_t size, std::string source)
      : data_(data), size_(size), source_(std::move(source)) {}

  std::size_t offset() const { return offset_; }
  std::size_t size() const { return size_; }
  std::size_t remaining() const { return size_ - offset_; }
  const std::string& source() const { return source_; }

  /// Little-endian trivially copyable value (all formats we read are little-endian).
  template <typename T>
  T read(const char* what) {
    static_assert(std::is_trivially_copyable<T>::value, "read<T> needs a trivially copyable T");
    require(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  /// Pointer to the next n bytes, advancing past them.
  const char* take(std::size_t n, const char* what) {
    require(n, what);
    const char* p = data_ + offset_;
    offset_ += n;
    return p;
  }

  void seek(std::size_t offset, const char* what) {
    if (offset > size_) fail(what, offset - offset_);
    offset_ = offset;
  }

  /// Throws FormatError unless n more bytes exist.
  void require(std::size_t n, const char* what) const {
    if (n > size_ - offset_) fail(what, n);
  }

  [[noreturn]] void fail(const char* what, std::size_t wanted) const {
    throw FormatError(source_ + ": truncated or corrupt while reading " + what + " (needs " +
                      std::to_string(wanted) + " bytes at offset " + std::to_string(offset_) +
                      ", file has " + std::to_string(size_) + ")");
  }

 private:
  const char* data_;
  std::size_t size_;
  std::size_t offset_ = 0;
  std::string source_;
};

/// a * b, throwing FormatError on overflow of size_t (sizes from headers are untrusted).
inline std::size_t checked_mul(std::size_t a, std::size_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
    throw FormatError(what + ": size overflows");
  return a * b;
}

}  // namespace detail
}  // namespace depass
