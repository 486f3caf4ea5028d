//===- Ops.cpp - The builder DSL's operations --------------------------------===//
//
// Each function normalises its arguments (negative axes, -1 in shapes),
// then hands the op to buildOp, whose type inference is the op's own
// (SomaOps.cpp), so the DSL and the .mlir parser report the same errors.
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/GraphImpl.h"
#include "soma/Dialect/SomaDialect.h"
#include "soma/nn.h"
#include "soma/ops.h"
#include "soma/random.h"

#include "mlir/IR/BuiltinAttributes.h"

using namespace mlir;

namespace soma {

Type elementType(MLIRContext *ctx, DType dt); // Graph.cpp

namespace {

GraphImpl *graphOf(std::initializer_list<const Tensor *> ts, const char *op,
                   const Loc &loc) {
  GraphImpl *g = nullptr;
  for (const Tensor *t : ts) {
    if (!t->valid())
      throw Error(where(loc) + ": " + op + ": operand is an empty Tensor");
    if (g && t->impl() != g)
      throw Error(where(loc) + ": " + op + ": operands belong to different graphs ('" +
                  g->name + "' and '" + t->impl()->name + "')");
    g = t->impl();
  }
  return g;
}

Tensor unary(const char *op, const Tensor &x, const Loc &loc,
             ArrayRef<NamedAttribute> attrs = {}) {
  GraphImpl *g = graphOf({&x}, op, loc);
  return buildOp(g, std::string("soma.") + op, {g->value(x)}, attrs, loc);
}

Tensor binary(const char *op, const Tensor &a, const Tensor &b, const Loc &loc) {
  GraphImpl *g = graphOf({&a, &b}, op, loc);
  return buildOp(g, std::string("soma.") + op, {g->value(a), g->value(b)}, {}, loc);
}

int64_t normAxis(int64_t axis, int64_t rank, const char *op, const Loc &loc) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    throw Error(where(loc) + ": " + op + ": axis " + std::to_string(axis) +
                " is out of range for rank " + std::to_string(rank));
  return a;
}

Tensor reduce(const char *op, const Tensor &x, const Axes &axes, bool keepdims,
              const Loc &loc) {
  GraphImpl *g = graphOf({&x}, op, loc);
  int64_t rank = x.rank();
  SmallVector<int64_t> norm;
  if (axes.empty())
    for (int64_t i = 0; i < rank; ++i)
      norm.push_back(i);
  for (int64_t a : axes)
    norm.push_back(normAxis(a, rank, op, loc));
  llvm::sort(norm);
  Builder b(g->ctx.get());
  if (rank == 0) // reducing a scalar is the identity
    return x;
  return buildOp(g, std::string("soma.") + op, {g->value(x)},
                 {b.getNamedAttr("axes", b.getDenseI64ArrayAttr(norm)),
                  b.getNamedAttr("keepdims", b.getBoolAttr(keepdims))},
                 loc);
}

const char *reductionName(Reduction r) { return r == Reduction::mean ? "mean" : "sum"; }

} // namespace

// --- elementwise ---------------------------------------------------------------
Tensor add(const Tensor &a, const Tensor &b, Loc loc) { return binary("add", a, b, loc); }
Tensor sub(const Tensor &a, const Tensor &b, Loc loc) { return binary("sub", a, b, loc); }
Tensor mul(const Tensor &a, const Tensor &b, Loc loc) { return binary("mul", a, b, loc); }
Tensor div(const Tensor &a, const Tensor &b, Loc loc) { return binary("div", a, b, loc); }
Tensor pow(const Tensor &a, const Tensor &b, Loc loc) { return binary("pow", a, b, loc); }
Tensor maximum(const Tensor &a, const Tensor &b, Loc loc) { return binary("maximum", a, b, loc); }
Tensor minimum(const Tensor &a, const Tensor &b, Loc loc) { return binary("minimum", a, b, loc); }

Tensor operator+(LocatedTensor a, const Tensor &b) { return add(a.t, b, a.loc); }
Tensor operator-(LocatedTensor a, const Tensor &b) { return sub(a.t, b, a.loc); }
Tensor operator*(LocatedTensor a, const Tensor &b) { return mul(a.t, b, a.loc); }
Tensor operator/(LocatedTensor a, const Tensor &b) { return div(a.t, b, a.loc); }
Tensor operator-(LocatedTensor a) { return neg(a.t, a.loc); }
static Tensor scalarLike(const LocatedTensor &a, float v) {
  graphOf({&a.t}, "scalar", a.loc);
  return scalar(a.t.graph(), v, a.loc);
}
Tensor operator+(LocatedTensor a, float b) { return add(a.t, scalarLike(a, b), a.loc); }
Tensor operator-(LocatedTensor a, float b) { return sub(a.t, scalarLike(a, b), a.loc); }
Tensor operator*(LocatedTensor a, float b) { return mul(a.t, scalarLike(a, b), a.loc); }
Tensor operator/(LocatedTensor a, float b) { return div(a.t, scalarLike(a, b), a.loc); }
Tensor operator*(float a, LocatedTensor b) { return mul(scalarLike(b, a), b.t, b.loc); }

Tensor neg(const Tensor &x, Loc loc) { return unary("neg", x, loc); }
Tensor exp(const Tensor &x, Loc loc) { return unary("exp", x, loc); }
Tensor log(const Tensor &x, Loc loc) { return unary("log", x, loc); }
Tensor sqrt(const Tensor &x, Loc loc) { return unary("sqrt", x, loc); }
Tensor abs(const Tensor &x, Loc loc) { return unary("abs", x, loc); }
Tensor tanh(const Tensor &x, Loc loc) { return unary("tanh", x, loc); }
Tensor sigmoid(const Tensor &x, Loc loc) { return unary("sigmoid", x, loc); }
Tensor relu(const Tensor &x, Loc loc) { return unary("relu", x, loc); }
Tensor softplus(const Tensor &x, Loc loc) { return unary("softplus", x, loc); }
Tensor elu(const Tensor &x, double alpha, Loc loc) {
  GraphImpl *g = graphOf({&x}, "elu", loc);
  Builder b(g->ctx.get());
  return unary("elu", x, loc, {b.getNamedAttr("alpha", b.getF64FloatAttr(alpha))});
}
Tensor silu(const Tensor &x, Loc loc) { return unary("silu", x, loc); }
Tensor gelu(const Tensor &x, Loc loc) { return unary("gelu", x, loc); }
Tensor swish(const Tensor &x, double beta, Loc loc) {
  graphOf({&x}, "swish", loc);
  return mul(x, sigmoid(mul(x, scalar(x.graph(), static_cast<float>(beta), loc), loc), loc), loc);
}
Tensor maxout(const Tensor &x, int64_t pieces, Loc loc) {
  graphOf({&x}, "maxout", loc);
  if (x.rank() != 2 || pieces < 1 || x.dim(1) % pieces != 0)
    throw Error(where(loc) + ": maxout: input must be [N, C * pieces] with pieces >= 1, got " +
                x.type_str() + " and pieces " + std::to_string(pieces));
  return max(reshape(x, {x.dim(0), x.dim(1) / pieces, pieces}, loc), {2}, false, loc);
}
Tensor leaky_relu(const Tensor &x, double alpha, Loc loc) {
  GraphImpl *g = graphOf({&x}, "leaky_relu", loc);
  Builder b(g->ctx.get());
  return unary("leaky_relu", x, loc, {b.getNamedAttr("alpha", b.getF64FloatAttr(alpha))});
}

// --- contraction -----------------------------------------------------------------
Tensor matmul(const Tensor &a, const Tensor &bt, MatmulOptions o, Loc loc) {
  GraphImpl *g = graphOf({&a, &bt}, "matmul", loc);
  Builder b(g->ctx.get());
  return buildOp(g, "soma.matmul", {g->value(a), g->value(bt)},
                 {b.getNamedAttr("transpose_a", b.getBoolAttr(o.transpose_a)),
                  b.getNamedAttr("transpose_b", b.getBoolAttr(o.transpose_b))},
                 loc);
}

// --- reductions ------------------------------------------------------------------
Tensor sum(const Tensor &x, const Axes &axes, bool keepdims, Loc loc) {
  return reduce("reduce_sum", x, axes, keepdims, loc);
}
Tensor mean(const Tensor &x, const Axes &axes, bool keepdims, Loc loc) {
  return reduce("reduce_mean", x, axes, keepdims, loc);
}
Tensor max(const Tensor &x, const Axes &axes, bool keepdims, Loc loc) {
  return reduce("reduce_max", x, axes, keepdims, loc);
}

// --- shape and data movement ---------------------------------------------------------
Tensor reshape(const Tensor &x, const Shape &shape, Loc loc) {
  GraphImpl *g = graphOf({&x}, "reshape", loc);
  Shape s = shape;
  int64_t known = 1, inferred = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (inferred >= 0)
        throw Error(where(loc) + ": reshape: more than one -1 in " + shape_str(shape));
      inferred = static_cast<int64_t>(i);
    } else {
      known *= s[i];
    }
  }
  if (inferred >= 0 && known > 0 && x.numel() % known == 0)
    s[inferred] = x.numel() / known;
  Builder b(g->ctx.get());
  return buildOp(g, "soma.reshape", {g->value(x)},
                 {b.getNamedAttr("shape", b.getDenseI64ArrayAttr(s))}, loc);
}

Tensor flatten(const Tensor &x, Loc loc) {
  graphOf({&x}, "flatten", loc);
  if (x.rank() < 1)
    throw Error(where(loc) + ": flatten: needs rank >= 1, got " + x.type_str());
  return reshape(x, {x.dim(0), x.numel() / x.dim(0)}, loc);
}

Tensor transpose(const Tensor &x, const Axes &perm, Loc loc) {
  GraphImpl *g = graphOf({&x}, "transpose", loc);
  SmallVector<int64_t> p;
  int64_t rank = x.rank();
  if (perm.empty())
    for (int64_t i = rank - 1; i >= 0; --i)
      p.push_back(i);
  for (int64_t a : perm)
    p.push_back(a < 0 ? a + rank : a);
  Builder b(g->ctx.get());
  return buildOp(g, "soma.transpose", {g->value(x)},
                 {b.getNamedAttr("perm", b.getDenseI64ArrayAttr(p))}, loc);
}

Tensor broadcast_to(const Tensor &x, const Shape &shape, Loc loc) {
  GraphImpl *g = graphOf({&x}, "broadcast_to", loc);
  Builder b(g->ctx.get());
  return buildOp(g, "soma.broadcast_to", {g->value(x)},
                 {b.getNamedAttr("shape", b.getDenseI64ArrayAttr(shape))}, loc);
}

Tensor slice(const Tensor &x, const Shape &starts, const Shape &limits,
             const Shape &strides, Loc loc) {
  GraphImpl *g = graphOf({&x}, "slice", loc);
  Shape s = starts, l = limits, st = strides;
  Shape shape = x.shape();
  if (st.empty())
    st.assign(shape.size(), 1);
  for (size_t d = 0; d < s.size() && d < shape.size(); ++d)
    if (s[d] < 0)
      s[d] += shape[d];
  for (size_t d = 0; d < l.size() && d < shape.size(); ++d)
    if (l[d] < 0)
      l[d] += shape[d];
  Builder b(g->ctx.get());
  return buildOp(g, "soma.slice", {g->value(x)},
                 {b.getNamedAttr("starts", b.getDenseI64ArrayAttr(s)),
                  b.getNamedAttr("limits", b.getDenseI64ArrayAttr(l)),
                  b.getNamedAttr("strides", b.getDenseI64ArrayAttr(st))},
                 loc);
}

Tensor concat(const std::vector<Tensor> &xs, int64_t axis, Loc loc) {
  if (xs.empty())
    throw Error(where(loc) + ": concat: needs at least one tensor");
  GraphImpl *g = nullptr;
  SmallVector<Value> operands;
  for (const Tensor &t : xs) {
    GraphImpl *h = graphOf({&t}, "concat", loc);
    if (g && h != g)
      throw Error(where(loc) + ": concat: operands belong to different graphs");
    g = h;
    operands.push_back(g->value(t));
  }
  int64_t a = normAxis(axis, xs[0].rank(), "concat", loc);
  Builder b(g->ctx.get());
  return buildOp(g, "soma.concat", operands,
                 {b.getNamedAttr("axis", b.getI64IntegerAttr(a))}, loc);
}

std::vector<Tensor> split(const Tensor &x, const Shape &sizes, int64_t axis, Loc loc) {
  graphOf({&x}, "split", loc);
  int64_t a = normAxis(axis, x.rank(), "split", loc), total = 0;
  for (int64_t s : sizes) {
    if (s < 1)
      throw Error(where(loc) + ": split: sizes must be >= 1, got " + shape_str(sizes));
    total += s;
  }
  if (total != x.dim(a))
    throw Error(where(loc) + ": split: sizes " + shape_str(sizes) + " add up to " + std::to_string(total) +
                ", not to dimension " + std::to_string(a) + " of " + x.type_str());
  std::vector<Tensor> out;
  Shape starts(x.rank(), 0), limits = x.shape();
  int64_t offset = 0;
  for (int64_t s : sizes) {
    starts[a] = offset;
    limits[a] = offset + s;
    out.push_back(slice(x, starts, limits, {}, loc));
    offset += s;
  }
  return out;
}

Tensor constant(Graph &graph, const Array &value, Loc loc) {
  GraphImpl *g = graph.impl();
  if (value.empty())
    throw Error(where(loc) + ": constant: empty array");
  auto type = RankedTensorType::get(value.shape(), elementType(g->ctx.get(), value.dtype()));
  DenseElementsAttr attr;
  switch (value.dtype()) {
  case DType::f32:
    attr = DenseElementsAttr::get(
        type, ArrayRef<float>(value.data<float>(), value.numel()));
    break;
  case DType::i32:
    attr = DenseElementsAttr::get(
        type, ArrayRef<int32_t>(value.data<int32_t>(), value.numel()));
    break;
  case DType::i64:
    attr = DenseElementsAttr::get(
        type, ArrayRef<int64_t>(value.data<int64_t>(), value.numel()));
    break;
  }
  Builder b(g->ctx.get());
  return buildOp(g, "soma.constant", {}, {b.getNamedAttr("value", attr)}, loc);
}

Tensor scalar(Graph &g, float value, Loc loc) {
  return constant(g, Array::f32({}, {value}), loc);
}

// --- gradient control and non-differentiable ops ----------------------------------------
Tensor stop_gradient(const Tensor &x, Loc loc) {
  GraphImpl *g = graphOf({&x}, "stop_gradient", loc);
  return buildOp(g, "soma.stop_gradient", {g->value(x)}, {}, loc);
}
Tensor sign(const Tensor &x, Loc loc) { return unary("sign", x, loc); }
Tensor step(const Tensor &x, Loc loc) { return unary("step", x, loc); }
Tensor equal(const Tensor &a, const Tensor &b, Loc loc) { return binary("equal", a, b, loc); }
Tensor one_hot(const Tensor &labels, int64_t classes, Loc loc) {
  GraphImpl *g = graphOf({&labels}, "one_hot", loc);
  Builder b(g->ctx.get());
  return buildOp(g, "soma.one_hot", {g->value(labels)},
                 {b.getNamedAttr("classes", b.getI64IntegerAttr(classes))}, loc);
}
Tensor dropout(const Tensor &x, double rate, int64_t seed, Loc loc) {
  GraphImpl *g = graphOf({&x}, "dropout", loc);
  int k = g->counters["soma.dropout"]++;
  if (seed < 0) {
    // Block k of the graph's Philox stream "soma.dropout", as parameters
    // draw their initial values: distinct, well-spread seeds.
    uint32_t w[4];
    Philox{g->seed, stream_id("soma.dropout")}.block(static_cast<uint64_t>(k), w);
    seed = static_cast<int64_t>((static_cast<uint64_t>(w[1]) << 32 | w[0]) >> 1);
  }
  Builder b(g->ctx.get());
  return buildOp(g, "soma.dropout", {g->value(x)},
                 {b.getNamedAttr("rate", b.getF64FloatAttr(rate)),
                  b.getNamedAttr("seed", b.getI64IntegerAttr(seed))},
                 loc);
}
Tensor argmax(const Tensor &x, int64_t axis, Loc loc) {
  GraphImpl *g = graphOf({&x}, "argmax", loc);
  int64_t a = normAxis(axis, x.rank(), "argmax", loc);
  Builder b(g->ctx.get());
  return buildOp(g, "soma.argmax", {g->value(x)}, {b.getNamedAttr("axis", b.getI64IntegerAttr(a))},
                 loc);
}
Tensor pad(const Tensor &x, const Shape &low, const Shape &high, const Shape &interior,
           double value, Loc loc) {
  GraphImpl *g = graphOf({&x}, "pad", loc);
  Shape in = interior.empty() ? Shape(low.size(), 0) : interior;
  Builder b(g->ctx.get());
  return buildOp(g, "soma.pad", {g->value(x)},
                 {b.getNamedAttr("low", b.getDenseI64ArrayAttr(low)),
                  b.getNamedAttr("high", b.getDenseI64ArrayAttr(high)),
                  b.getNamedAttr("interior", b.getDenseI64ArrayAttr(in)),
                  b.getNamedAttr("value", b.getF64FloatAttr(value))},
                 loc);
}

// --- convolution and pooling ----------------------------------------------------------
namespace {
/// Two values from a window parameter.
SmallVector<int64_t> pair(const Ints &v, const char *what, const char *op, const Loc &loc) {
  if (v.values.size() == 1)
    return {v.values[0], v.values[0]};
  if (v.values.size() == 2)
    return {v.values[0], v.values[1]};
  throw Error(where(loc) + ": " + op + ": " + what + " takes 1 or 2 values, got " +
              std::to_string(v.values.size()));
}
/// Four paddings {top, left, bottom, right}.
SmallVector<int64_t> pads(const Ints &v, const char *op, const Loc &loc) {
  const auto &p = v.values;
  if (p.size() == 1)
    return {p[0], p[0], p[0], p[0]};
  if (p.size() == 2)
    return {p[0], p[1], p[0], p[1]};
  if (p.size() == 4)
    return {p[0], p[1], p[2], p[3]};
  throw Error(where(loc) + ": " + op + ": padding takes 1, 2 or 4 values, got " +
              std::to_string(p.size()));
}
/// TensorFlow's "same": ceil(in / stride) outputs, padding split evenly.
SmallVector<int64_t> samePads(int64_t h, int64_t w, ArrayRef<int64_t> k, ArrayRef<int64_t> s,
                              ArrayRef<int64_t> d) {
  SmallVector<int64_t> lo, hi;
  for (int i = 0; i < 2; ++i) {
    int64_t in = i == 0 ? h : w;
    int64_t out = (in + s[i] - 1) / s[i];
    int64_t total = std::max<int64_t>((out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - in, 0);
    lo.push_back(total / 2);
    hi.push_back(total - total / 2);
  }
  return {lo[0], lo[1], hi[0], hi[1]};
}
} // namespace

Tensor conv2d(const Tensor &x, const Tensor &w, const Conv2dOptions &o, Loc loc) {
  GraphImpl *g = graphOf({&x, &w}, "conv2d", loc);
  SmallVector<int64_t> st = pair(o.stride, "stride", "conv2d", loc);
  SmallVector<int64_t> dil = pair(o.dilation, "dilation", "conv2d", loc);
  SmallVector<int64_t> pd = pads(o.padding, "conv2d", loc);
  if (o.same && x.rank() == 4 && w.rank() == 4) {
    int64_t k[] = {w.dim(2), w.dim(3)};
    pd = samePads(x.dim(2), x.dim(3), k, st, dil);
  }
  Builder b(g->ctx.get());
  return buildOp(g, "soma.conv2d", {g->value(x), g->value(w)},
                 {b.getNamedAttr("stride", b.getDenseI64ArrayAttr(st)),
                  b.getNamedAttr("padding", b.getDenseI64ArrayAttr(pd)),
                  b.getNamedAttr("dilation", b.getDenseI64ArrayAttr(dil)),
                  b.getNamedAttr("groups", b.getI64IntegerAttr(o.groups))},
                 loc);
}

namespace {
Tensor im2colOp(GraphImpl *g, const Tensor &x, ArrayRef<int64_t> k, ArrayRef<int64_t> st,
                ArrayRef<int64_t> pd, ArrayRef<int64_t> dil, double padValue, const Loc &loc) {
  Builder b(g->ctx.get());
  return buildOp(g, "soma.im2col", {g->value(x)},
                 {b.getNamedAttr("kernel", b.getDenseI64ArrayAttr(k)),
                  b.getNamedAttr("stride", b.getDenseI64ArrayAttr(st)),
                  b.getNamedAttr("padding", b.getDenseI64ArrayAttr(pd)),
                  b.getNamedAttr("dilation", b.getDenseI64ArrayAttr(dil)),
                  b.getNamedAttr("pad_value", b.getF64FloatAttr(padValue))},
                 loc);
}
Tensor col2imOp(GraphImpl *g, const Tensor &cols, ArrayRef<int64_t> image, ArrayRef<int64_t> k,
                ArrayRef<int64_t> st, ArrayRef<int64_t> pd, ArrayRef<int64_t> dil, const Loc &loc) {
  Builder b(g->ctx.get());
  return buildOp(g, "soma.col2im", {g->value(cols)},
                 {b.getNamedAttr("image_shape", b.getDenseI64ArrayAttr(image)),
                  b.getNamedAttr("kernel", b.getDenseI64ArrayAttr(k)),
                  b.getNamedAttr("stride", b.getDenseI64ArrayAttr(st)),
                  b.getNamedAttr("padding", b.getDenseI64ArrayAttr(pd)),
                  b.getNamedAttr("dilation", b.getDenseI64ArrayAttr(dil))},
                 loc);
}
} // namespace

Tensor conv_transpose2d(const Tensor &x, const Tensor &w, const ConvTranspose2dOptions &o, Loc loc) {
  // y = col2im(W^T x cols(x)): the input gradient of a conv2d whose output
  // has x's shape. W [Cin, Cout, KH, KW] viewed as [Cin, Cout*KH*KW].
  GraphImpl *g = graphOf({&x, &w}, "conv_transpose2d", loc);
  if (x.rank() != 4 || w.rank() != 4 || w.dim(0) != x.dim(1))
    throw Error(where(loc) + ": conv_transpose2d: needs x [N, Cin, H, W] and w [Cin, Cout, KH, KW] with the "
                "same Cin, got " + x.type_str() + " and " + w.type_str());
  SmallVector<int64_t> st = pair(o.stride, "stride", "conv_transpose2d", loc);
  SmallVector<int64_t> pd = pair(o.padding, "padding", "conv_transpose2d", loc);
  SmallVector<int64_t> op = pair(o.output_padding, "output_padding", "conv_transpose2d", loc);
  for (int i = 0; i < 2; ++i)
    if (st[i] < 1 || pd[i] < 0 || op[i] < 0 || op[i] >= st[i])
      throw Error(where(loc) + ": conv_transpose2d: needs stride >= 1, padding >= 0 and 0 <= output_padding < "
                  "stride, got stride " + shape_str({st[0], st[1]}) + ", padding " + shape_str({pd[0], pd[1]}) +
                  ", output_padding " + shape_str({op[0], op[1]}));
  int64_t n = x.dim(0), cin = x.dim(1), h = x.dim(2), wd = x.dim(3);
  int64_t cout = w.dim(1), kh = w.dim(2), kw = w.dim(3);
  int64_t oh = (h - 1) * st[0] - 2 * pd[0] + kh + op[0], ow = (wd - 1) * st[1] - 2 * pd[1] + kw + op[1];
  if (oh < 1 || ow < 1)
    throw Error(where(loc) + ": conv_transpose2d: the output would be empty (" + std::to_string(oh) + "x" +
                std::to_string(ow) + ")");
  // The windows of a conv2d over the output (padding p on every side) land
  // exactly on the input's H x W pixels: the window count's floor absorbs
  // output_padding, whose rows only receive what the kernel reaches.
  int64_t pads[] = {pd[0], pd[1], pd[0], pd[1]};
  int64_t one[] = {1, 1}, kernel[] = {kh, kw}, image[] = {n, cout, oh, ow};
  Tensor xcols = reshape(transpose(x, {1, 0, 2, 3}, loc), {cin, n * h * wd}, loc);
  Tensor wmat = reshape(w, {cin, cout * kh * kw}, loc);
  Tensor cols = matmul(wmat, xcols, {.transpose_a = true}, loc); // [Cout*KH*KW, N*H*W]
  return col2imOp(g, cols, image, kernel, st, pads, one, loc);
}

Tensor conv1d(const Tensor &x, const Tensor &w, const Conv1dOptions &o, Loc loc) {
  graphOf({&x, &w}, "conv1d", loc);
  if (x.rank() != 3 || w.rank() != 3)
    throw Error(where(loc) + ": conv1d: needs x [N, C, L] and w [K, C/groups, KW], got " + x.type_str() +
                " and " + w.type_str());
  int64_t left = o.causal ? o.dilation * (w.dim(2) - 1) : o.padding, right = o.causal ? 0 : o.padding;
  Tensor y = conv2d(reshape(x, {x.dim(0), x.dim(1), 1, x.dim(2)}, loc),
                    reshape(w, {w.dim(0), w.dim(1), 1, w.dim(2)}, loc),
                    {.stride = {1, o.stride}, .padding = {0, left, 0, right}, .dilation = {1, o.dilation},
                     .groups = o.groups},
                    loc);
  return reshape(y, {y.dim(0), y.dim(1), y.dim(3)}, loc);
}

static Tensor pool(const char *op, const Tensor &x, const Ints &kernel, const Pool2dOptions &o,
                   const Loc &loc) {
  GraphImpl *g = graphOf({&x}, op, loc);
  SmallVector<int64_t> k = pair(kernel, "kernel", op, loc);
  SmallVector<int64_t> st = o.stride.values.empty() ? k : pair(o.stride, "stride", op, loc);
  SmallVector<int64_t> pd = pads(o.padding, op, loc);
  Builder b(g->ctx.get());
  return buildOp(g, std::string("soma.") + op, {g->value(x)},
                 {b.getNamedAttr("kernel", b.getDenseI64ArrayAttr(k)),
                  b.getNamedAttr("stride", b.getDenseI64ArrayAttr(st)),
                  b.getNamedAttr("padding", b.getDenseI64ArrayAttr(pd))},
                 loc);
}
Tensor max_pool2d(const Tensor &x, Ints kernel, const Pool2dOptions &o, Loc loc) {
  return pool("max_pool2d", x, kernel, o, loc);
}
Tensor avg_pool2d(const Tensor &x, Ints kernel, const Pool2dOptions &o, Loc loc) {
  return pool("avg_pool2d", x, kernel, o, loc);
}
/// The [out, in] matrix of 1-D linear interpolation with align_corners=False:
/// output i samples input position (i + 0.5) / scale - 0.5, clamped at 0.
static Array interpolationMatrix(int64_t in, int64_t scale) {
  int64_t out = in * scale;
  Array m(DType::f32, {out, in});
  float *p = m.data<float>();
  for (int64_t i = 0; i < out; ++i) {
    double src = std::max((static_cast<double>(i) + 0.5) / static_cast<double>(scale) - 0.5, 0.0);
    int64_t lo = std::min(static_cast<int64_t>(src), in - 1);
    int64_t hi = std::min(lo + 1, in - 1);
    double w = src - static_cast<double>(lo);
    p[i * in + lo] += static_cast<float>(1.0 - w);
    p[i * in + hi] += static_cast<float>(w);
  }
  return m;
}

Tensor upsample2d(const Tensor &x, Ints scale, Upsample mode, Loc loc) {
  graphOf({&x}, "upsample2d", loc);
  if (x.rank() != 4)
    throw Error(where(loc) + ": upsample2d: input must be [N, C, H, W], got " + x.type_str());
  SmallVector<int64_t> s = pair(scale, "scale", "upsample2d", loc);
  if (s[0] < 1 || s[1] < 1)
    throw Error(where(loc) + ": upsample2d: scale must be >= 1, got " + shape_str({s[0], s[1]}));
  int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  if (mode == Upsample::nearest) {
    Tensor six = reshape(x, {n, c, h, 1, w, 1}, loc);
    return reshape(broadcast_to(six, {n, c, h, s[0], w, s[1]}, loc), {n, c, h * s[0], w * s[1]}, loc);
  }
  // Bilinear: Y = A_h X A_w^T per (n, c) image, as two batched matmuls.
  Graph &g = x.graph();
  Tensor ah = broadcast_to(constant(g, interpolationMatrix(h, s[0]), loc), {n * c, h * s[0], h}, loc);
  Tensor aw = broadcast_to(constant(g, interpolationMatrix(w, s[1]), loc), {n * c, w * s[1], w}, loc);
  Tensor rows = matmul(ah, reshape(x, {n * c, h, w}, loc), {}, loc);
  Tensor both = matmul(rows, aw, {.transpose_b = true}, loc);
  return reshape(both, {n, c, h * s[0], w * s[1]}, loc);
}

Tensor max_unpool2d(const Tensor &pooled, const Tensor &ref, Ints kernel, const Pool2dOptions &o, Loc loc) {
  GraphImpl *g = graphOf({&pooled, &ref}, "max_unpool2d", loc);
  SmallVector<int64_t> k = pair(kernel, "kernel", "max_unpool2d", loc);
  SmallVector<int64_t> st = o.stride.values.empty() ? k : pair(o.stride, "stride", "max_unpool2d", loc);
  SmallVector<int64_t> pd = pads(o.padding, "max_unpool2d", loc);
  // The pooled values must be what max_pool2d gives for `ref`.
  Tensor check = max_pool2d(ref, kernel, o, loc);
  if (check.shape() != pooled.shape())
    throw Error(where(loc) + ": max_unpool2d: pooled " + pooled.type_str() + " is not the max_pool2d of " +
                ref.type_str() + " with these options (that gives " + check.type_str() + ")");
  int64_t n = ref.dim(0), c = ref.dim(1), kk = k[0] * k[1], p = n * pooled.dim(2) * pooled.dim(3);
  int64_t one[] = {1, 1};
  // The switches: where each window's maximum of ref is.
  Tensor win = reshape(im2colOp(g, stop_gradient(ref, loc), k, st, pd, one,
                                -std::numeric_limits<double>::infinity(), loc),
                       {c, kk, p}, loc);
  Tensor maxes = reshape(transpose(check, {1, 0, 2, 3}, loc), {c, 1, p}, loc);
  Tensor mask = equal(win, stop_gradient(maxes, loc), loc);
  Tensor vals = reshape(transpose(pooled, {1, 0, 2, 3}, loc), {c, 1, p}, loc);
  Tensor cols = reshape(mul(mask, vals, loc), {c * kk, p}, loc);
  return col2imOp(g, cols, ref.shape(), k, st, pd, one, loc);
}

Tensor global_avg_pool2d(const Tensor &x, Loc loc) {
  graphOf({&x}, "global_avg_pool2d", loc);
  if (x.rank() != 4)
    throw Error(where(loc) + ": global_avg_pool2d: input must be [N, C, H, W], got " + x.type_str());
  return mean(x, {2, 3}, false, loc);
}

// --- softmax family and losses ---------------------------------------------------------
static Tensor softmaxLike(const char *op, const Tensor &x, int64_t axis, const Loc &loc) {
  GraphImpl *g = graphOf({&x}, op, loc);
  int64_t a = normAxis(axis, x.rank(), op, loc);
  Builder b(g->ctx.get());
  return buildOp(g, std::string("soma.") + op, {g->value(x)},
                 {b.getNamedAttr("axis", b.getI64IntegerAttr(a))}, loc);
}
Tensor softmax(const Tensor &x, int64_t axis, Loc loc) {
  return softmaxLike("softmax", x, axis, loc);
}
Tensor log_softmax(const Tensor &x, int64_t axis, Loc loc) {
  return softmaxLike("log_softmax", x, axis, loc);
}

static Tensor loss(const char *op, const Tensor &a, const Tensor &t, Reduction r,
                   const Loc &loc) {
  GraphImpl *g = graphOf({&a, &t}, op, loc);
  Builder b(g->ctx.get());
  return buildOp(g, std::string("soma.") + op, {g->value(a), g->value(t)},
                 {b.getNamedAttr("reduction", b.getStringAttr(reductionName(r)))}, loc);
}
Tensor softmax_cross_entropy(const Tensor &logits, const Tensor &labels, Reduction r,
                             Loc loc) {
  return loss("softmax_cross_entropy", logits, labels, r, loc);
}
Tensor mse(const Tensor &p, const Tensor &t, Reduction r, Loc loc) {
  return loss("mse", p, t, r, loc);
}
Tensor binary_cross_entropy(const Tensor &p, const Tensor &t, Reduction r, Loc loc) {
  return loss("binary_cross_entropy", p, t, r, loc);
}

// --- composite losses ------------------------------------------------------------------
namespace {
/// The mean over all elements, or the sum.
Tensor reduceLossValue(const Tensor &perElement, Reduction r, const Loc &loc) {
  return r == Reduction::sum ? sum(perElement, {}, false, loc) : mean(perElement, {}, false, loc);
}
Tensor scalarOf(const Tensor &like, double v, const Loc &loc) {
  return scalar(like.graph(), static_cast<float>(v), loc);
}
} // namespace

Tensor binary_cross_entropy_with_logits(const Tensor &x, const Tensor &t, Reduction r, Loc loc) {
  graphOf({&x, &t}, "binary_cross_entropy_with_logits", loc);
  if (x.shape() != t.shape())
    throw Error(where(loc) + ": binary_cross_entropy_with_logits: logits and target shapes differ: " +
                shape_str(x.shape()) + " vs " + shape_str(t.shape()));
  Tensor per = add(sub(relu(x, loc), mul(x, t, loc), loc), softplus(neg(abs(x, loc), loc), loc), loc);
  return reduceLossValue(per, r, loc);
}

Tensor nll_loss(const Tensor &logp, const Tensor &labels, Reduction r, Loc loc) {
  graphOf({&logp, &labels}, "nll_loss", loc);
  if (logp.rank() != 2)
    throw Error(where(loc) + ": nll_loss: log_probs must be [N, C], got " + logp.type_str());
  Tensor picked = sum(mul(logp, one_hot(labels, logp.dim(1), loc), loc), {1}, false, loc);
  return reduceLossValue(neg(picked, loc), r, loc);
}

Tensor kl_divergence(const Tensor &logq, const Tensor &p, Reduction r, Loc loc) {
  graphOf({&logq, &p}, "kl_divergence", loc);
  if (logq.shape() != p.shape() || logq.rank() < 1)
    throw Error(where(loc) + ": kl_divergence: log_q and p shapes differ: " + shape_str(logq.shape()) +
                " vs " + shape_str(p.shape()));
  // p log p with 0 log 0 = 0: log(p + [p == 0]).
  Tensor safe = log(add(p, equal(stop_gradient(p, loc), scalarOf(p, 0.0, loc), loc), loc), loc);
  Tensor total = sum(mul(p, sub(safe, logq, loc), loc), {}, false, loc);
  return r == Reduction::sum ? total : div(total, scalarOf(p, static_cast<double>(p.dim(0)), loc), loc);
}

Tensor hinge_loss(const Tensor &s, const Tensor &y, double margin, Reduction r, Loc loc) {
  graphOf({&s, &y}, "hinge_loss", loc);
  if (s.shape() != y.shape())
    throw Error(where(loc) + ": hinge_loss: scores and y shapes differ: " + shape_str(s.shape()) + " vs " +
                shape_str(y.shape()));
  return reduceLossValue(relu(sub(scalarOf(s, margin, loc), mul(y, s, loc), loc), loc), r, loc);
}

Tensor margin_ranking_loss(const Tensor &x1, const Tensor &x2, const Tensor &y, double margin,
                           Reduction r, Loc loc) {
  graphOf({&x1, &x2, &y}, "margin_ranking_loss", loc);
  if (x1.shape() != x2.shape() || x1.shape() != y.shape())
    throw Error(where(loc) + ": margin_ranking_loss: x1, x2 and y must have the same shape, got " +
                shape_str(x1.shape()) + ", " + shape_str(x2.shape()) + ", " + shape_str(y.shape()));
  Tensor per = relu(add(neg(mul(y, sub(x1, x2, loc), loc), loc), scalarOf(x1, margin, loc), loc), loc);
  return reduceLossValue(per, r, loc);
}

Tensor triplet_loss(const Tensor &a, const Tensor &p, const Tensor &n, double margin, Reduction r,
                    Loc loc) {
  graphOf({&a, &p, &n}, "triplet_loss", loc);
  if (a.rank() != 2 || a.shape() != p.shape() || a.shape() != n.shape())
    throw Error(where(loc) + ": triplet_loss: anchor, positive and negative must be the same [N, D], got " +
                shape_str(a.shape()) + ", " + shape_str(p.shape()) + ", " + shape_str(n.shape()));
  Tensor dp = sum(mul(sub(a, p, loc), sub(a, p, loc), loc), {1}, false, loc);
  Tensor dn = sum(mul(sub(a, n, loc), sub(a, n, loc), loc), {1}, false, loc);
  return reduceLossValue(relu(add(sub(dp, dn, loc), scalarOf(a, margin, loc), loc), loc), r, loc);
}

Tensor cosine_similarity(const Tensor &a, const Tensor &b, int64_t axis, double eps, Loc loc) {
  graphOf({&a, &b}, "cosine_similarity", loc);
  Tensor dot = sum(mul(a, b, loc), {axis}, false, loc);
  Tensor na = sqrt(sum(mul(a, a, loc), {axis}, false, loc), loc);
  Tensor nb = sqrt(sum(mul(b, b, loc), {axis}, false, loc), loc);
  return div(dot, maximum(mul(na, nb, loc), scalarOf(a, eps, loc), loc), loc);
}

// --- layers ----------------------------------------------------------------------------
namespace nn {
Tensor dense(const Tensor &x, int64_t units, const DenseOptions &o, Loc loc) {
  graphOf({&x}, "dense", loc);
  if (x.rank() != 2)
    throw Error(where(loc) + ": dense: input must be [batch, features], got " +
                x.type_str());
  if (units <= 0)
    throw Error(where(loc) + ": dense: units must be positive, got " +
                std::to_string(units));
  Graph &g = x.graph();
  std::string name = o.name.empty() ? g.unique_name("dense") : o.name;
  int64_t in = x.dim(1);
  Init wi = o.weight_init;
  if (wi.fan_in == 0)
    wi.fan_in = in;
  if (wi.fan_out == 0)
    wi.fan_out = units;
  Tensor w = g.param(name + ".weight", {in, units}, wi, loc);
  Tensor y = matmul(x, w, {}, loc);
  if (o.bias) {
    Init bi = o.bias_init;
    if (bi.fan_in == 0)
      bi.fan_in = in;
    if (bi.fan_out == 0)
      bi.fan_out = units;
    y = add(y, g.param(name + ".bias", {units}, bi, loc), loc);
  }
  return y;
}
Tensor conv2d(const Tensor &x, int64_t out_channels, Ints kernel, const Conv2dLayerOptions &o,
              Loc loc) {
  graphOf({&x}, "conv2d", loc);
  if (x.rank() != 4)
    throw Error(where(loc) + ": conv2d: input must be [N, C, H, W], got " + x.type_str());
  if (out_channels <= 0)
    throw Error(where(loc) + ": conv2d: out_channels must be positive, got " + std::to_string(out_channels));
  if (o.groups < 1 || x.dim(1) % o.groups != 0 || out_channels % o.groups != 0)
    throw Error(where(loc) + ": conv2d: groups " + std::to_string(o.groups) +
                " must divide the input channels (" + std::to_string(x.dim(1)) +
                ") and the output channels (" + std::to_string(out_channels) + ")");
  SmallVector<int64_t> k = pair(kernel, "kernel", "conv2d", loc);
  Graph &g = x.graph();
  std::string name = o.name.empty() ? g.unique_name("conv") : o.name;
  int64_t cin = x.dim(1) / o.groups;
  Init wi = o.weight_init;
  if (wi.fan_in == 0)
    wi.fan_in = cin * k[0] * k[1];
  if (wi.fan_out == 0)
    wi.fan_out = out_channels / o.groups * k[0] * k[1];
  Tensor w = g.param(name + ".weight", {out_channels, cin, k[0], k[1]}, wi, loc);
  Tensor y = soma::conv2d(x, w, {.stride = o.stride, .padding = o.padding, .same = o.same,
                                 .dilation = o.dilation, .groups = o.groups},
                          loc);
  if (o.bias) {
    Init bi = o.bias_init;
    if (bi.fan_in == 0)
      bi.fan_in = wi.fan_in;
    if (bi.fan_out == 0)
      bi.fan_out = wi.fan_out;
    Tensor b = g.param(name + ".bias", {out_channels}, bi, loc);
    y = add(y, reshape(b, {1, out_channels, 1, 1}, loc), loc);
  }
  return y;
}
Tensor prelu(const Tensor &x, const std::string &name, Loc loc) {
  graphOf({&x}, "prelu", loc);
  Graph &g = x.graph();
  int64_t c = x.rank() >= 2 ? x.dim(1) : 1;
  Tensor alpha = g.param((name.empty() ? g.unique_name("prelu") : name) + ".alpha", {c},
                         init::constant(0.25), loc);
  Shape s(std::max<int64_t>(x.rank(), 1), 1);
  if (x.rank() >= 2)
    s[1] = c;
  Tensor zero = scalar(g, 0.0f, loc);
  return add(relu(x, loc), mul(reshape(alpha, s, loc), minimum(x, zero, loc), loc), loc);
}

Tensor batch_norm(const Tensor &x, const BatchNormOptions &o, Loc loc) {
  GraphImpl *gi = graphOf({&x}, "batch_norm", loc);
  if (x.rank() < 2)
    throw Error(where(loc) + ": batch_norm: input must be [N, C, ...], got " + x.type_str());
  Graph &g = x.graph();
  std::string name = o.name.empty() ? g.unique_name("bn") : o.name;
  int64_t c = x.dim(1);
  Tensor gamma = g.param(name + ".weight", {c}, init::ones(), loc);
  Tensor beta = g.param(name + ".bias", {c}, init::zeros(), loc);
  Tensor mean = g.buffer(name + ".running_mean", {c}, init::zeros(), loc);
  Tensor var = g.buffer(name + ".running_var", {c}, init::ones(), loc);
  Builder b(gi->ctx.get());
  return buildOp(gi, "soma.batch_norm",
                 {gi->value(x), gi->value(gamma), gi->value(beta), gi->value(mean), gi->value(var)},
                 {b.getNamedAttr("eps", b.getF64FloatAttr(o.eps)),
                  b.getNamedAttr("momentum", b.getF64FloatAttr(o.momentum))},
                 loc);
}
} // namespace nn

} // namespace soma
