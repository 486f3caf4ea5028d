//===- optim_test.cpp - Tests of schedules, names and reference updates ---===//

#include "optim_reference.h"
#include "soma/optim.h"
#include "test_util.h"

#include <array>
#include <cmath>
#include <numbers>
#include <tuple>
#include <utility>

namespace soma::optim {
namespace {

using reference::State;

//===----------------------------------------------------------------------===//
// Schedules
//===----------------------------------------------------------------------===//

TEST(OptimSchedule, Constant) {
  Schedule s = Schedule::constant();
  EXPECT_EQ(s.kind, Schedule::Kind::constant);
  for (int64_t t : {0, 1, 7, 1000000})
    EXPECT_DOUBLE_EQ(s.lr(0.1, t), 0.1) << "t=" << t;
  // A default-constructed Schedule is the constant one.
  EXPECT_DOUBLE_EQ(Schedule{}.lr(0.25, 3), 0.25);
}

TEST(OptimSchedule, StepDecay) {
  Schedule s = Schedule::step_decay(5, 0.5);
  EXPECT_EQ(s.kind, Schedule::Kind::step);
  // lr0 * 0.5^floor(t / 5)
  for (int64_t t : {0, 1, 4})
    EXPECT_DOUBLE_EQ(s.lr(0.1, t), 0.1) << "t=" << t;
  for (int64_t t : {5, 6, 9})
    EXPECT_DOUBLE_EQ(s.lr(0.1, t), 0.05) << "t=" << t;
  EXPECT_DOUBLE_EQ(s.lr(0.1, 10), 0.025);
  EXPECT_DOUBLE_EQ(s.lr(0.1, 14), 0.025);
  EXPECT_DOUBLE_EQ(s.lr(0.1, 15), 0.0125);
  // step_size 1 decays every step; gamma > 1 is allowed (it grows).
  EXPECT_DOUBLE_EQ(Schedule::step_decay(1, 0.1).lr(1.0, 3), 0.1 * 0.1 * 0.1);
  EXPECT_DOUBLE_EQ(Schedule::step_decay(2, 3.0).lr(1.0, 5), 9.0);
}

TEST(OptimSchedule, Exponential) {
  Schedule s = Schedule::exponential_decay(0.1);
  EXPECT_EQ(s.kind, Schedule::Kind::exponential);
  EXPECT_DOUBLE_EQ(s.lr(0.2, 0), 0.2);
  EXPECT_DOUBLE_EQ(s.lr(0.2, 1), 0.2 * std::exp(-0.1));
  EXPECT_DOUBLE_EQ(s.lr(0.2, 10), 0.2 / std::numbers::e);
  EXPECT_DOUBLE_EQ(s.lr(0.2, 30), 0.2 * std::exp(-3.0));
  // k = 0 is the constant schedule.
  EXPECT_DOUBLE_EQ(Schedule::exponential_decay(0.0).lr(0.2, 100), 0.2);
}

TEST(OptimSchedule, InverseTime) {
  Schedule s = Schedule::inverse_time_decay(0.5);
  EXPECT_EQ(s.kind, Schedule::Kind::inverse_time);
  // lr0 / (1 + 0.5 t)
  EXPECT_DOUBLE_EQ(s.lr(0.3, 0), 0.3);
  EXPECT_DOUBLE_EQ(s.lr(0.3, 1), 0.2);
  EXPECT_DOUBLE_EQ(s.lr(0.3, 2), 0.15);
  EXPECT_DOUBLE_EQ(s.lr(0.3, 6), 0.075);
  EXPECT_DOUBLE_EQ(Schedule::inverse_time_decay(0.0).lr(0.3, 100), 0.3);
}

TEST(OptimSchedule, CosineRestarts) {
  Schedule s = Schedule::cosine_with_restarts(10, 0.01);
  EXPECT_EQ(s.kind, Schedule::Kind::cosine_restarts);
  EXPECT_EQ(s.period, 10);
  EXPECT_EQ(s.lr_min, 0.01);
  const double lr0 = 0.1, mid = (0.1 + 0.01) / 2;
  // Phase t mod 11: lr0 at phase 0, the midpoint at 5, lr_min at 10, then
  // a restart at lr0.
  EXPECT_DOUBLE_EQ(s.lr(lr0, 0), lr0);
  EXPECT_NEAR(s.lr(lr0, 5), mid, 1e-15);
  EXPECT_DOUBLE_EQ(s.lr(lr0, 10), 0.01);
  EXPECT_DOUBLE_EQ(s.lr(lr0, 11), lr0);
  EXPECT_NEAR(s.lr(lr0, 16), mid, 1e-15);
  EXPECT_DOUBLE_EQ(s.lr(lr0, 21), 0.01);
  EXPECT_DOUBLE_EQ(s.lr(lr0, 22), lr0);
  // Phase 2: 0.01 + 0.045 * (1 + cos(pi / 5)), cos(36 deg) = (1 + sqrt5) / 4.
  EXPECT_NEAR(s.lr(lr0, 2), 0.01 + 0.045 * (1 + (1 + std::sqrt(5.0)) / 4),
              1e-15);
  EXPECT_NEAR(s.lr(lr0, 13), s.lr(lr0, 2), 1e-15);
  // Monotone within a cycle.
  for (int64_t t = 1; t <= 10; ++t)
    EXPECT_LT(s.lr(lr0, t), s.lr(lr0, t - 1)) << "t=" << t;

  // lr_min defaults to 0; period 1 alternates lr0, lr_min.
  Schedule one = Schedule::cosine_with_restarts(1);
  EXPECT_DOUBLE_EQ(one.lr(2.0, 0), 2.0);
  EXPECT_DOUBLE_EQ(one.lr(2.0, 1), 0.0);
  EXPECT_DOUBLE_EQ(one.lr(2.0, 2), 2.0);
  EXPECT_DOUBLE_EQ(one.lr(2.0, 3), 0.0);
}

TEST(OptimSchedule, Warmup) {
  Schedule s = Schedule::constant().with_warmup(4);
  EXPECT_EQ(s.warmup_steps, 4);
  // lr0 * (t + 1) / 4 while t < 4.
  EXPECT_DOUBLE_EQ(s.lr(0.1, 0), 0.025);
  EXPECT_DOUBLE_EQ(s.lr(0.1, 1), 0.05);
  EXPECT_DOUBLE_EQ(s.lr(0.1, 2), 0.075);
  EXPECT_DOUBLE_EQ(s.lr(0.1, 3), 0.1);
  EXPECT_DOUBLE_EQ(s.lr(0.1, 4), 0.1);
  EXPECT_DOUBLE_EQ(s.lr(0.1, 100), 0.1);

  // The warmup factor scales the decayed rate of the same t (the decay is
  // not delayed by the warmup).
  Schedule d = Schedule::step_decay(2, 0.5).with_warmup(3);
  EXPECT_EQ(d.kind, Schedule::Kind::step);
  EXPECT_DOUBLE_EQ(d.lr(0.3, 0), 0.3 * 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(d.lr(0.3, 1), 0.3 * 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(d.lr(0.3, 2), 0.15); // 0.3 * 0.5 * 3/3
  EXPECT_DOUBLE_EQ(d.lr(0.3, 3), 0.15);
  EXPECT_DOUBLE_EQ(d.lr(0.3, 4), 0.075);

  Schedule c = Schedule::cosine_with_restarts(10).with_warmup(2);
  EXPECT_DOUBLE_EQ(c.lr(1.0, 0), 0.5);
  EXPECT_NEAR(c.lr(1.0, 5), 0.5, 1e-15);

  // 0 and 1 warmup steps change nothing.
  Schedule e = Schedule::exponential_decay(0.1);
  for (int64_t t : {0, 1, 5}) {
    EXPECT_DOUBLE_EQ(e.with_warmup(0).lr(0.2, t), e.lr(0.2, t));
    EXPECT_DOUBLE_EQ(e.with_warmup(1).lr(0.2, t), e.lr(0.2, t));
  }
  // with_warmup copies; the original is unchanged.
  EXPECT_EQ(e.warmup_steps, 0);
}

TEST(OptimSchedule, InvalidParametersThrow) {
  EXPECT_SOMA_ERROR(Schedule::step_decay(0, 0.5), "step_size", "0");
  EXPECT_SOMA_ERROR(Schedule::step_decay(-3, 0.5), "step_size", "-3");
  EXPECT_SOMA_ERROR(Schedule::step_decay(5, 0.0), "gamma");
  EXPECT_SOMA_ERROR(Schedule::step_decay(5, -0.5), "gamma");
  EXPECT_SOMA_ERROR(Schedule::step_decay(5, std::nan("")), "gamma");
  EXPECT_SOMA_ERROR(Schedule::cosine_with_restarts(0), "period");
  EXPECT_SOMA_ERROR(Schedule::cosine_with_restarts(-1, 0.1), "period");
  EXPECT_SOMA_ERROR(Schedule::constant().with_warmup(-1), "warmup_steps");
  EXPECT_SOMA_ERROR(Schedule::exponential_decay(-0.1), "k");
  EXPECT_SOMA_ERROR(Schedule::inverse_time_decay(-1.0), "k");
  for (const Schedule &s :
       {Schedule::constant(), Schedule::step_decay(2, 0.5),
        Schedule::exponential_decay(0.1), Schedule::inverse_time_decay(0.1),
        Schedule::cosine_with_restarts(3)})
    EXPECT_SOMA_ERROR(s.lr(0.1, -1), "t must be >= 0", "-1");
}

TEST(OptimSchedule, FieldsAreCheckedByLr) {
  // The fields are public: lr() checks what the factories check.
  Schedule s = Schedule::step_decay(5, 0.5);
  s.step_size = 0;
  EXPECT_SOMA_ERROR(s.lr(0.1, 3), "step_size");
  s = Schedule::step_decay(5, 0.5);
  s.gamma = 0.0;
  EXPECT_SOMA_ERROR(s.lr(0.1, 3), "gamma");
  s = Schedule::cosine_with_restarts(4);
  s.period = 0;
  EXPECT_SOMA_ERROR(s.lr(0.1, 3), "period");
  s = Schedule::constant();
  s.warmup_steps = -2;
  EXPECT_SOMA_ERROR(s.lr(0.1, 3), "warmup_steps");
  s = Schedule::inverse_time_decay(0.5);
  s.k = -1.0;
  EXPECT_SOMA_ERROR(s.lr(0.1, 1), "k");
  // Fields a kind does not use are not checked.
  s = Schedule::constant();
  s.step_size = 0;
  s.period = 0;
  EXPECT_DOUBLE_EQ(s.lr(0.1, 3), 0.1);
}

//===----------------------------------------------------------------------===//
// Names and common settings
//===----------------------------------------------------------------------===//

const std::array<const char *, 10> kAllNames = {
    "sgd",      "momentum", "nesterov", "adagrad", "rmsprop",
    "adadelta", "adam",     "adamax",   "nadam",   "adamw"};

TEST(OptimNames, RoundTrip) {
  for (size_t i = 0; i < kAllNames.size(); ++i) {
    Optimizer opt = by_name(kAllNames[i]);
    EXPECT_EQ(opt.index(), i) << kAllNames[i];
    EXPECT_EQ(name(opt), kAllNames[i]);
    // And from a default-constructed alternative back to the same index.
    EXPECT_EQ(by_name(name(opt)).index(), i);
  }
  EXPECT_EQ(name(SGD{}), "sgd");
  EXPECT_EQ(name(Momentum{}), "momentum");
  EXPECT_EQ(name(Nesterov{}), "nesterov");
  EXPECT_EQ(name(AdaGrad{}), "adagrad");
  EXPECT_EQ(name(RMSProp{}), "rmsprop");
  EXPECT_EQ(name(AdaDelta{}), "adadelta");
  EXPECT_EQ(name(Adam{}), "adam");
  EXPECT_EQ(name(AdaMax{}), "adamax");
  EXPECT_EQ(name(NAdam{}), "nadam");
  EXPECT_EQ(name(AdamW{}), "adamw");
}

TEST(OptimNames, ByNameDefaultsAndLr) {
  // lr <= 0 keeps each optimizer's default.
  EXPECT_DOUBLE_EQ(common(by_name("sgd")).lr, 1e-3);
  EXPECT_DOUBLE_EQ(common(by_name("adadelta")).lr, 1.0);
  EXPECT_DOUBLE_EQ(common(by_name("adamax", 0.0)).lr, 2e-3);
  EXPECT_DOUBLE_EQ(common(by_name("adam", -1.0)).lr, 1e-3);
  for (const char *n : kAllNames)
    EXPECT_DOUBLE_EQ(common(by_name(n, 0.25)).lr, 0.25) << n;
  // Other settings keep their defaults.
  Optimizer w = by_name("adamw", 0.01);
  ASSERT_TRUE(std::holds_alternative<AdamW>(w));
  EXPECT_DOUBLE_EQ(std::get<AdamW>(w).weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(std::get<AdamW>(w).beta2, 0.999);
  EXPECT_FALSE(std::get<AdamW>(w).eps_inside_sqrt);
  EXPECT_DOUBLE_EQ(std::get<Momentum>(by_name("momentum")).momentum, 0.9);
  EXPECT_DOUBLE_EQ(common(w).l2, 0.0);
}

TEST(OptimNames, UnknownNameListsAll) {
  EXPECT_SOMA_ERROR(by_name("adamm"), "adamm", "sgd", "momentum", "nesterov",
                    "adagrad", "rmsprop", "adadelta", "adam", "adamax", "nadam",
                    "adamw");
  EXPECT_SOMA_ERROR(by_name(""), "unknown optimizer");
  EXPECT_SOMA_ERROR(by_name("Adam"), "Adam"); // names are lower-case
}

TEST(OptimNames, Common) {
  Optimizer opt = AdamW{};
  common(opt).lr = 0.5;
  common(opt).clip_norm = 2.0;
  const Optimizer &cref = opt;
  EXPECT_EQ(&common(cref), &common(opt));
  EXPECT_DOUBLE_EQ(common(cref).lr, 0.5);
  EXPECT_DOUBLE_EQ(std::get<AdamW>(opt).lr, 0.5);
  EXPECT_DOUBLE_EQ(std::get<AdamW>(opt).clip_norm, 2.0);
  for (const char *n : kAllNames) {
    Optimizer o = by_name(n);
    common(o).l1 = 0.125;
    EXPECT_DOUBLE_EQ(common(std::as_const(o)).l1, 0.125) << n;
  }
}

//===----------------------------------------------------------------------===//
// The reference implementation: three steps by hand
//===----------------------------------------------------------------------===//
//
// One parameter with two elements, w0 = {1, -0.5}, and a fixed gradient
// sequence (the reference takes the gradients as given):
//   g1 = {0.5, -1},  g2 = {0.25, 2},  g3 = {-1, 0.5}.
// Default hyper-parameters unless stated. The weights after each step are
// worked out below; the values after step 2 and 3 of the adaptive methods
// were computed independently (a few lines of Python, in double, rounding w
// to float32 after every step) and are given to float precision.

const std::vector<float> kW0 = {1.0f, -0.5f};
const std::vector<std::vector<float>> kG = {
    {0.5f, -1.0f}, {0.25f, 2.0f}, {-1.0f, 0.5f}};

using Trajectory = std::array<std::array<float, 2>, 3>;

/// Runs three steps of `opt` with learning rate lr from kW0 on kG and checks
/// the weights after each step.
void expect_trajectory(const Optimizer &opt, double lr,
                       const Trajectory &want) {
  std::vector<float> w = kW0;
  State state;
  for (int t = 0; t < 3; ++t) {
    reference::step(opt, lr, {&w}, {kG[t]}, state);
    EXPECT_EQ(state.t, t + 1);
    for (int i = 0; i < 2; ++i)
      EXPECT_FLOAT_EQ(w[i], want[t][i])
          << name(opt) << " step " << t + 1 << " element " << i;
  }
}

TEST(OptimReference, SGD) {
  // w -= 0.1 g:  {1, -0.5} -> {0.95, -0.4} -> {0.925, -0.6} -> {1.025, -0.65}
  expect_trajectory(SGD{}, 0.1,
                    {{{0.95f, -0.4f}, {0.925f, -0.6f}, {1.025f, -0.65f}}});
}

TEST(OptimReference, Momentum) {
  // v1 = g1 = {0.5, -1}                         w1 = {0.95, -0.4}
  // v2 = 0.9 v1 + g2 = {0.7, 1.1}               w2 = {0.88, -0.51}
  // v3 = 0.9 v2 + g3 = {-0.37, 1.49}            w3 = {0.917, -0.659}
  expect_trajectory(Momentum{}, 0.1,
                    {{{0.95f, -0.4f}, {0.88f, -0.51f}, {0.917f, -0.659f}}});
}

TEST(OptimReference, Nesterov) {
  // v as for Momentum; w -= 0.1 (g + 0.9 v):
  // g1 + 0.9 v1 = {0.95, -1.9}                  w1 = {0.905, -0.31}
  // g2 + 0.9 v2 = {0.88, 2.99}                  w2 = {0.817, -0.609}
  // g3 + 0.9 v3 = {-1.333, 1.841}               w3 = {0.9503, -0.7931}
  expect_trajectory(
      Nesterov{}, 0.1,
      {{{0.905f, -0.31f}, {0.817f, -0.609f}, {0.9503f, -0.7931f}}});
}

TEST(OptimReference, AdaGrad) {
  // initial_accumulator 0.1:
  // v1 = {0.1 + 0.25, 0.1 + 1} = {0.35, 1.1}
  //   w1 = {1 - 0.05/sqrt(0.35), -0.5 + 0.1/sqrt(1.1)}
  //      = {0.915484548, -0.404653728}
  // v2 = {0.4125, 5.1}      w2 = {0.876559615, -0.493215203}
  // v3 = {1.4125, 5.35}     w3 = {0.960700274, -0.514832079}
  AdaGrad o;
  o.initial_accumulator = 0.1;
  expect_trajectory(o, 0.1,
                    {{{0.915484548f, -0.404653728f},
                      {0.876559615f, -0.493215203f},
                      {0.960700274f, -0.514832079f}}});
}

TEST(OptimReference, RMSProp) {
  // lr 0.01. v1 = 0.1 g1^2 = {0.025, 0.1}: the first step is
  // lr g / sqrt(0.1 g^2) = lr sqrt(10) sign(g) = 0.0316228 sign(g)
  //   w1 = {0.968377233, -0.468377233}
  // v2 = {0.02875, 0.49}    w2 = {0.95363301, -0.496948659}
  // v3 = {0.125875, 0.466}  w3 = {0.981818795, -0.504273117}
  expect_trajectory(RMSProp{}, 0.01,
                    {{{0.968377233f, -0.468377233f},
                      {0.95363301f, -0.496948659f},
                      {0.981818795f, -0.504273117f}}});
}

TEST(OptimReference, AdaDelta) {
  // lr 1, eps 1e-6. v1 = {0.025, 0.1}, u0 = 0:
  // d1 = -sqrt(1e-6) / sqrt(v1 + 1e-6) g1 ~ -1e-3 sqrt(10) sign(g1)
  //   w1 = {0.996837795, -0.496837735}
  //   u1 = 0.1 d1^2 = {1.0e-6, 1.0e-6} (to 4 digits)
  // v2 = {0.02875, 0.49},  u2 = {1.335e-6, 2.533e-6}
  //   w2 = {0.994752705, -0.500878334}
  // v3 = {0.125875, 0.466}
  //   w3 = {0.999059439, -0.502254963}
  expect_trajectory(AdaDelta{}, 1.0,
                    {{{0.996837795f, -0.496837735f},
                      {0.994752705f, -0.500878334f},
                      {0.999059439f, -0.502254963f}}});
}

TEST(OptimReference, Adam) {
  // Step 1: mh = g1, vh = g1^2, so w -= lr g / (|g| + eps) ~ lr sign(g):
  //   w1 = {0.9, -0.4}
  // m2 = {0.07, 0.11}, v2 = {0.00031225, 0.004999}
  //   mh2 = m2 / 0.19, vh2 = v2 / 0.001999
  //   w2 = {0.806782007, -0.436610371}
  // m3 = {-0.037, 0.149}, v3 = {0.001311938, 0.005244001}
  //   w3 = {0.827417731, -0.478175491}
  expect_trajectory(Adam{}, 0.1,
                    {{{0.9f, -0.4f},
                      {0.806782007f, -0.436610371f},
                      {0.827417731f, -0.478175491f}}});
}

TEST(OptimReference, AdaMax) {
  // Step 1: m1 = 0.1 g1, u1 = |g1|: w -= lr / 0.1 * 0.1 g / |g| = lr sign(g)
  //   w1 = {0.9, -0.4}
  // m2 = {0.07, 0.11}, u2 = {max(0.4995, 0.25), 2} = {0.4995, 2}
  //   w2 = 0.9 - 0.1/0.19 * 0.07/0.4995, -0.4 - 0.1/0.19 * 0.11/2
  //      = {0.82624203, -0.428947389}
  // m3 = {-0.037, 0.149}, u3 = {1, 1.998}
  //   w3 = {0.839895189, -0.456465691}
  expect_trajectory(AdaMax{}, 0.1,
                    {{{0.9f, -0.4f},
                      {0.82624203f, -0.428947389f},
                      {0.839895189f, -0.456465691f}}});
}

TEST(OptimReference, NAdam) {
  // Step 1: mh = g, vh = g^2:
  //   w -= lr / |g| (0.9 g + 0.1 g / 0.1) = 1.9 lr sign(g)
  //   w1 = {0.81, -0.31}
  // m, v as for Adam:       w2 = {0.692811728, -0.409513593}
  //                         w3 = {0.767156005, -0.460870236}
  expect_trajectory(NAdam{}, 0.1,
                    {{{0.81f, -0.31f},
                      {0.692811728f, -0.409513593f},
                      {0.767156005f, -0.460870236f}}});
}

TEST(OptimReference, AdamW) {
  // weight_decay 0.1. Step 1: w -= 0.1 * 0.1 w -> {0.99, -0.495}, then the
  // Adam step of lr sign(g):
  //   w1 = {0.89, -0.395}
  // m, v as for Adam:       w2 = {0.78788203, -0.427660376}
  //                         w3 = {0.800638914, -0.464948893}
  AdamW o;
  o.weight_decay = 0.1;
  expect_trajectory(o, 0.1,
                    {{{0.89f, -0.395f},
                      {0.78788203f, -0.427660376f},
                      {0.800638914f, -0.464948893f}}});
}

TEST(OptimReference, LrArgumentNotCommonLr) {
  // step() uses the lr it is given (the scheduled rate), not common(opt).lr.
  SGD o;
  o.lr = 100.0;
  expect_trajectory(o, 0.1,
                    {{{0.95f, -0.4f}, {0.925f, -0.6f}, {1.025f, -0.65f}}});
}

//===----------------------------------------------------------------------===//
// The reference implementation: preprocessing and variants
//===----------------------------------------------------------------------===//

/// One step of `opt` on the given parameters with learning rate lr.
void one_step(const Optimizer &opt, double lr,
              std::vector<std::vector<float> *> params,
              const std::vector<std::vector<float>> &grads) {
  State state;
  reference::step(opt, lr, std::move(params), grads, state);
}

TEST(OptimReference, L2AndL1) {
  // SGD lr 1, l2 0.1, l1 0.2, w = {2, 0, -1}, g = {0.5, 0.5, 0.5}:
  // g' = g + 0.1 w + 0.2 sign(w) = {0.5 + 0.2 + 0.2, 0.5, 0.5 - 0.1 - 0.2}
  //    = {0.9, 0.5, 0.2}  (sign(0) = 0)
  SGD o;
  o.l2 = 0.1;
  o.l1 = 0.2;
  std::vector<float> w = {2.0f, 0.0f, -1.0f};
  one_step(o, 1.0, {&w}, {{0.5f, 0.5f, 0.5f}});
  EXPECT_FLOAT_EQ(w[0], 1.1f);
  EXPECT_FLOAT_EQ(w[1], -0.5f);
  EXPECT_FLOAT_EQ(w[2], -1.2f);

  // L1 alone at w = 0 with a zero gradient leaves w at 0.
  SGD l1;
  l1.l1 = 1.0;
  std::vector<float> z = {0.0f, 3.0f};
  one_step(l1, 0.5, {&z}, {{0.0f, 0.0f}});
  EXPECT_EQ(z[0], 0.0f);
  EXPECT_FLOAT_EQ(z[1], 2.5f);
}

TEST(OptimReference, ClipValue) {
  SGD o;
  o.clip_value = 1.0;
  std::vector<float> w = {0.0f, 0.0f, 0.0f, 0.0f};
  one_step(o, 1.0, {&w}, {{3.0f, -0.5f, -4.0f, 1.0f}});
  EXPECT_FLOAT_EQ(w[0], -1.0f);
  EXPECT_FLOAT_EQ(w[1], 0.5f);
  EXPECT_FLOAT_EQ(w[2], 1.0f);
  EXPECT_FLOAT_EQ(w[3], -1.0f);
}

TEST(OptimReference, ClipNormIsGlobal) {
  // Two parameters, g = {3, 0} and {0, 4, 0}: the global norm is 5, so with
  // clip_norm 1 both are scaled by 0.2 (per-parameter clipping would give
  // {1, 0} and {0, 1, 0}).
  SGD o;
  o.clip_norm = 1.0;
  std::vector<float> a = {0.0f, 0.0f}, b = {0.0f, 0.0f, 0.0f};
  one_step(o, 1.0, {&a, &b}, {{3.0f, 0.0f}, {0.0f, 4.0f, 0.0f}});
  EXPECT_FLOAT_EQ(a[0], -0.6f);
  EXPECT_FLOAT_EQ(a[1], 0.0f);
  EXPECT_FLOAT_EQ(b[0], 0.0f);
  EXPECT_FLOAT_EQ(b[1], -0.8f);
  EXPECT_FLOAT_EQ(b[2], 0.0f);

  // A norm below clip_norm is left alone.
  o.clip_norm = 10.0;
  a = {0.0f, 0.0f};
  b = {0.0f, 0.0f, 0.0f};
  one_step(o, 1.0, {&a, &b}, {{3.0f, 0.0f}, {0.0f, 4.0f, 0.0f}});
  EXPECT_FLOAT_EQ(a[0], -3.0f);
  EXPECT_FLOAT_EQ(b[1], -4.0f);

  // A zero gradient stays zero (no 0/0).
  o.clip_norm = 1.0;
  a = {1.0f, 2.0f};
  one_step(o, 1.0, {&a}, {{0.0f, 0.0f}});
  EXPECT_EQ(a[0], 1.0f);
  EXPECT_EQ(a[1], 2.0f);
}

TEST(OptimReference, PreprocessingOrder) {
  // w = {0.5, 0}, g = {3, -4}, l2 2:  g = {4, -4}
  // clip_value 3:                     g = {3, -3}, norm 3 sqrt2
  // clip_norm 1.5 sqrt2:              g = {1.5, -1.5}
  // SGD lr 1:                         w = {-1, 1.5}
  SGD o;
  o.l2 = 2.0;
  o.clip_value = 3.0;
  o.clip_norm = 1.5 * std::sqrt(2.0);
  std::vector<float> w = {0.5f, 0.0f};
  one_step(o, 1.0, {&w}, {{3.0f, -4.0f}});
  EXPECT_NEAR(w[0], -1.0f, 1e-6);
  EXPECT_NEAR(w[1], 1.5f, 1e-6);
}

TEST(OptimReference, ClipNormBeforeAdaptiveUpdate) {
  // The clipped gradient is what the optimizer state sees: Momentum's v
  // after one step is the clipped gradient.
  Momentum o;
  o.clip_norm = 1.0;
  std::vector<float> w = {0.0f, 0.0f};
  State state;
  reference::step(o, 0.5, {&w}, {{6.0f, -8.0f}}, state);
  ASSERT_EQ(state.a.size(), 1u);
  EXPECT_DOUBLE_EQ(state.a[0][0], 0.6);
  EXPECT_DOUBLE_EQ(state.a[0][1], -0.8);
  EXPECT_FLOAT_EQ(w[0], -0.3f);
  EXPECT_FLOAT_EQ(w[1], 0.4f);
}

TEST(OptimReference, AdamWDecouplingDiffersFromAdamL2) {
  // w = {1, -2}, g = 0, lr 0.1, decay 0.01.
  // Adam + l2: g' = 0.01 w, and Adam's first step moves lr sign(g'):
  //   w = {0.9, -1.9}
  // AdamW: w -= 0.1 * 0.01 w -> {0.999, -1.998}; m = 0, so Adam moves 0.
  Adam adam;
  adam.l2 = 0.01;
  std::vector<float> wa = {1.0f, -2.0f};
  one_step(adam, 0.1, {&wa}, {{0.0f, 0.0f}});
  EXPECT_NEAR(wa[0], 0.9f, 1e-6);
  EXPECT_NEAR(wa[1], -1.9f, 1e-6);

  AdamW adamw;
  adamw.weight_decay = 0.01;
  std::vector<float> ww = {1.0f, -2.0f};
  one_step(adamw, 0.1, {&ww}, {{0.0f, 0.0f}});
  EXPECT_FLOAT_EQ(ww[0], 0.999f);
  EXPECT_FLOAT_EQ(ww[1], -1.998f);

  // AdamW with l2 set applies both: g' = 0.01 * 1 (taken at the weight
  // before the decay), w = 1 - 0.001 - 0.1 * 0.01 / (0.01 + 1e-8).
  adamw.l2 = 0.01;
  std::vector<float> wb = {1.0f};
  one_step(adamw, 0.1, {&wb}, {{0.0f}});
  EXPECT_NEAR(wb[0], 1.0 - 0.001 - 0.1 * 0.01 / (0.01 + 1e-8), 1e-7);
}

TEST(OptimReference, AdamWWithoutDecayIsAdam) {
  for (double l2 : {0.0, 0.05}) {
    Adam adam;
    adam.l2 = l2;
    AdamW adamw;
    adamw.l2 = l2;
    adamw.weight_decay = 0.0;
    std::vector<float> wa = kW0, ww = kW0;
    State sa, sw;
    for (int t = 0; t < 3; ++t) {
      reference::step(adam, 0.1, {&wa}, {kG[t]}, sa);
      reference::step(adamw, 0.1, {&ww}, {kG[t]}, sw);
    }
    EXPECT_EQ(wa, ww) << "l2=" << l2;
    EXPECT_EQ(sa.a, sw.a);
    EXPECT_EQ(sa.b, sw.b);
  }
}

TEST(OptimReference, AdamEpsInsideVsOutside) {
  // w = 1, g = 1e-4, lr 0.1, eps 1e-8. Step 1: mh = 1e-4, vh = 1e-8.
  // Outside: w = 1 - 0.1 * 1e-4 / (1e-4 + 1e-8)  = 0.900009999
  // Inside:  w = 1 - 0.1 * 1e-4 / sqrt(2e-8)     = 1 - 0.1/sqrt2 = 0.929289322
  Adam out, in;
  in.eps_inside_sqrt = true;
  std::vector<float> wo = {1.0f}, wi = {1.0f};
  one_step(out, 0.1, {&wo}, {{1e-4f}});
  one_step(in, 0.1, {&wi}, {{1e-4f}});
  // g is float(1e-4), so compare with the formulas at that g.
  const double g = 1e-4f;
  EXPECT_NEAR(wo[0], 1.0 - 0.1 * g / (g + 1e-8), 1e-7);
  EXPECT_NEAR(wi[0], 1.0 - 0.1 * g / std::sqrt(g * g + 1e-8), 1e-7);
  EXPECT_NEAR(wo[0], 0.900009999, 1e-6);
  EXPECT_NEAR(wi[0], 0.929289322, 1e-6);
  // At a large v both agree to float precision.
  std::vector<float> bo = {1.0f}, bi = {1.0f};
  one_step(out, 0.1, {&bo}, {{10.0f}});
  one_step(in, 0.1, {&bi}, {{10.0f}});
  EXPECT_FLOAT_EQ(bo[0], bi[0]);
}

TEST(OptimReference, AdaGradRMSPropEpsInsideRoot) {
  // At a tiny gradient the position of eps shows. g = 1e-4, eps 1e-8, lr 0.1.
  // AdaGrad: v = g^2 = 1e-8; w = 1 - 0.1 g / sqrt(1e-8 + 1e-8) = 1 - 0.1/sqrt2
  // (eps outside the root would move by ~0.1).
  const double g = 1e-4f;
  std::vector<float> w = {1.0f};
  one_step(AdaGrad{}, 0.1, {&w}, {{1e-4f}});
  EXPECT_NEAR(w[0], 1.0 - 0.1 * g / std::sqrt(g * g + 1e-8), 1e-7);
  EXPECT_NEAR(w[0], 0.929289322, 1e-6);
  // RMSProp: v = 0.1 g^2 = 1e-9; w = 1 - 0.1 g / sqrt(1e-9 + 1e-8)
  //   = 1 - 0.1 / sqrt(1.1) = 0.904653 (eps outside: 1 - 0.1 sqrt10 = 0.68).
  w = {1.0f};
  one_step(RMSProp{}, 0.1, {&w}, {{1e-4f}});
  EXPECT_NEAR(w[0], 1.0 - 0.1 * g / std::sqrt(0.1 * g * g + 1e-8), 1e-7);
  EXPECT_NEAR(w[0], 0.904653, 1e-5);
}

TEST(OptimReference, StateSlots) {
  // AdaGrad's accumulator starts at initial_accumulator, one slot per
  // element of each parameter; t counts the steps.
  AdaGrad ada;
  ada.initial_accumulator = 0.5;
  std::vector<float> a = {1.0f, 2.0f}, b = {3.0f};
  State s;
  reference::step(ada, 0.1, {&a, &b}, {{1.0f, 0.0f}, {2.0f}}, s);
  EXPECT_EQ(s.t, 1);
  ASSERT_EQ(s.a.size(), 2u);
  EXPECT_EQ(s.a[0], (std::vector<double>{1.5, 0.5}));
  EXPECT_EQ(s.a[1], (std::vector<double>{4.5}));
  reference::step(ada, 0.1, {&a, &b}, {{1.0f, 0.0f}, {2.0f}}, s);
  EXPECT_EQ(s.t, 2);
  EXPECT_EQ(s.a[0], (std::vector<double>{2.5, 0.5}));

  // Adam keeps m in a and v in b.
  std::vector<float> w = {0.0f};
  State as;
  reference::step(Adam{}, 0.1, {&w}, {{2.0f}}, as);
  EXPECT_DOUBLE_EQ(as.a[0][0], 0.2);
  EXPECT_DOUBLE_EQ(as.b[0][0], 0.004);
}

TEST(OptimReference, MismatchesThrow) {
  std::vector<float> w = {1.0f, 2.0f};
  State s;
  EXPECT_SOMA_ERROR(reference::step(SGD{}, 0.1, {&w}, {}, s), "gradients");
  EXPECT_SOMA_ERROR(reference::step(SGD{}, 0.1, {&w}, {{1.0f}}, s), "elements");
  reference::step(SGD{}, 0.1, {&w}, {{1.0f, 1.0f}}, s);
  std::vector<float> other = {1.0f};
  EXPECT_SOMA_ERROR(
      reference::step(SGD{}, 0.1, {&w, &other}, {{1.0f, 1.0f}, {1.0f}}, s),
      "state");
}

//===----------------------------------------------------------------------===//
// Convergence
//===----------------------------------------------------------------------===//

class OptimConvergence
    : public ::testing::TestWithParam<std::tuple<const char *, double>> {};

TEST_P(OptimConvergence, QuadraticBowl) {
  // f(w) = 0.5 ||w - c||^2, gradient w - c, from w = 0.
  auto [opt_name, lr] = GetParam();
  Optimizer opt = by_name(opt_name);
  const std::vector<float> c = {1.0f, -2.0f, 0.5f, 3.0f};
  std::vector<float> w(c.size(), 0.0f);
  State state;
  auto dist = [&] {
    double d = 0.0;
    for (size_t i = 0; i < c.size(); ++i)
      d = std::max(d, std::abs(static_cast<double>(w[i]) - c[i]));
    return d;
  };
  int64_t reached = -1;
  for (int64_t t = 1; t <= 2000; ++t) {
    std::vector<float> g(c.size());
    for (size_t i = 0; i < c.size(); ++i)
      g[i] = w[i] - c[i];
    reference::step(opt, lr, {&w}, {g}, state);
    if (reached < 0 && dist() < 1e-2)
      reached = t;
  }
  EXPECT_GE(reached, 1) << opt_name << " did not get within 1e-2";
  // And it stays there.
  EXPECT_LT(dist(), 1e-2) << opt_name << " after 2000 steps";
}

INSTANTIATE_TEST_SUITE_P(
    All, OptimConvergence,
    ::testing::Values(
        std::make_tuple("sgd", 0.1), std::make_tuple("momentum", 0.05),
        std::make_tuple("nesterov", 0.05), std::make_tuple("adagrad", 0.5),
        std::make_tuple("rmsprop", 0.01), std::make_tuple("adadelta", 1.0),
        std::make_tuple("adam", 0.05), std::make_tuple("adamax", 0.05),
        std::make_tuple("nadam", 0.05), std::make_tuple("adamw", 0.05)),
    [](const auto &info) { return std::string(std::get<0>(info.param)); });

} // namespace
} // namespace soma::optim
