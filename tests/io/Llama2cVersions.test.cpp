// llama2.c's versioned exports (export.py version1_export: float32 with the 'ak42' header;
// version2_export: int8 with one f32 scale per group) against the legacy (v0) export of
// the same weights, all written by tools/reference/llama2c_export.py into
// tests/data/llama2c/: v1 loads bit for bit what v0 holds; v2 is within its quantisation
// error, weight by weight and in the logits; hostile versioned headers and v2 data are
// refused with FormatErrors naming the problem.

#include <cmath>
#include <cstring>
#include <depass/Model.hpp>
#include <depass/io/Llama2c.hpp>
#include <depass/io/Load.hpp>

#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

using namespace depass;
using namespace depass::test;

namespace {

std::string data(const std::string& name) { return source_dir() + "/tests/data/llama2c/" + name; }

template <typename Scalar>
std::vector<const RowMatrix<Scalar>*> matrices(const Checkpoint<Scalar>& ck) {
  std::vector<const RowMatrix<Scalar>*> out = {&ck.weights.token_embedding};
  for (const auto& l : ck.weights.layers)
    for (const RowMatrix<Scalar>* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) out.push_back(m);
  if (ck.weights.output.size() != 0) out.push_back(&ck.weights.output);
  return out;
}

template <typename Scalar>
bool same_weights(const Checkpoint<Scalar>& a, const Checkpoint<Scalar>& b) {
  const auto ma = matrices(a), mb = matrices(b);
  bool same = ma.size() == mb.size();
  for (std::size_t i = 0; same && i < ma.size(); ++i) same = *ma[i] == *mb[i];
  for (std::size_t l = 0; same && l < a.weights.layers.size(); ++l)
    same = a.weights.layers[l].attention_norm == b.weights.layers[l].attention_norm &&
           a.weights.layers[l].mlp_norm == b.weights.layers[l].mlp_norm;
  return same && a.weights.final_norm == b.weights.final_norm;
}

const std::vector<int> kIds = {1, 5, 9, 3, 14, 2, 7, 11, 0, 4};

}  // namespace

TEMPLATE_TEST_CASE("llama2.c v1: loads exactly the weights and logits of the legacy export",
                   "[io][llama2c]", DEPASS_TEST_SCALARS) {
  for (const std::string name : {"shared", "unshared"}) {
    INFO(name);
    const Checkpoint<TestType> v0 = io::load_llama2c<TestType>(data(name + "_v0.bin"));
    const Checkpoint<TestType> v1 = io::load_checkpoint<TestType>(data(name + "_v1.bin"));
    CHECK(io::detect_format(data(name + "_v1.bin")) == io::Format::Llama2c);
    CHECK(v1.config.dim == v0.config.dim);
    CHECK(v1.config.n_layers == v0.config.n_layers);
    CHECK(v1.config.n_kv_heads == v0.config.n_kv_heads);
    CHECK(v1.config.vocab_size == v0.config.vocab_size);
    CHECK(v1.config.tied_embeddings == (name == "shared"));
    CHECK(v1.config.tied_embeddings == v0.config.tied_embeddings);
    CHECK(same_weights(v1, v0));
    const Matrix<TestType> a = Model<TestType>(Checkpoint<TestType>(v0)).forward(kIds);
    const Matrix<TestType> b = Model<TestType>(Checkpoint<TestType>(v1)).forward(kIds);
    CHECK(a == b);
  }
}

TEMPLATE_TEST_CASE("llama2.c v2: int8 weights are within half a quantisation step of the legacy export",
                   "[io][llama2c]", DEPASS_TEST_SCALARS) {
  for (const std::string name : {"shared", "unshared"}) {
    INFO(name);
    const Checkpoint<TestType> v0 = io::load_llama2c<TestType>(data(name + "_v0.bin"));
    const Checkpoint<TestType> v2 = io::load_checkpoint<TestType>(data(name + "_v2.bin"));
    CHECK(v2.config.tied_embeddings == v0.config.tied_embeddings);
    CHECK(v2.config.hidden_dim == v0.config.hidden_dim);
    // Norms stay f32.
    CHECK(v2.weights.final_norm == v0.weights.final_norm);
    CHECK(v2.weights.layers.back().mlp_norm == v0.weights.layers.back().mlp_norm);
    // Each group of 16 consecutive values (row-major, per tensor and layer; w2's rows of 24
    // straddle groups) has scale max|w| / 127 and every value is within half a step of it.
    const auto m0 = matrices(v0), m2 = matrices(v2);
    REQUIRE(m0.size() == m2.size());
    bool within = true, changed = false;
    for (std::size_t i = 0; i < m0.size(); ++i) {
      const TestType* w = m0[i]->data();
      const TestType* q = m2[i]->data();
      for (Eigen::Index g = 0; g < m0[i]->size() / 16; ++g) {
        double peak = 0;
        for (Eigen::Index k = 16 * g; k < 16 * (g + 1); ++k) peak = std::max(peak, std::abs(double(w[k])));
        const double step = static_cast<double>(static_cast<float>(peak) / 127.0f);
        for (Eigen::Index k = 16 * g; k < 16 * (g + 1); ++k) {
          within = within && std::abs(double(q[k]) - double(w[k])) <= 0.5 * step * (1 + 1e-5);
          changed = changed || q[k] != w[k];
        }
      }
    }
    CHECK(within);
    CHECK(changed);
    // Logits: measured max |v2 - v0| 0.052 (shared) and 0.048 (unshared) on logits of
    // size up to ~4 (these random weights of scale 0.3 give 8-bit steps of ~0.007); the
    // bound is 0.1.
    const Matrix<TestType> a = Model<TestType>(Checkpoint<TestType>(v0)).forward(kIds);
    const Matrix<TestType> b = Model<TestType>(Checkpoint<TestType>(v2)).forward(kIds);
    const double diff = static_cast<double>((a - b).cwiseAbs().maxCoeff());
    INFO("max |v2 logit - v0 logit| = " << diff << " (logits up to " << a.cwiseAbs().maxCoeff() << ")");
    CHECK(diff > 0);
    CHECK(diff < 0.1);
  }
}

// --- hostile versioned files -------------------------------------------------------------------

namespace {

std::string v2_bytes() { return read_file(data("shared_v2.bin")); }

std::string error_of(const std::string& bytes) {
  TempDir dir;
  const std::string path = dir.write("m.bin", bytes);
  const std::string message = format_error([&] { io::load_llama2c<float>(path); });
  CHECK_THAT(message, Contains(path + ": "));
  return message;
}

template <typename T>
std::string with(std::string bytes, std::size_t at, T value) {
  std::memcpy(&bytes[at], &value, sizeof value);
  return bytes;
}

}  // namespace

TEST_CASE("llama2.c versioned: hostile headers and data are refused", "[io][llama2c][hostile]") {
  const std::string v2 = v2_bytes();
  SECTION("unknown version") {
    CHECK_THAT(error_of(with<std::int32_t>(v2, 4, 3)),
               Contains("llama2.c export version 3 is not supported (supported: 1 = float32, 2 = int8"));
  }
  SECTION("magic but shorter than the 256-byte header") {
    CHECK_THAT(error_of(v2.substr(0, 100)),
               Contains("truncated: 100-byte file is too short for the 256-byte header of a versioned "
                        "llama2.c export"));
  }
  SECTION("negative vocab_size, bad flag, implausible fields") {
    CHECK_THAT(error_of(with<std::int32_t>(v2, 28, -32)),
               Contains("vocab_size = -32 must be positive in a versioned export"));
    CHECK_THAT(error_of(with<std::uint8_t>(v2, 36, 2)),
               Contains("shared_classifier flag (byte 36) is 2, expected 0 or 1"));
    CHECK_THAT(error_of(with<std::int32_t>(v2, 8, 1 << 30)),
               Contains("implausible llama2.c header: Config: dim = 1073741824 is out of range"));
  }
  SECTION("group size zero, negative or not dividing dim") {
    for (const std::int32_t gs : {0, -16, 5, 32, 48}) {
      INFO(gs);
      CHECK_THAT(error_of(with<std::int32_t>(v2, 37, gs)),
                 Contains("llama2.c v2 group_size " + std::to_string(gs) +
                          " must be positive and divide dim (16)"));
    }
  }
  SECTION("group size 8 divides dim but the file was written with 16: the sizes disagree") {
    CHECK_THAT(error_of(with<std::int32_t>(v2, 37, 8)), Contains("truncated: array "));
  }
  SECTION("truncated inside an int8 tensor or its scales") {
    // norms: 2*16 + 2*16 + 16 floats = 320 bytes after the header; the embedding takes
    // 32*16 int8 + 32 scales = 640 bytes; then wq layer 0 (256 + 64), layer 1.
    CHECK_THAT(error_of(v2.substr(0, 256 + 320 + 100)),
               Contains("truncated: array 'token_embedding' (int8 + f32 scale per 16 values [32, 16]) "
                        "needs bytes [576, 1216)"));
    CHECK_THAT(error_of(v2.substr(0, 256 + 320 + 640 + 320 + 300)),
               Contains("truncated: array 'wq' (int8 + f32 scale per 16 values [2, 16, 16]) needs bytes "
                        "[1216, 1856)"));
    CHECK_THAT(error_of(v2 + "xyz"), Contains("3 trailing bytes after the last array 'w3'"));
  }
  SECTION("NaN and infinite scales name the tensor, layer and group") {
    // wq layer 1: int8 at 1216 + 320, its 16 scales after the 256 values.
    const std::size_t scales = 1216 + 320 + 256;
    CHECK_THAT(error_of(with<float>(v2, scales + 4 * 3, std::numeric_limits<float>::quiet_NaN())),
               Contains("array 'wq' (layer 1) group 3 (values 48..63) has a non-finite scale; weights "
                        "must be finite"));
    CHECK_THAT(error_of(with<float>(v2, 576 + 512 + 4 * 31, -std::numeric_limits<float>::infinity())),
               Contains("array 'token_embedding' group 31 (values 496..511) has a non-finite scale"));
  }
  SECTION("a NaN weight in a v1 file names the array and the element") {
    const std::string v1 = read_file(data("shared_v1.bin"));
    // v1: norms (320 bytes) then the embedding: value 16 * 3 + 2 is row 3, column 2.
    CHECK_THAT(error_of(with<float>(v1, 256 + 320 + 4 * 50, std::numeric_limits<float>::quiet_NaN())),
               Contains("array 'token_embedding' holds a non-finite value (nan) at [3, 2]"));
    CHECK_THAT(error_of(v1.substr(0, 4000)), Contains("truncated: array 'wq' (f32 [2, 16, 16]) needs bytes [2624, 4672)"));
  }
}
