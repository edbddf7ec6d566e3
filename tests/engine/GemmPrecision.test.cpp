// The bf16 mode (GemmPrecision::Bf16): its products against Eigen's on the same
// bf16-rounded values, and whole decompositions against float runs on every family's test
// checkpoint and the shared models (built with oneDNN, depass::bf16). The same file built
// without oneDNN tests the refusal (tests/CMakeLists.txt: depass_test_engine_no_onednn).

#include <catch2/catch.hpp>
#include <depass/depass.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

#ifdef DEPASS_WITH_ONEDNN

namespace {

using Bf16Matrix = Eigen::MatrixXf;
using Bf16RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Bf16Matrix bf16_rounded(const Bf16Matrix& m) {
  return m.unaryExpr([](float x) { return detail::from_bf16(detail::to_bf16(x)); });
}

/// The DNNL_MAX_CPU_ISA CTest runs these cases with a CPU limit under which oneDNN 2.x has
/// no bf16 matmul: the products must come from the fallback.
bool bf16_fallback_forced() { return std::getenv("DEPASS_EXPECT_BF16_FALLBACK") != nullptr; }

/// Whether the CPU has bf16 matrix instructions (AVX-512 BF16 or AMX), for which oneDNN
/// has a bf16 matmul; elsewhere it may have one (AVX-512 emulation) or not (the fallback).
bool cpu_has_bf16_instructions() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("flags", 0) == 0) return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
  return false;
}

void check_bf16_kernel(const std::string& kernel) {
  INFO("kernel: " << kernel);
  CHECK(!kernel.empty());
  if (bf16_fallback_forced()) CHECK(kernel.find("fallback") != std::string::npos);
  else if (cpu_has_bf16_instructions()) CHECK(kernel.find("fallback") == std::string::npos);
}

/// Token scores at the last position for its top token, and the run's worst relative
/// completeness residual.
struct Bf16TokenRun {
  Eigen::VectorXd scores;
  double residual = 0;
  std::string kernel;
};

Bf16TokenRun bf16_token_run(const Model<float>& model, const std::vector<int>& ids, GemmPrecision precision) {
  DecomposeOptions options;
  options.gemm_precision = precision;
  const Decomposition<float> d = Decomposer<float>(model).run(ids, Initialisation<float>::tokens(), options);
  const Eigen::Index last = static_cast<Eigen::Index>(ids.size()) - 1;
  Eigen::Index target = 0;
  d.logits(last).maxCoeff(&target);
  Bf16TokenRun run;
  run.scores = d.component_logits(last, static_cast<int>(target)).head(last + 1).cast<double>();
  run.residual = d.max_relative_residual();
  run.kernel = d.gemm_kernel();
  return run;
}

std::vector<int> bf16_random_ids(const Model<float>& model, std::size_t n, unsigned seed) {
  std::vector<int> ids = {1};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> token(3, model.config().vocab_size - 1);
  while (ids.size() < n) ids.push_back(token(rng));
  return ids;
}

/// The stated tolerance of the mode (docs/performance.md, "bf16"): each score within 2% of
/// the largest float score, the components within 2% of the state's size at every boundary,
/// the ranking kept (Spearman >= 0.99, top-10 sets differing by at most one). Measured on
/// these checkpoints: at most 0.65%, 0.67%, 0.999 and 10/10.
void check_bf16_agreement(const Model<float>& model, const std::vector<int>& ids) {
  const Bf16TokenRun bf16 = bf16_token_run(model, ids, GemmPrecision::Bf16);
  const Bf16TokenRun native = bf16_token_run(model, ids, GemmPrecision::Native);
  const ScoreAgreement a = score_agreement(bf16.scores, native.scores, 10);
  INFO("relative error " << a.relative_error() << ", top-" << a.top_k << " overlap " << a.top_k_overlap << ", Spearman "
                         << a.spearman << ", residual " << bf16.residual << " (float " << native.residual << ")");
  check_bf16_kernel(bf16.kernel);
  CHECK(native.kernel.empty());
  CHECK(a.relative_error() <= 2e-2);
  CHECK(a.relative_error() > 0);  // the products did run in bf16
  CHECK(bf16.residual <= 2e-2);
  CHECK(native.residual <= 1e-4);
  CHECK(a.spearman >= 0.99);
  CHECK(a.top_k_overlap >= a.top_k - 1);
}

}  // namespace

TEST_CASE("bf16 products equal Eigen's float products of the bf16-rounded values", "[engine][bf16]") {
  detail::Bf16Gemm gemm;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto random = [&](Eigen::Index r, Eigen::Index c) { return Bf16Matrix(Bf16Matrix::NullaryExpr(r, c, [&] { return normal(rng); })); };
  const Eigen::Index R = 37, K = 96, N = 53;
  const Bf16Matrix w = random(N, K);
  const Bf16RowMatrix w_rows = w;
  const Bf16Matrix src = random(R, K);
  const Bf16RowMatrix src_rows = src;
  const Bf16Matrix expected = bf16_rounded(src) * bf16_rounded(w).transpose();
  const double scale = expected.cwiseAbs().maxCoeff();
  const auto check = [&](const auto& result) {
    // Same exact products, float sums in another order.
    CHECK((Bf16Matrix(result) - expected).cwiseAbs().maxCoeff() <= 1e-5 * scale * K);
  };
  Bf16RowMatrix row_dst(R, N);
  Bf16Matrix col_dst(R, N);
  gemm.multiply_transposed(src_rows, w, row_dst);
  check(row_dst);
  gemm.multiply_transposed(src, w, row_dst);
  check(row_dst);
  gemm.multiply_transposed(src_rows, w_rows, col_dst);
  check(col_dst);
  gemm.multiply_transposed(src, w_rows, col_dst);
  check(col_dst);
  // A strided row-major destination (the MLP's padded gate rows) and source.
  Bf16RowMatrix padded = Bf16RowMatrix::Constant(R, N + 11, 7.0f);
  Eigen::Map<Bf16RowMatrix, 0, Eigen::OuterStride<>> strided(padded.data(), R, N, Eigen::OuterStride<>(N + 11));
  gemm.multiply_transposed(src_rows, w_rows, strided);
  check(strided);
  CHECK((padded.rightCols(11).array() == 7.0f).all());  // the padding is left alone
  Bf16RowMatrix out(R, K);
  const Bf16Matrix w_back = random(K, N);
  gemm.multiply_transposed(strided, w_back, out);
  CHECK((Bf16Matrix(out) - bf16_rounded(Bf16Matrix(strided)) * bf16_rounded(w_back).transpose()).cwiseAbs().maxCoeff() <=
        1e-5 * Bf16Matrix(out).cwiseAbs().maxCoeff() * N);
  check_bf16_kernel(gemm.kernel());
}

TEST_CASE("bf16 rounding is to nearest even and keeps NaN and infinity", "[engine][bf16]") {
  CHECK(detail::to_bf16(1.0f) == 0x3f80);
  CHECK(detail::from_bf16(detail::to_bf16(1.0f + 1.0f / 256)) == 1.0f);           // tie: to even (down)
  CHECK(detail::from_bf16(detail::to_bf16(1.0f + 3.0f / 256)) == 1.0f + 4.0f / 256);  // tie: to even (up)
  CHECK(detail::from_bf16(detail::to_bf16(1.0f + 1.5f / 256)) == 1.0f + 2.0f / 256);  // above the tie: up
  CHECK(std::isnan(detail::from_bf16(detail::to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(detail::from_bf16(detail::to_bf16(std::numeric_limits<float>::infinity())) == std::numeric_limits<float>::infinity());
}

TEST_CASE("bf16 decompositions agree with float ones on every family's test checkpoint", "[engine][bf16]") {
  for (const char* family : {"llama", "llama3", "llama_f16", "mistral", "qwen2", "qwen2_untied", "qwen3", "phi3", "gemma",
                             "gemma2", "gpt2", "gpt2_noprefix", "gpt_neox", "gpt_neox_sequential"}) {
    INFO("family " << family);
    const Model<float> model(io::load_checkpoint<float>(test::source_dir() + "/tests/data/families/" + family));
    check_bf16_agreement(model, bf16_random_ids(model, 29, 11));
  }
}

TEST_CASE("bf16 decompositions agree with float ones on stories260K and TinyStories-656K", "[engine][bf16]") {
  DEPASS_REQUIRE_MODEL(small, "stories260K/stories260K.bin");
  DEPASS_REQUIRE_MODEL(tiny, "tinystories-656k/model.safetensors");
  const Model<float>& a = test::cached_model<float>(small);
  check_bf16_agreement(a, bf16_random_ids(a, 64, 5));
  const Model<float>& b = test::cached_model<float>(test::model_dir() + "/tinystories-656k");
  check_bf16_agreement(b, bf16_random_ids(b, 64, 5));
}

TEST_CASE("bf16 in a chunked run: the chunk residual absorbs the rounding", "[engine][bf16]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<float>& model = test::cached_model<float>(path);
  const std::vector<int> ids = bf16_random_ids(model, 40, 9);
  DecomposeOptions options;
  options.gemm_precision = GemmPrecision::Bf16;
  options.chunk_size = 7;
  const Decomposition<float> d = Decomposer<float>(model).run(ids, Initialisation<float>::tokens(), options);
  CHECK(d.chunk_count() == 6);
  // Chunked: the components are completed by the chunk residual, so they sum to the state.
  const Eigen::Index last = static_cast<Eigen::Index>(ids.size()) - 1;
  const Vector<float> scores = d.component_logits(last, 5);
  CHECK(std::abs(scores.sum() - d.logits(last)(5)) <= 1e-3 * std::max(1.0f, std::abs(d.logits(last)(5))));
  CHECK(std::abs(scores(d.chunk_residual_component())) > 0);
}

TEST_CASE("bf16 is refused where it cannot run: double models, the straightforward engine", "[engine][bf16]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  DecomposeOptions options;
  options.gemm_precision = GemmPrecision::Bf16;
  const std::vector<int> ids = {1, 403, 407};
  CHECK_THROWS_WITH(Decomposer<double>(test::cached_model<double>(path)).run(ids, Initialisation<double>::tokens(), options),
                    Catch::Contains("float models only"));
  options.straightforward = true;
  CHECK_THROWS_WITH(Decomposer<float>(test::cached_model<float>(path)).run(ids, Initialisation<float>::tokens(), options),
                    Catch::Contains("not with straightforward"));
}

#else

// Compiled without oneDNN (the CTest "engine-no-onednn:", or a build without libdnnl-dev).
TEST_CASE("bf16 is refused with a clear message in a build without oneDNN", "[engine][bf16]") {
  CHECK_FALSE(bf16_available());
  CHECK(bf16_unavailable_reason().find("oneDNN") != std::string::npos);
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  DecomposeOptions options;
  options.gemm_precision = GemmPrecision::Bf16;
  CHECK_THROWS_WITH(Decomposer<float>(test::cached_model<float>(path)).run({1, 403}, Initialisation<float>::tokens(), options),
                    Catch::Contains("needs oneDNN"));
}

#endif
