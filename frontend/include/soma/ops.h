//===- soma/ops.h - The operations of the builder DSL ------------*- C++ -*-===//
//
// Free functions on soma::Tensor. Each takes a trailing
// std::source_location that defaults to the caller's position; do not pass
// it yourself. Axes may be negative (counting from the end).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "soma/graph.h"

#include <initializer_list>
#include <source_location>
#include <vector>

namespace soma {

using Loc = std::source_location;
using Axes = std::vector<int64_t>;

/// A Tensor together with the location of the expression it appears in;
/// lets the overloaded operators (which cannot take default arguments)
/// report the user's line.
struct LocatedTensor {
  Tensor t;
  Loc loc;
  LocatedTensor(const Tensor &t, Loc loc = Loc::current()) : t(t), loc(loc) {}
};

// --- elementwise, with numpy broadcasting -----------------------------------
Tensor add(const Tensor &a, const Tensor &b, Loc loc = Loc::current());
Tensor sub(const Tensor &a, const Tensor &b, Loc loc = Loc::current());
Tensor mul(const Tensor &a, const Tensor &b, Loc loc = Loc::current());
Tensor div(const Tensor &a, const Tensor &b, Loc loc = Loc::current());
Tensor pow(const Tensor &a, const Tensor &b, Loc loc = Loc::current());
Tensor maximum(const Tensor &a, const Tensor &b, Loc loc = Loc::current());
Tensor minimum(const Tensor &a, const Tensor &b, Loc loc = Loc::current());

Tensor operator+(LocatedTensor a, const Tensor &b);
Tensor operator-(LocatedTensor a, const Tensor &b);
Tensor operator*(LocatedTensor a, const Tensor &b);
Tensor operator/(LocatedTensor a, const Tensor &b);
Tensor operator-(LocatedTensor a);
Tensor operator+(LocatedTensor a, float b);
Tensor operator-(LocatedTensor a, float b);
Tensor operator*(LocatedTensor a, float b);
Tensor operator/(LocatedTensor a, float b);
Tensor operator*(float a, LocatedTensor b);

Tensor neg(const Tensor &x, Loc loc = Loc::current());
Tensor exp(const Tensor &x, Loc loc = Loc::current());
Tensor log(const Tensor &x, Loc loc = Loc::current());
Tensor sqrt(const Tensor &x, Loc loc = Loc::current());
Tensor abs(const Tensor &x, Loc loc = Loc::current());
Tensor tanh(const Tensor &x, Loc loc = Loc::current());
Tensor sigmoid(const Tensor &x, Loc loc = Loc::current());
Tensor relu(const Tensor &x, Loc loc = Loc::current());
Tensor leaky_relu(const Tensor &x, double alpha = 0.01, Loc loc = Loc::current());
Tensor softplus(const Tensor &x, Loc loc = Loc::current());
/// x if x > 0 else alpha (e^x - 1).
Tensor elu(const Tensor &x, double alpha = 1.0, Loc loc = Loc::current());
/// x * sigmoid(x).
Tensor silu(const Tensor &x, Loc loc = Loc::current());
/// x * sigmoid(beta x) (beta = 1 is silu; 1.702 approximates gelu).
Tensor swish(const Tensor &x, double beta, Loc loc = Loc::current());
/// x * Phi(x), the exact (erf) form.
Tensor gelu(const Tensor &x, Loc loc = Loc::current());
/// The maximum of each group of `pieces` consecutive features:
/// [N, C * pieces] -> [N, C] (Goodfellow et al.'s maxout).
Tensor maxout(const Tensor &x, int64_t pieces, Loc loc = Loc::current());

// --- contraction --------------------------------------------------------------
struct MatmulOptions {
  bool transpose_a = false;
  bool transpose_b = false;
};
/// op(a) x op(b); rank 2, or equal leading batch dimensions.
Tensor matmul(const Tensor &a, const Tensor &b, MatmulOptions options = {},
              Loc loc = Loc::current());

// --- reductions (empty axes = all axes) -----------------------------------------
Tensor sum(const Tensor &x, const Axes &axes = {}, bool keepdims = false,
           Loc loc = Loc::current());
Tensor mean(const Tensor &x, const Axes &axes = {}, bool keepdims = false,
            Loc loc = Loc::current());
Tensor max(const Tensor &x, const Axes &axes = {}, bool keepdims = false,
           Loc loc = Loc::current());

// --- shape and data movement -----------------------------------------------------
/// One dimension of `shape` may be -1 (inferred).
Tensor reshape(const Tensor &x, const Shape &shape, Loc loc = Loc::current());
/// [N, d1, d2, ...] -> [N, d1*d2*...].
Tensor flatten(const Tensor &x, Loc loc = Loc::current());
/// Output dim i is input dim perm[i]; an empty perm reverses the dims.
Tensor transpose(const Tensor &x, const Axes &perm = {}, Loc loc = Loc::current());
Tensor broadcast_to(const Tensor &x, const Shape &shape, Loc loc = Loc::current());
/// x[starts:limits:strides] per dimension; negative starts/limits count
/// from the end; empty strides mean 1.
Tensor slice(const Tensor &x, const Shape &starts, const Shape &limits,
             const Shape &strides = {}, Loc loc = Loc::current());
Tensor concat(const std::vector<Tensor> &xs, int64_t axis, Loc loc = Loc::current());
/// Cuts x along `axis` into pieces of the given sizes (which must add up to
/// the dimension).
std::vector<Tensor> split(const Tensor &x, const Shape &sizes, int64_t axis, Loc loc = Loc::current());

/// A constant tensor holding a copy of `value`.
Tensor constant(Graph &g, const Array &value, Loc loc = Loc::current());
/// A rank-0 f32 constant.
Tensor scalar(Graph &g, float value, Loc loc = Loc::current());

// --- gradient control and non-differentiable ops --------------------------------
/// Identity forward; no gradient flows back through it.
Tensor stop_gradient(const Tensor &x, Loc loc = Loc::current());
/// -1, 0 or 1 elementwise (not differentiable).
Tensor sign(const Tensor &x, Loc loc = Loc::current());
/// Heaviside step: 1 where x > 0, else 0 (not differentiable).
Tensor step(const Tensor &x, Loc loc = Loc::current());
/// 1.0 where a == b, else 0.0, with broadcasting; any dtype (not differentiable).
Tensor equal(const Tensor &a, const Tensor &b, Loc loc = Loc::current());
/// [N] integer labels -> [N, classes] f32 rows with a single 1 (not
/// differentiable; a label outside [0, classes) gives a row of zeros).
Tensor one_hot(const Tensor &labels, int64_t classes, Loc loc = Loc::current());
/// Index (i32) of the first maximum along `axis` (not differentiable).
Tensor argmax(const Tensor &x, int64_t axis = -1, Loc loc = Loc::current());
/// Pads with `value`: low/high before/after each dimension, interior
/// between its elements. Empty interior means 0.
Tensor pad(const Tensor &x, const Shape &low, const Shape &high, const Shape &interior = {},
           double value = 0.0, Loc loc = Loc::current());

// --- mode-dependent ops ----------------------------------------------------------
/// Inverted dropout. In a training step each element is zeroed with
/// probability `rate` and the others are scaled by 1 / (1 - rate); in
/// inference (and in the evaluation function of a training step) it is the
/// identity, which has the same expectation (the notes' test-time weight
/// scaling, done at training time instead). The mask is drawn in the
/// compiled code from Philox4x32-10 keyed by `seed` and the step count, so
/// it is new every step, independent of the thread count and the same in a
/// resumed run. seed < 0 derives a seed from the graph's seed and the
/// number of dropouts before this one. 0 <= rate < 1.
Tensor dropout(const Tensor &x, double rate, int64_t seed = -1, Loc loc = Loc::current());

// --- convolution and pooling (NCHW) ----------------------------------------------
/// A window parameter: one value for every spatial dimension (`2`), one per
/// dimension (`{2, 1}`), or for padding one per side ({top, left, bottom,
/// right}).
struct Ints {
  std::vector<int64_t> values;
  Ints() = default;
  Ints(int64_t v) : values{v} {}
  Ints(std::initializer_list<int64_t> v) : values(v) {}
};

struct Conv2dOptions {
  Ints stride = 1;
  /// Zero padding: 1, 2 ({h, w}, both sides) or 4 values; ignored if `same`.
  Ints padding = 0;
  /// "same" padding: the output has ceil(input / stride) positions, the
  /// padding split evenly (the extra one at the bottom/right).
  bool same = false;
  Ints dilation = 1;
  int64_t groups = 1;
};
/// Cross-correlation of x [N, C, H, W] with filter w [K, C/groups, KH, KW].
Tensor conv2d(const Tensor &x, const Tensor &w, const Conv2dOptions &options = {},
              Loc loc = Loc::current());

/// Transposed convolution (the gradient of conv2d with respect to its input,
/// as a layer): x [N, Cin, H, W], w [Cin, Cout, KH, KW] (PyTorch's layout) ->
/// [N, Cout, OH, OW] with OH = (H - 1) * stride - 2 * padding + KH +
/// output_padding. Equivalently (the course's rule): insert stride - 1 zeros
/// between pixels, pad by KH - 1 - padding, and convolve with the flipped
/// filter.
struct ConvTranspose2dOptions {
  Ints stride = 1;
  Ints padding = 0;
  Ints output_padding = 0;
};
Tensor conv_transpose2d(const Tensor &x, const Tensor &w, const ConvTranspose2dOptions &options = {},
                        Loc loc = Loc::current());

/// 1-D convolution: x [N, C, L], w [K, C/groups, KW] -> [N, K, OL]. With
/// `causal`, the input is padded by dilation * (KW - 1) on the left only, so
/// output t depends on inputs <= t (and OL = L for stride 1).
struct Conv1dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool causal = false;
};
Tensor conv1d(const Tensor &x, const Tensor &w, const Conv1dOptions &options = {},
              Loc loc = Loc::current());

struct Pool2dOptions {
  /// Defaults to the kernel size (non-overlapping windows).
  Ints stride;
  Ints padding = 0;
};
Tensor max_pool2d(const Tensor &x, Ints kernel, const Pool2dOptions &options = {},
                  Loc loc = Loc::current());
/// Average pooling; padded positions count as zeros.
Tensor avg_pool2d(const Tensor &x, Ints kernel, const Pool2dOptions &options = {},
                  Loc loc = Loc::current());
/// Upsampling of [N, C, H, W] by integer factors: "nearest" repeats each
/// pixel; "bilinear" interpolates with PyTorch's align_corners=False
/// convention (pixel centres, edges clamped).
enum class Upsample { nearest, bilinear };
Tensor upsample2d(const Tensor &x, Ints scale, Upsample mode = Upsample::nearest,
                  Loc loc = Loc::current());
/// Max unpooling with switches: puts each value of `pooled` back where the
/// maximum of its window was in `reference` (the input of the max_pool2d
/// with the same kernel and options), zeros elsewhere. Where several
/// elements tie for a window's maximum, each receives the value.
Tensor max_unpool2d(const Tensor &pooled, const Tensor &reference, Ints kernel,
                    const Pool2dOptions &options = {}, Loc loc = Loc::current());
/// The mean over H and W: [N, C, H, W] -> [N, C].
Tensor global_avg_pool2d(const Tensor &x, Loc loc = Loc::current());

// --- softmax family and losses ------------------------------------------------------
Tensor softmax(const Tensor &x, int64_t axis = -1, Loc loc = Loc::current());
Tensor log_softmax(const Tensor &x, int64_t axis = -1, Loc loc = Loc::current());

/// How a loss reduces over the batch: "mean" (default) or "sum".
enum class Reduction { mean, sum };

/// Fused softmax + cross-entropy: logits [N, C] f32, labels [N] i32/i64.
Tensor softmax_cross_entropy(const Tensor &logits, const Tensor &labels,
                             Reduction reduction = Reduction::mean,
                             Loc loc = Loc::current());
/// Mean (over all elements) or sum of (prediction - target)^2.
Tensor mse(const Tensor &prediction, const Tensor &target,
           Reduction reduction = Reduction::mean, Loc loc = Loc::current());
/// -(t log p + (1 - t) log(1 - p)), logs clamped at -100; mean or sum.
Tensor binary_cross_entropy(const Tensor &probability, const Tensor &target,
                            Reduction reduction = Reduction::mean,
                            Loc loc = Loc::current());

/// -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))) from logits, computed
/// stably as max(x, 0) - x t + log(1 + e^-|x|); mean over all elements or sum.
Tensor binary_cross_entropy_with_logits(const Tensor &logits, const Tensor &target,
                                        Reduction reduction = Reduction::mean,
                                        Loc loc = Loc::current());
/// Negative log-likelihood of integer labels under log-probabilities
/// [N, C] (e.g. log_softmax): -log_probs[i, label_i], mean over the batch or sum.
Tensor nll_loss(const Tensor &log_probs, const Tensor &labels, Reduction reduction = Reduction::mean,
                Loc loc = Loc::current());
/// KL(p || q) = sum p (log p - log q) per row of [N, C], with q given as
/// log-probabilities (as PyTorch's kl_div); 0 log 0 = 0; mean over the batch
/// ("batchmean") or sum.
Tensor kl_divergence(const Tensor &log_q, const Tensor &p, Reduction reduction = Reduction::mean,
                     Loc loc = Loc::current());
/// max(0, margin - y s) with y in {-1, +1}; mean or sum.
Tensor hinge_loss(const Tensor &scores, const Tensor &y, double margin = 1.0,
                  Reduction reduction = Reduction::mean, Loc loc = Loc::current());
/// max(0, -y (x1 - x2) + margin) with y in {-1, +1}; mean or sum.
Tensor margin_ranking_loss(const Tensor &x1, const Tensor &x2, const Tensor &y, double margin = 0.0,
                           Reduction reduction = Reduction::mean, Loc loc = Loc::current());
/// max(||a - p||^2 - ||a - n||^2 + margin, 0) per row of [N, D] (the
/// course's squared distances); mean over the batch or sum.
Tensor triplet_loss(const Tensor &anchor, const Tensor &positive, const Tensor &negative,
                    double margin = 1.0, Reduction reduction = Reduction::mean,
                    Loc loc = Loc::current());
/// a . b / max(|a| |b|, eps) along `axis` (the axis is removed).
Tensor cosine_similarity(const Tensor &a, const Tensor &b, int64_t axis = -1, double eps = 1e-8,
                         Loc loc = Loc::current());

} // namespace soma
