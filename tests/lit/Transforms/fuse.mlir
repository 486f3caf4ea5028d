// RUN: soma-opt %s -split-input-file -soma-fuse | FileCheck %s

// A chain: bias add (broadcast input), ReLU, scale by a splat constant.
// One kernel; the constant is copied in; only the last value leaves it.
// CHECK-LABEL: func.func @chain(
//  CHECK-NEXT: %[[F:.*]] = soma.fusion "elementwise"(%arg0, %arg1) : (tensor<4x3xf32>, tensor<3xf32>) -> tensor<4x3xf32> {
//  CHECK-NEXT: ^bb0(%[[X:.*]]: tensor<4x3xf32>, %[[B:.*]]: tensor<3xf32>):
//  CHECK-NEXT:   %[[C:.*]] = soma.constant dense<2.000000e+00> : tensor<f32>
//  CHECK-NEXT:   %[[A:.*]] = soma.add %[[X]], %[[B]]
//  CHECK-NEXT:   %[[R:.*]] = soma.relu %[[A]]
//  CHECK-NEXT:   %[[M:.*]] = soma.mul %[[R]], %[[C]]
//  CHECK-NEXT:   soma.yield %[[M]] : tensor<4x3xf32>
//  CHECK-NEXT: }
//  CHECK-NEXT: return %[[F]]
func.func @chain(%x: tensor<4x3xf32>, %b: tensor<3xf32>) -> tensor<4x3xf32> {
  %c = soma.constant dense<2.0> : tensor<f32>
  %0 = soma.add %x, %b : tensor<4x3xf32>, tensor<3xf32>
  %1 = soma.relu %0 : tensor<4x3xf32>
  %2 = soma.mul %1, %c : tensor<4x3xf32>, tensor<f32>
  return %2 : tensor<4x3xf32>
}

// -----

// An intermediate value used after the group (as the backward pass uses
// the pre-activation) becomes a second result.
// CHECK-LABEL: func.func @multi_output(
//       CHECK: %[[F:.*]]:2 = soma.fusion "elementwise"(%arg0, %arg1) : (tensor<8xf32>, tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>)
//       CHECK:   soma.yield %{{.*}}, %{{.*}} : tensor<8xf32>, tensor<8xf32>
//       CHECK: %[[S:.*]] = soma.reduce_sum %[[F]]#0
//       CHECK: return %[[F]]#1, %[[S]]
func.func @multi_output(%x: tensor<8xf32>, %y: tensor<8xf32>) -> (tensor<8xf32>, tensor<f32>) {
  %0 = soma.add %x, %y : tensor<8xf32>, tensor<8xf32>
  %1 = soma.tanh %0 : tensor<8xf32>
  %2 = soma.reduce_sum %0 {axes = array<i64: 0>} : tensor<8xf32> -> tensor<f32>
  return %1, %2 : tensor<8xf32>, tensor<f32>
}

// -----

// Not fusable: the reduction reads exp(x) before the multiplication that
// needs the reduction's result (softmax's shape), so no single position
// can compute both elementwise ops.
// CHECK-LABEL: func.func @blocked(
//   CHECK-NOT: soma.fusion
//       CHECK: soma.exp
//       CHECK: soma.reduce_sum
//       CHECK: soma.div
func.func @blocked(%x: tensor<8xf32>) -> tensor<8xf32> {
  %0 = soma.exp %x : tensor<8xf32>
  %1 = soma.reduce_sum %0 {axes = array<i64: 0>} : tensor<8xf32> -> tensor<f32>
  %2 = soma.div %0, %1 : tensor<8xf32>, tensor<f32>
  return %2 : tensor<8xf32>
}

// -----

// Different shapes are different kernels: the [4] chain and the [] chain
// each become one fusion; the [4, 2] op reads the [4] result.
// CHECK-LABEL: func.func @shapes(
//       CHECK: %[[V:.*]] = soma.fusion "elementwise"(%arg0) : (tensor<4xf32>) -> tensor<4xf32>
//       CHECK: %[[S:.*]] = soma.fusion "elementwise"(%arg1) : (tensor<f32>) -> tensor<f32>
//       CHECK: soma.reshape %[[V]]
//       CHECK: soma.mul
//   CHECK-NOT: soma.fusion
func.func @shapes(%v: tensor<4xf32>, %s: tensor<f32>, %m: tensor<4x2xf32>) -> (tensor<4x2xf32>, tensor<f32>) {
  %0 = soma.exp %v : tensor<4xf32>
  %1 = soma.neg %0 : tensor<4xf32>
  %2 = soma.sqrt %s : tensor<f32>
  %3 = soma.log %2 : tensor<f32>
  %4 = soma.reshape %1 {shape = array<i64: 4, 1>} : tensor<4xf32> -> tensor<4x1xf32>
  %5 = soma.mul %m, %4 : tensor<4x2xf32>, tensor<4x1xf32>
  return %5, %3 : tensor<4x2xf32>, tensor<f32>
}

// -----

// Two chains that meet (an Adam-like update: both moments, then the step)
// merge into one kernel with the three new values as results.
// CHECK-LABEL: func.func @update(
//       CHECK: %[[F:.*]]:3 = soma.fusion "elementwise"(%arg1, %arg0, %arg2, %arg3) : (tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>) -> (tensor<16xf32>, tensor<16xf32>, tensor<16xf32>)
//   CHECK-NOT: soma.fusion
//       CHECK: return %[[F]]#0, %[[F]]#1, %[[F]]#2
func.func @update(%g: tensor<16xf32>, %m: tensor<16xf32>, %v: tensor<16xf32>, %w: tensor<16xf32>)
    -> (tensor<16xf32>, tensor<16xf32>, tensor<16xf32>) {
  %b1 = soma.constant dense<0.9> : tensor<f32>
  %b2 = soma.constant dense<0.999> : tensor<f32>
  %0 = soma.mul %b1, %m : tensor<f32>, tensor<16xf32>
  %1 = soma.add %0, %g : tensor<16xf32>, tensor<16xf32>
  %2 = soma.mul %g, %g : tensor<16xf32>, tensor<16xf32>
  %3 = soma.mul %b2, %v : tensor<f32>, tensor<16xf32>
  %4 = soma.add %3, %2 : tensor<16xf32>, tensor<16xf32>
  %5 = soma.sqrt %4 : tensor<16xf32>
  %6 = soma.div %1, %5 : tensor<16xf32>, tensor<16xf32>
  %7 = soma.sub %w, %6 : tensor<16xf32>, tensor<16xf32>
  return %1, %4, %7 : tensor<16xf32>, tensor<16xf32>, tensor<16xf32>
}

// -----

// Ops that are not elementwise are never in a group; a lone elementwise op
// stays as it is.
// CHECK-LABEL: func.func @lonely(
//   CHECK-NOT: soma.fusion
func.func @lonely(%a: tensor<2x3xf32>, %b: tensor<3x4xf32>) -> tensor<3x2xf32> {
  %0 = soma.transpose %a {perm = array<i64: 1, 0>} : tensor<2x3xf32> -> tensor<3x2xf32>
  %1 = soma.relu %0 : tensor<3x2xf32>
  %2 = soma.matmul %1, %a : (tensor<3x2xf32>, tensor<2x3xf32>) -> tensor<3x3xf32>
  %3 = soma.reduce_sum %2 {axes = array<i64: 1>} : tensor<3x3xf32> -> tensor<3xf32>
  return %1 : tensor<3x2xf32>
}

// -----

// A reduction takes in the elementwise kernel that only it reads (the
// variance of batch norm: mean of the squared centred values): one loop
// nest, the squares are never stored. The centred values are also read by
// the normalisation, so that kernel stays separate.
// CHECK-LABEL: func.func @variance(
//       CHECK: %[[XC:.*]] = soma.sub %arg0, %arg1
//       CHECK: %[[V:.*]] = soma.fusion "reduction"(%[[XC]]) : (tensor<4x3xf32>) -> tensor<1x3xf32> {
//  CHECK-NEXT: ^bb0(%[[A:.*]]: tensor<4x3xf32>):
//  CHECK-NEXT:   %[[SQ:.*]] = soma.mul %[[A]], %[[A]]
//  CHECK-NEXT:   %[[M:.*]] = soma.reduce_mean %[[SQ]] {axes = array<i64: 0>, keepdims = true}
//  CHECK-NEXT:   soma.yield %[[M]] : tensor<1x3xf32>
//       CHECK: soma.div %[[XC]], %[[V]]
func.func @variance(%x: tensor<4x3xf32>, %mean: tensor<1x3xf32>) -> tensor<4x3xf32> {
  %0 = soma.sub %x, %mean : tensor<4x3xf32>, tensor<1x3xf32>
  %1 = soma.mul %0, %0 : tensor<4x3xf32>, tensor<4x3xf32>
  %2 = soma.reduce_mean %1 {axes = array<i64: 0>, keepdims = true} : tensor<4x3xf32> -> tensor<1x3xf32>
  %3 = soma.div %0, %2 : tensor<4x3xf32>, tensor<1x3xf32>
  return %3 : tensor<4x3xf32>
}

// -----

// A fused chain read only by a reduction joins it too; a chain whose value
// is also used elsewhere does not.
// CHECK-LABEL: func.func @chain_into_sum(
//       CHECK: soma.fusion "reduction"(%arg0, %arg1) : (tensor<8x5xf32>, tensor<5xf32>) -> tensor<8xf32>
//       CHECK:   soma.add
//       CHECK:   soma.exp
//       CHECK:   soma.reduce_sum
//       CHECK: %[[E:.*]] = soma.exp %arg0
//       CHECK: soma.reduce_max %[[E]]
func.func @chain_into_sum(%x: tensor<8x5xf32>, %b: tensor<5xf32>) -> (tensor<8xf32>, tensor<8xf32>, tensor<8x5xf32>) {
  %0 = soma.add %x, %b : tensor<8x5xf32>, tensor<5xf32>
  %1 = soma.exp %0 : tensor<8x5xf32>
  %2 = soma.reduce_sum %1 {axes = array<i64: 1>} : tensor<8x5xf32> -> tensor<8xf32>
  %3 = soma.exp %x : tensor<8x5xf32>
  %4 = soma.reduce_max %3 {axes = array<i64: 1>} : tensor<8x5xf32> -> tensor<8xf32>
  return %2, %4, %3 : tensor<8xf32>, tensor<8xf32>, tensor<8x5xf32>
}

// -----

// Epilogue: a matmul whose product only an elementwise kernel of its shape
// reads (bias add and ReLU) takes that kernel in: the contraction's
// operands come first, then the kernel's other inputs; the product is not
// a result.
// CHECK-LABEL: func.func @epilogue(
//       CHECK: %[[F:.*]] = soma.fusion "contraction"(%arg0, %arg1, %arg2) : (tensor<4x3xf32>, tensor<3x5xf32>, tensor<5xf32>) -> tensor<4x5xf32> {
//  CHECK-NEXT: ^bb0(%[[X:.*]]: tensor<4x3xf32>, %[[W:.*]]: tensor<3x5xf32>, %[[B:.*]]: tensor<5xf32>):
//  CHECK-NEXT:   %[[P:.*]] = soma.matmul %[[X]], %[[W]]
//  CHECK-NEXT:   %[[A:.*]] = soma.add %[[P]], %[[B]]
//  CHECK-NEXT:   %[[R:.*]] = soma.relu %[[A]]
//  CHECK-NEXT:   soma.yield %[[R]] : tensor<4x5xf32>
//  CHECK-NEXT: }
//  CHECK-NEXT: return %[[F]]
func.func @epilogue(%x: tensor<4x3xf32>, %w: tensor<3x5xf32>, %b: tensor<5xf32>) -> tensor<4x5xf32> {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
  %1 = soma.add %0, %b : tensor<4x5xf32>, tensor<5xf32>
  %2 = soma.relu %1 : tensor<4x5xf32>
  return %2 : tensor<4x5xf32>
}

// -----

// A lone elementwise consumer (the last layer's bias) is an epilogue too,
// and a value the epilogue computes that is used after it (the
// pre-activation, for the backward pass) is a second result.
// CHECK-LABEL: func.func @epilogue_results(
//       CHECK: %[[L:.*]] = soma.fusion "contraction"(%arg0, %arg1, %arg2) : (tensor<4x3xf32>, tensor<3x5xf32>, tensor<5xf32>) -> tensor<4x5xf32>
//       CHECK:   soma.matmul
//  CHECK-NEXT:   soma.add
//  CHECK-NEXT:   soma.yield
//       CHECK: %[[F:.*]]:2 = soma.fusion "contraction"(%arg0, %arg1, %arg2) : (tensor<4x3xf32>, tensor<3x5xf32>, tensor<5xf32>) -> (tensor<4x5xf32>, tensor<4x5xf32>)
//       CHECK:   soma.yield %{{.*}}, %{{.*}} : tensor<4x5xf32>, tensor<4x5xf32>
//       CHECK: return %[[L]], %[[F]]#1, %[[F]]#0
func.func @epilogue_results(%x: tensor<4x3xf32>, %w: tensor<3x5xf32>, %b: tensor<5xf32>)
    -> (tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>) {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
  %1 = soma.add %0, %b : tensor<4x5xf32>, tensor<5xf32>
  %2 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
  %3 = soma.add %2, %b : tensor<4x5xf32>, tensor<5xf32>
  %4 = soma.tanh %3 : tensor<4x5xf32>
  return %1, %4, %3 : tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>
}

// -----

// No epilogue when the product is read twice (it must be stored), or when
// its consumer broadcasts it to a bigger shape (another iteration space).
// CHECK-LABEL: func.func @no_epilogue(
//   CHECK-NOT: "contraction"
//       CHECK: return
func.func @no_epilogue(%x: tensor<4x3xf32>, %w: tensor<3x5xf32>, %y: tensor<2x4x5xf32>)
    -> (tensor<4x5xf32>, tensor<4x5xf32>, tensor<2x4x5xf32>) {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
  %1 = soma.relu %0 : tensor<4x5xf32>
  %2 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
  %3 = soma.add %2, %y : tensor<4x5xf32>, tensor<2x4x5xf32>
  return %0, %1, %3 : tensor<4x5xf32>, tensor<4x5xf32>, tensor<2x4x5xf32>
}

// -----

// A backward epilogue: the ReLU mask applied to the propagated gradient
// (dX = dY W^T, then * step(h)) in the same loop nest.
// CHECK-LABEL: func.func @backward_mask(
//       CHECK: soma.fusion "contraction"(%arg0, %arg1, %arg2)
//  CHECK-NEXT: ^bb0
//  CHECK-NEXT:   soma.matmul %{{.*}}, %{{.*}} {transpose_b = true}
//  CHECK-NEXT:   soma.step
//  CHECK-NEXT:   soma.mul
func.func @backward_mask(%dy: tensor<4x5xf32>, %w: tensor<3x5xf32>, %h: tensor<4x3xf32>) -> tensor<4x3xf32> {
  %0 = soma.matmul %dy, %w {transpose_b = true} : (tensor<4x5xf32>, tensor<3x5xf32>) -> tensor<4x3xf32>
  %1 = soma.step %h : tensor<4x3xf32>
  %2 = soma.mul %0, %1 : tensor<4x3xf32>, tensor<4x3xf32>
  return %2 : tensor<4x3xf32>
}

// -----

// A convolution after soma-decompose: the im2col columns viewed per image
// (reshape, transpose, reshape) and the filter broadcast to every image
// (reshape, broadcast_to, reshape) are gathers that the product reads in
// place, and the bias add and ReLU on the NCHW reshape of the product are
// its epilogue: one kernel; the bias reshape stays outside (an operand).
// CHECK-LABEL: func.func @conv_epilogue(
//       CHECK: %[[B:.*]] = soma.reshape %arg2 {shape = array<i64: 1, 4, 1, 1>}
//  CHECK-NEXT: %[[F:.*]] = soma.fusion "contraction"(%arg1, %arg0, %[[B]]) : (tensor<4x3x3x3xf32>, tensor<2x3x6x6xf32>, tensor<1x4x1x1xf32>) -> tensor<2x4x4x4xf32> {
//  CHECK-NEXT: ^bb0(%[[W:.*]]: tensor<4x3x3x3xf32>, %[[X:.*]]: tensor<2x3x6x6xf32>, %[[BB:.*]]: tensor<1x4x1x1xf32>):
//  CHECK-NEXT:   %[[W4:.*]] = soma.reshape %[[W]]
//  CHECK-NEXT:   %[[WB:.*]] = soma.broadcast_to %[[W4]]
//  CHECK-NEXT:   %[[W3:.*]] = soma.reshape %[[WB]]
//  CHECK-NEXT:   %[[C:.*]] = soma.im2col %[[X]]
//  CHECK-NEXT:   %[[C4:.*]] = soma.reshape %[[C]]
//  CHECK-NEXT:   %[[CT:.*]] = soma.transpose %[[C4]]
//  CHECK-NEXT:   %[[C3:.*]] = soma.reshape %[[CT]]
//  CHECK-NEXT:   %[[P:.*]] = soma.matmul %[[W3]], %[[C3]]
//  CHECK-NEXT:   %[[Y:.*]] = soma.reshape %[[P]] {shape = array<i64: 2, 4, 4, 4>}
//  CHECK-NEXT:   %[[A:.*]] = soma.add %[[Y]], %[[BB]]
//  CHECK-NEXT:   %[[R:.*]] = soma.relu %[[A]]
//  CHECK-NEXT:   soma.yield %[[R]] : tensor<2x4x4x4xf32>
//  CHECK-NEXT: }
//  CHECK-NEXT: return %[[F]]
func.func @conv_epilogue(%x: tensor<2x3x6x6xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>) -> tensor<2x4x4x4xf32> {
  %0 = soma.im2col %x {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : tensor<2x3x6x6xf32> -> tensor<27x32xf32>
  %1 = soma.reshape %0 {shape = array<i64: 1, 27, 2, 16>} : tensor<27x32xf32> -> tensor<1x27x2x16xf32>
  %2 = soma.transpose %1 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x16xf32> -> tensor<2x1x27x16xf32>
  %3 = soma.reshape %2 {shape = array<i64: 2, 27, 16>} : tensor<2x1x27x16xf32> -> tensor<2x27x16xf32>
  %4 = soma.reshape %w {shape = array<i64: 1, 1, 4, 27>} : tensor<4x3x3x3xf32> -> tensor<1x1x4x27xf32>
  %5 = soma.broadcast_to %4 {shape = array<i64: 2, 1, 4, 27>} : tensor<1x1x4x27xf32> -> tensor<2x1x4x27xf32>
  %6 = soma.reshape %5 {shape = array<i64: 2, 4, 27>} : tensor<2x1x4x27xf32> -> tensor<2x4x27xf32>
  %7 = soma.matmul %6, %3 : (tensor<2x4x27xf32>, tensor<2x27x16xf32>) -> tensor<2x4x16xf32>
  %8 = soma.reshape %7 {shape = array<i64: 2, 4, 4, 4>} : tensor<2x4x16xf32> -> tensor<2x4x4x4xf32>
  %9 = soma.reshape %b {shape = array<i64: 1, 4, 1, 1>} : tensor<4xf32> -> tensor<1x4x1x1xf32>
  %10 = soma.add %8, %9 : tensor<2x4x4x4xf32>, tensor<1x4x1x1xf32>
  %11 = soma.relu %10 : tensor<2x4x4x4xf32>
  return %11 : tensor<2x4x4x4xf32>
}

// -----

// The filter gradient dY x im2col(x)^T: dY channel-major ([N, K, H, W]
// transposed to [K, N, H, W], viewed [1, K, N*H*W]) is a gather too, so the
// kernel reads dY where it is; the product's reshape to the filter shape
// is left outside (no epilogue to take in).
// CHECK-LABEL: func.func @filter_grad(
//       CHECK: %[[F:.*]] = soma.fusion "contraction"(%arg0, %arg1) : (tensor<2x4x4x4xf32>, tensor<2x3x6x6xf32>) -> tensor<1x4x27xf32> {
//  CHECK-NEXT: ^bb0
//  CHECK-NEXT:   soma.transpose %{{.*}} {perm = array<i64: 1, 0, 2, 3>}
//  CHECK-NEXT:   soma.reshape
//  CHECK-NEXT:   soma.im2col
//  CHECK-NEXT:   soma.reshape
//  CHECK-NEXT:   soma.matmul %{{.*}}, %{{.*}} {transpose_b = true}
//  CHECK-NEXT:   soma.yield
//  CHECK-NEXT: }
//  CHECK-NEXT: %[[R:.*]] = soma.reshape %[[F]] {shape = array<i64: 4, 3, 3, 3>}
//  CHECK-NEXT: return %[[R]]
func.func @filter_grad(%dy: tensor<2x4x4x4xf32>, %x: tensor<2x3x6x6xf32>) -> tensor<4x3x3x3xf32> {
  %0 = soma.transpose %dy {perm = array<i64: 1, 0, 2, 3>} : tensor<2x4x4x4xf32> -> tensor<4x2x4x4xf32>
  %1 = soma.reshape %0 {shape = array<i64: 1, 4, 32>} : tensor<4x2x4x4xf32> -> tensor<1x4x32xf32>
  %2 = soma.im2col %x {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : tensor<2x3x6x6xf32> -> tensor<27x32xf32>
  %3 = soma.reshape %2 {shape = array<i64: 1, 27, 32>} : tensor<27x32xf32> -> tensor<1x27x32xf32>
  %4 = soma.matmul %1, %3 {transpose_b = true} : (tensor<1x4x32xf32>, tensor<1x27x32xf32>) -> tensor<1x4x27xf32>
  %5 = soma.reshape %4 {shape = array<i64: 4, 3, 3, 3>} : tensor<1x4x27xf32> -> tensor<4x3x3x3xf32>
  return %5 : tensor<4x3x3x3xf32>
}

// -----

// Broadcasts are not materialised for elementwise consumers: an operand
// broadcast to the shape that another operand already spans is read
// unbroadcast (the op broadcasts it itself); an op whose only operand is a
// broadcast runs on the small shape and the broadcast moves after it.
// CHECK-LABEL: func.func @broadcasts(
//       CHECK: %[[A:.*]] = soma.add %arg0, %arg1 : tensor<4x3xf32>, tensor<3xf32>
//  CHECK-NEXT: %[[E:.*]] = soma.exp %arg2 : tensor<1x3xf32>
//  CHECK-NEXT: %[[EB:.*]] = soma.broadcast_to %[[E]] {shape = array<i64: 4, 3>}
//  CHECK-NEXT: return %[[A]], %[[EB]]
func.func @broadcasts(%x: tensor<4x3xf32>, %b: tensor<3xf32>, %v: tensor<1x3xf32>) -> (tensor<4x3xf32>, tensor<4x3xf32>) {
  %0 = soma.broadcast_to %b {shape = array<i64: 4, 3>} : tensor<3xf32> -> tensor<4x3xf32>
  %1 = soma.add %x, %0 : tensor<4x3xf32>, tensor<4x3xf32>
  %2 = soma.broadcast_to %v {shape = array<i64: 4, 3>} : tensor<1x3xf32> -> tensor<4x3xf32>
  %3 = soma.exp %2 : tensor<4x3xf32>
  return %1, %3 : tensor<4x3xf32>, tensor<4x3xf32>
}
