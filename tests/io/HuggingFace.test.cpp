// Hugging Face directories: the real TinyStories-656K model, synthetic Llama/Mistral
// directories (single file and sharded) whose every tensor carries a recognisable value
// pattern, and hostile configs, tensors and indexes.

#include <algorithm>
#include <cstdio>
#include <depass/io/HuggingFace.hpp>
#include <filesystem>

#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

using namespace depass;
using namespace depass::test;

namespace {

json tiny_config() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"hidden_act", "silu"},
              {"hidden_size", 16},
              {"intermediate_size", 24},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"vocab_size", 10},
              {"max_position_embeddings", 32},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 500000.0},
              {"rope_scaling", nullptr},
              {"tie_word_embeddings", false},
              {"torch_dtype", "float32"}};
}

/// Where a tied checkpoint keeps its one embedding matrix.
enum class TiedAs { EmbedTokens, LmHead, Both };

/// The tensors a config calls for. Tensor i holds 100 * (i + 1) + k / 4 at flat index k,
/// so every loaded value says which tensor and which element it came from.
struct HfTensors {
  std::vector<StTensor> tensors;
  std::map<std::string, float> base;

  void drop(const std::string& name) {
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [&](const StTensor& t) { return t.name == name; }),
                  tensors.end());
  }
  StTensor& at(const std::string& name) {
    for (auto& t : tensors)
      if (t.name == name) return t;
    FAIL("test bug: no tensor " << name);
    return tensors.front();
  }
};

std::vector<float> pattern(float base, std::int64_t count) {
  std::vector<float> v(static_cast<std::size_t>(count));
  for (std::int64_t k = 0; k < count; ++k) v[static_cast<std::size_t>(k)] = base + k / 4.0f;
  return v;
}

HfTensors hf_tensors(const json& cfg, TiedAs tied_as = TiedAs::EmbedTokens) {
  const std::int64_t D = cfg["hidden_size"], I = cfg["intermediate_size"],
                     L = cfg["num_hidden_layers"], H = cfg["num_attention_heads"],
                     G = cfg.value("num_key_value_heads", H), V = cfg["vocab_size"];
  const bool explicit_hd = cfg.contains("head_dim") && !cfg["head_dim"].is_null();
  const std::int64_t hd = explicit_hd ? cfg["head_dim"].get<std::int64_t>() : D / H;
  const std::int64_t Q = H * hd, K = G * hd;
  const bool tied = cfg.value("tie_word_embeddings", false);
  const bool llama = cfg["model_type"] == "llama";
  const bool attn_bias = llama && cfg.value("attention_bias", false);
  const bool mlp_bias = llama && cfg.value("mlp_bias", false);

  HfTensors out;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    const float base = 100.0f * static_cast<float>(out.tensors.size() + 1);
    out.base[name] = base;
    out.tensors.push_back({name, "F32", shape, f32_bytes(pattern(base, n))});
  };
  if (!tied || tied_as != TiedAs::LmHead) add("model.embed_tokens.weight", {V, D});
  if (!tied || tied_as != TiedAs::EmbedTokens) add("lm_head.weight", {V, D});
  for (std::int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {D});
    add(p + "self_attn.q_proj.weight", {Q, D});
    add(p + "self_attn.k_proj.weight", {K, D});
    add(p + "self_attn.v_proj.weight", {K, D});
    add(p + "self_attn.o_proj.weight", {D, Q});
    if (attn_bias) {
      add(p + "self_attn.q_proj.bias", {Q});
      add(p + "self_attn.k_proj.bias", {K});
      add(p + "self_attn.v_proj.bias", {K});
      add(p + "self_attn.o_proj.bias", {D});
    }
    add(p + "post_attention_layernorm.weight", {D});
    add(p + "mlp.gate_proj.weight", {I, D});
    add(p + "mlp.up_proj.weight", {I, D});
    add(p + "mlp.down_proj.weight", {D, I});
    if (mlp_bias) {
      add(p + "mlp.gate_proj.bias", {I});
      add(p + "mlp.up_proj.bias", {I});
      add(p + "mlp.down_proj.bias", {D});
    }
  }
  add("model.norm.weight", {D});
  return out;
}

/// Writes config.json and model.safetensors into dir/sub and returns the directory.
std::string write_hf(const TempDir& dir, const std::string& sub, const json& cfg,
                     const HfTensors& t) {
  dir.write(sub + "/config.json", cfg.dump(2));
  dir.write(sub + "/model.safetensors", safetensors_file(t.tensors));
  return dir.path(sub);
}

/// Same, split round-robin into n shards with a model.safetensors.index.json.
std::string write_hf_sharded(const TempDir& dir, const std::string& sub, const json& cfg,
                             const HfTensors& t, int n) {
  dir.write(sub + "/config.json", cfg.dump(2));
  std::vector<std::vector<StTensor>> shards(static_cast<std::size_t>(n));
  json weight_map = json::object();
  for (std::size_t i = 0; i < t.tensors.size(); ++i) {
    const int s = static_cast<int>(i % static_cast<std::size_t>(n));
    shards[static_cast<std::size_t>(s)].push_back(t.tensors[i]);
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n);
    weight_map[t.tensors[i].name] = name;
  }
  for (int s = 0; s < n; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n);
    dir.write(sub + "/" + name, safetensors_file(shards[static_cast<std::size_t>(s)]));
  }
  dir.write(sub + "/model.safetensors.index.json",
            json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2));
  return dir.path(sub);
}

/// True if m holds tensor `name`'s pattern, element k (row-major) = base + k / 4.
template <typename Derived>
bool holds(const Eigen::MatrixBase<Derived>& m, const HfTensors& t, const std::string& name) {
  const float base = t.base.at(name);
  using T = typename Derived::Scalar;
  if (m.size() == 0) return false;
  std::int64_t k = 0;
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j, ++k)
      if (m(i, j) != static_cast<T>(base + k / 4.0f)) return false;
  return true;
}

template <typename T>
void check_all_weights(const Checkpoint<T>& ck, const HfTensors& t) {
  const Config& c = ck.config;
  const auto& w = ck.weights;
  CHECK(holds(
      w.token_embedding, t,
      t.base.count("model.embed_tokens.weight") ? "model.embed_tokens.weight" : "lm_head.weight"));
  if (!c.tied_embeddings) CHECK(holds(w.output, t, "lm_head.weight"));
  REQUIRE(w.layers.size() == static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const auto& x = w.layers[static_cast<std::size_t>(l)];
    INFO("layer " << l);
    CHECK(holds(x.attention_norm, t, p + "input_layernorm.weight"));
    CHECK(holds(x.wq, t, p + "self_attn.q_proj.weight"));
    CHECK(holds(x.wk, t, p + "self_attn.k_proj.weight"));
    CHECK(holds(x.wv, t, p + "self_attn.v_proj.weight"));
    CHECK(holds(x.wo, t, p + "self_attn.o_proj.weight"));
    CHECK(holds(x.mlp_norm, t, p + "post_attention_layernorm.weight"));
    CHECK(holds(x.w1, t, p + "mlp.gate_proj.weight"));
    CHECK(holds(x.w3, t, p + "mlp.up_proj.weight"));
    CHECK(holds(x.w2, t, p + "mlp.down_proj.weight"));
    if (c.attention_qkv_bias) {
      CHECK(holds(x.bq, t, p + "self_attn.q_proj.bias"));
      CHECK(holds(x.bk, t, p + "self_attn.k_proj.bias"));
      CHECK(holds(x.bv, t, p + "self_attn.v_proj.bias"));
    }
    if (c.attention_out_bias) CHECK(holds(x.bo, t, p + "self_attn.o_proj.bias"));
    if (c.mlp_bias) {
      CHECK(holds(x.b1, t, p + "mlp.gate_proj.bias"));
      CHECK(holds(x.b3, t, p + "mlp.up_proj.bias"));
      CHECK(holds(x.b2, t, p + "mlp.down_proj.bias"));
    }
  }
  CHECK(holds(w.final_norm, t, "model.norm.weight"));
  CHECK_NOTHROW(w.validate(c));
}

}  // namespace

// --- the real model ------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("huggingface: TinyStories-656K loads with its published config", "[io][hf]",
                   DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(weights, "tinystories-656k/model.safetensors");
  const std::string dir = model_path("tinystories-656k");
  const Checkpoint<TestType> ck = io::load_huggingface<TestType>(dir);
  const Config& c = ck.config;
  CHECK(c.architecture == "llama");
  CHECK(c.dim == 128);
  CHECK(c.n_layers == 2);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.head_dim == 16);
  CHECK(c.hidden_dim == 384);
  CHECK(c.vocab_size == 2048);
  CHECK(c.max_seq_len == 512);
  CHECK(c.norm_eps == 1e-6);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.rope_layout == RopeLayout::Halves);
  CHECK(c.tied_embeddings);
  CHECK_FALSE(c.has_biases());
  CHECK_NOTHROW(c.validate());
  CHECK_NOTHROW(ck.weights.validate(c));
  CHECK(ck.weights.output.size() == 0);

  // Raw floats at offsets taken from the file's header (data starts at 8 + 2160).
  const std::uint64_t data = 8 + raw_u64_at(weights, 0);
  auto raw = [&](std::uint64_t begin, std::uint64_t index) {
    return static_cast<TestType>(raw_f32_at(weights, data + begin + 4 * index));
  };
  const auto& w = ck.weights;
  CHECK(w.token_embedding(0, 0) == raw(0, 0));  // stored only as lm_head.weight
  CHECK(w.token_embedding(1000, 17) == raw(0, 1000 * 128 + 17));
  CHECK(w.layers[0].wq(5, 7) == raw(1737728, 5 * 128 + 7));
  CHECK(w.layers[0].wk(63, 127) == raw(1639424, 63 * 128 + 127));
  CHECK(w.layers[1].attention_norm(3) == raw(1836032, 3));
  CHECK(w.layers[1].w2(127, 383) == raw(1836544, 127 * 384 + 383));
  CHECK(w.layers[1].w1(200, 1) == raw(2033152, 200 * 128 + 1));
  CHECK(w.layers[1].w3(0, 0) == raw(2229760, 0));
  CHECK(w.layers[1].mlp_norm(127) == raw(2426368, 127));
  CHECK(w.layers[1].wo(9, 10) == raw(2459648, 9 * 128 + 10));
  CHECK(w.final_norm(64) == raw(2623488, 64));
}

TEST_CASE("huggingface: float and double loads of TinyStories-656K agree exactly", "[io][hf]") {
  DEPASS_REQUIRE_MODEL(weights, "tinystories-656k/model.safetensors");
  const std::string dir = model_path("tinystories-656k");
  const auto f = io::load_huggingface<float>(dir);
  const auto d = io::load_huggingface<double>(dir);
  CHECK(d.weights.token_embedding == f.weights.token_embedding.cast<double>());
  for (std::size_t l = 0; l < f.weights.layers.size(); ++l) {
    const auto& a = f.weights.layers[l];
    const auto& b = d.weights.layers[l];
    CHECK(b.attention_norm == a.attention_norm.cast<double>());
    CHECK(b.wq == a.wq.cast<double>());
    CHECK(b.wk == a.wk.cast<double>());
    CHECK(b.wv == a.wv.cast<double>());
    CHECK(b.wo == a.wo.cast<double>());
    CHECK(b.mlp_norm == a.mlp_norm.cast<double>());
    CHECK(b.w1 == a.w1.cast<double>());
    CHECK(b.w2 == a.w2.cast<double>());
    CHECK(b.w3 == a.w3.cast<double>());
  }
  CHECK(d.weights.final_norm == f.weights.final_norm.cast<double>());
}

// --- synthetic directories --------------------------------------------------------------------

TEMPLATE_TEST_CASE("huggingface: untied llama with biases maps every tensor", "[io][hf]", float,
                   double) {
  TempDir dir;
  json cfg = tiny_config();
  cfg["attention_bias"] = true;
  cfg["mlp_bias"] = true;
  const HfTensors t = hf_tensors(cfg);
  const auto ck = io::load_huggingface<TestType>(write_hf(dir, "m", cfg, t));
  const Config& c = ck.config;
  CHECK(c.dim == 16);
  CHECK(c.hidden_dim == 24);
  CHECK(c.n_heads == 4);
  CHECK(c.n_kv_heads == 2);
  CHECK(c.head_dim == 4);
  CHECK(c.vocab_size == 10);
  CHECK(c.max_seq_len == 32);
  CHECK(c.norm_eps == 1e-5);
  CHECK(c.rope_theta == 500000.0);
  CHECK_FALSE(c.tied_embeddings);
  CHECK(c.attention_qkv_bias);
  CHECK(c.attention_out_bias);
  CHECK(c.mlp_bias);
  check_all_weights(ck, t);
}

TEST_CASE("huggingface: tied embeddings under either name", "[io][hf]") {
  TempDir dir;
  json cfg = tiny_config();
  cfg["tie_word_embeddings"] = true;
  for (TiedAs as : {TiedAs::EmbedTokens, TiedAs::LmHead, TiedAs::Both}) {
    const HfTensors t = hf_tensors(cfg, as);
    const auto ck = io::load_huggingface<float>(write_hf(dir, "m", cfg, t));
    CHECK(ck.config.tied_embeddings);
    CHECK(ck.weights.output.size() == 0);
    // With both present the embedding wins, as transformers ties lm_head to it.
    check_all_weights(ck, t);
  }
}

TEST_CASE("huggingface: defaults for optional fields", "[io][hf]") {
  TempDir dir;
  json cfg = tiny_config();
  for (const char* key :
       {"num_key_value_heads", "rope_theta", "tie_word_embeddings", "hidden_act", "rope_scaling"})
    cfg.erase(key);
  cfg["head_dim"] = nullptr;  // null means "default", as transformers writes it
  const HfTensors t = hf_tensors(cfg);
  const auto ck = io::load_huggingface<double>(write_hf(dir, "m", cfg, t));
  CHECK(ck.config.n_kv_heads == 4);
  CHECK(ck.config.head_dim == 4);
  CHECK(ck.config.rope_theta == 10000.0);
  CHECK_FALSE(ck.config.tied_embeddings);
  check_all_weights(ck, t);
}

TEST_CASE("huggingface: explicit head_dim decouples q width from hidden size", "[io][hf]") {
  TempDir dir;
  json cfg = tiny_config();
  cfg["head_dim"] = 6;                               // q_proj is [24, 16], k/v [12, 16], o [16, 24]
  cfg["rope_scaling"] = {{"rope_type", "default"}};  // plain RoPE spelled out
  const HfTensors t = hf_tensors(cfg);
  const auto ck = io::load_huggingface<float>(write_hf(dir, "m", cfg, t));
  CHECK(ck.config.head_dim == 6);
  CHECK(ck.config.q_width() == 24);
  CHECK(ck.weights.layers[0].wo.cols() == 24);
  check_all_weights(ck, t);
}

TEST_CASE("huggingface: mistral is bias-free and caps the length at its sliding window",
          "[io][hf]") {
  TempDir dir;
  json cfg = tiny_config();
  cfg["model_type"] = "mistral";
  cfg["sliding_window"] = 16;
  const HfTensors t = hf_tensors(cfg);
  const auto ck = io::load_huggingface<float>(write_hf(dir, "m", cfg, t));
  CHECK(ck.config.architecture == "mistral");
  CHECK(ck.config.max_seq_len == 16);
  CHECK_FALSE(ck.config.has_biases());
  check_all_weights(ck, t);

  cfg["sliding_window"] = nullptr;
  CHECK(io::load_huggingface<float>(write_hf(dir, "m", cfg, t)).config.max_seq_len == 32);
}

TEMPLATE_TEST_CASE("huggingface: sharded checkpoints load like single files", "[io][hf]", float,
                   double) {
  TempDir dir;
  json cfg = tiny_config();
  cfg["attention_bias"] = true;
  const HfTensors t = hf_tensors(cfg);
  const auto single = io::load_huggingface<TestType>(write_hf(dir, "single", cfg, t));
  const auto sharded = io::load_huggingface<TestType>(write_hf_sharded(dir, "sharded", cfg, t, 3));
  check_all_weights(sharded, t);
  CHECK(sharded.weights.token_embedding == single.weights.token_embedding);
  CHECK(sharded.weights.layers[1].w2 == single.weights.layers[1].w2);
  CHECK(sharded.weights.layers[0].bo == single.weights.layers[0].bo);
}

// --- hostile configs ---------------------------------------------------------------------------

TEST_CASE("huggingface: bad config.json values name the field", "[io][hf][hostile]") {
  TempDir dir;
  const HfTensors t = hf_tensors(tiny_config());
  auto error_with = [&](const json& cfg) {
    const std::string path = write_hf(dir, "m", cfg, t);
    return format_error([&] { io::load_huggingface<float>(path); });
  };
  json cfg = tiny_config();

  SECTION("missing required fields") {
    for (const char* key :
         {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
          "vocab_size", "max_position_embeddings", "rms_norm_eps", "model_type"}) {
      json c = cfg;
      c.erase(key);
      INFO(key);
      CHECK_THAT(error_with(c),
                 Contains("config.json: missing required field '" + std::string(key) + "'"));
    }
  }
  SECTION("wrong types") {
    cfg["hidden_size"] = "abc";
    CHECK_THAT(error_with(cfg),
               Contains("config.json: field 'hidden_size' must be an integer, got string \"abc\""));
    cfg = tiny_config();
    cfg["num_hidden_layers"] = 2.5;
    CHECK_THAT(error_with(cfg),
               Contains("field 'num_hidden_layers' must be an integer, got number 2.5"));
    cfg = tiny_config();
    cfg["rms_norm_eps"] = "small";
    CHECK_THAT(error_with(cfg), Contains("field 'rms_norm_eps' must be a number"));
    cfg = tiny_config();
    cfg["tie_word_embeddings"] = "yes";
    CHECK_THAT(error_with(cfg), Contains("field 'tie_word_embeddings' must be a boolean"));
    cfg = tiny_config();
    cfg["model_type"] = 7;
    CHECK_THAT(error_with(cfg), Contains("field 'model_type' must be a string"));
    cfg = tiny_config();
    cfg["vocab_size"] = 10000000000LL;
    CHECK_THAT(error_with(cfg), Contains("field 'vocab_size' = 10000000000 is out of range"));
  }
  SECTION("integral floats are accepted") {
    cfg["hidden_size"] = 16.0;
    const std::string path = write_hf(dir, "m", cfg, t);
    CHECK(io::load_huggingface<float>(path).config.dim == 16);
  }
  SECTION("unsupported model_type") {
    cfg["model_type"] = "falcon";
    CHECK_THAT(error_with(cfg),
               Contains("unsupported model_type 'falcon' (supported: llama, mistral, qwen2, qwen3, phi3, gemma, "
                        "gemma2, gpt2, gpt_neox)"));
  }
  SECTION("Gemma and Gemma 2 name what they need") {
    cfg["model_type"] = "gemma2";  // a Llama's tensors: no pre/post feed-forward norms
    cfg["hidden_activation"] = "gelu_pytorch_tanh";
    CHECK_THAT(error_with(cfg), Contains("model.layers.0.pre_feedforward_layernorm.weight"));
    cfg["hidden_activation"] = "relu";
    CHECK_THAT(error_with(cfg), Contains("field 'hidden_activation' is 'relu'; supported for gemma2: gelu_pytorch_tanh"));
    cfg["hidden_activation"] = "gelu_pytorch_tanh";
    cfg["attn_logit_softcapping"] = -1.0;
    CHECK_THAT(error_with(cfg), Contains("field 'attn_logit_softcapping' = -1.000000 must be a finite number > 0 (or null)"));
    cfg["attn_logit_softcapping"] = nullptr;
    cfg["query_pre_attn_scalar"] = 0;
    CHECK_THAT(error_with(cfg), Contains("field 'query_pre_attn_scalar' must be a finite number > 0"));
    cfg["model_type"] = "gemma";
    cfg["hidden_act"] = "gelu";  // the first Gemma configs' field: hidden_activation wins
    cfg.erase("hidden_activation");
    CHECK_THAT(error_with(cfg), Contains("field 'hidden_act' is 'gelu'; supported for gemma: gelu_pytorch_tanh"));
  }
  SECTION("GPT-NeoX names what it needs") {
    cfg["model_type"] = "gpt_neox";  // a Llama's tensors
    cfg["hidden_act"] = "gelu";
    cfg["rotary_pct"] = 0.5;  // head size 4: the default 0.25 would rotate one dimension
    CHECK_THAT(error_with(cfg), Contains("missing tensor 'gpt_neox.embed_in.weight'"));
    cfg["hidden_act"] = "relu";
    CHECK_THAT(error_with(cfg), Contains("field 'hidden_act' is 'relu'; supported for gpt_neox: gelu, gelu_new"));
    cfg["hidden_act"] = "gelu";
    cfg["rotary_pct"] = 0.0;
    CHECK_THAT(error_with(cfg), Contains("field 'rotary_pct' = 0.000000 is out of range (0, 1]"));
    cfg["rotary_pct"] = 0.3;  // head size 4: int(1.2) = 1 rotated dimension
    CHECK_THAT(error_with(cfg), Contains("rotates 1 of 4 dimensions per head; an even number >= 2 is needed"));
    cfg["rotary_pct"] = "all";
    CHECK_THAT(error_with(cfg), Contains("field 'rotary_pct' must be a number"));
    cfg["rotary_pct"] = 1.0;
    cfg["use_parallel_residual"] = "yes";
    CHECK_THAT(error_with(cfg), Contains("field 'use_parallel_residual' must be a boolean"));
  }
  SECTION("Qwen3 and Phi-3 name the tensors their layout needs") {
    cfg["model_type"] = "qwen3";  // the tensors are a Llama's: no per-head q/k norms
    CHECK_THAT(error_with(cfg), Contains("model.layers.0.self_attn.q_norm.weight"));
    cfg["model_type"] = "phi3";   // a Llama's separate projections, not Phi-3's fused ones
    CHECK_THAT(error_with(cfg), Contains("model.layers.0.self_attn.qkv_proj.weight"));
    cfg["partial_rotary_factor"] = 0.5;
    CHECK_THAT(error_with(cfg), Contains("partial_rotary_factor"));
  }
  SECTION("unsupported activation") {
    cfg["hidden_act"] = "gelu";
    CHECK_THAT(error_with(cfg), Contains("field 'hidden_act' is 'gelu'; only 'silu' is supported"));
  }
  SECTION("rope scaling") {
    cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
    CHECK_THAT(error_with(cfg), Contains("rope_scaling: missing required field 'low_freq_factor'"));
    cfg["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}};
    CHECK_THAT(error_with(cfg),
               Contains("config.json: rope_scaling type yarn is not supported (supported: "
                        "default, linear, llama3)"));
    cfg["rope_scaling"] = {{"type", "linear"}, {"factor", 0.5}};
    CHECK_THAT(error_with(cfg), Contains("rope_scaling.factor = 0.5"));
    cfg["rope_scaling"] = "yes";
    CHECK_THAT(error_with(cfg), Contains("field 'rope_scaling' must be an object or null"));
  }
  SECTION("values rejected by Config::validate") {
    cfg["num_key_value_heads"] = 3;
    CHECK_THAT(error_with(cfg),
               Contains("config.json: Config: n_heads (4) must be a multiple of n_kv_heads (3)"));
    cfg = tiny_config();
    cfg["vocab_size"] = 0;
    CHECK_THAT(error_with(cfg), Contains("vocab_size = 0 is out of range"));
    cfg = tiny_config();
    cfg["rms_norm_eps"] = -1.0;
    CHECK_THAT(error_with(cfg), Contains("norm_eps"));
  }
  SECTION("heads not dividing the hidden size without head_dim") {
    cfg["hidden_size"] = 18;
    CHECK_THAT(error_with(cfg),
               Contains("num_attention_heads (4) does not divide hidden_size (18)"));
  }
  SECTION("config.json is not JSON or not an object") {
    dir.write("m/config.json", "{\"model_type\": \"llama\",");
    CHECK_THAT(format_error([&] { io::load_huggingface<float>(dir.path("m")); }),
               Contains("config.json: not valid JSON"));
    dir.write("m/config.json", "[1, 2, 3]");
    CHECK_THAT(format_error([&] { io::load_huggingface<float>(dir.path("m")); }),
               Contains("config.json: expected a JSON object"));
  }
}

TEST_CASE("huggingface: tensors that disagree with the config", "[io][hf][hostile]") {
  TempDir dir;
  json cfg = tiny_config();
  HfTensors t = hf_tensors(cfg);
  auto error_with = [&](const json& c, const HfTensors& tensors) {
    const std::string path = write_hf(dir, "m", c, tensors);
    return format_error([&] { io::load_huggingface<double>(path); });
  };

  SECTION("shape mismatch") {
    StTensor& q = t.at("model.layers.0.self_attn.q_proj.weight");
    q.shape = {8, 16};
    q.bytes = f32_bytes(pattern(1.0f, 8 * 16));
    CHECK_THAT(
        error_with(cfg, t),
        Contains("model.safetensors: tensor 'model.layers.0.self_attn.q_proj.weight' has shape "
                 "[8, 16], expected [16, 16]"));
  }
  SECTION("config vocabulary larger than the embedding") {
    json c = cfg;
    c["vocab_size"] = 12;
    CHECK_THAT(
        error_with(c, t),
        Contains("tensor 'model.embed_tokens.weight' has shape [10, 16], expected [12, 16]"));
  }
  SECTION("transposed matrix") {
    StTensor& down = t.at("model.layers.1.mlp.down_proj.weight");
    down.shape = {24, 16};
    CHECK_THAT(
        error_with(cfg, t),
        Contains(
            "tensor 'model.layers.1.mlp.down_proj.weight' has shape [24, 16], expected [16, 24]"));
  }
  SECTION("missing tensor") {
    t.drop("model.layers.1.post_attention_layernorm.weight");
    CHECK_THAT(
        error_with(cfg, t),
        Contains(
            "model.safetensors: missing tensor 'model.layers.1.post_attention_layernorm.weight'"));
  }
  SECTION("untied checkpoint without lm_head") {
    t.drop("lm_head.weight");
    CHECK_THAT(error_with(cfg, t), Contains("missing tensor 'lm_head.weight'"));
  }
  SECTION("tied checkpoint without any embedding") {
    json c = cfg;
    c["tie_word_embeddings"] = true;
    HfTensors tied = hf_tensors(c);
    tied.drop("model.embed_tokens.weight");
    CHECK_THAT(error_with(c, tied),
               Contains("missing tensor 'model.embed_tokens.weight' (with tied embeddings "
                        "'lm_head.weight' would also do)"));
  }
  SECTION("biases announced but absent") {
    json c = cfg;
    c["attention_bias"] = true;
    CHECK_THAT(error_with(c, t), Contains("missing tensor 'model.layers.0.self_attn.q_proj.bias'"));
    c = cfg;
    c["mlp_bias"] = true;
    CHECK_THAT(error_with(c, t), Contains("missing tensor 'model.layers.0.mlp.gate_proj.bias'"));
  }
  SECTION("unsupported dtype is caught before any tensor is read") {
    StTensor& norm = t.at("model.norm.weight");
    norm.dtype = "I32";
    CHECK_THAT(error_with(cfg, t),
               Contains("unsupported dtype 'I32' for tensor 'model.norm.weight'"));
  }
  SECTION("corrupt weights file") {
    dir.write("m/config.json", cfg.dump());
    dir.write("m/model.safetensors", raw_safetensors("not json"));
    CHECK_THAT(format_error([&] { io::load_huggingface<float>(dir.path("m")); }),
               Contains("model.safetensors: header: not valid JSON"));
  }
}

TEST_CASE("huggingface: hostile shard indexes", "[io][hf][hostile]") {
  TempDir dir;
  const json cfg = tiny_config();
  const HfTensors t = hf_tensors(cfg);
  const std::string m = write_hf_sharded(dir, "m", cfg, t, 2);
  const std::string index_name = "m/model.safetensors.index.json";
  const json index = json::parse(read_file(dir.path(index_name)));
  auto error_with_index = [&](const json& idx) {
    dir.write(index_name, idx.dump());
    return format_error([&] { io::load_huggingface<float>(m); });
  };

  SECTION("index pointing at a missing shard") {
    std::filesystem::remove(dir.path("m/model-00002-of-00002.safetensors"));
    const std::string msg = format_error([&] { io::load_huggingface<float>(m); });
    CHECK_THAT(msg, Contains("model.safetensors.index.json: weight_map points at missing shard "
                             "'model-00002-of-00002.safetensors'"));
  }
  SECTION("tensor mapped to a shard that lacks it") {
    json idx = index;
    idx["weight_map"]["model.norm.weight"] =
        idx["weight_map"]["model.norm.weight"] == "model-00001-of-00002.safetensors"
            ? "model-00002-of-00002.safetensors"
            : "model-00001-of-00002.safetensors";
    CHECK_THAT(error_with_index(idx),
               Contains("weight_map maps tensor 'model.norm.weight' to shard"));
    CHECK_THAT(error_with_index(idx), Contains("which does not contain it"));
  }
  SECTION("tensor absent from the weight_map") {
    json idx = index;
    idx["weight_map"].erase("model.layers.0.mlp.up_proj.weight");
    CHECK_THAT(
        error_with_index(idx),
        Contains(
            "model.safetensors.index.json: missing tensor 'model.layers.0.mlp.up_proj.weight'"));
  }
  SECTION("malformed index") {
    CHECK_THAT(error_with_index(json{{"metadata", json::object()}}),
               Contains("missing or malformed 'weight_map'"));
    json idx = index;
    idx["weight_map"]["model.norm.weight"] = 3;
    CHECK_THAT(error_with_index(idx),
               Contains("weight_map entry for 'model.norm.weight' must be a file name"));
    idx = index;
    idx["weight_map"]["model.norm.weight"] = "../outside.safetensors";
    CHECK_THAT(error_with_index(idx), Contains("invalid shard name '../outside.safetensors'"));
    idx["weight_map"]["model.norm.weight"] = "/etc/passwd";
    CHECK_THAT(error_with_index(idx), Contains("invalid shard name '/etc/passwd'"));
    dir.write(index_name, "{");
    CHECK_THAT(format_error([&] { io::load_huggingface<float>(m); }),
               Contains("model.safetensors.index.json: not valid JSON"));
  }
  SECTION("corrupt shard") {
    dir.write("m/model-00001-of-00002.safetensors", "short");
    CHECK_THAT(format_error([&] { io::load_huggingface<float>(m); }),
               Contains("model-00001-of-00002.safetensors") && Contains("too small"));
  }
}

TEST_CASE("huggingface: missing directories and files are I/O errors naming the path", "[io][hf]") {
  TempDir dir;
  const std::string missing = dir.path("nowhere");
  CHECK_THAT(io_error([&] { io::load_huggingface<float>(missing); }),
             Contains(missing) && Contains("no such directory"));
  const std::string file = dir.write("file.txt", "x");
  CHECK_THAT(io_error([&] { io::load_huggingface<float>(file); }), Contains("not a directory"));

  dir.write("noconfig/model.safetensors", safetensors_file({}));
  CHECK_THAT(io_error([&] { io::load_huggingface<float>(dir.path("noconfig")); }),
             Contains(dir.path("noconfig/config.json")));

  dir.write("dirconfig/config.json/x", "x");  // config.json that is a directory
  CHECK_THAT(io_error([&] { io::load_huggingface<float>(dir.path("dirconfig")); }),
             Contains("config.json': it is a directory"));

  dir.write("noweights/config.json", tiny_config().dump());
  dir.write("noweights/pytorch_model.bin", "pickle");
  CHECK_THAT(io_error([&] { io::load_huggingface<float>(dir.path("noweights")); }),
             Contains("no model.safetensors or model.safetensors.index.json") &&
                 Contains("only PyTorch pickle weights"));
}
