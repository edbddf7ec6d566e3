// The subspace protocol (methods/SubspaceFaithfulness.hpp) on stories260K's he/she probe
// data (data/faithfulness/stories260K_pronoun.jsonl): the probe learns the label from the
// state before the last MLP; the probe logit's gradient matches central differences; the
// DePass projections sum to logit - b (completeness); the curves' invariants; the refusals.

#include <catch2/catch.hpp>
#include <depass/io/Load.hpp>
#include <depass/methods/SubspaceFaithfulness.hpp>

#include <string>
#include <vector>

#include "support/FaithfulnessData.hpp"
#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

struct PronounSplit {
  std::vector<std::vector<int>> train_ids, test_ids;
  std::vector<int> train_labels, test_labels;
};

PronounSplit pronoun_split(std::size_t train, std::size_t test) {
  const std::vector<test::FaithfulnessRecord> records = test::faithfulness_records("stories260K_pronoun.jsonl", train + test, 24);
  PronounSplit s;
  for (std::size_t i = 0; i < records.size(); ++i) {
    (i < train ? s.train_ids : s.test_ids).push_back(records[i].ids);
    (i < train ? s.train_labels : s.test_labels).push_back(records[i].label);
  }
  return s;
}

/// The probe's logit from given embeddings, by record and the public tape.
template <typename Scalar>
double probe_logit_of(const Model<Scalar>& model, const LinearProbe<Scalar>& probe, const Matrix<Scalar>& x0, int boundary) {
  return static_cast<double>(probe.logit(model.record(x0).residual(boundary).bottomRows(1)));
}

}  // namespace

TEMPLATE_TEST_CASE("the he/she probe and the subspace protocol on stories260K", "[subspace]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const int L = model.config().n_layers;
  const Boundary boundary = Boundary::before_mlp(L - 1);
  const PronounSplit data = pronoun_split(60, 20);
  using Subspace = SubspaceFaithfulness<TestType>;
  const LinearProbe<TestType> probe =
      LinearProbe<TestType>::train(Subspace::features(model, data.train_ids, boundary), data.train_labels);
  CHECK(probe.converged);
  CHECK(probe.accuracy >= 0.9);
  const Subspace protocol(model, boundary, probe);
  int held_out_correct = 0;
  for (std::size_t i = 0; i < data.test_ids.size(); ++i)
    held_out_correct += (protocol.logit(data.test_ids[i]) > 0) == (data.test_labels[i] == 1) ? 1 : 0;
  CHECK(held_out_correct >= 15);  // of 20

  const std::vector<int>& ids = data.test_ids[0];
  SECTION("DePass projections sum to the logit minus the bias") {
    const Vector<TestType> shares = protocol.depass_projections(ids);
    CHECK(shares.size() == static_cast<Eigen::Index>(ids.size()) + 1);  // tokens and the bias component
    const double tolerance = std::is_same<TestType, float>::value ? 1e-4 : 1e-10;
    CHECK(static_cast<double>(shares.sum() + probe.bias) ==
          Approx(static_cast<double>(protocol.logit(ids))).margin(tolerance * std::max(1.0, std::abs(static_cast<double>(protocol.logit(ids))))));
  }
  SECTION("the probe logit's gradient matches central differences") {
    if (!std::is_same<TestType, double>::value) return;  // differences need double
    const Matrix<TestType> x0 = model.embed(ids);
    const Matrix<TestType> g = protocol.gradient(x0);
    const int b = boundary.index(L);
    const double h = 1e-5;
    for (Eigen::Index i : {Eigen::Index(1), x0.rows() / 2, x0.rows() - 1}) {
      for (Eigen::Index d : {Eigen::Index(0), Eigen::Index(17), x0.cols() - 1}) {
        Matrix<TestType> up = x0, down = x0;
        up(i, d) += static_cast<TestType>(h);
        down(i, d) -= static_cast<TestType>(h);
        const double fd = (probe_logit_of(model, probe, up, b) - probe_logit_of(model, probe, down, b)) / (2 * h);
        INFO("position " << i << ", dim " << d);
        CHECK(static_cast<double>(g(i, d)) == Approx(fd).margin(1e-6).epsilon(1e-5));
      }
    }
  }
  SECTION("curves for the probe's class") {
    const std::vector<Method> methods = {Method::DePass, Method::GradNorm, Method::InputXGrad, Method::Occlusion};
    for (std::size_t r = 0; r < 2; ++r) {
      const std::vector<int>& sample = data.test_ids[r];
      const std::vector<TokenCurveSample> out = protocol.evaluate(sample, methods);
      REQUIRE(out.size() == methods.size());
      const int side = protocol.logit(sample) >= 0 ? 1 : 0;
      const std::vector<int> bos = {sample[0]};
      for (const TokenCurveSample& s : out) {
        INFO("record " << r << ", method " << to_string(s.method));
        REQUIRE(s.ok());
        CHECK(s.p_clean >= 0.5);
        CHECK(s.recover.back() == 0.0);
        CHECK(s.disrupt_probability.back() == protocol.class_probability(bos, side));
        CHECK(s.ranking.size() == sample.size() - 1);
      }
    }
    // DePass ranks by the oriented projection: its top token pushes towards the probe's class.
    const Vector<TestType> scores = protocol.scores(Method::DePass, ids);
    const Vector<TestType> raw = protocol.depass_projections(ids).head(static_cast<Eigen::Index>(ids.size()));
    CHECK((protocol.logit(ids) >= 0 ? raw : Vector<TestType>(-raw)) == scores);
  }
}

TEMPLATE_TEST_CASE("the probe converges where the loss's decrease falls below its rounding", "[probe]",
                   DEPASS_TEST_SCALARS) {
  // Before layer 1's MLP the he/she classes overlap (train accuracy ~0.7): the last Newton
  // steps change the loss by less than its rounding, which the line search once took for
  // an increase, stalling at 100 iterations without converging (float).
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const std::vector<test::FaithfulnessRecord> records = test::faithfulness_records("stories260K_pronoun.jsonl", 160, 1000);
  std::vector<std::vector<int>> ids;
  std::vector<int> labels;
  for (const test::FaithfulnessRecord& r : records) {
    ids.push_back(r.ids);
    labels.push_back(r.label);
  }
  const LinearProbe<TestType> probe = LinearProbe<TestType>::train(
      SubspaceFaithfulness<TestType>::features(model, ids, Boundary::before_mlp(1)), labels);
  CHECK(probe.converged);
  CHECK(probe.iterations < 20);
  CHECK(probe.gradient_max_abs <= 1e-10);
}

TEMPLATE_TEST_CASE("the subspace protocol refuses bad arguments, naming them", "[subspace]", DEPASS_TEST_SCALARS) {
  using Catch::Matchers::Contains;
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  LinearProbe<TestType> probe;
  probe.weights = Vector<TestType>::Ones(model.config().dim);
  using Subspace = SubspaceFaithfulness<TestType>;
  CHECK_THROWS_WITH(Subspace(model, Boundary::output(), probe), Contains("boundary 'output' is not probed"));
  CHECK_THROWS_WITH(Subspace(model, Boundary::before_mlp(5), probe), Contains("layer 5 is out of range"));
  LinearProbe<TestType> narrow;
  narrow.weights = Vector<TestType>::Ones(3);
  CHECK_THROWS_WITH(Subspace(model, Boundary::before_mlp(1), narrow), Contains("probe has 3 weights, the model's dim is 64"));
  const Subspace protocol(model, Boundary::before_mlp(1), probe);
  const std::vector<int> ids = {1, 403, 407};
  CHECK_THROWS_WITH(protocol.scores(Method::AttentionLast, ids), Contains("not available for the subspace protocol"));
  CHECK_THROWS_WITH(protocol.evaluate({1}, {Method::DePass}), Contains("at least one more token"));
}
