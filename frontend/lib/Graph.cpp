//===- Graph.cpp - Building, printing and loading graphs -------------------===//

#include "soma/Compiler/Context.h"
#include "soma/Compiler/GraphImpl.h"
#include "soma/Dialect/SomaDialect.h"
#include "soma/graph.h"
#include "soma/io.h"

#include "mlir/IR/Verifier.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/SourceMgr.h"

#include <filesystem>

using namespace mlir;

namespace soma {

//===----------------------------------------------------------------------===//
// GraphImpl helpers
//===----------------------------------------------------------------------===//

Location GraphImpl::loc(const std::source_location &where) const {
  return FileLineColLoc::get(ctx.get(), where.file_name(), where.line(),
                             where.column());
}

func::ReturnOp GraphImpl::returnOp() const {
  return cast<func::ReturnOp>(
      const_cast<func::FuncOp &>(func).getBody().front().getTerminator());
}

std::string where(const std::source_location &loc) {
  return std::filesystem::path(loc.file_name()).filename().string() + ":" +
         std::to_string(loc.line());
}

static GraphImpl *checkTensor(const Tensor &t, const char *op,
                              const std::source_location &loc) {
  if (!t.valid())
    throw Error(where(loc) + ": " + op + ": operand is an empty Tensor");
  return t.impl();
}

Tensor buildOp(GraphImpl *g, StringRef opName, ArrayRef<Value> operands,
               ArrayRef<NamedAttribute> attrs, const std::source_location &loc) {
  MLIRContext *ctx = g->ctx.get();
  Location l = g->loc(loc);
  OperationState state(l, opName);
  state.addOperands(operands);
  state.addAttributes(attrs);
  std::optional<RegisteredOperationName> info = state.name.getRegisteredInfo();
  if (!info)
    throw Error(where(loc) + ": unknown op " + opName.str());
  auto *infer = info->getInterface<InferTypeOpInterface>();
  SmallVector<Type> types;
  {
    DiagnosticCollector diags(ctx, /*withLocations=*/false);
    if (failed(infer->inferReturnTypes(ctx, l, state.operands,
                                       state.attributes.getDictionary(ctx),
                                       state.getRawProperties(), state.regions,
                                       types)))
      throw Error(where(loc) + ": " + diags.message());
  }
  state.addTypes(types);
  Operation *op = g->builder->create(state);
  {
    DiagnosticCollector diags(ctx, /*withLocations=*/false);
    if (failed(verify(op))) {
      op->erase();
      throw Error(where(loc) + ": " + diags.message());
    }
  }
  return g->tensor(op->getResult(0));
}

func::FuncOp graphFunction(ModuleOp module) {
  func::FuncOp found;
  for (auto fn : module.getOps<func::FuncOp>()) {
    if (fn.isDeclaration())
      continue;
    if (found)
      throw Error("module holds more than one function ('" +
                  found.getSymName().str() + "' and '" + fn.getSymName().str() +
                  "'); a soma graph is one function");
    found = fn;
  }
  if (!found)
    throw Error("module holds no function; a soma graph is one func.func");
  return found;
}

//===----------------------------------------------------------------------===//
// Tensor
//===----------------------------------------------------------------------===//

static RankedTensorType typeOf(const Tensor &t) {
  if (!t.valid())
    throw Error("use of an empty soma::Tensor");
  return cast<RankedTensorType>(Value::getFromOpaquePointer(t.handle()).getType());
}

static DType dtypeOf(Type et) {
  if (et.isF32())
    return DType::f32;
  if (et.isInteger(32))
    return DType::i32;
  if (et.isInteger(64))
    return DType::i64;
  throw Error("unsupported element type in graph");
}

Type elementType(MLIRContext *ctx, DType dt) {
  switch (dt) {
  case DType::f32:
    return Float32Type::get(ctx);
  case DType::i32:
    return IntegerType::get(ctx, 32);
  case DType::i64:
    return IntegerType::get(ctx, 64);
  }
  return {};
}

Shape Tensor::shape() const {
  auto s = typeOf(*this).getShape();
  return Shape(s.begin(), s.end());
}
DType Tensor::dtype() const { return dtypeOf(typeOf(*this).getElementType()); }
int64_t Tensor::rank() const { return typeOf(*this).getRank(); }
int64_t Tensor::numel() const { return typeOf(*this).getNumElements(); }
int64_t Tensor::dim(int64_t d) const {
  int64_t r = rank();
  int64_t i = d < 0 ? d + r : d;
  if (i < 0 || i >= r)
    throw Error("dimension " + std::to_string(d) + " out of range for " + type_str());
  return typeOf(*this).getDimSize(i);
}
Graph &Tensor::graph() const {
  if (!impl_)
    throw Error("use of an empty soma::Tensor");
  return *impl_->owner;
}
std::string Tensor::type_str() const {
  return std::string(dtype_name(dtype())) + shape_str(shape());
}

//===----------------------------------------------------------------------===//
// Initializers
//===----------------------------------------------------------------------===//

namespace init {
Init zeros() { return {InitSpec::Kind::zeros}; }
Init ones() { return {InitSpec::Kind::ones}; }
Init constant(double v) { return {InitSpec::Kind::constant, v}; }
Init uniform(double lo, double hi) { return {InitSpec::Kind::uniform, lo, hi}; }
Init normal(double mean, double sd) { return {InitSpec::Kind::normal, mean, sd}; }
Init xavier_uniform(double gain) { return {InitSpec::Kind::xavier_uniform, 0, 1, gain}; }
Init xavier_normal(double gain) { return {InitSpec::Kind::xavier_normal, 0, 1, gain}; }
Init he_uniform(double gain) { return {InitSpec::Kind::he_uniform, 0, 1, gain}; }
Init he_normal(double gain) { return {InitSpec::Kind::he_normal, 0, 1, gain}; }
} // namespace init

static std::pair<int64_t, int64_t> defaultFans(const Shape &s) {
  if (s.empty())
    return {1, 1};
  if (s.size() == 1)
    return {s[0], s[0]};
  if (s.size() == 2)
    return {s[0], s[1]};
  int64_t receptive = 1;
  for (size_t i = 2; i < s.size(); ++i)
    receptive *= s[i];
  return {s[1] * receptive, s[0] * receptive};
}

static DictionaryAttr initAttr(Builder &b, const InitSpec &spec) {
  return b.getDictionaryAttr({
      b.getNamedAttr("kind", b.getStringAttr(init_kind_name(spec.kind))),
      b.getNamedAttr("a", b.getF64FloatAttr(spec.a)),
      b.getNamedAttr("b", b.getF64FloatAttr(spec.b)),
      b.getNamedAttr("gain", b.getF64FloatAttr(spec.gain)),
      b.getNamedAttr("fan_in", b.getI64IntegerAttr(spec.fan_in)),
      b.getNamedAttr("fan_out", b.getI64IntegerAttr(spec.fan_out)),
  });
}

/// Reads a soma.init dictionary; missing fans default from the shape (as
/// Graph::param does), so hand-written files may leave them out.
static InitSpec parseInitAttr(Attribute attr, const std::string &param, const Shape &shape) {
  auto dict = dyn_cast_or_null<DictionaryAttr>(attr);
  if (!dict)
    throw Error("parameter '" + param + "' has no soma.init dictionary");
  InitSpec spec;
  auto kind = dict.getAs<StringAttr>("kind");
  if (!kind)
    throw Error("parameter '" + param + "': soma.init has no string 'kind'");
  try {
    spec.kind = parse_init_kind(kind.getValue());
  } catch (const Error &e) {
    throw Error("parameter '" + param + "': " + e.what());
  }
  auto f = [&](const char *key, double def) {
    auto a = dict.getAs<FloatAttr>(key);
    return a ? a.getValueAsDouble() : def;
  };
  auto i = [&](const char *key) {
    auto a = dict.getAs<IntegerAttr>(key);
    return a ? a.getInt() : int64_t(0);
  };
  spec.a = f("a", 0.0);
  spec.b = f("b", 1.0);
  spec.gain = f("gain", 1.0);
  spec.fan_in = i("fan_in");
  spec.fan_out = i("fan_out");
  auto [fi, fo] = defaultFans(shape);
  if (spec.fan_in <= 0)
    spec.fan_in = fi;
  if (spec.fan_out <= 0)
    spec.fan_out = fo;
  return spec;
}

//===----------------------------------------------------------------------===//
// Graph
//===----------------------------------------------------------------------===//

static std::unique_ptr<GraphImpl> newImpl(const std::string &name, uint64_t seed) {
  if (name.empty())
    throw Error("a graph needs a name");
  auto g = std::make_unique<GraphImpl>();
  g->ctx = createContext();
  g->name = name;
  g->seed = seed;
  g->builder = std::make_unique<OpBuilder>(g->ctx.get());
  OpBuilder &b = *g->builder;
  Location loc = UnknownLoc::get(g->ctx.get());
  g->module = ModuleOp::create(loc, StringRef(name));
  (*g->module)->setAttr(ir::kSeedAttr, b.getI64IntegerAttr(static_cast<int64_t>(seed)));
  b.setInsertionPointToEnd(g->module->getBody());
  g->func = b.create<func::FuncOp>(loc, name, b.getFunctionType({}, {}));
  Block *entry = g->func.addEntryBlock();
  b.setInsertionPointToEnd(entry);
  b.create<func::ReturnOp>(loc);
  b.setInsertionPoint(entry->getTerminator());
  return g;
}

Graph::Graph(const std::string &name, uint64_t seed) : impl_(newImpl(name, seed)) {
  impl_->owner = this;
}
Graph::Graph(std::unique_ptr<GraphImpl> impl) : impl_(std::move(impl)) {
  impl_->owner = this;
}
Graph::~Graph() = default;
Graph::Graph(Graph &&o) noexcept : impl_(std::move(o.impl_)) {
  if (impl_)
    impl_->owner = this;
}
Graph &Graph::operator=(Graph &&o) noexcept {
  impl_ = std::move(o.impl_);
  if (impl_)
    impl_->owner = this;
  return *this;
}

const std::string &Graph::name() const { return impl_->name; }

Tensor Graph::output_tensor(const std::string &name) const {
  func::FuncOp fn = impl_->func;
  std::string known;
  for (unsigned j = 0; j < fn.getNumResults(); ++j) {
    auto s = fn.getResultAttrOfType<StringAttr>(j, ir::kOutputAttr);
    if (s && s.getValue() == name)
      return impl_->tensor(impl_->returnOp().getOperand(j));
    if (s)
      known += (known.empty() ? "" : ", ") + s.str();
  }
  throw Error("graph '" + impl_->name + "' has no output named '" + name + "' (outputs: " +
              (known.empty() ? "none" : known) + ")");
}

Tensor Graph::find(const std::string &name) const {
  func::FuncOp fn = impl_->func;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i)
    for (const char *key : {ir::kInputAttr, ir::kParamAttr})
      if (auto s = fn.getArgAttrOfType<StringAttr>(i, key); s && s.getValue() == name)
        return impl_->tensor(fn.getArgument(i));
  throw Error("graph '" + impl_->name + "' has no input or parameter named '" + name + "'");
}
uint64_t Graph::seed() const { return impl_->seed; }

static void checkNewName(GraphImpl *g, const std::string &name, const char *what,
                         const std::source_location &loc) {
  if (name.empty())
    throw Error(where(loc) + ": " + what + " needs a name");
  for (unsigned i = 0; i < g->func.getNumArguments(); ++i) {
    for (const char *key : {ir::kInputAttr, ir::kParamAttr}) {
      auto s = g->func.getArgAttrOfType<StringAttr>(i, key);
      if (s && s.getValue() == name)
        throw Error(where(loc) + ": " + what + " '" + name +
                    "': the graph already has an input or parameter of that name");
    }
  }
}

static void checkShape(const Shape &shape, const std::string &name,
                       const std::source_location &loc) {
  for (int64_t d : shape)
    if (d <= 0)
      throw Error(where(loc) + ": '" + name + "': dimensions must be positive, got " +
                  shape_str(shape));
}

Tensor Graph::input(const std::string &name, const Shape &shape, DType dtype,
                    std::source_location loc) {
  GraphImpl *g = impl_.get();
  checkNewName(g, name, "input", loc);
  checkShape(shape, name, loc);
  OpBuilder &b = *g->builder;
  auto type = RankedTensorType::get(shape, elementType(g->ctx.get(), dtype));
  unsigned idx = g->func.getNumArguments();
  g->func.insertArgument(idx, type,
                         b.getDictionaryAttr({b.getNamedAttr(ir::kInputAttr, b.getStringAttr(name))}),
                         g->loc(loc));
  return g->tensor(g->func.getArgument(idx));
}

Tensor Graph::param(const std::string &name, const Shape &shape, const Init &init,
                    std::source_location loc) {
  GraphImpl *g = impl_.get();
  checkNewName(g, name, "parameter", loc);
  checkShape(shape, name, loc);
  OpBuilder &b = *g->builder;
  InitSpec spec;
  spec.kind = init.kind;
  spec.a = init.a;
  spec.b = init.b;
  spec.gain = init.gain;
  auto [fi, fo] = defaultFans(shape);
  spec.fan_in = init.fan_in > 0 ? init.fan_in : fi;
  spec.fan_out = init.fan_out > 0 ? init.fan_out : fo;
  auto type = RankedTensorType::get(shape, b.getF32Type());
  unsigned idx = g->func.getNumArguments();
  g->func.insertArgument(
      idx, type,
      b.getDictionaryAttr({b.getNamedAttr(ir::kParamAttr, b.getStringAttr(name)),
                           b.getNamedAttr(ir::kInitAttr, initAttr(b, spec))}),
      g->loc(loc));
  return g->tensor(g->func.getArgument(idx));
}

Tensor Graph::buffer(const std::string &name, const Shape &shape, const Init &init,
                     std::source_location loc) {
  Tensor t = param(name, shape, init, loc);
  GraphImpl *g = impl_.get();
  Value v = g->value(t);
  g->func.setArgAttr(cast<BlockArgument>(v).getArgNumber(), ir::kTrainableAttr,
                     BoolAttr::get(g->ctx.get(), false));
  return t;
}

void Graph::output(const std::string &name, const Tensor &t, std::source_location loc) {
  GraphImpl *g = impl_.get();
  if (checkTensor(t, "output", loc) != g)
    throw Error(where(loc) + ": output '" + name + "' is a tensor of another graph");
  if (name.empty())
    throw Error(where(loc) + ": an output needs a name");
  for (const TensorSpec &o : outputs())
    if (o.name == name)
      throw Error(where(loc) + ": the graph already has an output named '" + name + "'");
  func::ReturnOp ret = g->returnOp();
  SmallVector<Value> operands(ret.getOperands());
  operands.push_back(g->value(t));
  ret->setOperands(operands);
  SmallVector<Type> results(g->func.getResultTypes());
  results.push_back(g->value(t).getType());
  SmallVector<DictionaryAttr> resultAttrs;
  for (unsigned i = 0; i + 1 < results.size(); ++i)
    resultAttrs.push_back(g->func.getResultAttrDict(i));
  g->func.setFunctionType(
      FunctionType::get(g->ctx.get(), g->func.getArgumentTypes(), results));
  OpBuilder &b = *g->builder;
  resultAttrs.push_back(
      b.getDictionaryAttr({b.getNamedAttr(ir::kOutputAttr, b.getStringAttr(name))}));
  g->func.setAllResultAttrs(resultAttrs);
}

static TensorSpec specOf(Type t, std::string name) {
  auto rt = cast<RankedTensorType>(t);
  return {std::move(name), dtypeOf(rt.getElementType()),
          Shape(rt.getShape().begin(), rt.getShape().end())};
}

std::vector<TensorSpec> Graph::inputs() const {
  std::vector<TensorSpec> out;
  auto fn = impl_->func;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i)
    if (auto s = fn.getArgAttrOfType<StringAttr>(i, ir::kInputAttr))
      out.push_back(specOf(fn.getArgument(i).getType(), s.str()));
  return out;
}

std::vector<ParamInfo> Graph::params() const {
  std::vector<ParamInfo> out;
  auto fn = impl_->func;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i)
    if (auto s = fn.getArgAttrOfType<StringAttr>(i, ir::kParamAttr)) {
      TensorSpec spec = specOf(fn.getArgument(i).getType(), s.str());
      auto trainable = fn.getArgAttrOfType<BoolAttr>(i, ir::kTrainableAttr);
      out.push_back({spec.name, spec.dtype, spec.shape,
                     parseInitAttr(fn.getArgAttr(i, ir::kInitAttr), spec.name, spec.shape),
                     !trainable || trainable.getValue()});
    }
  return out;
}

std::vector<TensorSpec> Graph::outputs() const {
  std::vector<TensorSpec> out;
  auto fn = impl_->func;
  for (unsigned j = 0; j < fn.getNumResults(); ++j) {
    auto s = fn.getResultAttrOfType<StringAttr>(j, ir::kOutputAttr);
    out.push_back(specOf(fn.getResultTypes()[j], s ? s.str() : "output" + std::to_string(j)));
  }
  return out;
}

NamedArrays Graph::init_params() const {
  NamedArrays out;
  for (const ParamInfo &p : params()) {
    Array a(DType::f32, p.shape);
    initialize(a, p.init, seed(), stream_id(p.name));
    out.emplace_back(p.name, std::move(a));
  }
  return out;
}

std::string Graph::str() const {
  std::string s;
  llvm::raw_string_ostream os(s);
  OpPrintingFlags flags;
  flags.enableDebugInfo(/*enable=*/true, /*prettyForm=*/false);
  impl_->module->print(os, flags);
  return os.str();
}

void Graph::save(const std::string &path) const { write_file_atomic(path, str()); }

std::string Graph::unique_name(const std::string &prefix) {
  int &n = impl_->counters[prefix];
  return prefix + std::to_string(n++);
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

Graph parse(const std::string &text, const std::string &filename) {
  auto impl = std::make_unique<GraphImpl>();
  impl->ctx = createContext();
  MLIRContext *ctx = impl->ctx.get();
  {
    // Errors become one line each: "file:line:col: message".
    llvm::SourceMgr sm;
    sm.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(text, filename), llvm::SMLoc());
    DiagnosticCollector diags(ctx, /*withLocations=*/true, /*basename=*/false);
    ParserConfig config(ctx);
    impl->module = parseSourceFile<ModuleOp>(sm, config);
    if (!impl->module)
      throw Error(diags.empty() ? filename + ": cannot parse" : diags.message());
  }
  ModuleOp module = *impl->module;
  try {
    impl->func = graphFunction(module);
  } catch (const Error &e) {
    throw Error(filename + ": " + e.what());
  }
  func::FuncOp fn = impl->func;
  for (Operation &op : fn.getBody().front()) {
    if (!isa<ir::SomaDialect>(op.getDialect()) && !isa<func::ReturnOp>(op))
      throw Error(locationString(op.getLoc(), /*basename=*/false) + ": op '" +
                  op.getName().getStringRef().str() +
                  "' is not a soma op; a graph holds only soma ops");
  }
  if (fn.getBody().getBlocks().size() != 1)
    throw Error(filename + ": graph function must have exactly one block");
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    bool isInput = fn.getArgAttr(i, ir::kInputAttr) != nullptr;
    bool isParam = fn.getArgAttr(i, ir::kParamAttr) != nullptr;
    if (isInput == isParam)
      throw Error(filename + ": argument " + std::to_string(i) +
                  " must carry exactly one of soma.input and soma.param");
    auto rt = dyn_cast<RankedTensorType>(fn.getArgument(i).getType());
    if (!rt || !rt.hasStaticShape())
      throw Error(filename + ": argument " + std::to_string(i) +
                  " must be a statically shaped tensor");
    if (isParam) {
      auto name = fn.getArgAttrOfType<StringAttr>(i, ir::kParamAttr);
      try {
        parseInitAttr(fn.getArgAttr(i, ir::kInitAttr), name ? name.str() : std::to_string(i),
                      Shape(rt.getShape().begin(), rt.getShape().end()));
      } catch (const Error &e) {
        throw Error(filename + ": " + e.what());
      }
    }
  }
  for (unsigned j = 0; j < fn.getNumResults(); ++j)
    if (!fn.getResultAttrOfType<StringAttr>(j, ir::kOutputAttr))
      throw Error(filename + ": result " + std::to_string(j) +
                  " has no soma.output name");
  impl->name = fn.getSymName().str();
  if (auto seed = module->getAttrOfType<IntegerAttr>(ir::kSeedAttr))
    impl->seed = static_cast<uint64_t>(seed.getInt());
  impl->builder = std::make_unique<OpBuilder>(ctx);
  impl->builder->setInsertionPoint(fn.getBody().front().getTerminator());
  return Graph(std::move(impl));
}

Graph load(const std::string &path) {
  std::string text = read_file(path);
  return parse(text, path);
}

} // namespace soma
