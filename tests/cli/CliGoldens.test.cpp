// The depass CLI's numbers against the independent float64 reference (the option goldens
// tests/golden/options_<model>.json written by tools/reference/make_option_goldens.py),
// not against the library in-process: each command runs once or more as a child process
// with --format json on the small checkpoints of tests/data/families (and, when the
// models are present, stories260K), and its scores are compared with the golden case
// that runs the same decomposition.

#include <catch2/catch.hpp>
#include <depass/output/Npy.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "CliSupport.hpp"
#include "support/Goldens.hpp"
#include "support/TestSupport.hpp"

using nlohmann::json;

/// Like DEPASS_REQUIRE_CLI, but reported as skipped (exit code 77), not as passed, when
/// the CLI was not built into this test's set-up.
#define REQUIRE_BUILT_CLI()                                                                          \
  if (::depass::test::cli_path().empty() || !::depass::test::file_exists(::depass::test::cli_path())) { \
    ::depass::test::skip_test_case("the depass CLI is not built (" + ::depass::test::cli_path() + ")");  \
    return;                                                                                          \
  }                                                                                                  \
  static_cast<void>(0)

namespace {

json read_option_golden(const std::string& name) { return depass::test::read_golden("options_" + name + ".json"); }

const json& golden_case(const json& golden, const std::string& name) {
  for (const json& c : golden.at("cases"))
    if (c.at("name") == name) return c;
  FAIL("no case '" << name << "' in the golden file of " << golden.at("model"));
  return golden;
}

std::string family_dir(const json& golden) {
  return depass::test::source_dir() + "/tests/data/" + golden.at("model").get<std::string>();
}

std::string golden_ids_arg(const json& ids) { return depass::test::ids_arg(ids.get<std::vector<int>>()); }

json run_golden_json(const std::string& args) {
  // One thread unless the test asks for another count (an option given twice is refused).
  const bool threads = args.find("--threads") != std::string::npos;
  return depass::test::run_json(args + (threads ? "" : " --threads 1"));
}

/// |actual - expected| within tol relative to scale (the readout's largest magnitude).
void check_close(double actual, double expected, double scale, const std::string& what, double tol = 1e-8) {
  INFO(what << ": CLI " << actual << ", reference " << expected);
  CHECK(std::abs(actual - expected) <= tol * std::max(1.0, scale));
}

double scale_of(const json& readout) {
  double s = std::abs(readout.at("logit").get<double>());
  for (double v : readout.at("scores")) s = std::max(s, std::abs(v));
  return s;
}

/// Options of a golden case as CLI flags.
std::string split_flags(const json& c) {
  const json& o = c.at("options");
  const std::string split = o.at("split");
  std::string f = " --mlp-split " + split;
  if (split == "softmax" || split == "proportional") {  // the others have no temperature (refused)
    char t[64];
    std::snprintf(t, sizeof t, "%.17g", o.at("temperature").get<double>());
    f += " --temperature " + std::string(t);
  }
  if (!o.at("bos_sink").get<bool>()) f += " --no-bos-sink";
  if (o.value("sink_ratio", 0.0) > 0) {
    char r[64];
    std::snprintf(r, sizeof r, "%.17g", o.at("sink_ratio").get<double>());
    f += " --sink-ratio " + std::string(r);
  }
  if (o.at("chunk_size").get<long>() > 0) f += " --chunk-size " + std::to_string(o.at("chunk_size").get<long>());
  return f;
}

/// `depass tokens` for one readout of a token-level case: scores, positions, bias, chunk residual.
void check_tokens_command(const std::string& model, const json& golden, const json& c, std::size_t readout,
                          const std::string& extra = "", double tol = 1e-8) {
  const json& r = c.at("readouts").at(readout);
  const json& ids = golden.at("prompts").at(0);
  INFO("tokens: " << c.at("name").get<std::string>() << ", readout " << readout << extra);
  const json doc = run_golden_json("tokens --model " + depass::test::sh(model) + " --ids " + golden_ids_arg(ids) + " --position " +
                            std::to_string(r.at("position").get<int>()) + " --target " +
                            std::to_string(r.at("target").get<int>()) + split_flags(c) + extra);
  const double scale = scale_of(r);
  CHECK(doc.at("position") == r.at("position"));
  CHECK(doc.at("target").at("id") == r.at("target"));
  check_close(doc.at("target").at("logit"), r.at("logit"), scale, "target logit", tol);
  const std::vector<double> expected = r.at("scores");
  REQUIRE(doc.at("scores").size() == ids.size());
  for (std::size_t m = 0; m < ids.size(); ++m)
    check_close(doc.at("scores")[m], expected[m], scale, "token " + std::to_string(m), tol);
  if (expected.size() > ids.size())  // learned positions: the member after the tokens
    check_close(doc.at("position_score"), expected[ids.size()], scale, "position score", tol);
  else
    CHECK_FALSE(doc.contains("position_score"));
  check_close(doc.at("bias_score"), r.at("bias"), scale, "bias score", tol);
  if (r.contains("chunk_residual")) {
    check_close(doc.at("chunk_residual_score"), r.at("chunk_residual"), scale, "chunk residual score", tol);
    CHECK(doc.at("chunks") == c.at("chunks"));
  }
}

std::string write_npy(const depass::test::TempDir& dir, const std::string& name, const Eigen::MatrixXd& m) {
  const std::string path = dir.path(name);
  depass::output::save_npy(path, depass::output::NpyArray::from_matrix(m));
  return path;
}

Eigen::MatrixXd matrix(const json& rows) {
  Eigen::MatrixXd m(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(rows.at(0).size()));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      m(i, j) = rows[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)].get<double>();
  return m;
}

}  // namespace

TEST_CASE("CLI goldens: depass tokens (temperature, splits, sink, position, target, chunks, precision)", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json gpt2 = read_option_golden("gpt2"), qwen2 = read_option_golden("qwen2"), llama = read_option_golden("llama");
  check_tokens_command(family_dir(gpt2), gpt2, golden_case(gpt2, "tokens softmax T=0.05"), 1);
  check_tokens_command(family_dir(gpt2), gpt2, golden_case(gpt2, "tokens argmax no sink"), 0);
  check_tokens_command(family_dir(gpt2), gpt2, golden_case(gpt2, "tokens chunk 3"), 2);
  check_tokens_command(family_dir(qwen2), qwen2, golden_case(qwen2, "tokens proportional"), 1);
#ifndef DEPASS_TEST_SANITIZED  // the sanitizer build's CLI has double only (docs/robustness.md)
  check_tokens_command(family_dir(llama), llama, golden_case(llama, "tokens softmax T=1"), 0, " --precision float", 2e-4);
#endif
}

TEST_CASE("CLI goldens: depass tokens on stories260K", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json golden = read_option_golden("stories260K");
  DEPASS_REQUIRE_MODEL(path, golden.at("model").get<std::string>());
  check_tokens_command(path, golden, golden_case(golden, "tokens softmax T=0.1"), 3);
  check_tokens_command(path, golden, golden_case(golden, "tokens chunk 7"), 0);
  // Sinks from the attention (positions 6 and 7 in later layers), whole and chunked.
  check_tokens_command(path, golden, golden_case(golden, "tokens path attention sinks"), 1);
  check_tokens_command(path, golden, golden_case(golden, "tokens argmax attention sinks no bos sink"), 0);
  check_tokens_command(path, golden, golden_case(golden, "tokens chunk 3 path attention sinks"), 1);
}

TEST_CASE("CLI goldens: depass modules", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json golden = read_option_golden("gpt2");
  const json doc = run_golden_json("modules --model " + depass::test::sh(family_dir(golden)) + " --ids " +
                            golden_ids_arg(golden.at("prompts").at(0)));
  REQUIRE(doc.at("modules").size() == 4);
  for (const json& entry : doc.at("modules")) {
    const std::string name = "module(" + std::to_string(entry.at("layer").get<int>()) + ", " +
                             entry.at("site").get<std::string>() + ")";
    const json& r = golden_case(golden, name).at("readouts").at(0);  // last position, top-1: the CLI defaults
    INFO(name);
    CHECK(doc.at("target").at("id") == r.at("target"));
    const double scale = scale_of(r);
    check_close(entry.at("residual_score"), r.at("scores")[0], scale, "residual");
    check_close(entry.at("score"), r.at("scores")[1], scale, "module output");
    check_close(entry.at("bias_score"), r.at("bias"), scale, "bias");
  }
}

TEST_CASE("CLI goldens: depass heads", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json golden = read_option_golden("gpt2");
  const json doc = run_golden_json("heads --model " + depass::test::sh(family_dir(golden)) + " --ids " +
                            golden_ids_arg(golden.at("prompts").at(0)));
  REQUIRE(doc.at("layers").size() == 2);
  for (const json& layer : doc.at("layers")) {
    const json& r = golden_case(golden, "heads(" + std::to_string(layer.at("layer").get<int>()) + ")").at("readouts").at(0);
    INFO("layer " << layer.at("layer"));
    const double scale = scale_of(r);
    check_close(layer.at("residual_score"), r.at("scores")[0], scale, "residual");
    REQUIRE(layer.at("heads").size() + 1 == r.at("scores").size());
    for (std::size_t h = 0; h < layer.at("heads").size(); ++h)
      check_close(layer.at("heads")[h], r.at("scores")[h + 1], scale, "head " + std::to_string(h));
    check_close(layer.at("bias_score"), r.at("bias"), scale, "bias");
  }
}

TEST_CASE("CLI goldens: depass neurons", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json golden = read_option_golden("gpt2");
  const json& r = golden_case(golden, "neurons(1, all)").at("readouts").at(0);
  const json doc = run_golden_json("neurons --model " + depass::test::sh(family_dir(golden)) + " --ids " +
                            golden_ids_arg(golden.at("prompts").at(0)) + " --layer 1 --order abs --top 3");
  const std::vector<double> expected = r.at("scores");  // residual, neurons 0..I-1, others
  const std::size_t I = expected.size() - 2;
  REQUIRE(doc.at("scores").size() == I);
  const double scale = scale_of(r);
  check_close(doc.at("residual_score"), expected[0], scale, "residual");
  for (std::size_t k = 0; k < I; ++k) check_close(doc.at("scores")[k], expected[k + 1], scale, "neuron " + std::to_string(k));
  check_close(doc.at("other_score"), expected[I + 1], scale, "other neurons");
  check_close(doc.at("bias_score"), r.at("bias"), scale, "bias (the down-projection bias)");
  // --order abs --top 3: the three largest |score| in the reference.
  std::vector<std::size_t> order(I);
  for (std::size_t k = 0; k < I; ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return std::abs(expected[a + 1]) > std::abs(expected[b + 1]); });
  REQUIRE(doc.at("top").size() == 3);
  for (std::size_t i = 0; i < 3; ++i) CHECK(doc.at("top")[i].at("neuron") == order[i]);
}

TEST_CASE("CLI goldens: depass subspace (bases and projections)", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json golden = read_option_golden("gpt2");
  depass::test::TempDir dir;
  const json& bases = golden_case(golden, "subspace bases before_mlp(1)");
  const json& projections = golden_case(golden, "subspace projections before_attention(1)");
  std::vector<std::pair<const json*, std::string>> runs;
  std::string flags = " --layer 1 --site mlp";
  for (int i : bases.at("init").at("bases"))
    flags += " --basis " + depass::test::sh(write_npy(dir, "basis" + std::to_string(i) + ".npy",
                                                      matrix(golden.at("bases").at(static_cast<std::size_t>(i)))));
  runs.emplace_back(&bases, flags);
  flags = " --layer 1 --site attention --projection";
  for (int i : projections.at("init").at("projections")) {
    const json& p = golden.at("projections").at(static_cast<std::size_t>(i));
    const Eigen::MatrixXd P = matrix(p.at("left")) * matrix(p.at("right")).transpose();
    flags += " --basis " + depass::test::sh(write_npy(dir, "projection" + std::to_string(i) + ".npy", P));
  }
  runs.emplace_back(&projections, flags);
  for (const auto& [c, run_flags] : runs) {
    INFO(c->at("name").get<std::string>());
    const json& r = c->at("readouts").at(0);
    const json doc = run_golden_json("subspace --model " + depass::test::sh(family_dir(golden)) + " --ids " +
                              golden_ids_arg(golden.at("prompts").at(0)) + run_flags);
    const std::vector<double> expected = r.at("scores");  // subspaces..., remainder
    REQUIRE(doc.at("components").size() == expected.size());
    const double scale = scale_of(r);
    for (std::size_t s = 0; s < expected.size(); ++s)
      check_close(doc.at("components")[s].at("score"), expected[s], scale, "component " + std::to_string(s));
    check_close(doc.at("bias_score"), r.at("bias"), scale, "bias");
  }
}

TEST_CASE("CLI goldens: depass decode", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json golden = read_option_golden("gpt2");
  const json& c = golden_case(golden, "heads(1)");
  const json& r = c.at("readouts").at(0);
  const json& top = c.at("top_tokens");
  const json doc = run_golden_json("decode --model " + depass::test::sh(family_dir(golden)) + " --ids " +
                            golden_ids_arg(golden.at("prompts").at(0)) + " --init heads --layer 1 --k " +
                            std::to_string(top.at("k").get<int>()));
  const std::vector<double> expected = r.at("scores");
  REQUIRE(doc.at("components").size() == expected.size() + 1);  // + bias
  const double scale = scale_of(r);
  for (std::size_t m = 0; m <= expected.size(); ++m) {
    const json& component = doc.at("components")[m];
    check_close(component.at("score"), m < expected.size() ? expected[m] : r.at("bias").get<double>(), scale,
                "component " + std::to_string(m));
    std::vector<int> ids;
    for (const json& t : component.at("top_tokens")) ids.push_back(t.at("id"));
    INFO("top tokens of component " << m);
    CHECK(ids == top.at("ids")[m].get<std::vector<int>>());
  }
}

namespace {

void check_generate(const std::string& model, const json& golden) {
  const json& g = golden.at("generate");
  const json doc = run_golden_json("generate --explain --model " + depass::test::sh(model) + " --prompt " +
                            depass::test::sh(g.at("prompt").get<std::string>()) + " --max-new " + std::to_string(g.at("max_new").get<int>()));
  const std::vector<int> prompt = g.at("ids");
  REQUIRE(doc.at("tokens").size() >= prompt.size());
  for (std::size_t i = 0; i < prompt.size(); ++i) CHECK(doc.at("tokens")[i].at("id") == prompt[i]);
  REQUIRE(doc.at("steps").size() == g.at("steps").size());
  for (std::size_t t = 0; t < g.at("steps").size(); ++t) {
    const json& want = g.at("steps")[t];
    const json& got = doc.at("steps")[t];
    INFO("step " << t);
    CHECK(got.at("position") == want.at("position"));
    REQUIRE(got.at("token").at("id") == want.at("token"));
    double scale = std::abs(want.at("logit").get<double>());
    for (double s : want.at("scores")) scale = std::max(scale, std::abs(s));
    check_close(got.at("token").at("logit"), want.at("logit"), scale, "logit");
    REQUIRE(got.at("scores").size() == want.at("scores").size());
    for (std::size_t m = 0; m < want.at("scores").size(); ++m)
      check_close(got.at("scores")[m], want.at("scores")[m], scale, "token " + std::to_string(m));
    check_close(got.at("bias_score"), want.at("bias"), scale, "bias");
  }
}

}  // namespace

TEST_CASE("CLI goldens: depass generate --explain", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json llama = read_option_golden("llama");
  check_generate(family_dir(llama), llama);
}

TEST_CASE("CLI goldens: depass generate --explain on stories260K", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json golden = read_option_golden("stories260K");
  DEPASS_REQUIRE_MODEL(path, golden.at("model").get<std::string>());
  check_generate(path, golden);
}

TEST_CASE("CLI goldens: --threads 2 and --precision float give the reference's numbers", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json gpt2 = read_option_golden("gpt2"), llama = read_option_golden("llama");
  check_tokens_command(family_dir(gpt2), gpt2, golden_case(gpt2, "tokens softmax T=0.05"), 1, " --threads 2");
  check_tokens_command(family_dir(llama), llama, golden_case(llama, "tokens argmax"), 0, " --threads 2");
#ifdef DEPASS_TEST_SANITIZED
  return;  // the sanitizer build's CLI has double only (docs/robustness.md)
#endif
  const json golden = read_option_golden("gpt2");
  const json doc = run_golden_json("heads --model " + depass::test::sh(family_dir(golden)) + " --ids " +
                            golden_ids_arg(golden.at("prompts").at(0)) + " --precision float --threads 2");
  CHECK(doc.at("precision") == "float");
  REQUIRE(doc.at("layers").size() == 2);
  for (const json& layer : doc.at("layers")) {
    const json& r = golden_case(golden, "heads(" + std::to_string(layer.at("layer").get<int>()) + ")").at("readouts").at(0);
    const double scale = scale_of(r);
    for (std::size_t h = 0; h < layer.at("heads").size(); ++h)
      check_close(layer.at("heads")[h], r.at("scores")[h + 1], scale, "float head " + std::to_string(h), 2e-4);
    check_close(layer.at("bias_score"), r.at("bias"), scale, "float bias", 2e-4);
  }
}

TEST_CASE("CLI goldens: depass heads --chunk-size (chunk residual per layer)", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  const json golden = read_option_golden("gpt2");
  const json& c = golden_case(golden, "heads(0) chunk 3");
  const json& r = c.at("readouts").at(0);  // the CLI's defaults: last position, top-1
  const json doc = run_golden_json("heads --model " + depass::test::sh(family_dir(golden)) + " --ids " +
                            golden_ids_arg(golden.at("prompts").at(0)) + split_flags(c));
  const json& layer = doc.at("layers").at(0);
  REQUIRE(layer.at("layer") == 0);
  CHECK(doc.at("target").at("id") == r.at("target"));
  const double scale = scale_of(r);
  check_close(layer.at("residual_score"), r.at("scores")[0], scale, "residual");
  for (std::size_t h = 0; h < layer.at("heads").size(); ++h)
    check_close(layer.at("heads")[h], r.at("scores")[h + 1], scale, "head " + std::to_string(h));
  check_close(layer.at("bias_score"), r.at("bias"), scale, "bias");
  check_close(layer.at("chunk_residual_score"), r.at("chunk_residual"), scale, "chunk residual");
}

TEST_CASE("CLI: plain generate continues stories260K with the model's known greedy text", "[cli][golden]") {
  REQUIRE_BUILT_CLI();
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  // ../shared/models/README.md: greedy from BOS + "Once upon a time" with tok512.
  const std::string known = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
                            "One day, she saw a big, red ball. She wanted to play with it, but it was too high.";
  const std::string gguf = path.substr(0, path.size() - 4) + ".gguf";
  depass::test::TempDir dir;
  const std::string prompt_file = dir.path("prompt.txt");
  std::ofstream(prompt_file) << "Once upon a time\n";
  const std::vector<std::string> runs = {
      "--model " + depass::test::sh(path) + " --prompt 'Once upon a time' --precision float",
      "--model " + depass::test::sh(path) + " --prompt 'Once upon a time' --precision double --threads 2",
      "--model " + depass::test::sh(path) + " --tokenizer " + depass::test::sh(path.substr(0, path.rfind('/')) + "/tok512.bin") +
          " --prompt-file " + depass::test::sh(prompt_file),
      "--model " + depass::test::sh(gguf) + " --prompt 'Once upon a time'"};
  for (const std::string& run : runs) {
    const bool threads = run.find("--threads") != std::string::npos;
    const depass::test::RunResult r = depass::test::run_cli("generate " + run + " --max-new 60" + (threads ? "" : " --threads 1"));
    INFO("depass generate " << run << "\nstderr: " << r.err);
    REQUIRE(r.code == 0);
    CHECK(r.out.substr(0, known.size()) == known);
  }
  // --max-new bounds the continuation: 5 tokens give a strict prefix of the same text.
  const depass::test::RunResult few =
      depass::test::run_cli("generate --model " + depass::test::sh(path) + " --prompt 'Once upon a time' --max-new 5 --threads 1");
  REQUIRE(few.code == 0);
  std::string text = few.out;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  CHECK(text.size() > std::string("Once upon a time").size());
  CHECK(text.size() < 40);
  CHECK(known.compare(0, text.size(), text) == 0);
}
