//===- Training.h - Building the training and eval functions ------*- C++ -*-===//
#pragma once

#include "soma/graph.h"
#include "soma/optim.h"
#include "soma/training.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace soma {

/// The training step (forward, backward, update) and the eval function
/// (forward only) of a graph, as soma IR.
struct TrainingModules {
  mlir::OwningOpRef<mlir::ModuleOp> train, eval;
  bool classification = false; // the loss is softmax_cross_entropy
};

/// With checkpointing (Policy::best) the step is planned three ways; with
/// `useCache` each plan's arena is looked up in, and stored to, the
/// compiled-object cache, and with `useWorker` planned in soma-jit-worker
/// (planInWorker) when there is one.
TrainingModules buildTrainingModules(const Graph &g, const Tensor &loss,
                                     const optim::Optimizer &opt,
                                     const Checkpointing &checkpointing = {}, bool useCache = false,
                                     bool useWorker = false);

} // namespace soma
