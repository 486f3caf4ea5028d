//===- soma/training.h - Compiling a graph for training --------------*- C++ -*-===//
#pragma once

#include "soma/compile.h"
#include "soma/graph.h"
#include "soma/optim.h"
#include "soma/train.h"

namespace soma {

/// Options of compile_training.
/// Activation checkpointing: instead of keeping every forward value the
/// backward pass needs, recompute the cheap ones (elementwise ops:
/// activations, the batch-norm normalisation, bias adds, ...) just before
/// the backward pass reads them. Matmuls, convolutions and reductions are
/// never redone, so the extra work is a few elementwise passes; the
/// compile report shows the values recomputed, their bytes and
/// the extra FLOPs.
struct Checkpointing {
  bool enabled = false;
  /// Bytes of such values that may stay alive across the forward/backward
  /// boundary; the largest are recomputed first until the rest fit.
  /// 0 recomputes all of them.
  int64_t budget_bytes = 0;
  /// How values are chosen (soma-recompute's policies): chains recompute
  /// every candidate from the values it reads, cones recompute a value
  /// from the non-elementwise values it is made of where that pays. best
  /// plans the step three ways (also without recomputation) and compiles
  /// the smallest workspace arena; the compile report shows all three.
  enum class Policy { best, chains, cones } policy = Policy::best;
};

struct TrainOptions {
  /// The learning rate of each step, from the optimizer's lr.
  optim::Schedule schedule;
  CompileOptions compile;
  Checkpointing checkpointing;
};

/// Compiles the training step of `g` for `loss` (a scalar f32 tensor of g):
/// one call runs forward, backward and the optimizer update, in place on
/// the parameters and optimizer state owned by the returned TrainStep. Also
/// compiles the eval function (forward only) on the same parameters. When
/// the loss is softmax_cross_entropy, both count correct predictions.
TrainStep compile_training(const Graph &g, const Tensor &loss, const optim::Optimizer &opt,
                           const TrainOptions &options = {});

} // namespace soma
