//===- FlushDenormals.cpp - Kernels with denormals flushed to zero --------===//
//
// Every thread that runs part of a kernel runs it with MXCSR's FTZ (bit
// 15: denormal results are 0) and DAZ (bit 6: denormal operands read as
// 0) set, and its own MXCSR back when it leaves: the calling thread in
// the kernel function, each OpenMP worker (and the caller again, as
// thread 0) in the body of every parallel region. See the pass's
// description in Passes.td.
//
//===----------------------------------------------------------------------===//

#include "soma/Dialect/Passes.h"

#include "mlir/Dialect/OpenMP/OpenMPDialect.h"

namespace soma {
#define GEN_PASS_DEF_SOMAFLUSHDENORMALS
#include "soma/Dialect/Passes.h.inc"
} // namespace soma

using namespace mlir;

namespace soma {
namespace {

constexpr int32_t kFlushToZero = 1 << 15, kDenormalsAreZero = 1 << 6;

struct SomaFlushDenormalsPass : impl::SomaFlushDenormalsBase<SomaFlushDenormalsPass> {
  /// At the start of `entry`: the thread's MXCSR saved, FTZ and DAZ set;
  /// before each of `exits`: the saved value loaded back.
  static void wrap(Block &entry, ArrayRef<Operation *> exits, Location loc) {
    OpBuilder b = OpBuilder::atBlockBegin(&entry);
    auto ptr = LLVM::LLVMPointerType::get(b.getContext());
    Type i32 = b.getI32Type();
    Value one = b.create<LLVM::ConstantOp>(loc, b.getI64Type(), b.getI64IntegerAttr(1));
    Value saved = b.create<LLVM::AllocaOp>(loc, ptr, i32, one, 4);
    Value flushed = b.create<LLVM::AllocaOp>(loc, ptr, i32, one, 4);
    b.create<LLVM::CallIntrinsicOp>(loc, TypeRange{}, "llvm.x86.sse.stmxcsr", ValueRange{saved});
    Value old = b.create<LLVM::LoadOp>(loc, i32, saved);
    Value bits = b.create<LLVM::ConstantOp>(loc, i32, b.getI32IntegerAttr(kFlushToZero | kDenormalsAreZero));
    b.create<LLVM::StoreOp>(loc, b.create<LLVM::OrOp>(loc, old, bits), flushed);
    b.create<LLVM::CallIntrinsicOp>(loc, TypeRange{}, "llvm.x86.sse.ldmxcsr", ValueRange{flushed});
    for (Operation *exit : exits) {
      b.setInsertionPoint(exit);
      b.create<LLVM::CallIntrinsicOp>(loc, TypeRange{}, "llvm.x86.sse.ldmxcsr", ValueRange{saved});
    }
  }

  void runOnOperation() override {
    if (getOperation()->hasAttr(kKeepDenormalsAttr))
      return;
    getOperation().walk([&](LLVM::LLVMFuncOp fn) {
      if (fn.isExternal() || !fn->hasAttr("soma.kernel"))
        return;
      SmallVector<Operation *> returns;
      fn.walk([&](LLVM::ReturnOp r) { returns.push_back(r); });
      wrap(fn.getBody().front(), returns, fn.getLoc());
    });
    getOperation().walk([&](omp::ParallelOp par) {
      SmallVector<Operation *> ends;
      for (Block &block : par.getRegion())
        if (auto t = dyn_cast<omp::TerminatorOp>(block.getTerminator()))
          ends.push_back(t);
      wrap(par.getRegion().front(), ends, par.getLoc());
    });
  }
};

} // namespace
} // namespace soma
