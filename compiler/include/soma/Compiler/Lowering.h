//===- Lowering.h - Pieces of the soma lowering shared by passes -*- C++ -*-===//
#pragma once

#include "mlir/IR/Builders.h"
#include "mlir/IR/Operation.h"

namespace soma {

/// True for soma ops computed element by element (with broadcasting).
bool isElementwise(mlir::Operation *op);

/// Emits the scalar computation of an elementwise soma op on `args` (one f32
/// per operand) and returns the f32 result.
mlir::Value emitElementwiseScalar(mlir::OpBuilder &b, mlir::Location loc,
                                  mlir::Operation *op, mlir::ValueRange args);

} // namespace soma
