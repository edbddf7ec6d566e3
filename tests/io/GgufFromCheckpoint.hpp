#pragma once
// A loaded checkpoint written back as a llama GGUF file with the test writer (GgufWriter.hpp):
// how the tests make GGUF versions of real and reference models.

#include <depass/Weights.hpp>
#include <string>
#include <vector>

#include "GgufWriter.hpp"

namespace depass {
namespace test {
namespace gguf {

/// The F32 Hugging Face checkpoint as a llama GGUF: Q and K rows permuted from the halves
/// RoPE layout to adjacent pairs (as llama.cpp's converter does), every matrix encoded by
/// `encode` (F32 when null), norms F32.
inline File as_gguf(const Checkpoint<float>& ck,
                std::string (*encode)(const float*, std::size_t) = nullptr, std::uint32_t type = T_F32) {
  const Config& c = ck.config;
  File f;
  f.kv(string("general.architecture", "llama"))
      .kv(u32("llama.context_length", static_cast<std::uint32_t>(c.max_seq_len)))
      .kv(u32("llama.embedding_length", static_cast<std::uint32_t>(c.dim)))
      .kv(u32("llama.block_count", static_cast<std::uint32_t>(c.n_layers)))
      .kv(u32("llama.feed_forward_length", static_cast<std::uint32_t>(c.hidden_dim)))
      .kv(u32("llama.attention.head_count", static_cast<std::uint32_t>(c.n_heads)))
      .kv(u32("llama.attention.head_count_kv", static_cast<std::uint32_t>(c.n_kv_heads)))
      .kv(f32("llama.rope.freq_base", static_cast<float>(c.rope_theta)))
      .kv(f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps)))
      .kv(u32("llama.vocab_size", static_cast<std::uint32_t>(c.vocab_size)));
  auto matrix = [&](const std::string& name, RowMatrix<float> m) {
    const std::vector<std::uint64_t> ne = {static_cast<std::uint64_t>(m.cols()),
                                           static_cast<std::uint64_t>(m.rows())};
    if (encode)
      f.tensor({name, ne, type, encode(m.data(), static_cast<std::size_t>(m.size())), -1});
    else
      f.tensor({name, ne, T_F32, f32_data(std::vector<float>(m.data(), m.data() + m.size())), -1});
  };
  auto vector = [&](const std::string& name, const Vector<float>& v) {
    f.tensor({name, {static_cast<std::uint64_t>(v.size())}, T_F32,
              f32_data(std::vector<float>(v.data(), v.data() + v.size())), -1});
  };
  auto adjacent_pairs = [&](const RowMatrix<float>& w) {
    const Eigen::Index d = c.head_dim, half = d / 2;
    RowMatrix<float> out(w.rows(), w.cols());
    for (Eigen::Index h = 0; h < w.rows() / d; ++h)
      for (Eigen::Index j = 0; j < half; ++j) {
        out.row(h * d + 2 * j) = w.row(h * d + j);
        out.row(h * d + 2 * j + 1) = w.row(h * d + half + j);
      }
    return out;
  };
  matrix("token_embd.weight", ck.weights.token_embedding);
  for (std::size_t l = 0; l < ck.weights.layers.size(); ++l) {
    const LayerWeights<float>& w = ck.weights.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", w.attention_norm);
    matrix(p + "attn_q.weight", adjacent_pairs(w.wq));
    matrix(p + "attn_k.weight", adjacent_pairs(w.wk));
    matrix(p + "attn_v.weight", w.wv);
    matrix(p + "attn_output.weight", w.wo);
    vector(p + "ffn_norm.weight", w.mlp_norm);
    matrix(p + "ffn_gate.weight", w.w1);
    matrix(p + "ffn_up.weight", w.w3);
    matrix(p + "ffn_down.weight", w.w2);
  }
  vector("output_norm.weight", ck.weights.final_norm);
  return f;
}


}  // namespace gguf
}  // namespace test
}  // namespace depass
