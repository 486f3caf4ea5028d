//===- ExpandModes.cpp - Training and inference forms of batch_norm, dropout ===//
//
// batch_norm: batch statistics and running-statistic updates (train) or the
// running statistics (eval). dropout: a mask drawn by random_uniform from
// the state "soma.dropout.step", which the step increments (train), or the
// identity (eval).
//
//===----------------------------------------------------------------------===//

#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"

namespace soma {
#define GEN_PASS_DEF_SOMAEXPANDMODES
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;
using namespace soma::ir;

namespace soma {
namespace {

constexpr const char *kDropoutStep = "soma.dropout.step";

Value scalarOf(OpBuilder &b, Location l, double v) {
  auto type = RankedTensorType::get({}, b.getF32Type());
  return b.create<ConstantOp>(l, DenseElementsAttr::get(type, static_cast<float>(v)));
}

struct SomaExpandModesPass : impl::SomaExpandModesBase<SomaExpandModesPass> {
  using Base::Base;

  void runOnOperation() override {
    for (auto fn : getOperation().getOps<func::FuncOp>()) {
      if (fn.isDeclaration() || fn->hasAttr("soma.kernel"))
        continue;
      SmallVector<BatchNormOp> bns;
      fn.walk([&](BatchNormOp op) { bns.push_back(op); });
      SmallVector<std::pair<std::string, Value>> updates;
      for (BatchNormOp op : bns)
        if (failed(expand(op, updates)))
          return signalPassFailure();
      SmallVector<DropoutOp> dropouts;
      fn.walk([&](DropoutOp op) { dropouts.push_back(op); });
      if (!dropouts.empty())
        expandDropouts(fn, dropouts, updates);
      if (updates.empty())
        continue;
      // Append the new running statistics as soma.update results.
      auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
      SmallVector<Value> values(ret.getOperands());
      SmallVector<DictionaryAttr> attrs;
      for (unsigned j = 0; j < fn.getNumResults(); ++j)
        attrs.push_back(fn.getResultAttrDict(j));
      Builder b(&getContext());
      for (auto &[name, v] : updates) {
        values.push_back(v);
        attrs.push_back(b.getDictionaryAttr({b.getNamedAttr(kUpdateAttr, b.getStringAttr(name))}));
      }
      setGraphResults(fn, values, attrs);
    }
  }

  /// The state "soma.dropout.step" of `fn` (created with its update the
  /// first time a training form needs it).
  Value dropoutStep(func::FuncOp fn, SmallVectorImpl<std::pair<std::string, Value>> &updates) {
    for (unsigned i = 0; i < fn.getNumArguments(); ++i)
      if (auto s = fn.getArgAttrOfType<StringAttr>(i, kStateAttr); s && s.getValue() == kDropoutStep)
        return fn.getArgument(i);
    OpBuilder b(fn.getContext());
    auto scalar = RankedTensorType::get({}, b.getF32Type());
    unsigned idx = fn.getNumArguments();
    fn.insertArgument(idx, scalar,
                      b.getDictionaryAttr({b.getNamedAttr(kStateAttr, b.getStringAttr(kDropoutStep)),
                                           b.getNamedAttr(kStateInitAttr, b.getF64FloatAttr(0.0))}),
                      fn.getLoc());
    Value step = fn.getArgument(idx);
    b.setInsertionPoint(fn.getBody().front().getTerminator());
    updates.push_back({kDropoutStep, b.create<AddOp>(fn.getLoc(), step, scalarOf(b, fn.getLoc(), 1.0))});
    return step;
  }

  void expandDropouts(func::FuncOp fn, ArrayRef<DropoutOp> ops,
                      SmallVectorImpl<std::pair<std::string, Value>> &updates) {
    Value step;
    for (DropoutOp op : ops) {
      double rate = op.getRate().convertToDouble();
      if (!training || rate == 0.0) {
        op.getResult().replaceAllUsesWith(op.getInput());
        op.erase();
        continue;
      }
      if (!step)
        step = dropoutStep(fn, updates);
      // y = x * step(u - rate) / (1 - rate): kept where u > rate.
      OpBuilder b(op);
      Location l = op.getLoc();
      auto type = cast<RankedTensorType>(op.getType());
      Value u = b.create<RandomUniformOp>(l, step, b.getDenseI64ArrayAttr(type.getShape()),
                                          b.getI64IntegerAttr(op.getSeed()));
      Value keep = b.create<StepOp>(l, b.create<SubOp>(l, u, scalarOf(b, l, rate)));
      Value mask = b.create<MulOp>(l, keep, scalarOf(b, l, 1.0 / (1.0 - rate)));
      op.getResult().replaceAllUsesWith(b.create<MulOp>(l, op.getInput(), mask).getResult());
      op.erase();
    }
  }

  LogicalResult expand(BatchNormOp op, SmallVectorImpl<std::pair<std::string, Value>> &updates) {
    OpBuilder b(op);
    Location l = op.getLoc();
    auto xt = cast<RankedTensorType>(op.getInput().getType());
    int64_t c = xt.getDimSize(1), rank = xt.getRank();
    SmallVector<int64_t> bshape(rank, 1), axes;
    bshape[1] = c;
    int64_t count = 1;
    for (int64_t d = 0; d < rank; ++d)
      if (d != 1) {
        axes.push_back(d);
        count *= xt.getDimSize(d);
      }
    auto asChannels = [&](Value v) { return b.create<ReshapeOp>(l, v, b.getDenseI64ArrayAttr(bshape)); };
    double eps = op.getEps().convertToDouble();
    Value x = op.getInput();
    Value y;
    if (!training) {
      Value gamma = asChannels(op.getScale()), beta = asChannels(op.getShift());
      Value inv = b.create<DivOp>(
          l, gamma, b.create<SqrtOp>(l, b.create<AddOp>(l, asChannels(op.getRunningVar()), scalarOf(b, l, eps))));
      y = b.create<AddOp>(l, b.create<MulOp>(l, b.create<SubOp>(l, x, asChannels(op.getRunningMean())), inv),
                          beta);
    } else {
      Value mean, var;
      if (rank >= 3) {
        // One op (and one for its gradient), computed a channel at a time
        // while the channel is in cache (RowKernels.cpp): the ops below
        // took 2.9x (forward) and 3.9x (gradient) the memory-bandwidth
        // bound on [32, 64, 32, 32] (bench "ops"), the op 1.3x and 1.5x.
        auto bn = b.create<BatchNormTrainOp>(l, x, op.getScale(), op.getShift(), op.getEpsAttr());
        y = bn.getOutput();
        mean = bn.getMean();
        var = bn.getVar();
      } else {
        // [N, C]: the channels are columns; the reductions below run
        // along them in vectors.
        auto axesAttr = b.getDenseI64ArrayAttr(axes);
        mean = b.create<ReduceMeanOp>(l, x, axesAttr, b.getBoolAttr(true));
        Value xc = b.create<SubOp>(l, x, mean);
        var = b.create<ReduceMeanOp>(l, b.create<MulOp>(l, xc, xc), axesAttr, b.getBoolAttr(true));
        // y = xc * (gamma / sqrt(var + eps)) + beta: the per-channel factor
        // first, so that the gradient reads only xc (and per-channel
        // values), not a normalised copy of it as well: (xc / s) * gamma
        // would keep both alive for the backward pass.
        Value factor = b.create<DivOp>(l, asChannels(op.getScale()),
                                       b.create<SqrtOp>(l, b.create<AddOp>(l, var, scalarOf(b, l, eps))));
        y = b.create<AddOp>(l, b.create<MulOp>(l, xc, factor), asChannels(op.getShift()));
      }
      // Running statistics: momentum average of the batch mean and of the
      // unbiased batch variance (n / (n - 1)), outside the gradient.
      double m = op.getMomentum().convertToDouble();
      double unbias = count > 1 ? static_cast<double>(count) / static_cast<double>(count - 1) : 1.0;
      auto flat = [&](Value v) {
        return b.create<ReshapeOp>(l, b.create<StopGradientOp>(l, v), b.getDenseI64ArrayAttr({c}));
      };
      for (auto [stat, batch, scale] : {std::tuple<Value, Value, double>{op.getRunningMean(), mean, 1.0},
                                        {op.getRunningVar(), var, unbias}}) {
        auto arg = dyn_cast<BlockArgument>(stat);
        auto fn = op->getParentOfType<func::FuncOp>();
        StringAttr name = arg ? fn.getArgAttrOfType<StringAttr>(arg.getArgNumber(), kParamAttr) : StringAttr();
        if (!name)
          return op.emitOpError("running statistics must be parameters of the graph (made by nn::batch_norm)");
        for (auto &[other, v] : updates)
          if (other == name.str())
            return op.emitOpError("running statistic '") << other
                   << "' is updated twice (shared by two batch_norm ops, or used as mean and variance)";
        Value fresh = b.create<AddOp>(l, b.create<MulOp>(l, stat, scalarOf(b, l, 1.0 - m)),
                                      b.create<MulOp>(l, flat(batch), scalarOf(b, l, m * scale)));
        updates.push_back({name.str(), fresh});
      }
    }
    op.getResult().replaceAllUsesWith(y);
    op.erase();
    return success();
  }
};

} // namespace
} // namespace soma
