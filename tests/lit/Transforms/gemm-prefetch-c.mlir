// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg | FileCheck %s

// A product whose C exceeds 1 MiB (512 x 1024 floats: 2 MiB) updates C
// from a later block of K with C's rows out of cache. Its register tile
// (a "_pc" variant of the shared one) prefetches its block of C when it
// adds to it (mode 2), starts its accumulators from zero, and adds C once
// the k loop is done; the first block (mode 1) stores the product.
// CHECK-LABEL: func.func @large
//       CHECK: call @soma_gemm_tile_{{.*}}_pc(
//       CHECK: func.func private @soma_gemm_tile_{{.*}}_pc(
//  CHECK-SAME: %[[C:[a-z0-9]+]]: memref<{{[0-9]+}}xf32>, %[[OFF:[a-z0-9]+]]: index, %[[LDC:[a-z0-9]+]]: index, %[[MODE:[a-z0-9]+]]: index)
//       CHECK:   %[[LATER:.*]] = arith.cmpi eq, %[[MODE]], %c2
//       CHECK:   scf.if %[[LATER]] {
//       CHECK:     memref.prefetch %[[C]][%{{.*}}], read, locality<3>, data
//       CHECK:   }
//   CHECK-NOT:   vector.load %[[C]]
//       CHECK:   %[[ACC:.*]]:{{[0-9]+}} = scf.for {{.*}} iter_args(%{{.*}} = %cst, 
//       CHECK:   scf.if
//       CHECK:   } else {
//       CHECK:     scf.if %{{.*}} {
//       CHECK:       %[[OLD:.*]] = vector.load %[[C]]
//  CHECK-NEXT:       %[[SUM:.*]] = arith.addf %[[OLD]], %[[ACC]]#0
//       CHECK:       vector.store %[[SUM]], %[[C]]
//       CHECK:     } else {
//       CHECK:       vector.store %[[ACC]]#0, %[[C]]
func.func @large(%a: tensor<512x768xf32> {soma.input = "a"}, %b: tensor<768x1024xf32> {soma.input = "b"}) -> (tensor<512x1024xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<512x768xf32>, tensor<768x1024xf32>) -> tensor<512x1024xf32>
  return %0 : tensor<512x1024xf32>
}

// -----

// C of 1 MiB or less stays in cache: the tile starts from C's block.
// CHECK-LABEL: func.func @small
//   CHECK-NOT: _pc
//       CHECK: func.func private @soma_gemm_tile_
//   CHECK-NOT:   memref.prefetch
//       CHECK:   scf.if
//       CHECK:     vector.load
//       CHECK:   scf.for
func.func @small(%a: tensor<64x784xf32> {soma.input = "a"}, %b: tensor<784x256xf32> {soma.input = "b"}) -> (tensor<64x256xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<64x784xf32>, tensor<784x256xf32>) -> tensor<64x256xf32>
  return %0 : tensor<64x256xf32>
}
