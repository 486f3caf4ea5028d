// RUN: soma-opt %s -soma-scf-to-cf | FileCheck %s

// soma-scf-to-cf lowers scf like MLIR's SCF-to-ControlFlow conversion; an
// scf.for marked soma.no_unroll (a GEMM's sequential blocking loops) gets
// llvm.loop.unroll.disable on its back edge, other loops get nothing.
// CHECK: #[[UNROLL:.*]] = #llvm.loop_unroll<disable = true>
// CHECK: #[[NOUNROLL:.*]] = #llvm.loop_annotation<unroll = #[[UNROLL]]>
// CHECK-LABEL: func.func @loops
//   CHECK-NOT: scf.
//       CHECK: cf.br ^[[HEAD:bb[0-9]+]](%{{.*}}, %{{.*}} : index, f32)
//       CHECK: ^[[HEAD]](%[[I:.*]]: index, %[[ACC:.*]]: f32):
//       CHECK: cf.cond_br %{{.*}}, ^[[BODY:bb[0-9]+]], ^[[EXIT:bb[0-9]+]]
//       CHECK: ^[[BODY]]:
//       CHECK: cf.br ^[[HEAD2:bb[0-9]+]](%{{.*}} : index)
//       CHECK: ^[[HEAD2]](%{{.*}}: index):
//       CHECK: memref.store
//       CHECK: cf.br ^[[HEAD2]](%{{.*}} : index){{$}}
//       CHECK: ^{{bb[0-9]+}}:
//       CHECK: arith.addf
//       CHECK: cf.br ^[[HEAD]](%{{.*}}, %{{.*}} : index, f32) {loop_annotation = #[[NOUNROLL]]}
//       CHECK: ^[[EXIT]]:
//       CHECK: return %[[ACC]]
func.func @loops(%a: memref<8xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %f = arith.constant 1.0 : f32
  %z = arith.constant 0.0 : f32
  %r = scf.for %i = %c0 to %c8 step %c1 iter_args(%acc = %z) -> f32 {
    scf.for %j = %c0 to %c8 step %c1 {
      memref.store %f, %a[%j] : memref<8xf32>
    }
    %s = arith.addf %acc, %f : f32
    scf.yield %s : f32
  } {soma.no_unroll}
  return %r : f32
}
