//===- SomaDialect.h - The soma dialect and its ops --------------*- C++ -*-===//
#pragma once

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace soma::ir {
/// The trait of elementwise ops (Soma_Elementwise in SomaOps.td).
template <typename ConcreteType>
class SomaElementwise : public mlir::OpTrait::TraitBase<ConcreteType, SomaElementwise> {};
/// The trait of contractions (Soma_Contraction): matmul.
template <typename ConcreteType>
class SomaContraction : public mlir::OpTrait::TraitBase<ConcreteType, SomaContraction> {};
/// The trait of reductions (Soma_Reduction): reduce_sum, reduce_mean, reduce_max.
template <typename ConcreteType>
class SomaReduction : public mlir::OpTrait::TraitBase<ConcreteType, SomaReduction> {};
/// Makes `values` the results of graph function `fn` (its func.return
/// operands and result types), with `attrs` as their attributes.
void setGraphResults(mlir::func::FuncOp fn, mlir::ArrayRef<mlir::Value> values,
                     mlir::ArrayRef<mlir::DictionaryAttr> attrs);

/// True for ops with the Soma_Elementwise trait.
inline bool isElementwise(mlir::Operation *op) { return op->hasTrait<SomaElementwise>(); }
/// True for ops with the Soma_Contraction trait.
inline bool isContraction(mlir::Operation *op) { return op->hasTrait<SomaContraction>(); }
/// True for ops with the Soma_Reduction trait.
inline bool isReduction(mlir::Operation *op) { return op->hasTrait<SomaReduction>(); }

} // namespace soma::ir

#include "soma/Dialect/SomaOpsDialect.h.inc"
#include "soma/Dialect/SomaInterfaces.h.inc"

#define GET_OP_CLASSES
#include "soma/Dialect/SomaOps.h.inc"

namespace soma::ir {

/// Names of the attributes that mark a graph's arguments and results.
inline constexpr const char *kInputAttr = "soma.input";   // arg: input name
inline constexpr const char *kParamAttr = "soma.param";   // arg: parameter name
inline constexpr const char *kInitAttr = "soma.init";     // arg: initializer dict
inline constexpr const char *kTrainableAttr = "soma.trainable"; // arg: false for buffers
inline constexpr const char *kOutputAttr = "soma.output"; // result: output name
inline constexpr const char *kSeedAttr = "soma.seed";     // module: RNG seed
inline constexpr const char *kStateAttr = "soma.state";   // arg: optimizer state name
inline constexpr const char *kStateInitAttr = "soma.state_init"; // arg: its initial value
inline constexpr const char *kUpdateAttr = "soma.update"; // result: new value of a param/state
inline constexpr const char *kLossAttr = "soma.loss";     // result: the loss to differentiate
/// Word 2 of the Philox counter of soma.random_uniform ("soma").
inline constexpr uint32_t kRandomUniformTag = 0x736f6d61;

/// Convolution and pooling rewritten as im2col + matmul or reductions (used
/// by soma-decompose before lowering). Each returns the replacement value.
mlir::Value decomposeConv2d(mlir::OpBuilder &b, Conv2dOp op);
mlir::Value decomposeMaxPool2d(mlir::OpBuilder &b, MaxPool2dOp op);
mlir::Value decomposeAvgPool2d(mlir::OpBuilder &b, AvgPool2dOp op);
/// Whether pooling windows tile the input [N, C, H, W]: stride equal to the
/// kernel, no padding, H and W multiples of it, and at most 2 wide (a
/// window row is then whole vectors split by one shuffle per column).
/// max_pool2d and avg_pool2d are then lowered directly (not decomposed),
/// and max_pool2d's gradient is soma.max_pool2d_grad.
bool tilesInput(llvm::ArrayRef<int64_t> x, llvm::ArrayRef<int64_t> kernel, llvm::ArrayRef<int64_t> stride,
                llvm::ArrayRef<int64_t> padding);
/// Whether `op` is a max_pool2d or avg_pool2d whose windows tile its input.
bool isTilingPool(mlir::Operation *op);
/// When an elementwise op reads a batch_norm_train's output: computes the
/// output again as elementwise ops from the input and the op's statistics,
/// (x - mean) * (scale / sqrt(var + eps)) + shift, and makes every reader
/// read that, so that the normalisation fuses with what follows (a ReLU)
/// and soma-recompute may recompute it; the op then computes only the
/// statistics. Returns whether it did.
bool splitBatchNormOutput(BatchNormTrainOp op);

/// How a contraction reads one operand of its matmul: as stored, or through
/// a chain of view ops that its GEMM computes while it packs panels, so
/// that the operand is never stored (soma-fuse moves the chain into the
/// contraction fusion; the lowering turns it into a GemmOperand).
enum class GemmViewKind {
  Stored,       ///< a value read as it is
  Columns,      ///< im2col(x) as [G, R, N*OH*OW]: rows (channel, u, v), columns (n, i, j)
  ImageColumns, ///< the same as [N*G, R, OH*OW]: one image and group per batch entry
  Broadcast,    ///< w as [G, M, K] broadcast to [N*G, M, K] (batch entry n*G + g reads w[g])
  ChannelMajor, ///< y [N, K, H, W] as [G, K/G, N*H*W] (transpose {1, 0, 2, 3} and reshape)
};
struct GemmView {
  GemmViewKind kind = GemmViewKind::Stored;
  mlir::Value source;                          ///< what is read: the value, image or tensor
  llvm::SmallVector<mlir::Operation *, 4> ops; ///< the view's ops, the first reading `source`
  int64_t groups = 1;                          ///< G of the view
};
/// Recognises the view chains above (the patterns soma-decompose and the
/// convolution's VJP build); anything else is Stored.
GemmView matchGemmView(mlir::Value v);

/// Numpy broadcasting of two shapes (aligned at the right), or nothing
/// when they do not broadcast.
std::optional<llvm::SmallVector<int64_t>> broadcastShapes(llvm::ArrayRef<int64_t> a, llvm::ArrayRef<int64_t> b);
/// When `view` splits each dimension of `product` into a run of its own
/// dimensions (an expand_shape), the runs; else nothing.
std::optional<llvm::SmallVector<llvm::SmallVector<int64_t, 2>, 4>>
expandGroups(llvm::ArrayRef<int64_t> product, llvm::ArrayRef<int64_t> view);
/// The shape, in `product`'s dimensions, of an operand that broadcasts to
/// the view (aligned at the right): each run of view dimensions must be
/// all 1 (the operand is read at 0 there) or all full; else nothing.
std::optional<llvm::SmallVector<int64_t, 4>>
collapseBroadcast(llvm::ArrayRef<int64_t> operand, llvm::ArrayRef<int64_t> view,
                  llvm::ArrayRef<llvm::SmallVector<int64_t, 2>> groups);

} // namespace soma::ir
