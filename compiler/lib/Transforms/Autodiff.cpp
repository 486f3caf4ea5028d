//===- Autodiff.cpp - Reverse-mode differentiation of soma graphs ---------===//
//
// Graph-level reverse mode: the backward pass is made of ordinary soma ops
// emitted by each op's VJP rule, so it is printed, fused, planned and
// lowered like the forward pass. A value used by several ops receives the
// sum of their gradient contributions (the "multivariate chain rule"); the
// contributions are added as they arrive in reverse order, which is the
// order in which every consumer of a value is visited before its producer.
//
//===----------------------------------------------------------------------===//

#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"

#include "mlir/IR/Builders.h"

namespace soma {
#define GEN_PASS_DEF_SOMAAUTODIFF
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;
using namespace soma::ir;

namespace soma {
namespace {

bool isFloat(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType().isF32();
}

LogicalResult differentiate(func::FuncOp fn) {
  Block &body = fn.getBody().front();
  auto ret = cast<func::ReturnOp>(body.getTerminator());

  int lossIndex = -1;
  for (unsigned j = 0; j < fn.getNumResults(); ++j)
    if (fn.getResultAttr(j, "soma.loss")) {
      if (lossIndex >= 0)
        return fn.emitError("graph '") << fn.getSymName() << "' marks more than one soma.loss result";
      lossIndex = static_cast<int>(j);
    }
  if (lossIndex < 0)
    return success(); // nothing to differentiate
  Value loss = ret.getOperand(lossIndex);
  auto lossType = cast<RankedTensorType>(loss.getType());
  if (lossType.getRank() != 0 || !lossType.getElementType().isF32()) {
    std::string shape;
    llvm::raw_string_ostream os(shape);
    lossType.print(os);
    return fn.emitError("the loss must be a scalar f32 (rank 0), got ") << os.str()
           << "; reduce it with sum or mean first";
  }

  // The arguments to differentiate: parameters and inputs that ask for it.
  SmallVector<std::pair<BlockArgument, std::string>> wrt;
  for (BlockArgument arg : fn.getArguments()) {
    unsigned i = arg.getArgNumber();
    if (auto p = fn.getArgAttrOfType<StringAttr>(i, kParamAttr)) {
      // Buffers such as running statistics are parameters the optimizer
      // does not train.
      auto trainable = fn.getArgAttrOfType<BoolAttr>(i, kTrainableAttr);
      if (!trainable || trainable.getValue())
        wrt.push_back({arg, p.str()});
    }
    else if (fn.getArgAttr(i, "soma.requires_grad")) {
      if (!isFloat(arg))
        return fn.emitError("input ") << fn.getArgAttr(i, kInputAttr)
                                      << " asks for a gradient but is not f32";
      wrt.push_back({arg, fn.getArgAttrOfType<StringAttr>(i, kInputAttr).str()});
    }
  }

  // Active values: depend on a differentiated argument (forward) and reach
  // the loss (backward). Only ops producing active values are differentiated.
  DenseSet<Value> varies, useful;
  for (auto &[arg, name] : wrt)
    varies.insert(arg);
  for (Operation &op : body.without_terminator()) {
    bool any = llvm::any_of(op.getOperands(), [&](Value v) { return varies.contains(v); });
    if (any && !isa<StopGradientOp>(op))
      for (Value r : op.getResults())
        if (isFloat(r))
          varies.insert(r);
  }
  useful.insert(loss);
  for (Operation &op : llvm::reverse(body.without_terminator())) {
    bool any = llvm::any_of(op.getResults(), [&](Value v) { return useful.contains(v); });
    if (any)
      for (Value v : op.getOperands())
        useful.insert(v);
  }

  OpBuilder b(ret);
  DenseMap<Value, Value> grads;
  auto accumulate = [&](Value v, Value g) {
    auto it = grads.find(v);
    if (it == grads.end())
      grads[v] = g;
    else
      it->second = b.create<AddOp>(g.getLoc(), it->second, g);
  };
  Location lossLoc = loss.getLoc();
  accumulate(loss, b.create<ConstantOp>(
                       lossLoc, DenseElementsAttr::get(lossType, 1.0f)));

  // Snapshot the forward ops: the VJPs append new ops before the return.
  SmallVector<Operation *> forward;
  for (Operation &op : body.without_terminator())
    forward.push_back(&op);
  for (Operation *op : llvm::reverse(forward)) {
    if (op->getNumResults() == 0)
      continue;
    Value result = op->getResult(0);
    auto it = grads.find(result);
    if (it == grads.end() || !varies.contains(result) || !useful.contains(result))
      continue;
    auto vjp = dyn_cast<VJPOpInterface>(op);
    if (!vjp) {
      return op->emitError("'")
             << op->getName() << "' is not differentiable, but the gradient of the loss "
             << "flows through it; wrap its input in soma.stop_gradient if no gradient "
                "should flow here";
    }
    SmallVector<Value> operandGrads;
    b.setInsertionPoint(ret);
    if (failed(vjp.buildVJP(b, ValueRange{it->second}, operandGrads)))
      return op->emitError("the VJP of this op failed");
    if (operandGrads.size() != op->getNumOperands())
      return op->emitError("VJP returned ") << operandGrads.size() << " gradients for "
                                             << op->getNumOperands() << " operands";
    for (auto [operand, g] : llvm::zip(op->getOperands(), operandGrads))
      if (g && varies.contains(operand))
        accumulate(operand, g);
  }

  // Append one result per differentiated argument (zeros if the loss does
  // not depend on it).
  b.setInsertionPoint(ret);
  SmallVector<Value> results(ret.getOperands());
  SmallVector<Type> types(fn.getResultTypes());
  SmallVector<DictionaryAttr> attrs;
  for (unsigned j = 0; j < fn.getNumResults(); ++j)
    attrs.push_back(fn.getResultAttrDict(j));
  for (auto &[arg, name] : wrt) {
    Value g = grads.lookup(arg);
    if (!g) {
      auto type = cast<RankedTensorType>(arg.getType());
      g = b.create<ConstantOp>(arg.getLoc(), DenseElementsAttr::get(type, 0.0f));
    }
    results.push_back(g);
    types.push_back(g.getType());
    attrs.push_back(b.getDictionaryAttr(
        {b.getNamedAttr("soma.grad", b.getStringAttr(name))}));
  }
  ret->setOperands(results);
  fn.setFunctionType(FunctionType::get(fn.getContext(), fn.getArgumentTypes(), types));
  fn.setAllResultAttrs(attrs);

  // VJPs produce every operand's gradient; those of values nobody
  // differentiates (a layer's input, say) are dead. Remove them here so that
  // no stage ever computes them.
  SmallVector<Operation *> ops;
  for (Operation &op : body.without_terminator())
    ops.push_back(&op);
  for (Operation *op : llvm::reverse(ops))
    if (op->use_empty() && isa<SomaDialect>(op->getDialect()))
      op->erase();
  return success();
}

struct SomaAutodiffPass : impl::SomaAutodiffBase<SomaAutodiffPass> {
  void runOnOperation() override {
    for (auto fn : getOperation().getOps<func::FuncOp>()) {
      if (fn.isDeclaration() || fn->hasAttr("soma.kernel"))
        continue;
      if (failed(differentiate(fn)))
        return signalPassFailure();
    }
  }
};

} // namespace
} // namespace soma
