// RUN: soma-opt %s -split-input-file --pass-pipeline='builtin.module(soma-lower-to-linalg{vector-width=16})' -mlir-print-local-scope | FileCheck %s
// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg -mlir-print-local-scope | FileCheck %s --check-prefix=AVX2

// With AVX-512, a product of at least 256 rows and 256 columns takes the
// wide register tile, 6 rows x 64 columns (4 vectors), here reading B in
// place (320 columns: 5 whole panels of 64) with its row stride; AVX2
// keeps its 6 x 16 tile.
// CHECK-LABEL: func.func @wide(
//   CHECK-NOT:   soma_gemm_tile_rows_12x32
// (B in place: the tile's 5th argument is B's flat view, not a packed
// panel, with its row stride, 320, as the 7th.)
//       CHECK:   call @soma_gemm_tile_rows_6x64_v16_b262144(%reinterpret_cast{{[^,]*}}, %{{[^,]*}}, %c300{{[^,]*}}, %{{[^,]*}}, %reinterpret_cast{{[^,]*}}, %{{[^,]*}}, %c320{{[^,]*}}, %{{[^,]*}},
// The tile's k loop: 24 accumulators; per k, 4 vectors of B, then for
// each of the 6 rows a broadcast of A and 4 FMAs, each of the row's
// broadcast with one of the 4 vectors.
//       CHECK:   func.func private @soma_gemm_tile_rows_6x64_v16_b262144(
//       CHECK:     scf.for {{.*}} -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
//       CHECK:       %[[B0:.*]] = vector.load %arg4
//       CHECK:       %[[B1:.*]] = vector.load %arg4
//       CHECK:       %[[B2:.*]] = vector.load %arg4
//       CHECK:       %[[B3:.*]] = vector.load %arg4
//   CHECK-NOT:       vector.fma
//       CHECK:       %[[A0:.*]] = vector.broadcast
//  CHECK-NEXT:       vector.fma %[[A0]], %[[B0]],
//  CHECK-NEXT:       vector.fma %[[A0]], %[[B1]],
//  CHECK-NEXT:       vector.fma %[[A0]], %[[B2]],
//  CHECK-NEXT:       vector.fma %[[A0]], %[[B3]],
//       CHECK:       %[[A1:.*]] = vector.broadcast
//  CHECK-NEXT:       vector.fma %[[A1]], %[[B0]],
//  CHECK-NEXT:       vector.fma %[[A1]], %[[B1]],
//  CHECK-NEXT:       vector.fma %[[A1]], %[[B2]],
//  CHECK-NEXT:       vector.fma %[[A1]], %[[B3]],
//       CHECK:       %[[A2:.*]] = vector.broadcast
//  CHECK-NEXT:       vector.fma %[[A2]], %[[B0]],
//  CHECK-NEXT:       vector.fma %[[A2]], %[[B1]],
//  CHECK-NEXT:       vector.fma %[[A2]], %[[B2]],
//  CHECK-NEXT:       vector.fma %[[A2]], %[[B3]],
//       CHECK:       %[[A3:.*]] = vector.broadcast
//  CHECK-NEXT:       vector.fma %[[A3]], %[[B0]],
//  CHECK-NEXT:       vector.fma %[[A3]], %[[B1]],
//  CHECK-NEXT:       vector.fma %[[A3]], %[[B2]],
//  CHECK-NEXT:       vector.fma %[[A3]], %[[B3]],
//       CHECK:       %[[A4:.*]] = vector.broadcast
//  CHECK-NEXT:       vector.fma %[[A4]], %[[B0]],
//  CHECK-NEXT:       vector.fma %[[A4]], %[[B1]],
//  CHECK-NEXT:       vector.fma %[[A4]], %[[B2]],
//  CHECK-NEXT:       vector.fma %[[A4]], %[[B3]],
//       CHECK:       %[[A5:.*]] = vector.broadcast
//  CHECK-NEXT:       vector.fma %[[A5]], %[[B0]],
//  CHECK-NEXT:       vector.fma %[[A5]], %[[B1]],
//  CHECK-NEXT:       vector.fma %[[A5]], %[[B2]],
//  CHECK-NEXT:       vector.fma %[[A5]], %[[B3]],
//   CHECK-NOT:       vector.fma
//       CHECK:       scf.yield
// AVX2-LABEL: func.func @wide(
//       AVX2:   call @soma_gemm_tile_rows_6x16_v8_b65536(
func.func @wide(%a: tensor<256x300xf32> {soma.input = "a"}, %b: tensor<300x320xf32> {soma.input = "b"}) -> (tensor<256x320xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<256x300xf32>, tensor<300x320xf32>) -> tensor<256x320xf32>
  return %0 : tensor<256x320xf32>
}

// -----

// Fewer than 256 rows, or fewer than 256 columns: the 12 x 32 tile.
// CHECK-LABEL: func.func @few_rows(
//       CHECK:   call @soma_gemm_tile_rows_12x32_v16_b262144(
func.func @few_rows(%a: tensor<255x300xf32> {soma.input = "a"}, %b: tensor<300x320xf32> {soma.input = "b"}) -> (tensor<255x320xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<255x300xf32>, tensor<300x320xf32>) -> tensor<255x320xf32>
  return %0 : tensor<255x320xf32>
}

// -----

// 256 rows and columns: the wide tile (the sides' lower bounds are
// inclusive). 288 columns: 64-column panels would compute 320 of them,
// 32-column ones 288: 12 x 32, B read in place.
// CHECK-LABEL: func.func @square_256(
//       CHECK:   call @soma_gemm_tile_rows_6x64_v16_b262144(
func.func @square_256(%a: tensor<256x300xf32> {soma.input = "a"}, %b: tensor<300x256xf32> {soma.input = "b"}) -> (tensor<256x256xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<256x300xf32>, tensor<300x256xf32>) -> tensor<256x256xf32>
  return %0 : tensor<256x256xf32>
}

// -----

// CHECK-LABEL: func.func @columns_288(
//       CHECK:   call @soma_gemm_tile_rows_12x32_v16_b262144(%reinterpret_cast{{[^,]*}}, %{{[^,]*}}, %c300{{[^,]*}}, %{{[^,]*}}, %reinterpret_cast{{[^,]*}}, %{{[^,]*}}, %c288{{[^,]*}}, %{{[^,]*}},
func.func @columns_288(%a: tensor<300x300xf32> {soma.input = "a"}, %b: tensor<300x288xf32> {soma.input = "b"}) -> (tensor<300x288xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<300x300xf32>, tensor<300x288xf32>) -> tensor<300x288xf32>
  return %0 : tensor<300x288xf32>
}

// -----

// 255 columns: the 12 x 32 tile.
// CHECK-LABEL: func.func @columns_255(
//       CHECK:   call @soma_gemm_tile_rows_12x32_v16_b262144(
func.func @columns_255(%a: tensor<300x300xf32> {soma.input = "a"}, %b: tensor<300x255xf32> {soma.input = "b"}) -> (tensor<300x255xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<300x300xf32>, tensor<300x255xf32>) -> tensor<300x255xf32>
  return %0 : tensor<300x255xf32>
}

// -----

// CHECK-LABEL: func.func @few_columns(
//       CHECK:   call @soma_gemm_tile_rows_12x32_v16_b262144(
func.func @few_columns(%a: tensor<300x300xf32> {soma.input = "a"}, %b: tensor<300x224xf32> {soma.input = "b"}) -> (tensor<300x224xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<300x300xf32>, tensor<300x224xf32>) -> tensor<300x224xf32>
  return %0 : tensor<300x224xf32>
}
