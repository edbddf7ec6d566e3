// Sharded runs over MPI ranks (mpi/MpiShardGroup.hpp), run by ctest with mpirun -np 2 and
// -np 3: every split rule, initialisation and family checkpoint gives rank 0 the result
// one process holding every component gives, within 1e-12 in double; the bytes each rank
// sends follow docs/distributed.md's formula; bad input is refused on every rank alike.
// Only non-aborting checks follow a collective: a REQUIRE leaving one rank's test case
// early would leave the others waiting.

#include <catch2/catch.hpp>
#include <depass/Decomposer.hpp>
#include <depass/engine/SplitKernel.hpp>
#include <depass/io/Load.hpp>
#include <depass/mpi/MpiShardGroup.hpp>

#include <string>
#include <vector>

#include "support/Goldens.hpp"
#include "support/ShardChecks.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

template <typename Scalar>
void check_mpi_shards(const Model<Scalar>& model, const std::vector<int>& ids, const Initialisation<Scalar>& init,
                      DecomposeOptions options, double tolerance) {
  MpiShardGroup group(MPI_COMM_WORLD);
  const Decomposition<Scalar> single = Decomposer<Scalar>(model).run(ids, init, options);
  options.shards = &group;
  const Decomposition<Scalar> sharded = Decomposer<Scalar>(model).run(ids, init, options);
  if (group.rank() != 0) {
    CHECK(sharded.component_count() == 0);
    return;
  }
  const double difference = test::sharded_difference(single, sharded);
  INFO("max |sharded - single| / scale = " << difference);
  CHECK(difference >= 0);
  CHECK(difference <= tolerance);
  CHECK(sharded.max_relative_residual() <= std::max(1e-9, 10 * single.max_relative_residual()));
}

}  // namespace

TEST_CASE("MPI ranks: sharded runs equal one process on every family, split and initialisation", "[mpi]") {
  for (const auto& [path, ids] : test::shard_family_models()) {
    const Model<double> model(io::load_checkpoint<double>(path));
    for (const auto& [init_name, init] : test::shard_initialisations<double>(model.config()))
      for (const MlpSplit split : kMlpSplits) {
        DecomposeOptions options;
        options.split = split;
        options.work_rows = 7;  // many tiles: the ranks meet tile by tile
        INFO(path << ", " << init_name << ", split " << to_string(split));
        check_mpi_shards(model, ids, init, options, 1e-12);
      }
  }
}

TEMPLATE_TEST_CASE("MPI ranks: sharded token runs equal one process on stories260K", "[mpi]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");  // every rank skips alike
  const Model<TestType> model(io::load_checkpoint<TestType>(path));
  const double tolerance = std::is_same<TestType, float>::value ? 1e-4 : 1e-12;
  for (const auto& [label, options] : test::stories_shard_options()) {
    INFO(label);
    check_mpi_shards(model, test::kStoriesIds, Initialisation<TestType>::tokens(), options, tolerance);
  }
}

TEST_CASE("MPI ranks: bytes sent follow the formula of docs/distributed.md", "[mpi]") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<double> model(io::load_checkpoint<double>(path));
  const Config& c = model.config();
  const std::vector<int>& ids = test::kStoriesIds;
  const double N = static_cast<double>(ids.size()), D = c.dim, L = c.n_layers, s = sizeof(double);
  const double W = static_cast<double>(detail::SplitKernel<double>::padded(c.hidden_dim));
  for (const MlpSplit split : kMlpSplits) {
    MpiShardGroup group(MPI_COMM_WORLD);
    DecomposeOptions options;
    options.split = split;
    options.shards = &group;
    options.keep_positions = {-1};
    const std::size_t before = group.bytes_sent();
    Decomposer<double>(model).run(ids, Initialisation<double>::tokens(), options);
    const double mine = static_cast<double>(shard_members(12, group.size())[static_cast<std::size_t>(group.rank())].size());
    // Per MLP layer: the agreed tile (one scalar) and the split's statistics: softmax peak +
    // sum of weights, proportional peak + three sums, argmax peak + owner, path G + U.
    const double per_position = split == MlpSplit::Proportional ? 4 : 2;
    const double split_bytes = L * s * (1 + per_position * N * W);
    const double sums = (2 * L + 1) * N * D * s;  // the completeness sum at every boundary
    const double result = (mine + (group.rank() == 0 ? 1 : 0)) * D * s;  // one kept position
    INFO("split " << to_string(split) << ", rank " << group.rank());
    CHECK(static_cast<double>(group.bytes_sent() - before) == split_bytes + sums + result);
  }
}

TEST_CASE("MPI ranks: bad input is refused on every rank alike, before any rank waits", "[mpi]") {
  const auto models = test::shard_family_models();
  const Model<double> model(io::load_checkpoint<double>(models[0].first));
  MpiShardGroup group(MPI_COMM_WORLD);
  DecomposeOptions options;
  options.shards = &group;
  CHECK_THROWS_WITH(Decomposer<double>(model).run({0, 1, 100000}, Initialisation<double>::tokens(), options),
                    Catch::Contains("100000"));
  options.keep_positions = {99};
  CHECK_THROWS_WITH(Decomposer<double>(model).run(models[0].second, Initialisation<double>::tokens(), options),
                    Catch::Contains("keep_positions"));
  // The group still works: a run after the refusals meets on every rank.
  options.keep_positions = {};
  CHECK_NOTHROW(Decomposer<double>(model).run(models[0].second, Initialisation<double>::tokens(), options));
}
