//===- Context.cpp - MLIR contexts and diagnostics for soma ----------------===//

#include "soma/Compiler/Context.h"
#include "soma/Dialect/SomaDialect.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/Extensions/InlinerExtension.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Index/IR/IndexDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/OpenMP/OpenMPDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Conversion/ConvertToLLVM/ToLLVMInterface.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"

#include <filesystem>

using namespace mlir;

namespace soma {

void registerSomaDialects(DialectRegistry &registry) {
  registry.insert<ir::SomaDialect, func::FuncDialect, arith::ArithDialect,
                  math::MathDialect, memref::MemRefDialect, linalg::LinalgDialect,
                  scf::SCFDialect, affine::AffineDialect, cf::ControlFlowDialect,
                  omp::OpenMPDialect, LLVM::LLVMDialect, index::IndexDialect,
                  bufferization::BufferizationDialect, vector::VectorDialect>();
  func::registerInlinerExtension(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerOpenMPDialectTranslation(registry);
}

std::unique_ptr<MLIRContext> createContext() {
  DialectRegistry registry;
  registerSomaDialects(registry);
  auto ctx = std::make_unique<MLIRContext>(registry, MLIRContext::Threading::DISABLED);
  ctx->loadDialect<ir::SomaDialect, func::FuncDialect>();
  return ctx;
}

std::string locationString(Location loc, bool basename) {
  if (auto fused = dyn_cast<FusedLoc>(loc)) {
    for (Location l : fused.getLocations()) {
      std::string s = locationString(l, basename);
      if (!s.empty())
        return s;
    }
    return "";
  }
  if (auto named = dyn_cast<NameLoc>(loc))
    return locationString(named.getChildLoc(), basename);
  if (auto callsite = dyn_cast<CallSiteLoc>(loc))
    return locationString(callsite.getCaller(), basename);
  if (auto file = dyn_cast<FileLineColLoc>(loc)) {
    std::string name = file.getFilename().str();
    if (basename)
      name = std::filesystem::path(name).filename().string();
    return name + ":" + std::to_string(file.getLine()) + ":" +
           std::to_string(file.getColumn());
  }
  return "";
}

DiagnosticCollector::DiagnosticCollector(MLIRContext *ctx, bool withLocations,
                                         bool basename)
    : ctx(ctx), withLocations(withLocations), basename(basename) {
  id = ctx->getDiagEngine().registerHandler([this](Diagnostic &diag) {
    if (diag.getSeverity() != DiagnosticSeverity::Error)
      return success();
    std::string message = diag.str();
    // The verifier repeats a failed type inference generically after the
    // op's own message; the op's message says everything.
    if (!text.empty() && message.find("failed to infer returned types") != std::string::npos)
      return success();
    std::string where = this->withLocations ? locationString(diag.getLocation(), this->basename) : "";
    if (!text.empty())
      text += "\n";
    text += where.empty() ? message : where + ": " + message;
    for (Diagnostic &note : diag.getNotes())
      if (note.str().rfind("see current operation", 0) != 0)
        text += "\n  note: " + note.str();
    return success();
  });
}

DiagnosticCollector::~DiagnosticCollector() { ctx->getDiagEngine().eraseHandler(id); }

} // namespace soma
