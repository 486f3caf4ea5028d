// RUN: soma-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(soma-linalg-to-loops{grain=16384}))' | FileCheck %s
// RUN: soma-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(soma-linalg-to-loops{grain=16}))' | FileCheck %s --check-prefix=G16
// RUN: soma-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(soma-linalg-to-loops{grain=17}))' | FileCheck %s --check-prefix=G17

// soma-linalg-to-loops: a linalg op with at least `grain` iteration points
// (default 524288; 16384 given explicitly on the first RUN line) and at least one
// parallel dimension becomes an
// scf.parallel over its parallel dimensions (reductions stay scf.for inside);
// anything else becomes a sequential scf.for nest.

// 4x4 = 16 points: sequential by default; parallel with grain=16 (the bound
// is inclusive), sequential again with grain=17. The loops around the
// innermost one are marked soma.no_unroll (LLVM vectorises the innermost
// loop and would otherwise unroll the ones around it, copying the vector
// loop each time); the innermost is not.
// CHECK-LABEL: func.func @small_elementwise
//   CHECK-NOT: scf.parallel
//       CHECK: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:   scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:     math.exp
//       CHECK:     memref.store
//  CHECK-NEXT:   }{{$}}
//  CHECK-NEXT: } {soma.no_unroll}
//   CHECK-NOT: scf.parallel
//   CHECK-NOT: linalg.
//       CHECK: return
// G16-LABEL: func.func @small_elementwise
//   G16-NOT: scf.for
//       G16: scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step
//       G16:   scf.for
//       G16:     math.exp
//       G16:   scf.reduce
//   G16-NOT: scf.parallel
//       G16: return
// G17-LABEL: func.func @small_elementwise
//   G17-NOT: scf.parallel
//       G17: scf.for
//       G17:   scf.for
//   G17-NOT: scf.parallel
//       G17: return
func.func @small_elementwise(%a: memref<4x4xf32>, %b: memref<4x4xf32>) {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%a : memref<4x4xf32>) outs(%b : memref<4x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = math.exp %in : f32
    linalg.yield %0 : f32
  }
  return
}

// -----

// 256x128 = 32768 points: the outermost loop becomes one scf.parallel (one
// OpenMP region), the inner loop stays sequential.
// CHECK-LABEL: func.func @large_elementwise
//   CHECK-NOT: scf.for
//       CHECK: scf.parallel (%[[I:.*]]) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
//  CHECK-NEXT:   scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
//       CHECK:     memref.load %{{.*}}[%{{.*}}, %{{.*}}] : memref<256x128xf32>
//       CHECK:     arith.maximumf
//       CHECK:     memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<256x128xf32>
//       CHECK:   scf.reduce
//   CHECK-NOT: scf.parallel
//   CHECK-NOT: linalg.
//       CHECK: return
func.func @large_elementwise(%a: memref<256x128xf32>, %b: memref<256x128xf32>) {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%a : memref<256x128xf32>) outs(%b : memref<256x128xf32>) {
  ^bb0(%in: f32, %out: f32):
    %c0 = arith.constant 0.0 : f32
    %0 = arith.maximumf %in, %c0 : f32
    linalg.yield %0 : f32
  }
  return
}

// -----

// A leading dimension of 1 (batch-1 inference): its loop runs once, so the
// next loop, 256 iterations, is the parallel one.
// CHECK-LABEL: func.func @batch_one
//       CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} {
//  CHECK-NEXT:   scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
//  CHECK-NEXT:     scf.for
//   CHECK-NOT: scf.parallel
func.func @batch_one(%a: memref<1x256x128xf32>, %b: memref<1x256x128xf32>) {
  linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%a : memref<1x256x128xf32>) outs(%b : memref<1x256x128xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = math.exp %in : f32
    linalg.yield %0 : f32
  }
  return
}

// -----

// A large reduction with kept dimensions: the parallel row loop becomes the
// scf.parallel, the reduced column loop an scf.for inside it.
// CHECK-LABEL: func.func @large_row_sum
//       CHECK: scf.parallel (%[[I:.*]]) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
//  CHECK-NEXT:   scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
//       CHECK:     arith.addf
//       CHECK:     memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<256xf32>
//       CHECK:   }
//       CHECK:   scf.reduce
func.func @large_row_sum(%a: memref<256x128xf32>, %s: memref<256xf32>) {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]}
      ins(%a : memref<256x128xf32>) outs(%s : memref<256xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %out, %in : f32
    linalg.yield %0 : f32
  }
  return
}

// -----

// Only reduction dimensions (a full reduction to a scalar, like a loss):
// sequential even though the iteration space is large.
// CHECK-LABEL: func.func @large_full_reduction
//   CHECK-NOT: scf.parallel
//       CHECK: scf.for
//       CHECK:   scf.for
//       CHECK:     arith.subf
//       CHECK:     memref.store %{{.*}}, %{{.*}}[] : memref<f32>
//   CHECK-NOT: scf.parallel
//       CHECK: return
// G16-LABEL: func.func @large_full_reduction
//   G16-NOT: scf.parallel
//       G16: return
func.func @large_full_reduction(%p: memref<256x128xf32>, %t: memref<256x128xf32>, %l: memref<f32>) {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> ()>], iterator_types = ["reduction", "reduction"]}
      ins(%p, %t : memref<256x128xf32>, memref<256x128xf32>) outs(%l : memref<f32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %d = arith.subf %a, %b : f32
    %sq = arith.mulf %d, %d : f32
    %s = arith.addf %acc, %sq : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Named linalg ops follow the same rule: a large fill and copy run in
// parallel, a small one does not; a rank-0 op has no loops at all.
// CHECK-LABEL: func.func @named_ops
//       CHECK: scf.parallel
//       CHECK:   memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<256x128xf32>
//       CHECK: scf.parallel
//       CHECK:   memref.load %{{.*}}[%{{.*}}, %{{.*}}] : memref<256x128xf32>
//       CHECK:   memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<256x128xf32>
//       CHECK: scf.for
//       CHECK:   memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<8xf32>
//   CHECK-NOT: scf.
//       CHECK: memref.store %{{.*}}, %{{.*}}[] : memref<f32>
//   CHECK-NOT: linalg.
//       CHECK: return
func.func @named_ops(%a: memref<256x128xf32>, %b: memref<256x128xf32>, %v: memref<8xf32>, %s: memref<f32>) {
  %z = arith.constant 0.0 : f32
  linalg.fill ins(%z : f32) outs(%a : memref<256x128xf32>)
  linalg.copy ins(%a : memref<256x128xf32>) outs(%b : memref<256x128xf32>)
  linalg.fill ins(%z : f32) outs(%v : memref<8xf32>)
  linalg.fill ins(%z : f32) outs(%s : memref<f32>)
  return
}

// -----

// A gather body (linalg.index + memref.load) keeps working under loops: the
// index becomes the loop variable.
// CHECK-LABEL: func.func @gather
//       CHECK: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:   %[[L:.*]] = memref.load %{{.*}}[%{{.*}}] : memref<4xi32>
//       CHECK:   %[[C:.*]] = arith.index_cast %[[L]] : i32 to index
//       CHECK:   memref.load %{{.*}}[%[[I]], %[[C]]] : memref<4x3xf32>
func.func @gather(%x: memref<4x3xf32>, %y: memref<4xi32>, %o: memref<4xf32>) {
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%y : memref<4xi32>) outs(%o : memref<4xf32>) {
  ^bb0(%label: i32, %out: f32):
    %i = linalg.index 0 : index
    %c = arith.index_cast %label : i32 to index
    %v = memref.load %x[%i, %c] : memref<4x3xf32>
    linalg.yield %v : f32
  }
  return
}

// -----

// A hand-written nest marked by the lowering (soma.parallel_work = the
// points of the whole nest) follows the grain: 20000 >= 16384 becomes an
// scf.parallel, 100 stays sequential; the mark is gone either way. A
// marked loop that stays sequential is marked soma.no_unroll instead (its
// back edge gets llvm.loop.unroll.disable in soma-scf-to-cf).
// CHECK-LABEL: func.func @marked_loops
//       CHECK: scf.parallel
//       CHECK: scf.for
//       CHECK: } {soma.no_unroll}
//   CHECK-NOT: soma.parallel_work
// G16-LABEL: func.func @marked_loops
//       G16: scf.parallel
//       G16: scf.parallel
func.func @marked_loops(%a: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %f = arith.constant 1.0 : f32
  scf.for %i = %c0 to %c8 step %c1 {
    memref.store %f, %a[%i] : memref<8xf32>
  } {soma.parallel_work = 20000 : i64}
  scf.for %i = %c0 to %c8 step %c1 {
    memref.store %f, %a[%i] : memref<8xf32>
  } {soma.parallel_work = 100 : i64}
  return
}
