// RUN: soma-opt %s -soma-expand-modes | FileCheck %s --check-prefix=EVAL
// RUN: soma-opt %s -soma-expand-modes=training=true | FileCheck %s --check-prefix=TRAIN

// Inference: normalise with the running statistics, no new results.
// EVAL-LABEL: func.func @bn(
//  EVAL-SAME: -> (tensor<4x3x2x2xf32> {soma.output = "y"})
//      EVAL: %[[VAR:.*]] = soma.reshape %arg4 {shape = array<i64: 1, 3, 1, 1>}
//      EVAL: soma.sqrt
//      EVAL: %[[MEAN:.*]] = soma.reshape %arg3 {shape = array<i64: 1, 3, 1, 1>}
//      EVAL: soma.sub %arg0, %[[MEAN]]
//  EVAL-NOT: soma.reduce_mean
//  EVAL-NOT: soma.batch_norm

// Training: the batch's mean and (biased) variance over (N, H, W); the
// running statistics' new values become soma.update results.
// TRAIN-LABEL: func.func @bn(
//  TRAIN-SAME: -> (tensor<4x3x2x2xf32> {soma.output = "y"}, tensor<3xf32> {soma.update = "bn0.running_mean"}, tensor<3xf32> {soma.update = "bn0.running_var"})
//       TRAIN: %[[M:.*]] = soma.reduce_mean %arg0 {axes = array<i64: 0, 2, 3>, keepdims = true}
//       TRAIN: %[[XC:.*]] = soma.sub %arg0, %[[M]]
//       TRAIN: %[[V:.*]] = soma.reduce_mean %{{.*}} {axes = array<i64: 0, 2, 3>, keepdims = true}
//       TRAIN: soma.stop_gradient %[[M]]
// Unbiased variance for the running estimate: 16 / 15 * momentum 0.1.
//       TRAIN: soma.constant dense<0.106666669> : tensor<f32>
//       TRAIN: soma.stop_gradient %[[V]]
//   TRAIN-NOT: soma.batch_norm
func.func @bn(%x: tensor<4x3x2x2xf32> {soma.input = "x"},
              %g: tensor<3xf32> {soma.param = "bn0.weight", soma.init = {kind = "ones"}},
              %b: tensor<3xf32> {soma.param = "bn0.bias", soma.init = {kind = "zeros"}},
              %m: tensor<3xf32> {soma.param = "bn0.running_mean", soma.init = {kind = "zeros"}, soma.trainable = false},
              %v: tensor<3xf32> {soma.param = "bn0.running_var", soma.init = {kind = "ones"}, soma.trainable = false})
    -> (tensor<4x3x2x2xf32> {soma.output = "y"}) {
  %0 = soma.batch_norm %x, %g, %b, %m, %v : (tensor<4x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<4x3x2x2xf32>
  return %0 : tensor<4x3x2x2xf32>
}
