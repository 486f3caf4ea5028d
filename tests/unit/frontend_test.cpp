//===- frontend_test.cpp - The builder DSL, its errors, save and load -------===//

#include "test_util.h"

#include <fstream>

using namespace soma;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

/// "frontend_test.cpp:<line>: " for a line of this file.
std::string at(int line) { return "frontend_test.cpp:" + std::to_string(line) + ": "; }

TEST(Frontend, ShapesAndDtypesAreInferred) {
  Graph g("t");
  Tensor x = g.input("x", {64, 784});
  Tensor y = g.input("y", {64}, DType::i32);
  Tensor h = nn::dense(x, 256);
  EXPECT_EQ(h.shape(), (Shape{64, 256}));
  EXPECT_EQ(h.type_str(), "f32[64,256]");
  EXPECT_EQ(y.dtype(), DType::i32);
  EXPECT_EQ(sum(h, {1}, true).shape(), (Shape{64, 1}));
  EXPECT_EQ(sum(h).shape(), Shape{});
  EXPECT_EQ(matmul(x, x, {.transpose_a = true}).shape(), (Shape{784, 784}));
  EXPECT_EQ(reshape(h, {-1, 64}).shape(), (Shape{256, 64}));
  EXPECT_EQ(softmax_cross_entropy(h, y).shape(), Shape{});
  EXPECT_EQ(h.dim(-1), 256);
}

TEST(Frontend, MatmulErrorNamesOpShapesAndLine) {
  Graph g("t");
  Tensor x = g.input("x", {64, 784});
  Tensor w = g.param("w", {512, 256}, init::zeros());
  // The message of the issue: file:line: matmul: inner dimensions differ.
  int line = __LINE__ + 1;
  EXPECT_SOMA_ERROR(matmul(x, w), at(line) + "matmul: inner dimensions differ: [64,784] x [512,256]");
}

TEST(Frontend, OperatorErrorsReportTheExpressionsLine) {
  Graph g("t");
  Tensor a = g.input("a", {2, 3});
  Tensor b = g.input("b", {4});
  int line = __LINE__ + 1;
  EXPECT_SOMA_ERROR(a + b, at(line) + "add: shapes cannot be broadcast: [2,3] and [4]");
  line = __LINE__ + 1;
  EXPECT_SOMA_ERROR(a * b, at(line) + "mul:");
}

TEST(Frontend, ErrorsOfEveryOpFamily) {
  Graph g("t");
  Tensor x = g.input("x", {4, 3});
  Tensor lab = g.input("lab", {4}, DType::i32);
  Tensor flab = g.input("flab", {4});
  EXPECT_SOMA_ERROR(relu(lab), "relu: input must be f32, got i32[4]");
  EXPECT_SOMA_ERROR(sum(x, {2}), "reduce_sum: axis 2 is out of range for rank 2");
  EXPECT_SOMA_ERROR(sum(x, {0, 0}), "reduce_sum: axis 0 is repeated");
  EXPECT_SOMA_ERROR(reshape(x, {5, 2}), "reshape: cannot reshape [4,3] (12 elements) to [5,2] (10 elements)");
  EXPECT_SOMA_ERROR(reshape(x, {-1, -1}), "reshape: more than one -1");
  EXPECT_SOMA_ERROR(transpose(x, {0, 0}), "transpose: axis 0 is repeated");
  EXPECT_SOMA_ERROR(transpose(x, {0}), "transpose: permutation [0] does not match the rank of [4,3]");
  EXPECT_SOMA_ERROR(broadcast_to(x, {4, 5}), "broadcast_to: cannot broadcast [4,3] to [4,5]");
  EXPECT_SOMA_ERROR(slice(x, {0, 0}, {5, 3}), "slice: range [0, 5) of dimension 0 is empty or outside [0, 4)");
  EXPECT_SOMA_ERROR(slice(x, {0, 0}, {4, 3}, {1, 0}), "slice: stride 0 of dimension 1 must be >= 1");
  EXPECT_SOMA_ERROR(concat({x, lab}, 0), "concat: input 1 i32[4] does not match input 0 f32[4,3]");
  EXPECT_SOMA_ERROR(softmax(x, 2), "softmax: axis 2 is out of range for rank 2");
  EXPECT_SOMA_ERROR(softmax_cross_entropy(x, flab), "softmax_cross_entropy: labels must be i32 or i64 class indices, got f32[4]");
  EXPECT_SOMA_ERROR(softmax_cross_entropy(x, g.input("l3", {3}, DType::i64)),
                    "softmax_cross_entropy: labels must be [4] to match logits [4,3], got [3]");
  EXPECT_SOMA_ERROR(mse(x, flab), "mse: prediction and target shapes differ: [4,3] vs [4]");
  EXPECT_SOMA_ERROR(matmul(x, flab), "matmul: operands must have rank >= 2");
  EXPECT_SOMA_ERROR(nn::dense(flab, 3), "dense: input must be [batch, features], got f32[4]");
  EXPECT_SOMA_ERROR(nn::dense(x, 0), "dense: units must be positive");
}

TEST(Frontend, ConvolutionAndPoolingErrorsNameAttributesAndLine) {
  Graph g("t");
  Tensor x = g.input("x", {2, 3, 8, 8});
  Tensor small = g.input("small", {1, 1, 3, 3});
  int line = __LINE__ + 1;
  EXPECT_SOMA_ERROR(nn::conv2d(small, 4, 5), at(line) + "conv2d: the 5x5 window (dilation [1,1]) does not fit the 3x3 input with padding [0,0,0,0]: the output would be empty");
  EXPECT_SOMA_ERROR(nn::conv2d(x, 4, 3, {.stride = 0}), "conv2d: stride must be >= 1, got [0,0]");
  EXPECT_SOMA_ERROR(nn::conv2d(x, 4, 3, {.dilation = {1, 0}}), "conv2d: dilation must be >= 1, got [1,0]");
  EXPECT_SOMA_ERROR(nn::conv2d(x, 4, 3, {.groups = 2}), "conv2d: groups 2 must divide the input channels (3) and the output channels (4)");
  EXPECT_SOMA_ERROR(conv2d(x, g.param("w", {4, 2, 3, 3}, init::zeros())),
                    "conv2d: filter [4,2,3,3] expects 2 input channels (groups 1), the input [2,3,8,8] has 3");
  EXPECT_SOMA_ERROR(nn::conv2d(x, 4, 3, {.padding = {1, 2, 3}}), "conv2d: padding takes 1, 2 or 4 values, got 3");
  EXPECT_SOMA_ERROR(conv2d(x, g.param("v", {4, 3, 3, 3}, init::zeros()), {.padding = -1}), "conv2d: padding must be >= 0");
  EXPECT_SOMA_ERROR(max_pool2d(small, 4), "max_pool2d: the 4x4 window (dilation [1,1]) does not fit the 3x3 input");
  EXPECT_SOMA_ERROR(avg_pool2d(x, 2, {.stride = 0}), "avg_pool2d: stride must be >= 1, got [0,0]");
  EXPECT_SOMA_ERROR(max_pool2d(g.input("flat", {2, 3}), 2), "max_pool2d: input must be [N, C, H, W], got [2,3]");
  EXPECT_SOMA_ERROR(global_avg_pool2d(g.input("v3", {2, 3, 4})), "global_avg_pool2d: input must be [N, C, H, W]");
  // The same checks guard hand-written IR.
  EXPECT_SOMA_ERROR(parse(R"(module @g {
  func.func @g(%x: tensor<1x1x3x3xf32> {soma.input = "x"}, %w: tensor<1x1x5x5xf32> {soma.input = "w"}) -> (tensor<1x1x1x1xf32> {soma.output = "y"}) {
    %0 = soma.conv2d %x, %w {stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>} : (tensor<1x1x3x3xf32>, tensor<1x1x5x5xf32>) -> tensor<1x1x1x1xf32>
    return %0 : tensor<1x1x1x1xf32>
  }
})", "c.mlir"), "c.mlir:3:10:", "conv2d: the 5x5 window");
}

TEST(Frontend, LossesByHand) {
  // cosine_similarity([1,0],[1,1]) = 1/sqrt 2; triplet with the course's
  // squared distances: |a-p|^2 = 1, |a-n|^2 = 4, margin 2 -> max(1 - 4 + 2, 0) = 0, and 3 for margin 6.
  Graph g("t");
  Tensor a = constant(g, Array::f32({1, 2}, {1, 0}));
  Tensor b = constant(g, Array::f32({1, 2}, {1, 1}));
  Tensor p = constant(g, Array::f32({1, 2}, {1, 1}));
  Tensor n = constant(g, Array::f32({1, 2}, {1, 2}));
  g.output("cos", cosine_similarity(a, b));
  g.output("t2", triplet_loss(a, p, n, 2.0));
  g.output("t6", triplet_loss(a, p, n, 6.0));
  g.output("hinge", hinge_loss(constant(g, Array::f32({2}, {0.5f, 2.0f})), constant(g, Array::f32({2}, {1, -1}))));
  auto out = compile_inference(g).run({});
  EXPECT_NEAR(out["cos"].data<float>()[0], 1 / std::sqrt(2.0), 1e-6);
  EXPECT_FLOAT_EQ(out["t2"].data<float>()[0], 0.0f);
  EXPECT_FLOAT_EQ(out["t6"].data<float>()[0], 3.0f);
  EXPECT_FLOAT_EQ(out["hinge"].data<float>()[0], (0.5f + 3.0f) / 2); // max(0, 1 - 0.5), max(0, 1 + 2)
}

TEST(Frontend, BilinearUpsamplingByHand) {
  // PyTorch (align_corners=False) on [[1, 2], [3, 4]] with scale 2: the
  // first row is 1, 1.25, 1.75, 2 and the second 1.5, 1.75, 2.25, 2.5.
  Graph g("up");
  Tensor x = constant(g, Array::f32({1, 1, 2, 2}, {1, 2, 3, 4}));
  g.output("y", upsample2d(x, 2, Upsample::bilinear));
  auto y = compile_inference(g).run({})["y"];
  const float want[] = {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f};
  for (int i = 0; i < 8; ++i)
    EXPECT_FLOAT_EQ(y.data<float>()[i], want[i]) << i;
  EXPECT_SOMA_ERROR(split(x, {1, 2}, 3), "split: sizes [1,2] add up to 3, not to dimension 3 of f32[1,1,2,2]");
}

TEST(Frontend, LeNet5HasTheClassicParameterCount) {
  Graph g = zoo::lenet5(8, true);
  int64_t count = 0;
  for (const ParamInfo &p : g.params())
    count += numel(p.shape);
  EXPECT_EQ(count, 61706);
  EXPECT_EQ(g.outputs()[0].shape, (Shape{8, 10}));
  EXPECT_EQ(g.params()[0].shape, (Shape{6, 1, 5, 5}));
  EXPECT_EQ(g.params()[0].init.fan_in, 25);
}

TEST(Frontend, GraphMisuseIsAnError) {
  Graph g("t"), other("u");
  Tensor x = g.input("x", {2});
  Tensor y = other.input("y", {2});
  EXPECT_SOMA_ERROR(x + y, "add: operands belong to different graphs ('t' and 'u')");
  EXPECT_SOMA_ERROR(g.input("x", {3}), "input 'x': the graph already has an input or parameter of that name");
  EXPECT_SOMA_ERROR(g.input("z", {0, 3}), "'z': dimensions must be positive, got [0,3]");
  EXPECT_SOMA_ERROR(relu(Tensor()), "relu: operand is an empty Tensor");
  g.output("o", x);
  EXPECT_SOMA_ERROR(g.output("o", x), "the graph already has an output named 'o'");
  EXPECT_SOMA_ERROR(g.output("p", y), "output 'p' is a tensor of another graph");
}

TEST(Frontend, ParamsRecordTheirInitializers) {
  Graph g("t", 42);
  Tensor x = g.input("x", {8, 20});
  nn::dense(x, 30, {.weight_init = init::he_normal(), .name = "fc"});
  auto ps = g.params();
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].name, "fc.weight");
  EXPECT_EQ(ps[0].shape, (Shape{20, 30}));
  EXPECT_EQ(ps[0].init.kind, InitSpec::Kind::he_normal);
  EXPECT_EQ(ps[0].init.fan_in, 20);
  EXPECT_EQ(ps[0].init.fan_out, 30);
  EXPECT_EQ(ps[1].name, "fc.bias");
  EXPECT_EQ(ps[1].init.kind, InitSpec::Kind::zeros);
  // Same seed, same values; another seed, other values.
  NamedArrays a = g.init_params(), b = g.init_params();
  EXPECT_EQ(0, std::memcmp(a[0].second.raw(), b[0].second.raw(), a[0].second.nbytes()));
  Graph h("t", 43);
  nn::dense(h.input("x", {8, 20}), 30, {.weight_init = init::he_normal(), .name = "fc"});
  EXPECT_NE(0, std::memcmp(a[0].second.raw(), h.init_params()[0].second.raw(), a[0].second.nbytes()));
}

TEST(Frontend, SaveLoadRoundTripIsExact) {
  test::TempDir dir("roundtrip");
  Graph g = zoo::mlp(16, true, 5);
  g.save(dir / "mlp.mlir");
  Graph back = load(dir / "mlp.mlir");
  EXPECT_EQ(back.str(), g.str());
  EXPECT_EQ(back.name(), "mlp");
  EXPECT_EQ(back.seed(), 5u);
  EXPECT_EQ(back.params().size(), 6u);
  EXPECT_EQ(back.inputs().size(), 2u);
  // The user's source locations survive.
  EXPECT_THAT(g.str(), HasSubstr("mlp.cpp"));
  // Loaded graphs keep building.
  Graph more = load(dir / "mlp.mlir");
  std::vector<TensorSpec> outs = more.outputs();
  EXPECT_EQ(outs[0].name, "logits");
  EXPECT_EQ(outs[1].shape, Shape{});
}

TEST(Frontend, LoadErrorsSayWhatAndWhere) {
  test::TempDir dir("loaderr");
  auto write = [&](const std::string &name, const std::string &text) {
    std::ofstream(dir / name) << text;
    return dir / name;
  };
  EXPECT_SOMA_ERROR(load(dir / "missing.mlir"), "cannot open", "missing.mlir");
  std::string bad = write("bad.mlir", "module {\n  func.func @f( {\n}\n");
  EXPECT_SOMA_ERROR(load(bad), "bad.mlir:2:");
  std::string unknown = write("unknown.mlir", R"(module @g {
  func.func @g(%x: tensor<2xf32> {soma.input = "x"}) -> (tensor<2xf32> {soma.output = "y"}) {
    %0 = soma.frobnicate %x : tensor<2xf32>
    return %0 : tensor<2xf32>
  }
})");
  EXPECT_SOMA_ERROR(load(unknown), "unknown.mlir:3:", "soma.frobnicate");
  std::string shape = write("shape.mlir", R"(module @g {
  func.func @g(%a: tensor<4x3xf32> {soma.input = "a"}, %b: tensor<5x2xf32> {soma.input = "b"}) -> (tensor<4x2xf32> {soma.output = "y"}) {
    %0 = soma.matmul %a, %b : (tensor<4x3xf32>, tensor<5x2xf32>) -> tensor<4x2xf32>
    return %0 : tensor<4x2xf32>
  }
})");
  EXPECT_SOMA_ERROR(load(shape), "shape.mlir:3:", "matmul: inner dimensions differ: [4,3] x [5,2]");
  std::string foreign = write("foreign.mlir", R"(module @g {
  func.func @g(%a: tensor<2xf32> {soma.input = "a"}) -> (tensor<2xf32> {soma.output = "y"}) {
    %0 = arith.addf %a, %a : tensor<2xf32>
    return %0 : tensor<2xf32>
  }
})");
  EXPECT_SOMA_ERROR(load(foreign), "foreign.mlir", "'arith.addf' is not a soma op");
  std::string unmarked = write("unmarked.mlir", R"(module @g {
  func.func @g(%a: tensor<2xf32>) -> (tensor<2xf32> {soma.output = "y"}) {
    return %a : tensor<2xf32>
  }
})");
  EXPECT_SOMA_ERROR(load(unmarked), "unmarked.mlir", "argument 0 must carry exactly one of soma.input and soma.param");
  std::string badinit = write("badinit.mlir", R"(module @g {
  func.func @g(%a: tensor<2xf32> {soma.param = "a", soma.init = {kind = "magic"}}) -> (tensor<2xf32> {soma.output = "y"}) {
    return %a : tensor<2xf32>
  }
})");
  EXPECT_SOMA_ERROR(load(badinit), "magic");
}

TEST(Frontend, MissingOrMistypedAttributesAreErrorsNotCrashes) {
  auto graph = [](const std::string &op) {
    return "module @g {\n  func.func @g(%x: tensor<2x3xf32> {soma.input = \"x\"}) -> "
           "(tensor<2x3xf32> {soma.output = \"y\"}) {\n    %0 = " +
           op + "\n    return %0 : tensor<2x3xf32>\n  }\n}\n";
  };
  EXPECT_SOMA_ERROR(parse(graph("soma.softmax %x : tensor<2x3xf32>"), "a.mlir"),
                    "a.mlir:3:10: softmax: missing attribute 'axis'");
  EXPECT_SOMA_ERROR(parse(graph("soma.softmax %x {axis = 1.0} : tensor<2x3xf32>"), "b.mlir"),
                    "softmax: attribute 'axis' must be an integer");
  EXPECT_SOMA_ERROR(parse(R"(module @g {
  func.func @g(%x: tensor<2x3xf32> {soma.input = "x"}) -> (tensor<2xf32> {soma.output = "y"}) {
    %0 = soma.reduce_sum %x {axes = 1 : i64} : tensor<2x3xf32> -> tensor<2xf32>
    return %0 : tensor<2xf32>
  }
})", "c.mlir"), "c.mlir:3:10:", "attribute 'axes' failed to satisfy constraint");
  EXPECT_SOMA_ERROR(parse(graph("soma.leaky_relu %x {alpha = \"big\"} : tensor<2x3xf32>"), "d.mlir"),
                    "leaky_relu: attribute 'alpha' must be an f64 float");
}

TEST(Frontend, LoadedInitializersGetDefaultFans) {
  Graph g = parse(R"(module @g {
  func.func @g(%w: tensor<30x20xf32> {soma.param = "w", soma.init = {kind = "xavier_uniform"}}) -> (tensor<30x20xf32> {soma.output = "y"}) {
    return %w : tensor<30x20xf32>
  }
})");
  ASSERT_EQ(g.params().size(), 1u);
  EXPECT_EQ(g.params()[0].init.fan_in, 30);
  EXPECT_EQ(g.params()[0].init.fan_out, 20);
  EXPECT_EQ(g.init_params()[0].second.numel(), 600);
  EXPECT_SOMA_ERROR(parse(R"(module @g {
  func.func @g(%w: tensor<3xf32> {soma.param = "w", soma.init = {kind = "magic"}}) -> (tensor<3xf32> {soma.output = "y"}) {
    return %w : tensor<3xf32>
  }
})", "m.mlir"), "m.mlir: parameter 'w':", "magic");
}

TEST(Frontend, AotHeaderOfAGraphWithoutParameters) {
  test::TempDir dir("aot_noparams");
  Graph g("plain");
  g.output("y", softmax(g.input("x", {2, 3})));
  compile_aot(g, dir.str(), {.object = false});
  std::string weights = read_file(dir / "plain.weights.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = n << 8 | static_cast<unsigned char>(weights[i]);
  std::string header = read_file(dir / "plain.h");
  EXPECT_THAT(header, HasSubstr("if (n != " + std::to_string(n) + "u)"));
  EXPECT_GT(n, 0u);
}

TEST(Frontend, ZooKnowsItsModels) {
  EXPECT_SOMA_ERROR(zoo::build("resnet9000"), "unknown model 'resnet9000'", "mlp");
  Graph g = zoo::build("mlp", 32);
  EXPECT_EQ(g.inputs()[0].shape, (Shape{32, 784}));
  int64_t count = 0;
  for (const ParamInfo &p : g.params())
    count += numel(p.shape);
  EXPECT_EQ(count, 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10); // 235,146
}

TEST(Frontend, DumpsEveryStageThroughTheEnvironment) {
  test::TempDir dir("dumpenv");
  ::setenv("SOMA_DUMP", "all", 1);
  ::setenv("SOMA_DUMP_DIR", dir.str().c_str(), 1);
  Graph g = zoo::mlp(256); // big enough for OpenMP regions (784x256 over 256 rows: above the grain)
  compile_inference(g);
  ::unsetenv("SOMA_DUMP");
  ::unsetenv("SOMA_DUMP_DIR");
  for (const DumpStage &s : dump_stages())
    EXPECT_EQ(std::filesystem::exists(dir / s.file), std::string(s.name) != "train") << s.file;
  std::ifstream built(dir / "00-built.mlir");
  std::string text((std::istreambuf_iterator<char>(built)), {});
  EXPECT_THAT(text, HasSubstr("soma.matmul"));
  std::ifstream ll(dir / "40-module.ll");
  std::string ir((std::istreambuf_iterator<char>(ll)), {});
  EXPECT_THAT(ir, HasSubstr("define void @mlp(ptr"));
  EXPECT_THAT(ir, HasSubstr("__kmpc_fork_call"));
}

TEST(Frontend, UnknownDumpStageIsAnError) {
  Graph g = zoo::mlp(4);
  EXPECT_SOMA_ERROR(compile_inference(g, {.dump = "built,frobs", .use_environment = false}),
                    "unknown dump stage 'frobs'", "built, train, fused, lowered");
}

TEST(Frontend, InferenceChecksInputsAndParams) {
  Graph g = zoo::mlp(4);
  Inference fn = compile_inference(g);
  EXPECT_SOMA_ERROR(fn.run({}), "input 'x' (f32[4,784]) is missing");
  EXPECT_SOMA_ERROR(fn.run({{"x", Array(DType::f32, {8, 784})}}), "input 'x': expected f32[4,784], got f32[8,784]");
  EXPECT_SOMA_ERROR(fn.run({{"x", Array(DType::i32, {4, 784})}}), "expected f32[4,784], got i32[4,784]");
  EXPECT_SOMA_ERROR(fn.run({{"x", Array(DType::f32, {4, 784})}, {"z", Array(DType::f32, {1})}}),
                    "'z' is not an input of the model 'mlp'");
  NamedArrays ps = g.init_params();
  ps[0].second = Array(DType::f32, {785, 256});
  EXPECT_SOMA_ERROR(fn.set_params(ps), "parameter 'dense0.weight': the model has f32[784,256], the given value is f32[785,256]");
  ps.pop_back();
  ps[0].second = Array(DType::f32, {784, 256});
  EXPECT_SOMA_ERROR(fn.set_params(ps), "parameter 'dense2.bias' (f32[10]) is missing");
}

} // namespace
