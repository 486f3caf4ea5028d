//===- Interpreter.h - The reference interpreter of soma IR -------*- C++ -*-===//
//
// Evaluates a graph function op by op with plain loops in double precision.
// Written for obviousness, not speed: it is the oracle that every compiled
// result is compared with, and the source of finite-difference gradients.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "soma/array.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <map>
#include <string>
#include <vector>

namespace soma {

/// A value of the interpreter: a dtype, a shape and the elements in
/// row-major order, always held as double (integers exactly).
struct RefTensor {
  DType dtype = DType::f32;
  Shape shape;
  std::vector<double> data;
};

RefTensor toRef(const Array &a);
/// f32 results are rounded to float; integers converted exactly.
Array fromRef(const RefTensor &t);

/// Evaluates `fn` (soma ops and func.return) on `args`, given in the
/// function's argument order, and returns its results. Throws soma::Error if
/// an argument does not match the function type (naming it) or an op is not
/// supported.
std::vector<RefTensor> interpretFunction(mlir::func::FuncOp fn,
                                         const std::vector<RefTensor> &args);

/// Evaluates `fn` with its inputs and parameters given by name (the
/// soma.input / soma.param attributes) and returns the results by their
/// soma.output names. A missing argument throws soma::Error naming it and its
/// type; names `fn` does not have are ignored.
std::map<std::string, RefTensor>
interpretByName(mlir::func::FuncOp fn, const std::map<std::string, RefTensor> &args);

/// Evaluates one soma op on operand values (used by the tests and by
/// interpretFunction).
std::vector<RefTensor> interpretOp(mlir::Operation *op,
                                   const std::vector<RefTensor> &operands);

} // namespace soma
