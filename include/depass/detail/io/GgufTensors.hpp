#pragma once
// The tensors of a GGUF checkpoint (llama.cpp's names: token_embd, position_embd,
// blk.N.attn_*, blk.N.ffn_*, output_norm, output) mapped onto depass's Weights for every
// family of GgufConfig.hpp. Used by io/Gguf.hpp's load_gguf: one visit of the model
// vets every tensor (presence, shape, type), a second reads them.

#include <set>
#include <string>

#include "../../Config.hpp"
#include "../../Weights.hpp"
#include "Finite.hpp"
#include "FusedProjections.hpp"
#include "GgufFile.hpp"

namespace depass {
namespace detail {

/// The tensors of one GGUF file as a visit sees them: before reading() only checked
/// (FormatError naming a missing tensor, or the shape found and the shape expected) and
/// returned empty; after, read, converted to Scalar and checked finite.
template <typename Scalar>
class GgufTensors {
 public:
  explicit GgufTensors(GgufFile& f) : f_(f) {}

  void start_reading() { reading_ = true; }
  bool reading() const { return reading_; }
  bool has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }

  RowMatrix<Scalar> matrix(const std::string& name, std::int64_t rows, std::int64_t cols) {
    const GgufTensorInfo& t = f_.check_tensor(name, {rows, cols});
    used_.insert(name);
    if (!reading_) return RowMatrix<Scalar>();
    // ne = [cols, rows] with ne[0] fastest: exactly RowMatrix's storage order.
    RowMatrix<Scalar> m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    f_.read_tensor(t, m.data());
    require_finite(m, f_.path(), "tensor '" + name + "'");
    return m;
  }

  Vector<Scalar> vector(const std::string& name, std::int64_t size) {
    const GgufTensorInfo& t = f_.check_tensor(name, {size});
    used_.insert(name);
    if (!reading_) return Vector<Scalar>();
    Vector<Scalar> v(static_cast<Eigen::Index>(size));
    f_.read_tensor(t, v.data());
    require_finite(v, f_.path(), "tensor '" + name + "'");
    return v;
  }

  /// FormatError naming the first tensor of the file no visit asked for: a model run
  /// without some of its weights would be silently wrong.
  void refuse_unused(const std::string& arch) const {
    for (const auto& t : f_.tensors())
      if (!used_.count(t.name))
        f_.fail("tensor '" + t.name + "' is not part of a " + arch +
                " model as depass reads it (unsupported)");
  }

 private:
  GgufFile& f_;
  bool reading_ = false;
  std::set<std::string> used_;
};

/// Attention of one block (prefix p = "blk.N."): attn_q/k/v or fused attn_qkv (gpt2, gptneox;
/// phi3 when the file has it, else separate), biases, attn_output, per-head q/k norms.
template <typename Scalar>
void visit_gguf_attention(GgufTensors<Scalar>& t, const Config& c, const std::string& p,
                          LayerWeights<Scalar>& layer) {
  const std::int64_t D = c.dim, Q = c.q_width(), K = c.kv_width();
  const bool fused = c.architecture == "gpt2" || c.architecture == "gpt_neox" ||
                     (c.architecture == "phi3" && t.has(p + "attn_qkv.weight"));
  if (fused) {
    const RowMatrix<Scalar> qkv = t.matrix(p + "attn_qkv.weight", Q + 2 * K, D);
    if (t.reading()) split_fused_qkv(qkv, c, layer);
  } else {
    layer.wq = t.matrix(p + "attn_q.weight", Q, D);
    layer.wk = t.matrix(p + "attn_k.weight", K, D);
    layer.wv = t.matrix(p + "attn_v.weight", K, D);
  }
  if (c.attention_qkv_bias && fused) {
    const Vector<Scalar> bias = t.vector(p + "attn_qkv.bias", Q + 2 * K);
    if (t.reading()) split_fused_qkv_bias(bias, c, layer);
  } else if (c.attention_qkv_bias) {
    layer.bq = t.vector(p + "attn_q.bias", Q);
    layer.bk = t.vector(p + "attn_k.bias", K);
    layer.bv = t.vector(p + "attn_v.bias", K);
  }
  layer.wo = t.matrix(p + "attn_output.weight", D, Q);
  if (c.attention_out_bias) layer.bo = t.vector(p + "attn_output.bias", D);
  if (c.qk_norm) {
    layer.q_norm = t.vector(p + "attn_q_norm.weight", c.head_dim);
    layer.k_norm = t.vector(p + "attn_k_norm.weight", c.head_dim);
  }
}

/// MLP of one block: ffn_gate/ffn_up/ffn_down; phi3 stacks gate and up in ffn_up; gpt2's
/// and gptneox's single input projection (c_fc, dense_h_to_4h) is ffn_up.
template <typename Scalar>
void visit_gguf_mlp(GgufTensors<Scalar>& t, const Config& c, const std::string& p,
                    LayerWeights<Scalar>& layer) {
  const std::int64_t D = c.dim, I = c.hidden_dim;
  if (!c.gated_mlp()) {
    layer.w1 = t.matrix(p + "ffn_up.weight", I, D);
    if (c.mlp_bias) layer.b1 = t.vector(p + "ffn_up.bias", I);
  } else if (c.architecture == "phi3") {
    const RowMatrix<Scalar> gate_up = t.matrix(p + "ffn_up.weight", 2 * I, D);
    if (t.reading()) split_fused_gate_up(gate_up, c, layer);
  } else {
    layer.w1 = t.matrix(p + "ffn_gate.weight", I, D);
    layer.w3 = t.matrix(p + "ffn_up.weight", I, D);
    if (c.mlp_bias) {
      layer.b1 = t.vector(p + "ffn_gate.bias", I);
      layer.b3 = t.vector(p + "ffn_up.bias", I);
    }
  }
  layer.w2 = t.matrix(p + "ffn_down.weight", D, I);
  if (c.mlp_bias) layer.b2 = t.vector(p + "ffn_down.bias", D);
}

/// Every tensor of the model, in the order llama.cpp's converters write them.
template <typename Scalar>
void visit_gguf_model(GgufTensors<Scalar>& t, const Config& c, Weights<Scalar>& w) {
  const std::int64_t D = c.dim, V = c.vocab_size;
  const bool layer_norm = c.norm == NormKind::LayerNorm;
  w.token_embedding = t.matrix("token_embd.weight", V, D);
  if (c.positions == PositionKind::Learned)
    w.position_embedding = t.matrix("position_embd.weight", c.max_seq_len, D);
  w.layers.assign(static_cast<std::size_t>(c.n_layers), LayerWeights<Scalar>());
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights<Scalar>& layer = w.layers[l];
    layer.attention_norm = t.vector(p + "attn_norm.weight", D);
    if (layer_norm) layer.attention_norm_bias = t.vector(p + "attn_norm.bias", D);
    visit_gguf_attention(t, c, p, layer);
    if (c.post_norms) layer.attention_post_norm = t.vector(p + "post_attention_norm.weight", D);  // gemma2
    layer.mlp_norm = t.vector(p + "ffn_norm.weight", D);
    if (layer_norm) layer.mlp_norm_bias = t.vector(p + "ffn_norm.bias", D);
    visit_gguf_mlp(t, c, p, layer);
    if (c.post_norms) layer.mlp_post_norm = t.vector(p + "post_ffw_norm.weight", D);
  }
  w.final_norm = t.vector("output_norm.weight", D);
  if (layer_norm) w.final_norm_bias = t.vector("output_norm.bias", D);
  if (!c.tied_embeddings) w.output = t.matrix("output.weight", V, D);
}

}  // namespace detail
}  // namespace depass
