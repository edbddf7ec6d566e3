#pragma once
// The blocked engine's attention propagation: the rule of layers/Attention.hpp (frozen
// norm, values, mixing, output projection, biases to the bias component) over the rows the
// components can reach. Attention couples positions, not components: a work item is a group
// of consecutive components over the positions from the group's first live one, packed so
// that each head's mixing is one triangular product for the whole group.

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "../ComponentState.hpp"
#include "../layers/Attention.hpp"
#include "../layers/Norm.hpp"
#include "Rows.hpp"
#include "WorkItems.hpp"

namespace depass {
namespace detail {

struct AttentionGroup {
  std::vector<Eigen::Index> members;  // consecutive live components
  Eigen::Index start = 0;             // first position any of them can be non-zero at
};

/// Groups of about tile_rows packed rows, closed early when the zero rows padded in
/// (members that start later than the group) would exceed 3% of the group's rows; largest
/// first, for the dynamic schedule (mixing costs ~ B n^2, the GEMMs ~ B n D).
template <typename Scalar>
std::vector<AttentionGroup> plan_attention(const ComponentState<Scalar>& cs) {
  const Eigen::Index M = cs.tensor.components(), N = cs.tensor.positions(), D = cs.tensor.width();
  std::vector<AttentionGroup> groups;
  double all_live_rows = 0;
  for (Eigen::Index m = 0; m < M; ++m) all_live_rows += static_cast<double>(N - std::min(N, cs.first(m)));
  const Eigen::Index group_rows = tile_rows(cs.engine.work_rows, all_live_rows);
  Eigen::Index live_rows = 0;
  for (Eigen::Index m = 0; m < M; ++m) {
    const Eigen::Index first = cs.first(m);
    if (first >= N) continue;
    if (!groups.empty()) {
      AttentionGroup& g = groups.back();
      const Eigen::Index start = std::min(g.start, first);
      const Eigen::Index rows = static_cast<Eigen::Index>(g.members.size() + 1) * (N - start);
      const Eigen::Index live = live_rows + (N - first);
      if (rows <= std::max(group_rows, N - start) && 100 * (rows - live) <= 3 * rows) {
        g.members.push_back(m);
        g.start = start;
        live_rows = live;
        continue;
      }
    }
    groups.push_back(AttentionGroup{{m}, first});
    live_rows = N - first;
  }
  auto cost = [&](const AttentionGroup& g) {
    const double n = static_cast<double>(N - g.start);
    return static_cast<double>(g.members.size()) * n * (n + static_cast<double>(D));
  };
  std::stable_sort(groups.begin(), groups.end(),
                   [&](const AttentionGroup& a, const AttentionGroup& b) { return cost(a) > cost(b); });
  return groups;
}

/// Flops of the propagation of these groups (for the thread decision).
template <typename Scalar>
double attention_work(const std::vector<AttentionGroup>& groups, const Attention<Scalar>& attention, Eigen::Index N,
                      Eigen::Index D) {
  double work = 0;
  for (const AttentionGroup& g : groups) {
    const double n = static_cast<double>(N - g.start), rows = static_cast<double>(g.members.size()) * n;
    work += rows * (2.0 * static_cast<double>(D) * static_cast<double>(attention.kv_width() + attention.q_width()) +
                    n * static_cast<double>(attention.q_width()));
  }
  return work;
}

/// C += attention(frozen norm of C) for every component, over the rows they can reach (the
/// update through the frozen post-norm, if the model has one).
template <typename Scalar>
void propagate_blocked(const Attention<Scalar>& attention, const Norm<Scalar>& norm,
                       const typename Attention<Scalar>::Forward& real, const Vector<Scalar>& scale,
                       ComponentState<Scalar>& cs, const FrozenNorm<Scalar>& post = {}) {
  const Matrix<Scalar>& probs = real.probs;
  using RowMap = Eigen::Map<RowMatrix<Scalar>>;
  using ColMap = Eigen::Map<Matrix<Scalar>>;
  const Eigen::Index N = cs.tensor.positions(), D = cs.tensor.width();
  const Eigen::Index Q = attention.q_width(), K = attention.kv_width();
  const std::vector<AttentionGroup> groups = plan_attention(cs);
  const Product<Scalar> product = products(cs);
  if (cs.engine.track_sum) start_sums(cs, threads());
  run_items(cs.workspace, static_cast<Eigen::Index>(groups.size()), attention_work(groups, attention, N, D),
            [&](Eigen::Index item, std::size_t thread, int inner) {
    const AttentionGroup& g = groups[static_cast<std::size_t>(item)];
    const Eigen::Index B = static_cast<Eigen::Index>(g.members.size()), s = g.start, n = N - s, R = B * n;
    Eigen::Index bias_member = -1;
    for (Eigen::Index b = 0; b < B; ++b)
      if (cs.is_bias(g.members[static_cast<std::size_t>(b)])) bias_member = b;
    const Eigen::Index bias_begin = std::max<Eigen::Index>(0, bias_member) * n, bias_rows = bias_member >= 0 ? n : 0;
    // Two regions: normed rows, then the mixed heads; values, then the update.
    const Eigen::Index first_width = std::max(D, Q), second_width = std::max(K, D);
    Scalar* base = reserve(cs.workspace.scratch[thread], R * (first_width + second_width));
    RowMap normed(base, R, D);
    ColMap values(base + R * first_width, R, K);
    for (Eigen::Index b = 0; b < B; ++b)
      gather_normed(cs, g.members[static_cast<std::size_t>(b)], s, N, norm, scale, normed.middleRows(b * n, n));
    attention.values(normed, values, bias_begin, bias_rows, product);
    ColMap mixed(base, R, Q);
    attention.mix(probs, s, B, values.data(), mixed.data(), inner);
    RowMap update(base + R * first_width, R, D);
    attention.project(mixed, update, bias_begin, bias_rows, product);
    RowMatrix<Scalar>* sum = cs.engine.track_sum ? &cs.workspace.partial_sums[thread] : nullptr;
    for (Eigen::Index b = 0; b < B; ++b) {
      post.apply(update.middleRows(b * n, n), s);
      scatter_add(cs, g.members[static_cast<std::size_t>(b)], s, N, update.middleRows(b * n, n), sum);
    }
  });
  if (cs.engine.track_sum) finish_sums(cs);
}

}  // namespace detail
}  // namespace depass
