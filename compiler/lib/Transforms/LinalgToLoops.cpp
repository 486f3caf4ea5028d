//===- LinalgToLoops.cpp - linalg to (parallel) loops with a grain size ---===//

#include "soma/Compiler/Lowering.h"
#include "soma/Dialect/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Utils/Utils.h"
#include "mlir/Transforms/RegionUtils.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/Passes.h"

namespace soma {
#define GEN_PASS_DEF_SOMALINALGTOLOOPS
#define GEN_PASS_DEF_SOMAOUTLINELOOPS
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
      if (work >= grain)
        parallelize(rewriter, loop);
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
      // Top-level loop nests, each in a region of its own first.
      SmallVector<scf::ForOp> loops(fn.getBody().front().getOps<scf::ForOp>());
      for (scf::ForOp loop : loops) {
        if (loop.getNumResults() != 0 || !llvm::all_of(loop->getOperands(), passable))
          continue;
        rewriter.setInsertionPoint(loop);
        auto region = rewriter.create<scf::ExecuteRegionOp>(loop.getLoc(), TypeRange{});
        Block *block = rewriter.createBlock(&region.getRegion());
        rewriter.setInsertionPointToEnd(block);
        auto yield = rewriter.create<scf::YieldOp>(loop.getLoc());
        loop->moveBefore(yield);
        if (failed(outline(region, "loop")))
          return signalPassFailure();
      }
    }
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
  pm.addPass(createConvertSCFToCFPass());
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
