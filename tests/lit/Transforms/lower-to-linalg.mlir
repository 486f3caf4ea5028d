// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg -mlir-print-local-scope | FileCheck %s

// soma-lower-to-linalg turns a graph function into a kernel function with
// the ABI (inputs..., params..., outputs..., workspace) and one or a few
// linalg ops per soma op, writing graph outputs straight into their output
// arguments and temporaries into 64-byte aligned memref.allocs.

// The ABI: inputs in their order, then params in theirs, then one memref per
// result, then the (still empty) workspace. Argument attributes are kept,
// results become soma.output arguments, the graph itself disappears.
// CHECK-LABEL: func.func @abi(
//  CHECK-SAME: %[[X:[a-z0-9]+]]: memref<4x3xf32> {soma.input = "x"},
//  CHECK-SAME: %[[Y:[a-z0-9]+]]: memref<4xi32> {soma.input = "y"},
//  CHECK-SAME: %[[W:[a-z0-9]+]]: memref<3x2xf32> {soma.init = {kind = "zeros"}, soma.param = "w"},
//  CHECK-SAME: %[[B:[a-z0-9]+]]: memref<2xf32> {soma.param = "b"},
//  CHECK-SAME: %[[P:[a-z0-9]+]]: memref<4x2xf32> {soma.output = "p"},
//  CHECK-SAME: %[[L:[a-z0-9]+]]: memref<f32> {soma.output = "loss"},
//  CHECK-SAME: %[[WS:[a-z0-9]+]]: memref<0xi8> {soma.workspace})
//  CHECK-SAME: attributes {soma.kernel} {
//   CHECK-NOT: soma.
//       CHECK: memref.expand_shape %[[X]]
//       CHECK: memref.expand_shape %[[W]]
//       CHECK: scf.for
//       CHECK: linalg.generic
//  CHECK-SAME: outs(%[[P]] : memref<4x2xf32>)
//       CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[L]] : memref<f32>)
//       CHECK: return{{$}}
//   CHECK-NOT: soma.
// The only other function: the GEMM's register tile.
//       CHECK: func.func private @soma_gemm_tile_
//   CHECK-NOT: soma.
//   CHECK-NOT: func.func
func.func @abi(%w: tensor<3x2xf32> {soma.param = "w", soma.init = {kind = "zeros"}}, %x: tensor<4x3xf32> {soma.input = "x"},
               %b: tensor<2xf32> {soma.param = "b"}, %y: tensor<4xi32> {soma.input = "y"})
    -> (tensor<4x2xf32> {soma.output = "p"}, tensor<f32> {soma.output = "loss"}) {
  %0 = soma.matmul %x, %w : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %1 = soma.add %0, %b : tensor<4x2xf32>, tensor<2xf32>
  %2 = soma.softmax_cross_entropy %1, %y : (tensor<4x2xf32>, tensor<4xi32>) -> tensor<f32>
  return %1, %2 : tensor<4x2xf32>, tensor<f32>
}

// -----

// Functions that are already kernels, and declarations, are left alone.
// CHECK-LABEL: func.func @kernel(%{{.*}}: memref<4xf32>, %{{.*}}: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
//  CHECK-NEXT:   return
//       CHECK: func.func private @decl(tensor<4xf32>) -> tensor<4xf32>
func.func @kernel(%a: memref<4xf32>, %ws: memref<0xi8> {soma.workspace}) attributes {soma.kernel} {
  return
}
func.func private @decl(tensor<4xf32>) -> tensor<4xf32>

// -----

// An elementwise op is one all-parallel linalg.generic with identity maps;
// an intermediate value gets an aligned alloc, the output is written in place.
// CHECK-LABEL: func.func @unary(
//  CHECK-SAME: %[[X:.*]]: memref<4x3xf32> {soma.input = "x"}, %[[Y:.*]]: memref<4x3xf32> {soma.output = "y"}
//       CHECK: %[[T:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4x3xf32>
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
//  CHECK-SAME: ins(%[[X]] : memref<4x3xf32>) outs(%[[T]] : memref<4x3xf32>)
//       CHECK:   math.exp
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[T]] : memref<4x3xf32>) outs(%[[Y]] : memref<4x3xf32>)
//       CHECK:   arith.negf
//       CHECK:   math.exp
//       CHECK:   arith.divf
//   CHECK-NOT: memref.alloc
//   CHECK-NOT: linalg.copy
//       CHECK: return
func.func @unary(%x: tensor<4x3xf32> {soma.input = "x"}) -> (tensor<4x3xf32> {soma.output = "y"}) {
  %0 = soma.exp %x : tensor<4x3xf32>
  %1 = soma.sigmoid %0 : tensor<4x3xf32>
  return %1 : tensor<4x3xf32>
}

// -----

// Broadcasting: operands are aligned at the right, missing leading dims are
// dropped from the map and size-1 dims are read at the constant index 0.
// (Run without soma-fuse, so each op is its own generic.)
// CHECK-LABEL: func.func @broadcast(
//  CHECK-SAME: %[[A:[a-z0-9]+]]: memref<2x3x4xf32>
//  CHECK-SAME: %[[B:[a-z0-9]+]]: memref<4xf32>
//  CHECK-SAME: %[[C:[a-z0-9]+]]: memref<3x1xf32>
//  CHECK-SAME: %[[S:[a-z0-9]+]]: memref<f32>
//  CHECK-SAME: %[[O:[a-z0-9]+]]: memref<2x3x4xf32> {soma.output = "o"}
//       CHECK: %[[T0:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2x3x4xf32>
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]}
//  CHECK-SAME: ins(%[[A]], %[[B]] : memref<2x3x4xf32>, memref<4xf32>) outs(%[[T0]] : memref<2x3x4xf32>)
//       CHECK:   arith.addf
// The sum dies at the product, which is computed in place over it (an
// elementwise op reads each point before writing it): no second buffer.
//   CHECK-NOT: memref.alloc
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d1, 0)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>]
//  CHECK-SAME: ins(%[[C]], %[[T0]] : memref<3x1xf32>, memref<2x3x4xf32>) outs(%[[T0]] : memref<2x3x4xf32>)
//       CHECK:   arith.mulf
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> ()>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>]
//  CHECK-SAME: ins(%[[T0]], %[[S]] : memref<2x3x4xf32>, memref<f32>) outs(%[[O]] : memref<2x3x4xf32>)
//       CHECK:   arith.subf
func.func @broadcast(%a: tensor<2x3x4xf32> {soma.input = "a"}, %b: tensor<4xf32> {soma.input = "b"},
                     %c: tensor<3x1xf32> {soma.input = "c"}, %s: tensor<f32> {soma.input = "s"})
    -> (tensor<2x3x4xf32> {soma.output = "o"}) {
  %0 = soma.add %a, %b : tensor<2x3x4xf32>, tensor<4xf32>
  %1 = soma.mul %c, %0 : tensor<3x1xf32>, tensor<2x3x4xf32>
  %2 = soma.sub %1, %s : tensor<2x3x4xf32>, tensor<f32>
  return %2 : tensor<2x3x4xf32>
}

// -----

// A size-1 dimension of the output itself is not a broadcast: it keeps d1.
// CHECK-LABEL: func.func @broadcast_size1_output
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (0, d1)>, affine_map<(d0, d1) -> (d0, d1)>]
//  CHECK-SAME: iterator_types = ["parallel", "parallel"]
//       CHECK:   arith.maximumf
func.func @broadcast_size1_output(%a: tensor<3x1xf32> {soma.input = "a"}, %b: tensor<1x1xf32> {soma.input = "b"})
    -> (tensor<3x1xf32> {soma.output = "o"}) {
  %0 = soma.maximum %a, %b : tensor<3x1xf32>, tensor<1x1xf32>
  return %0 : tensor<3x1xf32>
}

// -----

// The scalar bodies of the remaining elementwise ops.
// CHECK-LABEL: func.func @scalar_bodies
//       CHECK: linalg.generic
//       CHECK:   arith.constant 0.000000e+00 : f32
//       CHECK:   arith.maximumf
//       CHECK:   math.absf
//       CHECK:   math.exp
//       CHECK:   math.log
//       CHECK:   arith.select
//       CHECK:   arith.addf
//       CHECK: linalg.generic
//       CHECK:   arith.cmpf ogt
//       CHECK:   arith.constant 2.000000e-01 : f32
//       CHECK:   arith.mulf
//       CHECK:   arith.select
//       CHECK: linalg.generic
//       CHECK:   math.powf
//       CHECK: linalg.generic
//       CHECK:   arith.minimumf
//       CHECK: linalg.generic
//       CHECK:   math.tanh
//       CHECK: linalg.generic
//       CHECK:   math.sqrt
func.func @scalar_bodies(%a: tensor<4xf32> {soma.input = "a"}, %b: tensor<4xf32> {soma.input = "b"}) -> (tensor<4xf32> {soma.output = "o"}) {
  %0 = soma.softplus %a : tensor<4xf32>
  %1 = soma.leaky_relu %0 {alpha = 0.2 : f64} : tensor<4xf32>
  %2 = soma.pow %1, %b : tensor<4xf32>, tensor<4xf32>
  %3 = soma.minimum %2, %a : tensor<4xf32>, tensor<4xf32>
  %4 = soma.tanh %3 : tensor<4xf32>
  %5 = soma.sqrt %4 : tensor<4xf32>
  return %5 : tensor<4xf32>
}

// -----

// matmul: the packed GEMM (Gemm.cpp) over rank-3 views [batch, rows, cols].
// A loop over units (batch, row block, column block); per unit, stack
// scratch at the blocking's full size (B panels 256 x 256 = 65536 floats,
// the tile T); per block of K, B packed into panels of 16 columns (whole
// panels as vectors, edge panels element by element, zero padded). A is
// stored and read along its rows (not transposed), so it is not packed:
// per tile a call of the register tile that reads A's rows where they are
// (A seen flat, through a view that claims 2^30 floats so that one function
// serves every size of A), a private function shared by every GEMM of the
// module with that tile. With 4 rows the
// 6 x 16 tile of AVX2 would waste a third of its rows, so this product
// takes a 4 x 16 tile (T = 64 floats): a k loop carrying 8 vectors of 8
// floats updated by vector.fma with a broadcast element of a row of A.
// A whole tile (MR rows and NR columns inside C) would load and store its
// block of C in place, through a flat view of C; this one is all edge
// (mode 0), so the tile stores into T and the caller adds T into C row by
// row (rows beyond M skipped, columns beyond N masked).
// CHECK-LABEL: func.func @matmul(
//  CHECK-SAME: %[[A:.*]]: memref<4x3xf32> {soma.input = "a"}, %[[B:.*]]: memref<3x2xf32> {soma.input = "b"}, %[[C:.*]]: memref<4x2xf32> {soma.output = "c"}
//       CHECK: %[[A3:.*]] = memref.expand_shape %[[A]] {{\[}}[0, 1], [2]] output_shape [1, 4, 3] : memref<4x3xf32> into memref<1x4x3xf32>
//       CHECK: %[[B3:.*]] = memref.expand_shape %[[B]] {{\[}}[0, 1], [2]] output_shape [1, 3, 2] : memref<3x2xf32> into memref<1x3x2xf32>
//       CHECK: %[[C3:.*]] = memref.expand_shape %[[C]] {{\[}}[0, 1], [2]] output_shape [1, 4, 2] : memref<4x2xf32> into memref<1x4x2xf32>
//       CHECK: %[[AC:.*]] = memref.collapse_shape %[[A3]] {{\[}}[0, 1, 2]] : memref<1x4x3xf32> into memref<12xf32>
//       CHECK: %[[AF:.*]] = memref.reinterpret_cast %[[AC]] to offset: [0], sizes: [1073741824], strides: [1] : memref<12xf32> to memref<1073741824xf32>
//       CHECK: %[[CCS:.*]] = memref.collapse_shape %[[C3]] {{\[}}[0, 1, 2]] : memref<1x4x2xf32> into memref<8xf32>
//       CHECK: %[[CF:.*]] = memref.reinterpret_cast %[[CCS]] to offset: [0], sizes: [1073741824], strides: [1] : memref<8xf32> to memref<1073741824xf32>
//       CHECK: scf.for
//       CHECK:   %[[SP:.*]] = llvm.intr.stacksave : !llvm.ptr
//   CHECK-NOT:     memref<18432xf32>
//       CHECK:     %[[BP:.*]] = memref.alloca() {alignment = 64 : i64} : memref<65536xf32>
//       CHECK:     %[[T:.*]] = memref.alloca() {alignment = 64 : i64} : memref<64xf32>
//       CHECK:     vector.load %[[B3]]{{.*}} : memref<1x3x2xf32>, vector<8xf32>
//       CHECK:     vector.store %{{.*}}, %[[BP]]
//       CHECK:     memref.load %[[B3]]
//       CHECK:     memref.store %{{.*}}, %[[BP]]
//   CHECK-NOT:     call @soma_gemm_transpose
//       CHECK:     %[[BPF:.*]] = memref.reinterpret_cast %[[BP]] to offset: [0], sizes: [1073741824], strides: [1] : memref<65536xf32> to memref<1073741824xf32>
//       CHECK:     call @[[TILE:soma_gemm_tile_rows_4x16_v8_b65536]](%[[AF]], %{{.*}}, %{{.*}}, %{{.*}}, %[[BPF]], %{{.*}}, %c16{{.*}}, %{{.*}}, %[[T]], %[[CF]], %{{.*}}, %{{.*}}, %{{.*}})
//       CHECK:     vector.load %[[T]]
//       CHECK:     vector.maskedload %[[C3]]
//       CHECK:     vector.maskedstore %[[C3]]
//       CHECK:   llvm.intr.stackrestore %[[SP]] : !llvm.ptr
// One unit: the loop is sequential and not marked for soma-linalg-to-loops.
//   CHECK-NOT: scf.parallel
//   CHECK-NOT: soma.parallel_work
//       CHECK: func.func private @[[TILE]](%[[AA:.*]]: memref<1073741824xf32>, %{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %[[BB:.*]]: memref<1073741824xf32>, %[[BBASE:.*]]: index, %[[LDB:.*]]: index, %[[KC:.*]]: index, %[[TT:.*]]: memref<64xf32>, %[[CC:.*]]: memref<1073741824xf32>, %[[OFF:.*]]: index, %[[LDC:.*]]: index, %[[M:.*]]: index) attributes {passthrough = ["noinline"]}
// Mode 2 (a later block of K of a whole tile): the accumulators start from
// C's block; otherwise from 0.
//       CHECK:   %[[LATER:.*]] = arith.cmpi eq, %[[M]], %{{.*}} : index
//       CHECK:   scf.if %[[LATER]] -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
//       CHECK:     vector.load %[[CC]][%{{.*}}] : memref<1073741824xf32>, vector<8xf32>
//       CHECK:   scf.for %[[K:.*]] = %{{.*}} to %[[KC]] step %{{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// B's row k at bBase + k * ldb (the packed panel's NR here; B's N when B is
// read in place, gemm-b-in-place.mlir).
//       CHECK:     %[[KB:.*]] = arith.muli %[[K]], %[[LDB]] : index
//       CHECK:     %[[BK:.*]] = arith.addi %[[BBASE]], %[[KB]] : index
//       CHECK:     %[[B0:.*]] = arith.addi %[[BK]], %{{.*}} : index
//  CHECK-NEXT:     vector.load %[[BB]][%[[B0]]]
//       CHECK:     memref.load %[[AA]]
//       CHECK:     vector.broadcast
//       CHECK:     vector.fma
// Mode 0: the block into T; else into C in place.
//       CHECK:   %[[EDGE:.*]] = arith.cmpi eq, %[[M]], %{{.*}} : index
//       CHECK:   scf.if %[[EDGE]] {
//       CHECK:     vector.store %{{.*}}, %[[TT]]
//       CHECK:   } else {
//       CHECK:     vector.store %{{.*}}, %[[CC]][%{{.*}}] : memref<1073741824xf32>, vector<8xf32>
func.func @matmul(%a: tensor<4x3xf32> {soma.input = "a"}, %b: tensor<3x2xf32> {soma.input = "b"}) -> (tensor<4x2xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<4x3xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  return %0 : tensor<4x2xf32>
}

// -----

// Rows of A 2 KiB long (512 floats) would put the tile's rows in the same L1
// sets: the unit copies its block's rows of A (rows 512 apart in a flat
// view of A) into scratch at a stride of 256 + 16 floats (72 rows x 272 =
// 19584 floats) with plain vector loads and stores (K's blocks are
// multiples of the vector width). The register tile reads the copy's rows as it reads an
// unpacked A (row stride 272). No transposition, no pack function for A.
// B (16 columns, one whole panel, 4 rows per unit) is read where it is
// stored (gemm-b-in-place.mlir): no panels of B, its row stride 16.
// (16 columns: fewer would compute the product transposed, gemm-narrow.mlir.)
// CHECK-LABEL: func.func @matmul_packed_a(
//       CHECK:   %[[AC:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2]] : memref<1x4x512xf32> into memref<2048xf32>
//       CHECK:   %[[AF:.*]] = memref.reinterpret_cast %[[AC]] to offset: [0], sizes: [1073741824], strides: [1] : memref<2048xf32> to memref<1073741824xf32>
//       CHECK:   %[[BC:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2]] : memref<1x512x16xf32> into memref<8192xf32>
//       CHECK:   %[[BF:.*]] = memref.reinterpret_cast %[[BC]]
//       CHECK:   %[[AS:.*]] = memref.alloca() {alignment = 64 : i64} : memref<19584xf32>
//       CHECK:   %[[AP:.*]] = memref.reinterpret_cast %[[AS]] to offset: [0], sizes: [1073741824], strides: [1] : memref<19584xf32> to memref<1073741824xf32>
//       CHECK:   %[[T:.*]] = memref.alloca() {alignment = 64 : i64} : memref<64xf32>
//   CHECK-NOT:   memref.alloca
//   CHECK-NOT:   soma_gemm_pack_along_k
//       CHECK:   %[[C512:.*]] = arith.constant 512 : index
//       CHECK:   arith.muli %{{.*}}, %[[C512]] : index
//       CHECK:   %[[C272:.*]] = arith.constant 272 : index
//       CHECK:   arith.muli %{{.*}}, %[[C272]] : index
//       CHECK:   scf.for
//       CHECK:     %[[V:.*]] = vector.load %[[AF]][%{{.*}}] : memref<1073741824xf32>, vector<8xf32>
//       CHECK:     vector.store %[[V]], %[[AP]][%{{.*}}] : memref<1073741824xf32>, vector<8xf32>
//   CHECK-NOT:     vector.maskedstore %[[AP]]
//       CHECK:   } {soma.no_unroll}
//   CHECK-NOT:   soma_gemm_pack_along_k
//       CHECK:   call @soma_gemm_tile_rows_4x16_v8_b65536(%[[AP]], %{{.*}}, %c272{{.*}}, %{{.*}}, %[[BF]], %{{.*}}, %c16{{.*}},
func.func @matmul_packed_a(%a: tensor<4x512xf32> {soma.input = "a"}, %b: tensor<512x16xf32> {soma.input = "b"}) -> (tensor<4x16xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<4x512xf32>, tensor<512x16xf32>) -> tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}

// -----

// K = 300 is longer than one block of K (256): two blocks of nearly equal
// length, a multiple of the vector width (8 here), 152 and 148, not 256 and 44.
// CHECK-LABEL: func.func @matmul_balanced_k
//       CHECK: %[[KC:.*]] = arith.constant 152 : index
//       CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %[[KC]] {
func.func @matmul_balanced_k(%a: tensor<4x300xf32> {soma.input = "a"}, %b: tensor<300x2xf32> {soma.input = "b"}) -> (tensor<4x2xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<4x300xf32>, tensor<300x2xf32>) -> tensor<4x2xf32>
  return %0 : tensor<4x2xf32>
}

// -----

// Transposed operands are read transposed: a^T where it is stored, by the
// register tile along k (its flat view, A's row i of step k at k * 4 + i:
// the "cols" tile, lda = M = 4), b^T by the packing (at [b, n, k], along k
// as vectors transposed in registers, from a flat view of it): no copies,
// no buffers besides B's panels.
// CHECK-LABEL: func.func @matmul_transposed
//   CHECK-NOT: memref.alloc()
//       CHECK: %[[AC:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2]] : memref<1x3x4xf32> into memref<12xf32>
//       CHECK: %[[AF:.*]] = memref.reinterpret_cast %[[AC]]
//   CHECK-NOT: memref.alloc()
//       CHECK: call @soma_gemm_tile_cols_4x16_v8_b65536(%[[AF]], %{{.*}}, %c4{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %c16{{.*}},
//   CHECK-NOT: memref.alloc()
//       CHECK: %[[BC:.*]] = memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2]] : memref<1x2x3xf32> into memref<6xf32>
//       CHECK: %[[BF:.*]] = memref.reinterpret_cast %[[BC]]
//       CHECK: call @soma_gemm_pack_along_k_v8_p65536(%[[BF]],
//   CHECK-NOT: memref.alloc()
//       CHECK: return
func.func @matmul_transposed(%at: tensor<3x4xf32> {soma.input = "at"}, %b: tensor<3x2xf32> {soma.input = "b"},
                             %a: tensor<4x3xf32> {soma.input = "a"}, %bt: tensor<2x3xf32> {soma.input = "bt"})
    -> (tensor<4x2xf32> {soma.output = "ta"}, tensor<4x2xf32> {soma.output = "tb"}, tensor<4x2xf32> {soma.output = "tab"}) {
  %0 = soma.matmul %at, %b {transpose_a = true} : (tensor<3x4xf32>, tensor<3x2xf32>) -> tensor<4x2xf32>
  %1 = soma.matmul %a, %bt {transpose_b = true} : (tensor<4x3xf32>, tensor<2x3xf32>) -> tensor<4x2xf32>
  %2 = soma.matmul %at, %bt {transpose_a = true, transpose_b = true} : (tensor<3x4xf32>, tensor<2x3xf32>) -> tensor<4x2xf32>
  return %0, %1, %2 : tensor<4x2xf32>, tensor<4x2xf32>, tensor<4x2xf32>
}

// -----

// Batched matmul: rank 3 already, the batch index is part of each unit; the
// units loop (5 units) carries the nest's work for soma-linalg-to-loops to
// decide on: 5 x 4 x 2 x 3 = 120 multiply-adds at 8 per point of the
// grain, 15.
// CHECK-LABEL: func.func @matmul_batched
//   CHECK-NOT: memref.expand_shape
//       CHECK: memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2]] : memref<5x4x3xf32> into memref<60xf32>
//       CHECK: scf.for
//       CHECK: memref.load %{{.*}} : memref<5x3x2xf32>
//       CHECK: call @soma_gemm_tile_rows_4x16_v8_b65536
//       CHECK: } {soma.parallel_work = 15 : i64}
func.func @matmul_batched(%a: tensor<5x4x3xf32> {soma.input = "a"}, %b: tensor<5x3x2xf32> {soma.input = "b"}) -> (tensor<5x4x2xf32> {soma.output = "c"}) {
  %0 = soma.matmul %a, %b : (tensor<5x4x3xf32>, tensor<5x3x2xf32>) -> tensor<5x4x2xf32>
  return %0 : tensor<5x4x2xf32>
}

// -----

// Reductions: the kept dimensions become the leading parallel loops and the
// reduced ones trail, so the input map permutes (d0, d2, d1).
// CHECK-LABEL: func.func @reduce_sum(
//  CHECK-SAME: %[[X:.*]]: memref<2x3x4xf32> {soma.input = "x"}, %[[O:.*]]: memref<2x4xf32> {soma.output = "s"}
//       CHECK: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
//       CHECK: linalg.fill ins(%[[ZERO]] : f32) outs(%[[O]] : memref<2x4xf32>)
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]}
//  CHECK-SAME: ins(%[[X]] : memref<2x3x4xf32>) outs(%[[O]] : memref<2x4xf32>)
//       CHECK:   arith.addf
//   CHECK-NOT: linalg.generic
//       CHECK: return
func.func @reduce_sum(%x: tensor<2x3x4xf32> {soma.input = "x"}) -> (tensor<2x4xf32> {soma.output = "s"}) {
  %0 = soma.reduce_sum %x {axes = array<i64: 1>} : tensor<2x3x4xf32> -> tensor<2x4xf32>
  return %0 : tensor<2x4xf32>
}

// -----

// keepdims: the output map reads the kept size-1 dims at constant 0; the
// axes' order in the attribute does not matter. reduce_max starts from -inf.
// CHECK-LABEL: func.func @reduce_max_keepdims
//       CHECK: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
//       CHECK: linalg.fill ins(%[[NEGINF]] : f32) outs(%{{.*}} : memref<1x3x1xf32>)
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d1, d0, d2)>, affine_map<(d0, d1, d2) -> (0, d0, 0)>], iterator_types = ["parallel", "reduction", "reduction"]}
//       CHECK:   arith.maximumf
func.func @reduce_max_keepdims(%x: tensor<2x3x4xf32> {soma.input = "x"}) -> (tensor<1x3x1xf32> {soma.output = "m"}) {
  %0 = soma.reduce_max %x {axes = array<i64: 2, 0>, keepdims = true} : tensor<2x3x4xf32> -> tensor<1x3x1xf32>
  return %0 : tensor<1x3x1xf32>
}

// -----

// reduce_mean is a sum followed by an in-place scale by 1/count (count = 2*4).
// CHECK-LABEL: func.func @reduce_mean
//  CHECK-SAME: %[[O:[a-z0-9]+]]: memref<3xf32> {soma.output = "m"}
//       CHECK: linalg.fill
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d1, d0, d2)>, affine_map<(d0, d1, d2) -> (d0)>], iterator_types = ["parallel", "reduction", "reduction"]}
//       CHECK:   arith.addf
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} outs(%[[O]] : memref<3xf32>)
//       CHECK:   %[[F:.*]] = arith.constant 1.250000e-01 : f32
//       CHECK:   arith.mulf %{{.*}}, %[[F]] : f32
func.func @reduce_mean(%x: tensor<2x3x4xf32> {soma.input = "x"}) -> (tensor<3xf32> {soma.output = "m"}) {
  %0 = soma.reduce_mean %x {axes = array<i64: 0, 2>} : tensor<2x3x4xf32> -> tensor<3xf32>
  return %0 : tensor<3xf32>
}

// -----

// Reducing everything yields a rank-0 buffer and an all-reduction generic.
// CHECK-LABEL: func.func @reduce_all
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> ()>], iterator_types = ["reduction", "reduction"]}
//  CHECK-SAME: outs(%{{.*}} : memref<f32>)
func.func @reduce_all(%x: tensor<2x3xf32> {soma.input = "x"}) -> (tensor<f32> {soma.output = "s"}) {
  %0 = soma.reduce_sum %x {axes = array<i64: 0, 1>} : tensor<2x3xf32> -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

// A reshape is a view (collapse to 1-D, expand to the target): no copy and
// no linalg op of its own; consumers read the view.
// CHECK-LABEL: func.func @reshape(
//  CHECK-SAME: %[[X:.*]]: memref<2x3x4xf32> {soma.input = "x"}, %[[Y:.*]]: memref<6x4xf32> {soma.output = "y"}, %[[Z:.*]]: memref<24xf32> {soma.output = "z"}
//       CHECK: %[[T:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2x3x4xf32>
//       CHECK: linalg.generic
//  CHECK-SAME: outs(%[[T]] : memref<2x3x4xf32>)
//  CHECK-NEXT: ^bb0
//  CHECK-NEXT:   math.exp
//  CHECK-NEXT:   linalg.yield
//  CHECK-NEXT: }
//  CHECK-NEXT: %[[FLAT:.*]] = memref.collapse_shape %[[T]] {{\[}}[0, 1, 2]] : memref<2x3x4xf32> into memref<24xf32>
//  CHECK-NEXT: %[[VIEW:.*]] = memref.expand_shape %[[FLAT]] {{\[}}[0, 1]] output_shape [6, 4] : memref<24xf32> into memref<6x4xf32>
//  CHECK-NEXT: linalg.generic
//  CHECK-SAME: ins(%[[VIEW]] : memref<6x4xf32>) outs(%[[Y]] : memref<6x4xf32>)
//       CHECK: %[[XFLAT:.*]] = memref.collapse_shape %[[X]] {{\[}}[0, 1, 2]] : memref<2x3x4xf32> into memref<24xf32>
//  CHECK-NEXT: linalg.generic
//  CHECK-SAME: ins(%[[XFLAT]] : memref<24xf32>) outs(%[[Z]] : memref<24xf32>)
//   CHECK-NOT: linalg.copy
//       CHECK: return
func.func @reshape(%x: tensor<2x3x4xf32> {soma.input = "x"}) -> (tensor<6x4xf32> {soma.output = "y"}, tensor<24xf32> {soma.output = "z"}) {
  %0 = soma.exp %x : tensor<2x3x4xf32>
  %1 = soma.reshape %0 {shape = array<i64: 6, 4>} : tensor<2x3x4xf32> -> tensor<6x4xf32>
  %2 = soma.neg %1 : tensor<6x4xf32>
  %3 = soma.reshape %x {shape = array<i64: 24>} : tensor<2x3x4xf32> -> tensor<24xf32>
  %4 = soma.relu %3 : tensor<24xf32>
  return %2, %4 : tensor<6x4xf32>, tensor<24xf32>
}

// -----

// Reshapes to and from rank 0 are single collapse/expand views with an
// empty reassociation.
// CHECK-LABEL: func.func @reshape_rank0
//       CHECK: %[[SCALAR:.*]] = memref.collapse_shape %{{.*}} [] : memref<1x1xf32> into memref<f32>
//  CHECK-NEXT: linalg.generic
//  CHECK-SAME: ins(%[[SCALAR]] : memref<f32>)
//       CHECK: memref.expand_shape %{{.*}} [] output_shape [1, 1] : memref<f32> into memref<1x1xf32>
func.func @reshape_rank0(%x: tensor<1x1xf32> {soma.input = "x"}) -> (tensor<f32> {soma.output = "s"}, tensor<1x1xf32> {soma.output = "b"}) {
  %0 = soma.reshape %x {shape = array<i64>} : tensor<1x1xf32> -> tensor<f32>
  %1 = soma.exp %0 : tensor<f32>
  %2 = soma.reshape %1 {shape = array<i64: 1, 1>} : tensor<f32> -> tensor<1x1xf32>
  %3 = soma.neg %2 : tensor<1x1xf32>
  return %1, %3 : tensor<f32>, tensor<1x1xf32>
}

// -----

// transpose: output dim i reads input dim perm[i], so with perm = [2, 0, 1]
// the input map is (d1, d2, d0) and the body just yields the input.
// CHECK-LABEL: func.func @transpose(
//  CHECK-SAME: %[[X:.*]]: memref<2x3x4xi32> {soma.input = "x"}, %[[T:.*]]: memref<4x2x3xi32> {soma.output = "t"}
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d1, d2, d0)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]}
//  CHECK-SAME: ins(%[[X]] : memref<2x3x4xi32>) outs(%[[T]] : memref<4x2x3xi32>)
//  CHECK-NEXT: ^bb0(%[[IN:.*]]: i32, %{{.*}}: i32):
//  CHECK-NEXT:   linalg.yield %[[IN]] : i32
func.func @transpose(%x: tensor<2x3x4xi32> {soma.input = "x"}) -> (tensor<4x2x3xi32> {soma.output = "t"}) {
  %0 = soma.transpose %x {perm = array<i64: 2, 0, 1>} : tensor<2x3x4xi32> -> tensor<4x2x3xi32>
  return %0 : tensor<4x2x3xi32>
}

// -----

// broadcast_to is an elementwise copy with a broadcasting input map.
// CHECK-LABEL: func.func @broadcast_to
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d1, 0)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]}
//  CHECK-SAME: ins(%{{.*}} : memref<3x1xf32>) outs(%{{.*}} : memref<2x3x4xf32>)
//  CHECK-NEXT: ^bb0(%[[IN:.*]]: f32, %{{.*}}: f32):
//  CHECK-NEXT:   linalg.yield %[[IN]] : f32
func.func @broadcast_to(%b: tensor<3x1xf32> {soma.input = "b"}) -> (tensor<2x3x4xf32> {soma.output = "o"}) {
  %0 = soma.broadcast_to %b {shape = array<i64: 2, 3, 4>} : tensor<3x1xf32> -> tensor<2x3x4xf32>
  return %0 : tensor<2x3x4xf32>
}

// -----

// slice: a strided subview of the input copied into the result buffer.
// CHECK-LABEL: func.func @slice(
//  CHECK-SAME: %[[X:.*]]: memref<4x6xf32> {soma.input = "x"}, %[[S:.*]]: memref<2x3xf32> {soma.output = "s"}
//       CHECK: %[[V:.*]] = memref.subview %[[X]][1, 0] [2, 3] [2, 2] : memref<4x6xf32> to memref<2x3xf32, strided<[12, 2], offset: 6>>
//  CHECK-NEXT: linalg.copy ins(%[[V]] : memref<2x3xf32, strided<[12, 2], offset: 6>>) outs(%[[S]] : memref<2x3xf32>)
//  CHECK-NEXT: return
func.func @slice(%x: tensor<4x6xf32> {soma.input = "x"}) -> (tensor<2x3xf32> {soma.output = "s"}) {
  %0 = soma.slice %x {starts = array<i64: 1, 0>, limits = array<i64: 4, 6>, strides = array<i64: 2, 2>} : tensor<4x6xf32> -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

// concat: one subview of the result per input, at increasing offsets along
// the axis, each filled by a copy.
// CHECK-LABEL: func.func @concat(
//  CHECK-SAME: %[[A:[a-z0-9]+]]: memref<2x3xf32>
//  CHECK-SAME: %[[B:[a-z0-9]+]]: memref<2x1xf32>
//  CHECK-SAME: %[[C:[a-z0-9]+]]: memref<2x4xf32>
//  CHECK-SAME: %[[O:[a-z0-9]+]]: memref<2x8xf32> {soma.output = "o"}
//       CHECK: %[[VA:.*]] = memref.subview %[[O]][0, 0] [2, 3] [1, 1] : memref<2x8xf32> to memref<2x3xf32, strided<[8, 1]>>
//  CHECK-NEXT: linalg.copy ins(%[[A]] : memref<2x3xf32>) outs(%[[VA]] : memref<2x3xf32, strided<[8, 1]>>)
//  CHECK-NEXT: %[[VB:.*]] = memref.subview %[[O]][0, 3] [2, 1] [1, 1] : memref<2x8xf32> to memref<2x1xf32, strided<[8, 1], offset: 3>>
//  CHECK-NEXT: linalg.copy ins(%[[B]] : memref<2x1xf32>) outs(%[[VB]] : memref<2x1xf32, strided<[8, 1], offset: 3>>)
//  CHECK-NEXT: %[[VC:.*]] = memref.subview %[[O]][0, 4] [2, 4] [1, 1] : memref<2x8xf32> to memref<2x4xf32, strided<[8, 1], offset: 4>>
//  CHECK-NEXT: linalg.copy ins(%[[C]] : memref<2x4xf32>) outs(%[[VC]] : memref<2x4xf32, strided<[8, 1], offset: 4>>)
//  CHECK-NEXT: return
func.func @concat(%a: tensor<2x3xf32> {soma.input = "a"}, %b: tensor<2x1xf32> {soma.input = "b"}, %c: tensor<2x4xf32> {soma.input = "c"})
    -> (tensor<2x8xf32> {soma.output = "o"}) {
  %0 = soma.concat %a, %b, %c {axis = 1} : (tensor<2x3xf32>, tensor<2x1xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

// A constant becomes a private constant memref.global (64-byte aligned) read
// with memref.get_global; dense and splat values are kept as they are.
// CHECK-LABEL: func.func @constant(
//  CHECK-SAME: %[[X:.*]]: memref<2x3xf32> {soma.input = "x"}, %[[O:.*]]: memref<2x3xf32> {soma.output = "o"}
//       CHECK: %[[K:.*]] = memref.get_global @[[G0:[a-zA-Z0-9_.]+]] : memref<2x3xf32>
//       CHECK: %[[H:.*]] = memref.get_global @[[G1:[a-zA-Z0-9_.]+]] : memref<f32>
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[X]], %[[K]] : memref<2x3xf32>, memref<2x3xf32>)
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%{{.*}}, %[[H]] : memref<2x3xf32>, memref<f32>) outs(%[[O]] : memref<2x3xf32>)
//   CHECK-DAG: memref.global "private" constant @[[G0]] : memref<2x3xf32> = dense<{{\[}}[1.000000e+00, 2.000000e+00, 3.000000e+00], [4.000000e+00, 5.000000e+00, 6.000000e+00]]> {alignment = 64 : i64}
//   CHECK-DAG: memref.global "private" constant @[[G1]] : memref<f32> = dense<5.000000e-01> {alignment = 64 : i64}
func.func @constant(%x: tensor<2x3xf32> {soma.input = "x"}) -> (tensor<2x3xf32> {soma.output = "o"}) {
  %k = soma.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %h = soma.constant dense<0.5> : tensor<f32>
  %0 = soma.add %x, %k : tensor<2x3xf32>, tensor<2x3xf32>
  %1 = soma.mul %0, %h : tensor<2x3xf32>, tensor<f32>
  return %1 : tensor<2x3xf32>
}

// -----

// softmax along axis 1 of [2,5,3]: m = max (keepdims, into a temporary),
// y = e^(x - m) written into the output, s = sum y (temporary), y = y / s
// in place.
// CHECK-LABEL: func.func @softmax(
//  CHECK-SAME: %[[X:.*]]: memref<2x5x3xf32> {soma.input = "x"}, %[[Y:.*]]: memref<2x5x3xf32> {soma.output = "y"}
//       CHECK: %[[M:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2x1x3xf32>
//       CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[M]] : memref<2x1x3xf32>)
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2, d1)>, affine_map<(d0, d1, d2) -> (d0, 0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]}
//  CHECK-SAME: ins(%[[X]] : memref<2x5x3xf32>) outs(%[[M]] : memref<2x1x3xf32>)
//       CHECK:   arith.maximumf
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, 0, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>]
//  CHECK-SAME: ins(%[[X]], %[[M]] : memref<2x5x3xf32>, memref<2x1x3xf32>) outs(%[[Y]] : memref<2x5x3xf32>)
//       CHECK:   arith.subf
//       CHECK:   math.exp
//       CHECK: %[[S:.*]] = memref.alloc() {alignment = 64 : i64} : memref<2x1x3xf32>
//       CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[S]] : memref<2x1x3xf32>)
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[Y]] : memref<2x5x3xf32>) outs(%[[S]] : memref<2x1x3xf32>)
//       CHECK:   arith.addf
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[Y]], %[[S]] : memref<2x5x3xf32>, memref<2x1x3xf32>) outs(%[[Y]] : memref<2x5x3xf32>)
//       CHECK:   arith.divf
func.func @softmax(%x: tensor<2x5x3xf32> {soma.input = "x"}) -> (tensor<2x5x3xf32> {soma.output = "y"}) {
  %0 = soma.softmax %x {axis = 1} : tensor<2x5x3xf32>
  return %0 : tensor<2x5x3xf32>
}

// -----

// log_softmax along the last axis: one loop over the rows (RowKernels.cpp),
// each row of 3 one masked vector (8 lanes here): its maximum (NaN
// ignored; it makes the row NaN below), the sum of e^(x - m) (lanes
// outside the mask dropped), then (x - m) - log s stored.
// CHECK-LABEL: func.func @log_softmax(
//  CHECK-SAME: %[[X:.*]]: memref<4x3xf32> {soma.input = "x"}, %[[Y:.*]]: memref<4x3xf32> {soma.output = "y"}
//   CHECK-NOT: memref.alloc
//   CHECK-DAG: %[[XF:.*]] = memref.collapse_shape %[[X]] {{\[\[}}0, 1]] : memref<4x3xf32> into memref<12xf32>
//   CHECK-DAG: %[[YF:.*]] = memref.collapse_shape %[[Y]] {{\[\[}}0, 1]] : memref<4x3xf32> into memref<12xf32>
//       CHECK: scf.for %[[R:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:   %[[BASE:.*]] = arith.muli %[[R]], %{{.*}} : index
//       CHECK:   %[[MASK:.*]] = vector.create_mask %{{.*}} : vector<8xi1>
//       CHECK:   vector.maskedload %[[XF]]
//       CHECK:   arith.cmpf ogt
//       CHECK:   arith.select
//       CHECK:   %[[MAX:.*]] = vector.reduction <maxnumf>
//       CHECK:   %[[M:.*]] = vector.broadcast %[[MAX]]
//       CHECK:   vector.maskedload %[[XF]]
//       CHECK:   arith.subf %{{.*}}, %[[M]]
//       CHECK:   math.exp
//       CHECK:   arith.select
//       CHECK:   arith.addf
//       CHECK:   %[[S:.*]] = vector.reduction <add>, %{{.*}} fastmath<reassoc>
//       CHECK:   math.log %[[S]] : f32
//       CHECK:   vector.maskedload %[[XF]]
//       CHECK:   arith.subf %{{.*}}, %[[M]]
//       CHECK:   arith.subf
//       CHECK:   vector.maskedstore %[[YF]]
//   CHECK-NOT:   math.exp
//       CHECK: } {soma.parallel_work = 96 : i64}
func.func @log_softmax(%x: tensor<4x3xf32> {soma.input = "x"}) -> (tensor<4x3xf32> {soma.output = "y"}) {
  %0 = soma.log_softmax %x {axis = 1} : tensor<4x3xf32>
  return %0 : tensor<4x3xf32>
}

// -----

// softmax_cross_entropy of [4,3] logits: row max m and row sum s in
// temporaries, a per-row loss that gathers logits[i, label[i]] with
// linalg.index + memref.load (the label clamped for the load, NaN when out of
// range), then a sum into the output scaled by 1/4 for "mean".
// CHECK-LABEL: func.func @softmax_cross_entropy(
//  CHECK-SAME: %[[X:.*]]: memref<4x3xf32> {soma.input = "x"}, %[[LBL:.*]]: memref<4xi64> {soma.input = "y"}, %[[L:.*]]: memref<f32> {soma.output = "loss"}
//       CHECK: %[[M:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
//       CHECK: linalg.generic
//  CHECK-SAME: iterator_types = ["parallel", "reduction"]
//  CHECK-SAME: ins(%[[X]] : memref<4x3xf32>) outs(%[[M]] : memref<4xf32>)
//       CHECK:   arith.maximumf
//       CHECK: %[[S:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[X]], %[[M]] : memref<4x3xf32>, memref<4xf32>) outs(%[[S]] : memref<4xf32>)
//       CHECK:   math.exp
//       CHECK: %[[ROW:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
//       CHECK: linalg.generic
//  CHECK-SAME: iterator_types = ["parallel"]
//  CHECK-SAME: ins(%[[LBL]], %[[M]], %[[S]] : memref<4xi64>, memref<4xf32>, memref<4xf32>) outs(%[[ROW]] : memref<4xf32>)
//  CHECK-NEXT: ^bb0(%[[LABEL:.*]]: i64, %{{.*}}: f32, %{{.*}}: f32, %{{.*}}: f32):
//       CHECK:   %[[I:.*]] = linalg.index 0 : index
//       CHECK:   %[[C:.*]] = arith.index_cast %[[LABEL]] : i64 to index
//       CHECK:   %[[NCLS:.*]] = arith.constant 3 : index
//       CHECK:   arith.cmpi slt, %[[C]], %[[NCLS]] : index
//       CHECK:   %[[OK:.*]] = arith.andi
//       CHECK:   %[[SAFE:.*]] = arith.select %[[OK]], %[[C]], %{{.*}} : index
//       CHECK:   memref.load %[[X]][%[[I]], %[[SAFE]]] : memref<4x3xf32>
//       CHECK:   math.log
//       CHECK:   %[[NAN:.*]] = arith.constant 0x7FC00000 : f32
//       CHECK:   %[[R:.*]] = arith.select %[[OK]], %{{.*}}, %[[NAN]] : f32
//       CHECK:   linalg.yield %[[R]] : f32
//       CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[L]] : memref<f32>)
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> ()>], iterator_types = ["reduction"]}
//  CHECK-SAME: ins(%[[ROW]] : memref<4xf32>) outs(%[[L]] : memref<f32>)
//       CHECK: linalg.generic {indexing_maps = [affine_map<() -> ()>], iterator_types = []} outs(%[[L]] : memref<f32>)
//       CHECK:   arith.constant 2.500000e-01 : f32
func.func @softmax_cross_entropy(%x: tensor<4x3xf32> {soma.input = "x"}, %y: tensor<4xi64> {soma.input = "y"}) -> (tensor<f32> {soma.output = "loss"}) {
  %0 = soma.softmax_cross_entropy %x, %y : (tensor<4x3xf32>, tensor<4xi64>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

// reduction = "sum": no scaling generic.
// CHECK-LABEL: func.func @softmax_cross_entropy_sum(
//  CHECK-SAME: %[[L:[a-z0-9]+]]: memref<f32> {soma.output = "loss"}
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> ()>], iterator_types = ["reduction"]}
//  CHECK-SAME: outs(%[[L]] : memref<f32>)
//   CHECK-NOT: linalg.generic
//       CHECK: return
func.func @softmax_cross_entropy_sum(%x: tensor<4x3xf32> {soma.input = "x"}, %y: tensor<4xi32> {soma.input = "y"}) -> (tensor<f32> {soma.output = "loss"}) {
  %0 = soma.softmax_cross_entropy %x, %y {reduction = "sum"} : (tensor<4x3xf32>, tensor<4xi32>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

// mse: one all-reduction generic accumulating (p - t)^2 into the output,
// then a scale by 1/12 for "mean".
// CHECK-LABEL: func.func @mse(
//  CHECK-SAME: %[[P:.*]]: memref<3x4xf32> {soma.input = "p"}, %[[T:.*]]: memref<3x4xf32> {soma.input = "t"}, %[[L:.*]]: memref<f32> {soma.output = "loss"}
//       CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[L]] : memref<f32>)
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> ()>], iterator_types = ["reduction", "reduction"]}
//  CHECK-SAME: ins(%[[P]], %[[T]] : memref<3x4xf32>, memref<3x4xf32>) outs(%[[L]] : memref<f32>)
//  CHECK-NEXT: ^bb0(%[[IP:.*]]: f32, %[[IT:.*]]: f32, %[[ACC:.*]]: f32):
//  CHECK-NEXT:   %[[D:.*]] = arith.subf %[[IP]], %[[IT]] : f32
//  CHECK-NEXT:   %[[SQ:.*]] = arith.mulf %[[D]], %[[D]] : f32
//  CHECK-NEXT:   %[[SUM:.*]] = arith.addf %[[ACC]], %[[SQ]] : f32
//  CHECK-NEXT:   linalg.yield %[[SUM]] : f32
//       CHECK: linalg.generic {indexing_maps = [affine_map<() -> ()>], iterator_types = []} outs(%[[L]] : memref<f32>)
//       CHECK:   arith.constant 0.0833333358 : f32
func.func @mse(%p: tensor<3x4xf32> {soma.input = "p"}, %t: tensor<3x4xf32> {soma.input = "t"}) -> (tensor<f32> {soma.output = "loss"}) {
  %0 = soma.mse %p, %t : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

// binary_cross_entropy: both logs clamped at -100; "sum" is not scaled.
// CHECK-LABEL: func.func @bce(
//  CHECK-SAME: %[[L:[a-z0-9]+]]: memref<f32> {soma.output = "loss"}
//       CHECK: linalg.generic
//  CHECK-SAME: iterator_types = ["reduction", "reduction"]
//  CHECK-SAME: outs(%[[L]] : memref<f32>)
//       CHECK:   %[[FLOOR:.*]] = arith.constant -1.000000e+02 : f32
//       CHECK:   %[[LP:.*]] = math.log
//       CHECK:   arith.maximumf %[[LP]], %[[FLOOR]] : f32
//       CHECK:   %[[LQ:.*]] = math.log
//       CHECK:   arith.maximumf %[[LQ]], %[[FLOOR]] : f32
//       CHECK:   arith.negf
//       CHECK:   linalg.yield
//   CHECK-NOT: linalg.generic
//       CHECK: return
func.func @bce(%p: tensor<3x4xf32> {soma.input = "p"}, %t: tensor<3x4xf32> {soma.input = "t"}) -> (tensor<f32> {soma.output = "loss"}) {
  %0 = soma.binary_cross_entropy %p, %t {reduction = "sum"} : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

// Outputs that cannot be computed in place are copied at the end: an input
// returned as an output, the second occurrence of a value returned twice
// (copied from the first output), a reshape view of a value already
// computed into another output, and a constant.
// CHECK-LABEL: func.func @copies(
//  CHECK-SAME: %[[X:[a-z0-9]+]]: memref<4xf32> {soma.input = "x"},
//  CHECK-SAME: %[[SAME:[a-z0-9]+]]: memref<4xf32> {soma.output = "same"},
//  CHECK-SAME: %[[E1:[a-z0-9]+]]: memref<4xf32> {soma.output = "e1"},
//  CHECK-SAME: %[[E2:[a-z0-9]+]]: memref<4xf32> {soma.output = "e2"},
//  CHECK-SAME: %[[R:[a-z0-9]+]]: memref<2x2xf32> {soma.output = "r"},
//  CHECK-SAME: %[[K:[a-z0-9]+]]: memref<2xi32> {soma.output = "k"},
//   CHECK-NOT: memref.alloc
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[X]] : memref<4xf32>) outs(%[[E1]] : memref<4xf32>)
//       CHECK: %[[V:.*]] = memref.expand_shape %[[E1]] {{\[}}[0, 1]] output_shape [2, 2] : memref<4xf32> into memref<2x2xf32>
//       CHECK: %[[G:.*]] = memref.get_global @{{.*}} : memref<2xi32>
//       CHECK: linalg.copy ins(%[[X]] : memref<4xf32>) outs(%[[SAME]] : memref<4xf32>)
//  CHECK-NEXT: linalg.copy ins(%[[E1]] : memref<4xf32>) outs(%[[E2]] : memref<4xf32>)
//  CHECK-NEXT: linalg.copy ins(%[[V]] : memref<2x2xf32>) outs(%[[R]] : memref<2x2xf32>)
//  CHECK-NEXT: linalg.copy ins(%[[G]] : memref<2xi32>) outs(%[[K]] : memref<2xi32>)
//  CHECK-NEXT: return
func.func @copies(%x: tensor<4xf32> {soma.input = "x"})
    -> (tensor<4xf32> {soma.output = "same"}, tensor<4xf32> {soma.output = "e1"}, tensor<4xf32> {soma.output = "e2"},
        tensor<2x2xf32> {soma.output = "r"}, tensor<2xi32> {soma.output = "k"}) {
  %0 = soma.exp %x : tensor<4xf32>
  %1 = soma.reshape %0 {shape = array<i64: 2, 2>} : tensor<4xf32> -> tensor<2x2xf32>
  %2 = soma.constant dense<[3, 4]> : tensor<2xi32>
  return %x, %0, %0, %1, %2 : tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<2x2xf32>, tensor<2xi32>
}

// -----

// An output that is a view (reshape, stop_gradient) of a computed value:
// the value is computed into the output argument, seen in its own shape,
// and not copied (a convolution's [N, K, OH * OW] product into its NCHW
// output). Later readers of the value read the argument; none writes over
// it.
// CHECK-LABEL: func.func @output_view(
//  CHECK-SAME: %[[X:[a-z0-9]+]]: memref<2x6xf32> {soma.input = "x"},
//  CHECK-SAME: %[[R:[a-z0-9]+]]: memref<3x4xf32> {soma.output = "r"},
//  CHECK-SAME: %[[S:[a-z0-9]+]]: memref<12xf32> {soma.output = "s"},
//  CHECK-SAME: %[[T:[a-z0-9]+]]: memref<2x6xf32> {soma.output = "t"},
//   CHECK-NOT: memref.alloc
//       CHECK: %[[RF:.*]] = memref.collapse_shape %[[R]] {{\[}}[0, 1]] : memref<3x4xf32> into memref<12xf32>
//  CHECK-NEXT: %[[RV:.*]] = memref.expand_shape %[[RF]] {{\[}}[0, 1]] output_shape [2, 6] : memref<12xf32> into memref<2x6xf32>
//  CHECK-NEXT: %[[SV:.*]] = memref.expand_shape %[[S]] {{\[}}[0, 1]] output_shape [2, 6] : memref<12xf32> into memref<2x6xf32>
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[X]] : memref<2x6xf32>) outs(%[[RV]] : memref<2x6xf32>)
//       CHECK: math.exp
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[X]] : memref<2x6xf32>) outs(%[[SV]] : memref<2x6xf32>)
//       CHECK: arith.negf
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%[[RV]], %[[SV]] : memref<2x6xf32>, memref<2x6xf32>) outs(%[[T]] : memref<2x6xf32>)
//   CHECK-NOT: linalg.copy
//       CHECK: return
func.func @output_view(%x: tensor<2x6xf32> {soma.input = "x"})
    -> (tensor<3x4xf32> {soma.output = "r"}, tensor<12xf32> {soma.output = "s"}, tensor<2x6xf32> {soma.output = "t"}) {
  %0 = soma.exp %x : tensor<2x6xf32>
  %1 = soma.reshape %0 {shape = array<i64: 3, 4>} : tensor<2x6xf32> -> tensor<3x4xf32>
  %2 = soma.neg %x : tensor<2x6xf32>
  %3 = soma.stop_gradient %2 : tensor<2x6xf32>
  %4 = soma.reshape %3 {shape = array<i64: 12>} : tensor<2x6xf32> -> tensor<12xf32>
  %5 = soma.add %0, %2 : tensor<2x6xf32>, tensor<2x6xf32>
  return %1, %4, %5 : tensor<3x4xf32>, tensor<12xf32>, tensor<2x6xf32>
}

// -----

// Every graph of the module is lowered, each to its own kernel.
// CHECK-LABEL: func.func @first(%{{.*}}: memref<2xf32> {soma.input = "a"}, %{{.*}}: memref<2xf32> {soma.output = "b"}, %{{.*}}: memref<0xi8> {soma.workspace}) attributes {soma.kernel}
//       CHECK:   math.exp
//       CHECK: func.func @second(%{{.*}}: memref<3xf32> {soma.param = "c"}, %{{.*}}: memref<3xf32> {soma.output = "d"}, %{{.*}}: memref<0xi8> {soma.workspace}) attributes {soma.kernel}
//       CHECK:   math.log
func.func @first(%a: tensor<2xf32> {soma.input = "a"}) -> (tensor<2xf32> {soma.output = "b"}) {
  %0 = soma.exp %a : tensor<2xf32>
  return %0 : tensor<2xf32>
}
func.func @second(%c: tensor<3xf32> {soma.param = "c"}) -> (tensor<3xf32> {soma.output = "d"}) {
  %0 = soma.log %c : tensor<3xf32>
  return %0 : tensor<3xf32>
}

// -----

// random_uniform: one parallel linalg.generic reading the scalar counter;
// the body linearises the indices, runs the ten Philox rounds (two
// 32x32->64 multiplications each, the key schedule folded into constants)
// and keeps the top 24 bits of word 0.
// CHECK-LABEL: func.func @rng(
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1) -> ()>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%{{.*}} : memref<f32>) outs(%{{.*}} : memref<3x5xf32>)
//       CHECK:   linalg.index 0
//       CHECK:   linalg.index 1
//       CHECK:   arith.index_castui %{{.*}} : index to i32
//       CHECK:   arith.fptoui %{{.*}} : f32 to i32
// CHECK-COUNT-20:   arith.mului_extended
//       CHECK:   arith.shrui
//       CHECK:   arith.uitofp
//       CHECK:   arith.mulf %{{.*}}, %{{.*}} : f32
//       CHECK:   linalg.yield
func.func @rng(%c: tensor<f32> {soma.input = "c"}) -> (tensor<3x5xf32> {soma.output = "u"}) {
  %0 = soma.random_uniform %c {shape = array<i64: 3, 5>, seed = 42 : i64} : tensor<f32> -> tensor<3x5xf32>
  return %0 : tensor<3x5xf32>
}

// -----

// An elementwise soma.fusion is one linalg.generic: the broadcast input is
// read through its broadcast map, each result written through the
// identity; the body is the scalar form of each op in order, and the splat
// constant becomes an arith.constant.
// CHECK-LABEL: func.func @fused(
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%{{.*}}, %{{.*}} : memref<4x3xf32>, memref<3xf32>) outs(%{{.*}}, %{{.*}} : memref<4x3xf32>, memref<4x3xf32>)
//  CHECK-NEXT: ^bb0(%[[X:.*]]: f32, %[[B:.*]]: f32, %{{.*}}: f32, %{{.*}}: f32):
//  CHECK-NEXT:   %[[C:.*]] = arith.constant 2.000000e+00 : f32
//  CHECK-NEXT:   %[[A:.*]] = arith.addf %[[X]], %[[B]] : f32
//       CHECK:   %[[R:.*]] = arith.maximumf %[[A]], %{{.*}} : f32
//       CHECK:   %[[M:.*]] = arith.mulf %[[R]], %[[C]] : f32
//  CHECK-NEXT:   linalg.yield %[[A]], %[[M]] : f32, f32
//   CHECK-NOT: linalg.generic
func.func @fused(%x: tensor<4x3xf32> {soma.input = "x"}, %b: tensor<3xf32> {soma.input = "b"})
    -> (tensor<4x3xf32> {soma.output = "pre"}, tensor<4x3xf32> {soma.output = "y"}) {
  %0:2 = soma.fusion "elementwise"(%x, %b) : (tensor<4x3xf32>, tensor<3xf32>) -> (tensor<4x3xf32>, tensor<4x3xf32>) {
  ^bb0(%a0: tensor<4x3xf32>, %a1: tensor<3xf32>):
    %c = soma.constant dense<2.0> : tensor<f32>
    %1 = soma.add %a0, %a1 : tensor<4x3xf32>, tensor<3xf32>
    %2 = soma.relu %1 : tensor<4x3xf32>
    %3 = soma.mul %2, %c : tensor<4x3xf32>, tensor<f32>
    soma.yield %1, %3 : tensor<4x3xf32>, tensor<4x3xf32>
  }
  return %0#0, %0#1 : tensor<4x3xf32>, tensor<4x3xf32>
}

// -----

// In place only where the operand dies: %0 is read again after the tanh,
// so the tanh gets its own buffer; the final add may write over the tanh's
// result (it dies there) but not over %0's buffer twice.
// CHECK-LABEL: func.func @in_place(
//       CHECK: %[[E:.*]] = memref.alloc() {alignment = 64 : i64} : memref<8xf32>
//       CHECK: outs(%[[E]] : memref<8xf32>)
//       CHECK: %[[T:.*]] = memref.alloc() {alignment = 64 : i64} : memref<8xf32>
//       CHECK: ins(%[[E]] : memref<8xf32>) outs(%[[T]] : memref<8xf32>)
//       CHECK: ins(%[[T]], %[[E]] : memref<8xf32>, memref<8xf32>) outs(%[[T]] : memref<8xf32>)
//   CHECK-NOT: memref.alloc
func.func @in_place(%x: tensor<8xf32> {soma.input = "x"}) -> (tensor<f32> {soma.output = "s"}) {
  %0 = soma.exp %x : tensor<8xf32>
  %1 = soma.tanh %0 : tensor<8xf32>
  %2 = soma.add %1, %0 : tensor<8xf32>, tensor<8xf32>
  %3 = soma.reduce_sum %2 {axes = array<i64: 0>} : tensor<8xf32> -> tensor<f32>
  return %3 : tensor<f32>
}

// -----

// A reduction fusion is one linalg.generic with the kept dimension parallel
// and outermost and the reduced one innermost; the body computes the square
// and accumulates it; the mean is scaled afterwards.
// CHECK-LABEL: func.func @fused_reduction(
//       CHECK: linalg.fill
//       CHECK: linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (0, d0)>], iterator_types = ["parallel", "reduction"]} ins(%{{.*}} : memref<4x3xf32>) outs(%{{.*}} : memref<1x3xf32>)
//  CHECK-NEXT: ^bb0(%[[X:.*]]: f32, %[[ACC:.*]]: f32):
//  CHECK-NEXT:   %[[SQ:.*]] = arith.mulf %[[X]], %[[X]] : f32
//  CHECK-NEXT:   %[[S:.*]] = arith.addf %[[ACC]], %[[SQ]] : f32
//  CHECK-NEXT:   linalg.yield %[[S]] : f32
//       CHECK: arith.mulf %{{.*}}, %{{.*}} : f32
func.func @fused_reduction(%x: tensor<4x3xf32> {soma.input = "x"}) -> (tensor<1x3xf32> {soma.output = "v"}) {
  %0 = soma.fusion "reduction"(%x) : (tensor<4x3xf32>) -> tensor<1x3xf32> {
  ^bb0(%a: tensor<4x3xf32>):
    %1 = soma.mul %a, %a : tensor<4x3xf32>, tensor<4x3xf32>
    %2 = soma.reduce_mean %1 {axes = array<i64: 0>, keepdims = true} : tensor<4x3xf32> -> tensor<1x3xf32>
    soma.yield %2 : tensor<1x3xf32>
  }
  return %0 : tensor<1x3xf32>
}

// -----

// A parameter update is not written in place when a view of the old value
// is still read afterwards (here: an output, copied at the end): the new
// value goes to a temporary, the old one is copied out first, then the
// update is copied back.
// CHECK-LABEL: func.func @update_aliased_by_output(
//  CHECK-SAME: %[[X:[a-z0-9]+]]: memref<4xf32> {soma.input = "x"}, %[[W:[a-z0-9]+]]: memref<4xf32> {soma.param = "w"}, %[[OLD:[a-z0-9]+]]: memref<2x2xf32> {soma.output = "old"}
//       CHECK: %[[V:.*]] = memref.expand_shape %[[W]]
//       CHECK: %[[T:.*]] = memref.alloc()
//       CHECK: linalg.generic {{.*}} ins(%[[W]], %[[X]] : memref<4xf32>, memref<4xf32>) outs(%[[T]] : memref<4xf32>)
//       CHECK: linalg.copy ins(%[[V]] : memref<2x2xf32>) outs(%[[OLD]] : memref<2x2xf32>)
//  CHECK-NEXT: linalg.copy ins(%[[T]] : memref<4xf32>) outs(%[[W]] : memref<4xf32>)
func.func @update_aliased_by_output(%w: tensor<4xf32> {soma.param = "w"}, %x: tensor<4xf32> {soma.input = "x"})
    -> (tensor<2x2xf32> {soma.output = "old"}, tensor<4xf32> {soma.update = "w"}) {
  %0 = soma.reshape %w {shape = array<i64: 2, 2>} : tensor<4xf32> -> tensor<2x2xf32>
  %1 = soma.mul %w, %x : tensor<4xf32>, tensor<4xf32>
  return %0, %1 : tensor<2x2xf32>, tensor<4xf32>
}

// -----

// A contraction fusion: the packed GEMM writes the product into the
// result's buffer; after the unit's last block of K, the epilogue loops
// over the unit's rows and columns, reads the product and the bias (at its
// broadcast index [n]), computes add and relu, and writes the result at
// the same point.
// CHECK-LABEL: func.func @epilogue(
//  CHECK-SAME: %[[X:.*]]: memref<4x3xf32> {soma.input = "x"}, %[[W:.*]]: memref<3x5xf32> {soma.input = "w"}, %[[BIAS:.*]]: memref<5xf32> {soma.input = "b"}, %[[Y:.*]]: memref<4x5xf32> {soma.output = "y"}
//       CHECK: %[[Y3:.*]] = memref.expand_shape %[[Y]]
//       CHECK: llvm.intr.stacksave
//       CHECK:   call @soma_gemm_tile_
//       CHECK:   vector.maskedstore %[[Y3]]
//       CHECK:   scf.for %[[M:.*]] =
//       CHECK:     scf.for %[[N:.*]] =
//       CHECK:       %[[BV:.*]] = memref.load %[[BIAS]][%[[N]]] : memref<5xf32>
//       CHECK:       %[[P:.*]] = memref.load %[[Y3]][%{{.*}}, %[[M]], %[[N]]] : memref<1x4x5xf32>
//       CHECK:       %[[S:.*]] = arith.addf %[[P]], %[[BV]] : f32
//       CHECK:       %[[R:.*]] = arith.maximumf %[[S]], %{{.*}} : f32
//       CHECK:       memref.store %[[R]], %[[Y]][%[[M]], %[[N]]] : memref<4x5xf32>
//   CHECK-NOT: memref.alloc()
//       CHECK: return
func.func @epilogue(%x: tensor<4x3xf32> {soma.input = "x"}, %w: tensor<3x5xf32> {soma.input = "w"},
                    %b: tensor<5xf32> {soma.input = "b"}) -> (tensor<4x5xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%x, %w, %b) : (tensor<4x3xf32>, tensor<3x5xf32>, tensor<5xf32>) -> tensor<4x5xf32> {
  ^bb0(%a: tensor<4x3xf32>, %c: tensor<3x5xf32>, %d: tensor<5xf32>):
    %1 = soma.matmul %a, %c : (tensor<4x3xf32>, tensor<3x5xf32>) -> tensor<4x5xf32>
    %2 = soma.add %1, %d : tensor<4x5xf32>, tensor<5xf32>
    %3 = soma.relu %2 : tensor<4x5xf32>
    soma.yield %3 : tensor<4x5xf32>
  }
  return %0 : tensor<4x5xf32>
}

// -----

// A filter gradient dy x im2col(x)^T of a convolution of stride 1 whose
// output keeps its input's 5x7 (3x3 window, padding 1) is computed
// directly: no GEMM, no packing, no gather. A table of window masks per
// chunk of 8 pixels and kernel tap (5 chunks x 9 taps), then tiles of 2
// filters x one kernel row (3 columns (c, u, v)) of 8-pixel accumulators fed by masked
// vector loads of dy and x read flat. The 6 accumulators' lanes are summed
// together: 3 rounds of merging pairs of vectors (two shuffles and an add
// each) leave sum j in lane j of one vector; each filter's 3 sums are
// shuffled to the front and added to its row of dw with a masked load and
// store of 3 lanes (0 instead of dw's old value in the first block).
// CHECK-LABEL: func.func @filter_gradient(
//  CHECK-SAME: %{{.*}}: memref<2x4x5x7xf32> {soma.input = "dy"}, %{{.*}}: memref<2x3x5x7xf32> {soma.input = "x"}, %[[DW:.*]]: memref<1x4x27xf32> {soma.output = "dw"}
//   CHECK-NOT: vector.gather
//   CHECK-NOT: func.call
//       CHECK: scf.execute_region {
//       CHECK:   %[[TABLE:.*]] = memref.alloca() {alignment = 64 : i64} : memref<45xvector<8xi1>>
//       CHECK:   memref.store %{{.*}}, %[[TABLE]][%{{.*}}] : memref<45xvector<8xi1>>
//       CHECK:   vector.create_mask %{{.*}} : vector<8xi1>
//       CHECK:   memref.load %[[TABLE]]
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<280xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<210xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.fma
//       CHECK:   %[[L0:.*]] = vector.shuffle %[[ACC:.*]]#0, %[[ACC]]#1 [0, 1, 2, 3, 8, 9, 10, 11] : vector<8xf32>, vector<8xf32>
//  CHECK-NEXT:   %[[H0:.*]] = vector.shuffle %[[ACC]]#0, %[[ACC]]#1 [4, 5, 6, 7, 12, 13, 14, 15] : vector<8xf32>, vector<8xf32>
//  CHECK-NEXT:   %[[S01:.*]] = arith.addf %[[L0]], %[[H0]] : vector<8xf32>
//       CHECK:   %[[S23:.*]] = arith.addf
//       CHECK:   %[[S45:.*]] = arith.addf
//       CHECK:   vector.shuffle %[[S01]], %[[S23]] [0, 1, 4, 5, 8, 9, 12, 13]
//       CHECK:   vector.shuffle %[[S45]], %{{.*}} [0, 1, 4, 5, 8, 9, 12, 13]
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [0, 2, 4, 6, 8, 10, 12, 14]
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [1, 3, 5, 7, 9, 11, 13, 15]
//  CHECK-NEXT:   %[[SUMS:.*]] = arith.addf %{{.*}}, %{{.*}} : vector<8xf32>
//       CHECK:   %[[ROW0:.*]] = vector.shuffle %[[SUMS]], %[[SUMS]] [0, 1, 2, 0, 0, 0, 0, 0]
//       CHECK:   %[[LANES:.*]] = vector.create_mask %{{.*}} : vector<8xi1>
//       CHECK:   %[[OLD:.*]] = vector.maskedload %[[DW]][%{{.*}}, %{{.*}}, %{{.*}}], %[[LANES]], %{{.*}} : memref<1x4x27xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   %[[BASE:.*]] = arith.select %{{.*}}, %{{.*}}, %[[OLD]] : vector<8xf32>
//       CHECK:   %[[NEW:.*]] = arith.addf %[[BASE]], %[[ROW0]] : vector<8xf32>
//       CHECK:   vector.maskedstore %[[DW]][%{{.*}}, %{{.*}}, %{{.*}}], %[[LANES]], %[[NEW]] : memref<1x4x27xf32>, vector<8xi1>, vector<8xf32>
//       CHECK:   vector.shuffle %[[SUMS]], %[[SUMS]] [3, 4, 5, 0, 0, 0, 0, 0]
//   CHECK-NOT: vector.gather
func.func @filter_gradient(%dy: tensor<2x4x5x7xf32> {soma.input = "dy"}, %x: tensor<2x3x5x7xf32> {soma.input = "x"}) -> (tensor<1x4x27xf32> {soma.output = "dw"}) {
  %0 = soma.fusion "contraction"(%dy, %x) : (tensor<2x4x5x7xf32>, tensor<2x3x5x7xf32>) -> tensor<1x4x27xf32> {
  ^bb0(%a: tensor<2x4x5x7xf32>, %b: tensor<2x3x5x7xf32>):
    %1 = soma.transpose %a {perm = array<i64: 1, 0, 2, 3>} : tensor<2x4x5x7xf32> -> tensor<4x2x5x7xf32>
    %2 = soma.reshape %1 {shape = array<i64: 1, 4, 70>} : tensor<4x2x5x7xf32> -> tensor<1x4x70xf32>
    %3 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 1, 1>} : tensor<2x3x5x7xf32> -> tensor<27x70xf32>
    %4 = soma.reshape %3 {shape = array<i64: 1, 27, 70>} : tensor<27x70xf32> -> tensor<1x27x70xf32>
    %5 = soma.matmul %2, %4 {transpose_b = true} : (tensor<1x4x70xf32>, tensor<1x27x70xf32>) -> tensor<1x4x27xf32>
    soma.yield %5 : tensor<1x4x27xf32>
  }
  return %0 : tensor<1x4x27xf32>
}

// A "valid" convolution's filter gradient (dy 3x5 from x 5x7) is computed
// directly too, on a grid of 3 rows of 7 pixels (x's pitch): its last two
// columns are not outputs, so dy's rows are spread over the grid by
// expanding loads (the lanes that are outputs take consecutive elements
// of dy, the others 0), once per block of images (2 images x 4 filters x
// 3 chunks of 8 = 192 floats of stack), and the tiles read the spread dy
// with plain loads, x by masked loads as before.
// CHECK-LABEL: func.func @filter_gradient_valid(
//   CHECK-NOT: func.call
//       CHECK: scf.execute_region {
//       CHECK:   memref.alloca() {alignment = 64 : i64} : memref<27xvector<8xi1>>
//       CHECK:   %[[DYG:.*]] = memref.alloca() {alignment = 64 : i64} : memref<192xf32>
//       CHECK:   %[[SPREAD:.*]] = vector.expandload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<120xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.store %[[SPREAD]], %[[DYG]][%{{.*}}] : memref<192xf32>, vector<8xf32>
//   CHECK-NOT:   vector.expandload
//       CHECK:   vector.load %[[DYG]][%{{.*}}] : memref<192xf32>, vector<8xf32>
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<210xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.fma
//   CHECK-NOT: vector.gather
//   CHECK-NOT: vector.expandload
func.func @filter_gradient_valid(%dy: tensor<2x4x3x5xf32> {soma.input = "dy"}, %x: tensor<2x3x5x7xf32> {soma.input = "x"}) -> (tensor<1x4x27xf32> {soma.output = "dw"}) {
  %0 = soma.fusion "contraction"(%dy, %x) : (tensor<2x4x3x5xf32>, tensor<2x3x5x7xf32>) -> tensor<1x4x27xf32> {
  ^bb0(%a: tensor<2x4x3x5xf32>, %b: tensor<2x3x5x7xf32>):
    %1 = soma.transpose %a {perm = array<i64: 1, 0, 2, 3>} : tensor<2x4x3x5xf32> -> tensor<4x2x3x5xf32>
    %2 = soma.reshape %1 {shape = array<i64: 1, 4, 30>} : tensor<4x2x3x5xf32> -> tensor<1x4x30xf32>
    %3 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : tensor<2x3x5x7xf32> -> tensor<27x30xf32>
    %4 = soma.reshape %3 {shape = array<i64: 1, 27, 30>} : tensor<27x30xf32> -> tensor<1x27x30xf32>
    %5 = soma.matmul %2, %4 {transpose_b = true} : (tensor<1x4x30xf32>, tensor<1x27x30xf32>) -> tensor<1x4x27xf32>
    soma.yield %5 : tensor<1x4x27xf32>
  }
  return %0 : tensor<1x4x27xf32>
}

// With 8 filters (a whole vector), the same filter gradient has its vectors
// along the filters instead (8 of 8 lanes useful, against 5 of every 7
// grid pixels): each image's dy is transposed into a stack scratch of 16
// pixels x 8 filters (8 x 8 blocks by shuffles), and each tile of 9 taps
// (one channel's 3 x 3) sums, per output pixel, one load of dy times 9
// broadcast points of x into its part (filter-major); the part (one: too
// little work for threads) is then transposed into dw, 8 x 8 blocks, the
// last 3 columns masked.
// CHECK-LABEL: func.func @filter_gradient_along_filters(
//   CHECK-NOT: func.call
//       CHECK: memref.alloc() {alignment = 64 : i64} : memref<216xf32>
//       CHECK: scf.execute_region {
//       CHECK:   %[[DYT:.*]] = memref.alloca() {alignment = 64 : i64} : memref<128xf32>
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<240xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
// CHECK-COUNT-24:   vector.shuffle
//       CHECK:   vector.store %{{.*}}, %[[DYT]][%{{.*}}] : memref<128xf32>, vector<8xf32>
//       CHECK:   vector.load %[[DYT]][%{{.*}}] : memref<128xf32>, vector<8xf32>
//       CHECK:   memref.load %{{.*}}[%{{.*}}] : memref<210xf32>
//       CHECK:   vector.broadcast %{{.*}} : f32 to vector<8xf32>
//       CHECK:   vector.fma
// CHECK-COUNT-8:   vector.maskedstore %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<216xf32>, vector<8xi1>, vector<8xf32>
//   CHECK-NOT: vector.maskedload
//   CHECK-NOT: vector.expandload
func.func @filter_gradient_along_filters(%dy: tensor<2x8x3x5xf32> {soma.input = "dy"}, %x: tensor<2x3x5x7xf32> {soma.input = "x"}) -> (tensor<1x8x27xf32> {soma.output = "dw"}) {
  %0 = soma.fusion "contraction"(%dy, %x) : (tensor<2x8x3x5xf32>, tensor<2x3x5x7xf32>) -> tensor<1x8x27xf32> {
  ^bb0(%a: tensor<2x8x3x5xf32>, %b: tensor<2x3x5x7xf32>):
    %1 = soma.transpose %a {perm = array<i64: 1, 0, 2, 3>} : tensor<2x8x3x5xf32> -> tensor<8x2x3x5xf32>
    %2 = soma.reshape %1 {shape = array<i64: 1, 8, 30>} : tensor<8x2x3x5xf32> -> tensor<1x8x30xf32>
    %3 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : tensor<2x3x5x7xf32> -> tensor<27x30xf32>
    %4 = soma.reshape %3 {shape = array<i64: 1, 27, 30>} : tensor<27x30xf32> -> tensor<1x27x30xf32>
    %5 = soma.matmul %2, %4 {transpose_b = true} : (tensor<1x8x30xf32>, tensor<1x27x30xf32>) -> tensor<1x8x27xf32>
    soma.yield %5 : tensor<1x8x27xf32>
  }
  return %0 : tensor<1x8x27xf32>
}

// -----

// A stride of 3 keeps the GEMM (the packing's transposing path).
// CHECK-LABEL: func.func @filter_gradient_strided(
//       CHECK: func.call @soma_gemm_transpose
//       CHECK: func.call @soma_gemm_tile
func.func @filter_gradient_strided(%dy: tensor<2x4x2x3xf32> {soma.input = "dy"}, %x: tensor<2x3x5x7xf32> {soma.input = "x"}) -> (tensor<1x4x27xf32> {soma.output = "dw"}) {
  %0 = soma.fusion "contraction"(%dy, %x) : (tensor<2x4x2x3xf32>, tensor<2x3x5x7xf32>) -> tensor<1x4x27xf32> {
  ^bb0(%a: tensor<2x4x2x3xf32>, %b: tensor<2x3x5x7xf32>):
    %1 = soma.transpose %a {perm = array<i64: 1, 0, 2, 3>} : tensor<2x4x2x3xf32> -> tensor<4x2x2x3xf32>
    %2 = soma.reshape %1 {shape = array<i64: 1, 4, 12>} : tensor<4x2x2x3xf32> -> tensor<1x4x12xf32>
    %3 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 3, 3>} : tensor<2x3x5x7xf32> -> tensor<27x12xf32>
    %4 = soma.reshape %3 {shape = array<i64: 1, 27, 12>} : tensor<27x12xf32> -> tensor<1x27x12xf32>
    %5 = soma.matmul %2, %4 {transpose_b = true} : (tensor<1x4x12xf32>, tensor<1x27x12xf32>) -> tensor<1x4x27xf32>
    soma.yield %5 : tensor<1x4x27xf32>
  }
  return %0 : tensor<1x4x27xf32>
}

// -----

// A convolution of stride 1 whose output keeps its input's 5x7 (3x3 window,
// padding 1), one product per image with the filter broadcast, is computed
// directly: a table of window masks per chunk of 8 pixels and tap (6
// chunks: whole groups of 2 chunks, x 9 taps); per image, group of 16
// pixels and tile of 4 filters, 8 accumulators over the channels, each tap
// two masked vector loads of x read flat and four broadcast weights; the
// tile stored masked into the product, then the epilogue (the ReLU) per
// group. No GEMM, no packing, no gather.
// CHECK-LABEL: func.func @direct_conv(
//   CHECK-NOT: vector.gather
//   CHECK-NOT: func.call
//       CHECK: scf.execute_region {
//       CHECK:   %[[TABLE:.*]] = memref.alloca() {alignment = 64 : i64} : memref<54xvector<8xi1>>
//       CHECK:   scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
//       CHECK:     memref.load %[[TABLE]]
//       CHECK:     vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<210xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:     memref.load %{{.*}}[%{{.*}}] : memref<108xf32>
//       CHECK:     vector.broadcast %{{.*}} : f32 to vector<8xf32>
//       CHECK:     vector.fma
//       CHECK:   vector.maskedstore
//       CHECK:   arith.maximumf
//   CHECK-NOT: vector.gather
func.func @direct_conv(%w: tensor<4x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x5x7xf32> {soma.input = "x"}) -> (tensor<2x4x5x7xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<4x3x3x3xf32>, tensor<2x3x5x7xf32>) -> tensor<2x4x5x7xf32> {
  ^bb0(%a: tensor<4x3x3x3xf32>, %b: tensor<2x3x5x7xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 4, 27>} : tensor<4x3x3x3xf32> -> tensor<1x1x4x27xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 4, 27>} : tensor<1x1x4x27xf32> -> tensor<2x1x4x27xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 4, 27>} : tensor<2x1x4x27xf32> -> tensor<2x4x27xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 1, 1>} : tensor<2x3x5x7xf32> -> tensor<27x70xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 27, 2, 35>} : tensor<27x70xf32> -> tensor<1x27x2x35xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x35xf32> -> tensor<2x1x27x35xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 27, 35>} : tensor<2x1x27x35xf32> -> tensor<2x27x35xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x4x27xf32>, tensor<2x27x35xf32>) -> tensor<2x4x35xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 4, 5, 7>} : tensor<2x4x35xf32> -> tensor<2x4x5x7xf32>
    %10 = soma.relu %9 : tensor<2x4x5x7xf32>
    soma.yield %10 : tensor<2x4x5x7xf32>
  }
  return %0 : tensor<2x4x5x7xf32>
}

// -----

// A "valid" convolution (5x7 -> 3x5) is computed directly on a grid of 3
// rows of 7 pixels; each accumulator's lanes that are outputs (the first 5
// of each row of 7) are stored consecutively, by compressed stores, then
// the epilogue.
// CHECK-LABEL: func.func @direct_conv_valid(
//   CHECK-NOT: func.call
//       CHECK: scf.execute_region {
//       CHECK:   memref.alloca() {alignment = 64 : i64} : memref<36xvector<8xi1>>
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<210xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.fma
//       CHECK:   vector.compressstore %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}], %{{.*}}, %{{.*}} : memref<2x4x15xf32>, vector<8xi1>, vector<8xf32>
//   CHECK-NOT:   vector.maskedstore
//       CHECK:   arith.maximumf
//   CHECK-NOT: vector.gather
func.func @direct_conv_valid(%w: tensor<4x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x5x7xf32> {soma.input = "x"}) -> (tensor<2x4x3x5xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<4x3x3x3xf32>, tensor<2x3x5x7xf32>) -> tensor<2x4x3x5xf32> {
  ^bb0(%a: tensor<4x3x3x3xf32>, %b: tensor<2x3x5x7xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 4, 27>} : tensor<4x3x3x3xf32> -> tensor<1x1x4x27xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 4, 27>} : tensor<1x1x4x27xf32> -> tensor<2x1x4x27xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 4, 27>} : tensor<2x1x4x27xf32> -> tensor<2x4x27xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : tensor<2x3x5x7xf32> -> tensor<27x30xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 27, 2, 15>} : tensor<27x30xf32> -> tensor<1x27x2x15xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x15xf32> -> tensor<2x1x27x15xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 27, 15>} : tensor<2x1x27x15xf32> -> tensor<2x27x15xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x4x27xf32>, tensor<2x27x15xf32>) -> tensor<2x4x15xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 4, 3, 5>} : tensor<2x4x15xf32> -> tensor<2x4x3x5xf32>
    %10 = soma.relu %9 : tensor<2x4x3x5xf32>
    soma.yield %10 : tensor<2x4x3x5xf32>
  }
  return %0 : tensor<2x4x3x5xf32>
}

// -----

// When a group's window of x over every channel exceeds 48 KiB (96
// channels of rows of 64), the channels come in blocks of at most 32 KiB
// (here 2 of 48): all the filter tiles sweep the first block's window,
// then the second's, whose tiles start from the first's sums, read back
// from C (masked loads).
// CHECK-LABEL: func.func @direct_conv_channel_blocks(
//       CHECK: scf.execute_region {
//       CHECK:   scf.for %{{.*}} = %c0{{.*}} to %{{.*}} step %c1{{.*}} iter_args(
//       CHECK:   vector.maskedstore %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}], %{{.*}}, %{{.*}} : memref<2x4x256xf32>, vector<8xi1>, vector<8xf32>
//       CHECK:   scf.for %{{.*}} = %c48{{.*}} to %c96{{.*}} step %c48{{.*}} {
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}], %{{.*}}, %{{.*}} : memref<2x4x256xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1{{.*}} iter_args(
//       CHECK:   vector.maskedstore %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}], %{{.*}}, %{{.*}} : memref<2x4x256xf32>, vector<8xi1>, vector<8xf32>
func.func @direct_conv_channel_blocks(%w: tensor<4x96x3x3xf32> {soma.input = "w"}, %x: tensor<2x96x4x64xf32> {soma.input = "x"}) -> (tensor<2x4x4x64xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<4x96x3x3xf32>, tensor<2x96x4x64xf32>) -> tensor<2x4x4x64xf32> {
  ^bb0(%a: tensor<4x96x3x3xf32>, %b: tensor<2x96x4x64xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 4, 864>} : tensor<4x96x3x3xf32> -> tensor<1x1x4x864xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 4, 864>} : tensor<1x1x4x864xf32> -> tensor<2x1x4x864xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 4, 864>} : tensor<2x1x4x864xf32> -> tensor<2x4x864xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 1, 1>} : tensor<2x96x4x64xf32> -> tensor<864x512xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 864, 2, 256>} : tensor<864x512xf32> -> tensor<1x864x2x256xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x864x2x256xf32> -> tensor<2x1x864x256xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 864, 256>} : tensor<2x1x864x256xf32> -> tensor<2x864x256xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x4x864xf32>, tensor<2x864x256xf32>) -> tensor<2x4x256xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 4, 4, 64>} : tensor<2x4x256xf32> -> tensor<2x4x4x64xf32>
    soma.yield %9 : tensor<2x4x4x64xf32>
  }
  return %0 : tensor<2x4x4x64xf32>
}

// -----

// With 8 filters, the same "valid" convolution has its vectors along the
// filters: the filters transposed once (32 x 8 on the stack, whole blocks
// of 8), each tile
// of output pixels (here 3 x 3, then 3 x 2) sums one load of the filters
// times one broadcast point of x per pixel and tap, into a scratch of the
// image's 16 x 8 outputs, pixel-major; the image's outputs are then
// transposed into place (8 x 8 blocks by shuffles, the pixels past 15
// masked) and the epilogue runs over them.
// CHECK-LABEL: func.func @conv_along_filters(
//   CHECK-NOT: func.call
//       CHECK: scf.execute_region {
//       CHECK:   %[[WT:.*]] = memref.alloca() {alignment = 64 : i64} : memref<256xf32>
//       CHECK:   %[[T:.*]] = memref.alloca() {alignment = 64 : i64} : memref<128xf32>
//       CHECK:   vector.load %[[WT]][%{{.*}}] : memref<256xf32>, vector<8xf32>
//       CHECK:   memref.load %{{.*}}[%{{.*}}] : memref<210xf32>
//       CHECK:   vector.broadcast %{{.*}} : f32 to vector<8xf32>
//       CHECK:   vector.fma
//       CHECK:   vector.store %{{.*}}, %[[T]][%{{.*}}] : memref<128xf32>, vector<8xf32>
//       CHECK:   vector.load %[[T]][%{{.*}}] : memref<128xf32>, vector<8xf32>
// CHECK-COUNT-24:   vector.shuffle
// CHECK-COUNT-8:   vector.maskedstore %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<240xf32>, vector<8xi1>, vector<8xf32>
//       CHECK:   arith.maximumf
//   CHECK-NOT: vector.compressstore
//   CHECK-NOT: vector.maskedload
func.func @conv_along_filters(%w: tensor<8x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x5x7xf32> {soma.input = "x"}) -> (tensor<2x8x3x5xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<8x3x3x3xf32>, tensor<2x3x5x7xf32>) -> tensor<2x8x3x5xf32> {
  ^bb0(%a: tensor<8x3x3x3xf32>, %b: tensor<2x3x5x7xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 8, 27>} : tensor<8x3x3x3xf32> -> tensor<1x1x8x27xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 8, 27>} : tensor<1x1x8x27xf32> -> tensor<2x1x8x27xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 8, 27>} : tensor<2x1x8x27xf32> -> tensor<2x8x27xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : tensor<2x3x5x7xf32> -> tensor<27x30xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 27, 2, 15>} : tensor<27x30xf32> -> tensor<1x27x2x15xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x15xf32> -> tensor<2x1x27x15xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 27, 15>} : tensor<2x1x27x15xf32> -> tensor<2x27x15xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x8x27xf32>, tensor<2x27x15xf32>) -> tensor<2x8x15xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 8, 3, 5>} : tensor<2x8x15xf32> -> tensor<2x8x3x5xf32>
    %10 = soma.relu %9 : tensor<2x8x3x5xf32>
    soma.yield %10 : tensor<2x8x3x5xf32>
  }
  return %0 : tensor<2x8x3x5xf32>
}

// -----

// Padded, with 16 filters (two vectors of 8): along the filters too. Per
// unit, a band's outputs (T: 4 rows of 7 pixels, whole blocks, x 16
// filters) and its rows of x copied between zeros (xP: 3 channels x 6
// rows x 16, the row pitch 7 + 2 rounded up to whole vectors): each row a
// masked load of x (the lanes inside the image) stored whole. Tiles of 2
// filter vectors x 2 rows x 2 columns (16 registers with AVX2), the
// kernel row's 3 taps unrolled: each point of xP broadcast once for the
// taps that read it. The band's outputs are transposed into place.
// CHECK-LABEL: func.func @conv_along_filters_padded(
//       CHECK: scf.execute_region {
//       CHECK:   memref.alloca() {alignment = 64 : i64} : memref<512xf32>
//       CHECK:   %[[T:.*]] = memref.alloca() {alignment = 64 : i64} : memref<512xf32>
//       CHECK:   %[[XP:.*]] = memref.alloca() {alignment = 64 : i64} : memref<288xf32>
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<210xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.store %{{.*}}, %[[XP]][%{{.*}}] : memref<288xf32>, vector<8xf32>
//       CHECK:   scf.for {{.*}} iter_args(
//       CHECK:     scf.for {{.*}} iter_args(
// CHECK-COUNT-2:     vector.load %{{.*}}[%{{.*}}] : memref<512xf32>, vector<8xf32>
//       CHECK:       memref.load %[[XP]][%{{.*}}] : memref<288xf32>
//       CHECK:       vector.fma
//       CHECK:   vector.store %{{.*}}, %[[T]][%{{.*}}] : memref<512xf32>, vector<8xf32>
//       CHECK:   vector.shuffle
//       CHECK:   vector.maskedstore
//   CHECK-NOT: vector.compressstore
func.func @conv_along_filters_padded(%w: tensor<16x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x5x7xf32> {soma.input = "x"}) -> (tensor<2x16x5x7xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<16x3x3x3xf32>, tensor<2x3x5x7xf32>) -> tensor<2x16x35xf32> {
  ^bb0(%a: tensor<16x3x3x3xf32>, %b: tensor<2x3x5x7xf32>):
    %2 = soma.reshape %a {shape = array<i64: 1, 1, 16, 27>} : tensor<16x3x3x3xf32> -> tensor<1x1x16x27xf32>
    %3 = soma.broadcast_to %2 {shape = array<i64: 2, 1, 16, 27>} : tensor<1x1x16x27xf32> -> tensor<2x1x16x27xf32>
    %4 = soma.reshape %3 {shape = array<i64: 2, 16, 27>} : tensor<2x1x16x27xf32> -> tensor<2x16x27xf32>
    %5 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 1, 1>} : tensor<2x3x5x7xf32> -> tensor<27x70xf32>
    %6 = soma.reshape %5 {shape = array<i64: 1, 27, 2, 35>} : tensor<27x70xf32> -> tensor<1x27x2x35xf32>
    %7 = soma.transpose %6 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x35xf32> -> tensor<2x1x27x35xf32>
    %8 = soma.reshape %7 {shape = array<i64: 2, 27, 35>} : tensor<2x1x27x35xf32> -> tensor<2x27x35xf32>
    %9 = soma.matmul %4, %8 : (tensor<2x16x27xf32>, tensor<2x27x35xf32>) -> tensor<2x16x35xf32>
    soma.yield %9 : tensor<2x16x35xf32>
  }
  %1 = soma.reshape %0 {shape = array<i64: 2, 16, 5, 7>} : tensor<2x16x35xf32> -> tensor<2x16x5x7xf32>
  return %1 : tensor<2x16x5x7xf32>
}

// -----

// A 1 x 1 convolution with 8 filters fills its grid (OW = W) as well as
// the filters would fill their vectors: it stays on the grid (a mask
// table, masked loads of x, no transposition), which measured faster.
// CHECK-LABEL: func.func @conv_1x1_stays_on_grid(
//       CHECK: scf.execute_region {
//       CHECK:   memref.alloca() {alignment = 64 : i64} : memref<{{[0-9]+}}xvector<8xi1>>
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<120xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//   CHECK-NOT: vector.shuffle
func.func @conv_1x1_stays_on_grid(%w: tensor<8x3x1x1xf32> {soma.input = "w"}, %x: tensor<2x3x4x5xf32> {soma.input = "x"}) -> (tensor<2x8x4x5xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<8x3x1x1xf32>, tensor<2x3x4x5xf32>) -> tensor<2x8x4x5xf32> {
  ^bb0(%a: tensor<8x3x1x1xf32>, %b: tensor<2x3x4x5xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 8, 3>} : tensor<8x3x1x1xf32> -> tensor<1x1x8x3xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 8, 3>} : tensor<1x1x8x3xf32> -> tensor<2x1x8x3xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 8, 3>} : tensor<2x1x8x3xf32> -> tensor<2x8x3xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>} : tensor<2x3x4x5xf32> -> tensor<3x40xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 3, 2, 20>} : tensor<3x40xf32> -> tensor<1x3x2x20xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x3x2x20xf32> -> tensor<2x1x3x20xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 3, 20>} : tensor<2x1x3x20xf32> -> tensor<2x3x20xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x8x3xf32>, tensor<2x3x20xf32>) -> tensor<2x8x20xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 8, 4, 5>} : tensor<2x8x20xf32> -> tensor<2x8x4x5xf32>
    soma.yield %9 : tensor<2x8x4x5xf32>
  }
  return %0 : tensor<2x8x4x5xf32>
}

// -----

// Stride 2 with 16 filters (two vectors of 8): along the filters too, on
// x's rows copied between zeros. A band of 2 output rows reads 5 rows of x
// (2 (2 - 1) + 3), copied at a pitch of 24 (the 17 points a row of 8
// outputs reads, whole vectors): xP holds 3 channels x 5 x 24. Tiles of 2
// filter vectors x 2 rows x 2 columns; no mask table, no shuffle of x (the
// shuffles transpose the outputs, 2 rows of 8: whole blocks, stored
// whole).
// CHECK-LABEL: func.func @conv_along_filters_stride2(
//   CHECK-NOT: xvector<8xi1>>
//       CHECK: scf.execute_region {
//       CHECK:   memref.alloca() {alignment = 64 : i64} : memref<512xf32>
//       CHECK:   %[[T:.*]] = memref.alloca() {alignment = 64 : i64} : memref<256xf32>
//       CHECK:   %[[XP:.*]] = memref.alloca() {alignment = 64 : i64} : memref<360xf32>
//   CHECK-NOT:   xvector<8xi1>>
//       CHECK:   vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<480xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.store %{{.*}}, %[[XP]][%{{.*}}] : memref<360xf32>, vector<8xf32>
//       CHECK:   scf.for {{.*}} iter_args(
//       CHECK:     scf.for {{.*}} iter_args(
// CHECK-COUNT-2:     vector.load %{{.*}}[%{{.*}}] : memref<512xf32>, vector<8xf32>
//       CHECK:       memref.load %[[XP]][%{{.*}}] : memref<360xf32>
//       CHECK:       vector.fma
//       CHECK:   vector.store %{{.*}}, %[[T]][%{{.*}}] : memref<256xf32>, vector<8xf32>
//       CHECK:   vector.shuffle
//       CHECK:   vector.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<768xf32>, vector<8xf32>
//   CHECK-NOT: xvector<8xi1>>
func.func @conv_along_filters_stride2(%w: tensor<16x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x5x16xf32> {soma.input = "x"}) -> (tensor<2x16x3x8xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<16x3x3x3xf32>, tensor<2x3x5x16xf32>) -> tensor<2x16x24xf32> {
  ^bb0(%a: tensor<16x3x3x3xf32>, %b: tensor<2x3x5x16xf32>):
    %2 = soma.reshape %a {shape = array<i64: 1, 1, 16, 27>} : tensor<16x3x3x3xf32> -> tensor<1x1x16x27xf32>
    %3 = soma.broadcast_to %2 {shape = array<i64: 2, 1, 16, 27>} : tensor<1x1x16x27xf32> -> tensor<2x1x16x27xf32>
    %4 = soma.reshape %3 {shape = array<i64: 2, 16, 27>} : tensor<2x1x16x27xf32> -> tensor<2x16x27xf32>
    %5 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 2, 2>} : tensor<2x3x5x16xf32> -> tensor<27x48xf32>
    %6 = soma.reshape %5 {shape = array<i64: 1, 27, 2, 24>} : tensor<27x48xf32> -> tensor<1x27x2x24xf32>
    %7 = soma.transpose %6 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x24xf32> -> tensor<2x1x27x24xf32>
    %8 = soma.reshape %7 {shape = array<i64: 2, 27, 24>} : tensor<2x1x27x24xf32> -> tensor<2x27x24xf32>
    %9 = soma.matmul %4, %8 : (tensor<2x16x27xf32>, tensor<2x27x24xf32>) -> tensor<2x16x24xf32>
    soma.yield %9 : tensor<2x16x24xf32>
  }
  %1 = soma.reshape %0 {shape = array<i64: 2, 16, 3, 8>} : tensor<2x16x24xf32> -> tensor<2x16x3x8xf32>
  return %1 : tensor<2x16x3x8xf32>
}

// -----

// Fewer filters (3) than lanes (8) and a vector of channels, with an
// output wider than the input (no grid): vectors along the channels. The
// filters transposed channels-last (3 x 9 taps x 8), the image's rows
// channels-last between their padding columns (4 rows x 9 x 8), tiles of
// 3 filters x 2 columns: the window rows inside the image as a loop, then
// the channel vectors, the taps unrolled; the first tile (columns 0 and
// 1, padding 2) has only its 3 taps inside the image (9 FMAs), the next
// (columns 2 and 3) all 6 (18), then 5 (15) and 1 (3: column 6 reads
// only image column 4); the lanes summed by a tree of shuffles,
// 2 outputs of each filter stored masked.
// CHECK-LABEL: func.func @conv_along_channels(
//   CHECK-NOT: xvector<8xi1>>
//       CHECK: scf.execute_region {
//       CHECK:   %[[WC:.*]] = memref.alloca() {alignment = 64 : i64} : memref<216xf32>
//       CHECK:   %[[XC:.*]] = memref.alloca() {alignment = 64 : i64} : memref<288xf32>
//       CHECK:   scf.for {{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
//       CHECK:     scf.for {{.*}} iter_args(
//       CHECK:       vector.load %[[WC]][%{{.*}}] : memref<216xf32>, vector<8xf32>
//       CHECK:       vector.load %[[XC]][%{{.*}}] : memref<288xf32>, vector<8xf32>
// CHECK-COUNT-9:     vector.fma
//   CHECK-NOT:       vector.fma
//       CHECK:       scf.yield
//       CHECK:   vector.shuffle
//       CHECK:   arith.addf
//       CHECK:   %[[TWO:.*]] = vector.create_mask %c2{{.*}} : vector<8xi1>
//       CHECK:   vector.maskedstore %{{.*}}[%{{.*}}], %[[TWO]], %{{.*}} : memref<252xf32>, vector<8xi1>, vector<8xf32>
//       CHECK:   scf.for {{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
//       CHECK:     scf.for {{.*}} iter_args(
// CHECK-COUNT-18:    vector.fma
//   CHECK-NOT:       vector.fma
//       CHECK:       scf.yield
//       CHECK:     scf.for {{.*}} iter_args(
// CHECK-COUNT-15:    vector.fma
//   CHECK-NOT:       vector.fma
//       CHECK:       scf.yield
//       CHECK:     scf.for {{.*}} iter_args(
//  CHECK-COUNT-3:    vector.fma
//   CHECK-NOT:       vector.fma
//       CHECK:       scf.yield
func.func @conv_along_channels(%w: tensor<3x8x3x3xf32> {soma.input = "w"}, %x: tensor<2x8x4x5xf32> {soma.input = "x"}) -> (tensor<2x3x6x7xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<3x8x3x3xf32>, tensor<2x8x4x5xf32>) -> tensor<2x3x42xf32> {
  ^bb0(%a: tensor<3x8x3x3xf32>, %b: tensor<2x8x4x5xf32>):
    %2 = soma.reshape %a {shape = array<i64: 1, 1, 3, 72>} : tensor<3x8x3x3xf32> -> tensor<1x1x3x72xf32>
    %3 = soma.broadcast_to %2 {shape = array<i64: 2, 1, 3, 72>} : tensor<1x1x3x72xf32> -> tensor<2x1x3x72xf32>
    %4 = soma.reshape %3 {shape = array<i64: 2, 3, 72>} : tensor<2x1x3x72xf32> -> tensor<2x3x72xf32>
    %5 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 2, 2, 2, 2>, stride = array<i64: 1, 1>} : tensor<2x8x4x5xf32> -> tensor<72x84xf32>
    %6 = soma.reshape %5 {shape = array<i64: 1, 72, 2, 42>} : tensor<72x84xf32> -> tensor<1x72x2x42xf32>
    %7 = soma.transpose %6 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x72x2x42xf32> -> tensor<2x1x72x42xf32>
    %8 = soma.reshape %7 {shape = array<i64: 2, 72, 42>} : tensor<2x1x72x42xf32> -> tensor<2x72x42xf32>
    %9 = soma.matmul %4, %8 : (tensor<2x3x72xf32>, tensor<2x72x42xf32>) -> tensor<2x3x42xf32>
    soma.yield %9 : tensor<2x3x42xf32>
  }
  %1 = soma.reshape %0 {shape = array<i64: 2, 3, 6, 7>} : tensor<2x3x42xf32> -> tensor<2x3x6x7xf32>
  return %1 : tensor<2x3x6x7xf32>
}

// -----

// A 1 x 1 convolution of stride 2 stays on the grid even with 16 filters
// (measured faster there): a mask table with two masks per chunk and
// tap, two masked loads of x and a shuffle of their even elements.
// CHECK-LABEL: func.func @conv_1x1_stride2_stays_on_grid(
//       CHECK: scf.execute_region {
//       CHECK:   memref.alloca() {alignment = 64 : i64} : memref<{{[0-9]+}}xvector<8xi1>>
//       CHECK:   vector.maskedload
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [0, 2, 4, 6, 8, 10, 12, 14] : vector<8xf32>, vector<8xf32>
func.func @conv_1x1_stride2_stays_on_grid(%w: tensor<16x3x1x1xf32> {soma.input = "w"}, %x: tensor<2x3x4x16xf32> {soma.input = "x"}) -> (tensor<2x16x2x8xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<16x3x1x1xf32>, tensor<2x3x4x16xf32>) -> tensor<2x16x16xf32> {
  ^bb0(%a: tensor<16x3x1x1xf32>, %b: tensor<2x3x4x16xf32>):
    %2 = soma.reshape %a {shape = array<i64: 1, 1, 16, 3>} : tensor<16x3x1x1xf32> -> tensor<1x1x16x3xf32>
    %3 = soma.broadcast_to %2 {shape = array<i64: 2, 1, 16, 3>} : tensor<1x1x16x3xf32> -> tensor<2x1x16x3xf32>
    %4 = soma.reshape %3 {shape = array<i64: 2, 16, 3>} : tensor<2x1x16x3xf32> -> tensor<2x16x3xf32>
    %5 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, stride = array<i64: 2, 2>} : tensor<2x3x4x16xf32> -> tensor<3x32xf32>
    %6 = soma.reshape %5 {shape = array<i64: 1, 3, 2, 16>} : tensor<3x32xf32> -> tensor<1x3x2x16xf32>
    %7 = soma.transpose %6 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x3x2x16xf32> -> tensor<2x1x3x16xf32>
    %8 = soma.reshape %7 {shape = array<i64: 2, 3, 16>} : tensor<2x1x3x16xf32> -> tensor<2x3x16xf32>
    %9 = soma.matmul %4, %8 : (tensor<2x16x3xf32>, tensor<2x3x16xf32>) -> tensor<2x16x16xf32>
    soma.yield %9 : tensor<2x16x16xf32>
  }
  %1 = soma.reshape %0 {shape = array<i64: 2, 16, 2, 8>} : tensor<2x16x16xf32> -> tensor<2x16x2x8xf32>
  return %1 : tensor<2x16x2x8xf32>
}

// -----

// col2im without dilation gathers: per (image, channel) plane, chunk of 8
// columns and row, the window rows u that reach the row, and per u the
// kw = 3 terms as masked loads of the columns at consecutive offsets
// (masks computed once per chunk), summed in a vector and stored masked.
// CHECK-LABEL: func.func @col2im_stride1(
//       CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} {
//       CHECK:   scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} {
//       CHECK:     scf.for
//       CHECK:       scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %{{.*}}) -> (vector<8xf32>) {
// CHECK-COUNT-3:       vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<810xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:       vector.maskedstore %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<210xf32>, vector<8xi1>, vector<8xf32>
//       CHECK:   } {soma.no_unroll}
//       CHECK: } {soma.parallel_work = 1890 : i64}
//   CHECK-NOT: memref.store
func.func @col2im_stride1(%cols: tensor<27x30xf32> {soma.input = "cols"}) -> (tensor<2x3x5x7xf32> {soma.output = "x"}) {
  %0 = soma.col2im %cols {image_shape = array<i64: 2, 3, 5, 7>, kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>, dilation = array<i64: 1, 1>} : tensor<27x30xf32> -> tensor<2x3x5x7xf32>
  return %0 : tensor<2x3x5x7xf32>
}

// -----

// With stride 2, a row h takes the window rows u with h + pt - u even (a
// loop by 2 from the first), and the lanes of tap v with w + pl - v even:
// every other lane, whose terms are consecutive columns, read by an
// expanding load from the first such lane's column.
// CHECK-LABEL: func.func @col2im_stride2(
//       CHECK: arith.remui %{{.*}}, %{{.*}} : vector<8xi32>
//       CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c2{{.*}} iter_args(%{{.*}} = %{{.*}}) -> (vector<8xf32>) {
// CHECK-COUNT-3: vector.expandload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<216xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK: vector.maskedstore %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<70xf32>, vector<8xi1>, vector<8xf32>
//   CHECK-NOT: memref.store
func.func @col2im_stride2(%cols: tensor<18x12xf32> {soma.input = "cols"}) -> (tensor<1x2x5x7xf32> {soma.output = "x"}) {
  %0 = soma.col2im %cols {image_shape = array<i64: 1, 2, 5, 7>, kernel = array<i64: 3, 3>, stride = array<i64: 2, 2>, padding = array<i64: 1, 1, 1, 1>, dilation = array<i64: 1, 1>} : tensor<18x12xf32> -> tensor<1x2x5x7xf32>
  return %0 : tensor<1x2x5x7xf32>
}

// -----

// A stride-2 convolution whose output rows (8) are a multiple of half a
// vector is computed directly too: the mask table holds two masks per
// chunk and tap, each lane's mask moved to its even element; each half
// chunk of 4 pixels is the even elements of 8 consecutive ones of x, so a
// chunk is two masked loads and a shuffle of the even elements. (The table:
// the image's 3 chunks of 8 pixels, one per group of the 4 x 1 tile, x 9
// taps x 2 halves.)
// CHECK-LABEL: func.func @direct_conv_stride2(
//   CHECK-NOT: func.call
//       CHECK: memref.alloca() {alignment = 64 : i64} : memref<54xvector<8xi1>>
//       CHECK: vector.shuffle %{{.*}}, %{{.*}} [0, 8, 1, 8, 2, 8, 3, 8] : vector<8xi1>, vector<8xi1>
//       CHECK: vector.shuffle %{{.*}}, %{{.*}} [4, 8, 5, 8, 6, 8, 7, 8] : vector<8xi1>, vector<8xi1>
//       CHECK: %[[LO:.*]] = vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<480xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK: %[[HI:.*]] = vector.maskedload %{{.*}}[%{{.*}}], %{{.*}}, %{{.*}} : memref<480xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK: vector.shuffle %[[LO]], %[[HI]] [0, 2, 4, 6, 8, 10, 12, 14] : vector<8xf32>, vector<8xf32>
//       CHECK: vector.fma
//       CHECK: vector.maskedstore
//   CHECK-NOT: vector.gather
func.func @direct_conv_stride2(%w: tensor<4x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x5x16xf32> {soma.input = "x"}) -> (tensor<2x4x3x8xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<4x3x3x3xf32>, tensor<2x3x5x16xf32>) -> tensor<2x4x3x8xf32> {
  ^bb0(%a: tensor<4x3x3x3xf32>, %b: tensor<2x3x5x16xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 4, 27>} : tensor<4x3x3x3xf32> -> tensor<1x1x4x27xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 4, 27>} : tensor<1x1x4x27xf32> -> tensor<2x1x4x27xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 4, 27>} : tensor<2x1x4x27xf32> -> tensor<2x4x27xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 2, 2>} : tensor<2x3x5x16xf32> -> tensor<27x48xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 27, 2, 24>} : tensor<27x48xf32> -> tensor<1x27x2x24xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x24xf32> -> tensor<2x1x27x24xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 27, 24>} : tensor<2x1x27x24xf32> -> tensor<2x27x24xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x4x27xf32>, tensor<2x27x24xf32>) -> tensor<2x4x24xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 4, 3, 8>} : tensor<2x4x24xf32> -> tensor<2x4x3x8xf32>
    soma.yield %9 : tensor<2x4x3x8xf32>
  }
  return %0 : tensor<2x4x3x8xf32>
}

// -----

// Output rows of 5 pixels (stride 2 over a width of 9) are not a multiple
// of half a vector: that convolution keeps the GEMM, whose columns' packing
// loads 8 lanes at consecutive offsets as one masked vector load, lanes two apart (all
// of them: `vector.reduction <and>` of the comparison with first + 2 * lane)
// as two masked loads of 8 elements each, each lane's mask moved to its
// even element, and a shuffle of the even elements; other lanes by a gather.
// CHECK-LABEL: func.func @conv_stride2(
//       CHECK: vector.reduction <and>, %{{.*}} : vector<8xi1> into i1
//       CHECK: %[[M0:.*]] = vector.shuffle %[[M:.*]], %{{.*}} [0, 9, 1, 11, 2, 13, 3, 15] : vector<8xi1>, vector<8xi1>
//       CHECK: %[[M1:.*]] = vector.shuffle %[[M]], %{{.*}} [4, 9, 5, 11, 6, 13, 7, 15] : vector<8xi1>, vector<8xi1>
//       CHECK: %[[V0:.*]] = vector.maskedload %{{.*}}[%{{.*}}], %[[M0]], %{{.*}} : memref<270xf32>
//       CHECK: %[[V1:.*]] = vector.maskedload %{{.*}}[%{{.*}}], %[[M1]], %{{.*}} : memref<270xf32>
//       CHECK: vector.shuffle %[[V0]], %[[V1]] [0, 2, 4, 6, 8, 10, 12, 14] : vector<8xf32>, vector<8xf32>
//       CHECK: vector.gather
func.func @conv_stride2(%w: tensor<4x3x3x3xf32> {soma.input = "w"}, %x: tensor<2x3x5x9xf32> {soma.input = "x"}) -> (tensor<2x4x3x5xf32> {soma.output = "y"}) {
  %0 = soma.fusion "contraction"(%w, %x) : (tensor<4x3x3x3xf32>, tensor<2x3x5x9xf32>) -> tensor<2x4x3x5xf32> {
  ^bb0(%a: tensor<4x3x3x3xf32>, %b: tensor<2x3x5x9xf32>):
    %1 = soma.reshape %a {shape = array<i64: 1, 1, 4, 27>} : tensor<4x3x3x3xf32> -> tensor<1x1x4x27xf32>
    %2 = soma.broadcast_to %1 {shape = array<i64: 2, 1, 4, 27>} : tensor<1x1x4x27xf32> -> tensor<2x1x4x27xf32>
    %3 = soma.reshape %2 {shape = array<i64: 2, 4, 27>} : tensor<2x1x4x27xf32> -> tensor<2x4x27xf32>
    %4 = soma.im2col %b {dilation = array<i64: 1, 1>, kernel = array<i64: 3, 3>, padding = array<i64: 1, 1, 1, 1>, stride = array<i64: 2, 2>} : tensor<2x3x5x9xf32> -> tensor<27x30xf32>
    %5 = soma.reshape %4 {shape = array<i64: 1, 27, 2, 15>} : tensor<27x30xf32> -> tensor<1x27x2x15xf32>
    %6 = soma.transpose %5 {perm = array<i64: 2, 0, 1, 3>} : tensor<1x27x2x15xf32> -> tensor<2x1x27x15xf32>
    %7 = soma.reshape %6 {shape = array<i64: 2, 27, 15>} : tensor<2x1x27x15xf32> -> tensor<2x27x15xf32>
    %8 = soma.matmul %3, %7 : (tensor<2x4x27xf32>, tensor<2x27x15xf32>) -> tensor<2x4x15xf32>
    %9 = soma.reshape %8 {shape = array<i64: 2, 4, 3, 5>} : tensor<2x4x15xf32> -> tensor<2x4x3x5xf32>
    soma.yield %9 : tensor<2x4x3x5xf32>
  }
  return %0 : tensor<2x4x3x5xf32>
}

// -----

// A small product over a long K (7 x 33 over K = 80000: above the grain,
// but a single block of C, fewer units than the threads need) splits K:
// eight parts of 10240 (whole blocks of K), each unit one part, writing its
// product into a temporary [8, 7, 33] (placed in the workspace by
// soma-plan-memory); then C is the sum of the parts in order, the same for
// any number of threads, over units of rows (here 7 units of one row; their
// loop carries 7 x 33 x 8 = 1848 points of work, below the grain), each
// point's eight parts loaded and added in part order.
// CHECK-LABEL: func.func @split_k(
//       CHECK: %[[P:.*]] = memref.alloc() {alignment = 64 : i64} : memref<8x7x33xf32>
//       CHECK: scf.execute_region {
//       CHECK:   scf.for %[[T:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:     arith.divui %[[T]]
//       CHECK:     arith.remui %[[T]]
//       CHECK:   } {soma.parallel_work = 2310000 : i64}
//       CHECK:   scf.for %[[U:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:     scf.for %[[M:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:       scf.for %[[N:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:         %[[X0:.*]] = memref.load %[[P]][%{{.*}}, %[[M]], %[[N]]] : memref<8x7x33xf32>
//       CHECK:         %[[X1:.*]] = memref.load %[[P]][%{{.*}}, %[[M]], %[[N]]] : memref<8x7x33xf32>
//       CHECK:         %[[S1:.*]] = arith.addf %[[X0]], %[[X1]] : f32
//       CHECK:         %[[X2:.*]] = memref.load %[[P]][%{{.*}}, %[[M]], %[[N]]] : memref<8x7x33xf32>
//       CHECK:         arith.addf %[[S1]], %[[X2]] : f32
//       CHECK:         memref.store %{{.*}}, %{{.*}}[%{{.*}}, %[[M]], %[[N]]] : memref<1x7x33xf32>
//       CHECK:   } {soma.parallel_work = 1848 : i64}
//       CHECK: } {soma.outline = "gemm"}
module @split_k {
  func.func @split_k(%a: tensor<7x80000xf32> {soma.input = "a"}, %b: tensor<80000x33xf32> {soma.input = "b"}) -> (tensor<7x33xf32> {soma.output = "c"}) {
    %0 = soma.matmul %a, %b : (tensor<7x80000xf32>, tensor<80000x33xf32>) -> tensor<7x33xf32>
    return %0 : tensor<7x33xf32>
  }
}

// -----

// softmax is in-place-able (InPlaceOpInterface): it takes the row maximum
// before it writes the row, so it computes its result over the dying
// exponential. Rows of 20: two full vectors in a loop, then a masked one
// of 4; the exponentials are stored, then multiplied by 1 / s from cache.
// CHECK-LABEL: func.func @softmax_in_place
//       CHECK: %[[T:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4x20xf32>
//       CHECK: outs(%[[T]] : memref<4x20xf32>)
//       CHECK:   math.exp
//   CHECK-NOT: memref.alloc
//       CHECK: %[[TF:.*]] = memref.collapse_shape %[[T]]
//       CHECK: %[[OF:.*]] = memref.collapse_shape %[[T]]
//       CHECK: scf.for
//       CHECK:   scf.for {{.*}} iter_args
//       CHECK:     vector.load %[[TF]]
//       CHECK:   vector.reduction <maxnumf>
//       CHECK:   scf.for {{.*}} iter_args
//       CHECK:     vector.load %[[TF]]
//       CHECK:     math.exp
//       CHECK:     vector.store %{{.*}}, %[[OF]]
//       CHECK:   vector.maskedstore %[[OF]]
//       CHECK:   %[[S:.*]] = vector.reduction <add>
//       CHECK:   arith.divf %{{.*}}, %[[S]] : f32
//       CHECK:   scf.for
//       CHECK:     vector.load %[[OF]]
//       CHECK:     arith.mulf
//       CHECK:     vector.store %{{.*}}, %[[OF]]
//       CHECK:   vector.maskedload %[[OF]]
//       CHECK:   vector.maskedstore %[[OF]]
//       CHECK: } {soma.parallel_work = 640 : i64}
//   CHECK-NOT: memref.alloc
//       CHECK: ins(%[[T]] : memref<4x20xf32>) outs(%{{.*}} : memref<4x20xf32>)
//       CHECK:   arith.negf
//       CHECK: return
func.func @softmax_in_place(%x: tensor<4x20xf32> {soma.input = "x"}) -> (tensor<4x20xf32> {soma.output = "y"}) {
  %0 = soma.exp %x : tensor<4x20xf32>
  %1 = soma.softmax %0 {axis = 1 : i64} : tensor<4x20xf32>
  %2 = soma.neg %1 : tensor<4x20xf32>
  return %2 : tensor<4x20xf32>
}

// -----

// The gradients of softmax and log-softmax along the last axis are row
// kernels too: the sum of g y (an fma per vector) or of g, then the
// result from cache. Along another axis: a reduction and an elementwise
// kernel.
// CHECK-LABEL: func.func @softmax_grads
//       CHECK: scf.for
//       CHECK:   scf.for {{.*}} iter_args
//       CHECK:     math.fma
//       CHECK:   vector.reduction <add>
//       CHECK:   scf.for
//       CHECK:     arith.subf
//       CHECK:     arith.mulf
//       CHECK:     vector.store
//       CHECK: } {soma.parallel_work = 320 : i64}
//       CHECK: scf.for
//       CHECK:   scf.for {{.*}} iter_args
//   CHECK-NOT:     math.fma
//       CHECK:     arith.addf
//       CHECK:   vector.reduction <add>
//       CHECK:   scf.for
//       CHECK:     math.exp
//       CHECK:     arith.mulf
//       CHECK:     arith.subf
//       CHECK:     vector.store
//       CHECK: } {soma.parallel_work = 746 : i64}
//       CHECK: %[[S:.*]] = memref.alloc() {alignment = 64 : i64} : memref<1x20xf32>
//       CHECK: linalg.generic
//  CHECK-SAME: iterator_types = ["parallel", "reduction"]
//  CHECK-SAME: outs(%[[S]] : memref<1x20xf32>)
//       CHECK:   arith.mulf
//       CHECK:   arith.addf
//       CHECK: linalg.generic
//  CHECK-SAME: ins(%{{.*}}, %{{.*}}, %[[S]] : memref<4x20xf32>, memref<4x20xf32>, memref<1x20xf32>)
//       CHECK:   arith.subf
//       CHECK:   arith.mulf
func.func @softmax_grads(%y: tensor<4x20xf32> {soma.input = "y"}, %g: tensor<4x20xf32> {soma.input = "g"})
    -> (tensor<4x20xf32> {soma.output = "a"}, tensor<4x20xf32> {soma.output = "b"}, tensor<4x20xf32> {soma.output = "c"}) {
  %0 = soma.softmax_grad %y, %g {axis = 1} : tensor<4x20xf32>, tensor<4x20xf32>
  %1 = soma.log_softmax_grad %y, %g {axis = 1} : tensor<4x20xf32>, tensor<4x20xf32>
  %2 = soma.softmax_grad %y, %g {axis = 0} : tensor<4x20xf32>, tensor<4x20xf32>
  return %0, %1, %2 : tensor<4x20xf32>, tensor<4x20xf32>, tensor<4x20xf32>
}

// -----

// Max pooling whose windows tile the input (2 x 2 of stride 2), forward and
// gradient, as vectors: per plane, output row and chunk of 8 output
// columns, each window row is two masked loads of x split into its even
// and odd columns; the forward takes their maximum from -inf in (u, v)
// order; the gradient counts the elements equal to y, divides dy by the
// count and writes each column's share back interleaved. Neither an
// im2col nor a col2im.
// CHECK-LABEL: func.func @max_pool_tiled(
//   CHECK-NOT: linalg.
//       CHECK: scf.for
//       CHECK:   vector.maskedload %{{.*}} : memref<144xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.maskedload %{{.*}} : memref<144xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [0, 2, 4, 6, 8, 10, 12, 14]
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [1, 3, 5, 7, 9, 11, 13, 15]
//       CHECK:   %[[M0:.*]] = arith.maximumf %{{.*}}, %{{.*}} : vector<8xf32>
// CHECK-COUNT-3:   arith.maximumf
//       CHECK:   vector.maskedstore %{{.*}} : memref<36xf32>, vector<8xi1>, vector<8xf32>
//       CHECK: } {soma.parallel_work = 288 : i64}
//       CHECK: scf.for
//       CHECK:   %[[DY:.*]] = vector.maskedload %{{.*}} : memref<36xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   %[[Y:.*]] = vector.maskedload %{{.*}} : memref<36xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   arith.cmpf oeq, %{{.*}}, %[[Y]] : vector<8xf32>
// CHECK-COUNT-4:   arith.addf
//       CHECK:   %[[SHARE:.*]] = arith.divf %[[DY]], %{{.*}} : vector<8xf32>
//       CHECK:   arith.mulf %{{.*}}, %[[SHARE]] : vector<8xf32>
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [0, 8, 1, 9, 2, 10, 3, 11]
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [4, 12, 5, 13, 6, 14, 7, 15]
//       CHECK:   vector.maskedstore %{{.*}} : memref<144xf32>, vector<8xi1>, vector<8xf32>
//   CHECK-NOT: soma.col2im
//   CHECK-NOT: linalg.
func.func @max_pool_tiled(%x: tensor<2x3x4x6xf32> {soma.input = "x"}, %dy: tensor<2x3x2x3xf32> {soma.input = "dy"}) -> (tensor<2x3x2x3xf32> {soma.output = "y"}, tensor<2x3x4x6xf32> {soma.output = "dx"}) {
  %y = soma.max_pool2d %x {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>} : tensor<2x3x4x6xf32> -> tensor<2x3x2x3xf32>
  %dx = soma.max_pool2d_grad %x, %y, %dy {kernel = array<i64: 2, 2>} : (tensor<2x3x4x6xf32>, tensor<2x3x2x3xf32>, tensor<2x3x2x3xf32>) -> tensor<2x3x4x6xf32>
  return %y, %dx : tensor<2x3x2x3xf32>, tensor<2x3x4x6xf32>
}

// -----

// Average pooling whose windows tile the input, the same way: the window's
// elements summed from -0 in (u, v) order, divided by the window's size.
// CHECK-LABEL: func.func @avg_pool_tiled(
//   CHECK-NOT: linalg.
//       CHECK: scf.for
//       CHECK:   vector.maskedload %{{.*}} : memref<144xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [0, 2, 4, 6, 8, 10, 12, 14]
//       CHECK:   vector.shuffle %{{.*}}, %{{.*}} [1, 3, 5, 7, 9, 11, 13, 15]
// CHECK-COUNT-4:   arith.addf %{{.*}}, %{{.*}} : vector<8xf32>
//       CHECK:   %[[AVG:.*]] = arith.divf %{{.*}}, %{{.*}} : vector<8xf32>
//       CHECK:   vector.maskedstore %{{.*}}, %[[AVG]] : memref<36xf32>, vector<8xi1>, vector<8xf32>
//       CHECK: } {soma.parallel_work = 288 : i64}
//   CHECK-NOT: linalg.
func.func @avg_pool_tiled(%x: tensor<2x3x4x6xf32> {soma.input = "x"}) -> (tensor<2x3x2x3xf32> {soma.output = "y"}) {
  %y = soma.avg_pool2d %x {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0, 0, 0>} : tensor<2x3x4x6xf32> -> tensor<2x3x2x3xf32>
  return %y : tensor<2x3x2x3xf32>
}

// -----

// Its gradient: per chunk of dy, dy / (kh kw) duplicated into each pair of
// columns by shuffles (two vectors of dx per chunk of dy), stored on both
// rows of the windows; dx is written once and nothing else is read.
// CHECK-LABEL: func.func @avg_pool_grad(
//   CHECK-NOT: linalg.
//       CHECK: scf.for
//       CHECK:   %[[DY:.*]] = vector.maskedload %{{.*}} : memref<36xf32>, vector<8xi1>, vector<8xf32> into vector<8xf32>
//       CHECK:   %[[SHARE:.*]] = arith.divf %[[DY]], %{{.*}} : vector<8xf32>
//       CHECK:   %[[D0:.*]] = vector.shuffle %[[SHARE]], %[[SHARE]] [0, 8, 1, 9, 2, 10, 3, 11]
//       CHECK:   %[[D1:.*]] = vector.shuffle %[[SHARE]], %[[SHARE]] [4, 12, 5, 13, 6, 14, 7, 15]
//       CHECK:   vector.maskedstore %{{.*}}, %[[D0]] : memref<144xf32>, vector<8xi1>, vector<8xf32>
//       CHECK:   vector.maskedstore %{{.*}}, %[[D1]] : memref<144xf32>, vector<8xi1>, vector<8xf32>
//       CHECK:   vector.shuffle %[[SHARE]], %[[SHARE]] [0, 8, 1, 9, 2, 10, 3, 11]
//       CHECK:   vector.shuffle %[[SHARE]], %[[SHARE]] [4, 12, 5, 13, 6, 14, 7, 15]
// CHECK-COUNT-2:   vector.maskedstore %{{.*}} : memref<144xf32>, vector<8xi1>, vector<8xf32>
//   CHECK-NOT:   vector.maskedstore
//       CHECK: } {soma.parallel_work = 288 : i64}
//   CHECK-NOT: linalg.
func.func @avg_pool_grad(%dy: tensor<2x3x2x3xf32> {soma.input = "dy"}) -> (tensor<2x3x4x6xf32> {soma.output = "dx"}) {
  %dx = soma.avg_pool2d_grad %dy {kernel = array<i64: 2, 2>} : tensor<2x3x2x3xf32> -> tensor<2x3x4x6xf32>
  return %dx : tensor<2x3x4x6xf32>
}

// -----

// batch_norm_train and batch_norm_grad: one loop over the channels
// (RowKernels.cpp), each channel's N planes of H * W = 20 elements read in
// vectors (two full ones of 8 and a masked rest). Forward: the sum, the
// squared deviations (an fma per vector), mean and var stored, then y;
// gradient: the sums of dy and of dy (x - mean) in one pass, dshift and
// dscale stored, then dx.
// CHECK-LABEL: func.func @bn_train(
//       CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:   scf.for {{.*}} iter_args
//       CHECK:     scf.for {{.*}} iter_args
//       CHECK:   vector.reduction <add>
//       CHECK:   scf.for {{.*}} iter_args
//       CHECK:     scf.for {{.*}} iter_args
//       CHECK:       math.fma
//       CHECK:   vector.reduction <add>
//       CHECK:   memref.store %{{.*}}, %{{.*}}[%[[C]]] : memref<3xf32>
//       CHECK:   memref.store %{{.*}}, %{{.*}}[%[[C]]] : memref<3xf32>
//       CHECK:   math.sqrt
//       CHECK:   scf.for
//       CHECK:     scf.for
//       CHECK:       vector.store
//       CHECK:     vector.maskedstore
//       CHECK: } {soma.parallel_work = 640 : i64}
func.func @bn_train(%x: tensor<2x3x4x5xf32> {soma.input = "x"}, %g: tensor<3xf32> {soma.input = "g"}, %b: tensor<3xf32> {soma.input = "b"}) -> (tensor<2x3x4x5xf32> {soma.output = "y"}, tensor<3xf32> {soma.output = "m"}, tensor<3xf32> {soma.output = "v"}) {
  %y, %m, %v = soma.batch_norm_train %x, %g, %b {eps = 1.0e-5 : f64} : (tensor<2x3x4x5xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4x5xf32>, tensor<3xf32>, tensor<3xf32>)
  return %y, %m, %v : tensor<2x3x4x5xf32>, tensor<3xf32>, tensor<3xf32>
}

// -----

// CHECK-LABEL: func.func @bn_grad(
//       CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step
//       CHECK:   scf.for {{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (vector<8xf32>, vector<8xf32>)
//       CHECK:     math.fma
//       CHECK:   vector.reduction <add>
//       CHECK:   vector.reduction <add>
//       CHECK:   memref.store %{{.*}}, %{{.*}}[%[[C]]] : memref<3xf32>
//       CHECK:   memref.store %{{.*}}, %{{.*}}[%[[C]]] : memref<3xf32>
//       CHECK:   scf.for
//       CHECK:     scf.for
//       CHECK:       vector.store
//       CHECK:     vector.maskedstore
//       CHECK: } {soma.parallel_work = 800 : i64}
func.func @bn_grad(%x: tensor<2x3x4x5xf32> {soma.input = "x"}, %dy: tensor<2x3x4x5xf32> {soma.input = "dy"}, %m: tensor<3xf32> {soma.input = "m"}, %v: tensor<3xf32> {soma.input = "v"}, %g: tensor<3xf32> {soma.input = "g"}) -> (tensor<2x3x4x5xf32> {soma.output = "dx"}, tensor<3xf32> {soma.output = "dg"}, tensor<3xf32> {soma.output = "db"}) {
  %dx, %dg, %db = soma.batch_norm_grad %x, %dy, %m, %v, %g {eps = 1.0e-5 : f64} : (tensor<2x3x4x5xf32>, tensor<2x3x4x5xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4x5xf32>, tensor<3xf32>, tensor<3xf32>)
  return %dx, %dg, %db : tensor<2x3x4x5xf32>, tensor<3xf32>, tensor<3xf32>
}

// -----

// When the output was split off into elementwise ops (soma-decompose), the
// kernel computes the statistics only: no vector store.
// CHECK-LABEL: func.func @bn_stats(
//       CHECK: scf.for
//   CHECK-NOT:   vector.store
//   CHECK-NOT:   vector.maskedstore
//       CHECK: } {soma.parallel_work = 320 : i64}
func.func @bn_stats(%x: tensor<2x3x4x5xf32> {soma.input = "x"}, %g: tensor<3xf32> {soma.input = "g"}, %b: tensor<3xf32> {soma.input = "b"}) -> (tensor<3xf32> {soma.output = "m"}, tensor<3xf32> {soma.output = "v"}) {
  %y, %m, %v = soma.batch_norm_train %x, %g, %b {eps = 1.0e-5 : f64} : (tensor<2x3x4x5xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4x5xf32>, tensor<3xf32>, tensor<3xf32>)
  return %m, %v : tensor<3xf32>, tensor<3xf32>
}
