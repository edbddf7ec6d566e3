#pragma once
// The component tensor C (M x N x D): M additive parts of an N x D hidden state.
//
// Storage: one row-major (M*N) x D matrix, component m in rows [m*N, (m+1)*N), so the
// state of component m at position p is one contiguous row of D scalars and a component
// is one contiguous N x D block. Stacking components along rows turns every linear map of
// a block (x * W^T) into GEMMs over many components at once, and the engine gathers the
// rows it needs (a tile of positions, or a group of components) with contiguous copies.

#include <Eigen/Core>
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "Threads.hpp"
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
    data_.resize(components * positions, width);
    // Zeroed by every thread on its own slice: this is also where the pages are first
    // touched, and a token-level tensor is M*N*D scalars.
    const Eigen::Index rows = data_.rows();
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads()) if (rows * width > (1 << 20))
#endif
    for (Eigen::Index part = 0; part < kParts; ++part)
      data_.middleRows(rows * part / kParts, rows * (part + 1) / kParts - rows * part / kParts).setZero();
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
  /// With `first` (one entry per component), rows of component m before position first[m]
  /// are known to be zero and are not read.
  MatrixType sum(const std::vector<Eigen::Index>& first = {}) const {
    if (!first.empty() && static_cast<Eigen::Index>(first.size()) != components_)
      throw std::invalid_argument("ComponentTensor::sum: first has " + std::to_string(first.size()) +
                                  " entries, expected one per component (" + std::to_string(components_) + ")");
    // Threads take disjoint slices of positions, each summing every component there.
    RowMatrix<Scalar> total(positions_, data_.cols());
    const Eigen::Index N = positions_;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads()) if (data_.size() > (1 << 20))
#endif
    for (Eigen::Index part = 0; part < kParts; ++part) {
      const Eigen::Index from = N * part / kParts, to = N * (part + 1) / kParts;
      total.middleRows(from, to - from).setZero();
      for (Eigen::Index m = 0; m < components_; ++m) {
        const Eigen::Index skip = first.empty() ? 0 : first[static_cast<std::size_t>(m)];
        const Eigen::Index live = std::min(std::max(skip, from), to);
        total.middleRows(live, to - live) += data_.middleRows(m * N + live, to - live);
      }
    }
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

  /// Slices the parallel loops cut the rows into (a few per thread, for balance).
  static constexpr Eigen::Index kParts = 16;

  StorageType data_;
  Eigen::Index components_ = 0;
  Eigen::Index positions_ = 0;
};

}  // namespace depass
