#pragma once
// Owning weight storage. Matrices keep PyTorch's [out, in] row-major layout so that a
// checkpoint loads with a straight copy and y = x * W^T reads naturally.

#include <Eigen/Core>
#include <stdexcept>
#include <string>
#include <vector>

#include "Config.hpp"

namespace depass {

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <typename Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

template <typename Scalar>
struct LayerWeights {
  Vector<Scalar> attention_norm;  // (D)        norm gain before attention
  Vector<Scalar> attention_norm_bias;  // (D) or empty: LayerNorm offset before attention
  RowMatrix<Scalar> wq;           // (H*d, D)   query projection
  RowMatrix<Scalar> wk;           // (G*d, D)   key projection
  RowMatrix<Scalar> wv;           // (G*d, D)   value projection
  RowMatrix<Scalar> wo;           // (D, H*d)   output projection
  Vector<Scalar> bq;              // (H*d) or empty: query bias
  Vector<Scalar> bk;              // (G*d) or empty: key bias
  Vector<Scalar> bv;              // (G*d) or empty: value bias
  Vector<Scalar> bo;              // (D) or empty:   output bias
  Vector<Scalar> q_norm;          // (d) or empty: per-head query RMSNorm gain (Qwen3)
  Vector<Scalar> k_norm;          // (d) or empty: per-head key RMSNorm gain (Qwen3)
  Vector<Scalar> attention_post_norm;  // (D) or empty: RMSNorm gain on the attention output (Gemma 2)
  Vector<Scalar> mlp_norm;        // (D)        norm gain before the MLP
  Vector<Scalar> mlp_norm_bias;   // (D) or empty: LayerNorm offset before the MLP
  RowMatrix<Scalar> w1;           // (I, D)     gate projection
  RowMatrix<Scalar> w3;           // (I, D)     up projection (gated MLPs), else empty
  RowMatrix<Scalar> w2;           // (D, I)     down projection
  Vector<Scalar> b1;              // (I) or empty: gate bias
  Vector<Scalar> b3;              // (I) or empty: up bias
  Vector<Scalar> b2;              // (D) or empty: down bias
  Vector<Scalar> mlp_post_norm;   // (D) or empty: RMSNorm gain on the MLP output (Gemma 2)
};

template <typename Scalar>
struct Weights {
  RowMatrix<Scalar> token_embedding;        // (V, D)
  RowMatrix<Scalar> position_embedding;     // (max_seq_len, D) learned positions, or empty
  std::vector<LayerWeights<Scalar>> layers;  // L entries
  Vector<Scalar> final_norm;                // (D)    norm gain before the unembedding
  Vector<Scalar> final_norm_bias;           // (D) or empty: LayerNorm offset
  RowMatrix<Scalar> output;                 // (V, D) or empty when embeddings are tied

  const RowMatrix<Scalar>& unembedding() const {
    return output.size() != 0 ? output : token_embedding;
  }

  /// Throws std::invalid_argument naming the first tensor whose shape disagrees with cfg.
  void validate(const Config& cfg) const {
    const long D = cfg.dim, I = cfg.hidden_dim, V = cfg.vocab_size;
    const long Q = cfg.q_width(), K = cfg.kv_width();
    auto mat = [](const std::string& name, long rows, long cols, long want_rows, long want_cols) {
      if (rows != want_rows || cols != want_cols)
        throw std::invalid_argument("Weights: " + name + " has shape [" + std::to_string(rows) +
                                    ", " + std::to_string(cols) + "], expected [" +
                                    std::to_string(want_rows) + ", " + std::to_string(want_cols) +
                                    "]");
    };
    auto vec = [](const std::string& name, long size, long want, bool present) {
      const long expected = present ? want : 0;
      if (size != expected)
        throw std::invalid_argument("Weights: " + name + " has " + std::to_string(size) +
                                    " entries, expected " + std::to_string(expected));
    };
    const bool layer_norm = cfg.norm == NormKind::LayerNorm;
    mat("token_embedding", token_embedding.rows(), token_embedding.cols(), V, D);
    if (cfg.positions == PositionKind::Learned)
      mat("position_embedding", position_embedding.rows(), position_embedding.cols(),
          cfg.max_seq_len, D);
    else
      vec("position_embedding", position_embedding.size(), 0, false);
    if (static_cast<long>(layers.size()) != cfg.n_layers)
      throw std::invalid_argument("Weights: " + std::to_string(layers.size()) +
                                  " layers, expected " + std::to_string(cfg.n_layers));
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto& w = layers[l];
      const std::string p = "layers." + std::to_string(l) + ".";
      vec(p + "attention_norm", w.attention_norm.size(), D, true);
      vec(p + "attention_norm_bias", w.attention_norm_bias.size(), D, layer_norm);
      mat(p + "wq", w.wq.rows(), w.wq.cols(), Q, D);
      mat(p + "wk", w.wk.rows(), w.wk.cols(), K, D);
      mat(p + "wv", w.wv.rows(), w.wv.cols(), K, D);
      mat(p + "wo", w.wo.rows(), w.wo.cols(), D, Q);
      vec(p + "bq", w.bq.size(), Q, cfg.attention_qkv_bias);
      vec(p + "bk", w.bk.size(), K, cfg.attention_qkv_bias);
      vec(p + "bv", w.bv.size(), K, cfg.attention_qkv_bias);
      vec(p + "q_norm", w.q_norm.size(), cfg.head_dim, cfg.qk_norm);
      vec(p + "k_norm", w.k_norm.size(), cfg.head_dim, cfg.qk_norm);
      vec(p + "bo", w.bo.size(), D, cfg.attention_out_bias);
      vec(p + "attention_post_norm", w.attention_post_norm.size(), D, cfg.post_norms);
      vec(p + "mlp_post_norm", w.mlp_post_norm.size(), D, cfg.post_norms);
      vec(p + "mlp_norm", w.mlp_norm.size(), D, true);
      vec(p + "mlp_norm_bias", w.mlp_norm_bias.size(), D, layer_norm);
      mat(p + "w1", w.w1.rows(), w.w1.cols(), I, D);
      if (cfg.gated_mlp())
        mat(p + "w3", w.w3.rows(), w.w3.cols(), I, D);
      else
        vec(p + "w3", w.w3.size(), 0, false);
      mat(p + "w2", w.w2.rows(), w.w2.cols(), D, I);
      vec(p + "b1", w.b1.size(), I, cfg.mlp_bias);
      vec(p + "b3", w.b3.size(), I, cfg.mlp_bias && cfg.gated_mlp());
      vec(p + "b2", w.b2.size(), D, cfg.mlp_bias);
    }
    vec("final_norm", final_norm.size(), D, true);
    vec("final_norm_bias", final_norm_bias.size(), D, layer_norm);
    if (cfg.tied_embeddings) {
      if (output.size() != 0)
        throw std::invalid_argument("Weights: output must be empty when embeddings are tied");
    } else {
      mat("output", output.rows(), output.cols(), V, D);
    }
  }
};

}  // namespace depass

namespace depass {

/// A model as read from disk: its shape and its weights.
template <typename Scalar>
struct Checkpoint {
  Config config;
  Weights<Scalar> weights;
};

}  // namespace depass
