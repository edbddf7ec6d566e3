#pragma once
// A linear probe: logistic regression of 0/1 labels on feature rows (hidden states), the
// subspace protocol's concept direction (issue #15). Trained by Newton's method with a
// backtracking line search on
//   loss(w, b) = mean_i log(1 + exp(-s_i (w . x_i + b))) + l2 / 2 ||w||^2,   s_i = 2 y_i - 1,
// in double whatever Scalar is: the loss is convex (strictly, for l2 > 0), so the minimum is
// unique and the answer does not depend on a start or a learning rate. The bias is not
// penalised. Separable data needs l2 > 0 for finite weights.

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "../Weights.hpp"

namespace depass {

struct ProbeOptions {
  double l2 = 1e-2;           // ridge penalty on the weights, >= 0
  int max_iterations = 100;   // Newton steps, >= 1
  double tolerance = 1e-10;   // converged when max |gradient| <= tolerance, > 0
};

template <typename Scalar>
struct LinearProbe {
  Vector<Scalar> weights;  // D: the concept direction
  Scalar bias = 0;
  int iterations = 0;
  bool converged = false;
  double loss = 0;               // at the answer, penalty included
  double gradient_max_abs = 0;   // at the answer
  double accuracy = 0;           // on the training rows (logit > 0 means label 1)

  /// w . x + b for a feature row x (D).
  template <typename Derived>
  Scalar logit(const Eigen::MatrixBase<Derived>& x) const {
    if (x.size() != weights.size())
      throw std::invalid_argument("feature row has " + std::to_string(x.size()) + " values, the probe " +
                                  std::to_string(weights.size()));
    return weights.dot(x.derived().reshaped()) + bias;
  }
  /// P(label 1 | x) = sigmoid(logit), in double.
  template <typename Derived>
  double probability(const Eigen::MatrixBase<Derived>& x) const {
    return 1.0 / (1.0 + std::exp(-static_cast<double>(logit(x))));
  }

  /// Trains on the rows of `features` (n x D) with labels 0/1 (n of them, both present).
  static LinearProbe train(const Eigen::Ref<const Matrix<Scalar>>& features, const std::vector<int>& labels,
                           const ProbeOptions& options = {});
};

namespace detail {

/// Loss and gradient (D + 1: weights, then bias) of the penalised logistic loss.
inline double probe_loss(const Eigen::MatrixXd& X, const Eigen::VectorXd& y, const Eigen::VectorXd& theta, double l2,
                         Eigen::VectorXd* gradient, Eigen::VectorXd* curvature) {
  const Eigen::Index n = X.rows(), D = X.cols();
  const Eigen::VectorXd z = X * theta.head(D) + Eigen::VectorXd::Constant(n, theta(D));
  double loss = 0;
  Eigen::VectorXd residual(n), weight(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const double s = 2 * y(i) - 1, m = s * z(i);
    loss += m > 0 ? std::log1p(std::exp(-m)) : -m + std::log1p(std::exp(m));  // stable log(1 + e^-m)
    const double p = 1.0 / (1.0 + std::exp(-z(i)));
    residual(i) = p - y(i);
    weight(i) = p * (1 - p);
  }
  loss = loss / static_cast<double>(n) + 0.5 * l2 * theta.head(D).squaredNorm();
  if (gradient) {
    gradient->resize(D + 1);
    gradient->head(D) = X.transpose() * residual / static_cast<double>(n) + l2 * theta.head(D);
    (*gradient)(D) = residual.mean();
  }
  if (curvature) *curvature = weight / static_cast<double>(n);
  return loss;
}

}  // namespace detail

template <typename Scalar>
LinearProbe<Scalar> LinearProbe<Scalar>::train(const Eigen::Ref<const Matrix<Scalar>>& features,
                                               const std::vector<int>& labels, const ProbeOptions& options) {
  if (!(options.l2 >= 0) || !std::isfinite(options.l2))
    throw std::invalid_argument("l2 = " + std::to_string(options.l2) + " must be a finite number >= 0");
  if (options.max_iterations < 1)
    throw std::invalid_argument("max_iterations = " + std::to_string(options.max_iterations) + " is out of range [1, inf)");
  if (!(options.tolerance > 0)) throw std::invalid_argument("tolerance = " + std::to_string(options.tolerance) + " must be > 0");
  const Eigen::Index n = features.rows(), D = features.cols();
  if (n < 2 || static_cast<Eigen::Index>(labels.size()) != n)
    throw std::invalid_argument("probe training has " + std::to_string(n) + " feature rows and " +
                                std::to_string(labels.size()) + " labels: expected the same number, at least 2");
  Eigen::VectorXd y(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const int label = labels[static_cast<std::size_t>(i)];
    if (label != 0 && label != 1)
      throw std::invalid_argument("label " + std::to_string(label) + " of row " + std::to_string(i) + " is not 0 or 1");
    y(i) = label;
  }
  if (y.sum() == 0 || y.sum() == static_cast<double>(n))
    throw std::invalid_argument("probe labels are all " + std::to_string(labels[0]) + ": both classes are needed");
  const Eigen::MatrixXd X = features.template cast<double>();
  if (!X.allFinite()) throw std::invalid_argument("probe features are not all finite");
  Eigen::VectorXd theta = Eigen::VectorXd::Zero(D + 1), g, c;
  double loss = detail::probe_loss(X, y, theta, options.l2, &g, &c);
  LinearProbe probe;
  for (probe.iterations = 0; probe.iterations < options.max_iterations && g.cwiseAbs().maxCoeff() > options.tolerance;
       ++probe.iterations) {
    Eigen::MatrixXd Xa(n, D + 1);  // features with a column of ones for the bias
    Xa << X, Eigen::VectorXd::Ones(n);
    Eigen::MatrixXd hessian = Xa.transpose() * c.asDiagonal() * Xa;
    hessian.diagonal().head(D).array() += options.l2;
    hessian.diagonal().array() += 1e-12;  // keeps a saturated or rank-deficient Hessian solvable
    const Eigen::VectorXd step = hessian.ldlt().solve(g);
    // Backtracking (Armijo): Newton steps can overshoot far from the minimum. Near it the
    // decrease is below the loss's rounding, which must not count as an increase.
    const double rounding = 1e-13 * std::max(1.0, loss);
    double t = 1;
    double next = detail::probe_loss(X, y, theta - t * step, options.l2, nullptr, nullptr);
    while (next > loss - 1e-4 * t * g.dot(step) + rounding && t > 1e-10) {
      t /= 2;
      next = detail::probe_loss(X, y, theta - t * step, options.l2, nullptr, nullptr);
    }
    theta -= t * step;
    loss = detail::probe_loss(X, y, theta, options.l2, &g, &c);
  }
  probe.weights = theta.head(D).cast<Scalar>();
  probe.bias = static_cast<Scalar>(theta(D));
  probe.loss = loss;
  probe.gradient_max_abs = g.cwiseAbs().maxCoeff();
  probe.converged = probe.gradient_max_abs <= options.tolerance;
  const Eigen::VectorXd z = X * theta.head(D) + Eigen::VectorXd::Constant(n, theta(D));
  double correct = 0;
  for (Eigen::Index i = 0; i < n; ++i) correct += (z(i) > 0) == (y(i) > 0.5) ? 1 : 0;
  probe.accuracy = correct / static_cast<double>(n);
  return probe;
}

}  // namespace depass
