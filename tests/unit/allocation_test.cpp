//===- allocation_test.cpp - Steady-state steps allocate nothing -----------===//
//
// Counts every C++ heap allocation of the process (operator new is replaced
// for this test binary, in heap.cpp) while a compiled training step runs, and checks
// that the compiled code itself never calls malloc: every temporary lives
// in the workspace arena, allocated once per executable.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#include <fstream>

using namespace soma;

namespace {

TEST(Allocation, SteadyStateTrainingStepsAndEvaluationsAllocateNothing) {
  for (const char *model : {"mlp", "lenet5"}) {
    Graph g = zoo::build(model, 16, /*with_loss=*/true, 1);
    test::TempDir dir(std::string("alloc-") + model);
    TrainStep step = compile_training(
        g, g.output_tensor("loss"), optim::Adam{},
        {.compile = {.dump = "llvm-dialect", .dump_dir = dir.str(), .use_environment = false}});
    Shape xs = g.inputs()[0].shape;
    std::map<std::string, Array> batch{{"x", test::randomF32(xs, 0, 1, 1)},
                                       {"y", test::randomLabels({16}, 10, DType::i32, 2)}};
    step.run(batch); // first calls may set up the thread pool
    step.evaluate(batch);
    long before = test::heapAllocations();
    for (int i = 0; i < 10; ++i) {
      step.run(batch);
      step.evaluate(batch);
    }
    EXPECT_EQ(test::heapAllocations() - before, 0) << model << ": heap allocations in 10 steps";
    // The compiled code has no calls to malloc (temporaries are views of
    // the workspace).
    std::ifstream f(dir / "38-llvm-dialect.mlir");
    std::string ir((std::istreambuf_iterator<char>(f)), {});
    ASSERT_FALSE(ir.empty());
    EXPECT_EQ(ir.find("@malloc"), std::string::npos) << model;
    EXPECT_EQ(ir.find("@aligned_alloc"), std::string::npos) << model;
  }
}

} // namespace
