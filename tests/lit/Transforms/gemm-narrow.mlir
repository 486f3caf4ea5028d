// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg | FileCheck %s

// A product with fewer columns than the register tile's NR (16 on AVX2,
// soma-opt's default) is computed as its transpose C^T = B^T A^T into a
// buffer [batch, N, M], whose rows the tiles fill with M, then transposed
// into C: an MLP's 10-wide last layer (64x10x256).
// CHECK-LABEL: func.func @narrow
//       CHECK:   %[[T:.*]] = memref.alloc() {alignment = 64 : i64} : memref<1x10x64xf32>
//       CHECK:   } {soma.outline = "gemm"}
//       CHECK:   %[[X:.*]] = memref.load %[[T]][%[[B:.*]], %[[N:.*]], %[[M:.*]]] : memref<1x10x64xf32>
//  CHECK-NEXT:   memref.store %[[X]], %{{.*}}[%[[B]], %[[M]], %[[N]]] : memref<1x64x10xf32>
func.func @narrow(%a: tensor<64x256xf32> {soma.input = "a"}, %b: tensor<256x10xf32> {soma.input = "b"}) -> (tensor<64x10xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<64x256xf32>, tensor<256x10xf32>) -> tensor<64x10xf32>
  return %0 : tensor<64x10xf32>
}

// -----

// As many columns as the tile has: computed as it is written.
// CHECK-LABEL: func.func @full_width
//   CHECK-NOT:   memref<1x16x64xf32>
//       CHECK:   } {soma.outline = "gemm"}
func.func @full_width(%a: tensor<64x256xf32> {soma.input = "a"}, %b: tensor<256x16xf32> {soma.input = "b"}) -> (tensor<64x16xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<64x256xf32>, tensor<256x16xf32>) -> tensor<64x16xf32>
  return %0 : tensor<64x16xf32>
}

// -----

// Fewer rows than columns: the transpose would not fill its tiles better.
// CHECK-LABEL: func.func @few_rows
//   CHECK-NOT:   memref<1x10x8xf32>
//       CHECK:   } {soma.outline = "gemm"}
func.func @few_rows(%a: tensor<8x256xf32> {soma.input = "a"}, %b: tensor<256x10xf32> {soma.input = "b"}) -> (tensor<8x10xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<8x256xf32>, tensor<256x10xf32>) -> tensor<8x10xf32>
  return %0 : tensor<8x10xf32>
}
