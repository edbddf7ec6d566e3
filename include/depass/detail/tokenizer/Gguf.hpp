#pragma once
// The tokenizer embedded in a GGUF file's tokenizer.ggml.* metadata.
//  - "llama": a SentencePiece vocabulary (pieces with U+2581 for spaces, scores, token
//    types), encoded by SpmTokenizer exactly as llama2.c's run.c encodes tok*.bin files.
//  - "gpt2": a byte-level BPE (tokens spelled in GPT-2's byte-to-unicode alphabet,
//    tokenizer.ggml.merges by rank), with the split regex named by tokenizer.ggml.pre,
//    run by the Hugging Face pipeline as the equivalent tokenizer.json.
// Any other tokenizer model is refused with a FormatError naming it.

#include <climits>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "../../Error.hpp"
#include "../io/GgufFile.hpp"
#include "Backend.hpp"
#include "ByteLevel.hpp"
#include "HuggingFace.hpp"
#include "Spm.hpp"

namespace depass {
namespace detail {

/// llama.cpp's token types (tokenizer.ggml.token_type).
enum GgufTokenType : std::int64_t {
  kGgufTokenUndefined = 0,
  kGgufTokenNormal = 1,
  kGgufTokenUnknown = 2,
  kGgufTokenControl = 3,
  kGgufTokenUserDefined = 4,
  kGgufTokenUnused = 5,
  kGgufTokenByte = 6,
};

/// An optional special-token id: absent gives `fallback`; -1 (any signed type) or the
/// all-ones value of an unsigned type, which converters write for "none", gives -1.
inline int gguf_token_id(const GgufFile& f, const std::string& key, int fallback, int vocab_size) {
  const GgufValue* v = f.find(key);
  if (!v) return fallback;
  auto out_of_range = [&](const std::string& value) {
    f.fail("metadata key '" + key + "' = " + value + " is out of range [0, " +
           std::to_string(vocab_size) + ")");
  };
  std::int64_t id = 0;
  if (gguf_is_signed(v->type)) {
    if (v->signed_value == -1) return -1;
    id = v->signed_value;
    if (id < 0 || id >= vocab_size) out_of_range(std::to_string(id));
  } else if (gguf_is_unsigned(v->type)) {
    const std::uint64_t u = v->unsigned_value;
    if (u == UINT64_MAX || (v->type == GgufValueType::U32 && u == UINT32_MAX)) return -1;
    if (u >= static_cast<std::uint64_t>(vocab_size)) out_of_range(std::to_string(u));
    id = static_cast<std::int64_t>(u);
  } else {
    f.fail("metadata key '" + key + "' must be an integer token id, got " + v->type_name());
  }
  return static_cast<int>(id);
}

/// tokenizer.ggml.tokens with its size checked.
inline const std::vector<std::string>& gguf_tokens(const GgufFile& f) {
  const std::vector<std::string>& tokens = f.get_strings("tokenizer.ggml.tokens");
  if (tokens.empty()) f.fail("metadata key 'tokenizer.ggml.tokens' is empty");
  if (tokens.size() > static_cast<std::size_t>(INT_MAX / 2))
    f.fail("metadata key 'tokenizer.ggml.tokens' has too many entries");
  return tokens;
}

/// tokenizer.ggml.token_type, or all "normal" when absent; one entry per token.
inline std::vector<std::int64_t> gguf_token_types(const GgufFile& f, std::size_t count) {
  if (!f.has("tokenizer.ggml.token_type"))
    return std::vector<std::int64_t>(count, kGgufTokenNormal);
  std::vector<std::int64_t> types = f.get_ints("tokenizer.ggml.token_type");
  if (types.size() != count)
    f.fail("metadata key 'tokenizer.ggml.token_type' has " + std::to_string(types.size()) +
           " entries but tokenizer.ggml.tokens has " + std::to_string(count));
  for (std::size_t i = 0; i < types.size(); ++i)
    if (types[i] < kGgufTokenUndefined || types[i] > kGgufTokenByte)
      f.fail("metadata key 'tokenizer.ggml.token_type' entry " + std::to_string(i) + " = " +
             std::to_string(types[i]) + " is not a token type (0 to 6)");
  return types;
}

inline SpmVocab gguf_spm_vocab(const GgufFile& f) {
  SpmVocab vocab;
  vocab.pieces = gguf_tokens(f);
  const std::size_t n = vocab.pieces.size();
  const int vocab_size = static_cast<int>(n);
  vocab.scores = f.get_floats("tokenizer.ggml.scores");
  if (vocab.scores.size() != n)
    f.fail("metadata key 'tokenizer.ggml.scores' has " + std::to_string(vocab.scores.size()) +
           " entries but tokenizer.ggml.tokens has " + std::to_string(n));
  for (std::size_t i = 0; i < n; ++i)
    if (!(vocab.scores[i] - vocab.scores[i] == 0.0f))
      f.fail("metadata key 'tokenizer.ggml.scores' entry " + std::to_string(i) + " is not finite");
  const std::vector<std::int64_t> types = gguf_token_types(f, n);

  vocab.space = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
  // llama.cpp's defaults for SentencePiece vocabularies.
  vocab.unk_id = gguf_token_id(f, "tokenizer.ggml.unknown_token_id", n > 0 ? 0 : -1, vocab_size);
  vocab.bos_id = gguf_token_id(f, "tokenizer.ggml.bos_token_id", n > 1 ? 1 : -1, vocab_size);
  vocab.eos_id = gguf_token_id(f, "tokenizer.ggml.eos_token_id", n > 2 ? 2 : -1, vocab_size);
  vocab.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", true) && vocab.bos_id >= 0;
  vocab.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
  vocab.merge_bos = false;  // llama.cpp merges only the text

  // Byte tokens are those typed BYTE (or, in files without types, spelled "<0xNN>").
  const bool typed = f.has("tokenizer.ggml.token_type");
  vocab.byte_value.assign(n, -1);
  for (std::size_t id = 0; id < n; ++id) {
    int byte = -1;
    const bool spelled = parse_spm_byte_piece(vocab.pieces[id], &byte);
    if (typed && types[id] == kGgufTokenByte && !spelled)
      f.fail("tokenizer.ggml.tokens entry " + std::to_string(id) + " '" + vocab.pieces[id] +
             "' has token type BYTE but is not of the form <0xNN>");
    if (!spelled || (typed && types[id] != kGgufTokenByte)) continue;
    vocab.byte_value[id] = byte;
    if (vocab.byte_ids[byte] < 0) vocab.byte_ids[byte] = static_cast<int>(id);
  }
  // Without every byte token, text outside the vocabulary needs an unknown token.
  if (vocab.unk_id < 0)
    for (int b = 0; b < 256; ++b)
      if (vocab.byte_ids[b] < 0)
        f.fail("the llama tokenizer has no byte token <0x" +
               std::string(1, "0123456789ABCDEF"[b >> 4]) +
               std::string(1, "0123456789ABCDEF"[b & 15]) +
               "> and no unknown token, so it cannot encode every text");
  return vocab;
}

/// A "gpt2" (byte-level BPE) tokenizer as the tokenizer.json it stands for, so that the
/// Hugging Face pipeline runs it: tokens typed CONTROL become special added tokens and
/// USER_DEFINED ones plain added tokens (both split out of the text first), the rest
/// the BPE vocabulary; tokenizer.ggml.pre names the split rules (llama.cpp's names).
inline nlohmann::json gguf_bpe_json(const GgufFile& f) {
  using Json = nlohmann::json;
  const std::vector<std::string>& tokens = gguf_tokens(f);
  const std::vector<std::int64_t> types = gguf_token_types(f, tokens.size());
  const std::vector<std::string>& merges = f.get_strings("tokenizer.ggml.merges");
  if (!f.has("tokenizer.ggml.pre"))
    f.fail(
        "the gpt2 tokenizer has no 'tokenizer.ggml.pre', so its split rules are unknown "
        "(supported: gpt-2, llama-bpe, qwen2)");
  const std::string pre = f.get_string("tokenizer.ggml.pre");

  Json root = Json::object();
  Json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  auto split = [](const char* regex) {
    return Json{{"type", "Split"},
                {"pattern", {{"Regex", regex}}},
                {"behavior", "Isolated"},
                {"invert", false}};
  };
  bool ignore_merges = false;
  if (pre == "gpt-2" || pre == "gpt2") {
    byte_level["use_regex"] = true;
    root["pre_tokenizer"] = byte_level;
  } else if (pre == "llama-bpe" || pre == "llama3") {
    root["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers", Json::array({split(hf::kLlama3Pattern), byte_level})}};
    ignore_merges = true;  // as Llama 3's tokenizer.json (and llama.cpp for this type)
  } else if (pre == "qwen2") {
    root["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers", Json::array({split(hf::kQwen2Pattern), byte_level})}};
    root["normalizer"] = {{"type", "NFC"}};  // as Qwen2's tokenizer.json
  } else {
    f.fail("unsupported tokenizer.ggml.pre '" + pre + "' (supported: gpt-2, llama-bpe, qwen2)");
  }
  root["decoder"] = {{"type", "ByteLevel"}};

  Json vocab = Json::object();
  Json added = Json::array();
  std::unordered_map<std::string, std::size_t> seen;
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    const auto first = seen.emplace(tokens[id], id);
    if (!first.second)
      f.fail("tokenizer.ggml.tokens entries " + std::to_string(first.first->second) + " and " +
             std::to_string(id) + " are both '" + tokens[id] + "'");
    if (types[id] == kGgufTokenControl || types[id] == kGgufTokenUserDefined)
      added.push_back({{"id", id},
                       {"content", tokens[id]},
                       {"special", types[id] == kGgufTokenControl},
                       {"normalized", false}});
    else
      vocab[tokens[id]] = id;
  }
  root["added_tokens"] = added;
  root["model"] = {
      {"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", ignore_merges}};
  return root;
}

/// The backend for a "gpt2" tokenizer; BOS, EOS and add_bos_token (default false, as
/// GPT-2 and Qwen2 add none; Llama 3 files say true) come from the metadata.
inline std::shared_ptr<const TokenizerBackend> gguf_bpe_tokenizer(const GgufFile& f) {
  const nlohmann::json root = gguf_bpe_json(f);
  auto backend = std::make_shared<hf::HuggingFaceTokenizer>(
      root, f.path() + " (tokenizer.ggml.* read as tokenizer.json)", nlohmann::json(), "");
  const int n = backend->vocab_size;
  backend->bos_id = gguf_token_id(f, "tokenizer.ggml.bos_token_id", -1, n);
  backend->eos_id = gguf_token_id(f, "tokenizer.ggml.eos_token_id", -1, n);
  backend->add_bos_default =
      f.get_bool("tokenizer.ggml.add_bos_token", false) && backend->bos_id >= 0;
  return backend;
}

}  // namespace detail
}  // namespace depass
