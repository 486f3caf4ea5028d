//===- Context.h - MLIR contexts and diagnostics for soma ---------*- C++ -*-===//
#pragma once

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

#include <memory>
#include <string>

namespace soma {

/// Registers every dialect, interface and translation soma uses.
void registerSomaDialects(mlir::DialectRegistry &registry);

/// A context with the soma and func dialects loaded and everything needed
/// for lowering registered. Single-threaded: compilations are small and the
/// machine has few cores.
std::unique_ptr<mlir::MLIRContext> createContext();

/// Collects the error diagnostics emitted while it lives (instead of
/// printing them), so they can become a soma::Error.
class DiagnosticCollector {
public:
  explicit DiagnosticCollector(mlir::MLIRContext *ctx, bool withLocations = true,
                               bool basename = true);
  ~DiagnosticCollector();
  /// All errors so far, one per line: "file:line:col: message" (or just the
  /// message without locations).
  std::string message() const { return text; }
  bool empty() const { return text.empty(); }

private:
  mlir::MLIRContext *ctx;
  mlir::DiagnosticEngine::HandlerID id;
  bool withLocations;
  bool basename;
  std::string text;
};

/// "file:line:col" of a location (the basename of the file), or "" if it has
/// none.
std::string locationString(mlir::Location loc, bool basename = true);

} // namespace soma
