//===- dropout_test.cpp - random_uniform, dropout and the train/eval modes --===//

#include "test_util.h"

#include "soma/random.h"

using namespace soma;

namespace {

/// "y = random_uniform(counter)" of shape [rows, cols] in MLIR text.
std::string randomModule(int64_t rows, int64_t cols, int64_t seed) {
  std::string t = "tensor<" + std::to_string(rows) + "x" + std::to_string(cols) + "xf32>";
  return "module @r {\n  func.func @r(%c: tensor<f32> {soma.input = \"c\"}) -> (" + t +
         " {soma.output = \"y\"}) {\n    %0 = soma.random_uniform %c {shape = array<i64: " +
         std::to_string(rows) + ", " + std::to_string(cols) + ">, seed = " + std::to_string(seed) +
         " : i64} : tensor<f32> -> " + t + "\n    return %0 : " + t + "\n  }\n}\n";
}

/// The documented value of random_uniform at position i.
float expectedUniform(uint64_t seed, uint32_t counter, uint32_t i) {
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  const uint32_t ctr[4] = {i, counter, 0x736f6d61u, 0};
  uint32_t w[4];
  detail::philox4x32_10(key, ctr, w);
  return static_cast<float>(w[0] >> 8) * 0x1p-24f;
}

Array scalar(float v) { return Array::f32({}, {v}); }

TEST(RandomUniform, CompiledAndInterpretedBitsAreTheDocumentedPhiloxWords) {
  // 37 x 1000 elements: enough for several threads; odd sizes.
  for (int64_t seed : {int64_t{0}, int64_t{12345}, int64_t{0x7123456789abcdef}}) {
    Graph g = parse(randomModule(37, 1000, seed));
    Inference fn = compile_inference(g);
    for (float counter : {0.0f, 1.0f, 70000.0f}) {
      std::map<std::string, Array> in{{"c", scalar(counter)}};
      Array got = fn.run(in)["y"];
      Array ref = interpret(g, in)["y"];
      const float *a = got.data<float>(), *b = ref.data<float>();
      for (int64_t i = 0; i < got.numel(); ++i) {
        float want = expectedUniform(static_cast<uint64_t>(seed), static_cast<uint32_t>(counter),
                                     static_cast<uint32_t>(i));
        ASSERT_EQ(a[i], want) << "seed " << seed << " counter " << counter << " element " << i;
        ASSERT_EQ(b[i], want) << "interpreter, element " << i;
      }
    }
  }
}

TEST(RandomUniform, IsUniformOnZeroOne) {
  Graph g = parse(randomModule(200, 500, 7));
  Array u = compile_inference(g).run({{"c", scalar(3)}})["y"];
  double sum = 0, sq = 0, lo = 1, hi = 0;
  for (int64_t i = 0; i < u.numel(); ++i) {
    double v = u.data<float>()[i];
    sum += v;
    sq += v * v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  double n = static_cast<double>(u.numel()), mean = sum / n, var = sq / n - mean * mean;
  EXPECT_GE(lo, 0.0);
  EXPECT_LT(hi, 1.0);
  // Mean 1/2 and variance 1/12, within 5 standard errors.
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(var, 1.0 / 12, 5 * std::sqrt(1.0 / 180 / n));
}

TEST(RandomUniform, BadShapesAndCountersAreErrors) {
  EXPECT_SOMA_ERROR(parse(randomModule(0, 3, 1)), "random_uniform", "dimension < 1");
  EXPECT_SOMA_ERROR(parse(randomModule(70000, 70000, 1)), "random_uniform", "2^32");
  std::string vectorCounter =
      "module @r {\n  func.func @r(%c: tensor<2xf32> {soma.input = \"c\"}) -> (tensor<3xf32> "
      "{soma.output = \"y\"}) {\n    %0 = soma.random_uniform %c {shape = array<i64: 3>, seed = 1 : "
      "i64} : tensor<2xf32> -> tensor<3xf32>\n    return %0 : tensor<3xf32>\n  }\n}\n";
  EXPECT_SOMA_ERROR(parse(vectorCounter), "random_uniform", "counter must be a scalar");
}

Graph dropoutGraph(double rate, Shape shape = {64, 1000}) {
  Graph g("drop", 3);
  Tensor x = g.input("x", shape);
  g.output("y", dropout(x, rate));
  return g;
}

Array ones(const Shape &s) {
  Array a(DType::f32, s);
  for (int64_t i = 0; i < a.numel(); ++i)
    a.data<float>()[i] = 1.0f;
  return a;
}

TEST(Dropout, IsTheIdentityInEvalModeAndInTheInterpreter) {
  Graph g = dropoutGraph(0.5, {3, 7});
  Array x = test::randomF32({3, 7}, -1, 1, 1);
  Array y = compile_inference(g).run({{"x", x}})["y"];
  EXPECT_EQ(std::memcmp(y.raw(), x.raw(), x.numel() * sizeof(float)), 0);
  Array r = interpret(g, {{"x", x}})["y"];
  EXPECT_EQ(std::memcmp(r.raw(), x.raw(), x.numel() * sizeof(float)), 0);
}

TEST(Dropout, TrainModeDropsAtTheRateAndScalesTheRest) {
  const double rate = 0.3;
  Graph g = dropoutGraph(rate);
  Inference fn = compile_inference(g, {.mode = Mode::train});
  Array x = ones({64, 1000});
  Array first = fn.run({{"x", x}})["y"], second = fn.run({{"x", x}})["y"];
  int64_t dropped = 0, same = 0, n = x.numel();
  for (int64_t i = 0; i < n; ++i) {
    float a = first.data<float>()[i], b = second.data<float>()[i];
    ASSERT_TRUE(a == 0.0f || a == static_cast<float>(1.0 / (1.0 - rate))) << a;
    dropped += a == 0.0f;
    same += (a == 0.0f) == (b == 0.0f);
  }
  double frac = static_cast<double>(dropped) / static_cast<double>(n);
  EXPECT_NEAR(frac, rate, 5 * std::sqrt(rate * (1 - rate) / static_cast<double>(n)));
  // Each call draws a new, independent mask: masks agree with probability
  // rate^2 + (1 - rate)^2 = 0.58, not 1.
  double agree = static_cast<double>(same) / static_cast<double>(n);
  EXPECT_NEAR(agree, rate * rate + (1 - rate) * (1 - rate), 0.02);
  // A fresh compilation draws the same first mask (the seed is the graph's).
  Array again = compile_inference(g, {.mode = Mode::train}).run({{"x", x}})["y"];
  EXPECT_EQ(std::memcmp(again.raw(), first.raw(), n * sizeof(float)), 0);
}

TEST(Dropout, SeedsDifferBetweenDropoutsAndFollowTheGraphSeed) {
  auto masks = [](uint64_t graphSeed) {
    Graph g("two", graphSeed);
    Tensor x = g.input("x", {16, 64});
    g.output("a", dropout(x, 0.5));
    g.output("b", dropout(x, 0.5));
    auto out = compile_inference(g, {.mode = Mode::train}).run({{"x", ones({16, 64})}});
    return std::make_pair(out["a"], out["b"]);
  };
  auto [a0, b0] = masks(0);
  auto [a1, b1] = masks(1);
  auto differ = [](const Array &p, const Array &q) {
    return std::memcmp(p.raw(), q.raw(), p.numel() * sizeof(float)) != 0;
  };
  EXPECT_TRUE(differ(a0, b0));
  EXPECT_TRUE(differ(a0, a1));
}

TEST(Dropout, GradientsMatchFiniteDifferencesThroughTheMask) {
  // One example and 32 units: each unit is dropped or kept for the whole
  // batch, so its bias gradient is exactly 0 when dropped.
  Graph g("drop", 5);
  Tensor x = g.input("x", {1, 10});
  Tensor h = dropout(tanh(nn::dense(x, 32, {.name = "fc"})), 0.4);
  g.output("loss", sum(h * h));
  GradientCheckOptions o;
  o.grad.inputs = true;
  o.samples_per_tensor = 0;
  GradientCheckReport r = check_gradients(g, o);
  EXPECT_TRUE(r.passed) << r.str();
  // The gradient check uses the training form (the mask of step 0): about
  // 40% of the units are dropped and their gradients vanish.
  std::map<std::string, Array> in{{"x", test::randomF32({1, 10}, -1, 1, 2)}};
  auto grads = compile_gradients(g, {.inputs = true}).run(in);
  Array gb = grads["grad_fc.bias"];
  int zeros = 0;
  for (int64_t i = 0; i < gb.numel(); ++i)
    zeros += gb.data<float>()[i] == 0.0f;
  EXPECT_GT(zeros, 0);
  EXPECT_LT(zeros, gb.numel());
}

TEST(Dropout, TrainingStepDrawsNewMasksAndEvaluationIsDeterministic) {
  Graph g("drop", 2);
  Tensor x = g.input("x", {8, 20});
  Tensor y = g.input("y", {8}, DType::i32);
  Tensor logits = nn::dense(dropout(x, 0.5), 4, {.name = "fc"});
  g.output("logits", logits);
  Tensor loss = softmax_cross_entropy(logits, y);
  g.output("loss", loss);
  TrainStep step = compile_training(g, loss, optim::SGD{{.lr = 0.0}});
  std::map<std::string, Array> batch{{"x", test::randomF32({8, 20}, -1, 1, 3)},
                                     {"y", test::randomLabels({8}, 4, DType::i32, 4)}};
  // lr = 0: the parameters never change, so different losses come from
  // different masks.
  double l1 = step.run(batch).loss, l2 = step.run(batch).loss;
  EXPECT_NE(l1, l2);
  // The step count of the masks is a checkpointed state.
  bool found = false;
  for (auto &[name, a] : step.states())
    if (name == "soma.dropout.step") {
      found = true;
      EXPECT_EQ(a.data<float>()[0], 2.0f);
    }
  EXPECT_TRUE(found);
  // Evaluation runs without dropout: repeatable, and equal to inference.
  double e1 = step.evaluate(batch).loss, e2 = step.evaluate(batch).loss;
  EXPECT_EQ(e1, e2);
  Inference inf = compile_inference(g);
  inf.set_params(step.params());
  auto out = inf.run(batch);
  EXPECT_NEAR(out["loss"].data<float>()[0], e1, 1e-6);
}

TEST(Dropout, TrainingWithDropoutResumesBitExactly) {
  auto build = [] {
    Graph g("drop", 2);
    Tensor x = g.input("x", {8, 20});
    Tensor y = g.input("y", {8}, DType::i32);
    Tensor logits = nn::dense(dropout(relu(nn::dense(x, 16, {.name = "h"})), 0.5), 4, {.name = "fc"});
    g.output("logits", logits);
    Tensor loss = softmax_cross_entropy(logits, y);
    g.output("loss", loss);
    return compile_training(g, loss, optim::Adam{{.lr = 1e-2}});
  };
  std::map<std::string, Array> batch{{"x", test::randomF32({8, 20}, -1, 1, 3)},
                                     {"y", test::randomLabels({8}, 4, DType::i32, 4)}};
  test::TempDir dir("dropout-resume");
  TrainStep a = build();
  for (int i = 0; i < 3; ++i)
    a.run(batch);
  a.save(dir / "ckpt.safetensors");
  double wantNext = a.run(batch).loss;
  TrainStep b = build();
  b.load(dir / "ckpt.safetensors");
  EXPECT_EQ(b.run(batch).loss, wantNext);
}

TEST(Dropout, BatchNormInTrainModeUsesBatchStatisticsAndUpdatesRunningOnes) {
  Graph g("bn");
  Tensor x = g.input("x", {4, 2});
  g.output("y", nn::batch_norm(x, {.momentum = 0.25}));
  Array xs = Array::f32({4, 2}, {1, 10, 2, 20, 3, 30, 6, 40});
  Inference train = compile_inference(g, {.mode = Mode::train});
  Array y = train.run({{"x", xs}})["y"];
  // Batch statistics: each channel of y has mean 0 and (biased) variance ~1.
  for (int c = 0; c < 2; ++c) {
    double m = 0, v = 0;
    for (int i = 0; i < 4; ++i)
      m += y.data<float>()[i * 2 + c] / 4.0;
    for (int i = 0; i < 4; ++i)
      v += std::pow(y.data<float>()[i * 2 + c] - m, 2) / 4.0;
    EXPECT_NEAR(m, 0.0, 1e-5);
    EXPECT_NEAR(v, 1.0, 1e-3);
  }
  auto runningMean = [](NamedArrays &ps) -> const float * {
    for (auto &[name, a] : ps)
      if (name == "bn0.running_mean")
        return a.data<float>();
    return nullptr;
  };
  // The call updated the running mean in params(): 0.75 * 0 + 0.25 * 3.
  const float *rm = runningMean(train.params());
  ASSERT_NE(rm, nullptr);
  EXPECT_NEAR(rm[0], 0.75, 1e-6);
  // Eval mode leaves them alone (given clones, so that nothing is shared).
  Inference eval = compile_inference(g);
  NamedArrays copies;
  for (auto &[name, a] : train.params())
    copies.emplace_back(name, a.clone());
  eval.set_params(copies);
  eval.run({{"x", xs}});
  rm = runningMean(eval.params());
  ASSERT_NE(rm, nullptr);
  EXPECT_NEAR(rm[0], 0.75, 1e-6);
}

TEST(Dropout, BadRatesAreErrorsAtTheUsersLine) {
  Graph g("bad");
  Tensor x = g.input("x", {2, 3});
  EXPECT_SOMA_ERROR(dropout(x, 1.0), "dropout_test.cpp:", "dropout", "rate 1.000000 is not in [0, 1)");
  EXPECT_SOMA_ERROR(dropout(x, -0.1), "dropout", "is not in [0, 1)");
}

} // namespace
