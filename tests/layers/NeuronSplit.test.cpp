// The MLP split rules (layers/NeuronSplit.hpp) on hand-computed cases, and the engine's
// vectorised kernel (engine/SplitKernel.hpp) against that specification.

#include <catch2/catch.hpp>
#include <depass/engine/SplitKernel.hpp>
#include <depass/layers/NeuronSplit.hpp>

#include <cmath>
#include <limits>
#include <numeric>
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

// --- the path rule --------------------------------------------------------------------------
// Goldens: integrated gradients of the neuron, integral_0^1 (da/dg(aG, aU) g_m + da/du(aG, aU)
// u_m) da, evaluated by mpmath quadrature at 30 digits from that definition (not from the
// closed form the library uses).

TEMPLATE_TEST_CASE("split_neuron_path: integrated gradients of the neuron on hand-made cases", "[layers]",
                   DEPASS_TEST_SCALARS) {
  using S = TestType;
  const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-14;
  S share[3];
  // Gated a = silu(g) u: G = 1, U = 0.5.
  const S g[3] = {S(1.0), S(0.5), S(-0.5)}, u[3] = {S(0.2), S(0.3), S(0)};
  split_neuron_path(g, u, 3, share);
  CHECK(share[0] == Approx(0.2666964941657339).epsilon(tol));
  CHECK(share[1] == Approx(0.19923677718237931).epsilon(tol));
  CHECK(share[2] == Approx(-0.10040398203311077).epsilon(tol));
  CHECK(double(share[0] + share[1] + share[2]) == Approx(0.36552928931500244).epsilon(tol));
  // Far on the negative side (G = -25): large opposite shares, a total near zero.
  const S gn[2] = {S(-30), S(5)}, un[2] = {S(1), S(-2)};
  split_neuron_path(gn, un, 2, share);
  CHECK(share[0] == Approx(-0.072377098492908032).epsilon(std::is_same<S, float>::value ? 1e-5 : 1e-12));
  CHECK(share[1] == Approx(0.072377098840106628).epsilon(std::is_same<S, float>::value ? 1e-5 : 1e-12));
  // GELU a = gelu_tanh(g): no up input.
  const S ge[3] = {S(1.5), S(-0.25), S(0.75)};
  split_neuron_path<S>(ge, nullptr, 3, share);
  CHECK(share[0] == Approx(1.4659482705658313).epsilon(tol));
  CHECK(share[1] == Approx(-0.24432471176097188).epsilon(tol));
  CHECK(share[2] == Approx(0.73297413528291563).epsilon(tol));
  // The exact GELU a = g Phi(g) (GPT-NeoX): shares Phi(G) g_m, Phi(2) from Python's math.erf.
  split_neuron_path<S>(MlpKind::GeluErf, ge, nullptr, 3, share);
  CHECK(share[0] == Approx(1.4658748020777312).epsilon(tol));
  CHECK(share[1] == Approx(-0.2443124670129552).epsilon(tol));
  CHECK(share[2] == Approx(0.7329374010388656).epsilon(tol));
  CHECK_THROWS_WITH(split_neuron_path(MlpKind::GeluErf, g, u, 3, share), Catch::Contains("has no up inputs"));
  // GeGLU a = gelu_tanh(g) u (Gemma), the cases of the gated SiLU above.
  split_neuron_path(MlpKind::GatedGeluTanh, g, u, 3, share);
  CHECK(share[0] == Approx(0.30931211262523857).epsilon(tol));
  CHECK(share[1] == Approx(0.22884531143188581).epsilon(tol));
  CHECK(share[2] == Approx(-0.11756142875298602).epsilon(tol));
  CHECK(double(share[0] + share[1] + share[2]) == Approx(0.42059599530413835).epsilon(tol));
  split_neuron_path(MlpKind::GatedGeluTanh, gn, un, 2, share);
  CHECK(share[0] == Approx(-0.02196354756362155).epsilon(std::is_same<S, float>::value ? 1e-5 : 1e-12));
  CHECK(share[1] == Approx(0.02196354756362155).epsilon(std::is_same<S, float>::value ? 1e-5 : 1e-12));
  // The kind and the up inputs must agree.
  CHECK_THROWS_WITH(split_neuron_path(MlpKind::GatedGeluTanh, g, static_cast<const S*>(nullptr), 3, share),
                    Catch::Contains("needs the up contributions"));
  CHECK_THROWS_WITH(split_neuron_path(MlpKind::GeluTanh, g, u, 3, share), Catch::Contains("has no up inputs"));
}

TEST_CASE("The GeGLU path weight p(G) = integral_0^1 t Phi(t G) dt", "[layers]") {
  // mpmath at 40 digits from the definition, around every branch (1 to 3 quadrature panels
  // up to |G| = 8, the closed form beyond).
  const std::vector<std::pair<double, double>> golden = {
      {-60.0, 6.9329379935674083e-5}, {-9.0, 0.0030813057749188482}, {-8.0, 0.0038997776213816672},
      {-7.999, 0.0039007527486195604}, {-3.0, 0.027618421218667934}, {-1.0, 0.12905372440366739},
      {-0.001, 0.24986701925323008}, {0.0, 0.25}, {0.001, 0.25013298074676992}, {0.5, 0.3148643774334331},
      {2.9, 0.47049482308543822}, {3.1, 0.47410232863562785}, {7.999, 0.49609924725138044},
      {8.0, 0.49610022237861833}, {8.001, 0.49610119714025206}, {20.0, 0.49937603558057893},
      {700.0, 0.49999949064129027}};
  for (const auto& [G, p] : golden) {
    INFO("G = " << G);
    CHECK(std::abs(detail::gelu_path_weight(G) - p) <= 3e-16);
  }
  CHECK(detail::gelu_path_weight(1e200) == 0.5);
  CHECK(detail::gelu_path_weight(-1e200) == 0.0);
}

TEST_CASE("The exact GELU's gate Phi keeps its far left tail", "[layers]") {
  // Python's math.erf / math.erfc: 1 + erf(x / sqrt 2) loses every digit near x = -7.5.
  CHECK(detail::normal_cdf(0.0) == 0.5);
  CHECK(detail::normal_cdf(1.0) == Approx(0.8413447460685429).epsilon(1e-15));
  CHECK(detail::normal_cdf(-2.0) == Approx(0.02275013194817921).epsilon(1e-14));
  CHECK(detail::normal_cdf(-7.5) == Approx(3.19089167291092e-14).epsilon(1e-12));
  CHECK(detail::normal_cdf(-7.5f) == Approx(3.19089167291092e-14).epsilon(1e-5));
}

TEST_CASE("The path rule's weight q(G) = integral_0^1 t sigmoid(t G) dt", "[layers]") {
  // mpmath at 40 digits, around both branches (Gauss-Legendre up to |G| = 2, series beyond).
  const std::vector<std::pair<double, double>> golden = {
      {-60.0, 0.00022846306484003144}, {-20.0, 0.002056167475349718}, {-2.5, 0.0871653485510839},
      {-2.0, 0.10939963165593611},     {-1.0, 0.1705573495024382},    {-1e-3, 0.24991666667083334},
      {0.0, 0.25},                     {1e-3, 0.25008333332916666},   {0.5, 0.2911549546432855},
      {1.999, 0.3905505590724511},     {2.0, 0.39060036834406386},    {2.001, 0.3906501554152141},
      {3.0, 0.43027508240399304},      {10.0, 0.4917803235498254},    {40.0, 0.49948595810410995},
      {700.0, 0.49999832149585016}};
  for (const auto& [G, q] : golden) {
    INFO("G = " << G);
    CHECK(std::abs(detail::silu_path_weight(G) - q) <= 2e-16);
  }
  CHECK(detail::silu_path_weight(1e200) == 0.5);  // G^2 overflows: still the limit
  CHECK(detail::silu_path_weight(-1e200) == 0.0);
}

TEMPLATE_TEST_CASE("The path rule is exact however the contributions cancel", "[layers]", DEPASS_TEST_SCALARS) {
  using S = TestType;
  std::mt19937 rng(11);
  std::normal_distribution<double> normal(0, 1);
  const double eps = std::numeric_limits<S>::epsilon();
  for (const double scale : {1e-6, 1.0, 30.0, 1e4}) {
    std::vector<S> g(9), u(9), share(9);
    for (std::size_t m = 0; m < g.size(); ++m) {
      g[m] = static_cast<S>(scale * normal(rng));
      u[m] = static_cast<S>(scale * normal(rng));
    }
    g[8] = -std::accumulate(g.begin(), g.end() - 1, S(0));  // G ~ 0: contributions cancel
    for (const MlpKind kind : {MlpKind::GatedSiLU, MlpKind::GatedGeluTanh, MlpKind::GeluTanh, MlpKind::GeluErf}) {
      const bool gated = depass::gated(kind);
      split_neuron_path(kind, g.data(), gated ? u.data() : nullptr, 9, share.data());
      double G = 0, U = 0, total = 0, magnitude = 0;
      for (std::size_t m = 0; m < g.size(); ++m) {
        G += g[m];
        U += u[m];
        total += share[m];
        magnitude += std::abs(double(share[m]));
      }
      const double k = 0.7978845608028654, gelu = 0.5 * G * (1 + std::tanh(k * (G + 0.044715 * G * G * G)));
      const double gelu_erf = 0.5 * G * (1 + std::erf(G / std::sqrt(2.0)));
      const double a = kind == MlpKind::GatedSiLU       ? G / (1 + std::exp(-G)) * U
                       : kind == MlpKind::GatedGeluTanh ? gelu * U
                       : kind == MlpKind::GeluErf       ? gelu_erf
                                                        : gelu;
      INFO("scale " << scale << ", mlp " << to_string(kind));
      CHECK(std::isfinite(magnitude));
      CHECK(std::abs(total - a) <= 64 * eps * (magnitude + std::abs(a)));
    }
  }
}

TEMPLATE_TEST_CASE("The split kernel's path rule equals split_neuron_path", "[layers][engine]", DEPASS_TEST_SCALARS) {
  using S = TestType;
  using Kernel = detail::SplitKernel<S>;
  using Rows = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  std::mt19937 rng(5);
  std::normal_distribution<double> normal(0, 3);
  const Eigen::Index I = 29, padded = Kernel::padded(I), count = 5;
  for (const MlpKind kind : {MlpKind::GatedSiLU, MlpKind::GatedGeluTanh, MlpKind::GeluTanh, MlpKind::GeluErf}) {
    const bool gated = depass::gated(kind);
    Rows g = Rows::Zero(count, padded), u = Rows::Zero(count, padded);
    for (Eigen::Index k = 0; k < I; ++k)
      for (Eigen::Index i = 0; i < count; ++i) {
        g(i, k) = (k + i) % 4 == 0 ? S(0) : static_cast<S>(normal(rng));
        u(i, k) = static_cast<S>(normal(rng));
      }
    Rows expected(count, I);
    std::vector<S> gc(static_cast<std::size_t>(count)), uc(gc.size()), share(gc.size());
    for (Eigen::Index k = 0; k < I; ++k) {
      for (Eigen::Index i = 0; i < count; ++i) {
        gc[static_cast<std::size_t>(i)] = g(i, k);
        uc[static_cast<std::size_t>(i)] = u(i, k);
      }
      split_neuron_path(kind, gc.data(), gated ? uc.data() : nullptr, count, share.data());
      for (Eigen::Index i = 0; i < count; ++i) expected(i, k) = share[static_cast<std::size_t>(i)];
    }
    std::vector<S*> g_rows, u_rows;
    for (Eigen::Index i = 0; i < count; ++i) {
      g_rows.push_back(g.row(i).data());
      if (gated) u_rows.push_back(u.row(i).data());
    }
    Kernel::split_position_path(kind, g_rows, u_rows, padded);
    const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-13;
    INFO("mlp " << to_string(kind));
    CHECK((g.leftCols(I) - expected).cwiseAbs().maxCoeff() <= tol);
    CHECK(g.rightCols(padded - I).cwiseAbs().maxCoeff() == 0);
  }
}

TEST_CASE("split_neuron refuses the path rule, which needs up contributions", "[layers]") {
  const double g[2] = {1, 2};
  double share[2];
  CHECK_THROWS_WITH(split_neuron(SplitRule{MlpSplit::Path, 0.1}, g, 2, 1.0, share),
                    Catch::Contains("split_neuron_path"));
}
