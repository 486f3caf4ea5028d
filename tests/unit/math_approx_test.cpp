//===- math_approx_test.cpp - The compiled f32 exp, log, tanh, erf ---------===//
//
// soma-approximate-math compiles the f32 exp, log, tanh and erf as
// polynomials (MLIR's approximations) instead of libm calls. These tests
// hold them to the accuracy docs/pipeline.md states, over sweeps of their
// whole useful ranges against double precision, and to the special values
// docs/dialect.md states (exp's results below 2^-126 are 0; inf, NaN,
// log(0) and log of a negative number as libm gives them).
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#include <cfloat>
#include <limits>

using namespace soma;

namespace {

/// The compiled `fn` applied to `values` (one f32 input "x", one output).
std::vector<float> compiled(Tensor (*fn)(const Tensor &, Loc), const std::vector<float> &values) {
  Graph g("math");
  g.output("y", fn(g.input("x", {static_cast<int64_t>(values.size())}), Loc::current()));
  Inference f = compile_inference(g);
  Array x(DType::f32, {static_cast<int64_t>(values.size())});
  std::copy(values.begin(), values.end(), x.data<float>());
  Array y = f.run({{"x", x}}).at("y");
  return {y.data<float>(), y.data<float>() + y.numel()};
}

/// |got - want| in units of the last place of the f32 nearest `want`
/// (normal numbers; the spacing at FLT_MIN below).
double ulps(float got, double want) {
  const float w = static_cast<float>(want);
  const double ulp = std::max(static_cast<double>(std::nextafter(std::fabs(w), INFINITY) - std::fabs(w)),
                              static_cast<double>(FLT_MIN) * FLT_EPSILON);
  return std::fabs(static_cast<double>(got) - want) / ulp;
}

/// `n` points evenly from lo to hi.
std::vector<float> sweep(double lo, double hi, int n) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i)
    v.push_back(static_cast<float>(lo + (hi - lo) * i / (n - 1)));
  return v;
}

/// The largest error of the compiled `fn` over `xs` against `ref` in double.
double maxUlps(Tensor (*fn)(const Tensor &, Loc), const std::vector<float> &xs, double (*ref)(double)) {
  std::vector<float> got = compiled(fn, xs);
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i)
    worst = std::max(worst, ulps(got[i], ref(xs[i])));
  return worst;
}

double gelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

} // namespace

// The bounds are the measured worst cases rounded up (exp 3.83 ulps, log
// 0.79, tanh 3.78, gelu 1.5e-7), which docs/pipeline.md states.
// Over the range where the results are normal numbers.
TEST(MathApprox, ExpWithinFourUlps) {
  EXPECT_LE(maxUlps(soma::exp, sweep(-87.3, 88.7, 20001), [](double x) { return std::exp(x); }), 4.0);
}

// From 1e-30 to 1e30 (log-spaced) and around 1, where log is near 0.
TEST(MathApprox, LogWithinOneUlp) {
  std::vector<float> xs;
  for (int i = 0; i <= 6000; ++i)
    xs.push_back(static_cast<float>(std::pow(10.0, -30 + 60.0 * i / 6000)));
  for (float x : sweep(0.5, 2, 3001))
    xs.push_back(x);
  EXPECT_LE(maxUlps(soma::log, xs, [](double x) { return std::log(x); }), 1.0);
}

TEST(MathApprox, TanhWithinFourUlps) {
  EXPECT_LE(maxUlps(soma::tanh, sweep(-10, 10, 20001), [](double x) { return std::tanh(x); }), 4.0);
}

// gelu's erf (MLIR's rational erf): gelu crosses 0, where errors in ulps
// mean little, so the error is measured against max(1, |x|).
TEST(MathApprox, GeluWithinAbsoluteBound) {
  std::vector<float> xs = sweep(-6, 6, 12001);
  std::vector<float> got = compiled(soma::gelu, xs);
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - gelu(xs[i])) / std::max(1.0, std::fabs(static_cast<double>(xs[i]))));
  EXPECT_LE(worst, 2e-7);
}

TEST(MathApprox, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> e = compiled(soma::exp, {-inf, -100, -88, 0, 89, inf, nan});
  EXPECT_EQ(e[0], 0.0f);
  EXPECT_EQ(e[1], 0.0f); // 3.7e-44, a denormal: flushed
  EXPECT_EQ(e[2], 0.0f); // 6.1e-39, a denormal: flushed
  EXPECT_EQ(e[3], 1.0f);
  EXPECT_EQ(e[4], inf);
  EXPECT_EQ(e[5], inf);
  EXPECT_TRUE(std::isnan(e[6]));
  std::vector<float> l = compiled(soma::log, {0, -1, -inf, 1, inf, nan});
  EXPECT_EQ(l[0], -inf);
  EXPECT_TRUE(std::isnan(l[1]));
  EXPECT_TRUE(std::isnan(l[2]));
  EXPECT_EQ(l[3], 0.0f);
  EXPECT_EQ(l[4], inf);
  EXPECT_TRUE(std::isnan(l[5]));
  std::vector<float> t = compiled(soma::tanh, {-inf, -20, 0, 1e-30f, 20, inf, nan});
  EXPECT_EQ(t[0], -1.0f);
  EXPECT_EQ(t[1], -1.0f);
  EXPECT_EQ(t[2], 0.0f);
  EXPECT_EQ(t[3], 1e-30f);
  EXPECT_EQ(t[4], 1.0f);
  EXPECT_EQ(t[5], 1.0f);
  EXPECT_TRUE(std::isnan(t[6]));
}
