//===- LinalgToLoops.cpp - linalg to (parallel) loops with a grain size ---===//

#include "soma/Compiler/Lowering.h"
#include "soma/Dialect/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Transforms/DialectConversion.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Utils/Utils.h"
#include "mlir/Transforms/RegionUtils.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/Passes.h"

namespace soma {
#define GEN_PASS_DEF_SOMALINALGTOLOOPS
#define GEN_PASS_DEF_SOMAOUTLINELOOPS
#define GEN_PASS_DEF_SOMASCFTOCF
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;

namespace soma {
namespace {

struct SomaLinalgToLoopsPass
    : impl::SomaLinalgToLoopsBase<SomaLinalgToLoopsPass> {
  using Base::Base;
  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> ops;
    getOperation().walk([&](linalg::LinalgOp op) { ops.push_back(op); });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : ops) {
      SmallVector<int64_t> ranges = op.getStaticLoopRanges();
      int64_t points = 1;
      for (int64_t r : ranges)
        points *= r;
      // The loop to parallelise: the outermost one with more than one
      // iteration (loops of one iteration outside it run once, so it is
      // still the only parallel region of the kernel; a batch of 1 must not
      // make a [1, C, H, W] kernel sequential).
      size_t outer = 0;
      while (outer < ranges.size() && ranges[outer] == 1)
        ++outer;
      SmallVector<utils::IteratorType> iters = op.getIteratorTypesArray();
      rewriter.setInsertionPoint(op);
      auto loops = linalg::linalgOpToLoops(rewriter, op);
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
      if (points >= grain && outer < loops->size() && outer < iters.size() &&
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

} // namespace

void buildLowerToLLVMPipeline(OpPassManager &pm) {
  pm.addNestedPass<func::FuncOp>(createSomaLinalgToLoops());
  pm.addPass(createSomaOutlineLoops());
  pm.addPass(createCanonicalizerPass());
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
}

void registerSomaPipelines() {
  PassPipelineRegistration<>(
      "soma-lower-to-llvm",
      "Lower planned soma kernels (linalg/memref) to the LLVM dialect",
      [](OpPassManager &pm) { buildLowerToLLVMPipeline(pm); });
}

} // namespace soma
