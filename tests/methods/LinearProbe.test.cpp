// The logistic-regression probe (methods/LinearProbe.hpp): a two-point case solved by hand
// (w from lambda w = 1 - sigmoid(w) by bisection, b = 0 by symmetry), the optimality
// condition (zero gradient, computed here from the loss's definition) on random data, and
// the refusals.

#include <catch2/catch.hpp>
#include <depass/methods/LinearProbe.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "support/TestSupport.hpp"

using namespace depass;

TEMPLATE_TEST_CASE("the probe's two-point case solved by hand", "[probe]", DEPASS_TEST_SCALARS) {
  // x = -1 (label 0), x = +1 (label 1), penalty l2: by symmetry b = 0, and the weight's
  // gradient (sigmoid(w) - 1 - sigmoid(-w)) / 2 + l2 w = sigmoid(w) - 1 + l2 w vanishes.
  const double l2 = 0.1;
  double lo = 0, hi = 100;
  for (int i = 0; i < 200; ++i) {
    const double mid = (lo + hi) / 2;
    (1.0 / (1.0 + std::exp(-mid)) - 1 + l2 * mid > 0 ? hi : lo) = mid;
  }
  Matrix<TestType> x(2, 1);
  x << -1, 1;
  ProbeOptions options;
  options.l2 = l2;
  const LinearProbe<TestType> probe = LinearProbe<TestType>::train(x, {0, 1}, options);
  CHECK(probe.converged);
  CHECK(probe.weights(0) == Approx(lo).epsilon(1e-6));
  CHECK(probe.bias == Approx(0).margin(1e-6));
  CHECK(probe.accuracy == 1.0);
  CHECK(probe.probability(x.row(1)) == Approx(1.0 / (1.0 + std::exp(-lo))).epsilon(1e-6));
}

TEMPLATE_TEST_CASE("the trained probe is where the penalised loss has zero gradient", "[probe]", DEPASS_TEST_SCALARS) {
  std::mt19937 rng(15);
  std::normal_distribution<double> normal;
  const Eigen::Index n = 60, D = 5;
  Matrix<TestType> x(n, D);
  std::vector<int> labels;
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index d = 0; d < D; ++d) x(i, d) = static_cast<TestType>(normal(rng));
    labels.push_back(x(i, 0) - 0.5 * x(i, 1) + 0.7 * normal(rng) > 0 ? 1 : 0);  // noisy: not separable
  }
  ProbeOptions options;
  options.l2 = 0.03;
  const LinearProbe<TestType> probe = LinearProbe<TestType>::train(x, labels, options);
  REQUIRE(probe.converged);
  // The gradient from the definition: mean (p_i - y_i) [x_i, 1] + l2 [w, 0].
  Eigen::VectorXd g = Eigen::VectorXd::Zero(D + 1);
  for (Eigen::Index i = 0; i < n; ++i) {
    double z = static_cast<double>(probe.bias);
    for (Eigen::Index d = 0; d < D; ++d) z += static_cast<double>(probe.weights(d)) * static_cast<double>(x(i, d));
    const double r = 1 / (1 + std::exp(-z)) - labels[static_cast<std::size_t>(i)];
    for (Eigen::Index d = 0; d < D; ++d) g(d) += r * static_cast<double>(x(i, d)) / n;
    g(D) += r / n;
  }
  for (Eigen::Index d = 0; d < D; ++d) g(d) += options.l2 * static_cast<double>(probe.weights(d));
  // Float rounds the answer to float: the gradient is then of order its rounding.
  CHECK(g.cwiseAbs().maxCoeff() <= (std::is_same<TestType, float>::value ? 1e-6 : 1e-9));
  CHECK(probe.weights(0) > 0);
  CHECK(probe.weights(1) < 0);
  CHECK(probe.accuracy > 0.7);
}

TEMPLATE_TEST_CASE("the probe refuses bad training data, naming it", "[probe]", DEPASS_TEST_SCALARS) {
  using Catch::Matchers::Contains;
  Matrix<TestType> x(3, 2);
  x << 1, 2, 3, 4, 5, 6;
  CHECK_THROWS_WITH(LinearProbe<TestType>::train(x, {0, 1}), Contains("3 feature rows and 2 labels"));
  CHECK_THROWS_WITH(LinearProbe<TestType>::train(x, {1, 1, 1}), Contains("both classes"));
  CHECK_THROWS_WITH(LinearProbe<TestType>::train(x, {0, 2, 1}), Contains("label 2 of row 1 is not 0 or 1"));
  ProbeOptions options;
  options.l2 = -1;
  CHECK_THROWS_WITH(LinearProbe<TestType>::train(x, {0, 1, 1}, options), Contains("l2 = -1"));
  options = {};
  options.max_iterations = 0;
  CHECK_THROWS_WITH(LinearProbe<TestType>::train(x, {0, 1, 1}, options), Contains("max_iterations = 0"));
  x(1, 1) = std::numeric_limits<TestType>::quiet_NaN();
  CHECK_THROWS_WITH(LinearProbe<TestType>::train(x, {0, 1, 1}), Contains("not all finite"));
  const LinearProbe<TestType> probe = LinearProbe<TestType>::train(x.topRows(1).replicate(2, 1), {0, 1});
  CHECK_THROWS_WITH(probe.logit(Vector<TestType>::Zero(3)), Contains("feature row has 3 values, the probe 2"));
}
