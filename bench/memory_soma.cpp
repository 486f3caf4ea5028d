// memory_soma: resident memory of soma training steps.
//
//   memory_soma MODEL BATCH [recompute]
//     MODEL: mlp, lenet5, resnet8; recompute: activation checkpointing.
//     The environment decides how the code is made: the compiled-object
//     cache (SOMA_CACHE_DIR) serves it when an earlier run stored it (the
//     process never runs the compiler); otherwise the JIT compiles, in
//     soma-jit-worker, or in this process with SOMA_JIT_WORKER=0.
//
// Prints one line "base_kib compiled_kib peak_kib arena params states
// worker_kib": the resident size before the model is built (after the
// library is loaded), after compiling (the graph dropped and freed memory
// returned to the system by malloc_trim), the peak during 10 training
// steps (after 2 warm-up steps), soma's own accounting in bytes, and the
// peak resident size of the largest child process (the JIT's workers; 0
// when none ran).
#include "memory_common.h"
#include "soma_models.h"

#include <soma/soma.h>

#include <malloc.h>
#include <sys/resource.h>

int main(int argc, char **argv) {
  bool recompute = false, usage = argc < 3;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "recompute")
      recompute = true;
    else
      usage = true;
  }
  if (usage) {
    std::fprintf(stderr, "usage: memory_soma MODEL BATCH [recompute]\n");
    return 2;
  }
  std::string model = argv[1];
  int64_t batch = std::atoll(argv[2]);
  long base = bench::statusKiB("VmRSS");
  soma::Shape xs;
  soma::TrainOptions to;
  to.checkpointing.enabled = recompute;
  soma::TrainStep step = bench::somaTrainStep(model, batch, &xs, to);
  malloc_trim(0);
  long compiled = bench::statusKiB("VmRSS");
  std::map<std::string, soma::Array> b = bench::somaBatch(xs);
  for (int i = 0; i < 2; ++i)
    step.run(b);
  malloc_trim(0);
  if (!bench::resetPeak()) {
    std::fprintf(stderr, "memory_soma: cannot reset the peak RSS (/proc/self/clear_refs)\n");
    return 1;
  }
  for (int i = 0; i < 10; ++i)
    step.run(b);
  long peak = bench::statusKiB("VmHWM");
  int64_t params = 0, states = 0;
  for (auto &[n, a] : step.params())
    params += static_cast<int64_t>(a.nbytes());
  for (auto &[n, a] : step.states())
    states += static_cast<int64_t>(a.nbytes());
  struct rusage children {};
  getrusage(RUSAGE_CHILDREN, &children);
  std::printf("%ld %ld %ld %lld %lld %lld %ld\n", base, compiled, peak,
              static_cast<long long>(step.train_signature().workspace_bytes),
              static_cast<long long>(params), static_cast<long long>(states), children.ru_maxrss);
  return 0;
}
