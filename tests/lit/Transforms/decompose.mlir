// RUN: soma-opt %s -soma-decompose -split-input-file | FileCheck %s

// conv2d -> im2col, then one product per image and group (batch entry
// n*G + g): the columns viewed per image [N*G, R, OH*OW], the filter
// [G, K/G, R] broadcast to every image, and the products [N*G, K/G, OH*OW]
// reshaped to NCHW (no transpose of the output).
// CHECK-LABEL: func.func @conv(
//       CHECK: %[[COLS:.*]] = soma.im2col %arg0 {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 2, 2>} : tensor<2x4x8x8xf32> -> tensor<36x32xf32>
//       CHECK: %[[C4:.*]] = soma.reshape %[[COLS]] {shape = array<i64: 2, 18, 2, 16>}
//       CHECK: %[[CT:.*]] = soma.transpose %[[C4]] {perm = array<i64: 2, 0, 1, 3>} : tensor<2x18x2x16xf32> -> tensor<2x2x18x16xf32>
//       CHECK: %[[C3:.*]] = soma.reshape %[[CT]] {shape = array<i64: 4, 18, 16>}
//       CHECK: %[[W4:.*]] = soma.reshape %arg1 {shape = array<i64: 1, 2, 3, 18>}
//       CHECK: %[[WB:.*]] = soma.broadcast_to %[[W4]] {shape = array<i64: 2, 2, 3, 18>}
//       CHECK: %[[W3:.*]] = soma.reshape %[[WB]] {shape = array<i64: 4, 3, 18>}
//       CHECK: %[[Y3:.*]] = soma.matmul %[[W3]], %[[C3]] : (tensor<4x3x18xf32>, tensor<4x18x16xf32>) -> tensor<4x3x16xf32>
//       CHECK: %[[Y:.*]] = soma.reshape %[[Y3]] {shape = array<i64: 2, 6, 4, 4>}
//   CHECK-NOT: soma.transpose
//       CHECK: return %[[Y]]
//   CHECK-NOT: soma.conv2d
func.func @conv(%x: tensor<2x4x8x8xf32> {soma.input = "x"}, %w: tensor<6x2x3x3xf32> {soma.input = "w"}) -> (tensor<2x6x4x4xf32> {soma.output = "y"}) {
  %0 = soma.conv2d %x, %w {stride = array<i64: 2, 2>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>, groups = 2 : i64} : (tensor<2x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<2x6x4x4xf32>
  return %0 : tensor<2x6x4x4xf32>
}

// -----

// Pooling: im2col (max pads with -inf, average with 0), a reduction over the
// window dimension, back to NCHW. Max and average pooling whose windows
// tile the input (2 x 2 of stride 2 over 4 x 4) stay: they are lowered
// directly.
// CHECK-LABEL: func.func @pools(
//       CHECK: soma.im2col %arg0 {{.*}}pad_value = 0xFFF0000000000000 : f64
//       CHECK: soma.reduce_max %{{.*}} {axes = array<i64: 1>} : tensor<3x9x8xf32> -> tensor<3x8xf32>
// (a zero pad_value is the default and not printed)
//       CHECK: soma.im2col %arg0 {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding
//       CHECK: soma.reduce_mean %{{.*}} {axes = array<i64: 1>} : tensor<3x9x8xf32> -> tensor<3x8xf32>
//       CHECK: %[[TILED:.*]] = soma.max_pool2d %arg0 {kernel = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 2, 2>} : tensor<2x3x4x4xf32> -> tensor<2x3x2x2xf32>
//       CHECK: %[[ATILED:.*]] = soma.avg_pool2d %arg0 {kernel = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 2, 2>} : tensor<2x3x4x4xf32> -> tensor<2x3x2x2xf32>
//       CHECK: return %{{.*}}, %{{.*}}, %[[TILED]], %[[ATILED]]
func.func @pools(%x: tensor<2x3x4x4xf32> {soma.input = "x"}) -> (tensor<2x3x2x2xf32> {soma.output = "m"}, tensor<2x3x2x2xf32> {soma.output = "a"}, tensor<2x3x2x2xf32> {soma.output = "t"}, tensor<2x3x2x2xf32> {soma.output = "at"}) {
  %0 = soma.max_pool2d %x {kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>} : tensor<2x3x4x4xf32> -> tensor<2x3x2x2xf32>
  %1 = soma.avg_pool2d %x {kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>} : tensor<2x3x4x4xf32> -> tensor<2x3x2x2xf32>
  %2 = soma.max_pool2d %x {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>} : tensor<2x3x4x4xf32> -> tensor<2x3x2x2xf32>
  %3 = soma.avg_pool2d %x {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>} : tensor<2x3x4x4xf32> -> tensor<2x3x2x2xf32>
  return %0, %1, %2, %3 : tensor<2x3x2x2xf32>, tensor<2x3x2x2xf32>, tensor<2x3x2x2xf32>, tensor<2x3x2x2xf32>
}

// -----

// The gradient of a ReLU whose output is max-pooled, mul(max_pool2d_grad(x,
// y, g), step(x)), becomes one max_pool2d_grad {relu = true}; a step of
// another value stays a product.
// CHECK-LABEL: func.func @relu_pool_grad(
//       CHECK: %[[F:.*]] = soma.max_pool2d_grad %arg0, %arg1, %arg2 {kernel = array<i64: 2, 2>, relu = true}
//   CHECK-NOT: soma.step %arg0
//       CHECK: %[[P:.*]] = soma.max_pool2d_grad %arg0, %arg1, %arg2 {kernel = array<i64: 2, 2>}
//       CHECK: %[[S:.*]] = soma.step %arg3
//       CHECK: %[[M:.*]] = soma.mul %[[P]], %[[S]]
//       CHECK: return %[[F]], %[[M]]
func.func @relu_pool_grad(%x: tensor<1x2x4x4xf32> {soma.input = "x"}, %y: tensor<1x2x2x2xf32> {soma.input = "y"}, %g: tensor<1x2x2x2xf32> {soma.input = "g"}, %z: tensor<1x2x4x4xf32> {soma.input = "z"}) -> (tensor<1x2x4x4xf32> {soma.output = "a"}, tensor<1x2x4x4xf32> {soma.output = "b"}) {
  %0 = soma.max_pool2d_grad %x, %y, %g {kernel = array<i64: 2, 2>} : (tensor<1x2x4x4xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32>
  %1 = soma.step %x : tensor<1x2x4x4xf32>
  %2 = soma.mul %1, %0 : tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>
  %3 = soma.max_pool2d_grad %x, %y, %g {kernel = array<i64: 2, 2>} : (tensor<1x2x4x4xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32>
  %4 = soma.step %z : tensor<1x2x4x4xf32>
  %5 = soma.mul %3, %4 : tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>
  return %2, %5 : tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>
}

// -----

// A batch_norm_train read by an elementwise op (a ReLU) has its output
// computed again from x and the statistics as elementwise ops, which then
// fuse with the ReLU; the op keeps the statistics. One returned as it is
// (no elementwise reader) keeps its output.
// CHECK-LABEL: func.func @bn_split
//       CHECK: %[[Y:.*]], %[[M:.*]], %[[V:.*]] = soma.batch_norm_train %arg0
//       CHECK: %[[VR:.*]] = soma.reshape %[[V]] {shape = array<i64: 1, 3, 1, 1>}
//       CHECK: soma.sqrt
//       CHECK: %[[MR:.*]] = soma.reshape %[[M]] {shape = array<i64: 1, 3, 1, 1>}
//       CHECK: %[[XC:.*]] = soma.sub %arg0, %[[MR]]
//       CHECK: %[[N:.*]] = soma.mul %[[XC]]
//       CHECK: %[[A:.*]] = soma.add %[[N]]
//       CHECK: %[[R:.*]] = soma.relu %[[A]]
//       CHECK: %[[Y2:.*]], %{{.*}}, %{{.*}} = soma.batch_norm_train %arg0
//       CHECK: return %[[R]], %[[Y2]]
func.func @bn_split(%x: tensor<2x3x4x4xf32>, %g: tensor<3xf32>, %b: tensor<3xf32>) -> (tensor<2x3x4x4xf32>, tensor<2x3x4x4xf32>) {
  %y, %m, %v = soma.batch_norm_train %x, %g, %b {eps = 1.0e-5 : f64} : (tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>)
  %r = soma.relu %y : tensor<2x3x4x4xf32>
  %y2, %m2, %v2 = soma.batch_norm_train %x, %b, %g {eps = 1.0e-5 : f64} : (tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return %r, %y2 : tensor<2x3x4x4xf32>, tensor<2x3x4x4xf32>
}
