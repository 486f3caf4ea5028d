// RUN: soma-opt %s -soma-lower-to-linalg -split-input-file | FileCheck %s

// Regression: tensor<1xf32> -> tensor<f32> collapses the single dimension
// away (it used to emit an invalid rank-1 -> rank-0 expand_shape).
// CHECK-LABEL: func.func @reshape_1d_to_rank0
//       CHECK: %[[T:.*]] = memref.alloc() {alignment = 64 : i64} : memref<1xf32>
//       CHECK: %[[S:.*]] = memref.collapse_shape %[[T]] [] : memref<1xf32> into memref<f32>
//   CHECK-NOT: memref.expand_shape
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[S]] : memref<f32>)
func.func @reshape_1d_to_rank0(%x: tensor<1xf32> {soma.input = "x"}) -> (tensor<f32> {soma.output = "o"}) {
  %0 = soma.exp %x : tensor<1xf32>
  %1 = soma.reshape %0 {shape = array<i64>} : tensor<1xf32> -> tensor<f32>
  %2 = soma.neg %1 : tensor<f32>
  return %2 : tensor<f32>
}

// -----

// Rank 0 -> rank 2 is a single expand_shape with no collapse before it.
// CHECK-LABEL: func.func @reshape_rank0_to_2d
//   CHECK-NOT: memref.collapse_shape
//       CHECK: memref.expand_shape %{{.*}} [] output_shape [1, 1] : memref<f32> into memref<1x1xf32>
func.func @reshape_rank0_to_2d(%x: tensor<f32> {soma.input = "x"}) -> (tensor<1x1xf32> {soma.output = "o"}) {
  %0 = soma.exp %x : tensor<f32>
  %1 = soma.reshape %0 {shape = array<i64: 1, 1>} : tensor<f32> -> tensor<1x1xf32>
  %2 = soma.neg %1 : tensor<1x1xf32>
  return %2 : tensor<1x1xf32>
}

// -----

// Constant globals are named after the kernel, not the renamed graph.
// CHECK-LABEL: func.func @k
//       CHECK: memref.get_global @k_const0
//       CHECK: memref.global "private" constant @k_const0
func.func @k(%x: tensor<2xf32> {soma.input = "x"}) -> (tensor<2xf32> {soma.output = "o"}) {
  %c = soma.constant dense<[1.0, 2.0]> : tensor<2xf32>
  %0 = soma.add %x, %c : tensor<2xf32>, tensor<2xf32>
  return %0 : tensor<2xf32>
}
