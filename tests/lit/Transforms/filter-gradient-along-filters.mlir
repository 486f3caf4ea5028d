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
// (0 at its start), loads dy once per pixel and broadcasts one point of
// the copy per tap: no lane sums.
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
//       CHECK:         scf.for %{{.*}} = %{{.*}} to %c5{{.*}} step %c1{{.*}} iter_args(
//       CHECK:           %[[DY:.*]] = vector.load %[[DYT]][%{{.*}}] : memref<512xf32>, vector<8xf32>
//       CHECK:           %[[P:.*]] = memref.load %[[XP]][%{{.*}}] : memref<64xf32>
//       CHECK:           %[[B:.*]] = vector.broadcast %[[P]] : f32 to vector<8xf32>
//       CHECK:           vector.fma %[[DY]], %[[B]], %{{.*}} : vector<8xf32>
//   CHECK-NOT:           vector.shuffle
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
