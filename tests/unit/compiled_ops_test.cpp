//===- compiled_ops_test.cpp - Every op: JIT-compiled vs the interpreter ----===//
//
// Each case builds a small graph around one op (or one lowering path such
// as a view or a copied output) and runs it on seeded random inputs through
// the JIT and through the reference interpreter. Shapes include odd sizes
// (1, 7, 63, 65, 129) and sizes large enough to take the OpenMP path.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#include "soma/Compiler/Lowering.h"

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <functional>
#include <set>
#include <sstream>
#include <tuple>
#include <unistd.h>

extern "C" int omp_get_max_threads(void);
extern "C" void omp_set_num_threads(int);

using namespace soma;
using soma::test::allClose;

namespace {

struct In {
  Shape shape;
  DType dtype = DType::f32;
  float lo = -2.0f, hi = 2.0f; // for f32; labels use [0, hi) classes
};

struct Case {
  std::string name;
  std::vector<In> inputs;
  std::function<std::vector<Tensor>(Graph &, std::vector<Tensor> &)> build;
};

std::ostream &operator<<(std::ostream &os, const Case &c) { return os << c.name; }

using Ts = std::vector<Tensor>;

Case unaryCase(const std::string &name, Shape s, Tensor (*fn)(const Tensor &, Loc),
               float lo = -2, float hi = 2) {
  return {name, {{s, DType::f32, lo, hi}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], Loc::current())}; }};
}

Case binaryCase(const std::string &name, Shape a, Shape b,
                Tensor (*fn)(const Tensor &, const Tensor &, Loc), float lo = -2, float hi = 2) {
  return {name, {{a, DType::f32, lo, hi}, {b, DType::f32, lo, hi}},
          [fn](Graph &, Ts &x) { return Ts{fn(x[0], x[1], Loc::current())}; }};
}

std::vector<Case> allCases() {
  std::vector<Case> c;
  // Unary ops over odd shapes and one parallel-sized shape.
  struct U {
    const char *name;
    Tensor (*fn)(const Tensor &, Loc);
    float lo, hi;
  };
  for (U u : {U{"neg", soma::neg, -2, 2}, U{"exp", soma::exp, -5, 5}, U{"log", soma::log, 0.01f, 5},
              U{"sqrt", soma::sqrt, 0, 9}, U{"abs", soma::abs, -2, 2}, U{"tanh", soma::tanh, -4, 4},
              U{"sigmoid", soma::sigmoid, -30, 30}, U{"relu", soma::relu, -2, 2},
              U{"softplus", soma::softplus, -30, 30}}) {
    for (Shape s : {Shape{1}, Shape{7}, Shape{3, 63}, Shape{2, 3, 65}, Shape{129, 130}})
      c.push_back(unaryCase(std::string(u.name) + "_" + std::to_string(s.size()) + "d_" +
                                std::to_string(numel(s)),
                            s, u.fn, u.lo, u.hi));
  }
  for (U u : {U{"silu", soma::silu, -6, 6}, U{"gelu", soma::gelu, -6, 6}})
    for (Shape sh : {Shape{7}, Shape{3, 63}, Shape{129, 130}})
      c.push_back(unaryCase(std::string(u.name) + "_" + std::to_string(numel(sh)), sh, u.fn, u.lo, u.hi));
  c.push_back({"elu", {{{5, 7}, DType::f32, -3, 3}}, [](Graph &, Ts &x) { return Ts{elu(x[0]), elu(x[0], 0.5)}; }});
  c.push_back({"one_hot", {{{6}, DType::i32, 0, 4}}, [](Graph &, Ts &x) { return Ts{one_hot(x[0], 4)}; }});
  c.push_back({"one_hot_i64", {{{5}, DType::i64, 0, 3}}, [](Graph &, Ts &x) { return Ts{one_hot(x[0], 3)}; }});
  c.push_back({"losses", {{{4, 5}}, {{4, 5}, DType::f32, 0, 1}, {{4}, DType::i32, 0, 5}},
               [](Graph &g, Ts &x) {
                 Array sign = Array::f32({4, 5}, {1, -1, 1, 1, -1, -1, 1, -1, 1, 1, 1, 1, -1, -1, 1, -1, 1, 1, -1, 1});
                 Tensor y = constant(g, sign);
                 return Ts{binary_cross_entropy_with_logits(x[0], x[1]), nll_loss(log_softmax(x[0]), x[2]),
                           kl_divergence(log_softmax(x[0]), softmax(x[1])), hinge_loss(x[0], y),
                           margin_ranking_loss(x[0], x[1], y, 0.1), triplet_loss(x[0], x[1], x[0] * 0.5f),
                           cosine_similarity(x[0], x[1])};
               }});
  c.push_back({"split", {{{3, 7}}}, [](Graph &, Ts &x) { return split(x[0], {2, 4, 1}, 1); }});
  c.push_back({"upsample_nearest", {{{2, 3, 4, 5}}}, [](Graph &, Ts &x) { return Ts{upsample2d(x[0], {2, 3})}; }});
  c.push_back({"upsample_bilinear", {{{2, 3, 4, 5}}},
               [](Graph &, Ts &x) { return Ts{upsample2d(x[0], 2, Upsample::bilinear)}; }});
  c.push_back({"leaky_relu_default", {{{5, 7}}}, [](Graph &, Ts &x) { return Ts{leaky_relu(x[0])}; }});
  c.push_back({"leaky_relu_0_2", {{{129, 130}}}, [](Graph &, Ts &x) { return Ts{leaky_relu(x[0], 0.2)}; }});
  c.push_back(unaryCase("scalar_exp", {}, soma::exp));

  // Binary ops with broadcasting.
  struct B {
    const char *name;
    Tensor (*fn)(const Tensor &, const Tensor &, Loc);
    float lo, hi;
  };
  for (B bop : {B{"add", soma::add, -2, 2}, B{"sub", soma::sub, -2, 2}, B{"mul", soma::mul, -2, 2},
                B{"div", soma::div, 0.5f, 2}, B{"pow", soma::pow, 0.1f, 2},
                B{"maximum", soma::maximum, -2, 2}, B{"minimum", soma::minimum, -2, 2}}) {
    std::string n = bop.name;
    c.push_back(binaryCase(n + "_same", {7, 5}, {7, 5}, bop.fn, bop.lo, bop.hi));
    c.push_back(binaryCase(n + "_row", {3, 65}, {65}, bop.fn, bop.lo, bop.hi));
    c.push_back(binaryCase(n + "_outer", {63, 1}, {1, 7}, bop.fn, bop.lo, bop.hi));
    c.push_back(binaryCase(n + "_3d", {2, 3, 4}, {3, 1}, bop.fn, bop.lo, bop.hi));
    c.push_back(binaryCase(n + "_scalar", {}, {4, 4}, bop.fn, bop.lo, bop.hi));
    c.push_back(binaryCase(n + "_big", {129, 130}, {130}, bop.fn, bop.lo, bop.hi));
  }

  // Matmul: every transpose combination, odd sizes, batched. The packed
  // GEMM's shape classes: edge tiles in rows and columns (not multiples of
  // its register tile: 6 x 16 with AVX2, 12 x 32 with AVX-512), several
  // blocks of K (> 512 with AVX-512, > 256 otherwise), of rows (> 96) and
  // of columns (> 256), sizes big enough to run in parallel (129x300x65
  // and up: batch * M * N * K / 8 at least the grain of 131072), and a
  // small product over a long K that splits K
  // (7x80000x33: one block of C, eight parts of K summed afterwards).
  // Rows of A a multiple of 2 KiB long (K = 512, 1024) are copied at a
  // padded stride by each unit: alone (5x512x3) and in parallel units of
  // row groups and column blocks with edge tiles (130x1024x97). With
  // AVX-512, products of at least 256 rows and columns take the wide
  // register tile, 6 x 64 (GemmConfig::forShape): edge tiles in both
  // (257x129x300), copied rows of A over two blocks of K (263x1024x300);
  // 259 columns, which 64-column panels pad more than 32-column ones,
  // keep 12 x 32 (257x129x259).
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 63, 65},
                             {64, 129, 10}, {33, 17, 129}, {129, 300, 65}, {65, 513, 257},
                             {130, 513, 257}, {1, 1000, 7}, {200, 7, 300}, {7, 80000, 33},
                             {5, 512, 3}, {130, 1024, 97}, {257, 129, 259}, {257, 129, 300}, {263, 1024, 300}}) {
        Shape a = ta ? Shape{k, m} : Shape{m, k};
        Shape b = tb ? Shape{n, k} : Shape{k, n};
        std::string name = "matmul_" + std::string(ta ? "T" : "N") + (tb ? "T" : "N") + "_" +
                           std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
        c.push_back({name, {{a}, {b}}, [ta, tb](Graph &, Ts &x) {
                       return Ts{matmul(x[0], x[1], {.transpose_a = ta, .transpose_b = tb})};
                     }});
      }
  // A C larger than 1 MiB (300 x 1000 floats), over 2 or 3 blocks of K: the
  // register tiles prefetch C's block and add it after their k loop (A
  // packed, and A's rows read where they are stored), with an epilogue.
  for (bool ta : {false, true})
    c.push_back({std::string("matmul_large_c_") + (ta ? "T" : "N") + "N_300x520x1000",
                 {{ta ? Shape{520, 300} : Shape{300, 520}}, {{520, 1000}}},
                 [ta](Graph &, Ts &x) { return Ts{matmul(x[0], x[1], {.transpose_a = ta})}; }});
  c.push_back({"epilogue_bias_relu_large_c_300x520x1000", {{{300, 520}}, {{520, 1000}}, {{1000}}},
               [](Graph &, Ts &x) { return Ts{relu(matmul(x[0], x[1]) + x[2])}; }});
  // B read in place by the register tile (A's rows read in place, B's
  // columns whole panels: 64 and its multiples, for the 16 and 32 columns of
  // AVX2's and AVX-512's tiles; few rows per unit): odd rows and K, the
  // MLP's layer (two blocks of K with AVX-512's KC of 512, four with
  // AVX2's 256), A's rows copied (K = 1024) with edge rows, parallel
  // units over two blocks of K, the wide register tile's panels of 64
  // columns (260x700x320), batches, and an epilogue.
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{7, 65, 64}, {64, 784, 256}, {37, 1024, 96},
                         {130, 600, 128}, {260, 700, 320}})
    c.push_back({"matmul_b_in_place_" + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n),
                 {{{m, k}}, {{k, n}}},
                 [](Graph &, Ts &x) { return Ts{matmul(x[0], x[1])}; }});
  c.push_back({"matmul_b_in_place_batched", {{{3, 20, 70}}, {{3, 70, 64}}},
               [](Graph &, Ts &x) { return Ts{matmul(x[0], x[1])}; }});
  c.push_back({"epilogue_bias_relu_b_in_place_50x600x64", {{{50, 600}}, {{600, 64}}, {{64}}},
               [](Graph &, Ts &x) { return Ts{relu(matmul(x[0], x[1]) + x[2])}; }});
  c.push_back({"matmul_batched", {{{3, 5, 7}}, {{3, 7, 4}}},
               [](Graph &, Ts &x) { return Ts{matmul(x[0], x[1])}; }});
  c.push_back({"matmul_batched_TT", {{{2, 7, 5}}, {{2, 4, 7}}}, [](Graph &, Ts &x) {
                 return Ts{matmul(x[0], x[1], {.transpose_a = true, .transpose_b = true})};
               }});
  c.push_back({"matmul_batched_parallel", {{{3, 130, 520}}, {{3, 520, 140}}},
               [](Graph &, Ts &x) { return Ts{matmul(x[0], x[1])}; }});
  c.push_back({"matmul_batched_split_k", {{{2, 6, 50000}}, {{2, 50000, 30}}},
               [](Graph &, Ts &x) { return Ts{matmul(x[0], x[1])}; }});
  // GEMM epilogues (soma.fusion "contraction"): bias and activation, a
  // residual of the product's shape, a backward ReLU mask, a second result
  // (the pre-activation), batch dimensions (the epilogue's index is rebuilt
  // from the flat batch), at sizes with edge tiles, parallel units and a
  // split K (the epilogue then runs after the parts are summed).
  for (auto [m, k, n] :
       {std::tuple<int64_t, int64_t, int64_t>{7, 63, 65}, {257, 600, 130}, {258, 600, 300}, {6, 120000, 25}}) {
    std::string s = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
    c.push_back({"epilogue_bias_relu_" + s, {{{m, k}}, {{k, n}}, {{n}}},
                 [](Graph &, Ts &x) { return Ts{relu(matmul(x[0], x[1]) + x[2])}; }});
    // (Inputs in [-0.5, 0.5], and tanh of z / 50: the tolerance is
    // relative to each output's own size, and z's f32 rounding, which grows
    // with K and depends on the order of the sums (the blocks of K), must
    // not swamp tanh's. tanh(z) failed for 6x120000x25 by 1.4x its
    // tolerance once the blocks of K went from 256 to 512.)
    c.push_back({"epilogue_two_results_" + s, {{{m, k}, DType::f32, -0.5f, 0.5f}, {{k, n}}, {{n}}}, [](Graph &, Ts &x) {
                   Tensor z = matmul(x[0], x[1]) + x[2];
                   return Ts{z, tanh(z * 0.02f)};
                 }});
    c.push_back({"epilogue_residual_" + s, {{{m, k}}, {{n, k}}, {{m, n}}},
                 [](Graph &, Ts &x) { return Ts{matmul(x[0], x[1], {.transpose_b = true}) + x[2] * 0.5f}; }});
    c.push_back({"epilogue_mask_" + s, {{{k, m}}, {{k, n}}, {{m, n}, DType::f32, -1, 1}},
                 [](Graph &, Ts &x) { return Ts{matmul(x[0], x[1], {.transpose_a = true}) * step(x[2])}; }});
  }
  c.push_back({"epilogue_batched", {{{2, 3, 9, 17}}, {{2, 3, 17, 33}}, {{3, 1, 33}}},
               [](Graph &, Ts &x) { return Ts{sigmoid(matmul(x[0], x[1]) - x[2])}; }});

  // Reductions.
  struct R {
    const char *name;
    Tensor (*fn)(const Tensor &, const Axes &, bool, Loc);
  };
  for (R r : {R{"sum", soma::sum}, R{"mean", soma::mean}, R{"max", soma::max}}) {
    std::string n = r.name;
    auto fn = r.fn;
    c.push_back({n + "_all", {{{7, 5}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {}, false, Loc::current())}; }});
    c.push_back({n + "_axis0", {{{63, 5}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {0}, false, Loc::current())}; }});
    c.push_back({n + "_axis1_keep", {{{7, 65}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {1}, true, Loc::current())}; }});
    c.push_back({n + "_axes02", {{{3, 4, 5}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {0, 2}, false, Loc::current())}; }});
    c.push_back({n + "_neg_axis_keep", {{{3, 4, 5}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {-1}, true, Loc::current())}; }});
    c.push_back({n + "_big_rows", {{{300, 129}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {1}, false, Loc::current())}; }});
    // The reduced loop's lengths pick the lanes of partial results (see
    // soma-linalg-to-loops): 64 and 24 as vectors of 16 and 8, 12 as four
    // scalar chains, a batch-norm-like [C] from [N, C, H, W] over rows of 8,
    // and a sum down the columns (read across rows, not contiguously).
    c.push_back({n + "_rows_64", {{{6, 64}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {1}, false, Loc::current())}; }});
    c.push_back({n + "_rows_24", {{{5, 24}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {1}, false, Loc::current())}; }});
    c.push_back({n + "_rows_12", {{{5, 12}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {1}, false, Loc::current())}; }});
    c.push_back({n + "_channels", {{{4, 16, 8, 8}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {0, 2, 3}, false, Loc::current())}; }});
    c.push_back({n + "_columns_32", {{{32, 48}}}, [fn](Graph &, Ts &x) { return Ts{fn(x[0], {0}, false, Loc::current())}; }});
    // All negative: the other lanes start from the identity (-inf for a
    // maximum), never from 0.
    c.push_back({n + "_negative_rows_32", {{{3, 32}, DType::f32, -5, -1}},
                 [fn](Graph &, Ts &x) { return Ts{fn(x[0], {1}, false, Loc::current())}; }});
  }

  // Shape and data movement (an op after each view so the view is consumed).
  c.push_back({"reshape_output", {{{6, 4}}}, [](Graph &, Ts &x) { return Ts{reshape(x[0], {3, 8})}; }});
  c.push_back({"reshape_then_relu", {{{6, 4}}}, [](Graph &, Ts &x) { return Ts{relu(reshape(x[0], {2, -1, 2}))}; }});
  c.push_back({"reshape_to_scalar", {{{1, 1}}}, [](Graph &, Ts &x) { return Ts{exp(reshape(x[0], {}))}; }});
  c.push_back({"reshape_from_scalar", {{{}}}, [](Graph &, Ts &x) { return Ts{exp(reshape(x[0], {1, 1}))}; }});
  c.push_back({"flatten", {{{4, 3, 5, 2}}}, [](Graph &, Ts &x) { return Ts{neg(flatten(x[0]))}; }});
  c.push_back({"reshape_labels", {{{4, 6}, DType::i32, 0, 10}}, [](Graph &, Ts &x) { return Ts{reshape(x[0], {24})}; }});
  c.push_back({"transpose_2d", {{{7, 65}}}, [](Graph &, Ts &x) { return Ts{transpose(x[0])}; }});
  c.push_back({"transpose_201", {{{2, 3, 4}}}, [](Graph &, Ts &x) { return Ts{transpose(x[0], {2, 0, 1})}; }});
  c.push_back({"broadcast_to", {{{3, 1}}}, [](Graph &, Ts &x) { return Ts{broadcast_to(x[0], {2, 3, 5})}; }});
  c.push_back({"slice_basic", {{{7, 9}}}, [](Graph &, Ts &x) { return Ts{slice(x[0], {1, 2}, {6, 9})}; }});
  c.push_back({"slice_strided", {{{8, 9, 5}}}, [](Graph &, Ts &x) { return Ts{slice(x[0], {0, 1, 4}, {8, 9, 5}, {3, 2, 1})}; }});
  c.push_back({"slice_negative", {{{7, 9}}}, [](Graph &, Ts &x) { return Ts{slice(x[0], {-3, 0}, {7, -1})}; }});
  c.push_back({"concat_axis0", {{{2, 3}}, {{4, 3}}, {{1, 3}}}, [](Graph &, Ts &x) { return Ts{concat(x, 0)}; }});
  c.push_back({"concat_axis1", {{{2, 3, 2}}, {{2, 5, 2}}}, [](Graph &, Ts &x) { return Ts{concat(x, -2)}; }});
  c.push_back({"concat_labels", {{{3}, DType::i64, 0, 9}, {{2}, DType::i64, 0, 9}}, [](Graph &, Ts &x) { return Ts{concat(x, 0)}; }});
  c.push_back({"constant_add", {{{2, 3}}}, [](Graph &g, Ts &x) {
                 return Ts{x[0] + constant(g, Array::f32({2, 3}, {1, -2, 3, -4, 5, -6}))};
               }});
  c.push_back({"constant_output", {{{2}}}, [](Graph &g, Ts &x) {
                 return Ts{x[0] * 2.0f, constant(g, Array::i32({3}, {7, 8, 9}))};
               }});
  c.push_back({"operators", {{{3, 4}}, {{4}}}, [](Graph &, Ts &x) {
                 return Ts{(x[0] + x[1]) * x[0] - x[1] / 3.0f + 1.0f, -x[0], 0.5f * x[1]};
               }});

  // Softmax family and losses.
  for (Shape s : {Shape{1, 1}, Shape{7, 10}, Shape{65, 129}})
    c.push_back({"softmax_" + std::to_string(s[0]) + "x" + std::to_string(s[1]), {{s, DType::f32, -10, 10}},
                 [](Graph &, Ts &x) { return Ts{softmax(x[0]), log_softmax(x[0])}; }});
  c.push_back({"softmax_axis0", {{{5, 3, 2}, DType::f32, -10, 10}},
               [](Graph &, Ts &x) { return Ts{softmax(x[0], 0), log_softmax(x[0], 1)}; }});
  // Row kernels: rows of 65 (4 full vectors of 16 and a masked one, or 8
  // of 8) on the OpenMP path; an axis followed by a dimension of 1.
  c.push_back({"softmax_rows_parallel", {{{257, 65}, DType::f32, -10, 10}},
               [](Graph &, Ts &x) { return Ts{softmax(x[0]), log_softmax(x[0])}; }});
  c.push_back({"softmax_axis_then_1", {{{3, 17, 1}, DType::f32, -10, 10}},
               [](Graph &, Ts &x) { return Ts{softmax(x[0], 1), log_softmax(x[0], 1)}; }});
  c.push_back({"softmax_huge_logits", {{{4, 6}, DType::f32, 80, 100}},
               [](Graph &, Ts &x) { return Ts{softmax(x[0]), log_softmax(x[0])}; }});
  for (DType dt : {DType::i32, DType::i64})
    for (Reduction r : {Reduction::mean, Reduction::sum})
      c.push_back({std::string("softmax_ce_") + dtype_name(dt) + (r == Reduction::mean ? "_mean" : "_sum"),
                   {{{64, 10}, DType::f32, -5, 5}, {{64}, dt, 0, 10}},
                   [r](Graph &, Ts &x) { return Ts{softmax_cross_entropy(x[0], x[1], r)}; }});
  c.push_back({"softmax_ce_one", {{{1, 1}}, {{1}, DType::i32, 0, 1}},
               [](Graph &, Ts &x) { return Ts{softmax_cross_entropy(x[0], x[1])}; }});
  for (Reduction r : {Reduction::mean, Reduction::sum}) {
    std::string rn = r == Reduction::mean ? "mean" : "sum";
    c.push_back({"mse_" + rn, {{{7, 5}}, {{7, 5}}}, [r](Graph &, Ts &x) { return Ts{mse(x[0], x[1], r)}; }});
    c.push_back({"bce_" + rn, {{{7, 5}, DType::f32, 0.01f, 0.99f}, {{7, 5}, DType::f32, 0, 1}},
                 [r](Graph &, Ts &x) { return Ts{binary_cross_entropy(x[0], x[1], r)}; }});
  }
  c.push_back({"bce_saturated", {{{3}, DType::f32, 0, 0}, {{3}, DType::f32, 1, 1}},
               [](Graph &, Ts &x) { return Ts{binary_cross_entropy(x[0], x[1])}; }});

  // Convolution and pooling.
  struct Conv {
    const char *name;
    Shape x, w;
    Conv2dOptions o;
  };
  for (const Conv &cv : {Conv{"conv_basic", {2, 3, 7, 7}, {4, 3, 3, 3}, {}},
                         Conv{"conv_stride2_pad1", {2, 3, 9, 8}, {5, 3, 3, 3}, {.stride = 2, .padding = 1}},
                         Conv{"conv_dilation2", {1, 2, 9, 9}, {3, 2, 3, 3}, {.dilation = 2}},
                         Conv{"conv_depthwise", {2, 4, 8, 8}, {4, 1, 3, 3}, {.padding = 1, .groups = 4}},
                         Conv{"conv_groups2", {2, 4, 6, 6}, {6, 2, 3, 3}, {.groups = 2}},
                         Conv{"conv_1x1", {3, 8, 5, 5}, {2, 8, 1, 1}, {}},
                         Conv{"conv_same_stride2", {2, 3, 7, 7}, {4, 3, 3, 3}, {.stride = 2, .same = true}},
                         Conv{"conv_asymmetric_pad", {1, 2, 5, 6}, {3, 2, 2, 3}, {.stride = {1, 2}, .padding = {0, 1, 2, 0}}},
                         Conv{"conv_lenet_size", {8, 6, 14, 14}, {16, 6, 5, 5}, {}},
                         Conv{"conv_big_parallel", {4, 6, 28, 28}, {8, 6, 5, 5}, {.padding = 2}},
                         // Stride 1, the output the input's size: computed
                         // directly (DirectConv.cpp), with 63 pixels and 11
                         // filters (edge tiles of both), uneven paddings, and
                         // enough work for a unit per image.
                         Conv{"conv_direct_odd", {3, 5, 7, 9}, {11, 5, 3, 3}, {.padding = 1}},
                         Conv{"conv_direct_uneven", {2, 3, 5, 6}, {4, 3, 2, 3}, {.padding = {0, 1, 1, 1}}},
                         Conv{"conv_direct_parallel", {8, 16, 20, 20}, {20, 16, 3, 3}, {.padding = 1}},
                         // Rows whose windows stay inside the image: x
                         // loaded whole, the columns off the row's edges
                         // cleared by a lane mask, when the convolution has
                         // at least 2^26 multiply-adds (GemmConfig::
                         // conv_interior_work): a 3 x 3 window, a
                         // 7 x 7 one (3 columns off each side), all the
                         // padding on the left (columns off the left edge
                         // only) or on the right, and a grid taller than the
                         // image (padding 2 above and below). None: a window
                         // taller than the image. (10 filters: on the grid,
                         // not along the filters, with vectors of 8 or 16.)
                         Conv{"conv_direct_interior_3x3", {3, 160, 44, 44}, {10, 160, 3, 3}, {.padding = 1}},
                         Conv{"conv_direct_interior_7x7", {2, 40, 48, 48}, {10, 40, 7, 7}, {.padding = 3}},
                         Conv{"conv_direct_interior_left", {3, 160, 42, 45}, {10, 160, 3, 3}, {.padding = {1, 2, 1, 0}}},
                         Conv{"conv_direct_interior_right", {3, 160, 42, 45}, {10, 160, 3, 3}, {.padding = {1, 0, 1, 2}}},
                         Conv{"conv_direct_interior_taller", {3, 160, 40, 44}, {10, 160, 3, 3}, {.padding = {2, 1}}},
                         Conv{"conv_direct_no_interior", {2, 2, 2, 200}, {3, 2, 7, 7}, {.padding = 3}},
                         // Narrower than the input ("valid", or part of the
                         // padding): the grid's extra columns are not
                         // stored. 7 x 13 grids of 91 pixels (edge chunks),
                         // a left padding, and conv_lenet_size above.
                         Conv{"conv_direct_valid_odd", {3, 5, 9, 13}, {11, 5, 3, 5}, {}},
                         Conv{"conv_direct_partial_pad", {2, 3, 6, 7}, {4, 3, 3, 3}, {.padding = {0, 1, 1, 0}}},
                         // "Valid" with at least VL filters: vectors along
                         // the filters (conv_lenet_size above too): 24
                         // filters (a last vector of 8 with AVX-512) over 7 x 9
                         // outputs (edge tiles); 40 filters over 8 x 7 (tiles
                         // of several filter vectors), and enough work for a
                         // unit per image.
                         Conv{"conv_filters_odd", {3, 5, 9, 13}, {24, 5, 3, 5}, {}},
                         Conv{"conv_filters_parallel", {8, 6, 12, 14}, {40, 6, 5, 8}, {}},
                         // Padded, with two or more vectors of filters at
                         // least 3/4 full: along the filters too, each band
                         // of x's rows copied between zeros. 7 x 9 outputs
                         // (edge tiles of rows and columns), 48 filters (3
                         // vectors of 16: a tile of 3; 6 of 8: 4 and 2);
                         // uneven paddings; a 7 x 7 window; 13 rows of 130
                         // channels (bands cut by the copy's size, a last
                         // band of fewer rows); enough work for a unit per
                         // image; 64 filters over 56 x 56 (the ResNet layer's
                         // shape, interior groups before).
                         Conv{"conv_filters_padded_odd", {3, 5, 7, 9}, {48, 5, 3, 3}, {.padding = 1}},
                         Conv{"conv_filters_padded_uneven", {2, 3, 6, 7}, {32, 3, 3, 3}, {.padding = {0, 1, 2, 0}}},
                         Conv{"conv_filters_padded_7x7", {2, 4, 9, 11}, {32, 4, 7, 7}, {.padding = 3}},
                         Conv{"conv_filters_padded_bands", {2, 130, 13, 30}, {32, 130, 3, 3}, {.padding = 1}},
                         Conv{"conv_filters_padded_parallel", {8, 16, 20, 20}, {32, 16, 3, 3}, {.padding = 1}},
                         Conv{"conv_filters_padded_56", {2, 64, 56, 56}, {64, 64, 3, 3}, {.padding = 1}},
                         // A 1 x 1 one with 16 filters fills the grid as well
                         // as its vectors: it stays on the grid (lit
                         // @conv_1x1_stays_on_grid checks the path).
                         Conv{"conv_1x1_16_filters", {2, 8, 5, 7}, {16, 8, 1, 1}, {}},
                         // A grid whose window of x over all channels
                         // exceeds 48 KiB: blocks of channels, each adding
                         // to C (97 channels: blocks of 49 and 48; 11
                         // filters: an edge tile).
                         Conv{"conv_direct_channel_blocks", {2, 97, 5, 64}, {11, 97, 3, 3}, {.padding = 1}},
                         Conv{"conv_direct_channel_blocks_stride2", {2, 128, 8, 64}, {8, 128, 3, 3},
                              {.stride = 2, .padding = 1}},
                         // Stride 2 with output rows of 35: the packing loads
                         // 16 lanes two apart as two vectors and a shuffle.
                         Conv{"conv_stride2_wide", {2, 3, 6, 70}, {4, 3, 3, 3}, {.stride = 2, .padding = 1}},
                         // Stride 2 with output rows of 16 and 8 (a multiple
                         // of half a vector): computed directly, two loads and
                         // a shuffle per chunk; 3x3 (11 filters), uneven
                         // paddings, a 1x1 shortcut, and a parallel one (7
                         // filters: too few to go along the filters).
                         Conv{"conv_direct_stride2", {2, 3, 9, 32}, {11, 3, 3, 3}, {.stride = 2, .padding = 1}},
                         Conv{"conv_direct_stride2_uneven", {3, 5, 11, 16}, {4, 5, 3, 3},
                              {.stride = 2, .padding = {1, 1, 0, 0}}},
                         Conv{"conv_direct_stride2_1x1", {2, 4, 6, 16}, {6, 4, 1, 1}, {.stride = 2}},
                         Conv{"conv_direct_stride2_parallel", {8, 16, 32, 32}, {7, 16, 3, 3}, {.stride = 2, .padding = 1}},
                         // Stride 2 with two or more filter vectors at
                         // least 3/4 full: along the filters too (not 1 x
                         // 1). 24 filters (a last vector of 8 with AVX-512) over 5 x 8 outputs
                         // (an edge tile of rows); unpadded with a 5 x 5
                         // window (x read in place, two columns a pixel)
                         // and 9 rows; uneven paddings; 130 channels (bands
                         // cut by the copy's size: 2 rows, then 1); enough
                         // work for a unit per image. A 1 x 1 one with 32
                         // filters stays on the grid.
                         Conv{"conv_filters_stride2_padded", {3, 5, 9, 16}, {24, 5, 3, 3}, {.stride = 2, .padding = 1}},
                         Conv{"conv_filters_stride2_valid_5x5", {2, 6, 21, 19}, {32, 6, 5, 5}, {.stride = 2}},
                         Conv{"conv_filters_stride2_uneven", {2, 3, 10, 16}, {32, 3, 3, 3},
                              {.stride = 2, .padding = {1, 0, 0, 1}}},
                         Conv{"conv_filters_stride2_bands", {2, 130, 17, 32}, {32, 130, 3, 3}, {.stride = 2, .padding = 1}},
                         Conv{"conv_filters_stride2_parallel", {8, 16, 32, 32}, {64, 16, 3, 3}, {.stride = 2, .padding = 1}},
                         Conv{"conv_1x1_stride2_32_filters", {2, 8, 6, 16}, {32, 8, 1, 1}, {.stride = 2}},
                         // Stride 3 (not on a grid): an implicit-im2col
                         // GEMM of 260 filters x 256 pixels, which takes
                         // AVX-512's wide register tile with the windows
                         // gathered into its panels of 64 columns.
                         Conv{"conv_implicit_gemm_wide_tile", {1, 4, 49, 50}, {260, 4, 3, 3}, {.stride = 3}},
                         // Fewer filters than lanes and a vector of channels
                         // or more, on no grid: vectors along the channels.
                         // LeNet-5's second layer's input gradient (16
                         // channels of dy into 6, 5 x 5, padded by 4: an
                         // output wider than the input); 20 channels (a
                         // last vector of 4 with AVX-512) of stride 3 x 2
                         // with uneven padding and a 3 x 4 window; one
                         // filter, 33 channels, 1 x 9 window wider than
                         // the grid's 8, 19 output columns (tiles of a
                         // vector of columns and the rest); 64 channels over
                         // 60 columns (bands of 2 output rows, stride 3, the
                         // image's last row read by no window); enough work
                         // for a unit per image, and with AVX-512 an edge
                         // tile of filters (11: 8 + 3).
                         Conv{"conv_channels_transposed", {2, 16, 10, 10}, {6, 16, 5, 5}, {.padding = 4}},
                         Conv{"conv_channels_stride3x2", {2, 20, 9, 11}, {3, 20, 3, 4},
                              {.stride = {3, 2}, .padding = {1, 0, 2, 1}}},
                         Conv{"conv_channels_one_filter", {3, 33, 6, 24}, {1, 33, 1, 9}, {.padding = {0, 1, 0, 2}}},
                         Conv{"conv_channels_bands", {2, 64, 30, 60}, {2, 64, 3, 3}, {.stride = 3, .padding = 1}},
                         Conv{"conv_channels_parallel", {8, 16, 12, 12}, {11, 16, 3, 3}, {.padding = 3}}}) {
    Conv2dOptions o = cv.o;
    c.push_back({cv.name, {{cv.x}, {cv.w}}, [o](Graph &, Ts &x) { return Ts{conv2d(x[0], x[1], o)}; }});
  }
  // A direct convolution's epilogue: ReLU of the sum with the input (a
  // residual block's shape).
  c.push_back({"conv_direct_residual_relu", {{{2, 4, 6, 6}}, {{4, 4, 3, 3}}},
               [](Graph &, Ts &x) { return Ts{relu(conv2d(x[0], x[1], {.padding = 1}) + x[0])}; }});
  // ... and of a narrower one: the epilogue reads the residual at the
  // outputs' own indices.
  c.push_back({"conv_direct_valid_residual_relu", {{{2, 4, 8, 7}}, {{4, 4, 3, 3}}, {{2, 4, 6, 5}}},
               [](Graph &, Ts &x) { return Ts{relu(conv2d(x[0], x[1]) + x[2])}; }});
  // ... and of one with vectors along the filters: after the image's
  // outputs are transposed into place.
  c.push_back({"conv_filters_residual_relu", {{{2, 3, 8, 9}}, {{16, 3, 3, 3}}, {{2, 16, 6, 7}}},
               [](Graph &, Ts &x) { return Ts{relu(conv2d(x[0], x[1]) + x[2])}; }});
  // ... and of a stride-2 one (a residual block's downsampling shape).
  // ... and of one along the channels, per band.
  c.push_back({"conv_channels_bias_relu", {{{2, 16, 6, 6}}, {{5, 16, 3, 3}}, {{1, 5, 1, 1}}},
               [](Graph &, Ts &x) { return Ts{relu(conv2d(x[0], x[1], {.padding = 2}) + x[2])}; }});
  c.push_back({"conv_filters_stride2_residual_relu", {{{2, 16, 8, 16}}, {{32, 16, 3, 3}}, {{2, 32, 4, 8}}},
               [](Graph &, Ts &x) { return Ts{relu(conv2d(x[0], x[1], {.stride = 2, .padding = 1}) + x[2])}; }});
  // ... and of a padded one, per band of rows.
  c.push_back({"conv_filters_padded_residual_relu", {{{2, 32, 9, 7}}, {{32, 32, 3, 3}}},
               [](Graph &, Ts &x) { return Ts{relu(conv2d(x[0], x[1], {.padding = 1}) + x[0])}; }});
  c.push_back({"conv_direct_channel_blocks_relu", {{{2, 96, 8, 48}}, {{96, 96, 3, 3}}},
               [](Graph &, Ts &x) { return Ts{relu(conv2d(x[0], x[1], {.padding = 1}) + x[0])}; }});
  c.push_back({"max_pool_2x2", {{{2, 3, 8, 8}}}, [](Graph &, Ts &x) { return Ts{max_pool2d(x[0], 2)}; }});
  // Windows that tile the input are lowered directly (not decomposed): 3 x
  // 2 of stride 3 x 2 over 9 x 6, and values that tie within windows.
  c.push_back({"max_pool_tiled_3x2", {{{2, 3, 9, 6}}},
               [](Graph &, Ts &x) { return Ts{max_pool2d(x[0], {3, 2}, {.stride = {3, 2}})}; }});
  c.push_back({"max_pool_3x3_s2_p1", {{{2, 3, 9, 9}}},
               [](Graph &, Ts &x) { return Ts{max_pool2d(x[0], 3, {.stride = 2, .padding = 1})}; }});
  c.push_back({"max_pool_negative", {{{1, 2, 4, 4}, DType::f32, -5, -1}},
               [](Graph &, Ts &x) { return Ts{max_pool2d(x[0], 3, {.stride = 1, .padding = 1})}; }});
  c.push_back({"avg_pool_2x2", {{{2, 3, 8, 8}}}, [](Graph &, Ts &x) { return Ts{avg_pool2d(x[0], 2)}; }});
  // Average pooling whose windows tile the input, lowered directly too:
  // 3 x 2 of stride 3 x 2, 1 x 1, and rows of 35 outputs (chunks of 16 and
  // a masked rest with AVX-512, of 8 with AVX2).
  c.push_back({"avg_pool_tiled_3x2", {{{2, 3, 9, 6}}},
               [](Graph &, Ts &x) { return Ts{avg_pool2d(x[0], {3, 2}, {.stride = {3, 2}})}; }});
  c.push_back({"avg_pool_tiled_1x1", {{{1, 2, 3, 5}}}, [](Graph &, Ts &x) { return Ts{avg_pool2d(x[0], 1)}; }});
  c.push_back({"avg_pool_tiled_wide", {{{1, 2, 4, 70}}}, [](Graph &, Ts &x) { return Ts{avg_pool2d(x[0], 2)}; }});
  c.push_back({"avg_pool_3x3_s2_p1", {{{2, 3, 9, 9}}},
               [](Graph &, Ts &x) { return Ts{avg_pool2d(x[0], 3, {.stride = 2, .padding = 1})}; }});
  c.push_back({"global_avg_pool", {{{2, 5, 6, 7}}}, [](Graph &, Ts &x) { return Ts{global_avg_pool2d(x[0])}; }});
  c.push_back({"pool_big_parallel", {{{8, 16, 28, 28}}}, [](Graph &, Ts &x) {
                 return Ts{max_pool2d(x[0], 2), avg_pool2d(x[0], 2)};
               }});

  // Output plumbing: an input returned as is, a value returned twice, an
  // output that is also consumed.
  c.push_back({"identity_output", {{{3, 2}}}, [](Graph &, Ts &x) { return Ts{x[0]}; }});
  c.push_back({"output_twice", {{{3, 2}}}, [](Graph &, Ts &x) {
                 Tensor y = relu(x[0]);
                 return Ts{y, y};
               }});
  c.push_back({"output_consumed", {{{3, 2}}}, [](Graph &, Ts &x) {
                 Tensor y = tanh(x[0]);
                 return Ts{y, y * y};
               }});
  return c;
}

class CompiledOp : public ::testing::TestWithParam<Case> {};

TEST_P(CompiledOp, MatchesInterpreter) {
  const Case &tc = GetParam();
  Graph g(tc.name);
  Ts xs;
  std::map<std::string, Array> inputs;
  uint32_t seed = 1;
  for (size_t i = 0; i < tc.inputs.size(); ++i) {
    const In &in = tc.inputs[i];
    std::string name = "in" + std::to_string(i);
    xs.push_back(g.input(name, in.shape, in.dtype));
    inputs[name] = in.dtype == DType::f32
                       ? test::randomF32(in.shape, in.lo, in.hi, seed++)
                       : test::randomLabels(in.shape, static_cast<int64_t>(in.hi), in.dtype, seed++);
  }
  Ts outs = tc.build(g, xs);
  for (size_t i = 0; i < outs.size(); ++i)
    g.output("out" + std::to_string(i), outs[i]);

  Inference fn = compile_inference(g);
  auto got = fn.run(inputs);
  auto want = interpret(g, inputs);
  ASSERT_EQ(got.size(), want.size());
  for (auto &[name, expected] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TRUE(allClose(got[name], expected)) << "output " << name << "\n" << g.str();
  }
}

INSTANTIATE_TEST_SUITE_P(AllOps, CompiledOp, ::testing::ValuesIn(allCases()),
                         [](const ::testing::TestParamInfo<Case> &info) { return info.param.name; });

// A whole model with parameters: the MLP at batch 64, with loss.
TEST(CompiledModel, MlpMatchesInterpreter) {
  Graph g = zoo::mlp(64, /*with_loss=*/true, /*seed=*/7);
  std::map<std::string, Array> inputs{{"x", test::randomF32({64, 784}, 0, 1, 3)},
                                      {"y", test::randomLabels({64}, 10, DType::i32, 4)}};
  auto got = compile_inference(g).run(inputs);
  auto want = interpret(g, inputs);
  EXPECT_TRUE(allClose(got["logits"], want["logits"]));
  EXPECT_TRUE(allClose(got["loss"], want["loss"]));
}

// SOMA_PERF_MAP=1 names every function the JIT links in /tmp/perf-PID.map
// (for `perf report`): each kernel and shared tile by its own name, over
// ranges that do not overlap, code after a function without a symbol of
// its own (an OpenMP region's body) as "<function>.outlined". A filler
// range that started where the next function starts could once take that
// function's name (ResNet-8's stride-2 GEMMs showed as "loop11.outlined").
TEST(CompiledModel, PerfMapNamesEveryKernel) {
  std::string path = "/tmp/perf-" + std::to_string(::getpid()) + ".map";
  std::remove(path.c_str());
  ::setenv("SOMA_PERF_MAP", "1", 1);
  Graph g = zoo::mlp(64, /*with_loss=*/true, /*seed=*/7);
  (void)compile_inference(g, {.use_environment = false, .cache = false});
  ::unsetenv("SOMA_PERF_MAP");
  std::string map = read_file(path);
  std::remove(path.c_str());
  std::istringstream lines(map);
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;
  std::string begin, size, name;
  while (lines >> begin >> size >> name)
    ranges.emplace_back(std::stoull(begin, nullptr, 16), std::stoull(size, nullptr, 16), name);
  std::sort(ranges.begin(), ranges.end());
  std::set<std::string> names;
  for (size_t i = 0; i < ranges.size(); ++i) {
    names.insert(std::get<2>(ranges[i]));
    EXPECT_GT(std::get<1>(ranges[i]), 0u) << std::get<2>(ranges[i]);
    if (i + 1 < ranges.size()) {
      EXPECT_LE(std::get<0>(ranges[i]) + std::get<1>(ranges[i]), std::get<0>(ranges[i + 1]))
          << std::get<2>(ranges[i]) << " overlaps " << std::get<2>(ranges[i + 1]);
    }
  }
  for (const char *kernel : {"mlp", "mlp_gemm0", "mlp_gemm1", "mlp_gemm2"})
    EXPECT_TRUE(names.count(kernel)) << kernel << " in\n" << map;
  EXPECT_TRUE(std::any_of(names.begin(), names.end(),
                          [](const std::string &n) { return n.rfind("soma_gemm_tile", 0) == 0; }))
      << map;
}

// The GEMM's scratch holds blocks of MC x KC of A and KC x NC of B, whose
// edges round up to whole register tiles: MC and NC must be multiples of
// every tile's sides (GemmConfig::forShape takes the wide one, forRows
// shorter ones of the same width whose heights divide MC), and a tile's
// width whole vectors.
TEST(GemmConfig, BlocksHoldWholeTiles) {
  for (int64_t vl : {4, 8, 16}) {
    GemmConfig c = GemmConfig::forVectorWidth(vl);
    SCOPED_TRACE("vector width " + std::to_string(vl));
    EXPECT_EQ(c.mc % c.mr, 0);
    EXPECT_EQ(c.nc % c.nr, 0);
    EXPECT_EQ(c.nr % vl, 0);
    if (c.wide_mr > 0) {
      EXPECT_EQ(c.mc % c.wide_mr, 0);
      EXPECT_EQ(c.nc % c.wide_nr, 0);
      EXPECT_EQ(c.wide_nr % vl, 0);
    }
    for (int64_t m : {1, 6, 16, 64, 100, 256, 1000})
      for (int64_t n : {16, 256, 288, 300, 1024}) {
        GemmConfig s = c.forShape(m, n);
        EXPECT_EQ(c.mc % s.mr, 0) << m << "x" << n;
        EXPECT_EQ(c.nc % s.nr, 0) << m << "x" << n;
      }
  }
}

// The JIT cuts a GEMM into units for the threads OpenMP would use
// (omp_get_max_threads when it compiles): code made for 1, 2 or 3 threads
// and run on 1, 2 or 3 gives the same bits. Shapes: an MLP layer
// (64x256x784: K split in two with AVX2's blocks of K, whole with
// AVX-512's), 64x2600x1024 (6 to 11 blocks of K, whose split would differ
// if it were decided for the thread count), copied rows of A in row groups
// and column blocks (130x1024x97), many column blocks (LeNet-5's conv2
// input gradient, 150x6400x16 with A transposed, read in place), the wide
// register tile of AVX-512 (300x1024x500).
TEST(CompiledModel, GemmResultsDoNotDependOnThreads) {
  struct S {
    int64_t m, k, n;
    bool ta;
  };
  for (S s : {S{64, 784, 256, false}, S{64, 2600, 1024, false}, S{130, 1024, 97, false}, S{150, 16, 6400, true},
              S{300, 1024, 500, false}}) {
    Graph g("gemm");
    Tensor a = g.input("a", s.ta ? Shape{s.k, s.m} : Shape{s.m, s.k});
    Tensor b = g.input("b", {s.k, s.n});
    g.output("c", matmul(a, b, {.transpose_a = s.ta}));
    std::map<std::string, Array> in{{"a", test::randomF32(g.inputs()[0].shape, -1, 1, 11)},
                                    {"b", test::randomF32({s.k, s.n}, -1, 1, 12)}};
    const int before = omp_get_max_threads();
    std::vector<Inference> made;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      made.push_back(compile_inference(g, {.use_environment = false, .cache = false}));
    }
    omp_set_num_threads(1);
    Array want = made[0].run(in)["c"];
    for (size_t i = 0; i < made.size(); ++i)
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        Array got = made[i].run(in)["c"];
        EXPECT_EQ(0, std::memcmp(got.data<float>(), want.data<float>(), want.numel() * sizeof(float)))
            << s.m << "x" << s.k << "x" << s.n << ": made for " << i + 1 << " threads, run on " << threads;
      }
    omp_set_num_threads(before);
  }
}

// A label outside [0, C) gives NaN, not a crash or a read out of bounds.
TEST(CompiledModel, OutOfRangeLabelGivesNaN) {
  Graph g("ce");
  Tensor x = g.input("x", {2, 3});
  Tensor y = g.input("y", {2}, DType::i32);
  g.output("loss", softmax_cross_entropy(x, y));
  auto out = compile_inference(g).run({{"x", test::randomF32({2, 3}, -1, 1, 1)},
                                       {"y", Array::i32({2}, {1, 3})}});
  EXPECT_TRUE(std::isnan(out["loss"].data<float>()[0]));
}

} // namespace
