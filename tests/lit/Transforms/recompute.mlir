// RUN: soma-opt %s -split-input-file -soma-recompute | FileCheck %s --check-prefix=ALL
// RUN: soma-opt %s -split-input-file -soma-recompute=budget=64 | FileCheck %s --check-prefix=BUDGET
// RUN: soma-opt %s -split-input-file -soma-recompute=cones=true | FileCheck %s --check-prefix=CONES

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
//
// With cones the same: recomputing both keeps the product %0 (64 bytes)
// for 128 bytes of candidates.
// CONES-LABEL: func.func @step(
//  CONES-SAME: attributes {soma.recompute = array<i64: 2, 128, 32>}
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

// -----

// The bias add and ReLU of a dense layer; the backward pass reads the ReLU
// output only. Chains recompute the ReLU from the sum %1, which then stays
// alive instead (the same 64 bytes). Cones see that keeping the product %0
// would cost as much as the ReLU saves, and recompute nothing.
// ALL-LABEL: func.func @dense_relu(
//  ALL-SAME: attributes {soma.recompute = array<i64: 1, 64, 16>}
//       ALL: soma.relu %1 {soma.recomputed}
// CONES-LABEL: func.func @dense_relu(
//  CONES-SAME: attributes {soma.recompute = array<i64: 0, 0, 0>}
//   CONES-NOT: soma.recomputed
func.func @dense_relu(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x4xf32> {soma.param = "w"}, %b: tensor<4xf32> {soma.param = "b"})
    -> (tensor<f32> {soma.output = "loss"}, tensor<3x4xf32> {soma.grad = "w"}) {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x4xf32>) -> tensor<4x4xf32>
  %1 = soma.add %0, %b : tensor<4x4xf32>, tensor<4xf32>
  %2 = soma.relu %1 : tensor<4x4xf32>
  %3 = soma.reduce_sum %2 {axes = array<i64: 0, 1>} : tensor<4x4xf32> -> tensor<f32>
  %4 = soma.step %2 : tensor<4x4xf32>
  %5 = soma.matmul %x, %4 {transpose_a = true} : (tensor<4x3xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
  return %3, %5 : tensor<f32>, tensor<3x4xf32>
}

// -----

// A normalisation: the backward pass reads the centred %2 and the ReLU %4
// of its scaled value %3. Chains recompute both, the ReLU from the original
// %3, which stays alive. Cones recompute the ReLU through a copy of %3
// and keep only the product %0 and its mean %1 (80 bytes for 128).
// ALL-LABEL: func.func @centred(
//  ALL-SAME: attributes {soma.recompute = array<i64: 2, 128, 32>}
//       ALL: %[[C:.*]] = soma.sub %0, %1 {soma.recomputed}
//       ALL: soma.relu %3 {soma.recomputed}
// CONES-LABEL: func.func @centred(
//  CONES-SAME: attributes {soma.recompute = array<i64: 3, 192, 48>}
//       CONES: %[[M:.*]] = soma.matmul
//       CONES: %[[MEAN:.*]] = soma.reduce_mean %[[M]]
//       CONES: %[[C2:.*]] = soma.sub %[[M]], %[[MEAN]] {soma.recomputed}
//       CONES: %[[S2:.*]] = soma.mul %[[C2]], %[[C2]] {soma.recomputed = 2 : i64}
//       CONES: %[[R2:.*]] = soma.relu %[[S2]] {soma.recomputed}
//       CONES: soma.mul %[[R2]], %[[C2]]
func.func @centred(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x4xf32> {soma.param = "w"})
    -> (tensor<f32> {soma.output = "loss"}, tensor<3x4xf32> {soma.grad = "w"}) {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x4xf32>) -> tensor<4x4xf32>
  %1 = soma.reduce_mean %0 {axes = array<i64: 0>, keepdims = true} : tensor<4x4xf32> -> tensor<1x4xf32>
  %2 = soma.sub %0, %1 : tensor<4x4xf32>, tensor<1x4xf32>
  %3 = soma.mul %2, %2 : tensor<4x4xf32>, tensor<4x4xf32>
  %4 = soma.relu %3 : tensor<4x4xf32>
  %5 = soma.reduce_sum %4 {axes = array<i64: 0, 1>} : tensor<4x4xf32> -> tensor<f32>
  %6 = soma.mul %4, %2 : tensor<4x4xf32>, tensor<4x4xf32>
  %7 = soma.matmul %x, %6 {transpose_a = true} : (tensor<4x3xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
  return %5, %7 : tensor<f32>, tensor<3x4xf32>
}

// -----

// Two candidates whose cones share a value that is not a candidate (the
// centred %2): with cones each gets its own copy of it, numbered after the
// candidate, so that CSE (which runs before fusion) does not merge the two
// and keep one copy alive from the first backward reader to the last.
// CONES-LABEL: func.func @shared_cone(
//       CONES: soma.sub %0, %1 {soma.recomputed = 1 : i64}
//       CONES: soma.relu %{{.*}} {soma.recomputed}
//       CONES: soma.sub %0, %1 {soma.recomputed = 2 : i64}
//       CONES: soma.tanh %{{.*}} {soma.recomputed}
// RUN: soma-opt %s -split-input-file -soma-recompute=cones=true -cse | FileCheck %s --check-prefix=CSE
// CSE-LABEL: func.func @shared_cone(
// CSE-COUNT-2: soma.sub %0, %1 {soma.recomputed =
func.func @shared_cone(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x4xf32> {soma.param = "w"})
    -> (tensor<f32> {soma.output = "loss"}, tensor<3x4xf32> {soma.grad = "w"}) {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x4xf32>) -> tensor<4x4xf32>
  %1 = soma.reduce_mean %0 {axes = array<i64: 0>, keepdims = true} : tensor<4x4xf32> -> tensor<1x4xf32>
  %2 = soma.sub %0, %1 : tensor<4x4xf32>, tensor<1x4xf32>
  %3 = soma.relu %2 : tensor<4x4xf32>
  %4 = soma.tanh %2 : tensor<4x4xf32>
  %5 = soma.add %3, %4 : tensor<4x4xf32>, tensor<4x4xf32>
  %6 = soma.reduce_sum %5 {axes = array<i64: 0, 1>} : tensor<4x4xf32> -> tensor<f32>
  %7 = soma.step %3 : tensor<4x4xf32>
  %8 = soma.matmul %x, %7 {transpose_a = true} : (tensor<4x3xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
  %9 = soma.mul %4, %4 : tensor<4x4xf32>, tensor<4x4xf32>
  %10 = soma.matmul %x, %9 {transpose_a = true} : (tensor<4x3xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
  %11 = soma.add %8, %10 : tensor<3x4xf32>, tensor<3x4xf32>
  return %6, %11 : tensor<f32>, tensor<3x4xf32>
}
