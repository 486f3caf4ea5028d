//===- RowKernels.cpp - Softmax and its gradients, one row at a time -----===//
//
// The softmax family along a contiguous last axis, as one loop nest: the
// rows are shared by the threads, and each row is read from memory once,
// by its first pass (a maximum or a sum, in vectors), then again from
// cache by the passes that need it (L1 for a softmax row). Built from four
// linalg kernels (a maximum, e^(x - m), a sum, a division), the softmax of
// [8192, 256] read x twice and read and wrote y twice. Batch norm's
// training form and gradient are the same a channel at a time (a channel
// of [32, 64, 32, 32] is 128 KiB: read again from L2).
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/Lowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <limits>

using namespace mlir;

namespace soma {

namespace {

/// The vectors of one row: `cols` elements from flat index `base` of 1-D
/// memrefs, in full vectors of VL, then a masked one for the rest.
struct Row {
  Location loc;
  int64_t VL, cols;
  VectorType vt;
  Value base;

  Value idx(OpBuilder &b, int64_t v) const { return b.create<arith::ConstantIndexOp>(loc, v); }
  Value splat(OpBuilder &b, double v) const {
    return b.create<arith::ConstantOp>(loc, DenseElementsAttr::get(vt, b.getF32FloatAttr(static_cast<float>(v))));
  }
  Value broadcast(OpBuilder &b, Value scalar) const { return b.create<vector::BroadcastOp>(loc, vt, scalar); }

  /// The vector at offset `at` of the row (`pass` in the lanes outside
  /// `mask`, when there is one).
  Value load(OpBuilder &b, Value mem, Value at, Value mask, double pass) const {
    Value i = b.create<arith::AddIOp>(loc, base, at);
    if (!mask)
      return b.create<vector::LoadOp>(loc, vt, mem, ValueRange{i});
    return b.create<vector::MaskedLoadOp>(loc, vt, mem, ValueRange{i}, mask, splat(b, pass));
  }
  void store(OpBuilder &b, Value mem, Value at, Value mask, Value v) const {
    Value i = b.create<arith::AddIOp>(loc, base, at);
    if (!mask)
      b.create<vector::StoreOp>(loc, v, mem, ValueRange{i});
    else
      b.create<vector::MaskedStoreOp>(loc, mem, ValueRange{i}, mask, v);
  }

  using ChunkFn = function_ref<SmallVector<Value>(OpBuilder &, Value at, Value mask, ValueRange acc)>;
  /// Calls fn on every vector of the row in order, carrying `acc`: the full
  /// ones in a loop (mask null), then the partial one with its mask.
  SmallVector<Value> chunks(OpBuilder &b, ValueRange acc, ChunkFn fn) const {
    const int64_t full = cols / VL * VL;
    SmallVector<Value> out(acc);
    if (full > 0) {
      auto loop = b.create<scf::ForOp>(loc, idx(b, 0), idx(b, full), idx(b, VL), acc,
                                       [&](OpBuilder &lb, Location, Value at, ValueRange a) {
                                         lb.create<scf::YieldOp>(loc, fn(lb, at, Value(), a));
                                       });
      out.assign(loop.getResults().begin(), loop.getResults().end());
    }
    if (cols > full) {
      Value mask = b.create<vector::CreateMaskOp>(loc, VectorType::get({VL}, b.getI1Type()),
                                                  ValueRange{idx(b, cols - full)});
      out = fn(b, idx(b, full), mask, out);
    }
    return out;
  }

  /// acc + v, with only the lanes of `mask` added when there is one.
  Value addLanes(OpBuilder &b, Value acc, Value v, Value mask) const {
    if (mask)
      v = b.create<arith::SelectOp>(loc, mask, v, splat(b, 0.0));
    return b.create<arith::AddFOp>(loc, acc, v);
  }
  /// The sum of a vector's lanes, as a tree.
  Value sum(OpBuilder &b, Value v) const {
    return b.create<vector::ReductionOp>(loc, vector::CombiningKind::ADD, v, Value(),
                                         arith::FastMathFlags::reassoc);
  }
  /// A scalar f32 constant.
  Value scalar(OpBuilder &b, double v) const { return f32Const(b, loc, v); }
};

} // namespace

/// A memref of rank >= 1 as 1-D.
static Value flatten(OpBuilder &b, Location loc, Value v) {
  auto t = cast<MemRefType>(v.getType());
  if (t.getRank() == 1)
    return v;
  ReassociationIndices all;
  for (int64_t d = 0; d < t.getRank(); ++d)
    all.push_back(d);
  return b.create<memref::CollapseShapeOp>(loc, v, ArrayRef<ReassociationIndices>{all});
}

void emitRowKernel(OpBuilder &b, Location loc, RowOp op, ValueRange ins, Value out, int64_t rows, int64_t cols,
                   const GemmConfig &cfg) {
  const int64_t VL = cfg.vl;
  auto flat = [&](Value v) { return flatten(b, loc, v); };
  Value a = flat(ins[0]), g = ins.size() > 1 ? flat(ins[1]) : Value(), o = flat(out);
  Value zero = b.create<arith::ConstantIndexOp>(loc, 0), one = b.create<arith::ConstantIndexOp>(loc, 1);
  auto loop = b.create<scf::ForOp>(
      loc, zero, b.create<arith::ConstantIndexOp>(loc, rows), one, ValueRange{},
      [&](OpBuilder &rb, Location, Value r, ValueRange) {
        // (Vector constants are made inside the loop: soma-outline-loops
        // outlines a nest that captures only scalars and memrefs.)
        Value base = rb.create<arith::MulIOp>(loc, r, rb.create<arith::ConstantIndexOp>(loc, cols));
        Row row{loc, VL, cols, VectorType::get({VL}, rb.getF32Type()), base};
        switch (op) {
        case RowOp::softmax:
        case RowOp::logSoftmax: {
          // m = max x (NaN ignored: it makes the whole row NaN below).
          Value m = row.chunks(rb, {row.splat(rb, -std::numeric_limits<double>::infinity())},
                               [&](OpBuilder &cb, Value at, Value mask, ValueRange acc) -> SmallVector<Value> {
                                 Value x = row.load(cb, a, at, mask, -std::numeric_limits<double>::infinity());
                                 Value gt = cb.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT, x, acc[0]);
                                 return {cb.create<arith::SelectOp>(loc, gt, x, acc[0])};
                               })[0];
          m = row.broadcast(rb, rb.create<vector::ReductionOp>(loc, vector::CombiningKind::MAXNUMF, m));
          // s = sum e^(x - m), softmax storing e^(x - m) in out.
          Value s = row.chunks(rb, {row.splat(rb, 0.0)},
                               [&](OpBuilder &cb, Value at, Value mask, ValueRange acc) -> SmallVector<Value> {
                                 Value x = row.load(cb, a, at, mask, 0.0);
                                 Value e = cb.create<math::ExpOp>(loc, cb.create<arith::SubFOp>(loc, x, m));
                                 if (op == RowOp::softmax)
                                   row.store(cb, o, at, mask, e);
                                 return {row.addLanes(cb, acc[0], e, mask)};
                               })[0];
          s = row.sum(rb, s);
          if (op == RowOp::softmax) {
            // out = e^(x - m) * (1 / s)
            Value inv = row.broadcast(rb, rb.create<arith::DivFOp>(loc, row.scalar(rb, 1.0), s));
            row.chunks(rb, {}, [&](OpBuilder &cb, Value at, Value mask, ValueRange) -> SmallVector<Value> {
              row.store(cb, o, at, mask, cb.create<arith::MulFOp>(loc, row.load(cb, o, at, mask, 0.0), inv));
              return {};
            });
          } else {
            // out = (x - m) - log s
            Value logS = row.broadcast(rb, rb.create<math::LogOp>(loc, s));
            row.chunks(rb, {}, [&](OpBuilder &cb, Value at, Value mask, ValueRange) -> SmallVector<Value> {
              Value shifted = cb.create<arith::SubFOp>(loc, row.load(cb, a, at, mask, 0.0), m);
              row.store(cb, o, at, mask, cb.create<arith::SubFOp>(loc, shifted, logS));
              return {};
            });
          }
          break;
        }
        case RowOp::softmaxGrad:
        case RowOp::logSoftmaxGrad: {
          // s = sum g y (softmax) or sum g (log-softmax)
          Value s = row.chunks(rb, {row.splat(rb, 0.0)},
                               [&](OpBuilder &cb, Value at, Value mask, ValueRange acc) -> SmallVector<Value> {
                                 Value gv = row.load(cb, g, at, mask, 0.0);
                                 if (op == RowOp::logSoftmaxGrad)
                                   return {cb.create<arith::AddFOp>(loc, acc[0], gv)};
                                 Value y = row.load(cb, a, at, mask, 0.0);
                                 return {cb.create<math::FmaOp>(loc, gv, y, acc[0])};
                               })[0];
          s = row.broadcast(rb, row.sum(rb, s));
          // out = y (g - s) or g - e^y s
          row.chunks(rb, {}, [&](OpBuilder &cb, Value at, Value mask, ValueRange) -> SmallVector<Value> {
            Value y = row.load(cb, a, at, mask, 0.0), gv = row.load(cb, g, at, mask, 0.0);
            Value d = op == RowOp::softmaxGrad
                          ? cb.create<arith::MulFOp>(loc, y, cb.create<arith::SubFOp>(loc, gv, s)).getResult()
                          : cb.create<arith::SubFOp>(
                                    loc, gv, cb.create<arith::MulFOp>(loc, cb.create<math::ExpOp>(loc, y), s))
                                .getResult();
            row.store(cb, o, at, mask, d);
            return {};
          });
          break;
        }
        }
        rb.create<scf::YieldOp>(loc);
      });
  // The work as the grain rule weighs a linalg kernel's (LinalgToLoops.cpp):
  // per element, the arrays read or written plus 4 per exponential, times
  // 4 / 3.
  const int64_t cost = op == RowOp::softmaxGrad ? 3 : op == RowOp::logSoftmaxGrad ? 7 : 6;
  if (rows > 1)
    loop->setAttr(kParallelWorkAttr, b.getI64IntegerAttr(rows * cols * cost * 4 / 3));
}

void emitBatchNorm(OpBuilder &b, Location loc, const BatchNormKernel &k, const GemmConfig &cfg) {
  const int64_t VL = cfg.vl;
  auto xt = cast<MemRefType>(k.x.getType());
  const int64_t N = xt.getDimSize(0), C = xt.getDimSize(1), S = xt.getNumElements() / (N * C);
  const double M = static_cast<double>(N * S);
  const bool grad = static_cast<bool>(k.dy);
  Value x = flatten(b, loc, k.x), dy = grad ? flatten(b, loc, k.dy) : Value();
  Value out = grad ? flatten(b, loc, k.dx) : k.y ? flatten(b, loc, k.y) : Value();
  Value zero = b.create<arith::ConstantIndexOp>(loc, 0), one = b.create<arith::ConstantIndexOp>(loc, 1);
  auto loop = b.create<scf::ForOp>(
      loc, zero, b.create<arith::ConstantIndexOp>(loc, C), one, ValueRange{},
      [&](OpBuilder &cb, Location, Value c, ValueRange) {
        // The channel's helpers (its rows' bases are set per row below).
        const Row ch{loc, VL, S, VectorType::get({VL}, cb.getF32Type()), Value()};
        // fn over the channel's N rows of S elements, carrying acc.
        using RowFn = function_ref<SmallVector<Value>(OpBuilder &, const Row &, ValueRange acc)>;
        auto forRows = [&](OpBuilder &nb, ValueRange init, RowFn fn) -> SmallVector<Value> {
          auto rows = nb.create<scf::ForOp>(
              loc, ch.idx(nb, 0), ch.idx(nb, N), ch.idx(nb, 1), init, [&](OpBuilder &rb, Location, Value n, ValueRange acc) {
                Value plane = rb.create<arith::AddIOp>(loc, rb.create<arith::MulIOp>(loc, n, ch.idx(rb, C)), c);
                Row row = ch;
                row.base = rb.create<arith::MulIOp>(loc, plane, ch.idx(rb, S));
                rb.create<scf::YieldOp>(loc, fn(rb, row, acc));
              });
          rows->setAttr(kNoUnrollAttr, nb.getUnitAttr());
          return SmallVector<Value>(rows.getResults());
        };
        Value zeroVec = ch.splat(cb, 0.0);
        Value invM = ch.scalar(cb, 1.0 / M);
        if (!grad) {
          // mean = sum x / M
          Value s = forRows(cb, {zeroVec}, [&](OpBuilder &rb, const Row &row, ValueRange acc) {
            return row.chunks(rb, acc, [&](OpBuilder &ib, Value at, Value mask, ValueRange a) -> SmallVector<Value> {
              return {row.addLanes(ib, a[0], row.load(ib, x, at, mask, 0.0), mask)};
            });
          })[0];
          Value mean = cb.create<arith::MulFOp>(loc, ch.sum(cb, s), invM);
          Value meanV = ch.broadcast(cb, mean);
          // var = sum (x - mean)^2 / M, from cache
          Value q = forRows(cb, {zeroVec}, [&](OpBuilder &rb, const Row &row, ValueRange acc) {
            return row.chunks(rb, acc, [&](OpBuilder &ib, Value at, Value mask, ValueRange a) -> SmallVector<Value> {
              Value d = ib.create<arith::SubFOp>(loc, row.load(ib, x, at, mask, 0.0), meanV);
              if (mask)
                d = ib.create<arith::SelectOp>(loc, mask, d, row.splat(ib, 0.0));
              return {ib.create<math::FmaOp>(loc, d, d, a[0])};
            });
          })[0];
          Value var = cb.create<arith::MulFOp>(loc, ch.sum(cb, q), invM);
          cb.create<memref::StoreOp>(loc, mean, k.mean, ValueRange{c});
          cb.create<memref::StoreOp>(loc, var, k.var, ValueRange{c});
          // y = (x - mean) * (scale / sqrt(var + eps)) + shift, unless
          // only the statistics are wanted.
          if (out) {
            Value factor = cb.create<arith::DivFOp>(
                loc, cb.create<memref::LoadOp>(loc, k.scale, ValueRange{c}),
                cb.create<math::SqrtOp>(loc, cb.create<arith::AddFOp>(loc, var, ch.scalar(cb, k.eps))));
            Value factorV = ch.broadcast(cb, factor);
            Value shiftV = ch.broadcast(cb, cb.create<memref::LoadOp>(loc, k.shift, ValueRange{c}));
            forRows(cb, {}, [&](OpBuilder &rb, const Row &row, ValueRange) {
              return row.chunks(rb, {}, [&](OpBuilder &ib, Value at, Value mask, ValueRange) -> SmallVector<Value> {
                Value d = ib.create<arith::SubFOp>(loc, row.load(ib, x, at, mask, 0.0), meanV);
                row.store(ib, out, at, mask,
                          ib.create<arith::AddFOp>(loc, ib.create<arith::MulFOp>(loc, d, factorV), shiftV));
                return {};
              });
            });
          }
        } else {
          // sdy = sum dy, sdyd = sum dy (x - mean)
          Value mean = cb.create<memref::LoadOp>(loc, k.mean, ValueRange{c});
          Value meanV = ch.broadcast(cb, mean);
          SmallVector<Value> sums =
              forRows(cb, {zeroVec, zeroVec}, [&](OpBuilder &rb, const Row &row, ValueRange acc) {
                return row.chunks(rb, acc,
                                  [&](OpBuilder &ib, Value at, Value mask, ValueRange a) -> SmallVector<Value> {
                                    Value g = row.load(ib, dy, at, mask, 0.0);
                                    Value d = ib.create<arith::SubFOp>(loc, row.load(ib, x, at, mask, 0.0), meanV);
                                    return {ib.create<arith::AddFOp>(loc, a[0], g),
                                            ib.create<math::FmaOp>(loc, g, d, a[1])};
                                  });
              });
          Value sdy = ch.sum(cb, sums[0]), sdyd = ch.sum(cb, sums[1]);
          Value r = cb.create<arith::DivFOp>(
              loc, ch.scalar(cb, 1.0),
              cb.create<math::SqrtOp>(loc, cb.create<arith::AddFOp>(
                                               loc, cb.create<memref::LoadOp>(loc, k.var, ValueRange{c}),
                                               ch.scalar(cb, k.eps))));
          cb.create<memref::StoreOp>(loc, sdy, k.dshift, ValueRange{c});
          cb.create<memref::StoreOp>(loc, cb.create<arith::MulFOp>(loc, sdyd, r), k.dscale, ValueRange{c});
          // dx = scale r (dy - sdy / M - (x - mean) r^2 sdyd / M), from cache
          Value kV = ch.broadcast(cb, cb.create<arith::MulFOp>(loc, cb.create<memref::LoadOp>(loc, k.scale, ValueRange{c}), r));
          Value aV = ch.broadcast(cb, cb.create<arith::MulFOp>(loc, sdy, invM));
          Value bV = ch.broadcast(cb, cb.create<arith::MulFOp>(
                                   loc, cb.create<arith::MulFOp>(loc, cb.create<arith::MulFOp>(loc, r, r), sdyd), invM));
          forRows(cb, {}, [&](OpBuilder &rb, const Row &row, ValueRange) {
            return row.chunks(rb, {}, [&](OpBuilder &ib, Value at, Value mask, ValueRange) -> SmallVector<Value> {
              Value d = ib.create<arith::SubFOp>(loc, row.load(ib, x, at, mask, 0.0), meanV);
              Value t = ib.create<arith::SubFOp>(loc, row.load(ib, dy, at, mask, 0.0), aV);
              t = ib.create<arith::SubFOp>(loc, t, ib.create<arith::MulFOp>(loc, d, bV));
              row.store(ib, out, at, mask, ib.create<arith::MulFOp>(loc, t, kV));
              return {};
            });
          });
        }
        cb.create<scf::YieldOp>(loc);
      });
  // The work as the grain rule weighs a linalg kernel's: per element, the
  // arrays read or written by its passes (forward: x three times and y, or
  // x twice for the statistics alone; gradient: x and dy twice, dx), times
  // 4 / 3.
  if (C > 1)
    loop->setAttr(kParallelWorkAttr, b.getI64IntegerAttr(N * C * S * (grad ? 5 : out ? 4 : 2) * 4 / 3));
}

} // namespace soma
