// detect_format and load_checkpoint: each kind of input is recognised and dispatched, and
// the inputs we cannot load fail with a message that says why.

#include <depass/io/Load.hpp>

#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

using namespace depass;
using namespace depass::test;
using io::Format;

namespace {

json small_config() {
  return json{
      {"model_type", "llama"},        {"hidden_size", 8},         {"intermediate_size", 4},
      {"num_hidden_layers", 1},       {"num_attention_heads", 2}, {"vocab_size", 3},
      {"max_position_embeddings", 8}, {"rms_norm_eps", 1e-6},     {"tie_word_embeddings", true}};
}

std::string write_small_hf(const TempDir& dir, const std::string& sub) {
  auto zeros = [](std::int64_t n) {
    return f32_bytes(std::vector<float>(static_cast<std::size_t>(n), 0.5f));
  };
  const std::string p = "model.layers.0.";
  dir.write(sub + "/config.json", small_config().dump());
  dir.write(sub + "/model.safetensors",
            safetensors_file({{"model.embed_tokens.weight", "F32", {3, 8}, zeros(24)},
                              {p + "input_layernorm.weight", "F32", {8}, zeros(8)},
                              {p + "self_attn.q_proj.weight", "F32", {8, 8}, zeros(64)},
                              {p + "self_attn.k_proj.weight", "F32", {8, 8}, zeros(64)},
                              {p + "self_attn.v_proj.weight", "F32", {8, 8}, zeros(64)},
                              {p + "self_attn.o_proj.weight", "F32", {8, 8}, zeros(64)},
                              {p + "post_attention_layernorm.weight", "F32", {8}, zeros(8)},
                              {p + "mlp.gate_proj.weight", "F32", {4, 8}, zeros(32)},
                              {p + "mlp.up_proj.weight", "F32", {4, 8}, zeros(32)},
                              {p + "mlp.down_proj.weight", "F32", {8, 4}, zeros(32)},
                              {"model.norm.weight", "F32", {8}, zeros(8)}}));
  return dir.path(sub);
}

}  // namespace

TEST_CASE("detect_format: the real model files", "[io][format]") {
  DEPASS_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
  DEPASS_REQUIRE_MODEL(gguf, "stories260K/stories260K.gguf");
  DEPASS_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
  DEPASS_REQUIRE_MODEL(st, "tinystories-656k/model.safetensors");
  DEPASS_REQUIRE_MODEL(config, "tinystories-656k/config.json");
  CHECK(io::detect_format(bin) == Format::Llama2c);
  CHECK(io::detect_format(gguf) == Format::GGUF);
  CHECK(io::detect_format(st) == Format::Safetensors);
  CHECK(io::detect_format(model_path("tinystories-656k")) == Format::HuggingFace);
  CHECK(io::detect_format(tok) == Format::Unknown);     // a tokenizer, not a checkpoint
  CHECK(io::detect_format(config) == Format::Unknown);  // JSON, not a checkpoint
  CHECK(io::detect_format(model_path("stories260K")) == Format::Unknown);  // no config.json
}

TEST_CASE("detect_format: synthetic files", "[io][format]") {
  TempDir dir;
  CHECK(io::detect_format(dir.write("a.bin", llama2c_file(Llama2cShape()))) == Format::Llama2c);
  // Only the header decides: a truncated llama2.c file is still llama2.c, so loading it
  // can say what is missing.
  CHECK(io::detect_format(dir.write("cut.bin", llama2c_header(Llama2cShape()))) == Format::Llama2c);
  // A versioned export (llama2.c's export.py v1/v2) is recognised by its magic alone.
  CHECK(io::detect_format(dir.write("v2.bin", std::string("24ka\x02\0\0\0", 8))) == Format::Llama2c);
  CHECK_THAT(format_error([&] { io::load_checkpoint<float>(dir.path("v2.bin")); }),
             Contains("too short for the 256-byte header of a versioned llama2.c export"));
  Llama2cShape bad;
  bad.n_kv_heads = 5;
  CHECK(io::detect_format(dir.write("bad.bin", llama2c_file(bad))) == Format::Unknown);
  CHECK(io::detect_format(dir.write("x.gguf", std::string("GGUF\3\0\0\0", 8))) == Format::GGUF);
  CHECK(io::detect_format(dir.write("GGUF.safetensors", "GGUF")) == Format::GGUF);  // magic first
  CHECK(io::detect_format(dir.write("w.safetensors", "anything")) == Format::Safetensors);
  CHECK(io::detect_format(dir.write("empty", "")) == Format::Unknown);
  CHECK(io::detect_format(dir.write("short", "GG")) == Format::Unknown);
  CHECK(io::detect_format(dir.write("text.txt", "Once upon a time there was a checkpoint.")) ==
        Format::Unknown);
  dir.write("hf/config.json", "{}");
  CHECK(io::detect_format(dir.path("hf")) == Format::HuggingFace);
  dir.write("plain/readme", "x");
  CHECK(io::detect_format(dir.path("plain")) == Format::Unknown);
  CHECK(std::string(io::to_string(Format::HuggingFace)) == "Hugging Face");
}

TEST_CASE("detect_format and load_checkpoint: nonexistent paths are I/O errors", "[io][format]") {
  TempDir dir;
  const std::string missing = dir.path("missing.bin");
  CHECK_THAT(io_error([&] { io::detect_format(missing); }), Contains(missing));
  CHECK_THAT(io_error([&] { io::load_checkpoint<float>(missing); }), Contains(missing));
}

TEMPLATE_TEST_CASE("load_checkpoint: dispatches on the detected format", "[io][format]", float,
                   double) {
  TempDir dir;
  Llama2cShape s;
  const auto l2 = io::load_checkpoint<TestType>(dir.write("m.bin", llama2c_file(s)));
  CHECK(l2.config.rope_layout == RopeLayout::AdjacentPairs);
  CHECK(l2.weights.layers[1].w3(1, 0) == TestType(880 + 96 + 8));

  const std::string hf = write_small_hf(dir, "hf");
  const auto a = io::load_checkpoint<TestType>(hf);
  CHECK(a.config.rope_layout == RopeLayout::Halves);
  CHECK(a.config.norm_eps == 1e-6);
  CHECK(a.weights.final_norm(0) == TestType(0.5));
  // model.safetensors inside a model directory stands for the directory.
  const auto b = io::load_checkpoint<TestType>(hf + "/model.safetensors");
  CHECK(b.weights.token_embedding == a.weights.token_embedding);
}

TEST_CASE("load_checkpoint: the real models", "[io][format]") {
  DEPASS_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
  DEPASS_REQUIRE_MODEL(st, "tinystories-656k/model.safetensors");
  CHECK(io::load_checkpoint<float>(bin).config.dim == 64);
  CHECK(io::load_checkpoint<double>(model_path("tinystories-656k")).config.dim == 128);
}

TEST_CASE("load_checkpoint: formats it cannot load say so", "[io][format][hostile]") {
  TempDir dir;
  const std::string gguf =
      dir.write("m.gguf", std::string("GGUF\3\0\0\0", 8) + std::string(64, '\0'));
  CHECK_THAT(format_error([&] { io::load_checkpoint<float>(gguf); }),
             Contains("m.gguf") &&
                 Contains("missing required metadata key 'general.architecture'"));

  const std::string text = dir.write("notes.txt", "hello");
  CHECK_THAT(format_error([&] { io::load_checkpoint<float>(text); }),
             Contains(text) && Contains("unrecognised checkpoint format"));
  dir.write("empty_dir/readme", "x");
  CHECK_THAT(format_error([&] { io::load_checkpoint<float>(dir.path("empty_dir")); }),
             Contains("unrecognised checkpoint format"));

  const std::string bare = dir.write("bare/weights.safetensors", safetensors_file({}));
  CHECK_THAT(format_error([&] { io::load_checkpoint<float>(bare); }),
             Contains("a bare safetensors file has no model configuration"));

  // Errors from the chosen loader come through unchanged.
  const std::string cut = dir.write("cut.bin", llama2c_header(Llama2cShape()) + "abcd");
  CHECK_THAT(format_error([&] { io::load_checkpoint<float>(cut); }),
             Contains("truncated: array 'token_embedding'"));
}
