// soma_models.h - the soma side of the model benchmarks (memory and speed):
// a zoo model's training step (Adam, softmax cross-entropy) and a batch.
#pragma once

#include "speed_common.h"

#include <soma/soma.h>

#include <map>
#include <string>

namespace bench {

/// Compiles the training step of the zoo model `name` at `batch` (seed 1,
/// Adam with default hyper-parameters). `xShape` receives the input shape.
inline soma::TrainStep somaTrainStep(const std::string &name, int64_t batch, soma::Shape *xShape,
                                     soma::TrainOptions options = {}) {
  // The graph (and its MLIR context) is only needed to compile.
  soma::Graph g = soma::zoo::build(name, batch, /*with_loss=*/true, 1);
  *xShape = g.inputs()[0].shape;
  return soma::compile_training(g, g.output_tensor("loss"), soma::optim::Adam{}, options);
}

/// The batch of bench::modelBatch as {"x", "y"} for an input of shape `xShape`.
inline std::map<std::string, soma::Array> somaBatch(const soma::Shape &xShape) {
  soma::Array x(soma::DType::f32, xShape), y(soma::DType::i32, {xShape[0]});
  modelBatch(xShape[0], x.numel() / xShape[0], x.data<float>(), y.data<int32_t>());
  return {{"x", x}, {"y", y}};
}

} // namespace bench
