// RUN: soma-opt %s -split-input-file | soma-opt -split-input-file | FileCheck %s
// RUN: soma-opt %s -split-input-file -mlir-print-op-generic | soma-opt -split-input-file | FileCheck %s
// RUN: soma-opt %s -split-input-file -mlir-print-op-generic | FileCheck %s --check-prefix=GENERIC

// Every soma op parses, verifies and prints back in its custom form, also
// after a trip through the generic form. Attributes equal to their default
// are elided when printing and materialized in the generic form.

// CHECK-LABEL: func.func @unary
//  CHECK-SAME: (%[[X:.*]]: tensor<2x3xf32>)
func.func @unary(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  // CHECK: %[[A:.*]] = soma.neg %[[X]] : tensor<2x3xf32>
  // CHECK: %[[B:.*]] = soma.exp %[[A]] : tensor<2x3xf32>
  // CHECK: %[[C:.*]] = soma.log %[[B]] : tensor<2x3xf32>
  // CHECK: %[[D:.*]] = soma.sqrt %[[C]] : tensor<2x3xf32>
  // CHECK: %[[E:.*]] = soma.abs %[[D]] : tensor<2x3xf32>
  // CHECK: %[[F:.*]] = soma.tanh %[[E]] : tensor<2x3xf32>
  // CHECK: %[[G:.*]] = soma.sigmoid %[[F]] : tensor<2x3xf32>
  // CHECK: %[[H:.*]] = soma.relu %[[G]] : tensor<2x3xf32>
  // CHECK: %[[I:.*]] = soma.softplus %[[H]] : tensor<2x3xf32>
  // CHECK: return %[[I]] : tensor<2x3xf32>
  %0 = soma.neg %x : tensor<2x3xf32>
  %1 = soma.exp %0 : tensor<2x3xf32>
  %2 = soma.log %1 : tensor<2x3xf32>
  %3 = soma.sqrt %2 : tensor<2x3xf32>
  %4 = soma.abs %3 : tensor<2x3xf32>
  %5 = soma.tanh %4 : tensor<2x3xf32>
  %6 = soma.sigmoid %5 : tensor<2x3xf32>
  %7 = soma.relu %6 : tensor<2x3xf32>
  %8 = soma.softplus %7 : tensor<2x3xf32>
  return %8 : tensor<2x3xf32>
}

// -----

// The default alpha (0.01) is elided, a spelled-out default too; another
// alpha is kept.
// CHECK-LABEL: func.func @leaky_relu
// CHECK: soma.leaky_relu %{{.*}} : tensor<4xf32>
// CHECK: soma.leaky_relu %{{.*}} {alpha = 2.000000e-01 : f64} : tensor<4xf32>
// CHECK: soma.leaky_relu %{{.*}} : tensor<4xf32>
// GENERIC-LABEL: sym_name = "leaky_relu"
// GENERIC: "soma.leaky_relu"(%{{.*}}) {alpha = 1.000000e-02 : f64}
// GENERIC: "soma.leaky_relu"(%{{.*}}) {alpha = 2.000000e-01 : f64}
// GENERIC: "soma.leaky_relu"(%{{.*}}) {alpha = 1.000000e-02 : f64}
func.func @leaky_relu(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) {
  %0 = soma.leaky_relu %x : tensor<4xf32>
  %1 = soma.leaky_relu %x {alpha = 0.2 : f64} : tensor<4xf32>
  %2 = soma.leaky_relu %x {alpha = 0.01 : f64} : tensor<4xf32>
  return %0, %1, %2 : tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
}

// -----

// Binary ops broadcast numpy-style; the result type is inferred.
// CHECK-LABEL: func.func @binary_broadcast
//  CHECK-SAME: (%[[A:.*]]: tensor<2x3x4xf32>, %[[B:.*]]: tensor<4xf32>, %[[C:.*]]: tensor<3x1xf32>, %[[S:.*]]: tensor<f32>)
//  CHECK-SAME: -> (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<2x3x4xf32>, tensor<3x1xf32>, tensor<f32>)
// CHECK: %[[R0:.*]] = soma.add %[[A]], %[[B]] : tensor<2x3x4xf32>, tensor<4xf32>
// CHECK: %[[R1:.*]] = soma.sub %[[C]], %[[A]] : tensor<3x1xf32>, tensor<2x3x4xf32>
// CHECK: %[[R2:.*]] = soma.mul %[[C]], %[[B]] : tensor<3x1xf32>, tensor<4xf32>
// CHECK: %[[R3:.*]] = soma.div %[[A]], %[[S]] : tensor<2x3x4xf32>, tensor<f32>
// CHECK: %[[R4:.*]] = soma.pow %[[B]], %[[C]] : tensor<4xf32>, tensor<3x1xf32>
// CHECK: %[[R5:.*]] = soma.maximum %[[A]], %[[A]] : tensor<2x3x4xf32>, tensor<2x3x4xf32>
// CHECK: %[[R6:.*]] = soma.minimum %[[S]], %[[C]] : tensor<f32>, tensor<3x1xf32>
// CHECK: %[[R7:.*]] = soma.add %[[S]], %[[S]] : tensor<f32>, tensor<f32>
// CHECK: return %[[R0]], %[[R1]], %[[R2]], %[[R3]], %[[R4]], %[[R5]], %[[R6]], %[[R7]]
// The generic form shows the inferred broadcast shapes.
// GENERIC-LABEL: sym_name = "binary_broadcast"
// GENERIC: "soma.add"(%{{.*}}, %{{.*}}) : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
// GENERIC: "soma.sub"(%{{.*}}, %{{.*}}) : (tensor<3x1xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
// GENERIC: "soma.mul"(%{{.*}}, %{{.*}}) : (tensor<3x1xf32>, tensor<4xf32>) -> tensor<3x4xf32>
// GENERIC: "soma.div"(%{{.*}}, %{{.*}}) : (tensor<2x3x4xf32>, tensor<f32>) -> tensor<2x3x4xf32>
// GENERIC: "soma.minimum"(%{{.*}}, %{{.*}}) : (tensor<f32>, tensor<3x1xf32>) -> tensor<3x1xf32>
// GENERIC: "soma.add"(%{{.*}}, %{{.*}}) : (tensor<f32>, tensor<f32>) -> tensor<f32>
func.func @binary_broadcast(%a: tensor<2x3x4xf32>, %b: tensor<4xf32>, %c: tensor<3x1xf32>, %s: tensor<f32>)
    -> (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<2x3x4xf32>, tensor<3x1xf32>, tensor<f32>) {
  %0 = soma.add %a, %b : tensor<2x3x4xf32>, tensor<4xf32>
  %1 = soma.sub %c, %a : tensor<3x1xf32>, tensor<2x3x4xf32>
  %2 = soma.mul %c, %b : tensor<3x1xf32>, tensor<4xf32>
  %3 = soma.div %a, %s : tensor<2x3x4xf32>, tensor<f32>
  %4 = soma.pow %b, %c : tensor<4xf32>, tensor<3x1xf32>
  %5 = soma.maximum %a, %a : tensor<2x3x4xf32>, tensor<2x3x4xf32>
  %6 = soma.minimum %s, %c : tensor<f32>, tensor<3x1xf32>
  %7 = soma.add %s, %s : tensor<f32>, tensor<f32>
  return %0, %1, %2, %3, %4, %5, %6, %7 : tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<2x3x4xf32>, tensor<3x1xf32>, tensor<f32>
}

// -----

// CHECK-LABEL: func.func @matmul
// CHECK: soma.matmul %{{.*}}, %{{.*}} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
// CHECK: soma.matmul %{{.*}}, %{{.*}} {transpose_a = true} : (tensor<3x4xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
// CHECK: soma.matmul %{{.*}}, %{{.*}} {transpose_b = true} : (tensor<4x3xf32>, tensor<2x3xf32>) -> tensor<4x2xf32>
// CHECK: soma.matmul %{{.*}}, %{{.*}} {transpose_a = true, transpose_b = true} : (tensor<3x4xf32>, tensor<2x3xf32>) -> tensor<4x2xf32>
// CHECK: soma.matmul %{{.*}}, %{{.*}} : (tensor<5x4x3xf32>, tensor<5x3x2xf32>) -> tensor<5x4x2xf32>
// Explicit false flags are defaults and disappear.
// CHECK: soma.matmul %{{.*}}, %{{.*}} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
// GENERIC-LABEL: sym_name = "matmul"
// GENERIC: "soma.matmul"(%{{.*}}, %{{.*}}) {transpose_a = false, transpose_b = false}
func.func @matmul(%a: tensor<4x3xf32>, %at: tensor<3x4xf32>, %b: tensor<3x2xf32>, %bt: tensor<2x3xf32>,
                  %ba: tensor<5x4x3xf32>, %bb: tensor<5x3x2xf32>) {
  %0 = soma.matmul %a, %b : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %1 = soma.matmul %at, %b {transpose_a = true} : (tensor<3x4xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %2 = soma.matmul %a, %bt {transpose_b = true} : (tensor<4x3xf32>, tensor<2x3xf32>) -> tensor<4x2xf32>
  %3 = soma.matmul %at, %bt {transpose_a = true, transpose_b = true} : (tensor<3x4xf32>, tensor<2x3xf32>) -> tensor<4x2xf32>
  %4 = soma.matmul %ba, %bb : (tensor<5x4x3xf32>, tensor<5x3x2xf32>) -> tensor<5x4x2xf32>
  %5 = soma.matmul %a, %b {transpose_a = false, transpose_b = false} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  return
}

// -----

// CHECK-LABEL: func.func @reductions
// CHECK: soma.reduce_sum %{{.*}} {axes = array<i64: 1>} : tensor<2x3x4xf32> -> tensor<2x4xf32>
// CHECK: soma.reduce_mean %{{.*}} {axes = array<i64: 0, 2>, keepdims = true} : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
// CHECK: soma.reduce_max %{{.*}} {axes = array<i64: 2, 0, 1>} : tensor<2x3x4xf32> -> tensor<f32>
// CHECK: soma.reduce_sum %{{.*}} {axes = array<i64: 0>} : tensor<2x3x4xf32> -> tensor<3x4xf32>
// GENERIC-LABEL: sym_name = "reductions"
// GENERIC: "soma.reduce_sum"(%{{.*}}) {axes = array<i64: 1>, keepdims = false}
func.func @reductions(%x: tensor<2x3x4xf32>) {
  %0 = soma.reduce_sum %x {axes = array<i64: 1>} : tensor<2x3x4xf32> -> tensor<2x4xf32>
  %1 = soma.reduce_mean %x {axes = array<i64: 0, 2>, keepdims = true} : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
  %2 = soma.reduce_max %x {axes = array<i64: 2, 0, 1>} : tensor<2x3x4xf32> -> tensor<f32>
  %3 = soma.reduce_sum %x {axes = array<i64: 0>, keepdims = false} : tensor<2x3x4xf32> -> tensor<3x4xf32>
  return
}

// -----

// Shape ops accept f32, i32 and i64 tensors, rank 0 included.
// CHECK-LABEL: func.func @shape_ops
// CHECK: soma.reshape %{{.*}} {shape = array<i64: 3, 2>} : tensor<2x3xf32> -> tensor<3x2xf32>
// CHECK: soma.reshape %{{.*}} {shape = array<i64>} : tensor<1x1xi32> -> tensor<i32>
// CHECK: soma.reshape %{{.*}} {shape = array<i64: 1>} : tensor<i32> -> tensor<1xi32>
// CHECK: soma.transpose %{{.*}} {perm = array<i64: 1, 0>} : tensor<2x3xf32> -> tensor<3x2xf32>
// CHECK: soma.transpose %{{.*}} {perm = array<i64: 2, 0, 1>} : tensor<2x3x4xi64> -> tensor<4x2x3xi64>
// CHECK: soma.broadcast_to %{{.*}} {shape = array<i64: 4, 2, 3>} : tensor<2x3xf32> -> tensor<4x2x3xf32>
// CHECK: soma.broadcast_to %{{.*}} {shape = array<i64: 2, 2>} : tensor<i32> -> tensor<2x2xi32>
// CHECK: soma.slice %{{.*}} {limits = array<i64: 2, 3>, starts = array<i64: 0, 1>, strides = array<i64: 1, 2>} : tensor<2x3xf32> -> tensor<2x1xf32>
func.func @shape_ops(%x: tensor<2x3xf32>, %i: tensor<1x1xi32>, %l: tensor<2x3x4xi64>) {
  %0 = soma.reshape %x {shape = array<i64: 3, 2>} : tensor<2x3xf32> -> tensor<3x2xf32>
  %1 = soma.reshape %i {shape = array<i64>} : tensor<1x1xi32> -> tensor<i32>
  %2 = soma.reshape %1 {shape = array<i64: 1>} : tensor<i32> -> tensor<1xi32>
  %3 = soma.transpose %x {perm = array<i64: 1, 0>} : tensor<2x3xf32> -> tensor<3x2xf32>
  %4 = soma.transpose %l {perm = array<i64: 2, 0, 1>} : tensor<2x3x4xi64> -> tensor<4x2x3xi64>
  %5 = soma.broadcast_to %x {shape = array<i64: 4, 2, 3>} : tensor<2x3xf32> -> tensor<4x2x3xf32>
  %6 = soma.broadcast_to %1 {shape = array<i64: 2, 2>} : tensor<i32> -> tensor<2x2xi32>
  %7 = soma.slice %x {starts = array<i64: 0, 1>, limits = array<i64: 2, 3>, strides = array<i64: 1, 2>} : tensor<2x3xf32> -> tensor<2x1xf32>
  return
}

// -----

// CHECK-LABEL: func.func @concat
//  CHECK-SAME: (%[[A:.*]]: tensor<2x3xf32>, %[[B:.*]]: tensor<2x1xf32>, %[[C:.*]]: tensor<2x4xf32>, %[[I:.*]]: tensor<5xi32>)
// CHECK: soma.concat %[[A]], %[[B]], %[[C]] {axis = 1 : i64} : (tensor<2x3xf32>, tensor<2x1xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
// CHECK: soma.concat %[[A]], %[[A]], %[[A]] {axis = 0 : i64} : (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<6x3xf32>
// CHECK: soma.concat %[[I]] {axis = 0 : i64} : (tensor<5xi32>) -> tensor<5xi32>
func.func @concat(%a: tensor<2x3xf32>, %b: tensor<2x1xf32>, %c: tensor<2x4xf32>, %i: tensor<5xi32>) {
  %0 = soma.concat %a, %b, %c {axis = 1} : (tensor<2x3xf32>, tensor<2x1xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  %1 = soma.concat %a, %a, %a {axis = 0} : (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<6x3xf32>
  %2 = soma.concat %i {axis = 0} : (tensor<5xi32>) -> tensor<5xi32>
  return
}

// -----

// Dense and splat constants of every element type, rank 0 included.
// CHECK-LABEL: func.func @constants
// CHECK: soma.constant dense<{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]]> : tensor<2x2xf32>
// CHECK: soma.constant dense<5.000000e-01> : tensor<3x4xf32>
// CHECK: soma.constant dense<[1, -2, 3]> : tensor<3xi32>
// CHECK: soma.constant dense<7> : tensor<2xi64>
// CHECK: soma.constant dense<-2.500000e+00> : tensor<f32>
// CHECK: soma.constant dense<42> : tensor<i32>
func.func @constants() {
  %0 = soma.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %1 = soma.constant dense<0.5> : tensor<3x4xf32>
  %2 = soma.constant dense<[1, -2, 3]> : tensor<3xi32>
  %3 = soma.constant dense<7> : tensor<2xi64>
  %4 = soma.constant dense<-2.5> : tensor<f32>
  %5 = soma.constant dense<42> : tensor<i32>
  return
}

// -----

// CHECK-LABEL: func.func @softmax
// CHECK: soma.softmax %{{.*}} {axis = 1 : i64} : tensor<4x3xf32>
// CHECK: soma.log_softmax %{{.*}} {axis = 0 : i64} : tensor<4x3xf32>
// CHECK: soma.softmax_grad %{{.*}}, %{{.*}} {axis = 1 : i64} : tensor<4x3xf32>, tensor<4x3xf32>
// CHECK: soma.log_softmax_grad %{{.*}}, %{{.*}} {axis = 0 : i64} : tensor<4x3xf32>, tensor<4x3xf32>
func.func @softmax(%x: tensor<4x3xf32>) {
  %0 = soma.softmax %x {axis = 1} : tensor<4x3xf32>
  %1 = soma.log_softmax %x {axis = 0} : tensor<4x3xf32>
  %2 = soma.softmax_grad %0, %x {axis = 1} : tensor<4x3xf32>, tensor<4x3xf32>
  %3 = soma.log_softmax_grad %1, %x {axis = 0} : tensor<4x3xf32>, tensor<4x3xf32>
  return
}

// -----

// Losses return rank-0 tensors; reduction "mean" is the default.
// CHECK-LABEL: func.func @losses
// CHECK: soma.softmax_cross_entropy %{{.*}}, %{{.*}} : (tensor<4x3xf32>, tensor<4xi32>) -> tensor<f32>
// CHECK: soma.softmax_cross_entropy %{{.*}}, %{{.*}} {reduction = "sum"} : (tensor<4x3xf32>, tensor<4xi64>) -> tensor<f32>
// CHECK: soma.mse %{{.*}}, %{{.*}} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
// CHECK: soma.mse %{{.*}}, %{{.*}} {reduction = "sum"} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
// CHECK: soma.binary_cross_entropy %{{.*}}, %{{.*}} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
// CHECK: soma.mse %{{.*}}, %{{.*}} : (tensor<f32>, tensor<f32>) -> tensor<f32>
// GENERIC-LABEL: sym_name = "losses"
// GENERIC: "soma.softmax_cross_entropy"(%{{.*}}, %{{.*}}) {reduction = "mean"}
func.func @losses(%x: tensor<4x3xf32>, %y: tensor<4xi32>, %y64: tensor<4xi64>, %t: tensor<4x3xf32>, %s: tensor<f32>) {
  %0 = soma.softmax_cross_entropy %x, %y : (tensor<4x3xf32>, tensor<4xi32>) -> tensor<f32>
  %1 = soma.softmax_cross_entropy %x, %y64 {reduction = "sum"} : (tensor<4x3xf32>, tensor<4xi64>) -> tensor<f32>
  %2 = soma.mse %x, %t {reduction = "mean"} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
  %3 = soma.mse %x, %t {reduction = "sum"} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
  %4 = soma.binary_cross_entropy %x, %t : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
  %5 = soma.mse %s, %s : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

// A complete graph: argument and result attributes survive the round trip.
// CHECK-LABEL: module @g
// CHECK: func.func @g(%{{.*}}: tensor<4x3xf32> {soma.input = "x"}, %{{.*}}: tensor<3x2xf32> {soma.init = {kind = "zeros"}, soma.param = "w"}, %{{.*}}: tensor<4xi32> {soma.input = "y"})
//  CHECK-SAME: -> (tensor<4x2xf32> {soma.output = "p"}, tensor<f32> {soma.output = "loss"})
// CHECK: soma.matmul
// CHECK: soma.relu
// CHECK: soma.softmax_cross_entropy
module @g {
  func.func @g(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x2xf32> {soma.param = "w", soma.init = {kind = "zeros"}}, %y: tensor<4xi32> {soma.input = "y"}) -> (tensor<4x2xf32> {soma.output = "p"}, tensor<f32> {soma.output = "loss"}) {
    %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
    %1 = soma.relu %0 : tensor<4x2xf32>
    %2 = soma.softmax_cross_entropy %1, %y : (tensor<4x2xf32>, tensor<4xi32>) -> tensor<f32>
    return %1, %2 : tensor<4x2xf32>, tensor<f32>
  }
}

// -----

// CHECK-LABEL: func.func @random_and_dropout
//       CHECK: soma.random_uniform %{{.*}} {seed = 3 : i64, shape = array<i64: 2, 3>} : tensor<f32> -> tensor<2x3xf32>
//       CHECK: soma.dropout %{{.*}} {rate = 5.000000e-01 : f64, seed = 4 : i64} : tensor<2x3xf32>
func.func @random_and_dropout(%c: tensor<f32>) -> tensor<2x3xf32> {
  %0 = soma.random_uniform %c {shape = array<i64: 2, 3>, seed = 3 : i64} : tensor<f32> -> tensor<2x3xf32>
  %1 = soma.dropout %0 {rate = 0.5, seed = 4 : i64} : tensor<2x3xf32>
  return %1 : tensor<2x3xf32>
}

// -----

// CHECK-LABEL: func.func @max_pool_grad
//       CHECK: soma.max_pool2d_grad %{{.*}}, %{{.*}}, %{{.*}} {kernel = array<i64: 2, 2>} : (tensor<1x2x4x4xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32>
func.func @max_pool_grad(%x: tensor<1x2x4x4xf32>, %y: tensor<1x2x2x2xf32>, %g: tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32> {
  %0 = soma.max_pool2d_grad %x, %y, %g {kernel = array<i64: 2, 2>} : (tensor<1x2x4x4xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

// CHECK-LABEL: func.func @avg_pool2d_grad
//       CHECK: soma.avg_pool2d_grad %{{.*}} {kernel = array<i64: 3, 2>} : tensor<1x2x2x3xf32> -> tensor<1x2x6x6xf32>
func.func @avg_pool2d_grad(%g: tensor<1x2x2x3xf32>) {
  %0 = soma.avg_pool2d_grad %g {kernel = array<i64: 3, 2>} : tensor<1x2x2x3xf32> -> tensor<1x2x6x6xf32>
  return
}

// -----

// CHECK-LABEL: func.func @batch_norm_parts
//       CHECK: %{{.*}}, %{{.*}}, %{{.*}} = soma.batch_norm_train %{{.*}}, %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64} : (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
//       CHECK: soma.batch_norm_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {eps = 1.000000e-03 : f64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
func.func @batch_norm_parts(%x: tensor<2x3x4xf32>, %g: tensor<3xf32>) {
  %y, %m, %v = soma.batch_norm_train %x, %g, %g {eps = 1.0e-5 : f64} : (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
  %dx, %dg, %db = soma.batch_norm_grad %x, %y, %m, %v, %g {eps = 1.0e-3 : f64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}
