#pragma once
// Sharded runs (docs/distributed.md): several processes each hold a contiguous share of a
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

/// Contiguous shares of K members for P processes, balanced by live rows: member m is
/// live on N - first[m] positions (token m on N - m), and rank 0 also carries the bias
/// component (N rows) and always member 0. Returns P + 1 bounds: rank r holds members [bounds[r], bounds[r+1]).
inline std::vector<Eigen::Index> balanced_shards(const std::vector<Eigen::Index>& first, Eigen::Index N, int P) {
  if (P < 1) throw std::invalid_argument("balanced_shards: P = " + std::to_string(P) + " must be >= 1");
  const Eigen::Index K = static_cast<Eigen::Index>(first.size());
  auto live = [&](Eigen::Index m) { return static_cast<double>(N - std::min(N, first[static_cast<std::size_t>(m)])); };
  double total = static_cast<double>(N);  // the bias component, on rank 0
  for (Eigen::Index m = 0; m < K; ++m) total += live(m);
  std::vector<Eigen::Index> bounds(static_cast<std::size_t>(P) + 1, K);
  bounds[0] = 0;
  // Rank 0 holds member 0 whatever the balance: the attention sink, which the path rule
  // merges into the bias component, must sit with it.
  double done = static_cast<double>(N) + (K > 0 ? live(0) : 0.0);
  Eigen::Index m = K > 0 ? 1 : 0;
  for (int r = 1; r < P; ++r) {
    // Rank r - 1 takes members while its share stays nearer the target than without the next.
    const double target = total * r / P;
    while (m < K && done + live(m) / 2 <= target) done += live(m++);
    bounds[static_cast<std::size_t>(r)] = m;
  }
  return bounds;
}

}  // namespace depass
