//===- Lowering.h - Pieces of the soma lowering shared by passes -*- C++ -*-===//
#pragma once

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Operation.h"

#include <array>
#include <functional>
#include <optional>

namespace soma {

/// On an scf.for whose iterations are independent: the iteration points of
/// its whole loop nest. soma-linalg-to-loops parallelises it when that
/// reaches the grain.
inline constexpr const char *kParallelWorkAttr = "soma.parallel_work";

/// soma-linalg-to-loops' default grain: the work a loop nest needs to run
/// on several threads (a linalg op's points weighted by their cost, 4 for a
/// binary elementwise op's; a GEMM counts 8 multiply-adds as one). The runtime keeps the workers spinning
/// between the kernels of a call (Executable::call), where a parallel
/// region costs a few microseconds; woken from sleep it cost about 50 us
/// (docs/pipeline.md, "The grain rule").
inline constexpr int64_t kDefaultGrain = 131072;

/// An f32 arith.constant of value v.
mlir::Value f32Const(mlir::OpBuilder &b, mlir::Location loc, double v);

/// On a module: soma-flush-denormals leaves its kernels alone, and they
/// run with the caller's handling of denormals
/// (CompileOptions::flush_denormals false).
inline constexpr const char *kKeepDenormalsAttr = "soma.keep_denormals";

/// On an scf.execute_region: soma-outline-loops makes a function of it
/// (named after the kernel and the attribute's string).
inline constexpr const char *kOutlineAttr = "soma.outline";
/// On a sequential scf.for: its back edge gets llvm.loop.unroll.disable.
inline constexpr const char *kNoUnrollAttr = "soma.no_unroll";

/// Emits the scalar computation of an elementwise soma op on `args` (one f32
/// per operand) and returns the f32 result.
mlir::Value emitElementwiseScalar(mlir::OpBuilder &b, mlir::Location loc,
                                  mlir::Operation *op, mlir::ValueRange args);

/// Blocking of the packed GEMM (see Gemm.cpp). The micro-kernel keeps
/// mr x nr results in registers as mr * nr / vl vectors of vl floats; the
/// defaults suit AVX2/FMA (16 registers of 8 floats: 12 accumulators, 2 B
/// vectors, 1 broadcast).
struct GemmConfig {
  int64_t vl = 8, mr = 6, nr = 16;
  int64_t mc = 72, nc = 256, kc = 256; // A block in L2, B panel in L1
  /// The wide register tile (0: none) of products of at least
  /// `wide_min_side` rows and columns whose columns it pads no more than
  /// the normal tile (forShape); mc and nc are multiples of its sides.
  int64_t wide_mr = 0, wide_nr = 0, wide_min_side = 0;
  int64_t grain = kDefaultGrain;       // soma-linalg-to-loops' grain
  int64_t macs_per_point = 8;          // multiply-adds per point of the grain
  int64_t min_units = 8;               // units for the threads to share
  int64_t threads = 0;                 // the threads the units are cut for (0: unknown)
  /// A direct convolution of at least this many multiply-adds (N K R P)
  /// computes its interior groups without masks (DirectConv.cpp): a second
  /// copy of its register tile, which costs compile time.
  int64_t conv_interior_work = int64_t{1} << 26;
  /// The blocking for vector registers of `vectorWidth` floats: 4 (SSE,
  /// NEON: 16 registers), 8 (AVX2: 16 registers), 16 (AVX-512: 32).
  static GemmConfig forVectorWidth(int64_t vectorWidth);
  /// This blocking with a shorter register tile (fewer rows, the same
  /// width) when M rows would leave much of the last tile empty.
  GemmConfig forRows(int64_t M) const;
  /// The blocking for an M x N product: a large one takes the wide
  /// register tile (AVX-512: 6 x 4 vectors instead of 12 x 2) unless it
  /// would pad more columns; then forRows(M).
  GemmConfig forShape(int64_t M, int64_t N) const;
};

/// Called once per finished block of C (rank-3 indices: batch b, rows
/// [m0, m1), columns [n0, n1)) while it is still in cache, inside the
/// parallel unit that computed it.
using GemmEpilogue = std::function<void(mlir::OpBuilder &, mlir::Location, mlir::Value b,
                                        mlir::Value m0, mlir::Value m1, mlir::Value n0,
                                        mlir::Value n1)>;

/// An operand of the GEMM as stored: a rank-3 memref [batch, rows, cols]
/// read with memref loads, or (when `parts` is set) a virtual one whose
/// elements are computed where the packing needs them, such as the windows
/// of an image for a convolution (implicit im2col): no buffer holds it.
struct GemmOperand {
  mlir::Value memref;
  bool transposed = false;
  std::array<int64_t, 3> shape{};
  /// A computed operand gives its element (b, i, j) in two
  /// parts, `parts` values that depend only on the row (rowPart) and on the
  /// column (colPart), and their combination: the packing then computes
  /// each part once per row and per column of a block, not per element
  /// (for an im2col: the channel and kernel offsets of a row, the image
  /// and window origin of a column).
  using Part = std::function<llvm::SmallVector<mlir::Value, 4>(mlir::OpBuilder &, mlir::Location,
                                                                mlir::Value b, mlir::Value index)>;
  Part rowPart, colPart;
  std::function<mlir::Value(mlir::OpBuilder &, mlir::Location, mlir::ValueRange row,
                            mlir::ValueRange col)>
      combine;
  int64_t parts = 0;
  /// Optional: the combination of VL elements at once, for the packing's
  /// vector path: the parts as vector<VL x i32> (a scalar part is
  /// broadcast), lanes outside `lanes` (vector<VL x i1>) zero. Set only
  /// when every element offset fits in 32 bits.
  std::function<mlir::Value(mlir::OpBuilder &, mlir::Location, mlir::ValueRange row,
                            mlir::ValueRange col, mlir::Value lanes)>
      combineVector;
  /// A stored operand shared by batch entries: entry b reads batch
  /// b % batchModulo of the memref (0: entry b reads batch b), such as one
  /// filter for every image of a convolution.
  int64_t batchModulo = 0;
  bool computed() const { return parts != 0; }
  /// A stored rank-3 memref operand.
  static GemmOperand of(mlir::Value memref, bool transposed);
};

/// The n x n matrix (n a power of two) whose rows are the n vectors
/// `rows`, transposed in registers: log2(n) rounds of two-source shuffles,
/// round s exchanging bit s of the row and lane indices (Eklundh's
/// algorithm), n / 2 shuffle pairs each: n = 16 is 64 shuffles for 256
/// elements.
llvm::SmallVector<mlir::Value> transposeVectors(mlir::OpBuilder &b, mlir::Location loc,
                                                llvm::SmallVector<mlir::Value> rows);

/// C[b] = op(A[b]) x op(B[b]) (op transposes the last two dimensions of a
/// transposed operand) into the rank-3 memref C, then `epilogue` per block.
/// The register tile is a function in `module`, shared by its GEMMs.
void emitGemm(mlir::ModuleOp module, mlir::OpBuilder &b, mlir::Location loc, const GemmOperand &A,
              const GemmOperand &B, mlir::Value C, const GemmConfig &cfg,
              const GemmEpilogue &epilogue = {});

/// The convolutions computed directly (DirectConv.cpp), forward and filter
/// gradient: no dilation, one group, kernels at most 8 wide, and either
///  - stride 1 with an output at most as wide as the input (OW <= W: "same"
///    and "valid" convolutions and any padding in between), computed on a
///    grid of OH rows of W pixels, the input's row pitch, on which every
///    window is a constant shift of the pixel index: grid pixel
///    p = i * W + j reads x[c, p + (u - pt) * W + (v - pl)] (0 where the
///    window point is outside the image). When OW < W the grid's last
///    W - OW columns of each row are not outputs: the forward convolution
///    computes them and does not store them (compressed stores), the
///    filter gradient reads dy as 0 there (expanding loads);
///  - or stride 2 with output rows a multiple of half a vector, so that each
///    half of a chunk of VL output pixels lies in one row: the grid is the
///    output, and a half's points are the even elements of VL consecutive
///    elements of a row of x (two vector loads and a shuffle).
///
/// A convolution of stride 1 with at least VL filters has its vectors
/// along the filters instead when they fill them better than the outputs
/// fill the grid's (LeNet-5's second layer: 16 filters; 10 outputs of
/// every 14 grid pixels), forward pass and filter gradient; the forward
/// pass (of stride 1 or 2) also when its window is wider than one point
/// and it has two or more filter vectors at least 3/4 full, padded or not
/// (alongFilters: ResNet's and VGG's 3 x 3 layers, ResNet-8's stride-2
/// ones), and the filter gradient when the filters fill their vectors at
/// least as well, padded or not (filterGradientAlongFilters).
struct ConvGrid {
  int64_t kh = 0, kw = 0, pt = 0, pl = 0;
  int64_t oh = 0, ow = 0; ///< the output's height and width
  int64_t stride = 1;     ///< 1 or 2, both axes
  bool unpadded = false;  ///< no padding on any side
  /// Whether a convolution of `x` ([N, C, H, W]) on this grid with K
  /// filters is computed with vectors along the filters: K >= VL, and
  /// either the filters' share of their vectors (K / (VL * ceil(K / VL)))
  /// above the grid's share of outputs (OW / W with stride 1; with stride
  /// 2 the grid is the output, its share 1), or a window of more
  /// than one point with at least 2 VL filters filling at least 3/4 of
  /// their vectors; and its stack scratch within bounds (the transposed
  /// filters 1 MiB, a band of outputs, and with padding a band of x's
  /// rows, 256 KiB each).
  bool alongFilters(mlir::ArrayRef<int64_t> x, int64_t K, int64_t vectorWidth) const;
  /// Whether its filter gradient is: stride 1, K >= VL, K * W >= OW * VL *
  /// ceil(K / VL) (padding allowed: each band of x's rows is copied
  /// between zeros), and a row of transposed dy within 64 KiB of stack;
  /// with channels outer, a band of one channel's rows of x within 64 KiB
  /// too, with filter tiles outer bands of dy within 128 KiB and all
  /// channels' rows within 256 KiB (gradientBand, DirectConv.cpp).
  bool filterGradientAlongFilters(mlir::ArrayRef<int64_t> x, int64_t K, int64_t vectorWidth) const;
  /// The grid for a convolution of `x` ([N, C, H, W]) with these
  /// attributes and vectors of `vectorWidth` floats, or none when it does
  /// not have the form above.
  static std::optional<ConvGrid> of(mlir::ArrayRef<int64_t> x, mlir::ArrayRef<int64_t> kernel,
                                    mlir::ArrayRef<int64_t> stride, mlir::ArrayRef<int64_t> dilation,
                                    mlir::ArrayRef<int64_t> padding, int64_t vectorWidth);
};

/// A convolution's filter gradient: dw[k, (c, u, v)] = sum over n and grid
/// pixels p of dy[n, k, p] * x[n, c, p + (u - pt) * W + (v - pl)]. Both are
/// read along the pixels p, which the vectors span: no im2col, no packing,
/// no transposition.
struct FilterGradient {
  mlir::Value dy; ///< [N, K, OH, OW]
  mlir::Value x;  ///< [N, C, H, W]
  ConvGrid grid;
};

/// The filter gradient into C ([1, K, C * kh * kw]), then `epilogue` once
/// over all of it.
void emitFilterGradient(mlir::OpBuilder &b, mlir::Location loc, const FilterGradient &g, mlir::Value C,
                        const GemmConfig &cfg, const GemmEpilogue &epilogue = {});

/// The convolution itself: out[n, k, p] = sum over (c, u, v) of
/// w[k, c, u, v] * x[n, c, p + (u - pt) * W + (v - pl)], vectors along the
/// pixels, weights broadcast, no im2col and no packing.
struct DirectConv {
  mlir::Value x; ///< [N, C, H, W]
  mlir::Value w; ///< [K, C, kh, kw] (any shape of that many elements, row-major)
  ConvGrid grid;
};

/// The convolution into C ([N, K, OH * OW]), then `epilogue` per image and
/// group of pixels (batch index n, rows 0..K, the group's output columns).
void emitDirectConv(mlir::OpBuilder &b, mlir::Location loc, const DirectConv &g, mlir::Value C,
                    const GemmConfig &cfg, const GemmEpilogue &epilogue = {});

/// A convolution with fewer than 16 filters and at least a vector of
/// channels, computed with its vectors along the channels
/// (DirectConv.cpp): out[n, k, i, j] = the lanes' sum of the products of
/// channel vectors of x (the image copied channels-last, with its padding
/// columns) and of the filters (transposed to the same layout), over the
/// window's taps inside the image. Any padding and stride, no dilation, one
/// group; the output may be wider than the input (a transposed
/// convolution: LeNet-5's second layer's input gradient, 16 channels of dy
/// into 6 outputs, padded by 4).
struct ChannelConv {
  mlir::Value x; ///< [N, C, H, W]
  mlir::Value w; ///< [K, C, kh, kw] (any shape of that many elements, row-major)
  int64_t kh = 0, kw = 0, sh = 1, sw = 1, pt = 0, pl = 0;
  int64_t oh = 0, ow = 0; ///< the output's height and width
  int64_t xw = 0;         ///< the padded row: pl + W + the right padding
  /// The convolution of `x` with K filters of this form, or none: K below
  /// 16 and at least one whole vector of channels (so that the channels
  /// fill more than half their vectors), a window row no wider than 16,
  /// one output row's rows of x channels-last within 256 KiB of stack and
  /// the transposed filters within 1 MiB.
  static std::optional<ChannelConv> of(mlir::ArrayRef<int64_t> x, int64_t K, mlir::ArrayRef<int64_t> kernel,
                                       mlir::ArrayRef<int64_t> stride, mlir::ArrayRef<int64_t> dilation,
                                       mlir::ArrayRef<int64_t> padding, int64_t vectorWidth);
};

/// That convolution into C ([N, K, OH * OW]), then `epilogue` per image
/// and band of output rows (batch index n, rows 0..K, the band's output
/// columns).
void emitConvAlongChannels(mlir::OpBuilder &b, mlir::Location loc, const ChannelConv &g, mlir::Value C,
                           const GemmConfig &cfg, const GemmEpilogue &epilogue = {});

/// The softmax family along a contiguous last axis (RowKernels.cpp).
enum class RowOp {
  softmax,        ///< out = e^(x - m) / sum e^(x - m), m the row's maximum; ins = {x}
  logSoftmax,     ///< out = (x - m) - log sum e^(x - m); ins = {x}
  softmaxGrad,    ///< out = y (g - sum g y); ins = {y, g}
  logSoftmaxGrad, ///< out = g - e^y sum g; ins = {y, g}
};

/// out = op(ins) for `rows` rows of `cols` elements (every memref holds
/// rows * cols elements, row-major): a loop over the rows (marked for
/// soma-linalg-to-loops' grain rule) that reads each row from memory once,
/// in vectors of cfg.vl, and again from cache for its second pass. out may
/// be any of ins' buffers.
void emitRowKernel(mlir::OpBuilder &b, mlir::Location loc, RowOp op, mlir::ValueRange ins, mlir::Value out,
                   int64_t rows, int64_t cols, const GemmConfig &cfg);

/// Batch normalisation's training form and its gradient (RowKernels.cpp),
/// a channel at a time: the forward x [N, C, ...] -> y, mean [C], var [C]
/// (sum, then squared deviations and the result from cache); the gradient
/// (dy set) -> dx, dscale, dshift (the sums of dy and dy (x - mean), then
/// dx from cache). A loop over the channels, marked for the grain rule.
struct BatchNormKernel {
  mlir::Value x, scale, shift, mean, var; ///< mean and var: results of the forward
  mlir::Value y;                          ///< the forward's result (none: only the statistics)
  mlir::Value dy, dx, dscale, dshift;     ///< the gradient's operand and results
  double eps = 1e-5;
};
void emitBatchNorm(mlir::OpBuilder &b, mlir::Location loc, const BatchNormKernel &k, const GemmConfig &cfg);

} // namespace soma
