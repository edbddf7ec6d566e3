#pragma once
// Token embeddings, plus a learned table of position vectors for models that have one
// (GPT-2). Token-level decompositions start here: each token owns its own embedding, and
// learned position vectors, which belong to no token, form a component of their own.
// Gemma multiplies the token rows by sqrt(D) (Config::embedding_scale); a token's
// component is its scaled row.

#include <Eigen/Core>
#include <vector>

#include "../Config.hpp"
#include "../Weights.hpp"

namespace depass {

template <typename Scalar>
class Embedding {
 public:
  using MatrixType = Matrix<Scalar>;
  using RowVectorType = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

  /// The weights must outlive the Embedding.
  Embedding(const Config& cfg, const Weights<Scalar>& w)
      : w_(w), learned_positions_(cfg.positions == PositionKind::Learned),
        scale_(static_cast<Scalar>(cfg.embedding_scale)) {}

  /// The state entering the first block: token rows (+ position rows), N x D.
  MatrixType forward(const std::vector<int>& ids) const {
    MatrixType x(static_cast<Eigen::Index>(ids.size()), w_.token_embedding.cols());
    for (std::size_t i = 0; i < ids.size(); ++i) x.row(static_cast<Eigen::Index>(i)) = token(ids[i]);
    if (learned_positions_) x += positions(x.rows());
    return x;
  }

  /// The embedding row of token id, scaled (without any position vector).
  RowVectorType token(int id) const {
    if (scale_ == Scalar(1)) return w_.token_embedding.row(id);
    return w_.token_embedding.row(id) * scale_;
  }
  /// Whether positions are a learned table added to the tokens.
  bool learned_positions() const { return learned_positions_; }
  /// The first N learned position vectors (N x D).
  typename RowMatrix<Scalar>::ConstRowsBlockXpr positions(Eigen::Index N) const {
    return w_.position_embedding.topRows(N);
  }

 private:
  const Weights<Scalar>& w_;
  bool learned_positions_;
  Scalar scale_;  // token rows are multiplied by this (Gemma: sqrt(D), rounded to Scalar as HF rounds it)
};

}  // namespace depass
