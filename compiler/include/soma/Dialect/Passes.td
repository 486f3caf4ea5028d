//===- Passes.td - soma's passes ---------------------------*- tablegen -*-===//

#ifndef SOMA_PASSES_TD
#define SOMA_PASSES_TD

include "mlir/Pass/PassBase.td"

def SomaAutodiff : Pass<"soma-autodiff", "mlir::ModuleOp"> {
  let summary = "Append the gradients of the loss to every graph function (reverse mode)";
  let description = [{
    For each graph function with exactly one result marked `soma.loss` (a
    scalar f32), walks the ops in reverse program order, calls each op's
    VJPOpInterface::buildVJP with the gradients of its results, sums the
    gradients of values used more than once, and appends one result per
    parameter (and per input marked `soma.requires_grad`) holding the
    gradient of the loss, marked `soma.grad = "<name>"`. Only ops on a path
    from a differentiated argument to the loss are differentiated; a
    gradient that would flow through an op without a VJP (equal, sign,
    step; argmax's integer result never carries one) is an error naming
    that op and its location. Gradients nobody uses (of inputs that were
    not asked for) are removed.
  }];
  let dependentDialects = ["::soma::ir::SomaDialect"];
}

def SomaExpandModes : Pass<"soma-expand-modes", "mlir::ModuleOp"> {
  let summary = "Rewrite mode-dependent ops (batch_norm, dropout) for training or for inference";
  let description = [{
    With training=false, batch_norm normalises with its running statistics
    and dropout is the identity. With training=true batch_norm uses the
    batch's statistics and the function gets one extra result per running
    statistic, marked soma.update with the statistic's parameter name,
    holding its new value; dropout multiplies by a mask drawn with
    soma.random_uniform from the state argument "soma.dropout.step"
    (created, with its update step + 1, by the first dropout). Both forms
    are made of primitive soma ops, so autodiff differentiates the training
    form exactly. Running statistics must be function arguments.
  }];
  let options = [
    Option<"training", "training", "bool", /*default=*/"false", "Expand for a training step">
  ];
  let dependentDialects = ["::soma::ir::SomaDialect"];
}

def SomaDecompose : Pass<"soma-decompose", "mlir::ModuleOp"> {
  let summary = "Rewrite convolution and pooling as im2col with matmul or reductions";
  let description = [{
    conv2d becomes im2col + a (grouped, batched) matmul with the filter +
    reshape/transpose back to NCHW; max_pool2d and avg_pool2d become im2col
    (padding with -inf or 0) + reduce_max or reduce_mean over the window
    (those whose windows tile the input stay, lowered directly). A
    batch_norm_train whose output feeds elementwise ops has its
    normalisation split out as elementwise ops, to fuse with them
    (splitBatchNormOutput; soma-recompute does it first when it runs).
    Runs after autodiff, so the graph and its gradients keep the readable
    ops, and before lowering, which then needs only im2col and col2im.
  }];
  let dependentDialects = ["::soma::ir::SomaDialect"];
}

def SomaFuse : Pass<"soma-fuse", "mlir::func::FuncOp"> {
  let summary = "Group chains of elementwise ops into soma.fusion kernels";
  let description = [{
    Walks a graph function in order and puts an op with the Soma_Elementwise
    trait into the group of one of its operands' producers when both produce
    the same shape and no op outside the group, placed before it, reads a
    value of that group (so the group can be computed at the position of
    its last op). Each group of two or more ops becomes one soma.fusion
    (kind "elementwise") at the position of its last op: its inputs are the
    values it reads from outside (splat constants are copied in), its
    results the values used after it. Forward chains (bias, activation,
    residual add), their backward chains, and each parameter's optimizer
    update (penalty, moments, step) each become one loop nest.
    Then a reduction (Soma_Reduction) whose operand only it reads takes in
    the elementwise op or kernel that makes it (kind "reduction"), and a
    contraction (Soma_Contraction: matmul) whose product only one
    elementwise op or kernel of the product's shape reads takes that
    consumer in as its epilogue (kind "contraction").
  }];
  let dependentDialects = ["::soma::ir::SomaDialect"];
}

def SomaRecompute : Pass<"soma-recompute", "mlir::func::FuncOp"> {
  let summary = "Activation checkpointing: recompute cheap forward values in the backward pass";
  let description = [{
    On a differentiated function (results marked soma.grad): the forward
    ops are those the other results depend on; a forward value made by an
    elementwise op (or a view of one) that a backward op reads is a
    candidate. Each chosen candidate is recomputed by a copy of its op
    placed just before its first backward reader, which then reads the
    copy, so the original dies with its last forward reader. Copies carry
    soma.recomputed so that CSE does not merge them back.

    Two policies. With cones=false (chains), every candidate is chosen, and
    a copy reads the copies of the chosen candidates it reads and the
    originals of everything else. With cones=true, a candidate is
    recomputed from its whole cone: the elementwise forward ops it is made
    from, back to values that are not elementwise (matmul, convolution,
    reduction outputs) or that the backward pass reads anyway; those
    leaves then stay alive. A candidate is chosen only when that pays: a
    greedy step keeps the leaves of the candidate whose leaves let the
    most candidate bytes go, minus the leaves' own bytes, while that is
    positive. A copy made inside another candidate's cone serves only
    that candidate (a candidate's own copy serves later ones too).

    With budget = 0 every chosen candidate is recomputed; otherwise the
    largest of them first until the candidates kept alive across the
    forward/backward boundary fit the budget (bytes). The function gets
    soma.recompute = [values, bytes of the recomputed values, extra
    elementwise FLOPs].
  }];
  let options = [
    Option<"budget", "budget", "int64_t", /*default=*/"0",
           "Bytes of candidate activations that may stay alive (0: recompute all)">,
    Option<"cones", "cones", "bool", /*default=*/"false",
           "Recompute whole elementwise cones where that pays (else chains of candidates)">
  ];
  let dependentDialects = ["::soma::ir::SomaDialect"];
}

def SomaLowerToLinalg : Pass<"soma-lower-to-linalg", "mlir::ModuleOp"> {
  let summary = "Lower soma graphs to linalg/memref kernels in destination-passing style";
  let description = [{
    Rewrites every graph function (tensor arguments marked soma.input /
    soma.param / soma.state, results marked soma.output or soma.update) into
    a kernel function with the ABI `(inputs..., params..., states...,
    outputs..., workspace)`: all memrefs, no results. An update result is
    written into its parameter or state buffer (in place when safe). Each soma op becomes linalg (and memref) ops writing into a
    buffer: the output argument when the value is a graph output, otherwise
    a `memref.alloc` that soma-plan-memory later places in the workspace.
    Matmuls (and contraction fusions) become the packed GEMM loop nest whose
    register tile is sized for `vector-width` floats per vector register
    (8: AVX2, 16: AVX-512, 4: SSE or NEON); the pipeline sets it from the
    target's features. A convolution of stride 1 whose output is at most as
    wide as its input, or of stride 2 with output rows a multiple of half a
    vector, and its filter gradient, are computed directly instead (vectors
    along the pixels, masked loads, no im2col and no packing; see
    DirectConv.cpp). col2im without dilation gathers with vector loads.
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", /*default=*/"8",
           "Floats per vector register of the target (4, 8 or 16)">,
    Option<"threads", "threads", "int64_t", /*default=*/"0",
           "Threads the code will run on, for cutting GEMMs into units "
           "(0: unknown, units for 2, 4 and 8 threads); the results do not "
           "depend on it">,
    Option<"convInteriorWork", "conv-interior-work", "int64_t", /*default=*/"(int64_t{1} << 26)",
           "Multiply-adds from which a direct convolution computes its "
           "interior pixel groups without masks (a second copy of its tile)">
  ];
  let dependentDialects = [
    "mlir::linalg::LinalgDialect", "mlir::memref::MemRefDialect",
    "mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::func::FuncDialect", "mlir::bufferization::BufferizationDialect",
    "mlir::scf::SCFDialect", "mlir::vector::VectorDialect", "mlir::LLVM::LLVMDialect"
  ];
}

def SomaPlanMemory : Pass<"soma-plan-memory", "mlir::func::FuncOp"> {
  let summary = "Place every temporary buffer at an offset in the workspace argument";
  let description = [{
    Replaces each `memref.alloc` of a kernel function by a `memref.view` into
    the function's last argument (the workspace), at an offset chosen from
    the buffers' live ranges over the straight-line schedule so that buffers
    that are never live at the same time share bytes. Offsets are aligned
    to 64 bytes. Sets `soma.workspace_bytes` on the function and writes the
    plan into a `soma.memory_plan` attribute.
  }];
  let dependentDialects = ["mlir::memref::MemRefDialect", "mlir::arith::ArithDialect"];
}

def SomaLinalgToLoops : Pass<"soma-linalg-to-loops", "mlir::func::FuncOp"> {
  let summary = "Lower linalg ops to loops; parallel loops only where the work pays for threads";
  let description = [{
    Every linalg op becomes a loop nest in the order of its iteration
    dimensions. When the nest has at least `grain` points and its outermost
    dimension is parallel, that outermost loop becomes an scf.parallel (later
    one OpenMP region per kernel, never nested); smaller nests stay
    sequential, so tiny kernels do not pay for a fork/join they cannot use.
    Loop nests the lowering writes by hand (matmul, col2im) carry a
    `soma.parallel_work` attribute on their outer loop (the points of the
    whole nest) and follow the same rule.

    A reduction whose reduced dimensions come after its parallel ones keeps
    its partial results in registers (loop-carried values of the reduced
    loops) and stores each output element once. With a known combining
    operation (sum, product, maximum, minimum) the innermost reduced loop
    runs 2-16 iterations at a time into as many partial results (lanes),
    combined pairwise at the end: as a vector when every input is read
    contiguously along that dimension (or not along it) and the body is
    elementwise, else as unrolled scalar chains. The order of the sum is
    fixed by the shape.
  }];
  let options = [
    Option<"grain", "grain", "int64_t", /*default=*/"::soma::kDefaultGrain",
           "Minimum iteration-space size for a parallel loop">
  ];
  let dependentDialects = ["mlir::scf::SCFDialect", "mlir::affine::AffineDialect",
                           "mlir::memref::MemRefDialect", "mlir::vector::VectorDialect",
                           "mlir::arith::ArithDialect"];
}

def SomaOutlineLoops : Pass<"soma-outline-loops", "mlir::ModuleOp"> {
  let summary = "Move each top-level loop nest of a kernel into its own function";
  let description = [{
    Runs after soma-linalg-to-loops. Every region the lowering marked
    (`soma.outline`, each GEMM) and every top-level `scf.for` or
    `scf.parallel` of a kernel function (`soma.kernel`) whose captured values
    are scalars or memrefs of static shape and identity layout becomes a call
    of a private, noinline function `<kernel>_gemmN`, `<kernel>_loopN`
    (sequential) or `<kernel>_parN` (parallel). LLVM's code generation is
    superlinear in the size of a function: one kernel of a whole training
    step with its sequential loops inline took 14 s to compile for an MLP;
    one function per nest keeps it linear. The names also make each loop
    nest a symbol of its own in a profile (`SOMA_PERF_MAP=1`).
  }];
  let dependentDialects = ["mlir::func::FuncDialect", "mlir::scf::SCFDialect"];
}

def SomaSCFToCF : Pass<"soma-scf-to-cf", "mlir::ModuleOp"> {
  let summary = "SCF to ControlFlow, keeping the no-unroll mark of sequential loops";
  let description = [{
    MLIR's SCF-to-ControlFlow conversion, except that an `scf.for` marked
    `soma.no_unroll` (the sequential unit, K-block and panel loops of a GEMM,
    col2im's planes) gets `llvm.loop.unroll.disable` on its back edge. Those
    loops have big bodies and often small constant trip counts: LLVM would
    unroll them completely, gaining nothing and multiplying its code
    generation time (a LeNet-5 training step: 2.3 s -> 14-20 s).
  }];
  let dependentDialects = ["mlir::cf::ControlFlowDialect", "mlir::LLVM::LLVMDialect",
                           "mlir::arith::ArithDialect"];
}

def SomaApproximateMath : Pass<"soma-approximate-math", "mlir::ModuleOp"> {
  let summary = "f32 exp, log, tanh, erf (and MLIR's other approximated math ops) as polynomials";
  let description = [{
    MLIR's polynomial approximations of the f32 math functions (Cephes'
    exp and log, tanh, erf: relative errors of a few units in the last
    place; denormal results of exp flushed to 0) in place of calls to libm
    (`expf`, `logf`, ...), which LLVM cannot vectorise: softmax, the
    cross-entropy losses, sigmoid, tanh, GELU and their gradients then run
    16 lanes at a time (AVX-512) instead of one call per element. Other
    types (f64) keep their libm calls.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
                           "mlir::vector::VectorDialect"];
}

def SomaFlushDenormals : Pass<"soma-flush-denormals", "mlir::ModuleOp"> {
  let summary = "Run the kernels with denormal floats flushed to zero (x86: MXCSR's FTZ and DAZ)";
  let description = [{
    Runs on the LLVM dialect, after the OpenMP conversion. The kernel
    function (`soma.kernel`) and the body of every `omp.parallel` region
    (the part of a kernel a worker thread runs) save the thread's MXCSR on
    entry, set its flush-to-zero and denormals-are-zero bits, and put the
    saved value back before they return: denormal results are 0, and
    denormal operands read as 0. The caller's own setting is untouched
    once the call returns, and so are the OpenMP workers' between calls
    (unless KMP_INHERIT_FP_CONTROL=false: then libomp does not copy the
    caller's MXCSR to its workers at each parallel region, and workers it
    creates during a flushing call start, and stay, with the call's
    setting; docs/pipeline.md).

    On Intel and AMD cores, an operation whose operand or result is
    denormal (below 2^-126 in magnitude) takes a microcode assist of about
    a hundred cycles. Training makes such values: Adam's second moments of
    weights whose gradient is 0 (an input pixel that is always 0) decay
    by beta2 each step, through the denormal range for thousands of steps;
    and on a denormal, an Adam update over 200 K weights ran 60 times
    slower (2.3 ms instead of 38 us, 2 threads; a C++ loop of the same
    update, outside soma). TensorFlow's CPU runtime
    flushes in the same way by default; PyTorch does on request
    (`torch.set_flush_denormal`).

    soma-lower-to-llvm runs it on x86-64 hosts. A module marked
    `soma.keep_denormals` (CompileOptions::flush_denormals false) is left
    as it is: its code runs with the caller's MXCSR.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect"];
}

#endif // SOMA_PASSES_TD
