// RUN: soma-opt %s -split-input-file --pass-pipeline='builtin.module(soma-lower-to-linalg{conv-interior-work=0})' -mlir-print-local-scope | FileCheck %s
// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg -mlir-print-local-scope | FileCheck %s --check-prefix=SMALL

// A 3x3 "same" convolution over 8 x 16 (groups of 16 pixels: 2 chunks of
// 8). The groups whose windows stay inside the image's rows and x's plane
// (rows 1 to 6, pixels 17 to 110: groups 2 to 5, pixels 32 to 96) load x
// whole, without the table: the window columns off the row's left or
// right edge are cleared by an AND with a lane mask made once per tile (the
// sign of a difference: arith shift right by 31), and the tile is stored
// whole. The other groups (0, 1, then 6, 7: pixel 16 * g, plus the 64
// interior pixels from group 2 on) keep the masked loads and stores, in one
// loop before the interior one.
// CHECK-LABEL: func.func @direct_conv_interior(
//       CHECK:   scf.for %[[G:.*]] = %c0{{.*}} to %c4{{.*}} step %c1{{.*}} {
//       CHECK:     %[[P:.*]] = arith.muli %[[G]], %c16{{.*}} : index
//       CHECK:     %[[Q:.*]] = arith.addi %[[P]], %c64{{.*}} : index
//       CHECK:     %[[H:.*]] = arith.cmpi slt, %[[G]], %c2{{.*}} : index
//       CHECK:     arith.select %[[H]], %[[P]], %[[Q]] : index
//       CHECK:     vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<768xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:     vector.maskedstore
//       CHECK:   scf.for %{{.*}} = %c2{{.*}} to %c6{{.*}} step %c1{{.*}} {
//       CHECK:     arith.shrsi %{{.*}}, %{{.*}} : vector<8xi32>
//       CHECK:     scf.for %{{.*}} iter_args(
//   CHECK-NOT:     vector.maskedload
//       CHECK:       %[[X:.*]] = vector.load %{{.*}}[%{{.*}}] : memref<768xf32>, vector<8xf32>
//       CHECK:       %[[I:.*]] = arith.bitcast %[[X]] : vector<8xf32> to vector<8xi32>
//       CHECK:       arith.andi %[[I]], %{{.*}} : vector<8xi32>
//       CHECK:       vector.fma
//   CHECK-NOT:     vector.maskedstore
//       CHECK:     vector.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] : memref<2x4x128xf32>, vector<8xf32>
//   CHECK-NOT:     vector.maskedload
//       CHECK:   return
// Below the default threshold of work (2^26 multiply-adds; this one has
// 27,648): every group has masks, one loop over the 8 groups.
// SMALL-LABEL: func.func @direct_conv_interior(
//   SMALL-NOT:   arith.shrsi
//       SMALL:   scf.for %{{.*}} = %c0{{.*}} to %c8{{.*}} step %c1{{.*}} {
//   SMALL-NOT:   arith.shrsi
//   SMALL-NOT:   arith.select {{.*}} : index
//       SMALL:   vector.maskedload
//   SMALL-NOT:   arith.shrsi
//       SMALL:   return
func.func @direct_conv_interior(%w: tensor<4x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x8x16xf32> {soma.input = "x"}) -> (tensor<2x4x8x16xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<4x3x3x3xf32>, tensor<2x3x8x16xf32>) -> tensor<2x4x8x16xf32> {
  ^bb0(%a: tensor<4x3x3x3xf32>, %b: tensor<2x3x8x16xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 4, 27>} : tensor<4x3x3x3xf32> -> tensor<1x1x4x27xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 4, 27>} : tensor<1x1x4x27xf32> -> tensor<2x1x4x27xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 4, 27>} : tensor<2x1x4x27xf32> -> tensor<2x4x27xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 1, 1>} : tensor<2x3x8x16xf32> -> tensor<27x256xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 27, 2, 128>} : tensor<27x256xf32> -> tensor<1x27x2x128xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x128xf32> -> tensor<2x1x27x128xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 27, 128>} : tensor<2x1x27x128xf32> -> tensor<2x27x128xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x4x27xf32>, tensor<2x27x128xf32>) -> tensor<2x4x128xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 4, 8, 16>} : tensor<2x4x128xf32> -> tensor<2x4x8x16xf32>
    soma.yield %9 : tensor<2x4x8x16xf32>
  }
  return %0 : tensor<2x4x8x16xf32>
}

// -----

// A grid taller than the image (padding 2 above and below a 3x3 window:
// 12 output rows of 16 pixels over 10 rows of x). The window rows are inside
// the image for output rows 2 to 9 (pixels 32 to 159), and the loads stay
// in x's plane of 160 pixels from pixel 33 (whose first window point is 0)
// to pixel 158 (pixel 159's last one, 160, is past the plane): interior
// groups 3 to 8 (pixels 48 to 143). Bounded by the output's 192 pixels
// instead of the plane's, group 9 would read past the plane. The other 6
// groups have masks.
// CHECK-LABEL: func.func @direct_conv_taller_grid(
//       CHECK:   scf.for %{{.*}} = %c0{{.*}} to %c6{{.*}} step %c1{{.*}} {
//       CHECK:   scf.for %{{.*}} = %c3{{.*}} to %c9{{.*}} step %c1{{.*}} {
//       CHECK:     arith.shrsi
func.func @direct_conv_taller_grid(%w: tensor<4x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x10x16xf32> {soma.input = "x"}) -> (tensor<2x4x12x16xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<4x3x3x3xf32>, tensor<2x3x10x16xf32>) -> tensor<2x4x12x16xf32> {
  ^bb0(%a: tensor<4x3x3x3xf32>, %b: tensor<2x3x10x16xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 4, 27>} : tensor<4x3x3x3xf32> -> tensor<1x1x4x27xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 4, 27>} : tensor<1x1x4x27xf32> -> tensor<2x1x4x27xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 4, 27>} : tensor<2x1x4x27xf32> -> tensor<2x4x27xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 2, 1, 2, 1>, stride = array<i64: 1, 1>} : tensor<2x3x10x16xf32> -> tensor<27x384xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 27, 2, 192>} : tensor<27x384xf32> -> tensor<1x27x2x192xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x192xf32> -> tensor<2x1x27x192xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 27, 192>} : tensor<2x1x27x192xf32> -> tensor<2x27x192xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x4x27xf32>, tensor<2x27x192xf32>) -> tensor<2x4x192xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 4, 12, 16>} : tensor<2x4x192xf32> -> tensor<2x4x12x16xf32>
    soma.yield %9 : tensor<2x4x12x16xf32>
  }
  return %0 : tensor<2x4x12x16xf32>
}
