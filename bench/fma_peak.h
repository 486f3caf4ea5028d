// The machine's measured FP32 FMA peak: independent chains of vector FMAs
// (fused multiply-adds), as wide as the CPU's vectors (AVX-512: 16 floats,
// AVX2 + FMA: 8), on every thread at once. The % of peak columns of
// bench/run_speed.py divide by it (ISSUE 6: "the measured FMA peak").
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace bench {

namespace detail {

// 24 chains of 16 floats in 32 registers, 12 of 8 in 16: more chains than
// FMA latency x FMAs a cycle (4 x 2), so the units never wait. Each FMA
// keeps its chain's values bounded (x * 0.999999 + 1e-7).
__attribute__((target("avx512f"))) inline float fmaLoop512(int64_t iters) {
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  __m512 acc[24];
  for (int i = 0; i < 24; ++i)
    acc[i] = _mm512_set1_ps(float(i));
  for (int64_t n = 0; n < iters; ++n)
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i)
      acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < 24; ++i)
    s = _mm512_add_ps(s, acc[i]);
  // (Not _mm512_reduce_add_ps: GCC 12's header warns of an uninitialized
  // value in it.)
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  float t = 0;
  for (float x : lanes)
    t += x;
  return t;
}

__attribute__((target("avx2,fma"))) inline float fmaLoop256(int64_t iters) {
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  __m256 acc[12];
  for (int i = 0; i < 12; ++i)
    acc[i] = _mm256_set1_ps(float(i));
  for (int64_t n = 0; n < iters; ++n)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i)
      acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i)
    s = _mm256_add_ps(s, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float t = 0;
  for (float x : lanes)
    t += x;
  return t;
}

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
