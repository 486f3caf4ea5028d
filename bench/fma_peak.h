// The machine's measured FP32 FMA peak: independent chains of vector FMAs
// (fused multiply-adds), as wide as the CPU's vectors (AVX-512: 16 floats,
// AVX2 + FMA: 8), on every thread at once. The % of peak columns of
// bench/run_speed.py divide by it (issue 6 asks for a share of "the
// measured FMA peak").
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace bench {

namespace detail {

// `Chains` chains of FMAs on vectors V, more of them than FMA latency x FMAs
// a cycle (4 x 2) so the units never wait, and few enough to stay in
// registers (24 of 16 floats in AVX-512's 32, 12 of 8 in AVX2's 16). Each
// step keeps its chain bounded (x * 0.999999 + 1e-7); GCC contracts it
// into one FMA (-ffp-contract=fast, its default), in the ISA of the
// function it is inlined into.
template <class V, int Chains>
__attribute__((always_inline)) inline float fmaChains(int64_t iters) {
  constexpr int L = sizeof(V) / sizeof(float);
  V a, b, acc[Chains];
  for (int l = 0; l < L; ++l)
    a[l] = 0.999999f, b[l] = 1e-7f;
  for (int i = 0; i < Chains; ++i)
    for (int l = 0; l < L; ++l)
      acc[i][l] = float(i);
  for (int64_t n = 0; n < iters; ++n)
#pragma GCC unroll 24
    for (int i = 0; i < Chains; ++i)
      acc[i] = acc[i] * a + b;
  float t = 0;
  for (int i = 0; i < Chains; ++i)
    for (int l = 0; l < L; ++l)
      t += acc[i][l];
  return t;
}

typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));

__attribute__((target("avx512f"))) inline float fmaLoop512(int64_t iters) { return fmaChains<V16, 24>(iters); }
__attribute__((target("avx2,fma"))) inline float fmaLoop256(int64_t iters) { return fmaChains<V8, 12>(iters); }

} // namespace detail

struct FmaPeak {
  double gflops = 0;  // all threads together
  std::string isa;    // "avx512f", "avx2+fma", or "" (no vector FMA: no peak)
};

/// The best of `reps` runs of about `seconds` each, `threads` threads at once.
inline FmaPeak measureFmaPeak(int threads, int reps, double seconds) {
  FmaPeak p;
  float (*loop)(int64_t) = nullptr;
  double flopsPerIter = 0;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    loop = detail::fmaLoop512, flopsPerIter = 24 * 16 * 2, p.isa = "avx512f";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    loop = detail::fmaLoop256, flopsPerIter = 12 * 8 * 2, p.isa = "avx2+fma";
  } else {
    return p;
  }
  // Iterations for `seconds` at a guessed 4 GHz and 2 FMAs a cycle, then
  // scaled by a first timing.
  using clock = std::chrono::steady_clock;
  int64_t iters = 1 << 20;
  {
    auto t0 = clock::now();
    volatile float sink = loop(iters);
    (void)sink;
    double s = std::chrono::duration<double>(clock::now() - t0).count();
    iters = std::max<int64_t>(1 << 16, int64_t(double(iters) * seconds / std::max(s, 1e-6)));
  }
  for (int r = 0; r < reps; ++r) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<double> secs(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load())
          ;
        auto t0 = clock::now();
        volatile float sink = loop(iters);
        (void)sink;
        secs[t] = std::chrono::duration<double>(clock::now() - t0).count();
      });
    while (ready.load() < threads)
      ;
    go.store(true);
    for (std::thread &th : pool)
      th.join();
    double slowest = *std::max_element(secs.begin(), secs.end());
    p.gflops = std::max(p.gflops, double(threads) * double(iters) * flopsPerIter / slowest / 1e9);
  }
  return p;
}

} // namespace bench
