#pragma once
// Fused projections split into depass's separate ones, shared by the Hugging Face and GGUF
// loaders: q|k|v stacked row-wise (Phi-3's qkv_proj, GPT-2's c_attn once transposed, GGUF's
// attn_qkv; GPT-NeoX's query_key_value once its per-head interleaving is undone) and
// gate|up stacked row-wise (Phi-3's gate_up_proj, GGUF phi3's ffn_up).

#include <stdexcept>
#include <string>

#include "../../Config.hpp"
#include "../../Weights.hpp"

namespace depass {
namespace detail {

/// wq, wk, wv from the rows [Q | K | K] of a fused (Q + 2K, D) matrix.
template <typename Scalar>
void split_fused_qkv(const RowMatrix<Scalar>& qkv, const Config& c, LayerWeights<Scalar>& layer) {
  const Eigen::Index Q = c.q_width(), K = c.kv_width();
  if (qkv.rows() != Q + 2 * K || qkv.cols() != c.dim)
    throw std::invalid_argument("split_fused_qkv: expected a [" + std::to_string(Q + 2 * K) + ", " +
                                std::to_string(c.dim) + "] matrix");
  layer.wq = qkv.topRows(Q);
  layer.wk = qkv.middleRows(Q, K);
  layer.wv = qkv.bottomRows(K);
}

/// bq, bk, bv from a fused (Q + 2K) bias.
template <typename Scalar>
void split_fused_qkv_bias(const Vector<Scalar>& qkv, const Config& c, LayerWeights<Scalar>& layer) {
  const Eigen::Index Q = c.q_width(), K = c.kv_width();
  if (qkv.size() != Q + 2 * K)
    throw std::invalid_argument("split_fused_qkv_bias: expected " + std::to_string(Q + 2 * K) +
                                " entries");
  layer.bq = qkv.head(Q);
  layer.bk = qkv.segment(Q, K);
  layer.bv = qkv.tail(K);
}

/// GPT-NeoX's query_key_value holds, head after head, that head's q, k and v rows ([q_0 k_0
/// v_0 q_1 ...], each head_dim long): rows reordered to [q_0 q_1 ... | k_0 ... | v_0 ...], the
/// stacked layout split_fused_qkv reads. Works on a matrix's rows or a bias vector.
template <typename Rows>
Rows unweave_heads_qkv(const Rows& interleaved, const Config& c) {
  const Eigen::Index d = c.head_dim, H = c.n_heads;
  if (c.n_kv_heads != H || interleaved.rows() != 3 * H * d)
    throw std::invalid_argument("unweave_heads_qkv: expected " + std::to_string(3 * H * d) +
                                " rows of per-head q|k|v (no grouped keys)");
  Rows stacked(interleaved.rows(), interleaved.cols());
  for (Eigen::Index h = 0; h < H; ++h)
    for (Eigen::Index part = 0; part < 3; ++part)
      stacked.middleRows((part * H + h) * d, d) = interleaved.middleRows((3 * h + part) * d, d);
  return stacked;
}

/// w1 (gate) and w3 (up) from the rows [gate | up] of a fused (2I, D) matrix.
template <typename Scalar>
void split_fused_gate_up(const RowMatrix<Scalar>& gate_up, const Config& c,
                         LayerWeights<Scalar>& layer) {
  const Eigen::Index I = c.hidden_dim;
  if (gate_up.rows() != 2 * I || gate_up.cols() != c.dim)
    throw std::invalid_argument("split_fused_gate_up: expected a [" + std::to_string(2 * I) + ", " +
                                std::to_string(c.dim) + "] matrix");
  layer.w1 = gate_up.topRows(I);
  layer.w3 = gate_up.bottomRows(I);
}

}  // namespace detail
}  // namespace depass
