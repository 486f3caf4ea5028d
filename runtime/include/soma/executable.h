//===- soma/executable.h - Calling compiled code ------------------*- C++ -*-===//
#pragma once

#include "soma/array.h"

#include <memory>
#include <span>
#include <string>
#include <vector>

namespace soma {

/// The name, dtype and shape of one input, parameter or output.
struct TensorSpec {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
};

/// The ABI of a compiled function: it takes one pointer per input, per
/// parameter, per state buffer and per output (in this order) and a
/// workspace pointer. A training step updates its parameters and states in
/// place; states are optimizer buffers (moments, the step count) that start
/// at `state_init`.
struct Signature {
  std::string name;
  std::vector<TensorSpec> inputs, params, states, outputs;
  std::vector<double> state_init; // one per state
  int64_t workspace_bytes = 0;
  /// The stack the compiled code may use on the calling thread and on each
  /// OpenMP worker: its scratch buffers (a GEMM's packed panels, a direct
  /// convolution's window masks and blocks) live there, plus a margin for
  /// frames.
  /// Executable::call checks both before it runs the code; 0 means unknown
  /// and is not checked.
  int64_t stack_bytes = 0;

  /// Index of the input/param/output named `name`, or -1.
  int find_input(const std::string &name) const;
  int find_param(const std::string &name) const;
  int find_state(const std::string &name) const;

  /// `given` ordered like `params`, after checking that every parameter is
  /// there with its dtype and shape and that nothing else is; the first
  /// problem throws soma::Error with both types, e.g. "parameter 'w': the
  /// model has f32[784,256], the given value is f32[785,256]".
  std::vector<std::pair<std::string, Array>> match_params(
      const std::vector<std::pair<std::string, Array>> &given) const;
  int find_output(const std::string &name) const;
};

/// A compiled function and the workspace it computes in. The code is kept
/// alive by `owner` (a JIT engine or a loaded library). Not thread-safe: one
/// call at a time per Executable.
class Executable {
public:
  /// The packed calling convention: args[i] points at the i-th pointer.
  using PackedFn = void (*)(void **);

  Executable() = default;
  Executable(Signature signature, PackedFn fn, std::shared_ptr<void> owner);

  const Signature &signature() const { return sig_; }

  /// Runs the function. Every array is checked against the signature
  /// (count, dtype, shape) and a mismatch throws soma::Error naming the
  /// tensor, e.g. "input 'x': expected f32[64,784], got f32[32,784]".
  /// Outputs must already have their dtype and shape (see make_outputs).
  void call(std::span<const Array> inputs, std::span<const Array> params,
            std::span<Array> outputs);
  /// The same with state buffers (training steps); params and states may be
  /// updated in place.
  void call(std::span<const Array> inputs, std::span<const Array> params,
            std::span<const Array> states, std::span<Array> outputs);

  /// Freshly allocated output arrays with the signature's shapes, not
  /// initialized (Array::uninitialized): a call writes them whole.
  std::vector<Array> make_outputs() const;
  /// Freshly allocated state buffers holding their initial values
  /// (`state_init`), in signature order.
  std::vector<Array> make_states() const;

private:
  Signature sig_;
  PackedFn fn_ = nullptr;
  std::shared_ptr<void> owner_;
  std::shared_ptr<std::byte> workspace_;
  std::vector<void *> ptrs_, args_; // reused by every call: no allocation
};

} // namespace soma
