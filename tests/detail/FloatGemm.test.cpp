// FloatGemm (GemmPrecision.hpp) and detail::product (detail/FloatGemm.hpp): float products
// through oneDNN or Eigen. Each must equal a double reference on column-major blocks of
// larger matrices, transposed or not, written or added; oneDNN must actually have run
// when chosen; a whole gradient pass must agree between the two; and a build without
// oneDNN refuses FloatGemm::OneDnn with a message.

#include <catch2/catch.hpp>
#include <depass/detail/FloatGemm.hpp>
#include <depass/detail/SplitProduct.hpp>
#include <depass/methods/TokenAttributor.hpp>

#include <random>
#include <vector>

#include "support/TestSupport.hpp"

using namespace depass;

namespace {

/// Sets the float products' author for a scope.
class FloatGemmScope {
 public:
  explicit FloatGemmScope(FloatGemm g) : before_(float_gemm()) { set_float_gemm(g); }
  ~FloatGemmScope() { set_float_gemm(before_); }
  FloatGemmScope(const FloatGemmScope&) = delete;
  FloatGemmScope& operator=(const FloatGemmScope&) = delete;

 private:
  FloatGemm before_;
};

std::vector<FloatGemm> available_gemms() {
  if (bf16_available()) return {FloatGemm::Eigen, FloatGemm::OneDnn};
  return {FloatGemm::Eigen};
}

double max_abs(const Eigen::MatrixXd& m) { return m.cwiseAbs().maxCoeff(); }

/// A small Llama (D = 128, 2 layers, GQA) with weights ~ N(0, 0.05).
Checkpoint<float> random_llama(unsigned seed) {
  Checkpoint<float> ck;
  Config& c = ck.config;
  c.dim = 128;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.hidden_dim = 344;
  c.vocab_size = 97;
  c.max_seq_len = 64;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  const auto fill = [&](RowMatrix<float>& m, Eigen::Index rows, Eigen::Index cols) {
    m.resize(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  };
  const Eigen::Index D = c.dim, Q = c.q_width(), K = c.kv_width(), I = c.hidden_dim;
  fill(ck.weights.token_embedding, c.vocab_size, D);
  ck.weights.layers.resize(2);
  for (LayerWeights<float>& l : ck.weights.layers) {
    l.attention_norm = Vector<float>::Ones(D);
    l.mlp_norm = Vector<float>::Ones(D);
    fill(l.wq, Q, D);
    fill(l.wk, K, D);
    fill(l.wv, K, D);
    fill(l.wo, D, Q);
    fill(l.w1, I, D);
    fill(l.w3, I, D);
    fill(l.w2, D, I);
  }
  ck.weights.final_norm = Vector<float>::Ones(D);
  fill(ck.weights.output, c.vocab_size, D);
  return ck;
}

}  // namespace

TEST_CASE("FloatGemm: oneDNN by default where the build has it, refused where not", "[detail]") {
  if (bf16_available()) {
    CHECK(float_gemm() == FloatGemm::OneDnn);
  } else {
    CHECK(float_gemm() == FloatGemm::Eigen);
    CHECK_THROWS_WITH(set_float_gemm(FloatGemm::OneDnn), Catch::Contains("needs oneDNN"));
    CHECK(float_gemm() == FloatGemm::Eigen);
  }
  CHECK(std::string(to_string(FloatGemm::OneDnn)) == "onednn");
  CHECK(std::string(to_string(FloatGemm::Eigen)) == "eigen");
}

TEST_CASE("detail::product: op(a) op(b), written or added, on blocks, by oneDNN and by Eigen", "[detail]") {
  // Sizes above and below oneDNN's threshold (detail::kOneDnnMinWork), odd on purpose;
  // every operand a block inside a larger matrix (outer stride != rows) at an offset.
  const Eigen::Index shapes[][3] = {{37, 70, 45}, {130, 64, 129}, {5, 9, 7}, {1, 300, 200}};
  for (const FloatGemm g : available_gemms()) {
    const FloatGemmScope scope(g);
    for (const auto& shape : shapes) {
      const Eigen::Index rows = shape[0], inner = shape[1], cols = shape[2];
      for (const bool ta : {false, true})
        for (const bool tb : {false, true})
          for (const bool add : {false, true}) {
            const Eigen::MatrixXf big_a = Eigen::MatrixXf::Random(ta ? inner + 3 : rows + 3, ta ? rows + 2 : inner + 2);
            const Eigen::MatrixXf big_b = Eigen::MatrixXf::Random(tb ? cols + 4 : inner + 4, tb ? inner + 1 : cols + 1);
            Eigen::MatrixXf big_dst = Eigen::MatrixXf::Random(rows + 5, cols + 2);
            const Eigen::MatrixXf before = big_dst;
            const auto a = big_a.block(2, 1, ta ? inner : rows, ta ? rows : inner);
            const auto b = big_b.block(3, 1, tb ? cols : inner, tb ? inner : cols);
            const long count_before = detail::onednn_products_run().load();
            detail::product(big_dst.block(4, 1, rows, cols), a, ta, b, tb, add);
            const bool by_onednn = detail::onednn_products_run().load() > count_before;

            const Eigen::MatrixXd ad = a.cast<double>(), bd = b.cast<double>();
            const Eigen::MatrixXd opa = ta ? Eigen::MatrixXd(ad.transpose()) : ad;
            const Eigen::MatrixXd opb = tb ? Eigen::MatrixXd(bd.transpose()) : bd;
            Eigen::MatrixXd want = before.cast<double>();
            if (add) want.block(4, 1, rows, cols) += opa * opb;
            else want.block(4, 1, rows, cols) = opa * opb;
            INFO(to_string(g) << ": " << rows << " x " << inner << " x " << cols << ", ta " << ta << ", tb " << tb
                              << ", add " << add << ", by oneDNN " << by_onednn);
            // Float sums of `inner` terms of size <= 1: error ~ inner * eps.
            CHECK(max_abs(big_dst.cast<double>() - want) <= 1e-6 * static_cast<double>(inner) + 1e-6);
            const bool large = static_cast<double>(rows) * inner * cols >= detail::kOneDnnMinWork;
            CHECK(by_onednn == (g == FloatGemm::OneDnn && large));
          }
    }
  }
}

TEST_CASE("ProductTerm's column runs through oneDNN equal the plain products", "[detail]") {
  // Weight column runs starting inside the weight (begin > 0), in both orientations.
  const Eigen::Index rows = 90, count = 32;
  const Matrix<float> x = Matrix<float>::Random(rows, 96), g = Matrix<float>::Random(rows, 80);
  const RowMatrix<float> w = RowMatrix<float>::Random(80, 96);  // [out, in]
  const Eigen::MatrixXd forward = x.cast<double>() * w.cast<double>().transpose();
  const Eigen::MatrixXd backward = g.cast<double>() * w.cast<double>();
  for (const FloatGemm gemm : available_gemms()) {
    const FloatGemmScope scope(gemm);
    for (const Eigen::Index begin : {Eigen::Index(0), Eigen::Index(16), Eigen::Index(48)}) {
      Matrix<float> y = Matrix<float>::Random(rows, 40), dx = Matrix<float>::Random(rows, 40);
      const Eigen::MatrixXd y_before = y.cast<double>();
      detail::ProductTerm<float>{x, w, true}.columns(y.middleCols(3, count), begin, count, false);
      detail::ProductTerm<float>{g, w, false}.columns(dx.middleCols(5, count), begin, count, false);
      detail::ProductTerm<float>{x, w, true}.columns(y.middleCols(3, count), begin, count, true);  // twice
      INFO(to_string(gemm) << ", columns from " << begin);
      CHECK(max_abs(y.middleCols(3, count).cast<double>() - 2 * forward.middleCols(begin, count)) <= 1e-4);
      CHECK(max_abs(dx.middleCols(5, count).cast<double>() - backward.middleCols(begin, count)) <= 1e-4);
      CHECK(max_abs(y.leftCols(3).cast<double>() - y_before.leftCols(3)) == 0);  // neighbours untouched
      CHECK(max_abs(y.rightCols(5).cast<double>() - y_before.rightCols(5)) == 0);
    }
  }
}

TEST_CASE("Gradients agree whichever computes the float products", "[detail][methods]") {
  if (!bf16_available()) return;  // one author only
  // A Llama-shaped model wide enough that its products go to oneDNN.
  const Model<float> model(random_llama(7));
  std::vector<int> ids(40);
  std::mt19937 rng(3);
  for (int& id : ids) id = static_cast<int>(rng() % 97);
  const TokenAttributor<float> methods(model);
  const Objective objective = Objective::logprob(static_cast<Eigen::Index>(ids.size()) - 1, 5);
  std::vector<Eigen::VectorXf> scores;
  for (const FloatGemm g : {FloatGemm::Eigen, FloatGemm::OneDnn}) {
    const FloatGemmScope scope(g);
    const long before = detail::onednn_products_run().load();
    scores.push_back(methods.run(Method::InputXGrad, ids, objective).scores);
    CHECK((detail::onednn_products_run().load() > before) == (g == FloatGemm::OneDnn));
  }
  const double scale = scores[0].cwiseAbs().maxCoeff();
  CHECK(scale > 0);
  CHECK((scores[1] - scores[0]).cwiseAbs().maxCoeff() <= 1e-4 * scale);
}
