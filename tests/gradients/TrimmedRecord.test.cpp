// Model::record trimmed to one position (RecordScope::at(p), issue #14): the last layer's
// MLP runs only at row p of each sequence. Against the full record on every family's test
// checkpoint (parallel residual, post-norms, biases included), several sequences stacked,
// p = N-1 and p < N-1, every objective kind: the same objective values and the same
// gradients (every kind backward can keep), also with the last MLP ablated; the trimmed
// tape is lean (no heads, neuron values or block outputs but a post-norm's); and what a
// trimmed tape does not hold is refused.

#include <catch2/catch.hpp>
#include <depass/Gradients.hpp>
#include <depass/Model.hpp>
#include <depass/io/Load.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "support/GradientGoldens.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

template <typename Scalar>
double trim_tolerance() {
  return std::is_same<Scalar, float>::value ? 1e-5 : 1e-12;
}

/// max |trimmed - full| <= tol * max |full| (exactly equal when full is zero).
template <typename Scalar>
bool same_as_full(const Matrix<Scalar>& trimmed, const Matrix<Scalar>& full) {
  if (trimmed.rows() != full.rows() || trimmed.cols() != full.cols()) return false;
  const double scale = static_cast<double>(full.cwiseAbs().maxCoeff());
  return static_cast<double>((trimmed - full).cwiseAbs().maxCoeff()) <= trim_tolerance<Scalar>() * scale;
}

/// Three sequences of the golden's ids stacked (as given, reversed, rotated by one), 3N x D.
template <typename Scalar>
Matrix<Scalar> stacked_embeddings(const Model<Scalar>& model, const std::vector<int>& ids) {
  std::vector<int> reversed(ids.rbegin(), ids.rend()), rotated = ids;
  std::rotate(rotated.begin(), rotated.begin() + 1, rotated.end());
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  Matrix<Scalar> x(3 * N, model.config().dim);
  x << model.embed(ids), model.embed(reversed), model.embed(rotated);
  return x;
}

std::vector<Objective> objectives(Eigen::Index p, int vocab) {
  return {Objective::logit(p, 3 % vocab), Objective::logprob(p, 7 % vocab), Objective::contrast(p, 5 % vocab, 2 % vocab)};
}

template <typename Scalar>
void check_same_gradients(const Model<Scalar>& model, const Matrix<Scalar>& x, Eigen::Index N, const Objective& objective) {
  const Tape<Scalar> full = model.record(x, N);
  const Tape<Scalar> trimmed = model.record(x, N, {}, RecordScope::at(objective.position));
  REQUIRE(trimmed.scope.trimmed);
  REQUIRE(trimmed.sequences() == full.sequences());
  const int L = model.config().n_layers;
  const GradientRequest request = GradientRequest::all(L);
  const Gradients<Scalar> want = model.backward(full, objective, request);
  const Gradients<Scalar> got = model.backward(trimmed, objective, request);
  CHECK(same_as_full<Scalar>(model.objective_values(trimmed, objective), model.objective_values(full, objective)));
  CHECK(same_as_full<Scalar>(got.values, want.values));
  CHECK(same_as_full(got.embeddings, want.embeddings));
  for (int b = 0; b <= 2 * L; ++b) {
    INFO("residual at boundary " << b);
    CHECK(same_as_full(got.residual.at(b), want.residual.at(b)));
  }
  for (int l = 0; l < L; ++l) {
    INFO("layer " << l);
    CHECK(same_as_full(got.heads.at(l), want.heads.at(l)));
    CHECK(same_as_full(got.neurons.at(l), want.neurons.at(l)));
  }
  // Up to the last MLP the trimmed record is the full one.
  CHECK(trimmed.residual(2 * L - 1) == full.residual(2 * L - 1));
  // Lean: what backward does not read is gone, the rest is kept.
  REQUIRE(trimmed.scope.lean);
  for (int l = 0; l < L; ++l) {
    const LayerTape<Scalar>& t = trimmed.layers[static_cast<std::size_t>(l)];
    const LayerTape<Scalar>& f = full.layers[static_cast<std::size_t>(l)];
    INFO("lean layer " << l);
    CHECK(t.attention.heads.size() == 0);
    CHECK(t.mlp.act.size() == 0);
    CHECK(t.attention.out.size() == (model.post_norm(l, Site::Attention) ? f.attention.out.size() : 0));
    CHECK(t.attention.probs.size() == f.attention.probs.size());
    CHECK(t.mlp.gate.size() > 0);
    CHECK(f.mlp.act.size() > 0);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("A record trimmed to the objective's position gives the full record's objective and gradients",
                   "[gradients][trimmed]", DEPASS_TEST_SCALARS) {
  for (const std::string& name : test::gradient_families()) {
    const nlohmann::json golden = test::read_gradient_golden(name);
    const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
    const std::vector<int> ids = golden["ids"];
    const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
    const Matrix<TestType> x = stacked_embeddings(model, ids);
    for (const Eigen::Index p : {N - 1, N / 2})
      for (const Objective& objective : objectives(p, model.config().vocab_size)) {
        INFO(name << ", objective " << to_string(objective.kind) << " at " << p << " of " << N);
        check_same_gradients(model, x, N, objective);
      }
  }
}

TEMPLATE_TEST_CASE("A trimmed record applies ablations of the last MLP exactly", "[gradients][trimmed]",
                   DEPASS_TEST_SCALARS) {
  for (const std::string& name : test::gradient_families()) {
    const nlohmann::json golden = test::read_gradient_golden(name);
    const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
    const std::vector<int> ids = golden["ids"];
    const Eigen::Index N = static_cast<Eigen::Index>(ids.size()), I = model.config().hidden_dim;
    const int last = model.config().n_layers - 1;
    const Matrix<TestType> x = stacked_embeddings(model, ids);
    // Per-sequence ranges in the last MLP, and cuts there and in an attention.
    Ablation ablation{last, Site::Mlp, {{0, I / 2}, {0, 0}, {I / 4, I / 3}}, {}};
    ablation.cuts.push_back({1, last, Site::Mlp, I - 3, 3});
    ablation.cuts.push_back({2, 0, Site::Attention, 0, model.config().head_dim});
    const Objective objective = Objective::logprob(N / 2, 7 % model.config().vocab_size);
    const Tape<TestType> full = model.record(x, N, ablation);
    const Tape<TestType> trimmed = model.record(x, N, ablation, RecordScope::at(objective.position));
    INFO(name);
    const Vector<TestType> want = model.objective_values(full, objective);
    CHECK(same_as_full<TestType>(model.objective_values(trimmed, objective), want));
    CHECK(same_as_full(model.backward(trimmed, objective).embeddings, model.backward(full, objective).embeddings));
    // The ablation did change the objective: the check above compares ablated runs.
    CHECK((want - model.objective_values(model.record(x, N), objective)).cwiseAbs().maxCoeff() > 0);
  }
}

TEMPLATE_TEST_CASE("What a trimmed tape does not hold is refused", "[gradients][trimmed][errors]", float, double) {
  const nlohmann::json golden = test::read_gradient_golden("llama");
  const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
  const std::vector<int> ids = golden["ids"];
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  const int L = model.config().n_layers;
  const Matrix<TestType> x0 = model.embed(ids);
  const Tape<TestType> tape = model.record(x0, N, {}, RecordScope::at(2));
  using Catch::Matchers::Message;
  const std::string L2 = std::to_string(2 * L);
  REQUIRE_THROWS_MATCHES(tape.residual(2 * L), std::invalid_argument,
                         Message("boundary " + L2 +
                                 " of a tape trimmed to position 2 holds that position only: record with the full "
                                 "scope to read every row"));
  const std::string other = "position 3 was not recorded: the tape is trimmed to position 2 (record with the full "
                            "scope or at this position)";
  REQUIRE_THROWS_MATCHES(model.objective_values(tape, Objective::logit(3, 1)), std::invalid_argument, Message(other));
  REQUIRE_THROWS_MATCHES(model.backward(tape, Objective::logprob(3, 1)), std::invalid_argument, Message(other));
  REQUIRE_THROWS_MATCHES(tape.final_row(0, 3), std::invalid_argument, Message(other));
  REQUIRE_THROWS_MATCHES(model.record(x0, N, {}, RecordScope::at(N)), std::invalid_argument,
                         Message("scope position " + std::to_string(N) + " is out of range [0, " + std::to_string(N) + ")"));
  REQUIRE_THROWS_MATCHES(model.record(x0, N, {}, RecordScope::at(-1)), std::invalid_argument,
                         Message("scope position -1 is out of range [0, " + std::to_string(N) + ")"));
  // What it holds is served: the objective at 2, and boundary 2L there.
  CHECK(tape.final_row(0, 2) == 0);
  CHECK(tape.final_input.rows() == 1);
  CHECK(model.objective_values(tape, Objective::logit(2, 1)).size() == 1);
}
