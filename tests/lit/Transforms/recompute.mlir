// RUN: soma-opt %s -split-input-file -soma-recompute | FileCheck %s --check-prefix=ALL
// RUN: soma-opt %s -split-input-file -soma-recompute=budget=64 | FileCheck %s --check-prefix=BUDGET

// Forward: the loss and what it depends on (%0 ... %3). The backward ops
// (%4, %5: the gradient result) read the activations %1 (tanh, 64 bytes)
// and %2 (a relu of it, 64 bytes). With no budget both are recomputed just
// before the first backward reader, the relu from the recomputed tanh; the
// copies carry soma.recomputed and the backward ops read them. The matmul
// is never recomputed.
// ALL-LABEL: func.func @step(
//  ALL-SAME: attributes {soma.recompute = array<i64: 2, 128, 32>}
//       ALL: %[[M:.*]] = soma.matmul
//       ALL: %[[T:.*]] = soma.tanh %[[M]]
//       ALL: %[[R:.*]] = soma.relu %[[T]]
//       ALL: soma.reduce_sum %[[R]]
//       ALL: %[[T2:.*]] = soma.tanh %[[M]] {soma.recomputed}
//       ALL: %[[R2:.*]] = soma.relu %[[T2]] {soma.recomputed}
//       ALL: %[[G:.*]] = soma.mul %[[R2]], %[[T2]]
//       ALL: soma.matmul %arg0, %[[G]] {transpose_a = true}
//
// A budget of 64 bytes keeps one of the two (the first of equal size is
// recomputed).
// BUDGET-LABEL: func.func @step(
//  BUDGET-SAME: attributes {soma.recompute = array<i64: 1, 64, 16>}
func.func @step(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x4xf32> {soma.param = "w"})
    -> (tensor<f32> {soma.output = "loss"}, tensor<3x4xf32> {soma.grad = "w"}) {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x4xf32>) -> tensor<4x4xf32>
  %1 = soma.tanh %0 : tensor<4x4xf32>
  %2 = soma.relu %1 : tensor<4x4xf32>
  %3 = soma.reduce_sum %2 {axes = array<i64: 0, 1>} : tensor<4x4xf32> -> tensor<f32>
  %4 = soma.mul %2, %1 : tensor<4x4xf32>, tensor<4x4xf32>
  %5 = soma.matmul %x, %4 {transpose_a = true} : (tensor<4x3xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
  return %3, %5 : tensor<f32>, tensor<3x4xf32>
}
