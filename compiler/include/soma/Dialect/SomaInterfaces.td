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

#endif // SOMA_INTERFACES_TD
