//===- Decompose.cpp - Convolution and pooling as im2col + matmul ----------===//
//
// The graph keeps conv2d and the pooling ops (readable dumps, one VJP per
// op); for code generation each becomes im2col followed by a matmul or a
// reduction, so that convolutions run on the matmul kernel.
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
  void runOnOperation() override {
    SmallVector<Operation *> ops;
    getOperation().walk([&](Operation *op) {
      // (Max pooling whose windows tile the input is lowered directly.)
      if (auto m = dyn_cast<MaxPool2dOp>(op);
          m && tilesInput(cast<RankedTensorType>(m.getInput().getType()).getShape(), m.getKernel(), m.getStride(),
                          m.getPadding()))
        return;
      if (isa<Conv2dOp, MaxPool2dOp, AvgPool2dOp>(op))
        ops.push_back(op);
    });
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
