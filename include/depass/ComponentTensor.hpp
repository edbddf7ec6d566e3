#pragma once
// The component tensor C (M x N x D): M additive parts of an N x D hidden state.
//
// Storage: one row-major (M*N) x D matrix, component m in rows [m*N, (m+1)*N), so the
// state of component m at position p is one contiguous row of D scalars and a component
// is one contiguous N x D block. Stacking components along rows turns every linear map of
// a block (x * W^T) into GEMMs over many components at once, and the engine gathers the
// rows it needs (a tile of positions, or a group of components) with contiguous copies.

#include <Eigen/Core>
#include <stdexcept>
#include <string>

#include "Weights.hpp"

namespace depass {

template <typename Scalar>
class ComponentTensor {
 public:
  using MatrixType = Matrix<Scalar>;         // N x D states (column-major, like the model's)
  using StorageType = RowMatrix<Scalar>;     // the (M*N) x D stack
  using Block = typename StorageType::RowsBlockXpr;             // one component, N x D
  using ConstBlock = typename StorageType::ConstRowsBlockXpr;

  ComponentTensor() = default;

  /// Zero tensor of M components over an N x D state.
  ComponentTensor(Eigen::Index components, Eigen::Index positions, Eigen::Index width) {
    resize(components, positions, width);
  }

  /// Takes an existing (M*N) x D matrix laid out as described above.
  ComponentTensor(StorageType stacked, Eigen::Index positions)
      : data_(std::move(stacked)), positions_(positions) {
    if (positions <= 0 || data_.rows() % positions != 0)
      throw std::invalid_argument("ComponentTensor: stacked matrix has " +
                                  std::to_string(data_.rows()) +
                                  " rows, not a positive multiple of positions = " +
                                  std::to_string(positions));
    components_ = data_.rows() / positions;
  }

  void resize(Eigen::Index components, Eigen::Index positions, Eigen::Index width) {
    if (components < 0 || positions < 0 || width < 0)
      throw std::invalid_argument("ComponentTensor: negative dimension");
    components_ = components;
    positions_ = positions;
    data_.setZero(components * positions, width);
  }

  Eigen::Index components() const { return components_; }
  Eigen::Index positions() const { return positions_; }
  Eigen::Index width() const { return data_.cols(); }

  Block component(Eigen::Index m) {
    check(m);
    return data_.middleRows(m * positions_, positions_);
  }
  ConstBlock component(Eigen::Index m) const {
    check(m);
    return data_.middleRows(m * positions_, positions_);
  }

  /// The whole stack, (M*N) x D.
  StorageType& stacked() { return data_; }
  const StorageType& stacked() const { return data_; }

  /// sum_m C[m], an N x D matrix: equals the hidden state when the decomposition is lossless.
  MatrixType sum() const {
    MatrixType total = MatrixType::Zero(positions_, data_.cols());
    for (Eigen::Index m = 0; m < components_; ++m) total += component(m);
    return total;
  }

  /// max |sum_m C[m] - state|: the completeness residual.
  Scalar residual_max_abs(const Eigen::Ref<const MatrixType>& state) const {
    if (state.rows() != positions_ || state.cols() != data_.cols())
      throw std::invalid_argument("ComponentTensor::residual_max_abs: state is " +
                                  std::to_string(state.rows()) + " x " +
                                  std::to_string(state.cols()) + ", expected " +
                                  std::to_string(positions_) + " x " +
                                  std::to_string(data_.cols()));
    if (positions_ == 0 || data_.cols() == 0) return Scalar(0);
    return (sum() - state).cwiseAbs().maxCoeff();
  }

 private:
  void check(Eigen::Index m) const {
    if (m < 0 || m >= components_)
      throw std::invalid_argument("ComponentTensor: component index " + std::to_string(m) +
                                  " is out of range [0, " + std::to_string(components_) + ")");
  }

  StorageType data_;
  Eigen::Index components_ = 0;
  Eigen::Index positions_ = 0;
};

}  // namespace depass
