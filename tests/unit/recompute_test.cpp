//===- recompute_test.cpp - Activation checkpointing ------------------------===//

#include "test_util.h"

using namespace soma;

namespace {

/// conv -> batch norm -> ReLU twice with a residual add, dense head.
Graph smallResNet(int64_t batch) {
  Graph g("small", 4);
  Tensor x = g.input("x", {batch, 2, 8, 8});
  Tensor y = g.input("y", {batch}, DType::i32);
  Tensor h = relu(nn::batch_norm(nn::conv2d(x, 16, 3, {.padding = 1, .bias = false})));
  Tensor r = nn::batch_norm(nn::conv2d(h, 16, 3, {.padding = 1, .bias = false}));
  h = relu(r + h);
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
}

TEST(Recompute, ABudgetKeepsTheSmallOnes) {
  Graph g = smallResNet(6);
  CompileReport all, some;
  compile_training(g, g.output_tensor("loss"), optim::SGD{},
                   {.compile = {.report = &all}, .checkpointing = {.enabled = true}});
  compile_training(g, g.output_tensor("loss"), optim::SGD{},
                   {.compile = {.report = &some},
                    .checkpointing = {.enabled = true, .budget_bytes = 6 * 16 * 8 * 8 * 4}});
  EXPECT_GT(some.functions[0].recomputed_values, 0);
  EXPECT_LT(some.functions[0].recomputed_values, all.functions[0].recomputed_values);
}

} // namespace
