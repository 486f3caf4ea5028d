//===- interpreter_test.cpp - The reference interpreter, op by op ---------===//
//
// Expected values are computed by hand (or with a pocket calculator), never
// by the interpreter itself: these tests are what makes the oracle
// trustworthy.
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/GraphImpl.h"
#include "soma/Compiler/Interpreter.h"
#include "soma/compile.h"
#include "soma/graph.h"
#include "soma/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace soma;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Checks dtype, shape and every value (NaN expects NaN; tolerance is
/// relative for large values).
void expectArray(const Array &a, DType dtype, const Shape &shape,
                 const std::vector<double> &expected, double tol = 1e-6) {
  ASSERT_EQ(a.dtype(), dtype);
  ASSERT_EQ(a.shape(), shape);
  ASSERT_EQ(a.numel(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    double got = dtype == DType::f32   ? a.data<float>()[i]
                 : dtype == DType::i32 ? a.data<int32_t>()[i]
                                       : double(a.data<int64_t>()[i]);
    if (std::isnan(expected[i]))
      EXPECT_TRUE(std::isnan(got)) << "element " << i << " is " << got;
    else
      EXPECT_NEAR(got, expected[i], tol * std::max(1.0, std::abs(expected[i])))
          << "element " << i;
  }
}

void expectF32(const Array &a, const Shape &shape,
               const std::vector<double> &expected, double tol = 1e-6) {
  expectArray(a, DType::f32, shape, expected, tol);
}

/// Interprets a module given as MLIR text.
std::map<std::string, Array> runText(const std::string &text,
                                     const std::map<std::string, Array> &in) {
  Graph g = parse(text);
  return interpret(g, in);
}

/// A one-op graph "y = <op>(x)" in MLIR text; `body` uses %x and yields %0.
std::string unaryModule(const std::string &inType, const std::string &outType,
                        const std::string &body) {
  return "module @t {\n  func.func @t(%x: " + inType +
         " {soma.input = \"x\"}) -> (" + outType +
         " {soma.output = \"y\"}) {\n    %0 = " + body +
         "\n    return %0 : " + outType + "\n  }\n}\n";
}

/// A one-op graph "y = <op>(a, b)" in MLIR text.
std::string binaryModule(const std::string &aType, const std::string &bType,
                         const std::string &outType, const std::string &body) {
  return "module @t {\n  func.func @t(%a: " + aType +
         " {soma.input = \"a\"}, %b: " + bType + " {soma.input = \"b\"}) -> (" +
         outType + " {soma.output = \"y\"}) {\n    %0 = " + body +
         "\n    return %0 : " + outType + "\n  }\n}\n";
}

std::vector<float> iota(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i)
    v[i] = static_cast<float>(i);
  return v;
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

TEST(InterpreterUnary, MathFunctions) {
  Graph g("t");
  Tensor x = g.input("x", {3});
  g.output("neg", neg(x));
  g.output("exp", soma::exp(x));
  g.output("abs", soma::abs(x));
  g.output("tanh", soma::tanh(x));
  g.output("sigmoid", sigmoid(x));
  Tensor p = g.input("p", {3});
  g.output("log", soma::log(p));
  g.output("sqrt", soma::sqrt(p));
  auto out = interpret(g, {{"x", Array::f32({3}, {-1.0f, 0.5f, 2.0f})},
                           {"p", Array::f32({3}, {1.0f, 2.0f, 4.0f})}});
  expectF32(out["neg"], {3}, {1.0, -0.5, -2.0});
  expectF32(out["exp"], {3},
            {0.36787944117144233, 1.6487212707001282, 7.38905609893065});
  expectF32(out["abs"], {3}, {1.0, 0.5, 2.0});
  expectF32(out["tanh"], {3},
            {-0.7615941559557649, 0.46211715726000974, 0.9640275800758169});
  expectF32(out["sigmoid"], {3},
            {0.2689414213699951, 0.6224593312018546, 0.8807970779778823});
  expectF32(out["log"], {3}, {0.0, 0.6931471805599453, 1.3862943611198906});
  expectF32(out["sqrt"], {3}, {1.0, 1.4142135623730951, 2.0});
}

TEST(InterpreterUnary, ReluKeepsNaN) {
  std::string text = unaryModule("tensor<4xf32>", "tensor<4xf32>",
                                 "soma.relu %x : tensor<4xf32>");
  auto out = runText(text, {{"x", Array::f32({4}, {-2.0f, 0.0f, 3.0f, NAN})}});
  expectF32(out["y"], {4}, {0.0, 0.0, 3.0, kNaN});
}

TEST(InterpreterUnary, LeakyReluAlpha) {
  std::string text = unaryModule(
      "tensor<4xf32>", "tensor<4xf32>",
      "soma.leaky_relu %x {alpha = 2.000000e-01 : f64} : tensor<4xf32>");
  auto out =
      runText(text, {{"x", Array::f32({4}, {-2.0f, -0.5f, 0.0f, 3.0f})}});
  expectF32(out["y"], {4}, {-0.4, -0.1, 0.0, 3.0});

  // Without the attribute alpha defaults to 0.01.
  Graph g("t");
  g.output("y", leaky_relu(g.input("x", {2})));
  expectF32(interpret(g, {{"x", Array::f32({2}, {-3.0f, 3.0f})}})["y"], {2},
            {-0.03, 3.0});
}

TEST(InterpreterUnary, SoftplusIsStable) {
  Graph g("t");
  g.output("y", softplus(g.input("x", {4})));
  // In double: softplus(-100) = log1p(e^-100) = 3.72e-44, not 0; and
  // softplus(100) = 100 without overflowing e^100.
  std::vector<RefTensor> ref = interpretFunction(
      g.impl()->func, {RefTensor{DType::f32, {4}, {-100.0, 100.0, 0.0, 1.0}}});
  ASSERT_EQ(ref.size(), 1u);
  ASSERT_EQ(ref[0].data.size(), 4u);
  EXPECT_NEAR(ref[0].data[0], 3.720075976020836e-44, 1e-50);
  EXPECT_EQ(ref[0].data[1], 100.0);
  EXPECT_NEAR(ref[0].data[2], 0.6931471805599453, 1e-15);
  EXPECT_NEAR(ref[0].data[3], 1.3132616875182228, 1e-15);
  // Rounded to f32 the tiny value is a denormal, still not 0.
  Array y = interpret(g, {{"x", Array::f32({4}, {-100, 100, 0, 1})}})["y"];
  EXPECT_GT(y.data<float>()[0], 0.0f);
  EXPECT_EQ(y.data<float>()[1], 100.0f);
}

TEST(InterpreterBinary, BroadcastRowVector) {
  std::string text =
      binaryModule("tensor<2x3xf32>", "tensor<3xf32>", "tensor<2x3xf32>",
                   "soma.add %a, %b : tensor<2x3xf32>, tensor<3xf32>");
  auto out = runText(text, {{"a", Array::f32({2, 3}, {1, 2, 3, 4, 5, 6})},
                            {"b", Array::f32({3}, {10, 20, 30})}});
  expectF32(out["y"], {2, 3}, {11, 22, 33, 14, 25, 36});
}

TEST(InterpreterBinary, BroadcastOuterProduct) {
  Graph g("t");
  g.output("y", mul(g.input("a", {2, 1}), g.input("b", {1, 3})));
  auto out = interpret(g, {{"a", Array::f32({2, 1}, {2, 3})},
                           {"b", Array::f32({1, 3}, {1, 10, 100})}});
  expectF32(out["y"], {2, 3}, {2, 20, 200, 3, 30, 300});
}

TEST(InterpreterBinary, Arithmetic) {
  Graph g("t");
  Tensor a = g.input("a", {4}), b = g.input("b", {4});
  g.output("sub", sub(a, b));
  g.output("div", div(a, b));
  g.output("pow", soma::pow(a, b));
  auto out = interpret(g, {{"a", Array::f32({4}, {1, 2, 9, 4})},
                           {"b", Array::f32({4}, {4, 0.5f, 0.5f, -1})}});
  expectF32(out["sub"], {4}, {-3, 1.5, 8.5, 5});
  expectF32(out["div"], {4}, {0.25, 4, 18, -4});
  expectF32(out["pow"], {4}, {1, 1.4142135623730951, 3, 0.25});
}

TEST(InterpreterBinary, MaximumMinimumPropagateNaN) {
  Graph g("t");
  Tensor a = g.input("a", {3}), b = g.input("b", {3});
  g.output("max", maximum(a, b));
  g.output("min", minimum(a, b));
  auto out = interpret(g, {{"a", Array::f32({3}, {1, NAN, 5})},
                           {"b", Array::f32({3}, {2, 0, NAN})}});
  expectF32(out["max"], {3}, {2, kNaN, kNaN});
  expectF32(out["min"], {3}, {1, kNaN, kNaN});
}

//===----------------------------------------------------------------------===//
// Matmul
//===----------------------------------------------------------------------===//

/// A = [[1,2],[3,4]], B = [[5,6],[7,8]]: square, so that a flag that were
/// ignored would still type-check but give different numbers.
Array matmulResult(const std::string &attrs) {
  std::string text = binaryModule(
      "tensor<2x2xf32>", "tensor<2x2xf32>", "tensor<2x2xf32>",
      "soma.matmul %a, %b " + attrs +
          " : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>");
  return runText(text, {{"a", Array::f32({2, 2}, {1, 2, 3, 4})},
                        {"b", Array::f32({2, 2}, {5, 6, 7, 8})}})["y"];
}

TEST(InterpreterMatmul, TransposeFlags) {
  expectF32(matmulResult(""), {2, 2}, {19, 22, 43, 50});
  expectF32(matmulResult("{transpose_a = true}"), {2, 2}, {26, 30, 38, 44});
  expectF32(matmulResult("{transpose_b = true}"), {2, 2}, {17, 23, 39, 53});
  expectF32(matmulResult("{transpose_a = true, transpose_b = true}"), {2, 2},
            {23, 31, 34, 46});
}

TEST(InterpreterMatmul, Rectangular) {
  Graph g("t");
  g.output("y", matmul(g.input("a", {2, 3}), g.input("b", {3, 1})));
  auto out = interpret(g, {{"a", Array::f32({2, 3}, {1, 2, 3, 4, 5, 6})},
                           {"b", Array::f32({3, 1}, {1, 0, -1})}});
  expectF32(out["y"], {2, 1}, {-2, -2});
}

TEST(InterpreterMatmul, Batched) {
  Graph g("t");
  g.output("y", matmul(g.input("a", {2, 2, 2}), g.input("b", {2, 2, 2}),
                       {.transpose_b = true}));
  // Batch 0: I x [[5,6],[7,8]]^T; batch 1: [[1,2],[3,4]] x [[0,1],[1,0]]^T.
  auto out =
      interpret(g, {{"a", Array::f32({2, 2, 2}, {1, 0, 0, 1, 1, 2, 3, 4})},
                    {"b", Array::f32({2, 2, 2}, {5, 6, 7, 8, 0, 1, 1, 0})}});
  expectF32(out["y"], {2, 2, 2}, {5, 7, 6, 8, 2, 1, 4, 3});
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

/// x = [[[1,2,3],[4,5,6]],[[7,8,9],[10,11,12]]].
Array reduceResult(const std::string &op, const std::string &attrs,
                   const std::string &outType) {
  std::string text = unaryModule("tensor<2x2x3xf32>", outType,
                                 "soma." + op + " %x " + attrs +
                                     " : tensor<2x2x3xf32> -> " + outType);
  return runText(text, {{"x", Array::f32({2, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                     10, 11, 12})}})["y"];
}

TEST(InterpreterReduce, SumMultipleAxesKeepdims) {
  expectF32(reduceResult("reduce_sum",
                         "{axes = array<i64: 0, 2>, keepdims = true}",
                         "tensor<1x2x1xf32>"),
            {1, 2, 1}, {30, 48});
  expectF32(
      reduceResult("reduce_sum", "{axes = array<i64: 0, 2>}", "tensor<2xf32>"),
      {2}, {30, 48});
}

TEST(InterpreterReduce, Mean) {
  expectF32(
      reduceResult("reduce_mean", "{axes = array<i64: 1>}", "tensor<2x3xf32>"),
      {2, 3}, {2.5, 3.5, 4.5, 8.5, 9.5, 10.5});
  expectF32(reduceResult("reduce_mean",
                         "{axes = array<i64: 0, 1, 2>, keepdims = true}",
                         "tensor<1x1x1xf32>"),
            {1, 1, 1}, {6.5});
}

TEST(InterpreterReduce, Max) {
  expectF32(
      reduceResult("reduce_max", "{axes = array<i64: 0, 1, 2>}", "tensor<f32>"),
      {}, {12});
  expectF32(
      reduceResult("reduce_max", "{axes = array<i64: 2>}", "tensor<2x2xf32>"),
      {2, 2}, {3, 6, 9, 12});
  Graph g("t");
  g.output("y", soma::max(g.input("x", {2, 2}), {1}));
  auto out = interpret(g, {{"x", Array::f32({2, 2}, {-5, -7, NAN, 1})}});
  expectF32(out["y"], {2}, {-5, kNaN});
}

//===----------------------------------------------------------------------===//
// Shape and data movement
//===----------------------------------------------------------------------===//

TEST(InterpreterShape, ReshapeKeepsOrderAndDtype) {
  Graph g("t");
  g.output("f", reshape(g.input("x", {2, 3}), {3, 2}));
  g.output("i", reshape(g.input("l", {4}, DType::i64), {2, 2}));
  auto out = interpret(g, {{"x", Array::f32({2, 3}, {1, 2, 3, 4, 5, 6})},
                           {"l", Array::i64({4}, {7, 8, 9, 10})}});
  expectF32(out["f"], {3, 2}, {1, 2, 3, 4, 5, 6});
  expectArray(out["i"], DType::i64, {2, 2}, {7, 8, 9, 10});
}

TEST(InterpreterShape, TransposePerm201) {
  std::string text = unaryModule(
      "tensor<2x3x4xf32>", "tensor<4x2x3xf32>",
      "soma.transpose %x {perm = array<i64: 2, 0, 1>} : tensor<2x3x4xf32> -> "
      "tensor<4x2x3xf32>");
  Array y = runText(text, {{"x", Array::f32({2, 3, 4}, iota(24))}})["y"];
  // out[i][j][k] = x[j][k][i] = 12 j + 4 k + i.
  std::vector<double> expected;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k)
        expected.push_back(12 * j + 4 * k + i);
  expectF32(y, {4, 2, 3}, expected);
  // Spot checks written out: out[0] = [[0,4,8],[12,16,20]], out[1][0][2] = 9.
  EXPECT_EQ(y.data<float>()[4], 16.0f);
  EXPECT_EQ(y.data<float>()[6 + 2], 9.0f);
}

TEST(InterpreterShape, TransposeMatrixInt) {
  Graph g("t");
  g.output("y", transpose(g.input("x", {2, 3}, DType::i32), {1, 0}));
  auto out = interpret(g, {{"x", Array::i32({2, 3}, {1, 2, 3, 4, 5, 6})}});
  expectArray(out["y"], DType::i32, {3, 2}, {1, 4, 2, 5, 3, 6});
}

TEST(InterpreterShape, BroadcastTo) {
  Graph g("t");
  g.output("row", broadcast_to(g.input("r", {3}), {2, 3}));
  g.output("col", broadcast_to(g.input("c", {2, 1}), {2, 3}));
  auto out = interpret(g, {{"r", Array::f32({3}, {1, 2, 3})},
                           {"c", Array::f32({2, 1}, {7, 8})}});
  expectF32(out["row"], {2, 3}, {1, 2, 3, 1, 2, 3});
  expectF32(out["col"], {2, 3}, {7, 7, 7, 8, 8, 8});
}

TEST(InterpreterShape, SliceStride2) {
  std::string text = unaryModule(
      "tensor<3x4xf32>", "tensor<2x2xf32>",
      "soma.slice %x {starts = array<i64: 0, 1>, limits = array<i64: 3, 4>, "
      "strides = array<i64: 2, 2>} : tensor<3x4xf32> -> tensor<2x2xf32>");
  // Rows 0 and 2, columns 1 and 3 of [[0..3],[4..7],[8..11]].
  auto out = runText(text, {{"x", Array::f32({3, 4}, iota(12))}});
  expectF32(out["y"], {2, 2}, {1, 3, 9, 11});

  Graph g("t");
  g.output("y", slice(g.input("x", {10}), {1}, {8}, {2}));
  expectF32(interpret(g, {{"x", Array::f32({10}, iota(10))}})["y"], {4},
            {1, 3, 5, 7});
}

TEST(InterpreterShape, ConcatAxis1) {
  std::string text =
      binaryModule("tensor<2x1xf32>", "tensor<2x2xf32>", "tensor<2x3xf32>",
                   "soma.concat %a, %b {axis = 1 : i64} : (tensor<2x1xf32>, "
                   "tensor<2x2xf32>) -> tensor<2x3xf32>");
  auto out = runText(text, {{"a", Array::f32({2, 1}, {1, 2})},
                            {"b", Array::f32({2, 2}, {3, 4, 5, 6})}});
  expectF32(out["y"], {2, 3}, {1, 3, 4, 2, 5, 6});
}

TEST(InterpreterShape, ConcatThreeIntsAxis0) {
  Graph g("t");
  Tensor a = g.input("a", {1}, DType::i32), b = g.input("b", {2}, DType::i32);
  g.output("y", concat({a, b, a}, 0));
  auto out = interpret(
      g, {{"a", Array::i32({1}, {-1})}, {"b", Array::i32({2}, {5, 6})}});
  expectArray(out["y"], DType::i32, {4}, {-1, 5, 6, -1});
}

TEST(InterpreterShape, Constants) {
  std::string text = R"(module @t {
  func.func @t() -> (tensor<2xf32> {soma.output = "f"},
                     tensor<2x2xf32> {soma.output = "splat"},
                     tensor<3xi32> {soma.output = "i32"},
                     tensor<2xi64> {soma.output = "i64"}) {
    %0 = soma.constant dense<[1.5, -2.0]> : tensor<2xf32>
    %1 = soma.constant dense<2.5> : tensor<2x2xf32>
    %2 = soma.constant dense<[1, -2, 3]> : tensor<3xi32>
    %3 = soma.constant dense<[4000000000, -5]> : tensor<2xi64>
    return %0, %1, %2, %3 : tensor<2xf32>, tensor<2x2xf32>, tensor<3xi32>, tensor<2xi64>
  }
})";
  auto out = runText(text, {});
  expectF32(out["f"], {2}, {1.5, -2.0});
  expectF32(out["splat"], {2, 2}, {2.5, 2.5, 2.5, 2.5});
  expectArray(out["i32"], DType::i32, {3}, {1, -2, 3});
  expectArray(out["i64"], DType::i64, {2}, {4000000000.0, -5});
}

TEST(InterpreterShape, ConstantFromDsl) {
  Graph g("t");
  Tensor x = g.input("x", {2});
  g.output("y", x + constant(g, Array::f32({2}, {0.5f, 1.0f})));
  g.output("z", x * scalar(g, 3.0f));
  auto out = interpret(g, {{"x", Array::f32({2}, {1, 2})}});
  expectF32(out["y"], {2}, {1.5, 3});
  expectF32(out["z"], {2}, {3, 6});
}

//===----------------------------------------------------------------------===//
// Softmax family and losses
//===----------------------------------------------------------------------===//

TEST(InterpreterSoftmax, Softmax) {
  std::string text =
      unaryModule("tensor<2x3xf32>", "tensor<2x3xf32>",
                  "soma.softmax %x {axis = 1 : i64} : tensor<2x3xf32>");
  // Row 1 is row 0 plus 1000: subtracting the max keeps it finite.
  auto out =
      runText(text, {{"x", Array::f32({2, 3}, {1, 2, 3, 1001, 1002, 1003})}});
  double a = 0.09003057317038046, b = 0.24472847105479767,
         c = 0.6652409557748219;
  expectF32(out["y"], {2, 3}, {a, b, c, a, b, c});
}

TEST(InterpreterSoftmax, SoftmaxAxis0) {
  Graph g("t");
  g.output("y", softmax(g.input("x", {2, 2}), 0));
  auto out = interpret(g, {{"x", Array::f32({2, 2}, {1, 5, 3, 7})}});
  // Each column is [v, v + 2]: [1/(1+e^2), e^2/(1+e^2)].
  double lo = 0.11920292202211755, hi = 0.8807970779778823;
  expectF32(out["y"], {2, 2}, {lo, lo, hi, hi});
}

TEST(InterpreterSoftmax, LogSoftmax) {
  Graph g("t");
  g.output("y", log_softmax(g.input("x", {1, 3})));
  auto out = interpret(g, {{"x", Array::f32({1, 3}, {1, 2, 3})}});
  expectF32(out["y"], {1, 3},
            {-2.4076059644443806, -1.4076059644443804, -0.4076059644443804});
}

TEST(InterpreterLoss, CrossEntropyOneRow) {
  std::string text = binaryModule(
      "tensor<1x3xf32>", "tensor<1xi32>", "tensor<f32>",
      "soma.softmax_cross_entropy %a, %b : (tensor<1x3xf32>, tensor<1xi32>) "
      "-> tensor<f32>");
  auto out = runText(text, {{"a", Array::f32({1, 3}, {1, 2, 3})},
                            {"b", Array::i32({1}, {2})}});
  expectF32(out["y"], {}, {0.4076059644443806});
}

TEST(InterpreterLoss, CrossEntropyMeanAndSum) {
  Graph g("t");
  Tensor logits = g.input("logits", {2, 3});
  Tensor labels = g.input("labels", {2}, DType::i64);
  g.output("mean", softmax_cross_entropy(logits, labels));
  g.output("sum", softmax_cross_entropy(logits, labels, Reduction::sum));
  // Row 0: 0.4076059644; row 1 (all zeros): log 3 = 1.0986122887.
  auto out = interpret(g, {{"logits", Array::f32({2, 3}, {1, 2, 3, 0, 0, 0})},
                           {"labels", Array::i64({2}, {2, 0})}});
  expectF32(out["mean"], {}, {0.7531091265562452});
  expectF32(out["sum"], {}, {1.5062182531124904});
}

TEST(InterpreterLoss, CrossEntropyLabelOutOfRangeIsNaN) {
  Graph g("t");
  g.output("y", softmax_cross_entropy(g.input("logits", {2, 3}),
                                      g.input("labels", {2}, DType::i32)));
  Array logits = Array::f32({2, 3}, {1, 2, 3, 0, 0, 0});
  for (int32_t bad : {3, -1}) {
    auto out = interpret(
        g, {{"logits", logits}, {"labels", Array::i32({2}, {0, bad})}});
    expectF32(out["y"], {}, {kNaN});
  }
}

TEST(InterpreterLoss, Mse) {
  Graph g("t");
  Tensor p = g.input("p", {3}), t = g.input("t", {3});
  g.output("mean", mse(p, t));
  g.output("sum", mse(p, t, Reduction::sum));
  auto out = interpret(g, {{"p", Array::f32({3}, {1, 2, 3})},
                           {"t", Array::f32({3}, {1, 0, 6})}});
  expectF32(out["mean"], {}, {13.0 / 3.0});
  expectF32(out["sum"], {}, {13});
}

TEST(InterpreterLoss, BinaryCrossEntropyClampsLogs) {
  Graph g("t");
  Tensor p = g.input("p", {5}), t = g.input("t", {5});
  g.output("mean", binary_cross_entropy(p, t));
  g.output("sum", binary_cross_entropy(p, t, Reduction::sum));
  // -log 0.9, -log 0.8, -log 0.5, then p = 0 with t = 1 costs 100 (the
  // clamp) and p = 1 with t = 1 costs 0 (not 0 * -inf = NaN).
  auto out = interpret(g, {{"p", Array::f32({5}, {0.9f, 0.2f, 0.5f, 0, 1})},
                           {"t", Array::f32({5}, {1, 0, 1, 1, 1})}});
  double sum =
      0.10536051565782628 + 0.2231435513142097 + 0.6931471805599453 + 100.0;
  expectF32(out["sum"], {}, {sum});
  expectF32(out["mean"], {}, {sum / 5});
}

//===----------------------------------------------------------------------===//
// A small network, parameters, and errors
//===----------------------------------------------------------------------===//

TEST(InterpreterGraph, DenseLayerWithParams) {
  Graph g("t");
  Tensor x = g.input("x", {1, 2});
  Tensor w = g.param("w", {2, 2}, init::constant(0.5));
  Tensor b = g.param("b", {2}, init::zeros());
  g.output("y", relu(matmul(x, w) + b));
  // Default parameters from the initializers: w = 0.5 everywhere, b = 0.
  auto out = interpret(g, {{"x", Array::f32({1, 2}, {2, 4})}});
  expectF32(out["y"], {1, 2}, {3, 3});
  NamedArrays params = {{"w", Array::f32({2, 2}, {1, -1, 2, 1})},
                        {"b", Array::f32({2}, {0.5f, -10})}};
  out = interpret(g, {{"x", Array::f32({1, 2}, {2, 4})}}, &params);
  // [2,4] x [[1,-1],[2,1]] = [10, 2]; + b = [10.5, -8]; relu.
  expectF32(out["y"], {1, 2}, {10.5, 0});
}

/// The message of the soma::Error that `f` throws, or "" if none.
template <class F> std::string errorOf(F f) {
  try {
    f();
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

TEST(InterpreterErrors, Inputs) {
  Graph g("t");
  g.output("y", relu(g.input("x", {2, 3})));
  EXPECT_EQ(errorOf([&] { interpret(g, {}); }),
            "input 'x' (f32[2,3]) is missing");
  EXPECT_EQ(errorOf([&] {
              interpret(g, {{"x", Array::f32({3, 2}, {1, 2, 3, 4, 5, 6})}});
            }),
            "input 'x': expected f32[2,3], got f32[3,2]");
  EXPECT_EQ(errorOf([&] {
              interpret(g, {{"x", Array(DType::i32, {2, 3})}});
            }),
            "input 'x': expected f32[2,3], got i32[2,3]");
  EXPECT_EQ(errorOf([&] {
              interpret(g, {{"x", Array(DType::f32, {2, 3})},
                            {"z", Array(DType::f32, {1})}});
            }),
            "'z' is not an input of the graph 't'");
}

TEST(InterpreterErrors, Params) {
  Graph g("t");
  g.output("y", g.input("x", {2}) + g.param("b", {2}, init::zeros()));
  Array x(DType::f32, {2});
  NamedArrays none;
  EXPECT_EQ(errorOf([&] {
              interpret(g, {{"x", x}}, &none);
            }),
            "parameter 'b' (f32[2]) is missing");
  NamedArrays wrong = {{"b", Array(DType::f32, {3})}};
  EXPECT_EQ(errorOf([&] {
              interpret(g, {{"x", x}}, &wrong);
            }),
            "parameter 'b': expected f32[2], got f32[3]");
  NamedArrays extra = {{"b", x}, {"c", x}};
  EXPECT_EQ(errorOf([&] {
              interpret(g, {{"x", x}}, &extra);
            }),
            "'c' is not a parameter of the graph 't'");
}

TEST(InterpreterErrors, FunctionAndOpArguments) {
  Graph g = parse(unaryModule("tensor<2xf32>", "tensor<2xf32>",
                              "soma.exp %x : tensor<2xf32>"));
  mlir::func::FuncOp fn = g.impl()->func;
  EXPECT_EQ(errorOf([&] { interpretFunction(fn, {}); }),
            "interpreter: function 't' has 1 arguments, given 0");
  mlir::Operation *exp = &fn.getBody().front().front();
  EXPECT_EQ(errorOf([&] {
              interpretOp(exp, {RefTensor{DType::f32, {3}, {1, 2, 3}}});
            }),
            "interpreter: soma.exp operand 0: expected f32[2], got f32[3]");
  std::vector<RefTensor> y =
      interpretOp(exp, {RefTensor{DType::f32, {2}, {0, 1}}});
  ASSERT_EQ(y.size(), 1u);
  EXPECT_EQ(y[0].data, (std::vector<double>{1.0, std::exp(1.0)}));
}

TEST(InterpreterErrors, UnsupportedOp) {
  Graph g = parse(unaryModule("tensor<2xf32>", "tensor<2xf32>",
                              "soma.exp %x : tensor<2xf32>"));
  mlir::Operation *ret = g.impl()->func.getBody().front().getTerminator();
  std::string msg = errorOf([&] {
    interpretOp(ret, {RefTensor{DType::f32, {2}, {0, 1}}});
  });
  EXPECT_EQ(msg.rfind("interpreter: unsupported op 'func.return' at ", 0), 0u)
      << msg;
}

TEST(InterpreterConvert, RoundTrip) {
  RefTensor f = toRef(Array::f32({2}, {0.1f, -3}));
  EXPECT_EQ(f.dtype, DType::f32);
  EXPECT_EQ(f.shape, (Shape{2}));
  EXPECT_EQ(f.data[0], static_cast<double>(0.1f));
  RefTensor i = toRef(Array::i64({2}, {-(int64_t(1) << 40), 7}));
  EXPECT_EQ(i.data[0], -1099511627776.0);
  // fromRef rounds f32 values to float and converts integers exactly.
  Array back = fromRef(RefTensor{DType::f32, {1}, {0.1}});
  EXPECT_EQ(back.data<float>()[0], 0.1f);
  expectArray(fromRef(i), DType::i64, {2}, {-1099511627776.0, 7});
}

} // namespace
