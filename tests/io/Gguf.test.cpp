// GGUF checkpoints: the real stories260K.gguf against stories260K.bin (weights and logits
// bit for bit), synthetic files written by tests/io/GgufWriter.hpp (versions, tensor types,
// alignment, tied and untied output, metadata defaults), and hostile files, each refused
// with a FormatError naming the problem.

#include <climits>
#include <cmath>
#include <cstring>
#include <depass/Model.hpp>
#include <depass/Tokenizer.hpp>
#include <depass/io/Gguf.hpp>
#include <depass/io/Llama2c.hpp>
#include <depass/io/Load.hpp>
#include <limits>

#include "GgufTestHelpers.hpp"
#include "GgufWriter.hpp"
#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

using namespace depass;
using namespace depass::test;
namespace g = depass::test::gguf;

namespace {

std::uint16_t float_to_half_exact(float v) {
  // Only for the values used below (normal halves with short mantissas, or zero).
  if (v == 0.0f) return std::signbit(v) ? 0x8000 : 0;
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const int exponent = static_cast<int>((bits >> 23) & 0xFF) - 127 + 15;
  const std::uint32_t mantissa = bits & 0x7FFFFFu;
  REQUIRE(exponent > 0);
  REQUIRE(exponent < 31);
  REQUIRE((mantissa & 0x1FFFu) == 0);
  return static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(exponent) << 10) |
                                    (mantissa >> 13));
}

template <typename Scalar>
void check_tiny_weights(const Checkpoint<Scalar>& ck, const g::Shape& s, bool untied) {
  // Values were written tensor by tensor in order; recompute where each one came from.
  std::size_t k = 0;
  auto matrix = [&](const RowMatrix<Scalar>& m, Eigen::Index rows, Eigen::Index cols) {
    REQUIRE(m.rows() == rows);
    REQUIRE(m.cols() == cols);
    for (Eigen::Index r = 0; r < rows; ++r)
      for (Eigen::Index c = 0; c < cols; ++c)
        if (m(r, c) != static_cast<Scalar>(g::tiny_value(k + r * cols + c)))
          FAIL("mismatch at (" << r << ", " << c << ")");
    k += static_cast<std::size_t>(rows * cols);
  };
  auto vector = [&](const Vector<Scalar>& v, Eigen::Index n) {
    REQUIRE(v.size() == n);
    for (Eigen::Index i = 0; i < n; ++i) CHECK(v(i) == static_cast<Scalar>(g::tiny_value(k + i)));
    k += static_cast<std::size_t>(n);
  };
  const Eigen::Index D = s.dim, I = s.hidden, V = s.vocab, Q = s.n_heads * s.head_dim(),
                     K = s.n_kv_heads * s.head_dim();
  const Weights<Scalar>& w = ck.weights;
  matrix(w.token_embedding, V, D);
  for (const auto& layer : w.layers) {
    vector(layer.attention_norm, D);
    matrix(layer.wq, Q, D);
    matrix(layer.wk, K, D);
    matrix(layer.wv, K, D);
    matrix(layer.wo, D, Q);
    vector(layer.mlp_norm, D);
    matrix(layer.w1, I, D);
    matrix(layer.w3, I, D);
    matrix(layer.w2, D, I);
  }
  vector(w.final_norm, D);
  if (untied)
    matrix(w.output, V, D);
  else
    CHECK(w.output.size() == 0);
}

}  // namespace

// =============================================================================================
// The real file

TEST_CASE("gguf: stories260K.gguf has the configuration of stories260K.bin", "[io][gguf]") {
  DEPASS_REQUIRE_MODEL(gguf, "stories260K/stories260K.gguf");
  DEPASS_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
  const Config a = io::load_gguf<float>(gguf).config;
  const Config b = io::load_llama2c<float>(bin).config;
  CHECK(a.architecture == b.architecture);
  CHECK(a.dim == b.dim);
  CHECK(a.n_layers == b.n_layers);
  CHECK(a.n_heads == b.n_heads);
  CHECK(a.n_kv_heads == b.n_kv_heads);
  CHECK(a.head_dim == b.head_dim);
  CHECK(a.hidden_dim == b.hidden_dim);
  CHECK(a.vocab_size == b.vocab_size);
  // The f32 epsilon in the file is read back as the decimal 1e-5 it was written from.
  CHECK(a.norm_eps == b.norm_eps);
  CHECK(a.norm_eps == 1e-5);
  CHECK(a.rope_theta == b.rope_theta);
  CHECK(a.rope_layout == RopeLayout::AdjacentPairs);
  CHECK(a.rope_layout == b.rope_layout);
  CHECK(a.norm == b.norm);
  CHECK(a.mlp == b.mlp);
  CHECK(a.positions == b.positions);
  CHECK(a.has_biases() == b.has_biases());
  // Where the two files genuinely differ: the GGUF converter wrote llama.context_length
  // 2048 (the .bin header says 512) and stored the classifier as its own output.weight
  // tensor (the .bin shares the embedding).
  CHECK(a.max_seq_len == 2048);
  CHECK(b.max_seq_len == 512);
  CHECK_FALSE(a.tied_embeddings);
  CHECK(b.tied_embeddings);
}

TEMPLATE_TEST_CASE("gguf: every weight of stories260K.gguf equals stories260K.bin's bit for bit",
                   "[io][gguf]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(gguf, "stories260K/stories260K.gguf");
  DEPASS_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
  const Checkpoint<TestType> a = io::load_gguf<TestType>(gguf);
  const Checkpoint<TestType> b = io::load_llama2c<TestType>(bin);
  auto same = [](const auto& x, const auto& y) {
    REQUIRE(x.rows() == y.rows());
    REQUIRE(x.cols() == y.cols());
    REQUIRE(x.size() > 0);
    // Bitwise, so that -0 vs 0 or NaN payloads would show too.
    return std::memcmp(x.data(), y.data(), sizeof(TestType) * static_cast<std::size_t>(x.size())) ==
           0;
  };
  CHECK(same(a.weights.token_embedding, b.weights.token_embedding));
  REQUIRE(a.weights.layers.size() == b.weights.layers.size());
  for (std::size_t l = 0; l < a.weights.layers.size(); ++l) {
    INFO("layer " << l);
    const auto& x = a.weights.layers[l];
    const auto& y = b.weights.layers[l];
    CHECK(same(x.attention_norm, y.attention_norm));
    CHECK(same(x.wq, y.wq));
    CHECK(same(x.wk, y.wk));
    CHECK(same(x.wv, y.wv));
    CHECK(same(x.wo, y.wo));
    CHECK(same(x.mlp_norm, y.mlp_norm));
    CHECK(same(x.w1, y.w1));
    CHECK(same(x.w2, y.w2));
    CHECK(same(x.w3, y.w3));
  }
  CHECK(same(a.weights.final_norm, b.weights.final_norm));
  CHECK(same(a.weights.unembedding(), b.weights.unembedding()));
  CHECK(same(a.weights.output, b.weights.token_embedding));
}

TEMPLATE_TEST_CASE("gguf: stories260K logits are bit-for-bit those of stories260K.bin",
                   "[io][gguf]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(gguf, "stories260K/stories260K.gguf");
  DEPASS_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
  DEPASS_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
  const Model<TestType> a(io::load_gguf<TestType>(gguf));
  const Model<TestType> b(io::load_checkpoint<TestType>(bin));
  const std::vector<int> ids = Tokenizer::from_llama2c(tok).encode(
      "Once upon a time, there was a little girl named Lily. She loved to play");
  REQUIRE(ids.size() > 10);
  const auto la = a.forward(ids);
  const auto lb = b.forward(ids);
  REQUIRE(la.rows() == lb.rows());
  REQUIRE(la.cols() == lb.cols());
  CHECK(la.cols() == 512);
  CHECK(std::memcmp(la.data(), lb.data(), sizeof(TestType) * static_cast<std::size_t>(la.size())) ==
        0);
  CHECK(la.allFinite());
  // Greedy continuations therefore agree too.
  CHECK(a.generate(ids, 20) == b.generate(ids, 20));
}

TEST_CASE("gguf: load_checkpoint dispatches GGUF files to load_gguf", "[io][gguf]") {
  DEPASS_REQUIRE_MODEL(gguf, "stories260K/stories260K.gguf");
  CHECK(io::detect_format(gguf) == io::Format::GGUF);
  const Checkpoint<float> ck = io::load_checkpoint<float>(gguf);
  CHECK(ck.config.dim == 64);
  CHECK(ck.weights.layers.size() == 5);
}

TEST_CASE("gguf: GgufFile exposes stories260K's metadata and tensor infos", "[io][gguf]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.gguf");
  const io::GgufFile f(path);
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.data_offset() % 32 == 0);
  CHECK(f.keys().size() == 19);
  CHECK(f.keys().front() == "tokenizer.ggml.tokens");
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_uint("llama.block_count") == 5);
  CHECK(f.get_strings("tokenizer.ggml.tokens").size() == 512);
  CHECK(f.get_floats("tokenizer.ggml.scores").size() == 512);
  CHECK(f.get_ints("tokenizer.ggml.token_type")[1] == 3);  // <s> is a control token
  REQUIRE(f.tensors().size() == 48);
  const auto* emb = f.find_tensor("token_embd.weight");
  REQUIRE(emb != nullptr);
  CHECK(emb->ne == std::vector<std::uint64_t>{64, 512});
  CHECK(emb->shape() == std::vector<std::int64_t>{512, 64});
  CHECK(emb->type == 0);
  CHECK(emb->file_offset == f.data_offset());
  CHECK(f.find_tensor("nope") == nullptr);
}

// =============================================================================================
// Synthetic files

TEST_CASE("gguf: versions 2 and 3 load the same weights from their positions", "[io][gguf]") {
  const g::Shape s;
  for (std::uint32_t version : {2u, 3u}) {
    INFO("version " << version);
    g::File f = g::tiny_llama(s);
    f.version = version;
    TempDir dir;
    const std::string path = g::write(dir, f);
    const Checkpoint<float> ck = io::load_gguf<float>(path);
    const Config& c = ck.config;
    CHECK(c.architecture == "llama");
    CHECK(c.dim == 32);
    CHECK(c.n_layers == 2);
    CHECK(c.n_heads == 4);
    CHECK(c.n_kv_heads == 2);
    CHECK(c.head_dim == 8);
    CHECK(c.hidden_dim == 64);
    CHECK(c.vocab_size == 16);
    CHECK(c.max_seq_len == 32);
    CHECK(c.norm_eps == 1e-5);
    CHECK(c.rope_theta == 10000.0);
    CHECK(c.rope_layout == RopeLayout::AdjacentPairs);
    CHECK(c.tied_embeddings);
    check_tiny_weights(ck, s, false);
    check_tiny_weights(io::load_gguf<double>(path), s, false);
    CHECK(io::load_checkpoint<float>(path).config.dim == 32);
  }
}

TEST_CASE("gguf: an output.weight tensor makes the embeddings untied", "[io][gguf]") {
  const g::Shape s;
  TempDir dir;
  const std::string path = g::write(dir, g::tiny_llama(s, true));
  const Checkpoint<double> ck = io::load_gguf<double>(path);
  CHECK_FALSE(ck.config.tied_embeddings);
  check_tiny_weights(ck, s, true);
  CHECK(&ck.weights.unembedding() == &ck.weights.output);
  // And the model runs.
  const Model<double> model(ck);
  CHECK(model.forward({1, 5, 7}).allFinite());
}

TEST_CASE("gguf: a NaN or an infinity in any weight is a FormatError naming the tensor", "[io][gguf][hostile]") {
  TempDir dir;
  auto poison = [&](const std::string& tensor, std::size_t element, float value) {
    g::File f = g::tiny_llama();
    g::Tensor* t = f.find_tensor(tensor);
    REQUIRE(t != nullptr);
    REQUIRE(t->data.size() >= 4 * (element + 1));
    std::memcpy(&t->data[4 * element], &value, sizeof value);
    return g::write(dir, f, "poisoned.gguf");
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::string down = poison("blk.1.ffn_down.weight", 5, nan);
  REQUIRE_THROWS_AS(io::load_gguf<float>(down), FormatError);
  REQUIRE_THROWS_WITH(io::load_gguf<float>(down), Contains("tensor 'blk.1.ffn_down.weight' holds a non-finite value (nan) at [0, 5]"));
  const std::string norm = poison("output_norm.weight", 2, -inf);
  REQUIRE_THROWS_AS(io::load_gguf<double>(norm), FormatError);
  REQUIRE_THROWS_WITH(io::load_gguf<double>(norm), Contains("tensor 'output_norm.weight' holds a non-finite value (-inf) at [2]"));
  const std::string embedding = poison("token_embd.weight", 0, inf);
  REQUIRE_THROWS_AS(io::load_checkpoint<float>(embedding), FormatError);
  REQUIRE_THROWS_WITH(io::load_checkpoint<float>(embedding),
                      Contains("poisoned.gguf: tensor 'token_embd.weight' holds a non-finite value (inf) at [0, 0]"));
}

TEST_CASE("gguf: metadata keys with defaults, and other integer and float encodings",
          "[io][gguf]") {
  g::File f = g::tiny_llama();
  f.erase_kv("llama.attention.head_count_kv");  // defaults to head_count
  f.erase_kv("llama.rope.dimension_count");     // optional
  f.erase_kv("tokenizer.ggml.tokens");          // vocab from llama.vocab_size instead
  f.erase_kv("tokenizer.ggml.scores");
  f.kv(g::u64("llama.vocab_size", 16));
  f.find_kv("llama.block_count")->type = g::I32;  // any non-negative integer type is fine
  f.kv(g::f64("llama.rope.freq_base", 500000.0));
  *f.find_kv("llama.attention.layer_norm_rms_epsilon") =
      g::f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  // K/V heads default to the query heads: give them the room.
  for (int l = 0; l < 2; ++l) {
    for (const char* name : {"attn_k", "attn_v"}) {
      g::Tensor* t = f.find_tensor("blk." + std::to_string(l) + "." + name + ".weight");
      t->ne = {32, 32};
      t->data = g::f32_data(std::vector<float>(32 * 32, 0.5f));
    }
  }
  TempDir dir;
  const Config c = io::load_gguf<float>(g::write(dir, f)).config;
  CHECK(c.n_kv_heads == 4);
  CHECK(c.vocab_size == 16);
  CHECK(c.n_layers == 2);
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.norm_eps == 1e-6);  // the shortest decimal of the f32, not 9.99999997e-07
}

TEST_CASE("gguf: F16, BF16 and Q8_0 tensors convert exactly", "[io][gguf]") {
  // Values with at most 8 significant bits are exact in all three encodings.
  const std::vector<float> half_values = {1.0f,     -2.5f,  0.0f,     -0.0f,
                                          65504.0f, 0.125f, -1024.0f, 3.75f};
  const std::vector<std::uint16_t> half_bits = {0x3C00, 0xC100, 0x0000, 0x8000,
                                                0x7BFF, 0x3000, 0xE400, 0x4380};
  for (std::size_t i = 0; i < half_values.size(); ++i)
    CHECK(float_to_half_exact(half_values[i]) == half_bits[i]);
  std::string f16;
  for (auto h : half_bits) g::put(f16, h);
  f16 += u16_bytes({0x0001, 0x0400, 0x7C00, 0xFC00});  // 2^-24, 2^-14, +inf, -inf
  const std::vector<std::uint16_t> bf16_bits = {0x3F80, 0xC020, 0x4049, 0x0001,
                                                0x7F7F, 0x8000, 0x3E00, 0xC2F6};
  std::string bf16 = u16_bytes(bf16_bits);
  // Q8_0: two blocks of 32 (scale as f16, 32 int8 quants).
  std::string q8;
  const float scales[2] = {0.5f, -0.0625f};
  std::vector<float> q8_expected;
  for (int b = 0; b < 2; ++b) {
    g::put(q8, float_to_half_exact(scales[b]));
    for (int k = 0; k < 32; ++k) {
      const int q = b == 0 ? k * 8 - 128 : 127 - k;  // covers -128 and 127
      g::put(q8, static_cast<std::int8_t>(q));
      q8_expected.push_back(static_cast<float>(q) * scales[b]);
    }
  }
  g::File f;
  f.kv(g::string("general.architecture", "none"));
  f.tensor({"f16", {4, 3}, g::T_F16, f16, -1});
  f.tensor({"bf16", {8}, g::T_BF16, bf16, -1});
  f.tensor({"q8", {64}, g::T_Q8_0, q8, -1});
  TempDir dir;
  const std::string path = g::write(dir, f);
  io::GgufFile file(path);

  std::vector<double> out(12);
  file.read_tensor(*file.find_tensor("f16"), out.data());
  for (std::size_t i = 0; i < half_values.size(); ++i) {
    CHECK(out[i] == static_cast<double>(half_values[i]));
    CHECK(std::signbit(out[i]) == std::signbit(half_values[i]));
  }
  CHECK(out[8] == std::ldexp(1.0, -24));
  CHECK(out[9] == std::ldexp(1.0, -14));
  CHECK(out[10] == std::numeric_limits<double>::infinity());
  CHECK(out[11] == -std::numeric_limits<double>::infinity());

  std::vector<float> b(8);
  file.read_tensor(*file.find_tensor("bf16"), b.data());
  CHECK(b[0] == 1.0f);
  CHECK(b[1] == -2.5f);
  CHECK(b[2] == 3.140625f);
  CHECK(b[3] == std::ldexp(1.0f, -133));
  CHECK(b[4] == 0x1.FEp127f);
  CHECK(b[5] == 0.0f);
  CHECK(std::signbit(b[5]));
  CHECK(b[6] == 0.125f);
  CHECK(b[7] == -123.0f);

  std::vector<float> q(64);
  file.read_tensor(*file.find_tensor("q8"), q.data());
  CHECK(q == q8_expected);
  CHECK(q[0] == -64.0f);
  CHECK(q[32] == 127 * -0.0625f);
  std::vector<double> qd(64);
  file.read_tensor(*file.find_tensor("q8"), qd.data());
  for (std::size_t i = 0; i < 64; ++i) CHECK(qd[i] == static_cast<double>(q8_expected[i]));
}

TEST_CASE("gguf: a model with F16, BF16 and Q8_0 weights loads them converted", "[io][gguf]") {
  g::File f = g::tiny_llama();
  // token_embd as Q8_0 (rows of 32 = one block), attn_q as F16, ffn_up as BF16.
  g::Tensor* emb = f.find_tensor("token_embd.weight");
  emb->type = g::T_Q8_0;
  emb->data.clear();
  for (int row = 0; row < 16; ++row) {
    g::put(emb->data, float_to_half_exact(0.25f));
    for (int k = 0; k < 32; ++k) g::put(emb->data, static_cast<std::int8_t>(row - k));
  }
  g::Tensor* q = f.find_tensor("blk.1.attn_q.weight");
  q->type = g::T_F16;
  q->data.clear();
  for (int i = 0; i < 32 * 32; ++i)
    g::put(q->data, float_to_half_exact(static_cast<float>(i % 64) - 32));
  g::Tensor* up = f.find_tensor("blk.0.ffn_up.weight");
  up->type = g::T_BF16;
  up->data.clear();
  for (int i = 0; i < 64 * 32; ++i) g::put(up->data, static_cast<std::uint16_t>(0x3F80 + (i % 8)));
  TempDir dir;
  const Checkpoint<float> ck = io::load_gguf<float>(g::write(dir, f));
  for (int row = 0; row < 16; ++row)
    for (int k = 0; k < 32; ++k)
      CHECK(ck.weights.token_embedding(row, k) == 0.25f * static_cast<float>(row - k));
  const auto& wq = ck.weights.layers[1].wq;
  for (int i = 0; i < 32 * 32; ++i) CHECK(wq(i / 32, i % 32) == static_cast<float>(i % 64) - 32);
  const auto& w3 = ck.weights.layers[0].w3;
  for (int i = 0; i < 64 * 32; ++i)
    CHECK(w3(i / 32, i % 32) == 1.0f + static_cast<float>(i % 8) / 128.0f);
}

TEST_CASE("gguf: general.alignment places the data section and tensor offsets", "[io][gguf]") {
  const g::Shape s;
  for (std::uint32_t alignment : {1u, 8u, 64u, 4096u}) {
    INFO("alignment " << alignment);
    g::File f = g::tiny_llama(s);
    f.alignment = alignment;
    f.kv(g::u32("general.alignment", alignment));
    g::Layout layout;
    TempDir dir;
    const std::string path = dir.write("m.gguf", f.build(&layout));
    CHECK(layout.data_begin % alignment == 0);
    const io::GgufFile file(path);
    CHECK(file.alignment() == alignment);
    CHECK(file.data_offset() == layout.data_begin);
    check_tiny_weights(io::load_gguf<float>(path), s, false);
  }
  // Tensors may be stored out of order and with gaps, as long as offsets are aligned.
  g::File f = g::tiny_llama(s);
  f.find_tensor("token_embd.weight")->offset = 1 << 20;
  TempDir dir;
  check_tiny_weights(io::load_gguf<float>(g::write(dir, f)), s, false);
}

// =============================================================================================
// Hostile and unsupported files

TEST_CASE("gguf: wrong magic and unsupported versions", "[io][gguf][hostile]") {
  g::File f = g::tiny_llama();
  f.magic = "GGUG";
  CHECK_THAT(g::load_error(f), Contains("not a GGUF file: magic 'GGUG', expected 'GGUF'"));
  f.magic = std::string("\x00\x01GG", 4);
  CHECK_THAT(g::load_error(f), Contains("magic '\\x00\\x01GG'"));
  CHECK_THAT(g::load_error_bytes("GG"), Contains("too short for the 'GGUF' magic"));
  f = g::tiny_llama();
  f.version = 1;
  CHECK_THAT(g::load_error(f), Contains("GGUF version 1 is not supported"));
  f.version = 4;
  CHECK_THAT(g::load_error(f), Contains("GGUF version 4 is not supported (supported: 2 and 3)"));
  f.version = 0xFFFFFFFF;
  CHECK_THAT(g::load_error(f), Contains("GGUF version 4294967295 is not supported"));
}

TEST_CASE("gguf: counts beyond the file are refused before allocating", "[io][gguf][hostile]") {
  g::File f = g::tiny_llama();
  f.tensor_count = std::numeric_limits<std::int64_t>::max();
  CHECK_THAT(g::load_error(f), Contains("tensor_count 9223372036854775807 cannot fit in the") &&
                                Contains("each tensor info takes at least 32 bytes"));
  f = g::tiny_llama();
  f.kv_count = 1LL << 40;
  CHECK_THAT(g::load_error(f), Contains("kv_count 1099511627776 cannot fit in the") &&
                                Contains("each key/value takes at least 13 bytes"));
  // Counts that fit the file but overstate what is there run into the next section.
  f = g::tiny_llama();
  f.kv_count = static_cast<std::int64_t>(f.kvs.size() + 1);
  CHECK_THAT(g::load_error(f), Contains("truncated or corrupt: tensor info 0 name has length"));
}

TEST_CASE("gguf: hostile strings and arrays", "[io][gguf][hostile]") {
  SECTION("key length beyond the file") {
    g::File f = g::tiny_llama();
    std::string bytes = f.build();
    const std::uint64_t huge = 1ULL << 62;
    std::memcpy(&bytes[24], &huge, 8);  // the first key's length
    CHECK_THAT(g::load_error_bytes(bytes),
               Contains("metadata key/value 0 key has length 4611686018427387904 but only") &&
                   Contains("bytes follow at offset 32"));
  }
  SECTION("string value beyond the file") {
    g::File f = g::tiny_llama();
    g::Kv* name = f.find_kv("general.name");
    name->payload = std::string();
    g::put<std::uint64_t>(name->payload, 1000000000);
    name->payload += "tiny";
    CHECK_THAT(g::load_error(f),
               Contains("metadata key 'general.name' has length 1000000000 but only"));
  }
  SECTION("string value above the 1 MiB limit") {
    g::File f = g::tiny_llama();
    f.kv(g::string("general.description", std::string((1 << 20) + 1, 'x')));
    CHECK_THAT(g::load_error(f), Contains("metadata key 'general.description' has length 1048577, "
                                       "above the limit of 1048576 bytes"));
  }
  SECTION("array count far beyond the file") {
    g::File f = g::tiny_llama();
    f.kv(g::Kv{"big", g::ARRAY, g::array_payload(g::U32, 1ULL << 62, "")});
    CHECK_THAT(g::load_error(f), Contains("metadata key 'big' is an array of 4611686018427387904 u32 "
                                       "items, which needs at least 2^64 bytes but only"));
    f = g::tiny_llama();
    f.kv(g::Kv{"big", g::ARRAY, g::array_payload(g::STRING, 1ULL << 40, "")});
    CHECK_THAT(g::load_error(f), Contains("is an array of 1099511627776 string items, which needs at "
                                       "least 8796093022208 bytes"));
  }
  SECTION("array item strings beyond the file") {
    g::File f = g::tiny_llama();
    std::string items;
    g::put<std::uint64_t>(items, 3);
    items += "abc";
    g::put<std::uint64_t>(items, 1ULL << 50);
    f.kv(g::Kv{"names", g::ARRAY, g::array_payload(g::STRING, 2, items)});
    CHECK_THAT(g::load_error(f), Contains("metadata key 'names' item 1 has length 1125899906842624"));
  }
  SECTION("nested arrays are read, up to a depth") {
    // [[1, 2], [3]] of u8: fine.
    std::string inner1 = g::array_payload(g::U8, 2, std::string("\x01\x02", 2));
    std::string inner2 = g::array_payload(g::U8, 1, std::string("\x03", 1));
    g::File f = g::tiny_llama();
    f.kv(g::Kv{"nested", g::ARRAY, g::array_payload(g::ARRAY, 2, inner1 + inner2)});
    TempDir dir;
    const io::GgufFile file(g::write(dir, f));
    const auto* v = file.find("nested");
    REQUIRE(v != nullptr);
    CHECK(v->count == 2);
    REQUIRE(v->arrays.size() == 2);
    CHECK(v->arrays[0].item_bytes == std::string("\x01\x02", 2));
    CHECK(v->type_name() == "array of array of u8");
    CHECK(io::load_gguf<float>(dir.path("m.gguf")).config.dim == 32);  // extra keys are fine
  }
  SECTION("nested array depth bomb") {
    // 100000 levels of one-element arrays: refused at the depth limit, no recursion blow-up.
    std::string payload = g::array_payload(g::U8, 0, "");
    std::string prefix;
    for (int i = 0; i < 100000; ++i) {
      g::put<std::uint32_t>(prefix, g::ARRAY);
      g::put<std::uint64_t>(prefix, 1);
    }
    g::File f = g::tiny_llama();
    f.kv(g::Kv{"bomb", g::ARRAY, prefix.substr(0, prefix.size() - 12) + payload.substr(0)});
    CHECK_THAT(g::load_error(f), Contains("metadata key 'bomb' item 0 item 0 item 0 item 0 nests "
                                       "arrays more than 4 deep"));
  }
  SECTION("too many arrays inside arrays") {
    // Each empty inner array is 12 bytes on disk but a whole value in memory: capped.
    std::string items;
    for (int i = 0; i < (1 << 16) + 1; ++i) items += g::array_payload(g::U8, 0, "");
    g::File f = g::tiny_llama();
    f.kv(g::Kv{"many", g::ARRAY, g::array_payload(g::ARRAY, (1 << 16) + 1, items)});
    CHECK_THAT(g::load_error(f), Contains("metadata key 'many' takes the number of arrays inside "
                                       "arrays above the limit of 65536"));
    f = g::tiny_llama();
    f.kv(g::Kv{"fine", g::ARRAY, g::array_payload(g::ARRAY, 1 << 16, items.substr(12))});
    TempDir dir;
    CHECK(io::GgufFile(g::write(dir, f)).find("fine")->arrays.size() == 1 << 16);
  }
  SECTION("unknown value types") {
    g::File f = g::tiny_llama();
    f.kv(g::Kv{"odd", 13, "x"});
    CHECK_THAT(g::load_error(f), Contains("metadata key 'odd' has unknown value type 13"));
    f = g::tiny_llama();
    f.kv(g::Kv{"odd", g::ARRAY, g::array_payload(99, 0, "")});
    CHECK_THAT(g::load_error(f), Contains("metadata key 'odd' is an array with unknown item type 99"));
  }
  SECTION("invalid bool") {
    g::File f = g::tiny_llama();
    f.kv(g::Kv{"flag", g::BOOL, "\x02"});
    CHECK_THAT(g::load_error(f), Contains("metadata key 'flag' is a bool with invalid value 2"));
  }
  SECTION("duplicate keys") {
    g::File f = g::tiny_llama();
    f.kv(g::u32("llama.block_count", 2));
    CHECK_THAT(g::load_error(f), Contains("metadata key 'llama.block_count' appears twice"));
  }
}

TEST_CASE("gguf: hostile tensor infos", "[io][gguf][hostile]") {
  SECTION("n_dims 0 and 5") {
    g::File f = g::tiny_llama();
    f.find_tensor("blk.0.attn_norm.weight")->ne = {};
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.0.attn_norm.weight' has 0 dimensions "
                                       "(supported: 1 to 4)"));
    f = g::tiny_llama();
    f.find_tensor("blk.0.attn_norm.weight")->ne = {32, 1, 1, 1, 1};
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.0.attn_norm.weight' has 5 dimensions"));
  }
  SECTION("element count overflow") {
    g::File f = g::tiny_llama();
    f.find_tensor("output_norm.weight")->ne = {1ULL << 32, 1ULL << 32};
    CHECK_THAT(g::load_error(f), Contains("tensor 'output_norm.weight' has dimensions [4294967296, "
                                       "4294967296] whose element count overflows"));
    f = g::tiny_llama();
    f.find_tensor("output_norm.weight")->ne = {UINT64_MAX};
    CHECK_THAT(g::load_error(f), Contains("whose element count overflows"));
    // In range of int64 but not of bytes.
    f = g::tiny_llama();
    f.find_tensor("output_norm.weight")->ne = {1ULL << 62};
    CHECK_THAT(g::load_error(f), Contains("tensor 'output_norm.weight' of type F32 has too many "
                                       "elements to address"));
    // Addressable, but far beyond the file.
    f = g::tiny_llama();
    f.find_tensor("output_norm.weight")->ne = {1ULL << 40};
    CHECK_THAT(g::load_error(f), Contains("tensor 'output_norm.weight' (F32 [1099511627776], "
                                       "4398046511104 bytes at data offset"));
  }
  SECTION("unknown and unsupported types") {
    g::File f = g::tiny_llama();
    f.find_tensor("blk.1.ffn_up.weight")->type = 99;
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.1.ffn_up.weight' has unknown GGML type 99"));
    f.find_tensor("blk.1.ffn_up.weight")->type = 4;  // Q4_2: retired from ggml
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.1.ffn_up.weight' has unknown GGML type 4"));
    // A known quantisation that depass does not decode, whose bytes fit the file: named
    // with its type and the supported list.
    f = g::tiny_llama();
    g::Tensor* t = f.find_tensor("blk.1.ffn_up.weight");
    t->ne = {256, 8};  // IQ2_XXS: 66 bytes per 256 elements
    t->type = g::T_IQ2_XXS;
    t->data = std::string(8 * 66, '\0');
    CHECK_THAT(g::load_error(f), Contains("unsupported GGUF tensor type IQ2_XXS (16) for tensor "
                                       "'blk.1.ffn_up.weight' (supported: F32, F16, BF16, Q4_0, "
                                       "Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, "
                                       "IQ4_NL, IQ4_XS)"));
    f = g::tiny_llama();
    t = f.find_tensor("token_embd.weight");
    t->type = 9;  // Q8_1: 36 bytes per 32 elements, only an intermediate format in ggml
    t->data = std::string(16 * 36, '\0');
    CHECK_THAT(g::load_error(f), Contains("unsupported GGUF tensor type Q8_1 (9) for tensor "
                                       "'token_embd.weight'"));
  }
  SECTION("rows not made of whole blocks") {
    g::File f = g::tiny_llama();
    g::Tensor* t = f.find_tensor("blk.0.ffn_down.weight");  // ne = [64, 32]
    t->ne = {48, 32};
    t->type = g::T_Q8_0;
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.0.ffn_down.weight' has rows of 48 elements, "
                                       "not a multiple of the 32-element blocks of type Q8_0"));    // llama.cpp keeps such tensors in another type; a file that does not is refused.
    f = g::tiny_llama();
    t = f.find_tensor("blk.0.ffn_down.weight");
    t->ne = {128, 16};
    t->type = g::T_Q4_K;
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.0.ffn_down.weight' has rows of 128 elements, "
                                       "not a multiple of the 256-element blocks of type Q4_K"));
  }
  SECTION("misaligned offset") {
    g::File f = g::tiny_llama();
    f.find_tensor("blk.0.attn_q.weight")->offset = 4 + 32 * 100;
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.0.attn_q.weight' has offset 3204, not a "
                                       "multiple of the alignment 32"));
  }
  SECTION("tensor data beyond the file") {
    g::File f = g::tiny_llama();
    f.find_tensor("output_norm.weight")->offset = 1 << 20;
    std::string bytes = f.build();
    bytes.resize(bytes.size() - 4);
    CHECK_THAT(g::load_error_bytes(bytes),
               Contains("truncated or corrupt: tensor 'output_norm.weight' (F32 [32], 128 bytes "
                        "at data offset 1048576) reaches beyond the"));
    // An offset near 2^64 must not wrap around when the size is added.
    f = g::tiny_llama();
    g::Layout layout;
    bytes = f.build(&layout);
    const std::uint64_t far = UINT64_MAX - 31;  // aligned
    std::memcpy(&bytes[layout.infos_end - 8], &far, 8);
    CHECK_THAT(g::load_error_bytes(bytes),
               Contains("tensor 'output_norm.weight' (F32 [32], 128 bytes at data offset "
                        "18446744073709551584) reaches beyond the"));
  }
  SECTION("duplicate tensor names") {
    g::File f = g::tiny_llama();
    g::Tensor copy = *f.find_tensor("blk.0.attn_norm.weight");
    f.tensor(copy);
    CHECK_THAT(g::load_error(f), Contains("tensor name 'blk.0.attn_norm.weight' appears twice "
                                       "(tensor infos 1 and 20)"));
  }
  SECTION("tensor name beyond the file") {
    g::File f = g::tiny_llama();
    g::Layout layout;
    std::string bytes = f.build(&layout);
    const std::uint64_t huge = 1ULL << 40;
    std::memcpy(&bytes[layout.info_offsets[3]], &huge, 8);
    CHECK_THAT(g::load_error_bytes(bytes), Contains("tensor info 3 name has length 1099511627776"));
  }
  SECTION("general.alignment must be a power of two") {
    for (std::uint32_t bad : {0u, 3u, 48u}) {
      g::File f = g::tiny_llama();
      f.kv(g::u32("general.alignment", bad));
      CHECK_THAT(g::load_error(f),
                 Contains("general.alignment " + std::to_string(bad) + " must be a power of two"));
    }
    g::File f = g::tiny_llama();
    f.kv(g::string("general.alignment", "32"));
    CHECK_THAT(
        g::load_error(f),
        Contains("metadata key 'general.alignment' must be an unsigned integer, got string"));
  }
}

TEST_CASE("gguf: missing, mistyped and implausible model metadata", "[io][gguf][hostile]") {
  SECTION("missing required keys") {
    for (const char* key : {"general.architecture", "llama.embedding_length", "llama.block_count",
                            "llama.feed_forward_length", "llama.attention.head_count",
                            "llama.context_length", "llama.attention.layer_norm_rms_epsilon"}) {
      g::File f = g::tiny_llama();
      f.erase_kv(key);
      CHECK_THAT(g::load_error(f),
                 Contains(std::string("missing required metadata key '") + key + "'"));
    }
    g::File f = g::tiny_llama();
    f.erase_kv("tokenizer.ggml.tokens");
    CHECK_THAT(g::load_error(f), Contains("cannot determine the vocabulary size"));
  }
  SECTION("wrong key types") {
    g::File f = g::tiny_llama();
    *f.find_kv("llama.embedding_length") = g::string("llama.embedding_length", "32");
    CHECK_THAT(g::load_error(f), Contains("metadata key 'llama.embedding_length' must be an unsigned "
                                       "integer, got string"));
    f = g::tiny_llama();
    *f.find_kv("llama.attention.layer_norm_rms_epsilon") =
        g::u32("llama.attention.layer_norm_rms_epsilon", 0);
    CHECK_THAT(g::load_error(f), Contains("metadata key 'llama.attention.layer_norm_rms_epsilon' must "
                                       "be a float, got u32"));
    f = g::tiny_llama();
    *f.find_kv("general.architecture") = g::u32("general.architecture", 1);
    CHECK_THAT(g::load_error(f),
               Contains("metadata key 'general.architecture' must be a string, got u32"));
    f = g::tiny_llama();
    *f.find_kv("tokenizer.ggml.tokens") = g::f32s("tokenizer.ggml.tokens", {1.0f});
    CHECK_THAT(g::load_error(f), Contains("metadata key 'tokenizer.ggml.tokens' must be an array of "
                                       "strings, got array of f32"));
    f = g::tiny_llama();
    *f.find_kv("llama.block_count") = g::i32("llama.block_count", -2);
    CHECK_THAT(g::load_error(f),
               Contains("metadata key 'llama.block_count' = -2 must not be negative"));
    f = g::tiny_llama();
    *f.find_kv("llama.block_count") = g::u64("llama.block_count", 1ULL << 40);
    CHECK_THAT(g::load_error(f), Contains("metadata key 'llama.block_count' = 1099511627776 is out of "
                                       "range [0, 2147483647]"));
  }
  SECTION("other architectures") {
    g::File f = g::tiny_llama();
    *f.find_kv("general.architecture") = g::string("general.architecture", "falcon");
    CHECK_THAT(g::load_error(f), Contains("unsupported GGUF architecture 'falcon' (supported: llama, "
                                       "qwen2, qwen3, phi3, gemma, gemma2, gpt2, gptneox)"));
    // A llama file relabelled qwen2 lacks qwen2's q/k/v biases (tests/io/GgufFamilies.test.cpp
    // loads real qwen2 files).
    f = g::tiny_llama();
    *f.find_kv("general.architecture") = g::string("general.architecture", "qwen2");
    CHECK_THAT(g::load_error(f), Contains("missing required metadata key 'qwen2.embedding_length'"));
  }
  SECTION("implausible or unsupported hyper-parameters") {
    g::File f = g::tiny_llama();
    *f.find_kv("llama.attention.head_count") = g::u32("llama.attention.head_count", 0);
    CHECK_THAT(g::load_error(f),
               Contains("implausible GGUF llama configuration: Config: n_heads = 0"));
    f = g::tiny_llama();
    *f.find_kv("llama.attention.head_count") = g::u32("llama.attention.head_count", 5);
    CHECK_THAT(g::load_error(f), Contains("llama.attention.head_count (5) does not divide "
                                       "llama.embedding_length (32)"));
    f = g::tiny_llama();
    *f.find_kv("llama.rope.dimension_count") = g::u32("llama.rope.dimension_count", 4);
    CHECK_THAT(g::load_error(f), Contains("partial rotary embeddings are not supported"));
    f = g::tiny_llama();
    f.kv(g::string("llama.rope.scaling.type", "yarn"));
    CHECK_THAT(g::load_error(f), Contains("unsupported llama.rope.scaling.type 'yarn'"));
    f = g::tiny_llama();
    f.kv(g::u32("llama.expert_count", 8));
    CHECK_THAT(g::load_error(f), Contains("mixture-of-experts GGUF models are not supported"));
    f = g::tiny_llama();
    f.kv(g::u32("llama.vocab_size", 17));
    CHECK_THAT(g::load_error(f), Contains("llama.vocab_size (17) disagrees with the 16 entries of "
                                       "tokenizer.ggml.tokens"));
  }
  SECTION("missing, misshapen and extra tensors") {
    g::File f = g::tiny_llama();
    f.erase_tensor("blk.1.ffn_gate.weight");
    CHECK_THAT(g::load_error(f), Contains("missing tensor 'blk.1.ffn_gate.weight'"));
    f = g::tiny_llama();
    f.find_tensor("blk.0.attn_k.weight")->ne = {16, 32};
    f.find_tensor("blk.0.attn_k.weight")->data.resize(16 * 32 * 4);
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.0.attn_k.weight' has shape [32, 16], expected "
                                       "[16, 32]"));
    f = g::tiny_llama();
    f.tensor({"blk.0.attn_q.bias", {32}, g::T_F32, std::string(128, '\0'), -1});
    CHECK_THAT(g::load_error(f), Contains("tensor 'blk.0.attn_q.bias' is not part of a llama model"));
    f = g::tiny_llama();
    f.tensor({"rope_freqs.weight", {4}, g::T_F32, std::string(16, '\0'), -1});
    CHECK_THAT(g::load_error(f), Contains("tensor 'rope_freqs.weight' holds 0.000000 at [0]; llama3 "
                                       "frequency divisors are finite and at least 1"));
  }
}

TEST_CASE("gguf: a file truncated anywhere is a FormatError", "[io][gguf][hostile]") {
  g::File f = g::tiny_llama();
  g::Layout layout;
  const std::string bytes = f.build(&layout);
  REQUIRE(layout.kv_offsets.size() == 13);
  REQUIRE(layout.info_offsets.size() == 20);
  REQUIRE(layout.info_offsets[19] - layout.kv_end >= 20 * 32);
  struct Cut {
    std::size_t size;
    const char* expected;
  };
  const std::size_t kv_end = layout.kv_end, last_info = layout.info_offsets[19];
  const std::vector<Cut> cuts = {
      {0, "too short for the 'GGUF' magic"},
      {6, "truncated: GGUF version needs 4 bytes at offset 4"},
      {12, "truncated: tensor_count needs 8 bytes at offset 8"},
      {20, "truncated: kv_count needs 8 bytes at offset 16"},
      {24, "kv_count 13 cannot fit in the 0 bytes after the header"},
      {72, "kv_count 13 cannot fit in the 48 bytes after the header"},
      // Past the point where kv_count alone rules the file out.
      {layout.kv_offsets[10] - 2,
       "truncated: metadata key "
       "'llama.attention.layer_norm_rms_epsilon' needs 4 bytes"},
      {layout.kv_offsets[10] + 8 + 5,
       "metadata key/value 10 key has length 20 but only 5 bytes "
       "follow"},
      {layout.kv_offsets[11] + 3, "truncated: metadata key/value 11 key length needs 8 bytes"},
      {kv_end - 5,
       "metadata key 'tokenizer.ggml.scores' is an array of 16 f32 items, which "
       "needs at least 64 bytes but only"},
      {kv_end + 100, "tensor_count 20 cannot fit in the 100 bytes after the metadata"},
      {last_info + 8 + 18 + 2, "truncated: tensor 'output_norm.weight' n_dims needs 4 bytes"},
      {last_info + 20, "truncated or corrupt: tensor info 19 name has length 18 but only 12"},
      {layout.infos_end - 3, "truncated: tensor 'output_norm.weight' offset needs 8 bytes"},
      {layout.data_begin + 10,
       "truncated or corrupt: tensor 'token_embd.weight' (F32 [16, 32], "
       "2048 bytes at data offset 0) reaches beyond the 10-byte data "
       "section"},
      {layout.size - 1, "truncated or corrupt: tensor 'output_norm.weight'"},
  };
  for (const Cut& cut : cuts) {
    INFO("cut at " << cut.size << " of " << bytes.size());
    REQUIRE(cut.size < bytes.size());
    CHECK_THAT(g::load_error_bytes(bytes.substr(0, cut.size)), Contains(cut.expected));
  }
  // And every other length too, coarsely: a FormatError each time, never a crash.
  for (std::size_t size = 0; size < bytes.size(); size += 97) {
    INFO("cut at " << size);
    g::load_error_bytes(bytes.substr(0, size));
  }
}

TEST_CASE("gguf: a missing file is a runtime_error naming it, not a FormatError",
          "[io][gguf][hostile]") {
  TempDir dir;
  CHECK_THAT(io_error([&] { io::load_gguf<float>(dir.path("absent.gguf")); }),
             Contains("absent.gguf"));
  CHECK_THAT(io_error([&] { io::load_gguf<float>(dir.root()); }), Contains("is a directory"));
}
