// Reverse mode (Model::record + Model::backward, every layer's backward) against the
// float64 PyTorch autograd reference (tools/reference/gradients.py, goldens
// tests/golden/gradients_<model>.json): all four kinds of gradient on every family's test
// checkpoint and on stories260K and TinyStories-656K; central finite differences in
// double; batching; bad arguments.

#include <catch2/catch.hpp>
#include <depass/Gradients.hpp>
#include <depass/Model.hpp>
#include <depass/io/Load.hpp>

#include <string>
#include <vector>

#include "support/GradientGoldens.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

template <typename Scalar>
double tolerance() {
  return std::is_same<Scalar, float>::value ? 1e-4 : 1e-9;
}

/// Every case of one golden: value, embeddings, and the residual / head / neuron gradients it stores.
template <typename Scalar>
void check_gradients(const nlohmann::json& golden, const Model<Scalar>& model, const std::string& name) {
  const std::vector<int> ids = golden["ids"];
  const Tape<Scalar> tape = model.record(model.embed(ids));
  for (const nlohmann::json& c : golden["cases"]) {
    const Objective objective = test::golden_objective(c);
    const nlohmann::json& want = c["gradients"];
    GradientRequest request;
    for (const nlohmann::json& r : want["residual"]) request.boundaries.push_back(r["boundary"]);
    for (const nlohmann::json& r : want["heads"]) request.head_layers.push_back(r["layer"]);
    for (const nlohmann::json& r : want["neurons"]) request.neuron_layers.push_back(r["layer"]);
    const Gradients<Scalar> g = model.backward(tape, objective, request);
    INFO(name << ", objective " << to_string(objective.kind) << " at " << objective.position);
    const double value = c["value"];
    CHECK(std::abs(g.values(0) - value) <= tolerance<Scalar>() * std::max(1.0, std::abs(value)));
    CHECK(test::relative_error(g.embeddings, want["embeddings"]) <= tolerance<Scalar>());
    for (const nlohmann::json& r : want["residual"]) {
      INFO("residual at boundary " << r["boundary"]);
      CHECK(test::relative_error(g.residual.at(r["boundary"]), r["values"]) <= tolerance<Scalar>());
    }
    for (const nlohmann::json& r : want["heads"]) {
      INFO("heads of layer " << r["layer"]);
      CHECK(test::relative_error(g.heads.at(r["layer"]), r["values"]) <= tolerance<Scalar>());
    }
    for (const nlohmann::json& r : want["neurons"]) {
      INFO("neurons of layer " << r["layer"]);
      CHECK(test::relative_error(g.neurons.at(r["layer"]), r["values"]) <= tolerance<Scalar>());
    }
  }
}

template <typename Scalar>
void check_model_golden(const std::string& name) {
  const nlohmann::json golden = test::read_gradient_golden(name);
  const Model<Scalar> model(io::load_checkpoint<Scalar>(test::gradient_model_path(golden)));
  check_gradients(golden, model, name);
}

}  // namespace

TEMPLATE_TEST_CASE("Gradients match PyTorch autograd on every family", "[gradients][golden]", DEPASS_TEST_SCALARS) {
  for (const std::string& name : test::gradient_families()) check_model_golden<TestType>(name);
}

TEMPLATE_TEST_CASE("Gradients match PyTorch autograd on stories260K", "[gradients][golden][model]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  check_model_golden<TestType>("stories260K");
}

TEMPLATE_TEST_CASE("Gradients match PyTorch autograd on TinyStories-656K", "[gradients][golden][model]", float,
                   double) {
  DEPASS_REQUIRE_MODEL(path, "tinystories-656k/model.safetensors");
  check_model_golden<TestType>("tinystories656k");
}

TEST_CASE("Gradients agree with central finite differences (double)", "[gradients]") {
  // Every perturbed input is one sequence of a single batched record: x0 +- h e_(i,j).
  for (const std::string name : {"llama3", "qwen2", "gpt2"}) {
    const nlohmann::json golden = test::read_gradient_golden(name);
    const Model<double> model(io::load_checkpoint<double>(test::gradient_model_path(golden)));
    const std::vector<int> ids = golden["ids"];
    const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
    const Matrix<double> x0 = model.embed(ids);
    for (const nlohmann::json& c : golden["cases"]) {
      const Objective objective = test::golden_objective(c);
      const Gradients<double> g = model.backward(model.record(x0), objective);
      const std::vector<std::pair<Eigen::Index, Eigen::Index>> coords = {
          {0, 3}, {objective.position / 2, 17}, {objective.position, 40}, {objective.position, 5}};
      const double h = 1e-5;
      Matrix<double> batch(2 * N * static_cast<Eigen::Index>(coords.size()), x0.cols());
      for (std::size_t k = 0; k < coords.size(); ++k)
        for (int sign : {1, -1}) {
          Matrix<double> x = x0;
          x(coords[k].first, coords[k].second) += sign * h;
          batch.middleRows((2 * static_cast<Eigen::Index>(k) + (sign < 0)) * N, N) = x;
        }
      const Vector<double> f = model.objective_values(model.record(batch, N), objective);
      for (std::size_t k = 0; k < coords.size(); ++k) {
        const double fd = (f(2 * static_cast<Eigen::Index>(k)) - f(2 * static_cast<Eigen::Index>(k) + 1)) / (2 * h);
        const double ad = g.embeddings(coords[k].first, coords[k].second);
        INFO(name << " " << to_string(objective.kind) << " coordinate (" << coords[k].first << ", " << coords[k].second
                  << "): finite difference " << fd << ", backward " << ad);
        CHECK(std::abs(fd - ad) <= 1e-6 * std::max(1.0, std::abs(ad)));
      }
    }
  }
}

TEMPLATE_TEST_CASE("A batch of sequences gives each sequence's own gradients", "[gradients]", DEPASS_TEST_SCALARS) {
  const nlohmann::json golden = test::read_gradient_golden("llama3");
  const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
  const std::vector<int> a = golden["ids"];
  std::vector<int> b(a.rbegin(), a.rend());
  const Eigen::Index N = static_cast<Eigen::Index>(a.size());
  Matrix<TestType> both(2 * N, model.config().dim);
  both << model.embed(a), model.embed(b);
  const Objective objective = Objective::logprob(N - 2, 7);
  const GradientRequest request = GradientRequest::all(model.config().n_layers);
  const Gradients<TestType> together = model.backward(model.record(both, N), objective, request);
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  for (int s = 0; s < 2; ++s) {
    const Gradients<TestType> alone = model.backward(model.record(model.embed(s ? b : a)), objective, request);
    INFO("sequence " << s);
    CHECK(std::abs(together.values(s) - alone.values(0)) <= tol * std::abs(alone.values(0)));
    const auto close = [&](const Matrix<TestType>& stacked, const Matrix<TestType>& one) {
      return (stacked.middleRows(s * N, N) - one).cwiseAbs().maxCoeff() <= tol * std::max<TestType>(1, one.cwiseAbs().maxCoeff());
    };
    CHECK(close(together.embeddings, alone.embeddings));
    for (int l = 0; l < model.config().n_layers; ++l) {
      CHECK(close(together.heads.at(l), alone.heads.at(l)));
      CHECK(close(together.neurons.at(l), alone.neurons.at(l)));
    }
    for (int boundary = 0; boundary <= 2 * model.config().n_layers; ++boundary)
      CHECK(close(together.residual.at(boundary), alone.residual.at(boundary)));
    // Positions after the objective's cannot change it: exactly zero.
    CHECK(together.embeddings.middleRows(s * N + N - 1, 1).cwiseAbs().maxCoeff() == 0);
  }
}

TEMPLATE_TEST_CASE("Gradient requests and objectives with bad arguments are refused", "[gradients][errors]", float,
                   double) {
  const nlohmann::json golden = test::read_gradient_golden("llama");
  const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
  const std::vector<int> ids = golden["ids"];
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  const Tape<TestType> tape = model.record(model.embed(ids));
  const int V = model.config().vocab_size, L = model.config().n_layers;
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(model.backward(tape, Objective::contrast(N - 1, 5, 5)), Contains("foil 5 equals the target"));
  CHECK_THROWS_WITH(model.backward(tape, Objective::logit(N, 5)), Contains("position " + std::to_string(N)));
  CHECK_THROWS_WITH(model.backward(tape, Objective::logit(-1, 5)), Contains("out of range [0, " + std::to_string(N)));
  CHECK_THROWS_WITH(model.backward(tape, Objective::logprob(0, V)), Contains("target " + std::to_string(V)));
  CHECK_THROWS_WITH(model.backward(tape, Objective::contrast(0, 1, -2)), Contains("foil -2"));
  GradientRequest request;
  request.boundaries = {2 * L + 1};
  CHECK_THROWS_WITH(model.backward(tape, Objective::logit(0, 1), request),
                    Contains("boundary " + std::to_string(2 * L + 1) + " is out of range [0, " + std::to_string(2 * L)));
  request = {};
  request.head_layers = {L};
  CHECK_THROWS_WITH(model.backward(tape, Objective::logit(0, 1), request), Contains("layer " + std::to_string(L)));
  const Matrix<TestType> x0 = model.embed(ids);
  CHECK_THROWS_WITH(model.record(x0, N - 1), Contains("not a positive multiple of sequence_length"));
  CHECK_THROWS_WITH(model.record(x0.leftCols(3)), Contains("width 3"));
  Ablation ablation{0, Site::Mlp, {{model.config().hidden_dim - 1, 2}}, {}};
  CHECK_THROWS_WITH(model.record(x0, 0, ablation), Contains("ablation columns"));
  ablation.columns.push_back({0, 1});
  CHECK_THROWS_WITH(model.record(x0, 0, ablation), Contains("one per sequence"));
}
