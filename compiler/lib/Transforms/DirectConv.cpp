//===- DirectConv.cpp - Convolutions and filter gradients, directly -------===//
//
// Two loop nests for a convolution of stride 1, no dilation and one group
// whose output is at most as wide as its input (OW <= W), with vectors
// along the pixels: its filter gradient (emitFilterGradient) and the
// convolution itself (emitDirectConv, below). One with at least VL
// filters that fill their vectors, padded or not, may have its vectors
// along the filters instead (ConvGrid::alongFilters and
// filterGradientAlongFilters; at the end of the file); the convolution
// along the filters also takes stride 2.
//
// Stride 2 (when each half of a vector of output pixels lies in one output
// row) uses the output as the grid: a half's points are the even elements
// of VL consecutive elements of a row of x, so a chunk of x is two masked
// loads and a shuffle, and the mask table holds two masks per entry.
//
// Both run on a grid of OH rows of W pixels (the input's row pitch), on
// which every window tap (u, v) is a constant shift of the pixel index:
//
//   dw[k, (c, u, v)] = sum over n, p of dy[n, k, p] * x[n, c, p + s(u, v)]
//
// with p = i * W + j a grid pixel and s(u, v) = (u - pt) * W + (v - pl),
// and 0 where the window point (i + u - pt, j + v - pl) is outside the
// image. For a "same" convolution (OW = W) the grid is the output; for a
// narrower one ("valid", OW = W - kw + 1) the last W - OW columns of each
// grid row are not outputs: the convolution computes them and stores only
// the others (compressed stores), and the filter gradient reads dy there
// as 0 (dy's rows spread over the grid by expanding loads, once per block
// into stack scratch when it fits, and masked loads of x). LeNet-5's
// second layer (14 x 14 -> 10 x 10) would compute 14 of every 10 outputs'
// worth here; with 16 filters it takes the vectors along the filters.
//
// As a GEMM, both operands of the filter gradient are read along the sum
// (the pixels): the packing must gather im2col's columns and transpose
// every block of both (30% of a ResNet-8 training step). Here the vectors
// span VL consecutive grid pixels, so every load is a contiguous (masked)
// vector load of dy or x:
//
//   parallel over units (groups of images; their partial sums added after):
//     for each block of 1024-2048 pixels (several images or part of one):
//       table: for each chunk of VL pixels and each tap (u, v), the lanes
//              whose window point is inside the image (and that are
//              outputs)
//       (grid wider than the output: dy of the block spread over the grid)
//       for each tile of KT rows k:
//         for each row (c, u) of the kernel: RT = kw columns r = (c, u, v)
//           KT x RT accumulators of VL pixels
//           for each chunk p0 of the block: the RT masks from the table
//             for n in the block: KT loads of dy, RT of x (consecutive
//             windows: one base, constant offsets), KT x RT FMAs
//           the accumulators' lanes summed (a fixed tree each, VL
//           accumulators merged at once), added to dw (or the part)
//
// The order of every sum is fixed by the shapes alone: pixels p0 + lane,
// images in order, lanes by the tree, then the blocks and the units in
// order; the same for any number of threads.
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/Lowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <map>

using namespace mlir;

namespace soma {

namespace {
int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
/// a rounded up to a multiple of b.
int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }
/// The vector registers: 32 with AVX-512, 16 with AVX2 or SSE.
int64_t vectorRegisters(int64_t VL) { return VL >= 16 ? 32 : 16; }
} // namespace

std::optional<ConvGrid> ConvGrid::of(ArrayRef<int64_t> x, ArrayRef<int64_t> kernel, ArrayRef<int64_t> stride,
                                     ArrayRef<int64_t> dilation, ArrayRef<int64_t> padding, int64_t vectorWidth) {
  auto ones = [](ArrayRef<int64_t> a) { return a.size() == 2 && a[0] == 1 && a[1] == 1; };
  // A kernel row is one register tile of the filter gradient: at most 8
  // wide.
  if (x.size() != 4 || kernel.size() != 2 || padding.size() != 4 || stride.size() != 2 ||
      stride[0] != stride[1] || stride[0] < 1 || stride[0] > 2 || !ones(dilation) || kernel[1] > 8 ||
      llvm::any_of(padding, [](int64_t p) { return p < 0; }) || x[2] + padding[0] + padding[2] < kernel[0] ||
      x[3] + padding[1] + padding[3] < kernel[1])
    return std::nullopt;
  ConvGrid g;
  g.kh = kernel[0], g.kw = kernel[1], g.pt = padding[0], g.pl = padding[1], g.stride = stride[0];
  g.unpadded = llvm::all_of(padding, [](int64_t p) { return p == 0; });
  g.oh = (x[2] + padding[0] + padding[2] - kernel[0]) / g.stride + 1;
  g.ow = (x[3] + padding[1] + padding[3] - kernel[1]) / g.stride + 1;
  // Stride 1: the output at most as wide as the input. Stride 2: each half
  // of a chunk of pixels in one output row.
  if (g.stride == 1 ? g.ow > x[3] : g.ow % (vectorWidth / 2) != 0)
    return std::nullopt;
  // The forward convolution's table of window masks covers the grid, on
  // the calling thread's stack: about grid pixels x taps / 8 bytes, at
  // most 1 MiB (a 7 x 7 kernel over 224 x 224 needs 300 KiB).
  if (g.oh * x[3] * g.kh * g.kw > (int64_t{8} << 20))
    return std::nullopt;
  return g;
}

namespace {

/// Cycles of one tap of a register tile of kt vectors x px broadcast
/// points: kt * px FMAs (two a cycle), px + kt loads (about three a
/// cycle), at least 4 (each accumulator's FMAs depend on each other).
double tapCycles(int64_t kt, int64_t px) { return std::max({kt * px / 2.0, (px + kt) / 3.0, 4.0}); }

/// [0, total) in steps of `step`: (the number of whole steps, step) and
/// (0 or 1, the rest).
std::array<std::pair<int64_t, int64_t>, 2> steps(int64_t total, int64_t step) {
  return {std::pair{total / step, step}, std::pair{total % step ? int64_t{1} : int64_t{0}, total % step}};
}

/// The forward convolution's register tile with vectors along the
/// filters: KT filter vectors x TR rows x TC columns of output pixels.
/// Each (channel, kernel row) step loads KT filter vectors per tap and
/// broadcasts each point of x once for all the taps of the row that read
/// it (the kernel row's taps are unrolled, and a point of pixel (r, s + 1)
/// at tap v is pixel (r, s)'s at v + S, stride S): TR * (S (TC - 1) + kw)
/// points when kw >= S.
/// Measured (Intel Sapphire Rapids, 2 threads, in-process A/B;
/// [8, 64, 58, 58] -> 64, 3 x 3, valid): 4 x 2 x 3 443 GF/s (about 91%
/// of the FMA peak); 4 x 1 x 6 (fewer points) 10% slower, its loop
/// spilling accumulators, and 4 x 1 x 7 64% slower; on ResNet-8's layers
/// (valid forms) 2 x 2 x 4 and 1 x 2 x 8 beat 2 x 3 x 4 and 1 x 3 x 8 by
/// 10% or more. So: at most 24 accumulators with three or four filter
/// vectors, 16 with one or two, two rows, as many columns as fit (with
/// AVX2, 16 registers: half). The columns then split evenly: LeNet-5's
/// second layer (10 x 10 outputs, one filter vector) takes two tiles of 5
/// columns instead of 8 and 2, whose 4 accumulators waited on each
/// other's FMAs (2 threads, alternating processes, medians: LeNet-5's
/// inference 0.262 -> 0.251 ms, its training step 0.843 -> 0.808);
/// ResNet's, VGG's and ResNet-8's layers keep their tiles.
struct FilterTile {
  int64_t KT = 1, TR = 1, TC = 1;
};
FilterTile filterTile(int64_t OH, int64_t OW, int64_t KV, int64_t VL) {
  FilterTile t;
  t.KT = std::min<int64_t>(KV, 4);
  const int64_t budget = (t.KT >= 3 ? 24 : 16) * vectorRegisters(VL) / 32;
  t.TR = std::min<int64_t>(OH, 2);
  t.TC = std::clamp<int64_t>(budget / (t.KT * t.TR), 1, OW);
  t.TC = ceilDiv(OW, ceilDiv(OW, t.TC));
  return t;
}

/// The forward convolution along the filters (KP filters, whole vectors
/// of VL) works in bands of `rows` output rows, a whole number of the
/// tile's TR (at least TR), whose outputs T (pixel-major, whole vectors
/// of pixels) take at most 64 KiB and, with padding, whose S (rows - 1) +
/// kh rows of x (stride S; inputRows), copied between zeros at a pitch of
/// whole vectors, at most 128 KiB, both on the unit's stack: each band's
/// kh - S extra rows of x are copied once per band, not per row of tiles (the ResNet 64 x 56 x
/// 56 layer, in-process A/B against the grid: 9% faster with bands of 2
/// rows, 12% with these; limits of 128 and 256 KiB changed it by less
/// than 2%). Without padding, x is read in place (pitch W).
struct ConvBand {
  int64_t rows, pitch;
  int64_t outBytes(const ConvGrid &g, int64_t KP, int64_t VL) const { return roundUp(rows * g.ow, VL) * KP * 4; }
  /// The rows of x a band of `rows` output rows reads.
  int64_t inputRows(const ConvGrid &g) const { return (rows - 1) * g.stride + g.kh; }
  int64_t copyBytes(const ConvGrid &g, int64_t C) const {
    return g.unpadded ? 0 : C * inputRows(g) * pitch * 4;
  }
};
ConvBand convBand(const ConvGrid &g, int64_t C, int64_t W, int64_t KP, int64_t TR, int64_t VL) {
  ConvBand band{TR, g.unpadded ? W : roundUp((g.ow - 1) * g.stride + g.kw, VL)};
  while (band.rows + TR <= g.oh) {
    const ConvBand more{band.rows + TR, band.pitch};
    if (more.outBytes(g, KP, VL) > (64 << 10) || more.copyBytes(g, C) > (128 << 10))
      break;
    band = more;
  }
  return band;
}

} // namespace

bool ConvGrid::alongFilters(ArrayRef<int64_t> x, int64_t K, int64_t vectorWidth) const {
  const int64_t VL = vectorWidth, KP = roundUp(K, VL), R = x[1] * kh * kw;
  if (K < VL)
    return false;
  // A 1 x 1 convolution fills the grid's vectors as well as the filters'
  // do (no taps to share points between): the grid was faster (8 x 64 x
  // 28 x 28 -> 64 on 1 thread 0.243 against 0.271 ms; 128 -> 256 filters
  // 1.69 against 1.92). With a wider window, the filters' vectors win
  // when there are two or more of them, at least 3/4 full (in-process A/B
  // against the grid, Intel Sapphire Rapids, 2 threads, padding 1: the
  // ResNet 64 x 56 x 56 layer 12% faster, ResNet-8's 32 x 16 x 16 and 64
  // x 8 x 8 2% and 10%; with one vector of 16 filters, its 16 x 32 x 32
  // layer 5% slower), and always when the grid is wider than the output
  // by more (LeNet-5's second layer: 10 outputs of every 14 grid pixels).
  //
  // Stride 2 on the same terms (its grid is the output: never wider). Its
  // tiles' output column s reads x from column 2s, a kernel row's TR x TC
  // pixels TR x (2 (TC - 1) + kw) points (kw > 1). Against the grid (two
  // masked loads and a shuffle per chunk of x), Intel Sapphire Rapids, 2
  // threads: in perf samples of ResNet-8's inference its 3 x 3 stride-2
  // layers (16 x 32 x 32 -> 32, 32 x 16 x 16 -> 64) each took 21% fewer,
  // its 1 x 1 shortcuts 41% more and 14% fewer (they stay on the grid
  // here); then, alternating processes, medians of 4-5 rounds, ResNet-8's
  // inference 2.98 -> 2.77 ms and its training step 10.98 -> 10.36 ms.
  const int64_t gridWidth = stride == 1 ? x[3] : ow;
  const bool wider = K * gridWidth > ow * KP;
  if (!wider && (kh * kw == 1 || KP < 2 * VL || 4 * K < 3 * KP))
    return false;
  // Stack: the transposed filters (calling thread); a band's outputs and,
  // with padding, its rows of x with their zeros (each unit).
  // (The bands grow from the tile's rows only within 64 and 128 KiB.)
  const ConvBand band = convBand(*this, x[1], x[3], KP, filterTile(oh, ow, KP / VL, VL).TR, VL);
  return roundUp(R, VL) * KP * 4 <= (1 << 20) && band.outBytes(*this, KP, VL) <= (256 << 10) &&
         band.copyBytes(*this, x[1]) <= (256 << 10);
}

namespace {
/// The filter gradient's register tile along the filters: KT filter
/// vectors x the window's taps (of one channel; each point of x at a
/// constant offset from the pixel's) cut into NT even tiles of RT. At
/// least two pixels a step: KT * RT accumulators, 2 * KT vectors of dy
/// and a broadcast point in 32 registers with AVX-512 (16 otherwise).
/// LeNet-5's 5 x 5 window is one tile of 25.
struct GradientTile {
  int64_t kt, nt;
};
GradientTile gradientTile(int64_t taps, int64_t KV, int64_t VL) {
  int64_t KT = 1, NT = taps;
  double best = 0;
  for (int64_t kt = 1; kt <= std::min<int64_t>(KV, 4); ++kt)
    for (int64_t nt = 1; nt <= taps; ++nt) {
      const int64_t rt = ceilDiv(taps, nt);
      if (kt * rt + 2 * kt + 1 > vectorRegisters(VL))
        continue;
      double cost = 0;
      for (auto [nk, k] : steps(KV, kt))
        for (int64_t t = 0; t < nt; ++t)
          cost += double(nk) * tapCycles(k, taps / nt + (t < taps % nt ? 1 : 0));
      // (Of equal estimates, the fewest tiles of taps, then the most
      // accumulators: on the ResNet 64 x 56 x 56 layer, 1 thread, 8
      // images, one pixel a step, 2 filter vectors x 9 taps took 8.7-9.0
      // ms, 4 x (5, 4) 9.3-9.4, 1 x 9 10.6-11.7.)
      const bool tie = best != 0 && cost < best + 1e-9 && cost > best - 1e-9;
      if (best == 0 || cost < best - 1e-9 ||
          (tie && (nt < NT || (nt == NT && kt * rt > KT * ceilDiv(taps, NT))))) {
        best = cost;
        KT = kt, NT = nt;
      }
    }
  return {KT, NT};
}

/// Pixels a step of a kt x rt tile of the filter gradient: as many as 4,
/// while their vectors of dy, the accumulators and a broadcast point fit
/// in the registers. Against 2 pixels a step, 4 were 5% faster on the
/// ResNet 64 x 56 x 56 and VGG 128 x 56 x 56 layers (2 threads) and on
/// ResNet-8's 32 x 16 x 16 layer, as fast on the others; 3 were as fast as
/// 4 on the first two, 6 no faster.
int64_t gradientStep(int64_t kt, int64_t rt, int64_t VL) {
  int64_t P = 4;
  while (P > 2 && kt * rt + P * kt + 1 > vectorRegisters(VL))
    --P;
  return P;
}

/// The filter gradient along the filters (KP filters, whole vectors of
/// VL) works in bands of output rows. With padding, each band's kh - 1 +
/// rows rows of x (W wide) are copied at a pitch of whole vectors.
///
/// Channels outer (per band: for each channel, its rows copied, then every
/// tile of filters and taps): bands whose transposed dy is at most 64 KiB
/// (at least one row), and the copy at most 64 KiB.
///
/// Filter tiles outer (kvOuter; per band: every channel's rows copied,
/// then for each tile of filters and taps, every channel), when there are
/// several tiles of filters and the band's dy is more than 32 KiB (the
/// ResNet 64 x 56 x 56 and VGG 128 x 56 x 56 layers): channels outer, each
/// channel would sweep the whole band's dy, more than L1; filter tiles
/// outer, the tile's part of it stays there for every channel. Bands of
/// dy at most 128 KiB and the copy at most 256 KiB (else channels outer).
/// On the VGG layer, 2 threads, with two pixels a step: 10% faster than
/// channels outer, on the ResNet layer 3.5%; on ResNet-8's 64 x 8 x 8 layer
/// (dy 16 KiB) filter tiles outer were 4% slower.
struct GradientBand {
  int64_t rows, pitch;
  bool kvOuter;
};
GradientBand gradientBand(const ConvGrid &g, int64_t C, int64_t W, int64_t KP, int64_t VL) {
  const int64_t KV = KP / VL, pitch = g.unpadded ? W : roundUp(g.ow + g.kw - 1, VL);
  auto rowsWithin = [&](int64_t bytes) { return std::clamp<int64_t>(bytes / (g.ow * KP * 4), 1, g.oh); };
  auto dyBytes = [&](int64_t rows) { return roundUp(rows * g.ow, VL) * KP * 4; };
  const int64_t rows = rowsWithin(int64_t{64} << 10);
  if (KV > gradientTile(g.kh * g.kw, KV, VL).kt && dyBytes(rows) > (int64_t{32} << 10))
    for (int64_t r = rowsWithin(int64_t{128} << 10); r >= 1; --r)
      if (g.unpadded || C * (r + g.kh - 1) * pitch * 4 <= (int64_t{256} << 10))
        return {r, pitch, true};
  return {rows, pitch, false};
}
} // namespace

bool ConvGrid::filterGradientAlongFilters(ArrayRef<int64_t> x, int64_t K, int64_t vectorWidth) const {
  const int64_t VL = vectorWidth, KP = roundUp(K, VL);
  if (stride != 1 || K < VL || K * x[3] < ow * KP || ow * KP * 4 > (64 << 10))
    return false;
  // (Channels outer, the copy of x's rows at most 64 KiB too.)
  const GradientBand band = gradientBand(*this, x[1], x[3], KP, VL);
  return unpadded || band.kvOuter || (band.rows + kh - 1) * band.pitch * 4 <= (64 << 10);
}

namespace {

void emitConvAlongFilters(OpBuilder &b, Location loc, const DirectConv &g, Value C, const GemmConfig &cfg,
                          const GemmEpilogue &epilogue);
void emitFilterGradientAlongFilters(OpBuilder &b, Location loc, const FilterGradient &g, Value C,
                                    const GemmConfig &cfg, const GemmEpilogue &epilogue);

struct Emitter {
  OpBuilder &b;
  Location loc;
  int64_t VL;
  VectorType ivec = VectorType::get({VL}, b.getI32Type());
  VectorType mvec = VectorType::get({VL}, b.getI1Type());
  Value idx(OpBuilder &nb, int64_t v) { return nb.create<arith::ConstantIndexOp>(loc, v); }
  Value add(OpBuilder &nb, Value x, Value y) { return nb.create<arith::AddIOp>(loc, x, y); }
  Value mul(OpBuilder &nb, Value x, Value y) { return nb.create<arith::MulIOp>(loc, x, y); }
  Value min(OpBuilder &nb, Value x, Value y) { return nb.create<arith::MinSIOp>(loc, x, y); }
  Value max(OpBuilder &nb, Value x, Value y) { return nb.create<arith::MaxSIOp>(loc, x, y); }
  Value lt(OpBuilder &nb, Value x, Value y) { return nb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::slt, x, y); }
  /// for (i = lo; i < hi; i += step) body(i), run as written.
  scf::ForOp blockLoop(OpBuilder &nb, Value lo, Value hi, int64_t step,
                       function_ref<void(OpBuilder &, Value)> body) {
    auto l = nb.create<scf::ForOp>(loc, lo, hi, idx(nb, step), ValueRange{},
                                   [&](OpBuilder &lb, Location, Value i, ValueRange) {
                                     body(lb, i);
                                     lb.create<scf::YieldOp>(loc);
                                   });
    l->setAttr(kNoUnrollAttr, nb.getUnitAttr());
    return l;
  }
  /// A vector<VL x f32> of zeros.
  Value zeros(OpBuilder &nb) {
    return nb.create<arith::ConstantOp>(
        loc, DenseElementsAttr::get(VectorType::get({VL}, nb.getF32Type()), nb.getF32FloatAttr(0.0f)));
  }
  /// for (i = lo; i < hi; ++i) acc = body(i, acc), not unrolled: the loop's
  /// results.
  scf::ForOp accLoop(OpBuilder &nb, Value lo, Value hi, ValueRange acc,
                     function_ref<SmallVector<Value>(OpBuilder &, Value, ValueRange)> body) {
    auto l = nb.create<scf::ForOp>(loc, lo, hi, idx(nb, 1), acc, [&](OpBuilder &xb, Location, Value i, ValueRange in) {
      xb.create<scf::YieldOp>(loc, body(xb, i, in));
    });
    l->setAttr(kNoUnrollAttr, nb.getUnitAttr());
    return l;
  }
  /// The images [n0, n1) of unit u of `units` over N images: one each, or
  /// all of them in a single unit.
  std::pair<Value, Value> unitImages(OpBuilder &nb, Value u, int64_t units, int64_t N) {
    if (units > 1)
      return {u, add(nb, u, idx(nb, 1))};
    return {idx(nb, 0), idx(nb, N)};
  }
  /// A region that soma-outline-loops makes a function of its own
  /// (`name`, numbered): a builder at the end of its block, which the
  /// caller ends with scf.yield.
  OpBuilder outlined(StringRef name) {
    auto region = b.create<scf::ExecuteRegionOp>(loc, TypeRange{});
    region->setAttr(kOutlineAttr, b.getStringAttr(name));
    return OpBuilder::atBlockEnd(&region.getRegion().emplaceBlock());
  }
  /// for u < units: body(u) between a stack save and restore (the unit's
  /// scratch), a loop marked with `work` for soma-linalg-to-loops' grain
  /// when there are several units (made parallel), not unrolled otherwise.
  void unitLoop(OpBuilder &nb, int64_t units, int64_t work, function_ref<void(OpBuilder &, Value)> body) {
    auto outer = nb.create<scf::ForOp>(loc, idx(nb, 0), idx(nb, units), idx(nb, 1), ValueRange{},
                                       [&](OpBuilder &ub, Location, Value u, ValueRange) {
                                         Value stack = ub.create<LLVM::StackSaveOp>(
                                             loc, LLVM::LLVMPointerType::get(ub.getContext()));
                                         body(ub, u);
                                         ub.create<LLVM::StackRestoreOp>(loc, stack);
                                         ub.create<scf::YieldOp>(loc);
                                       });
    if (units > 1)
      outer->setAttr(kParallelWorkAttr, nb.getI64IntegerAttr(work));
    else
      outer->setAttr(kNoUnrollAttr, nb.getUnitAttr());
  }
  /// dst[0, size) = the sum of `count` parts of `size` floats laid one
  /// after another in `parts` (flat), in part order, VL points at a time
  /// (the last ones masked). dst may be the first part.
  void sumParts(OpBuilder &nb, Value parts, int64_t count, int64_t size, Value dst) {
    VectorType fvec = VectorType::get({VL}, b.getF32Type());
    stepLoop(nb, size, VL, [&](OpBuilder &xb, Value at, int64_t n) {
      Value lanes = xb.create<vector::CreateMaskOp>(loc, mvec, ValueRange{idx(xb, n)});
      Value zero = zeros(xb);
      Value acc;
      for (int64_t part = 0; part < count; ++part) {
        Value x = xb.create<vector::MaskedLoadOp>(loc, fvec, parts, ValueRange{add(xb, at, idx(xb, part * size))},
                                                  lanes, zero);
        acc = part == 0 ? x : xb.create<arith::AddFOp>(loc, acc, x);
      }
      xb.create<vector::MaskedStoreOp>(loc, dst, ValueRange{at}, lanes, acc);
    });
  }
  /// `v` (an identity-layout memref) viewed as one dimension, at b.
  Value flat(Value v) {
    auto type = cast<MemRefType>(v.getType());
    ReassociationIndices all;
    for (int64_t d = 0; d < type.getRank(); ++d)
      all.push_back(d);
    return b.create<memref::CollapseShapeOp>(loc, v, ArrayRef<ReassociationIndices>{all}).getResult();
  }
  /// dst[j][i] = src[i][j] for i < rows, j < cols, VL x VL blocks at a
  /// time (flat memrefs; src's row i from srcAt + i * srcPitch, dst's row
  /// j from dstAt + j * dstPitch). Source rows past `rows` and columns
  /// past `cols` read as 0. `wholeBlocks`: dst holds whole blocks, which
  /// are stored whole (its rows and columns past cols and rows get 0);
  /// otherwise only dst's rows below cols are stored, masked to its
  /// columns below rows.
  void transposeInto(OpBuilder &nb, Value src, Value srcAt, int64_t srcPitch, int64_t rows, int64_t cols,
                     Value dst, Value dstAt, int64_t dstPitch, bool wholeBlocks) {
    VectorType fvec = VectorType::get({VL}, b.getF32Type());
    auto lanes = [&](OpBuilder &ob, int64_t n) {
      return ob.create<vector::CreateMaskOp>(loc, mvec, ValueRange{idx(ob, n)}).getResult();
    };
    stepLoop(nb, rows, VL, [&](OpBuilder &ib, Value i0, int64_t ni) {
      stepLoop(ib, cols, VL, [&](OpBuilder &jb, Value j0, int64_t nj) {
        Value zero = zeros(jb);
        Value from = add(jb, srcAt, add(jb, mul(jb, i0, idx(jb, srcPitch)), j0));
        SmallVector<Value> block;
        for (int64_t l = 0; l < VL; ++l) {
          Value at = add(jb, from, idx(jb, l * srcPitch));
          block.push_back(l >= ni   ? zero
                          : nj == VL ? jb.create<vector::LoadOp>(loc, fvec, src, ValueRange{at}).getResult()
                                     : jb.create<vector::MaskedLoadOp>(loc, fvec, src, ValueRange{at}, lanes(jb, nj), zero)
                                           .getResult());
        }
        block = transposeVectors(jb, loc, block);
        Value to = add(jb, dstAt, add(jb, mul(jb, j0, idx(jb, dstPitch)), i0));
        for (int64_t l = 0; l < (wholeBlocks ? VL : nj); ++l) {
          Value at = add(jb, to, idx(jb, l * dstPitch));
          if (wholeBlocks || ni == VL)
            jb.create<vector::StoreOp>(loc, block[l], dst, ValueRange{at});
          else
            jb.create<vector::MaskedStoreOp>(loc, dst, ValueRange{at}, lanes(jb, ni), block[l]);
        }
      });
    });
  }
  /// body(start, size) for [0, total) cut into steps of `step`: a loop
  /// over the whole steps, then the rest (a constant size) once.
  void stepLoop(OpBuilder &nb, int64_t total, int64_t step,
                function_ref<void(OpBuilder &, Value, int64_t)> body) {
    const int64_t whole = total / step * step;
    if (whole > step)
      blockLoop(nb, idx(nb, 0), idx(nb, whole), step, [&](OpBuilder &lb, Value i) { body(lb, i, step); });
    else if (whole == step)
      body(nb, idx(nb, 0), step);
    if (total > whole)
      body(nb, idx(nb, whole), total - whole);
  }
  /// Lane j of result q: the lanes of vs[q * VL + j] summed as a tree
  /// (the upper half of the lanes added to the lower half until one is
  /// left), VL vectors at a time: log2(VL) rounds that each merge pairs of
  /// vectors with two shuffles and an add, each vector's sources holding
  /// ever fewer lanes (15 merges for 16 vectors, where summing each alone
  /// took 4 rounds and an extraction, 16 times). Missing vectors (past the
  /// end) count as 0.
  SmallVector<Value> laneSums(OpBuilder &nb, ValueRange vs) {
    Value zero = zeros(nb);
    SmallVector<Value> out;
    for (size_t q = 0; q < vs.size(); q += VL) {
      SmallVector<Value> level;
      for (int64_t j = 0; j < VL; ++j)
        level.push_back(q + j < vs.size() ? vs[q + j] : Value());
      // Each vector of `level` holds VL / g sources of g lanes each.
      for (int64_t g = VL; g > 1; g /= 2) {
        SmallVector<Value> next;
        for (size_t i = 0; i < level.size(); i += 2) {
          if (!level[i] && !level[i + 1]) {
            next.push_back(Value());
            continue;
          }
          SmallVector<int64_t> lo, hi;
          for (int64_t side = 0; side < 2; ++side)
            for (int64_t j = 0; j < VL / g; ++j)
              for (int64_t l = 0; l < g / 2; ++l) {
                lo.push_back(side * VL + j * g + l);
                hi.push_back(side * VL + j * g + g / 2 + l);
              }
          Value x = level[i] ? level[i] : zero, y = level[i + 1] ? level[i + 1] : zero;
          Value low = nb.create<vector::ShuffleOp>(loc, x, y, lo);
          Value high = nb.create<vector::ShuffleOp>(loc, x, y, hi);
          next.push_back(nb.create<arith::AddFOp>(loc, low, high));
        }
        level = next;
      }
      out.push_back(level[0] ? level[0] : zero);
    }
    return out;
  }
  /// An index as a vector<VL x i32> of equal lanes; a constant one.
  Value splatI(OpBuilder &nb, Value v) {
    return nb.create<vector::BroadcastOp>(loc, ivec, nb.create<arith::IndexCastOp>(loc, nb.getI32Type(), v));
  }
  Value constI(OpBuilder &nb, int64_t v) {
    return nb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(ivec, nb.getI32IntegerAttr(v)));
  }
  /// xP[at + r * XW + col] = x[i0 + r - pt, col - pl] for r < rows and
  /// col < XW (a whole number of vectors), 0 outside the image: a band of
  /// rows of one channel's plane (from xc in the flat xF, H x W), with the
  /// convolution's padding around it. i0 is the band's first row counted
  /// from the top of the padding.
  void copyPaddedRows(OpBuilder &nb, Value xF, Value xc, Value i0, Value rows, Value xP, Value at, int64_t XW,
                      const ConvGrid &cg, int64_t H, int64_t W) {
    VectorType fvec = VectorType::get({VL}, b.getF32Type());
    Value zero = zeros(nb);
    blockLoop(nb, idx(nb, 0), rows, 1, [&](OpBuilder &pb, Value r) {
      Value row = add(pb, i0, r); // the image's row plus pt
      Value inside =
          pb.create<arith::AndIOp>(loc, pb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::sge, row, idx(pb, cg.pt)),
                                   lt(pb, row, idx(pb, cg.pt + H)));
      Value rowAt = pb.create<arith::SelectOp>(
          loc, inside, add(pb, xc, mul(pb, pb.create<arith::SubIOp>(loc, row, idx(pb, cg.pt)), idx(pb, W))), xc);
      Value rowLanes = pb.create<vector::BroadcastOp>(loc, mvec, inside);
      for (int64_t col0 = 0; col0 < XW; col0 += VL) {
        Value col = pb.create<arith::AddIOp>(loc, lane(pb), constI(pb, col0));
        Value lanes = pb.create<arith::AndIOp>(
            loc, rowLanes,
            pb.create<arith::AndIOp>(loc, pb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::sge, col, constI(pb, cg.pl)),
                                     pb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::slt, col, constI(pb, cg.pl + W))));
        // (Lanes left of the image are masked: the address may precede
        // the row, never a loaded point.)
        Value from = pb.create<arith::SubIOp>(loc, add(pb, rowAt, idx(pb, col0)), idx(pb, cg.pl));
        Value v = pb.create<vector::MaskedLoadOp>(loc, fvec, xF, ValueRange{from}, lanes, zero);
        pb.create<vector::StoreOp>(loc, v, xP, ValueRange{add(pb, at, add(pb, mul(pb, r, idx(pb, XW)), idx(pb, col0)))});
      }
    });
  }
  /// [0, 1, ..., VL - 1].
  Value lane(OpBuilder &nb) {
    SmallVector<int32_t> iota;
    for (int64_t l = 0; l < VL; ++l)
      iota.push_back(static_cast<int32_t>(l));
    return nb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(ivec, ArrayRef<int32_t>(iota)));
  }
  /// A table of window masks for `chunks` chunks of VL pixels and `taps`
  /// window taps, on the running thread's stack (see fillMaskTable).
  Value maskTable(OpBuilder &nb, int64_t chunks, int64_t taps) {
    return nb.create<memref::AllocaOp>(loc, MemRefType::get({chunks * taps}, mvec), nb.getI64IntegerAttr(64));
  }
  /// The grid (see the top of the file): OH rows of W pixels, of which
  /// the first OW of each row are outputs, for an H x W image.
  struct Grid {
    int64_t H, W, OH, OW;
    int64_t S = 1; // the stride: with 2, the grid is the output (pitch OW)
    int64_t G() const { return S == 1 ? W : OW; }
    int64_t pixels() const { return OH * G(); }
    bool wide() const { return OW < G(); }
  };
  /// For each chunk of VL pixels of [lo, hi) of the grid and each tap
  /// (u, v) of a kh x kw window with paddings pt, pl: the lanes that are
  /// outputs (below OH * W, and in the first OW columns) and whose window
  /// point is inside the image, at table[(chunk - lo / VL) * taps + tap].
  ///
  /// With stride 2, each entry is two masks, one per half of the lanes,
  /// each lane's mask on the element of its point among 2 VL / 2
  /// consecutive elements of x (lane l of the half on element 2 l): entry
  /// e's halves at table[2 e] and [2 e + 1].
  void fillMaskTable(OpBuilder &nb, Value table, Value lo, Value hi, const Grid &g, int64_t kh, int64_t kw,
                     int64_t pt, int64_t pl) {
    const int64_t taps = kh * kw, H = g.H, W = g.W;
    blockLoop(nb, lo, hi, VL, [&](OpBuilder &fb, Value pc) {
      Value p = fb.create<arith::AddIOp>(loc, splatI(fb, pc), lane(fb));
      Value valid = outputLanes(fb, pc, g);
      Value row = fb.create<arith::DivUIOp>(loc, p, constI(fb, g.G()));
      Value col = fb.create<arith::RemUIOp>(loc, p, constI(fb, g.G()));
      if (g.S > 1) {
        row = fb.create<arith::MulIOp>(loc, row, constI(fb, g.S));
        col = fb.create<arith::MulIOp>(loc, col, constI(fb, g.S));
      }
      Value at = mul(fb, fb.create<arith::DivUIOp>(loc, fb.create<arith::SubIOp>(loc, pc, lo), idx(fb, VL)),
                     idx(fb, taps));
      blockLoop(fb, idx(fb, 0), idx(fb, taps), 1, [&](OpBuilder &tb, Value tap) {
        Value du = tb.create<arith::SubIOp>(loc, tb.create<arith::DivUIOp>(loc, tap, idx(tb, kw)), idx(tb, pt));
        Value dv = tb.create<arith::SubIOp>(loc, tb.create<arith::RemUIOp>(loc, tap, idx(tb, kw)), idx(tb, pl));
        auto inside = [&](Value at, Value shift, int64_t size) {
          return tb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::ult,
                                          tb.create<arith::AddIOp>(loc, at, splatI(tb, shift)), constI(tb, size));
        };
        Value m = tb.create<arith::AndIOp>(loc, valid,
                                           tb.create<arith::AndIOp>(loc, inside(row, du, H), inside(col, dv, W)));
        if (g.S == 1) {
          tb.create<memref::StoreOp>(loc, m, table, ValueRange{add(tb, at, tap)});
          return;
        }
        Value none = tb.create<arith::ConstantOp>(loc, DenseElementsAttr::get(mvec, false));
        for (int64_t half = 0; half < 2; ++half) {
          SmallVector<int64_t> spread;
          for (int64_t el = 0; el < VL; ++el)
            spread.push_back(el % 2 == 0 ? half * VL / 2 + el / 2 : VL);
          Value mh = tb.create<vector::ShuffleOp>(loc, m, none, spread);
          tb.create<memref::StoreOp>(loc, mh, table,
                                     ValueRange{add(tb, mul(tb, add(tb, at, tap), idx(tb, 2)), idx(tb, half))});
        }
      });
    });
  }
  /// The lanes of the chunk of VL grid pixels from p0 that are outputs.
  Value outputLanes(OpBuilder &nb, Value p0, const Grid &g) {
    if (!g.wide())
      return nb.create<vector::CreateMaskOp>(loc, mvec,
                                             ValueRange{nb.create<arith::SubIOp>(loc, idx(nb, g.pixels()), p0)});
    Value p = nb.create<arith::AddIOp>(loc, splatI(nb, p0), lane(nb));
    Value below = nb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::slt, p, constI(nb, g.pixels()));
    Value col = nb.create<arith::RemUIOp>(loc, p, constI(nb, g.G()));
    return nb.create<arith::AndIOp>(
        loc, below, nb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::ult, col, constI(nb, g.OW)));
  }
  /// Stride 2: the offset in an image plane of x of output pixel q's
  /// window origin (row 2 i, column 2 j for q = i * OW + j), before the
  /// tap's shift.
  Value halfBase(OpBuilder &nb, Value q, const Grid &g) {
    Value i = nb.create<arith::DivUIOp>(loc, q, idx(nb, g.OW));
    Value j = nb.create<arith::RemUIOp>(loc, q, idx(nb, g.OW));
    return add(nb, mul(nb, i, idx(nb, 2 * g.W)), mul(nb, j, idx(nb, 2)));
  }
  /// Stride 2: a chunk of x, each half's VL / 2 points the even elements
  /// of VL consecutive ones from at[h], masked by the table's m[h].
  Value loadEven(OpBuilder &nb, Value flat, Value at0, Value at1, Value m0, Value m1) {
    VectorType fvec = VectorType::get({VL}, b.getF32Type());
    Value zero = zeros(nb);
    SmallVector<int64_t> even;
    for (int64_t l = 0; l < VL; ++l)
      even.push_back(2 * l);
    Value lo = nb.create<vector::MaskedLoadOp>(loc, fvec, flat, ValueRange{at0}, m0, zero);
    Value hi = nb.create<vector::MaskedLoadOp>(loc, fvec, flat, ValueRange{at1}, m1, zero);
    return nb.create<vector::ShuffleOp>(loc, lo, hi, even);
  }
  /// The output index of grid pixel p (or of the first output after it):
  /// (p / W) * OW + min(p % W, OW).
  Value outputIndex(OpBuilder &nb, Value p, const Grid &g) {
    if (!g.wide())
      return p;
    Value row = nb.create<arith::DivUIOp>(loc, p, idx(nb, g.G()));
    Value col = nb.create<arith::RemUIOp>(loc, p, idx(nb, g.G()));
    return add(nb, mul(nb, row, idx(nb, g.OW)), min(nb, col, idx(nb, g.OW)));
  }
};

} // namespace

void emitFilterGradient(OpBuilder &b, Location loc, const FilterGradient &g, Value C, const GemmConfig &cfg,
                        const GemmEpilogue &epilogue) {
  Emitter e{b, loc, cfg.vl};
  auto xs = cast<MemRefType>(g.x.getType()).getShape(), ys = cast<MemRefType>(g.dy.getType()).getShape();
  if (g.grid.filterGradientAlongFilters(xs, ys[1], cfg.vl))
    return emitFilterGradientAlongFilters(b, loc, g, C, cfg, epilogue);
  const ConvGrid &cg = g.grid;
  const int64_t S = cg.stride;
  const Emitter::Grid grid{xs[2], xs[3], cg.oh, cg.ow, S};
  // P grid pixels; x's planes are PX long, dy's PY.
  const int64_t N = xs[0], Cin = xs[1], W = xs[3], K = ys[1], P = grid.pixels();
  const int64_t PX = xs[2] * W, PY = cg.oh * cg.ow;
  const int64_t taps = cg.kh * cg.kw, R = Cin * taps, VL = cfg.vl;
  // The register tile: KT filters x one row of the kernel (RT = kw taps
  // (u, 0..kw-1) of one channel, whose windows are consecutive in x: one
  // base address and mask row, constant offsets), at most 24 accumulators
  // of 32 registers with AVX-512, 8 of 16 otherwise. KT: the fewest tiles
  // of filters, and of those the smallest tile (11 filters with room for
  // 8: two tiles of 6, not 8 + 3 with 5 wasted, nor 11 tiles of 1).
  const int64_t budget = VL >= 16 ? 24 : 8, RT = cg.kw;
  int64_t KT = 1;
  for (int64_t kt = 2; kt * RT <= budget && kt <= K; ++kt)
    if (ceilDiv(K, kt) < ceilDiv(K, KT))
      KT = kt;
  // Units: groups of images, each summing into a part of its own, when
  // the product has enough work for threads; blocks of images of about
  // 1024 pixels, over which each accumulator's lanes are summed once.
  int64_t work = N * K * R * P / cfg.macs_per_point, units = 1;
  if (work >= cfg.grain)
    units = std::clamp<int64_t>(N * P / 1024, 1, std::min(N, cfg.min_units));
  const int64_t perUnit = ceilDiv(N, units);
  units = ceilDiv(N, perUnit);
  // Blocks of about 1024 pixels (several images, or a part of one),
  // whose dy and x (all channels) stay in L2 while the tiles sweep them.
  // An image of more than 1024 pixels is cut into blocks of up to 2048,
  // as long as their x fits in 800 KiB (x streams from L2 once per tile
  // of filters): every block ends with the accumulators' sums, which fewer
  // blocks pay fewer times. ResNet's 64 -> 64 channels and VGG's 128 ->
  // 128 at 56 x 56 take 2 blocks of 1568 pixels instead of 4 of 784
  // (in-process A/B, 8 images, 2 threads: 3.72 -> 3.61 ms and 15.57 ->
  // 15.25 ms; 1 block of 3136: 4.21 ms).
  const int64_t BP = P > 1024 ? std::clamp<int64_t>(819200 / (4 * Cin), 1024, 2048) : 1024;
  const int64_t block = std::min(perUnit, ceilDiv(BP, P));
  const int64_t PB = P <= BP ? P : roundUp(ceilDiv(P, ceilDiv(P, BP)), VL); // VL-aligned

  Type f32 = b.getF32Type();
  Value dyF = e.flat(g.dy), xF = e.flat(g.x);
  Value partial, partialF, cF;
  if (units > 1) {
    partial = b.create<memref::AllocOp>(loc, MemRefType::get({units, K, R}, f32), b.getI64IntegerAttr(64));
    partialF = e.flat(partial);
    cF = e.flat(C);
  }
  VectorType fvec = VectorType::get({VL}, f32);
  // The table of window masks: for each chunk of VL pixels and each
  // kernel tap (u, v), the lanes whose window point is inside the image.
  // The same for every image: when it is small (64 KiB), made once per
  // call for the whole grid, before the units, which all read it (on the
  // calling thread's stack; PB is a multiple of VL, so the chunk of pixel
  // p is p / VL); otherwise once per block, for its pixels, by each unit
  // on its own stack (as the GEMM's scratch).
  // On a grid wider than the output, dy's rows are spread over the grid
  // by expanding loads (vpexpandd: about 6 cycles each on Zen 5, against
  // one for a masked load, and the tile loads KT of them per chunk, image
  // and kernel row). When it fits in 128 KiB, each block's dy is spread
  // once into a stack scratch of whole grid chunks (zero at the lanes
  // that are not outputs), which the tiles then read with plain loads.
  const int64_t PG = roundUp(std::min(P, PB), VL); // a block's grid pixels, whole chunks
  const bool spread = grid.wide() && block * K * PG * 4 <= 131072;
  const bool shared = ceilDiv(P, VL) * taps * S * VL / 8 <= 65536;
  const int64_t chunks = shared ? ceilDiv(P, VL) : ceilDiv(std::min(P, PB), VL);
  OpBuilder rb = e.outlined("dw");
  Value sharedTable;
  if (shared) {
    sharedTable = e.maskTable(rb, chunks, taps * S);
    e.fillMaskTable(rb, sharedTable, e.idx(rb, 0), e.idx(rb, P), grid, cg.kh, cg.kw, cg.pt, cg.pl);
  }
  e.unitLoop(rb, units, work, [&](OpBuilder &ub, Value u) {
        Value n0 = e.mul(ub, u, e.idx(ub, perUnit));
        Value n1 = e.min(ub, e.add(ub, n0, e.idx(ub, perUnit)), e.idx(ub, N));
        Value table = shared ? sharedTable : e.maskTable(ub, chunks, taps * S);
        Value dyGrid = spread ? ub.create<memref::AllocaOp>(loc, MemRefType::get({block * K * PG}, f32),
                                                            ub.getI64IntegerAttr(64))
                              : Value();
        e.blockLoop(ub, n0, n1, block, [&](OpBuilder &ob, Value nb0) {
          // (pixel blocks inside image blocks: one of the two has one block)
          e.blockLoop(ob, e.idx(ob, 0), e.idx(ob, P), PB, [&](OpBuilder &nb, Value pb0) {
            Value nb1 = e.min(nb, e.add(nb, nb0, e.idx(nb, block)), n1);
            Value pb1 = e.min(nb, e.add(nb, pb0, e.idx(nb, PB)), e.idx(nb, P));
            if (!shared)
              e.fillMaskTable(nb, table, pb0, pb1, grid, cg.kh, cg.kw, cg.pt, cg.pl);
            if (spread) {
              // dyGrid[((n - nb0) * K + k) * PG + p - pb0] = dy at grid pixel
              // p of image n, channel k (0 where p is not an output).
              Value zero = e.zeros(nb);
              e.blockLoop(nb, pb0, pb1, VL, [&](OpBuilder &sb, Value p0) {
                Value valid = e.outputLanes(sb, p0, grid);
                Value dyAt0 = e.outputIndex(sb, p0, grid);
                Value to0 = sb.create<arith::SubIOp>(loc, p0, pb0);
                e.blockLoop(sb, nb0, nb1, 1, [&](OpBuilder &ib, Value n) {
                  Value from = e.add(ib, e.mul(ib, n, e.idx(ib, K * PY)), dyAt0);
                  Value to = e.add(ib, e.mul(ib, ib.create<arith::SubIOp>(loc, n, nb0), e.idx(ib, K * PG)), to0);
                  e.blockLoop(ib, e.idx(ib, 0), e.idx(ib, K), 1, [&](OpBuilder &kb, Value k) {
                    Value v = kb.create<vector::ExpandLoadOp>(loc, fvec, dyF,
                                                              ValueRange{e.add(kb, from, e.mul(kb, k, e.idx(kb, PY)))},
                                                              valid, zero);
                    kb.create<vector::StoreOp>(loc, v, dyGrid, ValueRange{e.add(kb, to, e.mul(kb, k, e.idx(kb, PG)))});
                  });
                });
              });
            }
            auto eq = [&](Value x, Value y) { return nb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, x, y); };
            Value first = nb.create<arith::AndIOp>(loc, eq(nb0, n0), eq(pb0, e.idx(nb, 0)));
            // Filters outer, kernel rows inner: a tile's rows of dy stay in
            // L1 while the rows of x stream from L2 (kernel rows outer
            // streamed all of dy's block from L2 for every row of the
            // kernel, about 40 bytes a cycle on the ResNet layer).
            e.blockLoop(nb, e.idx(nb, 0), e.idx(nb, K), KT, [&](OpBuilder &fb, Value k0) {
              // The tile's filters' rows of dy.
              SmallVector<Value> dyOff;
              for (int64_t a = 0; a < KT; ++a)
                dyOff.push_back(e.mul(fb, e.min(fb, e.add(fb, k0, e.idx(fb, a)), e.idx(fb, K - 1)),
                                      e.idx(fb, spread ? PG : PY)));
              e.blockLoop(fb, e.idx(fb, 0), e.idx(fb, R), RT, [&](OpBuilder &kb, Value r0) {
                // The tile's kernel row: channel c, row u; column t of the
                // tile is tap (u, t), at x offset c * PX + (u - pt) * W + t - pl.
                Value row = kb.create<arith::DivUIOp>(loc, r0, e.idx(kb, cg.kw)); // c * kh + u
                Value c = kb.create<arith::DivUIOp>(loc, row, e.idx(kb, cg.kh));
                Value uu = kb.create<arith::RemUIOp>(loc, row, e.idx(kb, cg.kh));
                Value du = kb.create<arith::SubIOp>(loc, uu, e.idx(kb, cg.pt));
                Value x0 = e.add(kb, e.mul(kb, c, e.idx(kb, PX)), e.mul(kb, du, e.idx(kb, W)));
                Value tap0 = e.mul(kb, uu, e.idx(kb, cg.kw));
                SmallVector<Value> xOff, tapOf;
                for (int64_t t = 0; t < RT; ++t) {
                  xOff.push_back(e.add(kb, x0, e.idx(kb, t - cg.pl)));
                  tapOf.push_back(e.add(kb, tap0, e.idx(kb, t)));
                }
                Value zero = e.zeros(kb);
                SmallVector<Value> init(KT * RT, zero);
                auto pixels = kb.create<scf::ForOp>(
                    loc, pb0, pb1, e.idx(kb, VL), init,
                    [&](OpBuilder &pb, Location, Value p0, ValueRange acc) {
                      // The lanes that are outputs (dy's elements, from
                      // dy's index dyAt: consecutive in dy when the grid is
                      // wider than the output), and each column's window
                      // mask from the table.
                      // (Spread dy needs neither: its chunks are whole.)
                      Value valid = spread ? Value() : e.outputLanes(pb, p0, grid);
                      Value dyAt0 = spread ? Value() : e.outputIndex(pb, p0, grid);
                      Value chunk = e.mul(
                          pb,
                          pb.create<arith::DivUIOp>(
                              loc, shared ? p0 : pb.create<arith::SubIOp>(loc, p0, pb0).getResult(), e.idx(pb, VL)),
                          e.idx(pb, taps));
                      // (With stride 2, two masks per column, one per half
                      // chunk, and the x offset of each half's first point.)
                      SmallVector<Value> mask, halfBase;
                      for (int64_t t = 0; t < RT; ++t)
                        for (int64_t h = 0; h < S; ++h) {
                          Value at = e.add(pb, chunk, tapOf[t]);
                          if (S > 1)
                            at = e.add(pb, e.mul(pb, at, e.idx(pb, S)), e.idx(pb, h));
                          mask.push_back(pb.create<memref::LoadOp>(loc, table, ValueRange{at}));
                        }
                      for (int64_t h = 0; S > 1 && h < 2; ++h)
                        halfBase.push_back(e.halfBase(pb, e.add(pb, p0, e.idx(pb, h * VL / 2)), grid));
                      auto images = pb.create<scf::ForOp>(
                          loc, nb0, nb1, e.idx(pb, 1), acc, [&](OpBuilder &ib, Location, Value n, ValueRange in) {
                            Value dyBase =
                                spread ? e.add(ib, e.mul(ib, ib.create<arith::SubIOp>(loc, n, nb0), e.idx(ib, K * PG)),
                                               ib.create<arith::SubIOp>(loc, p0, pb0))
                                       : e.add(ib, e.mul(ib, n, e.idx(ib, K * PY)), dyAt0);
                            Value xImage = e.mul(ib, n, e.idx(ib, Cin * PX));
                            Value xBase = e.add(ib, xImage, p0);
                            SmallVector<Value> out(in.begin(), in.end());
                            auto dyAt = [&](int64_t a) -> Value {
                              Value at = e.add(ib, dyBase, dyOff[a]);
                              if (spread)
                                return ib.create<vector::LoadOp>(loc, fvec, dyGrid, ValueRange{at});
                              if (grid.wide())
                                return ib.create<vector::ExpandLoadOp>(loc, fvec, dyF, ValueRange{at}, valid, zero);
                              return ib.create<vector::MaskedLoadOp>(loc, fvec, dyF, ValueRange{at}, valid, zero);
                            };
                            auto xAt = [&](int64_t t) -> Value {
                              if (S == 1)
                                return ib.create<vector::MaskedLoadOp>(
                                    loc, fvec, xF, ValueRange{e.add(ib, xBase, xOff[t])}, mask[t], zero);
                              // (Each address made in turn: argument order
                              // is unspecified.)
                              Value at0 = e.add(ib, e.add(ib, xImage, halfBase[0]), xOff[t]);
                              Value at1 = e.add(ib, e.add(ib, xImage, halfBase[1]), xOff[t]);
                              return e.loadEven(ib, xF, at0, at1, mask[2 * t], mask[2 * t + 1]);
                            };
                            // The smaller side's vectors loaded first, the
                            // other's one at a time (registers: the
                            // accumulators, min(KT, RT) and one).
                            const bool xFirst = RT <= KT;
                            const int64_t held = xFirst ? RT : KT, streamed = xFirst ? KT : RT;
                            SmallVector<Value> first;
                            for (int64_t i = 0; i < held; ++i)
                              first.push_back(xFirst ? xAt(i) : dyAt(i));
                            for (int64_t s = 0; s < streamed; ++s) {
                              Value v = xFirst ? dyAt(s) : xAt(s);
                              for (int64_t i = 0; i < held; ++i) {
                                int64_t a = xFirst ? s : i, t = xFirst ? i : s;
                                Value dyv = xFirst ? v : first[i], xv = xFirst ? first[i] : v;
                                out[a * RT + t] = ib.create<vector::FMAOp>(loc, dyv, xv, out[a * RT + t]);
                              }
                            }
                            ib.create<scf::YieldOp>(loc, out);
                          });
                      pb.create<scf::YieldOp>(loc, images.getResults());
                    });
                // Each accumulator's lanes summed (laneSums), VL
                // accumulators at a time into one vector; then each
                // filter's RT sums, consecutive in dw (r0 steps over whole
                // kernel rows), added to the earlier blocks' with a masked
                // load and store per VL of them (a row wider than a
                // vector: kw > 4 with 4 lanes), the filters past K skipped.
                SmallVector<Value> sums = e.laneSums(kb, ValueRange(pixels.getResults()).take_front(KT * RT));
                Value target = units > 1 ? partial : C;
                for (int64_t a = 0; a < KT; ++a)
                  for (int64_t t0 = 0; t0 < RT; t0 += VL) {
                  int64_t q0 = (a * RT + t0) / VL, q1 = std::min<int64_t>(q0 + 1, sums.size() - 1);
                  SmallVector<int64_t> pick(VL, 0);
                  for (int64_t t = t0; t < std::min(RT, t0 + VL); ++t) {
                    int64_t src = a * RT + t;
                    pick[t - t0] = (src / VL == q0 ? 0 : VL) + src % VL;
                  }
                  Value row = kb.create<vector::ShuffleOp>(loc, sums[q0], sums[q1], pick);
                  Value lanes = kb.create<vector::CreateMaskOp>(loc, VectorType::get({VL}, kb.getI1Type()),
                                                                ValueRange{e.idx(kb, std::min(RT - t0, VL))});
                  Value k = e.add(kb, k0, e.idx(kb, a));
                  kb.create<scf::IfOp>(loc, e.lt(kb, k, e.idx(kb, K)), [&](OpBuilder &sb, Location) {
                    SmallVector<Value, 3> at{units > 1 ? u : e.idx(sb, 0), k, e.add(sb, r0, e.idx(sb, t0))};
                    Value old = sb.create<vector::MaskedLoadOp>(loc, fvec, target, at, lanes, zero);
                    Value base = sb.create<arith::SelectOp>(loc, first, zero, old);
                    sb.create<vector::MaskedStoreOp>(loc, target, at, lanes,
                                                     sb.create<arith::AddFOp>(loc, base, row));
                    sb.create<scf::YieldOp>(loc);
                  });
                }
              });
            });
          });
        });
  });
  if (units > 1) {
    // dw = the parts' sum, in part order.
    e.sumParts(rb, partialF, units, K * R, cF);
  }
  if (epilogue)
    epilogue(rb, loc, e.idx(rb, 0), e.idx(rb, 0), e.idx(rb, K), e.idx(rb, 0), e.idx(rb, R));
  rb.create<scf::YieldOp>(loc);
}

// The convolution: out[n, k, p] = sum over c, (u, v) of w[k, c, u, v] *
// x[n, c, p + s(u, v)], masked as above. (The ResNet and VGG 56 x 56
// layers and ResNet-8's 32- and 64-filter layers cited below were
// measured here; they now have their vectors along the filters:
// ConvGrid::alongFilters.)
//
//   parallel over the images (when there is enough work):
//     table of window masks for the whole image
//     for each group of PT chunks of VL pixels:
//       for each tile of KT filters:
//         KT x PT accumulators
//         for each channel c, each tap (unrolled): PT masked loads of x at
//           a constant shift, KT broadcast weights, KT x PT FMAs
//         the tile into C (pixels past P masked, filters past K skipped)
//       the epilogue over the group's outputs (all filters)
void emitDirectConv(OpBuilder &b, Location loc, const DirectConv &g, Value C, const GemmConfig &cfg,
                    const GemmEpilogue &epilogue) {
  Emitter e{b, loc, cfg.vl};
  auto xs = cast<MemRefType>(g.x.getType()).getShape();
  if (g.grid.alongFilters(xs, cast<MemRefType>(C.getType()).getShape()[1], cfg.vl))
    return emitConvAlongFilters(b, loc, g, C, cfg, epilogue);
  const ConvGrid &cg = g.grid;
  const int64_t S = cg.stride;
  const Emitter::Grid grid{xs[2], xs[3], cg.oh, cg.ow, S};
  // P grid pixels; x's planes are PX long.
  const int64_t N = xs[0], Cin = xs[1], W = xs[3], P = grid.pixels(), PX = xs[2] * W;
  const int64_t K = cast<MemRefType>(C.getType()).getShape()[1];
  const int64_t taps = cg.kh * cg.kw, R = Cin * taps, VL = cfg.vl;
  // The register tile: KT filters x PT chunks of VL pixels, at most 24
  // accumulators of 32 registers with AVX-512 (8 of 16 otherwise). Each
  // tap costs KT * PT FMAs (two a cycle), PT window loads of x (masked,
  // unaligned: most cross a cache line, and each needs its mask loaded;
  // counted as two cycles each) and KT broadcast weights (half a cycle);
  // the tile with the most useful FMAs a cycle wins, counting the filters
  // and pixels that edge tiles compute for nothing (an 8 x 8 image is 4
  // chunks: 6 filters x 4 chunks, not 4 x 6 with a third of the pixels
  // wasted). Counting a window as one cycle chose 4 x 4 for the ResNet
  // 64 x 56 x 56 layer; 8 x 2 was faster (AMD Zen 5, in-process A/B, 2
  // threads: 3.67 -> 3.48 ms; 1 thread, forced tiles: 8 x 3 and 8 x 2 6.7
  // ms, 4 x 6 6.9, 4 x 4 7.0, 6 x 4 7.2, 3 x 8 10.2), and LeNet-5's first
  // layer 0.083 -> 0.064 ms; the ResNet-8 layers did not change.
  //
  // Of the tiles within 2% of the best score, the one with the most
  // accumulators (then the best score): a larger tile has fewer loop,
  // mask and epilogue overheads, which the score does not count. On an
  // Intel Xeon (Sapphire Rapids), 2 threads, in-process A/B: the ResNet
  // 64 x 56 x 56 layer takes 8 x 3 (its score 1% below 8 x 2's, for the
  // last group's unused chunk), 4.70-4.78 -> 4.61-4.68 ms; LeNet-5's first
  // layer 6 x 4 instead of 6 x 3, its inference 0.258 -> 0.236 ms;
  // ResNet-8's layers keep theirs (8 x 3 on its 16 x 32 x 32 layer, 3%
  // below, made its inference 2% slower).
  const int64_t budget = VL >= 16 ? 24 : 8, maxKT = VL >= 16 ? 8 : 4;
  const int64_t imageChunks = ceilDiv(P, VL);
  struct Candidate {
    int64_t kt, pt;
    double score;
  };
  SmallVector<Candidate> candidates;
  double best = 0;
  for (int64_t kt = 1; kt <= std::min(maxKT, K); ++kt)
    for (int64_t pt = 1; kt * pt <= budget && pt <= imageChunks; ++pt) {
      double useful = double(K) / double(roundUp(K, kt)) * double(imageChunks) /
                      double(roundUp(imageChunks, pt));
      // (At least 4 cycles a tap: each accumulator's FMAs depend on each
      // other.) (With stride 2, twice the loads of x and of masks.)
      double cycles = std::max({kt * pt / 2.0, (4.0 * S * pt + kt) / 2.0, 4.0});
      candidates.push_back({kt, pt, useful * kt * pt / cycles});
      best = std::max(best, candidates.back().score);
    }
  int64_t KT = 1, PT = 1;
  double chosen = 0;
  for (const Candidate &t : candidates)
    if (t.score >= 0.98 * best &&
        (t.kt * t.pt > KT * PT || (t.kt * t.pt == KT * PT && t.score > chosen + 1e-9))) {
      KT = t.kt, PT = t.pt;
      chosen = t.score;
    }
  const int64_t group = PT * VL;
  // Blocks of CB channels, when a group's window of x (its pixels and the
  // window's rows above and below, every channel) exceeds 48 KiB (the L1
  // data cache): blocks of at most 40 KiB, all the filters sweeping one
  // block's window, then the next block's, each tile adding to C (the
  // same sums in the same order). VGG's 128 x 56 x 56 layer (with 8 x 2
  // tiles: 75 KiB) takes 2 blocks of 64 channels (in-process A/B, 1
  // thread: 3 blocks of 43, 31.2 ms; 2 blocks, 30.3; one, 30.9; with 4 x 4
  // tiles, before, 1 block 33.2, 3 blocks 30.3); ResNet's 64 channels (38
  // KiB) stay one block. Not on grids wider than the output, whose tiles
  // are stored compressed.
  const int64_t window = (group * S + (cg.kh - 1) * W + cg.kw) * 4;
  const int64_t blocks = grid.wide() || Cin * window <= (48 << 10) ? 1 : ceilDiv(Cin * window, 40 << 10);
  const int64_t CB = ceilDiv(Cin, blocks);
  // The interior groups [interiorBegin, interiorEnd) (stride 1, the grid
  // the output): those whose every pixel's window rows are inside the
  // image (rows pt to H - kh + pt) and whose every load stays in x's plane
  // (from pixel pt * W + pl; up to PX less the largest shift: a grid taller
  // than the image, pt + pb > kh - 1, has its last such row's last pixels'
  // windows past the plane). Their loads of x need no table: see colMask
  // in the tile. (ResNet's and VGG's 56 x 56 layers: 94 of 98 groups;
  // masked loads took 13% of VGG's time, measured against unmasked ones.)
  // Only for convolutions of at least cfg.conv_interior_work multiply-adds:
  // the interior tile is a second copy of the tile, unrolled over the taps,
  // and made LeNet-5's training step compile 20% longer (0.71-0.75 ->
  // 0.91-0.95 s, its first layer) and ResNet-8's 2.5 -> 2.8 s, for at most
  // 1% on their layers (in-process A/B, 1 thread: ResNet-8's 16 x 32 x 32
  // layer 0.575 -> 0.568 ms, 32 x 16 x 16 0.567 -> 0.565, 64 x 8 x 8
  // 0.544 -> 0.541; the ResNet 64 x 56 x 56 layer level, VGG's 128 x 56 x
  // 56 29.7-29.8 -> 26.9-27.3: AMD Zen 5). On an Intel Xeon (Sapphire
  // Rapids), where masked loads cost more, ResNet-8's layers gain: its
  // inference 2.61-2.67 -> 2.51-2.58 ms on 2 threads, the training step
  // 11.0-11.1 -> 10.9-11.05, for 1.9 -> 2.2 s of compile. The default,
  // 2^26, takes VGG's and ResNet's 56 x 56 layers at batch 8 and
  // ResNet-8's 3 x 3 stride-1 layers at batch 32 (75 M multiply-adds),
  // not LeNet-5's (7.5 M at batch 64).
  int64_t interiorBegin = 0, interiorEnd = 0;
  if (S == 1 && !grid.wide() && N * K * R * P >= cfg.conv_interior_work) {
    const int64_t maxShift = (cg.kh - 1 - cg.pt) * W + (cg.kw - 1 - cg.pl);
    const int64_t last = std::min((xs[2] - cg.kh + cg.pt + 1) * W, PX - maxShift); // pixels below it
    interiorBegin = roundUp(cg.pt * W + cg.pl, group);
    interiorEnd = last > 0 ? last / group * group : 0;
    if (interiorEnd <= interiorBegin) // (no interior group)
      interiorBegin = interiorEnd = 0;
  }
  // The mask table covers whole groups: its chunks past the image are
  // all false.
  const int64_t chunks = ceilDiv(P, group) * PT;
  const int64_t units = N * K * R * P / cfg.macs_per_point >= cfg.grain ? N : 1;

  Type f32 = b.getF32Type();
  VectorType fvec = VectorType::get({VL}, f32);
  Value xF = e.flat(g.x), wF = e.flat(g.w);
  OpBuilder rb = e.outlined("conv");
  // The table of window masks, the same for every image: made once per
  // call, before the units, which all read it (on the calling thread's
  // stack). Per unit, it cost as much as the convolution itself for
  // LeNet-5's first layer (one channel: the table's 49 chunks x 25 taps
  // against 6 x 49 x 25 FMAs).
  Value table = e.maskTable(rb, chunks, taps * S);
  e.fillMaskTable(rb, table, e.idx(rb, 0), e.idx(rb, chunks * VL), grid, cg.kh, cg.kw, cg.pt, cg.pl);
  e.unitLoop(rb, units, N * K * R * P / cfg.macs_per_point, [&](OpBuilder &ub, Value u) {
        auto [n0, n1] = e.unitImages(ub, u, units, N);
        // One tile: KT filters from k0 x PT chunks of pixels from g0 of
        // image n (its x at xImage), into C.
        auto tile = [&](OpBuilder &gb, Value n, Value xImage, Value g0, Value k0, Value c0, Value c1, bool first,
                        bool interior) {
          SmallVector<Value> wOff;
          for (int64_t a = 0; a < KT; ++a)
            wOff.push_back(e.mul(gb, e.min(gb, e.add(gb, k0, e.idx(gb, a)), e.idx(gb, K - 1)), e.idx(gb, R)));
          Value zero = e.zeros(gb);
          SmallVector<Value> lanes, at;
          for (int64_t j = 0; j < PT; ++j) {
            Value p = e.add(gb, g0, e.idx(gb, j * VL));
            lanes.push_back(e.outputLanes(gb, p, grid));
            at.push_back(e.outputIndex(gb, p, grid));
          }
          SmallVector<Value> init(KT * PT, zero);
          // (A later block of channels: the earlier blocks' sums, from C;
          // the filters past K read at K - 1 and not stored.)
          for (int64_t a = 0; !first && a < KT; ++a)
            for (int64_t j = 0; j < PT; ++j) {
              SmallVector<Value, 3> cAt{n, e.min(gb, e.add(gb, k0, e.idx(gb, a)), e.idx(gb, K - 1)), at[j]};
              init[a * PT + j] = interior ? gb.create<vector::LoadOp>(loc, fvec, C, cAt).getResult()
                                          : gb.create<vector::MaskedLoadOp>(loc, fvec, C, cAt, lanes[j], zero)
                                                .getResult();
            }
          // An interior group: each tap's window points are inside the
          // image's rows and x's plane, so its chunks are loaded whole,
          // and only the columns past the image's left or right edge
          // (column v - pl of the window off the row) are cleared: an AND
          // with colMask[j][v], all ones where the lane's column plus
          // v - pl is in [0, W) (an arithmetic shift of a difference, made
          // once per tile; none for v = pl).
          SmallVector<SmallVector<Value>> colMask(PT);
          for (int64_t j = 0; interior && j < PT; ++j) {
            Value col = gb.create<arith::RemUIOp>(
                loc, gb.create<arith::AddIOp>(loc, e.splatI(gb, e.add(gb, g0, e.idx(gb, j * VL))), e.lane(gb)),
                e.constI(gb, W));
            for (int64_t v = 0; v < cg.kw; ++v) {
              const int64_t d = v - cg.pl;
              if (d == 0) {
                colMask[j].push_back(Value());
                continue;
              }
              // The sign of -d - 1 - col (d < 0: negative where col + d >=
              // 0) or of col + d - W (d > 0), spread over the lane.
              Value diff = d < 0 ? gb.create<arith::SubIOp>(loc, e.constI(gb, -d - 1), col).getResult()
                                 : gb.create<arith::AddIOp>(loc, col, e.constI(gb, d - W)).getResult();
              colMask[j].push_back(gb.create<arith::ShRSIOp>(loc, diff, e.constI(gb, 31)));
            }
          }
          Value chunk0 = e.mul(gb, gb.create<arith::DivUIOp>(loc, g0, e.idx(gb, VL)), e.idx(gb, taps));
          // Stride 2: the x offset of each half chunk's first point (row
          // 2 i, column 2 j of output pixel (i, j)), before the tap's shift.
          SmallVector<Value> halfBase;
          for (int64_t j = 0; S == 2 && j < PT; ++j)
            for (int64_t h = 0; h < 2; ++h)
              halfBase.push_back(e.halfBase(gb, e.add(gb, g0, e.idx(gb, j * VL + h * VL / 2)), grid));
          auto channels = gb.create<scf::ForOp>(
              loc, c0, c1, e.idx(gb, 1), init,
              [&](OpBuilder &cb, Location, Value c, ValueRange acc) {
                SmallVector<Value> out(acc.begin(), acc.end());
                Value xp = e.add(cb, xImage, e.mul(cb, c, e.idx(cb, PX)));
                Value xc = e.add(cb, xp, g0);
                Value wc = e.mul(cb, c, e.idx(cb, taps));
                for (int64_t tap = 0; tap < taps; ++tap) {
                  int64_t shift = (tap / cg.kw - cg.pt) * W + (tap % cg.kw - cg.pl);
                  SmallVector<Value> xv;
                  for (int64_t j = 0; j < PT; ++j) {
                    auto maskAt = [&](int64_t half) {
                      return cb.create<memref::LoadOp>(loc, table,
                                                       ValueRange{e.add(cb, e.mul(cb, chunk0, e.idx(cb, S)),
                                                                        e.idx(cb, (j * taps + tap) * S + half))});
                    };
                    if (S == 1 && interior) {
                      Value x = cb.create<vector::LoadOp>(loc, fvec, xF, ValueRange{e.add(cb, xc, e.idx(cb, j * VL + shift))});
                      if (Value m = colMask[j][tap % cg.kw])
                        x = cb.create<arith::BitcastOp>(
                            loc, fvec, cb.create<arith::AndIOp>(loc, cb.create<arith::BitcastOp>(loc, e.ivec, x), m));
                      xv.push_back(x);
                      continue;
                    }
                    if (S == 1) {
                      xv.push_back(cb.create<vector::MaskedLoadOp>(
                          loc, fvec, xF, ValueRange{e.add(cb, xc, e.idx(cb, j * VL + shift))}, maskAt(0), zero));
                      continue;
                    }
                    // (Each operand made in turn: argument order is unspecified.)
                    Value m0 = maskAt(0);
                    Value at0 = e.add(cb, xp, e.add(cb, halfBase[2 * j], e.idx(cb, shift)));
                    Value m1 = maskAt(1);
                    Value at1 = e.add(cb, xp, e.add(cb, halfBase[2 * j + 1], e.idx(cb, shift)));
                    xv.push_back(e.loadEven(cb, xF, at0, at1, m0, m1));
                  }
                  for (int64_t a = 0; a < KT; ++a) {
                    Value at = e.add(cb, wOff[a], e.add(cb, wc, e.idx(cb, tap)));
                    Value wv = cb.create<vector::BroadcastOp>(loc, fvec, cb.create<memref::LoadOp>(loc, wF, at));
                    for (int64_t j = 0; j < PT; ++j)
                      out[a * PT + j] = cb.create<vector::FMAOp>(loc, wv, xv[j], out[a * PT + j]);
                  }
                }
                cb.create<scf::YieldOp>(loc, out);
              });
          // The tile into C: rows past K skipped, only the lanes that are
          // outputs stored (pixels past the grid, and with a wide grid
          // the columns past OW: the others, consecutive in C, compressed).
          for (int64_t a = 0; a < KT; ++a) {
            Value k = e.add(gb, k0, e.idx(gb, a));
            gb.create<scf::IfOp>(loc, e.lt(gb, k, e.idx(gb, K)), [&](OpBuilder &sb, Location) {
              for (int64_t j = 0; j < PT; ++j) {
                Value v = channels.getResult(a * PT + j);
                if (grid.wide())
                  sb.create<vector::CompressStoreOp>(loc, C, ValueRange{n, k, at[j]}, lanes[j], v);
                else if (interior)
                  sb.create<vector::StoreOp>(loc, v, C, ValueRange{n, k, at[j]});
                else
                  sb.create<vector::MaskedStoreOp>(loc, C, ValueRange{n, k, at[j]}, lanes[j], v);
              }
              sb.create<scf::YieldOp>(loc);
            });
          }
        };
        e.blockLoop(ub, n0, n1, 1, [&](OpBuilder &nb, Value n) {
          Value xImage = e.mul(nb, n, e.idx(nb, Cin * PX));
          // Pixel groups outside, filter tiles inside: the group's window
          // of x (every channel) stays in cache while all the filters
          // sweep it, and the epilogue reads the group's outputs back
          // from cache.
          // The groups with masks (those before interiorBegin, then those
          // from interiorEnd: one loop, one copy of the tile), then the
          // interior ones.
          const int64_t groups = ceilDiv(P, group), inside = (interiorEnd - interiorBegin) / group;
          const int64_t head = interiorBegin / group;
          auto groupLoop = [&](int64_t lo, int64_t hi, bool interior) {
            if (lo >= hi)
              return;
            e.blockLoop(nb, e.idx(nb, lo), e.idx(nb, hi), 1, [&](OpBuilder &pb, Value gi) {
              // Group gi's first pixel (past the interior ones when gi >= head).
              Value g0 = e.mul(pb, gi, e.idx(pb, group));
              if (!interior && inside > 0)
                g0 = pb.create<arith::SelectOp>(loc, e.lt(pb, gi, e.idx(pb, head)), g0,
                                                e.add(pb, g0, e.idx(pb, inside * group)));
              auto filters = [&](OpBuilder &fb, Value c0, bool first) {
                Value c1 = e.min(fb, e.add(fb, c0, e.idx(fb, CB)), e.idx(fb, Cin));
                e.blockLoop(fb, e.idx(fb, 0), e.idx(fb, K), KT,
                            [&](OpBuilder &gb, Value k0) { tile(gb, n, xImage, g0, k0, c0, c1, first, interior); });
              };
              filters(pb, e.idx(pb, 0), true);
              if (CB < Cin)
                e.blockLoop(pb, e.idx(pb, CB), e.idx(pb, Cin), CB,
                            [&](OpBuilder &fb, Value c0) { filters(fb, c0, false); });
              if (epilogue)
                epilogue(pb, loc, n, e.idx(pb, 0), e.idx(pb, K), e.outputIndex(pb, g0, grid),
                         e.outputIndex(pb, e.min(pb, e.add(pb, g0, e.idx(pb, group)), e.idx(pb, P)), grid));
            });
          };
          groupLoop(0, groups - inside, false);
          groupLoop(head, head + inside, true);
        });
  });
  rb.create<scf::YieldOp>(loc);
}


// Vectors along the filters (ConvGrid::alongFilters): with at least VL
// filters and a window wider than one point, the vectors span VL filters
// and x is read one point at a time, broadcast: every lane is useful,
// whatever the output's width (a "valid" convolution's grid wastes W - OW
// of every W pixels: LeNet-5's second layer 4 of 14), no load of x is
// masked or split across cache lines, and a point is loaded once for all
// the taps of a kernel row that read it. The filters (or dy) are
// transposed once, and the outputs (or the filter gradient) transposed
// back, VL x VL at a time.
namespace {

// out[n, k, q] = sum over (c, u, v) of w[k, c, u, v] * x[n, c, S i + u - pt, S j + v - pl]
// for output pixel q = i * OW + j (0 outside the image), stride S of 1 or 2:
//
//   wT[(c, u, v), k] = w[k, c, u, v] (0 past K), once per call
//   parallel over the images (when there is enough work):
//     for each band of BR output rows (whole tiles' TR rows):
//       (padded) the band's S (BR - 1) + kh rows of x, every channel,
//         copied with their zeros around them (xP, on the unit's stack)
//       for each tile of TR x TC output pixels, each tile of KT filter vectors:
//         KT x TR x TC accumulators
//         for each (c, u), the kernel row's taps v unrolled: KT loads of
//           wT per tap, each point of x the taps read broadcast once
//           (constant offsets), KT FMAs per pixel and tap
//         the accumulators into T[q, k] (a stack scratch, pixel-major)
//       T transposed into the band's outputs (VL x VL blocks), then the
//       epilogue over them
void emitConvAlongFilters(OpBuilder &b, Location loc, const DirectConv &g, Value C, const GemmConfig &cfg,
                          const GemmEpilogue &epilogue) {
  Emitter e{b, loc, cfg.vl};
  auto xs = cast<MemRefType>(g.x.getType()).getShape();
  const ConvGrid &cg = g.grid;
  const int64_t N = xs[0], Cin = xs[1], H = xs[2], W = xs[3], PX = H * W, OH = cg.oh, OW = cg.ow, PY = OH * OW;
  const int64_t K = cast<MemRefType>(C.getType()).getShape()[1];
  const int64_t taps = cg.kh * cg.kw, R = Cin * taps, VL = cfg.vl;
  const int64_t KV = ceilDiv(K, VL), KP = KV * VL;
  // The register tile (each point of x at a constant offset from the
  // tile's first).
  const auto [KT, TR, TC] = filterTile(OH, OW, KV, VL);
  const int64_t units = N * K * R * PY / cfg.macs_per_point >= cfg.grain ? N : 1;
  // x as the tiles read it: in place (rows W apart, planes PX), or with
  // padding each band's rows copied between zeros (rows XW apart, a whole
  // number of vectors; planes XR rows).
  const bool padded = !cg.unpadded;
  // Bands of BR output rows (convBand).
  const ConvBand cband = convBand(cg, Cin, W, KP, TR, VL);
  const int64_t XW = cband.pitch, BR = cband.rows;
  const int64_t TQ = roundUp(BR * OW, VL); // a band's pixels, whole blocks
  const int64_t S = cg.stride, XR = cband.inputRows(cg), XP = padded ? XR * XW : PX;

  Type f32 = b.getF32Type();
  VectorType fvec = VectorType::get({VL}, f32);
  Value xF = e.flat(g.x), wF = e.flat(g.w), cF = e.flat(C);
  OpBuilder rb = e.outlined("conv");
  // wT[r * KP + k] = w[k, r], 0 for k >= K (and rows up to a whole
  // block): on the calling thread's stack.
  const int64_t RQ = roundUp(R, VL);
  Value wT = rb.create<memref::AllocaOp>(loc, MemRefType::get({RQ * KP}, f32), rb.getI64IntegerAttr(64));
  e.transposeInto(rb, wF, e.idx(rb, 0), R, K, R, wT, e.idx(rb, 0), KP, /*wholeBlocks=*/true);
  e.unitLoop(rb, units, N * K * R * PY / cfg.macs_per_point, [&](OpBuilder &ub, Value u) {
        auto [n0, n1] = e.unitImages(ub, u, units, N);
        Value zero = e.zeros(ub);
        // T[q * KP + k]: a band's outputs, pixel-major.
        Value T = ub.create<memref::AllocaOp>(loc, MemRefType::get({TQ * KP}, f32), ub.getI64IntegerAttr(64));
        Value xP = padded ? ub.create<memref::AllocaOp>(loc, MemRefType::get({Cin * XP}, f32), ub.getI64IntegerAttr(64))
                                .getResult()
                          : xF;
        e.blockLoop(ub, n0, n1, 1, [&](OpBuilder &nb, Value n) {
          Value xImage = e.mul(nb, n, e.idx(nb, Cin * PX));
          // One band: br output rows from i0.
          auto band = [&](OpBuilder &ib, Value i0, int64_t br) {
            // The band's first point of x (channel 0), in xP.
            Value first = e.add(ib, xImage, e.mul(ib, i0, e.idx(ib, S * W)));
            if (padded) {
              first = e.idx(ib, 0);
              e.blockLoop(ib, e.idx(ib, 0), e.idx(ib, Cin), 1, [&](OpBuilder &cb, Value c) {
                e.copyPaddedRows(cb, xF, e.add(cb, xImage, e.mul(cb, c, e.idx(cb, PX))), e.mul(cb, i0, e.idx(cb, S)),
                                 e.idx(cb, ConvBand{br, XW}.inputRows(cg)), xP, e.mul(cb, c, e.idx(cb, XP)), XW, cg,
                                 H, W);
              });
            }
            // One tile: kt filter vectors from kv0 x tr rows from the
            // band's row i1 x tc columns from j0.
            auto tile = [&](OpBuilder &tb, Value i1, int64_t tr, Value j0, Value kv0, int64_t tc, int64_t kt) {
              Value xBase = e.add(tb, first, e.mul(tb, e.add(tb, e.mul(tb, i1, e.idx(tb, XW)), j0), e.idx(tb, S)));
              Value wBase = e.mul(tb, kv0, e.idx(tb, VL));
              SmallVector<Value> init(kt * tr * tc, zero);
              // (c, u) as loops, v unrolled: LLVM finds the same point of x
              // in several taps (pixel (r, s + 1) at tap (u, v) is pixel
              // (r, s) at (u, v + 1)) and loads it once. On the ResNet 64 x
              // 56 x 56 layer (valid form) unrolling v made it 11% faster;
              // unrolling u too, no different.
              auto channels = e.accLoop(tb, e.idx(tb, 0), e.idx(tb, Cin), init, [&](OpBuilder &cb, Value c, ValueRange accC) {
                Value xc = e.add(cb, xBase, e.mul(cb, c, e.idx(cb, XP)));
                Value wc = e.add(cb, wBase, e.mul(cb, c, e.idx(cb, taps * KP)));
                auto rowsU = e.accLoop(cb, e.idx(cb, 0), e.idx(cb, cg.kh), accC, [&](OpBuilder &ub2, Value uu, ValueRange accU) {
                  Value xu = e.add(ub2, xc, e.mul(ub2, uu, e.idx(ub2, XW)));
                  Value wu = e.add(ub2, wc, e.mul(ub2, uu, e.idx(ub2, cg.kw * KP)));
                  SmallVector<Value> out(accU.begin(), accU.end());
                  for (int64_t v = 0; v < cg.kw; ++v) {
                    Value wv0 = e.add(ub2, wu, e.idx(ub2, v * KP));
                    SmallVector<Value> wv;
                    for (int64_t a = 0; a < kt; ++a)
                      wv.push_back(
                          ub2.create<vector::LoadOp>(loc, fvec, wT, ValueRange{e.add(ub2, wv0, e.idx(ub2, a * VL))}));
                    for (int64_t r = 0; r < tr; ++r)
                      for (int64_t s = 0; s < tc; ++s) {
                        Value point =
                            ub2.create<memref::LoadOp>(loc, xP, ValueRange{e.add(ub2, xu, e.idx(ub2, (r * XW + s) * S + v))});
                        Value bc = ub2.create<vector::BroadcastOp>(loc, fvec, point);
                        for (int64_t a = 0; a < kt; ++a)
                          out[(a * tr + r) * tc + s] =
                              ub2.create<vector::FMAOp>(loc, wv[a], bc, out[(a * tr + r) * tc + s]);
                      }
                  }
                  return out;
                });
                return SmallVector<Value>(rowsU.getResults());
              });
              Value tBase = e.add(tb, e.mul(tb, e.add(tb, e.mul(tb, i1, e.idx(tb, OW)), j0), e.idx(tb, KP)), wBase);
              for (int64_t a = 0; a < kt; ++a)
                for (int64_t r = 0; r < tr; ++r)
                  for (int64_t s = 0; s < tc; ++s)
                    tb.create<vector::StoreOp>(loc, channels.getResult((a * tr + r) * tc + s), T,
                                               ValueRange{e.add(tb, tBase, e.idx(tb, (r * OW + s) * KP + a * VL))});
            };
            e.stepLoop(ib, br, TR, [&](OpBuilder &rb2, Value i1, int64_t tr) {
              e.stepLoop(rb2, OW, TC, [&](OpBuilder &jb, Value j0, int64_t tc) {
                e.stepLoop(jb, KV, KT, [&](OpBuilder &kb, Value kv0, int64_t kt) { tile(kb, i1, tr, j0, kv0, tc, kt); });
              });
            });
            // T into the band's outputs (the filters past K left), then
            // the epilogue over them.
            Value q0 = e.mul(ib, i0, e.idx(ib, OW));
            e.transposeInto(ib, T, e.idx(ib, 0), KP, br * OW, K, cF,
                            e.add(ib, e.mul(ib, n, e.idx(ib, K * PY)), q0), PY, /*wholeBlocks=*/false);
            if (epilogue)
              epilogue(ib, loc, n, e.idx(ib, 0), e.idx(ib, K), q0, e.add(ib, q0, e.idx(ib, br * OW)));
          };
          e.stepLoop(nb, OH, BR, [&](OpBuilder &ib, Value i0, int64_t br) { band(ib, i0, br); });
        });
  });
  rb.create<scf::YieldOp>(loc);
}

// dw[k, (c, u, v)] = sum over n and output pixels q = i * OW + j of
// dy[n, k, q] * x[n, c, i + u - pt, j + v - pl] (0 outside the image):
//
//   parallel over units (groups of images, each summing into a part of
//   its own, filter-major: part[u][r][k]):
//     for each image n, each band of TB output rows:
//       dyT[q, k] = dy[n, k, q] for the band's pixels (VL x VL blocks
//         transposed; 0 past K)
//       for each channel c (or, kvOuter, each channel's rows copied
//       first, then the channels innermost):
//         (padded) the band's rows of x, with zeros around: xP
//         for each tile of RT taps, each of KT filter vectors:
//           the KT x RT accumulators from the part (0 at the unit's start)
//           for each P pixels (2-4) of a row of the band: P x KT loads of
//             dyT, and per point of x that a tap of any reads one
//             broadcast (a constant offset), KT FMAs per tap that reads it
//           the accumulators into the part
//   dw[k, r] = the parts' sum, in part order
//
// The pixels of a step share the points of x their taps read (per kernel
// row, kw + P - 1 broadcasts instead of P x kw): two pixels a step against
// one, 2 threads, made LeNet-5's 16 x 6 x 5 x 5 layer 9% faster, ResNet-8's
// 3 x 3 layers 2-4%, the ResNet and VGG layers 3% (gradientStep: 4).
//
// No lane is summed across: a pixel's products land in the lanes of their
// filters. Against vectors along the grid's pixels (emitFilterGradient),
// which load a vector of dy and of x for every FMA tile row and column and
// sum each accumulator's lanes at the end of every block of pixels, the
// ResNet 64 x 56 x 56 layer's filter gradient on the Intel Xeon (8 images,
// 1 thread) took 8.5 ms against 12.6 ms in a C++ model of both loops.
void emitFilterGradientAlongFilters(OpBuilder &b, Location loc, const FilterGradient &g, Value C,
                                    const GemmConfig &cfg, const GemmEpilogue &epilogue) {
  Emitter e{b, loc, cfg.vl};
  auto xs = cast<MemRefType>(g.x.getType()).getShape(), ys = cast<MemRefType>(g.dy.getType()).getShape();
  const ConvGrid &cg = g.grid;
  const int64_t N = xs[0], Cin = xs[1], H = xs[2], W = xs[3], PX = H * W, K = ys[1], OH = cg.oh, OW = cg.ow;
  const int64_t PY = OH * OW, taps = cg.kh * cg.kw, R = Cin * taps, VL = cfg.vl;
  const int64_t KV = ceilDiv(K, VL), KP = KV * VL;
  const GradientTile tile = gradientTile(taps, KV, VL);
  const int64_t KT = tile.kt, NT = tile.nt;
  int64_t work = N * K * R * PY / cfg.macs_per_point, units = 1;
  if (work >= cfg.grain)
    units = std::clamp<int64_t>(N * PY / 1024, 1, std::min(N, cfg.min_units));
  const int64_t perUnit = ceilDiv(N, units);
  units = ceilDiv(N, perUnit);
  // Bands of TB output rows (gradientBand): LeNet-5's 10 x 10 layer is
  // one band, channels outer; the ResNet 64 x 56 x 56 layer's bands are 9
  // rows and VGG's 128 x 56 x 56 layer's 4, filter tiles outer.
  // With padding, each band's rows of x (of one channel, or with filter
  // tiles outer of every channel) are copied with their zeros (TB + kh - 1 rows of OW + kw - 1 points at a pitch of XW,
  // whole vectors), so that every tap reads a point; without, x is read
  // in place (pitch W).
  const GradientBand band = gradientBand(cg, Cin, W, KP, VL);
  const int64_t TB = band.rows, XW = band.pitch, XR = TB + cg.kh - 1;
  const bool KO = band.kvOuter;
  const int64_t TQ = roundUp(TB * OW, VL);
  const bool padded = !cg.unpadded;

  Type f32 = b.getF32Type();
  VectorType fvec = VectorType::get({VL}, f32);
  Value dyF = e.flat(g.dy), xF = e.flat(g.x), cF = e.flat(C);
  Value part = b.create<memref::AllocOp>(loc, MemRefType::get({units * R * KP}, f32), b.getI64IntegerAttr(64));
  OpBuilder rb = e.outlined("dw");
  e.unitLoop(rb, units, work, [&](OpBuilder &ub, Value u) {
        Value n0 = e.mul(ub, u, e.idx(ub, perUnit));
        Value n1 = e.min(ub, e.add(ub, n0, e.idx(ub, perUnit)), e.idx(ub, N));
        // dyT[q * KP + k]: a band's dy, pixel-major.
        Value dyT = ub.create<memref::AllocaOp>(loc, MemRefType::get({TQ * KP}, f32), ub.getI64IntegerAttr(64));
        Value xP = padded ? ub.create<memref::AllocaOp>(loc, MemRefType::get({(KO ? Cin : 1) * XR * XW}, f32), ub.getI64IntegerAttr(64))
                                .getResult()
                          : Value();
        Value partU = e.mul(ub, u, e.idx(ub, R * KP));
        e.blockLoop(ub, n0, n1, 1, [&](OpBuilder &nb, Value n) {
          Value xImage = e.mul(nb, n, e.idx(nb, Cin * PX));
          // One band: tb output rows from i0.
          e.stepLoop(nb, OH, TB, [&](OpBuilder &bb, Value i0, int64_t tb) {
            Value zero = e.zeros(bb);
            Value q0 = e.mul(bb, i0, e.idx(bb, OW));
            e.transposeInto(bb, dyF, e.add(bb, e.mul(bb, n, e.idx(bb, K * PY)), q0), PY, K, tb * OW, dyT,
                            e.idx(bb, 0), KP, /*wholeBlocks=*/true);
            auto eq = [&](Value x, Value y) { return bb.create<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, x, y); };
            Value first = bb.create<arith::AndIOp>(loc, eq(n, n0), eq(i0, e.idx(bb, 0)));
            // One tile: filter vectors kv0..kv0 + kt - 1 and taps t0..t0 + rt - 1 of channel c.
            auto tileBody = [&](OpBuilder &kb, Value c, Value kv0, int64_t kt, int64_t t0, int64_t rt) {
              // The band's rows of x: in xBuf from xRow0, XW apart.
              Value xc = e.add(kb, xImage, e.mul(kb, c, e.idx(kb, PX)));
              Value xBuf = xF, xRow0 = e.add(kb, xc, e.mul(kb, i0, e.idx(kb, W)));
              if (padded)
                xBuf = xP, xRow0 = KO ? e.mul(kb, c, e.idx(kb, XR * XW)) : e.idx(kb, 0);
              Value partC = e.add(kb, partU, e.mul(kb, c, e.idx(kb, taps * KP)));
              Value at = e.add(kb, partC, e.add(kb, e.idx(kb, t0 * KP), e.mul(kb, kv0, e.idx(kb, VL))));
              SmallVector<Value> init;
              for (int64_t a = 0; a < kt; ++a)
                for (int64_t i = 0; i < rt; ++i) {
                  Value old =
                      kb.create<vector::LoadOp>(loc, fvec, part, ValueRange{e.add(kb, at, e.idx(kb, i * KP + a * VL))});
                  init.push_back(kb.create<arith::SelectOp>(loc, first, zero, old));
                }
              Value dyAt = e.mul(kb, kv0, e.idx(kb, VL));
              auto rowsLoop = kb.create<scf::ForOp>(
                  loc, e.idx(kb, 0), e.idx(kb, tb), e.idx(kb, 1), init,
                  [&](OpBuilder &ib, Location, Value i, ValueRange accI) {
                    Value xi = e.add(ib, xRow0, e.mul(ib, i, e.idx(ib, XW)));
                    Value qi = e.mul(ib, i, e.idx(ib, OW));
                    // P pixels from column j: the points of x in the
                    // order of their offsets from xq, each broadcast once
                    // and used at once by every tap of every pixel that
                    // reads it.
                    auto pixels = [&](OpBuilder &jb, Value j, int64_t P, SmallVector<Value> &acc) {
                      SmallVector<SmallVector<Value>> dyv(P);
                      for (int64_t p = 0; p < P; ++p) {
                        Value dyq = e.add(jb, e.mul(jb, e.add(jb, qi, e.add(jb, j, e.idx(jb, p))), e.idx(jb, KP)), dyAt);
                        for (int64_t a = 0; a < kt; ++a)
                          dyv[p].push_back(
                              jb.create<vector::LoadOp>(loc, fvec, dyT, ValueRange{e.add(jb, dyq, e.idx(jb, a * VL))}));
                      }
                      std::map<int64_t, SmallVector<std::pair<int64_t, int64_t>>> readers; // offset: (pixel, tap)
                      for (int64_t ti = 0; ti < rt; ++ti)
                        for (int64_t p = 0; p < P; ++p)
                          readers[((t0 + ti) / cg.kw) * XW + (t0 + ti) % cg.kw + p].push_back({p, ti});
                      Value xq = e.add(jb, xi, j);
                      for (auto &[offset, rs] : readers) {
                        Value point = jb.create<memref::LoadOp>(loc, xBuf, ValueRange{e.add(jb, xq, e.idx(jb, offset))});
                        Value bc = jb.create<vector::BroadcastOp>(loc, fvec, point);
                        for (auto [p, ti] : rs)
                          for (int64_t a = 0; a < kt; ++a)
                            acc[a * rt + ti] = jb.create<vector::FMAOp>(loc, dyv[p][a], bc, acc[a * rt + ti]);
                      }
                    };
                    const int64_t P = gradientStep(kt, rt, VL), whole = OW / P * P;
                    auto colsLoop = ib.create<scf::ForOp>(
                        loc, e.idx(ib, 0), e.idx(ib, whole), e.idx(ib, P), accI,
                        [&](OpBuilder &jb, Location, Value j, ValueRange acc) {
                          SmallVector<Value> out(acc.begin(), acc.end());
                          pixels(jb, j, P, out);
                          jb.create<scf::YieldOp>(loc, out);
                        });
                    colsLoop->setAttr(kNoUnrollAttr, ib.getUnitAttr());
                    SmallVector<Value> acc(colsLoop.getResults().begin(), colsLoop.getResults().end());
                    if (whole < OW)
                      pixels(ib, e.idx(ib, whole), OW - whole, acc);
                    ib.create<scf::YieldOp>(loc, acc);
                  });
              rowsLoop->setAttr(kNoUnrollAttr, kb.getUnitAttr());
              for (int64_t a = 0; a < kt; ++a)
                for (int64_t i = 0; i < rt; ++i)
                  kb.create<vector::StoreOp>(loc, rowsLoop.getResult(a * rt + i), part,
                                             ValueRange{e.add(kb, at, e.idx(kb, i * KP + a * VL))});
            };
            auto copyRows = [&](OpBuilder &cb, Value c, Value to) {
              e.copyPaddedRows(cb, xF, e.add(cb, xImage, e.mul(cb, c, e.idx(cb, PX))), i0, e.idx(cb, tb + cg.kh - 1),
                               xP, to, XW, cg, H, W);
            };
            auto eachTapTile = [&](function_ref<void(int64_t, int64_t)> body) {
              for (int64_t t = 0, t0 = 0; t < NT; ++t) {
                const int64_t rt = taps / NT + (t < taps % NT ? 1 : 0);
                body(t0, rt);
                t0 += rt;
              }
            };
            if (KO) {
              if (padded)
                e.blockLoop(bb, e.idx(bb, 0), e.idx(bb, Cin), 1,
                            [&](OpBuilder &cb, Value c) { copyRows(cb, c, e.mul(cb, c, e.idx(cb, XR * XW))); });
              eachTapTile([&](int64_t t0, int64_t rt) {
                e.stepLoop(bb, KV, KT, [&](OpBuilder &kb, Value kv0, int64_t kt) {
                  e.blockLoop(kb, e.idx(kb, 0), e.idx(kb, Cin), 1,
                              [&](OpBuilder &cb, Value c) { tileBody(cb, c, kv0, kt, t0, rt); });
                });
              });
            } else {
              e.blockLoop(bb, e.idx(bb, 0), e.idx(bb, Cin), 1, [&](OpBuilder &cb, Value c) {
                if (padded)
                  copyRows(cb, c, e.idx(cb, 0));
                eachTapTile([&](int64_t t0, int64_t rt) {
                  e.stepLoop(cb, KV, KT,
                             [&](OpBuilder &kb, Value kv0, int64_t kt) { tileBody(kb, c, kv0, kt, t0, rt); });
                });
              });
            }
          });
        });
  });
  // dw = the parts' sum, in part order (into the first part), transposed.
  if (units > 1)
    e.sumParts(rb, part, units, R * KP, part);
  e.transposeInto(rb, part, e.idx(rb, 0), KP, R, K, cF, e.idx(rb, 0), R, /*wholeBlocks=*/false);
  if (epilogue)
    epilogue(rb, loc, e.idx(rb, 0), e.idx(rb, 0), e.idx(rb, K), e.idx(rb, 0), e.idx(rb, R));
  rb.create<scf::YieldOp>(loc);
}

} // namespace

std::optional<ChannelConv> ChannelConv::of(ArrayRef<int64_t> x, int64_t K, ArrayRef<int64_t> kernel,
                                           ArrayRef<int64_t> stride, ArrayRef<int64_t> dilation,
                                           ArrayRef<int64_t> padding, int64_t vectorWidth) {
  const int64_t VL = vectorWidth;
  if (x.size() != 4 || kernel.size() != 2 || stride.size() != 2 || dilation.size() != 2 || padding.size() != 4 ||
      dilation[0] != 1 || dilation[1] != 1 || stride[0] < 1 || stride[1] < 1 || kernel[0] < 1 || kernel[1] < 1 ||
      kernel[1] > 16 || llvm::any_of(padding, [](int64_t p) { return p < 0; }))
    return std::nullopt;
  // Fewer than 16 filters (fewer than AVX-512's lanes: the input gradient
  // of a layer with fewer than 16 input channels, soma-autodiff), at least
  // a vector of channels, which then fill more than half of their vectors.
  if (K < 1 || K >= 16 || x[1] < VL)
    return std::nullopt;
  ChannelConv g;
  g.kh = kernel[0], g.kw = kernel[1], g.sh = stride[0], g.sw = stride[1], g.pt = padding[0], g.pl = padding[1];
  const int64_t hp = x[2] + padding[0] + padding[2];
  g.xw = x[3] + padding[1] + padding[3];
  if (hp < g.kh || g.xw < g.kw)
    return std::nullopt;
  g.oh = (hp - g.kh) / g.sh + 1;
  g.ow = (g.xw - g.kw) / g.sw + 1;
  const int64_t CP = roundUp(x[1], VL);
  if (std::min(g.kh, x[2]) * g.xw * CP * 4 > (256 << 10) || K * g.kh * g.kw * CP * 4 > (1 << 20))
    return std::nullopt;
  return g;
}

// out[n, k, i, j] = sum over (c, u, v) of w[k, c, u, v] * x[n, c, sh i + u - pt, sw j + v - pl]
// with vectors along the channels c (0 outside the image):
//
//   wC[((k, u, v), c)] = w[k, c, u, v] (0 past C), once per call
//   parallel over the images (when there is enough work):
//     for each band of BR output rows:
//       xC[(r, col), c]: the rows of x the band reads (only those inside
//         the image), channels-last, each between its padding columns
//         (zeros, as the channels past C: written once per unit)
//       for each output row i, tile of TC columns and KT filters:
//         KT x TC accumulators of VL channels
//         for the window rows u that are inside the image, each vector of
//           channels: per tap v (unrolled) KT loads of wC, each column of
//           xC the tile's taps read loaded once, KT x TC FMAs
//         the accumulators' lanes summed (Emitter::laneSums), each
//         filter's TC outputs stored (masked)
//       the epilogue over the band's outputs
//
// Each output sums its window rows in order, in each the channel vectors
// in order and in each of those the taps in order, then the lanes by the
// fixed tree: the same for any number of threads.
void emitConvAlongChannels(OpBuilder &b, Location loc, const ChannelConv &g, Value C, const GemmConfig &cfg,
                           const GemmEpilogue &epilogue) {
  Emitter e{b, loc, cfg.vl};
  auto xs = cast<MemRefType>(g.x.getType()).getShape();
  const int64_t N = xs[0], Cin = xs[1], H = xs[2], W = xs[3], PX = H * W, OH = g.oh, OW = g.ow, PY = OH * OW;
  const int64_t K = cast<MemRefType>(C.getType()).getShape()[1];
  const int64_t VL = cfg.vl, CV = ceilDiv(Cin, VL), CP = CV * VL, XW = g.xw, taps = g.kh * g.kw;
  // The register tile: KT filters x TC output columns, 24 accumulators of
  // 32 registers with AVX-512 (8 of 16 otherwise).
  const int64_t budget = VL >= 16 ? 24 : 8, KT = std::min(K, VL >= 16 ? int64_t{8} : int64_t{4});
  // (At most VL columns: a filter's outputs are picked from the lanes'
  // sums as one vector.)
  const int64_t TC = std::min({OW, VL, std::max<int64_t>(1, budget / KT)});
  // Bands of output rows whose rows of x fill at most 128 KiB (one row
  // at least: ChannelConv::of keeps it within 256 KiB).
  auto inputRows = [&](int64_t rows) { return std::min(H, (rows - 1) * g.sh + g.kh); };
  int64_t BR = 1;
  while (BR < OH && inputRows(BR + 1) * XW * CP * 4 <= (128 << 10))
    ++BR;
  const int64_t XR = inputRows(BR);
  const int64_t work = N * K * Cin * taps * PY / cfg.macs_per_point;
  const int64_t units = work >= cfg.grain ? N : 1;

  Type f32 = b.getF32Type();
  VectorType fvec = VectorType::get({VL}, f32);
  Value xF = e.flat(g.x), wF = e.flat(g.w), cF = e.flat(C);
  OpBuilder rb = e.outlined("conv");
  // n floats of `buffer` from 0 set to 0 (n a multiple of VL).
  auto zeroFill = [&](OpBuilder &nb, Value buffer, int64_t n) {
    e.blockLoop(nb, e.idx(nb, 0), e.idx(nb, n), VL, [&](OpBuilder &zb, Value at) {
      zb.create<vector::StoreOp>(loc, e.zeros(zb), buffer, ValueRange{at});
    });
  };
  // wC, on the calling thread's stack.
  Value wC = rb.create<memref::AllocaOp>(loc, MemRefType::get({K * taps * CP}, f32), rb.getI64IntegerAttr(64));
  zeroFill(rb, wC, K * taps * CP);
  e.blockLoop(rb, e.idx(rb, 0), e.idx(rb, K), 1, [&](OpBuilder &kb, Value k) {
    e.transposeInto(kb, wF, e.mul(kb, k, e.idx(kb, Cin * taps)), taps, Cin, taps, wC,
                    e.mul(kb, k, e.idx(kb, taps * CP)), CP, /*wholeBlocks=*/false);
  });
  e.unitLoop(rb, units, work, [&](OpBuilder &ub, Value u) {
    auto [n0, n1] = e.unitImages(ub, u, units, N);
    Value xC = ub.create<memref::AllocaOp>(loc, MemRefType::get({XR * XW * CP}, f32), ub.getI64IntegerAttr(64));
    zeroFill(ub, xC, XR * XW * CP);
    e.blockLoop(ub, n0, n1, 1, [&](OpBuilder &nb, Value n) {
      Value xImage = e.mul(nb, n, e.idx(nb, Cin * PX));
      auto band = [&](OpBuilder &ib, Value i0, int64_t br) {
        // The band's rows of x inside the image: [rlo, rhi).
        Value top = ib.create<arith::SubIOp>(loc, e.mul(ib, i0, e.idx(ib, g.sh)), e.idx(ib, g.pt));
        Value rlo = e.max(ib, top, e.idx(ib, 0));
        Value rhi = e.min(ib, e.add(ib, top, e.idx(ib, (br - 1) * g.sh + g.kh)), e.idx(ib, H));
        e.blockLoop(ib, rlo, rhi, 1, [&](OpBuilder &cb, Value r) {
          Value rr = cb.create<arith::SubIOp>(loc, r, rlo);
          e.transposeInto(cb, xF, e.add(cb, xImage, e.mul(cb, r, e.idx(cb, W))), PX, Cin, W, xC,
                          e.mul(cb, e.add(cb, e.mul(cb, rr, e.idx(cb, XW)), e.idx(cb, g.pl)), e.idx(cb, CP)), CP,
                          /*wholeBlocks=*/false);
        });
        // One tile: kt filters from k0 x tc columns from j0 of output row i;
        // at a known column (edge tiles), only the taps inside the image.
        auto tile = [&](OpBuilder &tb, Value i, Value j0, std::optional<int64_t> known, Value k0, int64_t tc,
                        int64_t kt) {
          auto inside = [&](int64_t s, int64_t v) {
            if (!known)
              return true;
            int64_t col = (*known + s) * g.sw + v - g.pl;
            return col >= 0 && col < W;
          };
          // The window rows inside the image: sh i + u - pt in [0, H).
          Value rowTop = tb.create<arith::SubIOp>(loc, e.mul(tb, i, e.idx(tb, g.sh)), e.idx(tb, g.pt));
          Value uLo = e.max(tb, tb.create<arith::SubIOp>(loc, e.idx(tb, 0), rowTop), e.idx(tb, 0));
          Value uHi = e.max(tb, e.min(tb, tb.create<arith::SubIOp>(loc, e.idx(tb, H), rowTop), e.idx(tb, g.kh)), uLo);
          SmallVector<Value> init(kt * tc, e.zeros(tb));
          auto rows = e.accLoop(tb, uLo, uHi, init, [&](OpBuilder &ub2, Value uu, ValueRange accU) {
            // xC's row of window row u, at the tile's first column.
            Value rr = ub2.create<arith::SubIOp>(loc, e.add(ub2, rowTop, uu), rlo);
            Value xu = e.mul(ub2, e.add(ub2, e.mul(ub2, rr, e.idx(ub2, XW)), e.mul(ub2, j0, e.idx(ub2, g.sw))),
                             e.idx(ub2, CP));
            Value wu = e.mul(ub2, e.add(ub2, e.mul(ub2, k0, e.idx(ub2, g.kh)), uu), e.idx(ub2, g.kw * CP));
            auto chans = e.accLoop(ub2, e.idx(ub2, 0), e.idx(ub2, CV), accU, [&](OpBuilder &cb, Value cv, ValueRange accC) {
              Value c0 = e.mul(cb, cv, e.idx(cb, VL));
              Value xc = e.add(cb, xu, c0), wc = e.add(cb, wu, c0);
              // Each column of xC the tile's taps read, loaded once.
              std::map<int64_t, Value> column;
              auto point = [&](int64_t col) {
                auto [it, fresh] = column.try_emplace(col);
                if (fresh)
                  it->second = cb.create<vector::LoadOp>(loc, fvec, xC, ValueRange{e.add(cb, xc, e.idx(cb, col * CP))});
                return it->second;
              };
              SmallVector<Value> out(accC.begin(), accC.end());
              for (int64_t v = 0; v < g.kw; ++v) {
                if (llvm::none_of(llvm::seq<int64_t>(0, tc), [&](int64_t s) { return inside(s, v); }))
                  continue;
                SmallVector<Value> wv;
                for (int64_t a = 0; a < kt; ++a)
                  wv.push_back(cb.create<vector::LoadOp>(
                      loc, fvec, wC, ValueRange{e.add(cb, wc, e.idx(cb, (a * taps + v) * CP))}));
                for (int64_t s = 0; s < tc; ++s) {
                  if (!inside(s, v))
                    continue;
                  Value xv = point(s * g.sw + v);
                  for (int64_t a = 0; a < kt; ++a)
                    out[a * tc + s] = cb.create<vector::FMAOp>(loc, wv[a], xv, out[a * tc + s]);
                }
              }
              return out;
            });
            return SmallVector<Value>(chans.getResults());
          });
          // The lanes summed: sums[q] lane l is accumulator q VL + l's, filter-major.
          SmallVector<Value> sums = e.laneSums(tb, rows.getResults());
          Value lanes = tb.create<vector::CreateMaskOp>(loc, e.mvec, ValueRange{e.idx(tb, tc)});
          // Output (n, k0, i, j0); filter k0 + a's PY further.
          Value outAt = e.add(
              tb, e.mul(tb, e.add(tb, e.mul(tb, e.add(tb, e.mul(tb, n, e.idx(tb, K)), k0), e.idx(tb, OH)), i), e.idx(tb, OW)),
              j0);
          for (int64_t a = 0; a < kt; ++a) {
            int64_t first = a * tc, q = first / VL;
            Value hi = q + 1 < static_cast<int64_t>(sums.size()) ? sums[q + 1] : sums[q];
            SmallVector<int64_t> pick;
            for (int64_t s = 0; s < VL; ++s)
              pick.push_back(s < tc ? first % VL + s : 0);
            Value outs = tb.create<vector::ShuffleOp>(loc, sums[q], hi, pick);
            tb.create<vector::MaskedStoreOp>(loc, cF, ValueRange{e.add(tb, outAt, e.idx(tb, a * PY))}, lanes, outs);
          }
        };
        // The tiles of a row whose taps all read columns inside the image
        // (whole tiles [ta, tz)) in a loop; the others, at the row's ends,
        // one by one, with only their taps inside (LeNet-5's second layer's
        // input gradient, 10 columns padded by 4 into 14: 50 of 70 taps).
        const int64_t tiles = ceilDiv(OW, TC);
        auto interior = [&](int64_t t) {
          return (t + 1) * TC <= OW && t * TC * g.sw >= g.pl && ((t + 1) * TC - 1) * g.sw + g.kw - 1 - g.pl < W;
        };
        int64_t ta = 0;
        while (ta < tiles && !interior(ta))
          ++ta;
        int64_t tz = ta;
        while (tz < tiles && interior(tz))
          ++tz;
        if (tz == ta)
          ta = tz = tiles;
        e.stepLoop(ib, br, 1, [&](OpBuilder &rb2, Value di, int64_t) {
          Value i = e.add(rb2, i0, di);
          auto filters = [&](OpBuilder &jb, Value j0, std::optional<int64_t> known, int64_t tc) {
            e.stepLoop(jb, K, KT, [&](OpBuilder &kb, Value k0, int64_t kt) { tile(kb, i, j0, known, k0, tc, kt); });
          };
          auto edge = [&](int64_t t) {
            const int64_t j0 = t * TC;
            filters(rb2, e.idx(rb2, j0), j0, std::min(TC, OW - j0));
          };
          for (int64_t t = 0; t < ta; ++t)
            edge(t);
          if (tz - ta > 1)
            e.blockLoop(rb2, e.idx(rb2, ta * TC), e.idx(rb2, tz * TC), TC,
                        [&](OpBuilder &jb, Value j0) { filters(jb, j0, std::nullopt, TC); });
          else if (tz - ta == 1)
            filters(rb2, e.idx(rb2, ta * TC), std::nullopt, TC);
          for (int64_t t = tz; t < tiles; ++t)
            edge(t);
        });
        if (epilogue) {
          Value q0 = e.mul(ib, i0, e.idx(ib, OW));
          epilogue(ib, loc, n, e.idx(ib, 0), e.idx(ib, K), q0, e.add(ib, q0, e.idx(ib, br * OW)));
        }
      };
      e.stepLoop(nb, OH, BR, [&](OpBuilder &ib, Value i0, int64_t br) { band(ib, i0, br); });
    });
  });
  rb.create<scf::YieldOp>(loc);
}

} // namespace soma
