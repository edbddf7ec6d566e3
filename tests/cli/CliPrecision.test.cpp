// depass --precision bf16: the CLI's bf16 mode against a float run of the same binary, what
// its documents report, and where it is refused (other methods and commands, and builds
// without oneDNN or without float).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "CliSupport.hpp"

using nlohmann::json;
using depass::test::close;
using depass::test::kPrompt;
using depass::test::kStories;
using depass::test::npos;

namespace {

/// Whether this CLI runs bf16; if it refuses (no oneDNN, or the double-only sanitizer
/// build), the refusal must be a usage error naming the reason.
bool cli_runs_bf16_precision(const std::string& model) {
  const depass::test::RunResult r = depass::test::run_cli("tokens --model " + model + " --ids 1,403 --precision bf16 --format json");
  if (r.code == 0) return true;
  INFO(r.err);
  CHECK(r.code == 2);
  CHECK((r.err.find("needs oneDNN") != npos || r.err.find("double only") != npos));
  return false;
}

}  // namespace

TEST_CASE("depass tokens --precision bf16 --compare-float: close to float, and says so", "[cli][bf16]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string m = "tokens --model " + depass::test::sh(stories) + " --prompt " + depass::test::sh(kPrompt);
  if (!cli_runs_bf16_precision(depass::test::sh(stories))) return;
  const depass::test::RunResult b = depass::test::run_cli(m + " --precision bf16 --compare-float --format json --threads 1");
  const depass::test::RunResult f = depass::test::run_cli(m + " --precision float --format json --threads 1");
  INFO(b.err << f.err);
  REQUIRE(b.code == 0);
  REQUIRE(f.code == 0);
  const json bf16 = json::parse(b.out), single = json::parse(f.out);
  CHECK(bf16["precision"] == "bf16");
  CHECK(!bf16["gemm_kernel"].get<std::string>().empty());
  CHECK(bf16["completeness"].size() == 2 * 5 + 2);  // before each block, the output, the normed output
  for (const json& c : bf16["completeness"]) CHECK(c["residual_max_abs"].get<double>() <= 2e-2 * c["state_max_abs"].get<double>());
  CHECK(bf16["target"]["id"] == single["target"]["id"]);
  // The reported comparison is with this binary's float run of the same prompt.
  const json& a = bf16["bf16_vs_float"];
  double max_error = 0, max_float = 0;
  for (std::size_t i = 0; i < single["scores"].size(); ++i) {
    max_error = std::max(max_error, std::abs(bf16["scores"][i].get<double>() - single["scores"][i].get<double>()));
    max_float = std::max(max_float, std::abs(single["scores"][i].get<double>()));
  }
  CHECK(close(a["max_abs_error"].get<double>(), max_error, 1e-6));
  CHECK(close(a["max_abs_float_score"].get<double>(), max_float, 1e-9));
  CHECK(a["relative_error"].get<double>() > 0);
  CHECK(a["relative_error"].get<double>() <= 2e-2);
  CHECK(a["top_k"] == 10);
  CHECK(a["top_k_overlap"].get<int>() >= 9);
  CHECK(a["spearman"].get<double>() >= 0.99);
  const depass::test::RunResult text = depass::test::run_cli(m + " --precision bf16 --compare-float --threads 1");
  CHECK(text.out.find("bf16 products (") != npos);
  CHECK(text.out.find("; vs float: max score error") != npos);
}

TEST_CASE("depass heads, neurons and modules --precision bf16 --compare-float report what the mode costs", "[cli][bf16]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  if (!cli_runs_bf16_precision(depass::test::sh(stories))) return;
  const std::string model = " --model " + depass::test::sh(stories) + " --prompt " + depass::test::sh(kPrompt) + " --threads 1";
  const auto run = [&](const std::string& args) {
    const depass::test::RunResult r = depass::test::run_cli(args + " --format json");
    INFO(args << "\n" << r.err);
    REQUIRE(r.code == 0);
    return json::parse(r.out);
  };
  // (command, the entries holding one decomposition each, their unit scores, units per entry)
  struct Case {
    std::string command, entries;
    std::function<std::vector<double>(const json&)> units;
  };
  const std::vector<Case> cases = {
      {"heads", "layers", [](const json& e) { return e["heads"].get<std::vector<double>>(); }},
      {"neurons --layer 1", "", [](const json& e) { return e["scores"].get<std::vector<double>>(); }},
      {"modules", "modules", [](const json& e) { return std::vector<double>{e["score"].get<double>()}; }}};
  for (const Case& c : cases) {
    INFO(c.command);
    const json bf16 = run(c.command + model + " --precision bf16 --compare-float");
    const json single = run(c.command + model + " --precision float");
    CHECK(bf16["precision"] == "bf16");
    CHECK(!bf16["gemm_kernel"].get<std::string>().empty());
    const json entries = c.entries.empty() ? json::array({bf16}) : bf16[c.entries];
    const json float_entries = c.entries.empty() ? json::array({single}) : single[c.entries];
    REQUIRE(entries.size() == float_entries.size());
    std::vector<double> test, reference;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      // Every boundary after the decomposition's start, each within the mode's error.
      CHECK(entries[i]["completeness"].size() >= 2);
      for (const json& b : entries[i]["completeness"])
        CHECK(b["residual_max_abs"].get<double>() <= 2e-2 * std::max(1.0, b["state_max_abs"].get<double>()));
      for (double v : c.units(entries[i])) test.push_back(v);
      for (double v : c.units(float_entries[i])) reference.push_back(v);
    }
    // The reported comparison is with this binary's float run of the same command.
    const json& a = bf16["bf16_vs_float"];
    double max_error = 0, max_float = 0;
    for (std::size_t i = 0; i < test.size(); ++i) {
      max_error = std::max(max_error, std::abs(test[i] - reference[i]));
      max_float = std::max(max_float, std::abs(reference[i]));
    }
    CHECK(a["units"] == test.size());
    CHECK(close(a["max_abs_error"].get<double>(), max_error, 1e-6));
    CHECK(close(a["max_abs_float_score"].get<double>(), max_float, 1e-9));
    CHECK(max_error > 0);
    CHECK(a["relative_error"].get<double>() <= 2e-2);
    CHECK(a["spearman"].get<double>() >= 0.99);
    const depass::test::RunResult text = depass::test::run_cli(c.command + model + " --precision bf16 --compare-float");
    CHECK(text.out.find("bf16 products (") != npos);
    CHECK(text.out.find("; vs float: max score error") != npos);
  }
}

TEST_CASE("depass --precision bf16 is refused where it does not apply", "[cli][bf16]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string model = " --model " + depass::test::sh(stories) + " --ids 1,403,407";
  // A CLI that cannot run bf16 at all (no oneDNN, or the double-only sanitizer build) may
  // refuse a bf16 request for that reason first.
  const bool runs_bf16 = cli_runs_bf16_precision(depass::test::sh(stories));
  const auto refused = [&](const std::string& args, const std::string& message, bool asks_bf16 = true) {
    const depass::test::RunResult r = depass::test::run_cli(args);
    INFO(args << "\n" << r.err);
    CHECK(r.code == 2);
    const bool generic = asks_bf16 && !runs_bf16 && (r.err.find("double only") != npos || r.err.find("needs oneDNN") != npos);
    CHECK((r.err.find(message) != npos || generic));
  };
  refused("tokens" + model + " --precision bf16 --method ig", "runs DePass's propagation only");
  refused("subspace" + model + " --precision bf16 --layer 1", "applies to the DePass propagation of tokens");
  refused("tokens" + model + " --compare-float", "give --precision bf16", false);
  refused("modules" + model + " --compare-float", "give --precision bf16", false);
  refused("heads" + model + " --method atp --compare-float", "give --precision bf16", false);
  refused("subspace" + model + " --layer 1 --compare-float", "--compare-float", false);
  refused("tokens" + model + " --precision half", "float, double or bf16", false);
  refused("evaluate --model " + depass::test::sh(stories) + " --data x.jsonl --protocol disrupt --methods ig --out d --precision bf16",
          "give --methods with depass");
}

TEST_CASE("DEPASS_FLOAT_GEMM: eigen and onednn agree in float, another value is refused", "[cli][precision]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string m = "tokens --model " + depass::test::sh(stories) + " --prompt " + depass::test::sh(kPrompt) + " --format json";
  const depass::test::RunResult bad = depass::test::run_cli(m, "DEPASS_FLOAT_GEMM=mkl");
  INFO(bad.err);
  CHECK(bad.code == 2);
  CHECK(bad.err.find("DEPASS_FLOAT_GEMM must be eigen or onednn, got 'mkl'") != npos);
  const depass::test::RunResult eigen = depass::test::run_cli(m + " --precision float", "DEPASS_FLOAT_GEMM=eigen");
  const depass::test::RunResult onednn = depass::test::run_cli(m + " --precision float", "DEPASS_FLOAT_GEMM=onednn");
  INFO(eigen.err << onednn.err);
  if (eigen.code != 0) {  // the sanitizer build's CLI has double only
    CHECK(eigen.code == 2);
    CHECK(eigen.err.find("double only") != npos);
    return;
  }
  if (onednn.code != 0) {  // a build without oneDNN (or the double-only sanitizer build) refuses the choice
    CHECK(onednn.code == 2);
    CHECK((onednn.err.find("needs oneDNN") != npos || onednn.err.find("double only") != npos));
    return;
  }
  const json a = json::parse(eigen.out), b = json::parse(onednn.out);
  REQUIRE(a["scores"].size() == b["scores"].size());
  double gap = 0, scale = 1;
  for (std::size_t i = 0; i < a["scores"].size(); ++i) {
    gap = std::max(gap, std::abs(a["scores"][i].get<double>() - b["scores"][i].get<double>()));
    scale = std::max(scale, std::abs(a["scores"][i].get<double>()));
  }
  CHECK(gap <= 1e-4 * scale);
}
