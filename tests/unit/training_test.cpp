//===- training_test.cpp - Compiled optimizers, checkpoints, resume, errors ===//

#include "test_util.h"

#include "../runtime/optim_reference.h"

#include <cstring>
#include <fstream>

using namespace soma;
namespace ref = soma::optim::reference;

namespace {

// A loss with a known gradient for two parameters:
//   L = sum(w1 * c1) + 0.5 sum(w1^2) + sum(w2 * c2) + 0.25 sum(w2^4)
//   dL/dw1 = c1 + w1,   dL/dw2 = c2 + w2^3
const std::vector<float> kC1 = {0.5f, -1.0f, 0.25f, 2.0f, -0.75f, 0.1f};
const std::vector<float> kC2 = {-0.3f, 0.8f, 1.5f, -2.0f};

struct Problem {
  Graph g{"opt", 5};
  Tensor loss;
  Problem() {
    Tensor w1 = g.param("w1", {2, 3}, init::uniform(-1, 1));
    Tensor w2 = g.param("w2", {4}, init::uniform(-1, 1));
    Tensor c1 = constant(g, Array::f32({2, 3}, kC1));
    Tensor c2 = constant(g, Array::f32({4}, kC2));
    loss = sum(w1 * c1) + 0.5f * sum(w1 * w1) + sum(w2 * c2) + 0.25f * sum(w2 * w2 * w2 * w2);
  }
};

std::vector<float> values(const Array &a) {
  return std::vector<float>(a.data<float>(), a.data<float>() + a.numel());
}

struct OptCase {
  std::string name;
  optim::Optimizer opt;
  optim::Schedule schedule;
};
std::ostream &operator<<(std::ostream &os, const OptCase &c) { return os << c.name; }

std::vector<OptCase> optCases() {
  using namespace optim;
  std::vector<OptCase> c;
  c.push_back({"sgd", SGD{{.lr = 0.1}}, {}});
  c.push_back({"momentum", Momentum{{.lr = 0.05}, 0.9}, {}});
  c.push_back({"nesterov", Nesterov{{.lr = 0.05}, 0.9}, {}});
  c.push_back({"adagrad", AdaGrad{{.lr = 0.1}, 1e-8, 0.1}, {}});
  c.push_back({"rmsprop", RMSProp{{.lr = 0.01}, 0.9, 1e-8}, {}});
  AdaDelta ad{{.lr = 1.0}};
  c.push_back({"adadelta", ad, {}});
  c.push_back({"adam", Adam{{.lr = 0.01}}, {}});
  Adam inside{{.lr = 0.01}};
  inside.eps_inside_sqrt = true;
  inside.eps = 1e-4;
  c.push_back({"adam_eps_inside", inside, {}});
  c.push_back({"adamax", AdaMax{}, {}});
  c.push_back({"nadam", NAdam{{.lr = 0.01}}, {}});
  AdamW aw;
  aw.lr = 0.01;
  aw.weight_decay = 0.1;
  c.push_back({"adamw", aw, {}});
  c.push_back({"sgd_l2_l1", SGD{{.lr = 0.1, .l2 = 0.01, .l1 = 0.005}}, {}});
  c.push_back({"sgd_clip_value", SGD{{.lr = 0.1, .clip_value = 0.5}}, {}});
  c.push_back({"adam_clip_norm", Adam{{.lr = 0.01, .clip_norm = 1.0}}, {}});
  c.push_back({"momentum_step_decay", Momentum{{.lr = 0.05}, 0.9}, Schedule::step_decay(2, 0.5)});
  c.push_back({"sgd_cosine_warmup", SGD{{.lr = 0.1}}, Schedule::cosine_with_restarts(3, 0.01).with_warmup(2)});
  return c;
}

class CompiledOptimizer : public ::testing::TestWithParam<OptCase> {};

TEST_P(CompiledOptimizer, MatchesTheReferenceOverSteps) {
  const OptCase &tc = GetParam();
  Problem p;
  TrainStep step = compile_training(p.g, p.loss, tc.opt, {.schedule = tc.schedule});
  std::vector<float> w1 = values(step.params()[0].second), w2 = values(step.params()[1].second);
  ref::State state;
  for (int s = 0; s < 6; ++s) {
    double lr = step.lr();
    EXPECT_DOUBLE_EQ(lr, tc.schedule.lr(optim::common(tc.opt).lr, s));
    step.run({});
    std::vector<float> g1(6), g2(4);
    for (int i = 0; i < 6; ++i)
      g1[i] = kC1[i] + w1[i];
    for (int i = 0; i < 4; ++i)
      g2[i] = kC2[i] + w2[i] * w2[i] * w2[i];
    ref::step(tc.opt, lr, {&w1, &w2}, {g1, g2}, state);
    std::vector<float> got1 = values(step.params()[0].second), got2 = values(step.params()[1].second);
    for (int i = 0; i < 6; ++i)
      ASSERT_NEAR(got1[i], w1[i], 2e-5 * (1 + std::fabs(w1[i]))) << "w1[" << i << "] after step " << s + 1;
    for (int i = 0; i < 4; ++i)
      ASSERT_NEAR(got2[i], w2[i], 2e-5 * (1 + std::fabs(w2[i]))) << "w2[" << i << "] after step " << s + 1;
    // Keep both on the same trajectory (the compiled values are f32 too).
    w1 = got1;
    w2 = got2;
  }
  EXPECT_EQ(step.step(), 6);
}

INSTANTIATE_TEST_SUITE_P(All, CompiledOptimizer, ::testing::ValuesIn(optCases()),
                         [](const ::testing::TestParamInfo<OptCase> &info) { return info.param.name; });

// A small classification problem: 3 Gaussian blobs in 8 dimensions.
data::Dataset blobs(int64_t n, uint32_t seed) {
  data::Dataset d{Array(DType::f32, {n, 8}), Array(DType::i32, {n})};
  std::mt19937 gen(seed);
  std::normal_distribution<float> noise(0, 0.5f);
  for (int64_t i = 0; i < n; ++i) {
    int32_t c = static_cast<int32_t>(i % 3);
    d.y.data<int32_t>()[i] = c;
    for (int j = 0; j < 8; ++j)
      d.x.data<float>()[i * 8 + j] = (j % 3 == c ? 2.0f : 0.0f) + noise(gen);
  }
  return d;
}

struct Classifier {
  Graph g{"blobs", 11};
  Tensor loss;
  explicit Classifier(int64_t hidden = 16) {
    Tensor x = g.input("x", {32, 8});
    Tensor y = g.input("y", {32}, DType::i32);
    Tensor h = relu(nn::dense(x, hidden, {.weight_init = init::he_uniform()}));
    loss = softmax_cross_entropy(nn::dense(h, 3), y);
  }
};

TEST(Training, LearnsAndCountsAccuracy) {
  Classifier m;
  TrainStep step = compile_training(m.g, m.loss, optim::Adam{{.lr = 0.01}});
  data::Loader train(blobs(256, 1), 32, true, 3);
  data::Loader test(blobs(100, 2), 32, false, 0, data::LastBatch::pad_wrap);
  FitOptions o;
  o.epochs = 8;
  o.progress = false;
  o.out = nullptr;
  auto history = fit(step, train, &test, o);
  ASSERT_EQ(history.size(), 8u);
  EXPECT_LT(history.back().train_loss, history.front().train_loss);
  EXPECT_GT(history.back().test_accuracy, 0.95);
  StepResult r = evaluate(step, test);
  EXPECT_EQ(r.examples, 100); // every test example exactly once
}

bool sameBytes(const NamedArrays &a, const NamedArrays &b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.nbytes() != b[i].second.nbytes() ||
        std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()) != 0)
      return false;
  return true;
}

TEST(Training, ResumeIsBitExact) {
  test::TempDir dir("resume");
  data::Loader train(blobs(256, 1), 32, true, 7); // 8 batches per epoch
  FitOptions o;
  o.epochs = 3;
  o.progress = false;
  o.out = nullptr;

  Classifier a;
  TrainStep straight = compile_training(a.g, a.loss, optim::Adam{{.lr = 0.01}});
  fit(straight, train, nullptr, o);

  // Stop in the middle of the second epoch, checkpoint, resume in a new step.
  Classifier b;
  TrainStep first = compile_training(b.g, b.loss, optim::Adam{{.lr = 0.01}});
  FitOptions part = o;
  part.max_steps = 12;
  part.checkpoint = dir / "ckpt.safetensors";
  fit(first, train, nullptr, part);
  EXPECT_EQ(first.step(), 12);

  Classifier c;
  TrainStep resumed = compile_training(c.g, c.loss, optim::Adam{{.lr = 0.01}});
  FitOptions rest = o;
  rest.resume = dir / "ckpt.safetensors";
  fit(resumed, train, nullptr, rest);
  EXPECT_EQ(resumed.step(), straight.step());
  EXPECT_TRUE(sameBytes(resumed.params(), straight.params()));
  EXPECT_TRUE(sameBytes(resumed.states(), straight.states()));
}

TEST(Training, CheckpointOfAnotherModelNamesTheMismatch) {
  test::TempDir dir("otherckpt");
  Classifier wide(32);
  TrainStep w = compile_training(wide.g, wide.loss, optim::SGD{});
  w.save(dir / "wide.safetensors");
  Classifier narrow(16);
  TrainStep n = compile_training(narrow.g, narrow.loss, optim::SGD{});
  NamedArrays before = n.params();
  std::vector<float> saved = values(before[0].second);
  EXPECT_SOMA_ERROR(n.load(dir / "wide.safetensors"),
                    "parameter 'dense0.weight' is f32[8,32] in the checkpoint but f32[8,16] in the model");
  EXPECT_EQ(values(n.params()[0].second), saved); // nothing was changed
  TrainStep adam = compile_training(narrow.g, narrow.loss, optim::Adam{});
  n.save(dir / "sgd.safetensors");
  EXPECT_SOMA_ERROR(adam.load(dir / "sgd.safetensors"), "written with optimizer sgd, but this run uses adam");
  Graph other("other");
  Tensor loss = sum(other.param("p", {2}, init::ones()));
  TrainStep o = compile_training(other, loss, optim::SGD{});
  EXPECT_SOMA_ERROR(o.load(dir / "sgd.safetensors"), "checkpoint of model 'blobs', not of 'other'");
}

TEST(Training, CorruptCheckpointIsAnError) {
  test::TempDir dir("corrupt");
  Classifier m;
  TrainStep step = compile_training(m.g, m.loss, optim::SGD{});
  step.save(dir / "c.safetensors");
  std::string bytes = read_file(dir / "c.safetensors");
  write_file_atomic(dir / "t.safetensors", bytes.substr(0, bytes.size() / 2));
  EXPECT_SOMA_ERROR(step.load(dir / "t.safetensors"), "t.safetensors");
  write_file_atomic(dir / "g.safetensors", "not a checkpoint at all");
  EXPECT_SOMA_ERROR(step.load(dir / "g.safetensors"), "g.safetensors");
  EXPECT_SOMA_ERROR(step.load(dir / "missing.safetensors"), "missing.safetensors");
}

TEST(Training, NaNLossStopsWithTheStepAndKeepsTheCheckpoint) {
  test::TempDir dir("nan");
  Classifier m;
  TrainStep step = compile_training(m.g, m.loss, optim::SGD{{.lr = 0.1}});
  data::Dataset d = blobs(64, 1);
  d.x.data<float>()[40 * 8] = std::numeric_limits<float>::quiet_NaN(); // example 40
  data::Loader train(d, 32, false);
  FitOptions o;
  o.epochs = 2;
  o.progress = false;
  o.out = nullptr;
  o.checkpoint = dir / "last.safetensors";
  step.save(o.checkpoint);
  std::string before = read_file(o.checkpoint);
  EXPECT_SOMA_ERROR(fit(step, train, nullptr, o), "the loss is NaN at step 2", "last.safetensors is kept");
  EXPECT_EQ(read_file(o.checkpoint), before);
}

TEST(Training, LossMustBeAScalarOfTheGraph) {
  Graph g("t");
  Tensor w = g.param("w", {3}, init::ones());
  EXPECT_SOMA_ERROR(compile_training(g, w * w, optim::SGD{}), "the loss must be a scalar f32 (rank 0), got f32[3]");
  Graph h("u");
  EXPECT_SOMA_ERROR(compile_training(h, sum(w), optim::SGD{}), "is not a tensor of graph 'u'");
}

TEST(Training, MissingBatchInputIsAnError) {
  Classifier m;
  TrainStep step = compile_training(m.g, m.loss, optim::SGD{});
  EXPECT_SOMA_ERROR(step.run({{"x", Array(DType::f32, {32, 8})}}), "input 'y' (i32[32]) is missing from the batch");
  EXPECT_SOMA_ERROR(step.run({{"x", Array(DType::f32, {16, 8})}, {"y", Array(DType::i32, {32})}}),
                    "input 'x': expected f32[32,8], got f32[16,8]");
}

TEST(Training, DumpsTheTrainingFunction) {
  test::TempDir dir("traindump");
  Classifier m;
  compile_training(m.g, m.loss, optim::Adam{},
                   {.compile = {.dump = "built,train,lowered", .dump_dir = dir.str(), .use_environment = false}});
  std::string train = read_file(dir / "10-train.mlir");
  EXPECT_THAT(train, ::testing::HasSubstr("soma.softmax_cross_entropy_grad"));
  EXPECT_THAT(train, ::testing::HasSubstr("soma.update = \"dense0.weight\""));
  EXPECT_THAT(train, ::testing::HasSubstr("soma.state = \"m/dense0.weight\""));
  EXPECT_THAT(read_file(dir / "00-built.mlir"), ::testing::Not(::testing::HasSubstr("soma.update")));
}

} // namespace
