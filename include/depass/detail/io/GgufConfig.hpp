#pragma once
// The hyper-parameters of a GGUF checkpoint: general.architecture names the family, and
// the "{arch}.*" metadata keys (llama.cpp's names) give the shape. Used by io/Gguf.hpp.
//
// Families and what sets them apart:
//  - llama: Q and K rows permuted by llama.cpp's converter so that rotary embeddings pair
//    adjacent dimensions (RopeLayout::AdjacentPairs, like llama2.c files);
//  - qwen2 (q/k/v biases), qwen3 (per-head q/k RMSNorm), phi3 (fused attn_qkv and ffn_up):
//    not permuted, rotary embeddings over halves (llama.cpp's NEOX rope type);
//  - gemma, gemma2: GeGLU MLP, embeddings scaled by sqrt(D), rotary over halves; the norm
//    gains are stored with Gemma's 1 already added (llama.cpp's converter adds it); gemma2
//    adds post-norms, soft caps and a sliding window (see gguf_gemma);
//  - gpt2: LayerNorm with biases, learned positions, GELU-tanh MLP, fused attn_qkv;
//  - gptneox (GPT-NeoX, Pythia): LayerNorm with biases, attn_qkv stacked [q | k | v] (the
//    converter undoes the checkpoint's per-head interleaving), rotary embeddings over halves
//    of the first rope.dimension_count dimensions of each head, GELU MLP with biases, and by
//    default the parallel residual (use_parallel_residual). The GELU is the checkpoint's
//    exact erf form, which the model was trained with (llama.cpp computes it with the tanh
//    approximation).

#include <climits>
#include <cmath>
#include <string>

#include "../../Config.hpp"
#include "GgufFile.hpp"

namespace depass {
namespace detail {

/// The values of general.architecture that load_gguf reads.
constexpr const char* kGgufArchitectures = "llama, qwen2, qwen3, phi3, gemma, gemma2, gpt2, gptneox";

inline bool gguf_architecture_supported(const std::string& arch) {
  return arch == "llama" || arch == "qwen2" || arch == "qwen3" || arch == "phi3" || arch == "gemma" ||
         arch == "gemma2" || arch == "gpt2" || arch == "gptneox";
}

/// The family name depass gives a GGUF architecture (the Hugging Face model_type: gptneox's is
/// gpt_neox; the others share theirs).
inline std::string gguf_family_name(const std::string& arch) { return arch == "gptneox" ? "gpt_neox" : arch; }

/// The "{arch}.{key}" metadata of one family.
struct GgufKeys {
  const GgufFile& f;
  std::string arch;

  std::string name(const std::string& key) const { return arch + "." + key; }
  bool has(const std::string& key) const { return f.has(name(key)); }
  int integer(const std::string& key) const {
    return static_cast<int>(f.get_uint_at_most(name(key), INT_MAX));
  }
  double real(const std::string& key) const { return f.get_float(name(key)); }
  double real(const std::string& key, double fallback) const {
    return f.get_float(name(key), fallback);
  }
};

/// Gemma and Gemma 2 as llama.cpp reads them. Gemma 2's score scale is not stored by the
/// converter: `{arch}.attention.scale` if present, else llama.cpp's rule (1/sqrt(D/H) for
/// the 46-layer 27B model, whose query_pre_attn_scalar is D/H; else 1/sqrt(head width)).
/// The soft caps default to llama.cpp's (and Gemma2Config's) 50 and 30; the sliding window
/// caps the context in gguf_family, as phi3's does.
inline void gguf_gemma(const GgufKeys& k, Config& c) {
  c.mlp = MlpKind::GatedGeluTanh;
  c.embedding_scale = std::sqrt(static_cast<double>(c.dim));
  if (k.arch != "gemma2") return;
  c.post_norms = true;
  const double head = c.n_layers == 46 && c.n_heads > 0 ? static_cast<double>(c.dim) / c.n_heads : c.head_dim;
  c.attention_scale = k.has("attention.scale") ? k.real("attention.scale") : 1.0 / std::sqrt(head);
  c.attention_softcap = k.real("attn_logit_softcapping", 50.0);
  c.final_softcap = k.real("final_logit_softcapping", 30.0);
}

/// Linear RoPE scaling from `{arch}.rope.scaling.type` = "linear" with
/// `{arch}.rope.scaling.factor`, or from the older `{arch}.rope.scale_linear`. Llama 3
/// scaling comes as the rope_freqs.weight tensor (see load_gguf); YaRN and LongRoPE are
/// refused.
inline RopeScaling gguf_rope_scaling(const GgufKeys& k) {
  RopeScaling rs;
  const std::string type = k.f.get_string(k.name("rope.scaling.type"), "none");
  if (type == "linear") {
    rs.type = RopeScaling::Type::Linear;
    rs.factor = k.real("rope.scaling.factor");
  } else if (type != "none") {
    k.f.fail("unsupported " + k.name("rope.scaling.type") + " '" + type +
             "' (supported: none, linear; llama3 scaling comes as the rope_freqs.weight tensor)");
  }
  if (k.has("rope.scale_linear")) {
    const double factor = k.real("rope.scale_linear");
    if (rs.type == RopeScaling::Type::Linear && factor != rs.factor)
      k.f.fail(k.name("rope.scale_linear") + " (" + std::to_string(factor) + ") disagrees with " +
               k.name("rope.scaling.factor") + " (" + std::to_string(rs.factor) + ")");
    if (factor != 1.0 || rs.type == RopeScaling::Type::Linear) {
      rs.type = RopeScaling::Type::Linear;
      rs.factor = factor;
    }
  }
  return rs;
}

/// Widths, depth and context length; the head width is embedding_length / head_count
/// unless attention.key_length says otherwise.
inline void gguf_shape(const GgufKeys& k, Config& c) {
  c.dim = k.integer("embedding_length");
  c.n_layers = k.integer("block_count");
  c.hidden_dim = k.integer("feed_forward_length");
  c.n_heads = k.integer("attention.head_count");
  c.n_kv_heads = k.has("attention.head_count_kv") ? k.integer("attention.head_count_kv") : c.n_heads;
  c.max_seq_len = k.integer("context_length");
  if (k.has("attention.key_length")) {
    c.head_dim = k.integer("attention.key_length");
  } else {
    if (c.n_heads > 0 && c.dim % c.n_heads != 0)
      k.f.fail(k.name("attention.head_count") + " (" + std::to_string(c.n_heads) +
               ") does not divide " + k.name("embedding_length") + " (" + std::to_string(c.dim) +
               ")");
    c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;  // n_heads 0: validate() names it
  }
}

/// The vocabulary size: the tokenizer's token list, else {arch}.vocab_size; if both are
/// present they must agree.
inline int gguf_vocab_size(const GgufKeys& k) {
  const bool has_tokens = k.f.has("tokenizer.ggml.tokens");
  if (!has_tokens && !k.has("vocab_size"))
    k.f.fail("cannot determine the vocabulary size: neither 'tokenizer.ggml.tokens' nor '" +
             k.name("vocab_size") + "' is present");
  if (!has_tokens) return k.integer("vocab_size");
  const std::size_t n = k.f.get_strings("tokenizer.ggml.tokens").size();
  if (n > static_cast<std::size_t>(INT_MAX)) k.f.fail("tokenizer.ggml.tokens is too long");
  const int size = static_cast<int>(n);
  if (k.has("vocab_size") && k.integer("vocab_size") != size)
    k.f.fail(k.name("vocab_size") + " (" + std::to_string(k.integer("vocab_size")) +
             ") disagrees with the " + std::to_string(size) + " entries of tokenizer.ggml.tokens");
  return size;
}

/// What sets the family apart: normalisation, positions, biases, q/k norms, RoPE layout.
inline void gguf_family(const GgufKeys& k, Config& c) {
  if (k.arch == "gptneox") {
    c.norm_eps = k.real("attention.layer_norm_epsilon");
    c.norm = NormKind::LayerNorm;
    c.mlp = MlpKind::GeluErf;
    c.rope_theta = k.real("rope.freq_base", 10000.0);
    c.rope_layout = RopeLayout::Halves;
    c.rope_scaling = gguf_rope_scaling(k);
    c.rotary_dims = k.has("rope.dimension_count") ? k.integer("rope.dimension_count") : 0;
    c.parallel_residual = k.f.get_bool(k.name("use_parallel_residual"), true);
    c.attention_qkv_bias = c.attention_out_bias = c.mlp_bias = true;
    return;
  }
  if (k.arch == "gpt2") {
    c.norm_eps = k.real("attention.layer_norm_epsilon");
    c.norm = NormKind::LayerNorm;
    c.mlp = MlpKind::GeluTanh;
    c.positions = PositionKind::Learned;
    c.attention_qkv_bias = c.attention_out_bias = c.mlp_bias = true;
    return;
  }
  c.norm_eps = k.real("attention.layer_norm_rms_epsilon");
  c.rope_theta = k.real("rope.freq_base", 10000.0);
  // Only llama.cpp's llama converter permutes Q and K into adjacent pairs.
  c.rope_layout = k.arch == "llama" ? RopeLayout::AdjacentPairs : RopeLayout::Halves;
  c.rope_scaling = gguf_rope_scaling(k);
  c.attention_qkv_bias = k.arch == "qwen2";
  c.qk_norm = k.arch == "qwen3";
  if (k.arch == "gemma" || k.arch == "gemma2") gguf_gemma(k, c);
  if ((k.arch == "phi3" || k.arch == "gemma2") && k.has("attention.sliding_window")) {
    // As for Hugging Face Phi-3 and Gemma 2 (which slides on every other layer): full
    // attention equals sliding-window attention for sequences no longer than the window, so
    // the window caps the accepted length.
    const int window = k.integer("attention.sliding_window");
    if (window > 0 && window < c.max_seq_len) c.max_seq_len = window;
  }
}

/// Head-width keys depass cannot honour: a value width other than the key width, and
/// partial rotary embeddings (running those with full rotation would be silently wrong).
inline void gguf_check_heads(const GgufKeys& k, const Config& c) {
  if (k.has("attention.value_length") && k.integer("attention.value_length") != c.head_dim)
    k.f.fail(k.name("attention.value_length") + " (" +
             std::to_string(k.integer("attention.value_length")) +
             ") differs from the key length (" + std::to_string(c.head_dim) +
             "), which is not supported");
  if (c.positions == PositionKind::Rotary && k.arch != "gptneox" && k.has("rope.dimension_count") &&
      k.integer("rope.dimension_count") != c.head_dim)
    k.f.fail(k.name("rope.dimension_count") + " (" +
             std::to_string(k.integer("rope.dimension_count")) + ") differs from the head width (" +
             std::to_string(c.head_dim) + "): partial rotary embeddings are not supported");
}

/// The hyper-parameters of a GGUF file, validated (FormatError naming the key).
inline Config gguf_config(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  if (!gguf_architecture_supported(arch))
    f.fail("unsupported GGUF architecture '" + arch + "' (supported: " + kGgufArchitectures + ")");
  const GgufKeys k{f, arch};
  if (f.get_uint(k.name("expert_count"), 0) > 0)
    f.fail(k.name("expert_count") + " is " + std::to_string(f.get_uint(k.name("expert_count"))) +
           ": mixture-of-experts GGUF models are not supported");
  Config c;
  c.architecture = gguf_family_name(arch);
  gguf_shape(k, c);
  gguf_family(k, c);
  c.vocab_size = gguf_vocab_size(k);
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    f.fail("implausible GGUF " + arch + " configuration: " + e.what());
  }
  gguf_check_heads(k, c);
  return c;
}

}  // namespace detail
}  // namespace depass
