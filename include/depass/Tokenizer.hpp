#pragma once
// Text <-> token ids for the models depass reads, reproducing each format's own
// tokenizer exactly (the ids must be those the model was trained on):
//  - llama2.c tok*.bin, encoded and decoded as llama2.c's run.c does;
//  - Hugging Face tokenizer.json with a SentencePiece-style BPE (Llama family),
//    following the semantics of the `tokenizers` library;
//  - Hugging Face tokenizer.json with a byte-level BPE (GPT-2, Llama 3, Qwen2);
//  - the tokenizer embedded in a GGUF file ("llama" SentencePiece or "gpt2" byte-level).
// A Tokenizer is immutable after loading; copies share the loaded vocabulary and
// const methods may be called from several threads.

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "Error.hpp"
#include "detail/File.hpp"
#include "detail/io/GgufFile.hpp"
#include "detail/tokenizer/Backend.hpp"
#include "detail/tokenizer/Gguf.hpp"
#include "detail/tokenizer/HuggingFace.hpp"
#include "detail/tokenizer/Llama2c.hpp"

namespace depass {

class Tokenizer {
 public:
  /// llama2.c tokenizer file (tok*.bin). The file does not store the vocabulary size:
  /// with vocab_size_hint = -1 tokens are read to the end of the file; otherwise the
  /// file must hold exactly vocab_size_hint tokens. BOS = 1, EOS = 2.
  static Tokenizer from_llama2c(const std::string& path, int vocab_size_hint = -1) {
    if (vocab_size_hint == 0 || vocab_size_hint < -1)
      throw std::invalid_argument("Tokenizer::from_llama2c: vocab_size_hint " +
                                  std::to_string(vocab_size_hint) + " must be -1 (read to the end) or positive");
    const std::string bytes = detail::read_file(path);
    return Tokenizer(std::make_shared<detail::Llama2cTokenizer>(bytes, path, vocab_size_hint));
  }

  /// Hugging Face tokenizer: `path` is a tokenizer.json file or a model directory
  /// holding one. tokenizer_config.json in the same directory, if present, gives
  /// bos_token, eos_token and add_bos_token; without it the BOS is the special token
  /// the post-processor template starts with, else "<s>", and the EOS "</s>".
  static Tokenizer from_huggingface(const std::string& path) {
    std::string json_path = path, directory;
    if (is_directory(path)) {
      directory = path;
      json_path = join_path(path, "tokenizer.json");
      if (!file_exists(json_path))
        throw std::runtime_error("Tokenizer::from_huggingface: directory '" + path + "' has no tokenizer.json");
    } else {
      const std::size_t slash = path.find_last_of('/');
      directory = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
    }
    const std::string json = detail::read_file(json_path);
    const std::string config_path = join_path(directory, "tokenizer_config.json");
    std::string config;
    if (file_exists(config_path)) {
      config = detail::read_file(config_path);
      if (config.empty()) throw FormatError(config_path + ": file is empty");
    }
    return Tokenizer(std::make_shared<detail::hf::HuggingFaceTokenizer>(json, json_path, config, config_path));
  }

  /// The tokenizer stored in a GGUF file's tokenizer.ggml.* metadata. "llama" (a
  /// SentencePiece vocabulary) encodes and decodes exactly like the llama2.c tokenizer of
  /// the same vocabulary; BOS, EOS and the unknown token come from the file (defaults 1, 2
  /// and 0), as does add_bos_token (default true). "gpt2" (byte-level BPE) encodes and
  /// decodes like the equivalent tokenizer.json, its split rules named by
  /// tokenizer.ggml.pre (gpt-2, llama-bpe or qwen2); BOS and EOS come from the file (no
  /// defaults), add_bos_token defaults to false. Other tokenizer models are refused with a
  /// FormatError naming them.
  static Tokenizer from_gguf(const std::string& path) {
    const detail::GgufFile file(path);
    const std::string model = file.get_string("tokenizer.ggml.model");
    if (model == "llama")
      return Tokenizer(std::make_shared<detail::SpmTokenizer>(detail::gguf_spm_vocab(file)));
    if (model == "gpt2") return Tokenizer(detail::gguf_bpe_tokenizer(file));
    file.fail("unsupported GGUF tokenizer model '" + model + "' (supported: llama, gpt2)");
  }

  /// Token ids of `text`. With add_bos, BOS is prepended if the tokenizer adds one by
  /// default (always for llama2.c; for Hugging Face per add_bos_token).
  std::vector<int> encode(const std::string& text, bool add_bos = true) const {
    return backend_->encode(text, add_bos && add_bos_default() && bos_id() >= 0);
  }

  /// Text of a sequence. A leading BOS is not text and is skipped; the leading-space
  /// rule of the format applies (llama2.c: the token after a BOS loses one leading
  /// space; Hugging Face: the decoder's Strip at the start). Byte-level BPE tokenizers
  /// (GPT-2, Llama 3, Qwen2) have no such rule and decode every token, a BOS included,
  /// as the `tokenizers` library does. Byte tokens become bytes, and the result is
  /// always valid UTF-8 (broken byte sequences become U+FFFD).
  std::string decode(const std::vector<int>& ids) const {
    for (int id : ids) check_id(id);
    return backend_->decode(ids);
  }

  /// Decoded text of one token on its own (byte tokens give their raw byte, so this
  /// may be part of a UTF-8 character; escape it for display).
  std::string piece(int id) const {
    check_id(id);
    return backend_->piece(id);
  }

  /// Text appended when `id` follows `prev_id` during generation (`prev_id` = -1:
  /// nothing precedes it). llama2.c: one leading space is stripped after a BOS.
  /// Hugging Face: the decoder's leading Strip applies after a BOS or at the start.
  /// Raw bytes, like piece(): concatenating these rebuilds multi-byte characters.
  std::string token_text(int prev_id, int id) const {
    if (prev_id != -1) check_id(prev_id);
    check_id(id);
    return backend_->token_text(prev_id, id);
  }

  int vocab_size() const { return backend_->vocab_size; }
  int bos_id() const { return backend_->bos_id; }
  int eos_id() const { return backend_->eos_id; }
  bool add_bos_default() const { return backend_->add_bos_default; }

  void check_id(int id) const {
    if (id < 0 || id >= vocab_size())
      throw std::invalid_argument("token id " + std::to_string(id) + " is out of range [0, " +
                                  std::to_string(vocab_size()) + ")");
  }

 private:
  explicit Tokenizer(std::shared_ptr<const detail::TokenizerBackend> backend) : backend_(std::move(backend)) {}

  static bool file_exists(const std::string& path) {
    std::error_code ignored;
    return std::filesystem::is_regular_file(path, ignored);
  }

  static bool is_directory(const std::string& path) {
    std::error_code ignored;
    return std::filesystem::is_directory(path, ignored);
  }

  static std::string join_path(const std::string& directory, const std::string& name) {
    if (directory.empty()) return name;
    return directory.back() == '/' ? directory + name : directory + "/" + name;
  }

  std::shared_ptr<const detail::TokenizerBackend> backend_;
};

}  // namespace depass
