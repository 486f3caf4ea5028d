//===- SomaInterfaces.td - Interfaces of soma ops ------------*- tablegen -*-===//

#ifndef SOMA_INTERFACES_TD
#define SOMA_INTERFACES_TD

include "mlir/IR/OpBase.td"

def Soma_VJPOpInterface : OpInterface<"VJPOpInterface"> {
  let description = [{
    A differentiable op: given the gradients of the loss with respect to its
    results, it emits soma ops computing the gradients with respect to its
    operands (the vector-Jacobian product). The soma-autodiff pass calls it
    in reverse program order. Ops without this interface are not
    differentiable; a gradient that would flow through one is an error.
  }];
  let cppNamespace = "::soma::ir";
  let methods = [
    InterfaceMethod<[{
        Emits the VJP at the builder's insertion point. `resultGrads` has one
        gradient per result (same type as the result). Fills `operandGrads`
        with one value per operand, or a null Value where no gradient flows
        (integer operands, stop_gradient).
      }],
      "::mlir::LogicalResult", "buildVJP",
      (ins "::mlir::OpBuilder &":$builder, "::mlir::ValueRange":$resultGrads,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>
  ];
}

def Soma_InPlaceOpInterface : OpInterface<"InPlaceOpInterface"> {
  let description = [{
    An op that may write its result into the buffer of an operand that dies
    at it (no later op reads it): the op reads each element of that operand
    only before, or at the moment, it writes the same element of its
    result, so writing over it loses nothing still needed. Bufferization
    (soma-lower-to-linalg) asks it before reusing a dying temporary, or a
    parameter's buffer for its update, and soma-plan-memory then never
    sees the result as a buffer of its own. Elementwise ops qualify for
    every operand of the result's type (each point is read where it is
    written); softmax, log-softmax and their gradients read a whole row
    (its maximum, its sum) before writing any of it, then each element
    where they write it.
  }];
  let cppNamespace = "::soma::ir";
  let methods = [
    InterfaceMethod<[{
        True if the result may be written into the buffer of operand
        `operand` (of the result's type) when that operand dies here.
      }],
      "bool", "mayWriteOver", (ins "unsigned":$operand), "",
      [{ return true; }]>
  ];
}

#endif // SOMA_INTERFACES_TD
