#pragma once
// Quadrature rules on [0, 1] for integrated gradients: nodes alpha_k and weights w_k
// (summing to 1) approximating the integral of a function of alpha.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "Batching.hpp"

namespace depass {

enum class Quadrature {
  Midpoint,      ///< Riemann midpoint rule: alpha_k = (k + 1/2) / n, w_k = 1/n
  GaussLegendre  ///< Gauss-Legendre with n nodes (exact for polynomials of degree 2n - 1)
};

inline const char* to_string(Quadrature rule) { return rule == Quadrature::Midpoint ? "riemann" : "gauss-legendre"; }

namespace detail {

struct QuadratureNodes {
  std::vector<double> alphas, weights;
};

/// Gauss-Legendre nodes on [-1, 1] by Newton's iteration on P_n, mapped to [0, 1].
inline QuadratureNodes gauss_legendre(int n) {
  const double pi = 3.14159265358979323846;
  QuadratureNodes q{std::vector<double>(static_cast<std::size_t>(n)), std::vector<double>(static_cast<std::size_t>(n))};
  for (int i = 0; i < n; ++i) {
    double x = std::cos(pi * (i + 0.75) / (n + 0.5)), derivative = 1;
    for (int iteration = 0; iteration < 100; ++iteration) {
      double p0 = 1, p1 = x;  // P_0, P_1, then the recurrence up to P_n
      for (int k = 2; k <= n; ++k) {
        const double p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      derivative = n * (x * p1 - p0) / (x * x - 1);
      const double step = p1 / derivative;
      x -= step;
      if (std::abs(step) < 1e-16) break;
    }
    // Node x in [-1, 1] -> alpha = (x + 1) / 2; weight 2 / ((1 - x^2) P_n'(x)^2) -> halved.
    q.alphas[static_cast<std::size_t>(n - 1 - i)] = (x + 1) / 2;
    q.weights[static_cast<std::size_t>(n - 1 - i)] = 1 / ((1 - x * x) * derivative * derivative);
  }
  return q;
}

/// The nodes and weights of `rule` with `steps` nodes (steps >= 1).
inline QuadratureNodes quadrature(Quadrature rule, int steps) {
  if (steps < 1) throw std::invalid_argument("steps = " + std::to_string(steps) + " is out of range [1, inf)");
  if (rule == Quadrature::GaussLegendre) return gauss_legendre(steps);
  QuadratureNodes q;
  for (int k = 0; k < steps; ++k) {
    q.alphas.push_back((k + 0.5) / steps);
    q.weights.push_back(1.0 / steps);
  }
  return q;
}

/// Integrated gradients' path loop, shared by every attributor: sum_k w_k grad(baseline +
/// alpha_k delta) over the nodes q, path points per call of gradient(path) and calls at once
/// as plan_records(requested, n) says, which takes the points stacked ((count * n) x D,
/// point k in rows [k*n, (k+1)*n)) and returns their gradients stacked the same way.
/// Returns the n x D weighted sum, added up record by record in path order whatever ran
/// at once.
template <typename Matrix, typename Gradient>
Matrix path_gradient_sum(const Matrix& baseline, const Matrix& delta, const QuadratureNodes& q, Eigen::Index requested,
                         const Gradient& gradient) {
  using Scalar = typename Matrix::Scalar;
  const Eigen::Index n = baseline.rows(), K = static_cast<Eigen::Index>(q.alphas.size());
  const RecordPlan plan = plan_records(requested, n);
  std::vector<Matrix> partial(static_cast<std::size_t>((K + plan.per_record - 1) / plan.per_record));
  for_each_record(K, plan, [&](Eigen::Index record, Eigen::Index first, Eigen::Index count) {
    Matrix path(count * n, baseline.cols());
    for (Eigen::Index k = 0; k < count; ++k)
      path.middleRows(k * n, n) = baseline + static_cast<Scalar>(q.alphas[static_cast<std::size_t>(first + k)]) * delta;
    const Matrix g = gradient(path);
    Matrix& sum = partial[static_cast<std::size_t>(record)];
    sum = Matrix::Zero(n, baseline.cols());
    for (Eigen::Index k = 0; k < count; ++k)
      sum += static_cast<Scalar>(q.weights[static_cast<std::size_t>(first + k)]) * g.middleRows(k * n, n);
  });
  Matrix total = Matrix::Zero(n, baseline.cols());
  for (const Matrix& sum : partial) total += sum;
  return total;
}

}  // namespace detail
}  // namespace depass
