// Every supported family (Llama, Llama-3 RoPE scaling, Mistral head_dim, Qwen2 biases,
// Qwen3 q/k norms, Phi-3 fused projections, Gemma GeGLU and scaled embeddings, Gemma 2
// post-norms and soft caps, GPT-2) on small random-weight checkpoints in the Hugging Face
// layout, written by the independent PyTorch reference in tools/reference/families.py.

#include <catch2/catch.hpp>
#include <depass/Decomposer.hpp>
#include <depass/io/Load.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/Goldens.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

std::string data_path(const std::string& relative) {
  return test::source_dir() + "/tests/data/" + relative;
}

template <typename Scalar>
void check_family_logits(const std::string& name) {
  const nlohmann::json golden = test::read_golden("family_" + name + ".json");
  const Model<Scalar> model(io::load_checkpoint<Scalar>(data_path(golden["model"])));
  const bool is_float = std::is_same<Scalar, float>::value;
  const double tolerance = is_float ? 1e-4 : 1e-10;
  const char* key = is_float ? "logits_f32" : "logits_f64";
  for (const nlohmann::json& c : golden["cases"]) {
    const std::vector<int> ids = c["ids"];
    const Matrix<Scalar> logits = model.forward(ids);
    double scale = 0, worst = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const std::vector<double> row = c[key][i];
      REQUIRE(static_cast<Eigen::Index>(row.size()) == logits.cols());
      for (std::size_t t = 0; t < row.size(); ++t) {
        scale = std::max(scale, std::abs(row[t]));
        worst = std::max(worst, std::abs(static_cast<double>(
                                             logits(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(t))) -
                                         row[t]));
      }
    }
    INFO(name << ": max |ours - reference| = " << worst << " at logit scale " << scale);
    CHECK(worst <= tolerance * scale);
  }
}

template <typename Scalar>
void check_family_lossless(const std::string& name) {
  const nlohmann::json golden = test::read_golden("family_" + name + ".json");
  const Model<Scalar> model(io::load_checkpoint<Scalar>(data_path(golden["model"])));
  const double tol = std::is_same<Scalar, float>::value ? 1e-4 : 1e-9;
  const std::vector<int> ids = golden["cases"][0]["ids"];
  for (const MlpSplit split : kMlpSplits) {
    for (const double sink_ratio : {0.0, 1.0}) {  // BOS alone; and the attention's sinks
      DecomposeOptions options;
      options.split = split;
      options.sink_ratio = sink_ratio;
      const Decomposition<Scalar> result = Decomposer<Scalar>(model).run(ids, Initialisation<Scalar>::tokens(), options);
      INFO(name << ", split " << to_string(split) << ", sink ratio " << sink_ratio);
      CHECK(result.max_relative_residual() <= tol);
      const Eigen::Index last = static_cast<Eigen::Index>(ids.size()) - 1;
      Eigen::Index target = 0;
      result.logits(last).maxCoeff(&target);
      const Vector<Scalar> scores = result.component_logits(last, static_cast<int>(target));
      const double logit = result.logit(last, static_cast<int>(target));
      CHECK(std::abs(static_cast<double>(scores.sum()) - logit) <= 10 * tol * std::max(1.0, std::abs(logit)));
      if (model.config().has_biases()) {
        // Biases exist, so the bias component must actually carry something.
        CHECK(result.components().component(result.bias_component()).cwiseAbs().maxCoeff() > 0);
      }
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("Every family's logits match the PyTorch reference", "[families][golden]", DEPASS_TEST_SCALARS) {
  for (const std::string& name : test::family_names()) check_family_logits<TestType>(name);
}

TEMPLATE_TEST_CASE("Token-level DePass is lossless on every family, bias component included", "[families]",
                   DEPASS_TEST_SCALARS) {
  for (const std::string& name : test::family_names()) check_family_lossless<TestType>(name);
}

TEST_CASE("Greedy generation on every family equals the PyTorch reference's", "[families][golden]") {
  for (const std::string& name : test::family_names()) {
    const nlohmann::json golden = test::read_golden("family_" + name + ".json");
    const Model<double> model(io::load_checkpoint<double>(data_path(golden["model"])));
    for (const nlohmann::json& c : golden["cases"]) {
      const std::vector<int> expected = c["greedy_f64"];
      INFO(name);
      CHECK(model.generate(c["ids"].get<std::vector<int>>(), static_cast<int>(expected.size())) == expected);
    }
  }
}

TEST_CASE("Family configs are read as their architecture requires", "[families]") {
  const Config llama3 = io::load_checkpoint<float>(data_path("families/llama3")).config;
  CHECK(llama3.rope_scaling.type == RopeScaling::Type::Llama3);
  CHECK(llama3.rope_scaling.factor == 8.0);
  CHECK(llama3.tied_embeddings);
  const Config mistral = io::load_checkpoint<float>(data_path("families/mistral")).config;
  CHECK(mistral.head_dim * mistral.n_heads != mistral.dim);
  const Config qwen2 = io::load_checkpoint<float>(data_path("families/qwen2")).config;
  CHECK(qwen2.attention_qkv_bias);
  CHECK_FALSE(qwen2.attention_out_bias);
  const Checkpoint<float> qwen3 = io::load_checkpoint<float>(data_path("families/qwen3"));
  CHECK(qwen3.config.qk_norm);
  CHECK(qwen3.config.head_dim == 24);  // not dim / n_heads
  CHECK_FALSE(qwen3.config.has_biases());
  CHECK(qwen3.weights.layers[1].q_norm.size() == 24);
  CHECK(qwen3.weights.layers[1].k_norm.size() == 24);
  const Checkpoint<float> phi3 = io::load_checkpoint<float>(data_path("families/phi3"));
  CHECK(phi3.config.architecture == "phi3");
  CHECK(phi3.weights.layers[0].wk.rows() == phi3.config.kv_width());  // split from qkv_proj
  CHECK(phi3.weights.layers[0].w3.rows() == phi3.config.hidden_dim);  // split from gate_up_proj
  const Checkpoint<float> gemma = io::load_checkpoint<float>(data_path("families/gemma"));
  CHECK(gemma.config.mlp == MlpKind::GatedGeluTanh);
  CHECK(gemma.config.embedding_scale == Approx(8.0));  // sqrt(64)
  CHECK(gemma.config.tied_embeddings);
  CHECK_FALSE(gemma.config.post_norms);
  CHECK_FALSE(gemma.config.has_biases());
  const Checkpoint<float> gemma2 = io::load_checkpoint<float>(data_path("families/gemma2"));
  CHECK(gemma2.config.post_norms);
  CHECK(gemma2.config.attention_scale == Approx(1.0 / std::sqrt(32.0)));  // query_pre_attn_scalar, not head_dim 24
  CHECK(gemma2.config.attention_softcap == 4.0);
  CHECK(gemma2.config.final_softcap == 2.0);
  CHECK(gemma2.weights.layers[1].mlp_post_norm.size() == 64);
  // Stored as w, read as the gain 1 + w: near 1, as the other families' gains.
  CHECK(std::abs(gemma2.weights.final_norm.mean() - 1.0f) < 0.1f);
  const Config gpt2 = io::load_checkpoint<float>(data_path("families/gpt2")).config;
  CHECK(gpt2.norm == NormKind::LayerNorm);
  CHECK(gpt2.mlp == MlpKind::GeluTanh);
  CHECK(gpt2.positions == PositionKind::Learned);
  const Checkpoint<float> a = io::load_checkpoint<float>(data_path("families/gpt2"));
  const Checkpoint<float> b = io::load_checkpoint<float>(data_path("families/gpt2_noprefix"));
  CHECK((a.weights.layers[1].wv - b.weights.layers[1].wv).cwiseAbs().maxCoeff() == 0);
  CHECK((a.weights.position_embedding - b.weights.position_embedding).cwiseAbs().maxCoeff() == 0);
  const Checkpoint<float> neox = io::load_checkpoint<float>(data_path("families/gpt_neox"));
  CHECK(neox.config.parallel_residual);
  CHECK(neox.config.mlp == MlpKind::GeluErf);
  CHECK(neox.config.norm == NormKind::LayerNorm);
  CHECK(neox.config.rotary_dims == 4);  // int(16 * 0.25)
  CHECK(neox.config.rope_layout == RopeLayout::Halves);
  CHECK(neox.config.has_biases());
  CHECK_FALSE(neox.config.tied_embeddings);
  CHECK(neox.weights.layers[1].bq.size() == 64);  // split from the per-head query_key_value
  const Config neox_sequential = io::load_checkpoint<float>(data_path("families/gpt_neox_sequential")).config;
  CHECK_FALSE(neox_sequential.parallel_residual);
  CHECK(neox_sequential.rotary_dims == 8);  // int(16 * 0.5)
}

TEST_CASE("GPT-NeoX's parallel residual: decompositions may end between a layer's blocks, not start there",
          "[families]") {
  const Model<double> model(io::load_checkpoint<double>(data_path("families/gpt_neox")));
  const Decomposer<double> decomposer(model);
  const std::vector<int> ids = {406, 17, 250, 31, 99, 5};
  DecomposeOptions options;
  options.end = Boundary::before_mlp(1);
  const Decomposition<double> ended = decomposer.run(ids, Initialisation<double>::tokens(), options);
  // The state there is the layer input plus the attention's update, as the tape records it.
  const Tape<double> tape = model.record(model.embed(ids));
  CHECK((ended.components().sum() - tape.residual(3)).cwiseAbs().maxCoeff() <= 1e-12);
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(decomposer.run(ids, Initialisation<double>::tokens(Boundary::before_mlp(1))),
                    Contains("start boundary before mlp 1 of a parallel-residual model (gpt_neox): the layer's MLP "
                             "reads the layer's input"));
  // Heads of a layer start after its attention (its MLP reads only their "residual" member),
  // and still sum to the output.
  const Decomposition<double> heads = decomposer.run(ids, Initialisation<double>::heads(1));
  CHECK(heads.component_logits(5, 17).sum() == Approx(model.forward(ids)(5, 17)).epsilon(1e-10));
}

TEST_CASE("Token-level scores with biases, positions, post-norms and soft caps match the PyTorch reference",
          "[families][golden]") {
  for (const std::string name : {"gpt2", "qwen2", "gemma", "gemma2", "gpt_neox", "gpt_neox_sequential"}) {
    const nlohmann::json golden = test::read_golden("family_depass_" + name + ".json");
    const Model<double> model(io::load_checkpoint<double>(data_path(golden["model"])));
    Decomposer<double> decomposer(model);
    for (const nlohmann::json& c : golden["cases"]) {
      const std::vector<int> ids = c["ids"];
      const Eigen::Index position = c["position"];
      const int target = c["target"];
      DecomposeOptions options;
      options.temperature = golden["temperature"];
      options.bos_sink = golden["bos_sink"];
      const Decomposition<double> result = decomposer.run(ids, Initialisation<double>::tokens(), options);
      const Vector<double> scores = result.component_logits(position, target);
      const std::vector<double> expected = c["scores"];
      double scale = 0;
      for (double e : expected) scale = std::max(scale, std::abs(e));
      INFO(name << ": case with " << ids.size() << " tokens");
      for (std::size_t m = 0; m < expected.size(); ++m)
        CHECK(std::abs(scores(static_cast<Eigen::Index>(m)) - expected[m]) <= 1e-8 * scale);
      CHECK(std::abs(scores(result.bias_component()) - c["bias_score"].get<double>()) <= 1e-8 * scale);
      if (c.contains("position_score")) {
        REQUIRE(result.labels()[ids.size()] == "positions");
        CHECK(std::abs(scores(static_cast<Eigen::Index>(ids.size())) - c["position_score"].get<double>()) <=
              1e-8 * scale);
      }
      CHECK(result.logit(position, target) == Approx(c["target_logit"].get<double>()).epsilon(1e-10));
      CHECK(scores.sum() == Approx(c["target_logit"].get<double>()).epsilon(1e-10));
    }
  }
}
