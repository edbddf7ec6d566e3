#pragma once
// config.json of a Hugging Face checkpoint -> Config, for the families we implement
// (llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, gpt2, gpt_neox). Only fields that change the computation are read;
// anything that would change it in a way we do not implement (other activations, other
// RoPE scalings) is refused rather than ignored.

#include <cmath>
#include <stdexcept>
#include <string>

#include "../../Config.hpp"
#include "../../Error.hpp"
#include "Json.hpp"

namespace depass {
namespace detail {

inline RopeScaling parse_rope_scaling(const JsonFields& f, const std::string& source) {
  RopeScaling result;
  const Json* scaling = f.find("rope_scaling");
  if (!scaling) return result;
  if (!scaling->is_object())
    f.fail("rope_scaling", "must be an object or null, got " + describe_json(*scaling));
  const JsonFields s(*scaling, source + " rope_scaling");
  // Transformers >= 4.43 writes "rope_type", older versions "type".
  const std::string type = s.has("rope_type") ? s.require_string("rope_type")
                                              : s.optional_string("type", "(unspecified)");
  if (type == "default") return result;  // plain RoPE, identical to no scaling
  if (type == "linear") {
    result.type = RopeScaling::Type::Linear;
    result.factor = s.require_number("factor");
    return result;
  }
  if (type == "llama3") {
    result.type = RopeScaling::Type::Llama3;
    result.factor = s.require_number("factor");
    result.low_freq_factor = s.require_number("low_freq_factor");
    result.high_freq_factor = s.require_number("high_freq_factor");
    result.original_max_position = s.require_number("original_max_position_embeddings");
    return result;
  }
  throw FormatError(source + ": rope_scaling type " + type +
                    " is not supported (supported: default, linear, llama3)");
}

/// dim / heads, the head width of a config that gives none; FormatError naming both fields
/// (and `note`) when the heads do not divide the width. heads <= 0: 0, for validate() to name.
inline int divided_head_width(const std::string& source, int dim, int heads, const char* heads_field,
                              const char* dim_field, const char* note = "") {
  if (heads > 0 && dim % heads != 0)
    throw FormatError(source + ": " + heads_field + " (" + std::to_string(heads) + ") does not divide " + dim_field +
                      " (" + std::to_string(dim) + ")" + note);
  return heads > 0 ? dim / heads : 0;
}

/// GPT-2's config uses its own field names and a plain GELU MLP with LayerNorm.
inline Config parse_gpt2_config(const JsonFields& f, const std::string& source) {
  Config c;
  c.architecture = "gpt2";
  const std::string act = f.optional_string("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh")
    f.fail("activation_function", "is '" + act + "'; supported: gelu_new, gelu_pytorch_tanh");
  c.dim = f.require_int("n_embd");
  c.n_layers = f.require_int("n_layer");
  c.n_heads = f.require_int("n_head");
  c.n_kv_heads = c.n_heads;
  c.head_dim = divided_head_width(source, c.dim, c.n_heads, "n_head", "n_embd");
  const Json* inner = f.find("n_inner");
  c.hidden_dim = inner ? f.require_int("n_inner") : 4 * c.dim;
  c.vocab_size = f.require_int("vocab_size");
  c.max_seq_len = f.require_int("n_positions");
  c.norm_eps = f.optional_number("layer_norm_epsilon", 1e-5);
  c.tied_embeddings = f.optional_bool("tie_word_embeddings", true);
  c.norm = NormKind::LayerNorm;
  c.mlp = MlpKind::GeluTanh;
  c.positions = PositionKind::Learned;
  c.attention_qkv_bias = c.attention_out_bias = c.mlp_bias = true;
  return c;
}

/// GPT-NeoX (Pythia): LayerNorm with biases, rotary embeddings on the first rotary_pct of
/// each head (halves pairing), a GELU MLP (exact "gelu" by default), biases on every
/// projection (attention_bias: the attention's), untied embed_out, and by default the
/// parallel residual x + attention(ln1(x)) + mlp(ln2(x)).
inline Config parse_gpt_neox_config(const JsonFields& f, const std::string& source) {
  Config c;
  c.architecture = "gpt_neox";
  const std::string act = f.optional_string("hidden_act", "gelu");
  if (act == "gelu") c.mlp = MlpKind::GeluErf;
  else if (act == "gelu_new" || act == "gelu_pytorch_tanh") c.mlp = MlpKind::GeluTanh;
  else f.fail("hidden_act", "is '" + act + "'; supported for gpt_neox: gelu, gelu_new, gelu_pytorch_tanh");
  c.dim = f.require_int("hidden_size");
  c.n_layers = f.require_int("num_hidden_layers");
  c.n_heads = f.require_int("num_attention_heads");
  c.n_kv_heads = c.n_heads;
  c.head_dim = divided_head_width(source, c.dim, c.n_heads, "num_attention_heads", "hidden_size");
  c.hidden_dim = f.require_int("intermediate_size");
  c.vocab_size = f.require_int("vocab_size");
  c.max_seq_len = f.require_int("max_position_embeddings");
  c.norm_eps = f.optional_number("layer_norm_eps", 1e-5);
  // Older configs name the base rotary_emb_base, newer ones rope_theta.
  c.rope_theta = f.optional_number("rotary_emb_base", f.optional_number("rope_theta", 10000.0));
  c.rope_scaling = parse_rope_scaling(f, source);
  // rotary_pct, or the partial_rotary_factor newer transformers also write.
  const char* pct_field = f.has("rotary_pct") || !f.has("partial_rotary_factor") ? "rotary_pct" : "partial_rotary_factor";
  const double pct = f.optional_number(pct_field, 0.25);
  if (!(pct > 0) || !(pct <= 1)) f.fail(pct_field, "= " + std::to_string(pct) + " is out of range (0, 1]");
  c.rotary_dims = static_cast<int>(c.head_dim * pct);  // int(head_size * rotary_pct), as GPTNeoXAttention
  if (c.rotary_dims < 2 || c.rotary_dims % 2 != 0)
    f.fail(pct_field, "= " + std::to_string(pct) + " rotates " + std::to_string(c.rotary_dims) + " of " +
                             std::to_string(c.head_dim) + " dimensions per head; an even number >= 2 is needed");
  c.parallel_residual = f.optional_bool("use_parallel_residual", true);
  c.tied_embeddings = f.optional_bool("tie_word_embeddings", false);
  c.norm = NormKind::LayerNorm;
  c.positions = PositionKind::Rotary;
  c.rope_layout = RopeLayout::Halves;
  c.attention_qkv_bias = c.attention_out_bias = f.optional_bool("attention_bias", true);
  c.mlp_bias = true;
  return c;
}

/// Gemma and Gemma 2: GeGLU MLP, embeddings scaled by sqrt(D), (1 + w) RMSNorm gains (the
/// loader adds the 1), tied embeddings by default; Gemma 2 adds post-norms, a score scale of
/// query_pre_attn_scalar^-1/2, attention and final-logit soft caps and a sliding window on
/// every other layer. Fields Gemma2Config defaults when absent take those defaults here;
/// a null soft cap means none.
inline void parse_gemma_fields(const JsonFields& f, const std::string& model_type, Config& c) {
  // Gemma's activation lives in hidden_activation (hidden_act is an older, ignored field
  // of the first Gemma configs); both name the tanh approximation.
  const std::string field = f.has("hidden_activation") ? "hidden_activation" : "hidden_act";
  const std::string act = f.optional_string(field, "gelu_pytorch_tanh");
  if (act != "gelu_pytorch_tanh" && act != "gelu_new")
    f.fail(field, "is '" + act + "'; supported for " + model_type + ": gelu_pytorch_tanh, gelu_new");
  c.mlp = MlpKind::GatedGeluTanh;
  c.embedding_scale = std::sqrt(static_cast<double>(c.dim));
  c.tied_embeddings = f.optional_bool("tie_word_embeddings", true);
  const bool attention_bias = f.optional_bool("attention_bias", false);
  c.attention_qkv_bias = c.attention_out_bias = attention_bias;
  if (model_type != "gemma2") return;
  c.post_norms = true;
  auto positive = [&](const char* name, double fallback) {
    if (f.is_null(name)) return 0.0;
    const double v = f.optional_number(name, fallback);
    if (!(v > 0) || !std::isfinite(v)) f.fail(name, "= " + std::to_string(v) + " must be a finite number > 0 (or null)");
    return v;
  };
  const double scalar = f.optional_number("query_pre_attn_scalar", 256);
  if (!(scalar > 0) || !std::isfinite(scalar)) f.fail("query_pre_attn_scalar", "must be a finite number > 0");
  c.attention_scale = 1.0 / std::sqrt(scalar);
  c.attention_softcap = positive("attn_logit_softcapping", 50.0);
  c.final_softcap = positive("final_logit_softcapping", 30.0);
  // Every other layer attends within a window; capping the context at it keeps every
  // layer's full causal attention exact (as for Mistral).
  const int window = f.optional_int("sliding_window", 4096);
  if (window > 0 && window < c.max_seq_len) c.max_seq_len = window;
}

inline Config parse_huggingface_config(const Json& json, const std::string& source) {
  const JsonFields f(json, source);
  const std::string model_type = f.require_string("model_type");
  Config c;
  if (model_type == "gpt2") {
    c = parse_gpt2_config(f, source);
  } else if (model_type == "gpt_neox") {
    c = parse_gpt_neox_config(f, source);
  } else {
    const bool gemma = model_type == "gemma" || model_type == "gemma2";
    if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2" && model_type != "qwen3" &&
        model_type != "phi3" && !gemma)
      throw FormatError(source + ": unsupported model_type '" + model_type +
                        "' (supported: llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, gpt2, gpt_neox)");
    if (f.has("partial_rotary_factor") && f.require_number("partial_rotary_factor") != 1.0)
      f.fail("partial_rotary_factor", "is not 1: rotary embeddings on part of each head are not supported");
    c.architecture = model_type;

    if (!gemma) {
      const std::string act = f.optional_string("hidden_act", "silu");
      if (act != "silu") f.fail("hidden_act", "is '" + act + "'; only 'silu' is supported");
    }
    c.rope_scaling = parse_rope_scaling(f, source);

    c.dim = f.require_int("hidden_size");
    c.hidden_dim = f.require_int("intermediate_size");
    c.n_layers = f.require_int("num_hidden_layers");
    c.n_heads = f.require_int("num_attention_heads");
    c.n_kv_heads = f.optional_int("num_key_value_heads", c.n_heads);
    if (f.has("head_dim")) {
      c.head_dim = f.require_int("head_dim");
    } else {
      c.head_dim = divided_head_width(source, c.dim, c.n_heads, "num_attention_heads", "hidden_size",
                                      " and head_dim is not given");
    }
    c.vocab_size = f.require_int("vocab_size");
    c.max_seq_len = f.require_int("max_position_embeddings");
    c.norm_eps = f.require_number("rms_norm_eps");
    c.rope_theta = f.optional_number("rope_theta", 10000.0);
    c.rope_layout = RopeLayout::Halves;
    c.tied_embeddings = f.optional_bool("tie_word_embeddings", false);

    if (model_type == "llama") {
      // LlamaAttention puts attention_bias on all four projections, mlp_bias on all three.
      const bool attention_bias = f.optional_bool("attention_bias", false);
      c.attention_qkv_bias = attention_bias;
      c.attention_out_bias = attention_bias;
      c.mlp_bias = f.optional_bool("mlp_bias", false);
    } else if (model_type == "qwen2") {
      // Qwen2 always has q/k/v biases and never an output or MLP bias.
      c.attention_qkv_bias = true;
    } else if (model_type == "qwen3") {
      // Qwen3: RMSNorm per head on queries and keys; attention_bias on all four projections.
      c.qk_norm = true;
      const bool attention_bias = f.optional_bool("attention_bias", false);
      c.attention_qkv_bias = c.attention_out_bias = attention_bias;
    } else if (gemma) {
      parse_gemma_fields(f, model_type, c);
    }
    // Mistral and Phi-3 slide their window whenever one is given; Qwen2/3 only when asked.
    if (model_type != "llama" && f.has("sliding_window") &&
        f.optional_bool("use_sliding_window", model_type == "mistral" || model_type == "phi3")) {
      // Sliding-window attention equals full attention for sequences no longer than the
      // window, so capping the accepted length keeps our full-attention forward exact.
      const int window = f.require_int("sliding_window");
      if (window > 0 && window < c.max_seq_len) c.max_seq_len = window;
    }
  }

  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw FormatError(source + ": " + e.what());
  }
  return c;
}

}  // namespace detail
}  // namespace depass
