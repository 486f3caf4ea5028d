//===- LinalgToLoops.cpp - linalg to (parallel) loops with a grain size ---===//

#include "soma/Compiler/Lowering.h"
#include "soma/Dialect/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/Passes.h"

namespace soma {
#define GEN_PASS_DEF_SOMALINALGTOLOOPS
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

} // namespace

void buildLowerToLLVMPipeline(OpPassManager &pm) {
  pm.addNestedPass<func::FuncOp>(createSomaLinalgToLoops());
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
