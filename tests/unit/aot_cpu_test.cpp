// Code for other vector widths, run: graphs compiled ahead of time for
// x86-64-v3 (AVX2 and FMA: 8-wide vectors, 16 registers) and x86-64 (SSE2:
// 4-wide, no FMA), linked into a shared object with the C compiler, loaded
// and called, and compared with the interpreter. The JIT always targets
// this machine (AVX-512 here), so without this the 8- and 4-wide paths of
// the GEMM and the convolutions would only be printed (lit), never run.
#include "test_util.h"

#include <soma/soma.h>

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>

using namespace soma;

namespace {

using Ts = std::vector<Tensor>;

struct AotCase {
  std::string name;
  std::vector<Shape> inputs;
  std::function<Tensor(Ts &)> build;
  std::string mlir = {}; // instead of build: the graph as text
};

std::string slurp(const std::string &path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// Calls NAME(inputs..., output, workspace) from the shared object.
void callAot(void *fn, std::vector<const float *> in, float *out, void *ws) {
  using F2 = void (*)(const float *, const float *, float *, void *);
  using F3 = void (*)(const float *, const float *, const float *, float *, void *);
  if (in.size() == 2)
    reinterpret_cast<F2>(fn)(in[0], in[1], out, ws);
  else if (in.size() == 3)
    reinterpret_cast<F3>(fn)(in[0], in[1], in[2], out, ws);
  else
    FAIL() << in.size() << " inputs";
}

void PrintTo(const AotCase &c, std::ostream *os) { *os << c.name; }

/// A target CPU, the widest vector registers its code may use, and those
/// it must not.
struct Cpu {
  std::string name, uses, never;
};
void PrintTo(const Cpu &c, std::ostream *os) { *os << c.name; }

class AotCpu : public ::testing::TestWithParam<std::tuple<Cpu, AotCase>> {};

TEST_P(AotCpu, ObjectMatchesTheInterpreter) {
  const auto &[cpu, tc] = GetParam();
  if (cpu.name == "x86-64-v3" && (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")))
    GTEST_SKIP() << "this machine cannot run x86-64-v3 code";
  Graph g = tc.mlir.empty() ? Graph(tc.name) : parse(tc.mlir, tc.name + ".mlir");
  Ts xs;
  std::map<std::string, Array> inputs;
  for (size_t i = 0; i < tc.inputs.size(); ++i) {
    std::string name = "in" + std::to_string(i);
    if (tc.mlir.empty())
      xs.push_back(g.input(name, tc.inputs[i]));
    inputs[name] = test::randomF32(tc.inputs[i], -1, 1, static_cast<uint32_t>(i + 1));
  }
  if (tc.mlir.empty())
    g.output("out", tc.build(xs));
  test::TempDir dir("aot_cpu_" + cpu.name + "_" + tc.name);
  compile_aot(g, dir.str(), {.object = true, .header = true, .weights = false, .cpu = cpu.name});
  std::string so = dir / "kernel.so";
  std::string cmd = std::string(SOMA_TEST_CC) + " -shared -o " + so + " " + (dir / (tc.name + ".o")) + " " +
                    SOMA_TEST_OMP_LIB + " -lm";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::string dis = dir / "kernel.s";
  if (std::system(("objdump -d " + so + " > " + dis + " 2>/dev/null").c_str()) == 0) {
    std::string text = slurp(dis);
    EXPECT_NE(text.find(cpu.uses), std::string::npos) << "no " << cpu.uses << " code";
    EXPECT_EQ(text.find(cpu.never), std::string::npos) << cpu.never << " code in an object for " << cpu.name;
  }
  void *lib = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  void *fn = dlsym(lib, tc.name.c_str());
  ASSERT_NE(fn, nullptr) << dlerror();
  std::smatch m;
  std::string header = slurp(dir / (tc.name + ".h"));
  ASSERT_TRUE(std::regex_search(header, m, std::regex("_WORKSPACE_BYTES ([0-9]+)"))) << header;
  size_t bytes = std::stoull(m[1].str());
  void *ws = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  std::map<std::string, Array> want = interpret(g, inputs);
  Array got(DType::f32, want["out"].shape());
  std::vector<const float *> in;
  for (size_t i = 0; i < tc.inputs.size(); ++i)
    in.push_back(inputs["in" + std::to_string(i)].data<float>());
  callAot(fn, in, got.data<float>(), ws);
  EXPECT_TRUE(test::allClose(got, want["out"]));
  std::free(ws);
  dlclose(lib);
}

std::vector<AotCase> aotCases() {
  std::vector<AotCase> c;
  auto conv = [&](std::string name, Shape x, Shape w, Conv2dOptions o) {
    c.push_back({name, {x, w}, [o](Ts &t) { return conv2d(t[0], t[1], o); }});
  };
  // Vectors along the filters: 20 filters (3 vectors of 8, the last with
  // 4; or 5 of 4), a "valid" 3 x 5 window, edge tiles.
  conv("conv_filters", {2, 3, 9, 13}, {20, 3, 3, 5}, {});
  // The grid: padded (63 pixels, 11 filters), a "valid" one narrower than
  // its input (compressed stores), stride 2, blocks of channels.
  conv("conv_grid", {3, 5, 7, 9}, {11, 5, 3, 3}, {.padding = 1});
  conv("conv_grid_valid", {3, 5, 9, 13}, {6, 5, 3, 5}, {});
  conv("conv_stride2", {2, 3, 9, 32}, {3, 3, 3, 3}, {.stride = 2, .padding = 1});
  conv("conv_channel_blocks", {2, 97, 5, 64}, {11, 97, 3, 3}, {.padding = 1});
  // Interior groups without masks (at least 2^26 multiply-adds), with
  // AVX2's and SSE's tiles and colMask vectors of 8 and 4 lanes (5
  // filters: on the grid with either).
  conv("conv_interior", {4, 200, 44, 44}, {5, 200, 3, 3}, {.padding = 1});
  // Padded along the filters: 3 vectors of 8 or 6 of 4, 7 x 9 outputs;
  // and of stride 2 (2 vectors of 8 or 4 of 4, 5 x 16 outputs).
  conv("conv_filters_padded", {2, 5, 7, 9}, {24, 5, 3, 3}, {.padding = 1});
  conv("conv_filters_stride2", {2, 3, 9, 32}, {16, 3, 3, 3}, {.stride = 2, .padding = 1});
  // Vectors along the channels: 6 filters (tiles of 4 and 2) over 20
  // channels (3 vectors of 8, the last with 4; or 5 of 4), padded by 4 (an
  // output wider than the input: no grid), edge tiles of columns; one
  // filter over 26 output columns (tiles of at most a vector of columns).
  conv("conv_channels", {2, 20, 6, 9}, {6, 20, 5, 5}, {.padding = 4});
  conv("conv_channels_one_filter", {2, 20, 4, 24}, {1, 20, 3, 5}, {.padding = 3});
  // An epilogue: ReLU of the sum with a third input.
  c.push_back({"conv_residual_relu", {{2, 4, 6, 6}, {4, 4, 3, 3}, {2, 4, 6, 6}},
               [](Ts &t) { return relu(conv2d(t[0], t[1], {.padding = 1}) + t[2]); }});
  // GEMMs: copied rows of A (K = 1024), a split K (64 x 256 x 784),
  // transposed operands, odd sizes.
  auto mm = [&](std::string name, Shape a, Shape b, MatmulOptions o) {
    c.push_back({name, {a, b}, [o](Ts &t) { return matmul(t[0], t[1], o); }});
  };
  mm("matmul_rows_copied", {130, 1024}, {1024, 97}, {});
  mm("matmul_split_k", {64, 784}, {784, 256}, {});
  mm("matmul_at_bt", {63, 65}, {129, 63}, {.transpose_a = true, .transpose_b = true});
  mm("matmul_one", {1, 7}, {7, 1}, {});
  // Filter gradients, as the gradient has them (dy channel-major times the
  // columns of x, transposed; soma.im2col has no DSL function, so the
  // graph is text): a "valid" one with 20 filters (vectors along the
  // filters), a padded one with 6 (the grid), a padded one with 16
  // (vectors along the filters, x's rows copied between zeros), and one
  // with 32 over 18 x 19 outputs (4 or 8 vectors of filters, 43 KiB of
  // dy: the filter tiles outermost; 4 pixels a step, then the last 3).
  auto dw = [&](std::string name, int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t K, int64_t kh, int64_t kw,
                int64_t pad) {
    const int64_t OH = H + 2 * pad - kh + 1, OW = W + 2 * pad - kw + 1, P = N * OH * OW, R = Cin * kh * kw;
    auto t = [](std::vector<int64_t> d) {
      std::string s = "tensor<";
      for (int64_t v : d)
        s += std::to_string(v) + "x";
      return s + "f32>";
    };
    auto n = [](int64_t v) { return std::to_string(v); };
    std::string dy = t({N, K, OH, OW}), x = t({N, Cin, H, W}), out = t({1, K, R});
    AotCase a{name, {{N, K, OH, OW}, {N, Cin, H, W}}, nullptr};
    a.mlir = "module @" + name + " {\n func.func @" + name + "(%dy: " + dy + " {soma.input = \"in0\"}, %x: " + x +
             " {soma.input = \"in1\"}) -> (" + out + " {soma.output = \"out\"}) {\n" +
             "  %1 = soma.transpose %dy {perm = array<i64: 1, 0, 2, 3>} : " + dy + " -> " + t({K, N, OH, OW}) + "\n" +
             "  %2 = soma.reshape %1 {shape = array<i64: 1, " + n(K) + ", " + n(P) + ">} : " + t({K, N, OH, OW}) +
             " -> " + t({1, K, P}) + "\n" +
             "  %3 = soma.im2col %x {dilation = array<i64: 1, 1>, kernel = array<i64: " + n(kh) + ", " + n(kw) +
             ">, padding = array<i64: " + n(pad) + ", " + n(pad) + ", " + n(pad) + ", " + n(pad) +
             ">, stride = array<i64: 1, 1>} : " + x + " -> " + t({R, P}) + "\n" +
             "  %4 = soma.reshape %3 {shape = array<i64: 1, " + n(R) + ", " + n(P) + ">} : " + t({R, P}) + " -> " +
             t({1, R, P}) + "\n" +
             "  %5 = soma.matmul %2, %4 {transpose_b = true} : (" + t({1, K, P}) + ", " + t({1, R, P}) + ") -> " + out +
             "\n  return %5 : " + out + "\n }\n}\n";
    c.push_back(a);
  };
  dw("filter_gradient_filters", 3, 2, 7, 12, 20, 3, 4, 0);
  dw("filter_gradient_grid", 2, 3, 6, 9, 6, 3, 3, 1);
  // A kernel row of 5 taps on the grid: wider than 4 lanes, its sums
  // stored in two chunks.
  dw("filter_gradient_grid_wide_row", 2, 3, 5, 7, 6, 3, 5, 2);
  dw("filter_gradient_filters_padded", 2, 3, 9, 11, 16, 3, 3, 1);
  dw("filter_gradient_filters_outer", 2, 3, 18, 19, 32, 3, 3, 1);
  return c;
}

INSTANTIATE_TEST_SUITE_P(Cases, AotCpu,
                         ::testing::Combine(::testing::Values(Cpu{"x86-64-v3", "ymm", "zmm"},
                                                              Cpu{"x86-64", "xmm", "ymm"}),
                                            ::testing::ValuesIn(aotCases())),
                         [](const ::testing::TestParamInfo<std::tuple<Cpu, AotCase>> &info) {
                           std::string cpu = std::get<0>(info.param).name;
                           std::replace(cpu.begin(), cpu.end(), '-', '_');
                           return cpu + "_" + std::get<1>(info.param).name;
                         });

} // namespace
