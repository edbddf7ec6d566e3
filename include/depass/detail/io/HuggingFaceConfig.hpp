#pragma once
// config.json of a Hugging Face Llama/Mistral checkpoint -> Config. Only fields that
// change the computation are read; anything that would change it in a way we do not
// implement (other activations, RoPE scaling) is refused rather than ignored.

#include <stdexcept>
#include <string>

#include "../../Config.hpp"
#include "../../Error.hpp"
#include "Json.hpp"

namespace depass {
namespace detail {

inline Config parse_huggingface_config(const Json& json, const std::string& source) {
  const JsonFields f(json, source);
  Config c;
  const std::string model_type = f.require_string("model_type");
  if (model_type != "llama" && model_type != "mistral")
    throw FormatError(source + ": unsupported model_type '" + model_type +
                      "' (supported: llama, mistral)");
  c.architecture = model_type;

  const std::string act = f.optional_string("hidden_act", "silu");
  if (act != "silu") f.fail("hidden_act", "is '" + act + "'; only 'silu' is supported");

  if (const Json* scaling = f.find("rope_scaling")) {
    if (!scaling->is_object())
      f.fail("rope_scaling", "must be an object or null, got " + describe_json(*scaling));
    // Transformers >= 4.43 writes "rope_type", older versions "type".
    std::string type = "(unspecified)";
    for (const char* key : {"rope_type", "type"}) {
      auto it = scaling->find(key);
      if (it != scaling->end() && it->is_string()) {
        type = it->get<std::string>();
        break;
      }
    }
    if (type != "default")  // "default" is plain RoPE, identical to no scaling
      throw FormatError(source + ": rope_scaling type " + type + " is not supported yet");
  }

  c.dim = f.require_int("hidden_size");
  c.hidden_dim = f.require_int("intermediate_size");
  c.n_layers = f.require_int("num_hidden_layers");
  c.n_heads = f.require_int("num_attention_heads");
  c.n_kv_heads = f.optional_int("num_key_value_heads", c.n_heads);
  if (f.has("head_dim")) {
    c.head_dim = f.require_int("head_dim");
  } else {
    if (c.n_heads > 0 && c.dim % c.n_heads != 0)
      throw FormatError(source + ": num_attention_heads (" + std::to_string(c.n_heads) +
                        ") does not divide hidden_size (" + std::to_string(c.dim) +
                        ") and head_dim is not given");
    c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;  // n_heads <= 0: validate() names it
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
  } else {
    // Mistral's modules are bias-free whatever the config says (transformers ignores
    // these keys for it), so we do too.
    // Sliding-window attention equals full attention for sequences no longer than the
    // window, so capping the accepted length keeps our full-attention forward pass exact.
    if (f.has("sliding_window")) {
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
