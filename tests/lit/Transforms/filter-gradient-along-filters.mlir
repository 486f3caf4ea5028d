// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg -mlir-print-local-scope | FileCheck %s

// The filter gradient of a 3x3 "same" convolution with 16 filters (two
// vectors of 8: they fill their vectors as the 5 outputs of a row fill
// the image's 5 columns), vectors along the filters. Per unit: a band's dy
// transposed pixel-major on the stack (32 pixels x 16 filters: the whole
// 6 x 5 output is one band), and the band's rows of x for one channel
// copied with their zeros (8 rows of 8: one row above and below, a
// column left and right, one unused), loaded with the lanes inside the image
// (rows 1 to 6, columns 1 to 5 of the copy). The register tile (one
// filter vector x the 9 taps of a channel) starts from the unit's part
// (0 at its start). Four pixels a step (9 accumulators, 4 vectors of dy
// and a point in 16 registers; columns 0-3, then 4 alone): dy loaded once
// per pixel, and per kernel row 6 points of the copy broadcast, each used
// at once by the taps of the pixels that read it (point 0 by pixel 0's tap
// 0; point 1 by pixel 1's tap 0 and pixel 0's tap 1): no lane sums.
// CHECK-LABEL: func.func @filter_gradient_padded(
//       CHECK:   %[[PART:.*]] = memref.alloc() {alignment = 64 : i64} : memref<288xf32>
//       CHECK:   %[[DYT:.*]] = memref.alloca() {alignment = 64 : i64} : memref<512xf32>
//       CHECK:   %[[XP:.*]] = memref.alloca() {alignment = 64 : i64} : memref<64xf32>
//       CHECK:   vector.store %{{.*}}, %[[DYT]][%{{.*}}] : memref<512xf32>, vector<8xf32>
//       CHECK:   scf.for %{{.*}} = %{{.*}} to %c2{{.*}} step %c1{{.*}} {
//       CHECK:     scf.for %[[R:.*]] = %{{.*}} to %c8{{.*}} step %c1{{.*}} {
//       CHECK:       %[[ROW:.*]] = arith.addi %{{.*}}, %[[R]] : index
//       CHECK:       arith.cmpi slt, %[[ROW]], %c7{{.*}} : index
//       CHECK:       arith.cmpi sge, %[[ROW]], %c1{{.*}} : index
//       CHECK:       arith.cmpi slt, %{{.*}}, %{{.*}} : vector<8xi32>
//       CHECK:       arith.cmpi sge, %{{.*}}, %{{.*}} : vector<8xi32>
//       CHECK:       %[[V:.*]] = vector.maskedload %{{.*}} : memref<120xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:       vector.store %[[V]], %[[XP]][%{{.*}}] : memref<64xf32>, vector<8xf32>
//       CHECK:     scf.for %{{.*}} = %{{.*}} to %c2{{.*}} step %c1{{.*}} {
//       CHECK:       vector.load %[[PART]][%{{.*}}] : memref<288xf32>, vector<8xf32>
//       CHECK:       arith.select %{{.*}}, %{{.*}}, %{{.*}} : vector<8xf32>
//       CHECK:       scf.for %{{.*}} = %{{.*}} to %c6{{.*}} step %c1{{.*}} iter_args(
//       CHECK:         scf.for %{{.*}} = %{{.*}} to %c4{{.*}} step %c4{{.*}} iter_args(%[[A0:[^ ]*]] = %{{[^,]*}}, %[[A1:[^ ]*]] = %{{[^,]*}},
//       CHECK:           %[[DY0:.*]] = vector.load %[[DYT]][%{{.*}}] : memref<512xf32>, vector<8xf32>
//       CHECK:           %[[DY1:.*]] = vector.load %[[DYT]][%{{.*}}] : memref<512xf32>, vector<8xf32>
// CHECK-COUNT-2:           vector.load %[[DYT]][%{{.*}}] : memref<512xf32>, vector<8xf32>
//       CHECK:           %[[P0:.*]] = memref.load %[[XP]][%{{.*}}] : memref<64xf32>
//       CHECK:           %[[B0:.*]] = vector.broadcast %[[P0]] : f32 to vector<8xf32>
//       CHECK:           %[[F0:.*]] = vector.fma %[[DY0]], %[[B0]], %[[A0]] : vector<8xf32>
//       CHECK:           %[[P1:.*]] = memref.load %[[XP]][%{{.*}}] : memref<64xf32>
//       CHECK:           %[[B1:.*]] = vector.broadcast %[[P1]] : f32 to vector<8xf32>
//       CHECK:           vector.fma %[[DY1]], %[[B1]], %[[F0]] : vector<8xf32>
//       CHECK:           vector.fma %[[DY0]], %[[B1]], %[[A1]] : vector<8xf32>
//   CHECK-NOT:           vector.shuffle
//       CHECK:           scf.yield
// The last column alone: one load of dy, a broadcast per tap.
//       CHECK:         vector.load %[[DYT]][%{{.*}}] : memref<512xf32>, vector<8xf32>
//   CHECK-NOT:         vector.load %[[DYT]]
//       CHECK:         memref.load %[[XP]][%{{.*}}] : memref<64xf32>
//       CHECK:         vector.fma
//       CHECK:       vector.store %{{.*}}, %[[PART]][%{{.*}}] : memref<288xf32>, vector<8xf32>
func.func @filter_gradient_padded(%dy: tensor<2x16x6x5xf32> {soma.input = "dy"}, %x: tensor<2x2x6x5xf32> {soma.input = "x"}) -> (tensor<1x16x18xf32> {soma.output = "dw"}) {
  %0 = soma.fusion "contraction"(%dy, %x) : (tensor<2x16x6x5xf32>, tensor<2x2x6x5xf32>) -> tensor<1x16x18xf32> {
  ^bb0(%a: tensor<2x16x6x5xf32>, %b: tensor<2x2x6x5xf32>):
    %1 = soma.transpose %a {perm = array<i64: 1, 0, 2, 3>} : tensor<2x16x6x5xf32> -> tensor<16x2x6x5xf32>
    %2 = soma.reshape %1 {shape = array<i64: 1, 16, 60>} : tensor<16x2x6x5xf32> -> tensor<1x16x60xf32>
    %3 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 1, 1>} : tensor<2x2x6x5xf32> -> tensor<18x60xf32>
    %4 = soma.reshape %3 {shape = array<i64: 1, 18, 60>} : tensor<18x60xf32> -> tensor<1x18x60xf32>
    %5 = soma.matmul %2, %4 {transpose_b = true} : (tensor<1x16x60xf32>, tensor<1x18x60xf32>) -> tensor<1x16x18xf32>
    soma.yield %5 : tensor<1x16x18xf32>
  }
  return %0 : tensor<1x16x18xf32>
}

// -----

// 32 filters (four vectors of 8, in tiles of one) over 18 x 18 outputs:
// the band's dy (324 pixels x 32 filters, 41 KiB) is more than 32 KiB, so
// the filter tiles are the outer loop and the channels the inner one
// (each tile's part of dy stays in L1 for every channel). The whole
// output is one band (its dy under 128 KiB); both channels' rows of x are
// copied first, with their zeros (2 x 20 rows of 24), and each tile reads
// its channel's rows at 480 x c. Four pixels a step, then the last two.
// CHECK-LABEL: func.func @filter_gradient_filter_tiles_outer(
//       CHECK:   %[[PART:.*]] = memref.alloc() {alignment = 64 : i64} : memref<576xf32>
//       CHECK:   %[[DYT:.*]] = memref.alloca() {alignment = 64 : i64} : memref<10496xf32>
//       CHECK:   %[[XP:.*]] = memref.alloca() {alignment = 64 : i64} : memref<960xf32>
//       CHECK:   vector.store %{{.*}}, %[[DYT]][%{{.*}}] : memref<10496xf32>, vector<8xf32>
//       CHECK:   scf.for %[[C:.*]] = %{{.*}} to %c2{{.*}} step %c1{{.*}} {
//       CHECK:     %[[AT:.*]] = arith.muli %[[C]], %c480{{.*}} : index
//       CHECK:     scf.for %{{.*}} = %{{.*}} to %c20{{.*}} step %c1{{.*}} {
//       CHECK:       vector.maskedload %{{.*}} : memref<648xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:       vector.store %{{.*}}, %[[XP]][%{{.*}}] : memref<960xf32>, vector<8xf32>
//       CHECK:   scf.for %{{.*}} = %{{.*}} to %c4{{.*}} step %c1{{.*}} {
//       CHECK:     scf.for %[[C2:.*]] = %{{.*}} to %c2{{.*}} step %c1{{.*}} {
//       CHECK:       arith.muli %[[C2]], %c480{{.*}} : index
//       CHECK:       vector.load %[[PART]][%{{.*}}] : memref<576xf32>, vector<8xf32>
//       CHECK:       scf.for %{{.*}} = %{{.*}} to %c18{{.*}} step %c1{{.*}} iter_args(
//       CHECK:         scf.for %{{.*}} = %{{.*}} to %c16{{.*}} step %c4{{.*}} iter_args(
// CHECK-COUNT-4:           vector.load %[[DYT]][%{{.*}}] : memref<10496xf32>, vector<8xf32>
//       CHECK:           memref.load %[[XP]][%{{.*}}] : memref<960xf32>
//       CHECK:           vector.fma
//       CHECK:           scf.yield
// CHECK-COUNT-2:         vector.load %[[DYT]][%{{.*}}] : memref<10496xf32>, vector<8xf32>
//   CHECK-NOT:         vector.load %[[DYT]]
//       CHECK:         memref.load %[[XP]][%{{.*}}] : memref<960xf32>
//       CHECK:       vector.store %{{.*}}, %[[PART]][%{{.*}}] : memref<576xf32>, vector<8xf32>
func.func @filter_gradient_filter_tiles_outer(%dy: tensor<1x32x18x18xf32> {soma.input = "dy"}, %x: tensor<1x2x18x18xf32> {soma.input = "x"}) -> (tensor<1x32x18xf32> {soma.output = "dw"}) {
  %0 = soma.fusion "contraction"(%dy, %x) : (tensor<1x32x18x18xf32>, tensor<1x2x18x18xf32>) -> tensor<1x32x18xf32> {
  ^bb0(%a: tensor<1x32x18x18xf32>, %b: tensor<1x2x18x18xf32>):
    %1 = soma.transpose %a {perm = array<i64: 1, 0, 2, 3>} : tensor<1x32x18x18xf32> -> tensor<32x1x18x18xf32>
    %2 = soma.reshape %1 {shape = array<i64: 1, 32, 324>} : tensor<32x1x18x18xf32> -> tensor<1x32x324xf32>
    %3 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 1, 1>} : tensor<1x2x18x18xf32> -> tensor<18x324xf32>
    %4 = soma.reshape %3 {shape = array<i64: 1, 18, 324>} : tensor<18x324xf32> -> tensor<1x18x324xf32>
    %5 = soma.matmul %2, %4 {transpose_b = true} : (tensor<1x32x324xf32>, tensor<1x18x324xf32>) -> tensor<1x32x18xf32>
    soma.yield %5 : tensor<1x32x18xf32>
  }
  return %0 : tensor<1x32x18xf32>
}
