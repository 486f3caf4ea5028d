//===- SomaDialect.td - The soma dialect --------------------*- tablegen -*-===//
//
// soma is a small, tensor-level dialect: static shapes, value semantics, one
// op per operation of the deep-learning course. Every op infers its result
// type, and shape errors name the op and the operand shapes.
//
//===----------------------------------------------------------------------===//

#ifndef SOMA_DIALECT_TD
#define SOMA_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"

def Soma_Dialect : Dialect {
  let name = "soma";
  let cppNamespace = "::soma::ir";
  let summary = "Static-shaped tensor operations for deep learning";
  let description = [{
    The soma dialect holds the graph that the builder DSL produces. All
    tensors are ranked and statically shaped; f32 is the compute type and
    i32/i64 hold labels. A graph is a `func.func` whose arguments carry
    `soma.input` or `soma.param` (plus `soma.init`) attributes and whose
    results carry `soma.output` attributes.
  }];
  let usePropertiesForAttributes = 0;
  let hasConstantMaterializer = 1;
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

#endif // SOMA_DIALECT_TD
