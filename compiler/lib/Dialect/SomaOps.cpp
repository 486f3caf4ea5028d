//===- SomaOps.cpp - Shape and dtype inference for soma ops ---------------===//
//
// Each op's inferReturnTypes is the single source of truth for its shape
// rule: the builder DSL calls it before creating an op (to turn a mistake
// into a soma::Error at the user's line), the parser calls it when result
// types are omitted, and the verifier checks stored types against it.
// Messages have the form "<op>: <what is wrong>: <shapes>".
//
//===----------------------------------------------------------------------===//

#include "soma/Dialect/SomaDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/OpImplementation.h"

#include <set>
#include <sstream>

using namespace mlir;
using namespace soma::ir;

#include "soma/Dialect/SomaOpsDialect.cpp.inc"

void SomaDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "soma/Dialect/SomaOps.cpp.inc"
      >();
}

Operation *SomaDialect::materializeConstant(OpBuilder &builder, Attribute value,
                                            Type type, Location loc) {
  if (auto elements = dyn_cast<ElementsAttr>(value))
    return builder.create<ConstantOp>(loc, type, elements);
  return nullptr;
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

namespace {

std::string shapeStr(ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string dtypeStr(Type t) {
  if (t.isF32())
    return "f32";
  if (t.isInteger(32))
    return "i32";
  if (t.isInteger(64))
    return "i64";
  std::string s;
  llvm::raw_string_ostream os(s);
  t.print(os);
  return os.str();
}

/// "f32[64,784]".
std::string typeStr(Type t) {
  if (auto rt = dyn_cast<RankedTensorType>(t))
    return dtypeStr(rt.getElementType()) + shapeStr(rt.getShape());
  std::string s;
  llvm::raw_string_ostream os(s);
  t.print(os);
  return os.str();
}

/// Fails with "<op>: <message>".
LogicalResult fail(std::optional<Location> loc, StringRef op, const Twine &msg) {
  return emitOptionalError(loc, op, ": ", msg);
}

/// The operand as a ranked tensor of static shape, or a failure that says so.
FailureOr<RankedTensorType> tensorOf(std::optional<Location> loc, StringRef op,
                                     Value v, StringRef role) {
  auto rt = dyn_cast<RankedTensorType>(v.getType());
  if (!rt)
    return fail(loc, op, Twine(role) + " must be a ranked tensor, got " +
                             typeStr(v.getType()));
  if (!rt.hasStaticShape())
    return fail(loc, op, Twine(role) + " must have a static shape, got " +
                             typeStr(rt));
  return rt;
}

FailureOr<RankedTensorType> f32TensorOf(std::optional<Location> loc,
                                        StringRef op, Value v, StringRef role) {
  auto rt = tensorOf(loc, op, v, role);
  if (failed(rt))
    return failure();
  if (!rt->getElementType().isF32())
    return fail(loc, op, Twine(role) + " must be f32, got " + typeStr(*rt));
  return rt;
}

/// Numpy broadcasting of two shapes, or std::nullopt.
std::optional<SmallVector<int64_t>> broadcastShapes(ArrayRef<int64_t> a,
                                                    ArrayRef<int64_t> b) {
  size_t rank = std::max(a.size(), b.size());
  SmallVector<int64_t> out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      return std::nullopt;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

LogicalResult inferUnary(std::optional<Location> loc, StringRef op, Value input,
                         SmallVectorImpl<Type> &results) {
  auto t = f32TensorOf(loc, op, input, "input");
  if (failed(t))
    return failure();
  results.push_back(*t);
  return success();
}

LogicalResult inferBinary(std::optional<Location> loc, StringRef op, Value lhs,
                          Value rhs, SmallVectorImpl<Type> &results) {
  auto a = f32TensorOf(loc, op, lhs, "lhs");
  if (failed(a))
    return failure();
  auto b = f32TensorOf(loc, op, rhs, "rhs");
  if (failed(b))
    return failure();
  auto shape = broadcastShapes(a->getShape(), b->getShape());
  if (!shape)
    return fail(loc, op, "shapes cannot be broadcast: " +
                             shapeStr(a->getShape()) + " and " +
                             shapeStr(b->getShape()));
  results.push_back(RankedTensorType::get(*shape, a->getElementType()));
  return success();
}

/// Checks that `axes` are distinct and in [0, rank).
LogicalResult checkAxes(std::optional<Location> loc, StringRef op,
                        ArrayRef<int64_t> axes, ArrayRef<int64_t> shape) {
  std::set<int64_t> seen;
  for (int64_t a : axes) {
    if (a < 0 || a >= static_cast<int64_t>(shape.size()))
      return fail(loc, op, "axis " + Twine(a) + " is out of range for shape " +
                               shapeStr(shape));
    if (!seen.insert(a).second)
      return fail(loc, op, "axis " + Twine(a) + " is repeated");
  }
  return success();
}

LogicalResult inferReduce(std::optional<Location> loc, StringRef op,
                          Value input, ArrayRef<int64_t> axes, bool keepdims,
                          SmallVectorImpl<Type> &results) {
  auto t = f32TensorOf(loc, op, input, "input");
  if (failed(t))
    return failure();
  if (axes.empty())
    return fail(loc, op, "needs at least one axis");
  if (failed(checkAxes(loc, op, axes, t->getShape())))
    return failure();
  SmallVector<int64_t> shape;
  for (int64_t i = 0; i < t->getRank(); ++i) {
    bool reduced = llvm::is_contained(axes, i);
    if (!reduced)
      shape.push_back(t->getDimSize(i));
    else if (keepdims)
      shape.push_back(1);
  }
  results.push_back(RankedTensorType::get(shape, t->getElementType()));
  return success();
}

LogicalResult checkReduction(std::optional<Location> loc, StringRef op,
                             StringRef reduction) {
  if (reduction != "mean" && reduction != "sum")
    return fail(loc, op, "reduction must be \"mean\" or \"sum\", got \"" +
                             reduction + "\"");
  return success();
}

LogicalResult inferPairwiseLoss(std::optional<Location> loc, StringRef op,
                                Value a, Value b, StringRef reduction,
                                SmallVectorImpl<Type> &results) {
  auto ta = f32TensorOf(loc, op, a, "prediction");
  if (failed(ta))
    return failure();
  auto tb = f32TensorOf(loc, op, b, "target");
  if (failed(tb))
    return failure();
  if (ta->getShape() != tb->getShape())
    return fail(loc, op, "prediction and target shapes differ: " +
                             shapeStr(ta->getShape()) + " vs " +
                             shapeStr(tb->getShape()));
  if (failed(checkReduction(loc, op, reduction)))
    return failure();
  results.push_back(RankedTensorType::get({}, ta->getElementType()));
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

#define SOMA_UNARY_INFER(OP, NAME)                                             \
  LogicalResult OP::inferReturnTypes(MLIRContext *, std::optional<Location> loc, \
                                     Adaptor adaptor,                          \
                                     SmallVectorImpl<Type> &results) {         \
    return inferUnary(loc, NAME, adaptor.getInput(), results);                 \
  }
SOMA_UNARY_INFER(NegOp, "neg")
SOMA_UNARY_INFER(ExpOp, "exp")
SOMA_UNARY_INFER(LogOp, "log")
SOMA_UNARY_INFER(SqrtOp, "sqrt")
SOMA_UNARY_INFER(AbsOp, "abs")
SOMA_UNARY_INFER(TanhOp, "tanh")
SOMA_UNARY_INFER(SigmoidOp, "sigmoid")
SOMA_UNARY_INFER(ReluOp, "relu")
SOMA_UNARY_INFER(SoftplusOp, "softplus")
#undef SOMA_UNARY_INFER

LogicalResult LeakyReluOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  return inferUnary(loc, "leaky_relu", adaptor.getInput(), results);
}

#define SOMA_BINARY_INFER(OP, NAME)                                            \
  LogicalResult OP::inferReturnTypes(MLIRContext *, std::optional<Location> loc, \
                                     Adaptor adaptor,                          \
                                     SmallVectorImpl<Type> &results) {         \
    return inferBinary(loc, NAME, adaptor.getLhs(), adaptor.getRhs(), results); \
  }
SOMA_BINARY_INFER(AddOp, "add")
SOMA_BINARY_INFER(SubOp, "sub")
SOMA_BINARY_INFER(MulOp, "mul")
SOMA_BINARY_INFER(DivOp, "div")
SOMA_BINARY_INFER(PowOp, "pow")
SOMA_BINARY_INFER(MaximumOp, "maximum")
SOMA_BINARY_INFER(MinimumOp, "minimum")
#undef SOMA_BINARY_INFER

//===----------------------------------------------------------------------===//
// Matmul
//===----------------------------------------------------------------------===//

LogicalResult MatmulOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &results) {
  auto a = f32TensorOf(loc, "matmul", adaptor.getLhs(), "lhs");
  if (failed(a))
    return failure();
  auto b = f32TensorOf(loc, "matmul", adaptor.getRhs(), "rhs");
  if (failed(b))
    return failure();
  ArrayRef<int64_t> sa = a->getShape(), sb = b->getShape();
  if (sa.size() < 2 || sb.size() < 2)
    return fail(loc, "matmul", "operands must have rank >= 2: " + shapeStr(sa) +
                                   " x " + shapeStr(sb));
  if (sa.size() != sb.size() || sa.drop_back(2) != sb.drop_back(2))
    return fail(loc, "matmul", "batch dimensions differ: " + shapeStr(sa) +
                                   " x " + shapeStr(sb));
  size_t r = sa.size();
  bool ta = adaptor.getTransposeA(), tb = adaptor.getTransposeB();
  int64_t m = ta ? sa[r - 1] : sa[r - 2], ka = ta ? sa[r - 2] : sa[r - 1];
  int64_t kb = tb ? sb[r - 1] : sb[r - 2], n = tb ? sb[r - 2] : sb[r - 1];
  if (ka != kb) {
    std::string what = "inner dimensions differ: " + shapeStr(sa) +
                       (ta ? "^T" : "") + " x " + shapeStr(sb) +
                       (tb ? "^T" : "");
    return fail(loc, "matmul", what);
  }
  SmallVector<int64_t> shape(sa.drop_back(2));
  shape.push_back(m);
  shape.push_back(n);
  results.push_back(RankedTensorType::get(shape, a->getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

#define SOMA_REDUCE_INFER(OP, NAME)                                            \
  LogicalResult OP::inferReturnTypes(MLIRContext *, std::optional<Location> loc, \
                                     Adaptor adaptor,                          \
                                     SmallVectorImpl<Type> &results) {         \
    return inferReduce(loc, NAME, adaptor.getInput(), adaptor.getAxes(),       \
                       adaptor.getKeepdims(), results);                        \
  }
SOMA_REDUCE_INFER(ReduceSumOp, "reduce_sum")
SOMA_REDUCE_INFER(ReduceMeanOp, "reduce_mean")
SOMA_REDUCE_INFER(ReduceMaxOp, "reduce_max")
#undef SOMA_REDUCE_INFER

//===----------------------------------------------------------------------===//
// Shape and data movement
//===----------------------------------------------------------------------===//

LogicalResult ReshapeOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  auto t = tensorOf(loc, "reshape", adaptor.getInput(), "input");
  if (failed(t))
    return failure();
  ArrayRef<int64_t> shape = adaptor.getShape();
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return fail(loc, "reshape", "negative dimension in target shape " +
                                      shapeStr(shape));
    n *= d;
  }
  if (n != t->getNumElements())
    return fail(loc, "reshape", "cannot reshape " + shapeStr(t->getShape()) +
                                    " (" + Twine(t->getNumElements()) +
                                    " elements) to " + shapeStr(shape) + " (" +
                                    Twine(n) + " elements)");
  results.push_back(RankedTensorType::get(shape, t->getElementType()));
  return success();
}

LogicalResult TransposeOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  auto t = tensorOf(loc, "transpose", adaptor.getInput(), "input");
  if (failed(t))
    return failure();
  ArrayRef<int64_t> perm = adaptor.getPerm();
  if (static_cast<int64_t>(perm.size()) != t->getRank())
    return fail(loc, "transpose", "permutation " + shapeStr(perm) +
                                      " does not match the rank of " +
                                      shapeStr(t->getShape()));
  if (failed(checkAxes(loc, "transpose", perm, t->getShape())))
    return failure();
  SmallVector<int64_t> shape;
  for (int64_t p : perm)
    shape.push_back(t->getDimSize(p));
  results.push_back(RankedTensorType::get(shape, t->getElementType()));
  return success();
}

LogicalResult BroadcastToOp::inferReturnTypes(MLIRContext *,
                                              std::optional<Location> loc,
                                              Adaptor adaptor,
                                              SmallVectorImpl<Type> &results) {
  auto t = tensorOf(loc, "broadcast_to", adaptor.getInput(), "input");
  if (failed(t))
    return failure();
  ArrayRef<int64_t> target = adaptor.getShape();
  auto shape = broadcastShapes(t->getShape(), target);
  if (!shape || ArrayRef<int64_t>(*shape) != target)
    return fail(loc, "broadcast_to", "cannot broadcast " +
                                         shapeStr(t->getShape()) + " to " +
                                         shapeStr(target));
  results.push_back(RankedTensorType::get(target, t->getElementType()));
  return success();
}

LogicalResult SliceOp::inferReturnTypes(MLIRContext *,
                                        std::optional<Location> loc,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &results) {
  auto t = tensorOf(loc, "slice", adaptor.getInput(), "input");
  if (failed(t))
    return failure();
  ArrayRef<int64_t> starts = adaptor.getStarts(), limits = adaptor.getLimits(),
                    strides = adaptor.getStrides();
  int64_t rank = t->getRank();
  if (static_cast<int64_t>(starts.size()) != rank ||
      static_cast<int64_t>(limits.size()) != rank ||
      static_cast<int64_t>(strides.size()) != rank)
    return fail(loc, "slice", "starts " + shapeStr(starts) + ", limits " +
                                  shapeStr(limits) + " and strides " +
                                  shapeStr(strides) +
                                  " must each have one entry per dimension of " +
                                  shapeStr(t->getShape()));
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t size = t->getDimSize(d);
    if (strides[d] < 1)
      return fail(loc, "slice", "stride " + Twine(strides[d]) + " of dimension " +
                                    Twine(d) + " must be >= 1");
    if (starts[d] < 0 || starts[d] >= limits[d] || limits[d] > size)
      return fail(loc, "slice", "range [" + Twine(starts[d]) + ", " +
                                    Twine(limits[d]) + ") of dimension " +
                                    Twine(d) + " is empty or outside [0, " +
                                    Twine(size) + ") in " +
                                    shapeStr(t->getShape()));
    shape.push_back((limits[d] - starts[d] + strides[d] - 1) / strides[d]);
  }
  results.push_back(RankedTensorType::get(shape, t->getElementType()));
  return success();
}

LogicalResult ConcatOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &results) {
  auto inputs = adaptor.getInputs();
  if (inputs.empty())
    return fail(loc, "concat", "needs at least one input");
  auto first = tensorOf(loc, "concat", inputs[0], "input 0");
  if (failed(first))
    return failure();
  int64_t axis = adaptor.getAxis();
  if (axis < 0 || axis >= first->getRank())
    return fail(loc, "concat", "axis " + Twine(axis) +
                                   " is out of range for shape " +
                                   shapeStr(first->getShape()));
  SmallVector<int64_t> shape(first->getShape());
  for (size_t i = 1; i < inputs.size(); ++i) {
    auto t = tensorOf(loc, "concat", inputs[i], "input " + std::to_string(i));
    if (failed(t))
      return failure();
    bool ok = t->getRank() == first->getRank() &&
              t->getElementType() == first->getElementType();
    for (int64_t d = 0; ok && d < t->getRank(); ++d)
      ok = d == axis || t->getDimSize(d) == first->getDimSize(d);
    if (!ok)
      return fail(loc, "concat", "input " + Twine(i) + " " + typeStr(*t) +
                                     " does not match input 0 " +
                                     typeStr(*first) +
                                     " outside axis " + Twine(axis));
    shape[axis] += t->getDimSize(axis);
  }
  results.push_back(RankedTensorType::get(shape, first->getElementType()));
  return success();
}

LogicalResult ConstantOp::inferReturnTypes(MLIRContext *,
                                           std::optional<Location> loc,
                                           Adaptor adaptor,
                                           SmallVectorImpl<Type> &results) {
  auto type = dyn_cast<RankedTensorType>(adaptor.getValue().getType());
  if (!type || !type.hasStaticShape())
    return fail(loc, "constant", "value must be a statically shaped tensor");
  Type et = type.getElementType();
  if (!et.isF32() && !et.isInteger(32) && !et.isInteger(64))
    return fail(loc, "constant", "element type must be f32, i32 or i64, got " +
                                     typeStr(type));
  results.push_back(type);
  return success();
}

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValue(); }

//===----------------------------------------------------------------------===//
// Softmax family and losses
//===----------------------------------------------------------------------===//

static LogicalResult inferSoftmax(std::optional<Location> loc, StringRef op,
                                  Value input, int64_t axis,
                                  SmallVectorImpl<Type> &results) {
  auto t = f32TensorOf(loc, op, input, "input");
  if (failed(t))
    return failure();
  if (axis < 0 || axis >= t->getRank())
    return fail(loc, op, "axis " + Twine(axis) + " is out of range for shape " +
                             shapeStr(t->getShape()));
  results.push_back(*t);
  return success();
}

LogicalResult SoftmaxOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  return inferSoftmax(loc, "softmax", adaptor.getInput(), adaptor.getAxis(),
                      results);
}

LogicalResult LogSoftmaxOp::inferReturnTypes(MLIRContext *,
                                             std::optional<Location> loc,
                                             Adaptor adaptor,
                                             SmallVectorImpl<Type> &results) {
  return inferSoftmax(loc, "log_softmax", adaptor.getInput(),
                      adaptor.getAxis(), results);
}

LogicalResult SoftmaxCrossEntropyOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  StringRef op = "softmax_cross_entropy";
  auto logits = f32TensorOf(loc, op, adaptor.getLogits(), "logits");
  if (failed(logits))
    return failure();
  auto labels = tensorOf(loc, op, adaptor.getLabels(), "labels");
  if (failed(labels))
    return failure();
  if (logits->getRank() != 2)
    return fail(loc, op, "logits must be [batch, classes], got " +
                             shapeStr(logits->getShape()));
  if (!labels->getElementType().isInteger(32) &&
      !labels->getElementType().isInteger(64))
    return fail(loc, op, "labels must be i32 or i64 class indices, got " +
                             typeStr(*labels));
  if (labels->getRank() != 1 || labels->getDimSize(0) != logits->getDimSize(0))
    return fail(loc, op, "labels must be [" + Twine(logits->getDimSize(0)) +
                             "] to match logits " +
                             shapeStr(logits->getShape()) + ", got " +
                             shapeStr(labels->getShape()));
  if (failed(checkReduction(loc, op, adaptor.getReduction())))
    return failure();
  results.push_back(RankedTensorType::get({}, logits->getElementType()));
  return success();
}

LogicalResult MseOp::inferReturnTypes(MLIRContext *,
                                      std::optional<Location> loc,
                                      Adaptor adaptor,
                                      SmallVectorImpl<Type> &results) {
  return inferPairwiseLoss(loc, "mse", adaptor.getPrediction(),
                           adaptor.getTarget(), adaptor.getReduction(), results);
}

LogicalResult BinaryCrossEntropyOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  return inferPairwiseLoss(loc, "binary_cross_entropy",
                           adaptor.getProbability(), adaptor.getTarget(),
                           adaptor.getReduction(), results);
}

#define GET_OP_CLASSES
#include "soma/Dialect/SomaOps.cpp.inc"
