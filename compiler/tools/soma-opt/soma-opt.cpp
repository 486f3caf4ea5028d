//===- soma-opt.cpp - mlir-opt with soma's dialect and passes --------------===//

#include "soma/Compiler/Context.h"
#include "soma/Dialect/Passes.h"

#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  soma::registerSomaDialects(registry);
  mlir::registerAllPasses();
  soma::registerSomaPasses();
  soma::registerSomaPipelines();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "soma optimizer driver\n", registry));
}
