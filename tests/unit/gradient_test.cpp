//===- gradient_test.cpp - Every VJP against central finite differences ----===//
//
// For each differentiable op, a graph applies the op to random inputs and
// reduces the result to a scalar with fixed random weights (so that every
// output element matters differently). check_gradients compares the compiled
// gradient (f32) and the interpreter's VJP (double) with central differences
// of the loss computed by the interpreter in double precision.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#include <functional>

using namespace soma;

namespace {

struct In {
  Shape shape;
  float lo = -1.0f, hi = 1.0f;
  DType dtype = DType::f32;
};

struct GradCase {
  std::string name;
  std::vector<In> inputs;
  std::function<Tensor(Graph &, std::vector<Tensor> &)> build;
};

std::ostream &operator<<(std::ostream &os, const GradCase &c) { return os << c.name; }

using Ts = std::vector<Tensor>;

std::vector<GradCase> gradCases() {
  std::vector<GradCase> c;
  auto un = [&](const char *name, Tensor (*fn)(const Tensor &, Loc), float lo, float hi) {
    c.push_back({name, {{{3, 4}, lo, hi}}, [fn](Graph &, Ts &x) { return fn(x[0], Loc::current()); }});
  };
  un("neg", soma::neg, -1, 1);
  un("exp", soma::exp, -2, 2);
  un("log", soma::log, 0.5f, 3);
  un("sqrt", soma::sqrt, 0.5f, 3);
  un("abs", soma::abs, -1, 1);
  un("tanh", soma::tanh, -2, 2);
  un("sigmoid", soma::sigmoid, -3, 3);
  un("relu", soma::relu, -1, 1);
  un("softplus", soma::softplus, -3, 3);
  c.push_back({"leaky_relu", {{{3, 4}}}, [](Graph &, Ts &x) { return leaky_relu(x[0], 0.2); }});
  un("silu", soma::silu, -3, 3);
  c.push_back({"upsample_nearest", {{{1, 2, 3, 3}}}, [](Graph &, Ts &x) { return upsample2d(x[0], 2); }});
  c.push_back({"upsample_bilinear", {{{1, 2, 3, 4}}},
               [](Graph &, Ts &x) { return upsample2d(x[0], {2, 3}, Upsample::bilinear); }});
  c.push_back({"split", {{{3, 5}}}, [](Graph &, Ts &x) {
                 auto parts = split(x[0], {2, 3}, 1);
                 return parts[0] * parts[0] + sum(parts[1], {1}, true);
               }});
  un("gelu", soma::gelu, -3, 3);
  c.push_back({"elu", {{{3, 4}, -2, 2}}, [](Graph &, Ts &x) { return elu(x[0], 0.7); }});
  c.push_back({"swish", {{{3, 4}, -2, 2}}, [](Graph &, Ts &x) { return swish(x[0], 1.702); }});
  c.push_back({"maxout", {{{3, 6}}}, [](Graph &, Ts &x) { return maxout(x[0], 3); }});
  c.push_back({"prelu", {{{2, 3, 2, 2}}}, [](Graph &, Ts &x) { return nn::prelu(x[0]); }});
  c.push_back({"bce_with_logits", {{{3, 4}, -3, 3}, {{3, 4}, 0, 1}},
               [](Graph &, Ts &x) { return binary_cross_entropy_with_logits(x[0], x[1]); }});
  c.push_back({"nll_loss", {{{4, 5}, -2, 0}, {{4}, 0, 5, DType::i32}},
               [](Graph &, Ts &x) { return nll_loss(x[0], x[1]); }});
  c.push_back({"kl_divergence", {{{3, 4}}, {{3, 4}}},
               [](Graph &, Ts &x) { return kl_divergence(log_softmax(x[0]), softmax(x[1])); }});
  c.push_back({"hinge_loss", {{{6}, -2, 2}}, [](Graph &g, Ts &x) {
                 return hinge_loss(x[0], constant(g, Array::f32({6}, {1, -1, 1, -1, 1, -1})), 1.0, Reduction::sum);
               }});
  c.push_back({"margin_ranking", {{{6}, -2, 2}, {{6}, -2, 2}}, [](Graph &g, Ts &x) {
                 return margin_ranking_loss(x[0], x[1], constant(g, Array::f32({6}, {1, -1, 1, 1, -1, 1})), 0.2);
               }});
  c.push_back({"triplet_loss", {{{3, 4}}, {{3, 4}}, {{3, 4}}},
               [](Graph &, Ts &x) { return triplet_loss(x[0], x[1], x[2], 2.0); }});
  c.push_back({"cosine_similarity", {{{3, 4}}, {{3, 4}}}, [](Graph &, Ts &x) { return cosine_similarity(x[0], x[1]); }});
  auto bin = [&](const std::string &name, Tensor (*fn)(const Tensor &, const Tensor &, Loc), Shape a,
                 Shape b, float lo, float hi) {
    c.push_back({name, {{a, lo, hi}, {b, lo, hi}},
                 [fn](Graph &, Ts &x) { return fn(x[0], x[1], Loc::current()); }});
  };
  for (auto [suffix, a, b] : {std::tuple<const char *, Shape, Shape>{"", {3, 4}, {3, 4}},
                              {"_bcast", {2, 3, 4}, {3, 1}}, {"_scalar", {3, 4}, {}}}) {
    std::string s = suffix;
    bin("add" + s, soma::add, a, b, -1, 1);
    bin("sub" + s, soma::sub, a, b, -1, 1);
    bin("mul" + s, soma::mul, a, b, -1, 1);
    bin("div" + s, soma::div, a, b, 0.5f, 2);
    bin("pow" + s, soma::pow, a, b, 0.5f, 2);
    bin("maximum" + s, soma::maximum, a, b, -1, 1);
    bin("minimum" + s, soma::minimum, a, b, -1, 1);
  }
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Shape a = ta ? Shape{5, 3} : Shape{3, 5}, b = tb ? Shape{4, 5} : Shape{5, 4};
      c.push_back({std::string("matmul_") + (ta ? "T" : "N") + (tb ? "T" : "N"), {{a}, {b}},
                   [ta, tb](Graph &, Ts &x) { return matmul(x[0], x[1], {.transpose_a = ta, .transpose_b = tb}); }});
    }
  c.push_back({"matmul_batched", {{{2, 3, 5}}, {{2, 5, 4}}}, [](Graph &, Ts &x) { return matmul(x[0], x[1]); }});
  c.push_back({"sum_axis1", {{{3, 4}}}, [](Graph &, Ts &x) { return sum(x[0], {1}); }});
  c.push_back({"sum_keep", {{{2, 3, 4}}}, [](Graph &, Ts &x) { return sum(x[0], {0, 2}, true); }});
  c.push_back({"mean_axis0", {{{3, 4}}}, [](Graph &, Ts &x) { return mean(x[0], {0}); }});
  c.push_back({"max_axis1", {{{3, 4}}}, [](Graph &, Ts &x) { return max(x[0], {1}); }});
  c.push_back({"max_all", {{{3, 4}}}, [](Graph &, Ts &x) { return max(x[0]); }});
  c.push_back({"reshape", {{{3, 4}}}, [](Graph &, Ts &x) { return reshape(x[0], {2, 6}); }});
  c.push_back({"transpose", {{{2, 3, 4}}}, [](Graph &, Ts &x) { return transpose(x[0], {2, 0, 1}); }});
  c.push_back({"broadcast_to", {{{3, 1}}}, [](Graph &, Ts &x) { return broadcast_to(x[0], {2, 3, 4}); }});
  c.push_back({"slice", {{{5, 6}}}, [](Graph &, Ts &x) { return slice(x[0], {1, 0}, {5, 6}, {2, 3}); }});
  c.push_back({"concat", {{{2, 3}}, {{4, 3}}}, [](Graph &, Ts &x) { return concat(x, 0); }});
  c.push_back({"pad", {{{2, 3}}}, [](Graph &, Ts &x) { return pad(x[0], {1, 0}, {0, 2}, {1, 1}); }});
  c.push_back({"softmax", {{{3, 5}, -2, 2}}, [](Graph &, Ts &x) { return softmax(x[0]); }});
  c.push_back({"softmax_axis0", {{{3, 5}, -2, 2}}, [](Graph &, Ts &x) { return softmax(x[0], 0); }});
  c.push_back({"log_softmax", {{{3, 5}, -2, 2}}, [](Graph &, Ts &x) { return log_softmax(x[0]); }});
  c.push_back({"log_softmax_axis0", {{{3, 5}, -2, 2}}, [](Graph &, Ts &x) { return log_softmax(x[0], 0); }});
  c.push_back({"softmax_rows_of_17", {{{2, 3, 17}, -2, 2}}, [](Graph &, Ts &x) { return softmax(x[0], 2); }});
  c.push_back({"softmax_ce_mean", {{{4, 5}, -2, 2}, {{4}, 0, 5, DType::i32}},
               [](Graph &, Ts &x) { return softmax_cross_entropy(x[0], x[1]); }});
  c.push_back({"softmax_ce_sum", {{{4, 5}, -2, 2}, {{4}, 0, 5, DType::i64}},
               [](Graph &, Ts &x) { return softmax_cross_entropy(x[0], x[1], Reduction::sum); }});
  c.push_back({"mse", {{{3, 4}}, {{3, 4}}}, [](Graph &, Ts &x) { return mse(x[0], x[1]); }});
  c.push_back({"bce", {{{3, 4}, 0.1f, 0.9f}, {{3, 4}, 0, 1}},
               [](Graph &, Ts &x) { return binary_cross_entropy(x[0], x[1], Reduction::sum); }});
  c.push_back({"conv2d", {{{2, 3, 6, 6}}, {{4, 3, 3, 3}}}, [](Graph &, Ts &x) { return conv2d(x[0], x[1]); }});
  c.push_back({"conv2d_stride_pad", {{{1, 2, 7, 6}}, {{3, 2, 3, 2}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.stride = {2, 1}, .padding = {1, 0, 2, 1}}); }});
  // Stride 1 and the output the input's size: the filter gradient is
  // computed directly (DirectConv.cpp), here with 35 pixels (not a
  // multiple of the vector width), 5 filters, 27 columns; a 5x5 window;
  // and a 2x3 window with unequal paddings (top 0, left 1, bottom 1, right 1).
  c.push_back({"conv2d_same", {{{2, 3, 5, 7}}, {{5, 3, 3, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = 1}); }});
  c.push_back({"conv2d_same_5x5", {{{1, 2, 6, 6}}, {{3, 2, 5, 5}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = 2}); }});
  // Narrower than the input: the direct filter gradient reads dy on a
  // grid with extra columns (a 5 x 3 kernel, and a left padding).
  c.push_back({"conv2d_valid_5x3", {{{2, 3, 9, 8}}, {{4, 3, 5, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1]); }});
  // "Valid" with at least VL filters: the forward and the filter gradient
  // have their vectors along the filters (20: a last vector of 4 with
  // AVX-512, of 4 with AVX2 as well), a 2 x 6 window; the input gradient
  // (the transposed convolution of 20 channels into 2) along the channels.
  c.push_back({"conv2d_valid_along_filters", {{{2, 2, 5, 9}}, {{20, 2, 2, 6}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1]); }});
  // Stride 2 with output rows of 8 (half a vector): the direct forward
  // and filter gradient read x as two vectors and a shuffle.
  c.push_back({"conv2d_direct_stride2", {{{2, 2, 5, 16}}, {{3, 2, 3, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.stride = 2, .padding = 1}); }});
  // ... and with 24 filters (two vectors, 3/4 full): the forward along
  // the filters.
  c.push_back({"conv2d_stride2_along_filters", {{{2, 2, 5, 16}}, {{24, 2, 3, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.stride = 2, .padding = 1}); }});
  c.push_back({"conv2d_partial_pad", {{{2, 2, 6, 7}}, {{3, 2, 3, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = {0, 1, 1, 0}}); }});
  c.push_back({"conv2d_same_uneven", {{{2, 2, 4, 5}}, {{3, 2, 2, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = {0, 1, 1, 1}}); }});
  c.push_back({"conv2d_dilation", {{{1, 2, 7, 7}}, {{2, 2, 2, 2}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.dilation = 2}); }});
  // Stride 1, one group and at least 16 input channels: the input gradient
  // is the transposed convolution (padding (k - 1) * d - pad per side),
  // here with unequal paddings, a non-square kernel and dilation; with a
  // padding beyond the kernel's reach it falls back to col2im.
  c.push_back({"conv2d_transposed_grad", {{{2, 16, 6, 7}}, {{3, 16, 3, 2}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = {2, 0, 1, 1}, .dilation = {1, 2}}); }});
  // Fewer input channels than 16 but 16 filters or more: the input
  // gradient is the transposed convolution too, of 16 channels of dy into
  // 6 outputs, wider than dy (vectors along the channels), or into 4 on
  // its grid ("same").
  c.push_back({"conv2d_transposed_grad_along_channels", {{{2, 6, 9, 8}}, {{16, 6, 5, 5}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1]); }});
  c.push_back({"conv2d_transposed_grad_on_grid", {{{2, 4, 6, 7}}, {{16, 4, 3, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = 1}); }});
  // A forward pass along the channels (3 filters, 16 channels, an output
  // wider than the input).
  c.push_back({"conv2d_along_channels", {{{2, 16, 4, 5}}, {{3, 16, 3, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = 2}); }});
  c.push_back({"conv2d_wide_padding", {{{1, 16, 4, 4}}, {{2, 16, 2, 2}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = 2}); }});
  c.push_back({"conv2d_groups", {{{2, 4, 5, 5}}, {{4, 2, 3, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.padding = 1, .groups = 2}); }});
  c.push_back({"conv2d_depthwise", {{{1, 3, 5, 5}}, {{3, 1, 3, 3}}},
               [](Graph &, Ts &x) { return conv2d(x[0], x[1], {.stride = 2, .groups = 3}); }});
  c.push_back({"max_pool2d", {{{2, 2, 6, 6}}}, [](Graph &, Ts &x) { return max_pool2d(x[0], 2); }});
  c.push_back({"max_pool2d_overlap_pad", {{{1, 2, 7, 7}}},
               [](Graph &, Ts &x) { return max_pool2d(x[0], 3, {.stride = 2, .padding = 1}); }});
  c.push_back({"avg_pool2d", {{{2, 2, 6, 6}}}, [](Graph &, Ts &x) { return avg_pool2d(x[0], 2); }});
  c.push_back({"avg_pool2d_tiled_3x2", {{{1, 2, 6, 38}}},
               [](Graph &, Ts &x) { return avg_pool2d(x[0], {3, 2}, {.stride = {3, 2}}); }});
  c.push_back({"avg_pool2d_tiled_1x1", {{{1, 2, 3, 5}}}, [](Graph &, Ts &x) { return avg_pool2d(x[0], 1); }});
  c.push_back({"avg_pool2d_overlap_pad", {{{1, 2, 7, 7}}},
               [](Graph &, Ts &x) { return avg_pool2d(x[0], 3, {.stride = 2, .padding = 1}); }});
  c.push_back({"global_avg_pool2d", {{{2, 3, 4, 5}}}, [](Graph &, Ts &x) { return global_avg_pool2d(x[0]); }});
  c.push_back({"conv_layer_relu_pool", {{{2, 1, 8, 8}}}, [](Graph &, Ts &x) {
                 return max_pool2d(relu(nn::conv2d(x[0], 3, 3, {.padding = 1, .bias_init = init::uniform(-0.1, 0.1)})), 2);
               }});
  // Composite graphs: a value used twice (gradients add up). (stop_gradient
  // deliberately disagrees with finite differences; see StopGradient*.)
  c.push_back({"reuse", {{{3, 4}}}, [](Graph &, Ts &x) { return x[0] * x[0] + tanh(x[0]); }});
  c.push_back({"dense_relu", {{{4, 6}}}, [](Graph &, Ts &x) {
                 return relu(nn::dense(x[0], 5, {.bias_init = init::uniform(-0.1, 0.1)}));
               }});
  return c;
}

class Gradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(Gradient, MatchesFiniteDifferences) {
  const GradCase &tc = GetParam();
  Graph g(tc.name, 3);
  Ts xs;
  GradientCheckOptions opts;
  opts.grad.inputs = true;
  opts.samples_per_tensor = 0; // every element
  uint32_t seed = 10;
  for (size_t i = 0; i < tc.inputs.size(); ++i) {
    const In &in = tc.inputs[i];
    std::string name = "in" + std::to_string(i);
    xs.push_back(g.input(name, in.shape, in.dtype));
    opts.inputs[name] = in.dtype == DType::f32
                            ? test::randomF32(in.shape, in.lo, in.hi, seed++)
                            : test::randomLabels(in.shape, static_cast<int64_t>(in.hi), in.dtype, seed++);
  }
  Tensor y = tc.build(g, xs);
  // A scalar loss that weighs every element of y differently.
  Tensor loss = y.rank() == 0 ? y : sum(y * constant(g, test::randomF32(y.shape(), -1, 1, 99)));
  g.output("loss", loss);
  GradientCheckReport report = check_gradients(g, opts);
  EXPECT_TRUE(report.passed) << report.str();
  EXPECT_FALSE(report.entries.empty());
}

INSTANTIATE_TEST_SUITE_P(AllOps, Gradient, ::testing::ValuesIn(gradCases()),
                         [](const ::testing::TestParamInfo<GradCase> &info) { return info.param.name; });

// A "valid" convolution with 16 filters and 32 images of 10 x 10 outputs:
// its filter gradient, with vectors along the filters, is summed in 3
// parts (groups of images, one per parallel unit) and transposed back;
// the input gradient and the forward pass come along.
TEST(Autodiff, CompiledFilterGradientInPartsMatchesTheInterpreter) {
  Graph g("conv_parts");
  Tensor x = g.input("x", {32, 3, 12, 12}), w = g.input("w", {16, 3, 3, 3});
  Tensor y = relu(conv2d(x, w));
  g.output("loss", sum(y * constant(g, test::randomF32({32, 16, 10, 10}, -1, 1, 7))));
  std::map<std::string, Array> in{{"x", test::randomF32({32, 3, 12, 12}, -1, 1, 5)},
                                  {"w", test::randomF32({16, 3, 3, 3}, -1, 1, 6)}};
  GradientOptions opts{.loss = "loss", .inputs = true};
  auto got = compile_gradients(g, opts).run(in);
  auto want = interpret_gradients(g, in, nullptr, opts);
  for (const char *name : {"grad_w", "grad_x", "loss"}) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TRUE(test::allClose(got[name], want[name], 1e-4)) << name;
  }
}

// softmax_grad and log_softmax_grad along the last axis are row kernels
// (one pass for the row's sum, one from cache): rows of 1, 10, 65 (full
// vectors and a masked one) and 129, the last two shapes on the OpenMP
// path; along the first axis, the linalg form.
TEST(Autodiff, CompiledSoftmaxGradientsMatchTheInterpreter) {
  for (auto [shape, axis] : {std::pair{Shape{7, 1}, 1}, std::pair{Shape{7, 10}, 1}, std::pair{Shape{257, 65}, 1},
                             std::pair{Shape{130, 129}, 1}, std::pair{Shape{65, 33}, 0}}) {
    Graph g("softmax_grads");
    Tensor x = g.input("x", shape);
    Tensor w = constant(g, test::randomF32(shape, -1, 1, 3));
    g.output("loss", sum(softmax(x, axis) * w) + sum(log_softmax(x, axis) * w * w));
    std::map<std::string, Array> in{{"x", test::randomF32(shape, -8, 8, 4)}};
    GradientOptions opts{.loss = "loss", .inputs = true};
    auto got = compile_gradients(g, opts).run(in);
    auto want = interpret_gradients(g, in, nullptr, opts);
    EXPECT_TRUE(test::allClose(got["grad_x"], want["grad_x"], 1e-5)) << shape_str(shape) << " axis " << axis;
  }
}

TEST(Autodiff, CompiledGradientsOfTheMlpMatchTheInterpreter) {
  Graph g = zoo::mlp(8, /*with_loss=*/true, 1);
  std::map<std::string, Array> in{{"x", test::randomF32({8, 784}, 0, 1, 5)},
                                  {"y", test::randomLabels({8}, 10, DType::i32, 6)}};
  auto got = compile_gradients(g, {.loss = "loss"}).run(in);
  auto want = interpret_gradients(g, in, nullptr, {.loss = "loss"});
  for (const char *p : {"dense0.weight", "dense0.bias", "dense1.weight", "dense1.bias", "dense2.weight",
                        "dense2.bias"}) {
    std::string name = std::string("grad_") + p;
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TRUE(test::allClose(got[name], want[name], 1e-4)) << name;
  }
}

TEST(Autodiff, DirectFilterGradientMatchesTheInterpreter) {
  // 40 images of 7x9: enough work for two units of 20 images, each summed
  // in blocks (>= 1024 pixels a block); 11 filters (in tiles of 6 and 5)
  // over 8 channels (72 columns). "Same", "valid" (a 5 x 7 output on a
  // grid of 5 x 9) and a partial padding (6 x 8 on 6 x 9). Then an image
  // of 256 x 240, whose table of window masks is too big to be made once
  // for the whole grid: each block of pixels makes its own. Then stride 2
  // (output rows of 8: x read as two vectors and a shuffle). Then two more
  // "valid" ones: a grid of 36 x 64 pixels in two blocks of pixels (dy
  // spread over each block's grid in turn), and one whose spread dy would
  // not fit its 128 KiB of stack (64 filters, two images a block), which
  // reads dy by expanding loads in the tiles. Then padded ones with vectors
  // along the filters (at least VL filters, filling their vectors): 48
  // filters over 40 columns (20 rows) in two parallel units; a 3 x 5
  // window with uneven padding (top 2, left 0, bottom 1, right 2), 35
  // columns; and a small image in one band, channels outer. With AVX-512
  // (checked with a temporary print), the first two have 3 vectors of
  // filters (in tiles of 1) and more than 32 KiB of dy a band: the filter
  // tiles outermost, every channel's rows copied first (bands of 17 rows
  // and a partial one of 3; bands of 19 and 1, 35 columns: 4 pixels a
  // step and the last 3). Then a "valid" one with the filter tiles outermost, x read
  // in place: 4 vectors of filters, 45 columns, bands of 11 rows, two units.
  struct Case {
    const char *name;
    Shape x, w;
    Ints padding;
    Ints stride = 1;
  };
  for (const Case &c : {Case{"same", {40, 8, 7, 9}, {11, 8, 3, 3}, {1, 1, 1, 1}},
                        Case{"valid", {40, 8, 7, 9}, {11, 8, 3, 3}, {0, 0, 0, 0}},
                        Case{"partial", {40, 8, 7, 9}, {11, 8, 3, 3}, {1, 1, 0, 0}},
                        Case{"large", {1, 2, 256, 240}, {3, 2, 3, 3}, {1, 1, 1, 1}},
                        Case{"stride2", {40, 8, 7, 16}, {11, 8, 3, 3}, {1, 1, 1, 1}, 2},
                        Case{"valid_blocks", {2, 3, 40, 64}, {5, 3, 5, 5}, {0, 0, 0, 0}},
                        Case{"valid_unspread", {4, 2, 30, 30}, {64, 2, 3, 3}, {0, 0, 0, 0}},
                        Case{"filters_same", {3, 4, 20, 40}, {48, 4, 3, 3}, {1, 1, 1, 1}},
                        Case{"filters_uneven", {2, 3, 19, 37}, {48, 3, 3, 5}, {2, 0, 1, 2}},
                        Case{"filters_one_band", {5, 7, 6, 9}, {32, 7, 3, 3}, {1, 1, 1, 1}},
                        Case{"filters_outer_valid", {3, 6, 24, 47}, {64, 6, 3, 3}, {0, 0, 0, 0}}}) {
    Graph g("filtergrad");
    Tensor x = g.input("x", c.x);
    Tensor w = g.param("w", c.w, init::uniform(-1, 1));
    Tensor y = conv2d(x, w, {.stride = c.stride, .padding = c.padding});
    g.output("loss", sum(y * constant(g, test::randomF32(y.shape(), -1, 1, 3))));
    std::map<std::string, Array> in{{"x", test::randomF32(c.x, -1, 1, 4)}};
    test::TempDir dir(std::string("direct_dw_") + c.name);
    auto got = compile_gradients(g, {.loss = "loss"},
                                 {.dump = "lowered", .dump_dir = dir.str(), .use_environment = false})
                   .run(in);
    // The direct kernel's loop nest, outlined as a function of its own.
    EXPECT_NE(read_file(dir / "30-lowered.mlir").find("func.func @filtergrad_dw"), std::string::npos) << c.name;
    auto want = interpret_gradients(g, in, nullptr, {.loss = "loss"});
    EXPECT_TRUE(test::allClose(got["grad_w"], want["grad_w"], 1e-4)) << c.name;
  }
}

// Average pooling whose windows tile the input: its gradient is one op,
// soma.avg_pool2d_grad (dy / (KH KW) written to each window), no col2im;
// rows of 35 outputs (a masked remainder of the vectors) and enough
// planes for threads.
TEST(Autodiff, TiledAvgPoolGradientIsOneOp) {
  for (auto [shape, k] : {std::pair{Shape{16, 8, 12, 70}, Ints{2, 2}}, std::pair{Shape{4, 5, 9, 8}, Ints{3, 2}}}) {
    Graph g("avg_pool");
    Tensor x = g.input("x", shape);
    Tensor y = avg_pool2d(x, k, {.stride = k});
    g.output("loss", sum(y * constant(g, test::randomF32(y.shape(), -1, 1, 3))));
    std::map<std::string, Array> in{{"x", test::randomF32(shape, -1, 1, 4)}};
    test::TempDir dir("tiled_avg_pool");
    GradientOptions opts{.loss = "loss", .inputs = true};
    auto got = compile_gradients(g, opts, {.dump = "fused", .dump_dir = dir.str(), .use_environment = false}).run(in);
    std::string fused = read_file(dir / "20-fused.mlir");
    EXPECT_THAT(fused, ::testing::HasSubstr("soma.avg_pool2d_grad")) << shape_str(shape);
    EXPECT_THAT(fused, ::testing::Not(::testing::HasSubstr("soma.col2im"))) << shape_str(shape);
    auto want = interpret_gradients(g, in, nullptr, opts);
    EXPECT_TRUE(test::allClose(got["grad_x"], want["grad_x"], 1e-6)) << shape_str(shape);
  }
}

TEST(Autodiff, TiledMaxPoolGradientSplitsTiesLikeTheInterpreter) {
  // Windows that tile the input have a gradient op of their own
  // (soma.max_pool2d_grad, one loop nest). Values from {0, 1, 2} tie
  // often within the 2 x 2 and 3 x 2 windows: each tie gets an even share
  // of the window's gradient, as in the interpreter. A ReLU before it, as
  // in LeNet-5, whose gradient soma-decompose folds into the pooling's
  // ({relu = true}; the negative values become 0 and tie), and enough
  // images for threads.
  struct Case {
    const char *name;
    Shape x;
    Ints kernel;
  };
  for (const Case &c : {Case{"2x2", {16, 3, 12, 12}, {2, 2}}, Case{"3x2", {4, 2, 9, 8}, {3, 2}}}) {
    Graph g("pool");
    Tensor x = g.param("x", c.x, init::zeros());
    Tensor y = max_pool2d(relu(x), c.kernel, {.stride = c.kernel});
    g.output("loss", sum(y * constant(g, test::randomF32(y.shape(), -1, 1, 3))));
    Array xs = test::randomF32(c.x, 0, 3, 4);
    for (int64_t i = 0; i < xs.numel(); ++i)
      xs.data<float>()[i] = std::floor(xs.data<float>()[i]) - 0.5f; // -0.5, 0.5, 1.5: ReLU ties the negatives at 0
    test::TempDir dir(std::string("tiled_pool_") + c.name);
    Inference fn = compile_gradients(g, {.loss = "loss"},
                                     {.dump = "fused", .dump_dir = dir.str(), .use_environment = false});
    NamedArrays params{{"x", xs}};
    fn.set_params(params);
    auto got = fn.run({});
    std::string fused = read_file(dir / "20-fused.mlir");
    EXPECT_THAT(fused, ::testing::HasSubstr("soma.max_pool2d_grad")) << c.name;
    EXPECT_THAT(fused, ::testing::HasSubstr("relu = true")) << c.name;
    EXPECT_THAT(fused, ::testing::Not(::testing::HasSubstr("soma.col2im"))) << c.name;
    auto want = interpret_gradients(g, {}, &params, {.loss = "loss"});
    EXPECT_TRUE(test::allClose(got["grad_x"], want["grad_x"], 1e-5)) << c.name;
  }
}

TEST(Autodiff, FusedCrossEntropyBackwardIsOneOp) {
  Graph g = zoo::mlp(4, true);
  test::TempDir dir("fusedce");
  compile_gradients(g, {.loss = "loss"}, {.dump = "built", .dump_dir = dir.str(), .use_environment = false});
  std::string built = read_file(dir / "00-built.mlir");
  EXPECT_THAT(built, ::testing::HasSubstr("soma.softmax_cross_entropy_grad"));
  EXPECT_THAT(built, ::testing::Not(::testing::HasSubstr("soma.softmax ")));
}

TEST(Autodiff, NonScalarLossIsAnError) {
  Graph g("t");
  g.output("y", relu(g.param("w", {3}, init::ones())));
  EXPECT_SOMA_ERROR(compile_gradients(g), "the loss must be a scalar f32 (rank 0), got tensor<3xf32>");
}

TEST(Autodiff, GradientThroughNonDifferentiableOpsIsAnError) {
  Graph g("t");
  Tensor w = g.param("w", {2, 3}, init::ones());
  g.output("loss", sum(equal(w, w) * w));
  EXPECT_SOMA_ERROR(compile_gradients(g), "'soma.equal' is not differentiable", "stop_gradient");
  Graph h("u");
  Tensor v = h.param("v", {3}, init::ones());
  h.output("loss", sum(step(v)));
  EXPECT_SOMA_ERROR(compile_gradients(h), "gradient_test.cpp:", "'soma.step' is not differentiable");
}

TEST(Autodiff, NonDifferentiableOpsOffThePathAreFine) {
  // An accuracy-style output next to the loss, and a mask behind
  // stop_gradient, need no gradient.
  Graph g("t");
  Tensor x = g.input("x", {4, 3});
  Tensor y = g.input("y", {4}, DType::i32);
  Tensor logits = nn::dense(x, 3);
  g.output("loss", softmax_cross_entropy(logits, y) + sum(equal(stop_gradient(logits), stop_gradient(logits)) * logits));
  g.output("correct", sum(equal(argmax(logits, 1), y)));
  auto out = compile_gradients(g, {.loss = "loss"})
                 .run({{"x", test::randomF32({4, 3}, -1, 1, 1)}, {"y", Array::i32({4}, {0, 1, 2, 0})}});
  EXPECT_EQ(out["grad_dense0.weight"].shape(), (Shape{3, 3}));
  float correct = out["correct"].data<float>()[0];
  EXPECT_GE(correct, 0.0f);
  EXPECT_LE(correct, 4.0f);
}

TEST(Autodiff, StopGradientBlocksTheFlow) {
  Graph g("t");
  Tensor w = g.param("w", {3}, init::constant(2.0));
  g.output("loss", sum(stop_gradient(w) * w));
  auto out = compile_gradients(g).run({});
  for (int i = 0; i < 3; ++i)
    EXPECT_FLOAT_EQ(out["grad_w"].data<float>()[i], 2.0f); // d/dw (c * w) with c = w held fixed
}

TEST(Autodiff, UnusedParameterGetsZeroGradient) {
  Graph g("t");
  Tensor w = g.param("w", {3}, init::ones());
  g.param("unused", {2}, init::ones());
  g.output("loss", sum(w * w));
  auto out = compile_gradients(g).run({});
  EXPECT_EQ(out["grad_unused"].shape(), Shape{2});
  EXPECT_EQ(out["grad_unused"].data<float>()[0], 0.0f);
  EXPECT_FLOAT_EQ(out["grad_w"].data<float>()[0], 2.0f);
}

} // namespace

namespace {

/// The number of times `what` occurs in `text`.
int count(const std::string &text, const std::string &what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

// A non-scalar output differentiated with its gradient given as an input
// (torch.autograd.grad's grad_outputs): the vector-Jacobian products agree
// with finite differences, and with the loss sum(y * dy) written by hand.
TEST(Autodiff, OutputGradientGivesVectorJacobianProducts) {
  Graph g("vjp");
  Tensor x = g.input("x", {2, 3, 9, 9});
  Tensor w = g.param("w", {5, 3, 3, 3}, init::uniform(-1, 1));
  g.output("y", tanh(conv2d(x, w, {.padding = 1})));
  GradientCheckOptions check;
  check.grad = {.inputs = true, .output_gradient = true};
  GradientCheckReport report = check_gradients(g, check);
  EXPECT_TRUE(report.passed) << report.str();
  ASSERT_EQ(report.entries.size(), 2u) << report.str();

  Graph h("by_hand");
  Tensor hx = h.input("x", {2, 3, 9, 9});
  Tensor hw = h.param("w", {5, 3, 3, 3}, init::uniform(-1, 1));
  Tensor dy = h.input("dy", {2, 5, 9, 9});
  h.output("loss", sum(tanh(conv2d(hx, hw, {.padding = 1})) * dy));
  Array xv = test::randomF32({2, 3, 9, 9}, -1, 1, 1), dyv = test::randomF32({2, 5, 9, 9}, -1, 1, 2);
  NamedArrays params{{"w", test::randomF32({5, 3, 3, 3}, -1, 1, 3)}};
  Inference fn = compile_gradients(g, check.grad);
  fn.set_params(params);
  auto got = fn.run({{"x", xv}, {"grad_y", dyv}});
  Inference byHand = compile_gradients(h, {.loss = "loss", .inputs = true});
  byHand.set_params(params);
  auto want = byHand.run({{"x", xv}, {"dy", dyv}});
  for (const char *name : {"grad_x", "grad_w"})
    EXPECT_TRUE(test::allClose(got.at(name), want.at(name), 1e-6)) << name;
  EXPECT_TRUE(test::allClose(got.at("dot_grad_y"), want.at("loss"), 1e-5));
  EXPECT_TRUE(test::allClose(got.at("y"), interpret(g, {{"x", xv}}, &params).at("y"), 1e-5));
  auto ref = interpret_gradients(g, {{"x", xv}, {"grad_y", dyv}}, &params, check.grad);
  for (const char *name : {"grad_x", "grad_w", "dot_grad_y", "y"})
    EXPECT_TRUE(test::allClose(got.at(name), ref.at(name), 1e-4)) << name;
}

// Without the outputs, only the gradients are returned and the forward
// work nothing else reads is gone: the input gradient of a convolution is
// one transposed convolution, as a framework's backward-data pass.
TEST(Autodiff, GradientsAloneDropTheForwardWork) {
  Graph g("bwd_data");
  Tensor x = g.input("x", {2, 4, 8, 8});
  Tensor w = g.input("w", {6, 4, 3, 3});
  g.output("y", conv2d(x, w, {.padding = 1}));
  std::map<std::string, Array> in{{"x", test::randomF32({2, 4, 8, 8}, -1, 1, 1)},
                                  {"w", test::randomF32({6, 4, 3, 3}, -1, 1, 2)},
                                  {"grad_y", test::randomF32({2, 6, 8, 8}, -1, 1, 3)}};
  auto products = [&](bool outputs) {
    test::TempDir dir(std::string("gradients_alone_") + (outputs ? "1" : "0"));
    GradientOptions opts{.inputs = true, .output_gradient = true, .outputs = outputs};
    auto got = compile_gradients(g, opts, {.dump = "fused", .dump_dir = dir.str(), .use_environment = false})
                   .run(in);
    auto want = interpret_gradients(g, in, nullptr, opts);
    EXPECT_EQ(got.size(), outputs ? 4u : 2u);
    for (auto &[name, value] : want) {
      EXPECT_EQ(got.count(name), 1u) << name;
      if (got.count(name)) {
        EXPECT_TRUE(test::allClose(got[name], value, 1e-4)) << name;
      }
    }
    std::string fused = read_file(dir / "20-fused.mlir");
    EXPECT_EQ(count(fused, "soma.reduce_sum "), outputs ? 1 : 0); // sum(y * grad_y)
    return count(fused, "soma.matmul ");
  };
  // The convolutions are products by now: forward, input and filter
  // gradients, or the last two alone.
  EXPECT_EQ(products(true), 3);
  EXPECT_EQ(products(false), 2);
}

TEST(Autodiff, OutputGradientErrors) {
  Graph g("t");
  Tensor x = g.input("x", {4, 3});
  g.output("i", argmax(x, 1));
  g.output("y", x * 2.0f);
  EXPECT_SOMA_ERROR(compile_gradients(g, {.loss = "i", .inputs = true, .output_gradient = true}),
                    "output 'i' of graph 't' is not f32");
  EXPECT_SOMA_ERROR(compile_gradients(g, {.loss = "y"}), "the loss must be a scalar f32 (rank 0), got tensor<4x3xf32>",
                    "output 'y'", "GradientOptions::output_gradient");
  Graph h("u");
  Tensor v = h.input("grad_y", {3});
  h.output("y", v * 2.0f);
  EXPECT_SOMA_ERROR(compile_gradients(h, {.inputs = true, .output_gradient = true}),
                    "already has an input or parameter named 'grad_y'");
  EXPECT_SOMA_ERROR(compile_gradients(g, {.loss = "y", .output_gradient = true, .outputs = false}),
                    "has nothing to differentiate (no parameters)");
  Graph d("d");
  Tensor z = d.input("z", {2});
  d.output("y", z * 3.0f);
  d.output("dot_grad_y", sum(z));
  EXPECT_SOMA_ERROR(compile_gradients(d, {.loss = "y", .inputs = true, .output_gradient = true}),
                    "already has an output named 'dot_grad_y'");
}

} // namespace
