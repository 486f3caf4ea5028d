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

// Training, rank 4: one soma.batch_norm_train, whose mean and (biased)
// variance feed the running statistics' new values, soma.update results.
// TRAIN-LABEL: func.func @bn(
//  TRAIN-SAME: -> (tensor<4x3x2x2xf32> {soma.output = "y"}, tensor<3xf32> {soma.update = "bn0.running_mean"}, tensor<3xf32> {soma.update = "bn0.running_var"})
//       TRAIN: %[[Y:.*]], %[[M:.*]], %[[V:.*]] = soma.batch_norm_train %arg0, %arg1, %arg2 {eps = 1.000000e-05 : f64} : (tensor<4x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<4x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>)
//       TRAIN: soma.stop_gradient %[[M]]
// Unbiased variance for the running estimate: 16 / 15 * momentum 0.1.
//       TRAIN: soma.constant dense<0.106666669> : tensor<f32>
//       TRAIN: soma.stop_gradient %[[V]]
//       TRAIN: return %[[Y]],
//   TRAIN-NOT: soma.batch_norm %
func.func @bn(%x: tensor<4x3x2x2xf32> {soma.input = "x"},
              %g: tensor<3xf32> {soma.param = "bn0.weight", soma.init = {kind = "ones"}},
              %b: tensor<3xf32> {soma.param = "bn0.bias", soma.init = {kind = "zeros"}},
              %m: tensor<3xf32> {soma.param = "bn0.running_mean", soma.init = {kind = "zeros"}, soma.trainable = false},
              %v: tensor<3xf32> {soma.param = "bn0.running_var", soma.init = {kind = "ones"}, soma.trainable = false})
    -> (tensor<4x3x2x2xf32> {soma.output = "y"}) {
  %0 = soma.batch_norm %x, %g, %b, %m, %v : (tensor<4x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<4x3x2x2xf32>
  return %0 : tensor<4x3x2x2xf32>
}

// Training, rank 2 ([N, C]: the channels are columns): the batch's mean and
// (biased) variance over N as reductions.
// TRAIN-LABEL: func.func @bn2d(
//       TRAIN: %[[M:.*]] = soma.reduce_mean %arg0 {axes = array<i64: 0>, keepdims = true}
//       TRAIN: %[[XC:.*]] = soma.sub %arg0, %[[M]]
//       TRAIN: %[[V:.*]] = soma.reduce_mean %{{.*}} {axes = array<i64: 0>, keepdims = true}
// y = xc * (gamma / sqrt(var + eps)) + beta: the per-channel factor first,
// so that the only full-size value the gradient reads is xc.
//       TRAIN: %[[S:.*]] = soma.sqrt
//       TRAIN: %[[F:.*]] = soma.div %{{.*}}, %[[S]] : tensor<1x3xf32>, tensor<1x3xf32>
//       TRAIN: %[[Y:.*]] = soma.mul %[[XC]], %[[F]] : tensor<8x3xf32>, tensor<1x3xf32>
//       TRAIN: soma.add %[[Y]], %{{.*}} : tensor<8x3xf32>, tensor<1x3xf32>
//       TRAIN: soma.stop_gradient %[[M]]
//       TRAIN: soma.stop_gradient %[[V]]
//   TRAIN-NOT: soma.batch_norm
func.func @bn2d(%x: tensor<8x3xf32> {soma.input = "x"},
                %g: tensor<3xf32> {soma.param = "bn1.weight", soma.init = {kind = "ones"}},
                %b: tensor<3xf32> {soma.param = "bn1.bias", soma.init = {kind = "zeros"}},
                %m: tensor<3xf32> {soma.param = "bn1.running_mean", soma.init = {kind = "zeros"}, soma.trainable = false},
                %v: tensor<3xf32> {soma.param = "bn1.running_var", soma.init = {kind = "ones"}, soma.trainable = false})
    -> (tensor<8x3xf32> {soma.output = "y"}) {
  %0 = soma.batch_norm %x, %g, %b, %m, %v : (tensor<8x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<8x3xf32>
  return %0 : tensor<8x3xf32>
}

// Dropout. Inference: the identity. Training: x * step(u - rate) / (1 - rate)
// with u drawn from the state "soma.dropout.step" (one argument, created by
// the first dropout and shared by the second), whose update is step + 1.
// EVAL-LABEL: func.func @drop(
//  EVAL-SAME: %arg0: tensor<2x5xf32> {soma.input = "x"}) -> (tensor<2x5xf32> {soma.output = "y"})
//   EVAL-NOT: soma.random_uniform
//       EVAL: %[[A:.*]] = soma.tanh %arg0
//       EVAL: return %[[A]]
// TRAIN-LABEL: func.func @drop(
//  TRAIN-SAME: %arg0: tensor<2x5xf32> {soma.input = "x"}, %[[S:.*]]: tensor<f32> {soma.state = "soma.dropout.step", soma.state_init = 0.000000e+00 : f64})
//  TRAIN-SAME: -> (tensor<2x5xf32> {soma.output = "y"}, tensor<f32> {soma.update = "soma.dropout.step"})
//       TRAIN: %[[U:.*]] = soma.random_uniform %[[S]] {seed = 7 : i64, shape = array<i64: 2, 5>}
//       TRAIN: %[[R:.*]] = soma.constant dense<2.500000e-01> : tensor<f32>
//       TRAIN: %[[D:.*]] = soma.sub %[[U]], %[[R]]
//       TRAIN: %[[K:.*]] = soma.step %[[D]]
//       TRAIN: %[[SC:.*]] = soma.constant dense<1.33333337> : tensor<f32>
//       TRAIN: %[[M:.*]] = soma.mul %[[K]], %[[SC]]
//       TRAIN: %[[Y:.*]] = soma.mul %arg0, %[[M]]
//       TRAIN: soma.random_uniform %[[S]] {seed = 8 : i64, shape = array<i64: 2, 5>}
//       TRAIN: %[[ONE:.*]] = soma.constant dense<1.000000e+00> : tensor<f32>
//       TRAIN: %[[NEXT:.*]] = soma.add %[[S]], %[[ONE]]
//       TRAIN: return %{{.*}}, %[[NEXT]]
//   TRAIN-NOT: soma.dropout
func.func @drop(%x: tensor<2x5xf32> {soma.input = "x"}) -> (tensor<2x5xf32> {soma.output = "y"}) {
  %0 = soma.dropout %x {rate = 0.25, seed = 7 : i64} : tensor<2x5xf32>
  %1 = soma.tanh %0 : tensor<2x5xf32>
  %2 = soma.dropout %1 {rate = 0.5, seed = 8 : i64} : tensor<2x5xf32>
  return %2 : tensor<2x5xf32>
}
