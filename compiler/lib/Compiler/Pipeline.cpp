//===- Pipeline.cpp - From a soma graph module to machine code -------------===//

#include "soma/Compiler/Pipeline.h"
#include "soma/Compiler/Context.h"
#include "soma/Compiler/GraphImpl.h"
#include "soma/Dialect/Passes.h"
#include "soma/Dialect/SomaDialect.h"
#include "soma/io.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Interfaces/LoopLikeInterface.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Bitcode/BitcodeReader.h"
#include "llvm/Bitcode/BitcodeWriter.h"
#include "llvm/ExecutionEngine/Orc/ExecutionUtils.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/ExecutionEngine/JITLink/JITLink.h"
#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Transforms/Scalar/LoopUnrollPass.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/Transforms/Utils/Cloning.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

#include <sched.h>
#include <unistd.h>

extern "C" int omp_get_max_threads(void); // libomp, which runs the compiled code

using namespace mlir;

namespace soma {

//===----------------------------------------------------------------------===//
// Dumps
//===----------------------------------------------------------------------===//

const std::vector<DumpStage> &dump_stages() {
  static const std::vector<DumpStage> stages = {
      {"built", "00-built.mlir"},     {"train", "10-train.mlir"},
      {"fused", "20-fused.mlir"},     {"lowered", "30-lowered.mlir"},
      {"planned", "35-planned.mlir"}, {"memory-plan", "memory-plan.txt"},
      {"memory-picture", "memory-plan.svg"}, {"llvm-dialect", "38-llvm-dialect.mlir"},
      {"llvm", "40-module.ll"},       {"asm", "50-module.s"},
  };
  return stages;
}

DumpConfig makeDumpConfig(const CompileOptions &options) {
  DumpConfig cfg;
  std::string list = options.dump, dir = options.dump_dir;
  if (options.use_environment) {
    if (list.empty())
      if (const char *e = std::getenv("SOMA_DUMP"))
        list = e;
    if (dir.empty())
      if (const char *e = std::getenv("SOMA_DUMP_DIR"))
        dir = e;
  }
  cfg.dir = dir.empty() ? "soma-dump" : dir;
  cfg.printIrAfterAll = options.print_ir_after_all;
  cfg.report = options.report;
  cfg.cache = options.cache;
  cfg.worker = options.worker;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty())
      continue;
    if (item == "all") {
      for (const DumpStage &s : dump_stages())
        cfg.stages.insert(s.name);
      continue;
    }
    bool known = false;
    for (const DumpStage &s : dump_stages())
      known |= item == s.name;
    if (!known) {
      std::string names;
      for (const DumpStage &s : dump_stages())
        names += std::string(s.name) + ", ";
      throw Error("unknown dump stage '" + item + "' (stages: " + names + "all)");
    }
    cfg.stages.insert(item);
  }
  return cfg;
}

void DumpConfig::write(const std::string &stage, const std::string &text) const {
  if (!wants(stage))
    return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw Error("cannot create dump directory " + dir + ": " + ec.message());
  for (const DumpStage &s : dump_stages())
    if (stage == s.name)
      write_file_atomic((std::filesystem::path(dir) / s.file).string(), text);
}

std::string printModule(ModuleOp m, bool debugInfo) {
  std::string s;
  llvm::raw_string_ostream os(s);
  OpPrintingFlags flags;
  if (debugInfo)
    flags.enableDebugInfo(true, false);
  m.print(os, flags);
  return os.str();
}

//===----------------------------------------------------------------------===//
// Timing
//===----------------------------------------------------------------------===//

namespace {
/// Prints the time of each compilation stage to stderr when SOMA_TIME is
/// set (SOMA_TIME=1), and records it in the report if there is one.
struct StageTimer {
  std::string stage;
  CompileReport *report;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  StageTimer(std::string stage, CompileReport *report) : stage(std::move(stage)), report(report) {}
  ~StageTimer() {
    static const bool enabled = [] {
      const char *v = std::getenv("SOMA_TIME");
      return v && *v && std::string(v) != "0";
    }();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (report)
      report->stage_seconds.push_back({stage, ms / 1000.0});
    if (enabled)
      std::fprintf(stderr, "soma: %-22s %8.1f ms\n", stage.c_str(), ms);
  }
};

int64_t tensorBytes(Type t) {
  auto rt = cast<RankedTensorType>(t);
  return rt.getNumElements() * ((rt.getElementTypeBitWidth() + 7) / 8);
}

/// Top-level soma ops of each graph function, for the report.
void countOps(ModuleOp m, CompileReport *report) {
  for (auto fn : m.getOps<func::FuncOp>()) {
    if (fn.isDeclaration() || fn->hasAttr("soma.kernel"))
      continue;
    CompileReport::Function f;
    f.name = fn.getSymName().str();
    for (Operation &op : fn.getBody().front().without_terminator())
      if (!isa<ir::ConstantOp>(op))
        ++f.ops_before_fusion;
    if (auto r = fn->getAttrOfType<DenseI64ArrayAttr>("soma.recompute"); r && r.size() == 3) {
      f.recomputed_values = r[0];
      f.recomputed_bytes = r[1];
      f.recompute_flops = r[2];
    }
    if (auto c = fn->getAttrOfType<DictionaryAttr>("soma.recompute_choice")) {
      auto policy = c.getAs<StringAttr>("policy");
      auto arenas = c.getAs<DenseI64ArrayAttr>("arenas");
      if (policy && arenas && arenas.size() == 3) {
        f.recompute_policy = policy.str();
        f.arena_no_recompute = arenas[0];
        f.arena_chains = arenas[1];
        f.arena_cones = arenas[2];
      }
    }
    report->functions.push_back(f);
  }
}

/// The report's entry for graph function `name` of the current compilation
/// (entries from `first` on; a training step and its eval function share
/// the graph's name).
CompileReport::Function *reportEntry(CompileReport *report, size_t first, StringRef name) {
  for (size_t i = first; i < report->functions.size(); ++i)
    if (report->functions[i].name == name)
      return &report->functions[i];
  return nullptr;
}

/// The kernels of each graph function after fusion: every op that computes
/// (views and constants do not).
void listKernels(ModuleOp m, CompileReport *report, size_t first) {
  for (auto fn : m.getOps<func::FuncOp>()) {
    if (fn.isDeclaration() || fn->hasAttr("soma.kernel"))
      continue;
    CompileReport::Function *f = reportEntry(report, first, fn.getSymName());
    if (!f)
      continue;
    for (Operation &op : fn.getBody().front().without_terminator()) {
      if (isa<ir::ConstantOp, ir::ReshapeOp, ir::StopGradientOp>(op))
        continue;
      CompileReport::Kernel k;
      k.name = op.getName().stripDialect().str();
      if (auto fusion = dyn_cast<ir::FusionOp>(op)) {
        // Named after the ops that compute: not constants, not reshapes,
        // and in a contraction not the transposes and broadcasts that its
        // packing reads through (a convolution's per-image columns and
        // shared filter): `fusion(im2col,matmul,add,relu)`.
        bool contraction = fusion.getKind() == "contraction";
        std::vector<std::string> names;
        for (Operation &inner : fusion.getBody().front().without_terminator())
          if (!isa<ir::ConstantOp, ir::ReshapeOp>(inner) &&
              !(contraction && isa<ir::TransposeOp, ir::BroadcastToOp>(inner)))
            names.push_back(inner.getName().stripDialect().str());
        k.name = "fusion(";
        if (names.size() > 6) {
          k.name += std::to_string(names.size()) + " ops: " + names[0] + ", ..., " + names.back();
        } else {
          for (size_t i = 0; i < names.size(); ++i)
            k.name += (i ? "," : "") + names[i];
        }
        k.name += ")";
      }
      llvm::SmallPtrSet<Value, 8> seen;
      for (Value v : op.getOperands())
        if (seen.insert(v).second)
          k.bytes_read += tensorBytes(v.getType());
      for (Type t : op.getResultTypes())
        k.bytes_written += tensorBytes(t);
      auto numel = [](Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); };
      auto matmulFlops = [&](ir::MatmulOp mm) {
        auto a = cast<RankedTensorType>(mm.getLhs().getType()).getShape();
        int64_t kdim = mm.getTransposeA() ? a[a.size() - 2] : a.back();
        return 2 * numel(mm.getResult()) * kdim;
      };
      if (auto mm = dyn_cast<ir::MatmulOp>(op)) {
        k.flops = matmulFlops(mm);
      } else if (auto fusion = dyn_cast<ir::FusionOp>(op)) {
        for (Operation &inner : fusion.getBody().front().without_terminator())
          if (auto mm = dyn_cast<ir::MatmulOp>(inner))
            k.flops += matmulFlops(mm);
          else if (ir::isReduction(&inner))
            k.flops += numel(inner.getOperand(0)); // one per element reduced
          else if (!isa<ir::ConstantOp, ir::Im2colOp, ir::ReshapeOp, ir::TransposeOp, ir::BroadcastToOp>(
                       inner)) // gathers move data
            k.flops += numel(inner.getResult(0));
      } else if (op.getNumResults() == 1 && !isa<ir::Im2colOp, ir::TransposeOp, ir::PadOp, ir::SliceOp,
                                                   ir::ConcatOp, ir::BroadcastToOp>(op)) {
        // Elementwise ops and reductions: one operation per element read.
        for (Value v : op.getOperands())
          k.flops = std::max(k.flops, numel(v));
      }
      f->kernels.push_back(k);
    }
  }
}

void memoryNumbers(func::FuncOp kernel, CompileReport::Function &f);

/// One planned buffer: [offset, bytes, first, last] and where it came from.
struct PlannedBuffer {
  int64_t offset, bytes, first, last;
  std::string origin;
};

std::vector<PlannedBuffer> plannedBuffers(func::FuncOp kernel) {
  std::vector<PlannedBuffer> out;
  auto plan = kernel->getAttrOfType<ArrayAttr>("soma.memory_plan");
  if (!plan)
    return out;
  // soma-plan-memory replaced the allocations, in order, by views of the
  // workspace that keep their locations (the soma op's source line).
  BlockArgument ws = kernel.getArgument(kernel.getNumArguments() - 1);
  SmallVector<Location> locs;
  for (Operation &op : kernel.getBody().front())
    if (auto view = dyn_cast<memref::ViewOp>(op); view && view.getSource() == ws)
      locs.push_back(view.getLoc());
  for (auto [i, a] : llvm::enumerate(plan)) {
    auto v = cast<DenseI64ArrayAttr>(a).asArrayRef();
    out.push_back({v[0], v[1], v[2], v[3], i < locs.size() ? locationString(locs[i], true) : std::string()});
  }
  return out;
}

/// memory-plan.txt: the numbers, then every buffer.
std::string memoryPlanText(func::FuncOp kernel) {
  std::vector<PlannedBuffer> bufs = plannedBuffers(kernel);
  CompileReport::Function f;
  f.name = kernel.getSymName().str();
  memoryNumbers(kernel, f);
  std::ostringstream os;
  os << "kernel " << f.name << "\n"
     << "arena (workspace) bytes:        " << f.arena_bytes << "\n"
     << "lower bound (largest live set): " << f.lower_bound_bytes << "\n"
     << "without reuse (sum, aligned):   " << f.no_reuse_bytes << "\n"
     << "buffers:                        " << f.buffers << "\n"
     << "arena / lower bound:            "
     << (f.lower_bound_bytes ? static_cast<double>(f.arena_bytes) / static_cast<double>(f.lower_bound_bytes) : 1.0)
     << "\n\n"
     << "live range = [first, last] positions in the kernel's op schedule\n"
     << "buffer       offset        bytes   first    last  made at\n";
  for (auto [i, b] : llvm::enumerate(bufs)) {
    char line[256];
    std::snprintf(line, sizeof line, "%6zu %12lld %12lld %7lld %7lld  ", i, static_cast<long long>(b.offset),
                  static_cast<long long>(b.bytes), static_cast<long long>(b.first), static_cast<long long>(b.last));
    os << line << b.origin << "\n";
  }
  return os.str();
}

/// memory-plan.svg: each buffer a rectangle, schedule position across and
/// offset in the arena down; hover for its size, range and origin.
std::string memoryPlanSvg(func::FuncOp kernel) {
  std::vector<PlannedBuffer> bufs = plannedBuffers(kernel);
  int64_t arena = 1, steps = 1;
  for (const PlannedBuffer &b : bufs) {
    arena = std::max(arena, b.offset + b.bytes);
    steps = std::max(steps, b.last + 1);
  }
  const double left = 90, top = 40, width = 1000, height = 560;
  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + width + 20 << "\" height=\""
     << top + height + 50 << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
     << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">" << kernel.getSymName().str() << ": "
     << bufs.size() << " buffers in an arena of " << arena << " bytes (live ranges across, offsets down)</text>\n"
     << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << width << "\" height=\"" << height
     << "\" fill=\"#f8f8f8\" stroke=\"#888\"/>\n";
  for (auto [i, b] : llvm::enumerate(bufs)) {
    double x = left + width * static_cast<double>(b.first) / static_cast<double>(steps);
    double w = std::max(1.0, width * static_cast<double>(b.last + 1 - b.first) / static_cast<double>(steps));
    double y = top + height * static_cast<double>(b.offset) / static_cast<double>(arena);
    double h = std::max(1.0, height * static_cast<double>(b.bytes) / static_cast<double>(arena));
    int hue = static_cast<int>((i * 47) % 360);
    os << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << w << "\" height=\"" << h
       << "\" fill=\"hsl(" << hue << ",60%,65%)\" stroke=\"#333\" stroke-width=\"0.5\"><title>buffer " << i
       << ": " << b.bytes << " bytes at offset " << b.offset << ", live [" << b.first << ", " << b.last << "] "
       << b.origin << "</title></rect>\n";
  }
  os << "<text x=\"" << left << "\" y=\"" << top + height + 20 << "\">0</text>\n"
     << "<text x=\"" << left + width - 60 << "\" y=\"" << top + height + 20 << "\">" << steps
     << " ops</text>\n"
     << "<text x=\"" << left + width / 2 - 60 << "\" y=\"" << top + height + 40
     << "\">schedule position</text>\n"
     << "<text x=\"5\" y=\"" << top + 12 << "\">offset 0</text>\n"
     << "<text x=\"5\" y=\"" << top + height << "\">" << arena << " B</text>\n"
     << "</svg>\n";
  return os.str();
}

/// Arena, lower bound and no-reuse total from a planned kernel's
/// soma.memory_plan ([offset, bytes, first, last] per buffer).
void memoryNumbers(func::FuncOp kernel, CompileReport::Function &f) {
  if (auto ws = kernel->getAttrOfType<IntegerAttr>("soma.workspace_bytes"))
    f.arena_bytes = ws.getInt();
  auto plan = kernel->getAttrOfType<ArrayAttr>("soma.memory_plan");
  if (!plan)
    return;
  std::map<int64_t, int64_t> delta; // position -> change of live bytes
  for (Attribute a : plan) {
    auto v = cast<DenseI64ArrayAttr>(a).asArrayRef();
    f.no_reuse_bytes += (v[1] + 63) / 64 * 64;
    delta[v[2]] += v[1];
    delta[v[3] + 1] -= v[1];
    ++f.buffers;
  }
  int64_t live = 0;
  for (auto [pos, d] : delta) {
    live += d;
    f.lower_bound_bytes = std::max(f.lower_bound_bytes, live);
  }
}
} // namespace

//===----------------------------------------------------------------------===//
// Lowering
//===----------------------------------------------------------------------===//

void runPasses(ModuleOp m, const DumpConfig &dump, const char *what,
               llvm::function_ref<void(PassManager &)> build) {
  MLIRContext *ctx = m.getContext();
  PassManager pm(ctx);
  if (dump.printIrAfterAll) {
    ctx->disableMultithreading();
    pm.enableIRPrinting([](Pass *, Operation *) { return false; },
                        [](Pass *, Operation *) { return true; },
                        /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false);
  }
  build(pm);
  DiagnosticCollector diags(ctx);
  if (failed(pm.run(m))) {
    std::string message = diags.empty() ? std::string("(no diagnostic)") : diags.message();
    throw Error(what ? std::string(what) + " failed:\n" + message : message);
  }
}

static DType dtypeOfElement(Type t) {
  if (t.isF32())
    return DType::f32;
  if (t.isInteger(32))
    return DType::i32;
  return DType::i64;
}

static Signature signatureOf(func::FuncOp kernel) {
  Signature sig;
  sig.name = kernel.getSymName().str();
  for (unsigned i = 0; i < kernel.getNumArguments(); ++i) {
    auto type = dyn_cast<MemRefType>(kernel.getArgument(i).getType());
    if (!type)
      continue;
    TensorSpec spec{"", dtypeOfElement(type.getElementType()),
                    Shape(type.getShape().begin(), type.getShape().end())};
    if (auto s = kernel.getArgAttrOfType<StringAttr>(i, ir::kInputAttr)) {
      spec.name = s.str();
      sig.inputs.push_back(spec);
    } else if (auto s = kernel.getArgAttrOfType<StringAttr>(i, ir::kParamAttr)) {
      spec.name = s.str();
      sig.params.push_back(spec);
    } else if (auto s = kernel.getArgAttrOfType<StringAttr>(i, ir::kStateAttr)) {
      spec.name = s.str();
      sig.states.push_back(spec);
      auto init = kernel.getArgAttrOfType<FloatAttr>(i, ir::kStateInitAttr);
      sig.state_init.push_back(init ? init.getValueAsDouble() : 0.0);
    } else if (auto s = kernel.getArgAttrOfType<StringAttr>(i, ir::kOutputAttr)) {
      spec.name = s.str();
      sig.outputs.push_back(spec);
    }
  }
  if (auto ws = kernel->getAttrOfType<IntegerAttr>("soma.workspace_bytes"))
    sig.workspace_bytes = ws.getInt();
  return sig;
}

/// The bytes of a static memref.alloca as LLVM lays it out (64-byte
/// aligned); a vector of n b-bit lanes takes n * b bits rounded up to a
/// power of two bytes (the window masks are vector<16xi1>: 2 bytes).
static int64_t allocaBytes(memref::AllocaOp a) {
  MemRefType t = a.getType();
  if (!t.hasStaticShape()) { // (soma's passes make none)
    std::string type;
    llvm::raw_string_ostream os(type);
    t.print(os);
    throw Error("internal error: an alloca of unknown size, " + type + ", in '" +
                a->getParentOfType<func::FuncOp>().getSymName().str() + "': no bound on the stack it uses");
  }
  Type e = t.getElementType();
  int64_t bytes = 8; // an index or a pointer
  if (auto v = dyn_cast<VectorType>(e))
    bytes = static_cast<int64_t>(llvm::PowerOf2Ceil((v.getNumElements() * v.getElementTypeBitWidth() + 7) / 8));
  else if (e.isIntOrFloat())
    bytes = static_cast<int64_t>(llvm::PowerOf2Ceil((e.getIntOrFloatBitWidth() + 7) / 8));
  return (t.getNumElements() * bytes + 63) / 64 * 64;
}

namespace {
/// The stack the planned module's code may use (see stackBytesOf).
class StackNeed {
public:
  explicit StackNeed(ModuleOp m) : symbols_(m) {}

  /// The most `fn` and what it calls may have on the stack at once.
  int64_t of(func::FuncOp fn) {
    auto [it, fresh] = memo_.try_emplace(fn, 0);
    if (!fresh)
      return it->second; // done, or on the call path (soma makes no recursion)
    int64_t n = region(fn.getBody()).peak;
    memo_[fn] = n;
    return n;
  }

private:
  struct Use {
    int64_t peak = 0;     // the most at once
    int64_t residual = 0; // still allocated at the end
  };
  /// Walks each block in order: an alloca adds its bytes until a stack
  /// restore to a save made before it (the GEMM's and the convolutions'
  /// units) or the function's return; a call adds the callee's need for
  /// its duration; a nested region adds its peak while it runs and what
  /// it leaves allocated after (a loop body must leave nothing).
  Use region(Region &r) {
    Use out;
    for (Block &block : r) {
      int64_t live = 0, peak = 0;
      llvm::DenseMap<Value, int64_t> saved;
      for (Operation &op : block) {
        if (auto a = dyn_cast<memref::AllocaOp>(op)) {
          live += allocaBytes(a);
        } else if (auto save = dyn_cast<LLVM::StackSaveOp>(op)) {
          saved[save.getResult()] = live;
        } else if (auto restore = dyn_cast<LLVM::StackRestoreOp>(op)) {
          if (auto it = saved.find(restore.getOperand()); it != saved.end())
            live = std::min(live, it->second);
        } else if (auto call = dyn_cast<func::CallOp>(op)) {
          if (auto callee = symbols_.lookup<func::FuncOp>(call.getCallee()); callee && !callee.isDeclaration())
            peak = std::max(peak, live + of(callee));
        } else if (op.getNumRegions() > 0) {
          // (The regions of an scf.if are alternatives; an
          // execute_region's runs once.)
          int64_t left = 0;
          for (Region &nested : op.getRegions()) {
            Use u = region(nested);
            peak = std::max(peak, live + u.peak);
            left = std::max(left, u.residual);
          }
          // A loop body that leaves stack allocated grows the stack on
          // every iteration: no bound holds, and soma's passes make none.
          if (left > 0 && (isa<LoopLikeOpInterface>(op) || isa<scf::WhileOp>(op)))
            throw Error("internal error: a '" + op.getName().getStringRef().str() +
                        "' loop allocates stack on every iteration (" + std::to_string(left) +
                        " bytes without a stack restore) in '" +
                        op.getParentOfType<func::FuncOp>().getSymName().str() + "'");
          live += left;
        }
        peak = std::max(peak, live);
      }
      out.peak = std::max(out.peak, peak);
      out.residual = std::max(out.residual, live);
    }
    return out;
  }

  SymbolTable symbols_;
  llvm::DenseMap<Operation *, int64_t> memo_;
};
} // namespace

/// The stack the kernel's code may use on the calling thread: its scratch
/// (the static allocas: a GEMM unit's packed panels, a direct
/// convolution's window masks and transposed blocks), the most of it live
/// at once along any call path, plus 64 KiB for frames, spills and libomp.
/// An OpenMP worker runs a part of some function's body, so the same
/// bound holds for it.
static int64_t stackBytesOf(ModuleOp m, func::FuncOp kernel) {
  constexpr int64_t kStackMargin = 64 << 10;
  return StackNeed(m).of(kernel) + kStackMargin;
}

int64_t vectorWidthOf(const llvm::TargetMachine &tm) {
  const llvm::MCSubtargetInfo *sti = tm.getMCSubtargetInfo();
  if (sti->checkFeatures("+avx512f"))
    return 16;
  if (sti->checkFeatures("+avx"))
    return 8;
  return 4;
}

LoweredModule lowerAndPlan(ModuleOp graphModule, const DumpConfig &dump, Mode mode,
                           int64_t vectorWidth, int64_t threads) {
  LoweredModule out;
  out.module = OwningOpRef<ModuleOp>(cast<ModuleOp>(graphModule->clone()));
  ModuleOp m = *out.module;
  dump.write("built", [&] { return printModule(m, true); });
  std::optional<StageTimer> timer(std::in_place, "simplify and fuse", dump.report);
  runPasses(m, dump, "simplification", [&](PassManager &pm) {
    // Mode-dependent ops in the requested form (training steps were
    // expanded for training before they got here), then convolution and
    // pooling as im2col + matmul / reductions; then simplify and group
    // into kernels.
    SomaExpandModesOptions expand;
    expand.training = mode == Mode::train;
    pm.addPass(createSomaExpandModes(expand));
    pm.addPass(createSomaDecompose());
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
  });
  size_t firstEntry = dump.report ? dump.report->functions.size() : 0;
  if (dump.report)
    countOps(m, dump.report);
  runPasses(m, dump, "fusion", [&](PassManager &pm) { pm.addNestedPass<func::FuncOp>(createSomaFuse()); });
  if (dump.report)
    listKernels(m, dump.report, firstEntry);
  dump.write("fused", [&] { return printModule(m, true); });
  timer.emplace("lower to linalg", dump.report);
  runPasses(m, dump, "lowering to linalg", [&](PassManager &pm) {
    SomaLowerToLinalgOptions lowering;
    lowering.vectorWidth = vectorWidth;
    lowering.threads = threads;
    pm.addPass(createSomaLowerToLinalg(lowering));
    pm.addPass(createSomaOutlineLoops());
    pm.addPass(createCanonicalizerPass());
  });
  dump.write("lowered", [&] { return printModule(m, false); });
  timer.emplace("plan memory", dump.report);
  runPasses(m, dump, "memory planning", [](PassManager &pm) {
    pm.addNestedPass<func::FuncOp>(createSomaPlanMemory());
  });
  dump.write("planned", [&] { return printModule(m, false); });
  func::FuncOp kernel;
  for (auto fn : m.getOps<func::FuncOp>())
    if (fn->hasAttr("soma.kernel"))
      kernel = fn;
  if (!kernel)
    throw Error("lowering produced no kernel function");
  out.signature = signatureOf(kernel);
  out.signature.stack_bytes = stackBytesOf(m, kernel);
  if (dump.report)
    if (CompileReport::Function *f = reportEntry(dump.report, firstEntry, kernel.getSymName()))
      memoryNumbers(kernel, *f);
  dump.write("memory-plan", [&] { return memoryPlanText(kernel); });
  dump.write("memory-picture", [&] { return memoryPlanSvg(kernel); });
  return out;
}

int64_t plannedWorkspaceBytes(ModuleOp graphModule, Mode mode) {
  auto tm = createTargetMachine("host", 2);
  return lowerAndPlan(graphModule, DumpConfig{}, mode, vectorWidthOf(*tm)).signature.workspace_bytes;
}

LoweredModule lowerToLLVMDialect(ModuleOp graphModule, const DumpConfig &dump, Mode mode,
                                 int64_t vectorWidth, int64_t threads) {
  LoweredModule out = lowerAndPlan(graphModule, dump, mode, vectorWidth, threads);
  ModuleOp m = *out.module;
  std::optional<StageTimer> timer(std::in_place, "lower to LLVM dialect", dump.report);
  runPasses(m, dump, "lowering to LLVM", [](PassManager &pm) { buildLowerToLLVMPipeline(pm); });
  // The ABI is in `signature` now. The translation to LLVM IR warns about
  // every argument attribute it does not know (soma.input, soma.param, ...),
  // and each warning prints the whole function: quadratic, minutes for
  // DenseNet-121. Keep only the LLVM dialect's own attributes.
  m.walk([](LLVM::LLVMFuncOp fn) {
    for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
      SmallVector<NamedAttribute> keep;
      for (NamedAttribute a : fn.getArgAttrDict(i) ? fn.getArgAttrDict(i).getValue() : ArrayRef<NamedAttribute>())
        if (a.getName().getValue().starts_with("llvm."))
          keep.push_back(a);
      fn.setArgAttrs(i, keep);
    }
  });
  timer.reset();
  dump.write("llvm-dialect", [&] { return printModule(m, false); });
  return out;
}

//===----------------------------------------------------------------------===//
// LLVM
//===----------------------------------------------------------------------===//

static void initLLVM() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
  });
}

static llvm::CodeGenOptLevel codeGenLevel(int optLevel) {
  switch (optLevel) {
  case 0:
    return llvm::CodeGenOptLevel::None;
  case 1:
    return llvm::CodeGenOptLevel::Less;
  case 2:
    return llvm::CodeGenOptLevel::Default;
  default:
    return llvm::CodeGenOptLevel::Aggressive;
  }
}

CacheTarget hostTarget() {
  CacheTarget t;
  t.triple = llvm::sys::getProcessTriple();
  t.cpu = llvm::sys::getHostCPUName().str();
  // Sorted: the feature map's order is not meant to be stable, the key is.
  std::vector<std::string> features;
  for (auto &feature : llvm::sys::getHostCPUFeatures())
    features.push_back((feature.second ? "+" : "-") + feature.first().str());
  std::sort(features.begin(), features.end());
  for (size_t i = 0; i < features.size(); ++i)
    t.features += (i ? "," : "") + features[i];
  t.threads = omp_get_max_threads();
  return t;
}

std::unique_ptr<llvm::TargetMachine> createTargetMachine(const std::string &cpu,
                                                         int optLevel) {
  initLLVM();
  std::string triple = llvm::sys::getProcessTriple();
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    throw Error("no LLVM target for " + triple + ": " + error);
  std::string cpuName = cpu, features;
  if (cpu == "host" || cpu.empty()) {
    CacheTarget host = hostTarget();
    cpuName = host.cpu;
    features = host.features;
  }
  {
    // An unknown CPU name makes LLVM abort later; refuse it here.
    std::unique_ptr<llvm::MCSubtargetInfo> sti(
        target->createMCSubtargetInfo(triple, "", ""));
    if (!sti || !sti->isCPUStringValid(cpuName))
      throw Error("unknown target CPU '" + cpuName +
                  "' (use 'host' or an LLVM CPU name such as x86-64-v3, znver3)");
  }
  llvm::TargetOptions options;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      triple, cpuName, features, options, llvm::Reloc::PIC_, std::nullopt,
      codeGenLevel(optLevel)));
  if (!tm)
    throw Error("cannot create a target machine for CPU '" + cpuName + "'");
  return tm;
}

/// Runs the code generator on `module` (which it changes).
static std::string emitInPlace(llvm::Module &module, llvm::TargetMachine &tm, bool assembly) {
  llvm::SmallString<0> buffer;
  llvm::raw_svector_ostream os(buffer);
  llvm::legacy::PassManager pm;
  if (tm.addPassesToEmitFile(pm, os, nullptr,
                             assembly ? llvm::CodeGenFileType::AssemblyFile
                                      : llvm::CodeGenFileType::ObjectFile))
    throw Error("the target cannot emit this file type");
  pm.run(module);
  return std::string(buffer.begin(), buffer.end());
}

std::string emitMachineCode(llvm::Module &module, llvm::TargetMachine &tm, bool assembly) {
  std::unique_ptr<llvm::Module> clone = llvm::CloneModule(module);
  return emitInPlace(*clone, tm, assembly);
}

/// LLVM's default pipeline for `optLevel`, with less loop unrolling: the
/// lowering already unrolls what pays (the GEMM register tiles, the vector
/// lanes of elementwise loops). No partial or runtime unrolling, and full
/// unrolling of constant-trip loops (im2col's kernel window, say) with the
/// -O2 threshold (150) even at -O3 (300). LeNet-5's training step at -O3:
/// 248 KB of code in 0.69 s + 1.16 s (optimisation + code generation) with
/// LLVM's unrolling, about 110 KB in 0.36 s + 0.38 s with this; no
/// unrolling at all would be 59 KB, but its inference 35% slower (the
/// pooling's window loops).
static void optimizeModule(llvm::Module &module, llvm::TargetMachine &tm, int optLevel) {
  llvm::PipelineTuningOptions tuning;
  tuning.LoopUnrolling = false;
  tuning.LoopVectorization = optLevel > 1;
  tuning.SLPVectorization = optLevel > 1;
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(&tm, tuning);
  if (optLevel > 1)
    pb.registerLateLoopOptimizationsEPCallback([](llvm::LoopPassManager &lpm, llvm::OptimizationLevel) {
      lpm.addPass(llvm::LoopFullUnrollPass(/*OptLevel=*/2));
    });
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::OptimizationLevel level = optLevel <= 0   ? llvm::OptimizationLevel::O0
                                  : optLevel == 1 ? llvm::OptimizationLevel::O1
                                  : optLevel == 2 ? llvm::OptimizationLevel::O2
                                                  : llvm::OptimizationLevel::O3;
  llvm::ModulePassManager mpm = level == llvm::OptimizationLevel::O0
                                    ? pb.buildO0DefaultPipeline(level)
                                    : pb.buildPerModuleDefaultPipeline(level);
  mpm.run(module, mam);
}

static std::unique_ptr<llvm::Module> translate(ModuleOp llvmDialect, llvm::LLVMContext &ctx,
                                               llvm::TargetMachine &tm, const DumpConfig &dump) {
  StageTimer timer("translate to LLVM IR", dump.report);
  DiagnosticCollector diags(llvmDialect.getContext());
  std::unique_ptr<llvm::Module> module = translateModuleToLLVMIR(llvmDialect, ctx);
  if (!module)
    throw Error("translation to LLVM IR failed: " + diags.message());
  module->setTargetTriple(tm.getTargetTriple().str());
  module->setDataLayout(tm.createDataLayout());
  return module;
}

/// Optimises `module` in one piece; dumps "llvm" and "asm".
static void optimizeAndDump(llvm::Module &module, llvm::TargetMachine &tm, int optLevel,
                            const DumpConfig &dump) {
  {
    StageTimer timer("optimize LLVM IR", dump.report);
    optimizeModule(module, tm, optLevel);
  }
  if (dump.wants("llvm")) {
    std::string s;
    llvm::raw_string_ostream os(s);
    module.print(os, nullptr);
    dump.write("llvm", os.str());
  }
  if (dump.wants("asm"))
    dump.write("asm", emitMachineCode(module, tm, true));
}

std::unique_ptr<llvm::Module> translateAndOptimize(ModuleOp llvmDialect,
                                                   llvm::LLVMContext &ctx,
                                                   llvm::TargetMachine &tm, int optLevel,
                                                   const DumpConfig &dump) {
  std::unique_ptr<llvm::Module> module = translate(llvmDialect, ctx, tm, dump);
  optimizeAndDump(*module, tm, optLevel, dump);
  return module;
}

//===----------------------------------------------------------------------===//
// JIT
//===----------------------------------------------------------------------===//

void markKeepingDenormals(ModuleOp m) { m->setAttr(kKeepDenormalsAttr, UnitAttr::get(m.getContext())); }

OwningOpRef<ModuleOp> keepingDenormals(ModuleOp graphModule) {
  OwningOpRef<ModuleOp> copy(cast<ModuleOp>(graphModule->clone()));
  markKeepingDenormals(*copy);
  return copy;
}

Executable jitCompile(ModuleOp graphModule, const CompileOptions &options) {
  if (options.flush_denormals)
    return jitCompile(graphModule, makeDumpConfig(options), options.opt_level, options.mode);
  OwningOpRef<ModuleOp> kept = keepingDenormals(graphModule);
  return jitCompile(*kept, makeDumpConfig(options), options.opt_level, options.mode);
}

/// The packed entry point `void _mlir_NAME(void **args)` that calls NAME
/// with *args[i] as its i-th argument (and stores a result to *args[n]),
/// the wrapper MLIR's ExecutionEngine makes; Executable calls it.
static void addPackedEntry(llvm::Module &module, const std::string &name) {
  llvm::Function *fn = module.getFunction(name);
  if (!fn || fn->isDeclaration())
    throw Error("JIT: kernel '" + name + "' not found in the LLVM module");
  llvm::LLVMContext &ctx = module.getContext();
  llvm::IRBuilder<> b(ctx);
  auto *type = llvm::FunctionType::get(b.getVoidTy(), b.getPtrTy(), false);
  auto *packed = llvm::Function::Create(type, llvm::GlobalValue::ExternalLinkage, "_mlir_" + name, module);
  b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", packed));
  llvm::Value *argList = packed->getArg(0);
  auto slot = [&](unsigned i) {
    llvm::Value *p = b.CreateGEP(b.getPtrTy(), argList, b.getInt64(i));
    return b.CreateLoad(b.getPtrTy(), p);
  };
  llvm::SmallVector<llvm::Value *, 16> args;
  for (llvm::Argument &a : fn->args())
    args.push_back(b.CreateLoad(a.getType(), slot(a.getArgNo())));
  llvm::Value *result = b.CreateCall(fn, args);
  if (!fn->getReturnType()->isVoidTy())
    b.CreateStore(result, slot(fn->arg_size()));
  b.CreateRetVoid();
}

/// With SOMA_PERF_MAP=1, every function the JIT links (the kernels, the
/// outlined GEMMs and loops, the private register tiles included) is
/// appended to /tmp/perf-<pid>.map, the file `perf report` reads to name
/// addresses in anonymous executable memory.
namespace {
class PerfMapPlugin : public llvm::orc::ObjectLinkingLayer::Plugin {
public:
  void modifyPassConfig(llvm::orc::MaterializationResponsibility &, llvm::jitlink::LinkGraph &,
                        llvm::jitlink::PassConfiguration &config) override {
    config.PostFixupPasses.push_back([](llvm::jitlink::LinkGraph &g) -> llvm::Error {
      static std::mutex mutex;
      std::lock_guard<std::mutex> lock(mutex);
      std::string path = "/tmp/perf-" + std::to_string(::getpid()) + ".map";
      if (FILE *f = std::fopen(path.c_str(), "a")) {
        // Every named function in executable memory by its own range (to
        // its size, or to the next symbol or its block's end when it has
        // none); code between a function's end and the next symbol (a
        // private function without a symbol) is named after that
        // function, with ".outlined". (Ranges were once sorted together
        // with those fillers, and a filler starting where a symbol starts,
        // such as an OpenMP region's "..omp_par" right after its caller,
        // could hide the symbol's name.)
        struct Sym { uint64_t begin, size, blockEnd; std::string name; };
        std::vector<Sym> syms;
        for (llvm::jitlink::Symbol *sym : g.defined_symbols()) {
          if (!sym->hasName() || (sym->getBlock().getSection().getMemProt() & llvm::orc::MemProt::Exec) ==
                                     llvm::orc::MemProt::None)
            continue;
          syms.push_back({sym->getAddress().getValue(), sym->getSize(),
                          sym->getBlock().getAddress().getValue() + sym->getBlock().getSize(), sym->getName().str()});
        }
        std::sort(syms.begin(), syms.end(), [](const Sym &x, const Sym &y) {
          return x.begin != y.begin ? x.begin < y.begin : x.size > y.size;
        });
        auto emit = [&](uint64_t begin, uint64_t end, const std::string &name) {
          if (end > begin)
            std::fprintf(f, "%llx %llx %s\n", (unsigned long long)begin, (unsigned long long)(end - begin),
                         name.c_str());
        };
        for (size_t i = 0; i < syms.size(); ++i) {
          if (i > 0 && syms[i].begin == syms[i - 1].begin)
            continue; // an alias of the symbol before
          uint64_t next = syms[i].blockEnd;
          for (size_t j = i + 1; j < syms.size(); ++j)
            if (syms[j].begin > syms[i].begin) {
              next = std::min(next, syms[j].begin);
              break;
            }
          uint64_t end = syms[i].size ? std::min(syms[i].begin + syms[i].size, next) : next;
          emit(syms[i].begin, end, syms[i].name);
          emit(end, next, syms[i].name + ".outlined");
        }
        std::fclose(f);
      }
      return llvm::Error::success();
    });
  }
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility &) override {
    return llvm::Error::success();
  }
  llvm::Error notifyRemovingResources(llvm::orc::JITDylib &, llvm::orc::ResourceKey) override {
    return llvm::Error::success();
  }
  void notifyTransferringResources(llvm::orc::JITDylib &, llvm::orc::ResourceKey,
                                   llvm::orc::ResourceKey) override {}
};

bool perfMapWanted() {
  const char *e = std::getenv("SOMA_PERF_MAP");
  return e && *e && std::string(e) != "0";
}
} // namespace

/// Links `object` (relocatable machine code for this machine) into a new
/// LLJIT, with libomp's and the process's symbols resolvable, and returns
/// the Executable of its packed entry point. Errors throw soma::Error.
static Executable loadObject(const std::vector<std::string> &objects, const Signature &signature) {
  // compile_training compiles the evaluation function on a second thread;
  // the compilations share nothing, but linking into the process (ORC,
  // the search for libomp's symbols, the unwind tables) is done one at a
  // time. It takes milliseconds.
  static std::mutex linking;
  std::lock_guard<std::mutex> lock(linking);
  initLLVM();
  auto jtmb = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!jtmb)
    throw Error("JIT: " + llvm::toString(jtmb.takeError()));
  llvm::orc::LLJITBuilder builder;
  builder.setJITTargetMachineBuilder(std::move(*jtmb));
  if (perfMapWanted())
    builder.setObjectLinkingLayerCreator([](llvm::orc::ExecutionSession &es, const llvm::Triple &)
                                             -> llvm::Expected<std::unique_ptr<llvm::orc::ObjectLayer>> {
      auto layer = std::make_unique<llvm::orc::ObjectLinkingLayer>(es);
      layer->addPlugin(std::make_unique<PerfMapPlugin>());
      return std::move(layer);
    });
  auto jit = builder.create();
  if (!jit)
    throw Error("JIT: " + llvm::toString(jit.takeError()));
  llvm::orc::JITDylib &main = (*jit)->getMainJITDylib();
  char prefix = (*jit)->getDataLayout().getGlobalPrefix();
  auto omp = llvm::orc::DynamicLibrarySearchGenerator::Load(SOMA_OMP_LIB, prefix);
  if (!omp)
    throw Error("JIT: cannot load " SOMA_OMP_LIB ": " + llvm::toString(omp.takeError()));
  main.addGenerator(std::move(*omp));
  auto process = llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(prefix);
  if (!process)
    throw Error("JIT: " + llvm::toString(process.takeError()));
  main.addGenerator(std::move(*process));
  if (objects.empty())
    throw Error("JIT: no object code for '" + signature.name + "'");
  for (size_t i = 0; i < objects.size(); ++i)
    if (llvm::Error err = (*jit)->addObjectFile(
            llvm::MemoryBuffer::getMemBufferCopy(objects[i], signature.name + "." + std::to_string(i) + ".o")))
      throw Error("JIT: " + llvm::toString(std::move(err)));
  auto fn = (*jit)->lookup("_mlir_" + signature.name);
  if (!fn)
    throw Error("JIT: kernel '" + signature.name + "' not found: " + llvm::toString(fn.takeError()));
  std::shared_ptr<llvm::orc::LLJIT> owner(std::move(*jit));
  return Executable(signature, fn->toPtr<Executable::PackedFn>(), std::static_pointer_cast<void>(owner));
}

//===----------------------------------------------------------------------===//
// Parallel code generation
//===----------------------------------------------------------------------===//

/// The threads code generation may use: SOMA_COMPILE_THREADS when set (1
/// compiles in one piece), else the CPUs this process may run on, at most 8.
static unsigned compileThreads() {
  if (const char *e = std::getenv("SOMA_COMPILE_THREADS"); e && *e) {
    char *end = nullptr;
    long n = std::strtol(e, &end, 10);
    if (*end || n < 1 || n > 256)
      throw Error(std::string("SOMA_COMPILE_THREADS='") + e + "': expected a number of threads from 1 to 256");
    return static_cast<unsigned>(n);
  }
  cpu_set_t set;
  unsigned cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? static_cast<unsigned>(CPU_COUNT(&set))
                                                             : std::thread::hardware_concurrency();
  return std::clamp(cpus, 1u, 8u);
}

/// The global values with local linkage that `root` reaches: those its code
/// or initialiser names, and through them, transitively.
static void localClosure(const llvm::GlobalValue *root, std::set<const llvm::GlobalValue *> &seen) {
  std::vector<const llvm::User *> work{root};
  std::set<const llvm::Constant *> visited;
  auto operand = [&](const llvm::Value *v) {
    if (auto *gv = llvm::dyn_cast<llvm::GlobalValue>(v)) {
      if (gv->hasLocalLinkage() && seen.insert(gv).second)
        work.push_back(gv);
    } else if (auto *c = llvm::dyn_cast<llvm::Constant>(v)) {
      if (visited.insert(c).second)
        work.push_back(c);
    }
  };
  while (!work.empty()) {
    const llvm::User *u = work.back();
    work.pop_back();
    if (auto *f = llvm::dyn_cast<llvm::Function>(u)) {
      for (const llvm::BasicBlock &bb : *f)
        for (const llvm::Instruction &inst : bb)
          for (const llvm::Value *v : inst.operand_values())
            operand(v);
    } else if (auto *g = llvm::dyn_cast<llvm::GlobalVariable>(u)) {
      if (g->hasInitializer())
        operand(g->getInitializer());
    } else if (!llvm::isa<llvm::GlobalValue>(u)) {
      for (const llvm::Value *v : u->operand_values())
        operand(v);
    }
  }
}

static size_t instructionCount(const llvm::GlobalValue *gv) {
  auto *f = llvm::dyn_cast<llvm::Function>(gv);
  return f ? f->getInstructionCount() : 0;
}

/// Which public definitions of `module` each of at most `parts` pieces
/// compiles: the largest first (counting the local functions it reaches),
/// each to the piece with the least code so far. Fewer pieces when the
/// module is small (below ~400 instructions a piece, threads cost more
/// than they save) or has aliases; one piece means "do not split".
static std::vector<std::set<std::string>> partitionModule(const llvm::Module &module, unsigned parts) {
  constexpr size_t kMinPiece = 400;
  std::vector<std::pair<size_t, std::string>> roots;
  size_t total = 0;
  for (const llvm::GlobalObject &g : module.global_objects()) {
    if (g.isDeclaration() || g.hasLocalLinkage())
      continue;
    std::set<const llvm::GlobalValue *> locals;
    localClosure(&g, locals);
    size_t size = instructionCount(&g);
    for (const llvm::GlobalValue *l : locals)
      size += instructionCount(l);
    roots.push_back({size, g.getName().str()});
    total += size;
  }
  parts = std::min<size_t>({parts, roots.size(), std::max<size_t>(1, total / kMinPiece)});
  if (!module.alias_empty() || !module.ifunc_empty())
    parts = 1;
  std::vector<std::set<std::string>> pieces(std::max(parts, 1u));
  if (parts <= 1)
    return pieces;
  std::stable_sort(roots.begin(), roots.end(), [](auto &a, auto &b) { return a.first > b.first; });
  std::vector<size_t> load(parts, 0);
  for (auto &[size, name] : roots) {
    size_t lightest = std::min_element(load.begin(), load.end()) - load.begin();
    load[lightest] += size;
    pieces[lightest].insert(name);
  }
  return pieces;
}

/// Keeps the public definitions in `own` and what they reach: the other
/// public definitions become declarations (another piece defines them;
/// the JIT links the pieces together), and local values nothing uses any
/// more are erased.
static void keepOnly(llvm::Module &module, const std::set<std::string> &own) {
  for (llvm::Function &f : module.functions())
    if (!f.isDeclaration() && !f.hasLocalLinkage() && !own.count(f.getName().str())) {
      f.deleteBody();
      f.setComdat(nullptr);
    }
  for (llvm::GlobalVariable &g : module.globals())
    if (!g.isDeclaration() && !g.hasLocalLinkage() && !own.count(g.getName().str())) {
      g.setInitializer(nullptr);
      g.setLinkage(llvm::GlobalValue::ExternalLinkage);
      g.setComdat(nullptr);
    }
  for (bool erased = true; erased;) {
    erased = false;
    for (llvm::Function &f : llvm::make_early_inc_range(module.functions())) {
      f.removeDeadConstantUsers();
      if (f.hasLocalLinkage() && f.use_empty()) {
        f.eraseFromParent();
        erased = true;
      }
    }
    for (llvm::GlobalVariable &g : llvm::make_early_inc_range(module.globals())) {
      g.removeDeadConstantUsers();
      if (g.hasLocalLinkage() && g.use_empty()) {
        g.eraseFromParent();
        erased = true;
      }
    }
  }
}

/// Optimises and compiles `module` (translated, not yet optimised) as
/// `pieces.size()` modules on as many threads, each in a context of its
/// own (LLVM contexts are single-threaded; the pieces travel as bitcode):
/// one relocatable object per piece, the one that defines `entry` with its
/// packed entry point. Every function is optimised and
/// compiled as in one piece, the GEMMs' and loops' functions being
/// noinline; what is lost is only attribute inference across pieces.
static std::vector<std::string> compileInPieces(llvm::Module &module,
                                                const std::vector<std::set<std::string>> &pieces,
                                                int optLevel, const std::string &entry) {
  llvm::SmallVector<char, 0> bitcode;
  {
    llvm::raw_svector_ostream os(bitcode);
    llvm::WriteBitcodeToFile(module, os);
  }
  std::vector<std::string> objects(pieces.size());
  std::vector<std::exception_ptr> errors(pieces.size());
  auto compile = [&](size_t i) {
    try {
      llvm::LLVMContext ctx;
      llvm::Expected<std::unique_ptr<llvm::Module>> piece = llvm::parseBitcodeFile(
          llvm::MemoryBufferRef(llvm::StringRef(bitcode.data(), bitcode.size()), "piece"), ctx);
      if (!piece)
        throw Error("JIT: cannot re-read the LLVM module: " + llvm::toString(piece.takeError()));
      keepOnly(**piece, pieces[i]);
      auto tm = createTargetMachine("host", optLevel);
      optimizeModule(**piece, *tm, optLevel);
      if (pieces[i].count(entry))
        addPackedEntry(**piece, entry); // as in one piece: after optimisation
      objects[i] = emitInPlace(**piece, *tm, false);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (size_t i = 1; i < pieces.size(); ++i)
    threads.emplace_back(compile, i);
  compile(0);
  for (std::thread &t : threads)
    t.join();
  for (std::exception_ptr &e : errors)
    if (e)
      std::rethrow_exception(e);
  return objects;
}

CachedObject compileObjects(ModuleOp graphModule, const DumpConfig &dump, int optLevel, Mode mode,
                            int64_t threads) {
  auto tm = createTargetMachine("host", optLevel);
  LoweredModule lowered = lowerToLLVMDialect(graphModule, dump, mode, vectorWidthOf(*tm), threads);
  std::vector<std::string> objects;
  {
    StageTimer jit("JIT (incl. LLVM IR)", dump.report);
    llvm::LLVMContext ctx;
    // A large module is optimised and compiled in pieces on the CPUs the
    // process has (LeNet-5's training step, its evaluation function
    // compiling alongside: the JIT stage 0.76 s -> 0.53 s on 2 cores), in
    // one piece when the dump wants the whole optimised module.
    std::unique_ptr<llvm::Module> module = translate(*lowered.module, ctx, *tm, dump);
    const std::string &entry = lowered.signature.name;
    std::vector<std::set<std::string>> pieces{{}};
    if (!dump.wants("llvm") && !dump.wants("asm"))
      pieces = partitionModule(*module, compileThreads());
    if (pieces.size() > 1) {
      StageTimer parallel("opt + codegen, " + std::to_string(pieces.size()) + " threads", dump.report);
      objects = compileInPieces(*module, pieces, optLevel, entry);
    } else {
      optimizeAndDump(*module, *tm, optLevel, dump);
      addPackedEntry(*module, entry);
      StageTimer codegen("code generation", dump.report);
      objects.push_back(emitInPlace(*module, *tm, false));
    }
  }
  return {lowered.signature, std::move(objects)};
}

Executable jitCompile(ModuleOp graphModule, const DumpConfig &dump, int optLevel, Mode mode) {
  ObjectCacheStats &stats = objectCacheStats();
  ObjectCache cache = dump.cache ? ObjectCache::fromEnvironment() : ObjectCache();
  // This machine and its thread count: what the key covers and what the
  // GEMMs' units are cut for, one reading for both.
  const CacheTarget host = hostTarget();
  std::string key;
  if (cache.enabled()) {
    // Dumps and reports need the stages to run: then the cache is only
    // written (the report says so, with the time of computing the key).
    bool serve = !dump.wantsAnything();
    StageTimer lookup(serve ? "cache lookup: miss" : "cache: not used", dump.report);
    key = objectCacheKey(graphModule, mode, optLevel, host);
    if (serve) {
      if (std::optional<CachedObject> entry = cache.load(key)) {
        try {
          Executable exe = loadObject(entry->objects, entry->signature);
          lookup.stage = "cache lookup: hit";
          ++stats.hits;
          return exe;
        } catch (const Error &e) {
          std::fprintf(stderr, "soma: warning: cannot load the compile cache entry %s (%s); recompiling\n",
                       cache.path(key).c_str(), e.what());
          cache.remove(key);
          ++stats.rejected;
        }
      }
      ++stats.misses;
    }
  }
  ++stats.compiles;
  // Out of this process when nothing is dumped or reported: the compiler's
  // memory goes back to the system when the worker exits (see
  // compileInWorker), and a crash in it is an error, not the end of the
  // process.
  std::optional<CachedObject> compiled;
  if (dump.worker && !dump.wantsAnything())
    compiled = compileInWorker(graphModule, mode, optLevel, host.threads);
  if (compiled)
    ++stats.in_worker;
  else
    compiled = compileObjects(graphModule, dump, optLevel, mode, host.threads);
  if (cache.enabled()) {
    StageTimer store("cache store", dump.report);
    cache.store(key, *compiled);
  }
  StageTimer link("JIT link", dump.report);
  return loadObject(compiled->objects, compiled->signature);
}

//===----------------------------------------------------------------------===//
// AOT
//===----------------------------------------------------------------------===//

std::string cIdentifier(const std::string &name) {
  std::string s;
  for (char c : name)
    s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0])))
    s = "_" + s;
  return s;
}

static std::string upper(std::string s) {
  for (char &c : s)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

static const char *cType(DType dt) {
  switch (dt) {
  case DType::f32:
    return "float";
  case DType::i32:
    return "int32_t";
  case DType::i64:
    return "int64_t";
  }
  return "void";
}

std::string aotHeader(const Signature &sig, const std::vector<size_t> &offsets,
                      uint64_t headerBytes, const std::string &weightsFile) {
  std::string fn = cIdentifier(sig.name), FN = upper(fn);
  std::set<std::string> used{"workspace", "path"};
  auto argName = [&](const std::string &name) {
    std::string id = cIdentifier(name);
    std::string unique = id;
    for (int k = 1; used.count(unique); ++k)
      unique = id + "_" + std::to_string(k);
    used.insert(unique);
    return unique;
  };
  std::vector<std::string> inNames, paramNames, outNames;
  for (auto &s : sig.inputs)
    inNames.push_back(argName(s.name));
  for (auto &s : sig.params)
    paramNames.push_back(argName(s.name));
  for (auto &s : sig.outputs)
    outNames.push_back(argName(s.name));

  std::ostringstream h;
  auto spec = [](const TensorSpec &s) { return std::string(dtype_name(s.dtype)) + shape_str(s.shape); };
  h << "/* " << fn << ".h: generated by soma for the graph \"" << sig.name << "\". Do not edit.\n"
    << " *\n"
    << " * " << fn << "() runs the compiled graph. Every argument is a plain pointer\n"
    << " * to a dense row-major array: the inputs, then the parameters (load them\n"
    << " * with " << fn << "_load_weights), then the outputs, then a workspace of\n"
    << " * " << FN << "_WORKSPACE_BYTES bytes aligned to " << FN << "_WORKSPACE_ALIGNMENT.\n"
    << " * Link the object with libomp (-lomp) and libm. Calls are not reentrant\n"
    << " * on the same workspace. The code keeps scratch on the stack: the calling\n"
    << " * thread and each OpenMP worker need " << FN << "_STACK_BYTES of free stack\n"
    << " * (a program's main thread has 8 MiB on Debian, libomp's workers\n"
    << " * OMP_STACKSIZE). On x86-64, unless compiled with --keep-denormals\n"
    << " * (CompileOptions::flush_denormals false), every thread runs its part\n"
    << " * with denormal floats flushed to zero (MXCSR's FTZ and DAZ), and gets\n"
    << " * its own MXCSR back when it leaves.\n"
    << " */\n"
    << "#ifndef SOMA_AOT_" << FN << "_H\n#define SOMA_AOT_" << FN << "_H\n\n"
    << "#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n\n"
    << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
    << "#define " << FN << "_WORKSPACE_BYTES " << std::max<int64_t>(sig.workspace_bytes, 0) << "\n"
    << "#define " << FN << "_WORKSPACE_ALIGNMENT 64\n"
    << "#define " << FN << "_STACK_BYTES " << std::max<int64_t>(sig.stack_bytes, 0) << "\n\n";
  auto numel = [](const TensorSpec &s) { return soma::numel(s.shape); };
  auto describe = [&](const char *role, const TensorSpec &s, const std::string &id) {
    std::string shape = "{";
    for (size_t d = 0; d < s.shape.size(); ++d)
      shape += (d ? ", " : "") + std::to_string(s.shape[d]);
    shape += s.shape.empty() ? "1}" : "}";
    std::string M = FN + "_" + upper(id);
    h << "/* " << role << " \"" << s.name << "\": " << spec(s) << " */\n"
      << "#define " << M << "_NUMEL " << numel(s) << "\n"
      << "#define " << M << "_RANK " << s.shape.size() << "\n"
      << "#define " << M << "_SHAPE " << shape << "\n";
  };
  for (size_t i = 0; i < sig.inputs.size(); ++i)
    describe("input", sig.inputs[i], inNames[i]);
  for (size_t i = 0; i < sig.params.size(); ++i)
    describe("parameter", sig.params[i], paramNames[i]);
  for (size_t i = 0; i < sig.outputs.size(); ++i)
    describe("output", sig.outputs[i], outNames[i]);

  h << "\nvoid " << fn << "(";
  std::vector<std::string> args;
  for (size_t i = 0; i < sig.inputs.size(); ++i)
    args.push_back(std::string("const ") + cType(sig.inputs[i].dtype) + " *" + inNames[i]);
  for (size_t i = 0; i < sig.params.size(); ++i)
    args.push_back(std::string("const ") + cType(sig.params[i].dtype) + " *" + paramNames[i]);
  for (size_t i = 0; i < sig.outputs.size(); ++i)
    args.push_back(std::string(cType(sig.outputs[i].dtype)) + " *" + outNames[i]);
  args.push_back("void *workspace");
  for (size_t i = 0; i < args.size(); ++i)
    h << (i ? ",\n    " : "") << args[i];
  h << ");\n\n";

  // The weights loader: reads each parameter at its fixed offset in the
  // safetensors file written together with this header.
  h << "/* The weights file written with this header (safetensors; its JSON header\n"
    << " * is " << headerBytes << " bytes long). */\n"
    << "#define " << FN << "_WEIGHTS_FILE \"" << std::filesystem::path(weightsFile).filename().string() << "\"\n\n"
    << "/* Reads the parameters from the weights file into the given buffers\n"
    << " * (each " << FN << "_<NAME>_NUMEL elements). Returns 0 on success, -1 after\n"
    << " * printing the reason to stderr. */\n"
    << "static inline int " << fn << "_load_weights(const char *path";
  for (size_t i = 0; i < sig.params.size(); ++i)
    h << ",\n    " << cType(sig.params[i].dtype) << " *" << paramNames[i];
  h << ") {\n"
    << "  FILE *f = fopen(path, \"rb\");\n"
    << "  unsigned char len[8];\n"
    << "  uint64_t n = 0;\n"
    << "  int i;\n"
    << "  if (!f) {\n"
    << "    fprintf(stderr, \"" << fn << ": cannot open weights file %s\\n\", path);\n"
    << "    return -1;\n"
    << "  }\n"
    << "  if (fread(len, 1, 8, f) != 8) {\n"
    << "    fprintf(stderr, \"" << fn << ": %s is truncated\\n\", path);\n"
    << "    fclose(f);\n"
    << "    return -1;\n"
    << "  }\n"
    << "  for (i = 0; i < 8; ++i)\n"
    << "    n |= (uint64_t)len[i] << (8 * i);\n"
    << "  if (n != " << headerBytes << "u) {\n"
    << "    fprintf(stderr, \"" << fn << ": %s was not written with this header\\n\", path);\n"
    << "    fclose(f);\n"
    << "    return -1;\n"
    << "  }\n";
  for (size_t i = 0; i < sig.params.size(); ++i) {
    size_t bytes = static_cast<size_t>(numel(sig.params[i])) * dtype_size(sig.params[i].dtype);
    h << "  if (fseek(f, " << offsets[i] << "L, SEEK_SET) != 0 || fread(" << paramNames[i]
      << ", 1, " << bytes << "u, f) != " << bytes << "u) {\n"
      << "    fprintf(stderr, \"" << fn << ": %s is truncated (parameter " << sig.params[i].name
      << ")\\n\", path);\n"
      << "    fclose(f);\n"
      << "    return -1;\n"
      << "  }\n";
  }
  h << "  fclose(f);\n  return 0;\n}\n\n"
    << "#ifdef __cplusplus\n}\n#endif\n\n#endif\n";
  return h.str();
}

} // namespace soma
