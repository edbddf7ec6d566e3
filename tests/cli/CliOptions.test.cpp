// The CLI flags that no other test checked with a number (docs/testing.md, "CLI flag
// coverage"): each test here fails if its flag were ignored. The expected values come from
// the independent float64 reference (tests/golden: options_stories260K.json,
// depass_stories260K.json, tokenizer_tok512.json, written by tools/reference) or from an
// invariant (a prompt equals the --ids of its reference encoding, a position equals the
// sequence cut after it, a lone checkpoint plus --tokenizer equals the default one, float
// is close to double but not equal, CSV/NPY/HTML/text carry the JSON's numbers, component
// tensors unembed to their scores).

#include <catch2/catch.hpp>
#include <depass/output/Npy.hpp>
#include <depass/output/Text.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "CliSupport.hpp"
#include "support/Goldens.hpp"
#include "support/Models.hpp"
#include "support/TestSupport.hpp"

namespace cli_options {

namespace dt = depass::test;
using nlohmann::json;
constexpr std::size_t kNpos = std::string::npos;

/// The reference's own text and encoding (tests/golden/depass_stories260K.json case 0,
/// encoded by tools/reference as tokenizer_tok512.json does): its last position predicts
/// 298 ' g' (the top-1).
struct ReferencePrompt {
  std::string text;
  std::vector<int> ids;
  json golden;  // the case
};

ReferencePrompt reference_prompt() {
  const json golden = dt::read_golden("depass_stories260K.json");
  const json& c = golden.at("cases").at(0);
  return {c.at("text").get<std::string>(), c.at("ids").get<std::vector<int>>(), c};
}

/// options_stories260K.json and its case `name`.
const json& options_golden() {
  static const json golden = dt::read_golden("options_stories260K.json");
  return golden;
}

const json& option_case(const std::string& name) {
  for (const json& c : options_golden().at("cases"))
    if (c.at("name") == name) return c;
  FAIL("no case '" << name << "' in options_stories260K.json");
  return options_golden();
}

/// The golden's prompt (16 ids), optionally only its first n.
std::vector<int> golden_prompt(std::size_t n = 0) {
  std::vector<int> ids = options_golden().at("prompts").at(0).get<std::vector<int>>();
  if (n > 0) ids.resize(n);
  return ids;
}

/// The readout of a case at `position` (the case's default target there).
const json& readout_at(const json& c, long position) {
  for (const json& r : c.at("readouts"))
    if (r.at("position") == position) return r;
  FAIL("no readout at position " << position << " in " << c.at("name"));
  return c;
}

/// Largest magnitude of a readout (logit and scores): the scale of the tolerances.
double readout_scale(const json& r) {
  double s = std::abs(r.at("logit").get<double>());
  for (const json& v : r.at("scores")) s = std::max(s, std::abs(v.get<double>()));
  return s;
}

void expect_near(double actual, double expected, double scale, const std::string& what, double tol = 1e-8) {
  INFO(what << ": CLI " << actual << ", expected " << expected);
  CHECK(std::abs(actual - expected) <= tol * std::max(1.0, scale));
}

/// `depass ARGS --format json` (must succeed), parsed.
json doc_of(const std::string& args) { return dt::run_json(args); }

/// A run that must succeed; its result.
dt::RunResult ok_run(const std::string& args, const std::string& env = "") {
  const dt::RunResult r = dt::run_cli(args, env);
  INFO("depass " << args << "\nstderr: " << r.err);
  REQUIRE(r.code == 0);
  return r;
}

/// Keys whose numbers are scores (or logits) in every document kind; "top", "top_tokens"
/// and "prob" are left out (rankings may reorder near ties between precisions).
const std::set<std::string>& score_keys() {
  static const std::set<std::string> keys = {"score",       "scores",     "heads", "residual_score", "bias_score",
                                             "other_score", "chunk_residual_score", "logit", "lens", "logit_difference"};
  return keys;
}

void collect_scores(const json& j, bool wanted, std::vector<double>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "top" || it.key() == "top_tokens") continue;
      collect_scores(it.value(), score_keys().count(it.key()) > 0, out);
    }
  } else if (j.is_array()) {
    for (const json& e : j) collect_scores(e, wanted, out);
  } else if (j.is_number() && wanted) {
    out.push_back(j.get<double>());
  }
}

/// Every score and logit of a document, in a fixed order (object keys sorted).
std::vector<double> scores_of(const json& doc) {
  std::vector<double> v;
  collect_scores(doc, false, v);
  return v;
}

/// Largest |a - b| over the scores of two documents of the same shape, relative to
/// max(1, largest |b|).
double score_gap(const json& a, const json& b) {
  const std::vector<double> x = scores_of(a), y = scores_of(b);
  REQUIRE(x.size() == y.size());
  REQUIRE(!x.empty());
  double scale = 1, gap = 0;
  for (double v : y) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < x.size(); ++i) gap = std::max(gap, std::abs(x[i] - y[i]));
  return gap / scale;
}

/// `doc` without the fields that name the run rather than its result.
json without_run_fields(json doc) {
  for (const char* key : {"model", "precision", "components_file", "trace_file", "logits_file"}) doc.erase(key);
  return doc;
}

/// A D x k matrix of a golden's "bases" entry, as a .npy file in `dir`.
std::string golden_basis_file(const dt::TempDir& dir, std::size_t index) {
  const json& rows = options_golden().at("bases").at(index);
  depass::output::NpyArray a;
  a.shape = {rows.size(), rows.at(0).size()};
  for (const json& row : rows)
    for (const json& v : row) a.data.push_back(v.get<double>());
  const std::string path = dir.path("basis" + std::to_string(index) + ".npy");
  depass::output::save_npy(path, a);
  return path;
}

/// " --basis b0.npy --basis b1.npy": the two bases of options_stories260K.json.
std::string golden_basis_flags(const dt::TempDir& dir) {
  return " --basis " + dt::sh(golden_basis_file(dir, 0)) + " --basis " + dt::sh(golden_basis_file(dir, 1));
}

/// The unembedding row of `token` (the checkpoint's, via the tested loader).
std::vector<double> unembedding_row(const std::string& model, int token) {
  const depass::Model<double>& m = dt::cached_model<double>(model);
  std::vector<double> row;
  for (Eigen::Index k = 0; k < m.weights().unembedding().cols(); ++k) row.push_back(m.weights().unembedding()(token, k));
  return row;
}

/// Logits of component m at `position` of an (M, N, D) component tensor.
std::vector<double> component_logits(const depass::output::NpyArray& comps, std::size_t m, std::size_t position,
                                     const std::string& model) {
  const depass::Model<double>& md = dt::cached_model<double>(model);
  const std::size_t N = comps.shape[1], D = comps.shape[2];
  std::vector<double> logits(static_cast<std::size_t>(md.weights().unembedding().rows()), 0.0);
  for (std::size_t v = 0; v < logits.size(); ++v)
    for (std::size_t k = 0; k < D; ++k)
      logits[v] += comps.data[(m * N + position) * D + k] * md.weights().unembedding()(static_cast<Eigen::Index>(v), static_cast<Eigen::Index>(k));
  return logits;
}

/// Runs `depass ARGS` on a pseudo-terminal (util-linux script), stdout and stderr both
/// captured in .out.
dt::RunResult run_on_terminal(const std::string& args, const std::string& env = "") {
  const std::string inner =
      "env OMP_NUM_THREADS=1 TERM=xterm-256color COLORTERM= " + env + " " + dt::sh(dt::cli_path()) + " " + args;
  return dt::run_program("script", "-qec " + dt::sh(inner) + " /dev/null");
}

bool has_script() { return std::system("command -v script >/dev/null 2>&1") == 0; }

/// Number of lines of `text` that start (after spaces) with "<n> " for n = 1, 2, ...: the
/// rows of a ranked text table.
std::size_t ranked_rows(const std::string& text) {
  std::size_t next = 1;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == kNpos) end = text.size();
    const std::string line = text.substr(start, end - start);
    const std::size_t first = line.find_first_not_of(' ');
    const std::string want = std::to_string(next) + " ";
    if (first != kNpos && line.compare(first, want.size(), want) == 0) ++next;
    start = end + 1;
  }
  return next - 1;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != kNpos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

}  // namespace cli_options

/// Every test case: the CLI and stories260K, `stories` its path, `model` the --model flag.
#define CLI_OPTIONS_SETUP()                                \
  using namespace cli_options;                             \
  DEPASS_REQUIRE_CLI();                                    \
  DEPASS_REQUIRE_MODEL(stories, dt::kStories);             \
  const std::string model = " --model " + dt::sh(stories); \
  static_cast<void>(0)

TEST_CASE("depass --version prints the version of CMakeLists.txt's project()", "[cli][options]") {
  using namespace cli_options;
  DEPASS_REQUIRE_CLI();
  const std::string cmake = dt::read_file(dt::source_dir() + "/CMakeLists.txt");
  std::smatch m;
  REQUIRE(std::regex_search(cmake, m, std::regex(R"(project\(depass\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+))")));
  const dt::RunResult r = ok_run("--version");
  CHECK(r.out == "depass " + m[1].str() + "\n");
  CHECK(r.err.empty());
  CHECK(ok_run("--help").out.rfind("depass " + m[1].str() + ": ", 0) == 0);
}

TEST_CASE("depass --tokenizer: a lone checkpoint plus --tokenizer equals the tokenizer found next to it", "[cli][options]") {
  CLI_OPTIONS_SETUP();
  const ReferencePrompt ref = reference_prompt();
  dt::TempDir dir;
  const std::string lone = dir.path("stories260K.bin");
  std::filesystem::copy_file(stories, lone);
  const std::string tok = dt::model_path("stories260K/tok512.bin");
  const std::string lone_model = " --model " + dt::sh(lone) + " --tokenizer " + dt::sh(tok);
  const std::string prompt = " --prompt " + dt::sh(ref.text);
  // Without --tokenizer the copy has none: text is refused, so the flag is what makes the runs below work.
  const dt::RunResult none = dt::run_cli("tokens --model " + dt::sh(lone) + prompt);
  CHECK(none.code == 2);
  CHECK(none.err.find("needs a tokenizer") != kNpos);
  const std::vector<std::string> commands = {"tokens --target ' g'",  "modules", "heads --layer 1", "neurons --layer 2",
                                             "subspace --layer 4 --site mlp" + golden_basis_flags(dir),
                                             "decode --init heads --layer 3", "generate --explain --max-new 2"};
  for (const std::string& command : commands) {
    INFO(command);
    const json with = doc_of(command + lone_model + prompt);
    const json found = doc_of(command + model + prompt);
    std::vector<int> ids;
    for (const json& t : with.at("tokens")) ids.push_back(t.at("id"));
    ids.resize(std::min(ids.size(), ref.ids.size()));
    CHECK(ids == ref.ids);  // the reference's encoding of its text
    CHECK(with.at("tokens").at(1).at("text") == " Once");
    CHECK(without_run_fields(with) == without_run_fields(found));
  }
  // Plain generate prints the same continuation; info names the tokenizer given.
  const std::string once = " --prompt 'Once upon a time' --max-new 12";
  const dt::RunResult text = ok_run("generate" + lone_model + once);
  CHECK(text.out == ok_run("generate" + model + once).out);
  CHECK(text.out.rfind("Once upon a time, there was a little", 0) == 0);
  const json info = doc_of("info" + lone_model);
  REQUIRE(info.at("tokenizer").is_object());
  CHECK(info.at("tokenizer").at("path") == tok);
  CHECK(info.at("tokenizer").at("vocab_size") == 512);
  CHECK(info.at("tokenizer").at("bos_id") == 1);
  CHECK(doc_of("info --model " + dt::sh(lone)).at("tokenizer").is_null());
}

TEST_CASE("depass --precision float on every command: the document says float, numbers within 2e-4 of double, not equal",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  const std::vector<std::string> commands = {"tokens" + ids,
                                             "modules" + ids,
                                             "heads" + ids,
                                             "neurons --layer 2" + ids,
                                             "subspace --layer 4 --site mlp" + golden_basis_flags(dir) + ids,
                                             "decode --init neurons --layer 1" + ids,
                                             "generate --explain --max-new 3 --prompt 'Once upon a time'"};
#ifdef DEPASS_TEST_SANITIZED
  // The sanitizer build's CLI has its DePass commands for double only (docs/robustness.md).
  for (const std::string& command : commands) {
    const dt::RunResult refused = dt::run_cli(command + model + " --precision float");
    INFO(command << "\n" << refused.err);
    CHECK(refused.code == 2);
    CHECK(refused.err.find("this build of depass has double only") != kNpos);
  }
  return;
#endif
  for (const std::string& command : commands) {
    INFO(command);
    const json dbl = doc_of(command + model + " --precision double");
    const json flt = doc_of(command + model + " --precision float");
    CHECK(dbl.at("precision") == "double");
    CHECK(flt.at("precision") == "float");
    CHECK(doc_of(command + model) == dbl);  // double is the default
    const double gap = score_gap(flt, dbl);
    CHECK(gap < 2e-4);
    CHECK(gap > 0);  // float rounding shows: the flag was not ignored
  }
}

TEST_CASE("depass --threads 2 uses two threads and equals --threads 1 on every command", "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  // Token-level runs on 16 tokens are below the engine's parallel threshold (they run on one
  // thread whatever the setting): tokens and generate get longer reference texts.
  const json cases = dt::read_golden("depass_stories260K.json").at("cases");
  const std::vector<std::string> commands = {
      "tokens --ids " + dt::ids_arg(cases.at(4).at("ids").get<std::vector<int>>()),
      "modules" + ids,
      "heads" + ids,
      "neurons --layer 2" + ids,
      "subspace --layer 4 --site mlp" + golden_basis_flags(dir) + ids,
      "decode --init heads --layer 1" + ids,
      "generate --explain --max-new 3 --prompt " + dt::sh(cases.at(1).at("text").get<std::string>())};
  for (const std::string& command : commands) {
    INFO(command);
    // OMP_DISPLAY_AFFINITY (OpenMP 5.0) prints a line on stderr for each thread that runs a
    // parallel region: with --threads 2 there must be two (the environment says 1).
    const dt::RunResult two = ok_run(command + model + " --threads 2 --format json", "OMP_DISPLAY_AFFINITY=true");
    const dt::RunResult one = ok_run(command + model + " --threads 1 --format json", "OMP_DISPLAY_AFFINITY=true");
#ifdef _OPENMP
    CHECK(count_of(two.err, "thread") >= 2);
    CHECK(count_of(one.err, "thread") <= 1);
#endif
    const json a = json::parse(two.out), b = json::parse(one.out);
    CHECK(score_gap(a, b) <= 1e-12);
    CHECK(a.at("tokens") == b.at("tokens"));
  }
  CHECK(doc_of("info --threads 2" + model) == doc_of("info --threads 1" + model));
}

TEST_CASE("depass --prompt and --prompt-file on modules, heads, neurons, subspace, decode and generate --explain",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  const ReferencePrompt ref = reference_prompt();
  dt::TempDir dir;
  const std::string file = dir.write("prompt.txt", ref.text + "\n");
  const std::vector<std::string> commands = {"modules", "heads", "neurons --layer 3",
                                             "subspace --layer 4 --site mlp" + golden_basis_flags(dir),
                                             "decode --init modules --layer 2 --site attention"};
  for (const std::string& command : commands) {
    INFO(command);
    const json by_prompt = doc_of(command + model + " --prompt " + dt::sh(ref.text));
    const json by_ids = doc_of(command + model + " --ids " + dt::ids_arg(ref.ids));  // the reference's encoding
    CHECK(by_prompt.at("target").at("id") == ref.golden.at("target"));
    CHECK(by_prompt == by_ids);
    CHECK(doc_of(command + model + " --prompt-file " + dt::sh(file)) == by_prompt);
  }
  // generate --explain: the first step explains the reference's target with its scores.
  const std::string generate = "generate --explain --max-new 2" + model;
  const json by_prompt = doc_of(generate + " --prompt " + dt::sh(ref.text));
  CHECK(doc_of(generate + " --prompt-file " + dt::sh(file)) == by_prompt);
  for (std::size_t i = 0; i < ref.ids.size(); ++i) CHECK(by_prompt.at("tokens").at(i).at("id") == ref.ids[i]);
  const json& step = by_prompt.at("steps").at(0);
  REQUIRE(step.at("token").at("id") == ref.golden.at("target"));
  const std::vector<double> expected = ref.golden.at("scores");
  REQUIRE(step.at("scores").size() == expected.size());
  for (std::size_t m = 0; m < expected.size(); ++m)
    expect_near(step.at("scores").at(m), expected[m], ref.golden.at("target_logit"), "token " + std::to_string(m));
}

TEST_CASE("depass --position on modules, neurons, subspace and decode: the reference's readout at position 8", "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  const std::string at8 = " --position 8 --target 349";  // the golden's readout there (the top-1 is 282)
  const json modules = doc_of("modules" + model + ids + at8);
  CHECK(modules.at("position") == 8);
  std::size_t checked = 0;
  for (const json& e : modules.at("modules")) {
    const int layer = e.at("layer");
    if (layer != 0 && layer != 4) continue;
    const std::string name = "module(" + std::to_string(layer) + ", " + e.at("site").get<std::string>() + ")";
    INFO(name);
    const json& r = readout_at(option_case(name), 8);
    const double scale = readout_scale(r);
    expect_near(modules.at("target").at("logit"), r.at("logit"), scale, "target logit");
    expect_near(e.at("residual_score"), r.at("scores").at(0), scale, "residual");
    expect_near(e.at("score"), r.at("scores").at(1), scale, "module");
    expect_near(e.at("bias_score"), r.at("bias"), scale, "bias");
    ++checked;
  }
  CHECK(checked == 4);
  // The same prediction from the sequence cut after position 8 (causal mask).
  const json cut = doc_of("modules" + model + " --ids " + dt::ids_arg(golden_prompt(9)) + " --target 349");
  CHECK(score_gap(without_run_fields(cut).at("modules"), without_run_fields(modules).at("modules")) < 1e-12);

  const json neurons = doc_of("neurons --layer 4" + model + ids + at8);
  const json& rn = readout_at(option_case("neurons(4, all)"), 8);
  const std::vector<double> expected = rn.at("scores");  // residual, neurons 0..171, other
  REQUIRE(neurons.at("scores").size() + 2 == expected.size());
  const double scale = readout_scale(rn);
  expect_near(neurons.at("residual_score"), expected.front(), scale, "residual");
  for (std::size_t k = 0; k + 2 < expected.size(); ++k)
    expect_near(neurons.at("scores").at(k), expected[k + 1], scale, "neuron " + std::to_string(k));
  expect_near(neurons.at("other_score"), expected.back(), scale, "other neurons");

  const std::vector<std::pair<std::string, std::string>> components = {
      {"subspace --layer 4 --site mlp" + golden_basis_flags(dir), "subspace bases before_mlp(4)"},
      {"decode --init heads --layer 4", "heads(4)"},
      {"decode --init neurons --layer 0 --neurons 1,17,40,170", "neurons(0, selected)"}};
  for (const auto& [command, name] : components) {
    INFO(command);
    const json doc = doc_of(command + model + ids + at8);
    CHECK(doc.at("position") == 8);
    const json& r = readout_at(option_case(name), 8);
    const std::vector<double> want = r.at("scores");
    const double s = readout_scale(r);
    REQUIRE(doc.at("components").size() >= want.size());
    for (std::size_t m = 0; m < want.size(); ++m)
      expect_near(doc.at("components").at(m).at("score"), want[m], s, "component " + std::to_string(m));
  }
}

TEST_CASE("depass --target-position first on modules, heads, neurons, subspace, decode and generate --explain",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string prompt = " --prompt " + dt::sh(dt::kPrompt);
  const std::vector<std::string> commands = {"modules", "heads --layer 1", "neurons --layer 2",
                                             "subspace --layer 4 --site mlp" + golden_basis_flags(dir),
                                             "decode --init heads --layer 0"};
  for (const std::string& command : commands) {
    INFO(command);
    const dt::RunResult refused = dt::run_cli(command + model + prompt + " --target ' girl'");
    CHECK(refused.code == 2);
    CHECK(refused.err.find("--target-position first") != kNpos);
    const json first = doc_of(command + model + prompt + " --target ' girl' --target-position first");
    CHECK(first.at("target").at("id") == 298);  // ' g' of ' g' 'ir' 'l' (tokenizer_tok512.json)
    CHECK(first == doc_of(command + model + prompt + " --target 298"));
  }
  const std::string generate = "generate --explain --max-new 3 --prompt 'Once upon a time'" + model;
  CHECK(dt::run_cli(generate + " --contrast ' girl'").code == 2);
  const json first = doc_of(generate + " --contrast ' girl' --target-position first");
  REQUIRE(first.at("steps").size() == 3);
  for (const json& step : first.at("steps")) CHECK(step.at("contrast").at("id") == 298);
  CHECK(first == doc_of(generate + " --contrast 298"));
}

namespace cli_options {

/// Largest |explained sum - target logit| over the runs of a document: every kind's
/// components (with bias and chunk residual) sum to the logit.
double sum_gap(const json& doc) {
  const std::string schema = doc.at("schema");
  const double logit = doc.at("target").at("logit");
  auto extra = [](const json& e) {
    return e.value("bias_score", 0.0) + e.value("chunk_residual_score", 0.0);
  };
  auto total = [](const json& list) {
    double s = 0;
    for (const json& v : list) s += v.get<double>();
    return s;
  };
  double gap = 0;
  if (schema.find("modules") != kNpos) {
    for (const json& e : doc.at("modules"))
      gap = std::max(gap, std::abs(e.at("residual_score").get<double>() + e.at("score").get<double>() + extra(e) - logit));
  } else if (schema.find("heads") != kNpos) {
    for (const json& e : doc.at("layers"))
      gap = std::max(gap, std::abs(e.at("residual_score").get<double>() + total(e.at("heads")) + extra(e) - logit));
  } else if (schema.find("neurons") != kNpos) {
    gap = std::abs(doc.at("residual_score").get<double>() + total(doc.at("scores")) + doc.at("other_score").get<double>() +
                   extra(doc) - logit);
  } else {  // subspace (bias and chunk residual apart), decode (among the components)
    double s = extra(doc);
    for (const json& c : doc.at("components")) s += c.at("score").get<double>();
    gap = std::abs(s - logit);
  }
  return gap;
}

/// The bytes one component needs in a run, from the refusal of a 1-byte --memory-budget.
std::size_t bytes_per_component(const std::string& args) {
  const dt::RunResult r = dt::run_cli(args + " --memory-budget 1");
  INFO(r.err);
  REQUIRE(r.code == 2);
  std::smatch m;
  REQUIRE(std::regex_search(r.err, m, std::regex("needs ([0-9]+) bytes")));
  return static_cast<std::size_t>(std::stoull(m[1].str()));
}

}  // namespace cli_options

TEST_CASE("depass generate --explain: --temperature, --mlp-split, --no-bos-sink, --chunk-size, --memory-budget vs the reference",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  // The text of the golden's prompt: step 0 explains its last position, whose top-1 is the
  // golden readout's target (370 ' big'), so the step is that readout.
  const std::string generate = "generate --explain --max-new 1 --prompt 'Lily and Ben went to the park. They saw a'" + model;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --temperature 0.05", "tokens softmax T=0.05"}, {" --temperature 1", "tokens softmax T=1"},
      {" --mlp-split argmax", "tokens argmax"},          {" --mlp-split proportional", "tokens proportional"},
      {" --no-bos-sink", "tokens softmax no sink"},      {" --mlp-split argmax --no-bos-sink", "tokens argmax no sink"},
      {" --chunk-size 7", "tokens chunk 7"},             {" --chunk-size 3", "tokens chunk 3"}};
  const std::vector<int> prompt = golden_prompt();
  for (const auto& [flags, name] : cases) {
    INFO(name << ":" << flags);
    const json doc = doc_of(generate + flags);
    const json& c = option_case(name);
    CHECK(doc.at("mlp_split") == c.at("options").at("split"));
    CHECK(doc.at("temperature") == c.at("options").at("temperature"));
    CHECK(doc.at("bos_sink") == c.at("options").at("bos_sink"));
    for (std::size_t i = 0; i < prompt.size(); ++i) CHECK(doc.at("tokens").at(i).at("id") == prompt[i]);
    const json& step = doc.at("steps").at(0);
    const json& r = readout_at(c, 15);
    REQUIRE(step.at("token").at("id") == r.at("target"));
    const double scale = readout_scale(r);
    const std::vector<double> want = r.at("scores");
    REQUIRE(step.at("scores").size() == want.size());
    for (std::size_t m = 0; m < want.size(); ++m)
      expect_near(step.at("scores").at(m), want[m], scale, "token " + std::to_string(m));
    expect_near(step.at("bias_score"), r.at("bias"), scale, "bias");
    if (r.contains("chunk_residual"))
      expect_near(step.at("chunk_residual_score"), r.at("chunk_residual"), scale, "chunk residual");
    else
      CHECK_FALSE(step.contains("chunk_residual_score"));
  }
  // --memory-budget: the budget of one component per chunk gives the run of --chunk-size 1
  // (each step still sums to its logit).
  const std::string budget = std::to_string(bytes_per_component(generate + " --format json"));
  const json by_budget = doc_of(generate + " --memory-budget " + budget);
  CHECK(by_budget.at("memory_budget_bytes") == std::stoull(budget));
  const json& step = by_budget.at("steps").at(0);
  REQUIRE(step.contains("chunk_residual_score"));
  double sum = step.at("bias_score").get<double>() + step.at("chunk_residual_score").get<double>();
  for (const json& v : step.at("scores")) sum += v.get<double>();
  expect_near(sum, step.at("token").at("logit"), 20, "sum of step 0", 1e-10);
  CHECK(score_gap(by_budget, doc_of(generate + " --chunk-size 1")) == 0);
}


TEST_CASE("depass split and chunk flags on modules, heads, neurons, subspace and decode", "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  // Reference cases: decode of selected neurons under the proportional split, heads chunked by 3.
  {
    const json doc = doc_of("decode --init neurons --layer 0 --neurons 1,17,40,170 --mlp-split proportional" + model + ids);
    const json& r = readout_at(option_case("neurons(0, selected) proportional"), 15);
    const std::vector<std::string> labels = {"residual", "neuron 1", "neuron 17", "neuron 40", "neuron 170", "other neurons", "bias"};
    REQUIRE(doc.at("components").size() == labels.size());
    for (std::size_t m = 0; m < labels.size(); ++m) {
      CHECK(doc.at("components").at(m).at("label") == labels[m]);
      const double want = m + 1 < labels.size() ? r.at("scores").at(m).get<double>() : r.at("bias").get<double>();
      expect_near(doc.at("components").at(m).at("score"), want, readout_scale(r), labels[m]);
    }
    const json heads = doc_of("heads --layer 0 --chunk-size 3" + model + ids);
    const json& rc = readout_at(option_case("heads(0) chunk 3"), 15);
    const json& layer = heads.at("layers").at(0);
    const double scale = readout_scale(rc);
    expect_near(layer.at("residual_score"), rc.at("scores").at(0), scale, "residual");
    for (std::size_t h = 0; h < 8; ++h) expect_near(layer.at("heads").at(h), rc.at("scores").at(h + 1), scale, "head");
    expect_near(layer.at("chunk_residual_score"), rc.at("chunk_residual"), scale, "chunk residual");
    CHECK(heads.at("chunk_size") == 3);
  }
  // decode --init tokens (the default) under each option: the reference's token-level scores.
  for (const auto& [flags, name] : std::vector<std::pair<std::string, std::string>>{
           {" --temperature 0.05", "tokens softmax T=0.05"}, {" --mlp-split argmax", "tokens argmax"},
           {" --mlp-split proportional", "tokens proportional"}, {" --no-bos-sink", "tokens softmax no sink"},
           {" --chunk-size 7", "tokens chunk 7"}, {" --mlp-split path", "tokens path"},
           {" --mlp-split path --no-bos-sink", "tokens path no sink"}, {" --mlp-split path --chunk-size 3", "tokens chunk 3 path"},
           {" --sink-ratio 1.025", "tokens softmax attention sinks"}}) {
    INFO("decode" << flags);
    const json doc = doc_of("decode" + model + ids + flags);
    const json& r = readout_at(option_case(name), 15);
    const std::vector<double> want = r.at("scores");  // one per token; decode lists tokens, chunk residual, bias
    const std::size_t N = golden_prompt().size();
    REQUIRE(doc.at("components").size() == N + 1 + (r.contains("chunk_residual") ? 1 : 0));
    for (std::size_t m = 0; m < N; ++m)
      expect_near(doc.at("components").at(m).at("score"), want[m], readout_scale(r), "token " + std::to_string(m));
    CHECK(doc.at("components").back().at("label") == "bias");
    if (r.contains("chunk_residual"))
      expect_near(doc.at("components").at(N).at("score"), r.at("chunk_residual"), readout_scale(r), "chunk residual");
  }
  // Every flag on every command: the document records it and the scores still sum to the
  // logit; the split rule moves the scores; the BOS sink is a token-level rule (docs/method.md,
  // "Attention sink"), so --no-bos-sink is refused here and the documents have no bos_sink.
  const std::vector<std::string> commands = {"modules", "heads --layer 1", "neurons --layer 1",
                                             "subspace --layer 1 --site mlp" + golden_basis_flags(dir),
                                             "decode --init modules --layer 1 --site attention"};
  for (const std::string& command : commands) {
    const std::string base = command + model + ids;
    const json plain = doc_of(base);
    const std::size_t per_component = bytes_per_component(base);
    const std::string budget = std::to_string(per_component);  // chunks of one component
    const std::vector<std::string> flags = {" --temperature 1", " --mlp-split argmax", " --mlp-split proportional", " --mlp-split path",
                                            " --no-bos-sink", " --sink-ratio 4", " --chunk-size 1", " --memory-budget " + budget};
    json chunk_of_one;
    for (const std::string& flag : flags) {
      INFO(base << flag);
      if (flag == " --no-bos-sink" || flag == " --sink-ratio 4") {
        const dt::RunResult refused = dt::run_cli(base + flag);
        CHECK(refused.code == 2);
        CHECK(refused.err.find(flag.substr(1, flag.find(' ', 1) == std::string::npos ? std::string::npos : flag.find(' ', 1) - 1) +
                               " applies to token components only") != kNpos);
        continue;
      }
      const json doc = doc_of(base + flag);
      if (flag == " --chunk-size 1") chunk_of_one = doc;
      CHECK(doc.at("temperature") == (flag == " --temperature 1" ? 1.0 : 0.1));
      CHECK(doc.at("mlp_split") == (flag.find("--mlp-split") != kNpos ? flag.substr(13) : "softmax"));
      CHECK_FALSE(doc.contains("bos_sink"));
      CHECK(sum_gap(doc) < 1e-9);
      const std::string text = doc.dump();
      const bool has_chunk_residual = text.find("chunk_residual_score") != kNpos || text.find("\"chunk residual\"") != kNpos;
      if (flag == " --chunk-size 1") {
        CHECK(doc.at("chunk_size") == 1);
        CHECK(has_chunk_residual);
      } else if (flag.find("--memory-budget") != kNpos) {
        // The budget of one component per chunk: the run of --chunk-size 1, except where a
        // chunk of one costs what the whole run costs (two members: modules), by the
        // engine's account (Decomposer::working_bytes), which then runs unchunked.
        CHECK(doc.at("memory_budget_bytes") == std::stoull(budget));
        if (command.find("modules") == kNpos) CHECK(has_chunk_residual);
        CHECK(score_gap(doc, has_chunk_residual ? chunk_of_one : plain) == 0);
      } else {
        CHECK(score_gap(doc, plain) > 1e-6);
      }
    }
  }
}

TEST_CASE("depass --components on heads, neurons and subspace: each component unembeds to its score, --top-tokens to its tokens",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::vector<int> prompt = golden_prompt();
  const std::size_t N = prompt.size(), last = N - 1;
  const std::string ids = " --ids " + dt::ids_arg(prompt);
  const std::string file = dir.path("c.npy");
  // The scores of each document in component order (the tensor's first axis).
  const std::vector<std::pair<std::string, std::function<std::vector<double>(const json&)>>> runs = {
      {"heads --layer 2",
       [](const json& d) {
         const json& l = d.at("layers").at(0);
         std::vector<double> s = {l.at("residual_score").get<double>()};
         for (const json& h : l.at("heads")) s.push_back(h);
         s.push_back(l.at("bias_score"));
         return s;
       }},
      {"neurons --layer 3",
       [](const json& d) {
         std::vector<double> s = {d.at("residual_score").get<double>()};
         for (const json& v : d.at("scores")) s.push_back(v);
         s.push_back(d.at("other_score"));
         s.push_back(d.at("bias_score"));
         return s;
       }},
      {"subspace --layer 4 --site mlp --top-tokens 3" + golden_basis_flags(dir), [](const json& d) {
         std::vector<double> s;
         for (const json& c : d.at("components")) s.push_back(c.at("score"));
         s.push_back(d.at("bias_score"));
         return s;
       }}};
  for (const auto& [command, scores_in_order] : runs) {
    INFO(command);
    const json doc = doc_of(command + model + ids + " --components " + dt::sh(file));
    const depass::output::NpyArray comps = depass::output::load_npy(file);
    const std::vector<double> scores = scores_in_order(doc);
    REQUIRE(comps.shape == std::vector<std::size_t>{scores.size(), N, 64});
    CHECK(doc.at("components_file").at("shape") == json(comps.shape));
    const int target = doc.at("target").at("id");
    double sum = 0;
    for (std::size_t m = 0; m < scores.size(); ++m) {
      const std::vector<double> logits = component_logits(comps, m, last, stories);
      expect_near(logits[static_cast<std::size_t>(target)], scores[m], 10, "component " + std::to_string(m), 1e-10);
      sum += logits[static_cast<std::size_t>(target)];
      if (command.rfind("subspace", 0) != 0 || m + 1 == scores.size()) continue;
      // --top-tokens 3: the three largest of the component's own logits, in order.
      const json& top = doc.at("components").at(m).at("top_tokens");
      REQUIRE(top.size() == 3);
      std::vector<std::size_t> order(logits.size());
      for (std::size_t v = 0; v < order.size(); ++v) order[v] = v;
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
      for (std::size_t k = 0; k < 3; ++k) {
        CHECK(top.at(k).at("id") == order[k]);
        expect_near(top.at(k).at("logit"), logits[order[k]], 10, "top token logit", 1e-10);
      }
    }
    expect_near(sum, doc.at("target").at("logit"), 10, "components summed", 1e-10);
  }
}

TEST_CASE("depass heads --trace-npy: the (boundaries, components) array is the JSON trace and ends at the scores",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string file = dir.path("t.npy");
  const json doc = doc_of("heads --layer 2 --ids " + dt::ids_arg(golden_prompt()) + model + " --trace-npy " + dt::sh(file));
  const json& layer = doc.at("layers").at(0);
  const json& trace = layer.at("trace");
  const depass::output::NpyArray a = depass::output::load_npy(file);
  // Boundaries after layer 2's attention: before mlp 2, then attention and mlp of 3 and 4, output.
  REQUIRE(a.shape == std::vector<std::size_t>{6, 10});
  CHECK(layer.at("trace_file").at("shape") == json(a.shape));
  CHECK(trace.at("boundary_names").front() == "before mlp 2");
  CHECK(trace.at("boundary_names").back() == "output");
  for (std::size_t b = 0; b < 6; ++b) {
    double row = 0;
    for (std::size_t m = 0; m < 10; ++m) {
      CHECK(a.data[b * 10 + m] == trace.at("scores").at(b).at(m).get<double>());
      row += a.data[b * 10 + m];
    }
    expect_near(row, trace.at("lens").at(b), 20, "lens at boundary " + std::to_string(b), 1e-10);
  }
  // The output row: residual, the 8 heads, bias = the layer's scores; its lens = the logit.
  expect_near(a.data[50], layer.at("residual_score"), 20, "residual", 1e-12);
  // (The trace reads the output row from its own hook, the scores from the components: the
  // same numbers up to rounding.)
  for (std::size_t h = 0; h < 8; ++h) expect_near(a.data[51 + h], layer.at("heads").at(h), 20, "head", 1e-12);
  expect_near(a.data[59], layer.at("bias_score"), 20, "bias", 1e-12);
  expect_near(trace.at("lens").back(), doc.at("target").at("logit"), 20, "lens at the output", 1e-10);
}

// --basis, --site and --neurons as decode takes them. (Catch indents a wrapped name to just after its
// first ": ", which must stay within the 80 columns of its console.)
TEST_CASE("depass decode --init subspace / modules / neurons: the reference's labels and scores",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  const std::vector<std::tuple<std::string, std::string, std::vector<std::string>>> runs = {
      {"--init subspace --layer 4 --site mlp" + golden_basis_flags(dir), "subspace bases before_mlp(4)",
       {"subspace 0", "subspace 1", "remainder"}},
      {"--init modules --layer 4 --site mlp", "module(4, mlp)", {"residual", "mlp 4"}},
      {"--init modules --layer 0 --site attention", "module(0, attention)", {"residual", "attention 0"}},
      {"--init neurons --layer 0 --neurons 1,17,40,170", "neurons(0, selected)",
       {"residual", "neuron 1", "neuron 17", "neuron 40", "neuron 170", "other neurons"}}};
  for (const auto& [flags, name, labels] : runs) {
    INFO("decode " << flags);
    const json doc = doc_of("decode " + flags + model + ids);
    const json& r = readout_at(option_case(name), 15);
    const double scale = readout_scale(r);
    REQUIRE(doc.at("components").size() == labels.size() + 1);
    for (std::size_t m = 0; m < labels.size(); ++m) {
      CHECK(doc.at("components").at(m).at("label") == labels[m]);
      expect_near(doc.at("components").at(m).at("score"), r.at("scores").at(m), scale, labels[m]);
    }
    CHECK(doc.at("components").back().at("label") == "bias");
    expect_near(doc.at("components").back().at("score"), r.at("bias"), scale, "bias");
  }
}

namespace cli_options {

/// The HTML report holds a cell or token with exactly this score.
bool html_has_score(const std::string& html, double score) {
  return html.find("data-score=\"" + depass::output::exact_number(score) + "\"") != kNpos;
}

double csv_number(const std::string& field) { return std::stod(field); }

}  // namespace cli_options

TEST_CASE("depass CSV, NPY, HTML and text of modules, heads, neurons, subspace, decode, generate --explain, info, tokenize",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  using depass::output::signed_fixed;
  dt::TempDir dir;
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  const std::string npy = dir.path("s.npy");
  auto outputs = [&](const std::string& args, json& doc, std::vector<std::vector<std::string>>& csv, std::string& html,
                     std::string& text) {
    doc = doc_of(args);
    csv = dt::parse_csv(ok_run(args + " --format csv").out);
    html = ok_run(args + " --format html").out;
    text = ok_run(args).out;
  };
  json doc;
  std::vector<std::vector<std::string>> csv;
  std::string html, text;
  {
    INFO("modules");
    const std::string args = "modules" + model + ids;
    outputs(args, doc, csv, html, text);
    const json& mods = doc.at("modules");
    REQUIRE(csv.size() == mods.size() + 1);
    CHECK(csv[0] == std::vector<std::string>{"layer", "site", "score", "residual_score", "bias_score", "chunk_residual_score"});
    ok_run(args + " --format npy --output " + dt::sh(npy));
    const depass::output::NpyArray a = depass::output::load_npy(npy);
    REQUIRE(a.shape == std::vector<std::size_t>{5, 2});
    for (std::size_t i = 0; i < mods.size(); ++i) {
      const double score = mods[i].at("score");
      CHECK(csv[i + 1][0] == std::to_string(mods[i].at("layer").get<int>()));
      CHECK(csv[i + 1][1] == mods[i].at("site"));
      CHECK(csv_number(csv[i + 1][2]) == score);
      CHECK(csv_number(csv[i + 1][3]) == mods[i].at("residual_score").get<double>());
      CHECK(a.data[i] == score);  // row = layer, column = attention, mlp
      CHECK(html_has_score(html, score));
      CHECK(text.find(signed_fixed(score, 3)) != kNpos);
    }
  }
  {
    INFO("heads");
    const std::string args = "heads" + model + ids;
    outputs(args, doc, csv, html, text);
    ok_run(args + " --output " + dt::sh(npy));
    const depass::output::NpyArray a = depass::output::load_npy(npy);
    REQUIRE(a.shape == std::vector<std::size_t>{5, 8});
    REQUIRE(csv.size() == 1 + 5 * 10);
    CHECK(csv[0] == std::vector<std::string>{"layer", "component", "head", "score"});
    for (std::size_t l = 0; l < 5; ++l) {
      const json& layer = doc.at("layers").at(l);
      CHECK(csv[1 + l * 10] == std::vector<std::string>{std::to_string(l), "residual", "",
                                                         depass::output::exact_number(layer.at("residual_score"))});
      for (std::size_t h = 0; h < 8; ++h) {
        const double score = layer.at("heads").at(h);
        CHECK(csv[2 + l * 10 + h] ==
              std::vector<std::string>{std::to_string(l), "head", std::to_string(h), depass::output::exact_number(score)});
        CHECK(a.data[l * 8 + h] == score);
        CHECK(html_has_score(html, score));
        CHECK(text.find(signed_fixed(score, 3)) != kNpos);
      }
      CHECK(csv[10 + l * 10][1] == "bias");
    }
  }
  {
    INFO("neurons");
    const std::string args = "neurons --layer 3 --top 6" + model + ids;
    outputs(args, doc, csv, html, text);
    ok_run(args + " --output " + dt::sh(npy));
    const depass::output::NpyArray a = depass::output::load_npy(npy);
    REQUIRE(a.shape == std::vector<std::size_t>{172});
    for (std::size_t k = 0; k < 172; ++k) CHECK(a.data[k] == doc.at("scores").at(k).get<double>());
    REQUIRE(csv.size() == 1 + 6);
    for (std::size_t r = 0; r < 6; ++r) {
      const json& t = doc.at("top").at(r);
      CHECK(csv[r + 1] == std::vector<std::string>{"3", std::to_string(r + 1), std::to_string(t.at("neuron").get<int>()),
                                                    depass::output::exact_number(t.at("score"))});
      CHECK(html_has_score(html, t.at("score")));
      CHECK(text.find(signed_fixed(t.at("score"), 4)) != kNpos);
    }
  }
  for (const std::string& command : {std::string("subspace --layer 4 --site mlp --top-tokens 2") + golden_basis_flags(dir),
                                     std::string("decode --init heads --layer 1 --k 2")}) {
    INFO(command);
    const std::string args = command + model + ids;
    outputs(args, doc, csv, html, text);
    ok_run(args + " --output " + dt::sh(npy));
    const depass::output::NpyArray a = depass::output::load_npy(npy);
    const json& comps = doc.at("components");
    REQUIRE(a.shape == std::vector<std::size_t>{comps.size()});
    std::size_t row = 1;
    for (std::size_t m = 0; m < comps.size(); ++m) {
      const double score = comps[m].at("score");
      CHECK(a.data[m] == score);
      CHECK(html_has_score(html, score));
      CHECK(text.find(signed_fixed(score, 4)) != kNpos);
      const json& top = comps[m].at("top_tokens");
      for (std::size_t k = 0; k < std::max<std::size_t>(1, top.size()); ++k, ++row) {
        REQUIRE(row < csv.size());
        CHECK(csv[row][1] == comps[m].at("label"));
        CHECK(csv_number(csv[row][2]) == score);
        if (top.empty()) continue;
        CHECK(csv[row][4] == std::to_string(top.at(k).at("id").get<int>()));
        CHECK(csv_number(csv[row][6]) == top.at(k).at("logit").get<double>());
      }
    }
    if (command.rfind("subspace", 0) == 0) {
      REQUIRE(row < csv.size());
      CHECK(csv[row][1] == "bias");
      ++row;
    }
    CHECK(row == csv.size());
  }
  {
    INFO("generate --explain");
    const std::string args = "generate --explain --max-new 3 --prompt 'Once upon a time'" + model;
    outputs(args, doc, csv, html, text);
    ok_run(args + " --output " + dt::sh(npy));
    const depass::output::NpyArray a = depass::output::load_npy(npy);
    const std::size_t P = 5, T = 3;
    REQUIRE(a.shape == std::vector<std::size_t>{T, P + T - 1});
    std::size_t row = 1;
    for (std::size_t t = 0; t < T; ++t) {
      const json& step = doc.at("steps").at(t);
      CHECK(text.find("step " + std::to_string(t) + ": '" + step.at("token").at("text").get<std::string>() + "'") != kNpos);
      for (std::size_t i = 0; i < P + T - 1; ++i) {
        if (i >= step.at("scores").size()) {
          CHECK(std::isnan(a.data[t * (P + T - 1) + i]));  // not yet generated at step t
          continue;
        }
        const double score = step.at("scores").at(i);
        CHECK(a.data[t * (P + T - 1) + i] == score);
        CHECK(html_has_score(html, score));
        REQUIRE(row < csv.size());
        CHECK(csv[row][0] == std::to_string(t));
        CHECK(csv[row][2] == std::to_string(step.at("token").at("id").get<int>()));
        CHECK(csv[row][5] == std::to_string(i));
        CHECK(csv_number(csv[row][8]) == score);
        ++row;
      }
      REQUIRE(row < csv.size());
      CHECK(csv[row][5] == "bias");
      ++row;
    }
    CHECK(row == csv.size());
  }
  {
    INFO("info");
    outputs("info" + model, doc, csv, html, text);
    std::size_t fields = 0;
    for (auto it = doc.begin(); it != doc.end(); ++it) fields += it.value().is_object() ? it.value().size() : 1;
    REQUIRE(csv.size() == fields + 1);
    for (std::size_t r = 1; r < csv.size(); ++r) {
      const std::string& key = csv[r][0];
      const std::size_t dot = key.find('.');
      const json& v = dot == kNpos ? doc.at(key) : doc.at(key.substr(0, dot)).at(key.substr(dot + 1));
      const std::string value = v.is_string() ? v.get<std::string>() : v.dump();
      CHECK(csv[r][1] == value);
      if (key == "schema") continue;  // not in the text view
      CHECK(text.find(key) != kNpos);
      CHECK(text.find(value) != kNpos);
    }
    CHECK(html.find(">260032<") != kNpos);
    CHECK(html.find(">" + doc.at("tokenizer").at("path").get<std::string>() + "<") != kNpos);
    CHECK(dt::run_cli("info --format npy" + model).code == 2);  // no score array
  }
  {
    INFO("tokenize");
    const ReferencePrompt ref = reference_prompt();
    csv = dt::parse_csv(ok_run("tokenize --format csv --prompt " + dt::sh(ref.text) + model).out);
    REQUIRE(csv.size() == ref.ids.size() + 1);
    CHECK(csv[0] == std::vector<std::string>{"position", "token_id", "token_text"});
    for (std::size_t i = 0; i < ref.ids.size(); ++i) {
      CHECK(csv[i + 1][0] == std::to_string(i));
      CHECK(csv[i + 1][1] == std::to_string(ref.ids[i]));
    }
    CHECK(csv[2][2] == " Once");
  }
}

TEST_CASE("depass --output, --json and --quiet on every command: the files are the documents, nothing is printed",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  const std::vector<std::string> commands = {"modules" + ids,
                                             "heads --layer 4" + ids,
                                             "neurons --layer 1" + ids,
                                             "subspace --layer 4 --site mlp" + golden_basis_flags(dir) + ids,
                                             "decode --init modules --layer 3 --site mlp" + ids,
                                             "generate --explain --max-new 2 --prompt 'Once upon a time'",
                                             "info",
                                             "tokenize --prompt 'Once upon a time'"};
  int n = 0;
  for (const std::string& command : commands) {
    INFO(command);
    const std::string args = command + model;
    const std::string out = dir.path("out" + std::to_string(n) + ".csv"), doc = dir.path("doc" + std::to_string(n) + ".json");
    ++n;
    const dt::RunResult quiet = ok_run(args + " --output " + dt::sh(out) + " --json " + dt::sh(doc) + " --quiet");
    CHECK(quiet.out.empty());
    CHECK(quiet.err.empty());
    CHECK(json::parse(dt::read_file(doc)) == doc_of(args));
    CHECK(dt::read_file(out) == ok_run(args + " --format csv").out);
    // Without --quiet: the text view on stdout and a note per file on stderr.
    const dt::RunResult loud = ok_run(args + " --output " + dt::sh(out) + " --json " + dt::sh(doc));
    CHECK(loud.out == ok_run(args).out);
    CHECK(count_of(loud.err, "depass: wrote ") == 2);
    // --output by extension: JSON.
    ok_run(args + " --output " + dt::sh(doc) + " --quiet");
    CHECK(json::parse(dt::read_file(doc)) == doc_of(args));
  }
}

namespace cli_options {

/// Rows of the first ranked table of an HTML report.
std::size_t html_ranking_rows(const std::string& html, std::size_t from = 0) {
  const std::size_t start = html.find("<table class=\"ranking\">", from);
  if (start == kNpos) return 0;
  const std::size_t end = html.find("</table>", start);
  return count_of(html.substr(start, end - start), "<tr><td>");
}

}  // namespace cli_options

TEST_CASE("depass --top K: K ranked rows in text (tokens, heads, neurons, generate --explain) and HTML (tokens, generate --explain)",
          "[cli][options]") {
  CLI_OPTIONS_SETUP();
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  for (std::size_t k : {3, 7}) {
    const std::string top = " --top " + std::to_string(k);
    INFO("--top " << k);
    CHECK(ranked_rows(ok_run("tokens" + model + ids + top).out) == k);
    CHECK(ranked_rows(ok_run("heads" + model + ids + top).out) == k);
    CHECK(ranked_rows(ok_run("neurons --layer 2" + model + ids + top).out) == k);
    CHECK(html_ranking_rows(ok_run("tokens --alternatives 0 --format html" + model + ids + top).out) == k);
    // generate --explain: one ranking per step, over the positions that existed then (5 and 6).
    const std::string html = ok_run("generate --explain --max-new 2 --prompt 'Once upon a time' --format html" + model + top).out;
    const std::size_t second = html.find("<table class=\"ranking\">") + 1;
    CHECK(html_ranking_rows(html) == std::min<std::size_t>(k, 5));
    CHECK(html_ranking_rows(html, second) == std::min<std::size_t>(k, 6));
    // Its text view lists the strongest k positions per step ("top: 'a'@3 +0.123 ...").
    const std::string text = ok_run("generate --explain --max-new 1 --prompt 'Once upon a time' --color never" + model + top).out;
    const std::size_t line = text.find("  top:");
    REQUIRE(line != kNpos);
    CHECK(count_of(text.substr(line, text.find('\n', line) - line), "'@") == std::min<std::size_t>(k, 5));
  }
  CHECK(ranked_rows(ok_run("tokens" + model + ids).out) == 10);  // the default
  const std::string steps = ok_run("generate --explain --max-new 1 --prompt 'Once upon a time' --color never" + model).out;
  CHECK(count_of(steps.substr(steps.find("  top:"), steps.find('\n', steps.find("  top:")) - steps.find("  top:")), "'@") == 3);
}

TEST_CASE("depass --color always / never and --no-progress on every command", "[cli][options]") {
  CLI_OPTIONS_SETUP();
  dt::TempDir dir;
  const std::string ids = " --ids " + dt::ids_arg(golden_prompt());
  struct Run {
    std::string args, bar, view;  // the command, its progress bar's label, a word of its text view
  };
  const std::vector<Run> runs = {{"tokens" + ids, "tokens [", "target"},
                                 {"modules" + ids, "modules [", "target"},
                                 {"heads" + ids, "heads [", "target"},
                                 {"neurons --layer 2" + ids, "neurons [", "target"},
                                 {"subspace --layer 4 --site mlp" + golden_basis_flags(dir) + ids, "subspace [", "target"},
                                 {"decode --init heads --layer 1" + ids, "decode [", "target"},
                                 {"generate --explain --max-new 2 --prompt 'Once upon a time'", "generate [", "generated:"}};
  const bool terminal = has_script();
  if (!terminal) WARN("util-linux `script` is not installed: --color never and --no-progress are checked off a terminal only");
  for (const Run& run : runs) {
    INFO(run.args);
    const std::string args = run.args + model;
    // Off a terminal (a file): colour only when asked for.
    CHECK(ok_run(args).out.find('\x1b') == kNpos);
    CHECK(ok_run(args + " --color always").out.find("\x1b[") != kNpos);
    CHECK(ok_run(args + " --color never").out.find('\x1b') == kNpos);
    if (!terminal) continue;
    // On a terminal: colours and a progress bar by default; neither with --color never --no-progress.
    const dt::RunResult coloured = run_on_terminal(args);
    REQUIRE(coloured.code == 0);
    CHECK(coloured.out.find("\x1b[38;5;") != kNpos);
    CHECK(coloured.out.find(run.bar) != kNpos);
    const dt::RunResult no_bar = run_on_terminal(args + " --no-progress");
    REQUIRE(no_bar.code == 0);
    CHECK(no_bar.out.find(run.bar) == kNpos);
    CHECK(no_bar.out.find("\x1b[38;5;") != kNpos);  // still coloured
    const dt::RunResult plain = run_on_terminal(args + " --color never --no-progress");
    REQUIRE(plain.code == 0);
    CHECK(plain.out.find('\x1b') == kNpos);
    CHECK(plain.out.find(run.view) != kNpos);  // the text view is there
  }
}
