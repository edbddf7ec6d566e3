#pragma once
// How the blocked engine shares work among threads. A block's propagation is cut into
// independent work items. With enough items, each OpenMP thread takes whole items (its own
// scratch, single-threaded GEMMs, no synchronisation inside an item); with few, the items
// run one after another and the GEMMs and inner loops are threaded instead; with little
// work in all, everything runs on one thread.

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "../ComponentState.hpp"
#include "../Threads.hpp"

namespace depass {
namespace detail {

/// Flops below which a loop runs on one thread. A second thread saves at most ~1 ms there,
/// while waking it and meeting it at the end costs tens of microseconds on an idle machine
/// and up to a scheduler time slice (milliseconds) on a busy one.
constexpr double kParallelWork = 3e7;

/// Threads for `work` flops of divisible work.
inline int threads_for(double work) { return work >= kParallelWork ? threads() : 1; }

/// An element of a transcendental element-wise pass (exp, tanh, erf and a few products)
/// takes about as long as this many flops of a GEMM; a pass of N x I elements is then
/// N I kElementWork flops of work for threads_for.
constexpr double kElementWork = 100;

/// body(begin, count) over columns [0, cols): one contiguous run per thread of
/// threads_for(work) (multiples of 16 columns), or body(0, cols) on this thread.
template <typename Body>
void for_column_runs(Eigen::Index cols, double work, const Body& body) {
  const int team = static_cast<int>(std::min<Eigen::Index>(threads_for(work), std::max<Eigen::Index>(1, cols / 16)));
  if (team <= 1) return body(Eigen::Index(0), cols);
  const Eigen::Index chunk = (cols + 16 * team - 1) / (16 * team) * 16;
  for_each_index(team, team, true, [&](Eigen::Index t) {
    const Eigen::Index begin = std::min(cols, t * chunk), end = std::min(cols, (t + 1) * chunk);
    if (begin < end) body(begin, end - begin);
  });
}

inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// A scratch buffer of at least `size` scalars (contents undefined).
template <typename Scalar>
Scalar* reserve(Vector<Scalar>& buffer, Eigen::Index size) {
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

/// Runs body(item, thread, inner) for items 0..count-1 (about `work` flops in all), which
/// the caller orders largest first: across threads (dynamic schedule) when there are at
/// least two items per thread, else in order with `inner` threads for the item's own loops.
/// `thread` indexes the per-thread scratch. Eigen runs a GEMM single-threaded inside a
/// parallel region and threaded outside one, so the items' products follow the same
/// choice. The first exception of any item is rethrown here. in_order: the items run one
/// after another whatever their number (a sharded run's items meet the other processes).
template <typename Scalar, typename Body>
void run_items(Workspace<Scalar>& workspace, Eigen::Index count, double work, const Body& body, bool in_order = false) {
  const int team = threads_for(work);
  const bool across = team > 1 && count >= 2 * team && !in_order;
  const int inner = across ? 1 : team;
  if (workspace.scratch.size() < static_cast<std::size_t>(team)) workspace.scratch.resize(static_cast<std::size_t>(team));
  const ThreadLimit limit(team);  // Eigen's products inside follow it
  for_each_index(count, team, across, [&](Eigen::Index item) {
    // Outside our own team the thread number may be a caller's: item scratch is slot 0.
    body(item, across ? static_cast<std::size_t>(thread_index()) : 0, inner);
  });
}

}  // namespace detail
}  // namespace depass
