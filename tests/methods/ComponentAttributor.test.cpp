// Head- and neuron-level methods against the float64 reference (tools/reference/gradients.py,
// goldens tests/golden/gradients_<model>.json): AtP (zero and mean ablation), output norm,
// exact ablation; and AtP equal to the exact ablation effect on a model whose remaining
// computation is linear in the ablated values.

#include <catch2/catch.hpp>
#include <depass/methods/ComponentAttributor.hpp>

#include <string>
#include <vector>

#include "support/GradientGoldens.hpp"
#include "support/TestSupport.hpp"

using namespace depass;
using test::method_tolerance;

namespace {


const std::vector<std::pair<std::string, Method>>& kinds() {
  static const std::vector<std::pair<std::string, Method>> k = {
      {"atp", Method::Atp}, {"atp_mean", Method::Atp}, {"norm", Method::OutputNorm}, {"ablation", Method::Ablation}};
  return k;
}

template <typename Scalar>
void check_component_methods(const std::string& name) {
  const nlohmann::json golden = test::read_gradient_golden(name);
  const Model<Scalar> model(io::load_checkpoint<Scalar>(test::gradient_model_path(golden)));
  const ComponentAttributor<Scalar> methods(model);
  const std::vector<int> ids = golden["ids"];
  for (const nlohmann::json& c : golden["cases"]) {
    const Objective objective = test::golden_objective(c);
    INFO(name << ", objective " << to_string(objective.kind) << " at " << objective.position);
    for (const auto& kind : kinds()) {
      ComponentOptions options;
      options.mean_ablation = kind.first == "atp_mean";
      options.batch = 7;  // not a divisor of H or I: a short last batch
      const Attribution<Scalar> heads = methods.heads(kind.second, ids, objective, options);
      const Eigen::Map<const RowMatrix<Scalar>> by_layer(heads.scores.data(), model.config().n_layers,
                                                         model.config().n_heads);
      const int layer = c["neurons"]["layer"];
      const Attribution<Scalar> neurons = methods.neurons(kind.second, layer, ids, objective, options);
      INFO("method " << kind.first);
      CHECK(heads.level == Level::Heads);
      CHECK(neurons.level == Level::Neurons);
      CHECK(neurons.layer == layer);
      CHECK(heads.labels.size() == static_cast<std::size_t>(heads.scores.size()));
      CHECK(test::relative_error(by_layer, c["heads"][kind.first]) <= method_tolerance<Scalar>());
      CHECK(test::relative_error(neurons.scores, c["neurons"][kind.first]) <= method_tolerance<Scalar>());
    }
  }
}

/// The llama family checkpoint made linear downstream of the last layer's heads and neurons:
/// embeddings scaled by 1e-6 with norm_eps 0.5, so every norm's scale is 1/sqrt(0.5) to far
/// below double rounding (mean(x^2) ~ 1e-12 of eps); with `zero_last_mlp` the last MLP's
/// W2 is zero, so the last heads' output reaches the logits only through the final norm;
/// without, the last neurons' values (gate and up weights scaled by 1e3) reach them that way.
Model<double> linear_downstream_model(bool zero_last_mlp) {
  const nlohmann::json golden = test::read_gradient_golden("llama");
  Checkpoint<double> c = io::load_checkpoint<double>(test::gradient_model_path(golden));
  c.config.norm_eps = 0.5;
  c.weights.token_embedding *= 1e-6;
  if (c.config.tied_embeddings) c.weights.output = c.weights.token_embedding * 1e6;
  c.config.tied_embeddings = false;
  if (zero_last_mlp) {
    c.weights.layers.back().w2.setZero();
  } else {  // neuron values as large as the residual stream (else their effects drown in f's rounding)
    c.weights.layers.back().w1 *= 1e3;
    c.weights.layers.back().w3 *= 1e3;
  }
  return Model<double>(std::move(c));
}

}  // namespace

TEMPLATE_TEST_CASE("Head and neuron methods match the reference on every family", "[methods][golden]", DEPASS_TEST_SCALARS) {
  for (const std::string& name : test::gradient_families()) check_component_methods<TestType>(name);
}

TEMPLATE_TEST_CASE("Head and neuron methods match the reference on stories260K and TinyStories-656K",
                   "[methods][golden][model]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(stories, "stories260K/stories260K.bin");
  DEPASS_REQUIRE_MODEL(tiny, "tinystories-656k/model.safetensors");
  check_component_methods<TestType>("stories260K");
  check_component_methods<TestType>("tinystories656k");
}

TEST_CASE("AtP and DePass equal the exact ablation effect where the rest of the model is linear in the unit", "[methods]") {
  const nlohmann::json golden = test::read_gradient_golden("llama");
  const std::vector<int> ids = golden["ids"];
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  for (const Objective objective : {Objective::logit(N - 1, 7), Objective::contrast(N - 2, 7, 11)}) {
    const Model<double> heads_model = linear_downstream_model(true), neurons_model = linear_downstream_model(false);
    const int last = heads_model.config().n_layers - 1, H = heads_model.config().n_heads;
    const ComponentAttributor<double> for_heads(heads_model), for_neurons(neurons_model);
    const Attribution<double> atp = for_heads.heads(Method::Atp, ids, objective);
    const Attribution<double> exact = for_heads.heads(Method::Ablation, ids, objective);
    const Vector<double> atp_last = atp.scores.tail(H), exact_last = exact.scores.tail(H);
    INFO("objective " << to_string(objective.kind) << "; last layer's heads: AtP " << atp_last.transpose()
                      << ", ablation " << exact_last.transpose());
    CHECK(exact_last.cwiseAbs().maxCoeff() > 0);  // not a trivial model
    CHECK((atp_last - exact_last).cwiseAbs().maxCoeff() <= 1e-9 * exact_last.cwiseAbs().maxCoeff());
    const Attribution<double> atp_n = for_neurons.neurons(Method::Atp, last, ids, objective);
    const Attribution<double> exact_n = for_neurons.neurons(Method::Ablation, last, ids, objective);
    INFO("last layer's neurons: AtP " << atp_n.scores.head(6).transpose() << ", ablation " << exact_n.scores.head(6).transpose() << ", max |difference| " << (atp_n.scores - exact_n.scores).cwiseAbs().maxCoeff());
    CHECK(exact_n.scores.cwiseAbs().maxCoeff() > 0);
    CHECK((atp_n.scores - exact_n.scores).cwiseAbs().maxCoeff() <= 1e-9 * exact_n.scores.cwiseAbs().maxCoeff());
    // DePass freezes the norms' scales, which are constant here: its shares are the exact effects too.
    const Vector<double> depass_last = for_heads.heads(Method::DePass, ids, objective).scores.tail(H);
    CHECK((depass_last - exact_last).cwiseAbs().maxCoeff() <= 1e-9 * exact_last.cwiseAbs().maxCoeff());
    const Attribution<double> depass_n = for_neurons.neurons(Method::DePass, last, ids, objective);
    CHECK(depass_n.labels[3] == "L" + std::to_string(last) + ".N3");
    CHECK((depass_n.scores - exact_n.scores).cwiseAbs().maxCoeff() <= 1e-9 * exact_n.scores.cwiseAbs().maxCoeff());
  }
}

TEMPLATE_TEST_CASE("Head and neuron methods refuse bad arguments", "[methods][errors]", DEPASS_TEST_SCALARS) {
  const nlohmann::json golden = test::read_gradient_golden("llama");
  const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
  const ComponentAttributor<TestType> methods(model);
  const std::vector<int> ids = golden["ids"];
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  const int L = model.config().n_layers;
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(methods.heads(Method::Rollout, ids, Objective::logit(N - 1, 2)),
                    Contains("method 'rollout' does not apply to heads (allowed there: depass, atp, norm, ablation)"));
  CHECK_THROWS_WITH(methods.neurons(parse_method("ig"), 0, ids, Objective::logit(N - 1, 2)),
                    Contains("method 'ig' does not apply to neurons"));
  CHECK_THROWS_WITH(methods.neurons(Method::Atp, L, ids, Objective::logit(N - 1, 2)),
                    Contains("layer " + std::to_string(L) + " is out of range [0, " + std::to_string(L) + ")"));
  CHECK_THROWS_WITH(methods.heads(Method::Ablation, ids, Objective::contrast(N - 1, 2, 2)), Contains("equals the target"));
  ComponentOptions options;
  options.batch = -1;
  CHECK_THROWS_WITH(methods.heads(Method::Ablation, ids, Objective::logit(N - 1, 2), options),
                    Contains("batch = -1 is out of range [0, inf) (0: automatic)"));
  CHECK_THROWS_WITH(methods.heads(Method::DePass, ids, Objective::logprob(N - 1, 2)),
                    Contains("objective 'logprob' is not decomposed by method 'depass'"));
}
