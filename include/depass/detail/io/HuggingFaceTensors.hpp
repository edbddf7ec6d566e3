#pragma once
// Where the tensors of a Hugging Face model directory live and how its weights map onto
// depass's (Llama-family and GPT-2 layouts). Used by io/HuggingFace.hpp.

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "../../Weights.hpp"
#include "../../io/Safetensors.hpp"
#include "../File.hpp"
#include "Finite.hpp"
#include "FusedProjections.hpp"
#include "HuggingFaceConfig.hpp"
#include "Json.hpp"

namespace depass {
namespace detail {

/// Where each tensor of a Hugging Face directory lives: one safetensors file, or the
/// shards named by an index. All files are opened (headers validated) up front.
class HuggingFaceTensors {
 public:
  static HuggingFaceTensors open(const std::string& dir) {
    namespace fs = std::filesystem;
    HuggingFaceTensors result;
    const fs::path root(dir);
    const fs::path single = root / "model.safetensors";
    const fs::path index = root / "model.safetensors.index.json";
    std::error_code ec;
    // transformers also prefers the single file when both exist.
    if (fs::exists(single, ec)) {
      result.files_.emplace(
          single.filename().string(),
          std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::open(single.string())));
      result.single_ = single.filename().string();
      result.where_ = single.string();
      return result;
    }
    if (!fs::exists(index, ec)) {
      std::string hint;
      if (fs::exists(root / "pytorch_model.bin", ec) ||
          fs::exists(root / "pytorch_model.bin.index.json", ec))
        hint = " (only PyTorch pickle weights are present; convert them to safetensors)";
      throw std::runtime_error("cannot open weights in '" + dir +
                               "': no model.safetensors or model.safetensors.index.json" + hint);
    }
    result.where_ = index.string();
    // Duplicate keys are refused: a tensor mapped to two shards is ambiguous (nlohmann
    // would silently keep the last), as a safetensors header naming a tensor twice is.
    const Json json = parse_json(read_regular_file(index.string()), index.string(), true);
    if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object())
      throw FormatError(index.string() + ": missing or malformed 'weight_map' object");
    for (auto it = json["weight_map"].begin(); it != json["weight_map"].end(); ++it) {
      if (!it->is_string())
        throw FormatError(index.string() + ": weight_map entry for '" + it.key() +
                          "' must be a file name, got " + describe_json(*it));
      const std::string shard = it->get<std::string>();
      // Shards are siblings of the index; refuse names that would escape the directory.
      const fs::path shard_rel(shard);
      bool escapes = shard.empty() || shard_rel.is_absolute();
      for (const auto& part : shard_rel) escapes = escapes || part == "..";
      if (escapes)
        throw FormatError(index.string() + ": weight_map maps '" + it.key() +
                          "' to invalid shard name '" + shard + "'");
      result.map_[it.key()] = shard;
      if (result.files_.count(shard)) continue;
      const fs::path shard_path = root / shard_rel;
      if (!fs::is_regular_file(shard_path, ec))
        throw FormatError(index.string() + ": weight_map points at missing shard '" + shard +
                          "' (for tensor '" + it.key() + "')");
      result.files_.emplace(shard, std::make_unique<io::SafetensorsFile>(
                                       io::SafetensorsFile::open(shard_path.string())));
    }
    return result;
  }

  /// The file holding name, or nullptr if the checkpoint does not have it.
  const io::SafetensorsFile* find(const std::string& name) const {
    if (!single_.empty()) {
      const io::SafetensorsFile& file = *files_.at(single_);
      return file.contains(name) ? &file : nullptr;
    }
    auto it = map_.find(name);
    if (it == map_.end()) return nullptr;
    const io::SafetensorsFile& file = *files_.at(it->second);
    if (!file.contains(name))
      throw FormatError(where_ + ": weight_map maps tensor '" + name + "' to shard '" + it->second +
                        "', which does not contain it");
    return &file;
  }

  const io::SafetensorsFile& require(const std::string& name) const {
    if (const io::SafetensorsFile* file = find(name)) return *file;
    throw FormatError(where_ + ": missing tensor '" + name + "'");
  }

  /// The 2-D tensor name, checked to be present with shape [rows, cols]; its values
  /// (converted, and checked finite) only when read is true, else an empty matrix. The
  /// loaders first check every tensor, then read them all.
  template <typename Scalar>
  RowMatrix<Scalar> matrix(const std::string& name, std::int64_t rows, std::int64_t cols,
                           bool read) const {
    const io::SafetensorsFile& file = require(name);
    file.check(name, {rows, cols});
    if (!read) return RowMatrix<Scalar>();
    RowMatrix<Scalar> m = file.template matrix<Scalar>(name);
    require_finite(m, file.path(), "tensor '" + name + "'");
    return m;
  }

  /// The 1-D tensor name, as matrix() does it.
  template <typename Scalar>
  Vector<Scalar> vector(const std::string& name, std::int64_t size, bool read) const {
    const io::SafetensorsFile& file = require(name);
    file.check(name, {size});
    if (!read) return Vector<Scalar>();
    Vector<Scalar> v = file.template vector<Scalar>(name);
    require_finite(v, file.path(), "tensor '" + name + "'");
    return v;
  }

  const std::string& where() const { return where_; }

 private:
  HuggingFaceTensors() = default;

  // unique_ptr keeps returned pointers stable regardless of map implementation details.
  std::map<std::string, std::unique_ptr<io::SafetensorsFile>> files_;  // by shard file name
  std::map<std::string, std::string> map_;                             // tensor -> shard
  std::string single_;  // non-empty when there is one unsharded file
  std::string where_;   // the file to name in "missing tensor" messages
};

/// GPT-2 stores its projections as Conv1D weights, [in, out] (y = x W + b), with q|k|v
/// fused in c_attn; names carry a "transformer." prefix when saved by transformers and
/// none in the original checkpoints. Unused buffers (attn.bias masks) are ignored.
template <typename Scalar>
void load_gpt2_weights(const HuggingFaceTensors& tensors, const Config& c, Weights<Scalar>& w) {
  const std::int64_t D = c.dim, I = c.hidden_dim, V = c.vocab_size, P = c.max_seq_len;
  const std::string prefix = tensors.find("transformer.wte.weight") ? "transformer." : "";
  auto visit = [&](bool read) {
    auto matrix = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
      return tensors.template matrix<Scalar>(name, rows, cols, read);
    };
    auto vector = [&](const std::string& name, std::int64_t size) {
      return tensors.template vector<Scalar>(name, size, read);
    };
    w.token_embedding = matrix(prefix + "wte.weight", V, D);
    w.position_embedding = matrix(prefix + "wpe.weight", P, D);
    if (!c.tied_embeddings) w.output = matrix("lm_head.weight", V, D);
    w.layers.assign(static_cast<std::size_t>(c.n_layers), LayerWeights<Scalar>());
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
      const std::string p = prefix + "h." + std::to_string(l) + ".";
      LayerWeights<Scalar>& layer = w.layers[l];
      layer.attention_norm = vector(p + "ln_1.weight", D);
      layer.attention_norm_bias = vector(p + "ln_1.bias", D);
      const RowMatrix<Scalar> qkv = matrix(p + "attn.c_attn.weight", D, 3 * D);
      const Vector<Scalar> qkv_bias = vector(p + "attn.c_attn.bias", 3 * D);
      layer.mlp_norm = vector(p + "ln_2.weight", D);
      layer.mlp_norm_bias = vector(p + "ln_2.bias", D);
      const RowMatrix<Scalar> proj = matrix(p + "attn.c_proj.weight", D, D);
      layer.bo = vector(p + "attn.c_proj.bias", D);
      const RowMatrix<Scalar> fc = matrix(p + "mlp.c_fc.weight", D, I);
      layer.b1 = vector(p + "mlp.c_fc.bias", I);
      const RowMatrix<Scalar> down = matrix(p + "mlp.c_proj.weight", I, D);
      layer.b2 = vector(p + "mlp.c_proj.bias", D);
      if (!read) continue;
      split_fused_qkv(RowMatrix<Scalar>(qkv.transpose()), c, layer);
      split_fused_qkv_bias(qkv_bias, c, layer);
      layer.wo = proj.transpose();
      layer.w1 = fc.transpose();
      layer.w2 = down.transpose();
    }
    w.final_norm = vector(prefix + "ln_f.weight", D);
    w.final_norm_bias = vector(prefix + "ln_f.bias", D);
  };
  visit(false);
  visit(true);
}

/// GPT-NeoX (Pythia): gpt_neox.embed_in, per layer LayerNorms with biases, the per-head
/// interleaved query_key_value, dense, dense_h_to_4h and dense_4h_to_h (all with biases),
/// final_layer_norm and embed_out. Buffers some checkpoints keep (attention.bias masks,
/// masked_bias, rotary_emb.inv_freq) are ignored: the config determines them.
template <typename Scalar>
void load_gpt_neox_weights(const HuggingFaceTensors& tensors, const Config& c, Weights<Scalar>& w) {
  const std::int64_t D = c.dim, I = c.hidden_dim, V = c.vocab_size;
  for (const bool read : {false, true}) {
    auto matrix = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
      return tensors.template matrix<Scalar>(name, rows, cols, read);
    };
    auto vector = [&](const std::string& name, std::int64_t size) { return tensors.template vector<Scalar>(name, size, read); };
    w.token_embedding = matrix("gpt_neox.embed_in.weight", V, D);
    if (!c.tied_embeddings) w.output = matrix("embed_out.weight", V, D);
    w.layers.assign(static_cast<std::size_t>(c.n_layers), LayerWeights<Scalar>());
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
      const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
      LayerWeights<Scalar>& layer = w.layers[l];
      layer.attention_norm = vector(p + "input_layernorm.weight", D);
      layer.attention_norm_bias = vector(p + "input_layernorm.bias", D);
      const RowMatrix<Scalar> qkv = matrix(p + "attention.query_key_value.weight", 3 * D, D);
      if (read) split_fused_qkv(unweave_heads_qkv(qkv, c), c, layer);
      if (c.attention_qkv_bias) {
        const Vector<Scalar> qkv_bias = vector(p + "attention.query_key_value.bias", 3 * D);
        if (read) split_fused_qkv_bias(Vector<Scalar>(unweave_heads_qkv(qkv_bias, c)), c, layer);
      }
      layer.wo = matrix(p + "attention.dense.weight", D, D);
      if (c.attention_out_bias) layer.bo = vector(p + "attention.dense.bias", D);
      layer.mlp_norm = vector(p + "post_attention_layernorm.weight", D);
      layer.mlp_norm_bias = vector(p + "post_attention_layernorm.bias", D);
      layer.w1 = matrix(p + "mlp.dense_h_to_4h.weight", I, D);
      layer.b1 = vector(p + "mlp.dense_h_to_4h.bias", I);
      layer.w2 = matrix(p + "mlp.dense_4h_to_h.weight", D, I);
      layer.b2 = vector(p + "mlp.dense_4h_to_h.bias", D);
    }
    w.final_norm = vector("gpt_neox.final_layer_norm.weight", D);
    w.final_norm_bias = vector("gpt_neox.final_layer_norm.bias", D);
  }
}

/// One decoder layer of the Llama layout (Llama, Mistral, Qwen2/3, Phi-3, Gemma, Gemma 2) under prefix p;
/// with read false only presence, shape and dtype are checked. Phi-3 fuses q|k|v and
/// gate|up row-wise; they are split here.
template <typename Scalar>
void load_llama_layer(const HuggingFaceTensors& tensors, const Config& c, const std::string& p, bool read,
                      LayerWeights<Scalar>& layer) {
  const std::int64_t D = c.dim, I = c.hidden_dim, Q = c.q_width(), K = c.kv_width();
  auto matrix = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
    return tensors.template matrix<Scalar>(p + name, rows, cols, read);
  };
  auto vector = [&](const std::string& name, std::int64_t size) { return tensors.template vector<Scalar>(p + name, size, read); };
  const bool fused = c.architecture == "phi3";
  layer.attention_norm = vector("input_layernorm.weight", D);
  if (fused) {
    const RowMatrix<Scalar> qkv = matrix("self_attn.qkv_proj.weight", Q + 2 * K, D);
    if (read) split_fused_qkv(qkv, c, layer);
  } else {
    layer.wq = matrix("self_attn.q_proj.weight", Q, D);
    layer.wk = matrix("self_attn.k_proj.weight", K, D);
    layer.wv = matrix("self_attn.v_proj.weight", K, D);
  }
  layer.wo = matrix("self_attn.o_proj.weight", D, Q);
  if (c.attention_qkv_bias) {
    layer.bq = vector("self_attn.q_proj.bias", Q);
    layer.bk = vector("self_attn.k_proj.bias", K);
    layer.bv = vector("self_attn.v_proj.bias", K);
  }
  if (c.attention_out_bias) layer.bo = vector("self_attn.o_proj.bias", D);
  if (c.qk_norm) {
    layer.q_norm = vector("self_attn.q_norm.weight", c.head_dim);
    layer.k_norm = vector("self_attn.k_norm.weight", c.head_dim);
  }
  if (c.post_norms) {  // Gemma 2: post_attention_layernorm norms the attention's output
    layer.attention_post_norm = vector("post_attention_layernorm.weight", D);
    layer.mlp_norm = vector("pre_feedforward_layernorm.weight", D);
    layer.mlp_post_norm = vector("post_feedforward_layernorm.weight", D);
  } else {
    layer.mlp_norm = vector("post_attention_layernorm.weight", D);
  }
  if (fused) {
    const RowMatrix<Scalar> gate_up = matrix("mlp.gate_up_proj.weight", 2 * I, D);
    if (read) split_fused_gate_up(gate_up, c, layer);
  } else {
    layer.w1 = matrix("mlp.gate_proj.weight", I, D);
    layer.w3 = matrix("mlp.up_proj.weight", I, D);
  }
  layer.w2 = matrix("mlp.down_proj.weight", D, I);
  if (c.mlp_bias) {
    layer.b1 = vector("mlp.gate_proj.bias", I);
    layer.b3 = vector("mlp.up_proj.bias", I);
    layer.b2 = vector("mlp.down_proj.bias", D);
  }
}

/// Gemma stores RMSNorm gains as w and computes x r (1 + w): the 1 is added here, once, so
/// that every norm reads its gain as the other families' do.
template <typename Scalar>
void add_one_to_norm_gains(Weights<Scalar>& w) {
  auto add_one = [](Vector<Scalar>& gain) { gain.array() += Scalar(1); };
  for (LayerWeights<Scalar>& layer : w.layers) {
    add_one(layer.attention_norm);
    add_one(layer.mlp_norm);
    if (layer.attention_post_norm.size()) add_one(layer.attention_post_norm);
    if (layer.mlp_post_norm.size()) add_one(layer.mlp_post_norm);
  }
  add_one(w.final_norm);
}

/// The Llama layout's weights. Two passes over the same list: the first only checks
/// presence, shape and dtype of every tensor, so a bad checkpoint fails before gigabytes
/// are read and converted.
template <typename Scalar>
void load_llama_weights(const HuggingFaceTensors& tensors, const Config& c, Weights<Scalar>& w) {
  const std::int64_t D = c.dim, V = c.vocab_size;
  const std::string embed = "model.embed_tokens.weight", head = "lm_head.weight";
  if (c.tied_embeddings && !tensors.find(embed) && !tensors.find(head))
    throw FormatError(tensors.where() + ": missing tensor '" + embed + "' (with tied embeddings '" + head +
                      "' would also do)");
  // Tied checkpoints store the shared matrix under either name (TinyStories-656K keeps
  // only lm_head.weight and aliases the embedding to it in __metadata__).
  const std::string& embedding = c.tied_embeddings && !tensors.find(embed) ? head : embed;
  for (const bool read : {false, true}) {
    w.token_embedding = tensors.template matrix<Scalar>(embedding, V, D, read);
    if (!c.tied_embeddings) w.output = tensors.template matrix<Scalar>(head, V, D, read);
    w.layers.assign(static_cast<std::size_t>(c.n_layers), LayerWeights<Scalar>());
    for (std::size_t l = 0; l < w.layers.size(); ++l)
      load_llama_layer(tensors, c, "model.layers." + std::to_string(l) + ".", read, w.layers[l]);
    w.final_norm = tensors.template vector<Scalar>("model.norm.weight", D, read);
  }
  if (c.architecture == "gemma" || c.architecture == "gemma2") add_one_to_norm_gains(w);
}

}  // namespace detail
}  // namespace depass
