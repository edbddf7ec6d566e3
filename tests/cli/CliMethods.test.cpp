// depass tokens / heads / neurons --method and --objective against the float64 reference
// implementations of the baselines (tools/reference/gradients.py, goldens
// tests/golden/gradients_stories260K.json): every token method, integrated gradients with
// both rules, zero and token baselines; atp (zero and mean ablation), norm and ablation for
// heads and neurons; the logit, logprob and contrast objectives. Plus several methods side
// by side (JSON, CSV, text, HTML) and the errors of bad method options.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "cli/CliSupport.hpp"
#include "support/GradientGoldens.hpp"
#include "support/TestSupport.hpp"

using namespace depass::test;

namespace {

/// The objective options of a golden case: --target, and --contrast or --objective logprob.
std::string objective_args(const nlohmann::json& c) {
  std::string args = " --position " + std::to_string(c["position"].get<int>()) + " --target " + std::to_string(c["target"].get<int>());
  if (c["objective"] == "contrast") args += " --contrast " + std::to_string(c["foil"].get<int>());
  if (c["objective"] == "logprob") args += " --objective logprob";
  return args;
}

/// The stories260K golden and the CLI arguments that select its model and ids.
struct MethodGolden {
  nlohmann::json golden = read_gradient_golden("stories260K");
  std::string base() const {
    return "tokens --model " + sh(gradient_model_path(golden)) + " --ids " + ids_arg(golden["ids"].get<std::vector<int>>()) +
           " --precision double --no-progress";
  }
  std::string command(const std::string& command) const {
    return command + base().substr(std::string("tokens").size());
  }
};

/// Relative error of a JSON list of numbers (the CLI's) against a golden list, padded with
/// zeros: the CLI reports every position, the reference the explained prefix.
double list_error(const nlohmann::json& ours, const nlohmann::json& golden) {
  Eigen::VectorXd o(static_cast<Eigen::Index>(ours.size()));
  for (std::size_t i = 0; i < ours.size(); ++i) o(static_cast<Eigen::Index>(i)) = ours[i].get<double>();
  if (golden.size() > ours.size()) return std::numeric_limits<double>::infinity();
  for (std::size_t i = golden.size(); i < ours.size(); ++i)
    if (ours[i].get<double>() != 0.0) return std::numeric_limits<double>::infinity();
  return relative_error(Eigen::RowVectorXd(o.head(static_cast<Eigen::Index>(golden.size())).transpose()), golden);
}

}  // namespace

TEST_CASE("depass tokens --method: every token-level baseline matches the reference (logit, logprob, contrast)",
          "[cli][methods][golden]") {
  DEPASS_REQUIRE_CLI();
  const MethodGolden g;
  DEPASS_REQUIRE_MODEL(model, g.golden["model"].get<std::string>());
  const std::vector<std::pair<std::string, std::string>> methods = {
      {"attention-last", "attention_last"}, {"attention-mean", "attention_mean"}, {"rollout", "rollout"},
      {"grad-norm", "grad_norm"},           {"input-x-grad", "input_x_grad"},     {"occlusion", "occlusion"}};
  for (const nlohmann::json& c : g.golden["cases"]) {
    for (const auto& m : methods) {
      INFO("objective " << c["objective"] << ", method " << m.first);
      const nlohmann::json doc = run_json(g.base() + objective_args(c) + " --method " + m.first);
      CHECK(doc["method"] == m.first);
      CHECK(doc["objective"] == c["objective"]);
      CHECK(doc["target"]["id"] == c["target"]);
      CHECK(list_error(doc["scores"], c["tokens"][m.second]) <= 1e-9);
      CHECK_FALSE(doc.contains("bias_score"));  // DePass's components only
      if (doc.contains("value")) CHECK(close(doc["value"], c["value"], 1e-9));
    }
  }
}

TEST_CASE("depass tokens --method ig: both rules, 4/16/100 steps, zero and token baselines, completeness gaps",
          "[cli][methods][golden]") {
  DEPASS_REQUIRE_CLI();
  const MethodGolden g;
  DEPASS_REQUIRE_MODEL(model, g.golden["model"].get<std::string>());
  const nlohmann::json& c = g.golden["cases"][2];  // the contrast case; the others are checked in the library tests
  for (const nlohmann::json& entry : c["tokens"]["ig"]) {
    std::string args = g.base() + objective_args(c) + " --method ig --steps " + std::to_string(entry["steps"].get<int>());
    args += entry["rule"] == "riemann" ? " --rule riemann" : " --rule gauss-legendre";
    // The reference's token baseline is the first id repeated; --baseline T keeps BOS and
    // puts T everywhere else, so T = the first id gives the same sequence.
    if (entry["baseline"] == "ids") args += " --baseline " + std::to_string(entry["baseline_ids"][0].get<int>());
    INFO(args);
    const nlohmann::json doc = run_json(args);
    CHECK(list_error(doc["scores"], entry["scores"]) <= 1e-9);
    CHECK(close(doc["baseline_value"], entry["baseline_value"], 1e-9));
    CHECK(close(doc["completeness_gap"], entry["completeness_gap"], 1e-8));
    CHECK(doc["ig"]["steps"] == entry["steps"]);
    CHECK(doc["ig"]["baseline"] == (entry["baseline"] == "ids" ? std::to_string(entry["baseline_ids"][0].get<int>()) : "zero"));
  }
}

TEST_CASE("depass heads and neurons --method atp|norm|ablation match the reference, --mean-ablation too",
          "[cli][methods][golden]") {
  DEPASS_REQUIRE_CLI();
  const MethodGolden g;
  DEPASS_REQUIRE_MODEL(model, g.golden["model"].get<std::string>());
  const std::vector<std::pair<std::string, std::string>> methods = {
      {"atp", "atp"}, {"atp --mean-ablation", "atp_mean"}, {"norm", "norm"}, {"ablation", "ablation"}};
  for (const nlohmann::json& c : g.golden["cases"]) {
    for (const auto& m : methods) {
      INFO("objective " << c["objective"] << ", method " << m.first);
      const nlohmann::json heads = run_json(g.command("heads") + objective_args(c) + " --method " + m.first);
      const nlohmann::json& want = c["heads"][m.second];
      REQUIRE(heads["layers"].size() == want.size());
      for (std::size_t l = 0; l < want.size(); ++l) {
        CHECK(heads["layers"][l]["layer"] == l);
        CHECK(list_error(heads["layers"][l]["heads"], want[l]) <= 1e-9);
        CHECK_FALSE(heads["layers"][l].contains("residual_score"));
      }
      const int layer = c["neurons"]["layer"];
      const nlohmann::json neurons =
          run_json(g.command("neurons") + objective_args(c) + " --layer " + std::to_string(layer) + " --method " + m.first);
      CHECK(neurons["layer"] == layer);
      CHECK(list_error(neurons["scores"], c["neurons"][m.second]) <= 1e-9);
      CHECK(neurons["method"] == m.first.substr(0, m.first.find(' ')));
      CHECK(neurons.value("ablation", "") == (m.second == "atp_mean" ? "mean" : m.second == "atp" ? "zero" : ""));
      // The ranked rows are the scores, highest first.
      const double top = neurons["top"][0]["score"];
      for (const nlohmann::json& s : neurons["scores"]) CHECK(s.get<double>() <= top);
    }
  }
  // --layer picks one row of the same table.
  const nlohmann::json& c = g.golden["cases"][0];
  const nlohmann::json one = run_json(g.command("heads") + objective_args(c) + " --method norm --layer -2");
  REQUIRE(one["layers"].size() == 1);
  CHECK(one["layers"][0]["layer"] == 3);
  CHECK(list_error(one["layers"][0]["heads"], c["heads"]["norm"][3]) <= 1e-9);
}

TEST_CASE("depass tokens --method A,B,...: methods side by side in JSON, CSV, text and HTML", "[cli][methods]") {
  DEPASS_REQUIRE_CLI();
  const MethodGolden g;
  DEPASS_REQUIRE_MODEL(model, g.golden["model"].get<std::string>());
  const nlohmann::json& c = g.golden["cases"][0];
  const std::string args = g.base() + objective_args(c) + " --method rollout,depass,occlusion";
  const nlohmann::json doc = run_json(args);
  // The first method fills the main table.
  CHECK(doc["method"] == "rollout");
  CHECK(list_error(doc["scores"], c["tokens"]["rollout"]) <= 1e-9);
  REQUIRE(doc["methods"].size() == 3);
  CHECK(doc["methods"][0]["method"] == "rollout");
  CHECK(list_error(doc["methods"][2]["scores"], c["tokens"]["occlusion"]) <= 1e-9);
  // DePass's entry: its token scores plus its bias add up to the logit (losslessness), and
  // equal a run of DePass alone.
  const nlohmann::json& dp = doc["methods"][1];
  CHECK(dp["method"] == "depass");
  double total = dp["bias_score"];
  for (const nlohmann::json& s : dp["scores"]) total += s.get<double>();
  CHECK(close(total, doc["target"]["logit"], 1e-10));
  const nlohmann::json alone = run_json(g.base() + objective_args(c));
  CHECK(alone["method"] == "depass");
  CHECK(list_error(dp["scores"], alone["scores"]) <= 1e-12);

  const RunResult csv = run_cli(args + " --format csv");
  REQUIRE(csv.code == 0);
  const auto rows = parse_csv(csv.out);
  REQUIRE(rows.size() > 2);
  CHECK(rows[0] == std::vector<std::string>{"component", "position", "token_id", "token_text", "score", "reachable",
                                            "score_rollout", "score_depass", "score_occlusion"});
  CHECK(close(std::stod(rows[2][8]), c["tokens"]["occlusion"][1].get<double>(), 1e-9));

  const RunResult text = run_cli(args + " --format text --color never");
  REQUIRE(text.code == 0);
  CHECK(text.out.find("methods side by side") != npos);
  CHECK(text.out.find("method occlusion, objective logit: f(x) ") != npos);

  TempDir dir;
  const RunResult html = run_cli(args + " --output " + sh(dir.path("compare.html")));
  REQUIRE(html.code == 0);
  const std::string page = read_file(dir.path("compare.html"));
  CHECK(page.find("Methods side by side") != npos);
  for (const char* m : {"<h3>rollout</h3>", "<h3>depass</h3>", "<h3>occlusion</h3>"}) CHECK(page.find(m) != npos);
}

TEST_CASE("depass --method: bad methods and options are refused with the reason", "[cli][methods][errors]") {
  DEPASS_REQUIRE_CLI();
  const MethodGolden g;
  DEPASS_REQUIRE_MODEL(model, g.golden["model"].get<std::string>());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"tokens --method saliency", "method 'saliency' is unknown (allowed: depass, attention-last"},
      {"tokens --method atp", "method 'atp' does not apply to tokens (allowed there: depass, attention-last"},
      {"heads --method ig", "method 'ig' does not apply to heads (allowed there: depass, atp, norm, ablation)"},
      {"neurons --method rollout", "method 'rollout' does not apply to neurons"},
      {"heads --method atp,norm", "--method takes one method for heads"},
      {"tokens --method ig,ig", "--method names 'ig' twice"},
      {"tokens --method ig --steps 0", "--steps must be in [1, 100000], got 0"},
      {"tokens --method rollout --steps 5", "--steps applies to --method ig only"},
      {"tokens --method ig --rule simpson", "--rule 'simpson' is unknown (allowed: riemann, gauss-legendre)"},
      {"tokens --method ig --baseline 99999", "--baseline 99999 is not a token id of this model"},
      {"neurons --method norm --mean-ablation", "--mean-ablation applies to --method atp only"},
      {"tokens --objective logprob", "--objective logprob does not apply to --method depass"},
      {"tokens --method ig --objective prob", "--objective 'prob' is unknown (allowed: logit, logprob)"},
      {"tokens --method ig --objective logprob --contrast 5", "--objective logprob and --contrast exclude each other"},
      {"tokens --method rollout --trace", "--trace applies to --method depass only"},
      {"heads --method atp --temperature 0.5", "--temperature applies to --method depass only"},
      {"tokens --method ig --target 338 --contrast 338", "the contrast token 338 is the target itself"}};
  for (const auto& bad : cases) {
    const RunResult r = run_cli(g.command(bad.first));
    INFO(bad.first << "\nstderr: " << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(bad.second) != npos);
  }
}
