//===- Pipeline.h - From a soma graph module to machine code -------*- C++ -*-===//
#pragma once

#include "soma/Compiler/ObjectCache.h"
#include "soma/compile.h"
#include "soma/executable.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Target/TargetMachine.h"

#include <memory>
#include <optional>
#include <set>
#include <functional>
#include <string>

namespace soma {

/// Which stages to dump where, resolved from CompileOptions (and the
/// environment). Unknown stage names throw soma::Error listing the known ones.
struct DumpConfig {
  std::set<std::string> stages;
  std::string dir;
  bool printIrAfterAll = false;
  /// Receives the report of the compilation when not null.
  CompileReport *report = nullptr;
  /// May the JIT use the compiled-object cache (CompileOptions::cache)?
  /// It serves from it only when nothing is dumped or reported.
  bool cache = true;
  /// May the JIT compile in a worker process (CompileOptions::worker)? It
  /// does only when nothing is dumped or reported.
  bool worker = true;
  /// Something to dump or report: the stages must really run.
  bool wantsAnything() const { return !stages.empty() || printIrAfterAll || report; }
  bool wants(const std::string &stage) const { return stages.count(stage) > 0; }
  /// Writes `text` to dir/file (creating dir); throws soma::Error on failure.
  void write(const std::string &stage, const std::string &text) const;
  /// The same with the text made only when the stage is dumped (printing a
  /// large module costs seconds).
  void write(const std::string &stage, const std::function<std::string()> &make) const {
    if (wants(stage))
      write(stage, make());
  }
};
DumpConfig makeDumpConfig(const CompileOptions &options);

/// The module as text, with source locations when `debugInfo`.
std::string printModule(mlir::ModuleOp m, bool debugInfo);

/// Runs the passes `build` adds on `m`, printing the IR after each with
/// dump.printIrAfterAll. A failure throws soma::Error with the diagnostics,
/// after "WHAT failed:" when `what` is not null (errors the user caused,
/// such as a non-differentiable op, are reported as they are).
void runPasses(mlir::ModuleOp m, const DumpConfig &dump, const char *what,
               llvm::function_ref<void(mlir::PassManager &)> build);

/// A graph lowered to the LLVM dialect, and the ABI of its kernel.
struct LoweredModule {
  mlir::OwningOpRef<mlir::ModuleOp> module;
  Signature signature;
};

/// The stages of lowerToLLVMDialect up to soma-plan-memory: the module is
/// the planned linalg/memref kernel (dumps up to "memory-picture").
LoweredModule lowerAndPlan(mlir::ModuleOp graphModule, const DumpConfig &dump,
                           Mode mode = Mode::eval, int64_t vectorWidth = 8, int64_t threads = 0);

/// The workspace arena that compiling `graphModule` for this machine would
/// plan (lowerAndPlan on a clone, nothing dumped or reported).
int64_t plannedWorkspaceBytes(mlir::ModuleOp graphModule, Mode mode = Mode::eval);

/// Runs soma-expand-modes (in `mode`), soma-lower-to-linalg (GEMMs for
/// vector registers of `vectorWidth` floats, cut into units for `threads`
/// threads, 0 if unknown), soma-plan-memory and the LLVM lowering on a
/// clone of `graphModule`, dumping as configured. Errors throw soma::Error.
LoweredModule lowerToLLVMDialect(mlir::ModuleOp graphModule, const DumpConfig &dump,
                                 Mode mode = Mode::eval, int64_t vectorWidth = 8, int64_t threads = 0);

/// Floats per vector register of the target: 16 with AVX-512, 8 with AVX,
/// else 4.
int64_t vectorWidthOf(const llvm::TargetMachine &tm);

/// This machine: triple, CPU name and its features (sorted, "+avx2,..."),
/// and the threads OpenMP would use (omp_get_max_threads).
CacheTarget hostTarget();

/// A TargetMachine for `cpu` ("host" = this machine, with its features).
std::unique_ptr<llvm::TargetMachine> createTargetMachine(const std::string &cpu,
                                                         int optLevel);

/// Translates to LLVM IR and optimises it for `tm`; dumps "llvm" and "asm".
std::unique_ptr<llvm::Module> translateAndOptimize(mlir::ModuleOp llvmDialect,
                                                   llvm::LLVMContext &ctx,
                                                   llvm::TargetMachine &tm, int optLevel,
                                                   const DumpConfig &dump);

/// Emits an object or assembly file for `module` (which is not modified).
std::string emitMachineCode(llvm::Module &module, llvm::TargetMachine &tm, bool assembly);

/// Lowers and compiles `graphModule` into relocatable objects for this
/// machine (GEMMs cut into units for `threads` threads), dumping and
/// reporting as configured; no cache, nothing loaded.
CachedObject compileObjects(mlir::ModuleOp graphModule, const DumpConfig &dump, int optLevel,
                            Mode mode, int64_t threads);

/// compileObjects(graphModule, {}, ...) in a new process, soma-jit-worker:
/// the module goes to it as MLIR bytecode, the objects come back. The
/// worker is $SOMA_JIT_WORKER, else the soma-jit-worker next to libsoma.so;
/// SOMA_JIT_WORKER=0 turns workers off. Gives nothing (compile in this
/// process) when there is no worker or it is from another build of soma;
/// a compile error in the worker throws it as soma::Error, and so does a
/// worker that crashes, is killed, ends without a reply or sends a bad
/// one, or, named by $SOMA_JIT_WORKER, cannot be started.
std::optional<CachedObject> compileInWorker(mlir::ModuleOp graphModule, Mode mode, int optLevel,
                                            int64_t threads);

/// plannedWorkspaceBytes(graphModule, mode) in soma-jit-worker, as
/// compileInWorker (nothing when there is no worker).
std::optional<int64_t> planInWorker(mlir::ModuleOp graphModule, Mode mode);

/// soma-jit-worker's main: one request from stdin, its reply to stdout.
int jitWorkerMain();

/// JIT-compiles a graph module into an Executable. With dump.cache and the
/// cache enabled (ObjectCache::fromEnvironment) the object code is looked up
/// in and stored to the compiled-object cache; it is served from there only
/// when nothing is to be dumped or reported.
Executable jitCompile(mlir::ModuleOp graphModule, const CompileOptions &options);
/// Marks a graph module kKeepDenormalsAttr: its kernels keep the caller's
/// handling of denormals (CompileOptions::flush_denormals false).
void markKeepingDenormals(mlir::ModuleOp m);
/// A copy of the graph module, marked so (the user's graph stays as built).
mlir::OwningOpRef<mlir::ModuleOp> keepingDenormals(mlir::ModuleOp graphModule);
Executable jitCompile(mlir::ModuleOp graphModule, const DumpConfig &dump, int optLevel,
                      Mode mode = Mode::eval);

/// A C identifier made of `name` (other characters become '_').
std::string cIdentifier(const std::string &name);

/// The C header for an AOT-compiled kernel (see compile_aot): `offsets` are
/// the parameters' data offsets in the weights file, whose JSON header is
/// `headerBytes` long.
std::string aotHeader(const Signature &sig, const std::vector<size_t> &offsets,
                      uint64_t headerBytes, const std::string &weightsFile);

} // namespace soma
