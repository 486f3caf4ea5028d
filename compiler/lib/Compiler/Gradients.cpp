//===- Gradients.cpp - Compiled and interpreted gradients, gradient checks --===//

#include "soma/Compiler/Context.h"
#include "soma/Compiler/GraphImpl.h"
#include "soma/Compiler/Interpreter.h"
#include "soma/Compiler/Pipeline.h"
#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"
#include "soma/compile.h"

#include "mlir/Pass/PassManager.h"

#include <cmath>
#include <cstdio>
#include <random>

using namespace mlir;

namespace soma {

static std::string outputName(func::FuncOp fn, unsigned j) {
  return fn.getResultAttrOfType<StringAttr>(j, ir::kOutputAttr).str();
}

/// A clone of the graph with mode-dependent ops in their training form
/// (batch statistics) and without the running-statistic updates: the
/// function whose gradients training uses. `lossIndex` receives the result
/// to differentiate: grad.loss (or the first output), or with
/// grad.output_gradient the scalar sum(loss * grad_<loss>) that this
/// function adds, with grad_<loss> a new input.
static OwningOpRef<ModuleOp> trainingForward(const Graph &g, const GradientOptions &grad,
                                             unsigned &lossIndex) {
  OwningOpRef<ModuleOp> m(cast<ModuleOp>(g.impl()->module->getOperation()->clone()));
  runPasses(*m, DumpConfig{}, nullptr, [](PassManager &pm) {
    SomaExpandModesOptions mode;
    mode.training = true;
    pm.addPass(createSomaExpandModes(mode));
  });
  func::FuncOp fn = graphFunction(*m);
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  SmallVector<Value> keep;
  SmallVector<DictionaryAttr> attrs;
  for (unsigned j = 0; j < fn.getNumResults(); ++j)
    if (!fn.getResultAttr(j, ir::kUpdateAttr)) {
      keep.push_back(ret.getOperand(j));
      attrs.push_back(fn.getResultAttrDict(j));
    }
  ir::setGraphResults(fn, keep, attrs);
  // States the training form introduced (dropout's step count) are fixed at
  // their initial value: the function is a deterministic function of its
  // inputs and parameters, as finite differences need.
  OpBuilder b(m->getContext());
  b.setInsertionPointToStart(&fn.getBody().front());
  llvm::BitVector erase(fn.getNumArguments());
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    if (!fn.getArgAttr(i, ir::kStateAttr))
      continue;
    auto init = fn.getArgAttrOfType<FloatAttr>(i, ir::kStateInitAttr);
    auto type = cast<RankedTensorType>(fn.getArgument(i).getType());
    Value c = b.create<ir::ConstantOp>(
        fn.getLoc(), DenseElementsAttr::get(type, static_cast<float>(init ? init.getValueAsDouble() : 0.0)));
    fn.getArgument(i).replaceAllUsesWith(c);
    erase.set(i);
  }
  if (erase.any())
    (void)fn.eraseArguments(erase);

  if (fn.getNumResults() == 0)
    throw Error("graph '" + g.name() + "' has no outputs to differentiate");
  lossIndex = 0;
  if (!grad.loss.empty()) {
    bool found = false;
    for (unsigned j = 0; j < fn.getNumResults(); ++j)
      if (auto s = fn.getResultAttrOfType<StringAttr>(j, ir::kOutputAttr); s && s.getValue() == grad.loss) {
        lossIndex = j;
        found = true;
      }
    if (!found)
      throw Error("graph '" + g.name() + "' has no output named '" + grad.loss + "'");
  }
  std::string name = outputName(fn, lossIndex);
  auto type = cast<RankedTensorType>(fn.getResultTypes()[lossIndex]);
  if (!grad.output_gradient && (type.getRank() != 0 || !type.getElementType().isF32())) {
    std::string shown;
    llvm::raw_string_ostream os(shown);
    type.print(os);
    throw Error("the loss must be a scalar f32 (rank 0), got " + shown + " (output '" + name + "' of graph '" +
                g.name() + "'): reduce it with sum or mean first, or give its gradient as an input "
                "(GradientOptions::output_gradient; soma run --output-gradient)");
  }
  if (grad.output_gradient) {
    if (!type.getElementType().isF32())
      throw Error("output '" + name + "' of graph '" + g.name() + "' is not f32: it has no gradient to give");
    std::string input = "grad_" + name;
    for (unsigned i = 0; i < fn.getNumArguments(); ++i)
      for (const char *attr : {ir::kInputAttr, ir::kParamAttr})
        if (auto s = fn.getArgAttrOfType<StringAttr>(i, attr); s && s.getValue() == input)
          throw Error("graph '" + g.name() + "' already has an input or parameter named '" + input +
                      "', the name of the gradient of output '" + name + "'");
    for (unsigned j = 0; j < fn.getNumResults(); ++j)
      if (outputName(fn, j) == "dot_" + input)
        throw Error("graph '" + g.name() + "' already has an output named 'dot_" + input +
                    "', the name of sum(" + name + " * " + input + ")");
    auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
    Location loc = ret.getOperand(lossIndex).getLoc();
    unsigned idx = fn.getNumArguments();
    fn.insertArgument(idx, type, b.getDictionaryAttr({b.getNamedAttr(ir::kInputAttr, b.getStringAttr(input))}),
                      loc);
    b.setInsertionPoint(ret);
    SmallVector<int64_t> axes;
    for (int64_t d = 0; d < type.getRank(); ++d)
      axes.push_back(d);
    Value product = b.create<ir::MulOp>(loc, ret.getOperand(lossIndex), fn.getArgument(idx));
    Value dot = b.create<ir::ReduceSumOp>(loc, product, b.getDenseI64ArrayAttr(axes), b.getBoolAttr(false));
    SmallVector<Value> values(ret.getOperands());
    SmallVector<DictionaryAttr> attrs;
    for (unsigned j = 0; j < fn.getNumResults(); ++j)
      attrs.push_back(fn.getResultAttrDict(j));
    values.push_back(dot);
    attrs.push_back(b.getDictionaryAttr({b.getNamedAttr(ir::kOutputAttr, b.getStringAttr("dot_" + input))}));
    ir::setGraphResults(fn, values, attrs);
    lossIndex = fn.getNumResults() - 1;
  }
  return m;
}

OwningOpRef<ModuleOp> buildGradientModule(const Graph &g, const GradientOptions &grad) {
  unsigned lossIndex = 0;
  OwningOpRef<ModuleOp> m = trainingForward(g, grad, lossIndex);
  func::FuncOp fn = graphFunction(*m);
  Builder b(m->getContext());
  fn.setResultAttr(lossIndex, "soma.loss", b.getUnitAttr());
  // (The output's gradient, the last input with grad.output_gradient, is
  // not differentiated.)
  if (grad.inputs)
    for (unsigned i = 0; i + (grad.output_gradient ? 1 : 0) < fn.getNumArguments(); ++i)
      if (fn.getArgAttr(i, ir::kInputAttr) &&
          cast<RankedTensorType>(fn.getArgument(i).getType()).getElementType().isF32())
        fn.setArgAttr(i, "soma.requires_grad", b.getUnitAttr());
  runPasses(*m, DumpConfig{}, nullptr, [](PassManager &pm) { pm.addPass(createSomaAutodiff()); });
  // Name the gradients as outputs; without grad.outputs they are the only
  // results, and the forward work only the outputs needed is dead code.
  SmallVector<Value> grads;
  SmallVector<DictionaryAttr> attrs;
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  for (unsigned j = 0; j < fn.getNumResults(); ++j)
    if (auto name = fn.getResultAttrOfType<StringAttr>(j, "soma.grad")) {
      fn.setResultAttr(j, ir::kOutputAttr, b.getStringAttr("grad_" + name.str()));
      grads.push_back(ret.getOperand(j));
      attrs.push_back(fn.getResultAttrDict(j));
    }
  if (!grad.outputs) {
    if (grads.empty())
      throw Error("graph '" + g.name() + "' has nothing to differentiate (no parameters" +
                  (grad.inputs ? std::string(" or f32 inputs") : std::string()) +
                  ") and its outputs are not asked for");
    ir::setGraphResults(fn, grads, attrs);
  }
  return m;
}

Inference compile_gradients(const Graph &g, const GradientOptions &grad,
                            const CompileOptions &options) {
  OwningOpRef<ModuleOp> m = buildGradientModule(g, grad);
  return Inference(jitCompile(*m, options), g.init_params());
}

static std::map<std::string, RefTensor> refArgs(const Graph &g,
                                                const std::map<std::string, Array> &inputs,
                                                const NamedArrays *params) {
  std::map<std::string, RefTensor> byName;
  for (const auto &[name, a] : inputs)
    byName[name] = toRef(a);
  NamedArrays ps = params ? *params : g.init_params();
  for (const auto &[name, a] : ps)
    byName[name] = toRef(a);
  return byName;
}

std::map<std::string, Array> interpret_gradients(const Graph &g,
                                                 const std::map<std::string, Array> &inputs,
                                                 const NamedArrays *params,
                                                 const GradientOptions &grad) {
  OwningOpRef<ModuleOp> m = buildGradientModule(g, grad);
  std::map<std::string, Array> out;
  for (auto &[name, t] : interpretByName(graphFunction(*m), refArgs(g, inputs, params)))
    out[name] = fromRef(t);
  return out;
}

std::string GradientCheckReport::str() const {
  std::string s;
  char line[256];
  std::snprintf(line, sizeof line, "%-32s %8s %12s %12s %12s  %s\n", "gradient", "checked",
                "max abs err", "max rel err", "vjp err", "");
  s += line;
  for (const GradientCheckEntry &e : entries) {
    std::snprintf(line, sizeof line, "%-32s %8lld %12.3e %12.3e %12.3e  %s\n", e.name.c_str(),
                  static_cast<long long>(e.checked), e.max_abs_error, e.max_rel_error,
                  e.max_vjp_error, e.passed ? "ok" : "FAILED");
    s += line;
  }
  return s;
}

GradientCheckReport check_gradients(const Graph &g, const GradientCheckOptions &options) {
  OwningOpRef<ModuleOp> gradModule = buildGradientModule(g, options.grad);
  func::FuncOp gradFn = graphFunction(*gradModule);
  // The forward graph alone (training form), for the finite differences.
  unsigned lossIndex = 0;
  OwningOpRef<ModuleOp> forward = trainingForward(g, options.grad, lossIndex);
  func::FuncOp fwd = graphFunction(*forward);
  std::string lossName = outputName(fwd, lossIndex);

  // Inputs: the given ones, the rest random (the graph's, and the output
  // gradient that grad.output_gradient adds).
  std::vector<TensorSpec> specs = g.inputs();
  if (options.grad.output_gradient) {
    auto type = cast<RankedTensorType>(fwd.getArgument(fwd.getNumArguments() - 1).getType());
    specs.push_back({fwd.getArgAttrOfType<StringAttr>(fwd.getNumArguments() - 1, ir::kInputAttr).str(), DType::f32,
                     Shape(type.getShape().begin(), type.getShape().end())});
  }
  std::map<std::string, Array> inputs = options.inputs;
  std::mt19937_64 gen(options.seed);
  for (const TensorSpec &spec : specs) {
    if (inputs.count(spec.name))
      continue;
    Array a(spec.dtype, spec.shape);
    for (int64_t i = 0; i < a.numel(); ++i) {
      if (spec.dtype == DType::f32)
        a.data<float>()[i] = std::uniform_real_distribution<float>(-1, 1)(gen);
      else if (spec.dtype == DType::i32)
        a.data<int32_t>()[i] = static_cast<int32_t>(gen() % 2);
      else
        a.data<int64_t>()[i] = static_cast<int64_t>(gen() % 2);
    }
    inputs[spec.name] = a;
  }
  NamedArrays params = g.init_params();

  Inference compiled(jitCompile(*gradModule, {}), params);
  std::map<std::string, Array> got = compiled.run(inputs);
  std::map<std::string, RefTensor> args = refArgs(g, inputs, &params);
  std::map<std::string, RefTensor> ref = interpretByName(gradFn, args);

  auto lossAt = [&](const std::map<std::string, RefTensor> &a) {
    return interpretByName(fwd, a).at(lossName).data.at(0);
  };

  GradientCheckReport report;
  for (unsigned j = 0; j < gradFn.getNumResults(); ++j) {
    auto gradOf = gradFn.getResultAttrOfType<StringAttr>(j, "soma.grad");
    if (!gradOf)
      continue;
    std::string target = gradOf.str();
    std::string out = "grad_" + target;
    GradientCheckEntry e;
    e.name = out;
    RefTensor &x = args.at(target);
    int64_t n = static_cast<int64_t>(x.data.size());
    int64_t samples = options.samples_per_tensor <= 0 ? n : std::min(n, options.samples_per_tensor);
    const float *compiledGrad = got.at(out).data<float>();
    const std::vector<double> &vjp = ref.at(out).data;
    for (int64_t s = 0; s < samples; ++s) {
      int64_t i = samples == n ? s : (s * n) / samples + (n / samples) / 2;
      double saved = x.data[i];
      double h = options.step * std::max(1.0, std::fabs(saved));
      x.data[i] = saved + h;
      double up = lossAt(args);
      x.data[i] = saved - h;
      double down = lossAt(args);
      x.data[i] = saved;
      double numeric = (up - down) / (2 * h);
      double abs = std::fabs(compiledGrad[i] - numeric);
      e.max_abs_error = std::max(e.max_abs_error, abs);
      e.max_rel_error = std::max(e.max_rel_error, abs / std::max(std::fabs(numeric), 1e-12));
      e.max_vjp_error = std::max(e.max_vjp_error, std::fabs(vjp[i] - numeric));
      if (!(abs <= options.atol + options.rtol * std::fabs(numeric)))
        e.passed = false;
      if (!(std::fabs(vjp[i] - numeric) <= options.atol + options.rtol * std::fabs(numeric)))
        e.passed = false;
      ++e.checked;
    }
    report.passed = report.passed && e.passed;
    report.entries.push_back(e);
  }
  return report;
}

} // namespace soma
