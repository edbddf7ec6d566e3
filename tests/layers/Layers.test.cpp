// The layer types' rules on small random cases: the frozen norm keeps sums, attention
// mixing equals the per-head products, rotary frequencies follow the scaling.

#include <catch2/catch.hpp>
#include <depass/layers/Attention.hpp>
#include <depass/layers/Norm.hpp>
#include <depass/layers/Rotary.hpp>

#include <cmath>
#include <tuple>

#include "support/TestSupport.hpp"

using namespace depass;

TEMPLATE_TEST_CASE("Frozen norm: the normed parts sum to the normed state (RMSNorm, LayerNorm)", "[layers]", float,
                   double) {
  using S = TestType;
  const Eigen::Index N = 5, D = 8;
  const Vector<S> gain = Vector<S>::Random(D), offset = Vector<S>::Random(D), none;
  const Matrix<S> a = Matrix<S>::Random(N, D), b = Matrix<S>::Random(N, D), x = a + b;
  const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-13;
  for (const NormKind kind : {NormKind::RMSNorm, NormKind::LayerNorm}) {
    const Norm<S> norm(kind, gain, kind == NormKind::LayerNorm ? offset : none, 1e-5);
    Vector<S> r;
    const Matrix<S> y = norm.forward(x, &r);
    // The scale is the real row's.
    const Matrix<S> centred = kind == NormKind::LayerNorm ? Matrix<S>(x.colwise() - x.rowwise().mean()) : x;
    for (Eigen::Index i = 0; i < N; ++i)
      CHECK(r(i) == Approx(1 / std::sqrt(centred.row(i).squaredNorm() / D + 1e-5)).epsilon(tol));
    Matrix<S> na(N, D), nb(N, D);
    norm.apply_frozen(a, r, false, na);
    norm.apply_frozen(b, r, true, nb);  // b plays the bias component: it takes the offset
    CHECK((na + nb - y).cwiseAbs().maxCoeff() <= tol * y.cwiseAbs().maxCoeff());
  }
}

TEMPLATE_TEST_CASE("Attention mixing equals per-head products with the GQA mapping", "[layers]", DEPASS_TEST_SCALARS) {
  using S = TestType;
  Config cfg;
  cfg.dim = 8;
  cfg.n_layers = 1;
  cfg.n_heads = 4;
  cfg.n_kv_heads = 2;
  cfg.head_dim = 2;
  cfg.hidden_dim = 4;
  cfg.vocab_size = 4;
  cfg.max_seq_len = 8;
  LayerWeights<S> w;  // mix() reads no weights
  const Attention<S> attention(cfg, w);
  const Eigen::Index N = 5, d = 2, start = 1, n = N - start, B = 3, G = 2, H = 4;
  Matrix<S> probs = Matrix<S>::Random(H * N, N);
  for (Eigen::Index h = 0; h < H; ++h) probs.middleRows(h * N, N).template triangularView<Eigen::StrictlyUpper>().setZero();
  const Matrix<S> values = Matrix<S>::Random(B * n, G * d);
  Matrix<S> mixed(B * n, H * d);
  attention.mix(probs, start, B, values.data(), mixed.data(), 1);
  const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-13;
  for (Eigen::Index b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const Matrix<S> expected = probs.block(h * N + start, start, n, n) * values.block(b * n, (h / 2) * d, n, d);
      CHECK((mixed.block(b * n, h * d, n, d) - expected).cwiseAbs().maxCoeff() <= tol);
    }
  CHECK(attention.kv_head(3) == 1);
}

TEST_CASE("Rotary frequencies: base, linear and Llama 3 scaling", "[layers]") {
  Config cfg;
  cfg.head_dim = 8;
  cfg.rope_theta = 10000;
  const double base1 = std::pow(10000.0, -2.0 / 8);
  CHECK(Rotary(cfg).frequency(1) == Approx(base1));
  cfg.rope_scaling.type = RopeScaling::Type::Linear;
  cfg.rope_scaling.factor = 4;
  CHECK(Rotary(cfg).frequency(1) == Approx(base1 / 4));
  cfg.rope_scaling = RopeScaling{RopeScaling::Type::Llama3, 8, 1, 4, 32};
  const Rotary llama3(cfg);
  CHECK(llama3.frequency(0) == Approx(1.0));                         // wavelength 2 pi < 32 / 4: kept
  CHECK(llama3.frequency(3) == Approx(std::pow(10000.0, -6.0 / 8) / 8));  // wavelength ~6283 > 32: slowed
}

TEST_CASE("Rotary rotates pairs in each layout and leaves learned positions alone", "[layers]") {
  Config cfg;
  cfg.head_dim = 4;
  cfg.rope_theta = 10000;
  Eigen::MatrixXd t(2, 4);
  t << 1, 2, 3, 4, 1, 2, 3, 4;
  cfg.rope_layout = RopeLayout::AdjacentPairs;
  Eigen::MatrixXd adjacent = t;
  Rotary(cfg).apply(adjacent, 1);
  CHECK(adjacent.row(0) == t.row(0));  // position 0: no rotation
  const double c = std::cos(1.0), s = std::sin(1.0);  // position 1, pair 0: frequency 1
  CHECK(adjacent(1, 0) == Approx(1 * c - 2 * s));
  CHECK(adjacent(1, 1) == Approx(1 * s + 2 * c));
  cfg.rope_layout = RopeLayout::Halves;
  Eigen::MatrixXd halves = t;
  Rotary(cfg).apply(halves, 1);
  CHECK(halves(1, 0) == Approx(1 * c - 3 * s));
  CHECK(halves(1, 2) == Approx(1 * s + 3 * c));
  cfg.positions = PositionKind::Learned;
  Eigen::MatrixXd learned = t;
  Rotary(cfg).apply(learned, 1);
  CHECK(learned == t);
}

TEST_CASE("Rotary with a model's shared tables: the same angles as computed afresh, the tables grown when a longer sequence comes",
          "[layers]") {
  Config cfg;
  cfg.head_dim = 8;
  cfg.rope_theta = 500;
  cfg.rope_scaling.type = RopeScaling::Type::Linear;
  cfg.rope_scaling.factor = 2;
  cfg.rope_layout = RopeLayout::AdjacentPairs;
  detail::RotaryTables tables;
  const Rotary shared(cfg, &tables), fresh(cfg);
  for (const Eigen::Index n : {3, 2, 7, 40}) {  // grows at 7 (to 7) and 40 (to 40); 2 reuses the 3-row table
    INFO("n = " << n);
    const Eigen::MatrixXd t = Eigen::MatrixXd::Random(n, 16);
    Eigen::MatrixXd a = t, b = t;
    shared.rotate<double>(a, 2, 1);
    fresh.rotate<double>(b, 2, 1);
    CHECK(a == b);  // bit for bit: the same double angles
    CHECK(a != t);
    shared.rotate<double>(a, 2, -1);  // the reverse rotation undoes it
    CHECK((a - t).cwiseAbs().maxCoeff() < 1e-13);
    // The pair at position n-1, by hand (frequency 500^(-2/8) / 2 for pair 1, adjacent layout).
    const double angle = static_cast<double>(n - 1) * std::pow(500.0, -0.25) / 2;
    CHECK(b(n - 1, 2) == Approx(t(n - 1, 2) * std::cos(angle) - t(n - 1, 3) * std::sin(angle)).epsilon(1e-13));
    // The shared table now covers n positions: asking again builds nothing.
    const auto no_build = [](Eigen::Index) -> std::shared_ptr<const detail::RotaryTable> {
      throw std::logic_error("rebuilt");
    };
    CHECK(tables.at_least(n, no_build)->cos.rows() >= n);
  }
  CHECK(tables.at_least(40, [](Eigen::Index) -> std::shared_ptr<const detail::RotaryTable> {
          throw std::logic_error("rebuilt");
        })->cos.rows() == 40);
}

TEST_CASE("Partial rotary (GPT-NeoX) turns the leading dimensions of each head, by the rotated width's frequencies",
          "[layers]") {
  Config cfg;
  cfg.head_dim = 8;
  cfg.rotary_dims = 4;  // pairs (0, 2) and (1, 3); frequencies 10000^(-2j/4) = 1 and 0.01
  cfg.rope_theta = 10000;
  cfg.rope_layout = RopeLayout::Halves;
  CHECK(Rotary(cfg).frequency(1) == Approx(0.01).epsilon(1e-14));
  Eigen::MatrixXd t = Eigen::MatrixXd::Random(4, 16);  // two heads
  Eigen::MatrixXd r = t;
  Rotary(cfg).apply(r, 2);
  const int pos = 3;
  for (int h = 0; h < 2; ++h) {
    const int o = 8 * h;
    INFO("head " << h);
    CHECK(r.block(pos, o + 4, 1, 4) == t.block(pos, o + 4, 1, 4));  // passed through
    for (const auto& [a, b, angle] : {std::tuple<int, int, double>{0, 2, 3.0}, {1, 3, 0.03}}) {
      CHECK(r(pos, o + a) == Approx(t(pos, o + a) * std::cos(angle) - t(pos, o + b) * std::sin(angle)).epsilon(1e-13));
      CHECK(r(pos, o + b) == Approx(t(pos, o + a) * std::sin(angle) + t(pos, o + b) * std::cos(angle)).epsilon(1e-13));
    }
  }
  cfg.dim = 16;
  cfg.n_layers = 1;
  cfg.n_heads = cfg.n_kv_heads = 2;
  cfg.hidden_dim = cfg.vocab_size = cfg.max_seq_len = 4;
  cfg.validate();
  cfg.rotary_dims = 3;
  CHECK_THROWS_WITH(cfg.validate(), Catch::Contains("rotary_dims (3) must be even"));
  cfg.rotary_dims = 10;
  CHECK_THROWS_WITH(cfg.validate(), Catch::Contains("rotary_dims = 10 is out of range [0, 8]"));
}
