// llama2.c legacy checkpoints: the real stories260K file, a synthetic file whose every
// float encodes its own position, and hostile headers and sizes.

#include <climits>
#include <depass/io/Llama2c.hpp>
#include <depass/io/Load.hpp>
#include <filesystem>

#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

using namespace depass;
using namespace depass::test;

namespace {

// stories260K: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512 (shared), seq 512.
// Offsets in floats after the 28-byte header, worked out by hand from the format.
constexpr std::uint64_t kD = 64, kI = 172, kL = 5, kV = 512, kQ = 64, kK = 32;
constexpr std::uint64_t kEmb = 0;
constexpr std::uint64_t kRmsAtt = kEmb + kV * kD;             // 32768
constexpr std::uint64_t kWq = kRmsAtt + kL * kD;              // 33088
constexpr std::uint64_t kWk = kWq + kL * kQ * kD;             // 53568
constexpr std::uint64_t kWv = kWk + kL * kK * kD;             // 63808
constexpr std::uint64_t kWo = kWv + kL * kK * kD;             // 74048
constexpr std::uint64_t kRmsFfn = kWo + kL * kD * kQ;         // 94528
constexpr std::uint64_t kW1 = kRmsFfn + kL * kD;              // 94848
constexpr std::uint64_t kW2 = kW1 + kL * kI * kD;             // 149888
constexpr std::uint64_t kW3 = kW2 + kL * kD * kI;             // 204928
constexpr std::uint64_t kRmsFinal = kW3 + kL * kI * kD;       // 259968
constexpr std::uint64_t kEnd = kRmsFinal + kD + 2 * 512 * 4;  // + freq_cis_real/imag [512, 4]

float raw_weight(const std::string& path, std::uint64_t float_index) {
  return raw_f32_at(path, 28 + 4 * float_index);
}

}  // namespace

TEMPLATE_TEST_CASE("llama2.c: stories260K loads with its published shape", "[io][llama2c]", float,
                   double) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Checkpoint<TestType> ck = io::load_llama2c<TestType>(path);
  const Config& c = ck.config;
  CHECK(c.architecture == "llama");
  CHECK(c.dim == 64);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.head_dim == 8);
  CHECK(c.hidden_dim == 172);
  CHECK(c.vocab_size == 512);
  CHECK(c.max_seq_len == 512);
  CHECK(c.tied_embeddings);
  CHECK(c.norm_eps == 1e-5);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.rope_layout == RopeLayout::AdjacentPairs);
  CHECK_FALSE(c.has_biases());
  CHECK_NOTHROW(c.validate());
  CHECK_NOTHROW(ck.weights.validate(c));
  CHECK(ck.weights.output.size() == 0);
  CHECK(&ck.weights.unembedding() == &ck.weights.token_embedding);

  // The hand-computed layout accounts for every byte of the file.
  CHECK(std::filesystem::file_size(path) == 28 + 4 * kEnd);

  // Spot checks against floats read straight from the file.
  const auto& w = ck.weights;
  auto same = [&](TestType loaded, std::uint64_t index) {
    CHECK(loaded == static_cast<TestType>(raw_weight(path, index)));
  };
  same(w.token_embedding(0, 0), kEmb);
  same(w.token_embedding(3, 5), kEmb + 3 * kD + 5);
  same(w.token_embedding(511, 63), kEmb + 511 * kD + 63);
  same(w.layers[2].attention_norm(17), kRmsAtt + 2 * kD + 17);
  same(w.layers[1].wq(7, 9), kWq + 1 * kQ * kD + 7 * kD + 9);
  same(w.layers[4].wk(31, 63), kWk + 4 * kK * kD + 31 * kD + 63);
  same(w.layers[0].wv(12, 3), kWv + 0 * kK * kD + 12 * kD + 3);
  same(w.layers[3].wo(60, 2), kWo + 3 * kD * kQ + 60 * kQ + 2);
  same(w.layers[4].mlp_norm(63), kRmsFfn + 4 * kD + 63);
  same(w.layers[2].w1(171, 0), kW1 + 2 * kI * kD + 171 * kD + 0);
  same(w.layers[1].w2(5, 170), kW2 + 1 * kD * kI + 5 * kI + 170);
  same(w.layers[4].w3(100, 50), kW3 + 4 * kI * kD + 100 * kD + 50);
  same(w.final_norm(0), kRmsFinal);
  same(w.final_norm(63), kRmsFinal + 63);
  CHECK(w.token_embedding(0, 0) != TestType(0));  // guards against reading zeros everywhere
}

TEST_CASE("llama2.c: float and double loads agree exactly", "[io][llama2c]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const auto f = io::load_llama2c<float>(path);
  const auto d = io::load_llama2c<double>(path);
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

TEMPLATE_TEST_CASE("llama2.c: synthetic file maps every array to the right weight", "[io][llama2c]",
                   DEPASS_TEST_SCALARS) {
  TempDir dir;
  Llama2cShape s;      // dim 8, hidden 12, 2 layers, 2 heads, 1 kv head, vocab 10, seq 4
  s.vocab_size = -10;  // negative: a separate classifier follows
  const std::string path = dir.write("model.bin", llama2c_file(s));
  const auto ck = io::load_llama2c<TestType>(path);
  const Config& c = ck.config;
  CHECK(c.dim == 8);
  CHECK(c.head_dim == 4);
  CHECK(c.q_width() == 8);
  CHECK(c.kv_width() == 4);
  CHECK(c.vocab_size == 10);
  CHECK_FALSE(c.tied_embeddings);
  CHECK_NOTHROW(ck.weights.validate(c));

  // Float k sits at position k; offsets (in floats) worked out by hand for this shape.
  const auto& w = ck.weights;
  using T = TestType;
  CHECK(w.token_embedding(0, 0) == T(0));
  CHECK(w.token_embedding(9, 7) == T(79));
  CHECK(w.layers[0].attention_norm(0) == T(80));
  CHECK(w.layers[1].attention_norm(7) == T(95));
  CHECK(w.layers[0].wq(0, 0) == T(96));
  CHECK(w.layers[1].wq(7, 7) == T(96 + 64 + 63));
  CHECK(w.layers[0].wk(0, 0) == T(224));
  CHECK(w.layers[1].wk(3, 7) == T(224 + 32 + 31));
  CHECK(w.layers[0].wv(0, 0) == T(288));
  CHECK(w.layers[1].wv(1, 2) == T(288 + 32 + 10));
  CHECK(w.layers[0].wo(0, 0) == T(352));
  CHECK(w.layers[1].wo(2, 5) == T(352 + 64 + 21));
  CHECK(w.layers[0].mlp_norm(0) == T(480));
  CHECK(w.layers[1].mlp_norm(1) == T(489));
  CHECK(w.layers[0].w1(0, 0) == T(496));
  CHECK(w.layers[1].w1(11, 7) == T(496 + 96 + 95));
  CHECK(w.layers[0].w2(0, 0) == T(688));
  CHECK(w.layers[1].w2(7, 11) == T(688 + 96 + 95));
  CHECK(w.layers[0].w3(0, 0) == T(880));
  CHECK(w.layers[1].w3(1, 0) == T(880 + 96 + 8));
  CHECK(w.final_norm(0) == T(1072));
  CHECK(w.final_norm(7) == T(1079));
  // freq_cis_real/imag occupy [1080, 1096) and are skipped; wcls follows.
  REQUIRE(w.output.rows() == 10);
  CHECK(w.output(0, 0) == T(1096));
  CHECK(w.output(9, 7) == T(1175));
  CHECK(&w.unembedding() == &w.output);
}

TEST_CASE("llama2.c: truncated files name the array that is cut", "[io][llama2c][hostile]") {
  TempDir dir;
  Llama2cShape s;
  s.vocab_size = -10;
  const std::string full = llama2c_file(s);
  REQUIRE(full.size() == 28 + 4 * 1176);
  auto cut = [&](std::size_t size) {
    const std::string path = dir.write("cut.bin", full.substr(0, size));
    return format_error([&] { io::load_llama2c<float>(path); });
  };

  SECTION("inside the header") {
    const std::string msg = cut(10);
    CHECK_THAT(msg, Contains("cut.bin") && Contains("too short for the 28-byte llama2.c header"));
  }
  SECTION("empty file") {
    CHECK_THAT(cut(0), Contains("too short for the 28-byte llama2.c header"));
  }
  SECTION("header only") { CHECK_THAT(cut(28), Contains("truncated: array 'token_embedding'")); }
  SECTION("mid-embedding") {
    const std::string msg = cut(28 + 4 * 40 + 2);
    CHECK_THAT(msg, Contains("truncated: array 'token_embedding'") && Contains("[10, 8]") &&
                        Contains("file has 190 bytes"));
  }
  SECTION("mid-layer weights") {
    CHECK_THAT(cut(28 + 4 * 250), Contains("truncated: array 'wk'"));
    CHECK_THAT(cut(28 + 4 * 600), Contains("truncated: array 'w1'") && Contains("[2, 12, 8]"));
  }
  SECTION("mid freq_cis") {
    CHECK_THAT(cut(28 + 4 * 1090), Contains("truncated: array 'freq_cis_imag'"));
  }
  SECTION("missing classifier") {
    CHECK_THAT(cut(28 + 4 * 1096), Contains("truncated: array 'wcls'"));
    CHECK_THAT(cut(full.size() - 1), Contains("truncated: array 'wcls'"));
  }
}

TEST_CASE("llama2.c: hostile headers are refused before anything is allocated",
          "[io][llama2c][hostile]") {
  TempDir dir;
  auto load = [&](const Llama2cShape& s, const std::string& tail = std::string(64, '\0')) {
    const std::string path = dir.write("bad.bin", llama2c_header(s) + tail);
    return format_error([&] { io::load_llama2c<double>(path); });
  };
  Llama2cShape s;

  SECTION("huge dim") {
    s.dim = 1 << 30;
    CHECK_THAT(load(s), Contains("bad.bin") && Contains("implausible llama2.c header") &&
                            Contains("dim = 1073741824 is out of range"));
  }
  SECTION("large but in-range sizes: the file size check comes before any allocation") {
    s.dim = 1 << 16;
    s.n_heads = 1 << 10;
    s.n_kv_heads = 1 << 10;
    s.hidden_dim = 1 << 18;
    s.n_layers = 1024;
    s.vocab_size = -(1 << 22);
    s.seq_len = 1 << 22;
    CHECK_THAT(load(s), Contains("truncated: array 'token_embedding'"));
  }
  SECTION("most negative vocab_size") {
    s.vocab_size = INT_MIN;
    CHECK_THAT(load(s), Contains("vocab_size = -2147483648 is out of range"));
  }
  SECTION("zero and negative fields") {
    s.n_layers = 0;
    CHECK_THAT(load(s), Contains("n_layers = 0 is out of range"));
    s = Llama2cShape();
    s.n_heads = -2;
    CHECK_THAT(load(s), Contains("n_heads = -2 is out of range"));
    s = Llama2cShape();
    s.vocab_size = 0;
    CHECK_THAT(load(s), Contains("vocab_size = 0 is out of range"));
    s = Llama2cShape();
    s.seq_len = -1;
    CHECK_THAT(load(s), Contains("max_seq_len = -1 is out of range"));
  }
  SECTION("n_heads not dividing dim") {
    s.dim = 64;
    s.n_heads = 7;
    CHECK_THAT(load(s), Contains("n_heads (7) does not divide dim (64)"));
  }
  SECTION("odd head_dim") {
    s.dim = 6;
    s.n_heads = 2;
    CHECK_THAT(load(s), Contains("head_dim (3) must be even"));
  }
  SECTION("n_kv_heads > n_heads") {
    s.n_kv_heads = 4;
    CHECK_THAT(load(s), Contains("n_kv_heads = 4 is out of range [1, 2]"));
  }
  SECTION("n_heads not a multiple of n_kv_heads") {
    s.dim = 24;
    s.n_heads = 3;
    s.n_kv_heads = 2;
    CHECK_THAT(load(s), Contains("n_heads (3) must be a multiple of n_kv_heads (2)"));
  }
  SECTION("'ak42' in file order is not the versioned magic (export.py writes the u32 0x616b3432)") {
    const std::string path = dir.write("v1.bin", std::string("ak42") + std::string(300, '\1'));
    CHECK_THAT(format_error([&] { io::load_llama2c<float>(path); }),
               Contains("implausible llama2.c header"));
  }
}

TEST_CASE("llama2.c: trailing bytes are refused", "[io][llama2c][hostile]") {
  TempDir dir;
  Llama2cShape s;  // shared classifier: the file ends with freq_cis_imag
  const std::string path = dir.write("long.bin", llama2c_file(s) + "junk");
  CHECK_THAT(
      format_error([&] { io::load_llama2c<float>(path); }),
      Contains("long.bin") && Contains("4 trailing bytes after the last array 'freq_cis_imag'"));
  // A shared-classifier header followed by a classifier anyway is also surplus.
  const std::string extra = dir.write("extra.bin", llama2c_file(s) + std::string(4 * 80, '\0'));
  CHECK_THAT(format_error([&] { io::load_llama2c<float>(extra); }), Contains("320 trailing bytes"));
}

TEST_CASE("llama2.c: missing files are I/O errors naming the path", "[io][llama2c]") {
  TempDir dir;
  const std::string missing = dir.path("nope.bin");
  CHECK_THAT(io_error([&] { io::load_llama2c<float>(missing); }), Contains(missing));
  CHECK_THAT(io_error([&] { io::load_llama2c<float>(dir.root()); }), Contains("is a directory"));
}
