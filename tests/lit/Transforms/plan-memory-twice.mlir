// RUN: soma-opt %s -pass-pipeline='builtin.module(func.func(soma-plan-memory))' \
// RUN:   | soma-opt -pass-pipeline='builtin.module(func.func(soma-plan-memory))' | FileCheck %s

// Regression: planning an already planned kernel leaves it unchanged (it
// used to shrink the workspace to 0 bytes under views at non-zero offsets).
// CHECK-LABEL: func.func @twice(
//  CHECK-SAME: memref<1024xi8> {soma.workspace})
//  CHECK-SAME: soma.workspace_bytes = 1024 : i64
//       CHECK: memref.view %{{.*}}[%{{.*}}][] : memref<1024xi8> to memref<256xf32>
func.func @twice(%in: memref<256xf32>, %out: memref<256xf32>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  %a = memref.alloc() {alignment = 64 : i64} : memref<256xf32>
  linalg.copy ins(%in : memref<256xf32>) outs(%a : memref<256xf32>)
  linalg.copy ins(%a : memref<256xf32>) outs(%out : memref<256xf32>)
  return
}
