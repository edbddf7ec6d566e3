// The depass CLI, run as a program: every subcommand's JSON equals what the library returns
// in-process, scores + bias == target logit, generate --explain is lossless at every step,
// the other formats (CSV, NPY, HTML, text) carry the same numbers, and bad options fail
// with a clear message on stderr and a non-zero exit.

#include <catch2/catch.hpp>
#include <depass/depass.hpp>
#include <depass/output/Npy.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "CliSupport.hpp"
#include "support/Goldens.hpp"
#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;
using nlohmann::json;

namespace {

using test::kStories;
const char* kTiny = "tinystories-656k/config.json";
using test::kStoriesIds;
using test::kTinyIds;
using test::kPrompt;

using test::ids_arg;

std::string dir_of(const std::string& config_path) { return config_path.substr(0, config_path.rfind('/')); }

/// test::run_json, and nothing may be written to stderr.
json run_json_silent(const std::string& args) {
  const test::RunResult r = test::run_cli(args + " --format json");
  INFO("depass " << args << "\nstderr: " << r.err);
  REQUIRE(r.code == 0);
  REQUIRE(r.err.empty());
  return json::parse(r.out);
}

using test::close;

/// Largest logit id at position (ties: lowest id), as the CLI picks its default target.
int argmax(const Vector<double>& v) {
  Eigen::Index i = 0;
  v.maxCoeff(&i);
  return static_cast<int>(i);
}

void check_common(const json& doc, const std::string& schema) {
  CHECK(doc.at("schema") == schema);
  CHECK(doc.at("precision") == "double");
  CHECK(doc.at("mlp_split") == "softmax");
  // The BOS sink is a token-level rule: only token documents record it (the decode case here
  // starts from heads).
  if (schema == "depass.tokens/1") CHECK(doc.at("bos_sink") == true);
  else CHECK_FALSE(doc.contains("bos_sink"));
  CHECK(doc.at("residual_max_abs").get<double>() < 1e-9);
}

}  // namespace

TEST_CASE("depass tokens: JSON equals the in-process Decomposer on both models", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  DEPASS_REQUIRE_MODEL(tiny_config, kTiny);
  const std::string tiny = dir_of(tiny_config);
  for (const auto& [path, ids] : {std::make_pair(stories, kStoriesIds), std::make_pair(tiny, kTinyIds)}) {
    INFO(path);
    const Model<double>& model = test::cached_model<double>(path);
    for (long position : {-1L, 4L}) {
      const json doc = run_json_silent("tokens --model " + test::sh(path) + " --ids " + ids_arg(ids) + " --position " +
                                std::to_string(position) + " --alternatives 3");
      check_common(doc, "depass.tokens/1");
      const long pos = position < 0 ? static_cast<long>(ids.size()) + position : position;
      const Decomposition<double> d = Decomposer<double>(model).run(ids, Initialisation<double>::tokens());
      const int target = argmax(d.logits(pos));
      const Vector<double> scores = d.component_logits(pos, target);
      REQUIRE(doc.at("tokens").size() == ids.size());
      for (std::size_t i = 0; i < ids.size(); ++i) CHECK(doc["tokens"][i]["id"] == ids[i]);
      CHECK(doc.at("position") == pos);
      CHECK(doc["target"]["id"] == target);
      CHECK(close(doc["target"]["logit"].get<double>(), d.logit(pos, target)));
      REQUIRE(doc.at("scores").size() == ids.size());
      double total = doc.at("bias_score").get<double>();
      for (std::size_t m = 0; m < ids.size(); ++m) {
        CHECK(close(doc["scores"][m].get<double>(), scores(static_cast<Eigen::Index>(m))));
        total += doc["scores"][m].get<double>();
      }
      CHECK(close(doc.at("bias_score").get<double>(), scores(d.bias_component())));
      CHECK(std::abs(total - doc["target"]["logit"].get<double>()) < 1e-9);
      CHECK(doc["target"]["prob"].get<double>() > 0);
      CHECK(doc["target"]["prob"].get<double>() <= 1);
      // Alternatives: the 3 most likely tokens, each lossless.
      REQUIRE(doc.at("alternatives").size() == 3);
      CHECK(doc["alternatives"][0]["target"]["id"] == target);
      for (const json& alt : doc["alternatives"]) {
        double sum = alt["bias_score"].get<double>();
        for (const json& s : alt["scores"]) sum += s.get<double>();
        CHECK(std::abs(sum - alt["target"]["logit"].get<double>()) < 1e-9);
      }
    }
  }
}

TEST_CASE("depass tokens: --prompt, --target, split options and the legacy --json file", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string tok = test::model_path("stories260K/tok512.bin");
  test::TempDir dir;
  const std::string file = dir.path("out.json");
  const test::RunResult r = test::run_cli("tokens --model " + test::sh(stories) + " --prompt " + test::sh(kPrompt) +
                                          " --target 298 --mlp-split argmax --no-bos-sink --json " + test::sh(file));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("target 298") != std::string::npos);  // the ranked table still goes to stdout
  const json doc = json::parse(test::read_file(file));
  for (const char* key : {"schema", "tokens", "position", "target", "scores", "bias_score", "residual_max_abs"})
    CHECK(doc.contains(key));
  CHECK(doc["mlp_split"] == "argmax");
  CHECK(doc["bos_sink"] == false);
  CHECK(doc["target"]["id"] == 298);
  const Tokenizer tokenizer = Tokenizer::from_llama2c(tok, 512);
  const std::vector<int> ids = tokenizer.encode(kPrompt, true);
  REQUIRE(doc["tokens"].size() == ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CHECK(doc["tokens"][i]["id"] == ids[i]);
    // The BOS piece ("\n<s>\n" in llama2.c) is shown without its surrounding whitespace.
    CHECK(doc["tokens"][i]["text"] == (i == 0 ? std::string("<s>") : tokenizer.piece(ids[i])));
  }
  DecomposeOptions options;
  options.split = MlpSplit::Argmax;
  options.bos_sink = false;
  const Decomposition<double> d =
      Decomposer<double>(test::cached_model<double>(stories)).run(ids, Initialisation<double>::tokens(), options);
  const Vector<double> scores = d.component_logits(static_cast<Eigen::Index>(ids.size()) - 1, 298);
  for (std::size_t m = 0; m < ids.size(); ++m) CHECK(close(doc["scores"][m].get<double>(), scores(static_cast<Eigen::Index>(m))));
}

TEST_CASE("depass tokens on stories260K.gguf (tokenizer read from the file) equals the llama2.c checkpoint", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  DEPASS_REQUIRE_MODEL(gguf, "stories260K/stories260K.gguf");
  const json bin = run_json_silent("tokens --model " + test::sh(stories) + " --prompt " + test::sh(kPrompt));
  const test::RunResult r = test::run_cli("tokens --model " + test::sh(gguf) + " --prompt " + test::sh(kPrompt) + " --format json");
  if (r.code != 0) {
    WARN("skipping: the GGUF checkpoint does not load here: " << r.err);
    return;
  }
  const json g = json::parse(r.out);
  REQUIRE(g["tokens"].size() == bin["tokens"].size());
  for (std::size_t i = 0; i < g["tokens"].size(); ++i) CHECK(g["tokens"][i]["id"] == bin["tokens"][i]["id"]);
  CHECK(g["target"]["id"] == bin["target"]["id"]);
  for (std::size_t i = 0; i < g["scores"].size(); ++i) CHECK(close(g["scores"][i].get<double>(), bin["scores"][i].get<double>(), 1e-9));
}

TEST_CASE("depass modules: every layer's attention and MLP score equals module-level DePass", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  DEPASS_REQUIRE_MODEL(tiny_config, kTiny);
  for (const auto& [path, ids] : {std::make_pair(stories, kStoriesIds), std::make_pair(dir_of(tiny_config), kTinyIds)}) {
    INFO(path);
    const Model<double>& model = test::cached_model<double>(path);
    const json doc = run_json_silent("modules --model " + test::sh(path) + " --ids " + ids_arg(ids));
    check_common(doc, "depass.modules/1");
    const Eigen::Index last = static_cast<Eigen::Index>(ids.size()) - 1;
    const int target = argmax(model.forward(ids).row(last).transpose());
    CHECK(doc["target"]["id"] == target);
    const double logit = doc["target"]["logit"].get<double>();
    REQUIRE(doc.at("modules").size() == static_cast<std::size_t>(2 * model.config().n_layers));
    const Decomposer<double> decomposer(model);
    for (const json& m : doc["modules"]) {
      const int layer = m["layer"].get<int>();
      const Site site = m["site"] == "mlp" ? Site::Mlp : Site::Attention;
      const Decomposition<double> d = decomposer.run(ids, Initialisation<double>::module_output(layer, site));
      const Vector<double> scores = d.component_logits(last, target);
      CHECK(close(m["score"].get<double>(), scores(1)));
      CHECK(close(m["residual_score"].get<double>(), scores(0)));
      CHECK(std::abs(m["score"].get<double>() + m["residual_score"].get<double>() + m["bias_score"].get<double>() - logit) < 1e-9);
    }
  }
}

TEST_CASE("depass heads: the L x H table equals head-level DePass, and --layer selects one layer", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  DEPASS_REQUIRE_MODEL(tiny_config, kTiny);
  for (const auto& [path, ids] : {std::make_pair(stories, kStoriesIds), std::make_pair(dir_of(tiny_config), kTinyIds)}) {
    INFO(path);
    const Model<double>& model = test::cached_model<double>(path);
    const int L = model.config().n_layers, H = model.config().n_heads;
    const json doc = run_json_silent("heads --model " + test::sh(path) + " --ids " + ids_arg(ids) + " --position 5");
    check_common(doc, "depass.heads/1");
    CHECK(doc["n_heads"] == H);
    REQUIRE(doc["layers"].size() == static_cast<std::size_t>(L));
    const int target = doc["target"]["id"].get<int>();
    CHECK(target == argmax(model.forward(ids).row(5).transpose()));
    for (int layer = 0; layer < L; ++layer) {
      const Decomposition<double> d = Decomposer<double>(model).run(ids, Initialisation<double>::heads(layer));
      const Vector<double> scores = d.component_logits(5, target);
      const json& row = doc["layers"][static_cast<std::size_t>(layer)];
      CHECK(row["layer"] == layer);
      REQUIRE(row["heads"].size() == static_cast<std::size_t>(H));
      double total = row["residual_score"].get<double>() + row["bias_score"].get<double>();
      for (int h = 0; h < H; ++h) {
        CHECK(close(row["heads"][static_cast<std::size_t>(h)].get<double>(), scores(1 + h)));
        total += row["heads"][static_cast<std::size_t>(h)].get<double>();
      }
      CHECK(std::abs(total - doc["target"]["logit"].get<double>()) < 1e-9);
    }
    const json one = run_json_silent("heads --model " + test::sh(path) + " --ids " + ids_arg(ids) + " --position 5 --layer -1");
    REQUIRE(one["layers"].size() == 1);
    CHECK(one["layers"][0]["layer"] == L - 1);
    CHECK(one["layers"][0]["heads"] == doc["layers"][static_cast<std::size_t>(L - 1)]["heads"]);
  }
}

TEST_CASE("depass neurons: top neurons and all scores equal neuron-level DePass", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const Model<double>& model = test::cached_model<double>(stories);
  const int I = model.config().hidden_dim;
  const json doc = run_json_silent("neurons --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --layer 3 --top 7");
  check_common(doc, "depass.neurons/1");
  const Eigen::Index last = static_cast<Eigen::Index>(kStoriesIds.size()) - 1;
  const int target = doc["target"]["id"].get<int>();
  const Decomposition<double> d = Decomposer<double>(model).run(kStoriesIds, Initialisation<double>::neuron_outputs(3));
  const Vector<double> scores = d.component_logits(last, target);
  CHECK(doc["layer"] == 3);
  CHECK(doc["n_neurons"] == I);
  REQUIRE(doc["scores"].size() == static_cast<std::size_t>(I));
  for (int k = 0; k < I; ++k) CHECK(close(doc["scores"][static_cast<std::size_t>(k)].get<double>(), scores(1 + k)));
  REQUIRE(doc["top"].size() == 7);
  const Vector<double> neuron_scores = scores.segment(1, I);
  double previous = 1e300;
  for (const json& t : doc["top"]) {
    const double s = t["score"].get<double>();
    CHECK(s <= previous);
    previous = s;
    CHECK(close(s, neuron_scores(t["neuron"].get<int>())));
  }
  CHECK(close(doc["top"][0]["score"].get<double>(), neuron_scores.maxCoeff()));
  CHECK(std::abs(neuron_scores.sum() + doc["residual_score"].get<double>() + doc["other_score"].get<double>() +
                 doc["bias_score"].get<double>() - doc["target"]["logit"].get<double>()) < 1e-9);
  // Ascending order puts the most negative neuron first.
  const json asc = run_json_silent("neurons --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --layer 3 --top 1 --order asc");
  CHECK(close(asc["top"][0]["score"].get<double>(), neuron_scores.minCoeff()));
}

TEST_CASE("depass subspace: bases from .npy files (float32 and float64) equal subspace DePass", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const Model<double>& model = test::cached_model<double>(stories);
  const int D = model.config().dim;
  test::TempDir dir;
  Eigen::MatrixXd b1 = Eigen::MatrixXd::Zero(D, 3), b2(D, 2);
  for (int i = 0; i < 3; ++i) b1(i * 5, i) = 1.0;
  for (int i = 0; i < D; ++i) {
    b2(i, 0) = std::sin(0.3 * i);
    b2(i, 1) = std::cos(0.7 * i + 1);
  }
  // b1 is exactly representable in float32; b2 is stored as float64.
  const std::string f1 = dir.path("b1.npy"), f2 = dir.path("b2.npy");
  output::save_npy(f1, output::NpyArray::from_matrix(b1, output::NpyType::Float32));
  output::save_npy(f2, output::NpyArray::from_matrix(b2));
  const json doc = run_json_silent("subspace --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) +
                            " --layer 2 --site mlp --basis " + test::sh(f1) + " --basis " + test::sh(f2));
  check_common(doc, "depass.subspace/1");
  CHECK(doc["layer"] == 2);
  CHECK(doc["site"] == "mlp");
  REQUIRE(doc["bases"].size() == 2);
  CHECK(doc["bases"][0]["dtype"] == "<f4");
  CHECK(doc["bases"][1]["shape"] == json::array({D, 2}));
  const Decomposition<double> d = Decomposer<double>(model).run(
      kStoriesIds, Initialisation<double>::subspaces(Boundary::before_mlp(2), {b1, b2}));
  const Eigen::Index last = static_cast<Eigen::Index>(kStoriesIds.size()) - 1;
  const int target = doc["target"]["id"].get<int>();
  const Vector<double> scores = d.component_logits(last, target);
  REQUIRE(doc["components"].size() == 3);
  double total = doc["bias_score"].get<double>();
  for (std::size_t m = 0; m < 3; ++m) {
    CHECK(doc["components"][m]["label"] == d.labels()[m]);
    CHECK(close(doc["components"][m]["score"].get<double>(), scores(static_cast<Eigen::Index>(m))));
    total += doc["components"][m]["score"].get<double>();
    const auto top = d.top_tokens(static_cast<Eigen::Index>(m), last, 5);
    REQUIRE(doc["components"][m]["top_tokens"].size() == top.size());
    for (std::size_t r = 0; r < top.size(); ++r) CHECK(doc["components"][m]["top_tokens"][r]["id"] == top[r].first);
  }
  CHECK(std::abs(total - doc["target"]["logit"].get<double>()) < 1e-9);
}

TEST_CASE("depass decode: top tokens of every component equal Decomposition::top_tokens", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const Model<double>& model = test::cached_model<double>(stories);
  test::TempDir dir;
  const std::string logits_file = dir.path("logits.npy");
  const json doc = run_json_silent("decode --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) +
                            " --init heads --layer 4 --k 4 --logits " + test::sh(logits_file));
  check_common(doc, "depass.decode/1");
  CHECK(doc["init"]["kind"] == "heads");
  const Decomposition<double> d = Decomposer<double>(model).run(kStoriesIds, Initialisation<double>::heads(4));
  const Eigen::Index last = static_cast<Eigen::Index>(kStoriesIds.size()) - 1;
  REQUIRE(doc["components"].size() == static_cast<std::size_t>(d.component_count()));
  for (Eigen::Index m = 0; m + 1 < d.component_count(); ++m) {  // the bias component is zero here
    const json& c = doc["components"][static_cast<std::size_t>(m)];
    CHECK(c["label"] == d.labels()[static_cast<std::size_t>(m)]);
    const auto top = d.top_tokens(m, last, 4);
    REQUIRE(c["top_tokens"].size() == 4);
    for (std::size_t r = 0; r < 4; ++r) {
      CHECK(c["top_tokens"][r]["id"] == top[r].first);
      CHECK(close(c["top_tokens"][r]["logit"].get<double>(), top[r].second));
    }
  }
  CHECK(doc["components"].back()["top_tokens"].empty());  // model without biases: zero bias component
  const output::NpyArray logits = output::load_npy(logits_file);
  REQUIRE(logits.shape == std::vector<std::size_t>{static_cast<std::size_t>(d.component_count()), 512});
  const Matrix<double> expected = d.component_logits(last);
  CHECK(close(logits.data[3 * 512 + 17], expected(3, 17)));
}

TEST_CASE("depass generate --explain: every step's scores + bias sum to that step's logit", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const Model<double>& model = test::cached_model<double>(stories);
  const json doc = run_json_silent("generate --model " + test::sh(stories) + " --prompt 'Once upon a time' --max-new 8 --explain");
  CHECK(doc["schema"] == "depass.generate/1");
  const std::size_t P = doc["prompt_length"].get<std::size_t>();
  REQUIRE(doc["steps"].size() == 8);
  REQUIRE(doc["tokens"].size() == P + 8);
  std::vector<int> prompt;
  for (std::size_t i = 0; i < P; ++i) prompt.push_back(doc["tokens"][i]["id"].get<int>());
  // The same greedy continuation as the model's own generation.
  const std::vector<int> greedy = model.generate(prompt, 8);
  for (std::size_t t = 0; t < 8; ++t) {
    const json& step = doc["steps"][t];
    INFO("step " << t);
    CHECK(step["token"]["id"] == greedy[t]);
    CHECK(step["position"] == P + t - 1);
    REQUIRE(step["scores"].size() == P + t);
    double total = step["bias_score"].get<double>();
    for (const json& s : step["scores"]) total += s.get<double>();
    CHECK(std::abs(total - step["token"]["logit"].get<double>()) < 1e-9);
  }
  CHECK(doc["text"].get<std::string>().rfind(", there was a little", 0) == 0);
  // Spot-check one step against an in-process run.
  std::vector<int> seq(prompt);
  seq.insert(seq.end(), greedy.begin(), greedy.begin() + 3);
  const Decomposition<double> d = Decomposer<double>(model).run(seq, Initialisation<double>::tokens());
  const Vector<double> scores = d.component_logits(static_cast<Eigen::Index>(seq.size()) - 1, greedy[3]);
  for (std::size_t m = 0; m < seq.size(); ++m)
    CHECK(close(doc["steps"][3]["scores"][m].get<double>(), scores(static_cast<Eigen::Index>(m))));
}

TEST_CASE("depass generate --explain on TinyStories-656K", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(tiny_config, kTiny);
  const json doc = run_json_silent("generate --model " + test::sh(dir_of(tiny_config)) + " --prompt 'Once upon a time,' --max-new 5 --explain");
  REQUIRE(!doc["steps"].empty());
  for (const json& step : doc["steps"]) {
    double total = step["bias_score"].get<double>();
    for (const json& s : step["scores"]) total += s.get<double>();
    CHECK(std::abs(total - step["token"]["logit"].get<double>()) < 1e-9);
  }
}

TEST_CASE("depass neurons, subspace and decode on TinyStories-656K: scores + bias == logit", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(tiny_config, kTiny);
  const std::string tiny = dir_of(tiny_config);
  const std::string m = "--model " + test::sh(tiny) + " --prompt 'Once upon a time, there was a'";
  auto near = [](double a, double b) { return std::abs(a - b) < 1e-9 * std::max(1.0, std::abs(b)); };

  const json neurons = run_json_silent("neurons " + m + " --layer 1 --top 3");
  CHECK(neurons["n_neurons"] == 384);
  double total = neurons["residual_score"].get<double>() + neurons["other_score"].get<double>() + neurons["bias_score"].get<double>();
  for (const json& s : neurons["scores"]) total += s.get<double>();
  CHECK(near(total, neurons["target"]["logit"].get<double>()));

  test::TempDir dir;
  Eigen::MatrixXd basis = Eigen::MatrixXd::Zero(128, 4);
  for (int i = 0; i < 4; ++i) basis(3 * i + 1, i) = 1.0;
  output::save_npy(dir.path("b.npy"), output::NpyArray::from_matrix(basis));
  const json sub = run_json_silent("subspace " + m + " --layer 1 --site attention --basis " + test::sh(dir.path("b.npy")));
  total = sub["bias_score"].get<double>();
  for (const json& c : sub["components"]) total += c["score"].get<double>();
  CHECK(near(total, sub["target"]["logit"].get<double>()));

  for (const std::string init : {"tokens", "modules --layer 0 --site mlp", "neurons --layer 0 --neurons 1,2,3"}) {
    const json dec = run_json_silent("decode " + m + " --init " + init + " --k 3");
    INFO(init);
    total = 0;
    for (const json& c : dec["components"]) total += c["score"].get<double>();
    CHECK(near(total, dec["target"]["logit"].get<double>()));
  }
}

TEST_CASE("depass info: the model summary matches the loaded Config", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  DEPASS_REQUIRE_MODEL(tiny_config, kTiny);
  for (const std::string& path : {stories, dir_of(tiny_config)}) {
    const Config& c = test::cached_model<double>(path).config();
    const json doc = run_json_silent("info --model " + test::sh(path));
    CHECK(doc["schema"] == "depass.info/1");
    CHECK(doc["dim"] == c.dim);
    CHECK(doc["n_layers"] == c.n_layers);
    CHECK(doc["n_heads"] == c.n_heads);
    CHECK(doc["n_kv_heads"] == c.n_kv_heads);
    CHECK(doc["vocab_size"] == c.vocab_size);
    CHECK(doc["max_seq_len"] == c.max_seq_len);
    CHECK(doc["rope_layout"] == to_string(c.rope_layout));
    CHECK(doc["tied_embeddings"] == c.tied_embeddings);
    CHECK(doc["tokenizer"]["vocab_size"] == c.vocab_size);
  }
  CHECK(run_json_silent("info --model " + test::sh(stories))["parameters"] == 260032);
  CHECK(run_json_silent("info --model " + test::sh(dir_of(tiny_config)))["format"] == "Hugging Face");
}

TEST_CASE("depass outputs: CSV, NPY, HTML and text carry the JSON's numbers", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string base = "tokens --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds);
  const json doc = run_json_silent(base);
  const std::size_t N = kStoriesIds.size();

  // NPY by extension: (N,) float64 scores, bit-identical to the JSON numbers.
  test::RunResult r = test::run_cli(base + " --output " + test::sh(dir.path("s.npy")));
  REQUIRE(r.code == 0);
  CHECK(r.err.find("wrote") != std::string::npos);
  const output::NpyArray scores = output::load_npy(dir.path("s.npy"));
  REQUIRE(scores.shape == std::vector<std::size_t>{N});
  for (std::size_t m = 0; m < N; ++m) CHECK(scores.data[m] == doc["scores"][m].get<double>());

  // The component tensor: M x N x D with M = N tokens + bias, final-normed at the output.
  r = test::run_cli(base + " --components " + test::sh(dir.path("c.npy")) + " --format json");
  REQUIRE(r.code == 0);
  const output::NpyArray comps = output::load_npy(dir.path("c.npy"));
  REQUIRE(comps.shape == std::vector<std::size_t>{N + 1, N, 64});
  const json withc = json::parse(r.out);
  CHECK(withc["components_file"]["shape"] == json::array({N + 1, N, 64}));
  CHECK(withc["components_file"]["labels"].back() == "bias");
  // Summing the components over m gives the final-normed state: its logit is the target's.
  const Model<double>& model = test::cached_model<double>(stories);
  const int target = doc["target"]["id"].get<int>();
  double logit = 0;
  for (std::size_t m = 0; m <= N; ++m)
    for (std::size_t k = 0; k < 64; ++k)
      logit += comps.data[(m * N + (N - 1)) * 64 + k] * model.weights().unembedding()(target, static_cast<Eigen::Index>(k));
  CHECK(std::abs(logit - doc["target"]["logit"].get<double>()) < 1e-9);

  // CSV: header, one row per token, a bias row; exact numbers. (Fields may be quoted and
  // hold line breaks, so records are parsed, not lines.)
  r = test::run_cli(base + " --format csv");
  REQUIRE(r.code == 0);
  const std::vector<std::vector<std::string>> rows = test::parse_csv(r.out);
  REQUIRE(rows.size() == N + 2);
  CHECK(rows[0] == std::vector<std::string>{"component", "position", "token_id", "token_text", "score", "reachable"});
  CHECK(rows[1][3] == "<s>");
  CHECK(rows[2] ==
        std::vector<std::string>{"token 1", "1", "403", " Once", output::exact_number(doc["scores"][1].get<double>()), "1"});
  for (std::size_t m = 0; m < N; ++m) CHECK(std::stod(rows[m + 1][4]) == doc["scores"][m].get<double>());
  CHECK(rows.back()[0] == "bias");

  // HTML: self-contained, one coloured span per token with its exact score.
  r = test::run_cli(base + " --output " + test::sh(dir.path("r.html")));
  REQUIRE(r.code == 0);
  const std::string html = test::read_file(dir.path("r.html"));
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);
  CHECK(html.find("<script src") == std::string::npos);
  CHECK(html.find("data-score=\"" + output::exact_number(doc["scores"][11].get<double>()) + "\"") != std::string::npos);

  // Text: stdout is a file here, so no ANSI escapes unless --color always.
  r = test::run_cli(base);
  REQUIRE(r.code == 0);
  CHECK(r.out.find('\x1b') == std::string::npos);
  CHECK(r.out.find("rank") != std::string::npos);
  r = test::run_cli(base + " --color always", "COLORTERM=truecolor");
  CHECK(r.out.find("\x1b[48;2;") != std::string::npos);
  r = test::run_cli(base + " --color always", "COLORTERM=");
  CHECK(r.out.find("\x1b[48;5;") != std::string::npos);
  // No progress bar when stderr is not a terminal.
  CHECK(r.err.empty());
}

TEST_CASE("depass on a terminal: colours unless NO_COLOR, and a progress bar on stderr", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  if (std::system("command -v script >/dev/null 2>&1") != 0) {
    WARN("skipping: util-linux `script` (a pseudo-terminal runner) is not installed");
    return;
  }
  // script(1) runs the command with stdout and stderr on a pseudo-terminal.
  auto on_tty = [&](const std::string& env) {
    const std::string inner = "env OMP_NUM_THREADS=1 TERM=xterm-256color COLORTERM= " + env + " " + test::sh(test::cli_path()) +
                              " modules --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds);
    return test::run_program("script", "-qec " + test::sh(inner) + " /dev/null");
  };
  const test::RunResult coloured = on_tty("");
  REQUIRE(coloured.code == 0);
  CHECK(coloured.out.find("\x1b[48;5;") != std::string::npos);    // 256-colour backgrounds
  CHECK(coloured.out.find("modules [") != std::string::npos);      // the progress bar (stderr, same terminal)
  CHECK(coloured.out.find("50/50 layers") != std::string::npos);   // 2 modules x 5 layers x 5 layers each
  const test::RunResult plain = on_tty("NO_COLOR=1");
  REQUIRE(plain.code == 0);
  CHECK(plain.out.find("\x1b[48;") == std::string::npos);
  CHECK(plain.out.find("layer 4") != std::string::npos);
  const test::RunResult no_bar = test::run_program(
      "script", "-qec " + test::sh("env OMP_NUM_THREADS=1 " + test::sh(test::cli_path()) + " modules --no-progress --model " +
                                   test::sh(stories) + " --ids " + ids_arg(kStoriesIds)) + " /dev/null");
  CHECK(no_bar.out.find("modules [") == std::string::npos);
}

TEST_CASE("depass: bad options fail with a clear message and a non-zero exit", "[cli]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string m = "--model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds);
  // Hostile .npy bases.
  const std::string good = output::npy_bytes(output::NpyArray::from({64, 2}, std::vector<double>(128, 0.5)));
  dir.write("truncated.npy", good.substr(0, good.size() - 9));
  std::string f2 = good;
  f2.replace(f2.find("<f8"), 3, ">f8");
  dir.write("bigendian.npy", f2);
  dir.write("notnpy.npy", "hello world, this is not a numpy file at all");
  dir.write("wrongrows.npy", output::npy_bytes(output::NpyArray::from({32, 2}, std::vector<double>(64, 0.5))));
  dir.write("rank3.npy", output::npy_bytes(output::NpyArray::from({2, 32, 2}, std::vector<double>(128, 0.5))));

  // Exit status 2 for command-line mistakes, 1 for unreadable or malformed files.
  const std::vector<std::tuple<std::string, std::string, int>> cases = {
      {"tokens " + m + " --mlp-split banana", "--mlp-split 'banana' is unknown (allowed: softmax, argmax, proportional, path)", 2},
      {"heads " + m + " --layer 5", "--layer 5 is out of range: the model has 5 layers", 2},
      {"neurons " + m + " --layer -6", "--layer -6 is out of range", 2},
      {"tokens " + m + " --position 12", "--position 12 is out of range: the sequence has 12 tokens", 2},
      {"modules " + m + " --position -13", "--position -13 is out of range", 2},
      {"tokens " + m + " --target 512", "--target 512 is not a token id of this model (allowed 0..511)", 2},
      {"heads " + m + " --target -1", "--target -1 is not a token id", 2},
      {"tokens --model /no/such/model.bin --ids 1,2", "cannot open '/no/such/model.bin'", 1},
      {"tokens " + m + " --tokenizer /no/such/tok.bin", "cannot open tokenizer '/no/such/tok.bin'", 1},
      {"subspace " + m, "missing required option --basis", 2},
      {"subspace " + m + " --basis " + test::sh(dir.path("missing.npy")), "no such file", 1},
      {"subspace " + m + " --basis " + test::sh(dir.path("truncated.npy")), "truncated data", 1},
      {"subspace " + m + " --basis " + test::sh(dir.path("bigendian.npy")), "unsupported dtype '>f8'", 1},
      {"subspace " + m + " --basis " + test::sh(dir.path("notnpy.npy")), "not a NumPy .npy file", 1},
      {"subspace " + m + " --basis " + test::sh(dir.path("wrongrows.npy")), "basis has 32 rows; the model width is D = 64", 1},
      {"subspace " + m + " --basis " + test::sh(dir.path("rank3.npy")), "must be a 2-D array", 1},
      {"subspace " + m + " --site ffn --basis " + test::sh(dir.path("wrongrows.npy")), "--site 'ffn' is unknown", 2},
      {"tokens " + m + " --format xml", "--format 'xml' is unknown", 2},
      {"tokens " + m + " --output out.xyz", "cannot tell the format of --output 'out.xyz'", 2},
      {"tokens " + m + " --bogus 1", "unknown option --bogus", 2},
      {"tokens " + m + " --temperature 0", "--temperature must be a finite number > 0", 2},
      {"tokens " + m + " --sink-ratio -1", "--sink-ratio must be a finite number > 0, got '-1'", 2},
      {"tokens " + m + " --sink-ratio nan", "--sink-ratio", 2},
      {"tokens " + m + " --top x", "option --top expects an integer, got 'x'", 2},
      {"tokens --model " + test::sh(stories) + " --ids 1,600", "--ids: token id 600 at position 1 is unknown", 2},
      {"tokens --model " + test::sh(stories), "give exactly one of --prompt, --prompt-file and --ids", 2},
      {"decode " + m + " --init everything", "--init 'everything' is unknown", 2},
      {"decode " + m + " --init heads", "--init heads needs --layer", 2},
      {"decode " + m + " --init neurons --layer 1 --neurons 1,999", "neuron 999 is out of range", 2},
      {"heads " + m + " --components x.npy", "--components needs a single decomposition", 2},
      {"info --model " + test::sh(stories) + " --format npy", "info has no score array", 2},
      {"generate --model " + test::sh(stories) + " --prompt hi --format json", "--format only applies with --explain", 2},
      {"frobnicate", "unknown command 'frobnicate'", 2},
  };
  for (const auto& [args, message, code] : cases) {
    const test::RunResult r = test::run_cli(args);
    INFO("depass " << args << "\nstderr: " << r.err);
    CHECK(r.code == code);
    CHECK(r.out.empty());
    CHECK(r.err.find(message) != std::string::npos);
  }
}

TEST_CASE("depass --help: every command has a help page with an example", "[cli]") {
  DEPASS_REQUIRE_CLI();
  const test::RunResult main = test::run_cli("--help");
  CHECK(main.code == 0);
  for (const char* command : {"tokens", "modules", "heads", "neurons", "subspace", "decode", "generate", "tokenize", "info"}) {
    INFO(command);
    CHECK(main.out.find(std::string("  ") + command) != std::string::npos);
    const test::RunResult r = test::run_cli(std::string(command) + " --help");
    CHECK(r.code == 0);
    CHECK(r.out.find(std::string("usage: depass ") + command) != std::string::npos);
    CHECK(r.out.find("example") != std::string::npos);
    // Every model format the command reads, and the exit statuses.
    for (const char* format : {"llama2.c", "GGUF", "Hugging Face"}) CHECK(r.out.find(format) != std::string::npos);
    CHECK(r.out.find("exit status: 0 success, 1 failure") != std::string::npos);
  }
}

TEST_CASE("depass tokens on GPT-2: scores + position_score + bias_score == logit", "[cli]") {
  const std::string model = test::source_dir() + "/tests/data/families/gpt2";
  const std::vector<int> ids = {406, 40, 83, 120, 7, 260, 33, 91};
  const json doc = run_json_silent("tokens --model " + test::sh(model) + " --ids " + ids_arg(ids));
  REQUIRE(doc.contains("position_score"));
  double total = doc["bias_score"].get<double>() + doc["position_score"].get<double>();
  for (const json& s : doc["scores"]) total += s.get<double>();
  CHECK(close(total, doc["target"]["logit"].get<double>(), 1e-9));
  const Model<double> in_process(io::load_checkpoint<double>(model));
  const Decomposition<double> r = Decomposer<double>(in_process).run(ids, Initialisation<double>::tokens());
  CHECK(close(doc["position_score"].get<double>(),
              r.component_logits(7, doc["target"]["id"].get<int>())(8)));
}

TEST_CASE("depass on GPT-NeoX: info names its parallel residual, tokens equal the Decomposer, mid-layer starts are refused",
          "[cli]") {
  DEPASS_REQUIRE_CLI();
  const std::string model = test::source_dir() + "/tests/data/families/gpt_neox";
  const json info = run_json_silent("info --model " + test::sh(model));
  CHECK(info["architecture"] == "gpt_neox");
  CHECK(info["parallel_residual"] == true);
  CHECK(info["rotary_dims"] == 4);
  CHECK(info["mlp"] == "gelu-erf");
  const std::vector<int> ids = {406, 40, 83, 120, 7, 260, 33, 91};
  const json doc = run_json_silent("tokens --model " + test::sh(model) + " --ids " + ids_arg(ids));
  const Model<double> in_process(io::load_checkpoint<double>(model));
  const Decomposition<double> r = Decomposer<double>(in_process).run(ids, Initialisation<double>::tokens());
  const Vector<double> expected = r.component_logits(7, doc["target"]["id"].get<int>());
  for (std::size_t m = 0; m < ids.size(); ++m) CHECK(close(doc["scores"][m].get<double>(), expected(static_cast<Eigen::Index>(m))));
  test::TempDir dir;
  const std::string basis = dir.path("basis.npy");
  output::save_npy(basis, output::NpyArray::from_matrix(Eigen::MatrixXd(Eigen::MatrixXd::Identity(64, 2))));
  const test::RunResult subspace = test::run_cli("subspace --model " + test::sh(model) + " --ids " + ids_arg(ids) +
                                                 " --layer 1 --site mlp --basis " + test::sh(basis));
  CHECK(subspace.code != 0);
  CHECK(subspace.err.find("start boundary before mlp 1 of a parallel-residual model (gpt_neox)") != std::string::npos);
}
