//===- GraphImpl.h - What a soma::Graph holds (internal) ----------*- C++ -*-===//
#pragma once

#include "soma/graph.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

#include <map>
#include <memory>
#include <source_location>
#include <string>

namespace soma {

/// A graph is an MLIR module holding one func.func: arguments are inputs and
/// parameters (marked with soma.input / soma.param attributes), results are
/// outputs (soma.output), and the body contains soma ops followed by
/// func.return. The builder inserts before the return.
struct GraphImpl {
  std::unique_ptr<mlir::MLIRContext> ctx;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  mlir::func::FuncOp func;
  std::unique_ptr<mlir::OpBuilder> builder;
  std::string name;
  uint64_t seed = 0;
  Graph *owner = nullptr;
  std::map<std::string, int> counters;

  /// The location of a user's call.
  mlir::Location loc(const std::source_location &where) const;
  mlir::func::ReturnOp returnOp() const;
  mlir::Value value(const Tensor &t) const {
    return mlir::Value::getFromOpaquePointer(t.handle());
  }
  Tensor tensor(mlir::Value v) { return Tensor(this, v.getAsOpaquePointer()); }
};

/// "mlp.cpp:14" for error messages.
std::string where(const std::source_location &loc);

/// Creates a soma op by name: infers its result type (a failure becomes a
/// soma::Error "file:line: <op>: <message>"), creates and verifies it.
Tensor buildOp(GraphImpl *g, llvm::StringRef opName, llvm::ArrayRef<mlir::Value> operands,
               llvm::ArrayRef<mlir::NamedAttribute> attrs, const std::source_location &loc);

/// The graph function of a module: the one defined func.func.
mlir::func::FuncOp graphFunction(mlir::ModuleOp module);

} // namespace soma
