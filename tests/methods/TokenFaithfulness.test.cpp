// The token-level disrupt / recover protocols (methods/TokenFaithfulness.hpp):
//   - a hand-made case: stories260K with every attention output zeroed predicts from the
//     last token alone, so deleting (or replacing) any other token changes nothing, and
//     deleting the last one does;
//   - runs on shipped records (data/faithfulness/stories260K.jsonl): the clean probability
//     is the float64 reference's `top1_prob`, recover-top 100% changes nothing, disrupt-top
//     100% leaves BOS alone, scores in [0, 100], the replacement variant keeps positions;
//   - the refusals.

#include <catch2/catch.hpp>
#include <depass/io/Load.hpp>
#include <depass/methods/CurveSummary.hpp>
#include <depass/methods/TokenFaithfulness.hpp>

#include <string>
#include <vector>

#include "support/FaithfulnessData.hpp"
#include "support/Goldens.hpp"
#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

/// A copy of `model` whose attention blocks output nothing (Wo and its bias zero).
template <typename Scalar>
Model<Scalar> without_attention(const Model<Scalar>& model) {
  Checkpoint<Scalar> c{model.config(), model.weights()};
  for (LayerWeights<Scalar>& w : c.weights.layers) {
    w.wo.setZero();
    w.bo.setZero();
  }
  return Model<Scalar>(std::move(c));
}

template <typename Scalar>
int top1_after(const Model<Scalar>& model, const std::vector<int>& ids) {
  Eigen::Index best = 0;
  model.forward(ids, {}, true).row(0).maxCoeff(&best);
  return static_cast<int>(best);
}

template <typename Scalar>
double token_zero_tolerance() {
  return std::is_same<Scalar, float>::value ? 1e-3 : 1e-9;  // sample scores are in percent
}

}  // namespace

TEMPLATE_TEST_CASE("deleting tokens the prediction does not use changes nothing", "[faithfulness]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType> model = without_attention(test::cached_model<TestType>(path));
  const std::vector<int>& ids = test::kStoriesIds;
  const int target = top1_after(model, ids);
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  Vector<TestType> last_worst(N), last_best(N);  // rank the last token last / first
  for (Eigen::Index i = 0; i < N; ++i) {
    last_worst(i) = static_cast<TestType>(N - i);
    last_best(i) = static_cast<TestType>(i);
  }
  for (int replacement : {-1, 0}) {
    TokenFaithfulnessOptions<TestType> options;
    options.replacement = replacement;
    const TokenFaithfulness<TestType> protocol(model, options);
    INFO("replacement " << replacement);
    const TokenCurveSample worst = protocol.curves(ids, target, last_worst);
    REQUIRE(worst.ok());
    REQUIRE(worst.disrupt.size() == 10);
    for (std::size_t i = 0; i + 1 < worst.disrupt.size(); ++i)  // below 100% the last token stays
      CHECK(worst.disrupt[i] <= token_zero_tolerance<TestType>());
    // At 100% the last token goes too: BOS alone (or BOS and replacements) predicts.
    CHECK(worst.disrupt.back() > 1.0);
    const TokenCurveSample best = protocol.curves(ids, target, last_best);
    for (double score : best.recover) CHECK(score <= token_zero_tolerance<TestType>());  // the last token is kept
    CHECK(best.disrupt.front() > 1.0);  // deleting it at 10% is seen
  }
  // Deleted at 100%: the prediction after BOS alone.
  const TokenFaithfulness<TestType> protocol(model);
  const TokenCurveSample worst = protocol.curves(ids, target, last_worst);
  const double p_bos = protocol.probability({ids[0]}, target);
  CHECK(worst.disrupt_probability.back() == p_bos);
  CHECK(worst.disrupt.back() == Approx(std::min(100.0, std::abs(worst.p_clean - p_bos) / worst.p_clean * 100)));
}

TEMPLATE_TEST_CASE("token curves on stories260K records", "[faithfulness]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const std::vector<test::FaithfulnessRecord> records = test::faithfulness_records("stories260K.jsonl", 3, 24);
  const std::vector<Method> methods = {Method::DePass, Method::AttentionLast, Method::InputXGrad, Method::Occlusion};
  const TokenFaithfulness<TestType> protocol(model);
  std::vector<CurveSummary> disrupt(methods.size(), CurveSummary::over(protocol.options().percents));
  for (const test::FaithfulnessRecord& r : records) {
    const std::vector<TokenCurveSample> samples = protocol.evaluate(r.ids, r.target, methods);
    REQUIRE(samples.size() == methods.size());
    const double p_bos = protocol.probability({r.ids[0]}, r.target);
    for (std::size_t m = 0; m < methods.size(); ++m) {
      const TokenCurveSample& s = samples[m];
      INFO("record with " << r.ids.size() << " ids, method " << to_string(methods[m]));
      REQUIRE(s.ok());
      CHECK(s.method == methods[m]);
      CHECK(s.p_clean == Approx(r.top1_prob).margin(std::is_same<TestType, float>::value ? 1e-4 : 1e-6));
      CHECK(s.ranking.size() == r.ids.size() - 1);
      CHECK(s.recover.back() == 0.0);  // recover-top 100% keeps every token
      CHECK(s.recover_probability.back() == s.p_clean);
      CHECK(s.disrupt_probability.back() == p_bos);
      for (std::size_t i = 0; i < s.disrupt.size(); ++i) {
        CHECK(s.disrupt[i] >= 0.0);
        CHECK(s.disrupt[i] <= 100.0);
        CHECK(s.recover[i] >= 0.0);
        CHECK(s.recover[i] <= 100.0);
      }
      disrupt[m].add(s.disrupt);
      // The same scores from outside give the same curves.
      const Vector<TestType> scores = Eigen::Map<const Eigen::VectorXd>(s.scores.data(), static_cast<Eigen::Index>(s.scores.size())).cast<TestType>();
      CHECK(protocol.curves(r.ids, r.target, scores).disrupt == s.disrupt);
    }
  }
  for (std::size_t m = 0; m < methods.size(); ++m) {
    CHECK(disrupt[m].samples() == 3);
    CHECK(disrupt[m].area() >= 0.0);
    CHECK(disrupt[m].area() <= 100.0);
  }
}

TEMPLATE_TEST_CASE("the replacement variant keeps the positions", "[faithfulness]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const std::vector<test::FaithfulnessRecord> records = test::faithfulness_records("stories260K.jsonl", 1, 24);
  const test::FaithfulnessRecord& r = records[0];
  TokenFaithfulnessOptions<TestType> options;
  options.replacement = 0;
  const TokenFaithfulness<TestType> protocol(model, options);
  const TokenCurveSample s = protocol.evaluate(r.ids, r.target, {Method::DePass})[0];
  REQUIRE(s.ok());
  std::vector<int> all_replaced(r.ids.size(), 0), bos_only(1, r.ids[0]);
  all_replaced[0] = r.ids[0];
  CHECK(s.disrupt_probability.back() == protocol.probability(all_replaced, r.target));
  CHECK(s.disrupt_probability.back() != protocol.probability(bos_only, r.target));
  CHECK(s.recover.back() == 0.0);
}

TEMPLATE_TEST_CASE("token faithfulness refuses bad arguments, naming them", "[faithfulness]", DEPASS_TEST_SCALARS) {
  using Catch::Matchers::Contains;
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  TokenFaithfulnessOptions<TestType> options;
  options.percents = {10, 10};
  CHECK_THROWS_WITH(TokenFaithfulness<TestType>(model, options), Contains("strictly increasing"));
  options.percents = {0};
  CHECK_THROWS_WITH(TokenFaithfulness<TestType>(model, options), Contains("percent 0 is out of range [1, 100]"));
  options.percents = {};
  CHECK_THROWS_WITH(TokenFaithfulness<TestType>(model, options), Contains("percents is empty"));
  options = {};
  options.replacement = 512;
  CHECK_THROWS_WITH(TokenFaithfulness<TestType>(model, options), Contains("replacement id 512 is out of range [0, 512)"));
  const TokenFaithfulness<TestType> protocol(model);
  const std::vector<int> bos = {1}, ids = {1, 403, 407}, bad = {1, 600};
  CHECK_THROWS_WITH(protocol.evaluate(bos, 5, {Method::DePass}), Contains("at least one more token"));
  CHECK_THROWS_WITH(protocol.evaluate(ids, 512, {Method::DePass}), Contains("target 512 is out of range"));
  CHECK_THROWS_WITH(protocol.evaluate(bad, 5, {Method::DePass}), Contains("token id 600"));
  CHECK_THROWS_WITH(protocol.evaluate(ids, 5, {Method::Atp}), Contains("does not apply to tokens"));
  CHECK_THROWS_WITH(protocol.curves(ids, 5, Vector<TestType>::Zero(2)), Contains("expected one per id (3)"));
}
