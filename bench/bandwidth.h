// bandwidth.h - the memory-bandwidth bound of the ops benchmark: the time
// of a streaming copy (memcpy) that moves a given number of bytes (half
// read, half written) on the same number of threads, each copying its
// share of the buffers, the same slices at every call.
//
// The threads are plain std::threads (soma's code uses libomp, and one
// OpenMP runtime per process is the rule here), alive only while the copy
// is measured: they spin between calls and would otherwise take cores from
// the kernels measured next. Thread t runs on CPU t (modulo the CPUs), as
// OMP_PROC_BIND=close places OpenMP's threads: a new thread inherits the
// affinity of the one that creates it, which libomp may have bound to one
// CPU, and two copies on one CPU took 8 ms instead of 0.3.
#pragma once

#include "speed_common.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

namespace bench {

class CopyPool {
public:
  /// Copies `bytes` / 2 bytes from one buffer to another per call.
  CopyPool(int threads, int64_t bytes)
      : n_(std::max(threads, 1)), half_(std::max<int64_t>(bytes / 2 / 64 * 64, 64)), src_(half_, 1), dst_(half_) {
    // (Both buffers are written here: no page faults while timed.)
    for (int t = 1; t < n_; ++t)
      workers_.emplace_back([this, t] {
        uint64_t seen = 0;
        for (;;) {
          uint64_t g;
          while ((g = generation_.load(std::memory_order_acquire)) == seen)
            ;
          if (stop_.load(std::memory_order_acquire))
            return;
          seen = g;
          copySlice(t);
          done_.fetch_add(1, std::memory_order_acq_rel);
        }
      });
    const int cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    for (int t = 1; t < n_; ++t) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(t % cpus, &set);
      pthread_setaffinity_np(workers_[t - 1].native_handle(), sizeof set, &set);
    }
  }
  CopyPool(const CopyPool &) = delete;
  CopyPool &operator=(const CopyPool &) = delete;
  ~CopyPool() {
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    for (std::thread &w : workers_)
      w.join();
  }
  /// One copy of every slice (the calling thread copies slice 0).
  void operator()() {
    done_.store(0, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    copySlice(0);
    while (done_.load(std::memory_order_acquire) != n_ - 1)
      ;
  }

private:
  void copySlice(int t) {
    const int64_t per = (half_ / n_ + 63) / 64 * 64, lo = std::min(half_, per * t), hi = std::min(half_, lo + per);
    if (hi > lo)
      std::memcpy(dst_.data() + lo, src_.data() + lo, static_cast<size_t>(hi - lo));
  }
  const int n_;
  const int64_t half_;
  std::vector<char> src_, dst_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> done_{0};
  std::atomic<bool> stop_{false};
};

/// Milliseconds per copy of `bytes` moved (see CopyPool), as measure() gives.
inline std::vector<double> measureCopy(int64_t bytes, const Args &a) {
  CopyPool copy(a.threads, bytes);
  return measure([&] { copy(); }, a);
}

} // namespace bench
