//===- SomaOps.td - Operations of the soma dialect -----------*- tablegen -*-===//

#ifndef SOMA_OPS_TD
#define SOMA_OPS_TD

include "soma/Dialect/SomaDialect.td"
include "soma/Dialect/SomaInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/IR/CommonAttrConstraints.td"

// Every soma op is pure and infers its result types from operands and
// attributes; the inference functions also produce the shape errors.
class Soma_Op<string mnemonic, list<Trait> traits = []>
    : Op<Soma_Dialect, mnemonic, !listconcat(traits, [Pure, InferTypeOpAdaptor])>;

// A differentiable soma op: it implements buildVJP (in SomaOps.cpp, next to
// its shape rule).
class Soma_DiffOp<string mnemonic, list<Trait> traits = []>
    : Soma_Op<mnemonic, !listconcat(traits,
                                    [DeclareOpInterfaceMethods<Soma_VJPOpInterface>])>;

// Elementwise with numpy broadcasting: each output element is a function of
// the operands' elements at the broadcast index. soma-fuse groups chains of
// such ops into one loop nest; the lowering emits their scalar body. Every
// elementwise op is in-place-able (Soma_InPlaceOpInterface): it reads each
// point where it writes it.
def Soma_ElementwiseTrait : NativeOpTrait<"SomaElementwise"> {
  let cppNamespace = "::soma::ir";
}
def Soma_Elementwise : TraitList<[Soma_ElementwiseTrait, Soma_InPlaceOpInterface]>;

// A contraction (a matrix product): soma-fuse computes the elementwise
// consumers of its result in the contraction's loop nest, on each block of
// the result while it is in cache (the epilogue).
def Soma_Contraction : NativeOpTrait<"SomaContraction"> {
  let cppNamespace = "::soma::ir";
}

// A reduction of one operand over some axes: soma-fuse computes the
// elementwise op that produces its operand inside the reduction's loop.
def Soma_Reduction : NativeOpTrait<"SomaReduction"> {
  let cppNamespace = "::soma::ir";
}

def Soma_F32Tensor : RankedTensorOf<[F32]>;
def Soma_LabelTensor : RankedTensorOf<[I32, I64]>;
def Soma_AnyTensor : RankedTensorOf<[F32, I32, I64]>;



//===----------------------------------------------------------------------===//
// Elementwise unary ops (f32 -> f32, same shape)
//===----------------------------------------------------------------------===//

class Soma_UnaryOp<string mnemonic, string formula, list<Trait> traits = []>
    : Soma_DiffOp<mnemonic, !listconcat(traits, [Soma_Elementwise])> {
  let summary = "elementwise " # mnemonic # ": " # formula;
  let arguments = (ins Soma_F32Tensor:$input);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_NegOp : Soma_UnaryOp<"neg", "y = -x">;
def Soma_ExpOp : Soma_UnaryOp<"exp", "y = e^x">;
def Soma_LogOp : Soma_UnaryOp<"log", "y = ln x">;
def Soma_SqrtOp : Soma_UnaryOp<"sqrt", "y = sqrt(x)">;
def Soma_AbsOp : Soma_UnaryOp<"abs", "y = |x|">;
def Soma_TanhOp : Soma_UnaryOp<"tanh", "y = tanh(x)">;
def Soma_SigmoidOp : Soma_UnaryOp<"sigmoid", "y = 1 / (1 + e^-x)">;
def Soma_ReluOp : Soma_UnaryOp<"relu", "y = max(x, 0); relu'(0) = 0">;
def Soma_SoftplusOp : Soma_UnaryOp<"softplus", "y = log(1 + e^x), computed stably">;
def Soma_SiluOp : Soma_UnaryOp<"silu", "y = x * sigmoid(x) (swish with beta = 1)">;
def Soma_GeluOp : Soma_UnaryOp<"gelu", "y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact form">;

def Soma_GeluGradOp : Soma_Op<"gelu_grad", [Soma_Elementwise]> {
  let summary = "the derivative of gelu: Phi(x) + x * phi(x) (used by gelu's VJP; not differentiable)";
  let arguments = (ins Soma_F32Tensor:$input);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_EluOp : Soma_DiffOp<"elu", [Soma_Elementwise]> {
  let summary = "elementwise ELU: y = x if x > 0 else alpha * (e^x - 1)";
  let arguments = (ins Soma_F32Tensor:$input,
                       DefaultValuedAttr<F64Attr, "1.0">:$alpha);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_LeakyReluOp : Soma_DiffOp<"leaky_relu", [Soma_Elementwise]> {
  let summary = "elementwise leaky ReLU: y = x if x > 0 else alpha * x";
  let arguments = (ins Soma_F32Tensor:$input,
                       DefaultValuedAttr<F64Attr, "0.01">:$alpha);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

//===----------------------------------------------------------------------===//
// Elementwise binary ops with numpy broadcasting (f32)
//===----------------------------------------------------------------------===//

class Soma_BinaryOp<string mnemonic, string formula> : Soma_DiffOp<mnemonic, [Soma_Elementwise]> {
  let summary = "elementwise " # mnemonic # " with numpy broadcasting: " # formula;
  let description = [{
    Shapes are aligned at their last dimension; each pair of dimensions must
    be equal or one of them 1. The result has the broadcast shape.
  }];
  let arguments = (ins Soma_F32Tensor:$lhs, Soma_F32Tensor:$rhs);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs)";
}

def Soma_AddOp : Soma_BinaryOp<"add", "y = a + b">;
def Soma_SubOp : Soma_BinaryOp<"sub", "y = a - b">;
def Soma_MulOp : Soma_BinaryOp<"mul", "y = a * b"> {
  // x * 1 (a splat constant of ones that does not broadcast x) is x,
  // exactly: such as the loss's seed gradient times the other factor.
  let hasFolder = 1;
}
def Soma_DivOp : Soma_BinaryOp<"div", "y = a / b">;
def Soma_PowOp : Soma_BinaryOp<"pow", "y = a ^ b">;
def Soma_MaximumOp : Soma_BinaryOp<"maximum", "y = max(a, b), NaN-propagating">;
def Soma_MinimumOp : Soma_BinaryOp<"minimum", "y = min(a, b), NaN-propagating">;

//===----------------------------------------------------------------------===//
// Contraction
//===----------------------------------------------------------------------===//

def Soma_MatmulOp : Soma_DiffOp<"matmul", [Soma_Contraction]> {
  let summary = "matrix product, optionally transposing either operand";
  let description = [{
    `C = op(A) x op(B)` where op transposes the last two dimensions when the
    corresponding flag is set. Rank 2, or rank > 2 with equal leading (batch)
    dimensions.
  }];
  let arguments = (ins Soma_F32Tensor:$lhs, Soma_F32Tensor:$rhs,
                       DefaultValuedAttr<BoolAttr, "false">:$transpose_a,
                       DefaultValuedAttr<BoolAttr, "false">:$transpose_b);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

class Soma_ReduceOp<string mnemonic, string what> : Soma_DiffOp<mnemonic, [Soma_Reduction]> {
  let summary = what # " over the given axes";
  let description = [{
    `axes` lists distinct dimensions in [0, rank). With `keepdims` the reduced
    dimensions stay as size 1; without, they are removed.
  }];
  let arguments = (ins Soma_F32Tensor:$input, DenseI64ArrayAttr:$axes,
                       DefaultValuedAttr<BoolAttr, "false">:$keepdims);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Soma_ReduceSumOp : Soma_ReduceOp<"reduce_sum", "sum">;
def Soma_ReduceMeanOp : Soma_ReduceOp<"reduce_mean", "arithmetic mean">;
def Soma_ReduceMaxOp : Soma_ReduceOp<"reduce_max", "maximum">;

//===----------------------------------------------------------------------===//
// Shape and data movement
//===----------------------------------------------------------------------===//

def Soma_ReshapeOp : Soma_DiffOp<"reshape"> {
  let summary = "the same elements in row-major order, with a new shape";
  let arguments = (ins Soma_AnyTensor:$input, DenseI64ArrayAttr:$shape);
  let results = (outs Soma_AnyTensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
  // A splat constant reshaped is a splat constant; a reshape to the same
  // type is its input.
  let hasFolder = 1;
}

def Soma_TransposeOp : Soma_DiffOp<"transpose"> {
  let summary = "permutes dimensions: output dim i is input dim perm[i]";
  let arguments = (ins Soma_AnyTensor:$input, DenseI64ArrayAttr:$perm);
  let results = (outs Soma_AnyTensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Soma_BroadcastToOp : Soma_DiffOp<"broadcast_to"> {
  let summary = "numpy broadcast of the input to a larger shape";
  let arguments = (ins Soma_AnyTensor:$input, DenseI64ArrayAttr:$shape);
  let results = (outs Soma_AnyTensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
  // (Folds as reshape does.)
  let hasFolder = 1;
}

def Soma_SliceOp : Soma_DiffOp<"slice"> {
  let summary = "static strided slice: input[starts : limits : strides]";
  let description = [{
    For every dimension d, takes indices starts[d], starts[d] + strides[d], ...
    below limits[d]. 0 <= starts[d] < limits[d] <= size, strides[d] >= 1.
  }];
  let arguments = (ins Soma_AnyTensor:$input, DenseI64ArrayAttr:$starts,
                       DenseI64ArrayAttr:$limits, DenseI64ArrayAttr:$strides);
  let results = (outs Soma_AnyTensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Soma_ConcatOp : Soma_DiffOp<"concat"> {
  let summary = "joins tensors along an axis";
  let arguments = (ins Variadic<Soma_AnyTensor>:$inputs, I64Attr:$axis);
  let results = (outs Soma_AnyTensor:$output);
  let assemblyFormat = "$inputs attr-dict `:` functional-type($inputs, results)";
}

def Soma_ConstantOp : Soma_Op<"constant", [ConstantLike]> {
  let summary = "a constant tensor";
  let arguments = (ins ElementsAttr:$value);
  let results = (outs Soma_AnyTensor:$output);
  let assemblyFormat = "attr-dict $value";
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Softmax family and losses
//===----------------------------------------------------------------------===//

def Soma_SoftmaxOp : Soma_DiffOp<"softmax", [Soma_InPlaceOpInterface]> {
  let summary = "softmax along an axis: e^(x - max) / sum e^(x - max)";
  let arguments = (ins Soma_F32Tensor:$input, I64Attr:$axis);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_LogSoftmaxOp : Soma_DiffOp<"log_softmax", [Soma_InPlaceOpInterface]> {
  let summary = "log-softmax along an axis: x - max - log sum e^(x - max)";
  let arguments = (ins Soma_F32Tensor:$input, I64Attr:$axis);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_SoftmaxGradOp : Soma_Op<"softmax_grad", [Soma_InPlaceOpInterface]> {
  let summary = "gradient of softmax w.r.t. its input, from its output: y * (g - sum_axis g * y)";
  let description = [{
    The output y of a softmax along `axis` and its gradient g, of the same
    shape: dx = y * (g - s) with s = sum over `axis` of g * y, broadcast
    along it. Along the last axis it is one pass over each row (the sum)
    and one from cache (the product).
  }];
  let arguments = (ins Soma_F32Tensor:$output, Soma_F32Tensor:$grad, I64Attr:$axis);
  let results = (outs Soma_F32Tensor:$result);
  let assemblyFormat = "$output `,` $grad attr-dict `:` type($output) `,` type($grad)";
}

def Soma_LogSoftmaxGradOp : Soma_Op<"log_softmax_grad", [Soma_InPlaceOpInterface]> {
  let summary = "gradient of log_softmax w.r.t. its input, from its output: g - e^y * sum_axis g";
  let description = [{
    The output y of a log-softmax along `axis` and its gradient g, of the
    same shape: dx = g - e^y * s with s = sum over `axis` of g, broadcast
    along it (e^y is the softmax of the input).
  }];
  let arguments = (ins Soma_F32Tensor:$output, Soma_F32Tensor:$grad, I64Attr:$axis);
  let results = (outs Soma_F32Tensor:$result);
  let assemblyFormat = "$output `,` $grad attr-dict `:` type($output) `,` type($grad)";
}

def Soma_SoftmaxCrossEntropyOp : Soma_DiffOp<"softmax_cross_entropy"> {
  let summary = "fused softmax + cross-entropy with integer labels";
  let description = [{
    logits [N, C] f32, labels [N] i32/i64 with values in [0, C).
    loss_i = logsumexp(logits_i) - logits_i[label_i]; the result is the mean
    (reduction = "mean", default) or the sum ("sum") over the batch, a
    rank-0 f32 tensor. A label outside [0, C) gives NaN.
  }];
  let arguments = (ins Soma_F32Tensor:$logits, Soma_LabelTensor:$labels,
                       DefaultValuedAttr<StrAttr, "\"mean\"">:$reduction);
  let results = (outs 0DTensorOf<[F32]>:$loss);
  let assemblyFormat = "$logits `,` $labels attr-dict `:` functional-type(operands, results)";
}

def Soma_MseOp : Soma_DiffOp<"mse"> {
  let summary = "mean squared error: mean over all elements of (p - t)^2";
  let description = [{
    prediction and target have the same shape. reduction = "mean" (default)
    divides the sum of squares by the number of elements, "sum" does not.
  }];
  let arguments = (ins Soma_F32Tensor:$prediction, Soma_F32Tensor:$target,
                       DefaultValuedAttr<StrAttr, "\"mean\"">:$reduction);
  let results = (outs 0DTensorOf<[F32]>:$loss);
  let assemblyFormat = "$prediction `,` $target attr-dict `:` functional-type(operands, results)";
}

def Soma_BinaryCrossEntropyOp : Soma_DiffOp<"binary_cross_entropy"> {
  let summary = "binary cross-entropy of probabilities: -(t log p + (1-t) log(1-p))";
  let description = [{
    probability and target have the same shape; each log is clamped below at
    -100 (as PyTorch does) so that p = 0 or 1 gives a finite loss.
    reduction = "mean" (default, over all elements) or "sum".
  }];
  let arguments = (ins Soma_F32Tensor:$probability, Soma_F32Tensor:$target,
                       DefaultValuedAttr<StrAttr, "\"mean\"">:$reduction);
  let results = (outs 0DTensorOf<[F32]>:$loss);
  let assemblyFormat = "$probability `,` $target attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Gradient control and non-differentiable ops
//===----------------------------------------------------------------------===//

def Soma_StopGradientOp : Soma_DiffOp<"stop_gradient"> {
  let summary = "identity in the forward pass; no gradient flows back through it";
  let arguments = (ins Soma_AnyTensor:$input);
  let results = (outs Soma_AnyTensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_SignOp : Soma_Op<"sign", [Soma_Elementwise]> {
  let summary = "elementwise sign: -1, 0 or 1 (not differentiable)";
  let arguments = (ins Soma_F32Tensor:$input);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_StepOp : Soma_Op<"step", [Soma_Elementwise]> {
  let summary = "elementwise Heaviside step: 1 if x > 0 else 0 (not differentiable)";
  let arguments = (ins Soma_F32Tensor:$input);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_RandomUniformOp : Soma_Op<"random_uniform"> {
  let summary = "counter-based uniform random numbers in [0, 1) (Philox4x32-10; not differentiable)";
  let description = [{
    A tensor of the given shape whose element at row-major position i is
    (w >> 8) * 2^-24, where w is word 0 of Philox4x32-10 with
      key     = {seed & 0xffffffff, seed >> 32}
      counter = {i, uint32(counter), 0x736f6d61 ("soma"), 0}.
    The values depend only on (seed, counter, i): never on the thread count
    or the order of evaluation, and the reference interpreter computes the
    same bits. `counter` is a scalar f32 (a step count, exact to 2^24) so
    that a training step draws new numbers every step; shapes have fewer
    than 2^32 elements.
  }];
  let arguments = (ins Soma_F32Tensor:$counter, DenseI64ArrayAttr:$shape, I64Attr:$seed);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$counter attr-dict `:` type($counter) `->` type($output)";
}

def Soma_DropoutOp : Soma_Op<"dropout"> {
  let summary = "inverted dropout: zero each element with probability `rate`, scale the rest by 1 / (1 - rate)";
  let description = [{
    Mode-dependent (soma-expand-modes rewrites it before anything else):
      eval:  y = x (a no-op: the scaling happens in training, so the
             expectation is the same in both modes);
      train: y = x * (u > rate) / (1 - rate), u = random_uniform(step,
             seed) of x's shape, where step is the state "soma.dropout.step"
             that every training step increments, so each step draws a new
             mask and a resumed run draws the same masks as an unbroken one.
    0 <= rate < 1. The reference interpreter evaluates the eval form.
  }];
  let arguments = (ins Soma_F32Tensor:$input, F64Attr:$rate, I64Attr:$seed);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Soma_EqualOp : Soma_Op<"equal", [Soma_Elementwise]> {
  let summary = "elementwise comparison with broadcasting: 1.0 where a == b, else 0.0 (not differentiable)";
  let description = [{
    Operands have the same element type (f32, i32 or i64); the result is f32.
  }];
  let arguments = (ins Soma_AnyTensor:$lhs, Soma_AnyTensor:$rhs);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs)";
}

def Soma_OneHotOp : Soma_Op<"one_hot"> {
  let summary = "one-hot rows: [N] integer labels -> [N, classes] f32 (not differentiable)";
  let description = [{ Row i is 1.0 at column labels[i] and 0.0 elsewhere; a label outside [0, classes) gives a row of zeros. }];
  let arguments = (ins Soma_LabelTensor:$labels, I64Attr:$classes);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$labels attr-dict `:` type($labels) `->` type($output)";
}

def Soma_ArgmaxOp : Soma_Op<"argmax"> {
  let summary = "index of the maximum along an axis (the first one on ties); i32 result (not differentiable)";
  let arguments = (ins Soma_F32Tensor:$input, I64Attr:$axis);
  let results = (outs RankedTensorOf<[I32]>:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Soma_PadOp : Soma_DiffOp<"pad"> {
  let summary = "pads with a constant: low, high and interior (between elements) padding per dimension";
  let description = [{
    Output size of dimension d: low[d] + size[d] + (size[d] - 1) * interior[d]
    + high[d]. Input element i lands at low[d] + i * (interior[d] + 1). All
    paddings are >= 0. (The gradient of a strided slice is such a pad.)
  }];
  let arguments = (ins Soma_F32Tensor:$input, DenseI64ArrayAttr:$low,
                       DenseI64ArrayAttr:$high, DenseI64ArrayAttr:$interior,
                       DefaultValuedAttr<F64Attr, "0.0">:$value);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Soma_SoftmaxCrossEntropyGradOp : Soma_Op<"softmax_cross_entropy_grad",
    [DeclareOpInterfaceMethods<Soma_InPlaceOpInterface, ["mayWriteOver"]>]> {
  let summary = "gradient of softmax_cross_entropy w.r.t. the logits: g * (softmax(x) - onehot(labels)) / N";
  let description = [{
    The fused backward of softmax_cross_entropy: logits [N, C], labels [N],
    the loss gradient g (rank 0). With reduction = "mean" the result is
    g * (softmax(logits) - onehot(labels)) / N, with "sum" without / N. A row
    whose label is outside [0, C) is NaN, like its loss.
  }];
  let arguments = (ins Soma_F32Tensor:$logits, Soma_LabelTensor:$labels,
                       0DTensorOf<[F32]>:$grad,
                       DefaultValuedAttr<StrAttr, "\"mean\"">:$reduction);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$logits `,` $labels `,` $grad attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Convolution and pooling (NCHW)
//===----------------------------------------------------------------------===//

def Soma_Conv2dOp : Soma_DiffOp<"conv2d"> {
  let summary = "2-D convolution (cross-correlation, as every framework computes it)";
  let description = [{
    input [N, C, H, W], filter [K, C / groups, KH, KW] -> [N, K, OH, OW] with
    y[n, k, i, j] = sum_{c, u, v} x[n, g*C/groups + c, i*sh - pt + u*dh, j*sw - pl + v*dw] * w[k, c, u, v]
    (g = k / (K / groups); positions outside the input read 0).
    stride [sh, sw] >= 1, padding [top, left, bottom, right] >= 0,
    dilation [dh, dw] >= 1, OH = (H + pt + pb - dh*(KH-1) - 1) / sh + 1.
    The bias is a separate add.
  }];
  let arguments = (ins Soma_F32Tensor:$input, Soma_F32Tensor:$filter,
                       DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$padding,
                       DenseI64ArrayAttr:$dilation,
                       DefaultValuedAttr<I64Attr, "1">:$groups);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input `,` $filter attr-dict `:` functional-type(operands, results)";
}

def Soma_MaxPool2dOp : Soma_DiffOp<"max_pool2d"> {
  let summary = "2-D max pooling over KH x KW windows (padding never wins)";
  let description = [{
    [N, C, H, W] -> [N, C, OH, OW], the window size, stride and padding as
    for conv2d. The gradient goes to the window's maximum; when several
    elements tie, it is split evenly among them.
  }];
  let arguments = (ins Soma_F32Tensor:$input, DenseI64ArrayAttr:$kernel,
                       DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$padding);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Soma_MaxPool2dGradOp : Soma_Op<"max_pool2d_grad"> {
  let summary = "gradient of max_pool2d with respect to its input (windows that tile the input)";
  let description = [{
    The input [N, C, H, W], the pooled output [N, C, OH, OW] and its
    gradient: each window's gradient goes to the elements equal to the
    window's maximum, split evenly among them (dx = (x == y) * dy / count).
    Only for windows that tile the input: stride equal to the kernel, no
    padding, H = OH * KH and W = OW * KW, at most 2 wide (max_pool2d's
    gradient in other cases is built from im2col and col2im). With `relu`,
    the result is also multiplied by step(input) (soma-decompose folds the
    gradient of a ReLU whose output is pooled into it).
  }];
  let arguments = (ins Soma_F32Tensor:$input, Soma_F32Tensor:$output, Soma_F32Tensor:$grad,
                       DenseI64ArrayAttr:$kernel, DefaultValuedAttr<BoolAttr, "false">:$relu);
  let results = (outs Soma_F32Tensor:$result);
  let assemblyFormat = "$input `,` $output `,` $grad attr-dict `:` functional-type(operands, results)";
}

def Soma_AvgPool2dOp : Soma_DiffOp<"avg_pool2d"> {
  let summary = "2-D average pooling over KH x KW windows (padding counts as zeros)";
  let description = [{
    [N, C, H, W] -> [N, C, OH, OW]; every window's sum is divided by KH*KW,
    padded positions included (PyTorch's count_include_pad=True).
  }];
  let arguments = (ins Soma_F32Tensor:$input, DenseI64ArrayAttr:$kernel,
                       DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$padding);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Soma_AvgPool2dGradOp : Soma_Op<"avg_pool2d_grad"> {
  let summary = "gradient of avg_pool2d with respect to its input (windows that tile the input)";
  let description = [{
    The gradient dy [N, C, OH, OW] of an average pooling whose windows tile
    its input (stride equal to the kernel, no padding, at most 2 wide):
    dx [N, C, OH * KH, OW * KW] with dx[n, c, h, w] = dy[n, c, h / KH,
    w / KW] * (1 / (KH * KW)), each window's share on each of its elements
    (avg_pool2d's gradient in other cases is a col2im).
  }];
  let arguments = (ins Soma_F32Tensor:$grad, DenseI64ArrayAttr:$kernel);
  let results = (outs Soma_F32Tensor:$result);
  let assemblyFormat = "$grad attr-dict `:` type($grad) `->` type($result)";
}

def Soma_Im2colOp : Soma_DiffOp<"im2col"> {
  let summary = "unrolls convolution windows into columns: [N, C, H, W] -> [C*KH*KW, N*OH*OW]";
  let description = [{
    Row (c, u, v) (c-major), column (n, i, j): x[n, c, i*sh - pt + u*dh,
    j*sw - pl + v*dw], or `pad_value` outside the input. A convolution is
    then a matrix product with the filter reshaped to [K, C*KH*KW].
  }];
  let arguments = (ins Soma_F32Tensor:$input, DenseI64ArrayAttr:$kernel,
                       DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$padding,
                       DenseI64ArrayAttr:$dilation,
                       DefaultValuedAttr<F64Attr, "0.0">:$pad_value);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Soma_Col2imOp : Soma_DiffOp<"col2im"> {
  let summary = "the adjoint of im2col: sums columns back into an image [N, C, H, W]";
  let arguments = (ins Soma_F32Tensor:$input, DenseI64ArrayAttr:$image_shape,
                       DenseI64ArrayAttr:$kernel, DenseI64ArrayAttr:$stride,
                       DenseI64ArrayAttr:$padding, DenseI64ArrayAttr:$dilation);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

//===----------------------------------------------------------------------===//
// Normalisation
//===----------------------------------------------------------------------===//

def Soma_BatchNormOp : Soma_Op<"batch_norm"> {
  let summary = "batch normalisation over all dimensions but the channel (dimension 1)";
  let description = [{
    input [N, C, ...], scale (gamma) [C], shift (beta) [C], running_mean [C],
    running_var [C]. Its meaning depends on the mode it is compiled in
    (soma-expand-modes rewrites it before anything else):
      eval:  y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta
      train: y = (x - mean_B) / sqrt(var_B + eps) * gamma + beta with the
             batch's mean and biased variance over (N, H, W), and the step
             updates running_mean = (1 - momentum) * running_mean + momentum * mean_B
             and running_var the same with the unbiased batch variance.
    The reference interpreter evaluates the eval form.
  }];
  let arguments = (ins Soma_F32Tensor:$input, Soma_F32Tensor:$scale, Soma_F32Tensor:$shift,
                       Soma_F32Tensor:$running_mean, Soma_F32Tensor:$running_var,
                       DefaultValuedAttr<F64Attr, "1e-5">:$eps,
                       DefaultValuedAttr<F64Attr, "0.1">:$momentum);
  let results = (outs Soma_F32Tensor:$output);
  let assemblyFormat = "$input `,` $scale `,` $shift `,` $running_mean `,` $running_var attr-dict `:` functional-type(operands, results)";
}

def Soma_BatchNormTrainOp : Soma_DiffOp<"batch_norm_train"> {
  let summary = "batch normalisation with the batch's statistics (the training form)";
  let description = [{
    input [N, C, ...] (rank >= 3), scale (gamma) [C], shift (beta) [C] ->
    output (the input's shape), mean [C] and var [C], the batch's mean and
    biased variance over all dimensions but the channel (dimension 1):
      y = (x - mean) * (scale / sqrt(var + eps)) + shift.
    soma-expand-modes makes it from a batch_norm of rank >= 3 in training;
    mean and var feed the running statistics. Only the output has a
    gradient (batch_norm_grad); mean and var are outside it.
  }];
  let arguments = (ins Soma_F32Tensor:$input, Soma_F32Tensor:$scale, Soma_F32Tensor:$shift, F64Attr:$eps);
  let results = (outs Soma_F32Tensor:$output, Soma_F32Tensor:$mean, Soma_F32Tensor:$var);
  let assemblyFormat = "$input `,` $scale `,` $shift attr-dict `:` functional-type(operands, results)";
}

def Soma_BatchNormGradOp : Soma_Op<"batch_norm_grad"> {
  let summary = "gradient of batch_norm_train with respect to its input, scale and shift";
  let description = [{
    The input x [N, C, ...], the gradient dy of the output (same shape), and
    the batch's mean, var and the scale [C]. With r = 1 / sqrt(var + eps),
    M the elements per channel and sums over all dimensions but 1:
      dx = scale * r * (dy - sum(dy) / M - (x - mean) * r^2 * sum(dy * (x - mean)) / M)
      dscale = r * sum(dy * (x - mean)),  dshift = sum(dy).
  }];
  let arguments = (ins Soma_F32Tensor:$input, Soma_F32Tensor:$grad, Soma_F32Tensor:$mean,
                       Soma_F32Tensor:$var, Soma_F32Tensor:$scale, F64Attr:$eps);
  let results = (outs Soma_F32Tensor:$input_grad, Soma_F32Tensor:$scale_grad, Soma_F32Tensor:$shift_grad);
  let assemblyFormat = "$input `,` $grad `,` $mean `,` $var `,` $scale attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Fusion
//===----------------------------------------------------------------------===//

def Soma_FusionOp : Op<Soma_Dialect, "fusion",
    [Pure, IsolatedFromAbove, SingleBlock, DeclareOpInterfaceMethods<Soma_InPlaceOpInterface, ["mayWriteOver"]>]> {
  let summary = "a group of ops computed as one kernel (made by soma-fuse)";
  let description = [{
    The body computes the results from the block arguments, which are the
    operands. kind = "elementwise": every op of the body is elementwise
    (numpy broadcasting) or a splat constant, every result has the same
    shape (the kernel's iteration space) and every op of the body produces
    that shape, so the group is one loop nest over it: operands are read at
    their broadcast index and each result is written once per point.
    Results are the group's values that are used after it (several when
    intermediate values are needed elsewhere, e.g. by the backward pass).
    kind = "reduction": elementwise ops over the shape of a reduction's
    operand, then one reduce_sum, reduce_mean or reduce_max of the last of
    them, whose result is the only result: one loop nest that computes each
    point and accumulates it, so the reduced operand is never stored.
    kind = "contraction": one matmul of two inputs (after any splat
    constants), then elementwise ops over the product's shape that read it
    (the epilogue: bias, activation, residual add, scale/shift, gradient
    masks); the results are epilogue values of that shape. The product is
    computed block by block and each block goes through the epilogue while
    it is in cache, so the product itself is never stored apart from the
    results.
  }];
  let arguments = (ins Variadic<Soma_AnyTensor>:$inputs, StrAttr:$kind);
  let results = (outs Variadic<Soma_AnyTensor>:$outputs);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$kind `(` $inputs `)` attr-dict `:` functional-type($inputs, results) $body";
  let hasVerifier = 1;
}

def Soma_YieldOp : Op<Soma_Dialect, "yield", [Pure, Terminator, HasParent<"FusionOp">]> {
  let summary = "the results of a soma.fusion body";
  let arguments = (ins Variadic<Soma_AnyTensor>:$values);
  let assemblyFormat = "$values attr-dict `:` type($values)";
}

#endif // SOMA_OPS_TD
