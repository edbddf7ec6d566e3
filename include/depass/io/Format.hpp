#pragma once
// Recognising a checkpoint from its path and first bytes.

#include <filesystem>
#include <stdexcept>
#include <string>

#include "../detail/io/BinaryFile.hpp"
#include "../detail/io/Llama2cLayout.hpp"

namespace depass {
namespace io {

enum class Format { Llama2c, HuggingFace, Safetensors, GGUF, Unknown };

inline const char* to_string(Format format) {
  switch (format) {
    case Format::Llama2c:
      return "llama2.c";
    case Format::HuggingFace:
      return "Hugging Face";
    case Format::Safetensors:
      return "safetensors";
    case Format::GGUF:
      return "GGUF";
    case Format::Unknown:
      break;
  }
  return "unknown";
}

/// In order: a directory holding config.json is HuggingFace; a file starting with the
/// "GGUF" magic is GGUF; a *.safetensors file is Safetensors; a file starting with the
/// versioned llama2.c magic, or whose first 28 bytes are a plausible legacy llama2.c header
/// (validate() passes), is Llama2c; anything else is Unknown. Only the header is
/// inspected: a truncated llama2.c file is still Llama2c, so
/// loading it reports what is wrong. std::runtime_error if path does not exist.
inline Format detect_format(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status))
    throw std::runtime_error("cannot open '" + path + "': no such file or directory");
  if (fs::is_directory(status))
    return fs::is_regular_file(fs::path(path) / "config.json", ec) ? Format::HuggingFace
                                                                   : Format::Unknown;
  detail::BinaryFile file(path);
  char head[detail::llama2c_versioned_header_size] = {};
  const std::size_t n =
      file.size() < sizeof head ? static_cast<std::size_t>(file.size()) : sizeof head;
  file.read(0, n, head, "file header");
  if (n >= 4 && head[0] == 'G' && head[1] == 'G' && head[2] == 'U' && head[3] == 'F')
    return Format::GGUF;
  if (fs::path(path).extension() == ".safetensors") return Format::Safetensors;
  if (detail::looks_like_llama2c(head, n)) return Format::Llama2c;
  return Format::Unknown;
}

}  // namespace io
}  // namespace depass
