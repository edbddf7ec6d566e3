// Regression tests for the loader bugs found by fuzzing and by the loader audit of issue #7
// (docs/robustness.md, "Findings"). Each test rebuilds the exact hostile input and checks
// the specific error that now refuses it, where the loader used to crash or throw the
// wrong exception type.

#include <depass/Tokenizer.hpp>
#include <depass/io/HuggingFace.hpp>
#include <depass/io/Safetensors.hpp>

#include "RegressionHelpers.hpp"

using namespace depass;
using namespace depass::test;
using namespace depass::test::regression;

namespace {

/// Message of the FormatError that loading tokenizer.json `text` throws; it names the file.

/// A normalizer (or decoder, pre-tokenizer) nested `depth` Sequences deep around `leaf`.
json nest_sequences(const char* list_key, const json& leaf, int depth) {
  json node = leaf;
  for (int i = 0; i < depth; ++i) node = json{{"type", "Sequence"}, {list_key, json::array({node})}};
  return node;
}

}  // namespace

// Finding 1 (audit): describe_json() called Json::dump(), which recurses once per nesting
// level; a config.json value nested 100k deep overflowed the stack (ASan: stack-overflow in
// nlohmann::detail::serializer::dump) while building the error message.
TEST_CASE("finding 1: deeply nested config.json value is described without recursion",
          "[regression][hf]") {
  TempDir dir;
  dir.write("m/config.json", "{\"model_type\":\"llama\",\"hidden_size\":" +
                                 nested(100000, "[", "]") + "}");
  const std::string message =
      format_error([&] { io::load_huggingface<float>(dir.path("m")); });
  CHECK_THAT(message, Contains(dir.path("m/config.json") +
                               ": field 'hidden_size' must be an integer, got array " +
                               std::string(37, '[') + "..."));
}

TEST_CASE("finding 1: deeply nested safetensors header field is described without recursion",
          "[regression][safetensors]") {
  TempDir dir;
  const std::string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[" +
                             nested(100000, "[", "]") + "],\"data_offsets\":[0,0]}}";
  const std::string path = dir.write("x.safetensors", raw_safetensors(header));
  const std::string message = format_error([&] { io::SafetensorsFile::open(path); });
  CHECK_THAT(message, Contains(path + ": tensor 'w': shape dimension must be a non-negative "
                                      "integer below 2^63, got array " +
                               std::string(37, '[') + "..."));
}

TEST_CASE("finding 1: deeply nested shard index entry is described without recursion",
          "[regression][hf]") {
  TempDir dir;
  dir.write("m/config.json", tiny_llama_config().dump());
  const std::string index = dir.write("m/model.safetensors.index.json",
                                      "{\"weight_map\":{\"model.norm.weight\":" +
                                          nested(100000, "[", "]") + "}}");
  const std::string message = format_error([&] { io::load_huggingface<float>(dir.path("m")); });
  CHECK_THAT(message, Contains(index + ": weight_map entry for 'model.norm.weight' must be a "
                                       "file name, got array " +
                               std::string(37, '[') + "..."));
}

TEST_CASE("finding 1: short values are still described exactly as Json::dump writes them",
          "[regression][hf]") {
  using depass::detail::describe_json;
  CHECK(describe_json(json::parse("[1,[2,{\"a\":\"b\"}],null]")) ==
        "array [1,[2,{\"a\":\"b\"}],null]");
  CHECK(describe_json(json::parse("{\"k\":[1,2,3],\"\\u00e9\":\"\\n\"}")) ==
        "object {\"k\":[1,2,3],\"\xC3\xA9\":\"\\n\"}");
  CHECK(describe_json(json::parse("[1234567890,1234567890,1234567890,1234567890]")) ==
        "array [1234567890,1234567890,1234567890,123...");
  CHECK(describe_json(json("x")) == "string \"x\"");
}

// Finding 2 (audit): Sequence normalizers, decoders and pre-tokenizers were parsed by
// unbounded recursion; a tokenizer.json nesting 20000 Sequences (about 1 MB) overflowed the
// stack. Nesting is now limited to 16 levels (real files use one).
TEST_CASE("finding 2: Sequences nested deeper than 16 levels are refused",
          "[regression][tokenizer]") {
  std::string where16 = "";
  for (int i = 0; i < 16; ++i) where16 += ".normalizers[0]";
  SECTION("normalizer, 20000 levels") {
    // Written as text: building (or dumping) a 20000-deep json in the test would recurse too.
    json j = tiny_tokenizer();
    j["normalizer"] = "@NORMALIZER@";
    std::string text = j.dump();
    text.replace(text.find("\"@NORMALIZER@\""), 14,
                 nested(20000, "{\"type\":\"Sequence\",\"normalizers\":[", "]}",
                        "{\"type\":\"Prepend\",\"prepend\":\"x\"}"));
    CHECK_THAT(tokenizer_error(text),
               Contains(": normalizer" + where16 + " nests Sequences more than 16 deep"));
  }
  SECTION("decoder, 17 levels") {
    json j = tiny_tokenizer();
    j["decoder"] = nest_sequences("decoders", {{"type", "Fuse"}}, 17);
    std::string where = "decoder";
    for (int i = 0; i < 16; ++i) where += ".decoders[0]";
    CHECK_THAT(tokenizer_error(j.dump()), Contains(": " + where + " nests Sequences more than 16 deep"));
  }
  SECTION("pre_tokenizer, 17 levels") {
    json j = tiny_tokenizer();
    j["pre_tokenizer"] = nest_sequences(
        "pretokenizers",
        {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}}, 17);
    std::string where = "pre_tokenizer";
    for (int i = 0; i < 16; ++i) where += ".pretokenizers[0]";
    CHECK_THAT(tokenizer_error(j.dump()), Contains(": " + where + " nests Sequences more than 16 deep"));
  }
  SECTION("16 levels still load") {
    json j = tiny_tokenizer();
    j["normalizer"] = nest_sequences("normalizers", j["normalizer"], 15);
    j["decoder"] = nest_sequences("decoders", j["decoder"], 15);
    TempDir dir;
    const Tokenizer tok = Tokenizer::from_huggingface(dir.write("tokenizer.json", j.dump()));
    CHECK(tok.encode("ab a", false) == std::vector<int>{3, 6, 7});  // ▁ ab ▁a
    CHECK(tok.decode(tok.encode("ab a", false)) == " ab a");
  }
}

// Finding 3 (audit): a post_processor whose "type" is not a string made nlohmann's
// Json::value() throw json::type_error (not a FormatError, and not a runtime_error).
// Post-processors other than TemplateProcessing are ignored, so such a file loads.
TEST_CASE("finding 3: a post_processor type that is not a string is ignored like any other",
          "[regression][tokenizer]") {
  for (const json& post :
       {json{{"type", 5}}, json{{"type", "Sequence"}, {"processors", {{{"type", 7}}}}},
        json{{"type", nullptr}}, json{{"type", {{"nested", true}}}}}) {
    CAPTURE(post.dump());
    json j = tiny_tokenizer();
    j["post_processor"] = post;
    TempDir dir;
    const Tokenizer tok = Tokenizer::from_huggingface(dir.write("tokenizer.json", j.dump()));
    CHECK(tok.bos_id() == 1);  // "<s>", the default without a template
  }
}

// Finding 4 (audit): chained Replace normalizers grow text geometrically, and normalized
// added tokens are normalized while loading: 30 steps replacing "a" by "aa" made a 2 KB
// tokenizer.json allocate a gigabyte (std::bad_alloc / OOM). The growth bound of the
// normalizer and of the decoder is now checked when loading.
TEST_CASE("finding 4: normalizers and decoders that can blow text up are refused",
          "[regression][tokenizer]") {
  auto doubling = [](const char* from, const char* to, int steps) {
    json list = json::array();
    for (int i = 0; i < steps; ++i)
      list.push_back({{"type", "Replace"}, {"pattern", {{"String", from}}}, {"content", to}});
    return list;
  };
  SECTION("30 doublings of a normalized added token") {
    json j = tiny_tokenizer();
    j["added_tokens"].push_back(
        {{"id", 4}, {"content", "a"}, {"special", false}, {"normalized", true}});
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", doubling("a", "aa", 30)}};
    CHECK_THAT(tokenizer_error(j.dump()),
               Contains(": normalizer can make a text more than 256 times longer (chained "
                        "Replace steps whose content is longer than their pattern); refusing it"));
  }
  SECTION("9 doublings (512x) in the decoder") {
    json j = tiny_tokenizer();
    j["decoder"] = {{"type", "Sequence"}, {"decoders", doubling("b", "bb", 9)}};
    CHECK_THAT(tokenizer_error(j.dump()),
               Contains(": decoder can make a text more than 256 times longer"));
  }
  SECTION("8 doublings (256x) are still accepted") {
    json j = tiny_tokenizer();
    j["decoder"] = {{"type", "Sequence"}, {"decoders", doubling("b", "bb", 8)}};
    TempDir dir;
    const Tokenizer tok = Tokenizer::from_huggingface(dir.write("tokenizer.json", j.dump()));
    CHECK(tok.piece(5) == std::string(256, 'b'));
  }
}
