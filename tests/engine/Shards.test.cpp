// Sharded runs (Shards.hpp) with threads as ranks: the sharded engine's split and sums
// give every component what one process holding all of them gives, for every split rule,
// initialisation and family checkpoint; the shares balance memory and work. MPI ranks run the same
// cases in tests/mpi/MpiShardGroup.test.cpp.

#include <catch2/catch.hpp>
#include <depass/Decomposer.hpp>
#include <depass/engine/BlockedMlp.hpp>
#include <depass/io/Load.hpp>

#include <string>
#include <vector>

#include "support/Goldens.hpp"
#include "support/ShardChecks.hpp"
#include "support/TestSupport.hpp"
#include "support/ThreadShardGroup.hpp"

using namespace depass;

namespace {

/// The run on `ranks` thread shards against one process; rank 0's result must equal it.
template <typename Scalar>
void check_thread_shards(const Model<Scalar>& model, const std::vector<int>& ids, const Initialisation<Scalar>& init,
                         const DecomposeOptions& options, int ranks, double tolerance) {
  const Decomposition<Scalar> single = Decomposer<Scalar>(model).run(ids, init, options);
  const std::vector<Decomposition<Scalar>> shards =
      test::run_thread_shards<Decomposition<Scalar>>(ranks, [&](ShardGroup& group) {
        DecomposeOptions sharded = options;
        sharded.shards = &group;
        return Decomposer<Scalar>(model).run(ids, init, sharded);
      });
  const double difference = test::sharded_difference(single, shards[0]);
  INFO("max |sharded - single| / scale = " << difference);
  CHECK(difference >= 0);
  CHECK(difference <= tolerance);
  CHECK(shards[0].max_relative_residual() <= std::max(1e-9, 10 * single.max_relative_residual()));
  CHECK(shards[0].completeness().size() == single.completeness().size());
  for (int r = 1; r < ranks; ++r) CHECK(shards[static_cast<std::size_t>(r)].component_count() == 0);
}

}  // namespace

TEST_CASE("shard_members pairs an early run of members with a late one on each rank", "[engine][shards]") {
  using Shares = std::vector<std::vector<Eigen::Index>>;
  CHECK(shard_members(8, 1) == Shares{{0, 1, 2, 3, 4, 5, 6, 7}});
  // Token level, N = 8: token m is live on 8 - m rows: {8 + 7 + 2 + 1} = {6 + 5 + 4 + 3} = 18.
  CHECK(shard_members(8, 2) == Shares{{0, 1, 6, 7}, {2, 3, 4, 5}});
  CHECK(shard_members(8, 4) == Shares{{0, 7}, {1, 6}, {2, 5}, {3, 4}});
  CHECK(shard_members(5, 2) == Shares{{0, 3, 4}, {1, 2}});
  // Fewer members than runs: rank 0 still holds member 0 (the sink); a rank may get none.
  CHECK(shard_members(2, 3) == Shares{{0, 1}, {}, {}});
  CHECK(shard_members(0, 2) == Shares{{}, {}});
  CHECK_THROWS_WITH(shard_members(8, 0), Catch::Contains("P = 0"));
}

TEST_CASE("Sharded runs on thread ranks equal one process: every family, split and initialisation",
          "[engine][shards]") {
  for (const auto& [path, ids] : test::shard_family_models()) {
    const Model<double> model(io::load_checkpoint<double>(path));
    for (const auto& [init_name, init] : test::shard_initialisations<double>(model.config()))
      for (const MlpSplit split : kMlpSplits)
        for (const int ranks : {2, 3}) {
          DecomposeOptions options;
          options.split = split;
          options.work_rows = 7;  // many tiles: the ranks must meet tile by tile
          INFO(path << ", " << init_name << ", split " << to_string(split) << ", " << ranks << " ranks");
          check_thread_shards(model, ids, init, options, ranks, 1e-12);
        }
  }
}

TEMPLATE_TEST_CASE("Sharded runs on thread ranks equal one process on stories260K", "[engine][shards]",
                   DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");
  const Model<TestType> model(io::load_checkpoint<TestType>(path));
  const double tolerance = std::is_same<TestType, float>::value ? 1e-4 : 1e-12;
  for (const auto& [label, options] : test::stories_shard_options()) {
    INFO(label);
    check_thread_shards(model, test::kStoriesIds, Initialisation<TestType>::tokens(), options, 4, tolerance);
  }
}

TEST_CASE("The sharded split of a hand-made tile equals split_neuron over every rank's members", "[engine][shards]") {
  // Neuron by neuron (I = 5): an exact tie between components 0 and 1 (on different
  // ranks), a clear winner on each rank, a neuron only the bias drives, and one nobody
  // drives (to the bias). Rank 0 holds component 0 and the bias (global 2), rank 1 component 1.
  using Kernel = detail::SplitKernel<double>;
  const Eigen::Index I = 5, W = Kernel::padded(I);
  const std::vector<std::vector<double>> gate = {{2, 1, 0.5, 0, 0}, {2, 3, -1, 0, 0}, {0, 0.25, 0, 1, 0}};
  const std::vector<std::vector<double>> up = {{1, -2, 0.5, 0, 0}, {3, 1, 2, 0, 0}, {0.5, 0, 1, 2, 0}};
  const std::vector<double> act = {10, 20, -3, 7, 30};
  for (const MlpSplit split : kMlpSplits) {
    const SplitRule rule{split, 0.5};
    const std::vector<RowMatrix<double>> shares = test::run_thread_shards<RowMatrix<double>>(2, [&](ShardGroup& group) {
      const std::vector<Eigen::Index> global = group.rank() == 0 ? std::vector<Eigen::Index>{0, 2} : std::vector<Eigen::Index>{1};
      ComponentState<double> cs;
      cs.tensor.resize(static_cast<Eigen::Index>(global.size()), 1, 1);
      cs.first_position.assign(global.size(), 0);
      cs.bias_component = group.rank() == 0 ? 1 : -1;
      cs.global_index = global;
      cs.shards = &group;
      cs.split = rule;
      const detail::MlpTile tile(cs, 0, 1);
      RowMatrix<double> g = RowMatrix<double>::Zero(tile.rows, W), u = RowMatrix<double>::Zero(tile.rows, W);
      RowMatrix<double> a = RowMatrix<double>::Zero(1, W);
      for (Eigen::Index k = 0; k < I; ++k) {
        a(0, k) = act[static_cast<std::size_t>(k)];
        for (std::size_t b = 0; b < global.size(); ++b) {
          g(static_cast<Eigen::Index>(b), k) = gate[static_cast<std::size_t>(global[b])][static_cast<std::size_t>(k)];
          u(static_cast<Eigen::Index>(b), k) = up[static_cast<std::size_t>(global[b])][static_cast<std::size_t>(k)];
        }
      }
      detail::split_tile_sharded(cs, MlpKind::GatedSiLU, tile, g, split == MlpSplit::Path ? &u : nullptr, a);
      return g;
    });
    for (Eigen::Index k = 0; k < I; ++k) {
      double g[3], u[3], expected[3];
      for (int m = 0; m < 3; ++m) {
        g[m] = gate[static_cast<std::size_t>(m)][static_cast<std::size_t>(k)];
        u[m] = up[static_cast<std::size_t>(m)][static_cast<std::size_t>(k)];
      }
      if (split == MlpSplit::Path) {
        split_neuron_path(g, u, 3, expected);
      } else if (!split_neuron(rule, g, 3, act[static_cast<std::size_t>(k)], expected)) {
        expected[0] = expected[1] = 0;
        expected[2] = act[static_cast<std::size_t>(k)];  // nobody drives it: the bias's
      }
      INFO("split " << to_string(split) << ", neuron " << k);
      CHECK(shares[0](0, k) == Approx(expected[0]).margin(1e-14));
      CHECK(shares[1](0, k) == Approx(expected[1]).margin(1e-14));
      CHECK(shares[0](1, k) == Approx(expected[2]).margin(1e-14));
    }
  }
}

TEST_CASE("With shards_share_result every rank receives the whole result", "[engine][shards]") {
  const auto models = test::shard_family_models();
  const Model<double> model(io::load_checkpoint<double>(models[4].first));  // qwen2: biases
  const std::vector<int>& ids = models[4].second;
  const Decomposition<double> single = Decomposer<double>(model).run(ids, Initialisation<double>::tokens());
  const std::vector<Decomposition<double>> shards =
      test::run_thread_shards<Decomposition<double>>(3, [&](ShardGroup& group) {
        DecomposeOptions options;
        options.shards = &group;
        options.shards_share_result = true;
        return Decomposer<double>(model).run(ids, Initialisation<double>::tokens(), options);
      });
  for (const Decomposition<double>& d : shards) {
    CHECK(test::sharded_difference(single, d) >= 0);
    CHECK(test::sharded_difference(single, d) <= 1e-12);
    CHECK(d.completeness().size() == single.completeness().size());
    CHECK(d.components().stacked() == shards[0].components().stacked());
  }
}

TEST_CASE("A sharded run refuses chunking, a memory budget, the straightforward engine and sinks from the attention",
          "[engine][shards]") {
  const auto models = test::shard_family_models();
  const Model<double> model(io::load_checkpoint<double>(models[0].first));
  test::ThreadShardHub hub(1);
  test::ThreadShardGroup group(hub, 0);
  for (const int option : {0, 1, 2}) {
    DecomposeOptions options;
    options.shards = &group;
    if (option == 0) options.chunk_size = 2;
    if (option == 1) options.memory_budget_bytes = 1 << 30;
    if (option == 2) options.straightforward = true;
    CHECK_THROWS_WITH(Decomposer<double>(model).run(models[0].second, Initialisation<double>::tokens(), options),
                      Catch::Contains("shards: a sharded run takes neither"));
  }
  DecomposeOptions options;
  options.shards = &group;
  options.sink_ratio = 4;
  CHECK_THROWS_WITH(Decomposer<double>(model).run(models[0].second, Initialisation<double>::tokens(), options),
                    Catch::Contains("shards: a sharded run takes no sink_ratio"));
}
