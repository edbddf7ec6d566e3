#pragma once
// ShardGroup over threads of one process: each thread plays a rank, so the sharded engine
// runs with several shards (and under the sanitizers) without MPI. Reductions combine the
// ranks' buffers in rank order, so every rank gets the same bits, as MPI_Allreduce gives.

#include <depass/Shards.hpp>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace depass {
namespace test {

/// What the threads of one run share.
class ThreadShardHub {
 public:
  explicit ThreadShardHub(int size) : size_(size), slots_(static_cast<std::size_t>(size)) {}
  int size() const { return size_; }

  /// Publishes this rank's buffer, waits for every rank's, runs read(slots), waits again
  /// (so no buffer changes while another rank reads it).
  template <typename Read>
  void exchange(int rank, const void* data, std::size_t n, const Read& read) {
    slots_[static_cast<std::size_t>(rank)] = {data, n};
    barrier();
    read(slots_);
    barrier();
  }

  struct Slot {
    const void* data = nullptr;
    std::size_t n = 0;
  };

 private:
  void barrier() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      wake_.notify_all();
    } else {
      wake_.wait(lock, [&] { return generation != generation_; });
    }
  }

  int size_;
  std::vector<Slot> slots_;
  std::mutex mutex_;
  std::condition_variable wake_;
  int arrived_ = 0;
  long generation_ = 0;
};

class ThreadShardGroup final : public ShardGroup {
 public:
  ThreadShardGroup(ThreadShardHub& hub, int rank) : hub_(hub), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return hub_.size(); }
  void all_sum(double* d, std::size_t n) override { reduce(d, n, [](double a, double b) { return a + b; }); }
  void all_sum(float* d, std::size_t n) override { reduce(d, n, [](float a, float b) { return a + b; }); }
  void all_max(double* d, std::size_t n) override { reduce(d, n, [](double a, double b) { return a < b ? b : a; }); }
  void all_max(float* d, std::size_t n) override { reduce(d, n, [](float a, float b) { return a < b ? b : a; }); }
  void all_min(double* d, std::size_t n) override { reduce(d, n, [](double a, double b) { return b < a ? b : a; }); }
  void all_min(float* d, std::size_t n) override { reduce(d, n, [](float a, float b) { return b < a ? b : a; }); }
  std::vector<double> gather(const double* d, std::size_t n, bool every) override { return gather_as(d, n, every); }
  std::vector<float> gather(const float* d, std::size_t n, bool every) override { return gather_as(d, n, every); }

 private:
  template <typename T, typename Op>
  void reduce(T* data, std::size_t n, const Op& op) {
    count(n * sizeof(T));
    std::vector<T> out(n);
    hub_.exchange(rank_, data, n, [&](const std::vector<ThreadShardHub::Slot>& slots) {
      for (std::size_t i = 0; i < n; ++i) {
        T value = static_cast<const T*>(slots[0].data)[i];
        for (std::size_t r = 1; r < slots.size(); ++r) value = op(value, static_cast<const T*>(slots[r].data)[i]);
        out[i] = value;
      }
    });
    std::copy(out.begin(), out.end(), data);
  }

  template <typename T>
  std::vector<T> gather_as(const T* data, std::size_t n, bool every_rank) {
    count(n * sizeof(T));
    std::vector<T> all;
    hub_.exchange(rank_, data, n, [&](const std::vector<ThreadShardHub::Slot>& slots) {
      if (rank_ != 0 && !every_rank) return;
      for (const ThreadShardHub::Slot& s : slots)
        all.insert(all.end(), static_cast<const T*>(s.data), static_cast<const T*>(s.data) + s.n);
    });
    return all;
  }

  ThreadShardHub& hub_;
  int rank_;
};

/// Runs body(group) on `ranks` threads, one rank each; returns their results in rank order.
/// An exception on any rank is rethrown (the test's ranks never fail one-sidedly).
template <typename Result>
std::vector<Result> run_thread_shards(int ranks, const std::function<Result(ShardGroup&)>& body) {
  ThreadShardHub hub(ranks);
  std::vector<Result> results(static_cast<std::size_t>(ranks));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      ThreadShardGroup group(hub, r);
      try {
        results[static_cast<std::size_t>(r)] = body(group);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  return results;
}

}  // namespace test
}  // namespace depass
