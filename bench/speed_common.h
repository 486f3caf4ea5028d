// speed_common.h - what the speed benchmark's workers share: the shapes,
// the deterministic data, the timing loop, sampled double-precision
// references and the line protocol read by bench/run_speed.py.
//
// A worker is started as   WORKER SECTION THREADS REPS BUDGET_S [ARGS...]
// and prints lines of the form
//   time SECTION ITEM CONTENDER THREADS FLOPS ms,ms,...   (one per sample)
//   err  SECTION ITEM CONTENDER THREADS MAX_REL_ERROR
//   value SECTION ITEM CONTENDER THREADS V1,V2,...        (compared by the driver)
// ITEM never contains spaces.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace bench {

inline double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The command line every worker takes.
struct Args {
  std::string section;
  int threads = 1;
  int reps = 20;         // timed samples per item (at most)
  double budget = 2.0;   // seconds of timed samples per item (at least 3 samples)
  std::vector<std::string> rest;
};

inline Args parseArgs(int argc, char **argv, const char *usage) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s SECTION THREADS REPS BUDGET_S %s\n", argv[0], usage);
    std::exit(2);
  }
  Args a;
  a.section = argv[1];
  a.threads = std::atoi(argv[2]);
  a.reps = std::max(1, std::atoi(argv[3]));
  a.budget = std::atof(argv[4]);
  for (int i = 5; i < argc; ++i)
    a.rest.emplace_back(argv[i]);
  return a;
}

/// Deterministic values in [-1, 1): the same in every worker.
inline void fill(float *p, int64_t n, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = static_cast<float>(static_cast<int64_t>(s >> 40) - (1ll << 23)) / static_cast<float>(1ll << 23);
  }
}

/// Times `fn`: warm-up, then samples of `inner` calls each (inner chosen so
/// that a sample lasts >= 1 ms), until `reps` samples or `budget` seconds
/// (but at least 3 samples). Returns milliseconds per call, one per sample.
inline std::vector<double> measure(const std::function<void()> &fn, const Args &a) {
  double t0 = seconds();
  fn();
  double first = seconds() - t0;
  int warm = first > 0.2 ? 1 : first > 0.02 ? 2 : 5;
  t0 = seconds();
  for (int i = 0; i < warm; ++i)
    fn();
  double one = std::max((seconds() - t0) / warm, 1e-8);
  int inner = std::max(1, static_cast<int>(1e-3 / one));
  std::vector<double> ms;
  double start = seconds();
  while (static_cast<int>(ms.size()) < a.reps && (ms.size() < 3 || seconds() - start < a.budget)) {
    double s = seconds();
    for (int i = 0; i < inner; ++i)
      fn();
    ms.push_back((seconds() - s) * 1e3 / inner);
  }
  return ms;
}

/// Runs a worker's body; an exception becomes "WORKER: message" and exit 1.
inline int guarded(const char *worker, const std::function<int()> &body) {
  try {
    return body();
  } catch (const std::exception &e) {
    std::fprintf(stderr, "%s: %s\n", worker, e.what());
    return 1;
  }
}

inline void emitTime(const Args &a, const std::string &item, const char *who, double flops,
                     const std::vector<double> &ms) {
  std::printf("time %s %s %s %d %.6g ", a.section.c_str(), item.c_str(), who, a.threads, flops);
  for (size_t i = 0; i < ms.size(); ++i)
    std::printf("%s%.6g", i ? "," : "", ms[i]);
  std::printf("\n");
  std::fflush(stdout);
}

inline void emitErr(const Args &a, const std::string &item, const char *who, double err) {
  std::printf("err %s %s %s %d %.3g\n", a.section.c_str(), item.c_str(), who, a.threads, err);
  std::fflush(stdout);
}

inline void emitValues(const Args &a, const std::string &item, const char *who,
                       const std::vector<double> &v) {
  std::printf("value %s %s %s %d ", a.section.c_str(), item.c_str(), who, a.threads);
  for (size_t i = 0; i < v.size(); ++i)
    std::printf("%s%.9g", i ? "," : "", v[i]);
  std::printf("\n");
  std::fflush(stdout);
}

//===----------------------------------------------------------------------===//
// SGEMM: C[M,N] = op(A) op(B), row-major; A is [K,M] when ta, B is [N,K] when tb.
//===----------------------------------------------------------------------===//

struct Gemm {
  int64_t m, n, k;
  bool ta, tb;
  std::string name() const {
    return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + (ta ? "_At" : "") +
           (tb ? "_Bt" : "");
  }
  double flops() const { return 2.0 * m * n * k; }
};

/// Keeps the items whose name is in SOMA_BENCH_<what> (comma-separated),
/// all of them when it is unset or empty (for profiling one item).
inline bool kept(const char *what, const std::string &name) {
  const char *only = std::getenv((std::string("SOMA_BENCH_") + what).c_str());
  if (!only || !*only)
    return true;
  return (std::string(",") + only + ",").find("," + name + ",") != std::string::npos;
}

/// The SGEMM shapes; SOMA_BENCH_GEMM=1024x1024x1024,64x784x256_Bt keeps
/// only those.
inline std::vector<Gemm> gemmShapes() {
  std::vector<Gemm> v;
  for (int64_t s : {64, 128, 256, 512, 1024, 2048})
    v.push_back({s, s, s, false, false});
  v.push_back({64, 256, 784, false, false}); // MLP layer 1 forward, batch 64
  v.push_back({784, 256, 64, true, false});  // its weight gradient x^T dy
  v.push_back({64, 784, 256, false, true});  // its input gradient dy W^T
  v.push_back({64, 10, 256, false, false});  // a 10-wide last layer
  v.push_back({256, 10, 64, true, false});
  v.push_back({64, 256, 10, false, true});
  std::erase_if(v, [](const Gemm &g) { return !kept("GEMM", g.name()); });
  return v;
}

/// Max |C - ref| / max |ref| over sampled elements (ref in double).
inline double gemmError(const Gemm &g, const float *a, const float *b, const float *c) {
  double maxDiff = 0, maxRef = 0;
  int64_t total = g.m * g.n, step = std::max<int64_t>(1, total / 509);
  for (int64_t e = 0; e < total; e += step) {
    int64_t i = e / g.n, j = e % g.n;
    double r = 0;
    for (int64_t p = 0; p < g.k; ++p)
      r += static_cast<double>(g.ta ? a[p * g.m + i] : a[i * g.k + p]) *
           static_cast<double>(g.tb ? b[j * g.k + p] : b[p * g.n + j]);
    maxDiff = std::max(maxDiff, std::fabs(c[e] - r));
    maxRef = std::max(maxRef, std::fabs(r));
  }
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

//===----------------------------------------------------------------------===//
// Convolution: x [N,C,H,W], w [K,C,R,R], y [N,K,P,Q], stride 1, zero padding.
//===----------------------------------------------------------------------===//

struct Conv {
  const char *name;
  int64_t n, c, h, w, k, r, pad;
  int64_t p() const { return h + 2 * pad - r + 1; }
  int64_t q() const { return w + 2 * pad - r + 1; }
  int64_t xSize() const { return n * c * h * w; }
  int64_t wSize() const { return k * c * r * r; }
  int64_t ySize() const { return n * k * p() * q(); }
  double flops() const { return 2.0 * n * k * p() * q() * c * r * r; }
};

/// The conv layers; SOMA_BENCH_CONV=resnet_3x3 keeps only those.
inline std::vector<Conv> convLayers() {
  std::vector<Conv> v{{"lenet_conv1", 64, 1, 32, 32, 6, 5, 0},
                      {"lenet_conv2", 64, 6, 14, 14, 16, 5, 0},
                      {"resnet_3x3", 8, 64, 56, 56, 64, 3, 1},
                      {"vgg_3x3", 8, 128, 56, 56, 128, 3, 1}};
  std::erase_if(v, [](const Conv &c) { return !kept("CONV", c.name); });
  return v;
}

/// The passes (soma's backward passes are gradients given dy, without the
/// forward pass, see speed_soma.cpp).
enum class Pass { fwd, bwdData, bwdWeights };

/// Max |got - ref| / max |ref| over sampled elements of y (fwd), dx
/// (bwdData) or dw (bwdWeights); `other` is w for fwd/bwdData and x for
/// bwdWeights, `in` is x for fwd and dy otherwise.
inline double convError(const Conv &cv, Pass pass, const float *x, const float *w, const float *dy,
                        const float *got) {
  const int64_t C = cv.c, H = cv.h, W = cv.w, K = cv.k, R = cv.r, P = cv.p(), Q = cv.q(), pd = cv.pad;
  int64_t total = pass == Pass::fwd ? cv.ySize() : pass == Pass::bwdData ? cv.xSize() : cv.wSize();
  int64_t step = std::max<int64_t>(1, total / 251);
  double maxDiff = 0, maxRef = 0;
  for (int64_t e = 0; e < total; e += step) {
    double ref = 0;
    if (pass == Pass::fwd) {
      int64_t j = e % Q, i = e / Q % P, k = e / (P * Q) % K, n = e / (P * Q * K);
      for (int64_t c = 0; c < C; ++c)
        for (int64_t u = 0; u < R; ++u)
          for (int64_t v = 0; v < R; ++v) {
            int64_t hh = i - pd + u, ww = j - pd + v;
            if (hh >= 0 && hh < H && ww >= 0 && ww < W)
              ref += double(x[((n * C + c) * H + hh) * W + ww]) * w[((k * C + c) * R + u) * R + v];
          }
    } else if (pass == Pass::bwdData) {
      int64_t ww = e % W, hh = e / W % H, c = e / (H * W) % C, n = e / (H * W * C);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t u = 0; u < R; ++u)
          for (int64_t v = 0; v < R; ++v) {
            int64_t i = hh + pd - u, j = ww + pd - v;
            if (i >= 0 && i < P && j >= 0 && j < Q)
              ref += double(dy[((n * K + k) * P + i) * Q + j]) * w[((k * C + c) * R + u) * R + v];
          }
    } else {
      int64_t v = e % R, u = e / R % R, c = e / (R * R) % C, k = e / (R * R * C);
      for (int64_t n = 0; n < cv.n; ++n)
        for (int64_t i = 0; i < P; ++i)
          for (int64_t j = 0; j < Q; ++j) {
            int64_t hh = i - pd + u, ww = j - pd + v;
            if (hh >= 0 && hh < H && ww >= 0 && ww < W)
              ref += double(dy[((n * K + k) * P + i) * Q + j]) * x[((n * C + c) * H + hh) * W + ww];
          }
    }
    maxDiff = std::max(maxDiff, std::fabs(got[e] - ref));
    maxRef = std::max(maxRef, std::fabs(ref));
  }
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

//===----------------------------------------------------------------------===//
// Models: the same batch for soma and libtorch.
//===----------------------------------------------------------------------===//

struct Model {
  const char *name;
  int64_t batch;
  std::vector<int64_t> image; // per-example input shape
};

/// The benchmark's models; SOMA_BENCH_MODELS=lenet5,mlp_b256 (names, or
/// name_bBATCH) keeps only those (for profiling one model).
inline std::vector<Model> models() {
  std::vector<Model> v{
      {"mlp", 64, {784}}, {"mlp", 256, {784}}, {"lenet5", 64, {1, 28, 28}}, {"resnet8", 32, {3, 32, 32}}};
  std::erase_if(v, [](const Model &m) {
    return !kept("MODELS", m.name) && !kept("MODELS", std::string(m.name) + "_b" + std::to_string(m.batch));
  });
  return v;
}

inline int64_t numel(const std::vector<int64_t> &s) {
  int64_t n = 1;
  for (int64_t d : s)
    n *= d;
  return n;
}

/// A batch of `batch` examples of `perExample` values: inputs in [0, 1)
/// and labels i % 10.
inline void modelBatch(int64_t batch, int64_t perExample, float *x, int32_t *y) {
  int64_t n = batch * perExample;
  fill(x, n, 7);
  for (int64_t i = 0; i < n; ++i)
    x[i] = 0.5f * (x[i] + 1.0f);
  for (int64_t i = 0; i < batch; ++i)
    y[i] = static_cast<int32_t>(i % 10);
}

inline std::string modelItem(const Model &m, const char *what) {
  return std::string(m.name) + "_b" + std::to_string(m.batch) + "_" + what;
}

} // namespace bench
