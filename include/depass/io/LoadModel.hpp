#pragma once
// A model and its tokenizer from one path, whatever the format: what the CLI, the examples
// and the documentation use. The tokenizer is the one given, else the one the checkpoint
// carries or sits next to: inside a GGUF file, tokenizer.json in a Hugging Face directory,
// tok<vocab>.bin or tokenizer.bin next to a llama2.c file.

#include <cctype>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "../Model.hpp"
#include "../Tokenizer.hpp"
#include "Load.hpp"

namespace depass {
namespace io {

template <typename Scalar>
struct LoadedModel {
  Model<Scalar> model;
  Format format = Format::Unknown;
  std::optional<Tokenizer> tokenizer;  // empty when none was given or found
  std::string tokenizer_path;          // where it came from
  std::string tokenizer_kind;          // "llama2.c", "huggingface" or "gguf"
};

namespace detail {

inline std::string lowercase_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

/// The tokenizer file `path` (a .gguf, a tokenizer.json or a directory holding one, else a
/// llama2.c tokenizer).
inline Tokenizer tokenizer_from(const std::string& path, Format model_format, int vocab, std::string& kind) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw std::runtime_error("cannot open tokenizer '" + path + "': no such file");
  if (lowercase_extension(path) == ".gguf") {
    kind = "gguf";
    return Tokenizer::from_gguf(path);
  }
  if (fs::is_directory(path, ec) || lowercase_extension(path) == ".json" || model_format == Format::HuggingFace) {
    kind = "huggingface";
    return Tokenizer::from_huggingface(path);
  }
  kind = "llama2.c";
  return Tokenizer::from_llama2c(path, vocab);
}

/// The tokenizer a checkpoint carries or sits next to, if any.
inline std::optional<Tokenizer> bundled_tokenizer(const std::string& model_path, Format format, int vocab,
                                                  std::string& path, std::string& kind) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (format == Format::GGUF) {
    path = model_path;
    kind = "gguf";
    return Tokenizer::from_gguf(model_path);
  }
  if (format == Format::HuggingFace) {
    path = (fs::path(model_path) / "tokenizer.json").string();
    kind = "huggingface";
    return Tokenizer::from_huggingface(model_path);
  }
  const fs::path dir = fs::path(model_path).has_parent_path() ? fs::path(model_path).parent_path() : fs::path(".");
  for (const std::string& name : {"tok" + std::to_string(vocab) + ".bin", std::string("tokenizer.bin")})
    if (fs::is_regular_file(dir / name, ec)) {
      path = (dir / name).string();
      kind = "llama2.c";
      return Tokenizer::from_llama2c(path, vocab);
    }
  return std::nullopt;
}

}  // namespace detail

/// A tokenizer and where it came from.
struct FoundTokenizer {
  std::optional<Tokenizer> tokenizer;  // empty when none was given or found
  std::string path;                    // where it came from
  std::string kind;                    // "llama2.c", "huggingface" or "gguf"
};

/// The tokenizer of a checkpoint without loading its weights: tokenizer_path when given
/// (model_path may then be empty), else the one model_path carries or sits next to (none is
/// not an error). vocab is the model's vocabulary size, or -1 when unknown (a llama2.c
/// tokenizer file does not store it).
inline FoundTokenizer find_tokenizer(const std::string& model_path, const std::string& tokenizer_path, int vocab) {
  FoundTokenizer found;
  const Format format = model_path.empty() ? Format::Unknown : detect_format(model_path);
  if (!tokenizer_path.empty()) {
    found.tokenizer = detail::tokenizer_from(tokenizer_path, format, vocab, found.kind);
    found.path = tokenizer_path;
  } else if (!model_path.empty()) {
    found.tokenizer = detail::bundled_tokenizer(model_path, format, vocab, found.path, found.kind);
  }
  return found;
}

/// Loads the checkpoint at model_path (any format load_checkpoint reads) and its tokenizer
/// (see find_tokenizer). A tokenizer with more tokens than the model's vocabulary is refused.
template <typename Scalar>
LoadedModel<Scalar> load_model(const std::string& model_path, const std::string& tokenizer_path = "") {
  LoadedModel<Scalar> loaded{Model<Scalar>(load_checkpoint<Scalar>(model_path)), detect_format(model_path), {}, {}, {}};
  const int vocab = loaded.model.config().vocab_size;
  FoundTokenizer found = find_tokenizer(model_path, tokenizer_path, vocab);
  loaded.tokenizer = std::move(found.tokenizer);
  loaded.tokenizer_path = std::move(found.path);
  loaded.tokenizer_kind = std::move(found.kind);
  if (loaded.tokenizer && loaded.tokenizer->vocab_size() > vocab)
    throw std::runtime_error("tokenizer " + loaded.tokenizer_path + " has " + std::to_string(loaded.tokenizer->vocab_size()) +
                             " tokens, more than the model's vocabulary of " + std::to_string(vocab));
  return loaded;
}

}  // namespace io
}  // namespace depass
