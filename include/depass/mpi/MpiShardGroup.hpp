#pragma once
// ShardGroup (Shards.hpp) over MPI: the processes of an MPI communicator share a run's
// components. Link depass::mpi (CMake, when MPI is found); docs/distributed.md says how
// to run on a cluster.
//
//   MPI_Init(&argc, &argv);
//   depass::MpiShardGroup group(MPI_COMM_WORLD);
//   depass::DecomposeOptions options;
//   options.shards = &group;
//   auto result = depass::Decomposer<double>(model).run(ids, init, options);  // every rank
//   if (group.rank() == 0) ... result.component_logits(...) ...

#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../Shards.hpp"

namespace depass {

class MpiShardGroup final : public ShardGroup {
 public:
  /// The communicator must outlive the group (MPI_COMM_WORLD does).
  explicit MpiShardGroup(MPI_Comm comm) : comm_(comm) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) throw std::invalid_argument("MpiShardGroup: MPI is not initialised (call MPI_Init first)");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm communicator() const { return comm_; }

  void all_sum(double* data, std::size_t n) override { reduce(data, n, MPI_DOUBLE, MPI_SUM); }
  void all_sum(float* data, std::size_t n) override { reduce(data, n, MPI_FLOAT, MPI_SUM); }
  void all_max(double* data, std::size_t n) override { reduce(data, n, MPI_DOUBLE, MPI_MAX); }
  void all_max(float* data, std::size_t n) override { reduce(data, n, MPI_FLOAT, MPI_MAX); }
  void all_min(double* data, std::size_t n) override { reduce(data, n, MPI_DOUBLE, MPI_MIN); }
  void all_min(float* data, std::size_t n) override { reduce(data, n, MPI_FLOAT, MPI_MIN); }
  std::vector<double> gather(const double* data, std::size_t n, bool every_rank = false) override {
    return gather_as(data, n, MPI_DOUBLE, every_rank);
  }
  std::vector<float> gather(const float* data, std::size_t n, bool every_rank = false) override {
    return gather_as(data, n, MPI_FLOAT, every_rank);
  }

 private:
  /// MPI counts are ints: longer buffers go in pieces (every rank cuts them alike).
  static constexpr std::size_t kPiece = std::size_t(1) << 30;

  static void check(int code, const char* what) {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    throw std::runtime_error(std::string(what) + " failed: " + std::string(text, static_cast<std::size_t>(length)));
  }

  template <typename T>
  void reduce(T* data, std::size_t n, MPI_Datatype type, MPI_Op op) {
    count(n * sizeof(T));
    for (std::size_t at = 0; at < n; at += kPiece)
      check(MPI_Allreduce(MPI_IN_PLACE, data + at, static_cast<int>(std::min(kPiece, n - at)), type, op, comm_),
            "MPI_Allreduce");
  }

  template <typename T>
  std::vector<T> gather_as(const T* data, std::size_t n, MPI_Datatype type, bool every_rank) {
    count(n * sizeof(T));
    const bool fits = n <= static_cast<std::size_t>(std::numeric_limits<int>::max());
    int mine = fits ? static_cast<int>(n) : -1;
    std::vector<int> counts(static_cast<std::size_t>(size_)), offsets(static_cast<std::size_t>(size_));
    // Every rank learns every count, so a result too long for MPI is refused on all of them
    // alike (a throw on rank 0 alone would leave the others waiting in MPI_Gatherv).
    check(MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_), "MPI_Allgather");
    long long total = 0;
    for (int r = 0; r < size_; ++r) {
      if (counts[static_cast<std::size_t>(r)] < 0) total = std::numeric_limits<long long>::max() / 2;
      offsets[static_cast<std::size_t>(r)] = static_cast<int>(std::min<long long>(total, std::numeric_limits<int>::max()));
      total += counts[static_cast<std::size_t>(r)];
    }
    if (total > std::numeric_limits<int>::max())
      throw std::length_error("MpiShardGroup::gather: the result exceeds MPI's int count of values; keep fewer positions");
    std::vector<T> all(rank_ == 0 || every_rank ? static_cast<std::size_t>(total) : 0);
    if (every_rank)
      check(MPI_Allgatherv(data, mine, type, all.data(), counts.data(), offsets.data(), type, comm_), "MPI_Allgatherv");
    else
      check(MPI_Gatherv(data, mine, type, all.data(), counts.data(), offsets.data(), type, 0, comm_), "MPI_Gatherv");
    return all;
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace depass
