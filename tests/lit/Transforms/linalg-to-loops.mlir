// RUN: soma-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(soma-linalg-to-loops{grain=32768}))' | FileCheck %s
// RUN: soma-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(soma-linalg-to-loops{grain=128}))' | FileCheck %s --check-prefix=G128
// RUN: soma-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(soma-linalg-to-loops{grain=129}))' | FileCheck %s --check-prefix=G129

// soma-linalg-to-loops: a linalg op whose work reaches `grain` (default
// 131072; 32768 given explicitly on the first RUN line) and that has at
// least one parallel dimension becomes an scf.parallel over its outermost
// parallel dimension (reductions stay scf.for inside); anything else
// becomes a sequential scf.for nest. Its work is its iteration points
// times its cost per point (the arrays it reads or writes along its
// loops, plus 4 per division, square root, exponential, logarithm, tanh or
// power) times 4 / 3.

// 4x4 = 16 points of cost 6 (a read, a write, an exp): work 128,
// sequential by default; parallel with grain=128 (the bound is
// inclusive), sequential again with grain=129. The loops around the
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
// G128-LABEL: func.func @small_elementwise
//   G128-NOT: scf.for
//       G128: scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step
//       G128:   scf.for
//       G128:     math.exp
//       G128:   scf.reduce
//   G128-NOT: scf.parallel
//       G128: return
// G129-LABEL: func.func @small_elementwise
//   G129-NOT: scf.parallel
//       G129: scf.for
//       G129:   scf.for
//   G129-NOT: scf.parallel
//       G129: return
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

// 256x128 = 32768 points of cost 2: the outermost loop becomes one
// scf.parallel (one OpenMP region), the inner loop stays sequential.
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

// The work weighs each point: 64x128 = 8192 points of an update that reads
// 4 arrays, writes 3 and divides and takes a square root (cost 7 + 8 = 15,
// work 163840) run in parallel; a copy of the same size (cost 2, work
// 21845) does not.
// CHECK-LABEL: func.func @weighted_points
//       CHECK: scf.parallel
//       CHECK:   math.sqrt
//       CHECK:   arith.divf
//       CHECK:   scf.reduce
//   CHECK-NOT: scf.parallel
//       CHECK: scf.for
//       CHECK:   scf.for
//   CHECK-NOT: scf.parallel
//       CHECK: return
func.func @weighted_points(%g: memref<64x128xf32>, %m: memref<64x128xf32>, %v: memref<64x128xf32>, %p: memref<64x128xf32>,
                           %m2: memref<64x128xf32>, %v2: memref<64x128xf32>, %p2: memref<64x128xf32>) {
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%g, %m, %v, %p : memref<64x128xf32>, memref<64x128xf32>, memref<64x128xf32>, memref<64x128xf32>)
      outs(%m2, %v2, %p2 : memref<64x128xf32>, memref<64x128xf32>, memref<64x128xf32>) {
  ^bb0(%gi: f32, %mi: f32, %vi: f32, %pi: f32, %o0: f32, %o1: f32, %o2: f32):
    %m3 = arith.addf %mi, %gi : f32
    %g2 = arith.mulf %gi, %gi : f32
    %v3 = arith.addf %vi, %g2 : f32
    %s = math.sqrt %v3 : f32
    %d = arith.divf %m3, %s : f32
    %p3 = arith.subf %pi, %d : f32
    linalg.yield %m3, %v3, %p3 : f32, f32, f32
  }
  linalg.copy ins(%g : memref<64x128xf32>) outs(%m2 : memref<64x128xf32>)
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
// scf.parallel, the reduced column loop an scf.for inside it. The row's sum
// is carried in a vector of 16 partial sums (element 0 starts from the
// output, the others from -0), 16 columns per iteration, then the elements
// are added pairwise ((0+1)+(2+3))+... and the result stored once.
// CHECK-LABEL: func.func @large_row_sum
//       CHECK: scf.parallel (%[[I:.*]]) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
//  CHECK-NEXT:   %[[OLD:.*]] = memref.load %{{.*}}[%[[I]]] : memref<256xf32>
//  CHECK-NEXT:   %[[NEG0:.*]] = arith.constant -0.000000e+00 : f32
//  CHECK-NEXT:   %[[ID:.*]] = vector.broadcast %[[NEG0]] : f32 to vector<16xf32>
//  CHECK-NEXT:   %[[INIT:.*]] = vector.insert %[[OLD]], %[[ID]] [0] : f32 into vector<16xf32>
//       CHECK:   %[[C16:.*]] = arith.constant 16 : index
//       CHECK:   %[[SUM:.*]] = scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step %[[C16]] iter_args(%[[ACC:.*]] = %[[INIT]]) -> (vector<16xf32>) {
//  CHECK-NEXT:     %[[X:.*]] = vector.load %{{.*}}[%[[I]], %[[J]]] : memref<256x128xf32>, vector<16xf32>
//  CHECK-NEXT:     %[[NEXT:.*]] = arith.addf %[[ACC]], %[[X]] : vector<16xf32>
//  CHECK-NEXT:     scf.yield %[[NEXT]] : vector<16xf32>
//  CHECK-NEXT:   }
//  CHECK-NEXT:   %[[E0:.*]] = vector.extract %[[SUM]][0] : f32 from vector<16xf32>
//  CHECK-NEXT:   %[[E1:.*]] = vector.extract %[[SUM]][1] : f32 from vector<16xf32>
//       CHECK:   %[[E15:.*]] = vector.extract %[[SUM]][15] : f32 from vector<16xf32>
//  CHECK-NEXT:   %[[P01:.*]] = arith.addf %[[E0]], %[[E1]] : f32
// CHECK-COUNT-14:   arith.addf %{{.*}}, %{{.*}} : f32
//  CHECK-NEXT:   memref.store %{{.*}}, %{{.*}}[%[[I]]] : memref<256xf32>
//  CHECK-NEXT:   scf.reduce
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
// sequential even though the iteration space is large. The partial sums
// go through both reduced loops; the store comes once, after them.
// CHECK-LABEL: func.func @large_full_reduction
//   CHECK-NOT: scf.parallel
//       CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>) {
//       CHECK:   scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>) {
//       CHECK:     arith.subf {{.*}} : vector<16xf32>
//       CHECK:     arith.mulf {{.*}} : vector<16xf32>
//       CHECK:     arith.addf {{.*}} : vector<16xf32>
//   CHECK-NOT:     memref.store
//       CHECK:     scf.yield
//       CHECK:   scf.yield
//       CHECK:     memref.store %{{.*}}, %{{.*}}[] : memref<f32>
//   CHECK-NOT: scf.parallel
//       CHECK: return
// G128-LABEL: func.func @large_full_reduction
//   G128-NOT: scf.parallel
//       G128: return
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
// points of the whole nest) follows the grain: 40000 >= 32768 becomes an
// scf.parallel, 200 stays sequential; the mark is gone either way. A
// marked loop that stays sequential is marked soma.no_unroll instead (its
// back edge gets llvm.loop.unroll.disable in soma-scf-to-cf).
// CHECK-LABEL: func.func @marked_loops
//       CHECK: scf.parallel
//       CHECK: scf.for
//       CHECK: } {soma.no_unroll}
//   CHECK-NOT: soma.parallel_work
// G128-LABEL: func.func @marked_loops
//       G128: scf.parallel
//       G128: scf.parallel
func.func @marked_loops(%a: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %f = arith.constant 1.0 : f32
  scf.for %i = %c0 to %c8 step %c1 {
    memref.store %f, %a[%i] : memref<8xf32>
  } {soma.parallel_work = 40000 : i64}
  scf.for %i = %c0 to %c8 step %c1 {
    memref.store %f, %a[%i] : memref<8xf32>
  } {soma.parallel_work = 200 : i64}
  return
}

// -----

// Batch norm's gradient statistics: sum over (n, h, w) of dy * x for each
// channel c, dimensions (c, n, h, w). h and w, both reduced and read as
// one run of 64 elements by both inputs, become one loop (the inputs
// viewed as [4, 16, 64]): 16 lanes instead of the 8 that rows of 8 allow.
// The [1, C, 1, 1] output is read once before the reduced loops and
// stored once after them; the run goes as vectors of 16 partial sums, the
// product computed as a vector too.
// CHECK-LABEL: func.func @channel_statistics
//       CHECK: %[[DY:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0], [1], [2, 3]] : memref<4x16x8x8xf32> into memref<4x16x64xf32>
//       CHECK: %[[X:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0], [1], [2, 3]] : memref<4x16x8x8xf32> into memref<4x16x64xf32>
//       CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
//  CHECK-NEXT:   %[[C0:.*]] = arith.constant 0 : index
//  CHECK-NEXT:   %[[C0B:.*]] = arith.constant 0 : index
//  CHECK-NEXT:   %[[C0C:.*]] = arith.constant 0 : index
//  CHECK-NEXT:   %[[OLD:.*]] = memref.load %{{.*}}[%[[C0]], %[[C]], %[[C0B]], %[[C0C]]] : memref<1x16x1x1xf32>
//       CHECK:   scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>) {
//       CHECK:     scf.for {{.*}} step %c16{{.*}} iter_args({{.*}}) -> (vector<16xf32>) {
//       CHECK:       vector.load %[[DY]]{{.*}} : memref<4x16x64xf32>, vector<16xf32>
//       CHECK:       vector.load %[[X]]{{.*}} : memref<4x16x64xf32>, vector<16xf32>
//       CHECK:       arith.mulf {{.*}} : vector<16xf32>
//       CHECK:       arith.addf {{.*}} : vector<16xf32>
//   CHECK-NOT:       memref.store
//       CHECK:   vector.extract %{{.*}}[15] : f32 from vector<16xf32>
//       CHECK:   memref.store %{{.*}}, %{{.*}}[%{{.*}}, %[[C]], %{{.*}}, %{{.*}}] : memref<1x16x1x1xf32>
//  CHECK-NEXT: }
func.func @channel_statistics(%dy: memref<4x16x8x8xf32>, %x: memref<4x16x8x8xf32>, %s: memref<1x16x1x1xf32>) {
  linalg.generic {indexing_maps = [affine_map<(c, n, h, w) -> (n, c, h, w)>, affine_map<(c, n, h, w) -> (n, c, h, w)>, affine_map<(c, n, h, w) -> (0, c, 0, 0)>], iterator_types = ["parallel", "reduction", "reduction", "reduction"]}
      ins(%dy, %x : memref<4x16x8x8xf32>, memref<4x16x8x8xf32>) outs(%s : memref<1x16x1x1xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %t = arith.addf %acc, %p : f32
    linalg.yield %t : f32
  }
  return
}

// -----

// A column read across rows (transposed): not contiguous along the reduced
// dimension, so the 16 partial results are scalars (16 loop-carried
// values, 16 loads per iteration), combined pairwise all the same.
// CHECK-LABEL: func.func @strided_sum
//       CHECK: scf.for {{.*}} step %c16{{.*}} iter_args({{.*}}) -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32) {
// CHECK-COUNT-16: memref.load %{{.*}} : memref<64x32xf32>
//   CHECK-NOT: memref.store
//       CHECK: scf.yield
//       CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<32xf32>
func.func @strided_sum(%a: memref<64x32xf32>, %s: memref<32xf32>) {
  linalg.generic {indexing_maps = [affine_map<(j, i) -> (i, j)>, affine_map<(j, i) -> (j)>], iterator_types = ["parallel", "reduction"]}
      ins(%a : memref<64x32xf32>) outs(%s : memref<32xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %t = arith.addf %acc, %in : f32
    linalg.yield %t : f32
  }
  return
}

// -----

// A row maximum (a softmax's): the identity of the other partial results
// is -inf, and the lanes are combined with the same maximum.
// CHECK-LABEL: func.func @row_max
//       CHECK: %[[NINF:.*]] = arith.constant 0xFF800000 : f32
//       CHECK: vector.broadcast %[[NINF]] : f32 to vector<16xf32>
//       CHECK: arith.maximumf {{.*}} : vector<16xf32>
//       CHECK: arith.maximumf {{.*}} : f32
func.func @row_max(%a: memref<8x64xf32>, %m: memref<8xf32>) {
  linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>], iterator_types = ["parallel", "reduction"]}
      ins(%a : memref<8x64xf32>) outs(%m : memref<8xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %t = arith.maximumf %acc, %in : f32
    linalg.yield %t : f32
  }
  return
}

// -----

// A reduced length of 7 (odd): one partial result, carried in a register,
// no lanes; the store still comes once per row.
// CHECK-LABEL: func.func @odd_row_sum
//       CHECK: scf.for {{.*}} iter_args(%{{.*}} = %{{.*}}) -> (f32) {
//  CHECK-NEXT:   memref.load
//  CHECK-NEXT:   arith.addf
//  CHECK-NEXT:   scf.yield
//       CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<5xf32>
func.func @odd_row_sum(%a: memref<5x7xf32>, %s: memref<5xf32>) {
  linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>], iterator_types = ["parallel", "reduction"]}
      ins(%a : memref<5x7xf32>) outs(%s : memref<5xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %t = arith.addf %acc, %in : f32
    linalg.yield %t : f32
  }
  return
}

// -----

// A reduced dimension before a parallel one (a bias gradient summed over
// the batch, which LLVM vectorises along the channels): linalg's lowering,
// the output loaded and stored in the innermost loop. A combining
// operation that is not associative (acc - x): one partial result in a
// register, in the order of the iterations, stored once.
// CHECK-LABEL: func.func @batch_sum
//       CHECK: scf.for
//  CHECK-NEXT:   scf.for
//   CHECK-NOT:   iter_args
//       CHECK:     arith.addf
//       CHECK:     memref.store
// CHECK-LABEL: func.func @difference
//       CHECK: scf.for {{.*}} iter_args(%{{.*}} = %{{.*}}) -> (f32) {
//       CHECK:   arith.subf
//  CHECK-NEXT:   scf.yield
//       CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<4xf32>
func.func @batch_sum(%a: memref<64x10xf32>, %s: memref<10xf32>) {
  linalg.generic {indexing_maps = [affine_map<(n, c) -> (n, c)>, affine_map<(n, c) -> (c)>], iterator_types = ["reduction", "parallel"]}
      ins(%a : memref<64x10xf32>) outs(%s : memref<10xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %t = arith.addf %acc, %in : f32
    linalg.yield %t : f32
  }
  return
}
func.func @difference(%a: memref<4x32xf32>, %s: memref<4xf32>) {
  linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>], iterator_types = ["parallel", "reduction"]}
      ins(%a : memref<4x32xf32>) outs(%s : memref<4xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %t = arith.subf %acc, %in : f32
    linalg.yield %t : f32
  }
  return
}

// -----

// Reduced h and w are not merged when an input reads only one of them (a
// row broadcast along h): rows of 28 keep their 4 lanes, as scalar chains
// (the broadcast row is not read along w as one vector with dy).
// CHECK-LABEL: func.func @rows_not_merged
//   CHECK-NOT: memref.collapse_shape
//       CHECK: scf.for {{.*}} step %c4{{.*}} iter_args
//   CHECK-NOT: vector<
func.func @rows_not_merged(%dy: memref<2x3x5x28xf32>, %row: memref<1x1x1x28xf32>, %s: memref<1x3x1x1xf32>) {
  linalg.generic {indexing_maps = [affine_map<(c, n, h, w) -> (n, c, h, w)>, affine_map<(c, n, h, w) -> (0, 0, 0, w)>, affine_map<(c, n, h, w) -> (0, c, 0, 0)>], iterator_types = ["parallel", "reduction", "reduction", "reduction"]}
      ins(%dy, %row : memref<2x3x5x28xf32>, memref<1x1x1x28xf32>) outs(%s : memref<1x3x1x1xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %t = arith.addf %acc, %p : f32
    linalg.yield %t : f32
  }
  return
}
