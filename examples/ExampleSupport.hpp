#pragma once
// Helpers shared by the single-file examples: which model to load and its tokenizer.

#include <depass/depass.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

#ifndef DEPASS_EXAMPLE_MODEL
#define DEPASS_EXAMPLE_MODEL "models/stories260K/stories260K.bin"
#endif

namespace example {

/// argv[1] if given, else $DEPASS_EXAMPLE_MODEL, else the compiled-in default (stories260K).
inline std::string model_path(int argc, char** argv) {
  if (argc > 1 && argv[1][0] != '\0') return argv[1];
  const char* env = std::getenv("DEPASS_EXAMPLE_MODEL");
  if (env != nullptr && *env != '\0') return env;
  return DEPASS_EXAMPLE_MODEL;
}

/// The tokenizer inside a Hugging Face directory, or tok<vocab>.bin / tokenizer.bin next
/// to a llama2.c checkpoint.
inline depass::Tokenizer tokenizer_for(const std::string& model, int vocab_size) {
  namespace fs = std::filesystem;
  if (fs::is_directory(model)) return depass::Tokenizer::from_huggingface(model);
  const fs::path dir = fs::path(model).has_parent_path() ? fs::path(model).parent_path() : fs::path(".");
  for (const std::string& name : {"tok" + std::to_string(vocab_size) + ".bin", std::string("tokenizer.bin")})
    if (fs::is_regular_file(dir / name)) return depass::Tokenizer::from_llama2c((dir / name).string(), vocab_size);
  throw std::runtime_error("no tokenizer next to " + model);
}

/// Token text with newlines shown as \n.
inline std::string visible(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out;
}

}  // namespace example
