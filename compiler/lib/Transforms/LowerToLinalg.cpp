//===- LowerToLinalg.cpp - soma graphs to linalg/memref kernels -----------===//
//
// A graph function is straight-line code over static tensors, so it is
// lowered by one walk in program order rather than by a conversion
// framework: every soma value gets a buffer (an output argument when the
// value is a graph output, a fresh 64-byte aligned memref.alloc otherwise, a
// view for reshapes) and every op becomes linalg ops writing into that
// buffer. Elementwise and broadcasting ops become one linalg.generic each;
// reductions put their parallel loops first so that the later loop
// lowering yields one parallel loop around sequential reduction loops.
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/Lowering.h"
#include "soma/random.h"
#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/SmallBitVector.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>
#include <memory>
#include <limits>

namespace soma {
#define GEN_PASS_DEF_SOMALOWERTOLINALG
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;
using namespace soma::ir;

namespace soma {

//===----------------------------------------------------------------------===//
// Scalar bodies of elementwise ops (shared by every kernel that inlines them)
//===----------------------------------------------------------------------===//

Value f32Const(OpBuilder &b, Location loc, double v) {
  return b.create<arith::ConstantOp>(loc, b.getF32FloatAttr(static_cast<float>(v)));
}

/// log(1 + y) for y >= 0, accurate for small y (Goldberg's trick):
/// u = 1 + y; if u == 1 then y else log(u) * y / (u - 1).
static Value emitLog1p(OpBuilder &b, Location loc, Value y) {
  Value one = f32Const(b, loc, 1.0);
  Value u = b.create<arith::AddFOp>(loc, one, y);
  Value logU = b.create<math::LogOp>(loc, u);
  Value um1 = b.create<arith::SubFOp>(loc, u, one);
  Value scaled = b.create<arith::DivFOp>(
      loc, b.create<arith::MulFOp>(loc, logU, y), um1);
  Value isOne = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OEQ, u, one);
  return b.create<arith::SelectOp>(loc, isOne, y, scaled);
}

Value emitElementwiseScalar(OpBuilder &b, Location loc, Operation *op,
                            ValueRange args) {
  return llvm::TypeSwitch<Operation *, Value>(op)
      .Case([&](NegOp) { return b.create<arith::NegFOp>(loc, args[0]); })
      .Case([&](ExpOp) { return b.create<math::ExpOp>(loc, args[0]); })
      .Case([&](LogOp) { return b.create<math::LogOp>(loc, args[0]); })
      .Case([&](SqrtOp) { return b.create<math::SqrtOp>(loc, args[0]); })
      .Case([&](AbsOp) { return b.create<math::AbsFOp>(loc, args[0]); })
      .Case([&](TanhOp) { return b.create<math::TanhOp>(loc, args[0]); })
      .Case([&](SigmoidOp) -> Value {
        // 1 / (1 + e^-x): for x < -88.7 exp overflows to +inf and the
        // result is 0 (the true value is below the smallest normal float;
        // the subnormal results between -103.9 and -88.7 are flushed).
        Value e = b.create<math::ExpOp>(loc, b.create<arith::NegFOp>(loc, args[0]));
        Value one = f32Const(b, loc, 1.0);
        return b.create<arith::DivFOp>(loc, one,
                                       b.create<arith::AddFOp>(loc, one, e));
      })
      .Case([&](ReluOp) -> Value {
        // maximumf propagates NaN, so a NaN stays visible downstream.
        return b.create<arith::MaximumFOp>(loc, args[0], f32Const(b, loc, 0.0));
      })
      .Case([&](SoftplusOp) -> Value {
        // max(x, 0) + log1p(e^-|x|): never overflows.
        Value x = args[0];
        Value relu = b.create<arith::MaximumFOp>(loc, x, f32Const(b, loc, 0.0));
        Value negAbs = b.create<arith::NegFOp>(loc, b.create<math::AbsFOp>(loc, x));
        Value e = b.create<math::ExpOp>(loc, negAbs);
        return b.create<arith::AddFOp>(loc, relu, emitLog1p(b, loc, e));
      })
      .Case([&](LeakyReluOp lr) -> Value {
        Value x = args[0];
        Value pos = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT, x,
                                            f32Const(b, loc, 0.0));
        Value scaled = b.create<arith::MulFOp>(
            loc, x, f32Const(b, loc, lr.getAlpha().convertToDouble()));
        return b.create<arith::SelectOp>(loc, pos, x, scaled);
      })
      .Case([&](AddOp) { return b.create<arith::AddFOp>(loc, args[0], args[1]); })
      .Case([&](SubOp) { return b.create<arith::SubFOp>(loc, args[0], args[1]); })
      .Case([&](MulOp) { return b.create<arith::MulFOp>(loc, args[0], args[1]); })
      .Case([&](DivOp) { return b.create<arith::DivFOp>(loc, args[0], args[1]); })
      .Case([&](PowOp) { return b.create<math::PowFOp>(loc, args[0], args[1]); })
      .Case([&](MaximumOp) {
        return b.create<arith::MaximumFOp>(loc, args[0], args[1]);
      })
      .Case([&](MinimumOp) {
        return b.create<arith::MinimumFOp>(loc, args[0], args[1]);
      })
      .Case([&](SiluOp) -> Value {
        Value x = args[0];
        Value e = b.create<math::ExpOp>(loc, b.create<arith::NegFOp>(loc, x));
        Value one = f32Const(b, loc, 1.0);
        return b.create<arith::DivFOp>(loc, x, b.create<arith::AddFOp>(loc, one, e));
      })
      .Case([&](GeluOp) -> Value {
        // 0.5 x (1 + erf(x / sqrt 2))
        Value x = args[0];
        Value erf = b.create<math::ErfOp>(loc, b.create<arith::MulFOp>(loc, x, f32Const(b, loc, M_SQRT1_2)));
        return b.create<arith::MulFOp>(loc, b.create<arith::MulFOp>(loc, x, f32Const(b, loc, 0.5)),
                                       b.create<arith::AddFOp>(loc, f32Const(b, loc, 1.0), erf));
      })
      .Case([&](GeluGradOp) -> Value {
        // Phi(x) + x phi(x) = 0.5 (1 + erf(x / sqrt 2)) + x e^(-x^2/2) / sqrt(2 pi)
        Value x = args[0];
        Value erf = b.create<math::ErfOp>(loc, b.create<arith::MulFOp>(loc, x, f32Const(b, loc, M_SQRT1_2)));
        Value cdf = b.create<arith::MulFOp>(loc, f32Const(b, loc, 0.5),
                                            b.create<arith::AddFOp>(loc, f32Const(b, loc, 1.0), erf));
        Value e = b.create<math::ExpOp>(
            loc, b.create<arith::MulFOp>(loc, b.create<arith::MulFOp>(loc, x, x), f32Const(b, loc, -0.5)));
        Value pdf = b.create<arith::MulFOp>(loc, e, f32Const(b, loc, 0.3989422804014327));
        return b.create<arith::AddFOp>(loc, cdf, b.create<arith::MulFOp>(loc, x, pdf));
      })
      .Case([&](EluOp o) -> Value {
        Value x = args[0];
        Value pos = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT, x, f32Const(b, loc, 0.0));
        Value em1 = b.create<math::ExpM1Op>(loc, x);
        Value neg = b.create<arith::MulFOp>(loc, em1, f32Const(b, loc, o.getAlpha().convertToDouble()));
        return b.create<arith::SelectOp>(loc, pos, x, neg);
      })
      .Case([&](SignOp) -> Value {
        // -1, 0 or 1; NaN and -0/+0 pass through unchanged.
        Value x = args[0], zero = f32Const(b, loc, 0.0);
        Value pos = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT, x, zero);
        Value neg = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OLT, x, zero);
        Value r = b.create<arith::SelectOp>(loc, neg, f32Const(b, loc, -1.0), x);
        return b.create<arith::SelectOp>(loc, pos, f32Const(b, loc, 1.0), r);
      })
      .Case([&](StepOp) -> Value {
        Value pos = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT, args[0],
                                            f32Const(b, loc, 0.0));
        return b.create<arith::SelectOp>(loc, pos, f32Const(b, loc, 1.0), f32Const(b, loc, 0.0));
      })
      .Case([&](EqualOp) -> Value {
        Value x = args[0], y = args[1];
        if (isa<IntegerType>(x.getType()) && x.getType() != y.getType()) {
          // Widen both to i64.
          auto i64 = b.getI64Type();
          if (x.getType() != i64)
            x = b.create<arith::ExtSIOp>(loc, i64, x);
          if (y.getType() != i64)
            y = b.create<arith::ExtSIOp>(loc, i64, y);
        }
        Value eq = isa<FloatType>(x.getType())
                       ? Value(b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OEQ, x, y))
                       : Value(b.create<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, x, y));
        return b.create<arith::SelectOp>(loc, eq, f32Const(b, loc, 1.0), f32Const(b, loc, 0.0));
      })
      .Default([](Operation *) { return Value(); });
}


//===----------------------------------------------------------------------===//
// The lowering of one graph function
//===----------------------------------------------------------------------===//

namespace {

MemRefType memrefOf(Type t) {
  auto rt = cast<RankedTensorType>(t);
  return MemRefType::get(rt.getShape(), rt.getElementType());
}

/// Whether `axis` is the last dimension of `shape` but for dimensions of 1:
/// its lanes are contiguous rows (RowKernels.cpp).
bool isLastAxis(ArrayRef<int64_t> shape, int64_t axis) {
  return llvm::all_of(shape.drop_front(axis + 1), [](int64_t d) { return d == 1; });
}

/// The indexing map reading an operand of shape `in` for an output of shape
/// `out` under numpy broadcasting: dimensions aligned at the right, size-1
/// dimensions read at index 0.
AffineMap broadcastMap(ArrayRef<int64_t> in, ArrayRef<int64_t> out,
                       MLIRContext *ctx) {
  SmallVector<AffineExpr> exprs;
  size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == 1 && out[i + off] != 1)
      exprs.push_back(getAffineConstantExpr(0, ctx));
    else
      exprs.push_back(getAffineDimExpr(i + off, ctx));
  }
  return AffineMap::get(out.size(), 0, exprs, ctx);
}

class GraphLowering {
public:
  GraphLowering(ModuleOp module, func::FuncOp graph, int64_t vectorWidth, int64_t threads, int64_t convInteriorWork)
      : module(module), graph(graph), ctx(module.getContext()), b(ctx),
        gemmConfig(GemmConfig::forVectorWidth(vectorWidth)) {
    gemmConfig.threads = threads;
    gemmConfig.conv_interior_work = convInteriorWork;
  }

  LogicalResult run();

private:
  using BodyFn = function_ref<Value(OpBuilder &, Location, ValueRange)>;

  LogicalResult lowerOp(Operation *op);
  Value alloc(Location loc, MemRefType type);
  /// The buffer to write `result` into: its output argument or a new alloc.
  Value resultBuffer(Value result);
  /// A dying operand's buffer `result` may be computed in place of.
  Value reusableOperandBuffer(Value result);
  /// No op after `op` reads v's buffer (directly, through a view, or as an
  /// output copied at the end).
  bool lastReadAt(Value v, Operation *op);
  void fill(Location loc, Value buffer, double value);
  /// out[i] = body(ins[j][broadcast(i)]...)
  void elementwise(Location loc, ArrayRef<Value> ins, Value out, BodyFn body);
  /// out[kept] = combine(in[i], out[kept]) over `axes` (out pre-filled).
  void reduce(Location loc, Value in, Value out, ArrayRef<int64_t> axes,
              bool keepdims, BodyFn combine);
  /// The same over the points of `shape` with several inputs, each read at
  /// its broadcast index; combine gets their scalars and the accumulator.
  void reduce(Location loc, ValueRange ins, ArrayRef<int64_t> shape, Value out,
              ArrayRef<int64_t> axes, bool keepdims, BodyFn combine);
  /// The scalars of a fused kernel's body ops (up to `stop`, exclusive)
  /// computed from the block arguments' scalars `args`.
  LogicalResult emitFusedScalars(OpBuilder &nb, Location l, Block &body, ValueRange args,
                                 Operation *stop, DenseMap<Value, Value> &scalar);
  /// out = in scaled by `factor`, in place.
  void scaleInPlace(Location loc, Value buffer, double factor);
  void copy(Location loc, Value from, Value to);
  Value reshapeView(Location loc, Value in, MemRefType to);

  LogicalResult lowerMatmul(MatmulOp op);
  LogicalResult lowerSoftmax(Operation *op, Value input, int64_t axis, bool log);
  LogicalResult lowerSoftmaxCrossEntropy(SoftmaxCrossEntropyOp op);
  /// softmax_grad or (log) log_softmax_grad: operands y and g.
  LogicalResult lowerSoftmaxGrad(Operation *op, int64_t axis, bool log);
  LogicalResult lowerPairwiseLoss(Operation *op, Value a, Value t,
                                  StringRef reduction, bool bce);
  LogicalResult lowerConstant(ConstantOp op);
  LogicalResult lowerArgmax(ArgmaxOp op);
  LogicalResult lowerIm2col(Im2colOp op);
  LogicalResult lowerTilingPool(Operation *op);
  LogicalResult lowerCol2im(Col2imOp op);
  LogicalResult lowerPad(PadOp op);
  LogicalResult lowerRandomUniform(RandomUniformOp op);
  LogicalResult lowerFusion(FusionOp op);
  LogicalResult lowerReductionFusion(FusionOp op);
  LogicalResult lowerContractionFusion(FusionOp op);
  LogicalResult lowerSoftmaxCrossEntropyGrad(SoftmaxCrossEntropyGradOp op);
  /// m[i] = max_j x[i, j] and s[i] = sum_j e^(x[i,j] - m[i]) for logits x.
  std::pair<Value, Value> rowMaxAndSumExp(Location loc, Value x);

  ModuleOp module;
  func::FuncOp graph;
  MLIRContext *ctx;
  OpBuilder b;
  DenseMap<Value, Value> buffers;      // soma value -> memref
  DenseMap<Value, Value> destinations; // soma value -> output argument
  DenseMap<Operation *, unsigned> position; // top-level op -> schedule index
  llvm::SmallPtrSet<Value, 8> taken;         // operand buffers the current op writes over
  unsigned numGlobals = 0;
  std::string kernelName;
  GemmConfig gemmConfig;
};

Value GraphLowering::alloc(Location loc, MemRefType type) {
  return b.create<memref::AllocOp>(loc, type, b.getI64IntegerAttr(64));
}

/// `op` may write its result over operand v's buffer (the op's
/// InPlaceOpInterface says so for every use of v among its operands).
static bool mayWriteOver(Operation *op, Value v) {
  auto inPlace = dyn_cast<ir::InPlaceOpInterface>(op);
  if (!inPlace)
    return false;
  for (OpOperand &use : op->getOpOperands())
    if (use.get() == v && !inPlace.mayWriteOver(use.getOperandNumber()))
      return false;
  return true;
}

Value GraphLowering::resultBuffer(Value result) {
  auto it = destinations.find(result);
  if (it != destinations.end())
    return it->second;
  if (Value reused = reusableOperandBuffer(result))
    return reused;
  return alloc(result.getLoc(), memrefOf(result.getType()));
}

/// True if `op` is the last reader of v's buffer: every op that reads v,
/// directly or through a view of it (reshape, stop_gradient), runs at or
/// before `op`, and neither v nor a view of it is an output (outputs are
/// copied at the end).
bool GraphLowering::lastReadAt(Value v, Operation *op) {
  Block &body = graph.getBody().front();
  SmallVector<Value> work{v};
  while (!work.empty()) {
    Value x = work.pop_back_val();
    for (Operation *user : x.getUsers()) {
      Operation *top = body.findAncestorOpInBlock(*user);
      if (!top || isa<func::ReturnOp>(top))
        return false;
      if (isa<ReshapeOp, StopGradientOp>(user)) {
        work.push_back(user->getResult(0));
        continue;
      }
      if (position.lookup(top) > position.lookup(op))
        return false;
    }
  }
  return true;
}

/// An in-place-able op (InPlaceOpInterface: elementwise ops and kernels,
/// softmax, log-softmax, the cross-entropy gradient) may write its result
/// over an operand that dies there: a temporary of the same type that no later op reads (see
/// lastReadAt) and that no earlier result of the same op took.
Value GraphLowering::reusableOperandBuffer(Value result) {
  Operation *op = result.getDefiningOp();
  if (!op || !isa<ir::InPlaceOpInterface>(op))
    return Value();
  for (Value v : op->getOperands()) {
    if (v.getType() != result.getType() || !mayWriteOver(op, v))
      continue;
    Operation *def = v.getDefiningOp();
    if (!def || isa<ReshapeOp, StopGradientOp, ConstantOp>(def) || destinations.count(v))
      continue;
    auto buf = buffers.lookup(v);
    if (!buf || !buf.getDefiningOp<memref::AllocOp>() || taken.contains(buf))
      continue;
    if (!lastReadAt(v, op))
      continue;
    // Each buffer once per op: a multi-output kernel must not write two
    // results into one buffer.
    taken.insert(buf);
    return buf;
  }
  return Value();
}

void GraphLowering::fill(Location loc, Value buffer, double value) {
  Type et = cast<MemRefType>(buffer.getType()).getElementType();
  Value v = b.create<arith::ConstantOp>(loc, b.getFloatAttr(et, value));
  b.create<linalg::FillOp>(loc, ValueRange{v}, ValueRange{buffer});
}

void GraphLowering::elementwise(Location loc, ArrayRef<Value> ins, Value out,
                                BodyFn body) {
  auto outType = cast<MemRefType>(out.getType());
  SmallVector<AffineMap> maps;
  for (Value in : ins)
    maps.push_back(broadcastMap(cast<MemRefType>(in.getType()).getShape(),
                                outType.getShape(), ctx));
  maps.push_back(AffineMap::getMultiDimIdentityMap(outType.getRank(), ctx));
  SmallVector<utils::IteratorType> iters(outType.getRank(),
                                         utils::IteratorType::parallel);
  b.create<linalg::GenericOp>(
      loc, ValueRange(ins), ValueRange{out}, maps, iters,
      [&](OpBuilder &nb, Location l, ValueRange args) {
        Value v = body(nb, l, args.drop_back());
        nb.create<linalg::YieldOp>(l, v);
      });
}

void GraphLowering::reduce(Location loc, Value in, Value out,
                           ArrayRef<int64_t> axes, bool keepdims,
                           BodyFn combine) {
  reduce(loc, ValueRange{in}, cast<MemRefType>(in.getType()).getShape(), out, axes, keepdims, combine);
}

void GraphLowering::reduce(Location loc, ValueRange ins, ArrayRef<int64_t> shape, Value out,
                           ArrayRef<int64_t> axes, bool keepdims, BodyFn combine) {
  int64_t rank = shape.size();
  // Loop order: kept (parallel) dimensions first, then reduced ones.
  SmallVector<int64_t> loopOfDim(rank);
  int64_t next = 0;
  for (int64_t d = 0; d < rank; ++d)
    if (!llvm::is_contained(axes, d))
      loopOfDim[d] = next++;
  int64_t numParallel = next;
  for (int64_t d = 0; d < rank; ++d)
    if (llvm::is_contained(axes, d))
      loopOfDim[d] = next++;
  // loops -> point of `shape`; each input is read at its broadcast index.
  SmallVector<AffineExpr> pointExprs, outExprs;
  for (int64_t d = 0; d < rank; ++d) {
    pointExprs.push_back(getAffineDimExpr(loopOfDim[d], ctx));
    if (!llvm::is_contained(axes, d))
      outExprs.push_back(getAffineDimExpr(loopOfDim[d], ctx));
    else if (keepdims)
      outExprs.push_back(getAffineConstantExpr(0, ctx));
  }
  AffineMap point = AffineMap::get(rank, 0, pointExprs, ctx);
  SmallVector<AffineMap> maps;
  for (Value in : ins)
    maps.push_back(broadcastMap(cast<MemRefType>(in.getType()).getShape(), shape, ctx).compose(point));
  maps.push_back(AffineMap::get(rank, 0, outExprs, ctx));
  SmallVector<utils::IteratorType> iters;
  for (int64_t l = 0; l < rank; ++l)
    iters.push_back(l < numParallel ? utils::IteratorType::parallel
                                    : utils::IteratorType::reduction);
  b.create<linalg::GenericOp>(
      loc, ins, ValueRange{out}, maps, iters,
      [&](OpBuilder &nb, Location l, ValueRange args) {
        nb.create<linalg::YieldOp>(l, combine(nb, l, args));
      });
}

void GraphLowering::scaleInPlace(Location loc, Value buffer, double factor) {
  auto type = cast<MemRefType>(buffer.getType());
  auto id = AffineMap::getMultiDimIdentityMap(type.getRank(), ctx);
  SmallVector<utils::IteratorType> iters(type.getRank(),
                                         utils::IteratorType::parallel);
  b.create<linalg::GenericOp>(
      loc, ValueRange{}, ValueRange{buffer}, ArrayRef<AffineMap>{id}, iters,
      [&](OpBuilder &nb, Location l, ValueRange args) {
        nb.create<linalg::YieldOp>(
            l, Value(nb.create<arith::MulFOp>(l, args[0], f32Const(nb, l, factor))));
      });
}

void GraphLowering::copy(Location loc, Value from, Value to) {
  b.create<linalg::CopyOp>(loc, from, to);
}

/// A reshape is a view of the same buffer: collapse to 1-D, then expand to
/// the target. Rank-0 ends use empty reassociations (all dims are 1).
Value GraphLowering::reshapeView(Location loc, Value in, MemRefType to) {
  auto from = cast<MemRefType>(in.getType());
  if (from.getShape() == to.getShape())
    return in;
  SmallVector<ReassociationIndices> none;
  if (from.getRank() == 0)
    return b.create<memref::ExpandShapeOp>(loc, to, in, none);
  if (to.getRank() == 0)
    return b.create<memref::CollapseShapeOp>(loc, to, in, none);
  auto all = [](int64_t rank) {
    ReassociationIndices r;
    for (int64_t d = 0; d < rank; ++d)
      r.push_back(d);
    return SmallVector<ReassociationIndices>{r};
  };
  Value flat = in;
  if (from.getRank() > 1)
    flat = b.create<memref::CollapseShapeOp>(
        loc, MemRefType::get({from.getNumElements()}, from.getElementType()), in,
        all(from.getRank()));
  if (to.getRank() == 1)
    return flat;
  return b.create<memref::ExpandShapeOp>(loc, to, flat, all(to.getRank()));
}

/// Marks the outer loop of a hand-written nest whose iterations are
/// independent: soma-linalg-to-loops makes it parallel when the nest's
/// `work` (its iteration points) reaches the grain, the one place that
/// decides for every kernel.
static void markParallel(scf::ForOp loop, int64_t trips, int64_t work) {
  if (trips > 1)
    loop->setAttr(kParallelWorkAttr, IntegerAttr::get(IntegerType::get(loop.getContext(), 64), work));
}

/// A memref viewed as rank 3: [prod(batch dims), rows, cols].
static Value asRank3(OpBuilder &b, Location loc, Value v) {
  auto t = cast<MemRefType>(v.getType());
  int64_t rank = t.getRank();
  if (rank == 3)
    return v;
  if (rank == 2) {
    SmallVector<ReassociationIndices> re{{0, 1}, {2}};
    return b.create<memref::ExpandShapeOp>(
        loc, MemRefType::get({1, t.getDimSize(0), t.getDimSize(1)}, t.getElementType()), v, re);
  }
  ReassociationIndices batch;
  int64_t n = 1;
  for (int64_t d = 0; d < rank - 2; ++d) {
    batch.push_back(d);
    n *= t.getDimSize(d);
  }
  SmallVector<ReassociationIndices> re{batch, {rank - 2}, {rank - 1}};
  return b.create<memref::CollapseShapeOp>(
      loc, MemRefType::get({n, t.getDimSize(rank - 2), t.getDimSize(rank - 1)}, t.getElementType()), v, re);
}

LogicalResult GraphLowering::lowerMatmul(MatmulOp op) {
  Location loc = op.getLoc();
  Value out = resultBuffer(op.getResult());
  Value A = asRank3(b, loc, buffers[op.getLhs()]), B = asRank3(b, loc, buffers[op.getRhs()]);
  emitGemm(module, b, loc, GemmOperand::of(A, op.getTransposeA()), GemmOperand::of(B, op.getTransposeB()),
           asRank3(b, loc, out), gemmConfig);
  buffers[op.getResult()] = out;
  return success();
}

LogicalResult GraphLowering::lowerSoftmax(Operation *op, Value input,
                                          int64_t axis, bool log) {
  Location loc = op->getLoc();
  Value x = buffers[input];
  Value y = resultBuffer(op->getResult(0));
  auto type = cast<MemRefType>(x.getType());
  if (isLastAxis(type.getShape(), axis)) {
    int64_t cols = type.getDimSize(axis);
    emitRowKernel(b, loc, log ? RowOp::logSoftmax : RowOp::softmax, {x}, y, type.getNumElements() / cols, cols,
                  gemmConfig);
    buffers[op->getResult(0)] = y;
    return success();
  }
  SmallVector<int64_t> keptShape(type.getShape());
  keptShape[axis] = 1;
  auto keptType = MemRefType::get(keptShape, type.getElementType());
  int64_t axes[] = {axis};
  // m = max over axis
  Value m = alloc(loc, keptType);
  fill(loc, m, -std::numeric_limits<double>::infinity());
  reduce(loc, x, m, axes, /*keepdims=*/true,
         [](OpBuilder &nb, Location l, ValueRange a) -> Value {
           return nb.create<arith::MaximumFOp>(l, a[0], a[1]);
         });
  // y = x - m  (log) or e^(x - m)
  elementwise(loc, {x, m}, y, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
    Value s = nb.create<arith::SubFOp>(l, a[0], a[1]);
    return log ? s : Value(nb.create<math::ExpOp>(l, s));
  });
  // s = sum over axis of e^y (log) or y
  Value s = alloc(loc, keptType);
  fill(loc, s, 0.0);
  reduce(loc, y, s, axes, true, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
    Value e = log ? Value(nb.create<math::ExpOp>(l, a[0])) : a[0];
    return nb.create<arith::AddFOp>(l, a[1], e);
  });
  // y = y - log s  (log) or y / s
  elementwise(loc, {y, s}, y, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
    if (log)
      return nb.create<arith::SubFOp>(l, a[0], nb.create<math::LogOp>(l, a[1]));
    return nb.create<arith::DivFOp>(l, a[0], a[1]);
  });
  buffers[op->getResult(0)] = y;
  return success();
}

LogicalResult GraphLowering::lowerSoftmaxGrad(Operation *op, int64_t axis, bool log) {
  Location loc = op->getLoc();
  Value y = buffers[op->getOperand(0)], g = buffers[op->getOperand(1)];
  Value dx = resultBuffer(op->getResult(0));
  auto type = cast<MemRefType>(y.getType());
  if (isLastAxis(type.getShape(), axis)) {
    int64_t cols = type.getDimSize(axis);
    emitRowKernel(b, loc, log ? RowOp::logSoftmaxGrad : RowOp::softmaxGrad, {y, g}, dx,
                  type.getNumElements() / cols, cols, gemmConfig);
    buffers[op->getResult(0)] = dx;
    return success();
  }
  // s = sum over the axis of g y (softmax) or g (log-softmax)
  SmallVector<int64_t> keptShape(type.getShape());
  keptShape[axis] = 1;
  Value s = alloc(loc, MemRefType::get(keptShape, type.getElementType()));
  fill(loc, s, 0.0);
  int64_t axes[] = {axis};
  reduce(loc, {y, g}, type.getShape(), s, axes, /*keepdims=*/true,
         [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
           Value term = log ? a[1] : Value(nb.create<arith::MulFOp>(l, a[1], a[0]));
           return nb.create<arith::AddFOp>(l, a[2], term);
         });
  // dx = y (g - s) or g - e^y s
  elementwise(loc, {y, g, s}, dx, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
    if (log)
      return nb.create<arith::SubFOp>(l, a[1], nb.create<arith::MulFOp>(l, nb.create<math::ExpOp>(l, a[0]), a[2]));
    return nb.create<arith::MulFOp>(l, a[0], nb.create<arith::SubFOp>(l, a[1], a[2]));
  });
  buffers[op->getResult(0)] = dx;
  return success();
}

LogicalResult GraphLowering::lowerSoftmaxCrossEntropy(SoftmaxCrossEntropyOp op) {
  Location loc = op.getLoc();
  Value x = buffers[op.getLogits()], labels = buffers[op.getLabels()];
  auto type = cast<MemRefType>(x.getType());
  int64_t n = type.getDimSize(0), c = type.getDimSize(1);
  auto rowType = MemRefType::get({n}, b.getF32Type());
  auto [m, s] = rowMaxAndSumExp(loc, x);
  // row[i] = log s[i] + m[i] - x[i, label[i]]  (NaN if the label is out of range)
  Value row = alloc(loc, rowType);
  {
    auto id = AffineMap::getMultiDimIdentityMap(1, ctx);
    SmallVector<AffineMap> maps{id, id, id, id};
    b.create<linalg::GenericOp>(
        loc, ValueRange{labels, m, s}, ValueRange{row}, maps,
        SmallVector<utils::IteratorType>{utils::IteratorType::parallel},
        [&](OpBuilder &nb, Location l, ValueRange a) {
          Value i = nb.create<linalg::IndexOp>(l, 0);
          Value label = nb.create<arith::IndexCastOp>(l, nb.getIndexType(), a[0]);
          Value zero = nb.create<arith::ConstantIndexOp>(l, 0);
          Value cIdx = nb.create<arith::ConstantIndexOp>(l, c);
          Value geZero = nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::sge, label, zero);
          Value ltC = nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::slt, label, cIdx);
          Value ok = nb.create<arith::AndIOp>(l, geZero, ltC);
          Value safe = nb.create<arith::SelectOp>(l, ok, label, zero);
          Value picked = nb.create<memref::LoadOp>(l, x, ValueRange{i, safe});
          Value lse = nb.create<arith::AddFOp>(l, nb.create<math::LogOp>(l, a[2]), a[1]);
          Value loss = nb.create<arith::SubFOp>(l, lse, picked);
          Value nan = f32Const(nb, l, std::numeric_limits<double>::quiet_NaN());
          nb.create<linalg::YieldOp>(l, Value(nb.create<arith::SelectOp>(l, ok, loss, nan)));
        });
  }
  Value out = resultBuffer(op.getResult());
  fill(loc, out, 0.0);
  int64_t all[] = {0};
  reduce(loc, row, out, all, false, [](OpBuilder &nb, Location l, ValueRange a) -> Value {
    return nb.create<arith::AddFOp>(l, a[1], a[0]);
  });
  if (op.getReduction() == "mean")
    scaleInPlace(loc, out, 1.0 / static_cast<double>(n));
  buffers[op.getResult()] = out;
  return success();
}

LogicalResult GraphLowering::lowerPairwiseLoss(Operation *op, Value pv, Value tv,
                                               StringRef reduction, bool bce) {
  Location loc = op->getLoc();
  Value p = buffers[pv], t = buffers[tv];
  auto type = cast<MemRefType>(p.getType());
  int64_t rank = type.getRank();
  Value out = resultBuffer(op->getResult(0));
  fill(loc, out, 0.0);
  auto id = AffineMap::getMultiDimIdentityMap(rank, ctx);
  SmallVector<AffineMap> maps{id, id, AffineMap::get(rank, 0, {}, ctx)};
  SmallVector<utils::IteratorType> iters(rank, utils::IteratorType::reduction);
  b.create<linalg::GenericOp>(
      loc, ValueRange{p, t}, ValueRange{out}, maps, iters,
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value term;
        if (!bce) {
          Value diff = nb.create<arith::SubFOp>(l, a[0], a[1]);
          term = nb.create<arith::MulFOp>(l, diff, diff);
        } else {
          // -(t * max(log p, -100) + (1 - t) * max(log(1 - p), -100))
          Value one = f32Const(nb, l, 1.0), floor = f32Const(nb, l, -100.0);
          Value lp = nb.create<arith::MaximumFOp>(l, nb.create<math::LogOp>(l, a[0]), floor);
          Value lq = nb.create<arith::MaximumFOp>(
              l, nb.create<math::LogOp>(l, nb.create<arith::SubFOp>(l, one, a[0])), floor);
          Value pos = nb.create<arith::MulFOp>(l, a[1], lp);
          Value neg = nb.create<arith::MulFOp>(l, nb.create<arith::SubFOp>(l, one, a[1]), lq);
          term = nb.create<arith::NegFOp>(l, nb.create<arith::AddFOp>(l, pos, neg));
        }
        nb.create<linalg::YieldOp>(l, Value(nb.create<arith::AddFOp>(l, a[2], term)));
      });
  if (reduction == "mean")
    scaleInPlace(loc, out, 1.0 / static_cast<double>(type.getNumElements()));
  buffers[op->getResult(0)] = out;
  return success();
}

std::pair<Value, Value> GraphLowering::rowMaxAndSumExp(Location loc, Value x) {
  auto type = cast<MemRefType>(x.getType());
  auto rowType = MemRefType::get({type.getDimSize(0)}, b.getF32Type());
  int64_t axes[] = {1};
  Value m = alloc(loc, rowType);
  fill(loc, m, -std::numeric_limits<double>::infinity());
  reduce(loc, x, m, axes, false, [](OpBuilder &nb, Location l, ValueRange a) -> Value {
    return nb.create<arith::MaximumFOp>(l, a[0], a[1]);
  });
  Value s = alloc(loc, rowType);
  fill(loc, s, 0.0);
  auto d0 = getAffineDimExpr(0, ctx), d1 = getAffineDimExpr(1, ctx);
  SmallVector<AffineMap> maps{AffineMap::get(2, 0, {d0, d1}, ctx), AffineMap::get(2, 0, {d0}, ctx),
                              AffineMap::get(2, 0, {d0}, ctx)};
  b.create<linalg::GenericOp>(
      loc, ValueRange{x, m}, ValueRange{s}, maps,
      SmallVector<utils::IteratorType>{utils::IteratorType::parallel, utils::IteratorType::reduction},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value e = nb.create<math::ExpOp>(l, nb.create<arith::SubFOp>(l, a[0], a[1]));
        nb.create<linalg::YieldOp>(l, Value(nb.create<arith::AddFOp>(l, a[2], e)));
      });
  return {m, s};
}

LogicalResult GraphLowering::lowerSoftmaxCrossEntropyGrad(SoftmaxCrossEntropyGradOp op) {
  // out[i, j] = (e^(x[i,j] - m[i]) / s[i] - (j == label[i])) * g / N
  Location loc = op.getLoc();
  Value x = buffers[op.getLogits()], labels = buffers[op.getLabels()], g = buffers[op.getGrad()];
  auto type = cast<MemRefType>(x.getType());
  int64_t n = type.getDimSize(0), c = type.getDimSize(1);
  auto [m, s] = rowMaxAndSumExp(loc, x);
  Value out = resultBuffer(op.getResult());
  double scale = op.getReduction() == "mean" ? 1.0 / static_cast<double>(n) : 1.0;
  auto d0 = getAffineDimExpr(0, ctx), d1 = getAffineDimExpr(1, ctx);
  SmallVector<AffineMap> maps{AffineMap::get(2, 0, {d0, d1}, ctx), AffineMap::get(2, 0, {d0}, ctx),
                              AffineMap::get(2, 0, {d0}, ctx), AffineMap::get(2, 0, {d0}, ctx),
                              AffineMap::get(2, 0, {}, ctx), AffineMap::get(2, 0, {d0, d1}, ctx)};
  b.create<linalg::GenericOp>(
      loc, ValueRange{x, labels, m, s, g}, ValueRange{out}, maps,
      SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value j = nb.create<linalg::IndexOp>(l, 1);
        Value label = nb.create<arith::IndexCastOp>(l, nb.getIndexType(), a[1]);
        Value zero = nb.create<arith::ConstantIndexOp>(l, 0);
        Value cIdx = nb.create<arith::ConstantIndexOp>(l, c);
        Value ok = nb.create<arith::AndIOp>(
            l, nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::sge, label, zero),
            nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::slt, label, cIdx));
        Value p = nb.create<arith::DivFOp>(
            l, nb.create<math::ExpOp>(l, nb.create<arith::SubFOp>(l, a[0], a[2])), a[3]);
        Value hit = nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::eq, j, label);
        Value onehot = nb.create<arith::SelectOp>(l, hit, f32Const(nb, l, 1.0), f32Const(nb, l, 0.0));
        Value d = nb.create<arith::MulFOp>(
            l, nb.create<arith::SubFOp>(l, p, onehot),
            nb.create<arith::MulFOp>(l, a[4], f32Const(nb, l, scale)));
        Value nan = f32Const(nb, l, std::numeric_limits<double>::quiet_NaN());
        nb.create<linalg::YieldOp>(l, Value(nb.create<arith::SelectOp>(l, ok, d, nan)));
      });
  buffers[op.getResult()] = out;
  return success();
}

LogicalResult GraphLowering::lowerArgmax(ArgmaxOp op) {
  // One pass over the input with the axis as the innermost (reduction)
  // loop, carrying the best value in a scratch buffer; a strictly greater
  // value or the first NaN wins, so ties keep the first index.
  Location loc = op.getLoc();
  Value x = buffers[op.getInput()];
  auto inType = cast<MemRefType>(x.getType());
  int64_t rank = inType.getRank(), axis = op.getAxis();
  Value out = resultBuffer(op.getResult());
  auto outType = cast<MemRefType>(out.getType());
  Value best = alloc(loc, MemRefType::get(outType.getShape(), b.getF32Type()));
  fill(loc, best, -std::numeric_limits<double>::infinity());
  Value zero = b.create<arith::ConstantOp>(loc, b.getI32IntegerAttr(0));
  b.create<linalg::FillOp>(loc, ValueRange{zero}, ValueRange{out});
  SmallVector<AffineExpr> inExprs(rank), outExprs;
  int64_t next = 0;
  for (int64_t d = 0; d < rank; ++d)
    if (d != axis) {
      inExprs[d] = getAffineDimExpr(next, ctx);
      outExprs.push_back(getAffineDimExpr(next++, ctx));
    }
  inExprs[axis] = getAffineDimExpr(rank - 1, ctx);
  SmallVector<AffineMap> maps{AffineMap::get(rank, 0, inExprs, ctx),
                              AffineMap::get(rank, 0, outExprs, ctx),
                              AffineMap::get(rank, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iters(rank - 1, utils::IteratorType::parallel);
  iters.push_back(utils::IteratorType::reduction);
  b.create<linalg::GenericOp>(
      loc, ValueRange{x}, ValueRange{best, out}, maps, iters,
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value v = a[0], m = a[1], idx = a[2];
        Value greater = nb.create<arith::CmpFOp>(l, arith::CmpFPredicate::OGT, v, m);
        Value vNaN = nb.create<arith::CmpFOp>(l, arith::CmpFPredicate::UNO, v, v);
        Value mOrd = nb.create<arith::CmpFOp>(l, arith::CmpFPredicate::ORD, m, m);
        Value take = nb.create<arith::OrIOp>(l, greater, nb.create<arith::AndIOp>(l, vNaN, mOrd));
        Value j = nb.create<arith::IndexCastOp>(l, nb.getI32Type(),
                                                nb.create<linalg::IndexOp>(l, rank - 1));
        nb.create<linalg::YieldOp>(l, ValueRange{nb.create<arith::SelectOp>(l, take, v, m),
                                                 nb.create<arith::SelectOp>(l, take, j, idx)});
      });
  buffers[op.getResult()] = out;
  return success();
}

/// Positions of a window sweep: (n + lo + hi - d*(k-1) - 1) / s + 1.
static int64_t windowCount(int64_t n, int64_t k, int64_t s, int64_t lo, int64_t hi, int64_t d) {
  return (n + lo + hi - d * (k - 1) - 1) / s + 1;
}

/// The elements of im2col(x): [r, q] with r = (c, u, v) and q = (n, i, j) is
///   x[n, c, i*sh - pt + u*dh, j*sw - pl + v*dw], or pad_value outside,
/// computed from a part that depends on the row only, {c, u*dh, v*dw}, and
/// one that depends on the column only, {n, i*sh - pt, j*sw - pl}.
/// The elements of 1-D `flat` at the vector<VL x i32> offsets `at` where
/// `mask` is set, `pass` elsewhere. Lanes at consecutive offsets (a
/// stride-1 window row inside one output row, the common case of a forward
/// convolution's columns; pixels of one image read channel-major) are one
/// masked vector load; others a gather. The test does not depend on the
/// packing's k, so LLVM takes it out of that loop when it can.
static Value loadLanes(OpBuilder &nb, Location l, Value flat, Value at, Value mask, Value pass) {
  auto ivec = cast<VectorType>(at.getType());
  VectorType fvec = VectorType::get(ivec.getShape(), nb.getF32Type());
  int64_t vl = ivec.getShape()[0];
  Value first = nb.create<vector::ExtractOp>(l, at, ArrayRef<int64_t>{0});
  Value last = nb.create<vector::ExtractOp>(l, at, ArrayRef<int64_t>{vl - 1});
  Value span = nb.create<arith::SubIOp>(l, last, first);
  Value contiguous = nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::eq, span,
                                              nb.create<arith::ConstantOp>(l, nb.getI32IntegerAttr(vl - 1)));
  auto load = nb.create<scf::IfOp>(
      l, contiguous,
      [&](OpBuilder &tb, Location) {
        Value base = tb.create<arith::IndexCastOp>(l, tb.getIndexType(), first);
        Value v = tb.create<vector::MaskedLoadOp>(l, fvec, flat, ValueRange{base}, mask, pass);
        tb.create<scf::YieldOp>(l, v);
      },
      [&](OpBuilder &eb, Location) {
        // Lanes two apart (a window row of a stride-2 convolution): two
        // masked vector loads of the 2 * vl elements from the first, each
        // lane's mask on its even element, and the even elements shuffled
        // out. Others: a gather.
        SmallVector<int32_t> twice;
        for (int64_t i = 0; i < vl; ++i)
          twice.push_back(static_cast<int32_t>(2 * i));
        Value even = eb.create<arith::AddIOp>(
            l, eb.create<vector::BroadcastOp>(l, ivec, first),
            eb.create<arith::ConstantOp>(l, DenseElementsAttr::get(ivec, ArrayRef<int32_t>(twice))));
        Value same = eb.create<arith::CmpIOp>(l, arith::CmpIPredicate::eq, at, even);
        Value strided = eb.create<vector::ReductionOp>(l, vector::CombiningKind::AND, same);
        auto inner = eb.create<scf::IfOp>(
            l, strided,
            [&](OpBuilder &sb, Location) {
              VectorType mvec = cast<VectorType>(mask.getType());
              Value none = sb.create<arith::ConstantOp>(l, DenseElementsAttr::get(mvec, false));
              Value base = sb.create<arith::IndexCastOp>(l, sb.getIndexType(), first);
              SmallVector<int64_t> lo, hi, evens;
              for (int64_t i = 0; i < vl; ++i) {
                // Element i of each half: lane i / 2 (or vl / 2 + i / 2)
                // of the mask when i is even, else off.
                lo.push_back(i % 2 == 0 ? i / 2 : vl + i);
                hi.push_back(i % 2 == 0 ? vl / 2 + i / 2 : vl + i);
                evens.push_back(2 * i);
              }
              Value m0 = sb.create<vector::ShuffleOp>(l, mask, none, lo);
              Value m1 = sb.create<vector::ShuffleOp>(l, mask, none, hi);
              Value v0 = sb.create<vector::MaskedLoadOp>(l, fvec, flat, ValueRange{base}, m0, pass);
              Value v1 = sb.create<vector::MaskedLoadOp>(
                  l, fvec, flat,
                  ValueRange{sb.create<arith::AddIOp>(l, base, sb.create<arith::ConstantIndexOp>(l, vl))}, m1, pass);
              sb.create<scf::YieldOp>(l, sb.create<vector::ShuffleOp>(l, v0, v1, evens).getResult());
            },
            [&](OpBuilder &gb, Location) {
              Value zero = gb.create<arith::ConstantIndexOp>(l, 0);
              Value v = gb.create<vector::GatherOp>(l, fvec, flat, ValueRange{zero}, at, mask, pass);
              gb.create<scf::YieldOp>(l, v);
            });
        eb.create<scf::YieldOp>(l, inner.getResult(0));
      });
  return load.getResult(0);
}

/// The element (r, q) of an im2col's columns as parts (see GemmOperand):
/// the row r = (channel, u, v) gives {its offset in an image, u * dh,
/// v * dw}, the column q = (n, i, j) gives {the offset of its window's
/// origin, that origin's row and column}; the element is the image's
/// element at the sum of the offsets when the window point is inside the
/// image, else the padding value. The image is read flat.
struct Im2colParts {
  mutable Im2colOp op; // (the generated accessors are not const)
  Value flat;          // the image as one dimension
  int64_t n, ch, h, w, oh, ow;
  Im2colParts(Im2colOp op, Value x, OpBuilder &b, Location loc) : op(op) {
    auto type = cast<MemRefType>(x.getType());
    auto xs = type.getShape();
    n = xs[0], ch = xs[1], h = xs[2], w = xs[3];
    ArrayRef<int64_t> k = op.getKernel(), st = op.getStride(), pad = op.getPadding(), dil = op.getDilation();
    oh = windowCount(h, k[0], st[0], pad[0], pad[2], dil[0]);
    ow = windowCount(w, k[1], st[1], pad[1], pad[3], dil[1]);
    flat = b.create<memref::CollapseShapeOp>(loc, x, ArrayRef<ReassociationIndices>{{0, 1, 2, 3}});
  }
  /// Whether every offset fits the 32-bit lanes of the vector path.
  bool fits32() const { return n * ch * h * w + h * w < (int64_t(1) << 31); }
  static Value c(OpBuilder &nb, Location l, int64_t v) { return nb.create<arith::ConstantIndexOp>(l, v); }
  SmallVector<Value, 4> row(OpBuilder &nb, Location l, Value r) const {
    ArrayRef<int64_t> k = op.getKernel(), dil = op.getDilation();
    Value chan = nb.create<arith::DivUIOp>(l, r, c(nb, l, k[0] * k[1]));
    Value u = nb.create<arith::RemUIOp>(l, nb.create<arith::DivUIOp>(l, r, c(nb, l, k[1])), c(nb, l, k[0]));
    Value v = nb.create<arith::RemUIOp>(l, r, c(nb, l, k[1]));
    Value du = nb.create<arith::MulIOp>(l, u, c(nb, l, dil[0]));
    Value dv = nb.create<arith::MulIOp>(l, v, c(nb, l, dil[1]));
    Value off = nb.create<arith::AddIOp>(
        l, nb.create<arith::AddIOp>(l, nb.create<arith::MulIOp>(l, chan, c(nb, l, h * w)),
                                    nb.create<arith::MulIOp>(l, du, c(nb, l, w))),
        dv);
    return {off, du, dv};
  }
  SmallVector<Value, 4> col(OpBuilder &nb, Location l, Value q) const {
    ArrayRef<int64_t> st = op.getStride(), pad = op.getPadding();
    Value img = nb.create<arith::DivUIOp>(l, q, c(nb, l, oh * ow));
    Value i = nb.create<arith::RemUIOp>(l, nb.create<arith::DivUIOp>(l, q, c(nb, l, ow)), c(nb, l, oh));
    Value j = nb.create<arith::RemUIOp>(l, q, c(nb, l, ow));
    // Signed: the window's origin is negative in the padding.
    Value ih = nb.create<arith::SubIOp>(l, nb.create<arith::MulIOp>(l, i, c(nb, l, st[0])), c(nb, l, pad[0]));
    Value iw = nb.create<arith::SubIOp>(l, nb.create<arith::MulIOp>(l, j, c(nb, l, st[1])), c(nb, l, pad[1]));
    Value off = nb.create<arith::AddIOp>(
        l, nb.create<arith::AddIOp>(l, nb.create<arith::MulIOp>(l, img, c(nb, l, ch * h * w)),
                                    nb.create<arith::MulIOp>(l, ih, c(nb, l, w))),
        iw);
    return {off, ih, iw};
  }
  Value combine(OpBuilder &nb, Location l, ValueRange rowPart, ValueRange colPart) const {
    Value ih = nb.create<arith::AddIOp>(l, colPart[1], rowPart[1]);
    Value iw = nb.create<arith::AddIOp>(l, colPart[2], rowPart[2]);
    // 0 <= a < hi as one unsigned comparison.
    auto inRange = [&](Value a, int64_t hi) {
      return nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::ult, a, c(nb, l, hi));
    };
    Value ok = nb.create<arith::AndIOp>(l, inRange(ih, h), inRange(iw, w));
    Value at = nb.create<arith::SelectOp>(l, ok, nb.create<arith::AddIOp>(l, colPart[0], rowPart[0]), c(nb, l, 0));
    Value val = nb.create<memref::LoadOp>(l, flat, ValueRange{at});
    return nb.create<arith::SelectOp>(l, ok, val, f32Const(nb, l, op.getPadValue().convertToDouble()));
  }
  /// combine for vector<VL x i32> parts: one masked gather.
  Value combineVector(OpBuilder &nb, Location l, ValueRange rowPart, ValueRange colPart, Value lanes) const {
    auto ivec = cast<VectorType>(rowPart[0].getType());
    VectorType fvec = VectorType::get(ivec.getShape(), nb.getF32Type());
    auto splatI = [&](int64_t v) {
      return nb.create<arith::ConstantOp>(l, DenseElementsAttr::get(ivec, nb.getI32IntegerAttr(v)));
    };
    auto splatF = [&](double v) {
      return nb.create<arith::ConstantOp>(l, DenseElementsAttr::get(fvec, nb.getF32FloatAttr(v)));
    };
    Value ih = nb.create<arith::AddIOp>(l, colPart[1], rowPart[1]);
    Value iw = nb.create<arith::AddIOp>(l, colPart[2], rowPart[2]);
    Value ok = nb.create<arith::AndIOp>(
        l, nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::ult, ih, splatI(h)),
        nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::ult, iw, splatI(w)));
    Value at = nb.create<arith::AddIOp>(l, colPart[0], rowPart[0]);
    Value mask = nb.create<arith::AndIOp>(l, ok, lanes);
    Value padv = splatF(op.getPadValue().convertToDouble());
    Value load = loadLanes(nb, l, flat, at, mask, padv);
    return nb.create<arith::SelectOp>(l, lanes, load, splatF(0.0));
  }
};

/// The element (r, q) of a tensor y [N, K, H, W] read channel-major as
/// [G, K/G, N*H*W] (transposed to [K, N, H, W]), as parts: row (g, k) gives
/// its channel's offset, column q = (n, h, w) its image's and pixel's.
struct ChannelMajorParts {
  Value flat;
  int64_t n, k, p, groups;
  ChannelMajorParts(Value y, int64_t groups, OpBuilder &b, Location loc) : groups(groups) {
    auto s = cast<MemRefType>(y.getType()).getShape();
    n = s[0], k = s[1], p = s[2] * s[3];
    flat = b.create<memref::CollapseShapeOp>(loc, y, ArrayRef<ReassociationIndices>{{0, 1, 2, 3}});
  }
  bool fits32() const { return n * k * p < (int64_t(1) << 31); }
  static Value c(OpBuilder &nb, Location l, int64_t v) { return nb.create<arith::ConstantIndexOp>(l, v); }
  SmallVector<Value, 4> row(OpBuilder &nb, Location l, Value g, Value i) const {
    Value channel = nb.create<arith::AddIOp>(l, nb.create<arith::MulIOp>(l, g, c(nb, l, k / groups)), i);
    return {nb.create<arith::MulIOp>(l, channel, c(nb, l, p))};
  }
  SmallVector<Value, 4> col(OpBuilder &nb, Location l, Value q) const {
    Value img = nb.create<arith::DivUIOp>(l, q, c(nb, l, p));
    Value pix = nb.create<arith::RemUIOp>(l, q, c(nb, l, p));
    return {nb.create<arith::AddIOp>(l, nb.create<arith::MulIOp>(l, img, c(nb, l, k * p)), pix)};
  }
  Value combine(OpBuilder &nb, Location l, ValueRange rowPart, ValueRange colPart) const {
    Value at = nb.create<arith::AddIOp>(l, rowPart[0], colPart[0]);
    return nb.create<memref::LoadOp>(l, flat, ValueRange{at});
  }
  Value combineVector(OpBuilder &nb, Location l, ValueRange rowPart, ValueRange colPart, Value lanes) const {
    auto ivec = cast<VectorType>(rowPart[0].getType());
    VectorType fvec = VectorType::get(ivec.getShape(), nb.getF32Type());
    Value zero = nb.create<arith::ConstantOp>(l, DenseElementsAttr::get(fvec, nb.getF32FloatAttr(0.0)));
    Value at = nb.create<arith::AddIOp>(l, rowPart[0], colPart[0]);
    return loadLanes(nb, l, flat, at, lanes, zero);
  }
};

/// A computed operand's combinations through `parts` (Im2colParts,
/// ChannelMajorParts): the vector one only when every offset fits 32 bits.
template <typename Parts>
static void combineThrough(GemmOperand &op, std::shared_ptr<Parts> parts) {
  op.combine = [parts](OpBuilder &nb, Location l, ValueRange row, ValueRange col) {
    return parts->combine(nb, l, row, col);
  };
  if (parts->fits32())
    op.combineVector = [parts](OpBuilder &nb, Location l, ValueRange row, ValueRange col, Value lanes) {
      return parts->combineVector(nb, l, row, col, lanes);
    };
}

/// for (i = lo; i < hi; ++i) fn(i), as an scf.for; returns the loop.
static scf::ForOp forRange(OpBuilder &nb, Location l, Value lo, Value hi,
                           function_ref<void(OpBuilder &, Value)> fn) {
  Value one = nb.create<arith::ConstantIndexOp>(l, 1);
  return nb.create<scf::ForOp>(l, lo, hi, one, ValueRange{}, [&](OpBuilder &ib, Location, Value i, ValueRange) {
    fn(ib, i);
    ib.create<scf::YieldOp>(l);
  });
}

/// The window indices t in [0, count) with 0 <= t*s + a < size (a = the
/// kernel point's offset minus the padding):
/// [max(0, ceil(-a / s)), min(count, floor((size - 1 - a) / s) + 1)), empty
/// as [lo, lo). Divisions of non-negative values only (unsigned ones lower
/// directly to LLVM).
static std::pair<Value, Value> windowRange(OpBuilder &nb, Location l, Value a, int64_t s, int64_t size,
                                           int64_t count) {
  auto c = [&](int64_t v) { return Value(nb.create<arith::ConstantIndexOp>(l, v)); };
  Value zero = c(0);
  Value neg = nb.create<arith::SubIOp>(l, zero, a);
  Value lo = nb.create<arith::SelectOp>(l, nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::sgt, neg, zero),
                                        nb.create<arith::DivUIOp>(l, nb.create<arith::AddIOp>(l, neg, c(s - 1)), c(s)),
                                        zero);
  Value last = nb.create<arith::SubIOp>(l, c(size - 1), a);
  Value hi = nb.create<arith::SelectOp>(l, nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::sge, last, zero),
                                        nb.create<arith::AddIOp>(l, nb.create<arith::DivUIOp>(l, last, c(s)), c(1)),
                                        zero);
  hi = nb.create<arith::MaxSIOp>(l, lo, nb.create<arith::MinSIOp>(l, hi, c(count)));
  return {lo, hi};
}

LogicalResult GraphLowering::lowerIm2col(Im2colOp op) {
  // cols[(c, u, v), (n, i, j)] = x[n, c, i*sh - pt + u*dh, j*sw - pl + v*dw]
  // (the pad value outside the image), one column row (c, u, v) per
  // iteration of the outer loop: per image row of windows, the padding
  // before and after the run of in-range j, and between them a plain
  // strided copy along j that LLVM vectorises.
  Location loc = op.getLoc();
  Value x = buffers[op.getInput()];
  Value out = resultBuffer(op.getResult());
  auto xs = cast<MemRefType>(x.getType()).getShape();
  ArrayRef<int64_t> k = op.getKernel(), st = op.getStride(), pad = op.getPadding(), dil = op.getDilation();
  int64_t oh = windowCount(xs[2], k[0], st[0], pad[0], pad[2], dil[0]);
  int64_t ow = windowCount(xs[3], k[1], st[1], pad[1], pad[3], dil[1]);
  auto c = [&](OpBuilder &nb, Location l, int64_t v) { return Value(nb.create<arith::ConstantIndexOp>(l, v)); };
  Value zero = c(b, loc, 0);
  Value padValue = f32Const(b, loc, op.getPadValue().convertToDouble());
  int64_t rows = xs[1] * k[0] * k[1];
  auto body = [&](OpBuilder &nb, Location l, Value r) {
    Value ch = nb.create<arith::DivUIOp>(l, r, c(nb, l, k[0] * k[1]));
    Value u = nb.create<arith::RemUIOp>(l, nb.create<arith::DivUIOp>(l, r, c(nb, l, k[1])), c(nb, l, k[0]));
    Value v = nb.create<arith::RemUIOp>(l, r, c(nb, l, k[1]));
    Value ah = nb.create<arith::SubIOp>(l, nb.create<arith::MulIOp>(l, u, c(nb, l, dil[0])), c(nb, l, pad[0]));
    Value aw = nb.create<arith::SubIOp>(l, nb.create<arith::MulIOp>(l, v, c(nb, l, dil[1])), c(nb, l, pad[1]));
    auto [jlo, jhi] = windowRange(nb, l, aw, st[1], xs[3], ow);
    forRange(nb, l, zero, c(nb, l, xs[0]), [&](OpBuilder &mb, Value n) {
      forRange(mb, l, zero, c(mb, l, oh), [&](OpBuilder &ib, Value i) {
        Value h = ib.create<arith::AddIOp>(l, ib.create<arith::MulIOp>(l, i, c(ib, l, st[0])), ah);
        Value q0 = ib.create<arith::MulIOp>(
            l, ib.create<arith::AddIOp>(l, ib.create<arith::MulIOp>(l, n, c(ib, l, oh)), i), c(ib, l, ow));
        auto fillPad = [&](OpBuilder &fb, Value lo, Value hi) {
          forRange(fb, l, lo, hi, [&](OpBuilder &jb, Value j) {
            jb.create<memref::StoreOp>(l, padValue, out, ValueRange{r, jb.create<arith::AddIOp>(l, q0, j)});
          });
        };
        Value inside = ib.create<arith::CmpIOp>(l, arith::CmpIPredicate::ult, h, c(ib, l, xs[2]));
        ib.create<scf::IfOp>(
            l, inside,
            [&](OpBuilder &tb, Location) {
              fillPad(tb, zero, jlo);
              forRange(tb, l, jlo, jhi, [&](OpBuilder &jb, Value j) {
                Value w = jb.create<arith::AddIOp>(l, jb.create<arith::MulIOp>(l, j, c(jb, l, st[1])), aw);
                Value val = jb.create<memref::LoadOp>(l, x, ValueRange{n, ch, h, w});
                jb.create<memref::StoreOp>(l, val, out, ValueRange{r, jb.create<arith::AddIOp>(l, q0, j)});
              });
              fillPad(tb, jhi, c(tb, l, ow));
              tb.create<scf::YieldOp>(l);
            },
            [&](OpBuilder &eb, Location) {
              fillPad(eb, zero, c(eb, l, ow));
              eb.create<scf::YieldOp>(l);
            });
      });
    });
  };
  scf::ForOp loop = forRange(b, loc, zero, c(b, loc, rows), [&](OpBuilder &fb, Value r) { body(fb, loc, r); });
  markParallel(loop, rows, rows * xs[0] * oh * ow);
  buffers[op.getResult()] = out;
  return success();
}

LogicalResult GraphLowering::lowerCol2im(Col2imOp op) {
  // The adjoint of im2col, one (n, c) plane per iteration of the parallel
  // loop (no races): the plane is zeroed, then each kernel point (u, v)
  // adds its row of the columns into the image points it covered:
  //   out[n, c, i*sh - pt + u*dh, j*sw - pl + v*dw] += cols[(c, u, v), (n, i, j)]
  // over the i, j whose point is inside the image (ranges computed once, so
  // the innermost loop is a plain, vectorisable run along j). Every point
  // sums its terms in (u, v) order, as the gather formulation did.
  Location loc = op.getLoc();
  Value cols = buffers[op.getInput()];
  Value out = resultBuffer(op.getResult());
  ArrayRef<int64_t> img = op.getImageShape(), k = op.getKernel(), st = op.getStride(),
                    pad = op.getPadding(), dil = op.getDilation();
  int64_t oh = windowCount(img[2], k[0], st[0], pad[0], pad[2], dil[0]);
  int64_t ow = windowCount(img[3], k[1], st[1], pad[1], pad[3], dil[1]);
  auto c = [&](OpBuilder &nb, Location l, int64_t v) { return Value(nb.create<arith::ConstantIndexOp>(l, v)); };
  Value zero = c(b, loc, 0);
  int64_t outer = img[0] * img[1];
  if (dil[0] == 1 && dil[1] == 1 && cast<MemRefType>(cols.getType()).getLayout().isIdentity()) {
    // Without dilation (input gradients of convolutions with few channels
    // or a stride, as LeNet-5's second layer and ResNet-8's downsampling
    // ones; pooling's gradients): gathered, a vector of VL image columns
    // at a time. Point (h, w) is the sum over u, v (in that order, from 0:
    // the same sums as above) of cols[(c, u, v), (n, i, j)] with
    // h + pt - u = i * sh and w + pl - v = j * sw, where that window
    // position exists. For one row h and one u, the terms of tap v for VL
    // consecutive w are consecutive columns j: with stride 1 a masked
    // load, otherwise an expanding load into the lanes that have a term
    // (every sw-th one), from the first lane's j.
    const int64_t VL = gemmConfig.vl, H = img[2], W = img[3], sh = st[0], sw = st[1];
    Type f32 = b.getF32Type();
    VectorType fvec = VectorType::get({VL}, f32), ivec = VectorType::get({VL}, b.getI32Type());
    Value flat = b.create<memref::CollapseShapeOp>(loc, cols, ArrayRef<ReassociationIndices>{{0, 1}});
    Value outFlat = b.create<memref::CollapseShapeOp>(loc, out, ArrayRef<ReassociationIndices>{{0, 1, 2, 3}});
    auto iconst = [&](OpBuilder &nb, int64_t v) {
      return nb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(ivec, nb.getI32IntegerAttr(v))).getResult();
    };
    SmallVector<int32_t> iota;
    for (int64_t l = 0; l < VL; ++l)
      iota.push_back(static_cast<int32_t>(l));
    auto body = [&](OpBuilder &nb, Value nc) {
      Value n = nb.create<arith::DivUIOp>(loc, nc, c(nb, loc, img[1]));
      Value ch = nb.create<arith::RemUIOp>(loc, nc, c(nb, loc, img[1]));
      Value colBase = nb.create<arith::MulIOp>(loc, n, c(nb, loc, oh * ow));
      Value rowBase = nb.create<arith::MulIOp>(loc, ch, c(nb, loc, k[0] * k[1] * img[0] * oh * ow));
      Value passThru = nb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(fvec, nb.getF32FloatAttr(0.0f)));
      auto chunks = nb.create<scf::ForOp>(loc, zero, c(nb, loc, W), c(nb, loc, VL), ValueRange{},
                                          [&](OpBuilder &wb, Location, Value w0, ValueRange) {
        // Lane l is column w0 + l; its term of tap v is window column
        // j = (w0 + l + pl - v) / sw, when that is whole and in [0, ow).
        // The first such lane's j is max(0, ceil((w0 + pl - v) / sw)).
        Value w = wb.create<arith::AddIOp>(
            loc, wb.create<vector::BroadcastOp>(loc, ivec, wb.create<arith::IndexCastOp>(loc, wb.getI32Type(), w0)),
            wb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(ivec, ArrayRef<int32_t>(iota))));
        Value inImage = wb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::slt, w, iconst(wb, W));
        SmallVector<Value> masks, firstJ;
        for (int64_t v = 0; v < k[1]; ++v) {
          Value x = wb.create<arith::AddIOp>(loc, w, iconst(wb, pad[1] - v)); // j * sw
          Value inside = wb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::ule, x, iconst(wb, sw * (ow - 1)));
          Value m = wb.create<arith::AndIOp>(loc, inImage, inside);
          if (sw > 1) {
            Value whole = wb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::eq,
                                                   wb.create<arith::RemUIOp>(loc, x, iconst(wb, sw)), iconst(wb, 0));
            m = wb.create<arith::AndIOp>(loc, m, whole);
            // (x is unsigned-compared: a negative one is far above the range.)
            Value t = wb.create<arith::AddIOp>(loc, w0, c(wb, loc, pad[1] - v));
            Value up =
                wb.create<arith::DivSIOp>(loc, wb.create<arith::AddIOp>(loc, t, c(wb, loc, sw - 1)), c(wb, loc, sw));
            firstJ.push_back(wb.create<arith::SelectOp>(
                loc, wb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::sgt, t, zero), up, zero));
          }
          masks.push_back(m);
        }
        forRange(wb, loc, zero, c(wb, loc, H), [&](OpBuilder &hb, Value h) {
          // The u with window row i = (h + pt - u) / sh whole and in
          // [0, oh): from the first u >= max(0, h + pt - sh * (oh - 1))
          // with h + pt - u a multiple of sh, by sh, below
          // min(kh, h + pt + 1).
          Value hp = hb.create<arith::AddIOp>(loc, h, c(hb, loc, pad[0]));
          Value ulo =
              hb.create<arith::MaxSIOp>(loc, zero, hb.create<arith::SubIOp>(loc, hp, c(hb, loc, sh * (oh - 1))));
          if (sh > 1)
            ulo = hb.create<arith::AddIOp>(
                loc, ulo, hb.create<arith::RemUIOp>(loc, hb.create<arith::SubIOp>(loc, hp, ulo), c(hb, loc, sh)));
          Value uhi =
              hb.create<arith::MinSIOp>(loc, c(hb, loc, k[0]), hb.create<arith::AddIOp>(loc, hp, c(hb, loc, 1)));
          auto terms = hb.create<scf::ForOp>(
              loc, ulo, uhi, c(hb, loc, sh), ValueRange{passThru},
              [&](OpBuilder &ub, Location, Value u, ValueRange acc) {
                Value i = ub.create<arith::DivUIOp>(loc, ub.create<arith::SubIOp>(loc, hp, u), c(ub, loc, sh));
                // cols[(c, u, v), (n, i, j)], flat: j = w0 + pl - v with
                // stride 1, the first lane's j otherwise.
                Value r = ub.create<arith::AddIOp>(
                    loc, rowBase, ub.create<arith::MulIOp>(loc, u, c(ub, loc, k[1] * img[0] * oh * ow)));
                Value at = ub.create<arith::AddIOp>(loc, ub.create<arith::AddIOp>(loc, r, colBase),
                                                    ub.create<arith::MulIOp>(loc, i, c(ub, loc, ow)));
                Value sum = acc[0];
                for (int64_t v = 0; v < k[1]; ++v) {
                  Value row = ub.create<arith::AddIOp>(loc, at, c(ub, loc, v * img[0] * oh * ow));
                  Value term;
                  if (sw == 1) {
                    Value col =
                        ub.create<arith::AddIOp>(loc, row, ub.create<arith::AddIOp>(loc, w0, c(ub, loc, pad[1] - v)));
                    term = ub.create<vector::MaskedLoadOp>(loc, fvec, flat, ValueRange{col}, masks[v], passThru);
                  } else {
                    Value col = ub.create<arith::AddIOp>(loc, row, firstJ[v]);
                    term = ub.create<vector::ExpandLoadOp>(loc, fvec, flat, ValueRange{col}, masks[v], passThru);
                  }
                  sum = ub.create<arith::AddFOp>(loc, sum, term);
                }
                ub.create<scf::YieldOp>(loc, sum);
              });
          Value o = hb.create<arith::AddIOp>(
              loc,
              hb.create<arith::MulIOp>(
                  loc, hb.create<arith::AddIOp>(loc, hb.create<arith::MulIOp>(loc, nc, c(hb, loc, H)), h),
                  c(hb, loc, W)),
              w0);
          hb.create<vector::MaskedStoreOp>(loc, outFlat, ValueRange{o}, inImage, terms.getResult(0));
        });
        wb.create<scf::YieldOp>(loc);
      });
      chunks->setAttr(kNoUnrollAttr, nb.getUnitAttr());
    };
    scf::ForOp loop = forRange(b, loc, zero, c(b, loc, outer), [&](OpBuilder &fb, Value nc) { body(fb, nc); });
    markParallel(loop, outer, outer * img[2] * img[3] * k[0] * k[1]);
    buffers[op.getResult()] = out;
    return success();
  }
  auto body = [&](OpBuilder &nb, Location l, Value nc) {
    Value n = nb.create<arith::DivUIOp>(l, nc, c(nb, l, img[1]));
    Value ch = nb.create<arith::RemUIOp>(l, nc, c(nb, l, img[1]));
    forRange(nb, l, zero, c(nb, l, img[2]), [&](OpBuilder &hb, Value h) {
      forRange(hb, l, zero, c(hb, l, img[3]), [&](OpBuilder &wb, Value w) {
        wb.create<memref::StoreOp>(l, f32Const(wb, l, 0.0), out, ValueRange{n, ch, h, w});
      });
    });
    forRange(nb, l, zero, c(nb, l, k[0]), [&](OpBuilder &ub, Value u) {
      Value ah = ub.create<arith::SubIOp>(l, ub.create<arith::MulIOp>(l, u, c(ub, l, dil[0])), c(ub, l, pad[0]));
      auto [ilo, ihi] = windowRange(ub, l, ah, st[0], img[2], oh);
      forRange(ub, l, zero, c(ub, l, k[1]), [&](OpBuilder &vb, Value v) {
        Value aw = vb.create<arith::SubIOp>(l, vb.create<arith::MulIOp>(l, v, c(vb, l, dil[1])), c(vb, l, pad[1]));
        auto [jlo, jhi] = windowRange(vb, l, aw, st[1], img[3], ow);
        Value r = vb.create<arith::AddIOp>(
            l, vb.create<arith::MulIOp>(
                   l, vb.create<arith::AddIOp>(l, vb.create<arith::MulIOp>(l, ch, c(vb, l, k[0])), u), c(vb, l, k[1])),
            v);
        forRange(vb, l, ilo, ihi, [&](OpBuilder &ib, Value i) {
          Value h = ib.create<arith::AddIOp>(l, ib.create<arith::MulIOp>(l, i, c(ib, l, st[0])), ah);
          Value row = ib.create<arith::MulIOp>(
              l, ib.create<arith::AddIOp>(l, ib.create<arith::MulIOp>(l, n, c(ib, l, oh)), i), c(ib, l, ow));
          forRange(ib, l, jlo, jhi, [&](OpBuilder &jb, Value j) {
            Value w = jb.create<arith::AddIOp>(l, jb.create<arith::MulIOp>(l, j, c(jb, l, st[1])), aw);
            Value term = jb.create<memref::LoadOp>(l, cols, ValueRange{r, jb.create<arith::AddIOp>(l, row, j)});
            Value old = jb.create<memref::LoadOp>(l, out, ValueRange{n, ch, h, w});
            jb.create<memref::StoreOp>(l, jb.create<arith::AddFOp>(l, old, term), out, ValueRange{n, ch, h, w});
          });
        });
      });
    });
  };
  scf::ForOp loop = forRange(b, loc, zero, c(b, loc, outer), [&](OpBuilder &fb, Value nc) { body(fb, loc, nc); });
  markParallel(loop, outer, outer * img[2] * img[3] * k[0] * k[1]);
  buffers[op.getResult()] = out;
  return success();
}

/// Max and average pooling whose windows tile the input (stride = kernel,
/// no padding, at most 2 wide; soma-decompose leaves them) and max
/// pooling's gradient, as vectors:
/// parallel over the (n, c) planes, then for each output row i and chunk of
/// VL output columns, each window row u is kw * VL consecutive elements of
/// x (masked at the row's end), split into its kw columns by shuffles (the
/// even and odd elements for kw = 2). The forward is max(-inf, x00, x01,
/// ...) in (u, v) order, as the reduction it replaces, or for the average
/// (x00 + x01 + ...) / (kh * kw), the sum in (u, v) order from -0 (the
/// decomposed form, an im2col copy of x and a mean over its windows, took
/// 4 times the memory-bandwidth bound: 2 threads, [32, 64, 32, 32], 0.76
/// ms; lowered here, 0.18, as max pooling); the gradient reads
/// y and dy at the chunk, counts the window elements equal to y, in (u, v)
/// order from 0, and writes dx_uv = (x_uv == y) * (dy / count), the
/// columns interleaved back by shuffles: each element of dx once, the
/// windows do not overlap. The decomposed form took an im2col copy of x
/// and a reduction, and for the gradient an equality, a sum, a division,
/// a product and a col2im over the window columns.
LogicalResult GraphLowering::lowerTilingPool(Operation *op) {
  Location loc = op->getLoc();
  auto fwd = dyn_cast<MaxPool2dOp>(op);
  auto grad = dyn_cast<MaxPool2dGradOp>(op);
  auto avg = dyn_cast<AvgPool2dOp>(op);
  auto avgGrad = dyn_cast<AvgPool2dGradOp>(op);
  // (x is the first operand of the other three, the result of avgGrad; the
  // kernel their attribute.)
  Value xv = avgGrad ? op->getResult(0) : op->getOperand(0);
  ArrayRef<int64_t> k = op->getAttrOfType<DenseI64ArrayAttr>("kernel").asArrayRef();
  ArrayRef<int64_t> xs = cast<RankedTensorType>(xv.getType()).getShape();
  if (!(grad || avgGrad ? tilesInput(xs, k, k, {0, 0, 0, 0}) : isTilingPool(op)))
    return op->emitOpError("pooling whose windows do not tile the input must be decomposed first");
  const int64_t VL = gemmConfig.vl, kh = k[0], kw = k[1], H = xs[2], W = xs[3], OH = H / kh, OW = W / kw;
  const int64_t planes = xs[0] * xs[1];
  Type f32 = b.getF32Type();
  VectorType fvec = VectorType::get({VL}, f32), mvec = VectorType::get({VL}, b.getI1Type());
  auto flat = [&](Value v) {
    return b.create<memref::CollapseShapeOp>(loc, v, ArrayRef<ReassociationIndices>{{0, 1, 2, 3}}).getResult();
  };
  auto idx = [&](OpBuilder &nb, int64_t v) { return nb.create<arith::ConstantIndexOp>(loc, v).getResult(); };
  auto add = [&](OpBuilder &nb, Value x, Value y) { return nb.create<arith::AddIOp>(loc, x, y).getResult(); };
  auto mul = [&](OpBuilder &nb, Value x, Value y) { return nb.create<arith::MulIOp>(loc, x, y).getResult(); };
  auto mask = [&](OpBuilder &nb, Value count) {
    Value c = nb.create<arith::MaxSIOp>(loc, nb.create<arith::MinSIOp>(loc, count, idx(nb, VL)), idx(nb, 0));
    return nb.create<vector::CreateMaskOp>(loc, mvec, ValueRange{c}).getResult();
  };
  Value result = resultBuffer(op->getResult(0));
  Value xF = avgGrad ? Value() : flat(buffers[xv]); // (avgGrad reads no x)
  Value outF = flat(result);
  Value yF = grad ? flat(buffers[grad.getOutput()]) : Value();
  Value dyF = grad ? flat(buffers[grad.getGrad()]) : avgGrad ? flat(buffers[avgGrad.getGrad()]) : Value();
  // (Constants made inside the loops: soma-outline-loops outlines a nest
  // that captures only scalars and memrefs.)
  auto zeros = [&](OpBuilder &nb) {
    return nb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(fvec, nb.getF32FloatAttr(0.0f))).getResult();
  };
  // Lane l of column v of a window row: element l * kw + v of the kw
  // vectors loaded from the row (for kw = 2, the even or odd elements).
  auto columns = [&](OpBuilder &nb, Value at, Value valid) {
    Value zeroVec = zeros(nb);
    SmallVector<Value> parts;
    for (int64_t t = 0; t < kw; ++t)
      parts.push_back(nb.create<vector::MaskedLoadOp>(loc, fvec, xF, ValueRange{add(nb, at, idx(nb, t * VL))},
                                                      mask(nb, nb.create<arith::SubIOp>(loc, valid, idx(nb, t * VL))),
                                                      zeroVec));
    if (kw == 1)
      return parts;
    SmallVector<Value> cols;
    for (int64_t v = 0; v < kw; ++v) {
      SmallVector<int64_t> lanes;
      for (int64_t l = 0; l < VL; ++l)
        lanes.push_back(l * kw + v);
      cols.push_back(nb.create<vector::ShuffleOp>(loc, parts[0], parts[1], lanes));
    }
    return cols;
  };
  scf::ForOp loop = forRange(b, loc, idx(b, 0), idx(b, planes), [&](OpBuilder &pb, Value plane) {
    Value xPlane = mul(pb, plane, idx(pb, H * W)), oPlane = mul(pb, plane, idx(pb, OH * OW));
    forRange(pb, loc, idx(pb, 0), idx(pb, OH), [&](OpBuilder &ib, Value i) {
      auto chunks = ib.create<scf::ForOp>(
          loc, idx(ib, 0), idx(ib, OW), idx(ib, VL), ValueRange{}, [&](OpBuilder &cb, Location, Value j0, ValueRange) {
            Value zeroVec = zeros(cb);
            Value outs = cb.create<arith::SubIOp>(loc, idx(cb, OW), j0); // outputs left in the row
            Value outMask = mask(cb, outs);
            Value o = add(cb, add(cb, oPlane, mul(cb, i, idx(cb, OW))), j0);
            Value valid = mul(cb, outs, idx(cb, kw)); // x elements left in the window rows
            SmallVector<Value> xuv; // (u, v) order
            for (int64_t u = 0; u < kh && !avgGrad; ++u) {
              Value row = add(cb, xPlane, mul(cb, add(cb, mul(cb, i, idx(cb, kh)), idx(cb, u)), idx(cb, W)));
              llvm::append_range(xuv, columns(cb, add(cb, row, mul(cb, j0, idx(cb, kw))), valid));
            }
            if (avg) {
              Value s = cb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(fvec, cb.getF32FloatAttr(-0.0f)));
              for (Value x : xuv)
                s = cb.create<arith::AddFOp>(loc, s, x);
              Value n = cb.create<arith::ConstantOp>(
                  loc, DenseElementsAttr::get(fvec, cb.getF32FloatAttr(static_cast<float>(kh * kw))));
              cb.create<vector::MaskedStoreOp>(loc, outF, ValueRange{o}, outMask,
                                               cb.create<arith::DivFOp>(loc, s, n));
            } else if (fwd) {
              Value m = cb.create<arith::ConstantOp>(
                  loc, DenseElementsAttr::get(fvec, cb.getF32FloatAttr(-std::numeric_limits<float>::infinity())));
              for (Value x : xuv)
                m = cb.create<arith::MaximumFOp>(loc, m, x);
              cb.create<vector::MaskedStoreOp>(loc, outF, ValueRange{o}, outMask, m);
            } else {
              Value dy = cb.create<vector::MaskedLoadOp>(loc, fvec, dyF, ValueRange{o}, outMask, zeroVec);
              Value one = cb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(fvec, cb.getF32FloatAttr(1.0f)));
              // Max pooling: the window's elements equal to y share dy;
              // average pooling: every element gets dy / (kh kw).
              SmallVector<Value> eq;
              Value share;
              if (avgGrad) {
                share = cb.create<arith::DivFOp>(
                    loc, dy,
                    cb.create<arith::ConstantOp>(
                        loc, DenseElementsAttr::get(fvec, cb.getF32FloatAttr(static_cast<float>(kh * kw)))));
              } else {
                Value y = cb.create<vector::MaskedLoadOp>(loc, fvec, yF, ValueRange{o}, outMask, zeroVec);
                Value count = zeroVec;
                for (Value x : xuv) {
                  Value same = cb.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OEQ, x, y);
                  eq.push_back(cb.create<arith::SelectOp>(loc, same, one, zeroVec));
                  count = cb.create<arith::AddFOp>(loc, count, eq.back());
                }
                share = cb.create<arith::DivFOp>(loc, dy, count);
              }
              for (int64_t u = 0; u < kh; ++u) {
                SmallVector<Value> d;
                for (int64_t v = 0; v < kw; ++v) {
                  if (avgGrad) {
                    d.push_back(share);
                    continue;
                  }
                  Value x = xuv[u * kw + v];
                  d.push_back(cb.create<arith::MulFOp>(loc, eq[u * kw + v], share));
                  if (grad.getRelu()) { // times step(x), as soma.step
                    Value pos = cb.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT, x, zeroVec);
                    d.back() = cb.create<arith::MulFOp>(loc, d.back(), cb.create<arith::SelectOp>(loc, pos, one, zeroVec));
                  }
                }
                // Interleaved back: element e of part t is column (t * VL + e) % kw's lane (t * VL + e) / kw.
                SmallVector<Value> parts;
                if (kw == 1) {
                  parts = d;
                } else {
                  for (int64_t t = 0; t < kw; ++t) {
                    SmallVector<int64_t> lanes;
                    for (int64_t e = 0; e < VL; ++e)
                      lanes.push_back(((t * VL + e) % kw) * VL + (t * VL + e) / kw);
                    parts.push_back(cb.create<vector::ShuffleOp>(loc, d[0], d[1], lanes));
                  }
                }
                Value row = add(cb, xPlane, mul(cb, add(cb, mul(cb, i, idx(cb, kh)), idx(cb, u)), idx(cb, W)));
                Value at = add(cb, row, mul(cb, j0, idx(cb, kw)));
                for (int64_t t = 0; t < kw; ++t)
                  cb.create<vector::MaskedStoreOp>(loc, outF, ValueRange{add(cb, at, idx(cb, t * VL))},
                                                   mask(cb, cb.create<arith::SubIOp>(loc, valid, idx(cb, t * VL))),
                                                   parts[t]);
              }
            }
            cb.create<scf::YieldOp>(loc);
          });
      chunks->setAttr(kNoUnrollAttr, ib.getUnitAttr());
    });
  });
  // The work as the grain rule weighs an elementwise op's (stage 38): per
  // element of x, the forward reads it and writes a quarter (2 x 2), the
  // gradient reads it and y, dy and writes dx (LeNet-5's second pooling,
  // 102,400 elements, then runs on both threads).
  markParallel(loop, planes, planes * H * W * (grad ? 3 : 2));
  buffers[op->getResult(0)] = result;
  return success();
}

LogicalResult GraphLowering::lowerPad(PadOp op) {
  Location loc = op.getLoc();
  Value out = resultBuffer(op.getResult());
  fill(loc, out, op.getValue().convertToDouble());
  auto inShape = cast<RankedTensorType>(op.getInput().getType()).getShape();
  SmallVector<int64_t> strides;
  for (int64_t i : op.getInterior())
    strides.push_back(i + 1);
  Value view = b.create<memref::SubViewOp>(loc, out, op.getLow(), inShape, strides);
  copy(loc, buffers[op.getInput()], view);
  buffers[op.getResult()] = out;
  return success();
}

LogicalResult GraphLowering::lowerConstant(ConstantOp op) {
  auto type = memrefOf(op.getType());
  std::string name = (kernelName + "_const" + Twine(numGlobals++)).str();
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(graph);
    b.create<memref::GlobalOp>(op.getLoc(), name, b.getStringAttr("private"), type,
                               cast<Attribute>(op.getValue()),
                               /*constant=*/true, b.getI64IntegerAttr(64));
  }
  buffers[op.getResult()] = b.create<memref::GetGlobalOp>(op.getLoc(), type, name);
  return success();
}

/// out[i] = Philox4x32-10 word 0 of key {seed lo, seed hi} and counter
/// {i, uint32(counter), "soma", 0}, as (w >> 8) * 2^-24: the same bits as
/// the interpreter and the op's description. The key schedule is constant
/// and unrolled here; each round is two 32x32->64 multiplications.
LogicalResult GraphLowering::lowerRandomUniform(RandomUniformOp op) {
  Location loc = op.getLoc();
  Value out = resultBuffer(op.getResult());
  auto shape = cast<RankedTensorType>(op.getType()).getShape();
  int64_t rank = shape.size();
  SmallVector<AffineMap> maps{AffineMap::get(rank, 0, {}, ctx), AffineMap::getMultiDimIdentityMap(rank, ctx)};
  auto seed = static_cast<uint64_t>(op.getSeed());
  b.create<linalg::GenericOp>(
      loc, ValueRange{buffers[op.getCounter()]}, ValueRange{out}, maps,
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location l, ValueRange a) {
        auto i32 = nb.getI32Type();
        auto u32 = [&](uint32_t v) {
          return Value(nb.create<arith::ConstantOp>(l, nb.getI32IntegerAttr(static_cast<int32_t>(v))));
        };
        // Row-major linear index.
        Value linear = nb.create<arith::ConstantIndexOp>(l, 0);
        for (int64_t d = 0; d < rank; ++d) {
          Value scaled = nb.create<arith::MulIOp>(l, linear, nb.create<arith::ConstantIndexOp>(l, shape[d]));
          linear = nb.create<arith::AddIOp>(l, scaled, nb.create<linalg::IndexOp>(l, d));
        }
        Value c0 = nb.create<arith::IndexCastUIOp>(l, i32, linear);
        Value c1 = nb.create<arith::FPToUIOp>(l, i32, a[0]);
        Value c2 = u32(kRandomUniformTag), c3 = u32(0);
        uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
        for (int round = 0; round < 10; ++round) {
          if (round > 0) {
            k0 += detail::kPhiloxW0;
            k1 += detail::kPhiloxW1;
          }
          auto p0 = nb.create<arith::MulUIExtendedOp>(l, u32(detail::kPhiloxM0), c0);
          auto p1 = nb.create<arith::MulUIExtendedOp>(l, u32(detail::kPhiloxM1), c2);
          Value n0 = nb.create<arith::XOrIOp>(l, nb.create<arith::XOrIOp>(l, p1.getHigh(), c1), u32(k0));
          Value n2 = nb.create<arith::XOrIOp>(l, nb.create<arith::XOrIOp>(l, p0.getHigh(), c3), u32(k1));
          c0 = n0;
          c1 = p1.getLow();
          c2 = n2;
          c3 = p0.getLow();
        }
        Value top = nb.create<arith::ShRUIOp>(l, c0, u32(8));
        Value f = nb.create<arith::UIToFPOp>(l, nb.getF32Type(), top);
        nb.create<linalg::YieldOp>(l, Value(nb.create<arith::MulFOp>(l, f, f32Const(nb, l, 0x1p-24))));
      });
  buffers[op.getResult()] = out;
  return success();
}

LogicalResult GraphLowering::emitFusedScalars(OpBuilder &nb, Location l, Block &body, ValueRange args,
                                              Operation *stop, DenseMap<Value, Value> &scalar) {
  LogicalResult status = success();
  for (unsigned i = 0; i < body.getNumArguments(); ++i)
    scalar[body.getArgument(i)] = args[i];
  for (Operation &inner : body.without_terminator()) {
    if (&inner == stop)
      break;
    if (scalar.count(inner.getResult(0)))
      continue; // given by the caller (a contraction's product)
    if (auto c = dyn_cast<ConstantOp>(inner)) {
      auto splat = cast<DenseElementsAttr>(c.getValue()).getSplatValue<TypedAttr>();
      scalar[c.getResult()] = nb.create<arith::ConstantOp>(l, splat);
      continue;
    }
    SmallVector<Value> operands;
    for (Value v : inner.getOperands())
      operands.push_back(scalar.lookup(v));
    Value v = emitElementwiseScalar(nb, l, &inner, operands);
    if (!v) {
      status = inner.emitOpError("has no scalar form for a fused kernel");
      v = operands.front();
    }
    scalar[inner.getResult(0)] = v;
  }
  return status;
}

/// A reduction soma.fusion: reduce() over the reduced operand's shape whose
/// body computes the elementwise ops at each point and accumulates the last
/// of them into the output; a mean is scaled afterwards.
LogicalResult GraphLowering::lowerReductionFusion(FusionOp op) {
  Location loc = op.getLoc();
  Block &body = op.getBody().front();
  Operation *reduce = body.getTerminator()->getPrevNode();
  auto axes = reduce->getAttrOfType<DenseI64ArrayAttr>("axes").asArrayRef();
  bool keepdims = false;
  if (auto k = reduce->getAttrOfType<BoolAttr>("keepdims"))
    keepdims = k.getValue();
  auto shape = cast<RankedTensorType>(reduce->getOperand(0).getType()).getShape();
  SmallVector<Value> ins;
  for (Value v : op.getInputs())
    ins.push_back(buffers[v]);
  Value out = resultBuffer(op.getResult(0));
  bool isMax = isa<ReduceMaxOp>(reduce);
  fill(loc, out, isMax ? -std::numeric_limits<double>::infinity() : 0.0);
  LogicalResult status = success();
  this->reduce(loc, ins, shape, out, axes, keepdims, [&](OpBuilder &nb, Location l, ValueRange args) -> Value {
    DenseMap<Value, Value> scalar;
    if (failed(emitFusedScalars(nb, l, body, args.drop_back(), reduce, scalar)))
      status = failure();
    Value x = scalar.lookup(reduce->getOperand(0)), acc = args.back();
    return isMax ? Value(nb.create<arith::MaximumFOp>(l, acc, x)) : Value(nb.create<arith::AddFOp>(l, acc, x));
  });
  if (isa<ReduceMeanOp>(reduce)) {
    int64_t count = 1;
    for (int64_t a : axes)
      count *= shape[a];
    scaleInPlace(loc, out, 1.0 / static_cast<double>(count));
  }
  buffers[op.getResult(0)] = out;
  return status;
}

/// A contraction soma.fusion: the packed GEMM computes the product into the
/// first result's buffer; on each finished block the epilogue reads every
/// point of it (and the other inputs at their broadcast index), computes
/// the body's elementwise ops and writes every result at that point (a
/// point is read before it is written, so the first result may overwrite
/// the product). The product is rounded exactly as an unfused matmul's.
LogicalResult GraphLowering::lowerContractionFusion(FusionOp op) {
  Location loc = op.getLoc();
  Block &body = op.getBody().front();
  MatmulOp mm;
  for (Operation &inner : body.without_terminator())
    if ((mm = dyn_cast<MatmulOp>(inner)))
      break;
  auto bufferOf = [&](Value arg) { return buffers[op.getInputs()[cast<BlockArgument>(arg).getArgNumber()]]; };
  auto shape = cast<RankedTensorType>(mm.getResult().getType()).getShape();
  int64_t rank = shape.size();
  SmallVector<Value> outs;
  for (Value r : op.getResults())
    outs.push_back(resultBuffer(r));
  // An operand is an input, or a view of one that the packing computes
  // (ir::GemmView): a convolution's columns gathered from the image, per
  // image or not; a filter shared by every image; a tensor read
  // channel-major. None of the views is stored.
  auto operand = [&](Value v, bool transposed) {
    ir::GemmView view = ir::matchGemmView(v);
    Value source = bufferOf(view.source);
    auto shape = cast<RankedTensorType>(v.getType()).getShape();
    int64_t groups = view.groups, rows = shape[1], cols = shape[2];
    auto index = [](OpBuilder &nb, Location l, int64_t x) { return nb.create<arith::ConstantIndexOp>(l, x); };
    if (view.kind == ir::GemmViewKind::Stored)
      return GemmOperand::of(asRank3(b, loc, source), transposed);
    if (view.kind == ir::GemmViewKind::Broadcast) {
      GemmOperand op = GemmOperand::of(reshapeView(loc, source, MemRefType::get({groups, rows, cols}, b.getF32Type())),
                                       transposed);
      op.batchModulo = groups;
      return op;
    }
    GemmOperand op;
    op.transposed = transposed;
    op.shape = {shape[0], shape[1], shape[2]};
    if (view.kind == ir::GemmViewKind::ChannelMajor) {
      auto parts = std::make_shared<ChannelMajorParts>(source, groups, b, loc);
      op.parts = 1;
      op.rowPart = [parts](OpBuilder &nb, Location l, Value g, Value i) { return parts->row(nb, l, g, i); };
      op.colPart = [parts](OpBuilder &nb, Location l, Value, Value q) { return parts->col(nb, l, q); };
      combineThrough(op, parts);
      return op;
    }
    auto parts = std::make_shared<Im2colParts>(cast<Im2colOp>(view.ops.front()), source, b, loc);
    op.parts = 3;
    if (view.kind == ir::GemmViewKind::Columns) {
      // Row i of group g is row g * R + i of the columns.
      op.rowPart = [parts, rows, index](OpBuilder &nb, Location l, Value g, Value i) {
        return parts->row(nb, l, nb.create<arith::AddIOp>(l, nb.create<arith::MulIOp>(l, g, index(nb, l, rows)), i));
      };
      op.colPart = [parts](OpBuilder &nb, Location l, Value, Value j) { return parts->col(nb, l, j); };
    } else {
      // Batch entry n * G + g: row i of group g, column j of image n.
      op.rowPart = [parts, rows, groups, index](OpBuilder &nb, Location l, Value bi, Value i) {
        if (groups == 1)
          return parts->row(nb, l, i);
        Value g = nb.create<arith::RemUIOp>(l, bi, index(nb, l, groups));
        return parts->row(nb, l, nb.create<arith::AddIOp>(l, nb.create<arith::MulIOp>(l, g, index(nb, l, rows)), i));
      };
      op.colPart = [parts, cols, groups, index](OpBuilder &nb, Location l, Value bi, Value j) {
        Value n = groups == 1 ? bi : Value(nb.create<arith::DivUIOp>(l, bi, index(nb, l, groups)));
        return parts->col(nb, l, nb.create<arith::AddIOp>(l, nb.create<arith::MulIOp>(l, n, index(nb, l, cols)), j));
      };
    }
    combineThrough(op, parts);
    return op;
  };
  GemmOperand A = operand(mm.getLhs(), mm.getTransposeA()), B = operand(mm.getRhs(), mm.getTransposeB());
  // The product goes into the result that yields it, else the first one.
  unsigned productResult = 0;
  for (auto [i, v] : llvm::enumerate(body.getTerminator()->getOperands()))
    if (v == mm.getResult())
      productResult = i;
  // The body arguments the epilogue reads (not only the product's operands).
  llvm::SmallBitVector read(body.getNumArguments());
  for (Operation &inner : body.without_terminator())
    if (mm->isBeforeInBlock(&inner))
      for (Value v : inner.getOperands())
        if (auto arg = dyn_cast<BlockArgument>(v))
          read.set(arg.getArgNumber());
  // A reshape of the product (a convolution's per-image products as its
  // NCHW output) splits each product dimension into a run of the
  // epilogue's: the epilogue runs over the product's points, reading its
  // operands and writing its results through views in the product's
  // dimensions (an operand broadcast along a whole run is read at 0 there).
  Operation *productView = nullptr;
  if (mm.getResult().hasOneUse() && isa<ReshapeOp>(*mm.getResult().getUsers().begin()))
    productView = *mm.getResult().getUsers().begin();
  SmallVector<Value> argBuffers(body.getNumArguments());
  SmallVector<SmallVector<int64_t, 4>> argShapes(body.getNumArguments());
  std::optional<SmallVector<SmallVector<int64_t, 2>, 4>> groups;
  ArrayRef<int64_t> viewShape;
  if (productView) {
    viewShape = cast<RankedTensorType>(productView->getResult(0).getType()).getShape();
    groups = ir::expandGroups(shape, viewShape);
  }
  for (unsigned i = 0; i < body.getNumArguments(); ++i) {
    if (!read.test(i))
      continue;
    auto in = cast<RankedTensorType>(body.getArgument(i).getType());
    argBuffers[i] = bufferOf(body.getArgument(i));
    argShapes[i].assign(in.getShape().begin(), in.getShape().end());
    if (!productView)
      continue;
    auto collapsed = ir::collapseBroadcast(in.getShape(), viewShape, *groups);
    if (!collapsed)
      return op.emitOpError("reads an operand of type ") << in << " that its product's view cannot collapse";
    argShapes[i] = *collapsed;
    argBuffers[i] = reshapeView(loc, argBuffers[i], MemRefType::get(*collapsed, in.getElementType()));
  }
  SmallVector<Value> productOuts(outs);
  if (productView)
    for (Value &o : productOuts)
      o = reshapeView(loc, o, MemRefType::get(shape, b.getF32Type()));
  Value C = asRank3(b, loc, productOuts[productResult]);
  LogicalResult status = success();
  GemmEpilogue epilogue = [&](OpBuilder &nb, Location l, Value bIdx, Value m0, Value m1, Value n0, Value n1) {
    forRange(nb, l, m0, m1, [&](OpBuilder &mb, Value m) {
      forRange(mb, l, n0, n1, [&](OpBuilder &xb, Value n) {
        // The point's index in the product's shape: the batch dimensions
        // from the flat batch index, then row and column.
        SmallVector<Value> index(rank);
        Value rest = bIdx;
        for (int64_t d = rank - 3; d >= 0; --d) {
          Value size = xb.create<arith::ConstantIndexOp>(l, shape[d]);
          index[d] = d == 0 ? rest : Value(xb.create<arith::RemUIOp>(l, rest, size));
          if (d > 0)
            rest = xb.create<arith::DivUIOp>(l, rest, size);
        }
        index[rank - 2] = m;
        index[rank - 1] = n;
        SmallVector<Value> args(body.getNumArguments());
        for (unsigned i = 0; i < body.getNumArguments(); ++i) {
          if (!read.test(i))
            continue;
          ArrayRef<int64_t> in = argShapes[i];
          SmallVector<Value> at;
          size_t off = rank - in.size();
          for (size_t d = 0; d < in.size(); ++d)
            at.push_back(in[d] == 1 && shape[d + off] != 1 ? Value(xb.create<arith::ConstantIndexOp>(l, 0))
                                                            : index[d + off]);
          args[i] = xb.create<memref::LoadOp>(l, argBuffers[i], at);
        }
        DenseMap<Value, Value> scalar;
        // The ops up to the product (its operands' gathers) are not part of
        // the epilogue: marked as done.
        for (Operation &inner : body.without_terminator()) {
          if (&inner == mm.getOperation())
            break;
          if (!isa<ConstantOp>(inner))
            scalar[inner.getResult(0)] = Value();
        }
        scalar[mm.getResult()] = xb.create<memref::LoadOp>(l, C, ValueRange{bIdx, m, n});
        if (productView)
          scalar[productView->getResult(0)] = scalar.lookup(mm.getResult()); // a copy: [] may grow the map
        if (failed(emitFusedScalars(xb, l, body, args, nullptr, scalar)))
          status = failure();
        for (auto [v, o] : llvm::zip(body.getTerminator()->getOperands(), productOuts))
          if (v != mm.getResult())
            xb.create<memref::StoreOp>(l, scalar.lookup(v), o, index);
      });
    });
  };
  bool anyEpilogue = llvm::any_of(body.getTerminator()->getOperands(), [&](Value v) { return v != mm.getResult(); });
  // A filter gradient dy (channel-major) x im2col(x)^T of a convolution of
  // stride 1 with an output at most as wide as its input, or of stride 2,
  // is computed directly (DirectConv.cpp).
  ir::GemmView lhs = ir::matchGemmView(mm.getLhs()), rhs = ir::matchGemmView(mm.getRhs());
  if (rank == 3 && shape[0] == 1 && lhs.kind == ir::GemmViewKind::ChannelMajor && lhs.groups == 1 &&
      !mm.getTransposeA() && rhs.kind == ir::GemmViewKind::Columns && rhs.groups == 1 && mm.getTransposeB()) {
    auto im = cast<Im2colOp>(rhs.ops.front());
    FilterGradient g;
    g.dy = bufferOf(lhs.source);
    g.x = bufferOf(rhs.source);
    auto ys = cast<MemRefType>(g.dy.getType()), xs = cast<MemRefType>(g.x.getType());
    std::optional<ConvGrid> grid =
        ConvGrid::of(xs.getShape(), im.getKernel(), im.getStride(), im.getDilation(), im.getPadding(), gemmConfig.vl);
    ArrayRef<int64_t> y = ys.getShape(), x = xs.getShape();
    // (The direct paths view C, x and dy flat.)
    bool flatC = cast<MemRefType>(C.getType()).getLayout().isIdentity();
    if (flatC && ys.getLayout().isIdentity() && xs.getLayout().isIdentity() && grid && y.size() == 4 && y[0] == x[0] &&
        y[2] == grid->oh && y[3] == grid->ow) {
      g.grid = *grid;
      emitFilterGradient(b, loc, g, C, gemmConfig, anyEpilogue ? epilogue : GemmEpilogue());
      for (auto [r, o] : llvm::zip(op.getResults(), outs))
        buffers[r] = o;
      return status;
    }
  }
  // A convolution (one filter for every image, one product per image) of
  // that form is computed directly (DirectConv.cpp).
  if (rank == 3 && lhs.kind == ir::GemmViewKind::Broadcast && lhs.groups == 1 &&
      !mm.getTransposeA() && rhs.kind == ir::GemmViewKind::ImageColumns && rhs.groups == 1 &&
      !mm.getTransposeB()) {
    auto im = cast<Im2colOp>(rhs.ops.front());
    DirectConv g;
    g.x = bufferOf(rhs.source);
    g.w = bufferOf(lhs.source);
    auto xs = cast<MemRefType>(g.x.getType()), ws = cast<MemRefType>(g.w.getType());
    ArrayRef<int64_t> x = xs.getShape();
    std::optional<ConvGrid> grid =
        ConvGrid::of(x, im.getKernel(), im.getStride(), im.getDilation(), im.getPadding(), gemmConfig.vl);
    // On no grid, one with few filters and many channels along the channels.
    std::optional<ChannelConv> channels;
    if (!grid)
      channels = ChannelConv::of(x, shape[1], im.getKernel(), im.getStride(), im.getDilation(), im.getPadding(),
                                 gemmConfig.vl);
    bool identity = cast<MemRefType>(C.getType()).getLayout().isIdentity() && xs.getLayout().isIdentity() &&
                    ws.getLayout().isIdentity() && shape[0] == x[0];
    if (identity && channels && shape[2] == channels->oh * channels->ow) {
      channels->x = g.x;
      channels->w = g.w;
      emitConvAlongChannels(b, loc, *channels, C, gemmConfig, anyEpilogue ? epilogue : GemmEpilogue());
      for (auto [r, o] : llvm::zip(op.getResults(), outs))
        buffers[r] = o;
      return status;
    }
    if (identity && grid && shape[2] == grid->oh * grid->ow) {
      g.grid = *grid;
      emitDirectConv(b, loc, g, C, gemmConfig, anyEpilogue ? epilogue : GemmEpilogue());
      for (auto [r, o] : llvm::zip(op.getResults(), outs))
        buffers[r] = o;
      return status;
    }
  }
  emitGemm(module, b, loc, A, B, C, gemmConfig, anyEpilogue ? epilogue : GemmEpilogue());
  for (auto [r, o] : llvm::zip(op.getResults(), outs))
    buffers[r] = o;
  return status;
}

/// An elementwise soma.fusion: one linalg.generic over the results' shape
/// that reads every input at its broadcast index, computes the body's ops
/// as scalars and writes every result.
LogicalResult GraphLowering::lowerFusion(FusionOp op) {
  if (op.getKind() == "reduction")
    return lowerReductionFusion(op);
  if (op.getKind() == "contraction")
    return lowerContractionFusion(op);
  Location loc = op.getLoc();
  auto shape = cast<RankedTensorType>(op.getResult(0).getType()).getShape();
  int64_t rank = shape.size();
  SmallVector<Value> ins, outs;
  SmallVector<AffineMap> maps;
  for (Value v : op.getInputs()) {
    ins.push_back(buffers[v]);
    maps.push_back(broadcastMap(cast<RankedTensorType>(v.getType()).getShape(), shape, ctx));
  }
  for (Value r : op.getResults()) {
    outs.push_back(resultBuffer(r));
    maps.push_back(AffineMap::getMultiDimIdentityMap(rank, ctx));
  }
  Block &body = op.getBody().front();
  LogicalResult status = success();
  b.create<linalg::GenericOp>(
      loc, ValueRange(ins), ValueRange(outs), maps,
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location l, ValueRange args) {
        DenseMap<Value, Value> scalar;
        if (failed(emitFusedScalars(nb, l, body, args.take_front(body.getNumArguments()), nullptr, scalar)))
          status = failure();
        SmallVector<Value> yields;
        for (Value v : body.getTerminator()->getOperands())
          yields.push_back(scalar.lookup(v));
        nb.create<linalg::YieldOp>(l, yields);
      });
  for (auto [r, o] : llvm::zip(op.getResults(), outs))
    buffers[r] = o;
  return status;
}

LogicalResult GraphLowering::lowerOp(Operation *op) {
  Location loc = op->getLoc();
  taken.clear();
  if (ir::isElementwise(op)) {
    SmallVector<Value> ins;
    for (Value v : op->getOperands())
      ins.push_back(buffers[v]);
    Value out = resultBuffer(op->getResult(0));
    elementwise(loc, ins, out, [&](OpBuilder &nb, Location l, ValueRange a) {
      return emitElementwiseScalar(nb, l, op, a);
    });
    buffers[op->getResult(0)] = out;
    return success();
  }
  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      .Case([&](MatmulOp m) { return lowerMatmul(m); })
      .Case<ReduceSumOp, ReduceMeanOp, ReduceMaxOp>([&](auto r) {
        Value out = resultBuffer(r.getResult());
        bool isMax = isa<ReduceMaxOp>(op);
        fill(loc, out, isMax ? -std::numeric_limits<double>::infinity() : 0.0);
        reduce(loc, buffers[r.getInput()], out, r.getAxes(), r.getKeepdims(),
               [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
                 if (isMax)
                   return nb.create<arith::MaximumFOp>(l, a[1], a[0]);
                 return nb.create<arith::AddFOp>(l, a[1], a[0]);
               });
        if (isa<ReduceMeanOp>(op)) {
          auto inType = cast<RankedTensorType>(r.getInput().getType());
          int64_t count = 1;
          for (int64_t a : r.getAxes())
            count *= inType.getDimSize(a);
          scaleInPlace(loc, out, 1.0 / static_cast<double>(count));
        }
        buffers[r.getResult()] = out;
        return success();
      })
      .Case([&](ReshapeOp r) {
        buffers[r.getResult()] =
            reshapeView(loc, buffers[r.getInput()], memrefOf(r.getType()));
        return success();
      })
      .Case([&](TransposeOp t) {
        Value out = resultBuffer(t.getResult());
        ArrayRef<int64_t> perm = t.getPerm();
        int64_t rank = perm.size();
        // output dim i reads input dim perm[i]: input map dim j -> d_{inv[j]}
        SmallVector<AffineExpr> exprs(rank);
        for (int64_t i = 0; i < rank; ++i)
          exprs[perm[i]] = getAffineDimExpr(i, ctx);
        SmallVector<AffineMap> maps{AffineMap::get(rank, 0, exprs, ctx),
                                    AffineMap::getMultiDimIdentityMap(rank, ctx)};
        SmallVector<utils::IteratorType> iters(rank, utils::IteratorType::parallel);
        b.create<linalg::GenericOp>(
            loc, ValueRange{buffers[t.getInput()]}, ValueRange{out}, maps, iters,
            [&](OpBuilder &nb, Location l, ValueRange a) {
              nb.create<linalg::YieldOp>(l, a[0]);
            });
        buffers[t.getResult()] = out;
        return success();
      })
      .Case([&](BroadcastToOp bt) {
        Value out = resultBuffer(bt.getResult());
        elementwise(loc, {buffers[bt.getInput()]}, out,
                    [](OpBuilder &, Location, ValueRange a) { return a[0]; });
        buffers[bt.getResult()] = out;
        return success();
      })
      .Case([&](SliceOp s) {
        Value out = resultBuffer(s.getResult());
        auto outShape = cast<RankedTensorType>(s.getType()).getShape();
        Value view = b.create<memref::SubViewOp>(
            loc, buffers[s.getInput()], s.getStarts(), outShape, s.getStrides());
        copy(loc, view, out);
        buffers[s.getResult()] = out;
        return success();
      })
      .Case([&](ConcatOp c) {
        Value out = resultBuffer(c.getResult());
        auto outType = cast<MemRefType>(out.getType());
        int64_t axis = c.getAxis(), offset = 0;
        for (Value in : c.getInputs()) {
          auto inShape = cast<RankedTensorType>(in.getType()).getShape();
          SmallVector<int64_t> offsets(outType.getRank(), 0), strides(outType.getRank(), 1);
          offsets[axis] = offset;
          Value view = b.create<memref::SubViewOp>(loc, out, offsets, inShape, strides);
          copy(loc, buffers[in], view);
          offset += inShape[axis];
        }
        buffers[c.getResult()] = out;
        return success();
      })
      .Case([&](ConstantOp c) { return lowerConstant(c); })
      .Case([&](StopGradientOp sg) {
        // lookup() copies the value: with `buffers[x] = buffers[y]` the
        // right side is a reference into the map, evaluated first, and
        // the left side's insertion may grow the map and free it.
        buffers[sg.getResult()] = buffers.lookup(sg.getInput());
        return success();
      })
      .Case([&](ArgmaxOp a) { return lowerArgmax(a); })
      .Case([&](Im2colOp o) { return lowerIm2col(o); })
      .Case([&](MaxPool2dOp o) { return lowerTilingPool(o); })
      .Case([&](MaxPool2dGradOp o) { return lowerTilingPool(o); })
      .Case([&](AvgPool2dGradOp o) { return lowerTilingPool(o); })
      .Case([&](BatchNormTrainOp o) {
        // (Only the statistics when the output was split off into
        // elementwise ops, splitBatchNormOutput.)
        bool output = !o.getOutput().use_empty();
        BatchNormKernel k{.x = buffers[o.getInput()], .scale = buffers[o.getScale()], .shift = buffers[o.getShift()],
                          .mean = resultBuffer(o.getMean()), .var = resultBuffer(o.getVar()),
                          .y = output ? resultBuffer(o.getOutput()) : Value(), .eps = o.getEps().convertToDouble()};
        emitBatchNorm(b, o.getLoc(), k, gemmConfig);
        if (output)
          buffers[o.getOutput()] = k.y;
        buffers[o.getMean()] = k.mean;
        buffers[o.getVar()] = k.var;
        return success();
      })
      .Case([&](BatchNormGradOp o) {
        BatchNormKernel k{.x = buffers[o.getInput()], .scale = buffers[o.getScale()], .mean = buffers[o.getMean()],
                          .var = buffers[o.getVar()], .dy = buffers[o.getGrad()], .dx = resultBuffer(o.getInputGrad()),
                          .dscale = resultBuffer(o.getScaleGrad()), .dshift = resultBuffer(o.getShiftGrad()),
                          .eps = o.getEps().convertToDouble()};
        emitBatchNorm(b, o.getLoc(), k, gemmConfig);
        buffers[o.getInputGrad()] = k.dx;
        buffers[o.getScaleGrad()] = k.dscale;
        buffers[o.getShiftGrad()] = k.dshift;
        return success();
      })
      .Case([&](AvgPool2dOp o) { return lowerTilingPool(o); })
      .Case([&](OneHotOp o) {
        // out[i, j] = (labels[i] == j)
        Value out = resultBuffer(o.getResult());
        auto d0 = getAffineDimExpr(0, ctx), d1 = getAffineDimExpr(1, ctx);
        SmallVector<AffineMap> maps{AffineMap::get(2, 0, {d0}, ctx), AffineMap::get(2, 0, {d0, d1}, ctx)};
        b.create<linalg::GenericOp>(
            loc, ValueRange{buffers[o.getLabels()]}, ValueRange{out}, maps,
            SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
            [&](OpBuilder &nb, Location l, ValueRange a) {
              Value j = nb.create<arith::IndexCastOp>(l, a[0].getType(), nb.create<linalg::IndexOp>(l, 1));
              Value hit = nb.create<arith::CmpIOp>(l, arith::CmpIPredicate::eq, a[0], j);
              nb.create<linalg::YieldOp>(
                  l, Value(nb.create<arith::SelectOp>(l, hit, f32Const(nb, l, 1.0), f32Const(nb, l, 0.0))));
            });
        buffers[o.getResult()] = out;
        return success();
      })
      .Case([&](Col2imOp o) { return lowerCol2im(o); })
      .Case([&](PadOp p) { return lowerPad(p); })
      .Case([&](RandomUniformOp r) { return lowerRandomUniform(r); })
      .Case([&](FusionOp f) { return lowerFusion(f); })
      .Case([&](SoftmaxCrossEntropyGradOp g) { return lowerSoftmaxCrossEntropyGrad(g); })
      .Case([&](SoftmaxOp s) {
        return lowerSoftmax(op, s.getInput(), s.getAxis(), false);
      })
      .Case([&](SoftmaxGradOp s) { return lowerSoftmaxGrad(op, s.getAxis(), false); })
      .Case([&](LogSoftmaxGradOp s) { return lowerSoftmaxGrad(op, s.getAxis(), true); })
      .Case([&](LogSoftmaxOp s) {
        return lowerSoftmax(op, s.getInput(), s.getAxis(), true);
      })
      .Case([&](SoftmaxCrossEntropyOp s) { return lowerSoftmaxCrossEntropy(s); })
      .Case([&](MseOp m) {
        return lowerPairwiseLoss(op, m.getPrediction(), m.getTarget(),
                                 m.getReduction(), false);
      })
      .Case([&](BinaryCrossEntropyOp m) {
        return lowerPairwiseLoss(op, m.getProbability(), m.getTarget(),
                                 m.getReduction(), true);
      })
      .Default([&](Operation *) {
        return op->emitOpError("has no lowering to linalg");
      });
}

LogicalResult GraphLowering::run() {
  Location loc = graph.getLoc();
  auto fnType = graph.getFunctionType();
  SmallVector<unsigned> inputs, params, states;
  for (unsigned i = 0; i < graph.getNumArguments(); ++i) {
    if (graph.getArgAttr(i, kInputAttr))
      inputs.push_back(i);
    else if (graph.getArgAttr(i, kParamAttr))
      params.push_back(i);
    else if (graph.getArgAttr(i, kStateAttr))
      states.push_back(i);
    else
      return graph.emitError("argument ") << i << " of graph '" << graph.getSymName()
                                          << "' is marked neither soma.input, soma.param nor soma.state";
  }
  // Results are outputs (own ABI slot) or updates (written back into the
  // parameter or state argument of the same name).
  SmallVector<unsigned> outputs;
  DenseMap<unsigned, unsigned> updateTarget; // result -> argument
  for (unsigned j = 0; j < graph.getNumResults(); ++j) {
    if (graph.getResultAttr(j, kOutputAttr)) {
      outputs.push_back(j);
      continue;
    }
    auto name = graph.getResultAttrOfType<StringAttr>(j, kUpdateAttr);
    if (!name)
      return graph.emitError("result ") << j << " of graph '" << graph.getSymName()
                                        << "' has no soma.output name";
    bool found = false;
    for (unsigned i = 0; i < graph.getNumArguments() && !found; ++i)
      for (const char *key : {kParamAttr, kStateAttr})
        if (auto a = graph.getArgAttrOfType<StringAttr>(i, key); a && a == name) {
          if (graph.getArgument(i).getType() != graph.getResultTypes()[j])
            return graph.emitError("update of '") << name.getValue() << "' changes its type";
          updateTarget[j] = i;
          found = true;
          break;
        }
    if (!found)
      return graph.emitError("soma.update '") << name.getValue()
                                              << "' names no parameter or state argument";
  }

  // Kernel ABI: inputs, params, states, outputs, workspace (sized by
  // soma-plan-memory).
  SmallVector<Type> argTypes;
  SmallVector<DictionaryAttr> argAttrs;
  auto named = [&](StringRef key, Attribute value) {
    return b.getDictionaryAttr({b.getNamedAttr(key, value)});
  };
  for (ArrayRef<unsigned> group : {ArrayRef<unsigned>(inputs), ArrayRef<unsigned>(params),
                                   ArrayRef<unsigned>(states)})
    for (unsigned i : group) {
      argTypes.push_back(memrefOf(fnType.getInput(i)));
      argAttrs.push_back(graph.getArgAttrDict(i));
    }
  for (unsigned j : outputs) {
    argTypes.push_back(memrefOf(fnType.getResult(j)));
    argAttrs.push_back(named(kOutputAttr, graph.getResultAttr(j, kOutputAttr)));
  }
  argTypes.push_back(MemRefType::get({0}, b.getI8Type()));
  argAttrs.push_back(named("soma.workspace", b.getUnitAttr()));

  b.setInsertionPoint(graph);
  std::string name = graph.getSymName().str();
  kernelName = name;
  graph.setSymName(name + ".graph");
  auto kernel = b.create<func::FuncOp>(loc, name, b.getFunctionType(argTypes, {}));
  kernel.setAllArgAttrs(argAttrs);
  kernel->setAttr("soma.kernel", b.getUnitAttr());
  Block *entry = kernel.addEntryBlock();

  unsigned abi = 0;
  DenseMap<unsigned, Value> argBuffer; // graph argument -> kernel argument
  for (ArrayRef<unsigned> group : {ArrayRef<unsigned>(inputs), ArrayRef<unsigned>(params),
                                   ArrayRef<unsigned>(states)})
    for (unsigned i : group) {
      argBuffer[i] = entry->getArgument(abi);
      buffers[graph.getArgument(i)] = entry->getArgument(abi++);
    }
  unsigned firstOutput = abi;

  auto ret = cast<func::ReturnOp>(graph.getBody().front().getTerminator());

  unsigned pos = 0;
  for (Operation &op : graph.getBody().front())
    position[&op] = pos++;
  // Outputs: computed straight into their argument when possible. An
  // output that is a view (reshape, stop_gradient) of a computed value has
  // that value computed into the argument, seen in the value's shape (a
  // convolution's [N, K, OH * OW] product is its NCHW output): no copy.
  b.setInsertionPointToStart(entry);
  llvm::SmallDenseSet<unsigned> inPlaceOutputs;
  for (auto [k, j] : llvm::enumerate(outputs)) {
    Value v = ret.getOperand(j);
    Value source = v;
    while (source.getDefiningOp() && isa<ReshapeOp, StopGradientOp>(source.getDefiningOp()))
      source = source.getDefiningOp()->getOperand(0);
    Operation *def = source.getDefiningOp();
    if (!def || destinations.count(source) || isa<ConstantOp>(def))
      continue; // arguments, constants and repeats are copied at the end
    Value arg = entry->getArgument(firstOutput + k);
    destinations[source] = source == v ? arg : reshapeView(loc, arg, memrefOf(source.getType()));
    inPlaceOutputs.insert(k);
  }
  // Updates: in place when the producer is in-place-able and every other
  // reader of the old value runs before it; otherwise through a temporary
  // copied back at the very end, after all reads of the old value.
  for (auto [j, i] : updateTarget) {
    Value v = ret.getOperand(j);
    Operation *def = v.getDefiningOp();
    BlockArgument old = graph.getArgument(i);
    if (!def || destinations.count(v) || !isa<ir::InPlaceOpInterface>(def) || !mayWriteOver(def, old))
      continue;
    if (lastReadAt(old, def))
      destinations[v] = argBuffer[i];
  }

  for (Operation &op : graph.getBody().front().without_terminator()) {
    if (op.getDialect() != ctx->getLoadedDialect<SomaDialect>())
      return op.emitOpError("is not a soma op; graphs contain only soma ops");
    if (failed(lowerOp(&op)))
      return failure();
  }
  for (auto [k, j] : llvm::enumerate(outputs)) {
    Value v = ret.getOperand(j);
    Value dest = entry->getArgument(firstOutput + k);
    if (!inPlaceOutputs.contains(k))
      copy(ret.getLoc(), buffers[v], dest);
  }
  for (auto [j, i] : updateTarget) {
    Value v = ret.getOperand(j);
    if (buffers[v] != argBuffer[i])
      copy(ret.getLoc(), buffers[v], argBuffer[i]);
  }
  b.create<func::ReturnOp>(loc);
  graph.erase();
  return success();
}

struct SomaLowerToLinalgPass
    : impl::SomaLowerToLinalgBase<SomaLowerToLinalgPass> {
  using Base::Base;
  void runOnOperation() override {
    SmallVector<func::FuncOp> graphs;
    for (auto fn : getOperation().getOps<func::FuncOp>())
      if (!fn->hasAttr("soma.kernel") && !fn.isDeclaration())
        graphs.push_back(fn);
    for (auto fn : graphs)
      if (failed(GraphLowering(getOperation(), fn, vectorWidth, threads, convInteriorWork).run()))
        return signalPassFailure();
  }
};

} // namespace
} // namespace soma
