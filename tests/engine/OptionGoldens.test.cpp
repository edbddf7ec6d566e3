// Every DePass option path against the independent float64 reference
// (tools/reference/make_option_goldens.py -> tests/golden/options_<model>.json): split
// rules and temperatures, the attention sink, positions other than the last and targets
// other than the top-1, every initialisation with the bias component's score, chunked
// runs (members, chunk residual, bias), inner start and end boundaries, linear and llama3
// RoPE scaling. Each case runs in double and in float.

#include <catch2/catch.hpp>
#include <depass/Decomposer.hpp>
#include <depass/io/Load.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "support/Goldens.hpp"
#include "support/TestSupport.hpp"

using namespace depass;
using nlohmann::json;

namespace {

using test::read_golden;

/// "output", "before_attention L" or "before_mlp L", as the golden files write them.
Boundary parse_boundary(const std::string& text) {
  if (text == "output") return Boundary::output();
  std::istringstream in(text);
  std::string site;
  int layer = -1;
  in >> site >> layer;
  if (site == "before_attention") return Boundary::before_attention(layer);
  if (site == "before_mlp") return Boundary::before_mlp(layer);
  FAIL("unknown boundary '" << text << "' in a golden file");
  return Boundary::output();
}

template <typename Scalar>
Matrix<Scalar> matrix(const json& rows) {
  Matrix<Scalar> m(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(rows.at(0).size()));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      m(i, j) = static_cast<Scalar>(rows[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)].get<double>());
  return m;
}

template <typename Scalar>
Initialisation<Scalar> make_init(const json& golden, const json& init) {
  const std::string kind = init.at("kind");
  if (kind == "tokens") return Initialisation<Scalar>::tokens(parse_boundary(init.at("start")));
  if (kind == "heads") return Initialisation<Scalar>::heads(init.at("layer"));
  if (kind == "neurons") return Initialisation<Scalar>::neuron_outputs(init.at("layer"), init.at("neurons"));
  if (kind == "module")
    return Initialisation<Scalar>::module_output(init.at("layer"),
                                                 init.at("site") == "mlp" ? Site::Mlp : Site::Attention);
  REQUIRE(kind == "subspace");
  std::vector<Matrix<Scalar>> bases;
  const bool projections = init.contains("projections");
  if (projections) {
    // P = left * right^T (the golden stores the D x k factors of each D x D projection).
    for (int i : init.at("projections")) {
      const json& p = golden.at("projections").at(static_cast<std::size_t>(i));
      const Matrix<double> P = matrix<double>(p.at("left")) * matrix<double>(p.at("right")).transpose();
      bases.push_back(P.cast<Scalar>());
    }
  } else {
    for (int i : init.at("bases")) bases.push_back(matrix<Scalar>(golden.at("bases").at(static_cast<std::size_t>(i))));
  }
  return Initialisation<Scalar>::subspaces(parse_boundary(init.at("start")), bases, projections);
}

DecomposeOptions make_options(const json& o) {
  DecomposeOptions options;
  options.split = parse_mlp_split(o.at("split"));
  options.temperature = o.at("temperature");
  options.bos_sink = o.at("bos_sink");
  options.sink_ratio = o.value("sink_ratio", 0.0);
  options.chunk_size = o.at("chunk_size");
  options.end = parse_boundary(o.at("end"));
  return options;
}

/// Largest |ours - reference| allowed, relative to the readout's scale: float differs from
/// the float64 reference by rounding (amplified by 1/T in the softmax split and by the
/// cancellation the proportional rule guards against).
template <typename Scalar>
double tolerance(const std::string& split) {
  if (!std::is_same<Scalar, float>::value) return 1e-8;
  return split == "proportional" ? 2e-3 : 2e-4;
}

/// The golden's model: a checkpoint under tests/data ("source": "data"; a config override
/// goes into a copy of the directory) or under the models directory. Loaded once per run.
template <typename Scalar>
const Model<Scalar>* golden_model(const json& golden, const std::string& path) {
  static std::map<std::string, std::unique_ptr<Model<Scalar>>> cache;
  const std::string key = path + golden.value("config_overrides", json::object()).dump();
  std::unique_ptr<Model<Scalar>>& slot = cache[key];
  if (slot) return slot.get();
  if (!golden.contains("config_overrides")) {
    slot.reset(new Model<Scalar>(io::load_checkpoint<Scalar>(path)));
    return slot.get();
  }
  namespace fs = std::filesystem;
  test::TempDir dir;
  json config = json::parse(test::read_file(path + "/config.json"));
  config.merge_patch(golden.at("config_overrides"));
  dir.write("config.json", config.dump(2));
  fs::copy_file(path + "/model.safetensors", dir.path("model.safetensors"));
  slot.reset(new Model<Scalar>(io::load_checkpoint<Scalar>(dir.root())));
  return slot.get();
}

template <typename Scalar>
void check_readouts(const Decomposition<Scalar>& result, const json& c, const std::string& split) {
  const Eigen::Index K = c.at("members");
  const bool chunked = c.at("options").at("chunk_size").get<long>() > 0;
  REQUIRE(result.component_count() == K + 1 + (chunked ? 1 : 0));
  CHECK(result.chunk_count() == c.at("chunks").get<int>());
  for (const json& r : c.at("readouts")) {
    const Eigen::Index position = r.at("position");
    const int target = r.at("target");
    const std::vector<double> expected = r.at("scores");
    const Vector<Scalar> scores = result.component_logits(position, target);
    double scale = std::abs(r.at("logit").get<double>());
    for (double e : expected) scale = std::max(scale, std::abs(e));
    const double tol = tolerance<Scalar>(split) * scale;
    INFO("position " << position << ", target " << target << ", tolerance " << tol);
    CHECK(std::abs(static_cast<double>(result.logit(position, target)) - r.at("logit").get<double>()) <= tol);
    double worst = 0;
    Eigen::Index worst_at = -1;
    for (Eigen::Index m = 0; m < K; ++m) {
      const double d = std::abs(static_cast<double>(scores(m)) - expected[static_cast<std::size_t>(m)]);
      if (d > worst) worst = d, worst_at = m;
    }
    INFO("largest member difference " << worst << " at member " << worst_at);
    CHECK(worst <= tol);
    CHECK(std::abs(static_cast<double>(scores(result.bias_component())) - r.at("bias").get<double>()) <= tol);
    if (chunked) {
      REQUIRE(result.chunk_residual_component() >= 0);
      CHECK(std::abs(static_cast<double>(scores(result.chunk_residual_component())) -
                     r.at("chunk_residual").get<double>()) <= tol);
    }
  }
  if (c.contains("top_tokens") && std::is_same<Scalar, double>::value) {
    const json& top = c.at("top_tokens");
    const std::vector<std::vector<int>> expected = top.at("ids");
    REQUIRE(static_cast<Eigen::Index>(expected.size()) == K + 1);
    for (Eigen::Index m = 0; m <= K; ++m) {
      const Eigen::Index component = m < K ? m : result.bias_component();
      if (expected[static_cast<std::size_t>(m)].empty()) {
        CHECK(result.components().component(component).row(top.at("position").get<Eigen::Index>()).cwiseAbs().maxCoeff() == 0);
        continue;
      }
      std::vector<int> ids;
      for (const auto& t : result.top_tokens(component, top.at("position"), top.at("k"))) ids.push_back(t.first);
      INFO("top tokens of component " << component);
      CHECK(ids == expected[static_cast<std::size_t>(m)]);
    }
  }
}

template <typename Scalar>
void check_end_values(const Decomposition<Scalar>& result, const json& golden, const json& c, const std::string& split) {
  const Eigen::Index K = c.at("members");
  REQUIRE(result.component_count() == K + 1);
  const Vector<double> probe = matrix<double>(json::array({golden.at("probe")})).row(0).transpose();
  for (const json& v : c.at("end_values")) {
    const Eigen::Index p = v.at("position");
    auto sum_of = [&](Eigen::Index m) { return static_cast<double>(result.components().component(m).row(p).sum()); };
    auto probe_of = [&](Eigen::Index m) {
      return result.components().component(m).row(p).template cast<double>().dot(probe);
    };
    const double scale = std::max(std::abs(v.at("state_sum").get<double>()), std::abs(v.at("state_probe").get<double>()));
    const double tol = tolerance<Scalar>(split) * std::max(1.0, scale);
    INFO("position " << p << ", tolerance " << tol);
    CHECK(std::abs(static_cast<double>(result.state().row(p).sum()) - v.at("state_sum").get<double>()) <= tol);
    CHECK(std::abs(result.state().row(p).template cast<double>().dot(probe) - v.at("state_probe").get<double>()) <= tol);
    for (Eigen::Index m = 0; m < K; ++m) {
      INFO("member " << m);
      CHECK(std::abs(sum_of(m) - v.at("sum")[static_cast<std::size_t>(m)].get<double>()) <= tol);
      CHECK(std::abs(probe_of(m) - v.at("probe")[static_cast<std::size_t>(m)].get<double>()) <= tol);
    }
    CHECK(std::abs(sum_of(result.bias_component()) - v.at("bias_sum").get<double>()) <= tol);
    CHECK(std::abs(probe_of(result.bias_component()) - v.at("bias_probe").get<double>()) <= tol);
  }
}

template <typename Scalar>
void check_linear_rope_logits(const Model<Scalar>& model, const json& golden) {
  const std::vector<int> ids = golden.at("prompts").at(0);
  const Matrix<Scalar> logits = model.forward(ids);
  const double tol = std::is_same<Scalar, float>::value ? 1e-4 : 1e-10;
  for (const json& l : golden.at("logits")) {
    const Eigen::Index p = l.at("position");
    const std::vector<double> expected = l.at("values");
    double scale = 1;
    for (double e : expected) scale = std::max(scale, std::abs(e));
    for (std::size_t t = 0; t < expected.size(); ++t) {
      INFO("logit of token " << t << " at position " << p);
      CHECK(std::abs(static_cast<double>(logits(p, static_cast<Eigen::Index>(t))) - expected[t]) <= tol * scale);
    }
  }
}

/// The reference's sink positions per layer (BOS first, when on) against
/// attention_sink_positions on the real pass's probabilities.
template <typename Scalar>
void check_sinks(const Model<Scalar>& model, const std::vector<int>& ids, const json& c) {
  const json& o = c.at("options");
  std::vector<std::vector<Eigen::Index>> found(static_cast<std::size_t>(model.config().n_layers));
  const Hook<Scalar> hook = [&](const HookEvent<Scalar>& e) {
    if (std::string(e.name) != "attn_probs") return;
    std::vector<Eigen::Index> positions = attention_sink_positions(e.value, model.config().n_heads, o.at("sink_ratio"));
    if (o.at("bos_sink").get<bool>() && (positions.empty() || positions.front() != 0)) positions.insert(positions.begin(), 0);
    found[static_cast<std::size_t>(e.layer)] = positions;
  };
  model.forward(ids, hook);
  CHECK(found == c.at("sinks").get<std::vector<std::vector<Eigen::Index>>>());
}

template <typename Scalar>
void check_golden_file(const std::string& name) {
  const json golden = read_golden("options_" + name + ".json");
  std::string path;
  if (golden.at("source") == "data") {
    path = test::source_dir() + "/tests/data/" + golden.at("model").get<std::string>();
  } else {
    const std::string model = golden.at("model");
    const bool directory = model.find('.') == std::string::npos;
    DEPASS_REQUIRE_MODEL(file, directory ? model + "/config.json" : model);
    path = directory ? test::model_path(model) : file;
  }
  const Model<Scalar>& model = *golden_model<Scalar>(golden, path);
  const Decomposer<Scalar> decomposer(model);
  if (golden.contains("logits")) check_linear_rope_logits(model, golden);
  for (const json& c : golden.at("cases")) {
    const std::vector<int> ids = golden.at("prompts").at(c.at("prompt").get<std::size_t>());
    const std::string split = c.at("options").at("split");
    INFO(name << ": " << c.at("name").get<std::string>());
    const Decomposition<Scalar> result =
        decomposer.run(ids, make_init<Scalar>(golden, c.at("init")), make_options(c.at("options")));
    if (c.contains("sinks")) check_sinks(model, ids, c);
    if (c.contains("readouts")) check_readouts(result, c, split);
    else check_end_values(result, golden, c, split);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("Option goldens: Llama (every initialisation, chunks, boundaries)", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("llama");
}
TEMPLATE_TEST_CASE("Option goldens: Llama 3 RoPE scaling", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("llama3");
}
TEMPLATE_TEST_CASE("Option goldens: linear RoPE scaling", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("llama_linear");
}
TEMPLATE_TEST_CASE("Option goldens: Llama F16 weights", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("llama_f16");
}
TEMPLATE_TEST_CASE("Option goldens: Mistral (every initialisation)", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("mistral");
}
TEMPLATE_TEST_CASE("Option goldens: Qwen2 biases (every initialisation, chunks)", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("qwen2");
}
TEMPLATE_TEST_CASE("Option goldens: Qwen2 untied", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("qwen2_untied");
}
TEMPLATE_TEST_CASE("Option goldens: GPT-2 (every initialisation, chunks)", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("gpt2");
}
TEMPLATE_TEST_CASE("Option goldens: GPT-2 without prefix", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("gpt2_noprefix");
}
TEMPLATE_TEST_CASE("Option goldens: Gemma (GeGLU incl. the path rule, scaled embeddings)", "[engine][golden]",
                   DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("gemma");
}
TEMPLATE_TEST_CASE("Option goldens: Gemma 2 (frozen post-norms and final soft cap; every initialisation, chunks)",
                   "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("gemma2");
}
TEMPLATE_TEST_CASE("Option goldens: GPT-NeoX (parallel residual, partial rotary, exact GELU incl. the path rule; "
                   "every initialisation defined there, chunks)",
                   "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("gpt_neox");
}
TEMPLATE_TEST_CASE("Option goldens: GPT-NeoX with a sequential residual", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("gpt_neox_sequential");
}
TEMPLATE_TEST_CASE("Option goldens: stories260K (every initialisation, chunks)", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("stories260K");
}
TEMPLATE_TEST_CASE("Option goldens: TinyStories-656K (every initialisation)", "[engine][golden]", DEPASS_TEST_SCALARS) {
  check_golden_file<TestType>("tinystories656k");
}
