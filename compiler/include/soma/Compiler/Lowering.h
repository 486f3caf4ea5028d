//===- Lowering.h - Pieces of the soma lowering shared by passes -*- C++ -*-===//
#pragma once

#include "mlir/IR/Builders.h"
#include "mlir/IR/Operation.h"

namespace soma {

/// On an scf.for whose iterations are independent: the iteration points of
/// its whole loop nest. soma-linalg-to-loops parallelises it when that
/// reaches the grain.
inline constexpr const char *kParallelWorkAttr = "soma.parallel_work";

/// Emits the scalar computation of an elementwise soma op on `args` (one f32
/// per operand) and returns the f32 result.
mlir::Value emitElementwiseScalar(mlir::OpBuilder &b, mlir::Location loc,
                                  mlir::Operation *op, mlir::ValueRange args);

} // namespace soma
