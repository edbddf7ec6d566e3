// Token-level baseline methods against the float64 reference implementations in
// tools/reference/gradients.py (goldens tests/golden/gradients_<model>.json): attention
// (last layer, mean over layers), rollout, gradient norm, input x gradient, integrated
// gradients (both rules, 4/16/100 steps, zero and token baselines, with their completeness
// gaps and baseline values), occlusion; IG's completeness gap shrinking with the steps;
// results independent of the batch (sequences per record).

#include <catch2/catch.hpp>
#include <depass/methods/TokenAttributor.hpp>

#include <string>
#include <type_traits>
#include <vector>

#include "support/GradientGoldens.hpp"
#include "support/TestSupport.hpp"

using namespace depass;
using test::method_tolerance;

namespace {


template <typename Scalar>
void check_ig(const TokenAttributor<Scalar>& methods, const Model<Scalar>& model, const std::vector<int>& ids,
              const Objective& objective, const nlohmann::json& entry) {
  IgOptions<Scalar> options;
  options.steps = entry["steps"];
  options.rule = entry["rule"] == "riemann" ? Quadrature::Midpoint : Quadrature::GaussLegendre;
  if (entry["baseline"] == "ids") options.baseline = model.embed(entry["baseline_ids"].get<std::vector<int>>());
  const Attribution<Scalar> a = methods.integrated_gradients(ids, objective, options);
  INFO("IG " << entry["rule"] << " " << options.steps << " steps, baseline " << entry["baseline"]);
  CHECK(test::relative_error(a.scores, entry["scores"]) <= method_tolerance<Scalar>());
  const double f_base = entry["baseline_value"], gap = entry["completeness_gap"];
  const double scale = std::max(1.0, std::abs(a.value - f_base));
  CHECK(std::abs(a.baseline_value - f_base) <= method_tolerance<Scalar>() * std::max(1.0, std::abs(f_base)));
  CHECK(std::abs(a.completeness_gap - gap) <= 10 * method_tolerance<Scalar>() * scale);
  CHECK(a.method == Method::IntegratedGradients);
}

template <typename Scalar>
void check_token_methods(const std::string& name) {
  const nlohmann::json golden = test::read_gradient_golden(name);
  const Model<Scalar> model(io::load_checkpoint<Scalar>(test::gradient_model_path(golden)));
  const TokenAttributor<Scalar> methods(model);
  const std::vector<int> ids = golden["ids"];
  for (const nlohmann::json& c : golden["cases"]) {
    const Objective objective = test::golden_objective(c);
    const nlohmann::json& want = c["tokens"];
    INFO(name << ", objective " << to_string(objective.kind) << " at " << objective.position);
    const std::vector<std::pair<std::string, Method>> simple = {
        {"attention_last", Method::AttentionLast}, {"attention_mean", Method::AttentionMean},
        {"rollout", Method::Rollout},             {"grad_norm", Method::GradNorm},
        {"input_x_grad", Method::InputXGrad},     {"occlusion", Method::Occlusion}};
    for (const auto& m : simple) {
      const Attribution<Scalar> a = methods.run(m.second, ids, objective);
      INFO("method " << m.first);
      CHECK(a.method == m.second);
      CHECK(a.level == Level::Tokens);
      CHECK(a.objective.target == objective.target);
      CHECK(a.scores.size() == static_cast<Eigen::Index>(ids.size()));
      CHECK(test::relative_error(a.scores, want[m.first]) <= method_tolerance<Scalar>());
    }
    for (const nlohmann::json& entry : want["ig"]) check_ig(methods, model, ids, objective, entry);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("Token-level methods match the reference on every family", "[methods][golden]", DEPASS_TEST_SCALARS) {
  for (const std::string& name : test::gradient_families()) check_token_methods<TestType>(name);
}

TEMPLATE_TEST_CASE("Token-level methods match the reference on stories260K and TinyStories-656K",
                   "[methods][golden][model]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(stories, "stories260K/stories260K.bin");
  DEPASS_REQUIRE_MODEL(tiny, "tinystories-656k/model.safetensors");
  check_token_methods<TestType>("stories260K");
  check_token_methods<TestType>("tinystories656k");
}

TEMPLATE_TEST_CASE("Integrated gradients' completeness gap shrinks with the steps", "[methods]", DEPASS_TEST_SCALARS) {
  // A token baseline keeps the path away from the zero state, where RMSNorm is singular:
  // there the integrand is smooth and Gauss-Legendre converges fast.
  const nlohmann::json golden = test::read_gradient_golden("llama");
  const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
  const TokenAttributor<TestType> methods(model);
  const std::vector<int> ids = golden["ids"];
  const Objective objective = test::golden_objective(golden["cases"][0]);
  for (const Quadrature rule : {Quadrature::Midpoint, Quadrature::GaussLegendre}) {
    std::vector<double> gaps;
    for (int steps : {2, 8, 32, 128}) {
      IgOptions<TestType> options;
      options.steps = steps;
      options.rule = rule;
      options.baseline = model.embed(std::vector<int>(ids.size(), ids[0]));
      gaps.push_back(std::abs(methods.integrated_gradients(ids, objective, options).completeness_gap));
    }
    INFO(to_string(rule) << ": gaps " << gaps[0] << " " << gaps[1] << " " << gaps[2] << " " << gaps[3]);
    CHECK(gaps[0] > gaps[1]);
    CHECK(gaps[1] > gaps[2]);
    CHECK(gaps[3] < 1e-3 * gaps[0]);
  }
}

TEST_CASE("The automatic batch keeps about 1024 rows in flight", "[methods]") {
  struct Case {
    Eigen::Index requested, n;
    int team;
    Eigen::Index per_record;
    int concurrent;
  };
  const Case cases[] = {
      {0, 7, 1, 16, 1},  // short prompts: the former fixed 16
      {0, 64, 1, 16, 1},
      {0, 128, 1, 8, 1},
      {0, 256, 1, 4, 1},
      {0, 300, 1, 3, 1},
      {0, 4096, 1, 1, 1},
      {0, 128, 2, 4, 2},  // two threads: two records at once, each half as tall
      {0, 512, 2, 1, 2},
      {0, 1000, 2, 1, 1},  // too long for two in flight: one at a time (its products use the threads)
      {0, 7, 64, 2, 64},
      {5, 4096, 2, 5, 1},  // an explicit batch is kept; records run at once only while they fit
      {3, 100, 2, 3, 2},
      {16, 128, 2, 16, 1},
  };
  for (const Case& c : cases) {
    INFO("batch " << c.requested << ", n = " << c.n << ", " << c.team << " threads");
    const detail::RecordPlan plan = detail::plan_records(c.requested, c.n, c.team);
    CHECK(plan.per_record == c.per_record);
    CHECK(plan.concurrent == c.concurrent);
  }
  CHECK(detail::plan_records(0, 128, 2).in_flight() == 8);
  CHECK_THROWS_WITH(detail::plan_records(-2, 8, 1),
                    Catch::Matchers::Contains("batch = -2 is out of range [0, inf) (0: automatic)"));
}

TEST_CASE("Concurrent records each run once and pass on the first error", "[methods]") {
  const detail::RecordPlan plan{3, 2};
  // Catch's assertions are not thread-safe: the records only write their own slots.
  std::vector<Eigen::Index> firsts(4, -1), counts(4, -1);
  std::vector<int> inner_threads(4, 0), seen(10, 0);
  {
    const test::ThreadCount two(2);
    detail::for_each_record(10, plan, [&](Eigen::Index record, Eigen::Index first, Eigen::Index count) {
      const auto r = static_cast<std::size_t>(record);
      firsts[r] = first;
      counts[r] = count;
      inner_threads[r] = threads();
      for (Eigen::Index s = first; s < first + count; ++s) ++seen[static_cast<std::size_t>(s)];
    });
    CHECK(threads() == 2);
    CHECK_THROWS_WITH(detail::for_each_record(10, plan,
                                              [](Eigen::Index record, Eigen::Index, Eigen::Index) {
                                                if (record == 2) throw std::invalid_argument("record 2 failed");
                                              }),
                      Catch::Matchers::Contains("record 2 failed"));
  }
  CHECK(firsts == std::vector<Eigen::Index>{0, 3, 6, 9});
  int calls = 0;
  detail::for_each_record(0, plan, [&](Eigen::Index, Eigen::Index, Eigen::Index) { ++calls; });
  CHECK(calls == 0);  // nothing to run: no record, no team of zero threads
  CHECK(counts == std::vector<Eigen::Index>{3, 3, 3, 1});
  CHECK(inner_threads == std::vector<int>(4, 1));  // one thread inside a concurrent record
  CHECK(seen == std::vector<int>(10, 1));
}

TEMPLATE_TEST_CASE("IG and occlusion do not depend on how many sequences share a record", "[methods]",
                   DEPASS_TEST_SCALARS) {
  // 100 positions: the automatic batch (10) differs from 3, 7 and 16, and 3 and 7 leave a
  // short last record for both the 12 path points and the 100 occluded copies. On two
  // threads the automatic plan runs two records of 5 at once, batch 3 three-row records
  // two at a time.
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType>& model = test::cached_model<TestType>(path);
  const TokenAttributor<TestType> methods(model);
  std::vector<int> ids{1};
  for (int i = 1; i < 100; ++i) ids.push_back(3 + (i * 37) % 500);
  const Objective objective = Objective::logit(99, 11);
  IgOptions<TestType> options;
  options.steps = 12;
  const Attribution<TestType> ig = methods.integrated_gradients(ids, objective, options);
  const Attribution<TestType> occlusion = methods.occlusion(ids, objective);
  const double tolerance = std::is_same<TestType, double>::value ? 1e-12 : 2e-5;
  for (const int thread_count : {1, 2}) {
    const test::ThreadCount scope(thread_count);
    for (const Eigen::Index batch : {0, 3, 7, 16}) {
      INFO(thread_count << " threads, batch " << batch);
      options.batch = batch;
      const Vector<TestType> ig_b = methods.integrated_gradients(ids, objective, options).scores;
      const Vector<TestType> occlusion_b = methods.occlusion(ids, objective, batch).scores;
      CHECK((ig_b - ig.scores).cwiseAbs().maxCoeff() <= tolerance * ig.scores.cwiseAbs().maxCoeff());
      CHECK((occlusion_b - occlusion.scores).cwiseAbs().maxCoeff() <= tolerance * occlusion.scores.cwiseAbs().maxCoeff());
    }
  }
  CHECK(ig.scores.cwiseAbs().maxCoeff() > 0);
  CHECK(occlusion.scores.cwiseAbs().maxCoeff() > 0);
}

TEMPLATE_TEST_CASE("Token-level methods refuse bad arguments", "[methods][errors]", DEPASS_TEST_SCALARS) {
  const nlohmann::json golden = test::read_gradient_golden("llama");
  const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
  const TokenAttributor<TestType> methods(model);
  const std::vector<int> ids = golden["ids"];
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(parse_method("saliency"), Contains("method 'saliency' is unknown (allowed: depass, attention-last"));
  CHECK(parse_method("input-x-grad") == Method::InputXGrad);
  CHECK_THROWS_WITH(methods.run(Method::Atp, ids, Objective::logit(N - 1, 3)),
                    Contains("method 'atp' does not apply to tokens (allowed there: depass, attention-last"));
  CHECK_THROWS_WITH(methods.run(parse_method("ablation"), ids, Objective::logit(N - 1, 3)), Contains("does not apply to tokens"));
  IgOptions<TestType> options;
  options.steps = 0;
  CHECK_THROWS_WITH(methods.integrated_gradients(ids, Objective::logit(N - 1, 3), options),
                    Contains("steps = 0 is out of range [1"));
  options.steps = 4;
  options.batch = -1;
  CHECK_THROWS_WITH(methods.integrated_gradients(ids, Objective::logit(N - 1, 3), options),
                    Contains("batch = -1 is out of range [0, inf) (0: automatic)"));
  CHECK_THROWS_WITH(methods.occlusion(ids, Objective::logit(N - 1, 3), -1), Contains("batch = -1"));
  options.batch = 0;
  options.baseline = Matrix<TestType>::Zero(N - 1, model.config().dim);
  CHECK_THROWS_WITH(methods.integrated_gradients(ids, Objective::logit(N - 1, 3), options), Contains("IG baseline is"));
  CHECK_THROWS_WITH(methods.grad_norm(ids, Objective::contrast(N - 1, 3, 3)), Contains("equals the target"));
  CHECK_THROWS_WITH(methods.occlusion(ids, Objective::logit(N, 3)), Contains("position " + std::to_string(N)));
  CHECK_THROWS_WITH(methods.rollout({}, Objective::logit(0, 3)), Contains("empty"));
}

TEMPLATE_TEST_CASE("Token-level DePass shares sum to the logit and to the logit difference", "[methods]", DEPASS_TEST_SCALARS) {
  for (const std::string name : {"llama", "gpt2"}) {
    const nlohmann::json golden = test::read_gradient_golden(name);
    const Model<TestType> model(io::load_checkpoint<TestType>(test::gradient_model_path(golden)));
    const TokenAttributor<TestType> methods(model);
    const std::vector<int> ids = golden["ids"];
    for (const nlohmann::json& c : golden["cases"]) {
      const Objective objective = test::golden_objective(c);
      INFO(name << ", objective " << to_string(objective.kind));
      if (objective.kind == ObjectiveKind::LogProb) {
        CHECK_THROWS_WITH(methods.run(Method::DePass, ids, objective), Catch::Matchers::Contains("not decomposed"));
        continue;
      }
      const Attribution<TestType> a = methods.run(Method::DePass, ids, objective);
      double total = static_cast<double>(a.scores.sum());
      for (double e : a.extra_scores) total += e;
      const double value = c["value"];  // the reference's f(x)
      CHECK(a.extra_labels.back() == "bias");
      CHECK(std::abs(total - value) <= (std::is_same<TestType, float>::value ? 1e-4 : 1e-9) * std::max(1.0, std::abs(value)));
      // DePass reads the whole sequence; a later token has no share (causal mask).
      if (objective.position + 1 < static_cast<Eigen::Index>(ids.size())) CHECK(a.scores(objective.position + 1) == 0);
    }
  }
}
