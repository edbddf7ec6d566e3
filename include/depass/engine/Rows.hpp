#pragma once
// Moving a component's rows between the tensor and the engine's packed scratch: gathered
// through the frozen norm on the way in, added back on the way out. Rows a component cannot
// reach (before its first position) are zero and are never read or written.

#include <Eigen/Core>
#include <algorithm>

#include "../ComponentState.hpp"
#include "../layers/Norm.hpp"

namespace depass {
namespace detail {

/// dst = rows [from, to) of component m through the frozen norm (scale: the real state's,
/// N), read from what the block reads (cs.input()); rows before the component's first live
/// position are set to zero.
template <typename Scalar, typename Dst>
void gather_normed(const ComponentState<Scalar>& cs, Eigen::Index m, Eigen::Index from, Eigen::Index to,
                   const Norm<Scalar>& norm, const Vector<Scalar>& scale, Dst dst) {
  const Eigen::Index N = cs.tensor.positions();
  const Eigen::Index live = std::min(std::max(cs.first(m), from), to), n = to - live;
  dst.topRows(live - from).setZero();
  norm.apply_frozen(cs.input().stacked().middleRows(m * N + live, n), scale.segment(live, n), cs.is_bias(m),
                    dst.middleRows(live - from, n));
}

/// Adds rows [from, to) of update (one row per position) to component m, skipping the rows
/// before its first live position; with `sum`, also adds the updated rows of C to sum's
/// rows [from, to).
template <typename Scalar, typename Src>
void scatter_add(ComponentState<Scalar>& cs, Eigen::Index m, Eigen::Index from, Eigen::Index to, const Src& update,
                 RowMatrix<Scalar>* sum) {
  const Eigen::Index N = cs.tensor.positions();
  const Eigen::Index live = std::min(std::max(cs.first(m), from), to), n = to - live;
  typename RowMatrix<Scalar>::RowsBlockXpr rows = cs.tensor.stacked().middleRows(m * N + live, n);
  rows += update.middleRows(live - from, n);
  if (sum) sum->middleRows(live, n) += rows;
}

/// Per-thread partial sums for the completeness check, zeroed (N x D each).
template <typename Scalar>
void start_sums(ComponentState<Scalar>& cs, int threads) {
  cs.workspace.partial_sums.resize(static_cast<std::size_t>(threads));
  for (RowMatrix<Scalar>& s : cs.workspace.partial_sums) s.setZero(cs.tensor.positions(), cs.tensor.width());
}

template <typename Scalar>
void finish_sums(ComponentState<Scalar>& cs) {
  Workspace<Scalar>& ws = cs.workspace;
  ws.sum = ws.partial_sums[0];
  for (std::size_t t = 1; t < ws.partial_sums.size(); ++t) ws.sum += ws.partial_sums[t];
  ws.sum_current = true;
}

}  // namespace detail
}  // namespace depass
