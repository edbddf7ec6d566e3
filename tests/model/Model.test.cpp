// The plain forward pass against the independent PyTorch reference, greedy generation
// against the known stories, and refusal of bad inputs.

#include <catch2/catch.hpp>
#include <depass/Model.hpp>
#include <depass/Tokenizer.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

nlohmann::json read_golden(const std::string& name) {
  std::ifstream in(test::golden_path(name));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

/// The model a golden file names: a llama2.c file or a Hugging Face directory.
std::string model_location(const std::string& relative) {
  return test::model_path(relative);
}

template <typename Scalar>
void check_logits(const std::string& golden_file) {
  const nlohmann::json golden = read_golden(golden_file);
  const std::string relative = golden["model"];
  DEPASS_REQUIRE_MODEL(path, relative);
  const Model<Scalar>& model = test::cached_model<Scalar>(model_location(relative));
  // Issue bounds: 1e-4 (float) / 1e-10 (double) relative to the logits' scale.
  const bool is_float = std::is_same<Scalar, float>::value;
  const double tolerance = is_float ? 1e-4 : 1e-10;
  const char* key = is_float ? "logits_f32" : "logits_f64";
  for (const nlohmann::json& c : golden["cases"]) {
    const std::vector<int> ids = c["ids"];
    const Matrix<Scalar> logits = model.forward(ids);
    REQUIRE(logits.rows() == static_cast<Eigen::Index>(ids.size()));
    REQUIRE(logits.cols() == model.config().vocab_size);
    double scale = 0, worst = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const std::vector<double> row = c[key][i];
      for (std::size_t t = 0; t < row.size(); ++t) {
        scale = std::max(scale, std::abs(row[t]));
        worst = std::max(worst, std::abs(static_cast<double>(logits(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(t))) - row[t]));
      }
    }
    INFO(golden_file << ": max |ours - reference| = " << worst << ", logit scale " << scale);
    CHECK(worst <= tolerance * scale);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("stories260K logits match the PyTorch reference", "[model][golden]", DEPASS_TEST_SCALARS) {
  check_logits<TestType>("stories260K_logits.json");
}

TEMPLATE_TEST_CASE("TinyStories-656K logits match the PyTorch reference", "[model][golden]", DEPASS_TEST_SCALARS) {
  check_logits<TestType>("tinystories656k_logits.json");
}

TEST_CASE("stories260K greedy story from tok512 equals the reference token for token", "[model][golden]") {
  const nlohmann::json golden = read_golden("stories260K_generate.json");
  DEPASS_REQUIRE_MODEL(path, golden["model"].get<std::string>());
  DEPASS_REQUIRE_MODEL(tok_path, golden["tokenizer"].get<std::string>());
  const Tokenizer tokenizer = Tokenizer::from_llama2c(tok_path);
  const std::vector<int> prompt = tokenizer.encode(golden["prompt"].get<std::string>(), true);
  CHECK(prompt == golden["prompt_ids"].get<std::vector<int>>());
  const std::vector<int> expected = golden["greedy_ids"];
  REQUIRE(expected.size() >= 60);
  const std::vector<int> generated = test::cached_model<float>(path).generate(prompt, 60);
  CHECK(generated == std::vector<int>(expected.begin(), expected.begin() + 60));
  std::string text = tokenizer.decode(prompt);
  for (std::size_t i = 0; i < generated.size(); ++i)
    text += tokenizer.token_text(i == 0 ? prompt.back() : generated[i - 1], generated[i]);
  CHECK(text.rfind("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", 0) == 0);
}

TEMPLATE_TEST_CASE("TinyStories-656K greedy continuation equals the reference", "[model][golden]", DEPASS_TEST_SCALARS) {
  const nlohmann::json golden = read_golden("tinystories656k_generate.json");
  DEPASS_REQUIRE_MODEL(config, "tinystories-656k/config.json");
  const std::string dir = test::model_path("tinystories-656k");
  const Tokenizer tokenizer = Tokenizer::from_huggingface(dir);
  const std::vector<int> prompt = tokenizer.encode(golden["prompt"].get<std::string>(), true);
  CHECK(prompt == golden["prompt_ids"].get<std::vector<int>>());
  const std::vector<int> expected = golden["greedy_ids"];
  const std::vector<int> generated =
      test::cached_model<TestType>(dir).generate(prompt, static_cast<int>(expected.size()));
  CHECK(generated == expected);
}

TEST_CASE("Generation stops at the stop token and at the end of the context", "[model]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<float>& model = test::cached_model<float>(path);
  const std::vector<int> prompt = {1, 403, 407, 261, 378};
  const std::vector<int> free_run = model.generate(prompt, 8);
  REQUIRE(free_run.size() == 8);
  const std::vector<int> stopped = model.generate(prompt, 8, free_run[2]);
  CHECK(stopped == std::vector<int>(free_run.begin(), free_run.begin() + 3));
  std::vector<int> almost_full(static_cast<std::size_t>(model.config().max_seq_len) - 2, 261);
  almost_full[0] = 1;
  CHECK(model.generate(almost_full, 10).size() == 2);
  CHECK(model.generate(prompt, 0).empty());
  REQUIRE_THROWS_WITH(model.generate(prompt, -1), Catch::Contains("max_new = -1"));
}

TEST_CASE("The forward pass refuses bad token sequences", "[model]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<double>& model = test::cached_model<double>(path);
  using Catch::Matchers::Contains;
  REQUIRE_THROWS_WITH(model.forward({}), Contains("token sequence is empty"));
  REQUIRE_THROWS_WITH(model.forward({1, 512}), Contains("token id 512 at position 1 is out of range [0, 512)"));
  REQUIRE_THROWS_WITH(model.forward({1, -3}), Contains("token id -3 at position 1"));
  const std::vector<int> too_long(513, 1);
  REQUIRE_THROWS_WITH(model.forward(too_long), Contains("513 tokens, longer than the model's context of 512"));
  Matrix<double> wrong_width = Matrix<double>::Zero(3, 32);
  REQUIRE_THROWS_WITH(model.attention_block(0, wrong_width), Contains("width 32, expected dim = 64"));
  Matrix<double> x = model.embed({1, 2});
  REQUIRE_THROWS_WITH(model.mlp_block(5, x), Contains("layer 5 is out of range [0, 5)"));
}

TEST_CASE("Hooks fire after every named sub-step of the plain forward pass", "[model]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<double>& model = test::cached_model<double>(path);
  const std::vector<int> ids = {1, 403, 407, 261};
  std::vector<std::pair<std::string, int>> events;
  Matrix<double> last_residual, logits_seen;
  Hook<double> hook = [&](const HookEvent<double>& e) {
    events.emplace_back(e.name, e.layer);
    CHECK(e.components == nullptr);
    if (std::string(e.name) == "layer_out") last_residual = e.value;
    if (std::string(e.name) == "logits") logits_seen = e.value;
    if (std::string(e.name) == "attn_probs") {
      // H stacked causal, row-stochastic matrices.
      REQUIRE(e.value.rows() == 8 * 4);
      for (Eigen::Index r = 0; r < e.value.rows(); ++r) {
        CHECK(e.value.row(r).sum() == Approx(1.0).epsilon(1e-12));
        for (Eigen::Index j = r % 4 + 1; j < 4; ++j) CHECK(e.value(r, j) == 0.0);
      }
    }
  };
  const Matrix<double> logits = model.forward(ids, hook);
  REQUIRE(events.size() == 1 + 5 * 11 + 2);
  CHECK(events.front() == std::make_pair(std::string("embed"), -1));
  CHECK(events[1] == std::make_pair(std::string("attn_norm"), 0));
  CHECK(events[events.size() - 3] == std::make_pair(std::string("layer_out"), 4));
  CHECK(events.back() == std::make_pair(std::string("logits"), -1));
  CHECK((logits_seen - logits).cwiseAbs().maxCoeff() == 0);
  // The logits are the final-normed last residual times the unembedding.
  const Matrix<double> expected = model.final_norm(last_residual) * model.weights().unembedding().transpose();
  CHECK((expected - logits).cwiseAbs().maxCoeff() <= 1e-12 * logits.cwiseAbs().maxCoeff());
  // last_only gives the final row alone.
  const Matrix<double> last = model.forward(ids, {}, true);
  REQUIRE(last.rows() == 1);
  CHECK((last.row(0) - logits.row(3)).cwiseAbs().maxCoeff() <= 1e-12 * logits.cwiseAbs().maxCoeff());
}

TEST_CASE("A parallel-residual layer's blocks both read the layer's input", "[model]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<double>& sequential = test::cached_model<double>(path);
  Checkpoint<double> checkpoint{sequential.config(), sequential.weights()};
  checkpoint.config.parallel_residual = true;
  checkpoint.config.architecture = "parallel-llama";
  const Model<double> model(checkpoint);
  const std::vector<int> ids = {1, 403, 407, 261, 378};
  // By hand from the layer types: x += attention(norm1(x)) + mlp(norm2(x)), layer after layer.
  Matrix<double> x = model.embed(ids);
  for (int l = 0; l < model.config().n_layers; ++l) {
    const Matrix<double> attention = model.attention(l).forward(model.attention_norm(l).forward(x, nullptr), {}).out;
    const Matrix<double> mlp = model.mlp(l).forward(model.mlp_norm(l).forward(x, nullptr), {}).out;
    x += attention + mlp;
  }
  const Matrix<double> expected = model.unembedding().logits(model.final_norm(x));
  const Matrix<double> logits = model.forward(ids);
  CHECK((logits - expected).cwiseAbs().maxCoeff() <= 1e-12 * expected.cwiseAbs().maxCoeff());
  CHECK((logits - sequential.forward(ids)).cwiseAbs().maxCoeff() > 1e-3);  // it is another model
  // The tape's boundary 2l+1 is the input plus the attention's update; the MLP read the input.
  const Tape<double> tape = model.record(model.embed(ids));
  const LayerTape<double>& t = tape.layers[1];
  CHECK(t.mlp_input == t.attention_input);
  CHECK((tape.residual(3) - (t.attention_input + t.attention.out)).cwiseAbs().maxCoeff() <= 1e-13);
  // mlp_block needs the input on this model, and only on this one.
  using Catch::Matchers::Contains;
  Matrix<double> state = model.embed(ids);
  REQUIRE_THROWS_WITH(model.mlp_block(0, state),
                      Contains("mlp_block(0): a parallel-residual model's (parallel-llama) MLP reads the layer's input"));
  const LayerInput<double> input{state, {}};
  Matrix<double> wrong = state.topRows(2);
  REQUIRE_THROWS_WITH(model.mlp_block(0, wrong, nullptr, {}, &input), Contains("the layer input is 5 x 64, the state 2 x 64"));
  REQUIRE_THROWS_WITH(sequential.mlp_block(0, state, nullptr, {}, &input),
                      Contains("a layer input is read only by a parallel-residual model"));
}
