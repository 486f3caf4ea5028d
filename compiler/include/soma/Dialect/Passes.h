//===- Passes.h - soma's passes -----------------------------------*- C++ -*-===//
#pragma once

#include "soma/Compiler/Lowering.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace soma {

#define GEN_PASS_DECL
#include "soma/Dialect/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "soma/Dialect/Passes.h.inc"

/// Registers the named pipeline `soma-lower-to-llvm` (everything after
/// soma-plan-memory down to the LLVM dialect).
void registerSomaPipelines();

/// Adds the passes that take planned linalg/memref kernels to the LLVM
/// dialect (loops, OpenMP, LLVM conversion).
void buildLowerToLLVMPipeline(mlir::OpPassManager &pm);

} // namespace soma
