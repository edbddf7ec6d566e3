// The token-level faithfulness rules against the hand-worked cases of the reference
// tools/faithfulness/metrics.py (tests/golden/faithfulness_metrics.json): sample scores,
// k(p), the ranking (ties, an ignored BOS score), disrupt / recover ids (delete and replace),
// the mean curve and its area, top-1 evidence accuracy; and the refusals.

#include <catch2/catch.hpp>
#include <depass/methods/CurveSummary.hpp>
#include <depass/methods/EvidenceAccuracy.hpp>
#include <depass/methods/FaithfulnessMetrics.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/Goldens.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

template <typename Scalar>
Vector<Scalar> metric_scores(const std::vector<double>& values) {
  Vector<Scalar> v(static_cast<Eigen::Index>(values.size()));
  for (std::size_t i = 0; i < values.size(); ++i) v(static_cast<Eigen::Index>(i)) = static_cast<Scalar>(values[i]);
  return v;
}

/// The reference's selection cases ([p, k, selected, disrupt ids, recover ids]) and
/// replace cases ([p, id, disrupt ids, recover ids]) against a ranking of ids.
void check_selections(const std::vector<int>& ids, const std::vector<long>& ranked, const nlohmann::json& cases,
                      const nlohmann::json& replace_cases, bool keep_last) {
  for (const nlohmann::json& c : cases) {
    const int p = c[0];
    INFO("p = " << p << ", keep_last " << keep_last);
    CHECK(faithfulness::k_for(p, static_cast<long>(ranked.size())) == c[1].get<long>());
    CHECK(faithfulness::selected(ranked, p) == c[2].get<std::vector<long>>());
    CHECK(faithfulness::disrupt_ids(ids, ranked, p) == c[3].get<std::vector<int>>());
    CHECK(faithfulness::recover_ids(ids, ranked, p, -1, keep_last) == c[4].get<std::vector<int>>());
  }
  for (const nlohmann::json& c : replace_cases) {
    CHECK(faithfulness::disrupt_ids(ids, ranked, c[0], c[1]) == c[2].get<std::vector<int>>());
    CHECK(faithfulness::recover_ids(ids, ranked, c[0], c[1], keep_last) == c[3].get<std::vector<int>>());
  }
}

}  // namespace

TEST_CASE("faithfulness sample scores and k(p) match the reference's hand-worked cases", "[faithfulness]") {
  const nlohmann::json g = test::read_golden("faithfulness_metrics.json");
  REQUIRE(g["score_cases"].size() == 6);
  for (const nlohmann::json& c : g["score_cases"]) {
    INFO("p_clean " << c[0] << ", p_new " << c[1]);
    CHECK(faithfulness::sample_score(c[0], c[1]) == Approx(c[2].get<double>()).margin(1e-12));
  }
  REQUIRE(g["k_cases"].size() == 10);
  for (const nlohmann::json& c : g["k_cases"]) {
    INFO("p " << c[0] << ", M " << c[1]);
    CHECK(faithfulness::k_for(c[0], c[1]) == c[2].get<long>());
  }
  CHECK(faithfulness::default_percents() == g["percents"].get<std::vector<int>>());
}

TEMPLATE_TEST_CASE("faithfulness ranking, disrupt and recover ids match the reference", "[faithfulness]",
                   DEPASS_TEST_SCALARS) {
  const nlohmann::json g = test::read_golden("faithfulness_metrics.json");
  const std::vector<int> ids = g["ids"];
  const Vector<TestType> scores = metric_scores<TestType>(g["scores"]);
  const std::vector<long> ranked = faithfulness::ranking(scores);
  CHECK(ranked == (std::vector<long>{2, 4, 5, 1, 3}));  // metrics.py's comment: tie 2/4, BOS ignored
  REQUIRE(g["selection_cases"].size() == 6);
  check_selections(ids, ranked, g["selection_cases"], g["replace_cases"], false);
}

TEMPLATE_TEST_CASE("faithfulness with keep_last (the paper's protocol) matches the reference", "[faithfulness]",
                   DEPASS_TEST_SCALARS) {
  const nlohmann::json g = test::read_golden("faithfulness_metrics.json");
  const std::vector<int> ids = g["ids"];
  const std::vector<long> ranked = faithfulness::ranking(metric_scores<TestType>(g["scores"]), true);
  CHECK(ranked == (std::vector<long>{2, 4, 1, 3}));  // the last position (5) is no candidate
  REQUIRE(g["keep_last_cases"].size() == 3);
  check_selections(ids, ranked, g["keep_last_cases"], g["keep_last_replace_cases"], true);
  EvidenceAccuracy plain, paper(true);
  for (const nlohmann::json& c : g["keep_last_evidence"]) {
    plain.add(metric_scores<TestType>(c[0]), c[1].get<std::vector<long>>());
    paper.add(metric_scores<TestType>(c[0]), c[1].get<std::vector<long>>());
  }
  CHECK(plain.accuracy() == 0.0);
  CHECK(paper.accuracy() == Approx(g["keep_last_evidence_accuracy"].get<double>()).epsilon(1e-12));
}

TEMPLATE_TEST_CASE("faithfulness top-1 evidence accuracy matches the reference", "[faithfulness]", DEPASS_TEST_SCALARS) {
  const nlohmann::json g = test::read_golden("faithfulness_metrics.json");
  EvidenceAccuracy accuracy;
  CHECK(std::isnan(accuracy.accuracy()));  // no sample with evidence yet
  for (const nlohmann::json& c : g["evidence_samples"])
    accuracy.add(metric_scores<TestType>(c[0]), c[1].get<std::vector<long>>());
  CHECK(accuracy.counted() == 3);
  CHECK(accuracy.hits() == 2);
  CHECK(accuracy.accuracy() == Approx(g["evidence_accuracy"].get<double>()).epsilon(1e-12));
  EvidenceAccuracy from_results;  // scores as TokenCurveSample holds them
  for (const nlohmann::json& c : g["evidence_samples"])
    from_results.add(c[0].get<std::vector<double>>(), c[1].get<std::vector<long>>());
  CHECK(from_results.hits() == 2);
  CHECK(from_results.counted() == 3);
}

TEST_CASE("faithfulness curves average the samples and their area matches the reference", "[faithfulness]") {
  const nlohmann::json g = test::read_golden("faithfulness_metrics.json");
  CurveSummary summary = CurveSummary::over(g["percents"].get<std::vector<int>>());
  CHECK(std::isnan(summary.area()));
  for (const nlohmann::json& s : g["curve_samples"]) summary.add(s.get<std::vector<double>>());
  CHECK(summary.samples() == 2);
  const std::vector<double> want = g["curve_mean"], mean = summary.mean();
  REQUIRE(mean.size() == want.size());
  for (std::size_t i = 0; i < mean.size(); ++i) CHECK(mean[i] == Approx(want[i]).epsilon(1e-12));
  CHECK(summary.area() == Approx(g["auc_mean"].get<double>()).epsilon(1e-12));
  CurveSummary flat = CurveSummary::over(g["percents"].get<std::vector<int>>());
  flat.add(g["flat"].get<std::vector<double>>());
  CHECK(flat.area() == Approx(g["auc_flat"].get<double>()).epsilon(1e-12));
}

TEST_CASE("faithfulness metrics refuse bad arguments, naming them", "[faithfulness]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(faithfulness::k_for(0, 5), Contains("percent 0 is out of range [1, 100]"));
  CHECK_THROWS_WITH(faithfulness::k_for(101, 5), Contains("percent 101"));
  CHECK_THROWS_WITH(faithfulness::sample_score(0.0, 0.5), Contains("p_clean"));
  CHECK_THROWS_WITH(faithfulness::sample_score(0.5, std::nan("")), Contains("p_new"));
  Eigen::VectorXd scores(3);
  scores << 0.0, std::numeric_limits<double>::quiet_NaN(), 1.0;
  CHECK_THROWS_WITH(faithfulness::ranking(scores), Contains("position 1 is NaN"));
  scores(1) = 0.5;
  scores(0) = std::numeric_limits<double>::quiet_NaN();  // BOS is not ranked, so not checked
  CHECK(faithfulness::ranking(scores) == (std::vector<long>{2, 1}));
  CHECK_THROWS_WITH(faithfulness::top1_hit(Eigen::VectorXd::Zero(1), {1}), Contains("no candidate"));
  CHECK_THROWS_WITH(CurveSummary(std::vector<double>{}), Contains("xs is empty"));
  const std::vector<double> repeated = {1, 1};
  CHECK_THROWS_WITH(CurveSummary(repeated), Contains("strictly increasing"));
  CurveSummary summary(std::vector<double>{1.0, 2.0});
  CHECK_THROWS_WITH(summary.add({1.0}), Contains("expected 2"));
  const std::vector<double> infinite = {1.0, std::numeric_limits<double>::infinity()};
  CHECK_THROWS_WITH(summary.add(infinite), Contains("not finite"));
  CHECK(summary.samples() == 0);
}
