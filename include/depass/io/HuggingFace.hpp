#pragma once
// Loader for Hugging Face model directories (Llama, Mistral, Qwen2/3, Phi-3, GPT-2):
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

/// Loads a Hugging Face Llama, Mistral, Qwen2 or GPT-2 directory. std::runtime_error if dir, its
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

  if (c.architecture == "gpt2") {
    detail::load_gpt2_weights(tensors, c, result.weights);
    result.weights.validate(c);
    return result;
  }
  const std::int64_t D = c.dim, I = c.hidden_dim, V = c.vocab_size, Q = c.q_width(),
                     K = c.kv_width();
  const std::string embed = "model.embed_tokens.weight", head = "lm_head.weight";
  if (c.tied_embeddings && !tensors.find(embed) && !tensors.find(head))
    throw FormatError(tensors.where() + ": missing tensor '" + embed + "' (with tied embeddings '" +
                      head + "' would also do)");
  // Tied checkpoints store the shared matrix under either name (TinyStories-656K keeps
  // only lm_head.weight and aliases the embedding to it in __metadata__).
  const std::string& embedding = c.tied_embeddings && !tensors.find(embed) ? head : embed;
  const bool fused = c.architecture == "phi3";  // fused qkv and gate/up projections

  // Two passes over the same list: the first only checks presence, shape and dtype of
  // every tensor, so a bad checkpoint fails before gigabytes are read and converted.
  Weights<Scalar>& w = result.weights;
  auto visit = [&](bool read) {
    auto matrix = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
      return tensors.template matrix<Scalar>(name, rows, cols, read);
    };
    auto vector = [&](const std::string& name, std::int64_t size) {
      return tensors.template vector<Scalar>(name, size, read);
    };
    w.token_embedding = matrix(embedding, V, D);
    if (!c.tied_embeddings) w.output = matrix(head, V, D);
    w.layers.assign(static_cast<std::size_t>(c.n_layers), LayerWeights<Scalar>());
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      LayerWeights<Scalar>& layer = w.layers[l];
      layer.attention_norm = vector(p + "input_layernorm.weight", D);
      if (fused) {  // Phi-3: qkv_proj = [q; k; v] rows
        const RowMatrix<Scalar> qkv = matrix(p + "self_attn.qkv_proj.weight", Q + 2 * K, D);
        if (read) {
          layer.wq = qkv.topRows(Q);
          layer.wk = qkv.middleRows(Q, K);
          layer.wv = qkv.bottomRows(K);
        }
      } else {
        layer.wq = matrix(p + "self_attn.q_proj.weight", Q, D);
        layer.wk = matrix(p + "self_attn.k_proj.weight", K, D);
        layer.wv = matrix(p + "self_attn.v_proj.weight", K, D);
      }
      layer.wo = matrix(p + "self_attn.o_proj.weight", D, Q);
      if (c.attention_qkv_bias) {
        layer.bq = vector(p + "self_attn.q_proj.bias", Q);
        layer.bk = vector(p + "self_attn.k_proj.bias", K);
        layer.bv = vector(p + "self_attn.v_proj.bias", K);
      }
      if (c.attention_out_bias) layer.bo = vector(p + "self_attn.o_proj.bias", D);
      if (c.qk_norm) {
        layer.q_norm = vector(p + "self_attn.q_norm.weight", c.head_dim);
        layer.k_norm = vector(p + "self_attn.k_norm.weight", c.head_dim);
      }
      layer.mlp_norm = vector(p + "post_attention_layernorm.weight", D);
      if (fused) {  // Phi-3: gate_up_proj = [gate; up] rows
        const RowMatrix<Scalar> gate_up = matrix(p + "mlp.gate_up_proj.weight", 2 * I, D);
        if (read) {
          layer.w1 = gate_up.topRows(I);
          layer.w3 = gate_up.bottomRows(I);
        }
      } else {
        layer.w1 = matrix(p + "mlp.gate_proj.weight", I, D);
        layer.w3 = matrix(p + "mlp.up_proj.weight", I, D);
      }
      layer.w2 = matrix(p + "mlp.down_proj.weight", D, I);
      if (c.mlp_bias) {
        layer.b1 = vector(p + "mlp.gate_proj.bias", I);
        layer.b3 = vector(p + "mlp.up_proj.bias", I);
        layer.b2 = vector(p + "mlp.down_proj.bias", D);
      }
    }
    w.final_norm = vector("model.norm.weight", D);
  };
  visit(false);
  visit(true);
  w.validate(c);  // cannot fail for shapes checked above; guards future edits
  return result;
}

}  // namespace io
}  // namespace depass
