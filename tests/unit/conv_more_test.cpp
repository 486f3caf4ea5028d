//===- conv_more_test.cpp - conv_transpose2d, conv1d, max_unpool2d ---------===//

#include "test_util.h"

using namespace soma;

namespace {

/// The course's definition (004, "Padding in transpose convolution"): insert
/// stride - 1 zeros between pixels, pad by k - 1 - p (plus output_padding at
/// the bottom/right), and convolve with the filter flipped in space and with
/// its two channel dimensions swapped.
Array courseTransposedConv(const Array &x, const Array &w, int64_t s, int64_t p, int64_t op) {
  Graph g("ref");
  Tensor xi = g.input("x", x.shape());
  int64_t cin = w.shape()[0], cout = w.shape()[1], k = w.shape()[2];
  Array flipped(DType::f32, {cout, cin, k, k});
  for (int64_t i = 0; i < cin; ++i)
    for (int64_t o = 0; o < cout; ++o)
      for (int64_t u = 0; u < k; ++u)
        for (int64_t v = 0; v < k; ++v)
          flipped.data<float>()[((o * cin + i) * k + u) * k + v] =
              w.data<float>()[((i * cout + o) * k + (k - 1 - u)) * k + (k - 1 - v)];
  int64_t e = k - 1 - p;
  Tensor z = pad(xi, {0, 0, e, e}, {0, 0, e + op, e + op}, {0, 0, s - 1, s - 1});
  g.output("y", conv2d(z, constant(g, flipped)));
  return compile_inference(g).run({{"x", x}})["y"];
}

TEST(ConvTranspose2d, MatchesTheCourseDefinition) {
  struct C {
    Shape x, w;
    int64_t s, p, op;
  };
  for (C c : {C{{2, 3, 4, 4}, {3, 2, 3, 3}, 1, 0, 0}, C{{1, 2, 3, 3}, {2, 4, 3, 3}, 2, 1, 0},
              C{{1, 2, 3, 3}, {2, 1, 3, 3}, 2, 1, 1}, C{{2, 1, 5, 5}, {1, 3, 2, 2}, 2, 0, 0},
              C{{1, 3, 4, 4}, {3, 2, 4, 4}, 2, 1, 0}}) {
    Array x = test::randomF32(c.x, -1, 1, 1), w = test::randomF32(c.w, -1, 1, 2);
    Graph g("t");
    g.output("y", conv_transpose2d(g.input("x", c.x), constant(g, w),
                                   {.stride = c.s, .padding = c.p, .output_padding = c.op}));
    Array got = compile_inference(g).run({{"x", x}})["y"];
    Array want = courseTransposedConv(x, w, c.s, c.p, c.op);
    ASSERT_EQ(got.shape(), want.shape());
    // (n - 1) s - 2p + k + output_padding
    EXPECT_EQ(got.shape()[2], (c.x[2] - 1) * c.s - 2 * c.p + c.w[2] + c.op);
    EXPECT_TRUE(test::allClose(got, want, 1e-5));
  }
}

TEST(ConvTranspose2d, GradientsMatchFiniteDifferences) {
  Graph g("t", 2);
  Tensor x = g.input("x", {1, 2, 3, 3});
  Tensor w = g.param("w", {2, 3, 3, 3}, init::uniform(-1, 1));
  Tensor y = conv_transpose2d(x, w, {.stride = 2, .padding = 1, .output_padding = 1});
  g.output("loss", sum(y * constant(g, test::randomF32(y.shape(), -1, 1, 4))));
  GradientCheckOptions o;
  o.grad.inputs = true;
  o.samples_per_tensor = 0;
  GradientCheckReport r = check_gradients(g, o);
  EXPECT_TRUE(r.passed) << r.str();
}

TEST(Conv1d, CausalOutputsDependOnlyOnThePast) {
  Graph g("c");
  Tensor x = g.input("x", {1, 2, 10});
  Tensor w = constant(g, test::randomF32({3, 2, 3}, -1, 1, 3));
  g.output("y", conv1d(x, w, {.dilation = 2, .causal = true}));
  Inference fn = compile_inference(g);
  Array a = test::randomF32({1, 2, 10}, -1, 1, 5), b = a.clone();
  b.data<float>()[6] += 1.0f; // channel 0, time 6
  b.data<float>()[10 + 6] -= 1.0f; // channel 1, time 6
  Array ya = fn.run({{"x", a}})["y"], yb = fn.run({{"x", b}})["y"];
  ASSERT_EQ(ya.shape(), (Shape{1, 3, 10}));
  // y[t] reads x[t], x[t-2], x[t-4]: nothing before t = 6 may change, and
  // y[6] must (it reads x[6] directly).
  for (int k = 0; k < 3; ++k) {
    for (int t = 0; t < 6; ++t)
      EXPECT_EQ(ya.data<float>()[k * 10 + t], yb.data<float>()[k * 10 + t]) << "channel " << k << " time " << t;
    EXPECT_NE(ya.data<float>()[k * 10 + 6], yb.data<float>()[k * 10 + 6]) << "channel " << k;
  }
}

TEST(Conv1d, MatchesTheInterpreterAndFiniteDifferences) {
  Graph g("c1", 3);
  Tensor x = g.input("x", {2, 4, 9});
  Tensor y = conv1d(x, g.param("w", {6, 2, 3}, init::uniform(-1, 1)), {.stride = 2, .padding = 1, .groups = 2});
  g.output("loss", sum(y * constant(g, test::randomF32(y.shape(), -1, 1, 6))));
  GradientCheckOptions o;
  o.grad.inputs = true;
  GradientCheckReport r = check_gradients(g, o);
  EXPECT_TRUE(r.passed) << r.str();
}

TEST(MaxUnpool2d, PutsValuesBackAtTheSwitches) {
  Graph g("u");
  // Windows {1, 5, 3, 2} (max 5 at index 1) and {-4, -2, -1, -3} (max -1
  // at index 6).
  Array ref = Array::f32({1, 1, 2, 4}, {1, 5, -4, -2, 3, 2, -1, -3});
  Tensor r = g.input("ref", {1, 1, 2, 4});
  Tensor pooled = max_pool2d(r, 2);
  g.output("pooled", pooled);
  g.output("up", max_unpool2d(pooled * 10.0f, r, 2));
  auto out = compile_inference(g).run({{"ref", ref}});
  const float want[] = {0, 50, 0, 0, 0, 0, -10, 0};
  for (int i = 0; i < 8; ++i)
    EXPECT_FLOAT_EQ(out["up"].data<float>()[i], want[i]) << i;
  auto ref2 = interpret(g, {{"ref", ref}});
  EXPECT_TRUE(test::allClose(out["up"], ref2["up"]));
  EXPECT_SOMA_ERROR(max_unpool2d(pooled, r, 1), "max_unpool2d: pooled f32[1,1,1,2] is not the max_pool2d of");
}

TEST(MaxUnpool2d, GradientFlowsToThePooledValues) {
  Graph g("u", 1);
  Tensor r = g.input("ref", {1, 2, 4, 4});
  Tensor v = g.input("v", {1, 2, 2, 2});
  Tensor up = max_unpool2d(v, r, 2);
  g.output("loss", sum(up * constant(g, test::randomF32({1, 2, 4, 4}, -1, 1, 8))));
  GradientCheckOptions o;
  o.grad.inputs = true;
  o.samples_per_tensor = 0;
  o.inputs["ref"] = test::randomF32({1, 2, 4, 4}, -1, 1, 9);
  GradientCheckReport rep = check_gradients(g, o);
  EXPECT_TRUE(rep.passed) << rep.str();
}

} // namespace
