//===- stack_test.cpp - The compiled code's stack: its bound and its check -===//
//
// The compiled code keeps its scratch (a GEMM unit's packed panels, a
// direct convolution's window masks) on the stacks of the threads that run
// it. Signature::stack_bytes bounds what it uses there, and
// Executable::call refuses a thread with less free stack than that, or
// OpenMP workers made with less, rather than letting the code run past the
// stack's end.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#include <pthread.h>
#include <sys/mman.h>

#include <cstring>
#include <exception>
#include <functional>

extern "C" void omp_set_num_threads(int);

using namespace soma;

namespace {

struct Job {
  std::function<void()> body;
  std::exception_ptr error;
};

void *runJob(void *p) {
  auto *job = static_cast<Job *>(p);
  try {
    job->body();
  } catch (...) {
    job->error = std::current_exception();
  }
  return nullptr;
}

/// Runs `body` on a new thread whose stack is `stack` (its size given) or,
/// when `stack` is null, `size` bytes from the system; rethrows what it threw.
void onThread(size_t size, void *stack, const std::function<void()> &body) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  if (stack)
    ASSERT_EQ(pthread_attr_setstack(&attr, stack, size), 0);
  else
    ASSERT_EQ(pthread_attr_setstacksize(&attr, size), 0);
  Job job{body, nullptr};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, &attr, runJob, &job), 0);
  pthread_join(t, nullptr);
  pthread_attr_destroy(&attr);
  if (job.error)
    std::rethrow_exception(job.error);
}

/// The bytes of stack `body` used on a thread of its own (with one OpenMP
/// thread, so that every parallel loop runs there): the thread's stack is
/// filled with a pattern first, and the lowest byte changed is the mark.
size_t stackUsed(const std::function<void()> &body) {
  constexpr size_t kSize = 32 << 20;
  void *mem = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(mem, MAP_FAILED);
  if (mem == MAP_FAILED)
    return 0;
  std::memset(mem, 0xA5, kSize);
  onThread(kSize, mem, [&] {
    omp_set_num_threads(1);
    body();
  });
  const auto *p = static_cast<const unsigned char *>(mem);
  size_t i = 0;
  while (i < kSize && p[i] == 0xA5)
    ++i;
  munmap(mem, kSize);
  return kSize - i;
}

std::map<std::string, Array> batchFor(const Signature &sig) {
  std::map<std::string, Array> batch;
  for (const TensorSpec &s : sig.inputs)
    batch[s.name] = s.dtype == DType::f32 ? test::randomF32(s.shape, 0, 1, 5) : Array(s.dtype, s.shape);
  return batch;
}

/// A "valid" 3x3 convolution of 64 channels into 64 filters on 14 x 14
/// (like LeNet-5's second layer, wider) and its gradients: the direct
/// convolution and filter gradient along the filters, with the transposed
/// filters (147 KiB on the calling thread) and blocks of outputs or of dy
/// (each unit) on the stack.
Graph wideConv() {
  Graph g("wide", 1);
  Tensor x = g.input("x", {2, 64, 14, 14});
  Tensor w = g.param("w", {64, 64, 3, 3}, init::he_normal());
  Tensor y = g.input("y", {2, 64, 12, 12});
  g.output("loss", mse(conv2d(x, w), y));
  return g;
}

// The bound covers what the training steps and the forward passes use,
// measured: an MLP (GEMMs, B packed), LeNet-5 and ResNet-8 (direct
// convolutions and their gradients, batch norm) and a wide convolution.
// The bound less its 64 KiB margin for frames must cover the scratch:
// what is used beyond it is frames, a few KiB.
TEST(Stack, TheBoundCoversWhatTheCodeUses) {
  for (const char *model : {"mlp", "lenet5", "resnet8", "wide"}) {
    Graph g = std::string(model) == "wide" ? wideConv() : zoo::build(model, 8, /*with_loss=*/true, 1);
    TrainStep step = compile_training(g, g.output_tensor("loss"), optim::Adam{});
    std::map<std::string, Array> batch = batchFor(step.train_signature());
    size_t train = stackUsed([&] { step.run(batch); });
    size_t eval = stackUsed([&] { step.evaluate(batch); });
    EXPECT_GT(train, 0u);
    EXPECT_LE(static_cast<int64_t>(train), step.train_signature().stack_bytes) << model;
    EXPECT_LE(static_cast<int64_t>(eval), step.eval_signature().stack_bytes) << model;
    EXPECT_LE(static_cast<int64_t>(train), step.train_signature().stack_bytes - (64 << 10) + (16 << 10)) << model;
    EXPECT_LE(static_cast<int64_t>(eval), step.eval_signature().stack_bytes - (64 << 10) + (16 << 10)) << model;
    std::printf("%s: stack used %zu / %zu bytes, bound %lld / %lld (train / eval)\n", model, train, eval,
                static_cast<long long>(step.train_signature().stack_bytes),
                static_cast<long long>(step.eval_signature().stack_bytes));
  }
}

// A thread with half the stack the code needs gets an error that says how
// much is needed and how much is left; the same call on a thread with
// enough computes what the main thread computes.
TEST(Stack, TooSmallAStackIsAnErrorNotACrash) {
  Graph g = zoo::mlp(64, /*with_loss=*/false, 1);
  Inference fn = compile_inference(g);
  const int64_t need = fn.signature().stack_bytes;
  ASSERT_GT(need, 64 << 10);
  std::map<std::string, Array> in = batchFor(fn.signature());
  Array expected = fn.run(in).at("logits");
  EXPECT_SOMA_ERROR(onThread(static_cast<size_t>(need / 2), nullptr, [&] { fn.run(in); }), "'mlp' needs about",
                    "of stack", "the calling thread has", "left");
  Array got;
  onThread(static_cast<size_t>(need) + (256 << 10), nullptr, [&] { got = fn.run(in).at("logits"); });
  EXPECT_TRUE(test::allClose(got, expected, 0));
}

} // namespace
