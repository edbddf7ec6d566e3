// DePass engine: what a run keeps and how much memory it may use (keep_positions,
// memory_budget_bytes, chunks), and runs inside a caller's own threads.

#include <catch2/catch.hpp>
#include <depass/Decomposer.hpp>
#include <depass/Threads.hpp>

#include <string>
#include <vector>

#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

const std::vector<int> kIds = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
constexpr int kTarget = 261;

template <typename Scalar>
void check_same_scores(const Decomposition<Scalar>& a, const Decomposition<Scalar>& b, Eigen::Index position) {
  REQUIRE(a.component_count() == b.component_count());
  const Vector<Scalar> x = a.component_logits(position, kTarget), y = b.component_logits(position, kTarget);
  for (Eigen::Index m = 0; m < x.size(); ++m) CHECK(x(m) == y(m));
}

}  // namespace

TEMPLATE_TEST_CASE("keep_positions: the kept positions read as in a full run, the others are refused",
                   "[engine]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Decomposer<TestType> decomposer(test::cached_model<TestType>(path));
  const Eigen::Index N = static_cast<Eigen::Index>(kIds.size());
  const Decomposition<TestType> full = decomposer.run(kIds, Initialisation<TestType>::tokens());
  DecomposeOptions options;
  options.keep_positions = {-1, 3, 3};
  const Decomposition<TestType> kept = decomposer.run(kIds, Initialisation<TestType>::tokens(), options);

  CHECK(kept.kept_positions() == std::vector<Eigen::Index>{3, N - 1});
  CHECK(kept.components().positions() == 2);
  CHECK(kept.positions() == N);
  CHECK(kept.keeps(3));
  CHECK_FALSE(kept.keeps(4));
  check_same_scores(full, kept, 3);
  check_same_scores(full, kept, N - 1);
  CHECK(kept.row(2, N - 1) == full.row(2, N - 1));
  CHECK(kept.max_relative_residual() <= (std::is_same<TestType, float>::value ? 1e-4 : 1e-9));
  // The real state stays whole: logits work everywhere, component readouts only where kept.
  CHECK(kept.logit(4, kTarget) == full.logit(4, kTarget));
  CHECK_THROWS_WITH(kept.component_logits(4, kTarget), Catch::Contains("position 4 was not kept") &&
                                                            Catch::Contains("{3, 11}"));
  CHECK_THROWS_AS(kept.top_tokens(0, 5, 3), std::invalid_argument);

  DecomposeOptions bad;
  bad.keep_positions = {N};
  CHECK_THROWS_WITH(decomposer.run(kIds, Initialisation<TestType>::tokens(), bad),
                    Catch::Contains("keep_positions: position 12 is out of range [-12, 12)"));
  bad.keep_positions = {-N - 1};
  CHECK_THROWS_AS(decomposer.run(kIds, Initialisation<TestType>::tokens(), bad), std::invalid_argument);
}

TEMPLATE_TEST_CASE("A chunked run that keeps one position scores it as the run that keeps all",
                   "[engine]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Decomposer<TestType> decomposer(test::cached_model<TestType>(path));
  const Eigen::Index last = static_cast<Eigen::Index>(kIds.size()) - 1;
  for (const auto& init : {Initialisation<TestType>::tokens(), Initialisation<TestType>::neuron_outputs(2, {1, 7, 9}),
                           Initialisation<TestType>::heads(1)}) {
    DecomposeOptions all;
    all.chunk_size = 4;
    DecomposeOptions one = all;
    one.keep_positions = {last};
    const Decomposition<TestType> a = decomposer.run(kIds, init, all), b = decomposer.run(kIds, init, one);
    CHECK(b.chunked());
    CHECK(a.chunk_count() == b.chunk_count());
    CHECK(a.labels() == b.labels());
    check_same_scores(a, b, last);
    CHECK(b.components().positions() == 1);
  }
}

TEMPLATE_TEST_CASE("A memory budget picks the largest chunk that fits, and refuses one that cannot fit",
                   "[engine]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Decomposer<TestType> decomposer(test::cached_model<TestType>(path));
  const Eigen::Index N = static_cast<Eigen::Index>(kIds.size()), K = N;  // one component per token
  DecomposeOptions budget;
  budget.keep_positions = {-1};
  budget.memory_budget_bytes = decomposer.working_bytes(N, 3, K + 2, 1);
  const Decomposition<TestType> fitted = decomposer.run(kIds, Initialisation<TestType>::tokens(), budget);
  CHECK(fitted.chunk_count() == 4);  // chunks of 3 tokens
  DecomposeOptions by_size;
  by_size.chunk_size = 3;
  check_same_scores(decomposer.run(kIds, Initialisation<TestType>::tokens(), by_size), fitted, N - 1);

  // Enough for every component at once: no chunks.
  budget.memory_budget_bytes = decomposer.working_bytes(N, K - 1, K + 1, 1);
  CHECK_FALSE(decomposer.run(kIds, Initialisation<TestType>::tokens(), budget).chunked());

  budget.memory_budget_bytes = decomposer.working_bytes(N, 1, K + 2, 1) - 1;
  CHECK_THROWS_WITH(decomposer.run(kIds, Initialisation<TestType>::tokens(), budget),
                    Catch::Contains("memory_budget_bytes") && Catch::Contains("too small"));
  // Keeping every position, the result alone may not fit: the message says what to do.
  DecomposeOptions everything;
  everything.memory_budget_bytes = decomposer.working_bytes(N, 1, K + 2, 1);
  CHECK_THROWS_WITH(decomposer.run(kIds, Initialisation<TestType>::tokens(), everything),
                    Catch::Contains("set keep_positions"));
}

#ifdef _OPENMP
TEST_CASE("Decompositions run inside the caller's own parallel region", "[engine]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Decomposer<double> decomposer(test::cached_model<double>(path));
  // One library thread, but two caller threads: their thread numbers must not pick the
  // engine's per-thread scratch.
  const int before = threads();
  set_threads(1);
  const Decomposition<double> serial = decomposer.run(kIds, Initialisation<double>::tokens());
  std::vector<Vector<double>> scores(2);
#pragma omp parallel num_threads(2)
  {
    const Decomposition<double> mine = decomposer.run(kIds, Initialisation<double>::tokens());
    scores[static_cast<std::size_t>(omp_get_thread_num())] = mine.component_logits(11, kTarget);
  }
  set_threads(before);
  for (const Vector<double>& s : scores) CHECK(s == serial.component_logits(11, kTarget));
}
#endif

TEST_CASE("set_threads refuses counts out of range", "[engine]") {
  CHECK_THROWS_WITH(set_threads(0), Catch::Contains("threads = 0 is out of range [1, 1024]"));
  CHECK_THROWS_AS(set_threads(5000), std::invalid_argument);
}
