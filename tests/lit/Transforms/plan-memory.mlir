// RUN: soma-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(soma-plan-memory))' | FileCheck %s

// soma-plan-memory on hand-written kernels. A buffer is live from its
// memref.alloc to the last top-level op that uses it (directly, through a
// view, or inside a region), counting positions over all top-level ops of
// the body. Buffers are placed by decreasing size (ties in allocation
// order) at the best-fitting 64-byte aligned offset among the buffers
// placed so far whose live ranges intersect (inclusively). Each
// soma.memory_plan entry is [offset, bytes, start, end], in allocation order.
//
// In the pictures, time (op positions) runs to the right and workspace
// offsets (bytes) grow upwards.

// Three 1 KiB buffers in a chain: %a dies (3) before %c is allocated (4),
// so %c reuses %a's bytes.
//
//   pos:  0   1   2   3   4   5   6   7
//   %a    [-----------]                    1024 B
//   %b            [-----------]            1024 B
//   %c                    [-------]        1024 B
//
//   2048 +-------+---------------+
//        |       |      %b       |
//   1024 +-------+-------+-------+-------+
//        |      %a       |      %c       |
//      0 +---------------+---------------+
//        0               3   4           6
//
// CHECK-LABEL: func.func @reuse(
//  CHECK-SAME: %[[IN:[a-z0-9]+]]: memref<256xf32>, %[[OUT:[a-z0-9]+]]: memref<256xf32>,
//  CHECK-SAME: %[[WS:[a-z0-9]+]]: memref<2048xi8> {soma.workspace})
//  CHECK-SAME: soma.memory_plan = [array<i64: 0, 1024, 0, 3>, array<i64: 1024, 1024, 2, 5>, array<i64: 0, 1024, 4, 6>]
//  CHECK-SAME: soma.workspace_bytes = 2048 : i64
//   CHECK-NOT: memref.alloc
//       CHECK: %[[OA:.*]] = arith.constant 0 : index
//  CHECK-NEXT: %[[A:.*]] = memref.view %[[WS]][%[[OA]]][] : memref<2048xi8> to memref<256xf32>
//  CHECK-NEXT: linalg.copy ins(%[[IN]] : memref<256xf32>) outs(%[[A]] : memref<256xf32>)
//  CHECK-NEXT: %[[OB:.*]] = arith.constant 1024 : index
//  CHECK-NEXT: %[[B:.*]] = memref.view %[[WS]][%[[OB]]][] : memref<2048xi8> to memref<256xf32>
//  CHECK-NEXT: linalg.copy ins(%[[A]] : memref<256xf32>) outs(%[[B]] : memref<256xf32>)
//  CHECK-NEXT: %[[OC:.*]] = arith.constant 0 : index
//  CHECK-NEXT: %[[C:.*]] = memref.view %[[WS]][%[[OC]]][] : memref<2048xi8> to memref<256xf32>
//  CHECK-NEXT: linalg.copy ins(%[[B]] : memref<256xf32>) outs(%[[C]] : memref<256xf32>)
//  CHECK-NEXT: linalg.copy ins(%[[C]] : memref<256xf32>) outs(%[[OUT]] : memref<256xf32>)
//  CHECK-NEXT: return
func.func @reuse(%in: memref<256xf32>, %out: memref<256xf32>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  %a = memref.alloc() {alignment = 64 : i64} : memref<256xf32>     // 0
  linalg.copy ins(%in : memref<256xf32>) outs(%a : memref<256xf32>) // 1
  %b = memref.alloc() {alignment = 64 : i64} : memref<256xf32>     // 2
  linalg.copy ins(%a : memref<256xf32>) outs(%b : memref<256xf32>)  // 3
  %c = memref.alloc() {alignment = 64 : i64} : memref<256xf32>     // 4
  linalg.copy ins(%b : memref<256xf32>) outs(%c : memref<256xf32>)  // 5
  linalg.copy ins(%c : memref<256xf32>) outs(%out : memref<256xf32>) // 6
  return                                                            // 7
}

// -----

// Placement goes by decreasing size, not allocation order: the 4096-byte
// %l is allocated last but placed first, at 0. %m (100 B) follows at 4096;
// %s (64 B) goes at the next 64-byte boundary after 4196, i.e. 4224. The
// total, 4288, is a multiple of 64.
//
//   pos:  0   1   2   3   4   5   6   7   8   9
//   %s        [-----------------------]            64 B
//   %m            [-----------------------]       100 B
//   %l                [-----------------------]  4096 B
//
//   4288 +---------------------------+
//        |            %s             |
//   4224 +---------------------------+  (4196..4224 padding)
//        |            %m             |
//   4096 +---------------------------+
//        |            %l             |
//      0 +---------------------------+
//
// CHECK-LABEL: func.func @largest_first(
//  CHECK-SAME: %[[WS:[a-z0-9]+]]: memref<4288xi8> {soma.workspace})
//  CHECK-SAME: soma.memory_plan = [array<i64: 4224, 64, 1, 7>, array<i64: 4096, 100, 2, 8>, array<i64: 0, 4096, 3, 9>]
//  CHECK-SAME: soma.workspace_bytes = 4288 : i64
//       CHECK: %[[OS:.*]] = arith.constant 4224 : index
//  CHECK-NEXT: %[[S:.*]] = memref.view %[[WS]][%[[OS]]][] : memref<4288xi8> to memref<16xf32>
//  CHECK-NEXT: %[[OM:.*]] = arith.constant 4096 : index
//  CHECK-NEXT: %[[M:.*]] = memref.view %[[WS]][%[[OM]]][] : memref<4288xi8> to memref<25xf32>
//  CHECK-NEXT: %[[OL:.*]] = arith.constant 0 : index
//  CHECK-NEXT: %[[L:.*]] = memref.view %[[WS]][%[[OL]]][] : memref<4288xi8> to memref<1024xf32>
//  CHECK-NEXT: linalg.fill ins(%{{.*}} : f32) outs(%[[S]] : memref<16xf32>)
//  CHECK-NEXT: linalg.fill ins(%{{.*}} : f32) outs(%[[M]] : memref<25xf32>)
//  CHECK-NEXT: linalg.fill ins(%{{.*}} : f32) outs(%[[L]] : memref<1024xf32>)
func.func @largest_first(%o1: memref<16xf32>, %o2: memref<25xf32>, %o3: memref<1024xf32>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  %z = arith.constant 0.0 : f32                                      // 0
  %s = memref.alloc() {alignment = 64 : i64} : memref<16xf32>        // 1
  %m = memref.alloc() {alignment = 64 : i64} : memref<25xf32>        // 2
  %l = memref.alloc() {alignment = 64 : i64} : memref<1024xf32>      // 3
  linalg.fill ins(%z : f32) outs(%s : memref<16xf32>)                // 4
  linalg.fill ins(%z : f32) outs(%m : memref<25xf32>)                // 5
  linalg.fill ins(%z : f32) outs(%l : memref<1024xf32>)              // 6
  linalg.copy ins(%s : memref<16xf32>) outs(%o1 : memref<16xf32>)    // 7
  linalg.copy ins(%m : memref<25xf32>) outs(%o2 : memref<25xf32>)    // 8
  linalg.copy ins(%l : memref<1024xf32>) outs(%o3 : memref<1024xf32>) // 9
  return                                                             // 10
}

// -----

// Best fit, not first fit: when %g (256 B) is placed, the buffers live with
// it are %a, %c and %f; %b and %e are dead. That leaves two holes, 512 bytes
// at 1024 (%b's) and 256 bytes at 2048 (%e's): %g takes the smaller one,
// where it fits exactly.
//
//   pos:  1   2   3   4   5   6   7   8   9  10  11  12  13  14  15
//   %a    [-----------------------------------------------]           1024 B
//   %b        [-------------------]                                    512 B
//   %c            [-----------------------------------------------]    512 B
//   %e                [-------------------]                            256 B
//   %f                    [-----------------------]                    256 B
//   %g                                        [-------------------]    256 B
//
//   2560 +-----------------------------------------+
//        |                 %f                      |
//   2304 +-----------------------------+-----------+-------------+
//        |            %e               |           %g            |
//   2048 +-----------------------------+-----------+-------------+
//        |                          %c                           |
//   1536 +-----------------------+-------------------------------+
//        |          %b           |   (free: 512 B, not chosen)
//   1024 +-----------------------+-------------------------+
//        |                       %a                        |
//      0 +-------------------------------------------------+
//
// CHECK-LABEL: func.func @best_fit(
//  CHECK-SAME: %[[WS:[a-z0-9]+]]: memref<2560xi8> {soma.workspace})
//  CHECK-SAME: soma.memory_plan = [array<i64: 0, 1024, 1, 13>, array<i64: 1024, 512, 2, 7>, array<i64: 1536, 512, 3, 14>, array<i64: 2048, 256, 4, 9>, array<i64: 2304, 256, 5, 11>, array<i64: 2048, 256, 10, 15>]
//  CHECK-SAME: soma.workspace_bytes = 2560 : i64
//       CHECK: arith.constant 0 : index
//  CHECK-NEXT: memref.view %[[WS]][%{{.*}}][] : memref<2560xi8> to memref<1024xi8>
//  CHECK-NEXT: arith.constant 1024 : index
//  CHECK-NEXT: memref.view %[[WS]][%{{.*}}][] : memref<2560xi8> to memref<512xi8>
//  CHECK-NEXT: arith.constant 1536 : index
//  CHECK-NEXT: memref.view %[[WS]][%{{.*}}][] : memref<2560xi8> to memref<512xi8>
//  CHECK-NEXT: arith.constant 2048 : index
//  CHECK-NEXT: memref.view %[[WS]][%{{.*}}][] : memref<2560xi8> to memref<256xi8>
//  CHECK-NEXT: arith.constant 2304 : index
//  CHECK-NEXT: memref.view %[[WS]][%{{.*}}][] : memref<2560xi8> to memref<256xi8>
//       CHECK: %[[OG:.*]] = arith.constant 2048 : index
//  CHECK-NEXT: %[[G:.*]] = memref.view %[[WS]][%[[OG]]][] : memref<2560xi8> to memref<256xi8>
//  CHECK-NEXT: linalg.copy ins(%{{.*}} : memref<256xi8>) outs(%[[G]] : memref<256xi8>)
func.func @best_fit(%o1: memref<1024xi8>, %o2: memref<512xi8>, %o3: memref<256xi8>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  %z = arith.constant 0 : i8                                          // 0
  %a = memref.alloc() {alignment = 64 : i64} : memref<1024xi8>        // 1
  %b = memref.alloc() {alignment = 64 : i64} : memref<512xi8>         // 2
  %c = memref.alloc() {alignment = 64 : i64} : memref<512xi8>         // 3
  %e = memref.alloc() {alignment = 64 : i64} : memref<256xi8>         // 4
  %f = memref.alloc() {alignment = 64 : i64} : memref<256xi8>         // 5
  linalg.fill ins(%z : i8) outs(%b : memref<512xi8>)                  // 6
  linalg.copy ins(%b : memref<512xi8>) outs(%c : memref<512xi8>)      // 7
  linalg.fill ins(%z : i8) outs(%e : memref<256xi8>)                  // 8
  linalg.copy ins(%e : memref<256xi8>) outs(%f : memref<256xi8>)      // 9
  %g = memref.alloc() {alignment = 64 : i64} : memref<256xi8>         // 10
  linalg.copy ins(%f : memref<256xi8>) outs(%g : memref<256xi8>)      // 11
  linalg.fill ins(%z : i8) outs(%a : memref<1024xi8>)                 // 12
  linalg.copy ins(%a : memref<1024xi8>) outs(%o1 : memref<1024xi8>)   // 13
  linalg.copy ins(%c : memref<512xi8>) outs(%o2 : memref<512xi8>)     // 14
  linalg.copy ins(%g : memref<256xi8>) outs(%o3 : memref<256xi8>)     // 15
  return                                                              // 16
}

// -----

// A buffer read through views stays live until the last use of the view
// (here a view of a view: collapse_shape, then expand_shape). %a's last
// direct use is at 3, but the copy at 6 reads it through %w, so %b
// (allocated at 5) must not share its bytes.
//
//   pos:  1   2   3   4   5   6   7
//   %a    [-------------------]            256 B (through %v, %w)
//   %b                    [-------]        256 B
//
//    512                 +-------+
//                        |  %b   |
//    256 +---------------+---+---+
//        |        %a         |
//      0 +-------------------+
//
// CHECK-LABEL: func.func @through_views(
//  CHECK-SAME: %[[WS:[a-z0-9]+]]: memref<512xi8> {soma.workspace})
//  CHECK-SAME: soma.memory_plan = [array<i64: 0, 256, 1, 6>, array<i64: 256, 256, 5, 7>]
//  CHECK-SAME: soma.workspace_bytes = 512 : i64
//       CHECK: %[[OA:.*]] = arith.constant 0 : index
//  CHECK-NEXT: %[[A:.*]] = memref.view %[[WS]][%[[OA]]][] : memref<512xi8> to memref<8x8xf32>
//       CHECK: memref.collapse_shape %[[A]]
//       CHECK: %[[OB:.*]] = arith.constant 256 : index
//  CHECK-NEXT: %[[B:.*]] = memref.view %[[WS]][%[[OB]]][] : memref<512xi8> to memref<4x16xf32>
func.func @through_views(%o: memref<4x16xf32>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  %z = arith.constant 1.0 : f32                                            // 0
  %a = memref.alloc() {alignment = 64 : i64} : memref<8x8xf32>             // 1
  linalg.fill ins(%z : f32) outs(%a : memref<8x8xf32>)                     // 2
  %v = memref.collapse_shape %a [[0, 1]] : memref<8x8xf32> into memref<64xf32> // 3
  %w = memref.expand_shape %v [[0, 1]] output_shape [4, 16] : memref<64xf32> into memref<4x16xf32> // 4
  %b = memref.alloc() {alignment = 64 : i64} : memref<4x16xf32>            // 5
  linalg.copy ins(%w : memref<4x16xf32>) outs(%b : memref<4x16xf32>)       // 6
  linalg.copy ins(%b : memref<4x16xf32>) outs(%o : memref<4x16xf32>)       // 7
  return                                                                   // 8
}

// -----

// A use nested in another op's region (a gather with memref.load inside a
// linalg.generic body) counts at the position of that top-level op: %a is
// live until 4, so %b overlaps it and goes above; %c, allocated after %a's
// last use, reuses offset 0.
//
//   pos:  1   2   3   4   5   6   7
//   %a    [-----------]                    256 B (load inside the generic at 4)
//   %b            [-----------]            256 B
//   %c                    [-------]        256 B
//
//    512         +-----------+
//                |    %b     |
//    256 +-------+---+-------+---+
//        |    %a     |    %c     |
//      0 +-----------+-----------+
//
// CHECK-LABEL: func.func @nested_use(
//  CHECK-SAME: %[[WS:[a-z0-9]+]]: memref<512xi8> {soma.workspace})
//  CHECK-SAME: soma.memory_plan = [array<i64: 0, 256, 1, 4>, array<i64: 256, 256, 3, 6>, array<i64: 0, 256, 5, 7>]
//  CHECK-SAME: soma.workspace_bytes = 512 : i64
//       CHECK: %[[OA:.*]] = arith.constant 0 : index
//  CHECK-NEXT: %[[A:.*]] = memref.view %[[WS]][%[[OA]]][] : memref<512xi8> to memref<64xf32>
//       CHECK: %[[OB:.*]] = arith.constant 256 : index
//  CHECK-NEXT: %[[B:.*]] = memref.view %[[WS]][%[[OB]]][] : memref<512xi8> to memref<64xf32>
//  CHECK-NEXT: linalg.generic
//       CHECK:   memref.load %[[A]][%{{.*}}] : memref<64xf32>
//       CHECK: %[[OC:.*]] = arith.constant 0 : index
//  CHECK-NEXT: memref.view %[[WS]][%[[OC]]][] : memref<512xi8> to memref<64xf32>
func.func @nested_use(%idx: memref<64xi32>, %o: memref<64xf32>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  %z = arith.constant 1.0 : f32                                          // 0
  %a = memref.alloc() {alignment = 64 : i64} : memref<64xf32>            // 1
  linalg.fill ins(%z : f32) outs(%a : memref<64xf32>)                    // 2
  %b = memref.alloc() {alignment = 64 : i64} : memref<64xf32>            // 3
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%idx : memref<64xi32>) outs(%b : memref<64xf32>) {             // 4
  ^bb0(%i: i32, %out: f32):
    %j = arith.index_cast %i : i32 to index
    %x = memref.load %a[%j] : memref<64xf32>
    linalg.yield %x : f32
  }
  %c = memref.alloc() {alignment = 64 : i64} : memref<64xf32>            // 5
  linalg.copy ins(%b : memref<64xf32>) outs(%c : memref<64xf32>)         // 6
  linalg.copy ins(%c : memref<64xf32>) outs(%o : memref<64xf32>)         // 7
  return                                                                 // 8
}

// -----

// A buffer that is never used is live only at its allocation, and a buffer
// of an odd size still takes a 64-byte aligned slot: %odd (12 B) at 0, the
// unused %dead (4 B) is placed alone and reuses 0 as well.
//
//   pos:  0   1   2   3
//   %odd  [-------]            12 B
//   %dead         [-]           4 B  (allocated at 2, never used)
//
// CHECK-LABEL: func.func @odd_sizes(
//  CHECK-SAME: memref<64xi8> {soma.workspace})
//  CHECK-SAME: soma.memory_plan = [array<i64: 0, 12, 0, 1>, array<i64: 0, 4, 2, 2>]
//  CHECK-SAME: soma.workspace_bytes = 64 : i64
func.func @odd_sizes(%in: memref<3xf32>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  %odd = memref.alloc() {alignment = 64 : i64} : memref<3xf32>       // 0
  linalg.copy ins(%in : memref<3xf32>) outs(%odd : memref<3xf32>)    // 1
  %dead = memref.alloc() {alignment = 64 : i64} : memref<4xi8>       // 2
  return                                                             // 3
}

// -----

// Without temporaries the workspace stays empty and the plan is empty.
// CHECK-LABEL: func.func @no_temporaries(
//  CHECK-SAME: %{{.*}}: memref<4xf32>, %{{.*}}: memref<4xf32>, %{{.*}}: memref<0xi8> {soma.workspace})
//  CHECK-SAME: soma.memory_plan = []
//  CHECK-SAME: soma.workspace_bytes = 0 : i64
//  CHECK-NEXT: linalg.copy
func.func @no_temporaries(%in: memref<4xf32>, %out: memref<4xf32>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  linalg.copy ins(%in : memref<4xf32>) outs(%out : memref<4xf32>)
  return
}

// -----

// Functions that are not kernels are left alone.
// CHECK-LABEL: func.func @not_a_kernel(
//  CHECK-SAME: %{{.*}}: memref<0xi8>) {
//  CHECK-NEXT: memref.alloc() {alignment = 64 : i64} : memref<4xf32>
//   CHECK-NOT: memref.view
func.func @not_a_kernel(%ws: memref<0xi8>) {
  %a = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
  return
}
