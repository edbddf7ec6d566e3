#pragma once
// The blocked engine's MLP propagation: the rule of layers/Mlp.hpp (frozen norm, gate
// contributions and, for the path rule, up contributions; the split of
// layers/NeuronSplit.hpp via the vectorised SplitKernel; the down projection; biases to
// the bias component) over the rows the components can reach.
// The split couples components, not positions: a work item is a tile of positions over
// every component live in it, so the split over components is complete inside the tile:
// one exp per (component, position, neuron), nothing kept across tiles.

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <vector>

#include "../ComponentState.hpp"
#include "../layers/Mlp.hpp"
#include "../layers/Norm.hpp"
#include "Rows.hpp"
#include "ShardedSplit.hpp"
#include "SplitKernel.hpp"
#include "WorkItems.hpp"

namespace depass {
namespace detail {

/// The components live in a tile of positions [p0, p1): member b owns packed rows
/// [offset[b], offset[b] + p1 - start[b]), one per position from start[b].
struct MlpTile {
  Eigen::Index p0 = 0, p1 = 0;
  std::vector<Eigen::Index> members, start, offset;
  Eigen::Index rows = 0, bias_member = -1;
  std::vector<Sink> sinks;  // the state's sinks live here: component = member slot

  template <typename Scalar>
  MlpTile(const ComponentState<Scalar>& cs, Eigen::Index from, Eigen::Index to) : p0(from), p1(to) {
    for (Eigen::Index m = 0; m < cs.tensor.components(); ++m) {
      const Eigen::Index first = cs.first(m);
      if (first >= p1) continue;
      if (cs.is_bias(m)) bias_member = static_cast<Eigen::Index>(members.size());
      members.push_back(m);
      start.push_back(std::max(first, p0));
      offset.push_back(rows);
      rows += p1 - start.back();
    }
    for (const Sink& sink : cs.sinks) {  // members ascend: find each sink's slot
      const auto it = std::lower_bound(members.begin(), members.end(), sink.component);
      if (it != members.end() && *it == sink.component)
        sinks.push_back(Sink{static_cast<Eigen::Index>(it - members.begin()), sink.position});
    }
  }
  Eigen::Index count() const { return static_cast<Eigen::Index>(members.size()); }
  Eigen::Index length(Eigen::Index b) const { return p1 - start[static_cast<std::size_t>(b)]; }
  Eigen::Index at(Eigen::Index b) const { return offset[static_cast<std::size_t>(b)]; }
};

/// The split of one tile, position by position over the members live there (gate rows in,
/// shares out). Returns true if a neuron nobody drives found no bias component.
/// up_rows: the members' up contributions, read by the path rule (null: not needed).
template <typename Scalar, typename GateRows, typename UpRows>
bool split_tile(const ComponentState<Scalar>& cs, MlpKind kind, const MlpTile& tile, GateRows& gate_rows, UpRows* up_rows,
                const RowMatrix<Scalar>& act_rows, Eigen::Index I, int inner) {
  bool orphan = false;
  const bool path = cs.split.split == MlpSplit::Path;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(|| : orphan) num_threads(inner) if (inner > 1)
#endif
  for (Eigen::Index p = tile.p0; p < tile.p1; ++p) {
    std::vector<Scalar*> rows, up;
    rows.reserve(static_cast<std::size_t>(tile.count()));
    Eigen::Index bias_slot = -1;
    for (Eigen::Index b = 0; b < tile.count(); ++b) {
      const Eigen::Index f = tile.start[static_cast<std::size_t>(b)];
      if (f > p) continue;
      if (b == tile.bias_member) bias_slot = static_cast<Eigen::Index>(rows.size());
      rows.push_back(gate_rows.row(tile.at(b) + p - f).data());
      if (up_rows) up.push_back(up_rows->row(tile.at(b) + p - f).data());
    }
    if (path) SplitKernel<Scalar>::split_position_path(kind, rows, up, act_rows.cols());
    else if (SplitKernel<Scalar>::split_position(cs.split, rows, bias_slot, act_rows.row(p).data(), I, act_rows.cols()))
      orphan = true;
  }
  return orphan;
}

/// Before the split: each sink's contributions past its own position leave the split
/// (softmax, argmax, proportional) or join the bias component's (path rule, which stays
/// exact so).
template <typename Scalar, typename Rows>
void handle_sinks(const ComponentState<Scalar>& cs, const MlpTile& tile, Rows& gate_rows, Rows* up_rows) {
  for (const Sink& sink : tile.sinks) {
    const Eigen::Index s = sink.component, from = tile.start[static_cast<std::size_t>(s)];
    if (cs.split.split != MlpSplit::Path) {
      exclude_sink(gate_rows.middleRows(tile.at(s), tile.length(s)), from, sink.position);
      continue;
    }
    // The bias starts at position 0, so its rows cover the sink's: align them.
    const Eigen::Index b = tile.bias_member;
    if (b < 0) throw std::logic_error("the path rule's sink handling needs a bias component");
    const Eigen::Index at_b = tile.at(b) + from - tile.start[static_cast<std::size_t>(b)];
    merge_sink_into_bias(gate_rows.middleRows(tile.at(s), tile.length(s)), gate_rows.middleRows(at_b, tile.length(s)),
                         from, sink.position);
    if (up_rows)
      merge_sink_into_bias(up_rows->middleRows(tile.at(s), tile.length(s)), up_rows->middleRows(at_b, tile.length(s)),
                           from, sink.position);
  }
}

/// The tile length every process of a sharded run uses (its split meets the others per
/// tile): the shortest any of them wants.
inline Eigen::Index agreed_tile(ShardGroup& shards, Eigen::Index positions) {
  double p = static_cast<double>(positions);
  shards.all_min(&p, 1);
  return static_cast<Eigen::Index>(p);
}

/// C += mlp(frozen norm of C) for every component, over the rows they can reach (the update
/// through the frozen post-norm, if the model has one).
template <typename Scalar>
void propagate_blocked(const Mlp<Scalar>& mlp, const Norm<Scalar>& norm, const typename Mlp<Scalar>::Forward& real,
                       const Vector<Scalar>& scale, ComponentState<Scalar>& cs, const FrozenNorm<Scalar>& post = {}) {
  const Matrix<Scalar>& act = real.act;
  using RowMap = Eigen::Map<RowMatrix<Scalar>>;
  const Eigen::Index M = cs.tensor.components(), N = cs.tensor.positions(), D = cs.tensor.width();
  const Eigen::Index I = mlp.neurons(), padded_i = SplitKernel<Scalar>::padded(I);
  const bool use_up = cs.split.needs_up() && mlp.gated();
  const Product<Scalar> product = products(cs);
  Eigen::Index live_components = 0;
  double live_rows = 0;
  for (Eigen::Index m = 0; m < M; ++m) {
    live_components += cs.first(m) < N ? 1 : 0;
    live_rows += static_cast<double>(N - std::min(N, cs.first(m)));
  }
  if (cs.engine.track_sum) {
    cs.workspace.sum.setZero(N, D);
    cs.workspace.sum_current = true;
  }
  if (live_components == 0 && !cs.shards) return;
  RowMatrix<Scalar> act_rows = RowMatrix<Scalar>::Zero(N, padded_i);  // one padded row per position
  act_rows.leftCols(I) = act;
  // Tiles of about tile_rows packed rows; the last tiles have the most live components: first.
  const Eigen::Index rows = tile_rows(cs.engine.work_rows, live_rows);
  Eigen::Index P = live_components ? std::min(N, std::max<Eigen::Index>(1, rows / live_components)) : N;
  if (cs.shards) P = agreed_tile(*cs.shards, P);
  const Eigen::Index tiles = (N + P - 1) / P;
  std::atomic<bool> orphan{false};
  const double work = live_rows * static_cast<double>(I) * ((use_up ? 6.0 : 4.0) * static_cast<double>(D) + 20.0);
  run_items(cs.workspace, tiles, work, [&](Eigen::Index item, std::size_t thread, int inner) {
    const Eigen::Index p0 = (tiles - 1 - item) * P;
    const MlpTile tile(cs, p0, std::min(N, p0 + P));
    const Eigen::Index R = tile.rows, bias_rows = tile.bias_member >= 0 ? tile.length(tile.bias_member) : 0;
    const Eigen::Index bias_begin = tile.bias_member >= 0 ? tile.at(tile.bias_member) : 0;
    Scalar* base = reserve(cs.workspace.scratch[thread], R * (D + (use_up ? 2 : 1) * padded_i));
    RowMap normed(base, R, D), gate_rows(base + R * D, R, padded_i);
    RowMap up_rows(use_up ? base + R * (D + padded_i) : nullptr, use_up ? R : 0, padded_i);
    using StridedMap = Eigen::Map<RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;
    StridedMap gate(gate_rows.data(), R, I, Eigen::OuterStride<>(padded_i));
    for (Eigen::Index b = 0; b < tile.count(); ++b)
      gather_normed(cs, tile.members[static_cast<std::size_t>(b)], tile.start[static_cast<std::size_t>(b)], tile.p1,
                    norm, scale, normed.middleRows(tile.at(b), tile.length(b)));
    mlp.gate_contributions(normed, gate, bias_begin, bias_rows, product);
    gate_rows.rightCols(padded_i - I).setZero();
    if (use_up) {
      mlp.up_contributions(normed, StridedMap(up_rows.data(), R, I, Eigen::OuterStride<>(padded_i)), bias_begin, bias_rows,
                           product);
      up_rows.rightCols(padded_i - I).setZero();
    }
    handle_sinks(cs, tile, gate_rows, use_up ? &up_rows : nullptr);
    if (cs.shards) split_tile_sharded(cs, mlp.kind(), tile, gate_rows, use_up ? &up_rows : nullptr, act_rows);
    else if (split_tile(cs, mlp.kind(), tile, gate_rows, use_up ? &up_rows : nullptr, act_rows, I, inner)) orphan = true;
    RowMap update(base, R, D);
    mlp.down(gate, update, bias_begin, bias_rows, product);
    // Tiles own disjoint positions, so their rows of the sum are disjoint too.
    RowMatrix<Scalar>* sum = cs.engine.track_sum ? &cs.workspace.sum : nullptr;
    for (Eigen::Index b = 0; b < tile.count(); ++b) {
      post.apply(update.middleRows(tile.at(b), tile.length(b)), tile.start[static_cast<std::size_t>(b)]);
      scatter_add(cs, tile.members[static_cast<std::size_t>(b)], tile.start[static_cast<std::size_t>(b)], tile.p1,
                  update.middleRows(tile.at(b), tile.length(b)), sum);
    }
  }, cs.shards != nullptr);
  if (orphan) throw std::logic_error("a neuron driven by no component needs a bias component");
}

}  // namespace detail
}  // namespace depass
