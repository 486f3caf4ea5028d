//===- Training.cpp - The compiled training step and its eval function ----===//
//
// compile_training turns a graph and its loss into two functions:
//
//   train(data..., soma.lr, params..., states...) -> loss, soma.correct
//       forward, backward (soma-autodiff) and the optimizer update, which
//       writes the new parameters and optimizer states back in place;
//   eval(data..., params...) -> loss, soma.correct (per example)
//       the forward pass alone, sharing the parameter buffers.
//
// The update is ordinary soma ops following the formulas of soma/optim.h
// term by term, so it is dumped, fused and lowered like the rest.
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/Context.h"
#include "soma/Compiler/GraphImpl.h"
#include "soma/Compiler/ObjectCache.h"
#include "soma/Compiler/Pipeline.h"
#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"
#include "soma/Compiler/Training.h"
#include "soma/training.h"

#include "mlir/IR/IRMapping.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include <array>
#include <future>
#include <variant>

using namespace mlir;
using namespace soma::ir;

namespace soma {
namespace {

/// Emits soma ops for the update rules.
struct UpdateEmitter {
  OpBuilder &b;
  Location loc;
  func::FuncOp fn;

  Value c(double v) {
    auto type = RankedTensorType::get({}, b.getF32Type());
    return b.create<ConstantOp>(loc, DenseElementsAttr::get(type, static_cast<float>(v)));
  }
  Value add(Value x, Value y) { return b.create<AddOp>(loc, x, y); }
  Value sub(Value x, Value y) { return b.create<SubOp>(loc, x, y); }
  Value mul(Value x, Value y) { return b.create<MulOp>(loc, x, y); }
  Value div(Value x, Value y) { return b.create<DivOp>(loc, x, y); }
  Value sqrt(Value x) { return b.create<SqrtOp>(loc, x); }
  Value sq(Value x) { return mul(x, x); }
  /// beta * a + (1 - beta) * x
  Value ema(double beta, Value a, Value x) { return add(mul(c(beta), a), mul(c(1.0 - beta), x)); }

  Value addArg(Type type, NamedAttribute a, std::optional<NamedAttribute> extra = std::nullopt) {
    SmallVector<NamedAttribute> attrs{a};
    if (extra)
      attrs.push_back(*extra);
    unsigned idx = fn.getNumArguments();
    fn.insertArgument(idx, type, b.getDictionaryAttr(attrs), loc);
    return fn.getArgument(idx);
  }
  Value addState(const std::string &name, Type type, double init) {
    return addArg(type, b.getNamedAttr(kStateAttr, b.getStringAttr(name)),
                  b.getNamedAttr(kStateInitAttr, b.getF64FloatAttr(init)));
  }
};

struct Update {
  std::string name; // parameter or state
  Value value;
};

/// Appends the optimizer update to a differentiated training function and
/// returns the values to write back.
std::vector<Update> emitOptimizer(func::FuncOp fn, const optim::Optimizer &opt,
                                  const std::vector<std::pair<std::string, Value>> &grads) {
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  OpBuilder b(ret);
  UpdateEmitter e{b, fn.getLoc(), fn};
  auto scalarType = RankedTensorType::get({}, b.getF32Type());
  Value lr = e.addArg(scalarType, b.getNamedAttr(kInputAttr, b.getStringAttr("soma.lr")));
  Value t = e.addState("soma.step", scalarType, 0.0);
  b.setInsertionPoint(ret);
  Value t1 = e.add(t, e.c(1.0));
  std::vector<Update> updates;
  updates.push_back({"soma.step", t1});

  const optim::Common &common = optim::common(opt);
  // Parameters by name.
  DenseMap<StringRef, Value> params;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i)
    if (auto p = fn.getArgAttrOfType<StringAttr>(i, kParamAttr))
      params[p.getValue()] = fn.getArgument(i);

  // Preprocessing: penalties, value clipping, then global-norm clipping.
  std::vector<std::pair<std::string, Value>> gs;
  for (auto &[name, g0] : grads) {
    Value w = params.lookup(name), g = g0;
    assert(w && "the step differentiates parameters only");
    if (common.l2 != 0)
      g = e.add(g, e.mul(e.c(common.l2), w));
    if (common.l1 != 0)
      g = e.add(g, e.mul(e.c(common.l1), b.create<SignOp>(e.loc, w)));
    if (common.clip_value > 0)
      g = b.create<MaximumOp>(e.loc, b.create<MinimumOp>(e.loc, g, e.c(common.clip_value)),
                              e.c(-common.clip_value));
    gs.push_back({name, g});
  }
  if (common.clip_norm > 0 && !gs.empty()) {
    Value total;
    for (auto &[name, g] : gs) {
      auto rank = cast<RankedTensorType>(g.getType()).getRank();
      SmallVector<int64_t> all;
      for (int64_t d = 0; d < rank; ++d)
        all.push_back(d);
      Value s = e.sq(g);
      if (rank > 0)
        s = b.create<ReduceSumOp>(e.loc, s, b.getDenseI64ArrayAttr(all), b.getBoolAttr(false));
      total = total ? e.add(total, s) : s;
    }
    // min(1, c / ||G||); a zero norm gives c / 0 = inf and the factor 1.
    Value scale = b.create<MinimumOp>(e.loc, e.c(1.0), e.div(e.c(common.clip_norm), e.sqrt(total)));
    for (auto &[name, g] : gs)
      g = e.mul(g, scale);
  }

  for (auto &[name, g] : gs) {
    Value w = params.lookup(name);
    Type type = w.getType();
    auto state = [&](const char *slot, double init = 0.0) {
      return e.addState(std::string(slot) + "/" + name, type, init);
    };
    auto stateName = [&](const char *slot) { return std::string(slot) + "/" + name; };
    b.setInsertionPoint(ret);
    Value wNew;
    std::visit(
        [&](const auto &o) {
          using T = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<T, optim::SGD>) {
            wNew = e.sub(w, e.mul(lr, g));
          } else if constexpr (std::is_same_v<T, optim::Momentum> ||
                               std::is_same_v<T, optim::Nesterov>) {
            Value v = state("v");
            b.setInsertionPoint(ret);
            Value v1 = e.add(e.mul(e.c(o.momentum), v), g);
            updates.push_back({stateName("v"), v1});
            Value step = std::is_same_v<T, optim::Momentum> ? v1 : e.add(g, e.mul(e.c(o.momentum), v1));
            wNew = e.sub(w, e.mul(lr, step));
          } else if constexpr (std::is_same_v<T, optim::AdaGrad>) {
            Value v = state("v", o.initial_accumulator);
            b.setInsertionPoint(ret);
            Value v1 = e.add(v, e.sq(g));
            updates.push_back({stateName("v"), v1});
            wNew = e.sub(w, e.div(e.mul(lr, g), e.sqrt(e.add(v1, e.c(o.eps)))));
          } else if constexpr (std::is_same_v<T, optim::RMSProp>) {
            Value v = state("v");
            b.setInsertionPoint(ret);
            Value v1 = e.ema(o.beta, v, e.sq(g));
            updates.push_back({stateName("v"), v1});
            wNew = e.sub(w, e.div(e.mul(lr, g), e.sqrt(e.add(v1, e.c(o.eps)))));
          } else if constexpr (std::is_same_v<T, optim::AdaDelta>) {
            Value v = state("v"), u = state("u");
            b.setInsertionPoint(ret);
            Value v1 = e.ema(o.beta, v, e.sq(g));
            Value d = b.create<NegOp>(e.loc, e.mul(e.div(e.sqrt(e.add(u, e.c(o.eps))),
                                                         e.sqrt(e.add(v1, e.c(o.eps)))),
                                                   g));
            Value u1 = e.ema(o.beta, u, e.sq(d));
            updates.push_back({stateName("v"), v1});
            updates.push_back({stateName("u"), u1});
            wNew = e.add(w, e.mul(lr, d));
          } else if constexpr (std::is_same_v<T, optim::Adam> || std::is_same_v<T, optim::AdamW> ||
                               std::is_same_v<T, optim::NAdam>) {
            Value m = state("m"), v = state("v");
            b.setInsertionPoint(ret);
            Value m1 = e.ema(o.beta1, m, g);
            Value v1 = e.ema(o.beta2, v, e.sq(g));
            updates.push_back({stateName("m"), m1});
            updates.push_back({stateName("v"), v1});
            Value c1 = e.sub(e.c(1.0), b.create<PowOp>(e.loc, e.c(o.beta1), t1));
            Value c2 = e.sub(e.c(1.0), b.create<PowOp>(e.loc, e.c(o.beta2), t1));
            Value denom;
            if constexpr (std::is_same_v<T, optim::NAdam>) {
              Value mh = e.div(m1, c1), vh = e.div(v1, c2);
              denom = e.add(e.sqrt(vh), e.c(o.eps));
              Value num = e.add(e.mul(e.c(o.beta1), mh), e.div(e.mul(e.c(1.0 - o.beta1), g), c1));
              wNew = e.sub(w, e.div(e.mul(lr, num), denom));
            } else {
              // The bias corrections as scalar factors, lr / c1 and 1 / c2
              // (computed once, not per element): one division per element
              // instead of three, the same formula reassociated (as
              // PyTorch's step_size = lr / bias_correction1). LeNet-5's
              // update of its 400 x 120 weights: 32 -> 12.5 us on one thread
              // (perf's share of the step).
              Value v1c = e.mul(v1, e.div(e.c(1.0), c2));
              denom = o.eps_inside_sqrt ? e.sqrt(e.add(v1c, e.c(o.eps))) : e.add(e.sqrt(v1c), e.c(o.eps));
              Value base = w;
              if constexpr (std::is_same_v<T, optim::AdamW>)
                base = e.sub(w, e.mul(e.mul(lr, e.c(o.weight_decay)), w));
              wNew = e.sub(base, e.div(e.mul(m1, e.div(lr, c1)), denom));
            }
          } else if constexpr (std::is_same_v<T, optim::AdaMax>) {
            Value m = state("m"), u = state("u");
            b.setInsertionPoint(ret);
            Value m1 = e.ema(o.beta1, m, g);
            Value u1 = b.create<MaximumOp>(e.loc, e.mul(e.c(o.beta2), u), b.create<AbsOp>(e.loc, g));
            updates.push_back({stateName("m"), m1});
            updates.push_back({stateName("u"), u1});
            Value c1 = e.sub(e.c(1.0), b.create<PowOp>(e.loc, e.c(o.beta1), t1));
            wNew = e.sub(w, e.div(e.mul(e.div(lr, c1), m1), e.add(u1, e.c(o.eps))));
          }
        },
        opt);
    updates.push_back({name, wNew});
  }
  return updates;
}

void runPass(ModuleOp m, std::unique_ptr<Pass> pass) {
  runPasses(m, DumpConfig{}, nullptr, [&](PassManager &pm) { pm.addPass(std::move(pass)); });
}

} // namespace

TrainingModules buildTrainingModules(const Graph &g, const Tensor &loss,
                                     const optim::Optimizer &opt,
                                     const Checkpointing &checkpointing, bool useCache, bool useWorker) {
  if (!loss.valid() || loss.impl() != g.impl())
    throw Error("compile_training: the loss is not a tensor of graph '" + g.name() + "'");
  if (loss.rank() != 0 || loss.dtype() != DType::f32)
    throw Error("compile_training: the loss must be a scalar f32 (rank 0), got " +
                loss.type_str() + "; reduce it with sum or mean first");
  TrainingModules out;
  for (bool train : {true, false}) {
    IRMapping map;
    OwningOpRef<ModuleOp> m(cast<ModuleOp>(g.impl()->module->getOperation()->clone(map)));
    func::FuncOp fn = graphFunction(*m);
    Value lossV = map.lookup(g.impl()->value(loss));
    auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
    OpBuilder b(ret);
    SmallVector<Value> results{lossV};
    SmallVector<DictionaryAttr> attrs{b.getDictionaryAttr(
        {b.getNamedAttr(kOutputAttr, b.getStringAttr("loss")), b.getNamedAttr(kLossAttr, b.getUnitAttr())})};
    // Classification: also count the correct predictions.
    if (auto ce = lossV.getDefiningOp<SoftmaxCrossEntropyOp>()) {
      out.classification = true;
      Location l = ce.getLoc();
      Value pred = b.create<ArgmaxOp>(l, ce.getLogits(), b.getI64IntegerAttr(1));
      Value labels = ce.getLabels();
      Value hits = b.create<EqualOp>(l, pred, labels);
      Value correct = train ? Value(b.create<ReduceSumOp>(l, hits, b.getDenseI64ArrayAttr({0}),
                                                          b.getBoolAttr(false)))
                            : hits;
      results.push_back(correct);
      attrs.push_back(b.getDictionaryAttr({b.getNamedAttr(kOutputAttr, b.getStringAttr("soma.correct"))}));
    }
    setGraphResults(fn, results, attrs);
    {
      SomaExpandModesOptions mode;
      mode.training = train;
      runPass(*m, createSomaExpandModes(mode));
    }
    if (!train) {
      out.eval = std::move(m);
      continue;
    }
    // A training step updates parameters only: an input's gradient
    // (soma.requires_grad, for soma run --grad and compile_gradients) would
    // be computed and dropped.
    {
      func::FuncOp f = graphFunction(*m);
      for (unsigned j = 0; j < f.getNumArguments(); ++j)
        f.removeArgAttr(j, "soma.requires_grad");
    }
    runPass(*m, createSomaAutodiff());
    // The optimizer update goes after the gradients (and after the
    // recomputation, which only moves forward values into the backward
    // pass).
    auto appendUpdate = [&](ModuleOp mod) {
      func::FuncOp f = graphFunction(mod);
      std::vector<std::pair<std::string, Value>> grads;
      SmallVector<Value> keep;
      SmallVector<DictionaryAttr> keepAttrs;
      auto r = cast<func::ReturnOp>(f.getBody().front().getTerminator());
      for (unsigned j = 0; j < f.getNumResults(); ++j) {
        if (auto gname = f.getResultAttrOfType<StringAttr>(j, "soma.grad")) {
          grads.push_back({gname.str(), r.getOperand(j)});
        } else {
          keep.push_back(r.getOperand(j));
          keepAttrs.push_back(f.getResultAttrDict(j));
        }
      }
      std::vector<Update> updates = emitOptimizer(f, opt, grads);
      for (const Update &u : updates) {
        keep.push_back(u.value);
        keepAttrs.push_back(b.getDictionaryAttr({b.getNamedAttr(kUpdateAttr, b.getStringAttr(u.name))}));
      }
      setGraphResults(f, keep, keepAttrs);
    };
    if (checkpointing.enabled) {
      // Which values to recompute is decided by what the memory plan makes
      // of it: the step is planned without recomputation, with chains and
      // with whole cones (soma-recompute's two policies), and the smallest
      // arena wins (ties: less recomputation). The report shows all three.
      // A plan's arena is remembered in the compiled-object cache (an
      // entry without code, keyed like the step's code), so that a second
      // compilation of the same step plans nothing before its cache hit.
      static const char *const kPlanEntry = "soma.plan";
      ObjectCache cache = useCache ? ObjectCache::fromEnvironment() : ObjectCache();
      auto arenaOf = [&](ModuleOp mod) {
        std::string key;
        if (cache.enabled()) {
          // Optimisation level -1, which no compilation uses: the key of a
          // plan entry differs from that of the step's code.
          key = objectCacheKey(mod, Mode::eval, -1, hostTarget());
          if (std::optional<CachedObject> e = cache.load(key); e && e->signature.name == kPlanEntry)
            return e->signature.workspace_bytes;
        }
        // (In a worker, like compiling: planning lowers the whole step.)
        std::optional<int64_t> planned = useWorker ? planInWorker(mod, Mode::eval) : std::nullopt;
        int64_t bytes = planned ? *planned : plannedWorkspaceBytes(mod);
        if (cache.enabled()) {
          CachedObject e;
          e.signature.name = kPlanEntry;
          e.signature.workspace_bytes = bytes;
          e.objects = {kPlanEntry}; // an entry holds some bytes; no code here
          cache.store(key, e);
        }
        return bytes;
      };
      std::array<int64_t, 3> arenas{};
      std::array<OwningOpRef<ModuleOp>, 3> variants;
      using Policy = Checkpointing::Policy;
      bool all = checkpointing.policy == Policy::best;
      for (int v = 0; v < 3; ++v) {
        if (!all && v != (checkpointing.policy == Policy::chains ? 1 : 2))
          continue;
        variants[v] = OwningOpRef<ModuleOp>(cast<ModuleOp>((*m)->clone()));
        if (v > 0)
          runPasses(*variants[v], DumpConfig{}, nullptr, [&](PassManager &pm) {
            SomaRecomputeOptions ro;
            ro.budget = checkpointing.budget_bytes;
            ro.cones = v == 2;
            pm.addNestedPass<func::FuncOp>(createSomaRecompute(ro));
          });
        appendUpdate(*variants[v]);
        if (all)
          arenas[v] = arenaOf(*variants[v]);
      }
      int best = all ? 0 : checkpointing.policy == Policy::chains ? 1 : 2;
      for (int v = 1; all && v < 3; ++v)
        if (arenas[v] < arenas[best])
          best = v;
      m = std::move(variants[best]);
      fn = graphFunction(*m);
      static const char *names[] = {"none", "chains", "cones"};
      fn->setAttr("soma.recompute_choice",
                  b.getDictionaryAttr({b.getNamedAttr("policy", b.getStringAttr(names[best])),
                                       b.getNamedAttr("arenas", b.getDenseI64ArrayAttr(arenas))}));
      if (best == 0)
        fn->setAttr("soma.recompute", b.getDenseI64ArrayAttr({0, 0, 0}));
    } else {
      appendUpdate(*m);
    }
    out.train = std::move(m);
  }
  return out;
}

TrainStep compile_training(const Graph &g, const Tensor &loss, const optim::Optimizer &opt,
                           const TrainOptions &options) {
  TrainingModules modules = buildTrainingModules(g, loss, opt, options.checkpointing, options.compile.cache,
                                                 options.compile.worker);
  if (!options.compile.flush_denormals)
    for (ModuleOp m : {*modules.train, *modules.eval})
      markKeepingDenormals(m);
  // The dumps show the graph as built, the training function after
  // autodiff and the optimizer, and then the lowering of the training step.
  DumpConfig dump = makeDumpConfig(options.compile);
  dump.write("built", [&] { return printModule(*g.impl()->module, true); });
  dump.write("train", [&] { return printModule(*modules.train, true); });
  DumpConfig trainDump = dump;
  trainDump.stages.erase("built");
  // The evaluation function compiles on a second thread, in a context of
  // its own (soma's contexts are single-threaded), while this one compiles
  // the step: on two cores that hides most of its time (LeNet-5's training
  // step: 0.74 s instead of 0.88 s). Its report goes after the step's, as
  // when compiled in turn. --print-ir-after-all prints from one thread only.
  CompileReport evalReport;
  DumpConfig none;
  none.report = dump.report ? &evalReport : nullptr;
  none.cache = dump.cache;
  none.worker = dump.worker;
  std::future<Executable> pending;
  if (!dump.printIrAfterAll) {
    std::string text = printModule(*modules.eval, /*debugInfo=*/true);
    pending = std::async(std::launch::async, [text = std::move(text), none, opt = options.compile.opt_level] {
      std::unique_ptr<MLIRContext> ctx = createContext();
      DiagnosticCollector diags(ctx.get());
      OwningOpRef<ModuleOp> m = parseSourceString<ModuleOp>(text, ParserConfig(ctx.get()));
      if (!m)
        throw Error("compile_training: cannot re-read the evaluation function: " + diags.message());
      return jitCompile(*m, none, opt);
    });
  }
  // (If the step fails, the future's destructor waits for the evaluation
  // function before the error propagates.)
  Executable train = jitCompile(*modules.train, trainDump, options.compile.opt_level);
  Executable eval = pending.valid() ? pending.get() : jitCompile(*modules.eval, none, options.compile.opt_level);
  if (dump.report) {
    for (CompileReport::Function &f : evalReport.functions)
      dump.report->functions.push_back(std::move(f));
    for (auto &stage : evalReport.stage_seconds)
      dump.report->stage_seconds.push_back(std::move(stage));
  }
  return TrainStep(std::move(train), std::move(eval), g.init_params(), opt, options.schedule,
                   g.name());
}

} // namespace soma
