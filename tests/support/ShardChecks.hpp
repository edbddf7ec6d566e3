#pragma once
// Sharded runs (Shards.hpp) against one process holding every component: the cases both
// the in-process thread shards (tests/engine/Shards.test.cpp) and the MPI ranks
// (tests/mpi/MpiShardGroup.test.cpp) run, and the comparison of their results.

#include <depass/Decomposer.hpp>
#include <depass/io/Load.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "Goldens.hpp"
#include "TestSupport.hpp"

namespace depass {
namespace test {

/// The random-weight family checkpoints (tests/data/families) and their golden ids.
inline std::vector<std::pair<std::string, std::vector<int>>> shard_family_models() {
  std::vector<std::pair<std::string, std::vector<int>>> models;
  for (const std::string& name : family_names()) {
    std::ifstream in(golden_path("family_" + name + ".json"));
    if (!in) throw std::runtime_error("cannot read golden family_" + name + ".json");
    const nlohmann::json golden = nlohmann::json::parse(in);
    models.emplace_back(source_dir() + "/tests/data/" + golden["model"].get<std::string>(),
                        golden["cases"][0]["ids"].get<std::vector<int>>());
  }
  return models;
}

/// Every initialisation kind, at the start and at inner boundaries.
template <typename Scalar>
std::vector<std::pair<std::string, Initialisation<Scalar>>> shard_initialisations(const Config& c) {
  Matrix<Scalar> basis = Matrix<Scalar>::Zero(c.dim, 2);
  basis(0, 0) = 1;
  basis(3, 1) = 1;
  // A parallel-residual model cannot start before an MLP (its MLP reads the layer's input):
  // there the tokens start before layer 1's attention.
  const Boundary inside = c.parallel_residual ? Boundary::before_attention(1) : Boundary::before_mlp(1);
  return {{"tokens", Initialisation<Scalar>::tokens()},
          {"tokens at " + inside.to_string(), Initialisation<Scalar>::tokens(inside)},
          {"attention output 0", Initialisation<Scalar>::module_output(0, Site::Attention)},
          {"heads 1", Initialisation<Scalar>::heads(1)},
          {"neurons 0 {0,5,17}", Initialisation<Scalar>::neuron_outputs(0, {0, 5, 17})},
          {"neurons 1", Initialisation<Scalar>::neuron_outputs(1)},
          {"subspaces", Initialisation<Scalar>::subspaces(Boundary::before_attention(1), {basis})}};
}

/// The token-level runs on stories260K both sharded suites make: every split rule, with and
/// without the sink, at T = 0.05, keeping two positions. Each with a label for messages.
inline std::vector<std::pair<std::string, DecomposeOptions>> stories_shard_options() {
  std::vector<std::pair<std::string, DecomposeOptions>> runs;
  for (const MlpSplit split : kMlpSplits)
    for (const bool sink : {true, false}) {
      DecomposeOptions options;
      options.split = split;
      options.bos_sink = sink;
      options.temperature = 0.05;
      options.keep_positions = {-1, 3};
      runs.emplace_back("split " + std::string(to_string(split)) + ", sink " + (sink ? "on" : "off"), options);
    }
  return runs;
}

/// max |a - b| over the stacked components, relative to max(1, max |a|); -1 when the two
/// disagree in shape, labels or bias component.
template <typename Scalar>
double sharded_difference(const Decomposition<Scalar>& single, const Decomposition<Scalar>& sharded) {
  if (single.component_count() != sharded.component_count() || single.labels() != sharded.labels() ||
      single.bias_component() != sharded.bias_component() ||
      single.components().positions() != sharded.components().positions())
    return -1;
  const RowMatrix<Scalar>& a = single.components().stacked();
  const RowMatrix<Scalar>& b = sharded.components().stacked();
  const double scale = std::max(1.0, static_cast<double>(a.cwiseAbs().maxCoeff()));
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / scale;
}

}  // namespace test
}  // namespace depass
