//===- jit_worker_test.cpp - JIT compilation in soma-jit-worker -----------===//
//
// The JIT compiles in a worker process when nothing is dumped or reported:
// the worker makes the very objects this process would, a training step's
// two functions compile in two workers, and every way a worker can fail
// (a compile error, a crash, an exit without a reply, a bad reply, another
// build, a missing executable) gives a soma::Error that says so, or a
// compilation in this process where that is the right answer.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"
#include "../runtime/scoped_env.h"

#include "soma/Compiler/GraphImpl.h"
#include "soma/Compiler/ObjectCache.h"
#include "soma/Compiler/Pipeline.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace soma;
using soma::test::ScopedEnv;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

namespace {

/// An MLP's first layer (64 x 784 -> 256: its K is split and its units are
/// chosen for the thread count the code is made for), a fused chain and a
/// reduction.
Graph workerGraph() {
  Graph g("worker", 3);
  Tensor x = g.input("x", {64, 784});
  Tensor h = relu(nn::dense(x, 256));
  g.output("y", softmax(nn::dense(h, 10)));
  return g;
}

std::map<std::string, Array> runOnce(const Graph &g, const CompileOptions &o) {
  Inference fn = compile_inference(g, o);
  return fn.run({{"x", test::randomF32({64, 784}, -1, 1, 7)}});
}

CompileOptions uncached(bool worker = true) {
  CompileOptions o;
  o.cache = false;
  o.worker = worker;
  return o;
}

class JitWorkerTest : public ::testing::Test {
protected:
  JitWorkerTest()
      : dir(::testing::UnitTest::GetInstance()->current_test_info()->name()),
        unset("SOMA_JIT_WORKER", nullptr) {}

  /// An executable shell script standing in for the worker.
  std::string fakeWorker(const std::string &body) {
    std::string path = dir / "fake-worker";
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ::chmod(path.c_str(), 0755);
    return path;
  }
  std::string compileError(const Graph &g) {
    try {
      runOnce(g, uncached());
    } catch (const Error &e) {
      return e.what();
    }
    return "(no error)";
  }

  ObjectCacheStats &stats = objectCacheStats();
  test::TempDir dir;
  ScopedEnv unset;
};

TEST_F(JitWorkerTest, MakesTheObjectsThisProcessMakes) {
  Graph g = workerGraph();
  // 3 threads, not this process's 2: the request carries them (made for 1
  // or 2 threads, the objects differ).
  std::optional<CachedObject> remote = compileInWorker(*g.impl()->module, Mode::eval, 3, 3);
  ASSERT_TRUE(remote) << "soma-jit-worker should sit next to libsoma.so";
  CachedObject local = compileObjects(*g.impl()->module, DumpConfig{}, 3, Mode::eval, 3);
  EXPECT_EQ(remote->signature.name, local.signature.name);
  EXPECT_EQ(remote->signature.workspace_bytes, local.signature.workspace_bytes);
  EXPECT_EQ(remote->signature.stack_bytes, local.signature.stack_bytes);
  ASSERT_EQ(remote->objects.size(), local.objects.size());
  for (size_t i = 0; i < local.objects.size(); ++i)
    EXPECT_TRUE(remote->objects[i] == local.objects[i]) << "object " << i << " differs";
}

TEST_F(JitWorkerTest, PlansTheArenaThisProcessPlans) {
  Graph g = workerGraph();
  for (Mode mode : {Mode::eval, Mode::train}) {
    std::optional<int64_t> remote = planInWorker(*g.impl()->module, mode);
    ASSERT_TRUE(remote);
    EXPECT_EQ(*remote, plannedWorkspaceBytes(*g.impl()->module, mode));
    EXPECT_GT(*remote, 0);
  }
}

TEST_F(JitWorkerTest, RunsAndComputesWhatAnInProcessCompileComputes) {
  Graph g = workerGraph();
  uint64_t inWorker = stats.in_worker;
  auto remote = runOnce(g, uncached());
  EXPECT_EQ(stats.in_worker.load(), inWorker + 1);
  auto local = runOnce(g, uncached(/*worker=*/false));
  EXPECT_EQ(stats.in_worker.load(), inWorker + 1) << "CompileOptions::worker = false compiles here";
  ASSERT_EQ(remote.at("y").shape(), local.at("y").shape());
  EXPECT_EQ(std::memcmp(remote.at("y").raw(), local.at("y").raw(), local.at("y").nbytes()), 0);
}

TEST_F(JitWorkerTest, DumpsAndReportsCompileInThisProcess) {
  Graph g = workerGraph();
  uint64_t inWorker = stats.in_worker;
  CompileReport report;
  CompileOptions o = uncached();
  o.report = &report;
  runOnce(g, o);
  EXPECT_EQ(stats.in_worker.load(), inWorker);
  EXPECT_FALSE(report.functions.empty());
}

TEST_F(JitWorkerTest, ATrainingStepCompilesBothFunctionsInWorkers) {
  Graph g("step", 1);
  Tensor x = g.input("x", {8, 6});
  Tensor y = g.input("y", {8}, DType::i32);
  g.output("loss", softmax_cross_entropy(nn::dense(relu(nn::dense(x, 12)), 3), y));
  uint64_t inWorker = stats.in_worker;
  TrainOptions to;
  to.compile.cache = false;
  TrainStep step = compile_training(g, g.output_tensor("loss"), optim::SGD{{.lr = 0.1}}, to);
  EXPECT_EQ(stats.in_worker.load(), inWorker + 2);
  step.run({{"x", test::randomF32({8, 6}, -1, 1, 3)}, {"y", Array(DType::i32, {8})}});
}

TEST_F(JitWorkerTest, CheckpointingPlansInTheWorker) {
  // Policy::best plans the step three ways before compiling the smallest.
  Graph g("ckpt", 1);
  Tensor x = g.input("x", {8, 6});
  Tensor y = g.input("y", {8}, DType::i32);
  g.output("loss", softmax_cross_entropy(nn::dense(relu(nn::dense(x, 12)), 3), y));
  TrainOptions to;
  to.compile.cache = false;
  to.checkpointing.enabled = true;
  uint64_t plans = stats.plans_in_worker;
  TrainStep step = compile_training(g, g.output_tensor("loss"), optim::SGD{{.lr = 0.1}}, to);
  EXPECT_GE(stats.plans_in_worker.load(), plans + 2);
  to.compile.worker = false;
  plans = stats.plans_in_worker;
  step = compile_training(g, g.output_tensor("loss"), optim::SGD{{.lr = 0.1}}, to);
  EXPECT_EQ(stats.plans_in_worker.load(), plans) << "CompileOptions::worker = false plans here";
}

TEST_F(JitWorkerTest, OffWithSomaJitWorkerZero) {
  ScopedEnv off("SOMA_JIT_WORKER", "0");
  Graph g = workerGraph();
  uint64_t inWorker = stats.in_worker;
  runOnce(g, uncached());
  EXPECT_EQ(stats.in_worker.load(), inWorker);
}

TEST_F(JitWorkerTest, OnWithSomaJitWorkerOne) {
  // "1" is the default worker, not a program named 1.
  ScopedEnv on("SOMA_JIT_WORKER", "1");
  Graph g = workerGraph();
  uint64_t inWorker = stats.in_worker;
  runOnce(g, uncached());
  EXPECT_EQ(stats.in_worker.load(), inWorker + 1);
}

TEST_F(JitWorkerTest, ACompileErrorInTheWorkerIsThrownAsItIs) {
  ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; printf 'Emodel.cpp:3: some compile error'"));
  EXPECT_EQ(compileError(workerGraph()), "model.cpp:3: some compile error");
}

TEST_F(JitWorkerTest, ACrashIsAnErrorNamingTheSignalAndTheGraph) {
  ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; kill -SEGV $$"));
  std::string e = compileError(workerGraph());
  EXPECT_THAT(e, HasSubstr("was killed by signal 11 (SIGSEGV)"));
  EXPECT_THAT(e, HasSubstr("compiling 'worker'"));
  EXPECT_THAT(e, HasSubstr("SOMA_JIT_WORKER=0"));
}

TEST_F(JitWorkerTest, AKilledWorkerIsNotCalledABug) {
  {
    ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; kill -KILL $$"));
    std::string e = compileError(workerGraph());
    EXPECT_THAT(e, HasSubstr("was killed by signal 9 (SIGKILL): out of memory"));
    EXPECT_THAT(e, Not(HasSubstr("bug in soma")));
  }
  {
    ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; kill -TERM $$"));
    std::string e = compileError(workerGraph());
    EXPECT_THAT(e, HasSubstr("(SIGTERM): interrupted while compiling 'worker'"));
    EXPECT_THAT(e, Not(HasSubstr("bug in soma")));
  }
}

TEST_F(JitWorkerTest, TheWorkerStartsWithDefaultSignals) {
  // A program that ignores SIGINT (and blocks SIGTERM) must not pass that on:
  // the fake worker would then reply instead of dying.
  struct Restore {
    void (*old)(int);
    sigset_t mask;
    ~Restore() {
      std::signal(SIGINT, old);
      ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
    }
  } restore{std::signal(SIGINT, SIG_IGN), {}};
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &term, &restore.mask);
  {
    ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; kill -INT $$; printf 'Esigint ignored'"));
    EXPECT_THAT(compileError(workerGraph()), HasSubstr("(SIGINT): interrupted"));
  }
  {
    ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; kill -TERM $$; printf 'Esigterm blocked'"));
    EXPECT_THAT(compileError(workerGraph()), HasSubstr("(SIGTERM): interrupted"));
  }
}

TEST_F(JitWorkerTest, AWorkerThatReadsNothingDoesNotRaiseSigpipe) {
  // A request much larger than the socket's buffer (a 2 MB constant in the
  // module) to a worker that exits at once: writing to it fails with EPIPE,
  // which must not end this process by SIGPIPE.
  Graph g("big", 1);
  Tensor x = g.input("x", {64, 784});
  Array table = test::randomF32({784, 640}, -1, 1, 5);
  g.output("y", matmul(x, constant(g, table)));
  ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("exit 3"));
  EXPECT_THAT(compileError(g), HasSubstr("exited with status 3 without a reply"));
}

TEST_F(JitWorkerTest, TheReplyEndsWhenTheWorkerExits) {
  // A process the worker started keeps its stdout (the socket) open after
  // the worker has replied and exited: the reply must not wait for it. It
  // holds on until this test opens the fifo (or 60 s have passed: then the
  // compile was still waiting, and the test fails).
  std::string fifo = dir / "hold";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ScopedEnv w("SOMA_JIT_WORKER",
              fakeWorker("cat >/dev/null; printf 'Eheld open'; cat '" + fifo + "' &"));
  auto error = std::async(std::launch::async, [&] { return compileError(workerGraph()); });
  bool replied = error.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  ::close(::open(fifo.c_str(), O_WRONLY)); // lets the holder end
  EXPECT_TRUE(replied) << "the compile waited for the process holding the worker's socket";
  EXPECT_EQ(error.get(), "held open");
}

TEST_F(JitWorkerTest, AnExitWithoutAReplyIsAnError) {
  ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("exit 3"));
  EXPECT_THAT(compileError(workerGraph()), HasSubstr("exited with status 3 without a reply"));
}

TEST_F(JitWorkerTest, ACorruptReplyIsAnError) {
  {
    ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; printf 'Onot an entry'"));
    EXPECT_THAT(compileError(workerGraph()), HasSubstr("sent a bad reply compiling 'worker'"));
  }
  {
    ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; printf 'Pshort'"));
    Graph g = workerGraph();
    try {
      planInWorker(*g.impl()->module, Mode::eval);
      ADD_FAILURE() << "no error";
    } catch (const Error &e) {
      EXPECT_THAT(e.what(), HasSubstr("sent a bad reply planning 'worker'"));
    }
  }
  {
    ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; printf 'Xwhat'"));
    EXPECT_THAT(compileError(workerGraph()), HasSubstr("sent a bad reply compiling 'worker'"));
  }
}

TEST_F(JitWorkerTest, AWorkerFromAnotherBuildIsNotUsed) {
  ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; printf 'Vsoma-object-cache 0; another build'"));
  uint64_t inWorker = stats.in_worker;
  testing::internal::CaptureStderr();
  auto y = runOnce(workerGraph(), uncached());
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(stats.in_worker.load(), inWorker);
  EXPECT_EQ(y.at("y").shape(), (Shape{64, 10}));
  EXPECT_THAT(err, HasSubstr("is from another build of soma"));
}

TEST_F(JitWorkerTest, TheWorkerGetsNoneOfTheProgramsFiles) {
#ifndef SOMA_HAVE_SPAWN_CLOSEFROM
  GTEST_SKIP() << "no posix_spawn_file_actions_addclosefrom_np (glibc < 2.34): only close-on-exec files are closed";
#endif
  // A descriptor without close-on-exec, at 50; the fake worker replies with
  // the list of its own.
  int fd = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::dup2(fd, 50), 50);
  ScopedEnv w("SOMA_JIT_WORKER", fakeWorker("cat >/dev/null; printf 'E'; ls /proc/$$/fd | tr '\\n' ' '"));
  std::string fds = compileError(workerGraph());
  ::close(50);
  ::close(fd);
  // The shell keeps its script open at a descriptor of its own choosing (dash:
  // 10); the program's 50 must not be there.
  EXPECT_THAT(" " + fds, HasSubstr(" 0 1 "));
  EXPECT_THAT(" " + fds, Not(HasSubstr(" 50 ")));
}

TEST_F(JitWorkerTest, ANamedWorkerThatCannotStartIsAnError) {
  ScopedEnv w("SOMA_JIT_WORKER", dir / "no-such-worker");
  std::string e = compileError(workerGraph());
  EXPECT_THAT(e, HasSubstr("cannot start the JIT worker"));
  EXPECT_THAT(e, HasSubstr("No such file or directory"));
}

TEST_F(JitWorkerTest, TheWorkerRejectsWhatIsNotARequest) {
  std::string out;
  {
    FILE *p = ::popen(("printf 'hello, world' | " SOMA_JIT_WORKER_EXE " 2>/dev/null"), "r");
    ASSERT_NE(p, nullptr);
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
      out.append(buf, n);
    EXPECT_EQ(::pclose(p), 0);
  }
  EXPECT_THAT(out, StartsWith("E"));
  EXPECT_THAT(out, HasSubstr("not a soma JIT request"));
}

} // namespace
