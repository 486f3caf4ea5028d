//===- fusion_test.cpp - Fused kernels compute what the unfused ops did ----===//
//
// Each graph is compiled (soma-fuse groups its elementwise chains into
// soma.fusion kernels, checked in the "fused" dump) and compared with the
// reference interpreter on the unfused graph.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#include <fstream>

using namespace soma;

namespace {

/// The fused dump of `g` (compiled with the fused stage dumped), after
/// checking every output against the interpreter within `tolerance`.
std::string fusedAndCompared(const Graph &g, const std::map<std::string, Array> &in, const std::string &name,
                             double tolerance = 1e-4) {
  test::TempDir dir("fusion-" + name);
  Inference fn = compile_inference(g, {.dump = "fused", .dump_dir = dir.str(), .use_environment = false});
  auto got = fn.run(in);
  auto want = interpret(g, in);
  for (auto &[k, v] : want)
    EXPECT_TRUE(test::allClose(got[k], v, tolerance)) << name << ": output " << k;
  std::ifstream f(dir / "20-fused.mlir");
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

/// fusedAndCompared (within 1e-5); returns the number of soma.fusion
/// kernels in the dump.
int compileAndCompare(const Graph &g, const std::map<std::string, Array> &in, const std::string &name) {
  std::string text = fusedAndCompared(g, in, name, 1e-5);
  int n = 0;
  for (size_t p = text.find("soma.fusion"); p != std::string::npos; p = text.find("soma.fusion", p + 1))
    ++n;
  return n;
}

TEST(Fusion, ForwardChainsWithBroadcastsAndSharedValues) {
  Graph g("chains", 1);
  Tensor x = g.input("x", {7, 65});
  Tensor b = g.input("b", {65});
  Tensor s = g.input("s", {7, 1});
  Tensor pre = x + b;                         // broadcast row
  Tensor act = tanh(pre) * s - sigmoid(pre);  // pre used twice inside
  Tensor out = exp(neg(abs(act))) + pre;      // and again
  g.output("out", out);
  g.output("pre", pre);                       // an intermediate leaves the group
  g.output("rowsum", sum(act, {1}));          // a reduction reads a member
  std::map<std::string, Array> in{{"x", test::randomF32({7, 65}, -2, 2, 1)},
                                  {"b", test::randomF32({65}, -1, 1, 2)},
                                  {"s", test::randomF32({7, 1}, 0.5, 1.5, 3)}};
  EXPECT_GE(compileAndCompare(g, in, "chains"), 1);
}

TEST(Fusion, ManyShapesAndScalars) {
  for (Shape shape : {Shape{1}, Shape{63}, Shape{3, 129}, Shape{2, 3, 5, 7}}) {
    Graph g("shapes", 2);
    Tensor x = g.input("x", shape);
    Tensor y = g.input("y", shape);
    Tensor t = g.input("t", {});
    Tensor z = maximum(x * t, y) / (abs(y) + 1.0f) + minimum(x, scalar(g, 0.5f));
    g.output("z", relu(z) - elu(z) + gelu(z));
    std::map<std::string, Array> in{{"x", test::randomF32(shape, -3, 3, 4)},
                                    {"y", test::randomF32(shape, -3, 3, 5)},
                                    {"t", test::randomF32({}, 0.5, 2, 6)}};
    EXPECT_GE(compileAndCompare(g, in, "shapes"), 1) << shape_str(shape);
  }
}

TEST(Fusion, TrainingStepsWithFusedUpdatesMatchUnfusedArithmetic) {
  // The same MLP trained with Adam twice: a compiled step (fused forward,
  // backward and per-parameter updates) against the interpreter's
  // gradients fed to a plain C++ Adam, over three steps.
  Graph g("mlp", 3);
  Tensor x = g.input("x", {8, 12});
  Tensor y = g.input("y", {8}, DType::i32);
  Tensor h = relu(nn::dense(x, 16, {.name = "h"}));
  Tensor logits = nn::dense(h, 4, {.name = "o"});
  g.output("logits", logits);
  Tensor loss = softmax_cross_entropy(logits, y);
  g.output("loss", loss);
  std::map<std::string, Array> batch{{"x", test::randomF32({8, 12}, -1, 1, 7)},
                                     {"y", test::randomLabels({8}, 4, DType::i32, 8)}};
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  TrainStep step = compile_training(g, loss, optim::Adam{{.lr = lr}});
  NamedArrays ref = g.init_params();
  std::map<std::string, std::vector<double>> m, v;
  for (int t = 1; t <= 3; ++t) {
    auto grads = interpret_gradients(g, batch, &ref, {.loss = "loss"});
    for (auto &[name, w] : ref) {
      const Array &gr = grads.at("grad_" + name);
      auto &mm = m[name], &vv = v[name];
      mm.resize(w.numel());
      vv.resize(w.numel());
      for (int64_t i = 0; i < w.numel(); ++i) {
        double gi = gr.data<float>()[i];
        mm[i] = b1 * mm[i] + (1 - b1) * gi;
        vv[i] = b2 * vv[i] + (1 - b2) * gi * gi;
        double mh = mm[i] / (1 - std::pow(b1, t)), vh = vv[i] / (1 - std::pow(b2, t));
        w.data<float>()[i] = static_cast<float>(w.data<float>()[i] - lr * mh / (std::sqrt(vh) + eps));
      }
    }
    step.run(batch);
  }
  for (size_t k = 0; k < ref.size(); ++k)
    EXPECT_TRUE(test::allClose(step.params()[k].second, ref[k].second, 1e-3)) << ref[k].first;
}

} // namespace

namespace {

TEST(CompileReportTest, CountsKernelsBytesAndMemory) {
  Graph g = zoo::mlp(64);
  CompileReport report;
  compile_inference(g, {.report = &report, .use_environment = false});
  ASSERT_EQ(report.functions.size(), 1u);
  const CompileReport::Function &f = report.functions[0];
  EXPECT_EQ(f.name, "mlp");
  // matmul, add, relu three times over, minus the last relu: 8 ops; each
  // matmul takes its bias add (and ReLU) as its epilogue: 3 kernels.
  EXPECT_EQ(f.ops_before_fusion, 8);
  ASSERT_EQ(f.kernels.size(), 3u);
  EXPECT_EQ(f.kernels[0].name, "fusion(matmul,add,relu)");
  EXPECT_EQ(f.kernels[0].bytes_read, (64 * 784 + 784 * 256 + 256) * 4);
  EXPECT_EQ(f.kernels[0].bytes_written, 64 * 256 * 4);
  EXPECT_EQ(f.kernels[0].flops, 2 * 64 * 256 * 784 + 2 * 64 * 256); // 2mnk, then add and relu per element
  EXPECT_EQ(f.kernels[2].name, "fusion(matmul,add)");
  EXPECT_EQ(f.kernels[2].bytes_read, (64 * 128 + 128 * 10 + 10) * 4);
  EXPECT_EQ(f.kernels[2].bytes_written, 64 * 10 * 4);
  EXPECT_GE(f.arena_bytes, f.lower_bound_bytes);
  EXPECT_GE(f.no_reuse_bytes, f.arena_bytes);
  EXPECT_GT(f.lower_bound_bytes, 0);
  EXPECT_FALSE(report.stage_seconds.empty());
  std::string text = report.str();
  EXPECT_THAT(text, ::testing::HasSubstr("function mlp: 8 ops before fusion, 3 kernels after"));
  EXPECT_THAT(text, ::testing::HasSubstr("lower bound"));
  EXPECT_THAT(text, ::testing::HasSubstr("floating-point operations:"));
  EXPECT_THAT(text, ::testing::HasSubstr("translate to LLVM IR"));
}

} // namespace

namespace {

TEST(Fusion, ConvolutionOutputsAndTheirEpilogues) {
  // A convolution's products are its NCHW output (one per image and group,
  // reshaped, no transpose); bias, a per-channel scale (eval-mode batch
  // norm), a residual add and the activation become the GEMM's epilogue
  // when one group makes the reshape split the product's dimensions.
  // Odd sizes: 1 image, 7 and 65 channels, 1x1 and 5x5 kernels, stride 2,
  // uneven padding.
  struct Case {
    int64_t n, c, h, w, k, kh, kw, stride, groups;
    Ints padding;
    bool epilogue;
  };
  const Case cases[] = {{2, 3, 9, 7, 5, 3, 3, 1, 1, {1}, true},     {1, 7, 8, 8, 65, 1, 1, 1, 1, {0}, true},
                        {3, 4, 11, 10, 6, 5, 5, 2, 1, {2, 1, 1, 0}, true}, {2, 4, 6, 6, 6, 3, 3, 1, 2, {1}, false},
                        {2, 16, 7, 7, 16, 3, 3, 1, 1, {1}, true}};
  int seed = 20;
  for (const Case &c : cases) {
    std::string name = "conv" + std::to_string(c.n) + "x" + std::to_string(c.c) + "x" + std::to_string(c.k);
    Graph g("conv", 4);
    Tensor x = g.input("x", {c.n, c.c, c.h, c.w});
    Tensor w = g.input("w", {c.k, c.c / c.groups, c.kh, c.kw});
    Tensor bias = g.input("b", {c.k, 1, 1});
    Tensor scale = g.input("s", {1, c.k, 1, 1});
    Tensor y = conv2d(x, w, {.stride = c.stride, .padding = c.padding, .groups = c.groups});
    Shape ys = y.shape();
    Tensor r = g.input("r", ys);
    g.output("y", relu((y + bias) * scale + r));
    std::map<std::string, Array> in{{"x", test::randomF32({c.n, c.c, c.h, c.w}, -1, 1, seed++)},
                                    {"w", test::randomF32({c.k, c.c / c.groups, c.kh, c.kw}, -1, 1, seed++)},
                                    {"b", test::randomF32({c.k, 1, 1}, -1, 1, seed++)},
                                    {"s", test::randomF32({1, c.k, 1, 1}, 0.5, 1.5, seed++)},
                                    {"r", test::randomF32(ys, -1, 1, seed++)}};
    std::string text = fusedAndCompared(g, in, name);
    // (The columns' per-image view is a transpose {2, 0, 1, 3} that the
    // packing computes; the output is not transposed.)
    EXPECT_EQ(text.find("perm = array<i64: 1, 0, 2, 3>"), std::string::npos) << name << "\n" << text;
    size_t product = text.find("soma.matmul");
    ASSERT_NE(product, std::string::npos) << name;
    // The epilogue follows the product inside its fusion: the reshape to
    // NCHW and the add, mul, add and relu, before the fusion's yield.
    size_t yield = text.find("soma.yield", product);
    size_t relu = text.find("soma.relu", product);
    EXPECT_EQ(c.epilogue, relu != std::string::npos && relu < yield) << name << "\n" << text;
  }
}

// A product with fewer columns than the register tile is computed as its
// transpose and transposed back (Gemm.cpp, transposeNarrowProduct); its
// epilogue (bias, residual, ReLU) then runs on the transposed-back C.
TEST(Fusion, NarrowProductsKeepTheirEpilogue) {
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{64, 129, 10}, {65, 300, 7}, {5, 512, 3}}) {
    std::string name = "narrow_" + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
    Graph g(name);
    Tensor x = g.input("x", {m, k}), w = g.input("w", {k, n}), bias = g.input("b", {n}), r = g.input("r", {m, n});
    g.output("y", relu(matmul(x, w) + bias + r));
    std::map<std::string, Array> in{{"x", test::randomF32({m, k}, -1, 1, 1)},
                                    {"w", test::randomF32({k, n}, -1, 1, 2)},
                                    {"b", test::randomF32({n}, -1, 1, 3)},
                                    {"r", test::randomF32({m, n}, -1, 1, 4)}};
    EXPECT_EQ(compileAndCompare(g, in, name), 1) << name;
  }
}

TEST(Fusion, ReductionsTakeInTheirElementwiseProducers) {
  Graph g("red", 3);
  Tensor x = g.input("x", {5, 7, 9});
  Tensor b = g.input("b", {9});
  Tensor m = mean(x, {0, 2}, true);
  Tensor xc = x - m;
  g.output("var", mean(xc * xc, {0, 2}, true));          // batch-norm variance
  g.output("norm", xc / sqrt(mean(xc * xc, {0, 2}, true) + 1e-5f));
  g.output("lse", sum(exp(x + b), {2}));                 // a chain with a broadcast input
  g.output("mx", max(tanh(x) * 3.0f, {1}));              // max of a chain
  g.output("all", sum(abs(x - 0.5f)));                   // every axis, rank-0 result
  std::map<std::string, Array> in{{"x", test::randomF32({5, 7, 9}, -2, 2, 11)},
                                  {"b", test::randomF32({9}, -1, 1, 12)}};
  test::TempDir dir("fusion-red");
  Inference fn = compile_inference(g, {.dump = "fused", .dump_dir = dir.str(), .use_environment = false});
  auto got = fn.run(in);
  auto want = interpret(g, in);
  for (auto &[k, v] : want)
    EXPECT_TRUE(test::allClose(got[k], v, 1e-5)) << k;
  std::ifstream f(dir / "20-fused.mlir");
  std::string text((std::istreambuf_iterator<char>(f)), {});
  int n = 0;
  for (size_t p = text.find("soma.fusion \"reduction\""); p != std::string::npos;
       p = text.find("soma.fusion \"reduction\"", p + 1))
    ++n;
  EXPECT_GE(n, 4) << text;
}

} // namespace
