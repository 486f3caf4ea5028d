//===- Recompute.cpp - Activation checkpointing ----------------------------===//
//
// See the pass description in Passes.td. The cheap ops are the ones with the
// Soma_Elementwise trait and reshapes; everything else (matmuls, reductions,
// im2col) is kept, so the recomputation never redoes a contraction.
//
//===----------------------------------------------------------------------===//

#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"

#include "mlir/IR/IRMapping.h"

#include <functional>

namespace soma {
#define GEN_PASS_DEF_SOMARECOMPUTE
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;
using namespace soma::ir;

namespace soma {
namespace {

int64_t bytesOf(Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  return t.getNumElements() * ((t.getElementTypeBitWidth() + 7) / 8);
}

bool isCheap(Operation *op) {
  return op && op->getNumResults() == 1 && (isElementwise(op) || isa<ReshapeOp>(op));
}

struct SomaRecomputePass : impl::SomaRecomputeBase<SomaRecomputePass> {
  using Base::Base;

  void runOnOperation() override {
    func::FuncOp fn = getOperation();
    if (fn.isDeclaration() || fn->hasAttr("soma.kernel"))
      return;
    Block &body = fn.getBody().front();
    auto ret = cast<func::ReturnOp>(body.getTerminator());
    // Forward: everything the non-gradient results depend on.
    llvm::SmallPtrSet<Operation *, 32> forward;
    SmallVector<Value> work;
    for (unsigned j = 0; j < fn.getNumResults(); ++j)
      if (!fn.getResultAttr(j, "soma.grad"))
        work.push_back(ret.getOperand(j));
    while (!work.empty()) {
      Operation *def = work.pop_back_val().getDefiningOp();
      if (!def || !forward.insert(def).second)
        continue;
      for (Value v : def->getOperands())
        work.push_back(v);
    }
    DenseMap<Operation *, int64_t> position;
    int64_t pos = 0;
    for (Operation &op : body)
      position[&op] = pos++;

    // Candidates and their first backward reader.
    struct Candidate {
      Value value;
      Operation *firstBackward;
    };
    std::vector<Candidate> candidates;
    for (Operation &op : body.without_terminator()) {
      if (!forward.contains(&op) || !isCheap(&op))
        continue;
      Operation *first = nullptr;
      for (Operation *user : op.getResult(0).getUsers())
        if (!forward.contains(user) && !isa<func::ReturnOp>(user) &&
            (!first || position[user] < position[first]))
          first = user;
      if (first)
        candidates.push_back({op.getResult(0), first});
    }
    // Choose: all, or the largest first until the kept ones fit.
    std::vector<size_t> order(candidates.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    llvm::SmallPtrSet<Value, 32> chosen;
    if (budget == 0) {
      for (const Candidate &c : candidates)
        chosen.insert(c.value);
    } else {
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return bytesOf(candidates[a].value) > bytesOf(candidates[b].value);
      });
      int64_t kept = 0;
      for (const Candidate &c : candidates)
        kept += bytesOf(c.value);
      for (size_t i : order) {
        if (kept <= budget)
          break;
        chosen.insert(candidates[i].value);
        kept -= bytesOf(candidates[i].value);
      }
    }
    // Materialise in order of first backward use, reusing copies already
    // made (they precede every later insertion point).
    std::stable_sort(candidates.begin(), candidates.end(), [&](const Candidate &a, const Candidate &b) {
      return position[a.firstBackward] < position[b.firstBackward];
    });
    DenseMap<Value, Value> copies;
    int64_t values = 0, bytes = 0, flops = 0;
    std::function<Value(Value, Operation *)> materialise = [&](Value v, Operation *before) -> Value {
      if (!chosen.contains(v))
        return v;
      if (Value c = copies.lookup(v))
        return c;
      Operation *def = v.getDefiningOp();
      IRMapping map;
      for (Value o : def->getOperands())
        map.map(o, materialise(o, before));
      OpBuilder b(before);
      Operation *copy = b.clone(*def, map);
      copy->setAttr("soma.recomputed", b.getUnitAttr());
      copies[v] = copy->getResult(0);
      ++values;
      bytes += bytesOf(v);
      if (!isa<ReshapeOp>(def))
        flops += cast<RankedTensorType>(v.getType()).getNumElements();
      return copy->getResult(0);
    };
    for (const Candidate &c : candidates) {
      if (!chosen.contains(c.value))
        continue;
      Value copy = materialise(c.value, c.firstBackward);
      Value original = c.value;
      original.replaceUsesWithIf(copy, [&](OpOperand &use) {
        Operation *owner = use.getOwner();
        return !forward.contains(owner) && !isa<func::ReturnOp>(owner) &&
               owner->getAttr("soma.recomputed") == nullptr;
      });
    }
    // Copies reading chosen values must read the copies too (the
    // replacement above skipped them); materialise mapped them already.
    OpBuilder b(fn.getContext());
    fn->setAttr("soma.recompute", b.getDenseI64ArrayAttr({values, bytes, flops}));
  }
};

} // namespace
} // namespace soma
