#pragma once
// The MLP split of a sharded run (Shards.hpp, docs/distributed.md): this process holds
// some of the components live in a tile, the others hold the rest. Each rule of
// layers/NeuronSplit.hpp needs, per (position, neuron), only quantities that combine over
// processes by one element-wise max, min or sum: the largest eligible contribution (and,
// for argmax, the lowest component index that reaches it), the softmax's sum of weights,
// the proportional rule's signed and absolute sums, the path rule's G and U. So the
// shares are the ones one process holding every component computes, up to the order of
// the sums' additions.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "../ComponentState.hpp"
#include "../layers/NeuronSplit.hpp"
#include "Rows.hpp"

namespace depass {
namespace detail {

/// Calls visit(b, p, row) for every member b of the tile and every position p it is live
/// at, row being its packed row index there.
template <typename Tile, typename Visit>
void for_each_live_row(const Tile& tile, const Visit& visit) {
  for (Eigen::Index b = 0; b < tile.count(); ++b)
    for (Eigen::Index p = tile.start[static_cast<std::size_t>(b)]; p < tile.p1; ++p)
      visit(b, p, tile.at(b) + p - tile.start[static_cast<std::size_t>(b)]);
}

/// The path rule: G and U summed over every process, then each share cg g + cu u.
template <typename Scalar, typename Tile, typename Rows>
void sharded_path_split(const ComponentState<Scalar>& cs, MlpKind kind, const Tile& tile, Rows& gate_rows, Rows* up_rows) {
  const Eigen::Index n = tile.p1 - tile.p0, W = gate_rows.cols();
  RowMatrix<Scalar> sums = RowMatrix<Scalar>::Zero(n, 2 * W);  // [G | U] per position
  for_each_live_row(tile, [&](Eigen::Index, Eigen::Index p, Eigen::Index r) {
    sums.row(p - tile.p0).head(W) += gate_rows.row(r);
    if (up_rows) sums.row(p - tile.p0).tail(W) += up_rows->row(r);
  });
  cs.shards->all_sum(sums.data(), static_cast<std::size_t>(sums.size()));
  RowMatrix<Scalar> cg(n, W), cu(n, W);
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index k = 0; k < W; ++k) path_coefficients(kind, sums(i, k), sums(i, W + k), cg(i, k), cu(i, k));
  for_each_live_row(tile, [&](Eigen::Index, Eigen::Index p, Eigen::Index r) {
    Scalar* g = gate_rows.row(r).data();
    const Scalar* u = up_rows ? up_rows->row(r).data() : nullptr;
    for (Eigen::Index k = 0; k < W; ++k) g[k] = cg(p - tile.p0, k) * g[k] + (u ? cu(p - tile.p0, k) * u[k] : Scalar(0));
  });
}

/// Per (position, neuron) of the tile, the largest eligible (non-zero) contribution over
/// every process; -inf where none drives the neuron.
template <typename Scalar, typename Tile, typename Rows>
RowMatrix<Scalar> sharded_peak(const ComponentState<Scalar>& cs, const Tile& tile, const Rows& gate_rows) {
  const Eigen::Index W = gate_rows.cols();
  RowMatrix<Scalar> peak = RowMatrix<Scalar>::Constant(tile.p1 - tile.p0, W, -std::numeric_limits<Scalar>::infinity());
  for_each_live_row(tile, [&](Eigen::Index, Eigen::Index p, Eigen::Index r) {
    const Scalar* g = gate_rows.row(r).data();
    Scalar* top = peak.row(p - tile.p0).data();
    for (Eigen::Index k = 0; k < W; ++k)
      if (g[k] != Scalar(0) && g[k] > top[k]) top[k] = g[k];
  });
  cs.shards->all_max(peak.data(), static_cast<std::size_t>(peak.size()));
  return peak;
}

/// Argmax: the lowest component index (over every process) reaching the peak takes the
/// neuron, as split_neuron's strict comparison in member order does.
template <typename Scalar, typename Tile, typename Rows>
void sharded_argmax_split(const ComponentState<Scalar>& cs, const Tile& tile, Rows& gate_rows,
                          const RowMatrix<Scalar>& peak, const RowMatrix<Scalar>& act_rows) {
  const Eigen::Index W = peak.cols();
  RowMatrix<Scalar> best = RowMatrix<Scalar>::Constant(peak.rows(), W, std::numeric_limits<Scalar>::infinity());
  const auto index = [&](Eigen::Index b) { return static_cast<Scalar>(cs.global(tile.members[static_cast<std::size_t>(b)])); };
  for_each_live_row(tile, [&](Eigen::Index b, Eigen::Index p, Eigen::Index r) {
    const Scalar* g = gate_rows.row(r).data();
    const Scalar* top = peak.row(p - tile.p0).data();
    Scalar* owner = best.row(p - tile.p0).data();
    for (Eigen::Index k = 0; k < W; ++k)
      if (g[k] != Scalar(0) && g[k] == top[k]) owner[k] = std::min(owner[k], index(b));
  });
  cs.shards->all_min(best.data(), static_cast<std::size_t>(best.size()));
  for_each_live_row(tile, [&](Eigen::Index b, Eigen::Index p, Eigen::Index r) {
    Scalar* g = gate_rows.row(r).data();
    const Scalar* owner = best.row(p - tile.p0).data();
    const Scalar* a = act_rows.row(p).data();
    for (Eigen::Index k = 0; k < W; ++k) g[k] = owner[k] == index(b) ? a[k] : Scalar(0);
  });
}

/// Softmax and proportional: the sums of weights (and, proportional, of contributions and
/// magnitudes) over every process, then each share as split_neuron gives it. The weights'
/// exps are Eigen's vectorised ones (one per live row and neuron: the split's main cost);
/// the softmax keeps them in the gate rows between the passes.
template <typename Scalar, typename Tile, typename Rows>
void sharded_exp_split(const ComponentState<Scalar>& cs, const Tile& tile, Rows& gate_rows, const RowMatrix<Scalar>& peak,
                       const RowMatrix<Scalar>& act_rows) {
  using RowArray = Eigen::Array<Scalar, 1, Eigen::Dynamic>;
  using ConstRowMap = Eigen::Map<const RowArray>;
  const Eigen::Index n = peak.rows(), W = peak.cols();
  const Scalar inv_t = Scalar(1) / static_cast<Scalar>(cs.split.temperature);
  const bool proportional = cs.split.split == MlpSplit::Proportional;
  RowArray e(W);  // exp((g - peak) / T) of one row; meaningless where g = 0 (masked below)
  const auto weigh = [&](const Scalar* g, const Scalar* top) {
    e = ((ConstRowMap(g, W) - ConstRowMap(top, W)) * inv_t).exp();
  };
  // Per position [sum of weights | total | magnitude]; softmax reads only the first.
  RowMatrix<Scalar> sums = RowMatrix<Scalar>::Zero(n, (proportional ? 3 : 1) * W);
  for_each_live_row(tile, [&](Eigen::Index, Eigen::Index p, Eigen::Index r) {
    Scalar* g = gate_rows.row(r).data();
    Scalar* sum = sums.row(p - tile.p0).data();
    weigh(g, peak.row(p - tile.p0).data());
    for (Eigen::Index k = 0; k < W; ++k) {
      const Scalar w = g[k] != Scalar(0) ? e[k] : Scalar(0);
      sum[k] += w;
      if (proportional) {
        sum[W + k] += g[k];
        sum[2 * W + k] += std::abs(g[k]);
      } else {
        g[k] = w;  // the softmax's weight, its share once divided by the sum
      }
    }
  });
  cs.shards->all_sum(sums.data(), static_cast<std::size_t>(sums.size()));
  RowMatrix<Scalar> coef(n, W);  // a / sum of weights; 0 where nothing drives the neuron
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index k = 0; k < W; ++k) coef(i, k) = sums(i, k) > Scalar(0) ? act_rows(tile.p0 + i, k) / sums(i, k) : Scalar(0);
  const Scalar ratio = static_cast<Scalar>(kProportionalCancelRatio);
  for_each_live_row(tile, [&](Eigen::Index, Eigen::Index p, Eigen::Index r) {
    const Eigen::Index i = p - tile.p0;
    if (!proportional) {
      gate_rows.row(r).array() *= coef.row(i).array();
      return;
    }
    Scalar* g = gate_rows.row(r).data();
    const Scalar* sum = sums.row(i).data();
    const Scalar* a = act_rows.row(p).data();
    weigh(g, peak.row(i).data());
    for (Eigen::Index k = 0; k < W; ++k) {
      if (g[k] == Scalar(0)) continue;  // absent here: no share
      if (std::abs(sum[W + k]) > ratio * sum[2 * W + k]) g[k] = g[k] / sum[W + k] * a[k];
      else g[k] = e[k] * coef(i, k);
    }
  });
}

/// The split of one tile in a sharded run (gate rows in, shares out). Neurons no process's
/// component drives go to the bias component (rank 0's).
template <typename Scalar, typename Tile, typename Rows>
void split_tile_sharded(const ComponentState<Scalar>& cs, MlpKind kind, const Tile& tile, Rows& gate_rows, Rows* up_rows,
                        const RowMatrix<Scalar>& act_rows) {
  if (cs.split.split == MlpSplit::Path) {
    sharded_path_split(cs, kind, tile, gate_rows, up_rows);
    return;
  }
  const RowMatrix<Scalar> peak = sharded_peak(cs, tile, gate_rows);
  if (cs.split.split == MlpSplit::Argmax) sharded_argmax_split(cs, tile, gate_rows, peak, act_rows);
  else sharded_exp_split(cs, tile, gate_rows, peak, act_rows);
  if (tile.bias_member < 0) return;
  const Eigen::Index b = tile.bias_member, from = tile.start[static_cast<std::size_t>(b)];
  for (Eigen::Index p = from; p < tile.p1; ++p) {
    Scalar* g = gate_rows.row(tile.at(b) + p - from).data();
    const Scalar* top = peak.row(p - tile.p0).data();
    const Scalar* a = act_rows.row(p).data();
    for (Eigen::Index k = 0; k < peak.cols(); ++k)
      if (top[k] == -std::numeric_limits<Scalar>::infinity()) g[k] += a[k];
  }
}

}  // namespace detail
}  // namespace depass
