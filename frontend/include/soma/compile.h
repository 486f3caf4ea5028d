//===- soma/compile.h - Compiling graphs: JIT, AOT, interpreter ----*- C++ -*-===//
#pragma once

#include "soma/executable.h"
#include "soma/graph.h"

#include <map>
#include <string>
#include <vector>

namespace soma {

/// A stage of the pipeline that can be dumped, and its file name.
struct DumpStage {
  const char *name; // "built", "lowered", ...
  const char *file; // "00-built.mlir", ...
};
/// The dumpable stages in pipeline order.
const std::vector<DumpStage> &dump_stages();

/// The form of the mode-dependent ops (batch_norm, dropout).
enum class Mode {
  /// Inference: batch_norm uses its running statistics, dropout is the
  /// identity. The default of compile_inference and compile_aot, and the
  /// form of a training step's evaluation function.
  eval,
  /// Training: batch_norm normalises with the batch's statistics and the
  /// call updates the running statistics (like a PyTorch module in train()
  /// mode); dropout draws a new mask on every call. A training step
  /// (compile_training) always uses this form.
  train,
};

/// What a compilation did, for `soma compile --report` and tests: per graph
/// function the ops before fusion and the kernels after (with the bytes
/// each reads and writes), the memory plan, and the time of each stage.
struct CompileReport {
  struct Kernel {
    std::string name;     // "matmul", "fusion(add,relu)", ...
    int64_t bytes_read = 0;
    int64_t bytes_written = 0;
    /// Floating-point operations: 2 m n k for a matmul, one per element
    /// and op otherwise (an estimate for transcendental ops).
    int64_t flops = 0;
  };
  struct Function {
    std::string name;
    int64_t ops_before_fusion = 0;
    std::vector<Kernel> kernels;
    /// The workspace arena, the largest set of simultaneously live
    /// temporaries (a lower bound for any plan), and the sum of all
    /// temporaries (no reuse at all).
    int64_t arena_bytes = 0, lower_bound_bytes = 0, no_reuse_bytes = 0;
    int64_t buffers = 0;
    /// Activation checkpointing (training steps compiled with it): values
    /// recomputed, their bytes (not the saving: a recomputation keeps its
    /// operands alive longer; the arena shows the effect), and
    /// the extra elementwise FLOPs.
    int64_t recomputed_values = 0, recomputed_bytes = 0, recompute_flops = 0;
    /// With checkpointing, the step is planned three ways and the smallest
    /// arena is compiled: "none" (nothing recomputed), "chains" or "cones"
    /// (soma-recompute's policies); the three arenas. Empty / 0 otherwise;
    /// with Checkpointing::policy forced, the policy and no arenas.
    std::string recompute_policy;
    int64_t arena_no_recompute = 0, arena_chains = 0, arena_cones = 0;
  };
  std::vector<Function> functions;
  /// Stage name and seconds, in order (a training step lists its stages
  /// and then those of its evaluation function).
  std::vector<std::pair<std::string, double>> stage_seconds;
  /// Everything above as text.
  std::string str() const;
};

/// Options of every compilation. By default the SOMA_DUMP and SOMA_DUMP_DIR
/// environment variables fill `dump` and `dump_dir`.
struct CompileOptions {
  /// Comma-separated stages to dump: built, train, fused, lowered, planned,
  /// memory-plan, memory-picture, llvm-dialect, llvm, asm, or all.
  std::string dump;
  /// Where dumps go (created if missing); default "soma-dump".
  std::string dump_dir;
  /// Print the IR after every pass to stderr (like mlir-opt's flag).
  bool print_ir_after_all = false;
  /// LLVM optimisation level 0-3.
  int opt_level = 3;
  /// Run the compiled code with denormal floats (magnitude below 2^-126)
  /// flushed to zero: results that would be denormal are 0, and denormal
  /// operands read as 0 (x86-64: MXCSR's FTZ and DAZ bits, set by every
  /// thread that runs part of a kernel and restored when it leaves, so the
  /// caller's own setting is unchanged). Arithmetic on denormals takes
  /// about a hundred cycles on x86 cores, and training makes them (Adam's
  /// moments of a weight whose gradient stays 0 decay through the denormal
  /// range for thousands of steps): false keeps IEEE denormals, at that
  /// cost. No effect on other targets.
  bool flush_denormals = true;
  /// The form of batch_norm and dropout (compile_inference, compile_aot).
  Mode mode = Mode::eval;
  /// Filled with what the compilation did when not null (appended to).
  CompileReport *report = nullptr;
  /// Read SOMA_DUMP / SOMA_DUMP_DIR when dump / dump_dir are empty.
  bool use_environment = true;
  /// Use the compiled-object cache of the JIT (on disk: $SOMA_CACHE_DIR,
  /// else $XDG_CACHE_HOME/soma, else ~/.cache/soma; SOMA_CACHE=0 turns it
  /// off for the whole process). A compilation that dumps stages or fills
  /// a report always compiles, and only writes the cache.
  bool cache = true;
  /// JIT-compile in a separate process, soma-jit-worker (built next to
  /// libsoma.so), when nothing is dumped or reported: the memory the
  /// compiler used is returned to the system when it exits, instead of
  /// staying in the training process, and a crash of the compiler is an
  /// error rather than the end of the program. Without a worker (or with
  /// SOMA_JIT_WORKER=0) the compilation runs in this process.
  bool worker = true;
};

/// A JIT-compiled inference function with its own parameter values.
class Inference {
public:
  Inference() = default;
  Inference(Executable exe, NamedArrays params);

  const Signature &signature() const { return exe_.signature(); }

  /// Runs on named inputs and returns the named outputs. A missing or extra
  /// input, or one of the wrong dtype or shape, throws soma::Error. Compiled
  /// in Mode::train, a call also updates the batch norms' running
  /// statistics in params() and advances the dropout step count.
  std::map<std::string, Array> run(const std::map<std::string, Array> &inputs);

  /// The parameters, in signature order; edit in place or replace.
  NamedArrays &params() { return params_; }
  /// Replaces the parameters; names, dtypes and shapes are checked, and the
  /// first mismatch is reported with both shapes.
  void set_params(const NamedArrays &params);

private:
  Executable exe_;
  NamedArrays params_;
  std::vector<Array> paramArrays_;
  std::vector<Array> states_; // Mode::train: the dropout step count
};

/// JIT-compiles `g` for inference; parameters start from g.init_params().
Inference compile_inference(const Graph &g, const CompileOptions &options = {});

/// What `compile_aot` writes into its directory.
struct AotOptions {
  bool object = true;   // NAME.o
  bool header = true;   // NAME.h
  bool weights = true;  // NAME.weights.safetensors
  bool llvm_ir = false; // NAME.ll
  bool assembly = false; // NAME.s
  /// Target CPU for the object: "host" (default) or an LLVM CPU name such as
  /// "x86-64-v3".
  std::string cpu = "host";
};

/// Compiles `g` ahead of time into `dir`: an object file exporting
/// `void NAME(const float *in..., const float *param..., float *out...,
/// void *workspace)`, a C header that declares it and documents every
/// pointer, and a safetensors weights file (with a loader in the header).
/// `params` defaults to g.init_params(). Returns the files written.
std::vector<std::string> compile_aot(const Graph &g, const std::string &dir,
                                     const AotOptions &aot = {},
                                     const NamedArrays *params = nullptr,
                                     const CompileOptions &options = {});

/// What to differentiate.
struct GradientOptions {
  /// The scalar output to differentiate; empty = the graph's first output.
  std::string loss;
  /// Also differentiate with respect to every f32 input (not only the
  /// parameters).
  bool inputs = false;
  /// Differentiate an output of any shape, given its gradient: the compiled
  /// function takes one more input, "grad_<loss>" (the output's shape), and
  /// returns the vector-Jacobian products d(sum(loss * grad_<loss>))/dp,
  /// as torch.autograd.grad does with grad_outputs. The scalar
  /// sum(loss * grad_<loss>) is the output "dot_grad_<loss>".
  bool output_gradient = false;
  /// Return the graph's outputs with the gradients; with false, only the
  /// gradients, and the forward work that only the outputs needed (the loss
  /// itself, values that no gradient reads) is not done.
  bool outputs = true;
};

/// JIT-compiles forward + backward: the outputs are the graph's outputs plus
/// "grad_<name>" for every parameter (and f32 input with options.inputs),
/// the gradient of the loss. A loss that is not a scalar, or a gradient that
/// would flow through a non-differentiable op, throws soma::Error.
Inference compile_gradients(const Graph &g, const GradientOptions &grad = {},
                            const CompileOptions &options = {});

/// The same gradients from the reference interpreter (in double precision).
std::map<std::string, Array> interpret_gradients(const Graph &g,
                                                 const std::map<std::string, Array> &inputs,
                                                 const NamedArrays *params = nullptr,
                                                 const GradientOptions &grad = {});

/// Settings of check_gradients.
struct GradientCheckOptions {
  GradientOptions grad;
  /// Inputs to check at; missing f32 inputs are drawn uniformly from
  /// [-1, 1] and integer inputs from [0, 2) with `seed`.
  std::map<std::string, Array> inputs;
  uint64_t seed = 0;
  /// Central-difference step (in double precision).
  double step = 1e-4;
  /// Elements checked per tensor (spread evenly over it); 0 = all.
  int64_t samples_per_tensor = 16;
  /// An element passes when |compiled - numeric| <= atol + rtol * |numeric|.
  double rtol = 2e-3, atol = 2e-4;
};

/// One checked tensor of check_gradients.
struct GradientCheckEntry {
  std::string name;         // "grad_dense0.weight"
  int64_t checked = 0;      // elements compared
  double max_abs_error = 0; // compiled (f32) vs central differences
  double max_rel_error = 0;
  double max_vjp_error = 0; // interpreter's VJP (double) vs central differences
  bool passed = true;
};

struct GradientCheckReport {
  std::vector<GradientCheckEntry> entries;
  bool passed = true;
  /// A table, one line per tensor.
  std::string str() const;
};

/// Compares the compiled gradients of `g` with central finite differences
/// of the loss computed by the reference interpreter in double precision,
/// and with the interpreter's own VJPs.
GradientCheckReport check_gradients(const Graph &g, const GradientCheckOptions &options = {});

/// Evaluates `g` with the reference interpreter (plain loops, double
/// precision internally). Inputs and params by name; params default to
/// g.init_params().
std::map<std::string, Array> interpret(const Graph &g,
                                       const std::map<std::string, Array> &inputs,
                                       const NamedArrays *params = nullptr);

} // namespace soma
