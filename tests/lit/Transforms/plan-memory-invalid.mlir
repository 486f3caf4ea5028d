// RUN: soma-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(soma-plan-memory))' -verify-diagnostics

// Only statically shaped, identity-layout buffers can be planned.
func.func @dynamic(%n: index, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  // expected-error @+1 {{'memref.alloc' op soma-plan-memory needs static, identity-layout buffers}}
  %a = memref.alloc(%n) {alignment = 64 : i64} : memref<?xf32>
  return
}

// -----

func.func @strided(%ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  // expected-error @+1 {{'memref.alloc' op soma-plan-memory needs static, identity-layout buffers}}
  %a = memref.alloc() {alignment = 64 : i64} : memref<4x4xf32, strided<[8, 1]>>
  return
}

// -----

// The workspace must be the kernel's last argument.
// expected-error @+1 {{'func.func' op kernel's last argument is not the soma.workspace}}
func.func @no_workspace(%ws: memref<0xi8> {soma.workspace}, %out: memref<4xf32>) attributes {soma.kernel} {
  %a = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
  linalg.copy ins(%a : memref<4xf32>) outs(%out : memref<4xf32>)
  return
}
