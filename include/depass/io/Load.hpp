#pragma once
// One entry point for every checkpoint format: load_checkpoint(path) dispatches on
// detect_format(path).

#include <filesystem>
#include <string>

#include "Format.hpp"
#include "Gguf.hpp"
#include "HuggingFace.hpp"
#include "Llama2c.hpp"
#include "Safetensors.hpp"

namespace depass {
namespace io {

/// std::runtime_error if path does not exist or cannot be read; FormatError if it is in
/// no supported format or its content is malformed. A model.safetensors (or a shard)
/// next to a config.json loads as its Hugging Face directory; a bare safetensors file
/// carries no model configuration and is refused.
template <typename Scalar>
Checkpoint<Scalar> load_checkpoint(const std::string& path) {
  namespace fs = std::filesystem;
  switch (detect_format(path)) {
    case Format::Llama2c:
      return load_llama2c<Scalar>(path);
    case Format::HuggingFace:
      return load_huggingface<Scalar>(path);
    case Format::Safetensors: {
      const fs::path file(path);
      const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
      std::error_code ec;
      const bool in_model_dir = fs::is_regular_file(dir / "config.json", ec) &&
                                (file.filename() == "model.safetensors" ||
                                 fs::is_regular_file(dir / "model.safetensors.index.json", ec));
      if (in_model_dir) return load_huggingface<Scalar>(dir.string());
      throw FormatError(path +
                        ": a bare safetensors file has no model configuration; load "
                        "the Hugging Face directory holding it and its config.json");
    }
    case Format::GGUF:
      return load_gguf<Scalar>(path);
    case Format::Unknown:
      break;
  }
  throw FormatError(path +
                    ": unrecognised checkpoint format (expected a llama2.c .bin file, a "
                    "Hugging Face directory with config.json, or a GGUF file)");
}

}  // namespace io
}  // namespace depass
