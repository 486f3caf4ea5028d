//===- batchnorm_test.cpp - batch_norm in its training and inference forms --===//

#include "test_util.h"

using namespace soma;

namespace {

/// Parameters with non-trivial values (running statistics included).
NamedArrays randomParams(const Graph &g, uint32_t seed) {
  NamedArrays ps = g.init_params();
  for (auto &[name, a] : ps) {
    bool var = name.find("running_var") != std::string::npos;
    a = test::randomF32(a.shape(), var ? 0.5f : -1.0f, var ? 2.0f : 1.0f, seed++);
  }
  return ps;
}

TEST(BatchNorm, InferenceUsesRunningStatisticsAndMatchesTheInterpreter) {
  for (Shape s : {Shape{4, 3, 5, 5}, Shape{8, 6}, Shape{2, 4, 3}}) {
    Graph g("bn");
    Tensor x = g.input("x", s);
    g.output("y", nn::batch_norm(x));
    NamedArrays ps = randomParams(g, 3);
    std::map<std::string, Array> in{{"x", test::randomF32(s, -2, 2, 9)}};
    Inference fn = compile_inference(g);
    fn.set_params(ps);
    auto got = fn.run(in);
    auto want = interpret(g, in, &ps);
    EXPECT_TRUE(test::allClose(got["y"], want["y"])) << shape_str(s);
    // Check one element by hand: (x - mean) / sqrt(var + eps) * gamma + beta.
    const float *xv = in["x"].data<float>();
    int64_t inner = numel(s) / (s[0] * s[1]);
    int64_t i = numel(s) - 1, c = (i / inner) % s[1];
    auto val = [&](int k) { return ps[k].second.data<float>()[c]; };
    double expect = (xv[i] - val(2)) / std::sqrt(val(3) + 1e-5) * val(0) + val(1);
    EXPECT_NEAR(got["y"].data<float>()[i], expect, 1e-5 * (1 + std::fabs(expect)));
  }
}

// The training form of a batch norm of rank >= 3 is one op,
// soma.batch_norm_train, computed a channel at a time: checked against
// the formula in double precision, with the batch's mean and biased
// variance, and the running statistics' update. Planes of 63 (vectors
// and a masked rest), of 144 with enough work for threads, rank 3.
TEST(BatchNorm, TrainingFormMatchesTheFormula) {
  for (Shape s : {Shape{3, 5, 7, 9}, Shape{8, 16, 12, 12}, Shape{4, 3, 17}}) {
    Graph g("bn");
    Tensor x = g.input("x", s);
    g.output("y", nn::batch_norm(x, {.momentum = 0.25}));
    NamedArrays ps = randomParams(g, 3);
    std::map<std::string, Array> in{{"x", test::randomF32(s, -2, 2, 9)}};
    test::TempDir dir("bn_train");
    CompileOptions co;
    co.dump = "fused";
    co.dump_dir = dir.str();
    co.mode = Mode::train;
    co.use_environment = false;
    Inference fn = compile_inference(g, co);
    EXPECT_THAT(read_file(dir / "20-fused.mlir"), ::testing::HasSubstr("soma.batch_norm_train")) << shape_str(s);
    fn.set_params(ps);
    // (The call updates the running statistics in place: keep the old ones.)
    std::vector<std::vector<double>> before;
    for (auto &[name, a] : ps)
      before.emplace_back(a.data<float>(), a.data<float>() + a.numel());
    Array y = fn.run(in)["y"];
    int64_t C = s[1], S = numel(s) / (s[0] * C);
    double M = static_cast<double>(s[0] * S);
    const float *xv = in["x"].data<float>();
    std::vector<double> mean(C), var(C);
    auto each = [&](auto f) {
      for (int64_t n = 0; n < s[0]; ++n)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t p = 0; p < S; ++p)
            f(c, (n * C + c) * S + p);
    };
    each([&](int64_t c, int64_t i) { mean[c] += xv[i] / M; });
    each([&](int64_t c, int64_t i) { var[c] += (xv[i] - mean[c]) * (xv[i] - mean[c]) / M; });
    Array want(DType::f32, s);
    auto param = [&](int k, int64_t c) { return before[k][c]; };
    each([&](int64_t c, int64_t i) {
      want.data<float>()[i] = static_cast<float>((xv[i] - mean[c]) / std::sqrt(var[c] + 1e-5) * param(0, c) + param(1, c));
    });
    EXPECT_TRUE(test::allClose(y, want, 2e-5)) << shape_str(s);
    // running = 0.75 running + 0.25 batch (the variance unbiased)
    int running = 0;
    for (auto &[name, a] : fn.params()) {
      bool isMean = name == "bn0.running_mean", isVar = name == "bn0.running_var";
      if (!isMean && !isVar)
        continue;
      ++running;
      for (int64_t c = 0; c < C; ++c) {
        double batch = isMean ? mean[c] : var[c] * M / (M - 1);
        double expect = 0.75 * param(isMean ? 2 : 3, c) + 0.25 * batch;
        EXPECT_NEAR(a.data<float>()[c], expect, 1e-5 * (1 + std::fabs(expect))) << name << " " << c;
      }
    }
    EXPECT_EQ(running, 2) << "bn0.running_mean and bn0.running_var among the parameters";
  }
}

TEST(BatchNorm, TrainingFormGradientsMatchFiniteDifferences) {
  // Planes of 9 (with 16 lanes one masked vector) and of 35 (full vectors
  // and a rest); the gradient op is soma.batch_norm_grad (lit:
  // autodiff.mlir and lower-to-linalg.mlir check its form).
  for (Shape s : {Shape{4, 3, 3, 3}, Shape{2, 3, 5, 7}}) {
    Graph g("bn", 1);
    Tensor x = g.input("x", s);
    Tensor y = nn::batch_norm(x);
    g.output("loss", sum(y * constant(g, test::randomF32(s, -1, 1, 5))));
    GradientCheckOptions o;
    o.grad.inputs = true;
    o.samples_per_tensor = 0;
    o.inputs["x"] = test::randomF32(s, -2, 2, 6);
    GradientCheckReport r = check_gradients(g, o);
    EXPECT_TRUE(r.passed) << r.str();
    // gamma, beta and x get gradients; the running statistics do not.
    std::vector<std::string> names;
    for (auto &e : r.entries)
      names.push_back(e.name);
    EXPECT_THAT(names, ::testing::UnorderedElementsAre("grad_bn0.weight", "grad_bn0.bias", "grad_x"));
  }
}

// The compiled batch_norm_grad on threads (16 channels of 8 x 144) and
// after a ReLU, as in a ResNet, against the interpreter's gradient (which
// the finite differences above check).
TEST(BatchNorm, CompiledTrainingGradientsMatchTheInterpreter) {
  Shape s{8, 16, 12, 12};
  Graph g("bn", 1);
  Tensor x = g.input("x", s);
  Tensor y = relu(nn::batch_norm(x));
  g.output("loss", sum(y * constant(g, test::randomF32(s, -1, 1, 5))));
  std::map<std::string, Array> in{{"x", test::randomF32(s, -2, 2, 6)}};
  test::TempDir dir("bn_grad");
  GradientOptions opts{.loss = "loss", .inputs = true};
  auto got = compile_gradients(g, opts, {.dump = "fused", .dump_dir = dir.str(), .use_environment = false}).run(in);
  EXPECT_THAT(read_file(dir / "20-fused.mlir"), ::testing::HasSubstr("soma.batch_norm_grad"));
  auto want = interpret_gradients(g, in, nullptr, opts);
  for (const char *name : {"grad_x", "grad_bn0.weight", "grad_bn0.bias", "loss"})
    EXPECT_TRUE(test::allClose(got[name], want[name], 1e-4)) << name;
}

TEST(BatchNorm, TrainingStepUpdatesTheRunningStatistics) {
  Graph g("bn");
  Tensor x = g.input("x", {4, 2});
  Tensor y = nn::batch_norm(x, {.momentum = 0.25});
  Tensor loss = sum(y * y);
  TrainStep step = compile_training(g, loss, optim::SGD{{.lr = 0.0}});
  Array xs = Array::f32({4, 2}, {1, 10, 2, 20, 3, 30, 6, 40});
  step.run({{"x", xs}});
  // Channel 0: mean 3, unbiased var ((4 + 1 + 0 + 9) / 3) = 14/3.
  // Channel 1: mean 25, unbiased var ((225 + 25 + 25 + 225) / 3) = 500/3.
  const float *rm = nullptr, *rv = nullptr;
  for (auto &[name, a] : step.params()) {
    if (name == "bn0.running_mean")
      rm = a.data<float>();
    if (name == "bn0.running_var")
      rv = a.data<float>();
  }
  ASSERT_TRUE(rm && rv);
  EXPECT_NEAR(rm[0], 0.25 * 3, 1e-5);
  EXPECT_NEAR(rm[1], 0.25 * 25, 1e-5);
  EXPECT_NEAR(rv[0], 0.75 * 1 + 0.25 * 14.0 / 3, 1e-5);
  EXPECT_NEAR(rv[1], 0.75 * 1 + 0.25 * 500.0 / 3, 1e-3);
  // No optimizer state for the buffers.
  for (auto &[name, a] : step.states())
    EXPECT_EQ(name.find("running"), std::string::npos) << name;
}

TEST(BatchNorm, ANetworkWithBatchNormTrains) {
  Graph g("bnnet", 2);
  Tensor x = g.input("x", {32, 8});
  Tensor yl = g.input("y", {32}, DType::i32);
  Tensor h = relu(nn::batch_norm(nn::dense(x, 16)));
  Tensor loss = softmax_cross_entropy(nn::dense(h, 3), yl);
  TrainStep step = compile_training(g, loss, optim::Adam{{.lr = 0.01}});
  data::Dataset d{Array(DType::f32, {256, 8}), Array(DType::i32, {256})};
  std::mt19937 gen(1);
  std::normal_distribution<float> noise(0, 0.5f);
  for (int i = 0; i < 256; ++i) {
    d.y.data<int32_t>()[i] = i % 3;
    for (int j = 0; j < 8; ++j)
      d.x.data<float>()[i * 8 + j] = (j % 3 == i % 3 ? 2.0f : 0.0f) + 5.0f + noise(gen);
  }
  data::Loader train(d, 32, true, 1);
  data::Loader test(d, 32, false, 0, data::LastBatch::pad_wrap);
  FitOptions o;
  o.epochs = 6;
  o.progress = false;
  o.out = nullptr;
  auto h2 = fit(step, train, &test, o);
  EXPECT_GT(h2.back().test_accuracy, 0.95); // evaluated with running statistics
}

TEST(BatchNorm, Errors) {
  Graph g("t");
  EXPECT_SOMA_ERROR(nn::batch_norm(g.input("v", {5})), "batch_norm: input must be [N, C, ...], got f32[5]");
  EXPECT_SOMA_ERROR(parse(R"(module @g {
  func.func @g(%x: tensor<2x3xf32> {soma.input = "x"}, %s: tensor<2xf32> {soma.input = "s"}) -> (tensor<2x3xf32> {soma.output = "y"}) {
    %0 = soma.batch_norm %x, %s, %s, %s, %s : (tensor<2x3xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<2x3xf32>
    return %0 : tensor<2x3xf32>
  }
})"), "batch_norm: scale must be [3] for input [2,3], got [2]");
}

} // namespace
