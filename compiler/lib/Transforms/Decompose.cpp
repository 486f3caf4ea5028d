//===- Decompose.cpp - Convolution and pooling as im2col + matmul ----------===//
//
// The graph keeps conv2d and the pooling ops (readable dumps, one VJP per
// op); for code generation each becomes im2col followed by a matmul or a
// reduction, so that convolutions run on the matmul kernel. A batch
// norm's normalisation read by elementwise ops becomes elementwise ops
// (splitBatchNormOutput), which fuse with them.
//
//===----------------------------------------------------------------------===//

#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"

namespace soma {
#define GEN_PASS_DEF_SOMADECOMPOSE
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;
using namespace soma::ir;

namespace soma {
namespace {

struct SomaDecomposePass : impl::SomaDecomposeBase<SomaDecomposePass> {
  /// mul(max_pool2d_grad(x, y, g), step(x)), the gradient of a ReLU whose
  /// output x is max-pooled (LeNet-5: relu, then pool), becomes one
  /// max_pool2d_grad {relu}: the ReLU's gradient is applied where the
  /// pooling's is written, not in a pass of its own over dx.
  void foldReluIntoPoolGradients() {
    SmallVector<MulOp> muls;
    getOperation().walk([&](MulOp m) { muls.push_back(m); });
    for (MulOp m : muls) {
      for (int side = 0; side < 2; ++side) {
        auto pool = m->getOperand(side).getDefiningOp<MaxPool2dGradOp>();
        auto step = m->getOperand(1 - side).getDefiningOp<StepOp>();
        if (!pool || !step || pool.getRelu() || !pool->hasOneUse() || step.getInput() != pool.getInput() ||
            m.getType() != pool.getType())
          continue;
        OpBuilder b(m);
        // (mul(g, step) rounds as g * step: the lowering multiplies in
        // that order, whichever side the step was on.)
        auto fused = b.create<MaxPool2dGradOp>(m.getLoc(), pool.getInput(), pool.getOutput(), pool.getGrad(),
                                               pool.getKernelAttr(), b.getBoolAttr(true));
        m.getResult().replaceAllUsesWith(fused.getResult());
        m->erase();
        pool->erase();
        if (step->use_empty())
          step->erase();
        break;
      }
    }
  }

  void runOnOperation() override {
    SmallVector<Operation *> ops;
    getOperation().walk([&](Operation *op) {
      // (Max and average pooling whose windows tile the input are lowered
      // directly.)
      if (isTilingPool(op))
        return;
      if (isa<Conv2dOp, MaxPool2dOp, AvgPool2dOp>(op))
        ops.push_back(op);
    });
    foldReluIntoPoolGradients();
    getOperation().walk([](BatchNormTrainOp bn) { splitBatchNormOutput(bn); });
    for (Operation *op : ops) {
      OpBuilder b(op);
      Value replacement;
      if (auto c = dyn_cast<Conv2dOp>(op))
        replacement = decomposeConv2d(b, c);
      else if (auto m = dyn_cast<MaxPool2dOp>(op))
        replacement = decomposeMaxPool2d(b, m);
      else
        replacement = decomposeAvgPool2d(b, cast<AvgPool2dOp>(op));
      op->getResult(0).replaceAllUsesWith(replacement);
      op->erase();
    }
  }
};

} // namespace
} // namespace soma
