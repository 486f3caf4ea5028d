// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg -mlir-print-local-scope | FileCheck %s
// RUN: soma-opt %s -split-input-file --pass-pipeline='builtin.module(soma-lower-to-linalg{vector-width=16})' -mlir-print-local-scope | FileCheck %s --check-prefix=AVX512

// An MLP layer at batch 64 (64 x 784 times 784 x 256): A's rows and B's
// are both read where they are stored. B (not transposed, 256 columns, 16
// whole panels of 16) is not packed: the unit allocates no panels, and the
// register tile takes a flat view of B with its row stride, 256, where a
// packed panel has 16; the B offset it gets is that of B's element (pc, n).
// CHECK-LABEL: func.func @mlp_layer(
//       CHECK:   %[[BC:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2]] : memref<1x784x256xf32> into memref<200704xf32>
//       CHECK:   %[[BF:.*]] = memref.reinterpret_cast %[[BC]] to offset: [0], sizes: [1073741824], strides: [1]
//       CHECK:   llvm.intr.stacksave
//   CHECK-NOT:   memref<65536xf32>
//       CHECK:   memref.alloca() {alignment = 64 : i64} : memref<96xf32>
//   CHECK-NOT:   memref.alloca
//       CHECK:   scf.for %[[PC:.*]] = %{{.*}} to %{{.*}} step %c200
//   CHECK-NOT:     vector.store
//       CHECK:     %[[ROW:.*]] = arith.addi %{{.*}}, %[[PC]] : index
//       CHECK:     %[[AT:.*]] = arith.muli %[[ROW]], %c256{{.*}} : index
//       CHECK:     %[[BB:.*]] = arith.addi %[[AT]], %{{.*}} : index
//       CHECK:     call @soma_gemm_tile_rows_6x16_v8_b65536(%{{.*}}, %{{.*}}, %c784{{.*}}, %{{.*}}, %[[BF]], %[[BB]], %c256{{.*}}, %{{.*}})
// With AVX-512's tiles (8 x 32 here: 64 rows), the same: the JIT's
// interpreter cases (matmul_b_in_place_*) run this path on such a host.
// AVX512-LABEL: func.func @mlp_layer(
//   AVX512-NOT:   memref<262144xf32>
//       AVX512:   call @soma_gemm_tile_rows_8x32_v16_b262144(%{{.*}}, %{{.*}}, %c784{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %c256{{.*}}, %{{.*}})
func.func @mlp_layer(%a: tensor<64x784xf32> {soma.input = "a"}, %b: tensor<784x256xf32> {soma.input = "b"}) -> (tensor<64x256xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<64x784xf32>, tensor<784x256xf32>) -> tensor<64x256xf32>
  return %0 : tensor<64x256xf32>
}

// -----

// 1024 rows in one unit (too little work to share): each B panel serves
// 171 register tiles, so it is packed, and the tile reads it with row
// stride 16.
// CHECK-LABEL: func.func @many_rows(
//       CHECK:   %[[BP:.*]] = memref.alloca() {alignment = 64 : i64} : memref<65536xf32>
//       CHECK:   vector.store %{{.*}}, %[[BP]]
//       CHECK:   %[[BPF:.*]] = memref.reinterpret_cast %[[BP]]
//       CHECK:   call @soma_gemm_tile_rows_6x16_v8_b65536(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[BPF]], %{{.*}}, %c16{{.*}}, %{{.*}})
func.func @many_rows(%a: tensor<1024x8xf32> {soma.input = "a"}, %b: tensor<8x32xf32> {soma.input = "b"}) -> (tensor<1024x32xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<1024x8xf32>, tensor<8x32xf32>) -> tensor<1024x32xf32>
  return %0 : tensor<1024x32xf32>
}

// -----

// 40 columns: the last panel (8 of 16 columns) would read past B's rows, so
// B is packed (zero padded).
// CHECK-LABEL: func.func @edge_columns(
//       CHECK:   %[[BP:.*]] = memref.alloca() {alignment = 64 : i64} : memref<65536xf32>
//       CHECK:   call @soma_gemm_tile_rows_6x16_v8_b65536(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %c16{{.*}}, %{{.*}})
func.func @edge_columns(%a: tensor<64x100xf32> {soma.input = "a"}, %b: tensor<100x40xf32> {soma.input = "b"}) -> (tensor<64x40xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<64x100xf32>, tensor<100x40xf32>) -> tensor<64x40xf32>
  return %0 : tensor<64x40xf32>
}

// -----

// B transposed is read along k by the packing, as before.
// CHECK-LABEL: func.func @transposed_b(
//       CHECK:   memref.alloca() {alignment = 64 : i64} : memref<65536xf32>
//       CHECK:   call @soma_gemm_pack_along_k
func.func @transposed_b(%a: tensor<64x256xf32> {soma.input = "a"}, %b: tensor<128x256xf32> {soma.input = "b"}) -> (tensor<64x128xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b {transpose_b = true} : (tensor<64x256xf32>, tensor<128x256xf32>) -> tensor<64x128xf32>
  return %0 : tensor<64x128xf32>
}
