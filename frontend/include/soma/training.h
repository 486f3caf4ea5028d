//===- soma/training.h - Compiling a graph for training --------------*- C++ -*-===//
#pragma once

#include "soma/compile.h"
#include "soma/graph.h"
#include "soma/optim.h"
#include "soma/train.h"

namespace soma {

/// Options of compile_training.
struct TrainOptions {
  /// The learning rate of each step, from the optimizer's lr.
  optim::Schedule schedule;
  CompileOptions compile;
};

/// Compiles the training step of `g` for `loss` (a scalar f32 tensor of g):
/// one call runs forward, backward and the optimizer update, in place on
/// the parameters and optimizer state owned by the returned TrainStep. Also
/// compiles the eval function (forward only) on the same parameters. When
/// the loss is softmax_cross_entropy, both count correct predictions.
TrainStep compile_training(const Graph &g, const Tensor &loss, const optim::Optimizer &opt,
                           const TrainOptions &options = {});

} // namespace soma
