// soma_jit.h - a graph compiled into a bare soma::Executable, so that the
// benchmark can call it on pre-bound input and output arrays (no
// per-call output allocation or name lookup as in Inference::run).
#pragma once

#include <soma/soma.h>

namespace bench {

/// JIT-compiles `g` in eval mode with default options (what
/// soma::compile_inference does) and returns the executable itself.
soma::Executable jit(const soma::Graph &g);

} // namespace bench
