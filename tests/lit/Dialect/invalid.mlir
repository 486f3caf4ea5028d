// RUN: soma-opt %s -split-input-file -verify-diagnostics

// Shape and dtype errors of every soma op. When the assembly format spells
// the result type (functional-type), the verifier compares it with the
// inferred one and adds "failed to infer returned types" after the shape
// message; when the result type is inferred while parsing (unary, binary,
// softmax), the shape message is the only error.

//===----------------------------------------------------------------------===//
// matmul
//===----------------------------------------------------------------------===//

func.func @matmul_inner(%a: tensor<4x3xf32>, %b: tensor<5x2xf32>) {
  // expected-error @+2 {{matmul: inner dimensions differ: [4,3] x [5,2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.matmul %a, %b : (tensor<4x3xf32>, tensor<5x2xf32>) -> tensor<4x2xf32>
  return
}

// -----

// Without the flag [4,3] x [3,2] would be fine; transposing b makes k = 2.
func.func @matmul_inner_transpose_b(%a: tensor<4x3xf32>, %b: tensor<3x2xf32>) {
  // expected-error @+2 {{matmul: inner dimensions differ: [4,3] x [3,2]^T}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.matmul %a, %b {transpose_b = true} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x3xf32>
  return
}

// -----

func.func @matmul_inner_transpose_a(%a: tensor<4x3xf32>, %b: tensor<3x2xf32>) {
  // expected-error @+2 {{matmul: inner dimensions differ: [4,3]^T x [3,2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.matmul %a, %b {transpose_a = true} : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<3x2xf32>
  return
}

// -----

func.func @matmul_inner_transpose_both(%a: tensor<4x3xf32>, %b: tensor<2x3xf32>) {
  // expected-error @+2 {{matmul: inner dimensions differ: [4,3]^T x [2,3]^T}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.matmul %a, %b {transpose_a = true, transpose_b = true} : (tensor<4x3xf32>, tensor<2x3xf32>) -> tensor<3x2xf32>
  return
}

// -----

func.func @matmul_batch(%a: tensor<2x4x3xf32>, %b: tensor<3x3x2xf32>) {
  // expected-error @+2 {{matmul: batch dimensions differ: [2,4,3] x [3,3,2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.matmul %a, %b : (tensor<2x4x3xf32>, tensor<3x3x2xf32>) -> tensor<2x4x2xf32>
  return
}

// -----

// Batch dimensions are not broadcast: the ranks must agree.
func.func @matmul_batch_rank(%a: tensor<2x4x3xf32>, %b: tensor<3x2xf32>) {
  // expected-error @+2 {{matmul: batch dimensions differ: [2,4,3] x [3,2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.matmul %a, %b : (tensor<2x4x3xf32>, tensor<3x2xf32>) -> tensor<2x4x2xf32>
  return
}

// -----

func.func @matmul_rank1(%a: tensor<3xf32>, %b: tensor<3x2xf32>) {
  // expected-error @+2 {{matmul: operands must have rank >= 2: [3] x [3,2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.matmul %a, %b : (tensor<3xf32>, tensor<3x2xf32>) -> tensor<2xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Elementwise: broadcasting and dtypes
//===----------------------------------------------------------------------===//

func.func @add_broadcast(%a: tensor<4x3xf32>, %b: tensor<4x2xf32>) {
  // expected-error @+1 {{add: shapes cannot be broadcast: [4,3] and [4,2]}}
  %0 = soma.add %a, %b : tensor<4x3xf32>, tensor<4x2xf32>
  return
}

// -----

// Shapes align at the last dimension: [2] is compared with 3, not with 2.
func.func @sub_broadcast_right_aligned(%a: tensor<2x3xf32>, %b: tensor<2xf32>) {
  // expected-error @+1 {{sub: shapes cannot be broadcast: [2,3] and [2]}}
  %0 = soma.sub %a, %b : tensor<2x3xf32>, tensor<2xf32>
  return
}

// -----

func.func @exp_i32(%a: tensor<2x3xi32>) {
  // expected-error @+1 {{exp: input must be f32, got i32[2,3]}}
  %0 = soma.exp %a : tensor<2x3xi32>
  return
}

// -----

func.func @relu_i64(%a: tensor<5xi64>) {
  // expected-error @+1 {{relu: input must be f32, got i64[5]}}
  %0 = soma.relu %a : tensor<5xi64>
  return
}

// -----

func.func @mul_i32_rhs(%a: tensor<2x3xf32>, %b: tensor<2x3xi32>) {
  // expected-error @+1 {{mul: rhs must be f32, got i32[2,3]}}
  %0 = soma.mul %a, %b : tensor<2x3xf32>, tensor<2x3xi32>
  return
}

// -----

// With the operand types spelled out, the ODS type constraint reports it.
func.func @matmul_i32(%a: tensor<2x3xi32>, %b: tensor<3x2xf32>) {
  // expected-error @+1 {{'soma.matmul' op operand #0 must be ranked tensor of 32-bit float values, but got 'tensor<2x3xi32>'}}
  %0 = soma.matmul %a, %b : (tensor<2x3xi32>, tensor<3x2xf32>) -> tensor<2x2xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

func.func @reduce_axis_out_of_range(%a: tensor<4x3xf32>) {
  // expected-error @+2 {{reduce_sum: axis 2 is out of range for shape [4,3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.reduce_sum %a {axes = array<i64: 2>} : tensor<4x3xf32> -> tensor<4xf32>
  return
}

// -----

func.func @reduce_axis_negative(%a: tensor<4x3xf32>) {
  // expected-error @+2 {{reduce_max: axis -1 is out of range for shape [4,3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.reduce_max %a {axes = array<i64: -1>} : tensor<4x3xf32> -> tensor<4xf32>
  return
}

// -----

func.func @reduce_axis_repeated(%a: tensor<4x3x2xf32>) {
  // expected-error @+2 {{reduce_mean: axis 1 is repeated}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.reduce_mean %a {axes = array<i64: 1, 2, 1>} : tensor<4x3x2xf32> -> tensor<4xf32>
  return
}

// -----

func.func @reduce_no_axes(%a: tensor<4x3xf32>) {
  // expected-error @+2 {{reduce_sum: needs at least one axis}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.reduce_sum %a {axes = array<i64>} : tensor<4x3xf32> -> tensor<4x3xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Shape and data movement
//===----------------------------------------------------------------------===//

func.func @reshape_count(%a: tensor<4x3xf32>) {
  // expected-error @+2 {{reshape: cannot reshape [4,3] (12 elements) to [5,2] (10 elements)}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.reshape %a {shape = array<i64: 5, 2>} : tensor<4x3xf32> -> tensor<5x2xf32>
  return
}

// -----

func.func @reshape_negative(%a: tensor<4x3xf32>) {
  // expected-error @+2 {{reshape: negative dimension in target shape [-1,3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.reshape %a {shape = array<i64: -1, 3>} : tensor<4x3xf32> -> tensor<4x3xf32>
  return
}

// -----

func.func @transpose_perm_length(%a: tensor<4x3x2xf32>) {
  // expected-error @+2 {{transpose: permutation [1,0] does not match the rank of [4,3,2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.transpose %a {perm = array<i64: 1, 0>} : tensor<4x3x2xf32> -> tensor<3x4x2xf32>
  return
}

// -----

func.func @transpose_perm_repeated(%a: tensor<4x3xf32>) {
  // expected-error @+2 {{transpose: axis 0 is repeated}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.transpose %a {perm = array<i64: 0, 0>} : tensor<4x3xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @transpose_perm_out_of_range(%a: tensor<4x3xi32>) {
  // expected-error @+2 {{transpose: axis 2 is out of range for shape [4,3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.transpose %a {perm = array<i64: 2, 0>} : tensor<4x3xi32> -> tensor<3x4xi32>
  return
}

// -----

func.func @broadcast_to_incompatible(%a: tensor<3xf32>) {
  // expected-error @+2 {{broadcast_to: cannot broadcast [3] to [2,4]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.broadcast_to %a {shape = array<i64: 2, 4>} : tensor<3xf32> -> tensor<2x4xf32>
  return
}

// -----

// The target must be the broadcast shape itself, not something smaller.
func.func @broadcast_to_smaller(%a: tensor<2x3xf32>) {
  // expected-error @+2 {{broadcast_to: cannot broadcast [2,3] to [3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.broadcast_to %a {shape = array<i64: 3>} : tensor<2x3xf32> -> tensor<3xf32>
  return
}

// -----

func.func @slice_limit_out_of_range(%a: tensor<4x6xf32>) {
  // expected-error @+2 {{slice: range [0, 7) of dimension 1 is empty or outside [0, 6) in [4,6]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.slice %a {starts = array<i64: 0, 0>, limits = array<i64: 4, 7>, strides = array<i64: 1, 1>} : tensor<4x6xf32> -> tensor<4x7xf32>
  return
}

// -----

func.func @slice_empty(%a: tensor<4x6xf32>) {
  // expected-error @+2 {{slice: range [2, 2) of dimension 0 is empty or outside [0, 4) in [4,6]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.slice %a {starts = array<i64: 2, 0>, limits = array<i64: 2, 6>, strides = array<i64: 1, 1>} : tensor<4x6xf32> -> tensor<0x6xf32>
  return
}

// -----

func.func @slice_zero_stride(%a: tensor<4x6xf32>) {
  // expected-error @+2 {{slice: stride 0 of dimension 1 must be >= 1}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.slice %a {starts = array<i64: 0, 0>, limits = array<i64: 4, 6>, strides = array<i64: 1, 0>} : tensor<4x6xf32> -> tensor<4x6xf32>
  return
}

// -----

func.func @slice_arity(%a: tensor<4x6xf32>) {
  // expected-error @+2 {{slice: starts [0], limits [4,6] and strides [1,1] must each have one entry per dimension of [4,6]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.slice %a {starts = array<i64: 0>, limits = array<i64: 4, 6>, strides = array<i64: 1, 1>} : tensor<4x6xf32> -> tensor<4x6xf32>
  return
}

// -----

func.func @concat_mismatch(%a: tensor<2x3xf32>, %b: tensor<2x4xf32>) {
  // expected-error @+2 {{concat: input 1 f32[2,4] does not match input 0 f32[2,3] outside axis 0}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.concat %a, %b {axis = 0} : (tensor<2x3xf32>, tensor<2x4xf32>) -> tensor<4x3xf32>
  return
}

// -----

func.func @concat_dtype(%a: tensor<2x3xf32>, %b: tensor<2x3xf32>, %c: tensor<2x3xi32>) {
  // expected-error @+2 {{concat: input 2 i32[2,3] does not match input 0 f32[2,3] outside axis 1}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.concat %a, %b, %c {axis = 1} : (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xi32>) -> tensor<2x9xf32>
  return
}

// -----

func.func @concat_axis(%a: tensor<2x3xf32>) {
  // expected-error @+2 {{concat: axis 2 is out of range for shape [2,3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.concat %a {axis = 2} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  return
}

// -----

func.func @constant_f16() {
  // expected-error @+1 {{constant: element type must be f32, i32 or i64, got f16[2]}}
  %0 = soma.constant dense<1.0> : tensor<2xf16>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Softmax family and losses
//===----------------------------------------------------------------------===//

func.func @softmax_axis(%a: tensor<4x3xf32>) {
  // expected-error @+1 {{softmax: axis 2 is out of range for shape [4,3]}}
  %0 = soma.softmax %a {axis = 2} : tensor<4x3xf32>
  return
}

// -----

func.func @log_softmax_axis(%a: tensor<4x3xf32>) {
  // expected-error @+1 {{log_softmax: axis -1 is out of range for shape [4,3]}}
  %0 = soma.log_softmax %a {axis = -1} : tensor<4x3xf32>
  return
}

// -----

func.func @softmax_grad_shapes(%y: tensor<4x3xf32>, %g: tensor<3x4xf32>) {
  // expected-error @+1 {{softmax_grad: output and grad must have the same shape, got f32[4,3] and f32[3,4]}}
  %0 = soma.softmax_grad %y, %g {axis = 1} : tensor<4x3xf32>, tensor<3x4xf32>
  return
}

// -----

func.func @log_softmax_grad_axis(%y: tensor<4x3xf32>) {
  // expected-error @+1 {{log_softmax_grad: axis 2 is out of range for shape [4,3]}}
  %0 = soma.log_softmax_grad %y, %y {axis = 2} : tensor<4x3xf32>, tensor<4x3xf32>
  return
}

// -----

func.func @softmax_grad_dtype(%y: tensor<4x3xf32>, %g: tensor<4x3xi32>) {
  // expected-error @+1 {{softmax_grad: grad must be f32, got i32[4,3]}}
  %0 = soma.softmax_grad %y, %g {axis = 1} : tensor<4x3xf32>, tensor<4x3xi32>
  return
}

// -----

// A float label tensor is rejected by the operand's type constraint.
func.func @sce_label_dtype(%a: tensor<4x2xf32>, %y: tensor<4xf32>) {
  // expected-error @+1 {{operand #1 must be ranked tensor of 32-bit signless integer or 64-bit signless integer values, but got 'tensor<4xf32>'}}
  %0 = soma.softmax_cross_entropy %a, %y : (tensor<4x2xf32>, tensor<4xf32>) -> tensor<f32>
  return
}

// -----

func.func @sce_label_shape(%a: tensor<4x2xf32>, %y: tensor<3xi32>) {
  // expected-error @+2 {{softmax_cross_entropy: labels must be [4] to match logits [4,2], got [3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.softmax_cross_entropy %a, %y : (tensor<4x2xf32>, tensor<3xi32>) -> tensor<f32>
  return
}

// -----

func.func @sce_label_rank(%a: tensor<4x2xf32>, %y: tensor<4x1xi64>) {
  // expected-error @+2 {{softmax_cross_entropy: labels must be [4] to match logits [4,2], got [4,1]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.softmax_cross_entropy %a, %y : (tensor<4x2xf32>, tensor<4x1xi64>) -> tensor<f32>
  return
}

// -----

func.func @sce_logits_rank(%a: tensor<4x2x1xf32>, %y: tensor<4xi32>) {
  // expected-error @+2 {{softmax_cross_entropy: logits must be [batch, classes], got [4,2,1]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.softmax_cross_entropy %a, %y : (tensor<4x2x1xf32>, tensor<4xi32>) -> tensor<f32>
  return
}

// -----

func.func @sce_reduction(%a: tensor<4x2xf32>, %y: tensor<4xi32>) {
  // expected-error @+2 {{softmax_cross_entropy: reduction must be "mean" or "sum", got "max"}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.softmax_cross_entropy %a, %y {reduction = "max"} : (tensor<4x2xf32>, tensor<4xi32>) -> tensor<f32>
  return
}

// -----

func.func @mse_shape(%p: tensor<2x3xf32>, %t: tensor<3x2xf32>) {
  // expected-error @+2 {{mse: prediction and target shapes differ: [2,3] vs [3,2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.mse %p, %t : (tensor<2x3xf32>, tensor<3x2xf32>) -> tensor<f32>
  return
}

// -----

// No broadcasting in the losses, even when it would be possible.
func.func @bce_shape(%p: tensor<2x3xf32>, %t: tensor<3xf32>) {
  // expected-error @+2 {{binary_cross_entropy: probability and target shapes differ: [2,3] vs [3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.binary_cross_entropy %p, %t : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<f32>
  return
}

// -----

func.func @mse_reduction(%p: tensor<2x3xf32>) {
  // expected-error @+2 {{mse: reduction must be "mean" or "sum", got "none"}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.mse %p, %p {reduction = "none"} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<f32>
  return
}

// -----

func.func @mse_i32(%p: tensor<2x3xi32>, %t: tensor<2x3xf32>) {
  // expected-error @+1 {{operand #0 must be ranked tensor of 32-bit float values, but got 'tensor<2x3xi32>'}}
  %0 = soma.mse %p, %t : (tensor<2x3xi32>, tensor<2x3xf32>) -> tensor<f32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Stored result types that disagree with inference
//===----------------------------------------------------------------------===//

func.func @matmul_wrong_result(%a: tensor<4x3xf32>, %b: tensor<3x2xf32>) {
  // expected-error @+2 {{'soma.matmul' op inferred type(s) 'tensor<4x2xf32>' are incompatible with return type(s) of operation 'tensor<4x5xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.matmul %a, %b : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x5xf32>
  return
}

// -----

// keepdims defaults to false, so the reduced dimension disappears.
func.func @reduce_wrong_keepdims(%a: tensor<4x3xf32>) {
  // expected-error @+2 {{inferred type(s) 'tensor<4xf32>' are incompatible with return type(s) of operation 'tensor<4x1xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.reduce_sum %a {axes = array<i64: 1>} : tensor<4x3xf32> -> tensor<4x1xf32>
  return
}

// -----

func.func @generic_exp_wrong_result(%a: tensor<4x3xf32>) {
  // expected-error @+2 {{'soma.exp' op inferred type(s) 'tensor<4x3xf32>' are incompatible with return type(s) of operation 'tensor<4x4xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = "soma.exp"(%a) : (tensor<4x3xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @concat_wrong_result(%a: tensor<2x3xf32>, %b: tensor<2x3xf32>, %c: tensor<2x3xf32>) {
  // expected-error @+2 {{inferred type(s) 'tensor<6x3xf32>' are incompatible with return type(s) of operation 'tensor<6x9xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.concat %a, %b, %c {axis = 0} : (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<6x9xf32>
  return
}

// -----

func.func @sce_wrong_result(%a: tensor<4x2xf32>, %y: tensor<4xi32>) {
  // expected-error @+1 {{'soma.softmax_cross_entropy' op result #0 must be 0D tensor of 32-bit float values, but got 'tensor<4xf32>'}}
  %0 = soma.softmax_cross_entropy %a, %y : (tensor<4x2xf32>, tensor<4xi32>) -> tensor<4xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// dropout and random_uniform
//===----------------------------------------------------------------------===//

func.func @dropout_rate(%x: tensor<4xf32>) {
  // expected-error @+1 {{dropout: rate 1.000000 is not in [0, 1)}}
  %0 = soma.dropout %x {rate = 1.0, seed = 1 : i64} : tensor<4xf32>
  return
}

// -----

func.func @dropout_seed(%x: tensor<4xf32>) {
  // expected-error @+1 {{dropout: missing attribute 'seed'}}
  %0 = soma.dropout %x {rate = 0.5} : tensor<4xf32>
  return
}

// -----

func.func @random_counter(%c: tensor<2xf32>) {
  // expected-error @+2 {{random_uniform: the counter must be a scalar (rank 0), got f32[2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.random_uniform %c {shape = array<i64: 3>, seed = 1 : i64} : tensor<2xf32> -> tensor<3xf32>
  return
}

// -----

func.func @random_shape(%c: tensor<f32>) {
  // expected-error @+2 {{random_uniform: shape [3,0] has a dimension < 1}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.random_uniform %c {shape = array<i64: 3, 0>, seed = 1 : i64} : tensor<f32> -> tensor<3x0xf32>
  return
}

// -----

func.func @fusion_not_elementwise(%a: tensor<2x2xf32>) -> tensor<2x2xf32> {
  %0 = soma.fusion "elementwise"(%a) : (tensor<2x2xf32>) -> tensor<2x2xf32> {
  ^bb0(%x: tensor<2x2xf32>):
    // expected-error @+1 {{'soma.matmul' op cannot be in an elementwise soma.fusion}}
    %1 = soma.matmul %x, %x : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>
    soma.yield %1 : tensor<2x2xf32>
  }
  return %0 : tensor<2x2xf32>
}

// -----

func.func @fusion_yield(%a: tensor<2xf32>) -> tensor<2xf32> {
  // expected-error @+1 {{'soma.fusion' op yields}}
  %0 = soma.fusion "elementwise"(%a) : (tensor<2xf32>) -> tensor<2xf32> {
  ^bb0(%x: tensor<2xf32>):
    %1 = soma.exp %x : tensor<2xf32>
    %2 = soma.reduce_sum %1 {axes = array<i64: 0>} : tensor<2xf32> -> tensor<f32>
    soma.yield %2 : tensor<f32>
  }
  return %0 : tensor<2xf32>
}

// -----

func.func @fusion_kind(%a: tensor<2xf32>) -> tensor<2xf32> {
  // expected-error @+1 {{'soma.fusion' op has unknown kind 'loop' (kinds: elementwise, reduction, contraction)}}
  %0 = soma.fusion "loop"(%a) : (tensor<2xf32>) -> tensor<2xf32> {
  ^bb0(%x: tensor<2xf32>):
    %1 = soma.exp %x : tensor<2xf32>
    soma.yield %1 : tensor<2xf32>
  }
  return %0 : tensor<2xf32>
}

// -----

func.func @fusion_reduction_end(%a: tensor<2x2xf32>) -> tensor<2x2xf32> {
  // expected-error @+1 {{'soma.fusion' op of kind reduction must end with one reduce_sum, reduce_mean or reduce_max whose result it yields}}
  %0 = soma.fusion "reduction"(%a) : (tensor<2x2xf32>) -> tensor<2x2xf32> {
  ^bb0(%x: tensor<2x2xf32>):
    %1 = soma.exp %x : tensor<2x2xf32>
    soma.yield %1 : tensor<2x2xf32>
  }
  return %0 : tensor<2x2xf32>
}

// -----

func.func @fusion_contraction_start(%a: tensor<2x2xf32>) -> tensor<2x2xf32> {
  // expected-error @+1 {{'soma.fusion' op of kind contraction must start with a contraction (matmul), after any gathers of its operands}}
  %0 = soma.fusion "contraction"(%a) : (tensor<2x2xf32>) -> tensor<2x2xf32> {
  ^bb0(%x: tensor<2x2xf32>):
    %1 = soma.exp %x : tensor<2x2xf32>
    soma.yield %1 : tensor<2x2xf32>
  }
  return %0 : tensor<2x2xf32>
}

// -----

func.func @fusion_contraction_operands(%a: tensor<2x2xf32>) -> tensor<2x2xf32> {
  // expected-error @+1 {{'soma.fusion' op of kind contraction must compute its product from its inputs or views of them that its packing computes}}
  %0 = soma.fusion "contraction"(%a) : (tensor<2x2xf32>) -> tensor<2x2xf32> {
  ^bb0(%x: tensor<2x2xf32>):
    %c = soma.constant dense<1.0> : tensor<2x2xf32>
    %1 = soma.matmul %x, %c : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>
    %2 = soma.relu %1 : tensor<2x2xf32>
    soma.yield %2 : tensor<2x2xf32>
  }
  return %0 : tensor<2x2xf32>
}

// -----

func.func @fusion_contraction_epilogue_shape(%a: tensor<2x2xf32>, %b: tensor<3x2x2xf32>) -> tensor<3x2x2xf32> {
  %0 = soma.fusion "contraction"(%a, %b) : (tensor<2x2xf32>, tensor<3x2x2xf32>) -> tensor<3x2x2xf32> {
  ^bb0(%x: tensor<2x2xf32>, %y: tensor<3x2x2xf32>):
    %1 = soma.matmul %x, %x : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>
    // expected-error @+1 {{'soma.add' op produces 'tensor<3x2x2xf32>', not the fusion's iteration shape}}
    %2 = soma.add %1, %y : tensor<2x2xf32>, tensor<3x2x2xf32>
    soma.yield %2 : tensor<3x2x2xf32>
  }
  return %0 : tensor<3x2x2xf32>
}

// -----

// A transpose the packing cannot compute (only {1, 0, 2, 3} of an NCHW
// tensor, read channel-major) is not a gather.
func.func @fusion_contraction_view(%a: tensor<2x3x4x5xf32>, %b: tensor<1x20x6xf32>) -> tensor<1x6x6xf32> {
  // expected-error @+1 {{'soma.fusion' op of kind contraction must compute its product from its inputs or views of them that its packing computes}}
  %0 = soma.fusion "contraction"(%a, %b) : (tensor<2x3x4x5xf32>, tensor<1x20x6xf32>) -> tensor<1x6x6xf32> {
  ^bb0(%x: tensor<2x3x4x5xf32>, %y: tensor<1x20x6xf32>):
    %1 = soma.transpose %x {perm = array<i64: 0, 1, 3, 2>} : tensor<2x3x4x5xf32> -> tensor<2x3x5x4xf32>
    %2 = soma.reshape %1 {shape = array<i64: 1, 6, 20>} : tensor<2x3x5x4xf32> -> tensor<1x6x20xf32>
    %3 = soma.matmul %2, %y : (tensor<1x6x20xf32>, tensor<1x20x6xf32>) -> tensor<1x6x6xf32>
    soma.yield %3 : tensor<1x6x6xf32>
  }
  return %0 : tensor<1x6x6xf32>
}

// -----

// The product may be reshaped for its epilogue only by splitting each of
// its dimensions (a convolution's [N, K, OH*OW] products as [N, K, OH, OW]).
func.func @fusion_contraction_product_view(%a: tensor<2x3x4xf32>, %b: tensor<2x4x6xf32>) -> tensor<6x6xf32> {
  %0 = soma.fusion "contraction"(%a, %b) : (tensor<2x3x4xf32>, tensor<2x4x6xf32>) -> tensor<6x6xf32> {
  ^bb0(%x: tensor<2x3x4xf32>, %y: tensor<2x4x6xf32>):
    %1 = soma.matmul %x, %y : (tensor<2x3x4xf32>, tensor<2x4x6xf32>) -> tensor<2x3x6xf32>
    // expected-error @+1 {{'soma.reshape' op views the product 'tensor<2x3x6xf32>' as 'tensor<6x6xf32>', which does not split each of its dimensions}}
    %2 = soma.reshape %1 {shape = array<i64: 6, 6>} : tensor<2x3x6xf32> -> tensor<6x6xf32>
    %3 = soma.relu %2 : tensor<6x6xf32>
    soma.yield %3 : tensor<6x6xf32>
  }
  return %0 : tensor<6x6xf32>
}

// -----

// max_pool2d_grad is only for windows that tile the input.
func.func @max_pool2d_grad_overlap(%x: tensor<1x1x5x5xf32>, %y: tensor<1x1x2x2xf32>) {
  // expected-error @+2 {{max_pool2d_grad: the windows [2,2] must tile the input and be at most 2 wide, got [1,1,5,5]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.max_pool2d_grad %x, %y, %y {kernel = array<i64: 2, 2>} : (tensor<1x1x5x5xf32>, tensor<1x1x2x2xf32>, tensor<1x1x2x2xf32>) -> tensor<1x1x5x5xf32>
  return
}

// -----

func.func @max_pool2d_grad_shapes(%x: tensor<1x1x4x4xf32>, %y: tensor<1x1x2x2xf32>, %g: tensor<1x1x2x3xf32>) {
  // expected-error @+2 {{max_pool2d_grad: output and grad must be [1,1,2,2], got [1,1,2,2] and [1,1,2,3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.max_pool2d_grad %x, %y, %g {kernel = array<i64: 2, 2>} : (tensor<1x1x4x4xf32>, tensor<1x1x2x2xf32>, tensor<1x1x2x3xf32>) -> tensor<1x1x4x4xf32>
  return
}

// -----

// avg_pool2d_grad's result is the tiled input: [N, C, OH * KH, OW * KW].
func.func @avg_pool2d_grad_result(%g: tensor<1x1x2x2xf32>) {
  // expected-error @+2 {{'soma.avg_pool2d_grad' op inferred type(s) 'tensor<1x1x4x4xf32>' are incompatible with return type(s) of operation 'tensor<1x1x5x4xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.avg_pool2d_grad %g {kernel = array<i64: 2, 2>} : tensor<1x1x2x2xf32> -> tensor<1x1x5x4xf32>
  return
}

// -----

func.func @avg_pool2d_grad_wide(%g: tensor<1x1x2x2xf32>) {
  // expected-error @+2 {{avg_pool2d_grad: grad must be [N, C, OH, OW] and the windows at most 2 wide, got grad [1,1,2,2] and kernel [3,3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.avg_pool2d_grad %g {kernel = array<i64: 3, 3>} : tensor<1x1x2x2xf32> -> tensor<1x1x6x6xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// one_hot
//===----------------------------------------------------------------------===//

// The attribute is read back unsigned; -1 must not pass as 2^64 - 1.
func.func @one_hot_negative_classes(%l: tensor<4xi32>) {
  // expected-error @+2 {{one_hot: classes must be >= 1, got -1}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.one_hot %l {classes = -1 : i64} : tensor<4xi32> -> tensor<4x3xf32>
  return
}

// -----

func.func @one_hot_labels_rank(%l: tensor<4x2xi32>) {
  // expected-error @+2 {{one_hot: labels must be [N] i32 or i64, got i32[4,2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.one_hot %l {classes = 3 : i64} : tensor<4x2xi32> -> tensor<4x3xf32>
  return
}

// -----

func.func @batch_norm_train_rank(%x: tensor<4x3xf32>, %g: tensor<3xf32>) {
  // expected-error @+2 {{batch_norm_train: input must be [N, C, ...] of rank 3 or more, got [4,3]}}
  // expected-error @+1 {{failed to infer returned types}}
  %y, %m, %v = soma.batch_norm_train %x, %g, %g {eps = 1.0e-5 : f64} : (tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}

// -----

func.func @batch_norm_grad_scale(%x: tensor<2x3x4xf32>, %c: tensor<3xf32>, %g: tensor<4xf32>) {
  // expected-error @+2 {{batch_norm_grad: scale must be [3] for input [2,3,4], got [4]}}
  // expected-error @+1 {{failed to infer returned types}}
  %dx, %dg, %db = soma.batch_norm_grad %x, %x, %c, %c, %g {eps = 1.0e-5 : f64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<4xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}

// -----

func.func @batch_norm_grad_dy(%x: tensor<2x3x4xf32>, %dy: tensor<2x3x5xf32>, %c: tensor<3xf32>) {
  // expected-error @+2 {{batch_norm_grad: grad must have the input's type f32[2,3,4], got f32[2,3,5]}}
  // expected-error @+1 {{failed to infer returned types}}
  %dx, %dg, %db = soma.batch_norm_grad %x, %dy, %c, %c, %c {eps = 1.0e-5 : f64} : (tensor<2x3x4xf32>, tensor<2x3x5xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}

// -----

func.func @softmax_grad_output_dtype(%y: tensor<4x3xi32>, %g: tensor<4x3xf32>) {
  // expected-error @+1 {{softmax_grad: output must be f32, got i32[4,3]}}
  %0 = soma.softmax_grad %y, %g {axis = 1} : tensor<4x3xi32>, tensor<4x3xf32>
  return
}

// -----

func.func @batch_norm_eps(%x: tensor<2x3x4xf32>, %c: tensor<3xf32>) {
  // expected-error @+2 {{batch_norm: eps must be > 0}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.batch_norm %x, %c, %c, %c, %c {eps = 0.0 : f64} : (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3x4xf32>
  return
}

// -----

func.func @batch_norm_momentum_nan(%x: tensor<2x3x4xf32>, %c: tensor<3xf32>) {
  // expected-error @+2 {{batch_norm: momentum must be in [0, 1], got nan}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = soma.batch_norm %x, %c, %c, %c, %c {eps = 1.0e-5 : f64, momentum = 0x7FF8000000000000 : f64} : (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3x4xf32>
  return
}

// -----

func.func @batch_norm_train_eps(%x: tensor<2x3x4xf32>, %c: tensor<3xf32>) {
  // expected-error @+2 {{batch_norm_train: eps must be > 0}}
  // expected-error @+1 {{failed to infer returned types}}
  %y, %m, %v = soma.batch_norm_train %x, %c, %c {eps = 0.0 : f64} : (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}

// -----

func.func @batch_norm_train_eps_nan(%x: tensor<2x3x4xf32>, %c: tensor<3xf32>) {
  // expected-error @+2 {{batch_norm_train: eps must be > 0}}
  // expected-error @+1 {{failed to infer returned types}}
  %y, %m, %v = soma.batch_norm_train %x, %c, %c {eps = 0x7FF8000000000000 : f64} : (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}

// -----

func.func @batch_norm_grad_eps(%x: tensor<2x3x4xf32>, %c: tensor<3xf32>) {
  // expected-error @+2 {{batch_norm_grad: eps must be > 0}}
  // expected-error @+1 {{failed to infer returned types}}
  %dx, %dg, %db = soma.batch_norm_grad %x, %x, %c, %c, %c {eps = -1.0e-5 : f64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}
