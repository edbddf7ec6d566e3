// Head and neuron masking (methods/ComponentMasking.hpp) and the Ablation cuts it rides on:
//   - masking every head of a layer (of two layers) equals a copy of the model whose Wo is
//     zero there; every neuron of a layer, a copy whose W2 is zero (forward, not record);
//   - Ablation cuts zero what the per-sequence column ranges zero;
//   - curves on shipped records: the clean run is the float64 reference's `top1_prob`, k=0
//     changes nothing, k = every head equals the model without attention, DePass's top 4
//     heads matter far more than its bottom 4;
//   - the refusals.

#include <catch2/catch.hpp>
#include <depass/io/Load.hpp>
#include <depass/methods/ComponentMasking.hpp>

#include <functional>
#include <string>
#include <vector>

#include "support/FaithfulnessData.hpp"
#include "support/Goldens.hpp"
#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

/// A copy of `model` with `edit` applied to the weights of the listed layers.
template <typename Scalar>
Model<Scalar> edited_copy(const Model<Scalar>& model, const std::vector<int>& layers,
                          const std::function<void(LayerWeights<Scalar>&)>& edit) {
  Checkpoint<Scalar> c{model.config(), model.weights()};
  for (int l : layers) edit(c.weights.layers[static_cast<std::size_t>(l)]);
  return Model<Scalar>(std::move(c));
}

template <typename Scalar>
void zero_attention_output(LayerWeights<Scalar>& w) {
  w.wo.setZero();
  w.bo.setZero();
}

template <typename Scalar>
void zero_mlp_output(LayerWeights<Scalar>& w) {
  w.w2.setZero();
  w.b2.setZero();
}

/// The target's probability and top-1 at the last position, by the plain forward pass.
template <typename Scalar>
MaskedPrediction plain_prediction(const Model<Scalar>& model, const std::vector<int>& ids, int target) {
  const Matrix<Scalar> logits = model.forward(ids, {}, true);
  Eigen::Index best = 0;
  logits.row(0).maxCoeff(&best);
  return {faithfulness::target_probability(logits.row(0), target), best == target};
}

template <typename Scalar>
double masking_epsilon() {
  return std::is_same<Scalar, float>::value ? 1e-4 : 1e-10;
}

/// Unit indices of every head of layer l (heads l*H .. l*H + H - 1).
std::vector<long> layer_heads(int l, int heads) {
  std::vector<long> units;
  for (int h = 0; h < heads; ++h) units.push_back(static_cast<long>(l) * heads + h);
  return units;
}

}  // namespace

TEMPLATE_TEST_CASE("masking every head of a layer equals removing its attention output", "[masking]",
                   DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const std::vector<int>& ids = test::kStoriesIds;
  const int H = model.config().n_heads, L = model.config().n_layers, target = 315;
  MaskingOptions options;
  options.batch = 2;  // the four runs below span two records
  const ComponentMasking<TestType> masking(model, options);
  std::vector<long> first_and_last = layer_heads(0, H), last = layer_heads(L - 1, H);
  first_and_last.insert(first_and_last.end(), last.begin(), last.end());
  const std::vector<MaskedPrediction> runs =
      masking.predict(Level::Heads, ids, target, {{}, layer_heads(0, H), layer_heads(L - 1, H), first_and_last});
  REQUIRE(runs.size() == 4);
  const std::vector<std::vector<int>> removed = {{}, {0}, {L - 1}, {0, L - 1}};
  for (std::size_t i = 0; i < runs.size(); ++i) {
    INFO("attention removed in " << removed[i].size() << " layer(s), run " << i);
    const MaskedPrediction want =
        plain_prediction(edited_copy<TestType>(model, removed[i], zero_attention_output<TestType>), ids, target);
    CHECK(runs[i].probability == Approx(want.probability).epsilon(masking_epsilon<TestType>()));
    CHECK(runs[i].correct == want.correct);
  }
  CHECK(runs[1].probability != Approx(runs[0].probability).epsilon(1e-3));  // the masking is seen
}

TEMPLATE_TEST_CASE("masking every neuron of a layer equals removing its MLP output", "[masking]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const std::vector<int>& ids = test::kStoriesIds;
  const int I = model.config().hidden_dim, target = 315;
  MaskingOptions options;
  options.neuron_layers = {2, 1};  // ranked in this order: units 0..I-1 are layer 2's
  const ComponentMasking<TestType> masking(model, options);
  CHECK(masking.units(Level::Neurons) == 2L * I);
  std::vector<long> layer2, layer1;
  for (long k = 0; k < I; ++k) {
    layer2.push_back(k);
    layer1.push_back(I + k);
  }
  const std::vector<MaskedPrediction> runs = masking.predict(Level::Neurons, ids, target, {layer2, layer1});
  const MaskedPrediction want2 = plain_prediction(edited_copy<TestType>(model, {2}, zero_mlp_output<TestType>), ids, target);
  const MaskedPrediction want1 = plain_prediction(edited_copy<TestType>(model, {1}, zero_mlp_output<TestType>), ids, target);
  CHECK(runs[0].probability == Approx(want2.probability).epsilon(masking_epsilon<TestType>()));
  CHECK(runs[1].probability == Approx(want1.probability).epsilon(masking_epsilon<TestType>()));
}

TEMPLATE_TEST_CASE("ablation cuts zero what per-sequence column ranges zero", "[masking]", DEPASS_TEST_SCALARS) {
  using Catch::Matchers::Contains;
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const Matrix<TestType> x0 = model.embed(test::kStoriesIds).replicate(2, 1);
  const Eigen::Index N = static_cast<Eigen::Index>(test::kStoriesIds.size());
  for (Site site : {Site::Attention, Site::Mlp}) {
    Ablation ranges{1, site, {{3, 5}, {0, 0}}, {}};
    Ablation cuts;
    cuts.cuts.push_back({0, 1, site, 3, 5});
    const Tape<TestType> a = model.record(x0, N, ranges), b = model.record(x0, N, cuts);
    CHECK(a.final_input == b.final_input);
    CHECK(a.final_input.topRows(N) != model.record(x0, N).final_input.topRows(N));
    CHECK(a.final_input.bottomRows(N) == model.record(x0, N).final_input.bottomRows(N));
  }
  Ablation bad;
  bad.cuts.push_back({2, 0, Site::Mlp, 0, 1});
  CHECK_THROWS_WITH(model.record(x0, N, bad), Contains("cut sequence 2 is out of range [0, 2)"));
  bad.cuts = {{0, 7, Site::Mlp, 0, 1}};
  CHECK_THROWS_WITH(model.record(x0, N, bad), Contains("layer 7 is out of range"));
  bad.cuts = {{0, 0, Site::Attention, model.config().q_width() - 1, 2}};
  CHECK_THROWS_WITH(model.record(x0, N, bad), Contains("out of range"));
}

TEMPLATE_TEST_CASE("head and neuron masking curves on stories260K records", "[masking]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const int L = model.config().n_layers, H = model.config().n_heads;
  std::vector<int> all_layers;
  for (int l = 0; l < L; ++l) all_layers.push_back(l);
  const Model<TestType> no_attention = edited_copy<TestType>(model, all_layers, zero_attention_output<TestType>);
  const ComponentMasking<TestType> masking(model);
  const std::vector<int> ks = masking.k_grid(Level::Heads);
  CHECK(ks == (std::vector<int>{0, 1, 2, 4, 8, 16, 32, L * H}));
  const std::vector<test::FaithfulnessRecord> records = test::faithfulness_records("stories260K.jsonl", 2, 24);
  double depass_top4 = 0, depass_bottom4 = 0;  // summed over the records
  for (const test::FaithfulnessRecord& r : records) {
    for (Method method : {Method::DePass, Method::OutputNorm}) {
      INFO("record with " << r.ids.size() << " ids, method " << to_string(method));
      const MaskingSample s = masking.evaluate(method, Level::Heads, r.ids, r.target);
      if (method == Method::DePass) {
        depass_top4 += s.top_probability[3];  // ks[3] = 4
        depass_bottom4 += s.bottom_probability[3];
      }
      CHECK(s.method == method);
      CHECK(s.ks == ks);
      CHECK(s.scores.size() == static_cast<std::size_t>(L * H));
      CHECK(s.ranking.size() == s.scores.size());
      CHECK(s.p_clean == Approx(r.top1_prob).margin(std::is_same<TestType, float>::value ? 1e-4 : 1e-6));
      CHECK(s.top1_clean);
      CHECK(s.top_probability.front() == Approx(s.p_clean).epsilon(masking_epsilon<TestType>()));
      CHECK(s.bottom_probability.front() == Approx(s.p_clean).epsilon(masking_epsilon<TestType>()));
      CHECK(s.top_correct.front() == 1.0);
      const MaskedPrediction none = plain_prediction(no_attention, r.ids, r.target);
      CHECK(s.top_probability.back() == Approx(none.probability).epsilon(masking_epsilon<TestType>()));
      CHECK(s.bottom_probability.back() == Approx(none.probability).epsilon(masking_epsilon<TestType>()));
      CHECK(s.top_correct.back() == (none.correct ? 1.0 : 0.0));
    }
    MaskingOptions few;
    few.ks = {0, 1, 8};
    few.neuron_layers = {L - 1};
    const MaskingSample n = ComponentMasking<TestType>(model, few).evaluate(Method::DePass, Level::Neurons, r.ids, r.target);
    CHECK(n.top_probability.size() == 3);
    CHECK(n.top_probability.front() == Approx(n.p_clean).epsilon(masking_epsilon<TestType>()));
  }
  // The heads DePass ranks first carry the prediction, those it ranks last hardly: masking
  // 4 of 40 either way (a ranking read backwards would swap the two).
  CHECK(depass_top4 < 0.5 * depass_bottom4);
}

TEMPLATE_TEST_CASE("component masking refuses bad arguments, naming them", "[masking]", DEPASS_TEST_SCALARS) {
  using Catch::Matchers::Contains;
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  MaskingOptions options;
  options.batch = -1;
  CHECK_THROWS_WITH(ComponentMasking<TestType>(model, options), Contains("batch = -1 is out of range [0, inf) (0: automatic)"));
  options = {};
  options.neuron_layers = {1, 1};
  CHECK_THROWS_WITH(ComponentMasking<TestType>(model, options), Contains("lists layer 1 twice"));
  options.neuron_layers = {9};
  CHECK_THROWS_WITH(ComponentMasking<TestType>(model, options), Contains("layer 9 is out of range"));
  options = {};
  options.ks = {0, 41};
  CHECK_THROWS_WITH(ComponentMasking<TestType>(model, options).k_grid(Level::Heads), Contains("k = 41 is out of range [0, 40]"));
  options.ks = {2, 1};
  CHECK_THROWS_WITH(ComponentMasking<TestType>(model, options).k_grid(Level::Heads), Contains("strictly increasing"));
  const ComponentMasking<TestType> masking(model);
  const std::vector<int>& ids = test::kStoriesIds;
  CHECK_THROWS_WITH(masking.units(Level::Tokens), Contains("level 'tokens'"));
  CHECK_THROWS_WITH(masking.curves(Level::Heads, ids, 315, Vector<TestType>::Zero(3)), Contains("expected 40"));
  CHECK_THROWS_WITH(masking.evaluate(Method::DePass, Level::Heads, ids, 512), Contains("target 512 is out of range"));
  CHECK_THROWS_WITH(masking.predict(Level::Heads, ids, 315, {{40}}), Contains("unit 40 is out of range [0, 40)"));
  CHECK_THROWS_WITH(masking.evaluate(Method::Occlusion, Level::Heads, ids, 315), Contains("does not apply to heads"));
}
