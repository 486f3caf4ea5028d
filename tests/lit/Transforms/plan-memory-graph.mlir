// RUN: soma-opt %s -soma-lower-to-linalg | soma-opt -pass-pipeline='builtin.module(func.func(soma-plan-memory))' | FileCheck %s

// The plan of a lowered graph: matmul -> relu (output p) -> cross-entropy
// (output loss). Temporaries: the matmul result %mm (4x2 f32, 32 B) and the
// cross-entropy's row max %m, row sum %s and per-row loss %row (4 f32,
// 16 B each). Positions are those of the lowered kernel's top-level ops
// (%mm is allocated at 0 and read by relu at 5 -- the matmul is a few
// top-level ops: its views and the packed GEMM in one region; %m and %s
// are read by the gather at 15; %row by the final sum at 18):
//
//   pos:  0    5 6      10      14 15     18
//   %mm   [====]                                     32 B
//   %m         [=====================]               16 B
//   %s                  [=============]              16 B
//   %row                         [=============]     16 B
//
//    144                                +-----------+
//        |                              |   %row    |
//    128                                +-----------+
//     80                    +-----------+
//        |                  |    %s     |
//     64                    +-----------+
//     32 +-------+
//        |  %mm  |  +-------------------+
//     16 |       |  |        %m         |
//      0 +-------+  +-------------------+
//
// %m reuses %mm's bytes; %s and %row each start at the next 64-byte
// boundary above what is live, so the workspace is 192 bytes (144 rounded
// up to 64) for 80 bytes of data.
//
// CHECK-LABEL: func.func @g(
//  CHECK-SAME: %[[WS:[a-z0-9]+]]: memref<192xi8> {soma.workspace})
//  CHECK-SAME: soma.kernel
//  CHECK-SAME: soma.memory_plan = [array<i64: 0, 32, 0, 5>, array<i64: 0, 16, 6, 15>, array<i64: 64, 16, 10, 15>, array<i64: 128, 16, 14, 18>]
//  CHECK-SAME: soma.workspace_bytes = 192 : i64
//   CHECK-NOT: memref.alloc
//       CHECK: memref.view %[[WS]][%{{.*}}][] : memref<192xi8> to memref<4x2xf32>
//       CHECK: memref.view %[[WS]][%{{.*}}][] : memref<192xi8> to memref<4xf32>
//       CHECK: arith.constant 64 : index
//  CHECK-NEXT: memref.view %[[WS]][%{{.*}}][] : memref<192xi8> to memref<4xf32>
//       CHECK: arith.constant 128 : index
//  CHECK-NEXT: memref.view %[[WS]][%{{.*}}][] : memref<192xi8> to memref<4xf32>
//   CHECK-NOT: memref.alloc
//       CHECK: return
module @g {
  func.func @g(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x2xf32> {soma.param = "w", soma.init = {kind = "zeros"}}, %y: tensor<4xi32> {soma.input = "y"}) -> (tensor<4x2xf32> {soma.output = "p"}, tensor<f32> {soma.output = "loss"}) {
    %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
    %1 = soma.relu %0 : tensor<4x2xf32>
    %2 = soma.softmax_cross_entropy %1, %y : (tensor<4x2xf32>, tensor<4xi32>) -> tensor<f32>
    return %1, %2 : tensor<4x2xf32>, tensor<f32>
  }
}
