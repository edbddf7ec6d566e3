#pragma once
// Normalisation before each block and before the unembedding (docs/method.md, "Frozen
// norm"). The real pass computes each row's scale r from the whole state; a component is
// normalised with that scale frozen, so the normed components still sum to the normed
// state:
//   RMSNorm    y = x r w,                r = 1/sqrt(mean(x^2) + eps)
//   LayerNorm  y = (x - mean(x)) r g + b, r = 1/sqrt(var(x) + eps)
// Centering is linear, so each component is centred on its own; the offset b belongs to
// no input and goes to the bias component.

#include <Eigen/Core>

#include "../Config.hpp"
#include "../Weights.hpp"

namespace depass {

template <typename Scalar>
class Norm {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  /// gain (D) and offset (D, or empty for none); both must outlive the Norm.
  Norm(NormKind kind, const VectorType& gain, const VectorType& offset, double eps)
      : centred_(kind == NormKind::LayerNorm), gain_(&gain), offset_(offset.size() ? &offset : nullptr),
        eps_(static_cast<Scalar>(eps)) {}

  /// The real normalisation of x (N x D); each row's scale r goes to *scale.
  MatrixType forward(const MatrixType& x, VectorType* scale) const {
    VectorType r = row_scales(x);
    MatrixType y(x.rows(), x.cols());
    apply_frozen(x, r, true, y);
    if (scale) *scale = std::move(r);
    return y;
  }

  /// r_i = 1/sqrt(mean of the (centred) row's squares + eps).
  VectorType row_scales(const MatrixType& x) const {
    if (!centred_) return ((x.array().square().rowwise().sum() / Scalar(x.cols())) + eps_).rsqrt().matrix();
    const MatrixType centred = x.colwise() - x.rowwise().mean();
    return ((centred.array().square().rowwise().sum() / Scalar(x.cols())) + eps_).rsqrt().matrix();
  }

  /// The frozen rule, for rows of one component (n x D, any storage): dst = normed src,
  /// with scale (n) the real state's scale at those positions. `owns_offset`: the rows
  /// belong to the bias component (or the real state), which receives the offset.
  /// dst may be src.
  template <typename Src, typename Scale, typename Dst>
  void apply_frozen(const Src& src, const Scale& scale, bool owns_offset, Dst&& dst) const {
    if (centred_) {
      const VectorType mean = src.rowwise().mean();
      dst = ((src.colwise() - mean).array().colwise() * scale.array()).rowwise() * gain_->transpose().array();
    } else {
      dst = (src.array().colwise() * scale.array()).rowwise() * gain_->transpose().array();
    }
    if (owns_offset && offset_) dst.rowwise() += offset_->transpose();
  }

  bool has_offset() const { return offset_ != nullptr; }

  /// Reverse mode through the real normalisation (the scale is not frozen here): dy (n x D),
  /// the gradient wrt the output at rows x (n x D) whose scales are `scale`, gives the
  /// gradient wrt x. With u = dy * gain and x_hat = (centred) x * r:
  ///   RMSNorm    dx = r (u - x_hat mean(u x_hat))
  ///   LayerNorm  dx = r (u - mean(u) - x_hat mean(u x_hat))
  MatrixType backward(const Eigen::Ref<const MatrixType>& x, const Eigen::Ref<const VectorType>& scale,
                      const Eigen::Ref<const MatrixType>& dy) const {
    const MatrixType u = (dy.array().rowwise() * gain_->transpose().array()).matrix();
    MatrixType x_hat = x;
    if (centred_) x_hat.colwise() -= x.rowwise().mean();
    x_hat.array().colwise() *= scale.array();
    const VectorType projection = u.cwiseProduct(x_hat).rowwise().sum() / Scalar(x.cols());
    MatrixType dx = u - (x_hat.array().colwise() * projection.array()).matrix();
    if (centred_) dx.colwise() -= u.rowwise().mean();
    dx.array().colwise() *= scale.array();
    return dx;
  }

 private:
  bool centred_;               // LayerNorm: rows are centred before scaling
  const VectorType* gain_;     // D
  const VectorType* offset_;   // D, or null
  Scalar eps_;
};

/// A norm applied with the per-position scales of a real state frozen: how a block's update
/// to the components goes through a norm of the block's output (Gemma 2's post-norms, RMS,
/// so there is no offset to route). Empty (no norm): the update passes unchanged.
template <typename Scalar>
struct FrozenNorm {
  const Norm<Scalar>* norm = nullptr;
  const Vector<Scalar>* scale = nullptr;  // one per position

  explicit operator bool() const { return norm != nullptr; }
  /// In place on rows of one component that cover positions [first, first + rows.rows()).
  template <typename Rows>
  void apply(Rows&& rows, Eigen::Index first) const {
    if (norm) norm->apply_frozen(rows, scale->segment(first, rows.rows()), false, rows);
  }
};

}  // namespace depass
