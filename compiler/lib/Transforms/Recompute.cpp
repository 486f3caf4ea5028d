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
#include "llvm/ADT/SetVector.h"

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
    // A batch norm's normalisation, read by elementwise ops, as elementwise
    // ops of its own (soma-decompose would do it later): it may then be
    // recomputed from the batch norm's input and statistics.
    fn.walk([](BatchNormTrainOp bn) { splitBatchNormOutput(bn); });
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
            (!first || position.lookup(user) < position.lookup(first)))
          first = user;
      if (first)
        candidates.push_back({op.getResult(0), first});
    }
    // What recomputing a candidate costs: its cone (the cheap forward ops
    // it is computed from, through other cheap ops) is recomputed from the
    // cone's leaves, which must then stay alive until the backward pass.
    // A leaf costs nothing when it is kept anyway (a function argument, a
    // constant, a value a backward op or the return reads); otherwise it
    // is worth keeping only when the candidates it alone stands between
    // are bigger than it: a bias add and ReLU recomputed from the matmul's
    // product would keep the product instead of the activation (the same
    // bytes, more work), but a batch norm's centred input, normalised
    // output and ReLU recomputed from the convolution's output keep one
    // tensor instead of three.
    auto inCone = [&](Operation *def) {
      return def && forward.contains(def) && isCheap(def);
    };
    auto keptAnyway = [&](Value v) {
      Operation *def = v.getDefiningOp();
      if (!def || isa<ConstantOp>(def))
        return true;
      return llvm::any_of(v.getUsers(), [&](Operation *user) { return !forward.contains(user); });
    };
    DenseMap<Value, SmallVector<Value>> leavesOf;
    llvm::SmallPtrSet<Value, 32> kept, worth;
    for (const Candidate &c : cones ? candidates : std::vector<Candidate>{}) {
      llvm::SmallSetVector<Value, 8> leaves;
      llvm::SmallPtrSet<Operation *, 16> seen;
      SmallVector<Operation *> stack{c.value.getDefiningOp()};
      while (!stack.empty()) {
        Operation *op = stack.pop_back_val();
        if (!seen.insert(op).second)
          continue;
        for (Value o : op->getOperands()) {
          if (inCone(o.getDefiningOp()))
            stack.push_back(o.getDefiningOp());
          else if (!keptAnyway(o))
            leaves.insert(o);
        }
      }
      leavesOf[c.value] = SmallVector<Value>(leaves.begin(), leaves.end());
    }
    // Greedy: keep the missing leaves of the candidate that gains most
    // (the candidates that then need nothing else, minus those leaves),
    // while some candidate gains something.
    auto missing = [&](Value c) {
      SmallVector<Value> m;
      for (Value l : leavesOf[c])
        if (!kept.contains(l))
          m.push_back(l);
      return m;
    };
    while (cones) {
      std::vector<std::pair<Value, SmallVector<Value>>> pending;
      for (const Candidate &c : candidates)
        if (!worth.contains(c.value))
          pending.push_back({c.value, missing(c.value)});
      Value best;
      int64_t bestGain = 0;
      for (auto &[c, m] : pending) {
        llvm::SmallPtrSet<Value, 8> set(m.begin(), m.end());
        int64_t gain = 0;
        for (Value l : m)
          gain -= bytesOf(l);
        for (auto &[d, md] : pending)
          if (llvm::all_of(md, [&](Value l) { return set.contains(l); }))
            gain += bytesOf(d);
        if (gain > bestGain)
          best = c, bestGain = gain;
      }
      if (!best)
        break;
      for (Value l : missing(best))
        kept.insert(l);
      for (auto &[d, md] : pending)
        if (missing(d).empty())
          worth.insert(d);
    }

    // Choose: all (with cones, all that are worth it), or the largest of
    // those first until the candidates kept fit the budget.
    std::vector<size_t> order;
    for (size_t i = 0; i < candidates.size(); ++i)
      if (!cones || worth.contains(candidates[i].value))
        order.push_back(i);
    llvm::SmallPtrSet<Value, 32> chosen;
    if (budget == 0) {
      for (size_t i : order)
        chosen.insert(candidates[i].value);
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
      return position.lookup(a.firstBackward) < position.lookup(b.firstBackward);
    });
    // With cones, a copy made inside another candidate's cone serves only
    // that candidate (`local`): in a residual network the cone of one
    // block's output reaches back through every earlier block, and copies
    // shared with the later recomputations would all stay alive from the
    // first of them on. The copy of a chosen candidate made for its own
    // backward readers is kept for later recomputations (`copies`); with
    // chains every copy is.
    DenseMap<Value, Value> copies, local;
    Value current;
    int64_t candidateNumber = 0;
    int64_t values = 0, bytes = 0, flops = 0;
    std::function<Value(Value, Operation *)> materialise = [&](Value v, Operation *before) -> Value {
      // Chosen candidates are recomputed, with cones the rest of their
      // cones too.
      if (!chosen.contains(v) && (!cones || !inCone(v.getDefiningOp()) || keptAnyway(v)))
        return v;
      if (Value c = copies.lookup(v))
        return c;
      if (Value c = local.lookup(v))
        return c;
      Operation *def = v.getDefiningOp();
      IRMapping map;
      for (Value o : def->getOperands())
        map.map(o, materialise(o, before));
      OpBuilder b(before);
      Operation *copy = b.clone(*def, map);
      // A copy local to one candidate's cone is marked with that
      // candidate's number: CSE must not merge it with the same copy made
      // for another candidate (that would share it again).
      bool isLocal = cones && v != current;
      copy->setAttr("soma.recomputed", isLocal ? Attribute(b.getI64IntegerAttr(candidateNumber))
                                               : Attribute(b.getUnitAttr()));
      (isLocal ? local : copies)[v] = copy->getResult(0);
      ++values;
      bytes += bytesOf(v);
      if (!isa<ReshapeOp>(def))
        flops += cast<RankedTensorType>(v.getType()).getNumElements();
      return copy->getResult(0);
    };
    for (const Candidate &c : candidates) {
      if (!chosen.contains(c.value))
        continue;
      local.clear();
      current = c.value;
      ++candidateNumber;
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
