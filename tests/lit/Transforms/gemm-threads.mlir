// RUN: soma-opt %s -soma-lower-to-linalg | FileCheck %s --check-prefix=ANY
// RUN: soma-opt %s "--pass-pipeline=builtin.module(soma-lower-to-linalg{threads=1})" | FileCheck %s --check-prefix=ONE
// RUN: soma-opt %s "--pass-pipeline=builtin.module(soma-lower-to-linalg{threads=3})" | FileCheck %s --check-prefix=THREE

// The units of a GEMM (row groups x column blocks) are cut for the thread
// count the pass is given (the JIT gives omp_get_max_threads()); unknown
// (0, soma-opt's default), for 2, 4 and 8 threads at once. A 256-square
// product with the 6 x 16 tile of AVX2: 8 units (2 groups of 132 rows x 4
// blocks of 64 columns) for any count, 1 unit for 1 thread (nothing
// packed twice), 3 units for 3. The blocks of K are the same (and no split
// of K), so the sums are the same whatever the count.
// ANY-LABEL: func.func @square
//       ANY:   scf.for %arg4 = %c0 to %c8 step %c1 {
//       ANY:   scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c256
//       ANY:   } {soma.parallel_work = 2097152 : i64}
// ONE-LABEL: func.func @square
//       ONE:   scf.for %arg4 = %c0 to %c1_{{[0-9]+}} step %c1 {
//       ONE:   scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c256
//   ONE-NOT:   soma.parallel_work
// THREE-LABEL: func.func @square
//       THREE:   scf.for %arg4 = %c0 to %c3 step %c1 {
//       THREE:   scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c256
//       THREE:   } {soma.parallel_work = 2097152 : i64}
func.func @square(%a: tensor<256x256xf32> {soma.input = "a"}, %b: tensor<256x256xf32> {soma.input = "b"}) -> (tensor<256x256xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<256x256xf32>, tensor<256x256xf32>) -> tensor<256x256xf32>
  return %0 : tensor<256x256xf32>
}
