// RUN: soma-opt %s -soma-approximate-math -mlir-print-local-scope | FileCheck %s

// soma-approximate-math replaces the f32 math functions (scalars and
// vectors alike) by polynomials made of arithmetic, fma and bit casts, which
// LLVM vectorises; f64 keeps its math op (a libm call later). exp: Cephes'
// range reduction by ln 2 (1/ln 2 = 1.44269502, ln 2's first part
// -0.693359375), the exponent built from an i32; tanh clamps its argument to
// +-7.99881172.
// CHECK-LABEL: func.func @f(
//   CHECK-DAG:   arith.constant 1.44269502 : f32
//   CHECK-DAG:   arith.constant dense<1.44269502> : vector<16xf32>
//   CHECK-DAG:   arith.constant 7.99881172 : f32
//   CHECK-NOT:   math.exp {{.*}} : f32
//       CHECK:   arith.fptosi {{.*}} : f32 to i32
//       CHECK:   math.fma {{.*}} : vector<16xf32>
//       CHECK:   arith.fptosi {{.*}} : vector<16xf32> to vector<16xi32>
//       CHECK:   %[[D:.*]] = math.exp %{{.*}} : f64
//   CHECK-NOT:   math.log
//   CHECK-NOT:   math.tanh
//   CHECK-NOT:   math.erf
//   CHECK-NOT:   math.exp {{.*}} : f32
//       CHECK:   return %{{.*}}, %{{.*}}, %[[D]], %{{.*}}, %{{.*}}, %{{.*}} : f32, vector<16xf32>, f64, f32, f32, f32
func.func @f(%a: f32, %v: vector<16xf32>, %d: f64) -> (f32, vector<16xf32>, f64, f32, f32, f32) {
  %0 = math.exp %a : f32
  %1 = math.exp %v : vector<16xf32>
  %2 = math.exp %d : f64
  %3 = math.log %a : f32
  %4 = math.tanh %a : f32
  %5 = math.erf %a : f32
  return %0, %1, %2, %3, %4, %5 : f32, vector<16xf32>, f64, f32, f32, f32
}
