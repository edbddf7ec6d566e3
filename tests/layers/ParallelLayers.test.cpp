// The layers' real and backward passes on two threads (attention heads shared among threads,
// a step's products split by output columns: detail/SplitProduct.hpp) against one thread,
// on a model large enough that both splits happen.

#include <catch2/catch.hpp>
#include <depass/layers/Attention.hpp>
#include <depass/layers/Mlp.hpp>

#include <type_traits>

#include "support/TestSupport.hpp"

using namespace depass;

namespace {

Config wide_config() {
  Config cfg;
  cfg.dim = 256;
  cfg.n_layers = 1;
  cfg.n_heads = 8;
  cfg.n_kv_heads = 4;
  cfg.head_dim = 32;
  cfg.hidden_dim = 688;
  cfg.vocab_size = 5;
  cfg.max_seq_len = 256;
  cfg.mlp = MlpKind::GatedSiLU;
  return cfg;
}

template <typename S>
LayerWeights<S> random_weights(const Config& cfg) {
  LayerWeights<S> w;
  const Eigen::Index D = cfg.dim, Q = cfg.q_width(), K = cfg.kv_width(), I = cfg.hidden_dim;
  const S scale = S(0.1);  // scores of order one: the softmax is not saturated
  w.wq = scale * RowMatrix<S>::Random(Q, D);
  w.wk = scale * RowMatrix<S>::Random(K, D);
  w.wv = scale * RowMatrix<S>::Random(K, D);
  w.wo = scale * RowMatrix<S>::Random(D, Q);
  w.bq = Vector<S>::Random(Q);
  w.bo = Vector<S>::Random(D);
  w.w1 = scale * RowMatrix<S>::Random(I, D);
  w.w3 = scale * RowMatrix<S>::Random(I, D);
  w.w2 = scale * RowMatrix<S>::Random(D, I);
  w.b2 = Vector<S>::Random(D);
  return w;
}

template <typename S>
double relative_gap(const Matrix<S>& a, const Matrix<S>& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff());
}

}  // namespace

TEMPLATE_TEST_CASE("Attention and MLP: the same real and backward passes on two threads as on one", "[layers]",
                   DEPASS_TEST_SCALARS) {
  using S = TestType;
  const Config cfg = wide_config();
  const LayerWeights<S> w = random_weights<S>(cfg);
  const Attention<S> attention(cfg, w);
  const Mlp<S> mlp(cfg, w);
  const Eigen::Index N = 256;  // two sequences; 4 N^2 d H = 67 Mflop of per-head work each
  const Matrix<S> xn = Matrix<S>::Random(2 * N, cfg.dim), d_out = Matrix<S>::Random(2 * N, cfg.dim);
  struct Pass {
    Matrix<S> out, probs, dz, dxn, mlp_out, d_act, mlp_dxn;
  };
  const auto run = [&](int thread_count) {
    const test::ThreadCount scope(thread_count);
    Pass p;
    const typename Attention<S>::Forward real = attention.forward(xn, {}, N);
    p.out = real.out;
    p.probs = real.probs;
    p.dz = attention.backward_output(d_out);
    p.dxn = attention.backward(real, p.dz, N);
    const typename Mlp<S>::Forward m = mlp.forward(xn, {});
    p.mlp_out = m.out;
    p.d_act = mlp.backward_output(d_out);
    p.mlp_dxn = mlp.backward(m, p.d_act);
    return p;
  };
  const Pass one = run(1), two = run(2);
  const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-13;
  CHECK(relative_gap(two.out, one.out) <= tol);
  CHECK(relative_gap(two.probs, one.probs) <= tol);
  CHECK(relative_gap(two.dz, one.dz) <= tol);
  CHECK(relative_gap(two.dxn, one.dxn) <= tol);
  CHECK(relative_gap(two.mlp_out, one.mlp_out) <= tol);
  CHECK(relative_gap(two.d_act, one.d_act) <= tol);
  CHECK(relative_gap(two.mlp_dxn, one.mlp_dxn) <= tol);
  // The output biases are added once, on every row (not once per thread or column run).
  const Matrix<S> heads_out = attention.forward(xn, {}, N).heads * w.wo.transpose();
  CHECK(relative_gap<S>(one.out.rowwise() - w.bo.transpose(), heads_out) <= tol);
  // The rows are real probabilities, causal: row i of head h sums to 1 over positions <= i.
  CHECK((one.probs.rowwise().sum().array() - S(1)).abs().maxCoeff() <= S(tol * 10));
  CHECK(one.probs(0, 1) == S(0));
}
