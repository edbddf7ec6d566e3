#pragma once
// The library's thread setting. Every parallel loop of the engine and Eigen's threaded
// products use this many threads, except work too small to gain from more than one
// (Model::kParallelWork), which runs on one: waking a second thread and meeting it at the
// end of each loop costs more than it saves there, and on a busy machine far more.
//
// Waiting threads: GCC's OpenMP runtime lets idle threads spin for a while before they
// sleep. On a machine shared with other work that spinning competes for the cores, so
// run with OMP_WAIT_POLICY=passive (the depass CLI does this by itself; docs/performance.md
// has the measurements). The policy is read when the program starts, not settable here.

#include <Eigen/Core>
#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace depass {

/// Threads the library uses: Eigen::nbThreads(), which is OpenMP's setting of the calling
/// thread (by default all cores) unless Eigen::setNbThreads fixed a count.
inline int threads() { return std::max(1, Eigen::nbThreads()); }

/// Sets the threads for every later run started from this thread: OpenMP's setting, which
/// Eigen follows (an explicit Eigen::setNbThreads count is cleared, since it would stop the
/// engine from running small products on one thread).
inline void set_threads(int count) {
  if (count < 1 || count > 1024)
    throw std::invalid_argument("threads = " + std::to_string(count) + " is out of range [1, 1024]");
#ifdef _OPENMP
  Eigen::setNbThreads(0);
  omp_set_num_threads(count);
#endif
}

namespace detail {

/// Runs the enclosed code on at most `limit` threads (OpenMP's setting of this thread,
/// restored on exit). Eigen's products follow it unless Eigen::setNbThreads fixed a count.
class ThreadLimit {
 public:
  explicit ThreadLimit(int limit) {
#ifdef _OPENMP
    const int current = omp_get_max_threads();
    if (limit < current) {
      saved_ = current;
      omp_set_num_threads(std::max(1, limit));
    }
#else
    static_cast<void>(limit);
#endif
  }
  ~ThreadLimit() { release(); }
  /// Restores the setting early.
  void release() {
#ifdef _OPENMP
    if (saved_ > 0) omp_set_num_threads(saved_);
    saved_ = 0;
#endif
  }
  ThreadLimit(const ThreadLimit&) = delete;
  ThreadLimit& operator=(const ThreadLimit&) = delete;

 private:
  int saved_ = 0;
};

/// Runs body(i) for i in [0, count): across `team` threads, one index at a time (dynamic
/// schedule), when `across`, else in order on the calling thread. Every index runs; the
/// first exception of any is rethrown here.
template <typename Body>
void for_each_index(Eigen::Index count, int team, bool across, const Body& body) {
  std::exception_ptr error;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(team) if (across)
#endif
  for (Eigen::Index i = 0; i < count; ++i) {
    try {
      body(i);
    } catch (...) {
#ifdef _OPENMP
#pragma omp critical(depass_for_each_index_error)
#endif
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace detail
}  // namespace depass
