#pragma once
// depass under mpirun (docs/distributed.md). Every rank runs the same command on the same
// inputs. A single run's DePass decompositions are sharded over the ranks (their MLP
// splits meet per layer) and every rank receives the result; a --batch run gives the
// ranks its lines in turn. Rank 0 alone writes: the other ranks' standard output and
// chatter go to /dev/null, their errors still reach the terminal. An error on any rank
// ends the whole job (MPI_Abort), since the others may be waiting for it in a reduction.

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <depass/Shards.hpp>
#ifdef DEPASS_CLI_MPI
#include <depass/mpi/MpiShardGroup.hpp>
#endif

namespace cli {

/// Ranks in the job according to the launcher's environment (Open MPI's mpirun, Hydra's
/// mpiexec); 1 when started without one.
inline int launched_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* value = std::getenv(name);
    if (value && std::atoi(value) > 1) return std::atoi(value);
  }
  return 1;
}

class MpiJob {
 public:
  static MpiJob& get() {
    static MpiJob job;
    return job;
  }

  /// MPI_Init when mpirun started more than one rank; the ranks other than 0 stop writing.
  void start(int& argc, char**& argv) {
    if (launched_ranks() == 1) return;
#ifdef DEPASS_CLI_MPI
    MPI_Init(&argc, &argv);
    started_ = true;
    group_ = std::make_unique<depass::MpiShardGroup>(MPI_COMM_WORLD);
    if (group_->rank() != 0) silence();
#else
    static_cast<void>(argc);
    static_cast<void>(argv);
    throw std::runtime_error("mpirun started " + std::to_string(launched_ranks()) +
                             " ranks, but this depass was built without MPI: install Open MPI (make deps) and "
                             "rebuild, or run depass without mpirun");
#endif
  }

  ~MpiJob() {
#ifdef DEPASS_CLI_MPI
    group_.reset();
    if (started_) MPI_Finalize();
#endif
  }

  int rank() const { return group_ ? group_->rank() : 0; }
  int ranks() const { return group_ ? group_->size() : 1; }
  /// This rank writes the output (rank 0, or the only one).
  bool writes() const { return rank() == 0; }
  /// The group a DePass run shards its components over; null on one rank, and while the
  /// ranks share out batch lines instead.
  depass::ShardGroup* shards() const { return group_ && !lines_shared_ ? group_.get() : nullptr; }
  void share_lines(bool on) { lines_shared_ = on; }

  /// Every rank's `text`, in rank order, on rank 0 (empty elsewhere).
  std::vector<std::string> gather(const std::string& text) {
    std::vector<std::string> all;
    if (!group_) return {text};
    // ShardGroup gathers numbers: the lengths as doubles, the bytes as floats (both exact).
    const double length = static_cast<double>(text.size());
    const std::vector<double> sizes = group_->gather(&length, 1);
    const std::vector<float> bytes(text.begin(), text.end());
    const std::vector<float> joined = group_->gather(bytes.data(), bytes.size());
    std::size_t at = 0;
    for (const double size : sizes) {
      std::string one;
      for (std::size_t i = 0; i < static_cast<std::size_t>(size); ++i) one += static_cast<char>(joined[at + i]);
      at += static_cast<std::size_t>(size);
      all.push_back(one);
    }
    return all;
  }

  /// An error message: on the terminal from every rank, naming the rank in a job of several.
  void report(const std::string& message) const {
    const std::string text = (group_ ? "(rank " + std::to_string(rank()) + " of " + std::to_string(ranks()) + ") " : "") +
                             message + "\n";
    const int fd = error_fd_ >= 0 ? error_fd_ : 2;
    ssize_t written = ::write(fd, text.data(), text.size());
    static_cast<void>(written);
  }

  /// Ends the program: in a job of several ranks, all of them (MPI_Abort), since the
  /// others may wait for this one forever.
  [[noreturn]] void end(int code) {
#ifdef DEPASS_CLI_MPI
    if (group_ && group_->size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    std::exit(code);
  }

 private:
  MpiJob() = default;

  /// Standard output and error to /dev/null, keeping the terminal's stderr for report().
  void silence() {
    std::fflush(stdout);
    std::fflush(stderr);
    error_fd_ = ::dup(2);
    const int null = ::open("/dev/null", O_WRONLY);
    if (null < 0) return;
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::close(null);
  }

#ifdef DEPASS_CLI_MPI
  std::unique_ptr<depass::MpiShardGroup> group_;
#else
  std::unique_ptr<depass::ShardGroup> group_;
#endif
  bool started_ = false;
  bool lines_shared_ = false;
  int error_fd_ = -1;
};

}  // namespace cli
