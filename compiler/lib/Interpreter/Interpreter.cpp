//===- Interpreter.cpp - The reference interpreter of soma IR -------------===//
//
// Every op is evaluated with plain loops over row-major indices in double
// precision. Clarity wins over speed everywhere: this is the oracle that the
// compiled code is tested against, so each kernel should be checkable by
// reading it next to the op's description in SomaOps.td.
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/Interpreter.h"
#include "soma/Compiler/Context.h"
#include "soma/Compiler/GraphImpl.h"
#include "soma/Dialect/SomaDialect.h"
#include "soma/compile.h"
#include "soma/error.h"
#include "soma/random.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/TypeSwitch.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <set>

using namespace mlir;

namespace soma {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

//===----------------------------------------------------------------------===//
// Types and indices
//===----------------------------------------------------------------------===//

/// "f32[2,3]".
std::string typeString(DType dtype, const Shape &shape) {
  return std::string(dtype_name(dtype)) + shape_str(shape);
}

/// The dtype and shape of a statically shaped tensor type.
std::pair<DType, Shape> refTypeOf(Type type) {
  auto rt = dyn_cast<RankedTensorType>(type);
  if (!rt || !rt.hasStaticShape())
    throw Error("interpreter: expected a statically shaped tensor type");
  Type et = rt.getElementType();
  DType dtype;
  if (et.isF32())
    dtype = DType::f32;
  else if (et.isInteger(32))
    dtype = DType::i32;
  else if (et.isInteger(64))
    dtype = DType::i64;
  else
    throw Error("interpreter: unsupported element type in a tensor type");
  return {dtype, Shape(rt.getShape().begin(), rt.getShape().end())};
}

/// Throws "<what>: expected f32[64,784], got f32[32,784]" unless `t` has the
/// dtype and shape of `type` (and as many values as its shape says).
void checkMatches(const std::string &what, Type type, const RefTensor &t) {
  auto [dtype, shape] = refTypeOf(type);
  if (t.dtype != dtype || t.shape != shape)
    throw Error(what + ": expected " + typeString(dtype, shape) + ", got " +
                typeString(t.dtype, t.shape));
  if (static_cast<int64_t>(t.data.size()) != numel(t.shape))
    throw Error(what + ": holds " + std::to_string(t.data.size()) +
                " values for shape " + shape_str(t.shape));
}

/// The multi-index of row-major position `flat` in `shape`.
Shape unravel(int64_t flat, const Shape &shape) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

/// The row-major position of multi-index `idx` in `shape`.
int64_t ravel(const Shape &idx, const Shape &shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d)
    flat = flat * shape[d] + idx[d];
  return flat;
}

/// Numpy broadcast of two shapes (aligned at the last dimension).
Shape broadcastShape(const Shape &a, const Shape &b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    out[i] = da == 1 ? db : da;
  }
  return out;
}

/// The position in a tensor of shape `in` that numpy broadcasting reads for
/// the output multi-index `outIdx`: dimensions are aligned at the end and a
/// dimension of size 1 is always read at index 0.
int64_t broadcastSource(const Shape &outIdx, const Shape &in) {
  size_t offset = outIdx.size() - in.size();
  int64_t flat = 0;
  for (size_t d = 0; d < in.size(); ++d)
    flat = flat * in[d] + (in[d] == 1 ? 0 : outIdx[offset + d]);
  return flat;
}

/// A zero-filled tensor.
RefTensor zeros(DType dtype, const Shape &shape) {
  return RefTensor{dtype, shape, std::vector<double>(numel(shape), 0.0)};
}

/// max/min that return NaN if either side is NaN (like arith.maximumf).
double nanMax(double a, double b) {
  return std::isnan(a) || std::isnan(b) ? kNaN : std::max(a, b);
}
double nanMin(double a, double b) {
  return std::isnan(a) || std::isnan(b) ? kNaN : std::min(a, b);
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

RefTensor unary(const RefTensor &x, const std::function<double(double)> &f) {
  RefTensor y = zeros(DType::f32, x.shape);
  for (size_t i = 0; i < x.data.size(); ++i)
    y.data[i] = f(x.data[i]);
  return y;
}

RefTensor binary(const RefTensor &a, const RefTensor &b,
                 const std::function<double(double, double)> &f) {
  RefTensor y = zeros(DType::f32, broadcastShape(a.shape, b.shape));
  for (size_t i = 0; i < y.data.size(); ++i) {
    Shape idx = unravel(i, y.shape);
    y.data[i] = f(a.data[broadcastSource(idx, a.shape)],
                  b.data[broadcastSource(idx, b.shape)]);
  }
  return y;
}

double relu(double x) {
  // NaN > 0 is false: keep NaN visible instead of turning it into 0.
  return std::isnan(x) ? x : (x > 0 ? x : 0.0);
}

double softplus(double x) {
  // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): no overflow for large x and
  // no loss of the tiny result for very negative x.
  return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));
}

//===----------------------------------------------------------------------===//
// Matmul and reductions
//===----------------------------------------------------------------------===//

/// op(a) x op(b) over equal leading batch dimensions.
RefTensor matmul(const RefTensor &a, const RefTensor &b, bool ta, bool tb) {
  size_t r = a.shape.size();
  int64_t ar = a.shape[r - 2], ac = a.shape[r - 1];
  int64_t br = b.shape[r - 2], bc = b.shape[r - 1];
  int64_t m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
  Shape shape(a.shape.begin(), a.shape.end() - 2);
  int64_t batch = numel(shape);
  shape.push_back(m);
  shape.push_back(n);
  RefTensor c = zeros(DType::f32, shape);
  for (int64_t t = 0; t < batch; ++t)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          double x = a.data[t * ar * ac + (ta ? p * ac + i : i * ac + p)];
          double y = b.data[t * br * bc + (tb ? j * bc + p : p * bc + j)];
          sum += x * y;
        }
        c.data[(t * m + i) * n + j] = sum;
      }
  return c;
}

enum class ReduceKind { sum, mean, max };

RefTensor reduce(const RefTensor &x, ArrayRef<int64_t> axes, bool keepdims,
                 ReduceKind kind) {
  // Accumulate into the keepdims shape, then drop the 1s if asked to.
  Shape kept = x.shape, dropped;
  int64_t count = 1;
  for (int64_t a : axes) {
    kept[a] = 1;
    count *= x.shape[a];
  }
  for (size_t d = 0; d < x.shape.size(); ++d)
    if (!llvm::is_contained(axes, static_cast<int64_t>(d)))
      dropped.push_back(x.shape[d]);
  RefTensor y = zeros(DType::f32, kept);
  if (kind == ReduceKind::max)
    std::fill(y.data.begin(), y.data.end(),
              -std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < x.data.size(); ++i) {
    Shape idx = unravel(i, x.shape);
    for (int64_t a : axes)
      idx[a] = 0;
    double &acc = y.data[ravel(idx, kept)];
    acc = kind == ReduceKind::max ? nanMax(acc, x.data[i]) : acc + x.data[i];
  }
  if (kind == ReduceKind::mean)
    for (double &v : y.data)
      v /= static_cast<double>(count);
  if (!keepdims)
    y.shape = dropped;
  return y;
}

//===----------------------------------------------------------------------===//
// Shape and data movement
//===----------------------------------------------------------------------===//

RefTensor transpose(const RefTensor &x, ArrayRef<int64_t> perm) {
  Shape shape;
  for (int64_t p : perm)
    shape.push_back(x.shape[p]);
  RefTensor y = zeros(x.dtype, shape);
  for (size_t o = 0; o < y.data.size(); ++o) {
    Shape outIdx = unravel(o, shape), inIdx(perm.size());
    for (size_t i = 0; i < perm.size(); ++i)
      inIdx[perm[i]] = outIdx[i];
    y.data[o] = x.data[ravel(inIdx, x.shape)];
  }
  return y;
}

RefTensor broadcastTo(const RefTensor &x, ArrayRef<int64_t> target) {
  RefTensor y = zeros(x.dtype, Shape(target.begin(), target.end()));
  for (size_t o = 0; o < y.data.size(); ++o)
    y.data[o] = x.data[broadcastSource(unravel(o, y.shape), x.shape)];
  return y;
}

RefTensor slice(const RefTensor &x, ArrayRef<int64_t> starts,
                ArrayRef<int64_t> limits, ArrayRef<int64_t> strides) {
  Shape shape;
  for (size_t d = 0; d < x.shape.size(); ++d)
    shape.push_back((limits[d] - starts[d] + strides[d] - 1) / strides[d]);
  RefTensor y = zeros(x.dtype, shape);
  for (size_t o = 0; o < y.data.size(); ++o) {
    Shape idx = unravel(o, shape);
    for (size_t d = 0; d < idx.size(); ++d)
      idx[d] = starts[d] + idx[d] * strides[d];
    y.data[o] = x.data[ravel(idx, x.shape)];
  }
  return y;
}

RefTensor concat(const std::vector<RefTensor> &xs, int64_t axis) {
  Shape shape = xs[0].shape;
  shape[axis] = 0;
  for (const RefTensor &x : xs)
    shape[axis] += x.shape[axis];
  RefTensor y = zeros(xs[0].dtype, shape);
  for (size_t o = 0; o < y.data.size(); ++o) {
    // Walk the inputs, shifting the axis coordinate into the one holding it.
    Shape idx = unravel(o, shape);
    size_t which = 0;
    while (idx[axis] >= xs[which].shape[axis])
      idx[axis] -= xs[which++].shape[axis];
    y.data[o] = xs[which].data[ravel(idx, xs[which].shape)];
  }
  return y;
}

RefTensor constant(ir::ConstantOp op) {
  auto [dtype, shape] = refTypeOf(op.getValue().getType());
  RefTensor t{dtype, shape, {}};
  ElementsAttr value = op.getValue();
  if (dtype == DType::f32) {
    if (auto values = value.tryGetValues<APFloat>())
      for (const APFloat &v : *values)
        t.data.push_back(v.convertToFloat());
  } else if (auto values = value.tryGetValues<APInt>()) {
    for (const APInt &v : *values)
      t.data.push_back(static_cast<double>(v.getSExtValue()));
  }
  if (static_cast<int64_t>(t.data.size()) != numel(shape))
    throw Error("interpreter: cannot read the value of soma.constant at " +
                locationString(op.getLoc()));
  return t;
}

//===----------------------------------------------------------------------===//
// Softmax family and losses
//===----------------------------------------------------------------------===//

/// Calls f(base, stride, n) once for every 1-D lane of `shape` along `axis`;
/// the lane's elements are at base + j * stride for j in [0, n).
void forEachLane(const Shape &shape, int64_t axis,
                 const std::function<void(int64_t, int64_t, int64_t)> &f) {
  int64_t outer = 1, inner = 1, n = shape[axis];
  for (int64_t d = 0; d < axis; ++d)
    outer *= shape[d];
  for (size_t d = axis + 1; d < shape.size(); ++d)
    inner *= shape[d];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i)
      f(o * n * inner + i, inner, n);
}

/// Softmax or log-softmax along `axis`, subtracting the lane maximum first
/// so that exp cannot overflow.
RefTensor softmax(const RefTensor &x, int64_t axis, bool logOutput) {
  RefTensor y = zeros(DType::f32, x.shape);
  forEachLane(x.shape, axis, [&](int64_t base, int64_t stride, int64_t n) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n; ++j)
      m = nanMax(m, x.data[base + j * stride]);
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j)
      sum += std::exp(x.data[base + j * stride] - m);
    for (int64_t j = 0; j < n; ++j) {
      double shifted = x.data[base + j * stride] - m;
      y.data[base + j * stride] =
          logOutput ? shifted - std::log(sum) : std::exp(shifted) / sum;
    }
  });
  return y;
}

/// The gradient of softmax (y (g - sum g y)) or log-softmax (g - e^y sum g)
/// along `axis` from its output y and the output's gradient g.
RefTensor softmaxGrad(const RefTensor &y, const RefTensor &g, int64_t axis, bool logOutput) {
  RefTensor dx = zeros(DType::f32, y.shape);
  forEachLane(y.shape, axis, [&](int64_t base, int64_t stride, int64_t n) {
    double s = 0.0;
    for (int64_t j = 0; j < n; ++j)
      s += g.data[base + j * stride] * (logOutput ? 1.0 : y.data[base + j * stride]);
    for (int64_t j = 0; j < n; ++j) {
      int64_t i = base + j * stride;
      dx.data[i] = logOutput ? g.data[i] - std::exp(y.data[i]) * s : y.data[i] * (g.data[i] - s);
    }
  });
  return dx;
}

RefTensor scalar(double v) { return RefTensor{DType::f32, {}, {v}}; }

/// Divides a summed loss by `count` for reduction "mean".
RefTensor reduceLoss(double sum, StringRef reduction, int64_t count) {
  return scalar(reduction == "sum" ? sum : sum / static_cast<double>(count));
}

RefTensor softmaxCrossEntropy(const RefTensor &logits, const RefTensor &labels,
                              StringRef reduction) {
  int64_t rows = logits.shape[0], classes = logits.shape[1];
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const double *x = &logits.data[r * classes];
    double label = labels.data[r];
    if (label < 0 || label >= static_cast<double>(classes)) {
      total += kNaN;
      continue;
    }
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < classes; ++c)
      m = nanMax(m, x[c]);
    double sum = 0.0;
    for (int64_t c = 0; c < classes; ++c)
      sum += std::exp(x[c] - m);
    total += m + std::log(sum) - x[static_cast<int64_t>(label)];
  }
  return reduceLoss(total, reduction, rows);
}

RefTensor mse(const RefTensor &p, const RefTensor &t, StringRef reduction) {
  double total = 0.0;
  for (size_t i = 0; i < p.data.size(); ++i)
    total += (p.data[i] - t.data[i]) * (p.data[i] - t.data[i]);
  return reduceLoss(total, reduction, static_cast<int64_t>(p.data.size()));
}

RefTensor binaryCrossEntropy(const RefTensor &p, const RefTensor &t,
                             StringRef reduction) {
  // Clamping each log at -100 (as PyTorch does) keeps p = 0 or 1 finite and
  // avoids 0 * -inf = NaN. std::max(NaN, -100) is NaN, so p < 0 stays NaN.
  double total = 0.0;
  for (size_t i = 0; i < p.data.size(); ++i) {
    double lp = std::max(std::log(p.data[i]), -100.0);
    double lq = std::max(std::log(1.0 - p.data[i]), -100.0);
    total += -(t.data[i] * lp + (1.0 - t.data[i]) * lq);
  }
  return reduceLoss(total, reduction, static_cast<int64_t>(p.data.size()));
}


//===----------------------------------------------------------------------===//
// Gradient helpers and non-differentiable ops
//===----------------------------------------------------------------------===//

/// Elementwise comparison with broadcasting; 1.0 where equal (the result is
/// f32 whatever the operands' dtype).
RefTensor equal(const RefTensor &a, const RefTensor &b) {
  return binary(a, b, [](double x, double y) { return x == y ? 1.0 : 0.0; });
}

/// Index of the first maximum along `axis` (a NaN counts as the maximum).
RefTensor argmax(const RefTensor &x, int64_t axis) {
  Shape shape;
  for (size_t d = 0; d < x.shape.size(); ++d)
    if (static_cast<int64_t>(d) != axis)
      shape.push_back(x.shape[d]);
  RefTensor y = zeros(DType::i32, shape);
  size_t k = 0;
  forEachLane(x.shape, axis, [&](int64_t base, int64_t stride, int64_t n) {
    int64_t best = 0;
    for (int64_t j = 1; j < n; ++j) {
      double v = x.data[base + j * stride], b = x.data[base + best * stride];
      if (std::isnan(b))
        break;
      if (std::isnan(v) || v > b)
        best = j;
    }
    y.data[k++] = static_cast<double>(best);
  });
  // forEachLane visits lanes in row-major order of the remaining dims.
  return y;
}

RefTensor pad(const RefTensor &x, ArrayRef<int64_t> low, ArrayRef<int64_t> high,
              ArrayRef<int64_t> interior, double value) {
  Shape shape;
  for (size_t d = 0; d < x.shape.size(); ++d)
    shape.push_back(low[d] + x.shape[d] + (x.shape[d] - 1) * interior[d] + high[d]);
  RefTensor y = zeros(DType::f32, shape);
  std::fill(y.data.begin(), y.data.end(), value);
  for (size_t i = 0; i < x.data.size(); ++i) {
    Shape idx = unravel(static_cast<int64_t>(i), x.shape);
    for (size_t d = 0; d < idx.size(); ++d)
      idx[d] = low[d] + idx[d] * (interior[d] + 1);
    y.data[ravel(idx, shape)] = x.data[i];
  }
  return y;
}

/// g * (softmax(x) - onehot(labels)) / N (mean) for the fused CE backward.
RefTensor softmaxCrossEntropyGrad(const RefTensor &logits, const RefTensor &labels,
                                  const RefTensor &g, StringRef reduction) {
  int64_t rows = logits.shape[0], classes = logits.shape[1];
  RefTensor p = softmax(logits, 1, false);
  double scale = g.data[0] / (reduction == "sum" ? 1.0 : static_cast<double>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double label = labels.data[r];
    bool ok = label >= 0 && label < static_cast<double>(classes);
    for (int64_t c = 0; c < classes; ++c) {
      double &v = p.data[r * classes + c];
      v = ok ? (v - (c == static_cast<int64_t>(label) ? 1.0 : 0.0)) * scale : kNaN;
    }
  }
  return p;
}


//===----------------------------------------------------------------------===//
// Convolution and pooling, straight from their definitions
//===----------------------------------------------------------------------===//

/// Output size of a window sweep along one dimension.
int64_t windowOut(int64_t n, int64_t k, int64_t s, int64_t padLo, int64_t padHi, int64_t d) {
  return (n + padLo + padHi - d * (k - 1) - 1) / s + 1;
}

/// y[n,k,i,j] = sum_{c,u,v} x[n, g*Cg + c, i*sh - pt + u*dh, j*sw - pl + v*dw] w[k,c,u,v]
RefTensor conv2d(const RefTensor &x, const RefTensor &w, ArrayRef<int64_t> st, ArrayRef<int64_t> pad,
                 ArrayRef<int64_t> dil, int64_t groups) {
  int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  int64_t K = w.shape[0], Cg = w.shape[1], KH = w.shape[2], KW = w.shape[3];
  int64_t OH = windowOut(H, KH, st[0], pad[0], pad[2], dil[0]);
  int64_t OW = windowOut(W, KW, st[1], pad[1], pad[3], dil[1]);
  int64_t Kg = K / groups;
  RefTensor y = zeros(DType::f32, {N, K, OH, OW});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double acc = 0.0;
          int64_t g = k / Kg;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t u = 0; u < KH; ++u)
              for (int64_t v = 0; v < KW; ++v) {
                int64_t h = i * st[0] - pad[0] + u * dil[0], ww = j * st[1] - pad[1] + v * dil[1];
                if (h < 0 || h >= H || ww < 0 || ww >= W)
                  continue;
                acc += x.data[((n * C + g * Cg + c) * H + h) * W + ww] *
                       w.data[((k * Cg + c) * KH + u) * KW + v];
              }
          y.data[((n * K + k) * OH + i) * OW + j] = acc;
        }
  return y;
}

/// Max (padding never wins) or mean (padding counts as 0) over each window.
RefTensor pool2d(const RefTensor &x, ArrayRef<int64_t> k, ArrayRef<int64_t> st, ArrayRef<int64_t> pad,
                 bool isMax) {
  int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  int64_t OH = windowOut(H, k[0], st[0], pad[0], pad[2], 1), OW = windowOut(W, k[1], st[1], pad[1], pad[3], 1);
  RefTensor y = zeros(DType::f32, {N, C, OH, OW});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double acc = isMax ? -std::numeric_limits<double>::infinity() : 0.0;
          for (int64_t u = 0; u < k[0]; ++u)
            for (int64_t v = 0; v < k[1]; ++v) {
              int64_t h = i * st[0] - pad[0] + u, w = j * st[1] - pad[1] + v;
              if (h < 0 || h >= H || w < 0 || w >= W)
                continue;
              double e = x.data[((n * C + c) * H + h) * W + w];
              acc = isMax ? nanMax(acc, e) : acc + e;
            }
          y.data[((n * C + c) * OH + i) * OW + j] = isMax ? acc : acc / static_cast<double>(k[0] * k[1]);
        }
  return y;
}

/// max_pool2d's gradient for windows that tile the input: each window's
/// dy to the elements equal to its maximum y, split evenly among them.
RefTensor maxPool2dGrad(const RefTensor &x, const RefTensor &y, const RefTensor &dy, ArrayRef<int64_t> k,
                        bool relu) {
  int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], OH = H / k[0], OW = W / k[1];
  RefTensor dx = zeros(DType::f32, x.shape);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          int64_t o = ((n * C + c) * OH + i) * OW + j;
          auto at = [&](int64_t u, int64_t v) { return ((n * C + c) * H + i * k[0] + u) * W + j * k[1] + v; };
          double count = 0.0;
          for (int64_t u = 0; u < k[0]; ++u)
            for (int64_t v = 0; v < k[1]; ++v)
              count += x.data[at(u, v)] == y.data[o] ? 1.0 : 0.0;
          for (int64_t u = 0; u < k[0]; ++u)
            for (int64_t v = 0; v < k[1]; ++v)
              dx.data[at(u, v)] = (x.data[at(u, v)] == y.data[o] ? 1.0 : 0.0) * (dy.data[o] / count) *
                                  (relu ? (x.data[at(u, v)] > 0.0 ? 1.0 : 0.0) : 1.0);
        }
  return dx;
}

/// dx[n, c, h, w] = dy[n, c, h / KH, w / KW] / (KH * KW): each window's
/// share on each of its elements (windows that tile the input).
RefTensor avgPool2dGrad(const RefTensor &dy, ArrayRef<int64_t> k) {
  int64_t N = dy.shape[0], C = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3], H = OH * k[0], W = OW * k[1];
  RefTensor dx = zeros(DType::f32, {N, C, H, W});
  for (int64_t p = 0; p < N * C; ++p)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w)
        dx.data[(p * H + h) * W + w] = dy.data[(p * OH + h / k[0]) * OW + w / k[1]] / double(k[0] * k[1]);
  return dx;
}

/// Calls f(c, i) for every element i of x [N, C, ...] in channel c.
template <class F>
void forEachInChannel(const Shape &shape, F f) {
  int64_t N = shape[0], C = shape[1], S = 1;
  for (size_t d = 2; d < shape.size(); ++d)
    S *= shape[d];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s)
        f(c, (n * C + c) * S + s);
}

/// The training form of batch normalisation: y = (x - mean) * (scale /
/// sqrt(var + eps)) + shift with the batch's mean and biased variance per
/// channel, and those two.
std::vector<RefTensor> batchNormTrain(const RefTensor &x, const RefTensor &scale, const RefTensor &shift,
                                      double eps) {
  int64_t C = x.shape[1];
  double M = static_cast<double>(x.data.size()) / static_cast<double>(C);
  RefTensor y = zeros(DType::f32, x.shape), mean = zeros(DType::f32, {C}), var = zeros(DType::f32, {C});
  forEachInChannel(x.shape, [&](int64_t c, int64_t i) { mean.data[c] += x.data[i] / M; });
  forEachInChannel(x.shape, [&](int64_t c, int64_t i) {
    double d = x.data[i] - mean.data[c];
    var.data[c] += d * d / M;
  });
  forEachInChannel(x.shape, [&](int64_t c, int64_t i) {
    y.data[i] = (x.data[i] - mean.data[c]) * (scale.data[c] / std::sqrt(var.data[c] + eps)) + shift.data[c];
  });
  return {y, mean, var};
}

/// batch_norm_train's gradients: dx, dscale, dshift (see SomaOps.td).
std::vector<RefTensor> batchNormGrad(const RefTensor &x, const RefTensor &dy, const RefTensor &mean,
                                     const RefTensor &var, const RefTensor &scale, double eps) {
  int64_t C = x.shape[1];
  double M = static_cast<double>(x.data.size()) / static_cast<double>(C);
  RefTensor dx = zeros(DType::f32, x.shape), dscale = zeros(DType::f32, {C}), dshift = zeros(DType::f32, {C});
  std::vector<double> sdyd(C, 0.0);
  forEachInChannel(x.shape, [&](int64_t c, int64_t i) {
    dshift.data[c] += dy.data[i];
    sdyd[c] += dy.data[i] * (x.data[i] - mean.data[c]);
  });
  forEachInChannel(x.shape, [&](int64_t c, int64_t i) {
    double r = 1.0 / std::sqrt(var.data[c] + eps);
    dx.data[i] = scale.data[c] * r *
                 (dy.data[i] - dshift.data[c] / M - (x.data[i] - mean.data[c]) * r * r * sdyd[c] / M);
  });
  for (int64_t c = 0; c < C; ++c)
    dscale.data[c] = sdyd[c] / std::sqrt(var.data[c] + eps);
  return {dx, dscale, dshift};
}

/// Visits every (column entry, pixel) pair of im2col over an image of shape
/// [N, C, H, W]: f(col, pixel) with col the flat index into the [C*KH*KW,
/// N*OH*OW] columns and pixel the flat index into the image, or -1 where the
/// window reads padding.
template <class F>
void forEachWindowTap(ArrayRef<int64_t> image, ArrayRef<int64_t> k, ArrayRef<int64_t> st,
                      ArrayRef<int64_t> pad, ArrayRef<int64_t> dil, F f) {
  int64_t N = image[0], C = image[1], H = image[2], W = image[3];
  int64_t OH = windowOut(H, k[0], st[0], pad[0], pad[2], dil[0]);
  int64_t OW = windowOut(W, k[1], st[1], pad[1], pad[3], dil[1]);
  int64_t P = N * OH * OW;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t u = 0; u < k[0]; ++u)
      for (int64_t v = 0; v < k[1]; ++v)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < OH; ++i)
            for (int64_t j = 0; j < OW; ++j) {
              int64_t h = i * st[0] - pad[0] + u * dil[0], w = j * st[1] - pad[1] + v * dil[1];
              bool in = h >= 0 && h < H && w >= 0 && w < W;
              f(((c * k[0] + u) * k[1] + v) * P + (n * OH + i) * OW + j,
                in ? ((n * C + c) * H + h) * W + w : int64_t(-1));
            }
}

/// cols[(c,u,v), (n,i,j)] = x[n, c, i*sh - pt + u*dh, j*sw - pl + v*dw] or pad.
RefTensor im2col(const RefTensor &x, ArrayRef<int64_t> k, ArrayRef<int64_t> st, ArrayRef<int64_t> pad,
                 ArrayRef<int64_t> dil, double padValue) {
  int64_t OH = windowOut(x.shape[2], k[0], st[0], pad[0], pad[2], dil[0]);
  int64_t OW = windowOut(x.shape[3], k[1], st[1], pad[1], pad[3], dil[1]);
  RefTensor cols = zeros(DType::f32, {x.shape[1] * k[0] * k[1], x.shape[0] * OH * OW});
  forEachWindowTap(x.shape, k, st, pad, dil, [&](int64_t col, int64_t pixel) {
    cols.data[col] = pixel >= 0 ? x.data[pixel] : padValue;
  });
  return cols;
}

/// The adjoint of im2col: every column entry is added back to its pixel.
RefTensor col2im(const RefTensor &cols, ArrayRef<int64_t> image, ArrayRef<int64_t> k, ArrayRef<int64_t> st,
                 ArrayRef<int64_t> pad, ArrayRef<int64_t> dil) {
  RefTensor x = zeros(DType::f32, Shape(image.begin(), image.end()));
  forEachWindowTap(image, k, st, pad, dil, [&](int64_t col, int64_t pixel) {
    if (pixel >= 0)
      x.data[pixel] += cols.data[col];
  });
  return x;
}

//===----------------------------------------------------------------------===//
// Dispatch
//===----------------------------------------------------------------------===//

using Operands = std::vector<RefTensor>;

[[noreturn]] void throwUnsupported(Operation *op) {
  std::string where = locationString(op->getLoc());
  throw Error("interpreter: unsupported op '" +
              op->getName().getStringRef().str() + "'" +
              (where.empty() ? "" : " at " + where));
}

/// Evaluates the single-result op `op`.
RefTensor evaluate(Operation *op, const Operands &in) {
  using namespace ir;
  auto un = [&](double (*f)(double)) { return unary(in[0], f); };
  auto bin = [&](double (*f)(double, double)) {
    return binary(in[0], in[1], f);
  };
  return llvm::TypeSwitch<Operation *, RefTensor>(op)
      .Case([&](NegOp) { return un([](double x) { return -x; }); })
      .Case([&](ExpOp) { return un([](double x) { return std::exp(x); }); })
      .Case([&](LogOp) { return un([](double x) { return std::log(x); }); })
      .Case([&](SqrtOp) { return un([](double x) { return std::sqrt(x); }); })
      .Case([&](AbsOp) { return un([](double x) { return std::abs(x); }); })
      .Case([&](TanhOp) { return un([](double x) { return std::tanh(x); }); })
      .Case([&](SigmoidOp) {
        return un([](double x) { return 1.0 / (1.0 + std::exp(-x)); });
      })
      .Case([&](ReluOp) { return un(relu); })
      .Case([&](SoftplusOp) { return un(softplus); })
      .Case([&](LeakyReluOp o) {
        double alpha = o.getAlpha().convertToDouble();
        return unary(in[0], [=](double x) { return x > 0 ? x : alpha * x; });
      })
      .Case(
          [&](AddOp) { return bin([](double a, double b) { return a + b; }); })
      .Case(
          [&](SubOp) { return bin([](double a, double b) { return a - b; }); })
      .Case(
          [&](MulOp) { return bin([](double a, double b) { return a * b; }); })
      .Case(
          [&](DivOp) { return bin([](double a, double b) { return a / b; }); })
      .Case([&](PowOp) {
        return bin([](double a, double b) { return std::pow(a, b); });
      })
      .Case([&](MaximumOp) { return bin(nanMax); })
      .Case([&](MinimumOp) { return bin(nanMin); })
      .Case([&](MatmulOp o) {
        return matmul(in[0], in[1], o.getTransposeA(), o.getTransposeB());
      })
      .Case([&](ReduceSumOp o) {
        return reduce(in[0], o.getAxes(), o.getKeepdims(), ReduceKind::sum);
      })
      .Case([&](ReduceMeanOp o) {
        return reduce(in[0], o.getAxes(), o.getKeepdims(), ReduceKind::mean);
      })
      .Case([&](ReduceMaxOp o) {
        return reduce(in[0], o.getAxes(), o.getKeepdims(), ReduceKind::max);
      })
      .Case([&](ReshapeOp o) {
        RefTensor y = in[0];
        y.shape.assign(o.getShape().begin(), o.getShape().end());
        return y;
      })
      .Case([&](TransposeOp o) { return transpose(in[0], o.getPerm()); })
      .Case([&](BroadcastToOp o) { return broadcastTo(in[0], o.getShape()); })
      .Case([&](SliceOp o) {
        return slice(in[0], o.getStarts(), o.getLimits(), o.getStrides());
      })
      .Case([&](ConcatOp o) {
        return concat(in, static_cast<int64_t>(o.getAxis()));
      })
      .Case([&](ConstantOp o) { return constant(o); })
      .Case([&](SoftmaxOp o) {
        return softmax(in[0], static_cast<int64_t>(o.getAxis()), false);
      })
      .Case([&](LogSoftmaxOp o) {
        return softmax(in[0], static_cast<int64_t>(o.getAxis()), true);
      })
      .Case([&](SoftmaxCrossEntropyOp o) {
        return softmaxCrossEntropy(in[0], in[1], o.getReduction());
      })
      .Case([&](SoftmaxGradOp o) { return softmaxGrad(in[0], in[1], static_cast<int64_t>(o.getAxis()), false); })
      .Case([&](LogSoftmaxGradOp o) {
        return softmaxGrad(in[0], in[1], static_cast<int64_t>(o.getAxis()), true);
      })
      .Case([&](MseOp o) { return mse(in[0], in[1], o.getReduction()); })
      .Case([&](BinaryCrossEntropyOp o) {
        return binaryCrossEntropy(in[0], in[1], o.getReduction());
      })
      .Case([&](StopGradientOp) { return in[0]; })
      .Case([&](SiluOp) { return un([](double x) { return x / (1.0 + std::exp(-x)); }); })
      .Case([&](GeluOp) { return un([](double x) { return 0.5 * x * (1.0 + std::erf(x * M_SQRT1_2)); }); })
      .Case([&](GeluGradOp) {
        return un([](double x) {
          return 0.5 * (1.0 + std::erf(x * M_SQRT1_2)) + x * std::exp(-0.5 * x * x) * 0.3989422804014327;
        });
      })
      .Case([&](EluOp o) {
        double alpha = o.getAlpha().convertToDouble();
        RefTensor y = zeros(DType::f32, in[0].shape);
        for (size_t i = 0; i < y.data.size(); ++i)
          y.data[i] = in[0].data[i] > 0 ? in[0].data[i] : alpha * std::expm1(in[0].data[i]);
        return y;
      })
      .Case([&](OneHotOp o) {
        int64_t n = in[0].shape[0], c = o.getClasses();
        RefTensor y = zeros(DType::f32, {n, c});
        for (int64_t i = 0; i < n; ++i)
          if (in[0].data[i] >= 0 && in[0].data[i] < static_cast<double>(c))
            y.data[i * c + static_cast<int64_t>(in[0].data[i])] = 1.0;
        return y;
      })
      .Case([&](SignOp) {
        return un([](double x) { return std::isnan(x) ? x : (x > 0) - (x < 0) * 1.0; });
      })
      .Case([&](RandomUniformOp o) {
        RefTensor y = zeros(DType::f32, Shape(o.getShape().begin(), o.getShape().end()));
        auto seed = static_cast<uint64_t>(o.getSeed());
        const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
        auto step = static_cast<uint32_t>(static_cast<float>(in[0].data[0]));
        for (size_t i = 0; i < y.data.size(); ++i) {
          const uint32_t counter[4] = {static_cast<uint32_t>(i), step, ir::kRandomUniformTag, 0};
          uint32_t w[4];
          soma::detail::philox4x32_10(key, counter, w);
          y.data[i] = static_cast<double>(w[0] >> 8) * 0x1p-24;
        }
        return y;
      })
      .Case([&](DropoutOp) { return in[0]; }) // the eval form: a no-op
      .Case([&](StepOp) { return un([](double x) { return x > 0 ? 1.0 : 0.0; }); })
      .Case([&](EqualOp) { return equal(in[0], in[1]); })
      .Case([&](ArgmaxOp o) { return argmax(in[0], static_cast<int64_t>(o.getAxis())); })
      .Case([&](PadOp o) {
        return pad(in[0], o.getLow(), o.getHigh(), o.getInterior(),
                   o.getValue().convertToDouble());
      })
      .Case([&](SoftmaxCrossEntropyGradOp o) {
        return softmaxCrossEntropyGrad(in[0], in[1], in[2], o.getReduction());
      })
      .Case([&](Conv2dOp o) {
        return conv2d(in[0], in[1], o.getStride(), o.getPadding(), o.getDilation(), o.getGroups());
      })
      .Case([&](MaxPool2dOp o) { return pool2d(in[0], o.getKernel(), o.getStride(), o.getPadding(), true); })
      .Case([&](AvgPool2dOp o) { return pool2d(in[0], o.getKernel(), o.getStride(), o.getPadding(), false); })
      .Case([&](MaxPool2dGradOp o) { return maxPool2dGrad(in[0], in[1], in[2], o.getKernel(), o.getRelu()); })
      .Case([&](AvgPool2dGradOp o) { return avgPool2dGrad(in[0], o.getKernel()); })
      .Case([&](Im2colOp o) {
        return im2col(in[0], o.getKernel(), o.getStride(), o.getPadding(), o.getDilation(),
                      o.getPadValue().convertToDouble());
      })
      .Case([&](Col2imOp o) {
        return col2im(in[0], o.getImageShape(), o.getKernel(), o.getStride(), o.getPadding(), o.getDilation());
      })
      .Case([&](BatchNormOp o) {
        // The inference form: running statistics.
        RefTensor y = zeros(DType::f32, in[0].shape);
        int64_t c = in[0].shape[1], inner = 1;
        for (size_t d = 2; d < in[0].shape.size(); ++d)
          inner *= in[0].shape[d];
        double eps = o.getEps().convertToDouble();
        for (size_t i = 0; i < y.data.size(); ++i) {
          int64_t ch = (static_cast<int64_t>(i) / inner) % c;
          y.data[i] = (in[0].data[i] - in[3].data[ch]) / std::sqrt(in[4].data[ch] + eps) * in[1].data[ch] +
                      in[2].data[ch];
        }
        return y;
      })
      .Default([&](Operation *) -> RefTensor { throwUnsupported(op); });
}

/// "soma.add" for messages.
std::string opName(Operation *op) { return op->getName().getStringRef().str(); }

/// How argument `i` of a graph function is called in messages:
/// "input 'x'", "parameter 'w'" or "argument 2".
std::string argumentName(func::FuncOp fn, unsigned i) {
  if (auto name = fn.getArgAttrOfType<StringAttr>(i, ir::kInputAttr))
    return "input '" + name.str() + "'";
  if (auto name = fn.getArgAttrOfType<StringAttr>(i, ir::kParamAttr))
    return "parameter '" + name.str() + "'";
  return "argument " + std::to_string(i);
}

} // namespace

//===----------------------------------------------------------------------===//
// Public API
//===----------------------------------------------------------------------===//

RefTensor toRef(const Array &a) {
  RefTensor t{a.dtype(), a.shape(), std::vector<double>(a.numel())};
  if (a.numel() > 0 && a.empty())
    throw Error("interpreter: array of shape " + shape_str(a.shape()) +
                " has no storage");
  for (int64_t i = 0; i < a.numel(); ++i) {
    switch (a.dtype()) {
    case DType::f32:
      t.data[i] = a.data<float>()[i];
      break;
    case DType::i32:
      t.data[i] = a.data<int32_t>()[i];
      break;
    case DType::i64:
      t.data[i] = static_cast<double>(a.data<int64_t>()[i]);
      break;
    }
  }
  return t;
}

Array fromRef(const RefTensor &t) {
  if (static_cast<int64_t>(t.data.size()) != numel(t.shape))
    throw Error("interpreter: tensor holds " + std::to_string(t.data.size()) +
                " values for shape " + shape_str(t.shape));
  Array a(t.dtype, t.shape);
  for (size_t i = 0; i < t.data.size(); ++i) {
    switch (t.dtype) {
    case DType::f32:
      a.data<float>()[i] = static_cast<float>(t.data[i]);
      break;
    case DType::i32:
      a.data<int32_t>()[i] = static_cast<int32_t>(t.data[i]);
      break;
    case DType::i64:
      a.data<int64_t>()[i] = static_cast<int64_t>(t.data[i]);
      break;
    }
  }
  return a;
}

std::vector<RefTensor> interpretOp(Operation *op, const Operands &operands) {
  // Before the operand checks, which would misreport non-tensor operands.
  if (!isa_and_nonnull<ir::SomaDialect>(op->getDialect()))
    throwUnsupported(op);
  if (operands.size() != op->getNumOperands())
    throw Error("interpreter: " + opName(op) + " takes " +
                std::to_string(op->getNumOperands()) + " operands, got " +
                std::to_string(operands.size()));
  for (unsigned i = 0; i < operands.size(); ++i)
    checkMatches("interpreter: " + opName(op) + " operand " + std::to_string(i),
                 op->getOperand(i).getType(), operands[i]);
  if (auto fusion = dyn_cast<ir::FusionOp>(op)) {
    // The ops of the group, one after the other, as before fusion.
    Block &body = fusion.getBody().front();
    llvm::DenseMap<Value, RefTensor> values;
    for (unsigned i = 0; i < operands.size(); ++i)
      values[body.getArgument(i)] = operands[i];
    for (Operation &inner : body) {
      Operands ins;
      for (Value v : inner.getOperands())
        ins.push_back(values.at(v));
      if (isa<ir::YieldOp>(inner))
        return ins;
      std::vector<RefTensor> results = interpretOp(&inner, ins);
      values[inner.getResult(0)] = std::move(results[0]);
    }
    throw Error("interpreter: soma.fusion without soma.yield");
  }
  std::vector<RefTensor> results;
  if (auto bn = dyn_cast<ir::BatchNormTrainOp>(op))
    results = batchNormTrain(operands[0], operands[1], operands[2], bn.getEps().convertToDouble());
  else if (auto bn = dyn_cast<ir::BatchNormGradOp>(op))
    results = batchNormGrad(operands[0], operands[1], operands[2], operands[3], operands[4],
                            bn.getEps().convertToDouble());
  else
    results.push_back(evaluate(op, operands));
  // The shape rule of SomaOps.cpp and the kernels here were written
  // separately; disagreeing is a bug in one of them.
  if (op->getNumResults() != results.size())
    throw Error("interpreter: " + opName(op) + " must have " + std::to_string(results.size()) + " results");
  for (size_t j = 0; j < results.size(); ++j)
    checkMatches("interpreter: internal error: result of " + opName(op) + " at " +
                     locationString(op->getLoc()),
                 op->getResult(j).getType(), results[j]);
  return results;
}

std::vector<RefTensor> interpretFunction(func::FuncOp fn,
                                         const std::vector<RefTensor> &args) {
  if (args.size() != fn.getNumArguments())
    throw Error("interpreter: function '" + fn.getSymName().str() + "' has " +
                std::to_string(fn.getNumArguments()) + " arguments, given " +
                std::to_string(args.size()));
  llvm::DenseMap<Value, RefTensor> values;
  for (unsigned i = 0; i < args.size(); ++i) {
    checkMatches(argumentName(fn, i), fn.getArgument(i).getType(), args[i]);
    values[fn.getArgument(i)] = args[i];
  }
  for (Operation &op : fn.getBody().front()) {
    Operands operands;
    for (Value v : op.getOperands())
      operands.push_back(values.at(v));
    if (isa<func::ReturnOp>(op))
      return operands;
    std::vector<RefTensor> results = interpretOp(&op, operands);
    for (unsigned j = 0; j < results.size(); ++j)
      values[op.getResult(j)] = std::move(results[j]);
  }
  throw Error("interpreter: function '" + fn.getSymName().str() +
              "' has no return");
}

std::map<std::string, RefTensor>
interpretByName(func::FuncOp fn, const std::map<std::string, RefTensor> &byName) {
  std::vector<RefTensor> args;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    auto [dtype, shape] = refTypeOf(fn.getArgument(i).getType());
    const char *role = "input";
    StringAttr name = fn.getArgAttrOfType<StringAttr>(i, ir::kInputAttr);
    if (!name) {
      role = "parameter";
      name = fn.getArgAttrOfType<StringAttr>(i, ir::kParamAttr);
    }
    if (!name)
      throw Error("argument " + std::to_string(i) + " of graph '" + fn.getSymName().str() +
                  "' is marked neither soma.input nor soma.param");
    auto it = byName.find(name.str());
    if (it == byName.end())
      throw Error(std::string(role) + " '" + name.str() + "' (" + typeString(dtype, shape) + ") is missing");
    args.push_back(it->second);
  }
  std::vector<RefTensor> results = interpretFunction(fn, args);
  std::map<std::string, RefTensor> outputs;
  for (unsigned j = 0; j < results.size(); ++j) {
    auto name = fn.getResultAttrOfType<StringAttr>(j, ir::kOutputAttr);
    outputs.emplace(name ? name.str() : "output" + std::to_string(j), results[j]);
  }
  return outputs;
}

std::map<std::string, Array>
interpret(const Graph &g, const std::map<std::string, Array> &inputs,
          const NamedArrays *params) {
  func::FuncOp fn = g.impl()->func;
  NamedArrays defaults;
  if (!params) {
    defaults = g.init_params();
    params = &defaults;
  }
  std::map<std::string, RefTensor> byName;
  for (const auto &[name, a] : inputs)
    byName[name] = toRef(a);
  for (const auto &[name, a] : *params)
    byName[name] = toRef(a);
  std::set<std::string> inputNames, paramNames;
  for (const TensorSpec &s : g.inputs())
    inputNames.insert(s.name);
  for (const ParamInfo &p : g.params())
    paramNames.insert(p.name);
  for (const auto &given : inputs)
    if (!inputNames.count(given.first))
      throw Error("'" + given.first + "' is not an input of the graph '" + g.name() + "'");
  for (const auto &given : *params)
    if (!paramNames.count(given.first))
      throw Error("'" + given.first + "' is not a parameter of the graph '" + g.name() + "'");
  std::map<std::string, Array> outputs;
  for (auto &[name, t] : interpretByName(fn, byName))
    outputs.emplace(name, fromRef(t));
  return outputs;
}

} // namespace soma
