#pragma once
// Builders shared by the regression tests: tiny but complete checkpoints and tokenizer
// files that a test then breaks in exactly one place.

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <depass/Error.hpp>
#include <depass/Tokenizer.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "TestSupport.hpp"
#include "io/IoTestHelpers.hpp"

namespace depass {
namespace test {
namespace regression {

using nlohmann::json;

/// The FormatError message of loading `text` as a tokenizer.json; it must name the file.
inline std::string tokenizer_error(const std::string& text) {
  TempDir dir;
  const std::string path = dir.write("tokenizer.json", text);
  const std::string message = format_error([&] { Tokenizer::from_huggingface(path); });
  CHECK_THAT(message, Catch::Matchers::Contains(path));
  return message;
}

/// std::string of n copies of open followed by n copies of close: "[[[...]]]".
inline std::string nested(std::size_t n, const std::string& open, const std::string& close,
                          const std::string& inner = "") {
  std::string out;
  out.reserve(n * (open.size() + close.size()) + inner.size());
  for (std::size_t i = 0; i < n; ++i) out += open;
  out += inner;
  for (std::size_t i = 0; i < n; ++i) out += close;
  return out;
}

/// The config.json of a tiny tied Llama (D 8, I 12, 1 layer, 2 heads, 1 kv head, V 10).
inline json tiny_llama_config() {
  return json{{"model_type", "llama"},         {"hidden_size", 8},
              {"intermediate_size", 12},       {"num_hidden_layers", 1},
              {"num_attention_heads", 2},      {"num_key_value_heads", 1},
              {"vocab_size", 10},              {"max_position_embeddings", 16},
              {"rms_norm_eps", 1e-6},          {"tie_word_embeddings", true}};
}

/// Name and shape of every tensor tiny_llama_config() needs.
inline std::vector<std::pair<std::string, std::vector<std::int64_t>>> tiny_llama_shapes() {
  const std::string p = "model.layers.0.";
  return {{"model.embed_tokens.weight", {10, 8}},
          {p + "input_layernorm.weight", {8}},
          {p + "self_attn.q_proj.weight", {8, 8}},
          {p + "self_attn.k_proj.weight", {4, 8}},
          {p + "self_attn.v_proj.weight", {4, 8}},
          {p + "self_attn.o_proj.weight", {8, 8}},
          {p + "post_attention_layernorm.weight", {8}},
          {p + "mlp.gate_proj.weight", {12, 8}},
          {p + "mlp.up_proj.weight", {12, 8}},
          {p + "mlp.down_proj.weight", {8, 12}},
          {"model.norm.weight", {8}}};
}

/// Bytes of `count` elements of `dtype` (F32, F16, BF16 or F64), all equal to 0.5 except
/// element `special_at`, whose raw bits are `special_bits` (when special_at >= 0).
inline std::string tensor_bytes(const std::string& dtype, std::int64_t count,
                                std::int64_t special_at = -1, std::uint64_t special_bits = 0) {
  std::string out;
  for (std::int64_t k = 0; k < count; ++k) {
    const bool special = k == special_at;
    if (dtype == "F32") {
      std::uint32_t bits = 0x3F000000u;  // 0.5f
      if (special) bits = static_cast<std::uint32_t>(special_bits);
      append_le(out, bits);
    } else if (dtype == "F16") {
      append_le<std::uint16_t>(out, special ? static_cast<std::uint16_t>(special_bits) : 0x3800);
    } else if (dtype == "BF16") {
      append_le<std::uint16_t>(out, special ? static_cast<std::uint16_t>(special_bits) : 0x3F00);
    } else {
      std::uint64_t bits = 0x3FE0000000000000ull;  // 0.5
      if (special) bits = special_bits;
      append_le(out, bits);
    }
  }
  return out;
}

/// A tiny tied Llama directory in `dir`, every tensor of `dtype`; tensor `special` holds
/// `special_bits` at flat element `special_at`.
inline std::string tiny_llama_dir(const TempDir& dir, const std::string& dtype,
                                  const std::string& special = "", std::int64_t special_at = -1,
                                  std::uint64_t special_bits = 0) {
  std::vector<StTensor> tensors;
  for (const auto& [name, shape] : tiny_llama_shapes()) {
    std::int64_t count = 1;
    for (std::int64_t d : shape) count *= d;
    tensors.push_back({name, dtype, shape,
                       tensor_bytes(dtype, count, name == special ? special_at : -1, special_bits)});
  }
  dir.write("model/config.json", tiny_llama_config().dump());
  dir.write("model/model.safetensors", safetensors_file(tensors));
  return dir.path("model");
}

/// A small valid tokenizer.json (BPE, byte fallback, SentencePiece-style pipeline) as JSON.
inline json tiny_tokenizer() {
  json vocab = json::object();
  for (const char* t : {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab",
                        "\xE2\x96\x81" "a"})
    vocab[t] = static_cast<int>(vocab.size());
  return json{
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}, {"normalized", false}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "Fuse"}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"vocab", vocab},
        {"merges", {"a b", "\xE2\x96\x81 a"}}}}};
}

}  // namespace regression
}  // namespace test
}  // namespace depass
