//===- test_util.h - Helpers shared by soma's unit tests ---------*- C++ -*-===//
#pragma once

#include "soma/soma.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <random>
#include <string>

namespace soma::test {

/// C++ heap allocations made so far by the whole process (heap.cpp replaces
/// operator new for this binary, and poisons what operator delete frees).
long heapAllocations();

/// Expects `stmt` to throw soma::Error whose message contains every string.
#define EXPECT_SOMA_ERROR(stmt, ...)                                           \
  do {                                                                         \
    try {                                                                      \
      stmt;                                                                    \
      ADD_FAILURE() << "expected soma::Error from " #stmt;                     \
    } catch (const ::soma::Error &e) {                                         \
      for (const std::string &s : std::initializer_list<std::string>{__VA_ARGS__})                                   \
        EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr(s));           \
    }                                                                          \
  } while (0)

/// A fresh, empty directory under the build tree, removed at destruction.
class TempDir {
public:
  explicit TempDir(const std::string &name) {
    path_ = std::filesystem::temp_directory_path() /
            ("soma-test-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string &f) const { return (path_ / f).string(); }

private:
  std::filesystem::path path_;
};

/// Uniform random f32 values in [lo, hi], seeded.
inline Array randomF32(const Shape &shape, float lo, float hi, uint32_t seed) {
  Array a(DType::f32, shape);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < a.numel(); ++i)
    a.data<float>()[i] = dist(gen);
  return a;
}

/// Random integer labels in [0, classes).
inline Array randomLabels(const Shape &shape, int64_t classes, DType dt, uint32_t seed) {
  Array a(dt, shape);
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> dist(0, classes - 1);
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (dt == DType::i32)
      a.data<int32_t>()[i] = static_cast<int32_t>(dist(gen));
    else
      a.data<int64_t>()[i] = dist(gen);
  }
  return a;
}

/// Compares a compiled result with the interpreter's: every element within
/// rtol * (|expected| + rms(expected)) (the rms term keeps elements that
/// cancel to near zero from demanding impossible relative accuracy), NaN
/// only where NaN is expected; integers exactly.
inline ::testing::AssertionResult allClose(const Array &actual, const Array &expected,
                                           double rtol = 1e-5) {
  if (actual.dtype() != expected.dtype() || actual.shape() != expected.shape())
    return ::testing::AssertionFailure()
           << "got " << dtype_name(actual.dtype()) << shape_str(actual.shape())
           << ", expected " << dtype_name(expected.dtype()) << shape_str(expected.shape());
  int64_t n = expected.numel();
  if (expected.dtype() != DType::f32) {
    size_t bytes = expected.nbytes();
    if (std::memcmp(actual.raw(), expected.raw(), bytes) != 0)
      return ::testing::AssertionFailure() << "integer arrays differ";
    return ::testing::AssertionSuccess();
  }
  const float *a = actual.data<float>(), *e = expected.data<float>();
  double sq = 0;
  int64_t finite = 0;
  for (int64_t i = 0; i < n; ++i)
    if (std::isfinite(e[i])) {
      sq += double(e[i]) * e[i];
      ++finite;
    }
  double rms = finite ? std::sqrt(sq / finite) : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(e[i]) != std::isnan(a[i]))
      return ::testing::AssertionFailure() << "element " << i << ": got " << a[i]
                                           << ", expected " << e[i];
    if (std::isnan(e[i]))
      continue;
    if (std::isinf(e[i])) {
      if (a[i] != e[i])
        return ::testing::AssertionFailure() << "element " << i << ": got " << a[i]
                                             << ", expected " << e[i];
      continue;
    }
    double tol = rtol * (std::fabs(e[i]) + rms) + 1e-30;
    if (std::fabs(double(a[i]) - e[i]) > tol)
      return ::testing::AssertionFailure()
             << "element " << i << " of " << n << ": got " << a[i] << ", expected " << e[i]
             << " (tolerance " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}

} // namespace soma::test
