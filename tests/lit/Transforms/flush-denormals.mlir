// RUN: soma-opt %s -split-input-file -soma-flush-denormals | FileCheck %s

// The kernel function saves the thread's MXCSR on entry, sets FTZ and DAZ
// (0x8040 = 32832), and loads the saved value back before each of its
// returns; the body of an omp.parallel region (run by every worker) does
// the same around its own work, before its terminator. Other functions are
// left alone: they run inside one of those.
// CHECK-LABEL: llvm.func @helper
//   CHECK-NOT:   mxcsr
//       CHECK:   llvm.return
// CHECK-LABEL: llvm.func @step
//       CHECK:   %[[SAVED:.*]] = llvm.alloca %{{.*}} x i32
//       CHECK:   %[[SET:.*]] = llvm.alloca %{{.*}} x i32
//       CHECK:   llvm.call_intrinsic "llvm.x86.sse.stmxcsr"(%[[SAVED]])
//       CHECK:   %[[OLD:.*]] = llvm.load %[[SAVED]] : !llvm.ptr -> i32
//       CHECK:   %[[BITS:.*]] = llvm.mlir.constant(32832 : i32)
//       CHECK:   %[[NEW:.*]] = llvm.or %[[OLD]], %[[BITS]]
//       CHECK:   llvm.store %[[NEW]], %[[SET]]
//       CHECK:   llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"(%[[SET]])
//       CHECK:   llvm.cond_br
//       CHECK:   omp.parallel {
//       CHECK:     %[[WSAVED:.*]] = llvm.alloca %{{.*}} x i32
//       CHECK:     %[[WSET:.*]] = llvm.alloca %{{.*}} x i32
//       CHECK:     llvm.call_intrinsic "llvm.x86.sse.stmxcsr"(%[[WSAVED]])
//       CHECK:     llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"(%[[WSET]])
//       CHECK:     llvm.call @helper
//       CHECK:     llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"(%[[WSAVED]])
//  CHECK-NEXT:     omp.terminator
//       CHECK:   llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"(%[[SAVED]])
//  CHECK-NEXT:   llvm.return
//       CHECK:   llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"(%[[SAVED]])
//  CHECK-NEXT:   llvm.return
module {
  llvm.func @helper(%p: !llvm.ptr) {
    llvm.return
  }
  llvm.func @step(%p: !llvm.ptr, %c: i1) attributes {soma.kernel} {
    llvm.cond_br %c, ^par, ^done
  ^par:
    omp.parallel {
      llvm.call @helper(%p) : (!llvm.ptr) -> ()
      omp.terminator
    }
    llvm.return
  ^done:
    llvm.return
  }
}

// -----

// A module marked soma.keep_denormals (CompileOptions::flush_denormals
// false) keeps the caller's MXCSR.
// CHECK-LABEL: llvm.func @kept
//   CHECK-NOT:   mxcsr
//       CHECK:   omp.terminator
//   CHECK-NOT:   mxcsr
//       CHECK:   llvm.return
module attributes {soma.keep_denormals} {
  llvm.func @kept(%p: !llvm.ptr) attributes {soma.kernel} {
    omp.parallel {
      omp.terminator
    }
    llvm.return
  }
}
