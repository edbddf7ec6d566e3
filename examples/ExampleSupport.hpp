#pragma once
// Helpers shared by the single-file examples: which model to load and its tokenizer.

#include <depass/depass.hpp>

#include <cstdlib>
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

/// The model's tokenizer (bundled with or next to the checkpoint: depass::io::load_model).
template <typename Scalar>
const depass::Tokenizer& tokenizer_of(const depass::io::LoadedModel<Scalar>& loaded, const std::string& path) {
  if (!loaded.tokenizer) throw std::runtime_error("no tokenizer found with " + path);
  return *loaded.tokenizer;
}

/// Token text with newlines shown as \n.
inline std::string visible(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out;
}

}  // namespace example
