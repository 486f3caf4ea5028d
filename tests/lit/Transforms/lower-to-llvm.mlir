// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg \
// RUN:   | soma-opt -split-input-file -pass-pipeline='builtin.module(func.func(soma-plan-memory))' \
// RUN:   | soma-opt -split-input-file -soma-lower-to-llvm > %t
// RUN: FileCheck %s < %t
// RUN: FileCheck %s --check-prefix=NONE < %t

// The whole chain: graph -> linalg kernel -> planned workspace -> loops ->
// OpenMP -> LLVM dialect. The kernel keeps its name and ABI order, every
// argument is a bare pointer (attributes kept), and nothing of memref,
// linalg, scf, affine, arith, math, cf, func or vector survives (anywhere in the
// output: the NONE lines scan all of it).
// NONE-NOT: {{(memref|linalg|scf|affine|arith|math|cf|func|bufferization|vector)\.}}
// NONE-NOT: unrealized_conversion_cast

// A 1024x512 graph: the elementwise ops (524288 points, above the default
// grain of 131072) run in omp.parallel worksharing loops; the constant becomes an
// llvm.mlir.global; the temporaries live in the workspace pointer. Every
// top-level loop nest is a function of its own (soma-outline-loops):
// `g_parN` for the parallel ones, `g_loopN` for the sequential ones (here
// the cross-entropy's small per-row loops), called in order, never inlined.
// CHECK-LABEL: module @g {
//       CHECK: llvm.func @[[ADD:g_par[0-9]+]](
//  CHECK-SAME: passthrough = ["noinline"]
//       CHECK: omp.parallel {
// (soma-flush-denormals: the worker's MXCSR saved and set.)
//       CHECK:   llvm.call_intrinsic "llvm.x86.sse.stmxcsr"
//       CHECK:   llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"
//  CHECK-NEXT:   omp.wsloop {
//  CHECK-NEXT:     omp.loop_nest (%{{.*}}) : i64 = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
//       CHECK:       llvm.getelementptr %arg0[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f32
//       CHECK:       llvm.getelementptr %arg1[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f32
//       CHECK:       llvm.fadd
//       CHECK:       llvm.getelementptr %arg2[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f32
//       CHECK:       llvm.store
//       CHECK:       omp.yield
//       CHECK: llvm.func @[[RELU:g_par[0-9]+]](
//       CHECK: omp.parallel {
//       CHECK:   llvm.intr.maximum
//       CHECK: llvm.func @g_loop{{[0-9]+}}(
//  CHECK-SAME: passthrough = ["noinline"]
//       CHECK: llvm.intr.fma
//       CHECK: llvm.func @g(%arg0: !llvm.ptr {soma.input = "x"}, %arg1: !llvm.ptr {soma.input = "y"}, %arg2: !llvm.ptr {soma.param = "b"},
//  CHECK-SAME: %arg3: !llvm.ptr {soma.output = "h"}, %arg4: !llvm.ptr {soma.output = "loss"}, %arg5: !llvm.ptr {soma.workspace})
//  CHECK-SAME: attributes {soma.kernel, soma.memory_plan = [{{.*}}], soma.workspace_bytes = {{[0-9]+}} : i64}
//   CHECK-NOT: omp.
//       CHECK: llvm.mlir.addressof @[[CONST:.*]] : !llvm.ptr
//   CHECK-NOT: omp.
//       CHECK: llvm.call @[[ADD]](%arg0, %arg2, %arg5,
//  CHECK-NEXT: llvm.call @[[RELU]](%arg5,
//   CHECK-NOT: omp.
//       CHECK: llvm.call @g_loop{{[0-9]+}}(
//   CHECK-NOT: omp.
//       CHECK: llvm.return
//       CHECK: llvm.mlir.global private constant @[[CONST]](2.000000e+00 : f32) {{.*}}alignment = 64 : i64} : f32
module @g {
  func.func @g(%x: tensor<1024x512xf32> {soma.input = "x"}, %b: tensor<512xf32> {soma.param = "b"}, %y: tensor<1024xi32> {soma.input = "y"})
      -> (tensor<1024x512xf32> {soma.output = "h"}, tensor<f32> {soma.output = "loss"}) {
    %k = soma.constant dense<2.0> : tensor<f32>
    %0 = soma.add %x, %b : tensor<1024x512xf32>, tensor<512xf32>
    %1 = soma.relu %0 : tensor<1024x512xf32>
    %2 = soma.mul %1, %k : tensor<1024x512xf32>, tensor<f32>
    %3 = soma.softmax_cross_entropy %2, %y : (tensor<1024x512xf32>, tensor<1024xi32>) -> tensor<f32>
    return %2, %3 : tensor<1024x512xf32>, tensor<f32>
  }
}

// -----

// A small graph stays sequential: no OpenMP. The matmul is a function of
// its own (the whole packed GEMM, soma-outline-loops): its panels are stack
// scratch saved and restored around the unit, its register tile another
// function of vector fused multiply-adds, and this 4x2 product is all
// edge: masked stores. The tanh loop is a function too: tanh is a
// rational polynomial (soma-approximate-math), not a call to libm's tanhf.
// CHECK-LABEL: module @s {
//   CHECK-NOT: tanhf
//       CHECK: llvm.func @[[GEMM:s_gemm[0-9]+]](
//  CHECK-SAME: passthrough = ["noinline"]
//   CHECK-NOT: omp.
//       CHECK: llvm.intr.stacksave
//   CHECK-NOT: omp.
//       CHECK: llvm.call @soma_gemm_tile_rows_4x16_v8_b65536
//   CHECK-NOT: omp.
//       CHECK: llvm.intr.masked.store
//   CHECK-NOT: omp.
//       CHECK: llvm.intr.stackrestore
//       CHECK: llvm.func @[[LOOP:s_loop[0-9]+]](
//   CHECK-NOT: llvm.call
//       CHECK: llvm.intr.fma
//   CHECK-NOT: llvm.call
//       CHECK: llvm.return
//       CHECK: llvm.func @s(%arg0: !llvm.ptr {soma.input = "x"}, %arg1: !llvm.ptr {soma.param = "w"}, %arg2: !llvm.ptr {soma.output = "p"}, %arg3: !llvm.ptr {soma.workspace})
//  CHECK-SAME: soma.workspace_bytes = 64 : i64
//  CHECK-NEXT:   llvm.mlir.constant
//   CHECK-NOT: omp.
//       CHECK:   llvm.call @[[GEMM]](
//  CHECK-NEXT:   llvm.call @[[LOOP]](
//  CHECK-NEXT:   llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"
//  CHECK-NEXT:   llvm.return
//       CHECK: llvm.func @soma_gemm_tile_rows_4x16_v8_b65536(
//  CHECK-SAME: passthrough = ["noinline"]
//       CHECK: llvm.intr.fmuladd
module @s {
  func.func @s(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x2xf32> {soma.param = "w"}) -> (tensor<4x2xf32> {soma.output = "p"}) {
    %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
    %1 = soma.tanh %0 : tensor<4x2xf32>
    return %1 : tensor<4x2xf32>
  }
}
