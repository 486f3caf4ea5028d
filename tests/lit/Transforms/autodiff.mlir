// RUN: soma-opt %s -soma-autodiff -split-input-file -verify-diagnostics | FileCheck %s

// A dense layer with a fused cross-entropy: the gradients of W and b come
// from the fused (softmax - onehot)/N op and matmul/add VJPs, and are
// appended as results marked soma.grad.
// CHECK-LABEL: func.func @dense_ce(
//  CHECK-SAME: -> (tensor<f32> {soma.loss, soma.output = "loss"}, tensor<3x2xf32> {soma.grad = "w"}, tensor<2xf32> {soma.grad = "b"})
//       CHECK: %[[LOGITS:.*]] = soma.add
//       CHECK: %[[LOSS:.*]] = soma.softmax_cross_entropy %[[LOGITS]], %arg3
//       CHECK: %[[ONE:.*]] = soma.constant dense<1.000000e+00> : tensor<f32>
//       CHECK: %[[DL:.*]] = soma.softmax_cross_entropy_grad %[[LOGITS]], %arg3, %[[ONE]]
//       CHECK: %[[DB:.*]] = soma.reduce_sum %[[DL]] {axes = array<i64: 0>, keepdims = true}
//       CHECK: %[[DB1:.*]] = soma.reshape %[[DB]] {shape = array<i64: 2>}
// The gradient of x (an input nobody differentiates) is dead and removed.
//   CHECK-NOT: transpose_b = true
//       CHECK: %[[DW:.*]] = soma.matmul %arg0, %[[DL]] {transpose_a = true}
//       CHECK: return %[[LOSS]], %[[DW]], %[[DB1]]
func.func @dense_ce(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x2xf32> {soma.param = "w", soma.init = {kind = "zeros"}},
                    %b: tensor<2xf32> {soma.param = "b", soma.init = {kind = "zeros"}}, %y: tensor<4xi32> {soma.input = "y"})
    -> (tensor<f32> {soma.output = "loss", soma.loss}) {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %1 = soma.add %0, %b : tensor<4x2xf32>, tensor<2xf32>
  %2 = soma.softmax_cross_entropy %1, %y : (tensor<4x2xf32>, tensor<4xi32>) -> tensor<f32>
  return %2 : tensor<f32>
}

// -----

// A value used twice receives the sum of both contributions; an input asks
// for its gradient with soma.requires_grad.
// CHECK-LABEL: func.func @reuse(
//  CHECK-SAME: -> (tensor<f32> {soma.loss, soma.output = "l"}, tensor<3xf32> {soma.grad = "x"})
//       CHECK: %[[SQ:.*]] = soma.mul %arg0, %arg0
//       CHECK: %[[G1:.*]] = soma.mul %{{.*}}, %arg0
//       CHECK: %[[G2:.*]] = soma.mul %{{.*}}, %arg0
//       CHECK: %[[SUM:.*]] = soma.add %[[G1]], %[[G2]]
//       CHECK: return %{{.*}}, %[[SUM]]
func.func @reuse(%x: tensor<3xf32> {soma.input = "x", soma.requires_grad}) -> (tensor<f32> {soma.output = "l", soma.loss}) {
  %0 = soma.mul %x, %x : tensor<3xf32>, tensor<3xf32>
  %1 = soma.reduce_sum %0 {axes = array<i64: 0>} : tensor<3xf32> -> tensor<f32>
  return %1 : tensor<f32>
}

// -----

// stop_gradient cuts the flow; a parameter the loss does not depend on gets
// a zero gradient.
// CHECK-LABEL: func.func @stop(
//       CHECK: %[[ZERO:.*]] = soma.constant dense<0.000000e+00> : tensor<2xf32>
//       CHECK: return %{{.*}}, %{{.*}}, %[[ZERO]]
func.func @stop(%w: tensor<2xf32> {soma.param = "w", soma.init = {kind = "zeros"}},
                %v: tensor<2xf32> {soma.param = "v", soma.init = {kind = "zeros"}}) -> (tensor<f32> {soma.output = "l", soma.loss}) {
  %0 = soma.stop_gradient %v : tensor<2xf32>
  %1 = soma.mul %w, %0 : tensor<2xf32>, tensor<2xf32>
  %2 = soma.reduce_sum %1 {axes = array<i64: 0>} : tensor<2xf32> -> tensor<f32>
  return %2 : tensor<f32>
}

// -----

// A gradient that would flow through a non-differentiable op is an error at
// that op.
func.func @step(%w: tensor<2xf32> {soma.param = "w", soma.init = {kind = "zeros"}}) -> (tensor<f32> {soma.output = "l", soma.loss}) {
  // expected-error @+1 {{'soma.step' is not differentiable, but the gradient of the loss flows through it}}
  %0 = soma.step %w : tensor<2xf32>
  %1 = soma.reduce_sum %0 {axes = array<i64: 0>} : tensor<2xf32> -> tensor<f32>
  return %1 : tensor<f32>
}

// -----

// The loss must be a scalar.
// expected-error @+1 {{the loss must be a scalar f32 (rank 0), got tensor<2xf32>}}
func.func @vector_loss(%w: tensor<2xf32> {soma.param = "w", soma.init = {kind = "zeros"}}) -> (tensor<2xf32> {soma.output = "l", soma.loss}) {
  %0 = soma.relu %w : tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

// Without a soma.loss result there is nothing to do.
// CHECK-LABEL: func.func @inference(
//  CHECK-SAME: -> (tensor<2xf32> {soma.output = "y"})
//   CHECK-NOT: soma.grad
func.func @inference(%w: tensor<2xf32> {soma.param = "w", soma.init = {kind = "zeros"}}) -> (tensor<2xf32> {soma.output = "y"}) {
  %0 = soma.relu %w : tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

// The input gradient of a stride-1 convolution with at least 16 input
// channels is itself a convolution: dY padded by (k - 1) - pad per side
// ([1, 0, 0, 1] -> [1, 2, 2, 1]) with the filter flipped in both kernel
// axes (a product with the 9 x 9 exchange matrix) and its channel axes
// swapped; no col2im. The filter gradient stays dY x im2col(x)^T.
// CHECK-LABEL: func.func @conv_dx(
//       CHECK: %[[DY:.*]] = soma.broadcast_to
//       CHECK: %[[J:.*]] = soma.constant dense<{{\[\[}}0.000000e+00, {{.*}}1.000000e+00], {{.*}}> : tensor<9x9xf32>
//       CHECK: %[[W2:.*]] = soma.reshape %arg1 {shape = array<i64: 64, 9>}
//       CHECK: %[[FLIP:.*]] = soma.matmul %[[W2]], %[[J]] : (tensor<64x9xf32>, tensor<9x9xf32>) -> tensor<64x9xf32>
//       CHECK: %[[W4:.*]] = soma.reshape %[[FLIP]] {shape = array<i64: 4, 16, 3, 3>}
//       CHECK: %[[WT:.*]] = soma.transpose %[[W4]] {perm = array<i64: 1, 0, 2, 3>} : tensor<4x16x3x3xf32> -> tensor<16x4x3x3xf32>
//       CHECK: %[[DX:.*]] = soma.conv2d %[[DY]], %[[WT]] {dilation = array<i64: 1, 1>, padding = array<i64: 1, 2, 2, 1>, stride = array<i64: 1, 1>} : (tensor<2x4x5x5xf32>, tensor<16x4x3x3xf32>) -> tensor<2x16x6x6xf32>
//   CHECK-NOT: soma.col2im
//       CHECK: return %{{.*}}, %[[DX]], %{{.*}}
func.func @conv_dx(%x: tensor<2x16x6x6xf32> {soma.input = "x", soma.requires_grad}, %w: tensor<4x16x3x3xf32> {soma.param = "w", soma.init = {kind = "zeros"}})
    -> (tensor<f32> {soma.output = "l", soma.loss}) {
  %0 = soma.conv2d %x, %w {dilation = array<i64: 1, 1>, padding = array<i64: 1, 0, 0, 1>, stride = array<i64: 1, 1>} : (tensor<2x16x6x6xf32>, tensor<4x16x3x3xf32>) -> tensor<2x4x5x5xf32>
  %1 = soma.reduce_sum %0 {axes = array<i64: 0, 1, 2, 3>} : tensor<2x4x5x5xf32> -> tensor<f32>
  return %1 : tensor<f32>
}

// -----

// With fewer input channels but at least 16 filters (LeNet-5's second
// layer: 6 -> 16, 5 x 5, valid) the input gradient is the transposed
// convolution too, of dY's 16 channels into 6, padded by 4; with fewer
// than 16 of both it stays col2im(W^T x dY).
// CHECK-LABEL: func.func @conv_dx_few_channels(
//       CHECK: %[[DX:.*]] = soma.conv2d %{{.*}}, %{{.*}} {dilation = array<i64: 1, 1>, padding = array<i64: 4, 4, 4, 4>, stride = array<i64: 1, 1>} : (tensor<2x16x4x4xf32>, tensor<6x16x5x5xf32>) -> tensor<2x6x8x8xf32>
//   CHECK-NOT: soma.col2im
//       CHECK: return %{{.*}}, %[[DX]], %{{.*}}
func.func @conv_dx_few_channels(%x: tensor<2x6x8x8xf32> {soma.input = "x", soma.requires_grad}, %w: tensor<16x6x5x5xf32> {soma.param = "w", soma.init = {kind = "zeros"}})
    -> (tensor<f32> {soma.output = "l", soma.loss}) {
  %0 = soma.conv2d %x, %w {dilation = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : (tensor<2x6x8x8xf32>, tensor<16x6x5x5xf32>) -> tensor<2x16x4x4xf32>
  %1 = soma.reduce_sum %0 {axes = array<i64: 0, 1, 2, 3>} : tensor<2x16x4x4xf32> -> tensor<f32>
  return %1 : tensor<f32>
}

// -----

// (Nor with dilation, which no direct path takes.)
// CHECK-LABEL: func.func @conv_dx_dilated(
//       CHECK: %[[DX:.*]] = soma.col2im
//       CHECK: return %{{.*}}, %[[DX]], %{{.*}}
func.func @conv_dx_dilated(%x: tensor<2x6x8x8xf32> {soma.input = "x", soma.requires_grad}, %w: tensor<16x6x3x3xf32> {soma.param = "w", soma.init = {kind = "zeros"}})
    -> (tensor<f32> {soma.output = "l", soma.loss}) {
  %0 = soma.conv2d %x, %w {dilation = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : (tensor<2x6x8x8xf32>, tensor<16x6x3x3xf32>) -> tensor<2x16x4x4xf32>
  %1 = soma.reduce_sum %0 {axes = array<i64: 0, 1, 2, 3>} : tensor<2x16x4x4xf32> -> tensor<f32>
  return %1 : tensor<f32>
}

// -----

// CHECK-LABEL: func.func @conv_dx_col2im(
//       CHECK: %[[DX:.*]] = soma.col2im
//       CHECK: return %{{.*}}, %[[DX]], %{{.*}}
func.func @conv_dx_col2im(%x: tensor<2x6x8x8xf32> {soma.input = "x", soma.requires_grad}, %w: tensor<15x6x5x5xf32> {soma.param = "w", soma.init = {kind = "zeros"}})
    -> (tensor<f32> {soma.output = "l", soma.loss}) {
  %0 = soma.conv2d %x, %w {dilation = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : (tensor<2x6x8x8xf32>, tensor<15x6x5x5xf32>) -> tensor<2x15x4x4xf32>
  %1 = soma.reduce_sum %0 {axes = array<i64: 0, 1, 2, 3>} : tensor<2x15x4x4xf32> -> tensor<f32>
  return %1 : tensor<f32>
}

// -----

// ReLU's gradient masks with step of its output (equal to step of its
// input: both are 0 where x <= 0), so the backward pass keeps the
// activation the next layer reads anyway and not the pre-activation.
// CHECK-LABEL: func.func @relu_mask(
//       CHECK: %[[A:.*]] = soma.add %arg0, %arg1
//       CHECK: %[[R:.*]] = soma.relu %[[A]]
//       CHECK: %[[M:.*]] = soma.step %[[R]] : tensor<3xf32>
//       CHECK: soma.mul %{{.*}}, %[[M]]
//   CHECK-NOT: soma.step %[[A]]
func.func @relu_mask(%w: tensor<3xf32> {soma.param = "w", soma.init = {kind = "zeros"}},
                     %x: tensor<3xf32> {soma.input = "x"}) -> (tensor<f32> {soma.output = "l", soma.loss}) {
  %0 = soma.add %w, %x : tensor<3xf32>, tensor<3xf32>
  %1 = soma.relu %0 : tensor<3xf32>
  %2 = soma.mul %1, %1 : tensor<3xf32>, tensor<3xf32>
  %3 = soma.reduce_sum %2 {axes = array<i64: 0>} : tensor<3xf32> -> tensor<f32>
  return %3 : tensor<f32>
}

// -----

// Batch norm's training form: its gradient is one op, soma.batch_norm_grad,
// of x, dy, the batch's statistics (the forward's second and third
// results) and the scale, and nothing of the formula besides it (no
// square root, division or second reduction); dscale and dshift are the
// parameters' gradients (x is an input: its gradient is not used).
// CHECK-LABEL: func.func @batch_norm_train(
//       CHECK:   %[[Y:.*]], %[[M:.*]], %[[V:.*]] = soma.batch_norm_train %arg0, %arg1, %arg2
//   CHECK-NOT:   soma.sqrt
//   CHECK-NOT:   soma.div
//   CHECK-NOT:   soma.reduce_sum {{.*}}axes = array<i64: 0, 2>
//       CHECK:   %{{.*}}, %[[DG:.*]], %[[DB:.*]] = soma.batch_norm_grad %arg0, %{{.*}}, %[[M]], %[[V]], %arg1 {eps = 1.000000e-05 : f64}
//  CHECK-NEXT:   return %{{.*}}, %[[DG]], %[[DB]]
func.func @batch_norm_train(%x: tensor<2x3x4xf32> {soma.input = "x"},
                            %g: tensor<3xf32> {soma.param = "g", soma.init = {kind = "ones"}},
                            %b: tensor<3xf32> {soma.param = "b", soma.init = {kind = "zeros"}})
    -> (tensor<f32> {soma.output = "l", soma.loss}) {
  %y, %m, %v = soma.batch_norm_train %x, %g, %b {eps = 1.0e-5 : f64} : (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
  %0 = soma.mul %y, %y : tensor<2x3x4xf32>, tensor<2x3x4xf32>
  %1 = soma.reduce_sum %0 {axes = array<i64: 0, 1, 2>} : tensor<2x3x4xf32> -> tensor<f32>
  return %1 : tensor<f32>
}
