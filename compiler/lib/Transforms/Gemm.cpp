//===- Gemm.cpp - The packed, register-blocked GEMM loop nest -------------===//
//
// C[b] = op(A[b]) x op(B[b]) as the loop nest of BLIS / GotoBLAS, written
// directly in scf + vector ops:
//
//   parallel over units (b, row group of GR rows, column block jc of nc):
//     for pc in K step kc:                        (kc x nc block of B in L2)
//       pack B[pc:pc+kc, jc:jc+nc] into panels of NR columns, k-major
//       for each row block ic of mc rows in the group:
//         pack A[ic:ic+mc, pc:pc+kc] into panels of MR rows, k-major
//         for each column panel q:                (kc x NR panel in L1)
//           for each row panel p:
//             MR x NR accumulators in registers (MR x NR/VL vectors),
//               from C's tile (a later block of K) or 0
//             for k < kc: acc[i] += broadcast(Ap[k][i]) * Bp[k][0:NR]
//             C tile = acc (edge tiles: through a buffer, masked)
//     epilogue(tile)                              (fused elementwise consumers)
//
// Transposed operands cost nothing: only the packing (or the tile) reads
// them another way. A stored A is not packed at all: the register tile
// reads its rows in place (rowsTileFunction), or, when they are a multiple
// of 2 KiB long, from a copy of the block's rows at a padded stride; A
// stored transposed, along K (the tile's MR rows of step k consecutive in
// A's stored row k). With such an A, a stored B read along its rows by
// units of few rows is not packed either: the tile reads its rows where
// they are (bInPlace).
// Packing pads the edges with zeros, so the micro-kernel always runs the full
// MR x NR tile; only the stores of edge tiles are masked. Each unit packs its
// own panels into stack scratch (llvm.intr.stacksave / stackrestore around
// it), so units are independent and the result
// does not depend on the number of threads (the summation order is fixed:
// k within a block, then blocks in order).
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/Lowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"


using namespace mlir;

namespace soma {

SmallVector<Value> transposeVectors(OpBuilder &b, Location loc, SmallVector<Value> rows) {
  const int64_t n = static_cast<int64_t>(rows.size());
  assert(n > 0 && (n & (n - 1)) == 0 && "the vector width is a power of two");
  for (int64_t s = n / 2; s >= 1; s /= 2) {
    SmallVector<int64_t> lo(n), hi(n);
    for (int64_t l = 0; l < n; ++l) {
      bool low = (l & s) == 0;
      lo[l] = low ? l : n + l - s; // row i: its own lane, or row i + s's lane l - s
      hi[l] = low ? l + s : n + l; // row i + s: row i's lane l + s, or its own lane
    }
    for (int64_t i = 0; i < n; ++i)
      if ((i & s) == 0) {
        Value a = rows[i], c = rows[i + s];
        rows[i] = b.create<vector::ShuffleOp>(loc, a, c, lo);
        rows[i + s] = b.create<vector::ShuffleOp>(loc, a, c, hi);
      }
  }
  return rows;
}

namespace {

/// The length a flat view of an operand claims (memref<kFlat x f32>, see
/// emitGemm): the shared functions take every operand as this one type.
constexpr int64_t kFlat = int64_t(1) << 30;

struct GemmEmitter {
  ModuleOp module; // where the shared tile function goes
  OpBuilder &b;
  Location loc;
  const GemmOperand &A, &B;
  Value C; // rank 3
  bool ta, tb;
  GemmConfig cfg;
  int64_t batch, M, N, K;
  int64_t MC, NC, KC, units, nt;
  // A unit covers GR rows (mg groups of them) of one column block:
  // B's block is packed once per unit and K block, for all its row blocks.
  int64_t GR = 0, mg = 1;
  int64_t splits = 1, KS = 0; // split K: `splits` parts of KS (a multiple of KC)
  Value partial;              // [splits * batch, M, N] partial products when split
  // C (or `partial`) flat, for the register tile to load and store its
  // block in place when the block is whole (null: always through T).
  Value cFlat, partialFlat, noFlat; // noFlat: a stand-in argument when neither applies
  Value aFlat;                // A as stored, flat, when it is not packed
  // A as stored, flat, when its rows are a multiple of 2 KiB long: each
  // unit copies a block's rows into scratch at a padded stride (aStride),
  // and the tile reads them there as it reads an unpacked A.
  Value aCopy;
  // A stored transposed (K x M), flat, when the register tile reads it
  // where it is stored: A's column k (the MR rows of a tile) is MR
  // consecutive floats of A's stored row k, as in a packed panel, at a
  // stride of M instead of MR (rowsTileFunction with alongK).
  Value aCols;
  static constexpr int64_t kRowPad = 16;
  int64_t aStride() const { return cfg.kc + kRowPad; }
  // B stored transposed, flat: the packing reads it along k (its rows
  // transposed by packAlongKFunction straight from memory).
  Value bAlongK;
  /// B as stored, read by the register tile in place of its packed panels
  /// (bInPlace()): a flat view of it, or null.
  Value bFlat;
  VectorType vec;

  Value idx(OpBuilder &nb, int64_t v) { return nb.create<arith::ConstantIndexOp>(loc, v); }
  Value add(OpBuilder &nb, Value x, Value y) { return nb.create<arith::AddIOp>(loc, x, y); }
  Value mul(OpBuilder &nb, Value x, Value y) { return nb.create<arith::MulIOp>(loc, x, y); }
  Value sub(OpBuilder &nb, Value x, Value y) { return nb.create<arith::SubIOp>(loc, x, y); }
  Value min(OpBuilder &nb, Value x, Value y) { return nb.create<arith::MinSIOp>(loc, x, y); }
  Value max(OpBuilder &nb, Value x, Value y) { return nb.create<arith::MaxSIOp>(loc, x, y); }
  Value lt(OpBuilder &nb, Value x, Value y) {
    return nb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::slt, x, y);
  }
  Value eq(OpBuilder &nb, Value x, Value y) {
    return nb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, x, y);
  }
  Value zeroF(OpBuilder &nb) { return nb.create<arith::ConstantOp>(loc, nb.getF32FloatAttr(0.0f)); }

  /// for (i = lo; i < hi; i += step) body(i)
  scf::ForOp loop(OpBuilder &nb, Value lo, Value hi, int64_t step, function_ref<void(OpBuilder &, Value)> body) {
    return nb.create<scf::ForOp>(loc, lo, hi, idx(nb, step), ValueRange{},
                                 [&](OpBuilder &lb, Location, Value i, ValueRange) {
                                   body(lb, i);
                                   lb.create<scf::YieldOp>(loc);
                                 });
  }
  /// A blocking loop: a big body, run as written (see soma-scf-to-cf).
  scf::ForOp blockLoop(OpBuilder &nb, Value lo, Value hi, int64_t step, function_ref<void(OpBuilder &, Value)> body) {
    scf::ForOp l = loop(nb, lo, hi, step, body);
    l->setAttr(kNoUnrollAttr, nb.getUnitAttr());
    return l;
  }
  void ifThen(OpBuilder &nb, Value cond, function_ref<void(OpBuilder &)> then,
              function_ref<void(OpBuilder &)> otherwise = nullptr) {
    if (otherwise)
      nb.create<scf::IfOp>(
          loc, cond,
          [&](OpBuilder &tb, Location) {
            then(tb);
            tb.create<scf::YieldOp>(loc);
          },
          [&](OpBuilder &eb, Location) {
            otherwise(eb);
            eb.create<scf::YieldOp>(loc);
          });
    else
      nb.create<scf::IfOp>(loc, cond, [&](OpBuilder &tb, Location) {
        then(tb);
        tb.create<scf::YieldOp>(loc);
      });
  }

  /// Does the register tile prefetch its block of C before adding to it?
  /// When C exceeds 1 MiB (an L2), a later block of K finds C's rows out
  /// of cache, and loading them first stalled every tile: 2048-square
  /// products 35.9 -> 35.1 ms on 2 threads, 72.0 -> 69.5 on 1; 1024-square
  /// 4.27 -> 4.22 ms (in-process A/B, min). Small products keep C in cache
  /// and start from it (64x256x784 on 2 threads was 3% slower prefetching).
  bool prefetchC() const { return batch * M * N * 4 > (int64_t(1) << 20); }

  /// The GEMM's work in the units of the parallel grain (one point of an
  /// elementwise loop): a vectorised multiply-add costs a small fraction of
  /// such a point, so a GEMM goes parallel only when it has enough of them
  /// to pay for waking the threads.
  int64_t work() const { return batch * M * N * K / cfg.macs_per_point; }

  /// The register tile reads B's rows where they are stored instead of
  /// packed panels: B stored along N (not transposed, not computed) in
  /// whole panels (N a multiple of NR, so no tile reads past a row), with
  /// A read in place too (the rows or cols tile), and few rows per unit (at
  /// most 6 row blocks): packing B (K x NC per unit) then costs much of the
  /// unit's work (GR x NC x K), and the panel's reuse, GR / MR tiles, is low
  /// enough that reading it from L2 instead of L1 costs less. Same sums,
  /// same bits. On 2 threads, one process, alternating calls, min:
  /// 64x256x784 0.0586 -> 0.0529 ms (1 thread 0.1059 -> 0.0940),
  /// 128x1024x1024 0.616 -> 0.543, 256^3 0.0680 -> 0.0645, 512^3 0.522 ->
  /// 0.515; 1024^3, with 1032 rows per unit, was 2.5% slower and keeps
  /// packing.
  bool bInPlace() const { return static_cast<bool>(bFlat); }
  /// The register tile reads A where it is stored (aFlat, aCols) or from a
  /// copy of its rows (aCopy), not from packed panels.
  bool aUnpacked() const { return aFlat || aCopy || aCols; }

  /// Element (b, i, j) of a stored operand.
  Value load(OpBuilder &nb, const GemmOperand &op, Value bIdx, Value i, Value j) {
    if (op.parts)
      return op.combine(nb, loc, op.rowPart(nb, loc, bIdx, i), op.colPart(nb, loc, bIdx, j));
    return nb.create<memref::LoadOp>(loc, op.memref, ValueRange{storedBatch(nb, op, bIdx), i, j});
  }

  /// The memref batch that batch entry bIdx of a stored operand reads.
  Value storedBatch(OpBuilder &nb, const GemmOperand &op, Value bIdx) {
    if (!op.batchModulo)
      return bIdx;
    return nb.create<arith::RemUIOp>(loc, bIdx, idx(nb, op.batchModulo));
  }

  void chooseBlocks() {
    const int64_t MR = cfg.mr, NR = cfg.nr;
    auto roundUp = [](int64_t v, int64_t m) { return (v + m - 1) / m * m; };
    // Blocks of K of (nearly) equal length, a multiple of the vector width:
    // a short last block would pay the C update and the panel setup for
    // little work (K = 784 with AVX2's kc of 256: 200, 200, 200, 184
    // rather than 256 x 3 + 16; with AVX-512's 512: 400 and 384).
    KC = std::min<int64_t>(cfg.kc, K);
    if (K > cfg.kc) {
      int64_t blocks = (K + cfg.kc - 1) / cfg.kc;
      KC = std::min(cfg.kc, roundUp((K + blocks - 1) / blocks, cfg.vl));
    }
    // Units: mg groups of GR rows times nt blocks of NC columns (per batch
    // entry and part of K). A unit packs its B block for its rows, and its
    // A blocks for its columns: A is read nt times over, B mg times.
    int64_t ntMin = (N + cfg.nc - 1) / cfg.nc;
    auto setUnits = [&](int64_t g, int64_t c) {
      GR = roundUp((M + g - 1) / g, MR);
      NC = roundUp((N + c - 1) / c, NR);
      mg = (M + GR - 1) / GR;
      nt = (N + NC - 1) / NC;
      MC = std::min(cfg.mc, GR);
      units = batch * mg * nt;
    };
    setUnits(1, ntMin);
    KS = K;
    // Split K into parts of whole K blocks, each unit a part; the parts'
    // products are summed afterwards, in order.
    auto splitK = [&] {
      if (units >= cfg.min_units || K < 2 * KC)
        return;
      int64_t want = std::min((cfg.min_units + units - 1) / units, (K + KC - 1) / KC);
      KS = roundUp((K + want - 1) / want, KC);
      splits = (K + KS - 1) / KS;
    };
    if (work() < cfg.grain)
      return;
    // A product over a K longer than its sides (a filter gradient sums
    // over every pixel of the batch) splits K first: narrower blocks
    // would pack the long operands again per block (K x the other side
    // each time), the split only adds its parts' sum (M x N each).
    if (K >= 4 * std::max(M, N))
      splitK();
    // Enough units for the threads to share, rows and columns split
    // evenly: of the splits into groups of at least 4 MR rows and blocks
    // of at least 4 NR columns, the one with the least estimated time on
    // 2, 4 and 8 threads. A thread's time is that of the units OpenMP's
    // static schedule deals it (contiguous chunks of ceil(units / T)); a
    // unit's, its tiles' multiply-adds (32 a cycle), its packing (rows +
    // columns elements per k, half a cycle each: A is packed once per
    // column block, B once per row group) and a fixed cost of the unit.
    // K is split (below) when that choice leaves too few units; then, when
    // the thread count is known (the JIT's), the split of rows and columns
    // is chosen again for it alone. The summation order depends on the
    // blocks of K and the split of K only, so the results do not depend
    // on the thread count the code was made for, nor on the one it runs on.
    int64_t mgMax = std::max<int64_t>(1, (M + 4 * MR - 1) / (4 * MR));
    int64_t ntMax = std::max(ntMin, (N + 4 * NR - 1) / (4 * NR));
    auto estimate = [&](ArrayRef<int64_t> tuning) {
      double total = 0;
      for (int64_t threads : tuning) {
        int64_t all = batch * mg * nt * splits, chunk = (all + threads - 1) / threads;
        double worst = 0, load = 0;
        for (int64_t t = 0; t < all; ++t) {
          int64_t r = t % (mg * nt);
          int64_t rows = roundUp(std::min(GR, M - (r % mg) * GR), MR);
          int64_t cols = roundUp(std::min(NC, N - (r / mg) * NC), NR);
          load += double(rows) * double(cols) * double(KS) / 32 + double(rows + cols) * double(KS) / 2 + 2000;
          if ((t + 1) % chunk == 0 || t + 1 == all)
            worst = std::max(worst, load), load = 0;
        }
        total += worst * double(threads);
      }
      return total;
    };
    auto choose = [&](ArrayRef<int64_t> tuning) {
      int64_t bestG = 1, bestC = ntMin;
      double best = INFINITY;
      for (int64_t g = 1; g <= mgMax; ++g)
        for (int64_t c = ntMin; c <= ntMax; ++c) {
          // (More than 8 units per thread would not balance them better.)
          if ((g > 1 || c > ntMin) && batch * g * c * splits > 8 * cfg.min_units)
            break;
          setUnits(g, c);
          if (mg != g || nt != c) // (the same split as a smaller g or c)
            continue;
          if (double e = estimate(tuning); e < best)
            best = e, bestG = g, bestC = c;
        }
      setUnits(bestG, bestC);
    };
    choose({2, 4, 8});
    // Still too few units: split K.
    if (splits == 1)
      splitK();
    if (cfg.threads > 0)
      choose({cfg.threads});
  }

  /// A unit's scratch for the packing: S holds the parts of each k of a
  /// block of a computed operand (index), SK the same as i32 (the path
  /// along k), SV the parts of one panel's columns (i32); T the VL x VL
  /// block that the path along k transposes.
  struct Scratch {
    Value S, SK, SV;
    Value T; // VL x VL floats: a group of columns read along k
  };

  /// Packs the panels of one operand for a block of K: P[(q * KC + k) * W +
  /// j] = element (k, lo + q * W + j) of the operand seen as K x (rows or
  /// columns of C), zero beyond `hi`. B is [K, N] as op(B); A is packed as
  /// op(A) transposed, [K, M]. `kRows` says whether the stored operand has
  /// k as its row index (B not transposed, A transposed), so that reads
  /// run along its contiguous dimension.
  void pack(OpBuilder &nb, const GemmOperand &X, Value flat, bool kRows, int64_t W, Value P, const Scratch &scratch,
            Value bIdx, Value pc, Value kc, Value lo, Value hi) {
    Value S = scratch.S;
    const int64_t VL = cfg.vl;
    Value zero = idx(nb, 0);
    auto at = [&](OpBuilder &xb, Value k, Value j) {
      return kRows ? std::pair{add(xb, pc, k), j} : std::pair{j, add(xb, pc, k)};
    };
    Type i32 = nb.getI32Type();
    VectorType ivec = VectorType::get({VL}, i32), mvec = VectorType::get({VL}, nb.getI1Type());
    // Read along k (k is the stored operand's contiguous dimension: A as
    // stored, B transposed, a convolution's columns for a filter gradient,
    // a tensor read channel-major): VL consecutive k of each of VL panel
    // columns as VL vectors (masked loads, or the computed operand's
    // vector combination) into the unit's VL x VL scratch, which the shared
    // transposeFunction turns into VL rows of the panel. Rows k >= kc are
    // not written; columns >= valid are zero.
    bool alongK = !kRows && (!X.parts || X.combineVector);
    // A computed operand's parts of each k, once per block (as i32 for the
    // path along k, which loads VL of them at once).
    Value SK = alongK && X.parts ? scratch.SK : Value();
    if (X.parts)
      loop(nb, zero, kc, 1, [&](OpBuilder &kb, Value k) {
        SmallVector<Value, 4> v = kRows ? X.rowPart(kb, loc, bIdx, add(kb, pc, k)) : X.colPart(kb, loc, bIdx, add(kb, pc, k));
        for (int64_t t = 0; t < X.parts; ++t) {
          Value at = add(kb, idx(kb, t * cfg.kc), k);
          if (SK)
            kb.create<memref::StoreOp>(loc, kb.create<arith::IndexCastOp>(loc, i32, v[t]), SK, ValueRange{at});
          else
            kb.create<memref::StoreOp>(loc, v[t], S, ValueRange{at});
        }
      });
    // Vector paths of a computed operand: the panel's W parts of the other
    // index as i32 in scratch; then (across the panel) per k the W
    // elements as W / VL vector combinations (gathers), zero beyond the
    // last valid lane, or (along k) as above.
    Value SV = X.parts && X.combineVector && (W % VL == 0 || alongK) ? scratch.SV : Value();
    blockLoop(nb, zero, sub(nb, hi, lo), W, [&](OpBuilder &qb, Value qw) {
      Value first = add(qb, lo, qw);
      Value valid = min(qb, idx(qb, W), sub(qb, hi, first));
      Value base = mul(qb, qw, idx(qb, KC)); // q * KC * W
      auto dst = [&](OpBuilder &xb, Value k, Value j) { return add(xb, add(xb, base, mul(xb, k, idx(xb, W))), j); };
      if (alongK) {
        // A computed operand's parts of the panel's columns, once per
        // panel, as i32 (columns past the end compute parts never loaded).
        if (X.parts)
          loop(qb, zero, idx(qb, W), 1, [&](OpBuilder &jb, Value j) {
            SmallVector<Value, 4> o = X.rowPart(jb, loc, bIdx, add(jb, first, j));
            for (int64_t t = 0; t < X.parts; ++t)
              jb.create<memref::StoreOp>(loc, jb.create<arith::IndexCastOp>(loc, i32, o[t]), SV,
                                         ValueRange{add(jb, idx(jb, t * W), j)});
          });
        Value zeroVec = qb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(vec, qb.getF32FloatAttr(0.0f)));
        Value zeroI = qb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(ivec, qb.getI32IntegerAttr(0)));
        loop(qb, zero, kc, VL, [&](OpBuilder &kb, Value k0) {
          Value kk = min(kb, idx(kb, VL), sub(kb, kc, k0));
          SmallVector<Value, 4> kParts;
          if (X.parts) {
            Value kLanes = kb.create<vector::CreateMaskOp>(loc, mvec, ValueRange{kk});
            for (int64_t t = 0; t < X.parts; ++t)
              kParts.push_back(kb.create<vector::MaskedLoadOp>(loc, ivec, SK, ValueRange{add(kb, idx(kb, t * cfg.kc), k0)},
                                                               kLanes, zeroI));
          }
          for (int64_t g = 0; flat && g * VL < W; ++g) {
            // A stored operand: the group's rows straight from memory.
            auto shape = cast<MemRefType>(X.memref.getType()).getShape();
            Value j0 = add(kb, first, idx(kb, g * VL));
            Value row = add(kb, mul(kb, storedBatch(kb, X, bIdx), idx(kb, shape[1])), j0);
            Value src = add(kb, mul(kb, row, idx(kb, shape[2])), add(kb, pc, k0));
            Value cols = max(kb, min(kb, sub(kb, valid, idx(kb, g * VL)), idx(kb, VL)), idx(kb, 0));
            int64_t width = std::min(VL, W - g * VL);
            kb.create<func::CallOp>(loc, packAlongKFunction(cast<MemRefType>(flat.getType()), cast<MemRefType>(P.getType())),
                                    ValueRange{flat, src, idx(kb, shape[2]), cols, kk, P, dst(kb, k0, idx(kb, g * VL)),
                                               idx(kb, W), idx(kb, width)});
          }
          for (int64_t g = 0; !flat && g * VL < W; ++g) {
            // The group's VL columns (zero past `valid`) into the unit's
            // VL x VL scratch, one vector per column.
            int64_t width = std::min(VL, W - g * VL);
            loop(kb, zero, idx(kb, width), 1, [&](OpBuilder &jb, Value jj) {
              Value j = add(jb, idx(jb, g * VL), jj);
              Value count = jb.create<arith::SelectOp>(loc, lt(jb, j, valid), kk, idx(jb, 0));
              Value lanes = jb.create<vector::CreateMaskOp>(loc, mvec, ValueRange{count});
              Value column;
              if (X.parts) {
                SmallVector<Value, 4> o;
                for (int64_t t = 0; t < X.parts; ++t)
                  o.push_back(jb.create<vector::BroadcastOp>(
                      loc, ivec, jb.create<memref::LoadOp>(loc, SV, ValueRange{add(jb, idx(jb, t * W), j)})));
                column = X.combineVector(jb, loc, o, kParts, lanes);
              } else {
                Value at[3] = {storedBatch(jb, X, bIdx), add(jb, first, j), add(jb, pc, k0)};
                column = jb.create<vector::MaskedLoadOp>(loc, vec, X.memref, at, lanes, zeroVec);
              }
              jb.create<vector::StoreOp>(loc, column, scratch.T, ValueRange{mul(jb, jj, idx(jb, VL))});
            });
            // Columns of a narrow group beyond the panel are zero.
            for (int64_t jj = width; jj < VL; ++jj)
              kb.create<vector::StoreOp>(loc, zeroVec, scratch.T, ValueRange{idx(kb, jj * VL)});
            kb.create<func::CallOp>(loc, transposeFunction(cast<MemRefType>(P.getType())),
                                    ValueRange{scratch.T, P, dst(kb, k0, idx(kb, g * VL)), idx(kb, W),
                                               idx(kb, width), kk});
          }
        });
        return;
      }
      if (SV) {
        // Lanes beyond `valid` compute the parts of indices past the end;
        // their elements are never loaded.
        loop(qb, zero, idx(qb, W), 1, [&](OpBuilder &jb, Value j) {
          Value other = add(jb, first, j);
          SmallVector<Value, 4> o = kRows ? X.colPart(jb, loc, bIdx, other) : X.rowPart(jb, loc, bIdx, other);
          for (int64_t t = 0; t < X.parts; ++t)
            jb.create<memref::StoreOp>(loc, jb.create<arith::IndexCastOp>(loc, i32, o[t]), SV,
                                       ValueRange{add(jb, idx(jb, t * W), j)});
        });
        loop(qb, zero, kc, 1, [&](OpBuilder &kb, Value k) {
          SmallVector<Value, 4> mine;
          for (int64_t t = 0; t < X.parts; ++t) {
            Value s = kb.create<memref::LoadOp>(loc, S, ValueRange{add(kb, idx(kb, t * cfg.kc), k)});
            mine.push_back(kb.create<vector::BroadcastOp>(loc, ivec, kb.create<arith::IndexCastOp>(loc, i32, s)));
          }
          for (int64_t v = 0; v < W; v += VL) {
            SmallVector<Value, 4> o;
            for (int64_t t = 0; t < X.parts; ++t)
              o.push_back(kb.create<vector::LoadOp>(loc, ivec, SV, ValueRange{idx(kb, t * W + v)}));
            Value lanes = kb.create<vector::CreateMaskOp>(loc, mvec, ValueRange{sub(kb, valid, idx(kb, v))});
            Value x = kRows ? X.combineVector(kb, loc, mine, o, lanes) : X.combineVector(kb, loc, o, mine, lanes);
            kb.create<vector::StoreOp>(loc, x, P, ValueRange{dst(kb, k, idx(kb, v))});
          }
        });
        return;
      }
      auto copy = [&](OpBuilder &xb, Value k, Value j) {
        auto [r, c] = at(xb, k, add(xb, first, j));
        xb.create<memref::StoreOp>(loc, load(xb, X, bIdx, r, c), P, ValueRange{dst(xb, k, j)});
      };
      if (X.parts) {
        // The other index's parts once per panel column, then each element.
        loop(qb, zero, valid, 1, [&](OpBuilder &jb, Value j) {
          Value other = add(jb, first, j);
          SmallVector<Value, 4> o = kRows ? X.colPart(jb, loc, bIdx, other) : X.rowPart(jb, loc, bIdx, other);
          loop(jb, zero, kc, 1, [&](OpBuilder &kb, Value k) {
            SmallVector<Value, 4> mine;
            for (int64_t t = 0; t < X.parts; ++t)
              mine.push_back(kb.create<memref::LoadOp>(loc, S, ValueRange{add(kb, idx(kb, t * cfg.kc), k)}));
            Value x = kRows ? X.combine(kb, loc, mine, o) : X.combine(kb, loc, o, mine);
            kb.create<memref::StoreOp>(loc, x, P, ValueRange{dst(kb, k, j)});
          });
        });
      } else {
        // A stored operand read across k (read along k, it took the path
        // above): rows of it are contiguous along j, whole panels as
        // vectors when they are full.
        assert(kRows && "a stored operand read along k takes the transposing path");
        auto elementwise = [&](OpBuilder &eb) {
          loop(eb, zero, kc, 1, [&](OpBuilder &kb, Value k) {
            loop(kb, zero, valid, 1, [&](OpBuilder &jb, Value j) { copy(jb, k, j); });
          });
        };
        if (W % VL != 0) {
          elementwise(qb);
        } else {
          ifThen(
              qb, eq(qb, valid, idx(qb, W)),
              [&](OpBuilder &fb) {
                loop(fb, zero, kc, 1, [&](OpBuilder &kb, Value k) {
                  for (int64_t v = 0; v < W; v += VL) {
                    auto [r, c] = at(kb, k, add(kb, first, idx(kb, v)));
                    Value x = kb.create<vector::LoadOp>(loc, vec, X.memref, ValueRange{storedBatch(kb, X, bIdx), r, c});
                    kb.create<vector::StoreOp>(loc, x, P, ValueRange{dst(kb, k, idx(kb, v))});
                  }
                });
              },
              elementwise);
        }
      }
      ifThen(qb, lt(qb, valid, idx(qb, W)), [&](OpBuilder &zb) {
        loop(zb, zero, kc, 1, [&](OpBuilder &kb, Value k) {
          loop(kb, valid, idx(kb, W), 1, [&](OpBuilder &jb, Value j) {
            jb.create<memref::StoreOp>(loc, zeroF(jb), P, ValueRange{dst(jb, k, j)});
          });
        });
      });
    });
  }

  /// The module's private function `name` of these argument types: the
  /// existing one (entry stays null), or a new empty one whose entry block
  /// `entry` the caller fills. Kept out of line (noinline): one copy of its
  /// code however many GEMMs call it.
  func::FuncOp sharedFunction(StringRef name, ArrayRef<Type> args, Block *&entry) {
    if (auto fn = module.lookupSymbol<func::FuncOp>(name))
      return fn;
    OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
    auto fn = mb.create<func::FuncOp>(loc, name, mb.getFunctionType(args, {}));
    fn.setPrivate();
    fn->setAttr("passthrough", mb.getArrayAttr({mb.getStringAttr("noinline")}));
    entry = fn.addEntryBlock();
    return fn;
  }

  /// The packing's transposition as a function shared by every GEMM of
  /// the module that packs into panels of P's type (compiled once):
  /// T (VL x VL, row jj = VL consecutive k of column jj) transposed in
  /// registers, its first `rows` rows (k) stored at P[base + t * stride],
  /// `width` lanes each.
  func::FuncOp transposeFunction(MemRefType panels) {
    const int64_t VL = cfg.vl;
    std::string name = "soma_gemm_transpose_v" + std::to_string(VL) + "_p" + std::to_string(panels.getNumElements());
    Type f32 = b.getF32Type(), index = b.getIndexType();
    Block *entry = nullptr;
    func::FuncOp fn = sharedFunction(name, {MemRefType::get({VL * VL}, f32), panels, index, index, index, index}, entry);
    if (!entry)
      return fn;
    OpBuilder nb = OpBuilder::atBlockEnd(entry);
    Value T = entry->getArgument(0), P = entry->getArgument(1), base = entry->getArgument(2),
          stride = entry->getArgument(3), width = entry->getArgument(4), rows = entry->getArgument(5);
    SmallVector<Value> columns;
    for (int64_t jj = 0; jj < VL; ++jj)
      columns.push_back(nb.create<vector::LoadOp>(loc, vec, T, ValueRange{idx(nb, jj * VL)}));
    storeRows(nb, transposeVectors(nb, loc, columns), P, base, stride, width, rows);
    nb.create<func::ReturnOp>(loc);
    return fn;
  }

  /// Rows t < `rows` of a transposed block into the panel at P[base + t *
  /// stride], `width` lanes each (the end of both packing functions).
  void storeRows(OpBuilder &nb, ArrayRef<Value> out, Value P, Value base, Value stride, Value width, Value rows) {
    VectorType mvec = VectorType::get({cfg.vl}, nb.getI1Type());
    for (int64_t t = 0; t < cfg.vl; ++t) {
      Value count = nb.create<arith::SelectOp>(loc, lt(nb, idx(nb, t), rows), width, idx(nb, 0));
      Value m = nb.create<vector::CreateMaskOp>(loc, mvec, ValueRange{count});
      nb.create<vector::MaskedStoreOp>(loc, P, ValueRange{add(nb, base, mul(nb, idx(nb, t), stride))}, m, out[t]);
    }
  }

  /// The packing of a stored operand read along k, as a function shared by
  /// every GEMM of the module that packs into panels of P's type: VL
  /// columns of the panel, each VL consecutive k of a stored row (row jj at
  /// X[src + jj * ld], `kk` of them, rows from `cols` on zero), loaded
  /// masked into registers and transposed there (transposeVectors); its first
  /// `kk` rows (k) stored at P[base + t * stride], `width` lanes each. X
  /// comes as a flat view of 2^30 floats (see kFlat in emitGemm), so one
  /// function serves every size. Straight into registers, not through
  /// the VL x VL scratch in memory that the computed operands use (a store
  /// and a load more per vector).
  func::FuncOp packAlongKFunction(MemRefType flat, MemRefType panels) {
    const int64_t VL = cfg.vl;
    std::string name = "soma_gemm_pack_along_k_v" + std::to_string(VL) + "_p" + std::to_string(panels.getNumElements());
    Type index = b.getIndexType();
    Block *entry = nullptr;
    func::FuncOp fn = sharedFunction(name, {flat, index, index, index, index, panels, index, index, index}, entry);
    if (!entry)
      return fn;
    OpBuilder nb = OpBuilder::atBlockEnd(entry);
    Value X = entry->getArgument(0), src = entry->getArgument(1), ld = entry->getArgument(2),
          cols = entry->getArgument(3), kk = entry->getArgument(4), P = entry->getArgument(5),
          base = entry->getArgument(6), stride = entry->getArgument(7), width = entry->getArgument(8);
    VectorType mvec = VectorType::get({VL}, nb.getI1Type());
    Value zeroVec = nb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(vec, nb.getF32FloatAttr(0.0f)));
    SmallVector<Value> rows;
    for (int64_t jj = 0; jj < VL; ++jj) {
      Value count = nb.create<arith::SelectOp>(loc, lt(nb, idx(nb, jj), cols), kk, idx(nb, 0));
      Value lanes = nb.create<vector::CreateMaskOp>(loc, mvec, ValueRange{count});
      Value at = add(nb, src, mul(nb, idx(nb, jj), ld));
      rows.push_back(nb.create<vector::MaskedLoadOp>(loc, vec, X, ValueRange{at}, lanes, zeroVec));
    }
    storeRows(nb, transposeVectors(nb, loc, rows), P, base, stride, width, kk);
    nb.create<func::ReturnOp>(loc);
    return fn;
  }

  /// The register tile as a function shared by every GEMM of the module
  /// with this blocking (compiled once): T[MR x NR] = the panels' product
  /// over kc, with Ap and Bp at their full scratch sizes.
  func::FuncOp tileFunction() {
    const int64_t MR = cfg.mr, NR = cfg.nr, VL = cfg.vl;
    std::string name = "soma_gemm_tile_" + std::to_string(MR) + "x" + std::to_string(NR) + "_v" +
                       std::to_string(VL) + "_a" + std::to_string(cfg.mc * cfg.kc) + "_b" +
                       std::to_string(cfg.kc * cfg.nc) + (prefetchC() ? "_pc" : "");
    Type f32 = b.getF32Type(), index = b.getIndexType();
    Block *entry = nullptr;
    func::FuncOp fn = sharedFunction(name,
                                     {MemRefType::get({cfg.mc * cfg.kc}, f32), MemRefType::get({cfg.kc * cfg.nc}, f32),
                                      index, index, index, MemRefType::get({MR * NR}, f32), flatType(), index, index,
                                      index},
                                     entry);
    if (!entry)
      return fn;
    OpBuilder nb = OpBuilder::atBlockEnd(entry);
    Value Ap = entry->getArgument(0), Bp = entry->getArgument(1), aBase = entry->getArgument(2),
          bBase = entry->getArgument(3), kc = entry->getArgument(4), T = entry->getArgument(5);
    TileTarget out{T, entry->getArgument(6), entry->getArgument(7), entry->getArgument(8), entry->getArgument(9)};
    tileBody(nb, Bp, bBase, idx(nb, NR), kc, out, [&](OpBuilder &kb, Value k, int64_t i) {
      Value ak = add(kb, aBase, mul(kb, k, idx(kb, MR)));
      return kb.create<memref::LoadOp>(loc, Ap, ValueRange{add(kb, ak, idx(kb, i))});
    });
    return fn;
  }

  /// Where a register tile leaves its block: in T (mode 0, the caller adds
  /// it to C), or, when the block is whole, in C itself at c[off + i * ldc
  /// + j] (C flat): mode 1 the first block of K (C = the product), mode 2
  /// a later one (the accumulators start from C's block).
  struct TileTarget {
    Value T, c, off, ldc, mode;
  };
  MemRefType flatType() { return MemRefType::get({kFlat}, b.getF32Type()); }

  /// The body of a register tile function: the product over k < kc of A's
  /// column k (element i from `aAt(k, i)`) and row k of B's NR columns at
  /// bBase + k * ldb (a packed panel: ldb = NR), MR x NR / VL accumulators
  /// carried by the k loop, into `out`.
  void tileBody(OpBuilder &nb, Value Bp, Value bBase, Value ldb, Value kc, const TileTarget &out,
                function_ref<Value(OpBuilder &, Value, int64_t)> aAt) {
    const int64_t MR = cfg.mr, NR = cfg.nr, VL = cfg.vl, NV = NR / VL;
    Value zeroVec = nb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(vec, nb.getF32FloatAttr(0.0f)));
    auto cAt = [&](OpBuilder &xb, int64_t i, int64_t v) {
      return add(xb, add(xb, out.off, mul(xb, idx(xb, i), out.ldc)), idx(xb, v * VL));
    };
    const bool late = prefetchC();
    // The accumulators (acc[i * NV + v]) into C's block in place.
    auto storeToC = [&](OpBuilder &sb, ValueRange acc) {
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t v = 0; v < NV; ++v)
          sb.create<vector::StoreOp>(loc, acc[i * NV + v], out.c, ValueRange{cAt(sb, i, v)});
    };
    SmallVector<Value> init;
    if (late) {
      // The tile's block of C, prefetched: the accumulators start from
      // zero, and C is added at the end, by when it has arrived.
      nb.create<scf::IfOp>(loc, eq(nb, out.mode, idx(nb, 2)), [&](OpBuilder &tb, Location) {
        for (int64_t i = 0; i < MR; ++i)
          for (int64_t v = 0; v < NV; ++v)
            tb.create<memref::PrefetchOp>(loc, out.c, ValueRange{cAt(tb, i, v)}, /*isWrite=*/false,
                                          /*localityHint=*/3, /*isDataCache=*/true);
        tb.create<scf::YieldOp>(loc);
      });
      init.assign(MR * NV, zeroVec);
    } else {
      auto start = nb.create<scf::IfOp>(
          loc, eq(nb, out.mode, idx(nb, 2)),
          [&](OpBuilder &tb, Location) {
            SmallVector<Value> from;
            for (int64_t i = 0; i < MR; ++i)
              for (int64_t v = 0; v < NV; ++v)
                from.push_back(tb.create<vector::LoadOp>(loc, vec, out.c, ValueRange{cAt(tb, i, v)}));
            tb.create<scf::YieldOp>(loc, from);
          },
          [&](OpBuilder &eb, Location) { eb.create<scf::YieldOp>(loc, SmallVector<Value>(MR * NV, zeroVec)); });
      init.assign(start.getResults().begin(), start.getResults().end());
    }
    auto kloop = nb.create<scf::ForOp>(
        loc, idx(nb, 0), kc, idx(nb, 1), init, [&](OpBuilder &kb, Location, Value k, ValueRange acc) {
          Value bk = add(kb, bBase, mul(kb, k, ldb));
          SmallVector<Value> bv;
          for (int64_t v = 0; v < NV; ++v)
            bv.push_back(kb.create<vector::LoadOp>(loc, vec, Bp, ValueRange{add(kb, bk, idx(kb, v * VL))}));
          SmallVector<Value> next;
          for (int64_t i = 0; i < MR; ++i) {
            Value av = kb.create<vector::BroadcastOp>(loc, vec, aAt(kb, k, i));
            for (int64_t v = 0; v < NV; ++v)
              next.push_back(kb.create<vector::FMAOp>(loc, av, bv[v], acc[i * NV + v]));
          }
          kb.create<scf::YieldOp>(loc, next);
        });
    nb.create<scf::IfOp>(
        loc, eq(nb, out.mode, idx(nb, 0)),
        [&](OpBuilder &tb, Location) {
          for (int64_t i = 0; i < MR; ++i)
            for (int64_t v = 0; v < NV; ++v)
              tb.create<vector::StoreOp>(loc, kloop.getResult(i * NV + v), out.T, ValueRange{idx(tb, i * NR + v * VL)});
          tb.create<scf::YieldOp>(loc);
        },
        [&](OpBuilder &eb, Location) {
          if (!late) {
            storeToC(eb, kloop.getResults());
            eb.create<scf::YieldOp>(loc);
            return;
          }
          eb.create<scf::IfOp>(
              loc, eq(eb, out.mode, idx(eb, 2)),
              [&](OpBuilder &ab, Location) {
                for (int64_t i = 0; i < MR; ++i)
                  for (int64_t v = 0; v < NV; ++v) {
                    Value c = ab.create<vector::LoadOp>(loc, vec, out.c, ValueRange{cAt(ab, i, v)});
                    Value sum = ab.create<arith::AddFOp>(loc, c, kloop.getResult(i * NV + v));
                    ab.create<vector::StoreOp>(loc, sum, out.c, ValueRange{cAt(ab, i, v)});
                  }
                ab.create<scf::YieldOp>(loc);
              },
              [&](OpBuilder &fb, Location) {
                storeToC(fb, kloop.getResults());
                fb.create<scf::YieldOp>(loc);
              });
          eb.create<scf::YieldOp>(loc);
        });
    nb.create<func::ReturnOp>(loc);
  }

  /// The register tile reading A where it is stored (no packing of A):
  /// T[MR x NR] = A[rows, k0 : k0 + kc] x B's panel, with A flat, row i at
  /// aBase + min(i, rows - 1) * lda (rows past the last valid one read it
  /// again; their results are not stored), or with `alongK` (A stored
  /// transposed, K x M) element (i, k) at aBase + k * lda + min(i, rows -
  /// 1); and B's row k at bBase + k * ldb: the packed panel (ldb = NR) or B
  /// itself (ldb = N, see bInPlace). A and B come as memref<kFlat x f32>
  /// whatever their size (see emitGemm), so that one function serves every
  /// GEMM with this blocking.
  func::FuncOp rowsTileFunction(MemRefType flatA, bool alongK) {
    const int64_t MR = cfg.mr, NR = cfg.nr, VL = cfg.vl;
    std::string name = std::string(alongK ? "soma_gemm_tile_cols_" : "soma_gemm_tile_rows_") + std::to_string(MR) +
                       "x" + std::to_string(NR) + "_v" +
                       std::to_string(VL) + "_b" + std::to_string(cfg.kc * cfg.nc) + (prefetchC() ? "_pc" : "");
    Type f32 = b.getF32Type(), index = b.getIndexType();
    Block *entry = nullptr;
    func::FuncOp fn = sharedFunction(name,
                                     {flatA, index, index, index, flatType(), index, index, index,
                                      MemRefType::get({MR * NR}, f32), flatType(), index, index, index},
                                     entry);
    if (!entry)
      return fn;
    OpBuilder nb = OpBuilder::atBlockEnd(entry);
    Value A = entry->getArgument(0), aBase = entry->getArgument(1), lda = entry->getArgument(2),
          rows = entry->getArgument(3), Bp = entry->getArgument(4), bBase = entry->getArgument(5),
          ldb = entry->getArgument(6), kc = entry->getArgument(7), T = entry->getArgument(8);
    TileTarget out{T, entry->getArgument(9), entry->getArgument(10), entry->getArgument(11), entry->getArgument(12)};
    SmallVector<Value> rowAt; // (alongK: the row's offset in A's column)
    for (int64_t i = 0; i < MR; ++i) {
      Value row = min(nb, idx(nb, i), sub(nb, rows, idx(nb, 1)));
      rowAt.push_back(alongK ? row : add(nb, aBase, mul(nb, row, lda)));
    }
    tileBody(nb, Bp, bBase, ldb, kc, out, [&](OpBuilder &kb, Value k, int64_t i) {
      if (alongK)
        return kb.create<memref::LoadOp>(loc, A, ValueRange{add(kb, add(kb, aBase, mul(kb, k, lda)), rowAt[i])});
      return kb.create<memref::LoadOp>(loc, A, ValueRange{add(kb, rowAt[i], k)});
    });
    return fn;
  }

  /// The MR x NR tile at (m, n) from panels (aBase, bBase) over kc, through
  /// the tile buffer T; written to C (first block) or added to it, with
  /// masks at the edges (rows beyond M skipped, columns beyond N masked).
  /// Bp is the packed panels, or (bInPlace) B's flat view, bBase then the
  /// offset of B's element (k0, n).
  void microKernel(OpBuilder &nb, Value Ap, Value Bp, Value T, Value aBase, Value bBase, Value kc,
                   Value C, Value bIdx, Value m, Value n, Value first) {
    const int64_t MR = cfg.mr, NR = cfg.nr, VL = cfg.vl, NV = NR / VL;
    // A whole block (MR rows and NR columns inside C) is loaded and stored
    // by the tile in place; an edge block goes through T.
    Value flatC = C == partial ? partialFlat : cFlat;
    Value mode = idx(nb, 0), cOff = idx(nb, 0), ldc = idx(nb, N);
    if (flatC) {
      Value whole = nb.create<arith::AndIOp>(loc, nb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::sle,
                                                                             add(nb, m, idx(nb, MR)), idx(nb, M)),
                                             nb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::sle,
                                                                      add(nb, n, idx(nb, NR)), idx(nb, N)));
      Value direct = nb.create<arith::SelectOp>(loc, first, idx(nb, 1), idx(nb, 2));
      mode = nb.create<arith::SelectOp>(loc, whole, direct, idx(nb, 0));
      cOff = add(nb, mul(nb, add(nb, mul(nb, bIdx, idx(nb, M)), m), idx(nb, N)), n);
    } else {
      flatC = noFlat; // (mode 0: the tile does not touch it)
    }
    if (aUnpacked()) { // A in place: aBase is the offset of (m, k0), in A or in its copy (Ap)
      Value flatB = bInPlace() ? Bp
                               : nb.create<memref::ReinterpretCastOp>(loc, flatType(), Bp, /*offset=*/0,
                                                                      ArrayRef<int64_t>{kFlat}, ArrayRef<int64_t>{1});
      nb.create<func::CallOp>(loc, rowsTileFunction(flatType(), /*alongK=*/static_cast<bool>(aCols)),
                              ValueRange{aFlat ? aFlat : aCols ? aCols : Ap, aBase,
                                         idx(nb, aFlat ? K : aCols ? M : aStride()),
                                         min(nb, idx(nb, MR), sub(nb, idx(nb, M), m)), flatB, bBase,
                                         idx(nb, bInPlace() ? N : NR), kc, T, flatC, cOff, ldc, mode});
    } else
      nb.create<func::CallOp>(loc, tileFunction(), ValueRange{Ap, Bp, aBase, bBase, kc, T, flatC, cOff, ldc, mode});
    Value zv = nb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(vec, nb.getF32FloatAttr(0.0f)));
    VectorType maskType = VectorType::get({VL}, nb.getI1Type());
    Value rows = nb.create<arith::SelectOp>(loc, eq(nb, mode, idx(nb, 0)), min(nb, idx(nb, MR), sub(nb, idx(nb, M), m)),
                                            idx(nb, 0));
    loop(nb, idx(nb, 0), rows, 1, [&](OpBuilder &rb, Value i) {
      Value row = add(rb, m, i);
      for (int64_t v = 0; v < NV; ++v) {
        Value col = add(rb, n, idx(rb, v * VL));
        ifThen(rb, lt(rb, col, idx(rb, N)), [&](OpBuilder &cb) {
          Value count = min(cb, idx(cb, VL), sub(cb, idx(cb, N), col));
          Value mask = cb.create<vector::CreateMaskOp>(loc, maskType, ValueRange{count});
          SmallVector<Value, 3> at{bIdx, row, col};
          Value x = cb.create<vector::LoadOp>(loc, vec, T, ValueRange{add(cb, mul(cb, i, idx(cb, NR)), idx(cb, v * VL))});
          Value old = cb.create<vector::MaskedLoadOp>(loc, vec, C, at, mask, zv);
          // The first block must not add what C held before.
          Value base = cb.create<arith::SelectOp>(loc, first, zv, old);
          cb.create<vector::MaskedStoreOp>(loc, C, at, mask, cb.create<arith::AddFOp>(loc, base, x));
        });
      }
    });
  }

  /// Rows [i0, i1) of A's columns [pc, pc + kc) into Ap at a stride of
  /// aStride(): a plain copy of whole vectors (no transposition), which
  /// keeps the tile's MR rows out of each other's L1 sets. (Rows are copied
  /// only when K is a multiple of 512, so kc, K's blocks being multiples of
  /// the vector width, is one too.)
  void copyRows(OpBuilder &nb, Value Ap, Value bIdx, Value pc, Value kc, Value i0, Value i1) {
    const int64_t VL = cfg.vl;
    assert(K % 512 == 0 && KC % VL == 0 && "copied rows are whole vectors");
    Value first = add(nb, mul(nb, add(nb, mul(nb, storedBatch(nb, A, bIdx), idx(nb, M)), i0), idx(nb, K)), pc);
    blockLoop(nb, idx(nb, 0), sub(nb, i1, i0), 1, [&](OpBuilder &rb, Value r) {
      Value src = add(rb, first, mul(rb, r, idx(rb, K)));
      Value dst = mul(rb, r, idx(rb, aStride()));
      loop(rb, idx(rb, 0), kc, VL, [&](OpBuilder &kb, Value k) {
        Value v = kb.create<vector::LoadOp>(loc, vec, aCopy, ValueRange{add(kb, src, k)});
        kb.create<vector::StoreOp>(loc, v, Ap, ValueRange{add(kb, dst, k)});
      });
    });
  }

  void unit(OpBuilder &nb, Value t, const GemmEpilogue &epilogue) {
    const int64_t MR = cfg.mr, NR = cfg.nr;
    // Unit t: part t / units of K, block t % units of C.
    Value part = nb.create<arith::DivUIOp>(loc, t, idx(nb, units));
    t = nb.create<arith::RemUIOp>(loc, t, idx(nb, units));
    Value kStart = mul(nb, part, idx(nb, KS));
    Value kEnd = min(nb, add(nb, kStart, idx(nb, KS)), idx(nb, K));
    Value bIdx = nb.create<arith::DivUIOp>(loc, t, idx(nb, mg * nt));
    // A split GEMM writes its part's product into `partial`.
    Value target = splits > 1 ? partial : C;
    Value tIdx = splits > 1 ? add(nb, mul(nb, part, idx(nb, batch)), bIdx) : bIdx;
    Value r = nb.create<arith::RemUIOp>(loc, t, idx(nb, mg * nt));
    Value n0 = mul(nb, nb.create<arith::DivUIOp>(loc, r, idx(nb, mg)), idx(nb, NC));
    Value m0 = mul(nb, nb.create<arith::RemUIOp>(loc, r, idx(nb, mg)), idx(nb, GR));
    Value n1 = min(nb, add(nb, n0, idx(nb, NC)), idx(nb, N));
    Value m1 = min(nb, add(nb, m0, idx(nb, GR)), idx(nb, M));
    auto f32 = nb.getF32Type();
    // The scratch lives for one unit: stack memory of the running thread,
    // released after the unit by restoring the stack pointer. (Not a
    // memref.alloca_scope: the canonicalizer hoists a scope's allocas into
    // the enclosing loop body, and a sequential loop then grows the stack
    // by the scratch on every unit.)
    {
      OpBuilder &sb = nb;
      Value stack = sb.create<LLVM::StackSaveOp>(loc, LLVM::LLVMPointerType::get(sb.getContext()));
      // Full-size scratch, the tile function's types (the blocks may be smaller).
      Value Ap;
      if (aCopy)
        Ap = sb.create<memref::ReinterpretCastOp>(
            loc, flatType(),
            sb.create<memref::AllocaOp>(loc, MemRefType::get({cfg.mc * aStride()}, f32), sb.getI64IntegerAttr(64)),
            /*offset=*/0, ArrayRef<int64_t>{kFlat}, ArrayRef<int64_t>{1});
      else if (!aUnpacked())
        Ap = sb.create<memref::AllocaOp>(loc, MemRefType::get({cfg.mc * cfg.kc}, f32), sb.getI64IntegerAttr(64));
      // B's packed panels, or B itself (its flat view) when read in place.
      Value Bp = bInPlace() ? bFlat
                            : sb.create<memref::AllocaOp>(loc, MemRefType::get({cfg.kc * cfg.nc}, f32),
                                                          sb.getI64IntegerAttr(64));
      Value T = sb.create<memref::AllocaOp>(loc, MemRefType::get({MR * NR}, f32), sb.getI64IntegerAttr(64));
      int64_t parts = std::max(A.parts, B.parts);
      Scratch S;
      // (The VL x VL scratch of the packing along k: computed operands, and
      // stored ones without a flat view.)
      if (parts || (!aUnpacked() && !ta) || (tb && !bAlongK))
        S.T = sb.create<memref::AllocaOp>(loc, MemRefType::get({cfg.vl * cfg.vl}, f32), sb.getI64IntegerAttr(64));
      if (parts) {
        auto scratch = [&](int64_t n, Type t) {
          return sb.create<memref::AllocaOp>(loc, MemRefType::get({parts * n}, t), sb.getI64IntegerAttr(64));
        };
        S.S = scratch(cfg.kc, sb.getIndexType());
        S.SK = scratch(cfg.kc, sb.getI32Type());
        S.SV = scratch(std::max(MR, NR), sb.getI32Type());
      }
      blockLoop(sb, kStart, kEnd, KC, [&](OpBuilder &kb, Value pc) {
        Value kc = min(kb, idx(kb, KC), sub(kb, kEnd, pc));
        Value first = eq(kb, pc, kStart);
        if (!bInPlace())
          pack(kb, B, bAlongK, /*kRows=*/!tb, cfg.nr, Bp, S, bIdx, pc, kc, n0, n1);
        // (B's parts in S are no longer needed: A's may overwrite them.)
        auto rowBlock = [&](OpBuilder &ib, Value i0) {
          Value i1 = min(ib, add(ib, i0, idx(ib, MC)), m1);
          if (aCopy)
            copyRows(ib, Ap, bIdx, pc, kc, i0, i1);
          else if (!aUnpacked())
            pack(ib, A, Value(), /*kRows=*/ta, cfg.mr, Ap, S, bIdx, pc, kc, i0, i1);
          blockLoop(ib, idx(ib, 0), sub(ib, n1, n0), NR, [&](OpBuilder &qb, Value qn) {
            // (B in place: the offset of its element (pc, n0 + qn).)
            Value bBase = bInPlace() ? add(qb, mul(qb, add(qb, mul(qb, storedBatch(qb, B, bIdx), idx(qb, K)), pc), idx(qb, N)),
                                           add(qb, n0, qn))
                                     : mul(qb, qn, idx(qb, KC));
            blockLoop(qb, idx(qb, 0), sub(qb, i1, i0), MR, [&](OpBuilder &pb, Value pm) {
              Value aBase =
                  aFlat ? add(pb, mul(pb, add(pb, mul(pb, storedBatch(pb, A, bIdx), idx(pb, M)), add(pb, i0, pm)), idx(pb, K)),
                              pc)
                  : aCols ? add(pb, mul(pb, add(pb, mul(pb, storedBatch(pb, A, bIdx), idx(pb, K)), pc), idx(pb, M)),
                                add(pb, i0, pm))
                          : mul(pb, pm, idx(pb, aCopy ? aStride() : KC));
              microKernel(pb, Ap, Bp, T, aBase, bBase, kc, target, tIdx, add(pb, i0, pm), add(pb, n0, qn), first);
            });
          });
        };
        if (GR <= MC)
          rowBlock(kb, m0);
        else
          blockLoop(kb, m0, m1, MC, rowBlock);
      });
      sb.create<LLVM::StackRestoreOp>(loc, stack);
      if (epilogue && splits == 1)
        epilogue(sb, loc, bIdx, m0, m1, n0, n1);
    }
  }
};

} // namespace

GemmConfig GemmConfig::forVectorWidth(int64_t vectorWidth) {
  GemmConfig c;
  if (vectorWidth >= 16) {
    // 32 registers: 12 x 32 accumulators in 24, two B vectors, a broadcast.
    // B's block up to 512 x 512 (1 MiB, the size of the L2; the register
    // tile's panel of 512 x 32, 64 KiB, exceeds the 48 KiB L1 and streams
    // from L2): a 2048-square product packs A 4 times instead of 8, and
    // the tile loads and stores its block of C half as often as with K
    // blocks of 256. In-process A/B on AMD Zen 5, min ms, kc 256 -> 512:
    // 2048-square 67.9 -> 66.3 on 1 thread, 34.1 -> 33.7 on 2; 1024-square
    // 4.14 -> 4.01 on 2; 64x256x784 0.0538 -> 0.0499 on 2 (K no longer
    // split in two parts, whose sum was a pass of its own: two column
    // blocks over K in blocks of 400 and 384);
    // 128x1024x1024 0.548 -> 0.531;
    // 256-square level; the MLP, LeNet-5 and ResNet-8 training steps
    // level or 1-3% faster. (A session before, kc 512 measured 25% slower
    // on the MLP's training step at batch 64; not seen again since B is
    // read in place: 0.1846 -> 0.1814 ms on 2 threads.) With B's block
    // 512 x 256 instead, 2048-square was 3% slower.
    c.vl = 16, c.mr = 12, c.nr = 32, c.mc = 96, c.nc = 512, c.kc = 512;
    c.wide_mr = 6, c.wide_nr = 64, c.wide_min_side = 256; // (see forShape)
  } else if (vectorWidth <= 4) {
    // 16 registers of 4: 6 x 8 in 12.
    c.vl = 4, c.mr = 6, c.nr = 8, c.mc = 72, c.nc = 256, c.kc = 256;
  }
  return c;
}

GemmConfig GemmConfig::forShape(int64_t M, int64_t N) const {
  // With AVX-512, a product of at least 256 rows and columns takes the
  // wide tile, 6 x 64: 24 accumulators as with 12 x 32, but 10 loads
  // per 24 FMAs (4 vectors of B, 6 broadcasts of A) instead of 14. On
  // Intel Sapphire Rapids, 1 thread, the tile alone over blocks in L2 (a
  // C++ model of the loop nest): 12 x 32 80-87% of the FMA peak, 6 x 64
  // 85-92%. Whole products, alternating processes (speed_soma gemm, 3-5
  // rounds, median ms), 12 x 32 -> 6 x 64: 2 threads 1024^3 6.71 -> 6.31,
  // 2048^3 55.1 -> 51.4, 512^3 0.85 -> 0.81, 784x256x64_At 0.086 ->
  // 0.081, 256^3 level; 1 thread 2048^3 117 -> 109, 1024^3 13.3 -> 12.3,
  // 784x256x64_At 0.155 -> 0.145; the MLP's training step at batch 256
  // 1.32 -> 1.22 ms. Fewer rows keep 12 x 32 (or forRows' shorter tile):
  // at 64 rows, 6-row tiles leave more rows empty and the products'
  // units fewer tiles (64x256x784 0.088 -> 0.092 ms, 64x784x256_Bt 0.096
  // -> 0.105 on 2 threads with 6 x 64). Nor when 64-column panels would
  // compute more columns than 32-column ones (N = 288: 320 against 288; N
  // = 257: 320 against 288): the wide tile's gain is a few percent, and
  // 64-column panels of such a B cannot be read in place either. (mc and
  // nc are multiples of the wide tile's sides, which the scratch needs:
  // GemmConfig.BlocksHoldWholeTiles.)
  GemmConfig c = *this;
  auto columns = [N](int64_t nr) { return (N + nr - 1) / nr * nr; };
  if (wide_mr > 0 && M >= wide_min_side && N >= wide_min_side && columns(wide_nr) <= columns(nr))
    c.mr = wide_mr, c.nr = wide_nr;
  return c.forRows(M);
}

GemmConfig GemmConfig::forRows(int64_t M) const {
  // Rows of edge tiles are computed and thrown away: a product with few
  // rows (a filter gradient has one per output channel: 6, 16, 32; an MLP
  // layer at batch 64) takes a shorter tile when the full one would waste
  // more than a sixteenth of its rows (16 rows: 8 x 32 instead of two
  // 12 x 32 tiles, a third wasted; 64 rows: 8 x 32 instead of six 12 x 32
  // tiles, 8 of 72 rows wasted, which made 64x256x784 on one thread 0.138
  // -> 0.126 ms and the MLP's inference at batch 64 0.172 -> 0.157 ms).
  auto padded = [&](int64_t mr) { return (M + mr - 1) / mr * mr; };
  GemmConfig c = *this;
  if (M <= 0 || (padded(mr) - M) * 16 <= M)
    return c;
  // (Up to an eighth wasted, only tiles of two thirds the height or more:
  // smaller ones pay their calls and stores for fewer rows.)
  const int64_t lowest = (padded(mr) - M) * 8 <= M ? (2 * mr + 2) / 3 : mr / 3;
  for (int64_t r = mr - 1; r >= lowest && r >= 1; --r)
    if (c.mc % r == 0 && padded(r) < padded(c.mr))
      c.mr = r;
  return c;
}

GemmOperand GemmOperand::of(Value memref, bool transposed) {
  GemmOperand op;
  op.memref = memref;
  op.transposed = transposed;
  auto shape = cast<MemRefType>(memref.getType()).getShape();
  op.shape = {shape[0], shape[1], shape[2]};
  return op;
}

/// True when C = op(A) op(B) is better computed as its transpose
/// C^T = op(B)^T op(A)^T (then transposed into C): a product with fewer
/// columns than the register tile's NR, such as an MLP's 10-wide last
/// layer, fills only N of each tile's NR columns, where the transpose has
/// those N as rows and fills its columns with M. Taken when the transpose's
/// register tiles cover at most three quarters of the area of C's
/// (64x10x256: 64 x 32 against 12 x 64), and K is long enough to pay for
/// the transposition's M x N moves (at least two vectors: a 4x3x2 product
/// stays as it is). The operands are stored ones (a computed operand is
/// packed only as the side it was written for).
static bool transposeNarrowProduct(const GemmOperand &A, const GemmOperand &B, int64_t M, int64_t N, int64_t K,
                                   const GemmConfig &cfg) {
  if (A.computed() || B.computed() || N >= cfg.nr || M <= N || K < 2 * cfg.vl)
    return false;
  auto area = [&](int64_t rows, int64_t cols) {
    int64_t mr = cfg.forRows(rows).mr;
    return (rows + mr - 1) / mr * mr * ((cols + cfg.nr - 1) / cfg.nr * cfg.nr);
  };
  return 4 * area(N, M) <= 3 * area(M, N);
}

void emitGemm(ModuleOp module, OpBuilder &b, Location loc, const GemmOperand &A, const GemmOperand &B,
              Value C, const GemmConfig &cfg, const GemmEpilogue &epilogue) {
  auto cs = cast<MemRefType>(C.getType()).getShape();
  int64_t K = A.transposed ? A.shape[1] : A.shape[2];
  GemmEmitter e{module, b, loc, A, B, C, A.transposed, B.transposed, cfg.forShape(cs[1], cs[2]), cs[0], cs[1], cs[2], K};
  if (transposeNarrowProduct(A, B, cs[1], cs[2], K, cfg)) {
    // C^T into T [batch, N, M], then C[b, m, n] = T[b, n, m] and the
    // epilogue over each batch entry's whole C.
    GemmOperand At = B, Bt = A;
    At.transposed = !B.transposed;
    Bt.transposed = !A.transposed;
    Value T = b.create<memref::AllocOp>(loc, MemRefType::get({e.batch, e.N, e.M}, b.getF32Type()),
                                        b.getI64IntegerAttr(64));
    emitGemm(module, b, loc, At, Bt, T, cfg, {});
    e.loop(b, e.idx(b, 0), e.idx(b, e.batch), 1, [&](OpBuilder &bb, Value bi) {
      e.loop(bb, e.idx(bb, 0), e.idx(bb, e.M), 1, [&](OpBuilder &mb, Value m) {
        e.loop(mb, e.idx(mb, 0), e.idx(mb, e.N), 1, [&](OpBuilder &nb, Value n) {
          Value x = nb.create<memref::LoadOp>(loc, T, ValueRange{bi, n, m});
          nb.create<memref::StoreOp>(loc, x, C, ValueRange{bi, m, n});
        });
      });
      if (epilogue)
        epilogue(bb, loc, bi, e.idx(bb, 0), e.idx(bb, e.M), e.idx(bb, 0), e.idx(bb, e.N));
    });
    return;
  }
  e.vec = VectorType::get({cfg.vl}, b.getF32Type());
  if (K == 0) {
    // An empty sum: C = 0 (then the epilogue over all of C).
    Value zero = e.zeroF(b);
    e.loop(b, e.idx(b, 0), e.idx(b, e.batch), 1, [&](OpBuilder &bb, Value bi) {
      e.loop(bb, e.idx(bb, 0), e.idx(bb, e.M), 1, [&](OpBuilder &mb, Value m) {
        e.loop(mb, e.idx(mb, 0), e.idx(mb, e.N), 1, [&](OpBuilder &xb, Value n) {
          xb.create<memref::StoreOp>(loc, zero, C, ValueRange{bi, m, n});
        });
      });
      if (epilogue)
        epilogue(bb, loc, bi, e.idx(bb, 0), e.idx(bb, e.M), e.idx(bb, 0), e.idx(bb, e.N));
    });
    return;
  }
  e.chooseBlocks();
  if (e.splits > 1)
    e.partial = b.create<memref::AllocOp>(
        loc, MemRefType::get({e.splits * e.batch, e.M, e.N}, b.getF32Type()), b.getI64IntegerAttr(64));
  // The whole GEMM in a region that soma-outline-loops makes a function of
  // its own (the code generator's time grows faster than the function).
  auto region = b.create<scf::ExecuteRegionOp>(loc, TypeRange{});
  region->setAttr(kOutlineAttr, b.getStringAttr("gemm"));
  OpBuilder rb = OpBuilder::atBlockEnd(&region.getRegion().emplaceBlock());
  // A stored A read along its rows (not transposed) needs no packing: the
  // register tile reads its rows where they are (rowsTileFunction), unless
  // its row length is a multiple of 2 KiB, where the MR rows would fall in
  // the same L1 sets: then each unit copies its block's rows at a padded
  // stride (copyRows), which costs less than packing them as panels
  // (transposed; 1024-square on 2 threads 5.02 -> 4.48 ms, the same blocks).
  // A stored transposed (K x M, as in a weight gradient X^T dY) is read in
  // place too, along K: a tile's MR rows at step k are MR consecutive
  // floats of A's stored row k, as in a packed panel, at a stride of M
  // (rowsTileFunction alongK; the same sums in the same order). Against
  // packing A's panels, in-process A/B on Zen 5, min ms, 2 threads:
  // 784x256x64 0.0517 -> 0.0481 (1 thread 0.0990 -> 0.0930); 256x128x64
  // 0.0112 -> 0.0098; 400x120x64 0.0169 -> 0.0153; 1000-square 3.88 ->
  // 3.75; 300x500x700 0.439 -> 0.412; 512-square 0.525 -> 0.483;
  // 2048-square 35.1 -> 33.4; 4096x64x128 0.165 -> 0.126. Rows a multiple
  // of 2 KiB apart (M = 512, 1024, 2048) did not need the padded copy that
  // A's rows take: the tile reads 12 consecutive floats per k, one or two
  // cache lines, not 12 lines in the same L1 set.
  // (The tile function takes A as memref<kFlat x f32>, a view of A's
  // buffer that claims more elements than it has: the calling convention
  // passes a static shape as a bare pointer, and the tile reads only
  // elements of A; one function then serves every GEMM's A, where a type
  // per size of A made LeNet-5's training step compile 15% longer. The
  // packing along k and the tile's in-place blocks of C take their
  // operands the same way.)
  auto flatView = [&](Value v) -> Value {
    auto type = cast<MemRefType>(v.getType());
    if (!type.getLayout().isIdentity() || type.getNumElements() > kFlat)
      return Value();
    Value flat = rb.create<memref::CollapseShapeOp>(loc, v, ArrayRef<ReassociationIndices>{{0, 1, 2}});
    return rb.create<memref::ReinterpretCastOp>(loc, e.flatType(), flat, /*offset=*/0, ArrayRef<int64_t>{kFlat},
                                                ArrayRef<int64_t>{1});
  };
  if (!A.parts && !A.transposed && (K * 4) % 2048 != 0)
    e.aFlat = flatView(A.memref);
  else if (!A.parts && !A.transposed)
    e.aCopy = flatView(A.memref);
  else if (!A.parts && A.transposed)
    e.aCols = flatView(A.memref);
  if (!B.parts && B.transposed)
    e.bAlongK = flatView(B.memref);
  if (!B.parts && !B.transposed && e.aUnpacked() && e.N % e.cfg.nr == 0 && e.GR <= 6 * e.MC)
    e.bFlat = flatView(B.memref);
  // C (and the split's parts), for whole register blocks stored in place;
  // noFlat stands in for the tile's argument when C has no flat view.
  e.cFlat = flatView(C);
  if (e.partial)
    e.partialFlat = flatView(e.partial);
  e.noFlat = e.cFlat ? e.cFlat
                     : rb.create<memref::ReinterpretCastOp>(
                           loc, e.flatType(), rb.create<memref::AllocaOp>(loc, MemRefType::get({1}, b.getF32Type())),
                           /*offset=*/0, ArrayRef<int64_t>{kFlat}, ArrayRef<int64_t>{1});
  auto outer = rb.create<scf::ForOp>(loc, e.idx(rb, 0), e.idx(rb, e.units * e.splits), e.idx(rb, 1), ValueRange{},
                                     [&](OpBuilder &fb, Location, Value t, ValueRange) {
                                       e.unit(fb, t, epilogue);
                                       fb.create<scf::YieldOp>(loc);
                                     });
  if (e.units * e.splits > 1)
    outer->setAttr(kParallelWorkAttr, rb.getI64IntegerAttr(e.work()));
  if (e.splits > 1) {
    // C = the parts' sum, in part order (the same for any number of
    // threads), then the epilogue, over units of rows of each batch entry
    // that the threads share.
    int64_t chunks = std::clamp<int64_t>((cfg.min_units + e.batch - 1) / e.batch, 1, e.M);
    int64_t rows = (e.M + chunks - 1) / chunks;
    chunks = (e.M + rows - 1) / rows;
    auto sum = rb.create<scf::ForOp>(
        loc, e.idx(rb, 0), e.idx(rb, e.batch * chunks), e.idx(rb, 1), ValueRange{},
        [&](OpBuilder &bb, Location, Value u, ValueRange) {
          Value bi = bb.create<arith::DivUIOp>(loc, u, e.idx(bb, chunks));
          Value m0 = e.mul(bb, bb.create<arith::RemUIOp>(loc, u, e.idx(bb, chunks)), e.idx(bb, rows));
          Value m1 = e.min(bb, e.add(bb, m0, e.idx(bb, rows)), e.idx(bb, e.M));
          e.blockLoop(bb, m0, m1, 1, [&](OpBuilder &mb, Value m) {
            e.loop(mb, e.idx(mb, 0), e.idx(mb, e.N), 1, [&](OpBuilder &nb, Value n) {
              Value acc;
              for (int64_t part = 0; part < e.splits; ++part) {
                Value pb = e.add(nb, e.idx(nb, part * e.batch), bi);
                Value x = nb.create<memref::LoadOp>(loc, e.partial, ValueRange{pb, m, n});
                acc = part == 0 ? x : nb.create<arith::AddFOp>(loc, acc, x);
              }
              nb.create<memref::StoreOp>(loc, acc, C, ValueRange{bi, m, n});
            });
          });
          if (epilogue)
            epilogue(bb, loc, bi, m0, m1, e.idx(bb, 0), e.idx(bb, e.N));
          bb.create<scf::YieldOp>(loc);
        });
    if (e.batch * chunks > 1)
      sum->setAttr(kParallelWorkAttr, rb.getI64IntegerAttr(e.batch * e.M * e.N * e.splits));
  }
  rb.create<scf::YieldOp>(loc);
}

} // namespace soma
