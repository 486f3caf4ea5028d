//===- recompute_test.cpp - Activation checkpointing ------------------------===//

#include "test_util.h"

using namespace soma;

namespace {

/// conv -> batch norm -> ReLU, then residual blocks (conv, batch norm,
/// ReLU, conv, batch norm, add, ReLU), a dense head.
Graph smallResNet(int64_t batch, int blocks = 2) {
  Graph g("small", 4);
  Tensor x = g.input("x", {batch, 2, 8, 8});
  Tensor y = g.input("y", {batch}, DType::i32);
  Tensor h = relu(nn::batch_norm(nn::conv2d(x, 16, 3, {.padding = 1, .bias = false})));
  for (int i = 0; i < blocks; ++i) {
    Tensor r = relu(nn::batch_norm(nn::conv2d(h, 16, 3, {.padding = 1, .bias = false})));
    r = nn::batch_norm(nn::conv2d(r, 16, 3, {.padding = 1, .bias = false}));
    h = relu(r + h);
  }
  Tensor logits = nn::dense(dropout(global_avg_pool2d(h), 0.25), 3);
  g.output("logits", logits);
  g.output("loss", softmax_cross_entropy(logits, y));
  return g;
}

TEST(Recompute, TrainingWithCheckpointingComputesTheSameSteps) {
  std::map<std::string, Array> batch{{"x", test::randomF32({6, 2, 8, 8}, -1, 1, 1)},
                                     {"y", test::randomLabels({6}, 3, DType::i32, 2)}};
  Graph g = smallResNet(6);
  CompileReport plain, checkpointed;
  TrainStep a = compile_training(g, g.output_tensor("loss"), optim::Adam{{.lr = 1e-2}},
                                 {.compile = {.report = &plain}});
  TrainStep b = compile_training(g, g.output_tensor("loss"), optim::Adam{{.lr = 1e-2}},
                                 {.compile = {.report = &checkpointed}, .checkpointing = {.enabled = true}});
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(a.run(batch).loss, b.run(batch).loss) << "step " << i;
  for (size_t k = 0; k < a.params().size(); ++k)
    EXPECT_TRUE(test::allClose(a.params()[k].second, b.params()[k].second, 0)) << a.params()[k].first;
  // The report says what was recomputed, and the arena shrank.
  const CompileReport::Function &p = plain.functions[0], &c = checkpointed.functions[0];
  EXPECT_EQ(p.recomputed_values, 0);
  EXPECT_GT(c.recomputed_values, 0);
  EXPECT_GT(c.recomputed_bytes, 0);
  EXPECT_GT(c.recompute_flops, 0);
  EXPECT_LT(c.arena_bytes, p.arena_bytes) << plain.str() << checkpointed.str();
  EXPECT_THAT(checkpointed.str(), ::testing::HasSubstr("values recomputed in the backward pass"));
  // The step was planned three ways, and the smallest arena was compiled.
  EXPECT_EQ(c.arena_no_recompute, p.arena_bytes);
  EXPECT_EQ(c.arena_bytes, std::min({c.arena_no_recompute, c.arena_chains, c.arena_cones}));
  EXPECT_NE(c.recompute_policy, "none");
  EXPECT_TRUE(p.recompute_policy.empty());
  EXPECT_THAT(checkpointed.str(), ::testing::HasSubstr("checkpointing: arena without recomputation"));
}

TEST(Recompute, EachPolicyComputesTheSameSteps) {
  std::map<std::string, Array> batch{{"x", test::randomF32({6, 2, 8, 8}, -1, 1, 3)},
                                     {"y", test::randomLabels({6}, 3, DType::i32, 4)}};
  Graph g = smallResNet(6);
  for (auto policy : {Checkpointing::Policy::chains, Checkpointing::Policy::cones}) {
    CompileReport report;
    TrainStep plain = compile_training(g, g.output_tensor("loss"), optim::Adam{{.lr = 1e-2}});
    TrainStep t = compile_training(g, g.output_tensor("loss"), optim::Adam{{.lr = 1e-2}},
                                   {.compile = {.report = &report},
                                    .checkpointing = {.enabled = true, .policy = policy}});
    const CompileReport::Function &f = report.functions[0];
    std::string name = policy == Checkpointing::Policy::chains ? "chains" : "cones";
    EXPECT_EQ(f.recompute_policy, name);
    EXPECT_GT(f.recomputed_values, 0) << name;
    EXPECT_EQ(f.arena_no_recompute, 0) << name; // nothing else was planned
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(plain.run(batch).loss, t.run(batch).loss) << name << ", step " << i;
    for (size_t k = 0; k < t.params().size(); ++k)
      EXPECT_TRUE(test::allClose(plain.params()[k].second, t.params()[k].second, 0))
          << name << ": " << t.params()[k].first;
  }
}

TEST(Recompute, NothingIsRecomputedWhenNoPlanIsSmaller) {
  // Dense layers with ReLU: recomputing a ReLU keeps the sum before it
  // (as big) or the product (as big), so no arena is smaller than the
  // plain one, and the plain step is compiled.
  Graph g("dense", 1);
  Tensor x = g.input("x", {16, 32});
  Tensor y = g.input("y", {16}, DType::i32);
  Tensor logits = nn::dense(relu(nn::dense(relu(nn::dense(x, 64)), 64)), 5);
  g.output("loss", softmax_cross_entropy(logits, y));
  CompileReport plain, checkpointed;
  compile_training(g, g.output_tensor("loss"), optim::SGD{}, {.compile = {.report = &plain}});
  compile_training(g, g.output_tensor("loss"), optim::SGD{},
                   {.compile = {.report = &checkpointed}, .checkpointing = {.enabled = true}});
  const CompileReport::Function &c = checkpointed.functions[0];
  EXPECT_EQ(c.recompute_policy, "none") << checkpointed.str();
  EXPECT_EQ(c.recomputed_values, 0);
  EXPECT_EQ(c.arena_bytes, plain.functions[0].arena_bytes);
  EXPECT_GE(c.arena_chains, c.arena_bytes);
  EXPECT_GE(c.arena_cones, c.arena_bytes);
  EXPECT_THAT(checkpointed.str(), ::testing::HasSubstr(": nothing recomputed"));
}

TEST(Recompute, ABudgetKeepsTheSmallOnes) {
  Graph g = smallResNet(6);
  CompileReport all, some;
  compile_training(g, g.output_tensor("loss"), optim::SGD{},
                   {.compile = {.report = &all},
                    .checkpointing = {.enabled = true, .policy = Checkpointing::Policy::chains}});
  compile_training(g, g.output_tensor("loss"), optim::SGD{},
                   {.compile = {.report = &some},
                    .checkpointing = {.enabled = true,
                                      .budget_bytes = 6 * 16 * 8 * 8 * 4,
                                      .policy = Checkpointing::Policy::chains}});
  EXPECT_GT(some.functions[0].recomputed_values, 0);
  EXPECT_LT(some.functions[0].recomputed_values, all.functions[0].recomputed_values);
}

} // namespace
