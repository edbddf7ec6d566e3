#pragma once
// How the batched methods (IG path points, occluded copies, ablated units, masked runs) put
// their sequences through the model: how many per record, and how many records at once.

#include <Eigen/Core>
#include <algorithm>
#include <stdexcept>
#include <string>

#include "../Threads.hpp"

namespace depass {
namespace detail {

/// A batch option (sequences per record): >= 1, or 0 for the automatic choice.
inline void check_batch(Eigen::Index batch) {
  if (batch < 0)
    throw std::invalid_argument("batch = " + std::to_string(batch) + " is out of range [0, inf) (0: automatic)");
}

/// Rows the automatic choice keeps in flight. Larger records stop paying once the tape
/// outgrows the caches: IG on the Llama-shaped model at n = 256 runs 15% faster with 4 path
/// points per record than with 16, in a third of the memory (docs/methods.md, "Batch size").
constexpr Eigen::Index kRowsInFlight = 1024;

/// Sequences per record, and records run at once, each whole on one thread with
/// single-threaded products: independent records need no meeting of threads inside a GEMM,
/// which on two cores costs IG about a quarter of its time (docs/performance.md).
struct RecordPlan {
  Eigen::Index per_record = 1;
  int concurrent = 1;
  /// Sequences in flight at once: what a one-record-at-a-time implementation (PyTorch)
  /// would batch to hold the same rows.
  Eigen::Index in_flight() const { return per_record * concurrent; }
};

/// The plan for sequences of n positions on `team` threads: `requested` per record, or if 0
/// about kRowsInFlight / team rows (1 to 16 sequences); as many concurrent records (up to
/// `team`) as keep about kRowsInFlight rows in flight, and at least one.
inline RecordPlan plan_records(Eigen::Index requested, Eigen::Index n, int team = threads()) {
  check_batch(requested);
  n = std::max<Eigen::Index>(n, 1);
  team = std::max(team, 1);
  RecordPlan plan;
  plan.per_record = requested > 0 ? requested
                                  : std::max<Eigen::Index>(1, std::min<Eigen::Index>(16, kRowsInFlight / (n * team)));
  const Eigen::Index fits = kRowsInFlight / (plan.per_record * n);
  plan.concurrent = static_cast<int>(std::max<Eigen::Index>(1, std::min<Eigen::Index>(team, fits)));
  return plan;
}

/// Runs body(record, first, count) for the records of `sequences` sequences cut as `plan`
/// says (record r holds sequences [first, first + count)). Concurrent records run on their
/// own threads, each limited to one thread inside, so `body` must only write what belongs
/// to its record. The first exception of any record is rethrown here.
template <typename Body>
void for_each_record(Eigen::Index sequences, const RecordPlan& plan, const Body& body) {
  const Eigen::Index per = plan.per_record, records = (sequences + per - 1) / per;
  if (records <= 0) return;
  const int team = static_cast<int>(std::min<Eigen::Index>(plan.concurrent, records));
  for_each_index(records, team, team > 1, [&](Eigen::Index r) {
    const ThreadLimit one(team > 1 ? 1 : threads());
    body(r, r * per, std::min(per, sequences - r * per));
  });
}

}  // namespace detail
}  // namespace depass
