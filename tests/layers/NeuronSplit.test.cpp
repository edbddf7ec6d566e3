// The MLP split rules (layers/NeuronSplit.hpp) on hand-computed cases, and the engine's
// vectorised kernel (engine/SplitKernel.hpp) against that specification.

#include <catch2/catch.hpp>
#include <depass/engine/SplitKernel.hpp>
#include <depass/layers/NeuronSplit.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "support/TestSupport.hpp"

using namespace depass;

TEMPLATE_TEST_CASE("split_neuron: each rule on a hand-computed case", "[layers]", DEPASS_TEST_SCALARS) {
  using S = TestType;
  const S g[4] = {S(0.2), S(0), S(-0.1), S(0.2)};  // member 1 is absent (exactly zero)
  S share[4];
  const double tol = std::is_same<S, float>::value ? 1e-6 : 1e-14;

  // softmax, T = 0.1: weights exp(10 (g - 0.2)) over members 0, 2, 3 = {1, e^-3, 1}.
  REQUIRE(split_neuron(SplitRule{MlpSplit::Softmax, 0.1}, g, 4, S(2), share));
  const double z = 2 + std::exp(-3.0);
  CHECK(share[0] == Approx(2 / z).epsilon(tol));
  CHECK(share[1] == 0);
  CHECK(share[2] == Approx(2 * std::exp(-3.0) / z).epsilon(tol));
  CHECK(share[3] == Approx(2 / z).epsilon(tol));
  // temperature 1: exp(g - 0.2).
  REQUIRE(split_neuron(SplitRule{MlpSplit::Softmax, 1.0}, g, 4, S(1), share));
  CHECK(share[2] == Approx(std::exp(-0.3) / (2 + std::exp(-0.3))).epsilon(tol));

  // argmax: ties go to the lowest member.
  REQUIRE(split_neuron(SplitRule{MlpSplit::Argmax, 0.1}, g, 4, S(3), share));
  CHECK(share[0] == 3);
  CHECK(share[1] == 0);
  CHECK(share[2] == 0);
  CHECK(share[3] == 0);

  // proportional: g / sum(g) = {0.2, -0.1, 0.2} / 0.3.
  REQUIRE(split_neuron(SplitRule{MlpSplit::Proportional, 0.1}, g, 4, S(3), share));
  CHECK(share[0] == Approx(2.0).epsilon(tol));
  CHECK(share[2] == Approx(-1.0).epsilon(tol));
  CHECK(share[3] == Approx(2.0).epsilon(tol));
  // ... unless the contributions cancel: then softmax.
  const S cancel[2] = {S(1), S(-1)};
  REQUIRE(split_neuron(SplitRule{MlpSplit::Proportional, 0.1}, cancel, 2, S(1), share));
  CHECK(share[0] == Approx(1 / (1 + std::exp(-20.0))).epsilon(tol));

  // Nobody drives the neuron: no shares, the caller's bias component takes it.
  const S none[3] = {0, 0, 0};
  CHECK_FALSE(split_neuron(SplitRule{}, none, 3, S(1), share));
  CHECK((share[0] == 0 && share[1] == 0 && share[2] == 0));
}

TEST_CASE("exclude_sink keeps the sink's own position only", "[layers]") {
  Eigen::MatrixXd rows = Eigen::MatrixXd::Ones(4, 3);
  exclude_sink(rows, 0);
  CHECK(rows.row(0).sum() == 3);
  CHECK(rows.bottomRows(3).cwiseAbs().sum() == 0);
  Eigen::MatrixXd later = Eigen::MatrixXd::Ones(2, 3);
  exclude_sink(later, 5);  // rows of positions 5 and 6: none is the sink's own
  CHECK(later.cwiseAbs().sum() == 0);
}

TEMPLATE_TEST_CASE("The vectorised split kernel equals split_neuron", "[layers][engine]", DEPASS_TEST_SCALARS) {
  using S = TestType;
  using Kernel = detail::SplitKernel<S>;
  std::mt19937 rng(7);
  std::normal_distribution<double> normal(0, 1);
  const Eigen::Index I = 37, padded = Kernel::padded(I), count = 6;
  for (const SplitRule rule : {SplitRule{MlpSplit::Softmax, 0.1}, SplitRule{MlpSplit::Softmax, 1.0},
                               SplitRule{MlpSplit::Argmax, 0.1}, SplitRule{MlpSplit::Proportional, 0.05}}) {
    for (const Eigen::Index bias_slot : {Eigen::Index(-1), Eigen::Index(2)}) {
      Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> g(count, padded);
      std::vector<S> act(static_cast<std::size_t>(padded), 0);
      for (Eigen::Index k = 0; k < I; ++k) {
        act[static_cast<std::size_t>(k)] = static_cast<S>(normal(rng));
        for (Eigen::Index i = 0; i < count; ++i) g(i, k) = (k + i) % 5 == 0 ? S(0) : static_cast<S>(normal(rng));
        if (k == 11) g(0, k) = g(3, k);                              // a tie
        if (k == 13) g.col(k).setZero();                             // nobody drives it
        if (k == 17) { g(0, k) = S(1); g(1, k) = S(-1); }            // cancelling contributions
      }
      if (bias_slot < 0) g.col(13).setConstant(S(0.5));  // no bias slot: every neuron driven
      g.rightCols(padded - I).setZero();
      Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> expected(count, I);
      std::vector<S> column(static_cast<std::size_t>(count)), share(static_cast<std::size_t>(count));
      for (Eigen::Index k = 0; k < I; ++k) {
        for (Eigen::Index i = 0; i < count; ++i) column[static_cast<std::size_t>(i)] = g(i, k);
        if (!split_neuron(rule, column.data(), count, act[static_cast<std::size_t>(k)], share.data()))
          share[static_cast<std::size_t>(bias_slot)] = act[static_cast<std::size_t>(k)];
        for (Eigen::Index i = 0; i < count; ++i) expected(i, k) = share[static_cast<std::size_t>(i)];
      }
      std::vector<S*> rows;
      for (Eigen::Index i = 0; i < count; ++i) rows.push_back(g.row(i).data());
      CHECK_FALSE(Kernel::split_position(rule, rows, bias_slot, act.data(), I, padded));
      const double tol = std::is_same<S, float>::value ? 2e-5 : 1e-12;
      INFO("split " << to_string(rule.split) << ", T " << rule.temperature << ", bias slot " << bias_slot);
      CHECK((g.leftCols(I) - expected).cwiseAbs().maxCoeff() <= tol);
    }
  }
}

TEST_CASE("The split kernel reports a neuron nobody drives when there is no bias slot", "[layers][engine]") {
  using Kernel = detail::SplitKernel<double>;
  const Eigen::Index I = 5, padded = Kernel::padded(I);
  std::vector<double> a(static_cast<std::size_t>(padded), 1.0), r0(static_cast<std::size_t>(padded), 0.5),
      r1(static_cast<std::size_t>(padded), 0.25);
  r0[3] = r1[3] = 0;  // neuron 3: driven by nobody
  std::vector<double*> rows = {r0.data(), r1.data()};
  CHECK(Kernel::split_position(SplitRule{}, rows, -1, a.data(), I, padded));
}
