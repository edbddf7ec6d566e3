// depass evaluate: the protocols over data files, checked by invariants the evaluation code
// does not share: the sample score recomputed from the probabilities a sample reports (the
// rule of tools/faithfulness/metrics.py), mean curves recomputed from the samples, the
// 100% deletion equal to a prediction from BOS alone (a separate `depass tokens` run),
// masking nothing = the clean probability and masking every head from either end the same
// run; resuming (also after a torn last line), bad data lines, bad options.

#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "cli/CliSupport.hpp"
#include "support/TestSupport.hpp"

using namespace depass::test;

namespace {

std::string evaluate_base(const std::string& data) {
  return "evaluate --model " + sh(model_path(kStories)) + " --data " + sh(data) + " --no-progress";
}

std::string stories_data() { return source_dir() + "/data/faithfulness/stories260K.jsonl"; }

/// evaluate on the pronoun records (the subspace protocol's data).
std::string pronoun_base() { return evaluate_base(source_dir() + "/data/faithfulness/stories260K_pronoun.jsonl"); }

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

nlohmann::json read_json_file(const std::string& path) { return nlohmann::json::parse(read_file(path)); }

/// min(100, |p_clean - p| / p_clean * 100): tools/faithfulness/metrics.py's sample score.
double sample_score(double p_clean, double p) { return std::min(100.0, std::abs(p_clean - p) / p_clean * 100.0); }

}  // namespace

TEST_CASE("depass evaluate --protocol disrupt: samples, curves and areas follow the metric's rules", "[cli][evaluate]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string out = dir.path("run");
  const RunResult r = run_cli(evaluate_base(stories_data()) + " --protocol disrupt --methods depass,occlusion,attention-mean --limit 3 --out " + sh(out));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("disrupt area") != npos);
  const std::vector<nlohmann::json> samples = read_jsonl(out + "/samples.jsonl");
  REQUIRE(samples.size() == 9);
  const nlohmann::json results = read_json_file(out + "/results.json");
  CHECK(results["records"] == 3);
  CHECK(results["xs"] == nlohmann::json({10, 20, 30, 40, 50, 60, 70, 80, 90, 100}));
  for (const nlohmann::json& s : samples) {
    INFO(s.dump());
    REQUIRE_FALSE(s.contains("error"));
    const double p_clean = s["p_clean"];
    for (std::size_t i = 0; i < 10; ++i) {
      CHECK(close(s["disrupt"][i].get<double>(), sample_score(p_clean, s["disrupt_probability"][i].get<double>()), 1e-12));
      CHECK(close(s["recover"][i].get<double>(), sample_score(p_clean, s["recover_probability"][i].get<double>()), 1e-12));
    }
    // Deleting every candidate leaves BOS alone, and keeping every candidate changes nothing.
    const nlohmann::json bos = run_json("tokens --model " + sh(model_path(kStories)) + " --ids 1 --target " +
                                        std::to_string(s["target"].get<int>()) + " --no-progress");
    CHECK(close(s["disrupt_probability"][9].get<double>(), bos["target"]["prob"].get<double>(), 1e-9));
    CHECK(close(s["recover_probability"][9].get<double>(), p_clean, 1e-9));
    CHECK(s.contains("evidence_hit"));  // every record of this file has evidence
  }
  // Each method's mean curve and evidence accuracy from its samples; the area by the trapezoid rule.
  for (const nlohmann::json& m : results["results"]) {
    INFO(m["method"]);
    std::vector<double> mean(10, 0.0);
    long hits = 0;
    for (const nlohmann::json& s : samples)
      if (s["method"] == m["method"]) {
        for (std::size_t i = 0; i < 10; ++i) mean[i] += s["disrupt"][i].get<double>() / 3;
        hits += s["evidence_hit"].get<bool>() ? 1 : 0;
      }
    double area = 0;
    for (std::size_t i = 0; i + 1 < 10; ++i) area += 10 * (mean[i] + mean[i + 1]) / 2;
    for (std::size_t i = 0; i < 10; ++i) CHECK(close(m["curves"]["disrupt"]["mean"][i].get<double>(), mean[i], 1e-12));
    CHECK(close(m["curves"]["disrupt"]["area"].get<double>(), area / 90, 1e-12));
    CHECK(m["evidence_top1"]["hits"] == hits);
    CHECK(m["evidence_top1"]["counted"] == 3);
  }
  for (const char* file : {"results.csv", "report.html", "disrupt.svg", "recover.svg", "run.json"})
    CHECK(file_exists(out + "/" + file));
  CHECK(read_file(out + "/report.html").find("<polyline class=\"series\" data-name=\"occlusion\"") != npos);
  CHECK(read_file(out + "/disrupt.svg").find("xmlns=\"http://www.w3.org/2000/svg\"") != npos);
}

TEST_CASE("depass evaluate --resume: saved samples are kept, a torn last line is dropped, settings must match",
          "[cli][evaluate]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string out = dir.path("run");
  const std::string args = evaluate_base(stories_data()) + " --protocol recover --methods depass,grad-norm --out " + sh(out);
  REQUIRE(run_cli(args + " --limit 2").code == 0);
  const std::vector<nlohmann::json> first = read_jsonl(out + "/samples.jsonl");
  REQUIRE(first.size() == 4);
  // Without --resume the directory is refused.
  const RunResult again = run_cli(args + " --limit 2");
  CHECK(again.code == 2);
  CHECK(again.err.find("holds a run already") != npos);
  // An interrupted write, then a resumed, longer run.
  {
    std::ofstream torn(out + "/samples.jsonl", std::ios::app);
    torn << "{\"line\": 99, \"meth";
  }
  const RunResult resumed = run_cli(args + " --limit 3 --resume");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  const std::vector<nlohmann::json> all = read_jsonl(out + "/samples.jsonl");
  REQUIRE(all.size() == 6);
  for (std::size_t i = 0; i < 4; ++i) CHECK(all[i] == first[i]);  // not recomputed
  CHECK(read_json_file(out + "/results.json")["results"][0]["samples"] == 3);
  CHECK(read_json_file(out + "/results.json")["resumed_samples"] == 4);  // `seconds` does not cover these
  // Other settings are refused.
  const RunResult other = run_cli(evaluate_base(stories_data()) + " --protocol recover --methods depass --resume --out " + sh(out));
  CHECK(other.code == 2);
  CHECK(other.err.find("--resume: the run in --out was made with methods = [\"depass\",\"grad-norm\"]") != npos);
}

TEST_CASE("depass evaluate --protocol mask-heads: nothing masked is the clean run, every head masked from either end the same",
          "[cli][evaluate]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string out = dir.path("heads");
  const RunResult r = run_cli(evaluate_base(stories_data()) + " --protocol mask-heads --methods depass,atp --ks 0,1,4,40 --limit 2 --out " +
                              sh(out));
  INFO(r.err);
  REQUIRE(r.code == 0);
  const std::vector<nlohmann::json> samples = read_jsonl(out + "/samples.jsonl");
  REQUIRE(samples.size() == 4);
  for (const nlohmann::json& s : samples) {
    CHECK(close(s["top_probability"][0].get<double>(), s["p_clean"].get<double>(), 1e-12));
    CHECK(close(s["bottom_probability"][0].get<double>(), s["p_clean"].get<double>(), 1e-12));
    CHECK(close(s["top_probability"][3].get<double>(), s["bottom_probability"][3].get<double>(), 1e-12));  // all 40 heads
    CHECK(s["top_accuracy"][0] == (s["top1_clean"].get<bool>() ? 1.0 : 0.0));
  }
  const nlohmann::json results = read_json_file(out + "/results.json");
  CHECK(results["xs"] == nlohmann::json({0, 1, 4, 40}));
  CHECK(results["results"][1]["curves"].contains("bottom_accuracy"));
}

TEST_CASE("depass evaluate --protocol subspace: a probe trained on half the pronoun records ranks the tokens of the rest",
          "[cli][evaluate]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string out = dir.path("probe");
  const RunResult r = run_cli(pronoun_base() + " --protocol subspace --methods depass,grad-norm --limit 40 --probe-layer 4 --probe-site mlp --out " +
                              sh(out));
  INFO(r.err);
  REQUIRE(r.code == 0);
  const nlohmann::json results = read_json_file(out + "/results.json");
  CHECK(results["probe"]["train_records"] == 20);
  CHECK(results["records"] == 20);  // the evaluated ones
  CHECK(results["probe"]["boundary"] == "before mlp 4");
  // Before the last MLP the pronoun is decided: the probe separates its training records
  // (1.0 measured; 0.8 before attention 3). A sanity check of the training the library tests.
  CHECK(results["probe"]["train_accuracy"].get<double>() >= 0.9);
  const std::vector<nlohmann::json> samples = read_jsonl(out + "/samples.jsonl");
  CHECK(samples.size() == 40);  // 20 evaluated records x 2 methods
  for (const nlohmann::json& s : samples) {
    CHECK(s["line"].get<long>() > 20);  // never a training record
    CHECK(s.contains("label"));
  }
}

TEST_CASE("depass evaluate: bad data lines are reported with their numbers and the run goes on", "[cli][evaluate][errors]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string data = dir.path("data.jsonl");
  std::ifstream good(stories_data());
  std::string first;
  std::getline(good, first);
  std::ofstream(data) << (first + "\n" +                                   // 1: good
                            "{\"ids\": [1, 5, 7], \"target\": 3, \"colour\": 1}\n"  // 2: unknown field
                            "{\"ids\": [1, 99999], \"target\": 3}\n"                // 3: id out of range
                            "{\"ids\": [1, 5], \"target\": 512}\n"                  // 4: target outside the vocabulary
                            "{\"prompt\": \"\"}\n"                                  // 5: empty prompt
                            "not json\n"                                            // 6
                            "{\"prompt\": \"Once upon a time\", \"target\": 261}\n");  // 7: good, encoded

  const std::string out = dir.path("run");
  const RunResult r = run_cli(evaluate_base(data) + " --protocol disrupt --methods depass --out " + sh(out));
  INFO(r.err);
  CHECK(r.code == 1);
  for (const char* message : {"line 2: unknown field 'colour'", "line 3: field 'ids' entry 1 = 99999 is out of range",
                              "line 4: field 'target' = 512 is out of range", "line 5: field 'prompt' is empty", "line 6: not valid JSON"})
    CHECK(r.err.find(message) != npos);
  const nlohmann::json results = read_json_file(out + "/results.json");
  CHECK(results["records"] == 2);
  CHECK(results["data_errors"].size() == 5);
  const std::vector<nlohmann::json> samples = read_jsonl(out + "/samples.jsonl");
  REQUIRE(samples.size() == 2);
  CHECK(samples[1]["line"] == 7);
}

TEST_CASE("depass evaluate --mlp-split path: the sink option moves only BOS's share, which is never ranked",
          "[cli][evaluate]") {
  // The path rule is linear in the components (docs/method.md): with the sink on, BOS's
  // share at later positions goes to the bias component, and every other token's score is
  // unchanged. BOS is not a candidate, so both runs must rank and score identically, while
  // the paper's softmax split (where excluding the sink redistributes neurons) need not.
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string base = evaluate_base(stories_data()) + " --protocol disrupt --methods depass --limit 4 --mlp-split path";
  REQUIRE(run_cli(base + " --out " + sh(dir.path("sink"))).code == 0);
  REQUIRE(run_cli(base + " --no-bos-sink --out " + sh(dir.path("nosink"))).code == 0);
  const std::vector<nlohmann::json> a = read_jsonl(dir.path("sink") + "/samples.jsonl"), b = read_jsonl(dir.path("nosink") + "/samples.jsonl");
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == 4);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i]["top_ranked"] == b[i]["top_ranked"]);
    CHECK(a[i]["disrupt"] == b[i]["disrupt"]);
  }
  const nlohmann::json run = read_json_file(dir.path("sink") + "/run.json");
  CHECK(run["mlp_split"] == "path");
  CHECK_FALSE(run.contains("bos_sink"));  // the default is not recorded
  CHECK(read_json_file(dir.path("nosink") + "/run.json")["bos_sink"] == false);
  REQUIRE(run_cli(base + " --sink-ratio 4 --out " + sh(dir.path("sinks4"))).code == 0);
  CHECK(read_json_file(dir.path("sinks4") + "/run.json")["sink_ratio"] == 4.0);
  CHECK_FALSE(run.contains("sink_ratio"));
  const RunResult more_sinks = run_cli(base + " --sink-ratio 4 --resume --out " + sh(dir.path("sink")));
  CHECK(more_sinks.code == 2);
  // Resuming with another rule (here: the default) is refused.
  const RunResult other = run_cli(evaluate_base(stories_data()) + " --protocol disrupt --methods depass --limit 4 --resume --out " +
                                  sh(dir.path("sink")));
  CHECK(other.code == 2);
  CHECK(other.err.find("made with mlp_split = \"path\", this one asks for the default") != npos);
}

TEST_CASE("depass evaluate --keep-last: the last token is never ranked nor removed (the paper's protocol)", "[cli][evaluate]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string out = dir.path("run");
  const RunResult r = run_cli(evaluate_base(stories_data()) + " --protocol recover --methods depass,grad-norm --limit 3 --keep-last --out " + sh(out));
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::vector<std::vector<int>> ids;
  std::ifstream data(stories_data());
  for (std::string line; ids.size() < 3 && std::getline(data, line);) ids.push_back(nlohmann::json::parse(line)["ids"]);
  const std::vector<nlohmann::json> samples = read_jsonl(out + "/samples.jsonl");
  REQUIRE(samples.size() == 6);
  for (const nlohmann::json& s : samples) {
    INFO(s.dump());
    const std::vector<int>& seq = ids[static_cast<std::size_t>(s["line"].get<long>() - 1)];
    for (const nlohmann::json& position : s["top_ranked"]) CHECK(position.get<long>() != static_cast<long>(seq.size()) - 1);
    // Deleting every candidate leaves BOS and the last token: a separate two-token run.
    const nlohmann::json two = run_json("tokens --model " + sh(model_path(kStories)) + " --ids 1," + std::to_string(seq.back()) +
                                        " --target " + std::to_string(s["target"].get<int>()) + " --no-progress");
    CHECK(close(s["disrupt_probability"][9].get<double>(), two["target"]["prob"].get<double>(), 1e-9));
  }
  CHECK(read_json_file(out + "/run.json")["keep_last"] == true);
  const RunResult refused = run_cli(evaluate_base(stories_data()) + " --protocol mask-heads --keep-last --out " + sh(dir.path("x")));
  CHECK(refused.code == 2);
  CHECK(refused.err.find("--keep-last applies to disrupt and recover only") != npos);
}

TEST_CASE("depass evaluate: bad options are refused naming the problem", "[cli][evaluate][errors]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string base = evaluate_base(stories_data()) + " --out " + sh(dir.path("x"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --methods depass", "missing required option --protocol"},
      {" --protocol mask", "--protocol 'mask' is unknown (allowed: disrupt, recover, mask-heads, mask-neurons, subspace)"},
      {" --protocol disrupt --methods atp", "method 'atp' does not apply to tokens"},
      {" --protocol mask-heads --methods rollout", "method 'rollout' does not apply to heads"},
      {" --protocol subspace --methods rollout", "method 'rollout' does not apply to the subspace protocol"},
      {" --protocol disrupt --ks 1,2", "--ks applies to mask-heads and mask-neurons only"},
      {" --protocol mask-heads --percents 10", "--percents applies to disrupt, recover and subspace only"},
      {" --protocol disrupt --percents 0,50", "--percents: 0 is out of range [1, 100]"},
      {" --protocol disrupt --percents 50,20", "--percents must be strictly increasing"},
      {" --protocol disrupt --methods depass --steps 5", "--steps applies to --methods with ig only"},
      {" --protocol mask-neurons --layers 9", "--layers: layer 9 is out of range [0, 5)"},
      {" --protocol subspace --train-fraction 1", "--train-fraction must be in (0, 1)"},
      {" --protocol disrupt --limit 0", "--limit must be >= 1"},
      {" --protocol disrupt --methods occlusion --mlp-split path", "--mlp-split applies to --methods with depass only"},
      {" --protocol disrupt --mlp-split path --temperature 0.5", "--temperature applies to the softmax and proportional splits"},
      {" --protocol disrupt --mlp-split shapley", "--mlp-split 'shapley' is unknown (allowed: softmax, argmax, proportional, path)"}};
  for (const auto& bad : cases) {
    const RunResult r = run_cli(base + bad.first);
    INFO(bad.first << "\nstderr: " << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(bad.second) != npos);
  }
  const RunResult no_out = run_cli(evaluate_base(stories_data()) + " --protocol disrupt");
  CHECK(no_out.code == 2);
  CHECK(no_out.err.find("missing required option --out DIR") != npos);
}

namespace {

/// Candidate positions (BOS excluded) by score, highest first, ties by lower position: the
/// ranking rule of methods/FaithfulnessMetrics.hpp, here for a `depass tokens` document.
std::vector<long> ranked_positions(const nlohmann::json& scores) {
  std::vector<long> order;
  for (long i = 1; i < static_cast<long>(scores.size()); ++i) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](long a, long b) { return scores[a].get<double>() > scores[b].get<double>(); });
  order.resize(std::min<std::size_t>(order.size(), 10));
  return order;
}

/// The ids of the first record of the stories260K data file.
std::vector<int> first_record_ids() {
  std::ifstream data(stories_data());
  std::string line;
  std::getline(data, line);
  return nlohmann::json::parse(line)["ids"].get<std::vector<int>>();
}

}  // namespace

TEST_CASE("depass evaluate: --percents, --replace, --steps and --rule change what they name", "[cli][evaluate][options]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string out = dir.path("run");
  const RunResult r = run_cli(evaluate_base(stories_data()) + " --protocol disrupt --methods ig --steps 4 --rule riemann --limit 1 " +
                              "--percents 25,50,100 --replace 5 --out " + sh(out));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(read_json_file(out + "/results.json")["xs"] == nlohmann::json({25, 50, 100}));
  const std::vector<nlohmann::json> samples = read_jsonl(out + "/samples.jsonl");
  REQUIRE(samples.size() == 1);
  const nlohmann::json& s = samples[0];
  REQUIRE(s["disrupt_probability"].size() == 3);
  const std::vector<int> ids = first_record_ids();
  const std::string target = " --target " + std::to_string(s["target"].get<int>());
  // --replace 5: disrupting 100% puts id 5 at every position but BOS.
  std::vector<int> replaced(ids.size(), 5);
  replaced[0] = ids[0];
  const nlohmann::json all_replaced = run_json("tokens --model " + sh(model_path(kStories)) + " --ids " + ids_arg(replaced) + target + " --no-progress");
  CHECK(close(s["disrupt_probability"][2].get<double>(), all_replaced["target"]["prob"].get<double>(), 1e-9));
  // --steps 4 --rule riemann: the ranking is that of `tokens --method ig` with the same
  // settings, which differs from the default settings' (so an ignored flag would show).
  const std::string ig = "tokens --model " + sh(model_path(kStories)) + " --ids " + ids_arg(ids) + target + " --no-progress --method ig";
  const std::vector<long> four = ranked_positions(run_json(ig + " --steps 4 --rule riemann")["scores"]);
  const std::vector<long> fine = ranked_positions(run_json(ig)["scores"]);
  REQUIRE(four != fine);
  CHECK(s["top_ranked"].get<std::vector<long>>() == four);
}

TEST_CASE("depass evaluate --protocol mask-neurons --layers: masking every neuron of a layer from either end is the same run",
          "[cli][evaluate][options]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  std::vector<double> all_masked;
  for (const char* layer : {"0", "4"}) {
    const std::string out = dir.path(std::string("neurons") + layer);
    const RunResult r = run_cli(evaluate_base(stories_data()) + " --protocol mask-neurons --methods depass --ks 0,172 --layers " + layer +
                                " --limit 1 --out " + sh(out));
    INFO(r.err);
    REQUIRE(r.code == 0);
    const std::vector<nlohmann::json> samples = read_jsonl(out + "/samples.jsonl");
    REQUIRE(samples.size() == 1);
    const nlohmann::json& s = samples[0];
    CHECK(close(s["top_probability"][0].get<double>(), s["p_clean"].get<double>(), 1e-12));
    CHECK(close(s["top_probability"][1].get<double>(), s["bottom_probability"][1].get<double>(), 1e-12));  // the layer's 172
    all_masked.push_back(s["top_probability"][1].get<double>());
  }
  CHECK_FALSE(close(all_masked[0], all_masked[1], 1e-6));  // a different layer's neurons
}

TEST_CASE("depass evaluate --protocol subspace: --probe-site and --train-fraction place and size the probe", "[cli][evaluate][options]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  TempDir dir;
  const std::string out = dir.path("probe");
  const RunResult r = run_cli(pronoun_base() + " --protocol subspace --methods grad-norm --limit 40 --probe-layer 3 --probe-site attention" +
                              " --train-fraction 0.25 --out " + sh(out));
  INFO(r.err);
  REQUIRE(r.code == 0);
  const nlohmann::json results = read_json_file(out + "/results.json");
  CHECK(results["probe"]["boundary"] == "before attention 3");
  CHECK(results["probe"]["train_records"] == 10);
  CHECK(results["records"] == 30);
}

TEST_CASE("depass evaluate: --mlp-split, --temperature and --no-bos-sink reach DePass's scores", "[cli][evaluate][options]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, kStories);
  const std::vector<int> ids = first_record_ids();
  TempDir dir;
  const std::string tokens = "tokens --model " + sh(model_path(kStories)) + " --ids " + ids_arg(ids) + " --no-progress";
  for (const std::string options : {" --temperature 1 --no-bos-sink", " --mlp-split proportional"}) {
    INFO(options);
    const std::string out = dir.path("run" + std::to_string(options.size()));
    const RunResult r = run_cli(evaluate_base(stories_data()) + " --protocol disrupt --methods depass --limit 1" + options + " --out " + sh(out));
    INFO(r.err);
    REQUIRE(r.code == 0);
    const std::vector<nlohmann::json> samples = read_jsonl(out + "/samples.jsonl");
    REQUIRE(samples.size() == 1);
    // The same options in a `tokens` run rank the same way, and not as the default options do.
    const std::string target = " --target " + std::to_string(samples[0]["target"].get<int>());
    const std::vector<long> expected = ranked_positions(run_json(tokens + target + options)["scores"]);
    REQUIRE(expected != ranked_positions(run_json(tokens + target)["scores"]));
    CHECK(samples[0]["top_ranked"].get<std::vector<long>>() == expected);
  }
}
