#pragma once
// Loader for Hugging Face model directories (Llama, Mistral, Qwen2/3, Phi-3, Gemma, Gemma 2, GPT-2):
// config.json plus weights in model.safetensors or in shards listed by
// model.safetensors.index.json.

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "../Weights.hpp"
#include "../detail/File.hpp"
#include "../detail/io/Finite.hpp"
#include "../detail/io/HuggingFaceConfig.hpp"
#include "../detail/io/HuggingFaceTensors.hpp"
#include "../detail/io/Json.hpp"
#include "Safetensors.hpp"

namespace depass {

namespace io {

/// Loads a Hugging Face Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma, Gemma 2 or GPT-2 directory. std::runtime_error if dir, its
/// config.json or its weight file cannot be read; FormatError for unsupported or
/// inconsistent content (naming the file, the field or tensor, and the problem).
template <typename Scalar>
Checkpoint<Scalar> load_huggingface(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw std::runtime_error("cannot open Hugging Face model directory '" + dir +
                             (fs::exists(dir, ec) ? "': not a directory" : "': no such directory"));
  const std::string config_path = (fs::path(dir) / "config.json").string();
  Checkpoint<Scalar> result;
  result.config = detail::parse_huggingface_config(
      detail::parse_json(detail::read_regular_file(config_path), config_path), config_path);
  const Config& c = result.config;
  const auto tensors = detail::HuggingFaceTensors::open(dir);

  if (c.architecture == "gpt2") detail::load_gpt2_weights(tensors, c, result.weights);
  else if (c.architecture == "gpt_neox") detail::load_gpt_neox_weights(tensors, c, result.weights);
  else detail::load_llama_weights(tensors, c, result.weights);
  result.weights.validate(c);  // cannot fail for shapes checked on load; guards future edits
  return result;
}

}  // namespace io
}  // namespace depass
