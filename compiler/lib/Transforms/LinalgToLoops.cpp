//===- LinalgToLoops.cpp - linalg to (parallel) loops with a grain size ---===//

#include "soma/Compiler/Lowering.h"
#include "soma/Dialect/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Transforms/DialectConversion.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Utils/Utils.h"
#include "mlir/Transforms/RegionUtils.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

namespace soma {
#define GEN_PASS_DEF_SOMALINALGTOLOOPS
#define GEN_PASS_DEF_SOMAOUTLINELOOPS
#define GEN_PASS_DEF_SOMASCFTOCF
#define GEN_PASS_DEF_SOMAAPPROXIMATEMATH
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;

namespace soma {
namespace {

/// The combining operation of a reduction's output: the op that makes the
/// yielded value from the partial result `acc` and one more value (`acc +
/// x`, `max(acc, x)`), if it is one of the associative ones whose identity
/// is known; null otherwise.
static Operation *combiner(Value yielded, Value acc) {
  Operation *op = yielded.getDefiningOp();
  if (!isa_and_nonnull<arith::AddFOp, arith::MulFOp, arith::MaximumFOp, arith::MinimumFOp, arith::MaxNumFOp,
                       arith::MinNumFOp>(op))
    return nullptr;
  return (op->getOperand(0) == acc) != (op->getOperand(1) == acc) ? op : nullptr;
}

/// The identity of a combining operation on `type`: -0 for a sum (x + -0
/// is x, signed zeros included), 1 for a product, -inf for a maximum, +inf
/// for a minimum.
static Value identity(OpBuilder &b, Location loc, Operation *op, Type type) {
  auto ft = cast<FloatType>(type);
  const llvm::fltSemantics &sem = ft.getFloatSemantics();
  APFloat v = isa<arith::AddFOp>(op)   ? APFloat::getZero(sem, /*Negative=*/true)
              : isa<arith::MulFOp>(op) ? APFloat::getOne(sem)
              : isa<arith::MaximumFOp, arith::MaxNumFOp>(op) ? APFloat::getInf(sem, /*Negative=*/true)
                                                              : APFloat::getInf(sem);
  return b.create<arith::ConstantOp>(loc, b.getFloatAttr(ft, v));
}

/// The partial results a reduced loop of `length` iterations is split
/// into: the largest power of two up to 16 that divides it.
static int64_t lanesFor(int64_t length) {
  int64_t lanes = 1;
  while (lanes < 16 && length % (2 * lanes) == 0)
    lanes *= 2;
  return lanes;
}

/// The loops of a reduction whose reduced dimensions all come after its
/// parallel ones (batch norm's statistics and gradients: [C] from
/// [N, C, H, W] as dimensions (c, n, h, w); a softmax's row sums), with the
/// partial results in registers through the reduced loops and stored once
/// per output element. linalg's own lowering loads and stores the output
/// element on every iteration: a chain through memory of ~5 cycles per
/// element that LLVM can neither break nor vectorise (it cannot prove that
/// the output does not alias the inputs, and may not reorder a float sum).
///
/// When every output has a known combining operation (sum, product,
/// maximum, minimum), the innermost reduced loop runs `lanes` iterations at
/// a time (the largest power of two up to 16 that divides its length),
/// each into a partial result of its own: lane j takes the iterations
/// congruent to j, lane 0 starts from the output's value and the others
/// from the identity, and the lanes are combined pairwise at the end
/// ((0+1)+(2+3))+... . The lanes are the elements of one vector when every
/// input is read contiguously along that loop (or not along it) and the
/// body is elementwise; otherwise independent scalar chains (LLVM's SLP
/// vectoriser made poor 2-wide vectors of those, so the vector form is
/// written here). The order is fixed by the shape alone (not by the body,
/// the fusion around it or the number of threads), so two compilations of
/// the same reduction give the same bits. Returns the
/// loops, outermost first, or failure when the op does not have that form
/// (it then takes linalg's lowering).
FailureOr<SmallVector<scf::ForOp>> reductionToLoops(IRRewriter &rewriter, linalg::GenericOp op) {
  if (!op.hasPureBufferSemantics())
    return failure();
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  SmallVector<utils::IteratorType> iters = op.getIteratorTypesArray();
  size_t firstReduced = 0;
  while (firstReduced < iters.size() && iters[firstReduced] == utils::IteratorType::parallel)
    ++firstReduced;
  if (firstReduced == iters.size() || llvm::any_of(ranges, ShapedType::isDynamic))
    return failure();
  for (size_t d = firstReduced; d < iters.size(); ++d)
    if (iters[d] != utils::IteratorType::reduction)
      return failure();
  // Each output element depends on the parallel dimensions only, each as
  // an index of its own (or a constant index: [1, C, 1, 1]).
  for (OpOperand &out : op.getDpsInitsMutable()) {
    AffineMap map = op.getMatchingIndexingMap(&out);
    llvm::SmallBitVector seen(map.getNumDims());
    for (AffineExpr e : map.getResults()) {
      auto d = dyn_cast<AffineDimExpr>(e);
      auto c = dyn_cast<AffineConstantExpr>(e);
      if (c ? c.getValue() != 0 : !d || d.getPosition() >= firstReduced || seen.test(d.getPosition()))
        return failure();
      if (d)
        seen.set(d.getPosition());
    }
  }
  Location loc = op.getLoc();
  const unsigned dims = static_cast<unsigned>(ranges.size());
  Block &body = op.getRegion().front();
  auto yielded = cast<linalg::YieldOp>(body.getTerminator()).getValues();
  const int64_t outs = op.getNumDpsInits();
  SmallVector<Operation *> combine;
  for (int64_t i = 0; i < outs; ++i)
    combine.push_back(combiner(yielded[i], body.getArgument(op.getNumDpsInputs() + i)));
  int64_t lanes = 1;
  if (llvm::all_of(combine, [](Operation *c) { return c != nullptr; }))
    lanes = lanesFor(ranges[dims - 1]);
  // The lanes as the elements of one vector when the body allows it (the
  // same order, written as vector operations): every memref input read
  // contiguously along the innermost dimension or not along it at all, and
  // a body of elementwise scalar operations.
  const unsigned last = dims - 1;
  bool vector = lanes >= 8;
  for (OpOperand *in : op.getDpsInputOperands()) {
    auto type = dyn_cast<MemRefType>(in->get().getType());
    if (!type)
      continue;
    AffineMap map = op.getMatchingIndexingMap(in);
    bool along = map.isFunctionOfDim(last);
    if (along && (!type.getLayout().isIdentity() || map.getNumResults() == 0 ||
                  map.getResults().back() != getAffineDimExpr(last, op.getContext()) ||
                  llvm::any_of(map.getResults().drop_back(), [&](AffineExpr e) { return e.isFunctionOfDim(last); })))
      vector = false;
  }
  for (Operation &o : body.without_terminator())
    if (!isa<arith::ConstantOp>(o) &&
        (!o.hasTrait<OpTrait::Elementwise>() || o.getNumRegions() != 0 ||
         !llvm::all_of(o.getResultTypes(), [](Type t) { return t.isIntOrIndexOrFloat(); })))
      vector = false;
  for (Value v : op.getDpsInits())
    if (!isa<FloatType>(cast<MemRefType>(v.getType()).getElementType()))
      vector = false;

  SmallVector<Value> ivs(dims);
  SmallVector<scf::ForOp> loops;
  auto index = [&](OpBuilder &b, int64_t v) { return b.create<arith::ConstantIndexOp>(loc, v); };
  auto at = [&](OpBuilder &b, AffineMap map) {
    SmallVector<Value> r;
    for (AffineExpr e : map.getResults()) {
      if (auto d = dyn_cast<AffineDimExpr>(e))
        r.push_back(ivs[d.getPosition()]);
      else if (auto c = dyn_cast<AffineConstantExpr>(e))
        r.push_back(index(b, c.getValue()));
      else
        r.push_back(b.create<affine::AffineApplyOp>(loc, AffineMap::get(dims, 0, e), ivs));
    }
    return r;
  };
  OpBuilder::InsertionGuard guard(rewriter);
  OpBuilder *b = &rewriter;
  for (size_t d = 0; d < firstReduced; ++d) {
    auto f = b->create<scf::ForOp>(loc, index(*b, 0), index(*b, ranges[d]), index(*b, 1));
    loops.push_back(f);
    ivs[d] = f.getInductionVar();
    b->setInsertionPoint(f.getBody()->getTerminator());
  }
  // The partial results, lane-major (lane l of output i at l * outs + i):
  // lane 0 starts from the output's element, the others from the identity.
  SmallVector<Value> init;
  for (OpOperand &out : op.getDpsInitsMutable())
    init.push_back(b->create<memref::LoadOp>(loc, out.get(), at(*b, op.getMatchingIndexingMap(&out))));
  if (vector) {
    // One vector per output: its element 0 the output's, the others the identity.
    for (int64_t i = 0; i < outs; ++i) {
      auto type = VectorType::get({lanes}, init[i].getType());
      Value v = b->create<vector::BroadcastOp>(loc, type, identity(*b, loc, combine[i], init[i].getType()));
      init[i] = b->create<vector::InsertOp>(loc, init[i], v, ArrayRef<int64_t>{0});
    }
  } else {
    for (int64_t l = 1; l < lanes; ++l)
      for (int64_t i = 0; i < outs; ++i)
        init.push_back(identity(*b, loc, combine[i], init[i].getType()));
  }
  // One iteration of the body (ivs set), from and to the partial results
  // `acc`. In the vector form it covers `lanes` consecutive iterations of
  // the innermost dimension: inputs read along it are vector loads, every
  // other operation is applied to vectors (scalars broadcast).
  auto iterate = [&](OpBuilder &nb, ValueRange acc) {
    IRMapping map;
    auto spread = [&](Value v) -> Value {
      if (!vector || isa<VectorType>(v.getType()))
        return v;
      return nb.create<vector::BroadcastOp>(loc, VectorType::get({lanes}, v.getType()), v);
    };
    for (OpOperand *in : op.getDpsInputOperands()) {
      Value v = in->get();
      if (auto type = dyn_cast<MemRefType>(v.getType())) {
        AffineMap m = op.getMatchingIndexingMap(in);
        v = vector && m.isFunctionOfDim(last)
                ? nb.create<vector::LoadOp>(loc, VectorType::get({lanes}, type.getElementType()), v, at(nb, m))
                      .getResult()
                : nb.create<memref::LoadOp>(loc, v, at(nb, m)).getResult();
      }
      map.map(body.getArgument(in->getOperandNumber()), v);
    }
    for (int64_t i = 0; i < outs; ++i)
      map.map(body.getArgument(op.getNumDpsInputs() + i), acc[i]);
    for (Operation &o : body.without_terminator()) {
      if (auto ix = dyn_cast<linalg::IndexOp>(o)) { // (never in the vector form)
        map.map(ix.getResult(), ivs[ix.getDim()]);
      } else if (!vector || isa<arith::ConstantOp>(o)) {
        nb.clone(o, map);
      } else {
        OperationState state(loc, o.getName());
        for (Value x : o.getOperands())
          state.addOperands(spread(map.lookupOrDefault(x)));
        for (Type t : o.getResultTypes())
          state.addTypes(VectorType::get({lanes}, t));
        state.addAttributes(o.getAttrs());
        map.map(o.getResults(), nb.create(state)->getResults());
      }
    }
    SmallVector<Value> next;
    for (Value v : yielded)
      next.push_back(spread(map.lookupOrDefault(v)));
    return next;
  };
  std::function<SmallVector<Value>(OpBuilder &, size_t, ValueRange)> nest = [&](OpBuilder &nb, size_t d,
                                                                                  ValueRange acc) {
    bool innermost = d + 1 == dims;
    int64_t step = innermost ? lanes : 1;
    auto f = nb.create<scf::ForOp>(
        loc, index(nb, 0), index(nb, ranges[d]), index(nb, step), acc,
        [&](OpBuilder &lb, Location, Value iv, ValueRange args) {
          if (!innermost) {
            ivs[d] = iv;
            lb.create<scf::YieldOp>(loc, nest(lb, d + 1, args));
            return;
          }
          if (vector) {
            ivs[d] = iv;
            lb.create<scf::YieldOp>(loc, iterate(lb, args));
            return;
          }
          SmallVector<Value> next;
          for (int64_t l = 0; l < lanes; ++l) {
            ivs[d] = l == 0 ? iv : lb.create<arith::AddIOp>(loc, iv, index(lb, l)).getResult();
            llvm::append_range(next, iterate(lb, args.slice(l * outs, outs)));
          }
          lb.create<scf::YieldOp>(loc, next);
        });
    loops.push_back(f);
    return SmallVector<Value>(f.getResults());
  };
  SmallVector<Value> partial = nest(*b, firstReduced, init);
  // (The reduced loops were pushed innermost first: put them in order.)
  std::reverse(loops.begin() + firstReduced, loops.end());
  // The lanes combined pairwise, then stored.
  if (vector) {
    SmallVector<Value> elements(lanes * outs);
    for (int64_t l = 0; l < lanes; ++l)
      for (int64_t i = 0; i < outs; ++i)
        elements[l * outs + i] = b->create<vector::ExtractOp>(loc, partial[i], ArrayRef<int64_t>{l});
    partial = elements;
  }
  for (int64_t width = lanes; width > 1; width /= 2)
    for (int64_t l = 0; l < width / 2; ++l)
      for (int64_t i = 0; i < outs; ++i) {
        IRMapping map;
        map.map(combine[i]->getOperand(0), partial[2 * l * outs + i]);
        map.map(combine[i]->getOperand(1), partial[(2 * l + 1) * outs + i]);
        Operation *c = b->clone(*combine[i], map);
        partial[l * outs + i] = c->getResult(0);
      }
  for (auto [i, out] : llvm::enumerate(op.getDpsInitsMutable()))
    b->create<memref::StoreOp>(loc, partial[i], out.get(), at(*b, op.getMatchingIndexingMap(&out)));
  return loops;
}

/// A reduction whose two innermost loops are reduced and read contiguously
/// by every operand (a bias gradient, [C] from [N, C, H, W] as (c, n, h,
/// w): h and w are one run of H * W elements) becomes one loop of their
/// product, so that its lanes (reductionToLoops) come from a longer run:
/// LeNet-5's bias gradients sum rows of 28 and 10 elements in 4 and 2
/// lanes, but runs of 784 and 100 in 16 and 4. Only when that gives more
/// lanes, on buffers of identity layout and without linalg.index. Returns
/// the new op (the old one erased), or null.
linalg::GenericOp collapseReducedRows(IRRewriter &rewriter, linalg::GenericOp op) {
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  SmallVector<utils::IteratorType> iters = op.getIteratorTypesArray();
  const int64_t n = static_cast<int64_t>(ranges.size());
  if (n < 2 || iters[n - 1] != utils::IteratorType::reduction || iters[n - 2] != utils::IteratorType::reduction ||
      llvm::any_of(ranges, ShapedType::isDynamic) || !op.hasPureBufferSemantics())
    return nullptr;
  if (lanesFor(ranges[n - 1]) >= 16 || lanesFor(ranges[n - 1] * ranges[n - 2]) <= lanesFor(ranges[n - 1]))
    return nullptr;
  bool index = false;
  op.getRegion().walk([&](linalg::IndexOp) { index = true; });
  if (index)
    return nullptr;
  for (OpOperand &o : op->getOpOperands()) {
    auto type = dyn_cast<MemRefType>(o.get().getType());
    if (type && !type.getLayout().isIdentity())
      return nullptr;
  }
  // Each operand reads both loops as two consecutive dimensions of full
  // extent (they collapse into one), or neither.
  MLIRContext *ctx = op.getContext();
  AffineExpr hi = getAffineDimExpr(n - 2, ctx), lo = getAffineDimExpr(n - 1, ctx);
  SmallVector<Value> operands;
  SmallVector<AffineMap> maps;
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPoint(op);
  for (OpOperand &o : op->getOpOperands()) {
    AffineMap map = op.getMatchingIndexingMap(&o);
    ArrayRef<AffineExpr> r = map.getResults();
    auto at = llvm::find(r, hi);
    bool uses = map.isFunctionOfDim(n - 2) || map.isFunctionOfDim(n - 1);
    SmallVector<AffineExpr> exprs;
    Value v = o.get();
    if (!uses) {
      exprs.assign(r.begin(), r.end());
    } else {
      auto type = dyn_cast<MemRefType>(v.getType());
      size_t p = at - r.begin();
      if (!type || at == r.end() || p + 1 >= r.size() || r[p + 1] != lo || type.getDimSize(p + 1) != ranges[n - 1] ||
          type.getDimSize(p) != ranges[n - 2] ||
          llvm::any_of(r, [&](AffineExpr e) { return e != hi && e != lo && (e.isFunctionOfDim(n - 2) || e.isFunctionOfDim(n - 1)); }))
        return nullptr;
      SmallVector<ReassociationIndices> re;
      for (size_t d = 0; d < r.size(); ++d) {
        if (d == p + 1)
          continue;
        re.push_back(d == p ? ReassociationIndices{int64_t(d), int64_t(d + 1)} : ReassociationIndices{int64_t(d)});
        exprs.push_back(d == p ? hi : r[d]);
      }
      v = rewriter.create<memref::CollapseShapeOp>(op.getLoc(), v, re);
    }
    operands.push_back(v);
    maps.push_back(AffineMap::get(n - 1, 0, exprs, ctx));
  }
  const int64_t ins = op.getNumDpsInputs();
  SmallVector<utils::IteratorType> newIters(iters.begin(), iters.end() - 1);
  auto collapsed = rewriter.create<linalg::GenericOp>(op.getLoc(), TypeRange{}, ArrayRef<Value>(operands).take_front(ins),
                                                      ArrayRef<Value>(operands).drop_front(ins), maps, newIters);
  rewriter.inlineRegionBefore(op.getRegion(), collapsed.getRegion(), collapsed.getRegion().begin());
  rewriter.eraseOp(op);
  return collapsed;
}

struct SomaLinalgToLoopsPass
    : impl::SomaLinalgToLoopsBase<SomaLinalgToLoopsPass> {
  using Base::Base;
  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> ops;
    getOperation().walk([&](linalg::LinalgOp op) { ops.push_back(op); });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : ops) {
      if (auto generic = dyn_cast<linalg::GenericOp>(op.getOperation()))
        if (auto collapsed = collapseReducedRows(rewriter, generic))
          op = collapsed;
      SmallVector<int64_t> ranges = op.getStaticLoopRanges();
      int64_t points = 1;
      for (int64_t r : ranges)
        points *= r;
      // The nest's work: its points weighted by what each costs, the
      // arrays it reads or writes along its loops plus 4 for each
      // division, square root, exponential, logarithm, tanh or power, over
      // 3 (a binary elementwise op, two reads and a write, is 1), and 4
      // times that against the grain: since the runtime keeps the workers
      // spinning, a region costs a few microseconds, and a loop of a quarter
      // of the grain already gains from a second thread. (LeNet-5's Adam
      // update of its 400 x 120 weights, 48,000 points of 7 arrays, 3
      // divisions and a square root, and its ReLU gradient of 102,400
      // points were sequential; with the weights, on 2 threads, its
      // training step 0.818-0.838 -> 0.765-0.777 ms, the MLP's at batch
      // 256 0.817-0.853 -> 0.773-0.785 ms, ResNet-8's 8.45-9.29 ->
      // 8.08-8.43 ms, 3 alternating rounds; it compiles 13 regions more,
      // its cold compile 790-838 -> 864-914 ms.)
      int64_t cost = 0;
      for (OpOperand &o : op->getOpOperands())
        if (isa<MemRefType>(o.get().getType()) && !op.getMatchingIndexingMap(&o).isConstant())
          ++cost;
      op->walk([&](Operation *x) {
        if (isa<arith::DivFOp, math::SqrtOp, math::RsqrtOp, math::ExpOp, math::LogOp, math::TanhOp, math::PowFOp>(x))
          cost += 4;
      });
      const int64_t work = points * std::max<int64_t>(cost, 1) * 4 / 3;
      // The loop to parallelise: the outermost one with more than one
      // iteration (loops of one iteration outside it run once, so it is
      // still the only parallel region of the kernel; a batch of 1 must not
      // make a [1, C, H, W] kernel sequential).
      size_t outer = 0;
      while (outer < ranges.size() && ranges[outer] == 1)
        ++outer;
      SmallVector<utils::IteratorType> iters = op.getIteratorTypesArray();
      rewriter.setInsertionPoint(op);
      FailureOr<linalg::LinalgLoops> loops = failure();
      if (auto generic = dyn_cast<linalg::GenericOp>(op.getOperation()))
        if (auto reduced = reductionToLoops(rewriter, generic); succeeded(reduced))
          loops = linalg::LinalgLoops(reduced->begin(), reduced->end());
      if (failed(loops))
        loops = linalg::linalgOpToLoops(rewriter, op);
      if (failed(loops)) {
        op.emitOpError("could not be lowered to loops");
        return signalPassFailure();
      }
      rewriter.eraseOp(op);
      // Loops around the innermost one run as written: LLVM vectorises the
      // innermost loop and would then unroll the constant-trip loops around
      // it completely, copying the vector loop, its runtime checks and its
      // remainder each time (a [16, 1600] division became 3,500 lines of
      // LLVM IR), which costs code generation time for nothing.
      for (size_t i = 0; i + 1 < loops->size(); ++i)
        if (auto f = dyn_cast<scf::ForOp>((*loops)[i]))
          f->setAttr(kNoUnrollAttr, rewriter.getUnitAttr());
      // One parallel loop per kernel, that one, and only when it is a
      // parallel dimension and the whole nest has enough work: one OpenMP
      // region per kernel, never nested, and none for tiny kernels.
      if (work >= grain && outer < loops->size() && outer < iters.size() &&
          iters[outer] == utils::IteratorType::parallel)
        parallelize(rewriter, cast<scf::ForOp>((*loops)[outer]));
    }
    // Hand-written nests (matmul, col2im) marked by the lowering follow the
    // same rule.
    SmallVector<scf::ForOp> marked;
    getOperation().walk([&](scf::ForOp loop) {
      if (loop->hasAttr(kParallelWorkAttr))
        marked.push_back(loop);
    });
    for (scf::ForOp loop : marked) {
      auto work = loop->getAttrOfType<IntegerAttr>(kParallelWorkAttr).getInt();
      loop->removeAttr(kParallelWorkAttr);
      if (work >= grain) {
        parallelize(rewriter, loop);
      } else {
        // A sequential hand-written nest (a GEMM's units, col2im's planes)
        // has a big body and often a small constant trip count: unrolling it
        // gains nothing and multiplies LLVM's code generation time
        // (soma-outline-loops marks its back edge).
        loop->setAttr(kNoUnrollAttr, rewriter.getUnitAttr());
      }
    }
  }

  /// Turns a for loop without iteration arguments into an scf.parallel.
  static void parallelize(IRRewriter &rewriter, scf::ForOp loop) {
    rewriter.setInsertionPoint(loop);
    auto par = rewriter.create<scf::ParallelOp>(loop.getLoc(), ValueRange{loop.getLowerBound()},
                                                ValueRange{loop.getUpperBound()},
                                                ValueRange{loop.getStep()});
    Block &src = *loop.getBody();
    src.getArgument(0).replaceAllUsesWith(par.getInductionVars()[0]);
    Block &dst = *par.getBody();
    dst.getOperations().splice(Block::iterator(dst.getTerminator()), src.getOperations(),
                               src.begin(), std::prev(src.end()));
    rewriter.eraseOp(loop);
  }
};

/// True if `v` can be an argument of an outlined function under the bare
/// pointer calling convention: a scalar, or a memref of static shape and
/// identity layout.
static bool passable(Value v) {
  if (auto m = dyn_cast<MemRefType>(v.getType()))
    return m.hasStaticShape() && m.getLayout().isIdentity();
  return v.getType().isIntOrIndexOrFloat();
}

struct SomaOutlineLoopsPass : impl::SomaOutlineLoopsBase<SomaOutlineLoopsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> kernels;
    for (auto fn : module.getOps<func::FuncOp>())
      if (fn->hasAttr("soma.kernel"))
        kernels.push_back(fn);
    IRRewriter rewriter(&getContext());
    for (func::FuncOp fn : kernels) {
      unsigned n = 0;
      auto outline = [&](scf::ExecuteRegionOp region, StringRef what) -> LogicalResult {
        llvm::SetVector<Value> captured;
        getUsedValuesDefinedAbove(region->getRegions(), captured);
        if (!llvm::all_of(captured, passable)) {
          // Not a function argument: left inline.
          rewriter.setInsertionPoint(region);
          return success();
        }
        func::CallOp call;
        std::string name;
        do
          name = (fn.getSymName() + "_" + what + Twine(n++)).str();
        while (module.lookupSymbol(name));
        auto outlined = outlineSingleBlockRegion(rewriter, region.getLoc(), region.getRegion(), name, &call);
        if (failed(outlined))
          return failure();
        (*outlined)->setAttr("passthrough", rewriter.getArrayAttr({rewriter.getStringAttr("noinline")}));
        return success();
      };
      // Regions the lowering marked (whole GEMMs).
      SmallVector<scf::ExecuteRegionOp> marked;
      fn.walk([&](scf::ExecuteRegionOp r) {
        if (r->hasAttr(kOutlineAttr))
          marked.push_back(r);
      });
      for (scf::ExecuteRegionOp r : marked) {
        std::string what = r->getAttrOfType<StringAttr>(kOutlineAttr).str();
        r->removeAttr(kOutlineAttr);
        if (failed(outline(r, what)))
          return signalPassFailure();
      }
      // Top-level loop nests, sequential ("loop") or parallel ("par"),
      // each in a region of its own first.
      SmallVector<Operation *> loops;
      for (Operation &op : fn.getBody().front())
        if (isa<scf::ForOp, scf::ParallelOp>(op))
          loops.push_back(&op);
      for (Operation *loop : loops) {
        if (loop->getNumResults() != 0 || !llvm::all_of(loop->getOperands(), passable))
          continue;
        rewriter.setInsertionPoint(loop);
        auto region = rewriter.create<scf::ExecuteRegionOp>(loop->getLoc(), TypeRange{});
        Block *block = rewriter.createBlock(&region.getRegion());
        rewriter.setInsertionPointToEnd(block);
        auto yield = rewriter.create<scf::YieldOp>(loop->getLoc());
        loop->moveBefore(yield);
        if (failed(outline(region, isa<scf::ParallelOp>(loop) ? "par" : "loop")))
          return signalPassFailure();
      }
    }
  }
};

/// scf.for marked soma.no_unroll as blocks, as SCF-to-ControlFlow lowers
/// it, with `llvm.loop.unroll.disable` on the back edge (MLIR 19's lowering
/// does not carry loop annotations over from scf.for).
struct ForWithoutUnrolling : OpRewritePattern<scf::ForOp> {
  ForWithoutUnrolling(MLIRContext *ctx) : OpRewritePattern(ctx, /*benefit=*/2) {}
  LogicalResult matchAndRewrite(scf::ForOp loop, PatternRewriter &rewriter) const override {
    if (!loop->hasAttr(kNoUnrollAttr))
      return failure();
    Location loc = loop.getLoc();
    MLIRContext *ctx = loop.getContext();
    Block *init = rewriter.getInsertionBlock();
    Block *end = rewriter.splitBlock(init, rewriter.getInsertionPoint());
    Block *cond = &loop.getRegion().front();
    Block *body = rewriter.splitBlock(cond, cond->begin());
    Block *last = &loop.getRegion().back();
    rewriter.inlineRegionBefore(loop.getRegion(), end);
    Value iv = cond->getArgument(0);
    Operation *yield = last->getTerminator();
    rewriter.setInsertionPointToEnd(last);
    SmallVector<Value> carried{rewriter.create<arith::AddIOp>(loc, iv, loop.getStep())};
    carried.append(yield->operand_begin(), yield->operand_end());
    auto back = rewriter.create<cf::BranchOp>(loc, cond, carried);
    auto unroll = LLVM::LoopUnrollAttr::get(ctx, rewriter.getBoolAttr(true), {}, {}, {}, {}, {}, {});
    back->setAttr("loop_annotation", LLVM::LoopAnnotationAttr::get(ctx, {}, {}, {}, unroll, {}, {}, {}, {}, {}, {},
                                                                   {}, {}, {}, {}, {}));
    rewriter.eraseOp(yield);
    rewriter.setInsertionPointToEnd(init);
    SmallVector<Value> start{loop.getLowerBound()};
    llvm::append_range(start, loop.getInitArgs());
    rewriter.create<cf::BranchOp>(loc, cond, start);
    rewriter.setInsertionPointToEnd(cond);
    Value more = rewriter.create<arith::CmpIOp>(loc, arith::CmpIPredicate::slt, iv, loop.getUpperBound());
    rewriter.create<cf::CondBranchOp>(loc, more, body, ValueRange{}, end, ValueRange{});
    rewriter.replaceOp(loop, cond->getArguments().drop_front());
    return success();
  }
};

struct SomaSCFToCFPass : impl::SomaSCFToCFBase<SomaSCFToCFPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    populateSCFToControlFlowConversionPatterns(patterns);
    patterns.add<ForWithoutUnrolling>(ctx);
    ConversionTarget target(*ctx);
    target.addIllegalOp<scf::ForallOp, scf::ForOp, scf::IfOp, scf::IndexSwitchOp, scf::ParallelOp, scf::WhileOp,
                        scf::ExecuteRegionOp>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    if (failed(applyPartialConversion(getOperation(), target, std::move(patterns))))
      signalPassFailure();
  }
};

struct SomaApproximateMathPass : impl::SomaApproximateMathBase<SomaApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(patterns);
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace

void buildLowerToLLVMPipeline(OpPassManager &pm) {
  pm.addNestedPass<func::FuncOp>(createSomaLinalgToLoops());
  pm.addPass(createSomaOutlineLoops());
  pm.addPass(createCanonicalizerPass());
  // (Before the vector ops are lowered: the approximations of vector math
  // ops are made of vector ops too.)
  pm.addPass(createSomaApproximateMath());
  pm.addPass(createConvertSCFToOpenMPPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createSomaSCFToCF());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  ConvertFuncToLLVMPassOptions funcOptions;
  funcOptions.useBarePtrCallConv = true;
  pm.addPass(createConvertFuncToLLVMPass(funcOptions));
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertOpenMPToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
  // (The pass's intrinsics are x86's; a module marked kKeepDenormalsAttr
  // is left as it is.)
  if (llvm::Triple(llvm::sys::getProcessTriple()).isX86())
    pm.addPass(createSomaFlushDenormals());
}

void registerSomaPipelines() {
  PassPipelineRegistration<>(
      "soma-lower-to-llvm",
      "Lower planned soma kernels (linalg/memref) to the LLVM dialect",
      [](OpPassManager &pm) { buildLowerToLLVMPipeline(pm); });
}

} // namespace soma
