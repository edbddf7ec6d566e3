#pragma once
// A loaded checkpoint written back as a GGUF file of its family (llama, qwen2, qwen3, phi3,
// gemma, gemma2, gpt2, gptneox) with the test writer (GgufWriter.hpp), under llama.cpp's tensor names and metadata
// keys: how the tests make GGUF versions of real and reference models.

#include <depass/Weights.hpp>
#include <string>
#include <vector>

#include "GgufWriter.hpp"

namespace depass {
namespace test {
namespace gguf {

/// Writes a checkpoint's tensors into a File: matrices encoded by `encode` (F32 when null),
/// vectors always F32 (as llama.cpp's converters keep norms and biases).
struct CheckpointWriter {
  File& f;
  std::string (*encode)(const float*, std::size_t) = nullptr;
  std::uint32_t type = T_F32;

  void matrix(const std::string& name, const RowMatrix<float>& m) const {
    const std::vector<std::uint64_t> ne = {static_cast<std::uint64_t>(m.cols()),
                                           static_cast<std::uint64_t>(m.rows())};
    if (encode)
      f.tensor({name, ne, type, encode(m.data(), static_cast<std::size_t>(m.size())), -1});
    else
      f.tensor({name, ne, T_F32, f32_data(std::vector<float>(m.data(), m.data() + m.size())), -1});
  }
  void vector(const std::string& name, const Vector<float>& v) const {
    f.tensor({name, {static_cast<std::uint64_t>(v.size())}, T_F32,
              f32_data(std::vector<float>(v.data(), v.data() + v.size())), -1});
  }
};

/// Rows stacked: [a; b] or [a; b; c], as Phi-3's qkv_proj / gate_up_proj and GPT-2's c_attn
/// (once transposed) hold them.
inline RowMatrix<float> stacked_rows(const std::vector<const RowMatrix<float>*>& parts) {
  Eigen::Index rows = 0;
  for (const auto* p : parts) rows += p->rows();
  RowMatrix<float> out(rows, parts.front()->cols());
  rows = 0;
  for (const auto* p : parts) {
    out.middleRows(rows, p->rows()) = *p;
    rows += p->rows();
  }
  return out;
}
inline Vector<float> stacked_entries(const std::vector<const Vector<float>*>& parts) {
  Eigen::Index size = 0;
  for (const auto* p : parts) size += p->size();
  Vector<float> out(size);
  size = 0;
  for (const auto* p : parts) {
    out.segment(size, p->size()) = *p;
    size += p->size();
  }
  return out;
}

/// Q or K rows of a halves-layout checkpoint permuted into adjacent pairs, as llama.cpp's
/// llama converter (and only that one) does.
inline RowMatrix<float> adjacent_pairs(const RowMatrix<float>& w, Eigen::Index d) {
  const Eigen::Index half = d / 2;
  RowMatrix<float> out(w.rows(), w.cols());
  for (Eigen::Index h = 0; h < w.rows() / d; ++h)
    for (Eigen::Index j = 0; j < half; ++j) {
      out.row(h * d + 2 * j) = w.row(h * d + j);
      out.row(h * d + 2 * j + 1) = w.row(h * d + half + j);
    }
  return out;
}

/// The {arch}.* metadata llama.cpp's converter writes for the checkpoint's family.
inline void add_family_metadata(File& f, const Config& c) {
  const std::string a = c.architecture == "gpt_neox" ? "gptneox" : c.architecture;
  auto u = [](int v) { return static_cast<std::uint32_t>(v); };
  f.kv(string("general.architecture", a))
      .kv(u32(a + ".context_length", u(c.max_seq_len)))
      .kv(u32(a + ".embedding_length", u(c.dim)))
      .kv(u32(a + ".block_count", u(c.n_layers)))
      .kv(u32(a + ".feed_forward_length", u(c.hidden_dim)))
      .kv(u32(a + ".attention.head_count", u(c.n_heads)))
      .kv(u32(a + ".vocab_size", u(c.vocab_size)));
  if (a == "gpt2") {
    f.kv(f32(a + ".attention.layer_norm_epsilon", static_cast<float>(c.norm_eps)));
    return;
  }
  if (a == "gptneox") {  // convert_hf_to_gguf's GPTNeoXModel: no head_count_kv, no freq_base
    f.kv(f32(a + ".attention.layer_norm_epsilon", static_cast<float>(c.norm_eps)))
        .kv(u32(a + ".rope.dimension_count", u(c.rotated_dims())))
        .kv(boolean(a + ".use_parallel_residual", c.parallel_residual));
    return;
  }
  f.kv(u32(a + ".attention.head_count_kv", u(c.n_kv_heads)))
      .kv(f32(a + ".rope.freq_base", static_cast<float>(c.rope_theta)))
      .kv(f32(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps)));
  if (c.head_dim * c.n_heads != c.dim)
    f.kv(u32(a + ".attention.key_length", u(c.head_dim)))
        .kv(u32(a + ".attention.value_length", u(c.head_dim)));
  if (a == "phi3")
    f.kv(u32(a + ".rope.dimension_count", u(c.head_dim)))
        .kv(u32(a + ".attention.sliding_window", u(2 * c.max_seq_len)));
  if (a == "gemma2")
    f.kv(f32(a + ".attn_logit_softcapping", static_cast<float>(c.attention_softcap)))
        .kv(f32(a + ".final_logit_softcapping", static_cast<float>(c.final_softcap)))
        .kv(u32(a + ".attention.sliding_window", u(2 * c.max_seq_len)))
        // llama.cpp's converter stores no score scale; ours differs from 1/sqrt(head width).
        .kv(f32(a + ".attention.scale", static_cast<float>(c.attention_scale)));
}

/// One block's tensors under llama.cpp's names for the family (prefix p = "blk.N.").
inline void add_family_layer(const CheckpointWriter& w, const Config& c, const std::string& p,
                             const LayerWeights<float>& l) {
  const std::string& a = c.architecture;
  // gpt_neox: the converter reorders the per-head q|k|v rows into the stacked layout.
  const bool fused = a == "phi3" || a == "gpt2" || a == "gpt_neox", layer_norm = c.norm == NormKind::LayerNorm;
  w.vector(p + "attn_norm.weight", l.attention_norm);
  if (layer_norm) w.vector(p + "attn_norm.bias", l.attention_norm_bias);
  if (fused) {
    w.matrix(p + "attn_qkv.weight", stacked_rows({&l.wq, &l.wk, &l.wv}));
  } else {
    const bool permute = a == "llama";
    w.matrix(p + "attn_q.weight", permute ? adjacent_pairs(l.wq, c.head_dim) : l.wq);
    w.matrix(p + "attn_k.weight", permute ? adjacent_pairs(l.wk, c.head_dim) : l.wk);
    w.matrix(p + "attn_v.weight", l.wv);
  }
  if (c.attention_qkv_bias && fused) w.vector(p + "attn_qkv.bias", stacked_entries({&l.bq, &l.bk, &l.bv}));
  if (c.attention_qkv_bias && !fused) {
    w.vector(p + "attn_q.bias", l.bq);
    w.vector(p + "attn_k.bias", l.bk);
    w.vector(p + "attn_v.bias", l.bv);
  }
  w.matrix(p + "attn_output.weight", l.wo);
  if (c.attention_out_bias) w.vector(p + "attn_output.bias", l.bo);
  if (c.post_norms) w.vector(p + "post_attention_norm.weight", l.attention_post_norm);
  if (c.qk_norm) {
    w.vector(p + "attn_q_norm.weight", l.q_norm);
    w.vector(p + "attn_k_norm.weight", l.k_norm);
  }
  w.vector(p + "ffn_norm.weight", l.mlp_norm);
  if (layer_norm) w.vector(p + "ffn_norm.bias", l.mlp_norm_bias);
  if (!c.gated_mlp()) {  // gpt2's c_fc, gpt_neox's dense_h_to_4h
    w.matrix(p + "ffn_up.weight", l.w1);
    w.vector(p + "ffn_up.bias", l.b1);
  } else if (a == "phi3") {
    w.matrix(p + "ffn_up.weight", stacked_rows({&l.w1, &l.w3}));
  } else {
    w.matrix(p + "ffn_gate.weight", l.w1);
    w.matrix(p + "ffn_up.weight", l.w3);
  }
  w.matrix(p + "ffn_down.weight", l.w2);
  if (c.mlp_bias) w.vector(p + "ffn_down.bias", l.b2);
  if (c.post_norms) w.vector(p + "post_ffw_norm.weight", l.mlp_post_norm);
}

/// The F32 Hugging Face checkpoint as llama.cpp's converter writes it for its family
/// (llama, qwen2, qwen3, phi3, gemma, gemma2, gpt2, gpt_neox): Gemma's norm gains with the 1 added (as
/// llama.cpp's converter stores them: what the loaders hold); Q and K rows permuted from the halves RoPE layout to
/// adjacent pairs for llama only; Phi-3's and GPT-2's fused projections stacked; GPT-2's
/// output written as a copy of token_embd. Every matrix encoded by `encode` (F32 when
/// null), norms and biases F32.
inline File as_gguf(const Checkpoint<float>& ck,
                    std::string (*encode)(const float*, std::size_t) = nullptr,
                    std::uint32_t type = T_F32) {
  const Config& c = ck.config;
  const Weights<float>& w = ck.weights;
  File f;
  add_family_metadata(f, c);
  const CheckpointWriter out{f, encode, type};
  out.matrix("token_embd.weight", w.token_embedding);
  if (c.positions == PositionKind::Learned) out.matrix("position_embd.weight", w.position_embedding);
  for (std::size_t l = 0; l < w.layers.size(); ++l)
    add_family_layer(out, c, "blk." + std::to_string(l) + ".", w.layers[l]);
  out.vector("output_norm.weight", w.final_norm);
  if (c.norm == NormKind::LayerNorm) out.vector("output_norm.bias", w.final_norm_bias);
  if (c.architecture == "gpt2" || !c.tied_embeddings) out.matrix("output.weight", w.unembedding());
  return f;
}

}  // namespace gguf
}  // namespace test
}  // namespace depass
