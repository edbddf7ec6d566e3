// The malformed-input table of docs/robustness.md, part 2: inputs that no other test
// covers, each refused with a specific message (the rows already covered in tests/io and
// tests/tokenizer are referenced from the table), and sweeps that cut and corrupt every
// committed fuzz seed (tests/fuzz/seeds) and require a FormatError or a clean load, never
// anything else.

#include <algorithm>
#include <cmath>
#include <depass/Tokenizer.hpp>
#include <depass/io/Gguf.hpp>
#include <depass/io/HuggingFace.hpp>
#include <depass/io/Llama2c.hpp>
#include <depass/io/Safetensors.hpp>
#include <filesystem>
#include <functional>
#include <limits>

#include "RegressionHelpers.hpp"
#include "io/GgufWriter.hpp"

using namespace depass;
using namespace depass::test;
using namespace depass::test::regression;

namespace {

constexpr std::uint32_t kF32NaN = 0x7FC00000u, kF32NegInf = 0xFF800000u;
constexpr std::uint16_t kF16Inf = 0x7C00, kBF16NaN = 0x7FC0;

/// A tiny llama2.c file (dim 8, 2 layers) whose float number `k` (after the header) has
/// the raw bits `bits`.
std::string llama2c_with(std::size_t k, std::uint32_t bits) {
  const Llama2cShape s;  // dim 8, hidden 12, 2 layers, 2 heads, 1 kv head, vocab 10, seq 4
  std::string file = llama2c_file(s);
  std::memcpy(&file[28 + 4 * k], &bits, 4);
  return file;
}

std::string hf_error(const std::string& dtype, const std::string& tensor, std::int64_t at,
                     std::uint64_t bits) {
  TempDir dir;
  const std::string model = tiny_llama_dir(dir, dtype, tensor, at, bits);
  const std::string message = format_error([&] { io::load_huggingface<float>(model); });
  CHECK_THAT(message, Contains(model + "/model.safetensors: tensor '" + tensor + "'"));
  return message;
}


}  // namespace

// --- non-finite weights ------------------------------------------------------------------------

TEST_CASE("malformed: llama2.c checkpoint with a NaN weight names the array and the layer",
          "[regression][malformed][llama2c]") {
  // Layout (Llama2cShape): token_embedding 10x8 = 80, rms_att 2x8 = 16, then wq 2x8x8;
  // float 80 + 16 + 64 + 8 * 3 + 5 is wq layer 1, row 3, column 5.
  TempDir dir;
  const std::string path = dir.write("m.bin", llama2c_with(80 + 16 + 64 + 3 * 8 + 5, kF32NaN));
  CHECK_THAT(format_error([&] { io::load_llama2c<float>(path); }),
             Contains(path + ": array 'wq' (layer 1) holds a non-finite value (nan) at [3, 5]; "
                             "weights must be finite"));
}

TEST_CASE("malformed: llama2.c checkpoint with -inf in the final norm",
          "[regression][malformed][llama2c]") {
  const Llama2cShape s;
  // rms_final is the last array before the two freq_cis tables.
  const std::size_t rms_final = llama2c_float_count(s) - 2 * s.seq_len * (s.dim / s.n_heads / 2) - 8;
  TempDir dir;
  const std::string path = dir.write("m.bin", llama2c_with(rms_final + 6, kF32NegInf));
  CHECK_THAT(format_error([&] { io::load_llama2c<double>(path); }),
             Contains(path + ": array 'rms_final' holds a non-finite value (-inf) at [6]"));
}

TEST_CASE("malformed: NaN in the unused llama2.c RoPE tables is ignored",
          "[regression][malformed][llama2c]") {
  // freq_cis_real/imag are recomputed, never read: a NaN there changes nothing.
  const Llama2cShape s;
  TempDir dir;
  const std::string path = dir.write("m.bin", llama2c_with(llama2c_float_count(s) - 1, kF32NaN));
  CHECK_NOTHROW(io::load_llama2c<float>(path));
}

TEST_CASE("malformed: Hugging Face F32 NaN in model.norm.weight", "[regression][malformed][hf]") {
  CHECK_THAT(hf_error("F32", "model.norm.weight", 5, kF32NaN),
             Contains("holds a non-finite value (nan) at [5]; weights must be finite"));
}

TEST_CASE("malformed: Hugging Face F16 +inf in an MLP matrix", "[regression][malformed][hf]") {
  CHECK_THAT(hf_error("F16", "model.layers.0.mlp.up_proj.weight", 2 * 8 + 3, kF16Inf),
             Contains("holds a non-finite value (inf) at [2, 3]"));
}

TEST_CASE("malformed: Hugging Face BF16 NaN in the query projection",
          "[regression][malformed][hf]") {
  CHECK_THAT(hf_error("BF16", "model.layers.0.self_attn.q_proj.weight", 63, kBF16NaN),
             Contains("holds a non-finite value (nan) at [7, 7]"));
}

TEST_CASE("malformed: Hugging Face F64 weight beyond the float range", "[regression][malformed][hf]") {
  std::uint64_t big;
  const double value = 1e300;
  std::memcpy(&big, &value, 8);
  // As float the value overflows to inf and is refused; as double it is a finite weight.
  CHECK_THAT(hf_error("F64", "model.embed_tokens.weight", 9, big),
             Contains("holds a non-finite value (inf) at [1, 1]"));
  TempDir dir;
  const std::string model = tiny_llama_dir(dir, "F64", "model.embed_tokens.weight", 9, big);
  CHECK(io::load_huggingface<double>(model).weights.token_embedding(1, 1) == 1e300);
}

// --- quantised GGUF tensors and versioned llama2.c files (issue 19) ---------------------------

namespace {

namespace gw = depass::test::gguf;

/// A tiny llama GGUF (D 32, I 64) whose blk.0.ffn_up.weight ([64, 32], ne = [32, 64]) is
/// replaced by `type` blocks `data` with row length `row`.
std::string gguf_error(std::uint32_t type, std::uint64_t row, const std::string& data) {
  gw::File f = gw::tiny_llama();
  gw::Tensor* t = f.find_tensor("blk.0.ffn_up.weight");
  t->type = type;
  t->ne = {row, 32 * 64 / row};
  t->data = data;
  TempDir dir;
  const std::string path = dir.write("q.gguf", f.build());
  const std::string message = format_error([&] { io::load_gguf<float>(path); });
  CHECK_THAT(message, Contains(path + ": "));
  return message;
}

/// A GGUF file holding only tensor 'w' of `type` ([rows, row] in PyTorch order), read
/// whole as float: for blocks that cannot be part of the tiny model's shapes.
std::string tensor_error(std::uint32_t type, std::uint64_t row, std::uint64_t rows,
                         const std::string& data) {
  gw::File f;
  f.kv(gw::string("general.architecture", "none"));
  f.tensor({"w", {row, rows}, type, data, -1});
  TempDir dir;
  const std::string path = dir.write("w.gguf", f.build());
  const std::string message = format_error([&] {
    io::GgufFile file(path);
    std::vector<float> out(static_cast<std::size_t>(row * rows));
    file.read_tensor(*file.find_tensor("w"), out.data());
  });
  CHECK_THAT(message, Contains(path + ": "));
  return message;
}

/// `blocks` copies of a block of `size` bytes with the f16 scale 0.25 at `scale_at`.
std::string blocks(std::size_t count, std::size_t size, std::size_t scale_at) {
  std::string block(size, '\x11');
  block[scale_at] = 0x00;
  block[scale_at + 1] = 0x34;  // 0x3400 = 0.25
  std::string out;
  for (std::size_t i = 0; i < count; ++i) out += block;
  return out;
}

std::string llama2c_v2_error(const std::function<void(std::string&)>& corrupt) {
  std::string bytes = read_file(source_dir() + "/tests/data/llama2c/shared_v2.bin");
  corrupt(bytes);
  TempDir dir;
  const std::string path = dir.write("m.bin", bytes);
  const std::string message = format_error([&] { io::load_llama2c<float>(path); });
  CHECK_THAT(message, Contains(path + ": "));
  return message;
}

}  // namespace

TEST_CASE("malformed: GGUF Q4_K tensor with rows of 128 (not whole 256-element blocks)",
          "[regression][malformed][gguf]") {
  CHECK_THAT(gguf_error(gw::T_Q4_K, 128, std::string(8 * 144, '\0')),
             Contains("tensor 'blk.0.ffn_up.weight' has rows of 128 elements, not a multiple of "
                      "the 256-element blocks of type Q4_K"));
}

TEST_CASE("malformed: GGUF Q6_K tensor whose blocks are cut short", "[regression][malformed][gguf]") {
  // 8 blocks of 210 bytes are needed; 7.5 are there (and nothing follows).
  CHECK_THAT(tensor_error(gw::T_Q6_K, 256, 8, blocks(8, 210, 208).substr(0, 7 * 210 + 105)),
             Contains("truncated or corrupt: tensor 'w' (Q6_K [8, 256], 1680 bytes at data offset 0) "
                      "reaches beyond the 1575-byte data section"));
}

TEST_CASE("malformed: GGUF Q4_0 block with a NaN scale, Q8_K block with an infinite one",
          "[regression][malformed][gguf]") {
  std::string q4 = blocks(64, 18, 0);
  q4[5 * 18 + 1] = 0x7E;  // block 5: d = 0x7E00, a NaN
  CHECK_THAT(gguf_error(gw::T_Q4_0, 32, q4),
             Contains("tensor 'blk.0.ffn_up.weight' (Q4_0) block 5 (row 5, columns 0..31) has a "
                      "non-finite scale d; weights must be finite"));
  std::string q8k(8 * 292, '\x01');
  const float inf = std::numeric_limits<float>::infinity();
  std::memcpy(&q8k[6 * 292], &inf, 4);
  CHECK_THAT(tensor_error(gw::T_Q8_K, 256, 8, q8k),
             Contains("tensor 'w' (Q8_K) block 6 (row 6, columns 0..255) has a non-finite scale d"));
}

TEST_CASE("malformed: GGUF tensor of a type depass does not decode (IQ2_XXS)",
          "[regression][malformed][gguf]") {
  CHECK_THAT(gguf_error(gw::T_IQ2_XXS, 256, std::string(8 * 66, '\0')),
             Contains("unsupported GGUF tensor type IQ2_XXS (16) for tensor 'blk.0.ffn_up.weight'"));
}

TEST_CASE("malformed: llama2.c v2 group size that does not divide dim",
          "[regression][malformed][llama2c]") {
  CHECK_THAT(llama2c_v2_error([](std::string& b) {
               const std::int32_t gs = 48;
               std::memcpy(&b[37], &gs, 4);
             }),
             Contains("llama2.c v2 group_size 48 must be positive and divide dim (16)"));
}

TEST_CASE("malformed: llama2.c v2 with a NaN scale and with an unknown version",
          "[regression][malformed][llama2c]") {
  // wq layer 0: int8 values at 256 + 320 + 640, its 16 scales after 256 bytes; group 7.
  CHECK_THAT(llama2c_v2_error([](std::string& b) {
               const float nan = std::numeric_limits<float>::quiet_NaN();
               std::memcpy(&b[1216 + 256 + 4 * 7], &nan, 4);
             }),
             Contains("array 'wq' (layer 0) group 7 (values 112..127) has a non-finite scale"));
  CHECK_THAT(llama2c_v2_error([](std::string& b) { b[4] = 7; }),
             Contains("llama2.c export version 7 is not supported"));
}

// --- bad UTF-8 -------------------------------------------------------------------------------------

TEST_CASE("malformed: tokenizer.json vocabulary with ill-formed UTF-8",
          "[regression][malformed][tokenizer]") {
  json j = tiny_tokenizer();
  j["model"]["vocab"]["@BAD@"] = 8;
  std::string text = j.dump();
  text.replace(text.find("@BAD@"), 5, "a\xC3\x28");  // 0xC3 must be followed by 0x80-0xBF
  const std::string message = tokenizer_error(text);
  CHECK_THAT(message, Contains(": invalid JSON: "));
  CHECK_THAT(message, Contains("ill-formed UTF-8 byte"));
}

TEST_CASE("malformed: config.json string with ill-formed UTF-8", "[regression][malformed][hf]") {
  TempDir dir;
  json config = tiny_llama_config();
  config["model_type"] = "@BAD@";
  std::string text = config.dump();
  text.replace(text.find("@BAD@"), 5, "llama\xFF");
  const std::string path = dir.write("m/config.json", text);
  const std::string message = format_error([&] { io::load_huggingface<float>(dir.path("m")); });
  CHECK_THAT(message, Contains(path + ": not valid JSON: "));
  CHECK_THAT(message, Contains("ill-formed UTF-8 byte"));
}

TEST_CASE("malformed: safetensors tensor name with ill-formed UTF-8",
          "[regression][malformed][safetensors]") {
  TempDir dir;
  const std::string path = dir.write(
      "x.safetensors",
      raw_safetensors("{\"w\xED\xA0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                      std::string(4, '\0')));  // ED A0 80 is a UTF-16 surrogate, not UTF-8
  const std::string message = format_error([&] { io::SafetensorsFile::open(path); });
  CHECK_THAT(message, Contains(path + ": header: not valid JSON: "));
  CHECK_THAT(message, Contains("ill-formed UTF-8 byte"));
}

// --- duplicates ------------------------------------------------------------------------------------

TEST_CASE("malformed: shard index mapping one tensor twice", "[regression][malformed][hf]") {
  TempDir dir;
  const std::string model = tiny_llama_dir(dir, "F32");
  std::filesystem::rename(model + "/model.safetensors", model + "/a.safetensors");
  std::string map;
  for (const auto& entry : tiny_llama_shapes())
    map += "\"" + entry.first + "\":\"a.safetensors\",";
  map += "\"model.norm.weight\":\"b.safetensors\"";
  const std::string index =
      dir.write("model/model.safetensors.index.json", "{\"weight_map\":{" + map + "}}");
  CHECK_THAT(format_error([&] { io::load_huggingface<float>(model); }),
             Contains(index + ": duplicate key 'model.norm.weight'"));
}

// --- lying sizes and huge dimensions (not covered elsewhere) ------------------------------

TEST_CASE("malformed: safetensors tensor claiming 2^63 bytes in an empty data section",
          "[regression][malformed][safetensors]") {
  TempDir dir;
  const std::string path = dir.write(
      "x.safetensors",
      raw_safetensors("{\"w\":{\"dtype\":\"F32\",\"shape\":[2305843009213693952],"
                      "\"data_offsets\":[0,9223372036854775807]}}"));
  CHECK_THAT(format_error([&] { io::SafetensorsFile::open(path); }),
             Contains(path + ": tensor 'w': data_offsets [0, 9223372036854775807] reach beyond "
                             "the 0-byte data section"));
}

TEST_CASE("malformed: config.json with a head count that does not fit the weights' heads",
          "[regression][malformed][hf]") {
  TempDir dir;
  const std::string model = tiny_llama_dir(dir, "F32");
  json config = tiny_llama_config();
  config["num_key_value_heads"] = 2;  // k_proj would be [8, 8]; the file has [4, 8]
  dir.write("model/config.json", config.dump());
  CHECK_THAT(format_error([&] { io::load_huggingface<float>(model); }),
             Contains("tensor 'model.layers.0.self_attn.k_proj.weight' has shape [4, 8], "
                      "expected [8, 8]"));
}

// --- sweeps over the committed fuzz seeds ---------------------------------------------------------

namespace {

std::vector<std::string> seeds(const std::string& harness) {
  std::vector<std::string> out;
  const std::string dir = source_dir() + "/tests/fuzz/seeds/" + harness;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    // Multi-file seeds (files joined by the fuzz harnesses' separator) are not one file.
    if (entry.is_regular_file() &&
        read_file(entry.path().string()).find("#@depass-fuzz-next-file@#") == std::string::npos)
      out.push_back(entry.path().string());
  std::sort(out.begin(), out.end());
  REQUIRE(!out.empty());
  return out;
}

/// Every prefix of the seed (at most ~600 cut points) and ~600 single-byte corruptions must
/// load or be refused with a FormatError; the seed itself must load.
void sweep(const std::string& harness, const std::string& name,
           const std::function<void(const std::string& path)>& load) {
  for (const std::string& seed : seeds(harness)) {
    const std::string bytes = read_file(seed);
    TempDir dir;
    const std::string path = dir.path(name);
    auto attempt = [&](const std::string& data, const std::string& what) {
      dir.write(name, data);
      try {
        load(path);
      } catch (const FormatError&) {
      } catch (const std::exception& e) {
        FAIL(seed << " " << what << ": " << typeid(e).name() << ": " << e.what());
      }
    };
    INFO(seed);
    dir.write(name, bytes);
    REQUIRE_NOTHROW(load(path));
    const std::size_t step = bytes.size() / 600 + 1;
    for (std::size_t cut = 0; cut < bytes.size(); cut += step)
      attempt(bytes.substr(0, cut), "cut at " + std::to_string(cut));
    for (std::size_t at = step / 2; at < bytes.size(); at += step)
      for (unsigned char x : {0xFFu, 0x80u}) {
        std::string corrupt = bytes;
        corrupt[at] = static_cast<char>(static_cast<unsigned char>(corrupt[at]) ^ x);
        attempt(corrupt, "byte " + std::to_string(at) + " ^ " + std::to_string(x));
      }
  }
}

}  // namespace

TEST_CASE("sweep: llama2.c checkpoint seeds, cut and corrupted", "[regression][sweep]") {
  sweep("llama2c_checkpoint", "m.bin", [](const std::string& p) { io::load_llama2c<float>(p); });
}

TEST_CASE("sweep: llama2.c tokenizer seeds, cut and corrupted", "[regression][sweep]") {
  sweep("llama2c_tokenizer", "tok.bin", [](const std::string& p) {
    const Tokenizer tok = Tokenizer::from_llama2c(p);
    tok.decode(tok.encode("ab \xC3\xA9 ba \xE2\x9C\x93 ?"));
  });
}

TEST_CASE("sweep: safetensors seeds, cut and corrupted", "[regression][sweep]") {
  sweep("safetensors", "x.safetensors", [](const std::string& p) {
    const io::SafetensorsFile f = io::SafetensorsFile::open(p);
    for (const std::string& name : f.names())
      if (f.info(name).dtype == "F32" && f.info(name).shape.size() == 2) f.matrix<float>(name);
  });
}

TEST_CASE("sweep: tokenizer.json seeds, cut and corrupted", "[regression][sweep]") {
  sweep("hf_tokenizer", "tokenizer.json", [](const std::string& p) {
    const Tokenizer tok = Tokenizer::from_huggingface(p);
    tok.decode(tok.encode("ab abc \xC3\xA9 the hell 12345 <s>", false));
  });
}

TEST_CASE("sweep: GGUF seeds, cut and corrupted", "[regression][sweep]") {
  sweep("gguf", "m.gguf", [](const std::string& p) {
    io::load_gguf<float>(p);
    const Tokenizer tok = Tokenizer::from_gguf(p);
    tok.decode(tok.encode("ab \xC3\xA9 ba"));
  });
}
