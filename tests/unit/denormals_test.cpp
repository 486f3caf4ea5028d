//===- denormals_test.cpp - Denormal floats flushed to zero, or kept -------===//
//
// By default the compiled code runs with denormals (magnitudes below
// 2^-126) flushed to zero on x86-64: a denormal result is 0 (FTZ) and a
// denormal operand reads as 0 (DAZ), on the calling thread and on every
// OpenMP worker that runs part of a kernel; the caller's MXCSR is the same
// after the call. CompileOptions::flush_denormals = false keeps IEEE
// denormals (soma-flush-denormals, docs/pipeline.md).
//
// At each parallel region libomp copies the calling thread's MXCSR to its
// workers (KMP_INHERIT_FP_CONTROL, true by default), so under the default
// the workers would flush even if only the kernel function set the bits;
// tests/CMakeLists.txt runs these tests a second time with that copy off
// (Denormals.WorkersWithoutInheritedMxcsr), where each worker, started by
// a call that keeps denormals, flushes only because its parallel region
// sets its own MXCSR.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

using namespace soma;

namespace {

// Enough elements for the elementwise kernel to run on every thread (the
// grain: 131072 points of work, a binary op's weighing 4), so that the
// workers' halves are checked too.
constexpr int64_t kCount = 1 << 17;

/// x * factor, compiled with `flush`, on kCount copies of `value`.
std::vector<float> scaled(float value, float factor, bool flush) {
  Graph g("scale");
  g.output("y", g.input("x", {kCount}) * factor);
  CompileOptions options;
  options.flush_denormals = flush;
  Inference f = compile_inference(g, options);
  Array x(DType::f32, {kCount});
  std::fill(x.data<float>(), x.data<float>() + kCount, value);
  Array y = f.run({{"x", x}}).at("y");
  return {y.data<float>(), y.data<float>() + y.numel()};
}

int64_t countEqual(const std::vector<float> &v, float want) {
  return std::count(v.begin(), v.end(), want);
}

/// A call that keeps denormals, first: it starts the OpenMP workers (if
/// no earlier test did) under the caller's MXCSR. With libomp's copy of
/// the caller's MXCSR off, workers keep the setting they start with, so a
/// flushing call after this one flushes on the workers only because its
/// parallel regions set their own (workers started inside a flushing call
/// would keep its setting).
void startWorkersKeepingDenormals() {
  ASSERT_EQ(countEqual(scaled(1e-20f, 1e-20f, false), 1e-20f * 1e-20f), kCount);
}

} // namespace

#if defined(__x86_64__)

TEST(Denormals, ResultsFlushedToZeroByDefault) {
  // 1e-20 * 1e-20 = 1e-40, a denormal.
  ASSERT_EQ(std::fpclassify(1e-20f * 1e-20f), FP_SUBNORMAL) << "the test's own arithmetic must not flush";
  startWorkersKeepingDenormals();
  EXPECT_EQ(countEqual(scaled(1e-20f, 1e-20f, true), 0.0f), kCount);
}

TEST(Denormals, OperandsReadAsZeroByDefault) {
  // A denormal input times 2^100: 0 when read as 0.
  ASSERT_EQ(std::fpclassify(std::ldexp(1.0f, -140)), FP_SUBNORMAL);
  startWorkersKeepingDenormals();
  EXPECT_EQ(countEqual(scaled(std::ldexp(1.0f, -140), std::ldexp(1.0f, 100), true), 0.0f), kCount);
}

TEST(Denormals, KeptWhenAsked) {
  // Code compiled to keep denormals computes them on every thread, also
  // after a call that flushed. (With libomp's default copy of the calling
  // thread's MXCSR at each parallel region, the workers would keep them
  // even if that call had left theirs flushing.)
  EXPECT_EQ(countEqual(scaled(1e-20f, 1e-20f, true), 0.0f), kCount);
  EXPECT_EQ(countEqual(scaled(1e-20f, 1e-20f, false), 1e-20f * 1e-20f), kCount);
  // A denormal operand times 2^100: 2^-40, exactly (a power of two).
  EXPECT_EQ(countEqual(scaled(std::ldexp(1.0f, -140), std::ldexp(1.0f, 100), false), std::ldexp(1.0f, -40)),
            kCount);
}

TEST(Denormals, CallerKeepsItsOwnSetting) {
  const unsigned before = _mm_getcsr();
  ASSERT_EQ(before & 0x8040u, 0u) << "the test expects a thread that keeps denormals";
  EXPECT_EQ(countEqual(scaled(1e-20f, 1e-20f, true), 0.0f), kCount);
  EXPECT_EQ(_mm_getcsr(), before);

  // A caller with FTZ but not DAZ: after a call that flushed both, it has
  // exactly its own setting back (restored, not cleared).
  _mm_setcsr(before | 0x8000u);
  std::vector<float> y = scaled(1e-20f, 1e-20f, true);
  const unsigned after = _mm_getcsr();
  _mm_setcsr(before);
  EXPECT_EQ(after, before | 0x8000u);
  EXPECT_EQ(countEqual(y, 0.0f), kCount);
}

TEST(Denormals, TrainingStepFlushes) {
  // A training step with a denormal input: the loss reads it as 0
  // (loss = sum(w * x) with x denormal: 0 flushed, 2^-140 * w kept).
  for (bool flush : {true, false}) {
    Graph g("tiny");
    Tensor w = g.param("w", {4}, init::constant(1.0));
    Tensor x = g.input("x", {4});
    g.output("loss", sum(w * x * std::ldexp(1.0f, 100)));
    TrainOptions options;
    options.compile.flush_denormals = flush;
    TrainStep step = compile_training(g, g.output_tensor("loss"), optim::SGD{}, options);
    Array xs(DType::f32, {4});
    std::fill(xs.data<float>(), xs.data<float>() + 4, std::ldexp(1.0f, -140));
    float loss = step.run({{"x", xs}}).loss;
    EXPECT_EQ(loss, flush ? 0.0f : 4 * std::ldexp(1.0f, -40)) << "flush_denormals " << flush;
  }
}

#endif
