//===- Fuse.cpp - Elementwise fusion into soma.fusion kernels --------------===//
//
// A greedy producer-consumer grouping in program order (see the pass
// description in Passes.td). The rule of what may join a group is the
// Soma_Elementwise trait on the ops; the policy is "join the producer's
// group when the shapes agree and the group can still be placed at its
// last op".
//
//===----------------------------------------------------------------------===//

#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"

#include "mlir/IR/IRMapping.h"

#include <memory>

namespace soma {
#define GEN_PASS_DEF_SOMAFUSE
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;
using namespace soma::ir;

namespace soma {
namespace {

struct Group {
  SmallVector<Operation *> ops;
  llvm::SmallPtrSet<Operation *, 16> members;
  ArrayRef<int64_t> shape;
};

ArrayRef<int64_t> shapeOf(Value v) { return cast<RankedTensorType>(v.getType()).getShape(); }

bool isSplatConstant(Operation *op) {
  auto c = dyn_cast_or_null<ConstantOp>(op);
  return c && isa<DenseElementsAttr>(c.getValue()) && cast<DenseElementsAttr>(c.getValue()).isSplat();
}

/// `op` may join the union of `groups` if nothing outside it that runs
/// before op reads one of its values: the fused kernel is placed where its
/// last op was.
bool canJoin(ArrayRef<Group *> groups, Operation *op) {
  auto inside = [&](Operation *u) {
    return llvm::any_of(groups, [&](Group *g) { return g->members.contains(u); });
  };
  for (Group *g : groups)
    for (Operation *m : g->ops)
      for (Operation *user : m->getResult(0).getUsers())
        if (user != op && !inside(user) && user->isBeforeInBlock(op))
          return false;
  return true;
}

/// A new soma.fusion of `kind` at b's insertion point, with a body block
/// whose arguments stand for `inputs` (recorded in `map`); returns it and a
/// builder at the end of its body.
std::pair<FusionOp, OpBuilder> newFusion(OpBuilder &b, Location loc, TypeRange results, ArrayRef<Value> inputs,
                                         StringRef kind, IRMapping &map) {
  auto fusion = b.create<FusionOp>(loc, results, inputs, b.getStringAttr(kind));
  Block *body = b.createBlock(&fusion.getBody());
  for (Value v : inputs)
    map.map(v, body->addArgument(v.getType(), v.getLoc()));
  b.setInsertionPointAfter(fusion);
  return {fusion, OpBuilder::atBlockEnd(body)};
}

/// Clones f's body (without its yield) where `inner` builds, its arguments
/// standing for what f's inputs map to; returns f's yield.
Operation *inlineBody(FusionOp f, OpBuilder &inner, IRMapping &map) {
  Block &old = f.getBody().front();
  for (auto [a, v] : llvm::zip(old.getArguments(), f.getInputs()))
    map.map(a, map.lookup(v));
  for (Operation &op : old.without_terminator())
    inner.clone(op, map);
  return old.getTerminator();
}

/// Sorts a lone op's operands (other than `skip`) into the inputs of a
/// fusion, each once, and the splat constants it copies in.
void addOperands(Operation *op, Value skip, SmallVectorImpl<Value> &inputs, SmallVectorImpl<Operation *> &constants) {
  for (Value v : op->getOperands()) {
    if (v == skip)
      continue;
    if (isSplatConstant(v.getDefiningOp())) {
      if (!llvm::is_contained(constants, v.getDefiningOp()))
        constants.push_back(v.getDefiningOp());
    } else if (!llvm::is_contained(inputs, v)) {
      inputs.push_back(v);
    }
  }
}

void buildFusion(Group &g) {
  Operation *last = g.ops.back();
  OpBuilder b(last);
  SmallVector<Value> inputs;
  llvm::SmallDenseMap<Value, unsigned> inputIndex;
  SmallVector<Operation *> constants;
  llvm::SmallPtrSet<Operation *, 4> constantSet;
  for (Operation *m : g.ops)
    for (Value v : m->getOperands()) {
      Operation *def = v.getDefiningOp();
      if (def && g.members.contains(def))
        continue;
      if (isSplatConstant(def)) {
        if (constantSet.insert(def).second)
          constants.push_back(def);
        continue;
      }
      if (inputIndex.try_emplace(v, inputs.size()).second)
        inputs.push_back(v);
    }
  SmallVector<Value> outputs;
  for (Operation *m : g.ops)
    if (llvm::any_of(m->getResult(0).getUsers(), [&](Operation *u) { return !g.members.contains(u); }))
      outputs.push_back(m->getResult(0));

  SmallVector<Type> resultTypes;
  for (Value v : outputs)
    resultTypes.push_back(v.getType());
  IRMapping map;
  auto [fusion, inner] = newFusion(b, last->getLoc(), resultTypes, inputs, "elementwise", map);
  for (Operation *c : constants)
    inner.clone(*c, map);
  for (Operation *m : g.ops)
    inner.clone(*m, map);
  SmallVector<Value> yields;
  for (Value v : outputs)
    yields.push_back(map.lookup(v));
  inner.create<YieldOp>(last->getLoc(), yields);
  for (auto [v, r] : llvm::zip(outputs, fusion.getResults()))
    v.replaceUsesWithIf(r, [&](OpOperand &use) { return !g.members.contains(use.getOwner()); });
  for (Operation *m : llvm::reverse(g.ops))
    m->erase();
  for (Operation *c : constants)
    if (c->use_empty())
      c->erase();
}

/// A reduction whose operand is made by an elementwise op or kernel that
/// nothing else reads takes that producer in: one loop nest computes each
/// point and accumulates it.
void fuseIntoReduction(Operation *reduce) {
  Value in = reduce->getOperand(0);
  Operation *producer = in.getDefiningOp();
  if (!producer || !in.hasOneUse())
    return;
  auto fusion = dyn_cast<FusionOp>(producer);
  if (fusion ? (fusion.getKind() != "elementwise" || fusion.getNumResults() != 1) : !isElementwise(producer))
    return;
  // The loop nest takes its bounds from an input of the full shape.
  auto full = [&](Value v) { return v.getType() == in.getType() && !isSplatConstant(v.getDefiningOp()); };
  if (fusion ? llvm::none_of(fusion.getInputs(), full) : llvm::none_of(producer->getOperands(), full))
    return;
  OpBuilder b(reduce);
  SmallVector<Value> inputs;
  SmallVector<Operation *> constants;
  if (fusion)
    inputs.assign(fusion.getInputs().begin(), fusion.getInputs().end());
  else
    addOperands(producer, Value(), inputs, constants);
  IRMapping map;
  auto [result, inner] = newFusion(b, reduce->getLoc(), reduce->getResultTypes(), inputs, "reduction", map);
  if (fusion) {
    map.map(in, map.lookup(inlineBody(fusion, inner, map)->getOperand(0)));
  } else {
    for (Operation *c : constants)
      inner.clone(*c, map);
    inner.clone(*producer, map);
  }
  Operation *r = inner.clone(*reduce, map);
  inner.create<YieldOp>(reduce->getLoc(), r->getResult(0));
  reduce->getResult(0).replaceAllUsesWith(result.getResult(0));
  reduce->erase();
  producer->erase();
  for (Operation *c : constants)
    if (c->use_empty())
      c->erase();
}

/// A matmul whose operand is a view its packing can compute (GemmView: a
/// convolution's columns, per image or not, its filter broadcast over the
/// images, a gradient read channel-major) reads the view's source while it
/// packs its panels: the view's ops move into a contraction fusion (a copy
/// per matmul that reads them: the forward product and the filter
/// gradient), whose input is the source, and the view is never stored.
/// The fusion yields the product.
void absorbGathers(MatmulOp mm) {
  GemmView views[] = {matchGemmView(mm.getLhs()), matchGemmView(mm.getRhs())};
  if (llvm::all_of(views, [](const GemmView &v) { return v.kind == GemmViewKind::Stored; }))
    return;
  SmallVector<Value> inputs;
  for (const GemmView &v : views)
    if (!llvm::is_contained(inputs, v.source))
      inputs.push_back(v.source);
  OpBuilder b(mm);
  IRMapping map;
  auto [result, inner] = newFusion(b, mm.getLoc(), mm->getResultTypes(), inputs, "contraction", map);
  SmallVector<Operation *> gathers;
  for (const GemmView &v : views)
    for (Operation *op : v.ops) {
      if (!map.contains(op->getResult(0)))
        inner.clone(*op, map);
      if (!llvm::is_contained(gathers, op))
        gathers.push_back(op);
    }
  Operation *product = inner.clone(*mm, map);
  inner.create<YieldOp>(mm.getLoc(), product->getResult(0));
  mm.getResult().replaceAllUsesWith(result.getResult(0));
  mm->erase();
  // The views' ops that nothing else reads, last first.
  for (Operation *g : llvm::reverse(gathers))
    if (g->use_empty())
      g->erase();
}

/// A contraction: a matmul, or a contraction fusion whose only result is
/// its product (a matmul with its gathers).
bool isBareContraction(Operation *op) {
  if (isContraction(op))
    return true;
  auto f = dyn_cast<FusionOp>(op);
  if (!f || f.getKind() != "contraction" || f.getNumResults() != 1)
    return false;
  Value y = f.getBody().front().getTerminator()->getOperand(0);
  return y.getDefiningOp() && isContraction(y.getDefiningOp());
}

/// A contraction whose result only an elementwise op or kernel of the same
/// shape reads takes that consumer in as its epilogue: the kernel computes
/// each block of the product and applies the consumer's ops to it while it
/// is in cache, so the product is not written and read back.
void fuseEpilogue(Operation *contraction) {
  Value product = contraction->getResult(0);
  if (!product.hasOneUse())
    return;
  // The product may reach its consumer through a reshape that splits its
  // dimensions (a convolution's per-image products as the NCHW output):
  // the epilogue then runs over the product's points and reads every other
  // operand of the consumer in the product's dimensions, which needs each
  // run of split dimensions to be all broadcast or all full in it.
  Operation *view = *product.getUsers().begin();
  Value value = product; // what the consumer reads
  std::optional<SmallVector<SmallVector<int64_t, 2>, 4>> groups;
  if (isa<ReshapeOp>(view)) {
    groups = expandGroups(shapeOf(product), shapeOf(view->getResult(0)));
    if (!groups || !view->getResult(0).hasOneUse())
      return;
    value = view->getResult(0);
  } else {
    view = nullptr;
  }
  Operation *consumer = *value.getUsers().begin();
  auto fusion = dyn_cast<FusionOp>(consumer);
  if (fusion ? fusion.getKind() != "elementwise" : !isElementwise(consumer))
    return;
  if (consumer->getResult(0).getType() != value.getType())
    return;
  if (view)
    for (Value v : consumer->getOperands())
      if (v != value && !collapseBroadcast(shapeOf(v), shapeOf(value), *groups))
        return;
  // The cost policy: a kernel that makes the new value of a parameter or
  // state (an optimizer update) stays apart, so that it can update it in
  // place in one vectorised pass; as an epilogue it would write new
  // buffers that are then copied back.
  auto fn = consumer->getParentOfType<func::FuncOp>();
  for (Value r : consumer->getResults())
    for (OpOperand &use : r.getUses())
      if (isa<func::ReturnOp>(use.getOwner()) && fn.getResultAttr(use.getOperandNumber(), kUpdateAttr))
        return;
  // Inputs: the contraction's, then what the consumer reads besides the
  // product (splat constants of a lone op are copied in).
  SmallVector<Value> inputs(contraction->getOperands());
  SmallVector<Operation *> constants;
  if (fusion) {
    for (Value v : fusion.getInputs())
      if (v != value && !llvm::is_contained(inputs, v))
        inputs.push_back(v);
  } else {
    addOperands(consumer, value, inputs, constants);
  }
  OpBuilder b(consumer);
  IRMapping map;
  auto [result, inner] = newFusion(b, consumer->getLoc(), consumer->getResultTypes(), inputs, "contraction", map);
  // The product: the matmul, or the contraction fusion's body.
  if (auto c = dyn_cast<FusionOp>(contraction))
    map.map(product, map.lookup(inlineBody(c, inner, map)->getOperand(0)));
  else
    map.map(product, inner.clone(*contraction, map)->getResult(0));
  if (view)
    inner.clone(*view, map);
  if (fusion) {
    inner.clone(*inlineBody(fusion, inner, map), map);
  } else {
    for (Operation *c : constants)
      inner.clone(*c, map);
    Operation *op = inner.clone(*consumer, map);
    inner.create<YieldOp>(consumer->getLoc(), op->getResult(0));
  }
  consumer->replaceAllUsesWith(result.getResults());
  consumer->erase();
  if (view)
    view->erase();
  contraction->erase();
  for (Operation *c : constants)
    if (c->use_empty())
      c->erase();
}

/// An elementwise op broadcasts its operands itself, so one that reads a
/// broadcast_to reads the broadcast's source instead when its result keeps
/// its shape (the other operands span it): the broadcast is never stored.
/// When the other operands do not span the shape (a scale by a scalar), the
/// op is computed on the smaller shape and the broadcast moves after it,
/// to be absorbed further down. Gradients are full of these: a reduction's
/// VJP broadcasts the gradient back to the reduced shape, scales it and
/// adds it to another term (batch norm's backward pass stored six
/// broadcasts per layer).
void absorbBroadcasts(func::FuncOp fn) {
  SmallVector<BroadcastToOp> work;
  fn.walk([&](BroadcastToOp op) { work.push_back(op); });
  while (!work.empty()) {
    BroadcastToOp bc = work.pop_back_val();
    Value source = bc.getInput();
    SmallVector<Operation *> users;
    for (Operation *u : bc.getResult().getUsers())
      if (isElementwise(u) && u->getNumResults() == 1 && !llvm::is_contained(users, u))
        users.push_back(u);
    for (Operation *user : users) {
      std::optional<SmallVector<int64_t>> shape = SmallVector<int64_t>();
      for (Value v : user->getOperands())
        if (shape)
          shape = broadcastShapes(*shape, shapeOf(v == bc.getResult() ? source : v));
      if (!shape)
        continue;
      auto type = cast<RankedTensorType>(user->getResult(0).getType());
      Operation *target = user;
      if (ArrayRef<int64_t>(*shape) != type.getShape()) {
        // op(broadcast(a), s) = broadcast(op(a, s)).
        OpBuilder b(user);
        target = b.clone(*user);
        target->getResult(0).setType(RankedTensorType::get(*shape, type.getElementType()));
        auto moved = b.create<BroadcastToOp>(user->getLoc(), target->getResult(0), b.getDenseI64ArrayAttr(type.getShape()));
        user->getResult(0).replaceAllUsesWith(moved.getResult());
        user->erase();
        work.push_back(moved);
      }
      for (OpOperand &operand : target->getOpOperands())
        if (operand.get() == bc.getResult())
          operand.set(source);
    }
    if (bc.getResult().use_empty())
      bc.erase();
  }
}

struct SomaFusePass : impl::SomaFuseBase<SomaFusePass> {
  void runOnOperation() override {
    func::FuncOp fn = getOperation();
    if (fn.isDeclaration() || fn->hasAttr("soma.kernel"))
      return;
    absorbBroadcasts(fn);
    std::vector<std::unique_ptr<Group>> groups;
    DenseMap<Operation *, Group *> groupOf;
    for (Operation &op : fn.getBody().front().without_terminator()) {
      if (!isElementwise(&op))
        continue;
      ArrayRef<int64_t> shape = shapeOf(op.getResult(0));
      // The groups of same-shape producers that op can join together
      // (several: a consumer of two chains, such as an optimizer update
      // reading both moments, merges them into one kernel).
      // An op read only by a reduction will be computed inside that
      // reduction's loop (fuseIntoReduction), which needs a kernel with one
      // result: it joins a group only if nothing else reads that group.
      Value res = op.getResult(0);
      bool feedsReduction = res.hasOneUse() && isReduction(*res.getUsers().begin());
      auto onlyFeedsOp = [&](Group *g) {
        return llvm::all_of(g->ops, [&](Operation *m) {
          return llvm::all_of(m->getResult(0).getUsers(),
                              [&](Operation *u) { return u == &op || g->members.contains(u); });
        });
      };
      SmallVector<Group *> chosen;
      for (Value v : op.getOperands()) {
        auto it = groupOf.find(v.getDefiningOp());
        if (it == groupOf.end() || it->second->shape != shape || llvm::is_contained(chosen, it->second))
          continue;
        if (feedsReduction && !onlyFeedsOp(it->second))
          continue;
        SmallVector<Group *> tentative(chosen);
        tentative.push_back(it->second);
        if (canJoin(tentative, &op))
          chosen = std::move(tentative);
      }
      Group *target = chosen.empty() ? nullptr : chosen.front();
      for (size_t k = 1; k < chosen.size(); ++k) {
        Group *other = chosen[k];
        for (Operation *m : other->ops) {
          target->ops.push_back(m);
          target->members.insert(m);
          groupOf[m] = target;
        }
        other->ops.clear();
        other->members.clear();
      }
      if (chosen.size() > 1)
        llvm::sort(target->ops, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
      if (!target) {
        groups.push_back(std::make_unique<Group>());
        target = groups.back().get();
        target->shape = shape;
      }
      target->ops.push_back(&op);
      target->members.insert(&op);
      groupOf[&op] = target;
    }
    for (auto &g : groups)
      if (g->ops.size() >= 2)
        buildFusion(*g);
    SmallVector<Operation *> reductions;
    for (Operation &op : fn.getBody().front().without_terminator())
      if (isReduction(&op))
        reductions.push_back(&op);
    for (Operation *r : reductions)
      fuseIntoReduction(r);
    SmallVector<MatmulOp> matmuls;
    for (Operation &op : fn.getBody().front().without_terminator())
      if (auto mm = dyn_cast<MatmulOp>(op))
        matmuls.push_back(mm);
    for (MatmulOp mm : matmuls)
      absorbGathers(mm);
    SmallVector<Operation *> contractions;
    for (Operation &op : fn.getBody().front().without_terminator())
      if (isBareContraction(&op))
        contractions.push_back(&op);
    for (Operation *c : contractions)
      fuseEpilogue(c);
  }
};

} // namespace
} // namespace soma
