#pragma once
// The output: the final norm (frozen for components, like every norm) and the
// unembedding, logits = norm(x) U^T. A component's logits are its share of the real ones.

#include <Eigen/Core>

#include "../Config.hpp"
#include "../Weights.hpp"
#include "Norm.hpp"

namespace depass {

template <typename Scalar>
class Unembedding {
 public:
  using MatrixType = Matrix<Scalar>;

  /// The weights must outlive the Unembedding.
  Unembedding(const Config& cfg, const Weights<Scalar>& w)
      : norm_(cfg.norm, w.final_norm, w.final_norm_bias, cfg.norm_eps), matrix_(w.unembedding()) {}

  const Norm<Scalar>& norm() const { return norm_; }
  /// V x D (the token embedding when tied).
  const RowMatrix<Scalar>& matrix() const { return matrix_; }
  /// Logits of normed rows (n x D): n x V.
  template <typename Rows>
  MatrixType logits(const Rows& normed) const {
    return normed * matrix_.transpose();
  }
  /// Reverse mode: the gradient wrt the normed rows from the gradient wrt their logits (n x V).
  Matrix<Scalar> backward(const Eigen::Ref<const Matrix<Scalar>>& d_logits) const { return d_logits * matrix_; }

 private:
  Norm<Scalar> norm_;
  const RowMatrix<Scalar>& matrix_;
};

}  // namespace depass
