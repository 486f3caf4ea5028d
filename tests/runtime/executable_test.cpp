//===- executable_test.cpp - Calling code through soma::Executable --------===//
//
// Executable::call with a hand-written function in place of compiled code:
// the checks of the arrays against the signature, the packed arguments,
// and the OpenMP workers' spinning while a call runs (libomp's blocktime,
// raised to SOMA_SPIN_MS for the call and restored after it).
#include "soma/error.h"
#include "soma/executable.h"

#include <gtest/gtest.h>

#include <cstdlib>

extern "C" int kmp_get_blocktime(void);
extern "C" void kmp_set_blocktime(int msec);
extern "C" void omp_set_num_threads(int n);

namespace {

using soma::Array;
using soma::DType;

int blocktimeSeen = -1; // kmp_get_blocktime() inside the last call

/// out = 2 * in over f32[3]; args: in, out, workspace.
void twice(void **args) {
  blocktimeSeen = kmp_get_blocktime();
  const float *in = *static_cast<float **>(args[0]);
  float *out = *static_cast<float **>(args[1]);
  for (int i = 0; i < 3; ++i)
    out[i] = 2 * in[i];
}

soma::Executable twiceExecutable() {
  soma::Signature sig;
  sig.name = "twice";
  sig.inputs = {{"x", DType::f32, {3}}};
  sig.outputs = {{"y", DType::f32, {3}}};
  return soma::Executable(sig, &twice, nullptr);
}

int spinMs() {
  const char *v = std::getenv("SOMA_SPIN_MS");
  return v && *v ? std::atoi(v) : 1;
}

/// Calls `exe` once on [1, 2, 3] and checks the result.
void callTwice(soma::Executable &exe) {
  Array x(DType::f32, {3});
  for (int i = 0; i < 3; ++i)
    x.data<float>()[i] = static_cast<float>(i + 1);
  std::vector<Array> in{x}, out = exe.make_outputs();
  exe.call(in, {}, out);
  EXPECT_EQ(out[0].data<float>()[2], 6.0f);
}

struct ThreadsAndBlocktime : ::testing::Test {
  int saved = kmp_get_blocktime();
  ~ThreadsAndBlocktime() override {
    kmp_set_blocktime(saved);
    omp_set_num_threads(2);
  }
};

TEST_F(ThreadsAndBlocktime, WorkersSpinDuringACallAndTheSettingComesBackAfterIt) {
  if (spinMs() == 0)
    GTEST_SKIP() << "SOMA_SPIN_MS=0 turns the spinning off";
  omp_set_num_threads(2);
  kmp_set_blocktime(0);
  soma::Executable exe = twiceExecutable();
  callTwice(exe);
  EXPECT_EQ(blocktimeSeen, spinMs());
  EXPECT_EQ(kmp_get_blocktime(), 0);
}

TEST_F(ThreadsAndBlocktime, ALongerBlocktimeIsKept) {
  omp_set_num_threads(2);
  kmp_set_blocktime(200);
  soma::Executable exe = twiceExecutable();
  callTwice(exe);
  EXPECT_EQ(blocktimeSeen, 200);
  EXPECT_EQ(kmp_get_blocktime(), 200);
}

TEST_F(ThreadsAndBlocktime, OneThreadHasNoWorkersToKeepAwake) {
  omp_set_num_threads(1);
  kmp_set_blocktime(0);
  soma::Executable exe = twiceExecutable();
  callTwice(exe);
  EXPECT_EQ(blocktimeSeen, 0);
  EXPECT_EQ(kmp_get_blocktime(), 0);
}

TEST(Executable, AWrongShapeNamesTheTensor) {
  soma::Executable exe = twiceExecutable();
  std::vector<Array> in{Array(DType::f32, {4})}, out = exe.make_outputs();
  try {
    exe.call(in, {}, out);
    FAIL() << "no error";
  } catch (const soma::Error &e) {
    EXPECT_STREQ(e.what(), "input 'x': expected f32[3], got f32[4]");
  }
}

} // namespace
