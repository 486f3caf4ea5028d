//===- soma-jit-worker - compiles one graph module for libsoma's JIT ------===//
//
// Started by libsoma (jitCompile) with a request on stdin; writes the
// compiled objects (or the error) to stdout and exits. Not for direct use:
// see compileInWorker in compiler/lib/Compiler/Worker.cpp.
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/Pipeline.h"

int main() { return soma::jitWorkerMain(); }
