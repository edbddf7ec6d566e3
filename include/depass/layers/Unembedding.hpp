#pragma once
// The output: the final norm (frozen for components, like every norm) and the
// unembedding, logits = norm(x) U^T. A component's logits are its share of the real ones.
// Gemma 2 soft-caps the logits, cap * tanh(z / cap): a nonlinearity, frozen like the norms.
// With z the real pre-cap logit, each component's pre-cap logit z_m is scaled by the real
// ratio rho = cap * tanh(z / cap) / z (1 at z = 0), so the shares still sum to the output.

#include <Eigen/Core>
#include <cmath>

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
      : norm_(cfg.norm, w.final_norm, w.final_norm_bias, cfg.norm_eps), matrix_(w.unembedding()),
        cap_(static_cast<Scalar>(cfg.final_softcap)) {}

  const Norm<Scalar>& norm() const { return norm_; }
  /// V x D (the token embedding when tied).
  const RowMatrix<Scalar>& matrix() const { return matrix_; }
  /// Logits of normed rows (n x D): n x V (soft-capped, if the model caps them).
  template <typename Rows>
  MatrixType logits(const Rows& normed) const {
    MatrixType z = normed * matrix_.transpose();
    if (capped()) z = z.unaryExpr([this](Scalar v) { return cap(v); });
    return z;
  }
  /// Reverse mode: the gradient wrt the normed rows from the gradient wrt their logits
  /// (n x V), given those logits (as logits() returned them).
  Matrix<Scalar> backward(const Eigen::Ref<const Matrix<Scalar>>& d_logits,
                          const Eigen::Ref<const Matrix<Scalar>>& logits) const {
    if (!capped()) return d_logits * matrix_;
    // d(cap tanh(z / cap))/dz = 1 - tanh^2 = 1 - (logit / cap)^2
    const Scalar inv = Scalar(1) / cap_;
    const MatrixType dz = (d_logits.array() * (Scalar(1) - (logits.array() * inv).square())).matrix();
    return dz * matrix_;
  }

  bool capped() const { return cap_ > Scalar(0); }
  /// The soft cap of a pre-cap logit z (z itself when the model has none).
  Scalar cap(Scalar z) const { return capped() ? cap_ * std::tanh(z / cap_) : z; }
  /// The frozen ratio a component's pre-cap logit is scaled by: cap(z) / z for the real
  /// pre-cap logit z; 1 at z = 0 (the limit) and without a cap.
  Scalar frozen_ratio(Scalar z) const { return capped() && z != Scalar(0) ? cap(z) / z : Scalar(1); }

 private:
  Norm<Scalar> norm_;
  const RowMatrix<Scalar>& matrix_;
  Scalar cap_;  // > 0: final logit soft cap (Gemma 2)
};

}  // namespace depass
