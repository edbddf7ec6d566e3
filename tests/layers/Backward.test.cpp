// Each layer type's backward against central finite differences of its own forward, on
// small random cases in double: RMSNorm and LayerNorm (gain, offset), RoPE (the backward
// rotation is the transpose), attention (GQA, q/k/v biases, RoPE with Llama 3 scaling, two
// stacked sequences), SwiGLU and GELU MLPs. The whole model's gradients are checked
// against PyTorch autograd in tests/gradients.

#include <catch2/catch.hpp>
#include <depass/layers/Attention.hpp>
#include <depass/layers/Mlp.hpp>
#include <depass/layers/Norm.hpp>
#include <depass/layers/Rotary.hpp>

#include <functional>

using namespace depass;

namespace {

using Fn = std::function<double(const Matrix<double>&)>;

/// max |FD - analytic| / max |analytic| over every coordinate of x, with f(x) = <dy, layer(x)>.
double fd_error(const Fn& f, const Matrix<double>& x, const Matrix<double>& analytic) {
  const double h = 1e-6;
  double worst = 0;
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    Matrix<double> up = x, down = x;
    up.data()[i] += h;
    down.data()[i] -= h;
    worst = std::max(worst, std::abs((f(up) - f(down)) / (2 * h) - analytic.data()[i]));
  }
  return worst / analytic.cwiseAbs().maxCoeff();
}

Config small_config(MlpKind mlp) {
  Config cfg;
  cfg.dim = 12;
  cfg.n_layers = 1;
  cfg.n_heads = 4;
  cfg.n_kv_heads = 2;
  cfg.head_dim = 6;
  cfg.hidden_dim = 10;
  cfg.vocab_size = 5;
  cfg.max_seq_len = 16;
  cfg.mlp = mlp;
  cfg.rope_scaling.type = RopeScaling::Type::Llama3;
  cfg.rope_scaling.factor = 8;
  cfg.rope_scaling.original_max_position = 4;
  cfg.rope_theta = 500;
  return cfg;
}

LayerWeights<double> random_weights(const Config& cfg) {
  LayerWeights<double> w;
  const Eigen::Index D = cfg.dim, Q = cfg.q_width(), K = cfg.kv_width(), I = cfg.hidden_dim;
  w.wq = RowMatrix<double>::Random(Q, D);
  w.wk = RowMatrix<double>::Random(K, D);
  w.wv = RowMatrix<double>::Random(K, D);
  w.wo = RowMatrix<double>::Random(D, Q);
  w.bq = Vector<double>::Random(Q);
  w.bk = Vector<double>::Random(K);
  w.bv = Vector<double>::Random(K);
  w.w1 = RowMatrix<double>::Random(I, D);
  if (cfg.gated_mlp()) w.w3 = RowMatrix<double>::Random(I, D);
  w.w2 = RowMatrix<double>::Random(D, I);
  w.b1 = Vector<double>::Random(I);
  return w;
}

}  // namespace

TEST_CASE("Norm backward matches finite differences (RMSNorm, LayerNorm)", "[layers][gradients]") {
  const Eigen::Index N = 3, D = 7;
  const Vector<double> gain = Vector<double>::Random(D), offset = Vector<double>::Random(D), none;
  const Matrix<double> x = Matrix<double>::Random(N, D), dy = Matrix<double>::Random(N, D);
  for (const NormKind kind : {NormKind::RMSNorm, NormKind::LayerNorm}) {
    const Norm<double> norm(kind, gain, kind == NormKind::LayerNorm ? offset : none, 1e-5);
    Vector<double> r;
    norm.forward(x, &r);
    const Fn f = [&](const Matrix<double>& at) { return norm.forward(at, nullptr).cwiseProduct(dy).sum(); };
    INFO((kind == NormKind::RMSNorm ? "RMSNorm" : "LayerNorm"));
    CHECK(fd_error(f, x, norm.backward(x, r, dy)) <= 1e-7);
  }
}

TEST_CASE("RoPE's backward rotation is the transpose of the forward one", "[layers][gradients]") {
  for (const RopeLayout layout : {RopeLayout::AdjacentPairs, RopeLayout::Halves}) {
    Config cfg = small_config(MlpKind::GatedSiLU);
    cfg.rope_layout = layout;
    const Rotary rotary(cfg);
    const Matrix<double> a = Matrix<double>::Random(9, 2 * cfg.head_dim), b = Matrix<double>::Random(9, 2 * cfg.head_dim);
    Matrix<double> ra = a, rb = b;
    rotary.rotate<double>(ra, 2, 1);
    rotary.rotate<double>(rb, 2, -1);
    CHECK(std::abs(ra.cwiseProduct(b).sum() - a.cwiseProduct(rb).sum()) <= 1e-12 * a.cwiseAbs().sum());
    rotary.rotate<double>(ra, 2, -1);
    CHECK((ra - a).cwiseAbs().maxCoeff() <= 1e-14);
    CHECK((rb - b).cwiseAbs().maxCoeff() > 1e-3);  // it does rotate
  }
}

TEST_CASE("Attention backward matches finite differences (GQA, biases, scaled RoPE, two sequences)",
          "[layers][gradients]") {
  const Config cfg = small_config(MlpKind::GatedSiLU);
  const LayerWeights<double> w = random_weights(cfg);
  const Attention<double> attention(cfg, w);
  const Eigen::Index N = 5;
  const Matrix<double> xn = 0.5 * Matrix<double>::Random(2 * N, cfg.dim);
  const Matrix<double> d_out = Matrix<double>::Random(2 * N, cfg.dim);
  const auto real = attention.forward(xn, {}, N);
  const Matrix<double> dz = attention.backward_output(d_out);
  const Fn f = [&](const Matrix<double>& at) { return attention.forward(at, {}, N).out.cwiseProduct(d_out).sum(); };
  CHECK(fd_error(f, xn, attention.backward(real, dz, N)) <= 1e-7);
  // No output bias: out is linear in the mixed values, so <d_out, out> = <dz, heads>.
  CHECK(std::abs(real.out.cwiseProduct(d_out).sum() - real.heads.cwiseProduct(dz).sum()) <=
        1e-12 * real.out.cwiseAbs().sum());
}

TEST_CASE("Attention backward with Gemma 2's score scale and soft cap matches finite differences", "[layers][gradients]") {
  Config cfg = small_config(MlpKind::GatedGeluTanh);
  cfg.attention_scale = 0.3;
  cfg.attention_softcap = 0.8;  // small: the scores reach the tanh's curved part
  const LayerWeights<double> w = random_weights(cfg);
  const Attention<double> attention(cfg, w);
  const Eigen::Index N = 5;
  const Matrix<double> xn = 2.0 * Matrix<double>::Random(2 * N, cfg.dim), d_out = Matrix<double>::Random(2 * N, cfg.dim);
  const auto real = attention.forward(xn, {}, N);
  const Fn f = [&](const Matrix<double>& at) { return attention.forward(at, {}, N).out.cwiseProduct(d_out).sum(); };
  CHECK(fd_error(f, xn, attention.backward(real, attention.backward_output(d_out), N)) <= 1e-7);
  // The cap does bend the probabilities: without it they differ.
  cfg.attention_softcap = 0;
  CHECK((Attention<double>(cfg, w).forward(xn, {}, N).probs - real.probs).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("MLP backward matches finite differences (SwiGLU, GeGLU, GELU tanh and erf)", "[layers][gradients]") {
  for (const MlpKind kind : {MlpKind::GatedSiLU, MlpKind::GatedGeluTanh, MlpKind::GeluTanh, MlpKind::GeluErf}) {
    const Config cfg = small_config(kind);
    const LayerWeights<double> w = random_weights(cfg);
    const Mlp<double> mlp(cfg, w);
    const Matrix<double> xn = Matrix<double>::Random(4, cfg.dim), d_out = Matrix<double>::Random(4, cfg.dim);
    const auto real = mlp.forward(xn, {});
    const Fn f = [&](const Matrix<double>& at) { return mlp.forward(at, {}).out.cwiseProduct(d_out).sum(); };
    INFO(to_string(kind));
    CHECK(fd_error(f, xn, mlp.backward(real, mlp.backward_output(d_out))) <= 1e-7);
  }
}
