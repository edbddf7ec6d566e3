#pragma once
// Sharded runs (docs/distributed.md): several processes each hold a share of a
// decomposition's components. Components move through attention and the norms on their
// own; only the MLP split compares them (per position and neuron: the largest
// contribution, the softmax's sum, the proportional and path rules' sums) and the
// completeness check sums them. So a shard needs the others only there, and ShardGroup is
// exactly that need: element-wise reductions over the processes, and a gather for the
// result. The core library knows no MPI; mpi/MpiShardGroup.hpp implements ShardGroup on it.

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace depass {

/// The processes sharing a run. Every process calls the reductions in the same order with
/// the same lengths (the engine does: all of them walk the same layers and tiles).
class ShardGroup {
 public:
  virtual ~ShardGroup() = default;
  virtual int rank() const = 0;  ///< this process, in [0, size())
  virtual int size() const = 0;  ///< processes sharing the run

  /// In place, element-wise over every process.
  virtual void all_sum(double* data, std::size_t n) = 0;
  virtual void all_sum(float* data, std::size_t n) = 0;
  virtual void all_max(double* data, std::size_t n) = 0;
  virtual void all_max(float* data, std::size_t n) = 0;
  virtual void all_min(double* data, std::size_t n) = 0;
  virtual void all_min(float* data, std::size_t n) = 0;
  /// Every process's `data` (any length each) concatenated in rank order, received by
  /// rank 0 (the other ranks receive nothing) or, with every_rank, by every process.
  virtual std::vector<double> gather(const double* data, std::size_t n, bool every_rank = false) = 0;
  virtual std::vector<float> gather(const float* data, std::size_t n, bool every_rank = false) = 0;

  /// Bytes this process contributed to reductions and gathers so far.
  std::size_t bytes_sent() const { return bytes_sent_; }

 protected:
  void count(std::size_t bytes) { bytes_sent_ += bytes; }

 private:
  std::size_t bytes_sent_ = 0;
};

/// The members each of P processes holds, ascending: the K members cut into 2P runs of
/// about equal length, rank r taking runs r and 2P - 1 - r. Every component stores all N
/// positions, so equal counts balance the memory; and token m is live (has work) on only
/// N - m positions, so pairing an early run with a late one balances the work too. Rank 0
/// always holds member 0 (the attention sink, which the path rule merges into the bias
/// component; rank 0 holds that as well).
inline std::vector<std::vector<Eigen::Index>> shard_members(Eigen::Index K, int P) {
  if (P < 1) throw std::invalid_argument("shard_members: P = " + std::to_string(P) + " must be >= 1");
  if (K < 0) throw std::invalid_argument("shard_members: K = " + std::to_string(K) + " must be >= 0");
  const Eigen::Index runs = 2 * static_cast<Eigen::Index>(P);
  std::vector<std::vector<Eigen::Index>> members(static_cast<std::size_t>(P));
  for (Eigen::Index run = 0; run < runs; ++run) {
    const Eigen::Index rank = run < P ? run : runs - 1 - run;
    for (Eigen::Index m = K * run / runs; m < K * (run + 1) / runs; ++m) members[static_cast<std::size_t>(rank)].push_back(m);
  }
  for (std::vector<Eigen::Index>& mine : members) std::sort(mine.begin(), mine.end());
  if (K > 0 && (members[0].empty() || members[0].front() != 0)) {
    for (std::vector<Eigen::Index>& mine : members)
      if (!mine.empty() && mine.front() == 0) mine.erase(mine.begin());
    members[0].insert(members[0].begin(), 0);
  }
  return members;
}

}  // namespace depass
