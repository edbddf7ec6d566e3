#pragma once
// Random-access reads from a checkpoint on disk. Loaders validate the whole layout
// against the file size first and then read each tensor straight into its destination,
// so a multi-gigabyte checkpoint is never held in memory twice.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "../../Error.hpp"
#include "../File.hpp"

namespace depass {
namespace detail {

/// Throws std::runtime_error naming the path unless it names an existing regular file.
/// (std::ifstream happily "opens" a directory on Linux and only fails on the first read.)
inline std::uint64_t regular_file_size(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status))
    throw std::runtime_error("cannot open file '" + path + "': no such file");
  if (std::filesystem::is_directory(status))
    throw std::runtime_error("cannot open file '" + path + "': it is a directory");
  if (!std::filesystem::is_regular_file(status))
    throw std::runtime_error("cannot open file '" + path + "': not a regular file");
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw std::runtime_error("cannot determine the size of '" + path + "'");
  return static_cast<std::uint64_t>(size);
}

/// detail::read_file for a path that must be a regular file. read_file alone, given a
/// directory, sees a bogus size from tellg and fails with std::length_error.
inline std::string read_regular_file(const std::string& path) {
  regular_file_size(path);
  return read_file(path);
}

/// A regular file opened for bounded random-access reads.
class BinaryFile {
 public:
  explicit BinaryFile(const std::string& path) : path_(path), size_(regular_file_size(path)) {
    in_.open(path, std::ios::binary);
    if (!in_) throw std::runtime_error("cannot open file '" + path + "'");
  }

  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }

  /// Reads n bytes at offset into dst. Callers check layouts against size() first and
  /// report the format-specific problem; this check is the last line of defence.
  void read(std::uint64_t offset, std::uint64_t n, void* dst, const std::string& what) {
    if (offset > size_ || n > size_ - offset)
      throw FormatError(path_ + ": " + what + " needs bytes [" + std::to_string(offset) + ", " +
                        std::to_string(offset + n) + ") but the file has " + std::to_string(size_) +
                        " bytes");
    if (n == 0) return;
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(offset));
    // A file that shrank or vanished since it was opened is an I/O failure, not bad content.
    if (!in_ || !in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n)))
      throw std::runtime_error("cannot read " + std::to_string(n) + " bytes at offset " +
                               std::to_string(offset) + " of '" + path_ + "' (" + what + ")");
  }

 private:
  std::string path_;
  std::uint64_t size_;
  std::ifstream in_;
};

/// a + b, throwing FormatError on overflow (offsets from headers are untrusted).
inline std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const std::string& what) {
  if (b > UINT64_MAX - a) throw FormatError(what + ": offset overflows");
  return a + b;
}

}  // namespace detail
}  // namespace depass
