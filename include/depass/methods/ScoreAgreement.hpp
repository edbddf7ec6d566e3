#pragma once
// How closely two score vectors over the same items agree (e.g. a bf16 run's token scores
// against a float run's): the largest difference, the overlap of their top-k sets, and the
// Spearman rank correlation.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace depass {

struct ScoreAgreement {
  double max_abs_error = 0;       // max_i |test_i - reference_i|
  double max_abs_reference = 0;   // max_i |reference_i| (the scale of the error)
  long top_k = 0;                 // k actually used: min(k, items)
  long top_k_overlap = 0;         // |top-k(test) ∩ top-k(reference)|, by descending score
  double spearman = 1;            // rank correlation (average ranks for ties); 1 for < 2 items
  double relative_error() const { return max_abs_reference > 0 ? max_abs_error / max_abs_reference : max_abs_error; }
};

namespace detail {

/// Ranks 1..n of `v` ascending, ties sharing their average rank.
inline std::vector<double> average_ranks(const Eigen::Ref<const Eigen::VectorXd>& v) {
  const std::size_t n = static_cast<std::size_t>(v.size());
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return v(static_cast<Eigen::Index>(a)) < v(static_cast<Eigen::Index>(b));
  });
  std::vector<double> rank(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j + 1 < n && v(static_cast<Eigen::Index>(order[j + 1])) == v(static_cast<Eigen::Index>(order[i]))) ++j;
    for (std::size_t t = i; t <= j; ++t) rank[order[t]] = 0.5 * static_cast<double>(i + j) + 1.0;
    i = j + 1;
  }
  return rank;
}

/// Indices of the k largest values (ties: the lower index first).
inline std::vector<Eigen::Index> top_indices(const Eigen::Ref<const Eigen::VectorXd>& v, long k) {
  std::vector<Eigen::Index> order(static_cast<std::size_t>(v.size()));
  std::iota(order.begin(), order.end(), Eigen::Index{0});
  std::stable_sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) { return v(a) > v(b); });
  order.resize(static_cast<std::size_t>(k));
  return order;
}

}  // namespace detail

/// Agreement of `test` with `reference` (same length, finite values); k >= 1.
inline ScoreAgreement score_agreement(const Eigen::Ref<const Eigen::VectorXd>& test,
                                      const Eigen::Ref<const Eigen::VectorXd>& reference, long k = 10) {
  if (test.size() != reference.size())
    throw std::invalid_argument("score_agreement: test has " + std::to_string(test.size()) + " scores, reference " +
                                std::to_string(reference.size()));
  if (k < 1) throw std::invalid_argument("score_agreement: k = " + std::to_string(k) + " must be >= 1");
  if (!test.allFinite() || !reference.allFinite())
    throw std::invalid_argument("score_agreement: the scores must be finite");
  ScoreAgreement a;
  const Eigen::Index n = test.size();
  if (n == 0) return a;
  a.max_abs_error = (test - reference).cwiseAbs().maxCoeff();
  a.max_abs_reference = reference.cwiseAbs().maxCoeff();
  a.top_k = std::min<long>(k, static_cast<long>(n));
  const std::vector<Eigen::Index> top_test = detail::top_indices(test, a.top_k), top_ref = detail::top_indices(reference, a.top_k);
  for (Eigen::Index i : top_test) a.top_k_overlap += std::count(top_ref.begin(), top_ref.end(), i) > 0 ? 1 : 0;
  if (n < 2) return a;
  const std::vector<double> rt = detail::average_ranks(test), rr = detail::average_ranks(reference);
  const Eigen::Map<const Eigen::VectorXd> x(rt.data(), n), y(rr.data(), n);
  const Eigen::VectorXd dx = x.array() - x.mean(), dy = y.array() - y.mean();
  const double denominator = std::sqrt(dx.squaredNorm() * dy.squaredNorm());
  a.spearman = denominator > 0 ? dx.dot(dy) / denominator : (dx.squaredNorm() == dy.squaredNorm() ? 1.0 : 0.0);
  return a;
}

}  // namespace depass
