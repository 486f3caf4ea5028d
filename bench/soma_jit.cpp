// soma_jit.cpp - uses the compiler's internal jitCompile: the public API
// offers no Executable of a graph (see soma_jit.h). The only translation
// unit of the benchmarks that sees MLIR headers.
#include "soma_jit.h"

#include "soma/Compiler/GraphImpl.h"
#include "soma/Compiler/Pipeline.h"

namespace bench {

soma::Executable jit(const soma::Graph &g) {
  return soma::jitCompile(*g.impl()->module, soma::CompileOptions{});
}

} // namespace bench
