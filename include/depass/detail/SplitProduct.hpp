#pragma once
// The real pass's products for one sequence, shared among threads by output columns.
//
// Eigen's threaded GEMM meets its threads inside every product; with the library's
// passive OpenMP waits each product then wakes a sleeping thread, and a layer's real pass
// and backward pass are a dozen products. Here the products of one step (Q, K and V from
// the same normed rows; dq Wq + dk Wk + dv Wv into one gradient) run in one parallel
// region: their output columns are laid side by side and each thread takes a contiguous
// run of them, with single-threaded products and no meeting inside. Each weight is then
// packed by one thread only. docs/performance.md ("One parallel region per step") has the
// measurements.

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>
#include <vector>

#include "../Threads.hpp"
#include "../Weights.hpp"
#include "../engine/WorkItems.hpp"
#include "FloatGemm.hpp"

namespace depass {
namespace detail {

/// lhs * weight^T (`transposed`: a projection by a stored out x in weight) or lhs * weight.
template <typename Scalar>
struct ProductTerm {
  Eigen::Ref<const Matrix<Scalar>> lhs;
  const RowMatrix<Scalar>& weight;  // stored [out, in] (Weights.hpp)
  bool transposed;

  Eigen::Index cols() const { return transposed ? weight.rows() : weight.cols(); }
  /// Columns [begin, begin + count) of the product, added to (or written into) dst.
  template <typename Dst>
  void columns(Dst&& dst, Eigen::Index begin, Eigen::Index count, bool add) const {
    if (onednn_columns(dst, begin, count, add)) return;
    if (transposed) {
      if (add) dst.noalias() += lhs * weight.middleRows(begin, count).transpose();
      else dst.noalias() = lhs * weight.middleRows(begin, count).transpose();
    } else {
      if (add) dst.noalias() += lhs * weight.middleCols(begin, count);
      else dst.noalias() = lhs * weight.middleCols(begin, count);
    }
  }

  /// The same columns through oneDNN (FloatGemm.hpp) for float, as dst^T = (the weight's
  /// part, transposed or not) times lhs^T: each operand is then a row-major view of storage
  /// we have. False (nothing written) where Eigen does it.
  template <typename Dst>
  bool onednn_columns(Dst& dst, Eigen::Index begin, Eigen::Index count, bool add) const {
    if constexpr (std::is_same<Scalar, float>::value) {
      const long rows = lhs.rows(), inner = lhs.cols(), w_ld = weight.outerStride();
      if (!use_onednn(count, rows, inner)) return false;
      const Strides lhs_t{lhs.outerStride(), 1};  // lhs^T: inner x rows
      if (transposed)  // weight rows [begin, begin + count): count x inner
        return onednn_product(count, rows, inner, weight.data() + begin * w_ld, {w_ld, 1}, lhs.data(), lhs_t,
                              dst.data(), dst.outerStride(), add);
      // weight columns [begin, begin + count), transposed: count x inner
      return onednn_product(count, rows, inner, weight.data() + begin, {1, w_ld}, lhs.data(), lhs_t, dst.data(),
                            dst.outerStride(), add);
    } else {
      static_cast<void>(dst), static_cast<void>(begin), static_cast<void>(count), static_cast<void>(add);
      return false;
    }
  }
};

/// dst = the sum of terms (each of dst's shape; dst is sized here).
template <typename Scalar>
struct ProductJob {
  Matrix<Scalar>* dst;
  std::vector<ProductTerm<Scalar>> terms;
};

/// Flops of the jobs.
template <typename Scalar>
double product_work(const std::vector<ProductJob<Scalar>>& jobs) {
  double work = 0;
  for (const ProductJob<Scalar>& job : jobs)
    for (const ProductTerm<Scalar>& t : job.terms)
      work += 2.0 * static_cast<double>(t.lhs.rows()) * static_cast<double>(t.lhs.cols()) * static_cast<double>(t.cols());
  return work;
}

/// Columns [begin, end) of the jobs' outputs laid side by side: each job's part of them.
template <typename Scalar>
void run_product_columns(const std::vector<ProductJob<Scalar>>& jobs, Eigen::Index begin, Eigen::Index end) {
  Eigen::Index offset = 0;
  for (const ProductJob<Scalar>& job : jobs) {
    const Eigen::Index width = job.dst->cols(), from = std::max(begin, offset), to = std::min(end, offset + width);
    if (from < to) {
      Eigen::Block<Matrix<Scalar>, Eigen::Dynamic, Eigen::Dynamic, true> block = job.dst->middleCols(from - offset, to - from);
      for (std::size_t i = 0; i < job.terms.size(); ++i) job.terms[i].columns(block, from - offset, to - from, i > 0);
    }
    offset += width;
  }
}

/// Output columns of the jobs, all outputs side by side.
template <typename Scalar>
Eigen::Index product_columns(const std::vector<ProductJob<Scalar>>& jobs) {
  Eigen::Index total = 0;
  for (const ProductJob<Scalar>& job : jobs) total += job.terms.front().cols();
  return total;
}

/// Threads run_products uses: threads() when the work is large enough to share
/// (engine/WorkItems.hpp) and each thread gets at least 16 columns; else 1.
template <typename Scalar>
int product_team(const std::vector<ProductJob<Scalar>>& jobs) {
  const Eigen::Index runs = std::max<Eigen::Index>(1, product_columns(jobs) / 16);
  return static_cast<int>(std::min<Eigen::Index>(threads_for(product_work(jobs)), runs));
}

/// Runs the jobs on product_team(jobs) threads in one parallel region, each thread a
/// contiguous run of the output columns (multiples of 16, for whole SIMD registers).
template <typename Scalar>
void run_products(const std::vector<ProductJob<Scalar>>& jobs) {
  for (const ProductJob<Scalar>& job : jobs) job.dst->resize(job.terms.front().lhs.rows(), job.terms.front().cols());
  const Eigen::Index total = product_columns(jobs);
  const int team = product_team(jobs);
  if (team <= 1) {
    const ThreadLimit one(1);
    return run_product_columns(jobs, 0, total);
  }
  const Eigen::Index chunk = (total + 16 * team - 1) / (16 * team) * 16;
  for_each_index(team, team, true, [&](Eigen::Index t) {
    run_product_columns(jobs, std::min(total, t * chunk), std::min(total, (t + 1) * chunk));
  });
}

/// lhs * weight^T (`transposed`) or lhs * weight, as one job of run_products.
template <typename Scalar>
Matrix<Scalar> split_product(const Eigen::Ref<const Matrix<Scalar>>& lhs, const RowMatrix<Scalar>& weight,
                             bool transposed) {
  Matrix<Scalar> out;
  run_products<Scalar>({{&out, {{lhs, weight, transposed}}}});
  return out;
}

}  // namespace detail
}  // namespace depass
