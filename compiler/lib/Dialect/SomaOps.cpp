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
#include "llvm/ADT/SmallPtrSet.h"

#include <set>
#include <sstream>

using namespace mlir;
using namespace soma::ir;

#include "soma/Dialect/SomaOpsDialect.cpp.inc"
#include "soma/Dialect/SomaInterfaces.cpp.inc"

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
    s += (i ? "," : "") +
         (ShapedType::isDynamic(shape[i]) ? std::string("?") : std::to_string(shape[i]));
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
  bool bce = op == "binary_cross_entropy";
  auto ta = f32TensorOf(loc, op, a, bce ? "probability" : "prediction");
  if (failed(ta))
    return failure();
  auto tb = f32TensorOf(loc, op, b, "target");
  if (failed(tb))
    return failure();
  if (ta->getShape() != tb->getShape())
    return fail(loc, op, Twine(bce ? "probability" : "prediction") + " and target shapes differ: " +
                             shapeStr(ta->getShape()) + " vs " +
                             shapeStr(tb->getShape()));
  if (failed(checkReduction(loc, op, reduction)))
    return failure();
  results.push_back(RankedTensorType::get({}, ta->getElementType()));
  return success();
}


/// The kinds of attribute soma ops take.
enum class AttrKind { Int, Bool, Float, String, I64Array, Elements };

struct AttrReq {
  const char *name;
  AttrKind kind;
  bool required;
};

/// Checks presence and kind of an op's attributes before any typed getter
/// reads them (a getter on a missing or mistyped attribute would crash on
/// hand-written IR).
LogicalResult checkAttrs(std::optional<Location> loc, StringRef op, DictionaryAttr attrs,
                         std::initializer_list<AttrReq> reqs) {
  for (const AttrReq &r : reqs) {
    Attribute a = attrs ? attrs.get(r.name) : Attribute();
    if (!a) {
      if (r.required)
        return fail(loc, op, Twine("missing attribute '") + r.name + "'");
      continue;
    }
    bool ok = false;
    const char *want = "";
    switch (r.kind) {
    case AttrKind::Int:
      ok = isa<IntegerAttr>(a) && !cast<IntegerAttr>(a).getType().isInteger(1);
      want = "an integer";
      break;
    case AttrKind::Bool:
      ok = isa<BoolAttr>(a);
      want = "a bool";
      break;
    case AttrKind::Float:
      ok = isa<FloatAttr>(a) && cast<FloatAttr>(a).getType().isF64();
      want = "an f64 float";
      break;
    case AttrKind::String:
      ok = isa<StringAttr>(a);
      want = "a string";
      break;
    case AttrKind::I64Array:
      ok = isa<DenseI64ArrayAttr>(a);
      want = "an array<i64: ...>";
      break;
    case AttrKind::Elements:
      ok = isa<ElementsAttr>(a);
      want = "a dense elements attribute";
      break;
    }
    if (!ok)
      return fail(loc, op, Twine("attribute '") + r.name + "' must be " + want);
  }
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
SOMA_UNARY_INFER(SiluOp, "silu")
SOMA_UNARY_INFER(GeluOp, "gelu")
SOMA_UNARY_INFER(GeluGradOp, "gelu_grad")
#undef SOMA_UNARY_INFER

LogicalResult EluOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                      SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "elu", adaptor.getAttributes(), {{"alpha", AttrKind::Float, false}})))
    return failure();
  return inferUnary(loc, "elu", adaptor.getInput(), results);
}

LogicalResult OneHotOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
                                         SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "one_hot", adaptor.getAttributes(), {{"classes", AttrKind::Int, true}})))
    return failure();
  auto t = tensorOf(loc, "one_hot", adaptor.getLabels(), "labels");
  if (failed(t))
    return failure();
  if (t->getRank() != 1 || !t->getElementType().isInteger())
    return fail(loc, "one_hot", "labels must be [N] i32 or i64, got " + typeStr(*t));
  // The attribute is an I64Attr, read back unsigned: -1 would be 2^64 - 1.
  auto classes = static_cast<int64_t>(adaptor.getClasses());
  if (classes < 1)
    return fail(loc, "one_hot", "classes must be >= 1, got " + Twine(classes));
  results.push_back(RankedTensorType::get({t->getDimSize(0), classes}, Float32Type::get(ctx)));
  return success();
}

LogicalResult LeakyReluOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "leaky_relu", adaptor.getAttributes(), {{"alpha", AttrKind::Float, false}})))
    return failure();
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
  if (failed(checkAttrs(loc, "matmul", adaptor.getAttributes(), {{"transpose_a", AttrKind::Bool, false}, {"transpose_b", AttrKind::Bool, false}})))
    return failure();
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
    if (failed(checkAttrs(loc, NAME, adaptor.getAttributes(),                  \
                          {{"axes", AttrKind::I64Array, true},                 \
                           {"keepdims", AttrKind::Bool, false}})))             \
      return failure();                                                        \
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
  if (failed(checkAttrs(loc, "reshape", adaptor.getAttributes(), {{"shape", AttrKind::I64Array, true}})))
    return failure();
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
  if (failed(checkAttrs(loc, "transpose", adaptor.getAttributes(), {{"perm", AttrKind::I64Array, true}})))
    return failure();
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
  if (failed(checkAttrs(loc, "broadcast_to", adaptor.getAttributes(), {{"shape", AttrKind::I64Array, true}})))
    return failure();
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
  if (failed(checkAttrs(loc, "slice", adaptor.getAttributes(), {{"starts", AttrKind::I64Array, true}, {"limits", AttrKind::I64Array, true}, {"strides", AttrKind::I64Array, true}})))
    return failure();
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
  if (failed(checkAttrs(loc, "concat", adaptor.getAttributes(), {{"axis", AttrKind::Int, true}})))
    return failure();
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
  if (failed(checkAttrs(loc, "constant", adaptor.getAttributes(), {{"value", AttrKind::Elements, true}})))
    return failure();
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

namespace {
/// A view that does not change its input's type is the input; one of a
/// splat constant is a splat constant.
OpFoldResult foldView(Value input, Attribute constant, Type type) {
  if (input.getType() == type)
    return input;
  auto splat = dyn_cast_or_null<SplatElementsAttr>(constant);
  auto ranked = dyn_cast<RankedTensorType>(type);
  if (splat && ranked)
    return SplatElementsAttr::get(ranked, splat.getSplatValue<Attribute>());
  return {};
}
} // namespace

OpFoldResult ReshapeOp::fold(FoldAdaptor adaptor) { return foldView(getInput(), adaptor.getInput(), getType()); }

OpFoldResult BroadcastToOp::fold(FoldAdaptor adaptor) {
  return foldView(getInput(), adaptor.getInput(), getType());
}

OpFoldResult MulOp::fold(FoldAdaptor adaptor) {
  auto one = [](Attribute a) {
    auto splat = dyn_cast_or_null<SplatElementsAttr>(a);
    return splat && splat.getElementType().isF32() && splat.getSplatValue<APFloat>().isExactlyValue(1.0);
  };
  if (one(adaptor.getRhs()) && getLhs().getType() == getType())
    return getLhs();
  if (one(adaptor.getLhs()) && getRhs().getType() == getType())
    return getRhs();
  return {};
}

//===----------------------------------------------------------------------===//
// Softmax family and losses
//===----------------------------------------------------------------------===//

static LogicalResult inferSoftmax(std::optional<Location> loc, StringRef op,
                                  Value input, int64_t axis,
                                  SmallVectorImpl<Type> &results, const char *name = "input") {
  auto t = f32TensorOf(loc, op, input, name);
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
  if (failed(checkAttrs(loc, "softmax", adaptor.getAttributes(), {{"axis", AttrKind::Int, true}})))
    return failure();
  return inferSoftmax(loc, "softmax", adaptor.getInput(), adaptor.getAxis(),
                      results);
}

LogicalResult LogSoftmaxOp::inferReturnTypes(MLIRContext *,
                                             std::optional<Location> loc,
                                             Adaptor adaptor,
                                             SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "log_softmax", adaptor.getAttributes(), {{"axis", AttrKind::Int, true}})))
    return failure();
  return inferSoftmax(loc, "log_softmax", adaptor.getInput(),
                      adaptor.getAxis(), results);
}

/// The output of a softmax or log-softmax and its gradient (softmax_grad,
/// log_softmax_grad): an `axis` attribute, the same shape.
template <class Adaptor>
static LogicalResult inferSoftmaxGrad(std::optional<Location> loc, StringRef op, Adaptor adaptor,
                                      SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(), {{"axis", AttrKind::Int, true}})))
    return failure();
  auto g = f32TensorOf(loc, op, adaptor.getGrad(), "grad");
  if (failed(g) || failed(inferSoftmax(loc, op, adaptor.getOutput(), adaptor.getAxis(), results, "output")))
    return failure();
  if (g->getShape() != cast<RankedTensorType>(results[0]).getShape())
    return fail(loc, op, "output and grad must have the same shape, got " + typeStr(results[0]) + " and " +
                             typeStr(*g));
  return success();
}

LogicalResult SoftmaxGradOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                              SmallVectorImpl<Type> &results) {
  return inferSoftmaxGrad(loc, "softmax_grad", adaptor, results);
}

LogicalResult LogSoftmaxGradOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                                 SmallVectorImpl<Type> &results) {
  return inferSoftmaxGrad(loc, "log_softmax_grad", adaptor, results);
}

LogicalResult SoftmaxCrossEntropyOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "softmax_cross_entropy", adaptor.getAttributes(), {{"reduction", AttrKind::String, false}})))
    return failure();
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
  if (failed(checkAttrs(loc, "mse", adaptor.getAttributes(), {{"reduction", AttrKind::String, false}})))
    return failure();
  return inferPairwiseLoss(loc, "mse", adaptor.getPrediction(),
                           adaptor.getTarget(), adaptor.getReduction(), results);
}

LogicalResult BinaryCrossEntropyOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "binary_cross_entropy", adaptor.getAttributes(), {{"reduction", AttrKind::String, false}})))
    return failure();
  return inferPairwiseLoss(loc, "binary_cross_entropy",
                           adaptor.getProbability(), adaptor.getTarget(),
                           adaptor.getReduction(), results);
}


//===----------------------------------------------------------------------===//
// Gradient control and non-differentiable ops
//===----------------------------------------------------------------------===//

LogicalResult StopGradientOp::inferReturnTypes(MLIRContext *,
                                               std::optional<Location> loc,
                                               Adaptor adaptor,
                                               SmallVectorImpl<Type> &results) {
  auto t = tensorOf(loc, "stop_gradient", adaptor.getInput(), "input");
  if (failed(t))
    return failure();
  results.push_back(*t);
  return success();
}

LogicalResult SignOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                       Adaptor adaptor, SmallVectorImpl<Type> &results) {
  return inferUnary(loc, "sign", adaptor.getInput(), results);
}

LogicalResult StepOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                       Adaptor adaptor, SmallVectorImpl<Type> &results) {
  return inferUnary(loc, "step", adaptor.getInput(), results);
}

LogicalResult RandomUniformOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                                Adaptor adaptor, SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "random_uniform", adaptor.getAttributes(),
                        {{"shape", AttrKind::I64Array, true}, {"seed", AttrKind::Int, true}})))
    return failure();
  auto c = f32TensorOf(loc, "random_uniform", adaptor.getCounter(), "counter");
  if (failed(c))
    return failure();
  if (c->getRank() != 0)
    return fail(loc, "random_uniform", "the counter must be a scalar (rank 0), got " + typeStr(*c));
  ArrayRef<int64_t> shape = adaptor.getShape();
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d <= 0)
      return fail(loc, "random_uniform", "shape " + shapeStr(shape) + " has a dimension < 1");
    n *= d;
    if (n >= (int64_t{1} << 32))
      return fail(loc, "random_uniform", "shape " + shapeStr(shape) + " has 2^32 elements or more");
  }
  results.push_back(RankedTensorType::get(shape, Float32Type::get(ctx)));
  return success();
}

LogicalResult DropoutOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                          Adaptor adaptor, SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "dropout", adaptor.getAttributes(),
                        {{"rate", AttrKind::Float, true}, {"seed", AttrKind::Int, true}})))
    return failure();
  double rate = adaptor.getRate().convertToDouble();
  if (!(rate >= 0.0 && rate < 1.0))
    return fail(loc, "dropout", "rate " + std::to_string(rate) + " is not in [0, 1)");
  return inferUnary(loc, "dropout", adaptor.getInput(), results);
}

LogicalResult EqualOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                        Adaptor adaptor, SmallVectorImpl<Type> &results) {
  auto a = tensorOf(loc, "equal", adaptor.getLhs(), "lhs");
  if (failed(a))
    return failure();
  auto b = tensorOf(loc, "equal", adaptor.getRhs(), "rhs");
  if (failed(b))
    return failure();
  // Integers of different widths compare by value (argmax's i32 against
  // i64 labels); floats only with floats.
  bool ints = a->getElementType().isInteger() && b->getElementType().isInteger();
  if (a->getElementType() != b->getElementType() && !ints)
    return fail(loc, "equal", "operands have different element types: " + typeStr(*a) +
                                  " and " + typeStr(*b));
  auto shape = broadcastShapes(a->getShape(), b->getShape());
  if (!shape)
    return fail(loc, "equal", "shapes cannot be broadcast: " + shapeStr(a->getShape()) +
                                  " and " + shapeStr(b->getShape()));
  results.push_back(RankedTensorType::get(*shape, Float32Type::get(ctx)));
  return success();
}

LogicalResult ArgmaxOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                         Adaptor adaptor, SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "argmax", adaptor.getAttributes(), {{"axis", AttrKind::Int, true}})))
    return failure();
  auto t = f32TensorOf(loc, "argmax", adaptor.getInput(), "input");
  if (failed(t))
    return failure();
  int64_t axis = adaptor.getAxis();
  if (axis < 0 || axis >= t->getRank())
    return fail(loc, "argmax", "axis " + Twine(axis) + " is out of range for shape " +
                                   shapeStr(t->getShape()));
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < t->getRank(); ++d)
    if (d != axis)
      shape.push_back(t->getDimSize(d));
  results.push_back(RankedTensorType::get(shape, IntegerType::get(ctx, 32)));
  return success();
}

LogicalResult PadOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                      Adaptor adaptor, SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "pad", adaptor.getAttributes(), {{"low", AttrKind::I64Array, true}, {"high", AttrKind::I64Array, true}, {"interior", AttrKind::I64Array, true}, {"value", AttrKind::Float, false}})))
    return failure();
  auto t = f32TensorOf(loc, "pad", adaptor.getInput(), "input");
  if (failed(t))
    return failure();
  ArrayRef<int64_t> low = adaptor.getLow(), high = adaptor.getHigh(),
                    interior = adaptor.getInterior();
  int64_t rank = t->getRank();
  if (static_cast<int64_t>(low.size()) != rank || static_cast<int64_t>(high.size()) != rank ||
      static_cast<int64_t>(interior.size()) != rank)
    return fail(loc, "pad", "low " + shapeStr(low) + ", high " + shapeStr(high) +
                                " and interior " + shapeStr(interior) +
                                " must each have one entry per dimension of " +
                                shapeStr(t->getShape()));
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < rank; ++d) {
    if (low[d] < 0 || high[d] < 0 || interior[d] < 0)
      return fail(loc, "pad", "paddings must be >= 0, got low " + shapeStr(low) + ", high " +
                                  shapeStr(high) + ", interior " + shapeStr(interior));
    int64_t n = t->getDimSize(d);
    shape.push_back(low[d] + n + (n - 1) * interior[d] + high[d]);
  }
  results.push_back(RankedTensorType::get(shape, t->getElementType()));
  return success();
}

/// The row maximum and sum of the logits are computed before any of the
/// row is written.
bool SoftmaxCrossEntropyGradOp::mayWriteOver(unsigned operand) { return operand == 0; }

LogicalResult SoftmaxCrossEntropyGradOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "softmax_cross_entropy_grad", adaptor.getAttributes(), {{"reduction", AttrKind::String, false}})))
    return failure();
  StringRef op = "softmax_cross_entropy_grad";
  SmallVector<Type> lossType;
  if (failed(SoftmaxCrossEntropyOp::inferReturnTypes(
          ctx, loc, SoftmaxCrossEntropyOp::Adaptor({adaptor.getLogits(), adaptor.getLabels()},
                                                   adaptor.getAttributes()),
          lossType)))
    return failure();
  auto g = f32TensorOf(loc, op, adaptor.getGrad(), "grad");
  if (failed(g))
    return failure();
  if (g->getRank() != 0)
    return fail(loc, op, "grad must be a scalar, got " + typeStr(*g));
  results.push_back(adaptor.getLogits().getType());
  return success();
}

//===----------------------------------------------------------------------===//
// Vector-Jacobian products
//===----------------------------------------------------------------------===//

namespace {

Value scalarConst(OpBuilder &b, Location loc, double v) {
  auto type = RankedTensorType::get({}, b.getF32Type());
  return b.create<ConstantOp>(loc, DenseElementsAttr::get(type, static_cast<float>(v)));
}

RankedTensorType typeOf(Value v) { return cast<RankedTensorType>(v.getType()); }

Value add(OpBuilder &b, Location l, Value x, Value y) { return b.create<AddOp>(l, x, y); }
Value sub(OpBuilder &b, Location l, Value x, Value y) { return b.create<SubOp>(l, x, y); }
Value mul(OpBuilder &b, Location l, Value x, Value y) { return b.create<MulOp>(l, x, y); }
Value div(OpBuilder &b, Location l, Value x, Value y) { return b.create<DivOp>(l, x, y); }

/// Sums a gradient of a broadcast result back to the operand's shape.
Value unbroadcast(OpBuilder &b, Location loc, Value g, RankedTensorType target) {
  auto gt = typeOf(g);
  if (gt.getShape() == target.getShape())
    return g;
  int64_t off = gt.getRank() - target.getRank();
  SmallVector<int64_t> axes;
  for (int64_t i = 0; i < gt.getRank(); ++i)
    if (i < off || (target.getDimSize(i - off) == 1 && gt.getDimSize(i) != 1))
      axes.push_back(i);
  Value r = g;
  if (!axes.empty())
    r = b.create<ReduceSumOp>(loc, g, b.getDenseI64ArrayAttr(axes), b.getBoolAttr(true));
  if (typeOf(r).getShape() != target.getShape())
    r = b.create<ReshapeOp>(loc, r, b.getDenseI64ArrayAttr(target.getShape()));
  return r;
}

/// The gradient of a reduction result, reshaped to keep the reduced dims as
/// size 1 and broadcast back to the input's shape.
Value expandReduced(OpBuilder &b, Location loc, Value g, RankedTensorType input,
                    ArrayRef<int64_t> axes, bool keepdims) {
  SmallVector<int64_t> kept(input.getShape());
  for (int64_t a : axes)
    kept[a] = 1;
  Value r = g;
  if (!keepdims)
    r = b.create<ReshapeOp>(loc, g, b.getDenseI64ArrayAttr(kept));
  return b.create<BroadcastToOp>(loc, r, b.getDenseI64ArrayAttr(input.getShape()));
}

} // namespace

#define SOMA_VJP(OP)                                                           \
  LogicalResult OP::buildVJP(OpBuilder &b, ValueRange resultGrads,             \
                             SmallVectorImpl<Value> &operandGrads)

SOMA_VJP(NegOp) {
  operandGrads.push_back(b.create<NegOp>(getLoc(), resultGrads[0]));
  return success();
}
SOMA_VJP(ExpOp) {
  operandGrads.push_back(mul(b, getLoc(), resultGrads[0], getResult()));
  return success();
}
SOMA_VJP(LogOp) {
  operandGrads.push_back(div(b, getLoc(), resultGrads[0], getInput()));
  return success();
}
SOMA_VJP(SqrtOp) { // g / (2 sqrt x)
  Location l = getLoc();
  operandGrads.push_back(div(b, l, resultGrads[0], mul(b, l, getResult(), scalarConst(b, l, 2.0))));
  return success();
}
SOMA_VJP(AbsOp) {
  operandGrads.push_back(mul(b, getLoc(), resultGrads[0], b.create<SignOp>(getLoc(), getInput())));
  return success();
}
SOMA_VJP(TanhOp) { // g (1 - y^2)
  Location l = getLoc();
  Value y = getResult();
  operandGrads.push_back(mul(b, l, resultGrads[0], sub(b, l, scalarConst(b, l, 1.0), mul(b, l, y, y))));
  return success();
}
SOMA_VJP(SigmoidOp) { // g y (1 - y)
  Location l = getLoc();
  Value y = getResult();
  operandGrads.push_back(mul(b, l, resultGrads[0], mul(b, l, y, sub(b, l, scalarConst(b, l, 1.0), y))));
  return success();
}
SOMA_VJP(ReluOp) { // relu'(0) = 0
  // The mask from the output: step(relu(x)) = step(x) (both 0 at x <= 0 and
  // for NaN), and the backward pass then keeps only the activation that
  // the next layer reads anyway, not the pre-activation too.
  operandGrads.push_back(mul(b, getLoc(), resultGrads[0], b.create<StepOp>(getLoc(), getResult())));
  return success();
}
SOMA_VJP(SoftplusOp) {
  operandGrads.push_back(mul(b, getLoc(), resultGrads[0], b.create<SigmoidOp>(getLoc(), getInput())));
  return success();
}
SOMA_VJP(SiluOp) { // s + x s (1 - s), s = sigmoid(x)
  Location l = getLoc();
  Value x = getInput(), s = b.create<SigmoidOp>(l, x);
  Value d = add(b, l, s, mul(b, l, mul(b, l, x, s), sub(b, l, scalarConst(b, l, 1.0), s)));
  operandGrads.push_back(mul(b, l, resultGrads[0], d));
  return success();
}
SOMA_VJP(GeluOp) { // gelu'(x) = Phi(x) + x phi(x), from its own op (no 0/0 at x = 0)
  Location l = getLoc();
  operandGrads.push_back(mul(b, l, resultGrads[0], b.create<GeluGradOp>(l, getInput())));
  return success();
}
SOMA_VJP(EluOp) { // 1 for x > 0, alpha e^x = y + alpha otherwise
  Location l = getLoc();
  double alpha = getAlpha().convertToDouble();
  Value pos = b.create<StepOp>(l, getInput());
  Value neg = add(b, l, getResult(), scalarConst(b, l, alpha));
  Value d = add(b, l, pos, mul(b, l, sub(b, l, scalarConst(b, l, 1.0), pos), neg));
  operandGrads.push_back(mul(b, l, resultGrads[0], d));
  return success();
}
SOMA_VJP(LeakyReluOp) { // g (alpha + (1 - alpha) step(x))
  Location l = getLoc();
  double alpha = getAlpha().convertToDouble();
  Value slope = add(b, l, scalarConst(b, l, alpha),
                    mul(b, l, b.create<StepOp>(l, getInput()), scalarConst(b, l, 1.0 - alpha)));
  operandGrads.push_back(mul(b, l, resultGrads[0], slope));
  return success();
}

SOMA_VJP(AddOp) {
  Location l = getLoc();
  Value g = resultGrads[0];
  operandGrads.push_back(unbroadcast(b, l, g, typeOf(getLhs())));
  operandGrads.push_back(unbroadcast(b, l, g, typeOf(getRhs())));
  return success();
}
SOMA_VJP(SubOp) {
  Location l = getLoc();
  Value g = resultGrads[0];
  operandGrads.push_back(unbroadcast(b, l, g, typeOf(getLhs())));
  operandGrads.push_back(unbroadcast(b, l, b.create<NegOp>(l, g), typeOf(getRhs())));
  return success();
}
SOMA_VJP(MulOp) {
  Location l = getLoc();
  Value g = resultGrads[0];
  operandGrads.push_back(unbroadcast(b, l, mul(b, l, g, getRhs()), typeOf(getLhs())));
  operandGrads.push_back(unbroadcast(b, l, mul(b, l, g, getLhs()), typeOf(getRhs())));
  return success();
}
SOMA_VJP(DivOp) { // d/da = g / b; d/db = -g a / b^2 = -g y / b
  Location l = getLoc();
  Value g = resultGrads[0];
  operandGrads.push_back(unbroadcast(b, l, div(b, l, g, getRhs()), typeOf(getLhs())));
  Value db = b.create<NegOp>(l, div(b, l, mul(b, l, g, getResult()), getRhs()));
  operandGrads.push_back(unbroadcast(b, l, db, typeOf(getRhs())));
  return success();
}
SOMA_VJP(PowOp) { // d/da = g b a^(b-1); d/db = g y log(a), taken as 0 where a == 0
  Location l = getLoc();
  Value g = resultGrads[0], a = getLhs(), e = getRhs(), y = getResult();
  Value da = mul(b, l, g, mul(b, l, e, b.create<PowOp>(l, a, sub(b, l, e, scalarConst(b, l, 1.0)))));
  Value safeA = add(b, l, a, b.create<EqualOp>(l, a, scalarConst(b, l, 0.0)));
  Value db = mul(b, l, g, mul(b, l, y, b.create<LogOp>(l, safeA)));
  operandGrads.push_back(unbroadcast(b, l, da, typeOf(a)));
  operandGrads.push_back(unbroadcast(b, l, db, typeOf(e)));
  return success();
}
/// maximum/minimum: the gradient goes to the selected operand; ties split it
/// evenly (as PyTorch does).
static void minMaxVJP(OpBuilder &b, Location l, Value a, Value c, Value g, bool isMax,
                      SmallVectorImpl<Value> &operandGrads) {
  Value diff = isMax ? sub(b, l, a, c) : sub(b, l, c, a);
  Value maskA = add(b, l, b.create<StepOp>(l, diff),
                    mul(b, l, b.create<EqualOp>(l, a, c), scalarConst(b, l, 0.5)));
  Value maskC = sub(b, l, scalarConst(b, l, 1.0), maskA);
  operandGrads.push_back(unbroadcast(b, l, mul(b, l, g, maskA), typeOf(a)));
  operandGrads.push_back(unbroadcast(b, l, mul(b, l, g, maskC), typeOf(c)));
}
SOMA_VJP(MaximumOp) {
  minMaxVJP(b, getLoc(), getLhs(), getRhs(), resultGrads[0], true, operandGrads);
  return success();
}
SOMA_VJP(MinimumOp) {
  minMaxVJP(b, getLoc(), getLhs(), getRhs(), resultGrads[0], false, operandGrads);
  return success();
}

SOMA_VJP(MatmulOp) {
  // C = op(A) op(B). For each flag combination the gradients are again
  // matmuls with flags, so no transpose is ever materialised here.
  Location l = getLoc();
  Value g = resultGrads[0], a = getLhs(), c = getRhs();
  bool ta = getTransposeA(), tb = getTransposeB();
  auto mm = [&](Value x, Value y, bool fx, bool fy) -> Value {
    return b.create<MatmulOp>(l, x, y, b.getBoolAttr(fx), b.getBoolAttr(fy));
  };
  if (!ta && !tb) { // dA = g B^T, dB = A^T g
    operandGrads.push_back(mm(g, c, false, true));
    operandGrads.push_back(mm(a, g, true, false));
  } else if (ta && !tb) { // C = A^T B: dA = B g^T, dB = A g
    operandGrads.push_back(mm(c, g, false, true));
    operandGrads.push_back(mm(a, g, false, false));
  } else if (!ta && tb) { // C = A B^T: dA = g B, dB = g^T A
    operandGrads.push_back(mm(g, c, false, false));
    operandGrads.push_back(mm(g, a, true, false));
  } else { // C = A^T B^T: dA = B^T g^T, dB = g^T A^T
    operandGrads.push_back(mm(c, g, true, true));
    operandGrads.push_back(mm(g, a, true, true));
  }
  return success();
}

SOMA_VJP(ReduceSumOp) {
  operandGrads.push_back(expandReduced(b, getLoc(), resultGrads[0], typeOf(getInput()),
                                       getAxes(), getKeepdims()));
  return success();
}
SOMA_VJP(ReduceMeanOp) {
  Location l = getLoc();
  auto in = typeOf(getInput());
  int64_t count = 1;
  for (int64_t a : getAxes())
    count *= in.getDimSize(a);
  Value g = expandReduced(b, l, resultGrads[0], in, getAxes(), getKeepdims());
  operandGrads.push_back(mul(b, l, g, scalarConst(b, l, 1.0 / static_cast<double>(count))));
  return success();
}
SOMA_VJP(ReduceMaxOp) { // to the maxima, split evenly among ties
  Location l = getLoc();
  auto in = typeOf(getInput());
  Value y = expandReduced(b, l, getResult(), in, getAxes(), getKeepdims());
  Value g = expandReduced(b, l, resultGrads[0], in, getAxes(), getKeepdims());
  Value mask = b.create<EqualOp>(l, getInput(), y);
  Value count = b.create<ReduceSumOp>(l, mask, b.getDenseI64ArrayAttr(getAxes()), b.getBoolAttr(true));
  operandGrads.push_back(div(b, l, mul(b, l, g, mask), count));
  return success();
}

SOMA_VJP(ReshapeOp) {
  operandGrads.push_back(b.create<ReshapeOp>(getLoc(), resultGrads[0],
                                             b.getDenseI64ArrayAttr(typeOf(getInput()).getShape())));
  return success();
}
SOMA_VJP(TransposeOp) {
  ArrayRef<int64_t> perm = getPerm();
  SmallVector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    inverse[perm[i]] = static_cast<int64_t>(i);
  operandGrads.push_back(b.create<TransposeOp>(getLoc(), resultGrads[0], b.getDenseI64ArrayAttr(inverse)));
  return success();
}
SOMA_VJP(BroadcastToOp) {
  operandGrads.push_back(unbroadcast(b, getLoc(), resultGrads[0], typeOf(getInput())));
  return success();
}
SOMA_VJP(SliceOp) { // scatter back: pad with the slice's start, stride-1 gaps and the rest
  auto in = typeOf(getInput());
  auto out = typeOf(getResult());
  SmallVector<int64_t> low, high, interior;
  for (int64_t d = 0; d < in.getRank(); ++d) {
    int64_t start = getStarts()[d], stride = getStrides()[d], n = out.getDimSize(d);
    low.push_back(start);
    interior.push_back(stride - 1);
    high.push_back(in.getDimSize(d) - (start + (n - 1) * stride + 1));
  }
  operandGrads.push_back(b.create<PadOp>(getLoc(), resultGrads[0], b.getDenseI64ArrayAttr(low),
                                         b.getDenseI64ArrayAttr(high),
                                         b.getDenseI64ArrayAttr(interior), b.getF64FloatAttr(0.0)));
  return success();
}
SOMA_VJP(ConcatOp) {
  auto out = typeOf(getResult());
  int64_t axis = getAxis(), offset = 0;
  for (Value in : getInputs()) {
    auto t = typeOf(in);
    SmallVector<int64_t> starts(out.getRank(), 0), limits(out.getShape()), strides(out.getRank(), 1);
    starts[axis] = offset;
    limits[axis] = offset + t.getDimSize(axis);
    offset += t.getDimSize(axis);
    if (!t.getElementType().isF32()) {
      operandGrads.push_back(Value());
      continue;
    }
    operandGrads.push_back(b.create<SliceOp>(getLoc(), resultGrads[0], b.getDenseI64ArrayAttr(starts),
                                             b.getDenseI64ArrayAttr(limits),
                                             b.getDenseI64ArrayAttr(strides)));
  }
  return success();
}
SOMA_VJP(StopGradientOp) {
  operandGrads.push_back(Value());
  return success();
}
SOMA_VJP(PadOp) { // the padded interior: a strided slice
  auto in = typeOf(getInput());
  SmallVector<int64_t> starts, limits, strides;
  for (int64_t d = 0; d < in.getRank(); ++d) {
    int64_t step = getInterior()[d] + 1;
    starts.push_back(getLow()[d]);
    limits.push_back(getLow()[d] + (in.getDimSize(d) - 1) * step + 1);
    strides.push_back(step);
  }
  operandGrads.push_back(b.create<SliceOp>(getLoc(), resultGrads[0], b.getDenseI64ArrayAttr(starts),
                                           b.getDenseI64ArrayAttr(limits),
                                           b.getDenseI64ArrayAttr(strides)));
  return success();
}

SOMA_VJP(SoftmaxOp) { // dx = y (g - sum(g y, axis)), one op
  operandGrads.push_back(b.create<SoftmaxGradOp>(getLoc(), getResult(), resultGrads[0], getAxisAttr()));
  return success();
}
SOMA_VJP(LogSoftmaxOp) { // dx = g - softmax(x) sum(g, axis), one op
  operandGrads.push_back(b.create<LogSoftmaxGradOp>(getLoc(), getResult(), resultGrads[0], getAxisAttr()));
  return success();
}
SOMA_VJP(SoftmaxCrossEntropyOp) { // the fused (softmax - onehot) / N
  operandGrads.push_back(b.create<SoftmaxCrossEntropyGradOp>(getLoc(), getLogits(), getLabels(),
                                                             resultGrads[0], getReductionAttr()));
  operandGrads.push_back(Value());
  return success();
}
SOMA_VJP(MseOp) { // dp = g 2 (p - t) / n; dt = -dp
  Location l = getLoc();
  double n = getReduction() == "mean" ? static_cast<double>(typeOf(getPrediction()).getNumElements()) : 1.0;
  Value dp = mul(b, l, mul(b, l, sub(b, l, getPrediction(), getTarget()), scalarConst(b, l, 2.0 / n)),
                 resultGrads[0]);
  operandGrads.push_back(dp);
  operandGrads.push_back(b.create<NegOp>(l, dp));
  return success();
}
SOMA_VJP(BinaryCrossEntropyOp) {
  // dp = g (p - t) / max(p (1 - p), 1e-12) / n
  // dt = g (max(log(1 - p), -100) - max(log p, -100)) / n
  Location l = getLoc();
  Value p = getProbability(), t = getTarget(), g = resultGrads[0];
  double n = getReduction() == "mean" ? static_cast<double>(typeOf(p).getNumElements()) : 1.0;
  Value one = scalarConst(b, l, 1.0), floor = scalarConst(b, l, -100.0);
  Value q = sub(b, l, one, p);
  Value denom = b.create<MaximumOp>(l, mul(b, l, p, q), scalarConst(b, l, 1e-12));
  Value dp = mul(b, l, div(b, l, sub(b, l, p, t), denom), mul(b, l, g, scalarConst(b, l, 1.0 / n)));
  Value lp = b.create<MaximumOp>(l, b.create<LogOp>(l, p), floor);
  Value lq = b.create<MaximumOp>(l, b.create<LogOp>(l, q), floor);
  Value dt = mul(b, l, sub(b, l, lq, lp), mul(b, l, g, scalarConst(b, l, 1.0 / n)));
  operandGrads.push_back(dp);
  operandGrads.push_back(dt);
  return success();
}
#undef SOMA_VJP


//===----------------------------------------------------------------------===//
// Convolution and pooling
//===----------------------------------------------------------------------===//

namespace {

/// Checks window attributes: `kernel` (if given) and `dilation` have 2
/// entries >= 1, `stride` 2 entries >= 1, `padding` 4 entries >= 0.
LogicalResult checkWindow(std::optional<Location> loc, StringRef op, ArrayRef<int64_t> kernel,
                          ArrayRef<int64_t> stride, ArrayRef<int64_t> padding,
                          ArrayRef<int64_t> dilation) {
  auto positive = [&](ArrayRef<int64_t> v, const char *name, size_t n) -> LogicalResult {
    if (v.size() != n)
      return fail(loc, op, Twine(name) + " needs " + Twine(n) + " values, got " + shapeStr(v));
    for (int64_t x : v)
      if (x < 1)
        return fail(loc, op, Twine(name) + " must be >= 1, got " + shapeStr(v));
    return success();
  };
  if (!kernel.empty() && failed(positive(kernel, "kernel", 2)))
    return failure();
  if (failed(positive(stride, "stride", 2)) || failed(positive(dilation, "dilation", 2)))
    return failure();
  if (padding.size() != 4)
    return fail(loc, op, "padding needs 4 values [top, left, bottom, right], got " + shapeStr(padding));
  for (int64_t p : padding)
    if (p < 0)
      return fail(loc, op, "padding must be >= 0, got " + shapeStr(padding));
  return success();
}

/// The output size of a window sweep, or a failure naming the sizes.
FailureOr<std::pair<int64_t, int64_t>>
windowOutput(std::optional<Location> loc, StringRef op, int64_t h, int64_t w,
             ArrayRef<int64_t> kernel, ArrayRef<int64_t> stride, ArrayRef<int64_t> padding,
             ArrayRef<int64_t> dilation) {
  int64_t ekh = dilation[0] * (kernel[0] - 1) + 1, ekw = dilation[1] * (kernel[1] - 1) + 1;
  int64_t ph = h + padding[0] + padding[2], pw = w + padding[1] + padding[3];
  if (ekh > ph || ekw > pw)
    return fail(loc, op, "the " + Twine(kernel[0]) + "x" + Twine(kernel[1]) + " window (dilation " +
                             shapeStr(dilation) + ") does not fit the " + Twine(h) + "x" + Twine(w) +
                             " input with padding " + shapeStr(padding) +
                             ": the output would be empty");
  return std::make_pair((ph - ekh) / stride[0] + 1, (pw - ekw) / stride[1] + 1);
}

const std::initializer_list<AttrReq> kPoolAttrs = {{"kernel", AttrKind::I64Array, true},
                                                   {"stride", AttrKind::I64Array, true},
                                                   {"padding", AttrKind::I64Array, true}};

LogicalResult inferPool(std::optional<Location> loc, StringRef op, Value input,
                        ArrayRef<int64_t> kernel, ArrayRef<int64_t> stride,
                        ArrayRef<int64_t> padding, SmallVectorImpl<Type> &results) {
  auto t = f32TensorOf(loc, op, input, "input");
  if (failed(t))
    return failure();
  if (t->getRank() != 4)
    return fail(loc, op, "input must be [N, C, H, W], got " + shapeStr(t->getShape()));
  int64_t one[] = {1, 1};
  if (failed(checkWindow(loc, op, kernel, stride, padding, one)))
    return failure();
  auto out = windowOutput(loc, op, t->getDimSize(2), t->getDimSize(3), kernel, stride, padding, one);
  if (failed(out))
    return failure();
  results.push_back(RankedTensorType::get(
      {t->getDimSize(0), t->getDimSize(1), out->first, out->second}, t->getElementType()));
  return success();
}

} // namespace

LogicalResult Conv2dOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                         Adaptor adaptor, SmallVectorImpl<Type> &results) {
  StringRef op = "conv2d";
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(),
                        {{"stride", AttrKind::I64Array, true}, {"padding", AttrKind::I64Array, true},
                         {"dilation", AttrKind::I64Array, true}, {"groups", AttrKind::Int, false}})))
    return failure();
  auto x = f32TensorOf(loc, op, adaptor.getInput(), "input");
  if (failed(x))
    return failure();
  auto w = f32TensorOf(loc, op, adaptor.getFilter(), "filter");
  if (failed(w))
    return failure();
  if (x->getRank() != 4)
    return fail(loc, op, "input must be [N, C, H, W], got " + shapeStr(x->getShape()));
  if (w->getRank() != 4)
    return fail(loc, op, "filter must be [K, C/groups, KH, KW], got " + shapeStr(w->getShape()));
  int64_t groups = adaptor.getGroups();
  int64_t c = x->getDimSize(1), k = w->getDimSize(0);
  if (groups < 1)
    return fail(loc, op, "groups must be >= 1, got " + Twine(groups));
  if (c % groups != 0 || k % groups != 0)
    return fail(loc, op, "groups " + Twine(groups) + " must divide the input channels (" + Twine(c) +
                             ") and the output channels (" + Twine(k) + ")");
  if (w->getDimSize(1) * groups != c)
    return fail(loc, op, "filter " + shapeStr(w->getShape()) + " expects " +
                             Twine(w->getDimSize(1) * groups) + " input channels (groups " +
                             Twine(groups) + "), the input " + shapeStr(x->getShape()) + " has " +
                             Twine(c));
  int64_t kernel[] = {w->getDimSize(2), w->getDimSize(3)};
  if (failed(checkWindow(loc, op, kernel, adaptor.getStride(), adaptor.getPadding(),
                         adaptor.getDilation())))
    return failure();
  auto out = windowOutput(loc, op, x->getDimSize(2), x->getDimSize(3), kernel, adaptor.getStride(),
                          adaptor.getPadding(), adaptor.getDilation());
  if (failed(out))
    return failure();
  results.push_back(RankedTensorType::get({x->getDimSize(0), k, out->first, out->second},
                                          x->getElementType()));
  return success();
}

LogicalResult MaxPool2dOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                            Adaptor adaptor, SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "max_pool2d", adaptor.getAttributes(), kPoolAttrs)))
    return failure();
  return inferPool(loc, "max_pool2d", adaptor.getInput(), adaptor.getKernel(), adaptor.getStride(),
                   adaptor.getPadding(), results);
}

LogicalResult MaxPool2dGradOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                                Adaptor adaptor, SmallVectorImpl<Type> &results) {
  StringRef op = "max_pool2d_grad";
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(),
                        {{"kernel", AttrKind::I64Array, true}, {"relu", AttrKind::Bool, false}})))
    return failure();
  auto x = f32TensorOf(loc, op, adaptor.getInput(), "input");
  auto y = f32TensorOf(loc, op, adaptor.getOutput(), "output");
  auto g = f32TensorOf(loc, op, adaptor.getGrad(), "grad");
  if (failed(x) || failed(y) || failed(g))
    return failure();
  ArrayRef<int64_t> k = adaptor.getKernel();
  int64_t zero[] = {0, 0, 0, 0};
  if (x->getRank() != 4 || k.size() != 2 || !tilesInput(x->getShape(), k, k, zero))
    return fail(loc, op, "the windows " + shapeStr(k) + " must tile the input and be at most 2 wide, got " +
                             shapeStr(x->getShape()));
  ArrayRef<int64_t> xs = x->getShape();
  SmallVector<int64_t> ys{xs[0], xs[1], xs[2] / k[0], xs[3] / k[1]};
  if (y->getShape() != ArrayRef<int64_t>(ys) || g->getShape() != ArrayRef<int64_t>(ys))
    return fail(loc, op, "output and grad must be " + shapeStr(ys) + ", got " + shapeStr(y->getShape()) + " and " +
                             shapeStr(g->getShape()));
  results.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult AvgPool2dOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                            Adaptor adaptor, SmallVectorImpl<Type> &results) {
  if (failed(checkAttrs(loc, "avg_pool2d", adaptor.getAttributes(), kPoolAttrs)))
    return failure();
  return inferPool(loc, "avg_pool2d", adaptor.getInput(), adaptor.getKernel(), adaptor.getStride(),
                   adaptor.getPadding(), results);
}

LogicalResult Im2colOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                         Adaptor adaptor, SmallVectorImpl<Type> &results) {
  StringRef op = "im2col";
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(),
                        {{"kernel", AttrKind::I64Array, true}, {"stride", AttrKind::I64Array, true},
                         {"padding", AttrKind::I64Array, true}, {"dilation", AttrKind::I64Array, true},
                         {"pad_value", AttrKind::Float, false}})))
    return failure();
  auto x = f32TensorOf(loc, op, adaptor.getInput(), "input");
  if (failed(x))
    return failure();
  if (x->getRank() != 4)
    return fail(loc, op, "input must be [N, C, H, W], got " + shapeStr(x->getShape()));
  if (failed(checkWindow(loc, op, adaptor.getKernel(), adaptor.getStride(), adaptor.getPadding(),
                         adaptor.getDilation())))
    return failure();
  auto out = windowOutput(loc, op, x->getDimSize(2), x->getDimSize(3), adaptor.getKernel(),
                          adaptor.getStride(), adaptor.getPadding(), adaptor.getDilation());
  if (failed(out))
    return failure();
  ArrayRef<int64_t> k = adaptor.getKernel();
  results.push_back(RankedTensorType::get(
      {x->getDimSize(1) * k[0] * k[1], x->getDimSize(0) * out->first * out->second},
      x->getElementType()));
  return success();
}

LogicalResult Col2imOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                         Adaptor adaptor, SmallVectorImpl<Type> &results) {
  StringRef op = "col2im";
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(),
                        {{"image_shape", AttrKind::I64Array, true}, {"kernel", AttrKind::I64Array, true},
                         {"stride", AttrKind::I64Array, true}, {"padding", AttrKind::I64Array, true},
                         {"dilation", AttrKind::I64Array, true}})))
    return failure();
  auto cols = f32TensorOf(loc, op, adaptor.getInput(), "input");
  if (failed(cols))
    return failure();
  ArrayRef<int64_t> image = adaptor.getImageShape(), k = adaptor.getKernel();
  if (image.size() != 4)
    return fail(loc, op, "image_shape must be [N, C, H, W], got " + shapeStr(image));
  if (failed(checkWindow(loc, op, k, adaptor.getStride(), adaptor.getPadding(), adaptor.getDilation())))
    return failure();
  auto out = windowOutput(loc, op, image[2], image[3], k, adaptor.getStride(), adaptor.getPadding(),
                          adaptor.getDilation());
  if (failed(out))
    return failure();
  SmallVector<int64_t> want{image[1] * k[0] * k[1], image[0] * out->first * out->second};
  if (cols->getShape() != ArrayRef<int64_t>(want))
    return fail(loc, op, "columns " + shapeStr(cols->getShape()) + " do not match image " +
                             shapeStr(image) + " and its windows (expected " + shapeStr(want) + ")");
  results.push_back(RankedTensorType::get(image, cols->getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Decompositions: convolution and pooling as im2col + matmul / reductions
//===----------------------------------------------------------------------===//

namespace soma::ir {

namespace {
Value reshapeTo(OpBuilder &b, Location l, Value v, ArrayRef<int64_t> shape) {
  return b.create<ReshapeOp>(l, v, b.getDenseI64ArrayAttr(shape));
}
Value transposeTo(OpBuilder &b, Location l, Value v, ArrayRef<int64_t> perm) {
  return b.create<TransposeOp>(l, v, b.getDenseI64ArrayAttr(perm));
}
ArrayRef<int64_t> shapeOf(Value v) { return cast<RankedTensorType>(v.getType()).getShape(); }
} // namespace

Value decomposeConv2d(OpBuilder &b, Conv2dOp op) {
  // One product per image n and group g (batch entry n*G + g), so that the
  // products are the output in NCHW order and the result is a reshape of
  // them, not a transpose: y[n, g] = W[g] x cols(x[n], g), with
  //   cols = im2col(x) [G*R, N*P] (R = C/G*KH*KW, P = OH*OW) viewed as
  //          [G, R, N, P] -> [N, G, R, P] -> [N*G, R, P],
  //   W    [K, C/G, KH, KW] viewed as [1, G, K/G, R], broadcast to
  //        [N, G, K/G, R] -> [N*G, K/G, R],
  //   y    = the products [N*G, K/G, P] as [N, K, OH, OW].
  // soma-fuse moves both views into the matmul's fusion (GemmView
  // ImageColumns and Broadcast): the packing gathers the windows of each
  // image and reads the one filter for every image; neither view is
  // stored, and the output's consumers (bias, batch norm's scale and
  // shift, activation, residual add) become the GEMM's epilogue.
  Location l = op.getLoc();
  ArrayRef<int64_t> w = shapeOf(op.getFilter()), y = shapeOf(op.getResult());
  int64_t g = op.getGroups(), r = w[1] * w[2] * w[3], n = y[0], p = y[2] * y[3];
  int64_t kernel[] = {w[2], w[3]};
  Value cols = b.create<Im2colOp>(l, op.getInput(), b.getDenseI64ArrayAttr(kernel), op.getStrideAttr(),
                                  op.getPaddingAttr(), op.getDilationAttr(), b.getF64FloatAttr(0.0));
  Value perImage = reshapeTo(b, l, transposeTo(b, l, reshapeTo(b, l, cols, {g, r, n, p}), {2, 0, 1, 3}),
                             {n * g, r, p});
  Value filter = reshapeTo(
      b, l,
      b.create<BroadcastToOp>(l, reshapeTo(b, l, op.getFilter(), {1, g, w[0] / g, r}),
                              b.getDenseI64ArrayAttr({n, g, w[0] / g, r})),
      {n * g, w[0] / g, r});
  Value products = b.create<MatmulOp>(l, filter, perImage, b.getBoolAttr(false), b.getBoolAttr(false));
  return reshapeTo(b, l, products, y);
}

/// The windows of a pooling op as [C, KH*KW, N*OH*OW].
static Value poolWindows(OpBuilder &b, Location l, Value input, ArrayRef<int64_t> kernel,
                         DenseI64ArrayAttr stride, DenseI64ArrayAttr padding, ArrayRef<int64_t> out,
                         double padValue) {
  ArrayRef<int64_t> x = shapeOf(input);
  int64_t one[] = {1, 1};
  Value cols = b.create<Im2colOp>(l, input, b.getDenseI64ArrayAttr(kernel), stride, padding,
                                  b.getDenseI64ArrayAttr(one), b.getF64FloatAttr(padValue));
  return reshapeTo(b, l, cols, {x[1], kernel[0] * kernel[1], out[0] * out[2] * out[3]});
}

/// [C, 1, P] or [C, P] -> [N, C, OH, OW].
static Value windowsToImage(OpBuilder &b, Location l, Value v, ArrayRef<int64_t> out) {
  return transposeTo(b, l, reshapeTo(b, l, v, {out[1], out[0], out[2], out[3]}), {1, 0, 2, 3});
}

LogicalResult AvgPool2dGradOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                                Adaptor adaptor, SmallVectorImpl<Type> &results) {
  StringRef op = "avg_pool2d_grad";
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(), {{"kernel", AttrKind::I64Array, true}})))
    return failure();
  auto g = f32TensorOf(loc, op, adaptor.getGrad(), "grad");
  if (failed(g))
    return failure();
  ArrayRef<int64_t> k = adaptor.getKernel(), gs = g->getShape();
  if (g->getRank() != 4 || k.size() != 2 || k[0] < 1 || k[1] < 1 || k[1] > 2)
    return fail(loc, op, "grad must be [N, C, OH, OW] and the windows at most 2 wide, got grad " + shapeStr(gs) +
                             " and kernel " + shapeStr(k));
  results.push_back(RankedTensorType::get({gs[0], gs[1], gs[2] * k[0], gs[3] * k[1]}, g->getElementType()));
  return success();
}

/// [N, C, OH, OW] -> [C, 1, N*OH*OW].
static Value imageToWindows(OpBuilder &b, Location l, Value v) {
  ArrayRef<int64_t> s = shapeOf(v);
  return reshapeTo(b, l, transposeTo(b, l, v, {1, 0, 2, 3}), {s[1], 1, s[0] * s[2] * s[3]});
}

bool tilesInput(ArrayRef<int64_t> x, ArrayRef<int64_t> kernel, ArrayRef<int64_t> stride,
                ArrayRef<int64_t> padding) {
  return x.size() == 4 && kernel.size() == 2 && stride.size() == 2 && padding.size() == 4 && kernel[0] > 0 &&
         kernel[1] > 0 && kernel[1] <= 2 && stride[0] == kernel[0] && stride[1] == kernel[1] &&
         llvm::all_of(padding, [](int64_t p) { return p == 0; }) && x[2] % kernel[0] == 0 && x[3] % kernel[1] == 0;
}

bool isTilingPool(Operation *op) {
  auto tiles = [](auto pool) {
    return tilesInput(shapeOf(pool.getInput()), pool.getKernel(), pool.getStride(), pool.getPadding());
  };
  if (auto m = dyn_cast<MaxPool2dOp>(op))
    return tiles(m);
  if (auto a = dyn_cast<AvgPool2dOp>(op))
    return tiles(a);
  return false;
}

Value decomposeMaxPool2d(OpBuilder &b, MaxPool2dOp op) {
  Location l = op.getLoc();
  Value win = poolWindows(b, l, op.getInput(), op.getKernel(), op.getStrideAttr(), op.getPaddingAttr(),
                          shapeOf(op.getResult()), -std::numeric_limits<double>::infinity());
  int64_t axes[] = {1};
  Value m = b.create<ReduceMaxOp>(l, win, b.getDenseI64ArrayAttr(axes), b.getBoolAttr(false));
  return windowsToImage(b, l, m, shapeOf(op.getResult()));
}

Value decomposeAvgPool2d(OpBuilder &b, AvgPool2dOp op) {
  Location l = op.getLoc();
  Value win = poolWindows(b, l, op.getInput(), op.getKernel(), op.getStrideAttr(), op.getPaddingAttr(),
                          shapeOf(op.getResult()), 0.0);
  int64_t axes[] = {1};
  Value m = b.create<ReduceMeanOp>(l, win, b.getDenseI64ArrayAttr(axes), b.getBoolAttr(false));
  return windowsToImage(b, l, m, shapeOf(op.getResult()));
}

//===----------------------------------------------------------------------===//
// Views a contraction computes in its packing
//===----------------------------------------------------------------------===//

GemmView matchGemmView(Value v) {
  GemmView m;
  m.source = v;
  auto reshape = v.getDefiningOp<ReshapeOp>();
  if (!reshape || shapeOf(v).size() != 3)
    return m;
  ArrayRef<int64_t> s = shapeOf(v);
  Value in = reshape.getInput();
  // Columns: im2col(x) [G*R, N*P] as [G, R, N*P].
  if (auto cols = in.getDefiningOp<Im2colOp>()) {
    if (s[2] == shapeOf(cols.getResult())[1]) {
      m.kind = GemmViewKind::Columns;
      m.source = cols.getInput();
      m.ops = {cols, reshape};
      m.groups = s[0];
    }
    return m;
  }
  auto transpose = in.getDefiningOp<TransposeOp>();
  if (transpose) {
    ArrayRef<int64_t> perm = transpose.getPerm();
    Value tin = transpose.getInput();
    ArrayRef<int64_t> ts = shapeOf(tin);
    if (ts.size() != 4)
      return m;
    // ImageColumns: im2col(x) as [G, R, N, P] -> [N, G, R, P] -> [N*G, R, P].
    auto split = tin.getDefiningOp<ReshapeOp>();
    auto cols = split ? split.getInput().getDefiningOp<Im2colOp>() : Im2colOp();
    if (cols && perm == ArrayRef<int64_t>{2, 0, 1, 3}) {
      ArrayRef<int64_t> x = shapeOf(cols.getInput());
      if (ts[2] == x[0] && s[0] == ts[2] * ts[0] && s[1] == ts[1] && s[2] == ts[3]) {
        m.kind = GemmViewKind::ImageColumns;
        m.source = cols.getInput();
        m.ops = {cols, split, transpose, reshape};
        m.groups = ts[0];
      }
      return m;
    }
    // ChannelMajor: y [N, K, H, W] -> [K, N, H, W] -> [G, K/G, N*H*W].
    if (perm == ArrayRef<int64_t>{1, 0, 2, 3} && s[0] * s[1] == ts[1] && s[2] == ts[0] * ts[2] * ts[3]) {
      m.kind = GemmViewKind::ChannelMajor;
      m.source = tin;
      m.ops = {transpose, reshape};
      m.groups = s[0];
    }
    return m;
  }
  // Broadcast: w as [1, G, M, K] broadcast to [N, G, M, K] -> [N*G, M, K].
  if (auto bc = in.getDefiningOp<BroadcastToOp>()) {
    auto lift = bc.getInput().getDefiningOp<ReshapeOp>();
    ArrayRef<int64_t> bs = shapeOf(bc.getResult());
    if (!lift || bs.size() != 4 || shapeOf(lift.getResult()) != ArrayRef<int64_t>{1, bs[1], bs[2], bs[3]})
      return m;
    if (s[0] != bs[0] * bs[1] || s[1] != bs[2] || s[2] != bs[3])
      return m;
    m.kind = GemmViewKind::Broadcast;
    m.source = lift.getInput();
    m.ops = {lift, bc, reshape};
    m.groups = bs[1];
  }
  return m;
}

std::optional<SmallVector<int64_t>> broadcastShapes(ArrayRef<int64_t> a, ArrayRef<int64_t> b) {
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

std::optional<SmallVector<SmallVector<int64_t, 2>, 4>> expandGroups(ArrayRef<int64_t> product,
                                                                    ArrayRef<int64_t> view) {
  SmallVector<SmallVector<int64_t, 2>, 4> groups;
  size_t j = 0;
  for (int64_t d : product) {
    // At least one view dimension, then more while the run is short.
    SmallVector<int64_t, 2> run;
    int64_t size = 1;
    do {
      if (j == view.size())
        return std::nullopt;
      size *= view[j];
      run.push_back(j++);
    } while (size < d);
    if (size != d)
      return std::nullopt;
    groups.push_back(run);
  }
  // Trailing size-1 view dimensions join the last run.
  for (; j < view.size(); ++j) {
    if (view[j] != 1 || groups.empty())
      return std::nullopt;
    groups.back().push_back(j);
  }
  return groups;
}

std::optional<SmallVector<int64_t, 4>> collapseBroadcast(ArrayRef<int64_t> operand, ArrayRef<int64_t> view,
                                                         ArrayRef<SmallVector<int64_t, 2>> groups) {
  if (operand.size() > view.size())
    return std::nullopt;
  size_t lead = view.size() - operand.size();
  SmallVector<int64_t, 4> out;
  for (const auto &run : groups) {
    bool ones = true, full = true;
    int64_t size = 1;
    for (int64_t d : run) {
      int64_t e = d < static_cast<int64_t>(lead) ? 1 : operand[d - lead];
      ones &= e == 1;
      full &= e == view[d];
      size *= view[d];
    }
    if (ones)
      out.push_back(1);
    else if (full)
      out.push_back(size);
    else
      return std::nullopt;
  }
  return out;
}

} // namespace soma::ir

//===----------------------------------------------------------------------===//
// VJPs of convolution and pooling
//===----------------------------------------------------------------------===//

LogicalResult Conv2dOp::buildVJP(OpBuilder &b, ValueRange resultGrads,
                                 SmallVectorImpl<Value> &operandGrads) {
  // With cols = im2col(x) as [G, R, P] and the filter as [G, K/G, R]:
  //   dW = dY x cols^T            (the filter gradient, as a matmul)
  //   dX = col2im(W^T x dY)       (the input gradient, scattered back)
  //
  // With stride 1 and one group, dX is instead the convolution of dY, padded
  // by (k - 1) * d - pad on each side, with the filter flipped in both
  // kernel axes and its two channel axes swapped:
  //   dX[n, c, h, w] = sum_{m, u, v} dY[n, m, h + pt - u*dh, w + pl - v*dw] W[m, c, u, v]
  // a forward convolution, which becomes an implicit-im2col GEMM writing
  // [Cin, N*H*W] (the same multiply-adds as W^T x dY, but no columns
  // buffer of Cin*KH*KW x N*OH*OW and no col2im pass over it). The flip is
  // a product with the exchange matrix J (J[a][b] = 1 iff a + b = KH*KW - 1),
  // exact since every output is one element times 1 plus zeros. Only from
  // 16 input channels or 16 filters: with fewer filters of the transposed
  // convolution (the input channels) but at least 16 channels (dY's), the
  // lowering computes it on its grid or, where it has none (an output
  // wider than dY: left + right padding below kw - 1, as in "valid"
  // convolutions), along the channels (DirectConv.cpp). As an
  // implicit-im2col GEMM, which it still is where no direct path takes it
  // (with 16 input channels or more, not new), whose rows are the input
  // channels, few of them used the gathered panels too little to pay for
  // their packing (1 thread: LeNet-5's conv2, 6 input channels, made its
  // training step 4.7 -> 6.2 ms then). Against col2im(W^T x dY), 2 threads,
  // the input gradient alone (median ms): LeNet-5's conv2 (6 -> 16, 5 x 5,
  // valid, batch 64) 0.185 -> 0.118; 8 -> 16, 3 x 3, same, 32 x 32, batch
  // 32: 0.626 -> 0.233; 3 -> 16 0.205 -> 0.119; 1 -> 16 at 28 x 28 0.068
  // -> 0.055; 8 -> 64 at 56 x 56, batch 8: 1.02 -> 0.59.
  Location l = getLoc();
  ArrayRef<int64_t> x = shapeOf(getInput()), w = shapeOf(getFilter()), y = shapeOf(getResult());
  int64_t g = getGroups(), r = w[1] * w[2] * w[3], p = y[0] * y[2] * y[3];
  int64_t kernel[] = {w[2], w[3]};
  ArrayRef<int64_t> stride = getStride(), pad = getPadding(), dil = getDilation();
  int64_t reach[] = {(w[2] - 1) * dil[0], (w[3] - 1) * dil[1]};
  int64_t tpad[] = {reach[0] - pad[0], reach[1] - pad[1], reach[0] - pad[2], reach[1] - pad[3]};
  // (With fewer input channels, only where the lowering has a direct path
  // for it: no dilation, a kernel row of at most 16, several images; a
  // batch of one is a plain matmul there. Measured against col2im, 2
  // threads: with dilation 2, 3 -> 16 3 x 3 at 32 x 32 0.21 -> 0.40 ms;
  // batch 1, LeNet-5's conv2, 0.005 -> 0.026.)
  bool fewChannels = w[0] >= 16 && dil[0] == 1 && dil[1] == 1 && w[3] <= 16 && y[0] > 1;
  bool transposedConv = g == 1 && (w[1] >= 16 || fewChannels) && stride[0] == 1 && stride[1] == 1 &&
                        llvm::all_of(tpad, [](int64_t v) { return v >= 0; });
  Value dy3 = reshapeTo(b, l, transposeTo(b, l, resultGrads[0], {1, 0, 2, 3}), {g, w[0] / g, p});
  Value cols = b.create<Im2colOp>(l, getInput(), b.getDenseI64ArrayAttr(kernel), getStrideAttr(),
                                  getPaddingAttr(), getDilationAttr(), b.getF64FloatAttr(0.0));
  Value cols3 = reshapeTo(b, l, cols, {g, r, p});
  Value dx;
  if (transposedConv) {
    int64_t kk = w[2] * w[3];
    auto jType = RankedTensorType::get({kk, kk}, b.getF32Type());
    SmallVector<float> j(kk * kk, 0.0f);
    for (int64_t a = 0; a < kk; ++a)
      j[a * kk + (kk - 1 - a)] = 1.0f;
    Value exchange = b.create<ConstantOp>(l, DenseElementsAttr::get(jType, ArrayRef<float>(j)));
    Value flipped = b.create<MatmulOp>(l, reshapeTo(b, l, getFilter(), {w[0] * w[1], kk}), exchange,
                                       b.getBoolAttr(false), b.getBoolAttr(false));
    Value filter = transposeTo(b, l, reshapeTo(b, l, flipped, {w[0], w[1], w[2], w[3]}), {1, 0, 2, 3});
    int64_t one[] = {1, 1};
    dx = b.create<Conv2dOp>(l, getInput().getType(), resultGrads[0], filter, b.getDenseI64ArrayAttr(one),
                            b.getDenseI64ArrayAttr(tpad), getDilationAttr(), b.getI64IntegerAttr(1));
  } else {
    Value w3 = reshapeTo(b, l, getFilter(), {g, w[0] / g, r});
    Value dcols = b.create<MatmulOp>(l, w3, dy3, b.getBoolAttr(true), b.getBoolAttr(false));
    dx = b.create<Col2imOp>(l, reshapeTo(b, l, dcols, {x[1] * w[2] * w[3], p}), b.getDenseI64ArrayAttr(x),
                            b.getDenseI64ArrayAttr(kernel), getStrideAttr(), getPaddingAttr(), getDilationAttr());
  }
  Value dw = b.create<MatmulOp>(l, dy3, cols3, b.getBoolAttr(false), b.getBoolAttr(true));
  operandGrads.push_back(dx);
  operandGrads.push_back(reshapeTo(b, l, dw, w));
  return success();
}

LogicalResult Im2colOp::buildVJP(OpBuilder &b, ValueRange resultGrads,
                                 SmallVectorImpl<Value> &operandGrads) {
  // im2col copies pixels into columns, so its adjoint sums them back. A
  // padding value other than 0 is a constant and has no gradient.
  operandGrads.push_back(b.create<Col2imOp>(getLoc(), resultGrads[0],
                                            b.getDenseI64ArrayAttr(shapeOf(getInput())), getKernelAttr(),
                                            getStrideAttr(), getPaddingAttr(), getDilationAttr()));
  return success();
}

LogicalResult Col2imOp::buildVJP(OpBuilder &b, ValueRange resultGrads,
                                 SmallVectorImpl<Value> &operandGrads) {
  // The adjoint of a sum into pixels is reading those pixels again.
  operandGrads.push_back(b.create<Im2colOp>(getLoc(), resultGrads[0], getKernelAttr(), getStrideAttr(),
                                            getPaddingAttr(), getDilationAttr(), b.getF64FloatAttr(0.0)));
  return success();
}

LogicalResult MaxPool2dOp::buildVJP(OpBuilder &b, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  // The gradient goes to the window's maxima (split evenly among ties):
  // mask = (windows == max), dX = col2im(mask * dY / count). Windows that
  // tile the input (LeNet-5's 2 x 2 of stride 2) have an op of their own,
  // one pass over the input (lowered directly, not decomposed).
  Location l = getLoc();
  ArrayRef<int64_t> out = shapeOf(getResult());
  if (tilesInput(shapeOf(getInput()), getKernel(), getStride(), getPadding())) {
    operandGrads.push_back(
        b.create<MaxPool2dGradOp>(l, getInput(), getResult(), resultGrads[0], getKernelAttr(), b.getBoolAttr(false)));
    return success();
  }
  Value win = poolWindows(b, l, getInput(), getKernel(), getStrideAttr(), getPaddingAttr(), out,
                          -std::numeric_limits<double>::infinity());
  Value mask = b.create<EqualOp>(l, win, imageToWindows(b, l, getResult()));
  int64_t axes[] = {1};
  Value count = b.create<ReduceSumOp>(l, mask, b.getDenseI64ArrayAttr(axes), b.getBoolAttr(true));
  Value share = b.create<DivOp>(l, imageToWindows(b, l, resultGrads[0]), count);
  Value dcols = b.create<MulOp>(l, mask, share);
  ArrayRef<int64_t> x = shapeOf(getInput());
  int64_t one[] = {1, 1};
  ArrayRef<int64_t> k = getKernel();
  operandGrads.push_back(b.create<Col2imOp>(
      l, reshapeTo(b, l, dcols, {x[1] * k[0] * k[1], out[0] * out[2] * out[3]}), b.getDenseI64ArrayAttr(x),
      getKernelAttr(), getStrideAttr(), getPaddingAttr(), b.getDenseI64ArrayAttr(one)));
  return success();
}

LogicalResult AvgPool2dOp::buildVJP(OpBuilder &b, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  // Each window element receives dY / (KH*KW). Windows that tile the
  // input have an op of their own (one pass writing dx, lowered directly).
  Location l = getLoc();
  if (isTilingPool(getOperation())) {
    operandGrads.push_back(b.create<AvgPool2dGradOp>(l, resultGrads[0], getKernelAttr()));
    return success();
  }
  ArrayRef<int64_t> out = shapeOf(getResult()), x = shapeOf(getInput()), k = getKernel();
  int64_t kk = k[0] * k[1], p = out[0] * out[2] * out[3];
  Value share = b.create<MulOp>(l, imageToWindows(b, l, resultGrads[0]),
                                scalarConst(b, l, 1.0 / static_cast<double>(kk)));
  Value dcols = b.create<BroadcastToOp>(l, share, b.getDenseI64ArrayAttr({x[1], kk, p}));
  int64_t one[] = {1, 1};
  operandGrads.push_back(b.create<Col2imOp>(l, reshapeTo(b, l, dcols, {x[1] * kk, p}),
                                            b.getDenseI64ArrayAttr(x), getKernelAttr(), getStrideAttr(),
                                            getPaddingAttr(), b.getDenseI64ArrayAttr(one)));
  return success();
}


/// The batch norms' per-channel operands, each an f32 [C] with C = x's
/// dimension 1, and eps > 0.
static LogicalResult checkBatchNormChannels(std::optional<Location> loc, StringRef op, RankedTensorType x,
                                            ArrayRef<std::pair<const char *, Value>> channels, APFloat eps) {
  int64_t c = x.getDimSize(1);
  for (auto [name, v] : channels) {
    auto t = f32TensorOf(loc, op, v, name);
    if (failed(t))
      return failure();
    if (t->getRank() != 1 || t->getDimSize(0) != c)
      return fail(loc, op, Twine(name) + " must be [" + Twine(c) + "] for input " + shapeStr(x.getShape()) +
                               ", got " + shapeStr(t->getShape()));
  }
  if (!(eps.convertToDouble() > 0)) // (NaN too)
    return fail(loc, op, "eps must be > 0");
  return success();
}

/// x [N, C, ...] of rank >= 3 and per-channel operands [C]: the results
/// x's type and two [C].
static LogicalResult inferBatchNormParts(std::optional<Location> loc, StringRef op, Value input,
                                         ArrayRef<std::pair<const char *, Value>> channels, APFloat eps,
                                         SmallVectorImpl<Type> &results) {
  auto x = f32TensorOf(loc, op, input, "input");
  if (failed(x))
    return failure();
  if (x->getRank() < 3)
    return fail(loc, op, "input must be [N, C, ...] of rank 3 or more, got " + shapeStr(x->getShape()));
  if (failed(checkBatchNormChannels(loc, op, *x, channels, eps)))
    return failure();
  auto perChannel = RankedTensorType::get({x->getDimSize(1)}, x->getElementType());
  results.append({*x, perChannel, perChannel});
  return success();
}

LogicalResult BatchNormTrainOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                                 SmallVectorImpl<Type> &results) {
  StringRef op = "batch_norm_train";
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(), {{"eps", AttrKind::Float, true}})))
    return failure();
  return inferBatchNormParts(loc, op, adaptor.getInput(),
                             {{"scale", adaptor.getScale()}, {"shift", adaptor.getShift()}}, adaptor.getEps(),
                             results);
}

LogicalResult BatchNormGradOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                                SmallVectorImpl<Type> &results) {
  StringRef op = "batch_norm_grad";
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(), {{"eps", AttrKind::Float, true}})))
    return failure();
  if (failed(inferBatchNormParts(loc, op, adaptor.getInput(),
                                 {{"mean", adaptor.getMean()}, {"var", adaptor.getVar()}, {"scale", adaptor.getScale()}},
                                 adaptor.getEps(), results)))
    return failure();
  auto g = f32TensorOf(loc, op, adaptor.getGrad(), "grad");
  if (failed(g))
    return failure();
  if (*g != results[0])
    return fail(loc, op, "grad must have the input's type " + typeStr(results[0]) + ", got " + typeStr(*g));
  return success();
}

bool soma::ir::splitBatchNormOutput(BatchNormTrainOp op) {
  Value y = op.getOutput();
  if (!llvm::any_of(y.getUsers(), [](Operation *u) { return isElementwise(u); }))
    return false;
  OpBuilder b(op->getContext());
  b.setInsertionPointAfter(op);
  Location l = op.getLoc();
  auto xt = cast<RankedTensorType>(op.getInput().getType());
  SmallVector<int64_t> channels(xt.getRank(), 1);
  channels[1] = xt.getDimSize(1);
  auto asChannels = [&](Value v) { return reshapeTo(b, l, v, channels); };
  Value factor = b.create<DivOp>(
      l, asChannels(op.getScale()),
      b.create<SqrtOp>(l, b.create<AddOp>(l, asChannels(op.getVar()), scalarConst(b, l, op.getEps().convertToDouble()))));
  Value applied =
      b.create<AddOp>(l, mul(b, l, sub(b, l, op.getInput(), asChannels(op.getMean())), factor), asChannels(op.getShift()));
  y.replaceAllUsesWith(applied);
  return true;
}

/// Only the output's gradient flows back (mean and var feed the running
/// statistics through stop_gradient): one batch_norm_grad.
LogicalResult BatchNormTrainOp::buildVJP(OpBuilder &b, ValueRange resultGrads,
                                         SmallVectorImpl<Value> &operandGrads) {
  auto g = b.create<BatchNormGradOp>(getLoc(), getInput(), resultGrads[0], getMean(), getVar(), getScale(),
                                     getEpsAttr());
  operandGrads.append({g.getInputGrad(), g.getScaleGrad(), g.getShiftGrad()});
  return success();
}

LogicalResult BatchNormOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                            Adaptor adaptor, SmallVectorImpl<Type> &results) {
  StringRef op = "batch_norm";
  if (failed(checkAttrs(loc, op, adaptor.getAttributes(),
                        {{"eps", AttrKind::Float, false}, {"momentum", AttrKind::Float, false}})))
    return failure();
  auto x = f32TensorOf(loc, op, adaptor.getInput(), "input");
  if (failed(x))
    return failure();
  if (x->getRank() < 2)
    return fail(loc, op, "input must be [N, C, ...], got " + shapeStr(x->getShape()));
  if (failed(checkBatchNormChannels(loc, op, *x,
                                    {{"scale", adaptor.getScale()},
                                     {"shift", adaptor.getShift()},
                                     {"running_mean", adaptor.getRunningMean()},
                                     {"running_var", adaptor.getRunningVar()}},
                                    adaptor.getEps())))
    return failure();
  double m = adaptor.getMomentum().convertToDouble();
  if (!(m >= 0 && m <= 1)) // (NaN too)
    return fail(loc, op, "momentum must be in [0, 1], got " + Twine(std::to_string(m)));
  results.push_back(*x);
  return success();
}

#define GET_OP_CLASSES
#include "soma/Dialect/SomaOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Fusion
//===----------------------------------------------------------------------===//

/// An elementwise kernel reads each operand point where it writes it; a
/// reduction or contraction kernel reads its operands in other orders.
bool FusionOp::mayWriteOver(unsigned) { return getKind() == "elementwise"; }

LogicalResult FusionOp::verify() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("has ") << getInputs().size() << " inputs but its body takes "
                               << body.getNumArguments() << " arguments";
  for (auto [v, arg] : llvm::zip(getInputs(), body.getArguments()))
    if (v.getType() != arg.getType())
      return emitOpError("input of type ") << v.getType() << " is bound to a body argument of type "
                                           << arg.getType();
  auto yield = cast<YieldOp>(body.getTerminator());
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError("yields ") << yield.getValues().getTypes() << " but returns " << getResultTypes();
  bool reduction = getKind() == "reduction", contraction = getKind() == "contraction";
  if (getKind() != "elementwise" && !reduction && !contraction)
    return emitOpError("has unknown kind '") << getKind() << "' (kinds: elementwise, reduction, contraction)";
  if (getNumResults() == 0)
    return emitOpError("has no results");
  // The iteration shape: the results' (elementwise), the reduced operand's
  // (reduction) or the product's (contraction).
  Operation *last = yield->getPrevNode();
  Operation *product = nullptr;
  if (reduction) {
    if (getNumResults() != 1 || !last || !isReduction(last) || yield.getValues()[0] != last->getResult(0))
      return emitOpError("of kind reduction must end with one reduce_sum, reduce_mean or reduce_max "
                         "whose result it yields");
  }
  auto isSplat = [](Operation &op) { return isa<ConstantOp>(op) && cast<ConstantOp>(op).getValue().isSplat(); };
  // A contraction: gathers of its operands (the view ops of a GemmView:
  // im2col, reshape, transpose, broadcast_to), one matmul of inputs or
  // gathered views, optionally a reshape of the product (a convolution's
  // products as its NCHW output), then the epilogue over that shape.
  llvm::SmallPtrSet<Operation *, 4> gathers;
  Operation *productView = nullptr;
  if (contraction) {
    for (Operation &op : body.without_terminator()) {
      if (isSplat(op))
        continue;
      if (isa<Im2colOp, ReshapeOp, TransposeOp, BroadcastToOp>(op)) {
        gathers.insert(&op);
        continue;
      }
      product = &op;
      break;
    }
    if (!product || !isContraction(product))
      return emitOpError("of kind contraction must start with a contraction (matmul), after any "
                         "gathers of its operands");
    for (Value v : product->getOperands()) {
      if (isa<BlockArgument>(v))
        continue;
      GemmView view = matchGemmView(v);
      if (view.kind == GemmViewKind::Stored || !isa<BlockArgument>(view.source))
        return emitOpError("of kind contraction must compute its product from its inputs or views of them "
                           "that its packing computes (im2col columns, a broadcast filter, a channel-major "
                           "tensor)");
    }
    for (Operation *g : gathers)
      for (Operation *user : g->getResult(0).getUsers())
        if (user != product && !gathers.contains(user))
          return g->emitOpError("in a contraction soma.fusion may only feed its matmul");
    Value y = product->getResult(0);
    if (y.hasOneUse() && isa<ReshapeOp>(*y.getUsers().begin())) {
      productView = *y.getUsers().begin();
      if (!expandGroups(shapeOf(y), shapeOf(productView->getResult(0))))
        return productView->emitOpError("views the product ")
               << y.getType() << " as " << productView->getResult(0).getType()
               << ", which does not split each of its dimensions";
    }
  }
  Value shaped = reduction   ? last->getOperand(0)
                 : productView ? productView->getResult(0)
                 : contraction ? product->getResult(0)
                               : getResult(0);
  auto shape = cast<RankedTensorType>(shaped.getType()).getShape();
  for (Operation &op : body.without_terminator()) {
    if ((reduction && &op == last) || &op == product || &op == productView || gathers.contains(&op))
      continue;
    bool splat = isSplat(op);
    if (!isElementwise(&op) && !splat)
      return op.emitOpError("cannot be in an elementwise soma.fusion");
    if (cast<RankedTensorType>(op.getResult(0).getType()).getShape() != shape && !splat)
      return op.emitOpError("produces ") << op.getResult(0).getType()
                                         << ", not the fusion's iteration shape";
  }
  if (!reduction)
    for (Type t : getResultTypes())
      if (cast<RankedTensorType>(t).getShape() != shape)
        return emitOpError("results differ in shape: ") << getResultTypes();
  return success();
}

void soma::ir::setGraphResults(func::FuncOp fn, ArrayRef<Value> values, ArrayRef<DictionaryAttr> attrs) {
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  ret->setOperands(values);
  SmallVector<Type> types;
  for (Value v : values)
    types.push_back(v.getType());
  fn.setFunctionType(FunctionType::get(fn.getContext(), fn.getArgumentTypes(), types));
  fn.setAllResultAttrs(attrs);
}
