//===- PlanMemory.cpp - Place temporaries in one workspace ----------------===//
//
// Kernel functions are straight-line sequences of ops at the top level, so
// each temporary buffer is live from its allocation to the last top-level op
// that uses it (directly, inside a region, or through a view of it). Buffers
// are placed greedily by decreasing size at the lowest 64-byte aligned offset
// that does not overlap any already placed buffer with an intersecting live
// range (the heuristic of XLA's heap simulator).
//
//===----------------------------------------------------------------------===//

#include "soma/Dialect/Passes.h"
#include "soma/Compiler/MemoryPlan.h"

#include "mlir/Interfaces/ViewLikeInterface.h"

namespace soma {
#define GEN_PASS_DEF_SOMAPLANMEMORY
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;

namespace soma {

std::vector<int64_t> placeBuffers(const std::vector<BufferInterval> &buffers,
                                  int64_t alignment, int64_t *totalBytes) {
  std::vector<size_t> order(buffers.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return buffers[a].bytes > buffers[b].bytes;
  });
  auto alignUp = [&](int64_t v) { return (v + alignment - 1) / alignment * alignment; };
  std::vector<int64_t> offsets(buffers.size(), -1);
  std::vector<size_t> placed;
  int64_t total = 0;
  for (size_t i : order) {
    const BufferInterval &bi = buffers[i];
    // Occupied [begin, end) ranges of placed buffers live at the same time.
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (size_t j : placed) {
      const BufferInterval &bj = buffers[j];
      if (bj.start <= bi.end && bi.start <= bj.end)
        busy.push_back({offsets[j], offsets[j] + bj.bytes});
    }
    std::sort(busy.begin(), busy.end());
    // Best fit: the smallest gap that holds the buffer, else the top.
    int64_t best = -1, bestGap = INT64_MAX, cursor = 0;
    for (auto [lo, hi] : busy) {
      int64_t start = alignUp(cursor);
      if (lo - start >= bi.bytes && lo - start < bestGap) {
        best = start;
        bestGap = lo - start;
      }
      cursor = std::max(cursor, hi);
    }
    if (best < 0)
      best = alignUp(cursor);
    offsets[i] = best;
    placed.push_back(i);
    total = std::max(total, best + bi.bytes);
  }
  *totalBytes = alignUp(total);
  return offsets;
}

namespace {

int64_t bytesOf(MemRefType t) {
  return t.getNumElements() * ((t.getElementTypeBitWidth() + 7) / 8);
}

struct SomaPlanMemoryPass : impl::SomaPlanMemoryBase<SomaPlanMemoryPass> {
  void runOnOperation() override {
    func::FuncOp fn = getOperation();
    // Planned kernels (with soma.workspace_bytes) are left alone: their
    // views already point into a sized workspace.
    if (!fn->hasAttr("soma.kernel") || fn.isDeclaration() || fn->hasAttr("soma.workspace_bytes"))
      return;
    Block &body = fn.getBody().front();
    DenseMap<Operation *, int64_t> position;
    int64_t pos = 0;
    for (Operation &op : body)
      position[&op] = pos++;

    SmallVector<memref::AllocOp> allocs;
    std::vector<BufferInterval> intervals;
    for (Operation &op : body) {
      auto alloc = dyn_cast<memref::AllocOp>(&op);
      if (!alloc)
        continue;
      if (!alloc.getType().hasStaticShape() || !alloc.getType().getLayout().isIdentity()) {
        alloc.emitOpError("soma-plan-memory needs static, identity-layout buffers");
        return signalPassFailure();
      }
      // Last use: follow views transitively; map nested users to their
      // top-level ancestor.
      int64_t last = position[alloc];
      SmallVector<Value> work{alloc.getResult()};
      while (!work.empty()) {
        Value v = work.pop_back_val();
        for (Operation *user : v.getUsers()) {
          Operation *top = body.findAncestorOpInBlock(*user);
          if (top)
            last = std::max(last, position[top]);
          if (auto view = dyn_cast<ViewLikeOpInterface>(user))
            if (view.getViewSource() == v)
              for (Value r : user->getResults())
                work.push_back(r);
        }
      }
      allocs.push_back(alloc);
      intervals.push_back({position[alloc], last, bytesOf(alloc.getType())});
    }

    int64_t total = 0;
    std::vector<int64_t> offsets = placeBuffers(intervals, 64, &total);

    // Resize the workspace argument and replace each alloc by a view into it.
    BlockArgument ws = fn.getArgument(fn.getNumArguments() - 1);
    if (!fn.getArgAttr(ws.getArgNumber(), "soma.workspace")) {
      fn.emitOpError("kernel's last argument is not the soma.workspace");
      return signalPassFailure();
    }
    auto wsType = MemRefType::get({total}, IntegerType::get(&getContext(), 8));
    ws.setType(wsType);
    SmallVector<Type> inputs(fn.getArgumentTypes());
    inputs.back() = wsType;
    fn.setFunctionType(FunctionType::get(&getContext(), inputs, {}));

    OpBuilder b(&getContext());
    SmallVector<Attribute> plan;
    for (auto [i, alloc] : llvm::enumerate(allocs)) {
      b.setInsertionPoint(alloc);
      Value off = b.create<arith::ConstantIndexOp>(alloc.getLoc(), offsets[i]);
      Value view = b.create<memref::ViewOp>(alloc.getLoc(), alloc.getType(), ws,
                                            off, ValueRange{});
      alloc.replaceAllUsesWith(view);
      alloc.erase();
      plan.push_back(b.getDenseI64ArrayAttr(
          {offsets[i], intervals[i].bytes, intervals[i].start, intervals[i].end}));
    }
    fn->setAttr("soma.workspace_bytes", b.getI64IntegerAttr(total));
    fn->setAttr("soma.memory_plan", b.getArrayAttr(plan));
  }
};

} // namespace
} // namespace soma
