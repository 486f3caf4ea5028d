// RUN: soma-opt %s -split-input-file -canonicalize | FileCheck %s

// x * 1 is x (exactly, NaN and -0 included) when the ones do not broadcast
// x: the loss's seed gradient times the other factor, as the gradient of
// sum(y * dy) has it. The constant reaches the mul through a reshape and a
// broadcast_to, both folded into splat constants.
// CHECK-LABEL: func.func @mul_by_ones(
//  CHECK-SAME: %[[X:.*]]: tensor<2x3xf32>
//   CHECK-NOT: soma.mul
//       CHECK: return %[[X]], %[[X]]
func.func @mul_by_ones(%x: tensor<2x3xf32> {soma.input = "x"}) -> (tensor<2x3xf32> {soma.output = "a"}, tensor<2x3xf32> {soma.output = "b"}) {
  %0 = soma.constant dense<1.000000e+00> : tensor<f32>
  %1 = soma.reshape %0 {shape = array<i64: 1, 1>} : tensor<f32> -> tensor<1x1xf32>
  %2 = soma.broadcast_to %1 {shape = array<i64: 2, 3>} : tensor<1x1xf32> -> tensor<2x3xf32>
  %3 = soma.mul %2, %x : tensor<2x3xf32>, tensor<2x3xf32>
  %4 = soma.mul %x, %1 : tensor<2x3xf32>, tensor<1x1xf32>
  return %3, %4 : tensor<2x3xf32>, tensor<2x3xf32>
}

// -----

// Not when the ones broadcast x (the result is larger than x), nor for
// other constants.
// CHECK-LABEL: func.func @mul_kept(
//       CHECK: soma.mul %{{.*}}, %{{.*}} : tensor<2x3xf32>, tensor<3xf32>
//       CHECK: soma.mul %{{.*}}, %{{.*}} : tensor<2x3xf32>, tensor<2x3xf32>
func.func @mul_kept(%x: tensor<3xf32> {soma.input = "x"}, %y: tensor<2x3xf32> {soma.input = "y"}) -> (tensor<2x3xf32> {soma.output = "a"}, tensor<2x3xf32> {soma.output = "b"}) {
  %0 = soma.constant dense<1.000000e+00> : tensor<2x3xf32>
  %1 = soma.mul %0, %x : tensor<2x3xf32>, tensor<3xf32>
  %2 = soma.constant dense<2.000000e+00> : tensor<2x3xf32>
  %3 = soma.mul %2, %y : tensor<2x3xf32>, tensor<2x3xf32>
  return %1, %3 : tensor<2x3xf32>, tensor<2x3xf32>
}

// -----

// A reshape or broadcast_to of a splat constant is a splat constant; one
// of other constants stays; a reshape to the same type is its input.
// CHECK-LABEL: func.func @views(
//   CHECK-DAG: %[[SPLAT:.*]] = soma.constant dense<3.000000e+00> : tensor<2x2xf32>
//   CHECK-DAG: %[[C:.*]] = soma.constant dense<{{\[}}1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00]> : tensor<4xf32>
//       CHECK: %[[R:.*]] = soma.reshape %[[C]] {shape = array<i64: 2, 2>}
//   CHECK-NOT: soma.reshape
//   CHECK-NOT: soma.broadcast_to
//       CHECK: return %[[SPLAT]], %[[SPLAT]], %[[R]], %arg0
func.func @views(%x: tensor<2x2xf32> {soma.input = "x"}) -> (tensor<2x2xf32> {soma.output = "a"}, tensor<2x2xf32> {soma.output = "b"}, tensor<2x2xf32> {soma.output = "c"}, tensor<2x2xf32> {soma.output = "d"}) {
  %0 = soma.constant dense<3.000000e+00> : tensor<4xf32>
  %1 = soma.reshape %0 {shape = array<i64: 2, 2>} : tensor<4xf32> -> tensor<2x2xf32>
  %2 = soma.constant dense<3.000000e+00> : tensor<1x2xf32>
  %3 = soma.broadcast_to %2 {shape = array<i64: 2, 2>} : tensor<1x2xf32> -> tensor<2x2xf32>
  %4 = soma.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %5 = soma.reshape %4 {shape = array<i64: 2, 2>} : tensor<4xf32> -> tensor<2x2xf32>
  %6 = soma.reshape %x {shape = array<i64: 2, 2>} : tensor<2x2xf32> -> tensor<2x2xf32>
  return %1, %3, %5, %6 : tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>
}
