//===- cli_test.cpp - The soma CLI and the AOT C sample, end to end --------===//
//
// Runs the real `soma` binary and the C program linked against an object
// that `soma compile` wrote, and checks outputs against each other and the
// interpreter, and that every kind of bad input gives one clear line on
// stderr and a non-zero exit (never a crash).
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#include "soma/data.h"

#include <fstream>
#include <sys/wait.h>

using namespace soma;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

struct Result {
  int code = -1;    // exit code, or -1 if killed by a signal
  std::string out, err;
};

std::string slurp(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

/// Runs a shell command line, capturing stdout and stderr.
Result sh(const std::string &cmd, const test::TempDir &dir) {
  std::string o = dir / "stdout.txt", e = dir / "stderr.txt";
  int status = std::system((cmd + " >" + o + " 2>" + e).c_str());
  Result r;
  if (WIFEXITED(status))
    r.code = WEXITSTATUS(status);
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

Result soma(const std::string &args, const test::TempDir &dir) {
  return sh(std::string(SOMA_CLI) + " " + args, dir);
}

/// A failed command: exit code `code`, exactly one line on stderr holding
/// every expected piece.
void expectError(const Result &r, int code, std::initializer_list<std::string> pieces) {
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const std::string &p : pieces)
    EXPECT_THAT(r.err, HasSubstr(p));
}

class Cli : public ::testing::Test {
protected:
  void SetUp() override {
    dir = std::make_unique<test::TempDir>(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::string path(const std::string &f) const { return *dir / f; }
  /// `soma run` of the graph `g` (saved as NAME.mlir) on the input "x",
  /// once with the options `a` and once with `b`: the two outputs "y".
  std::pair<Array, Array> runTwice(const Graph &g, const Array &x, const std::string &a, const std::string &b) {
    g.save(path(g.name() + ".mlir"));
    write_npy(path("x.npy"), x);
    std::string args = "run " + path(g.name() + ".mlir") + " --input x=" + path("x.npy");
    for (auto [options, out] : {std::pair{a, "a"}, std::pair{b, "b"}}) {
      Result r = soma(args + " " + options + " --output-dir " + path(out), *dir);
      EXPECT_EQ(r.code, 0) << r.err;
    }
    return {read_npy(path("a/y.npy")), read_npy(path("b/y.npy"))};
  }
  std::unique_ptr<test::TempDir> dir;
};

TEST_F(Cli, HelpForEveryCommand) {
  for (const char *cmd : {"export", "compile", "run", "dump"}) {
    Result r = soma(std::string(cmd) + " --help", *dir);
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_THAT(r.out, StartsWith(std::string("usage: soma ") + cmd));
  }
  Result r = soma("--help", *dir);
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("commands:"));
  EXPECT_EQ(soma("", *dir).code, 2);
}

TEST_F(Cli, UsageMistakes) {
  expectError(soma("frobnicate", *dir), 2, {"unknown command 'frobnicate'"});
  expectError(soma("run mlp --output-dir x --bogus", *dir), 2, {"unknown option '--bogus'", "soma run --help"});
  expectError(soma("run mlp", *dir), 2, {"missing --output-dir"});
  expectError(soma("run mlp --output-dir o --input x", *dir), 2, {"--input expects NAME=FILE.npy, got 'x'"});
  expectError(soma("export", *dir), 2, {"missing MODEL"});
  expectError(soma("export mlp", *dir), 2, {"missing -o"});
  expectError(soma("compile mlp -o d --emit=obj,exe", *dir), 2, {"unknown --emit kind 'exe'"});
  expectError(soma("export mlp -o m.mlir --batch many", *dir), 2, {"'--batch' expects an integer, got 'many'"});
  expectError(soma("export mlp -o", *dir), 2, {"option '-o' needs a value"});
  expectError(soma("dump mlp --dump=all", *dir), 2, {"'soma dump' takes --stage, not --dump"});
  expectError(soma("compile mlp --cpu nosuchcpu -o " + path("c"), *dir), 1,
              {"unknown target CPU 'nosuchcpu'"});
}

TEST_F(Cli, ExportCompileRunAndTheCProgramAgree) {
  std::string model = path("mlp.mlir"), x = path("x.npy");
  ASSERT_EQ(soma("export mlp -o " + model, *dir).code, 0);
  write_npy(x, test::randomF32({64, 784}, 0, 1, 11));

  // JIT
  Result run = soma("run " + model + " --input x=" + x + " --output-dir " + path("jit"), *dir);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("logits.npy f32[64,10]"));
  // Interpreter
  Result interp = soma("run " + model + " --interpret --input x=" + x + " --output-dir " + path("ref"), *dir);
  ASSERT_EQ(interp.code, 0) << interp.err;
  // AOT: compile this model again, then run the C program linked at build
  // time against the same exported MLP's object with these weights.
  Result comp = soma("compile " + model + " --emit=obj,header,weights,llvm,asm -o " + path("aot"), *dir);
  ASSERT_EQ(comp.code, 0) << comp.err;
  for (const char *f : {"mlp.o", "mlp.h", "mlp.weights.safetensors", "mlp.ll", "mlp.s"})
    EXPECT_TRUE(std::filesystem::exists(path("aot/") + f)) << f;
  EXPECT_THAT(slurp(path("aot/mlp.h")), HasSubstr("void mlp(const float *x,"));
  Result c = sh(std::string(SOMA_AOT_C_EXE) + " " + path("aot/mlp.weights.safetensors") + " " + x +
                    " " + path("c_logits.npy"),
                *dir);
  ASSERT_EQ(c.code, 0) << c.err;

  Array jit = read_npy(path("jit/logits.npy"));
  Array ref = read_npy(path("ref/logits.npy"));
  Array aot = read_npy(path("c_logits.npy"));
  EXPECT_TRUE(test::allClose(jit, ref));
  EXPECT_TRUE(test::allClose(aot, ref));
  EXPECT_TRUE(test::allClose(aot, jit, 1e-6));
}

TEST_F(Cli, CProgramRejectsForeignWeights) {
  // Weights of a different model (another batch gives the same parameters,
  // so use a file that is not a weights file at all) are refused cleanly.
  std::string x = path("x.npy");
  write_npy(x, test::randomF32({64, 784}, 0, 1, 1));
  write_npy(path("not_weights.npy"), test::randomF32({3}, 0, 1, 1));
  Result c = sh(std::string(SOMA_AOT_C_EXE) + " " + path("not_weights.npy") + " " + x + " " +
                    path("o.npy"),
                *dir);
  EXPECT_EQ(c.code, 1);
  EXPECT_THAT(c.err, HasSubstr("was not written with this header"));
  Result missing = sh(std::string(SOMA_AOT_C_EXE) + " " + path("nope") + " " + x + " " + path("o.npy"), *dir);
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, HasSubstr("cannot open weights file"));
}

TEST_F(Cli, ParamsFileIsUsedAndChecked) {
  std::string model = path("mlp.mlir"), x = path("x.npy");
  ASSERT_EQ(soma("export mlp --batch 2 -o " + model, *dir).code, 0);
  write_npy(x, test::randomF32({2, 784}, 0, 1, 2));
  Graph g = load(model);
  NamedArrays ps = g.init_params();
  for (auto &[n, a] : ps)
    for (int64_t i = 0; i < a.numel(); ++i)
      a.data<float>()[i] = 0.0f; // all-zero weights: logits are 0
  write_safetensors(path("zero.safetensors"), ps);
  Result r = soma("run " + model + " --params " + path("zero.safetensors") + " --input x=" + x +
                      " --output-dir " + path("o"),
                  *dir);
  ASSERT_EQ(r.code, 0) << r.err;
  Array logits = read_npy(path("o/logits.npy"));
  for (int64_t i = 0; i < logits.numel(); ++i)
    EXPECT_EQ(logits.data<float>()[i], 0.0f);

  ps[2].second = Array(DType::f32, {256, 64});
  write_safetensors(path("wrong.safetensors"), ps);
  expectError(soma("run " + model + " --params " + path("wrong.safetensors") + " --input x=" + x +
                       " --output-dir " + path("o"),
                   *dir),
              1, {"parameter 'dense1.weight': the model has f32[256,128], the given value is f32[256,64]"});
  std::ofstream(path("corrupt.safetensors")) << "garbage that is not safetensors";
  expectError(soma("run " + model + " --params " + path("corrupt.safetensors") + " --input x=" + x +
                       " --output-dir " + path("o"),
                   *dir),
              1, {"corrupt.safetensors"});
}

TEST_F(Cli, DumpWritesEveryStage) {
  Result r = soma("dump mlp --batch 8 --stage=all --dump-dir " + path("ir"), *dir);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const DumpStage &s : dump_stages()) {
    bool expected = std::string(s.name) != "train"; // inference has no training step
    EXPECT_EQ(std::filesystem::exists(path("ir/") + s.file), expected) << s.file;
    EXPECT_EQ(r.out.find(s.file) != std::string::npos, expected) << s.file;
  }
  Result t = soma("dump mlp --train --optimizer momentum --batch 8 --stage=all --dump-dir " + path("tir"), *dir);
  ASSERT_EQ(t.code, 0) << t.err;
  for (const DumpStage &s : dump_stages())
    EXPECT_TRUE(std::filesystem::exists(path("tir/") + s.file)) << s.file;
  EXPECT_THAT(slurp(path("tir/10-train.mlir")), HasSubstr("soma.state = \"v/dense0.weight\""));
  EXPECT_THAT(slurp(path("ir/30-lowered.mlir")), HasSubstr("vector.fma"));   // the packed GEMM
  EXPECT_THAT(slurp(path("tir/30-lowered.mlir")), HasSubstr("linalg.generic")); // elementwise kernels
  EXPECT_THAT(slurp(path("ir/35-planned.mlir")), HasSubstr("memref.view"));
  EXPECT_THAT(slurp(path("ir/50-module.s")), HasSubstr("mlp:"));
  EXPECT_THAT(slurp(path("ir/20-fused.mlir")), HasSubstr("soma.fusion \"contraction\""));
  EXPECT_THAT(slurp(path("tir/20-fused.mlir")), HasSubstr("soma.fusion \"elementwise\""));
  std::string plan = slurp(path("tir/memory-plan.txt"));
  EXPECT_THAT(plan, HasSubstr("lower bound (largest live set):"));
  EXPECT_THAT(plan, HasSubstr("made at"));
  EXPECT_THAT(plan, HasSubstr("mlp.cpp:")); // buffers name the zoo's source lines
  EXPECT_THAT(slurp(path("tir/memory-plan.svg")), HasSubstr("<svg"));
  Result some = soma("dump mlp --stage=built,asm --dump-dir " + path("two"), *dir);
  ASSERT_EQ(some.code, 0);
  // Only the files written by this run are reported, even over old dumps.
  Result again = soma("dump mlp --stage=built --dump-dir " + path("ir"), *dir);
  ASSERT_EQ(again.code, 0);
  EXPECT_THAT(again.out, HasSubstr("00-built.mlir"));
  EXPECT_THAT(again.out, ::testing::Not(HasSubstr("30-lowered.mlir")));
  EXPECT_TRUE(std::filesystem::exists(path("two/00-built.mlir")));
  EXPECT_FALSE(std::filesystem::exists(path("two/30-lowered.mlir")));
  expectError(soma("dump mlp --stage=bogus --dump-dir " + path("x"), *dir), 1, {"unknown dump stage 'bogus'"});
}

// A training step of a graph with an input marked soma.requires_grad: the
// step differentiates the parameters only (the input's gradient crashed
// the optimizer's emission, which looked the input up among the
// parameters).
TEST_F(Cli, TrainingStepDropsAnInputsGradient) {
  std::ofstream(path("rg.mlir")) << R"(module @rg {
  func.func @rg(%x: tensor<3xf32> {soma.input = "x", soma.requires_grad}, %w: tensor<3xf32> {soma.param = "w", soma.init = {kind = "zeros"}}) -> (tensor<f32> {soma.output = "loss", soma.loss}) {
    %0 = soma.mul %x, %w : tensor<3xf32>, tensor<3xf32>
    %1 = soma.reduce_sum %0 {axes = array<i64: 0>} : tensor<3xf32> -> tensor<f32>
    return %1 : tensor<f32>
  }
}
)";
  Result r = soma("dump " + path("rg.mlir") + " --train --stage=train --dump-dir " + path("rg"), *dir);
  ASSERT_EQ(r.code, 0) << r.err;
  std::string step = slurp(path("rg/10-train.mlir"));
  EXPECT_THAT(step, HasSubstr("soma.update = \"w\""));
  EXPECT_THAT(step, ::testing::Not(HasSubstr("soma.grad")));
}

TEST_F(Cli, PrintIrAfterAll) {
  Result r = soma("dump mlp --batch 2 --stage=built --dump-dir " + path("d") + " --print-ir-after-all", *dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("IR Dump After SomaLowerToLinalg"));
  EXPECT_THAT(r.err, HasSubstr("IR Dump After SomaPlanMemory"));
}

TEST_F(Cli, BadModelFiles) {
  expectError(soma("run " + path("nope.mlir") + " --output-dir o", *dir), 1, {"cannot open", "nope.mlir"});
  expectError(soma("run resnet9000 --output-dir o", *dir), 1, {"no such file or zoo model: 'resnet9000'"});
  std::ofstream(path("junk.mlir")) << "this is not MLIR\n";
  expectError(soma("compile " + path("junk.mlir") + " -o " + path("d"), *dir), 1, {"junk.mlir:1:"});
  std::ofstream(path("shape.mlir")) << R"(module @g {
  func.func @g(%a: tensor<4x3xf32> {soma.input = "a"}, %b: tensor<5x2xf32> {soma.input = "b"}) -> (tensor<4x2xf32> {soma.output = "y"}) {
    %0 = soma.matmul %a, %b : (tensor<4x3xf32>, tensor<5x2xf32>) -> tensor<4x2xf32>
    return %0 : tensor<4x2xf32>
  }
})";
  expectError(soma("run " + path("shape.mlir") + " --output-dir o", *dir), 1,
              {"shape.mlir:3:", "matmul: inner dimensions differ: [4,3] x [5,2]"});
}

TEST_F(Cli, BadInputs) {
  std::string model = path("mlp.mlir");
  ASSERT_EQ(soma("export mlp --batch 4 -o " + model, *dir).code, 0);
  std::string run = "run " + model + " --output-dir " + path("o") + " ";
  expectError(soma(run, *dir), 1, {"input 'x' (f32[4,784]) is missing"});
  expectError(soma(run + "--input x=" + path("none.npy"), *dir), 1, {"cannot open", "none.npy"});
  std::ofstream(path("junk.npy")) << "not numpy at all";
  expectError(soma(run + "--input x=" + path("junk.npy"), *dir), 1, {"junk.npy"});
  write_npy(path("short.npy"), test::randomF32({4, 784}, 0, 1, 1));
  std::filesystem::resize_file(path("short.npy"), 1000);
  expectError(soma(run + "--input x=" + path("short.npy"), *dir), 1, {"short.npy", "truncated"});
  write_npy(path("wrong.npy"), test::randomF32({5, 784}, 0, 1, 1));
  expectError(soma(run + "--input x=" + path("wrong.npy"), *dir), 1, {"input 'x': expected f32[4,784], got f32[5,784]"});
  write_npy(path("ints.npy"), Array(DType::i32, {4, 784}));
  expectError(soma(run + "--input x=" + path("ints.npy"), *dir), 1, {"expected f32[4,784], got i32[4,784]"});
  write_npy(path("ok.npy"), test::randomF32({4, 784}, 0, 1, 1));
  expectError(soma(run + "--input x=" + path("ok.npy") + " --input q=" + path("ok.npy"), *dir), 1,
              {"'q' is not an input of the model 'mlp'"});
  expectError(soma(run + "--input x=" + path("ok.npy") + " --input x=" + path("ok.npy"), *dir), 2,
              {"input 'x' given twice"});
}

/// A tiny Fashion-MNIST look-alike (n_train/n_test images of 28x28, labels
/// 0..9) in the package's file layout.
void writeTinyFashion(const std::string &dir, int64_t nTrain, int64_t nTest) {
  std::filesystem::create_directories(dir);
  auto split = [&](const std::string &prefix, int64_t n, uint32_t seed) {
    Array x = test::randomF32({n, 28, 28}, 0, 1, seed);
    Array y(DType::i32, {n});
    for (int64_t i = 0; i < n; ++i) {
      y.data<int32_t>()[i] = static_cast<int32_t>(i % 10);
      // A learnable signal: brighten a band of rows chosen by the label.
      for (int64_t c = 0; c < 28; ++c)
        x.data<float>()[i * 784 + (2 * (i % 10) + 4) * 28 + c] = 1.0f;
    }
    data::write_idx(dir + "/" + prefix + "-images-idx3-ubyte.gz", x, true);
    data::write_idx(dir + "/" + prefix + "-labels-idx1-ubyte.gz", y, true);
  };
  split("train", nTrain, 1);
  split("t10k", nTest, 2);
}

TEST_F(Cli, TrainOnATinyDataSetWithCheckpointAndResume) {
  writeTinyFashion(path("fm"), 320, 100);
  std::string common = "train mlp --data-dir " + path("fm") + " --batch 32 --no-progress ";
  Result r = soma(common + "--epochs 2 --checkpoint " + path("c.safetensors") + " --log " + path("log.csv"), *dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("epoch 1/2: loss"));
  EXPECT_THAT(r.out, HasSubstr("epoch 2/2: loss"));
  EXPECT_THAT(r.out, HasSubstr("test accuracy:"));
  EXPECT_TRUE(std::filesystem::exists(path("c.safetensors")));
  EXPECT_THAT(slurp(path("log.csv")), StartsWith("epoch,step,loss,accuracy,lr,examples_per_second\n1,1,"));
  Result resumed = soma(common + "--epochs 3 --resume " + path("c.safetensors"), *dir);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("resumed from"));
  EXPECT_THAT(resumed.out, HasSubstr("epoch 3/3: loss"));
  EXPECT_THAT(resumed.out, ::testing::Not(HasSubstr("epoch 1/3")));
}

TEST_F(Cli, TrainErrors) {
  std::filesystem::create_directories(path("empty"));
  expectError(soma("train mlp --no-progress --data-dir " + path("empty"), *dir), 1,
              {"Fashion-MNIST not found", "apt-get install dataset-fashion-mnist"});
  writeTinyFashion(path("fm"), 64, 20);
  std::string img = path("fm/train-images-idx3-ubyte.gz");
  std::string bytes = slurp(img);
  write_file_atomic(img, bytes.substr(0, bytes.size() / 3));
  expectError(soma("train mlp --no-progress --data-dir " + path("fm"), *dir), 1, {"train-images-idx3-ubyte.gz"});
  expectError(soma("train mlp --optimizer adamm", *dir), 1, {"adamm", "adam"});
  expectError(soma("train mlp --schedule wobbly", *dir), 2, {"unknown --schedule 'wobbly'"});
  expectError(soma("train mlp --schedule step:10x:0.5", *dir), 2, {"'10x' is not a number"});
  expectError(soma("train mlp --schedule step:10:0.5+warmup:5s", *dir), 2, {"bad warmup '5s'"});
  std::ofstream(path("noloss.mlir")) << R"(module @g {
  func.func @g(%x: tensor<2x784xf32> {soma.input = "x"}) -> (tensor<2x784xf32> {soma.output = "y"}) {
    %0 = soma.relu %x : tensor<2x784xf32>
    return %0 : tensor<2x784xf32>
  }
})";
  expectError(soma("train " + path("noloss.mlir"), *dir), 1, {"has no output named 'loss'", "outputs: y"});
  writeTinyFashion(path("ok"), 64, 20);
  soma("train mlp --no-progress --batch 32 --data-dir " + path("ok") + " --epochs 1 --checkpoint " + path("c.st"), *dir);
  std::string ck = slurp(path("c.st"));
  write_file_atomic(path("bad.st"), ck.substr(0, ck.size() - 100));
  expectError(soma("train mlp --no-progress --batch 32 --data-dir " + path("ok") + " --resume " + path("bad.st"), *dir), 1,
              {"bad.st"});
  expectError(soma("train mlp --no-progress --batch 32 --optimizer sgd --data-dir " + path("ok") + " --resume " + path("c.st"), *dir),
              1, {"written with optimizer adam, but this run uses sgd"});
}

TEST_F(Cli, RunWritesGradients) {
  std::string model = path("mlp.mlir");
  ASSERT_EQ(soma("export mlp --batch 4 --with-loss -o " + model, *dir).code, 0);
  write_npy(path("x.npy"), test::randomF32({4, 784}, 0, 1, 1));
  write_npy(path("y.npy"), Array::i32({4}, {1, 2, 3, 4}));
  // The first output of the zoo MLP is the logits (not a scalar): an error.
  expectError(soma("run " + model + " --grad --input x=" + path("x.npy") + " --input y=" + path("y.npy") +
                       " --output-dir " + path("g"),
                   *dir),
              1, {"the loss must be a scalar"});
  // A graph whose first output is the loss.
  Graph g("lossfirst", 3);
  Tensor x = g.input("x", {4, 784});
  Tensor y = g.input("y", {4}, DType::i32);
  Tensor logits = nn::dense(x, 10);
  g.output("loss", softmax_cross_entropy(logits, y));
  g.output("logits", logits);
  g.save(path("lf.mlir"));
  std::string args = " --grad --input x=" + path("x.npy") + " --input y=" + path("y.npy");
  Result jit = soma("run " + path("lf.mlir") + args + " --output-dir " + path("jit"), *dir);
  ASSERT_EQ(jit.code, 0) << jit.err;
  Result ref = soma("run " + path("lf.mlir") + args + " --interpret --output-dir " + path("ref"), *dir);
  ASSERT_EQ(ref.code, 0) << ref.err;
  for (const char *f : {"grad_dense0.weight.npy", "grad_dense0.bias.npy", "grad_x.npy", "loss.npy", "logits.npy"}) {
    ASSERT_TRUE(std::filesystem::exists(path("jit/") + f)) << f;
    EXPECT_TRUE(test::allClose(read_npy(path("jit/") + f), read_npy(path("ref/") + f), 1e-4)) << f;
  }
  EXPECT_FALSE(std::filesystem::exists(path("jit/grad_y.npy"))); // integer labels have none

  // The logits (not a scalar) with their gradient given: the
  // vector-Jacobian products alone, from the JIT and the interpreter.
  write_npy(path("dlogits.npy"), test::randomF32({4, 10}, -1, 1, 2));
  std::string vjp = " --grad --loss logits --output-gradient --gradients-only --input x=" + path("x.npy") +
                    " --input y=" + path("y.npy") + " --input grad_logits=" + path("dlogits.npy");
  Result vjit = soma("run " + path("lf.mlir") + vjp + " --output-dir " + path("vjit"), *dir);
  ASSERT_EQ(vjit.code, 0) << vjit.err;
  Result vref = soma("run " + path("lf.mlir") + vjp + " --interpret --output-dir " + path("vref"), *dir);
  ASSERT_EQ(vref.code, 0) << vref.err;
  for (const char *f : {"grad_dense0.weight.npy", "grad_dense0.bias.npy", "grad_x.npy"}) {
    ASSERT_TRUE(std::filesystem::exists(path("vjit/") + f)) << f;
    EXPECT_TRUE(test::allClose(read_npy(path("vjit/") + f), read_npy(path("vref/") + f), 1e-4)) << f;
  }
  // d(sum(logits * g))/d bias = the sum of g over the batch.
  Array db = read_npy(path("vjit/grad_dense0.bias.npy")), dl = read_npy(path("dlogits.npy"));
  for (int j = 0; j < 10; ++j) {
    float want = 0;
    for (int i = 0; i < 4; ++i)
      want += dl.data<float>()[i * 10 + j];
    EXPECT_NEAR(db.data<float>()[j], want, 1e-5) << j;
  }
  for (const char *f : {"loss.npy", "logits.npy", "dot_grad_logits.npy"})
    EXPECT_FALSE(std::filesystem::exists(path("vjit/") + f)) << f;
  expectError(soma("run " + path("lf.mlir") + " --gradients-only --input x=" + path("x.npy") + " --input y=" +
                       path("y.npy") + " --output-dir " + path("v2"),
                   *dir),
              2, {"--gradients-only goes with --grad"});
}

TEST_F(Cli, UnwritableOutputDirectory) {
  std::string model = path("mlp.mlir");
  ASSERT_EQ(soma("export mlp --batch 4 -o " + model, *dir).code, 0);
  write_npy(path("x.npy"), test::randomF32({4, 784}, 0, 1, 1));
  std::ofstream(path("afile")) << "a file, not a directory";
  expectError(soma("run " + model + " --input x=" + path("x.npy") + " --output-dir " + path("afile/sub"), *dir),
              1, {"cannot create output directory", "afile/sub"});
  expectError(soma("compile " + model + " -o " + path("afile/sub"), *dir), 1, {"cannot create output directory"});
  expectError(soma("export mlp -o " + path("afile/sub/m.mlir"), *dir), 1, {"afile/sub/m.mlir"});
}

} // namespace

namespace {

TEST_F(Cli, RunInTrainOrEvalMode) {
  Graph g("drop", 1);
  Tensor x = g.input("x", {4, 50});
  g.output("y", dropout(x, 0.5));
  Array ones(DType::f32, {4, 50});
  for (int64_t i = 0; i < ones.numel(); ++i)
    ones.data<float>()[i] = 1.0f;
  auto [e, t] = runTwice(g, ones, "", "--mode train");
  ASSERT_FALSE(::testing::Test::HasFailure());
  std::string args = "run " + path("drop.mlir") + " --input x=" + path("x.npy");
  int zeros = 0, twos = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    EXPECT_EQ(e.data<float>()[i], 1.0f);
    zeros += t.data<float>()[i] == 0.0f;
    twos += t.data<float>()[i] == 2.0f;
  }
  EXPECT_EQ(zeros + twos, 200);
  EXPECT_GT(zeros, 50);
  EXPECT_GT(twos, 50);
  expectError(soma(args + " --mode test --output-dir " + path("o"), *dir), 2,
              {"'--mode' expects eval or train, got 'test'"});
  expectError(soma(args + " --mode train --interpret --output-dir " + path("o"), *dir), 2,
              {"--mode train needs the JIT"});
}

#if defined(__x86_64__)
TEST_F(Cli, RunFlushesDenormalsUnlessAskedToKeepThem) {
  // y = x * 2^-20 with x = 2^-120: 2^-140 is denormal.
  Graph g("tiny", 1);
  g.output("y", g.input("x", {8}) * std::ldexp(1.0f, -20));
  Array x(DType::f32, {8});
  std::fill(x.data<float>(), x.data<float>() + 8, std::ldexp(1.0f, -120));
  auto [f, k] = runTwice(g, x, "", "--keep-denormals");
  ASSERT_FALSE(::testing::Test::HasFailure());
  std::string args = "run " + path("tiny.mlir") + " --input x=" + path("x.npy");
  for (int64_t i = 0; i < 8; ++i) {
    EXPECT_EQ(f.data<float>()[i], 0.0f);
    EXPECT_EQ(k.data<float>()[i], std::ldexp(1.0f, -140));
  }
  expectError(soma(args + " --keep-denormals=yes --output-dir " + path("o"), *dir), 2,
              {"option '--keep-denormals' takes no value"});
}
#endif

TEST_F(Cli, ABadSpinSettingIsReportedAndIgnored) {
  Graph g("twice", 1);
  g.output("y", relu(g.input("x", {4})));
  g.save(path("twice.mlir"));
  write_npy(path("x.npy"), Array(DType::f32, {4}));
  Result r = sh("SOMA_SPIN_MS=1ms OMP_NUM_THREADS=2 " + std::string(SOMA_CLI) + " run " + path("twice.mlir") +
                    " --input x=" + path("x.npy") + " --output-dir " + path("o"),
                *dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("soma: warning: SOMA_SPIN_MS='1ms' is not a whole number of milliseconds from 0 "
                               "to 1000; using 1"));
  EXPECT_TRUE(std::filesystem::exists(path("o/y.npy")));
}

// OpenMP's threads made with less stack than the compiled code needs: an
// error naming OMP_STACKSIZE and the size to set, not SIGSEGV.
TEST_F(Cli, OpenMPThreadsWithTooSmallAStack) {
  ASSERT_EQ(soma("export mlp -o " + path("mlp.mlir"), *dir).code, 0);
  write_npy(path("x.npy"), test::randomF32({64, 784}, 0, 1, 3));
  std::string run = std::string(SOMA_CLI) + " run " + path("mlp.mlir") + " --input x=" + path("x.npy") +
                    " --output-dir " + path("o");
  expectError(sh("OMP_STACKSIZE=64K OMP_NUM_THREADS=2 " + run, *dir), 1,
              {"'mlp' needs about", "OpenMP's threads have ", " MiB (OMP_STACKSIZE): set OMP_STACKSIZE=",
               "OMP_NUM_THREADS=1"});
  EXPECT_FALSE(std::filesystem::exists(path("o/logits.npy")));
  // On one thread the workers' stacks do not matter.
  Result one = sh("OMP_STACKSIZE=64K OMP_NUM_THREADS=1 " + run, *dir);
  EXPECT_EQ(one.code, 0) << one.err;
  EXPECT_TRUE(std::filesystem::exists(path("o/logits.npy")));
}

} // namespace

namespace {

TEST_F(Cli, TrainWithAugmentation) {
  writeTinyFashion(path("fm"), 128, 64);
  std::string common = "train lenet5 --data-dir " + path("fm") + " --batch 32 --no-progress --epochs 1 ";
  Result r = soma(common + "--augment flip,shift:2,rotate:10,noise:0.05", *dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("test accuracy:"));
  expectError(soma(common + "--augment flop", *dir), 2, {"--augment: unknown item 'flop'"});
  expectError(soma(common + "--augment shift:x", *dir), 2, {"'shift:x' needs a number >= 0"});
  // The MLP's examples are rows of 784 values, not images.
  expectError(soma("train mlp --data-dir " + path("fm") + " --batch 32 --no-progress --augment flip", *dir), 1,
              {"augmentation needs f32 images", "[128,784]"});
}

} // namespace

namespace {

TEST_F(Cli, CompileReport) {
  Result r = soma("compile mlp --batch 8 --emit obj -o " + path("o") + " --report", *dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("function mlp: 8 ops before fusion, 3 kernels after"));
  EXPECT_THAT(r.out, HasSubstr("fusion(matmul,add,relu)"));
  EXPECT_THAT(r.out, HasSubstr("memory: arena"));
  EXPECT_THAT(r.out, HasSubstr("compile time:"));
}

} // namespace

namespace {

TEST_F(Cli, CompiledObjectCache) {
  std::string model = path("mlp.mlir"), x = path("x.npy"), cache = path("cache");
  ASSERT_EQ(soma("export mlp --batch 2 -o " + model, *dir).code, 0);
  write_npy(x, test::randomF32({2, 784}, 0, 1, 3));
  auto run = [&](const std::string &out, const std::string &flags) {
    return sh("SOMA_TIME=1 SOMA_CACHE_DIR=" + cache + " " + SOMA_CLI + " run " + model + " --input x=" + x +
                  " --output-dir " + path(out) + flags,
              *dir);
  };
  Result cold = run("cold", "");
  ASSERT_EQ(cold.code, 0) << cold.err;
  EXPECT_THAT(cold.err, HasSubstr("cache lookup: miss"));
  EXPECT_THAT(cold.err, HasSubstr("translate to LLVM IR"));
  Result warm = run("warm", "");
  ASSERT_EQ(warm.code, 0) << warm.err;
  EXPECT_THAT(warm.err, HasSubstr("cache lookup: hit"));
  EXPECT_THAT(warm.err, ::testing::Not(HasSubstr("lower to linalg")));
  EXPECT_EQ(slurp(path("cold/logits.npy")), slurp(path("warm/logits.npy")));
  Result off = run("off", " --no-cache");
  ASSERT_EQ(off.code, 0) << off.err;
  EXPECT_THAT(off.err, ::testing::Not(HasSubstr("cache")));
  EXPECT_THAT(off.err, HasSubstr("lower to linalg"));
  EXPECT_EQ(slurp(path("cold/logits.npy")), slurp(path("off/logits.npy")));
  size_t n = 0;
  for (const auto &e : std::filesystem::directory_iterator(cache))
    n += e.path().extension() == ".somaobj";
  EXPECT_EQ(n, 1u);
  for (const char *cmd : {"run", "train"})
    EXPECT_THAT(soma(std::string(cmd) + " --help", *dir).out, HasSubstr("--no-cache"));
}

} // namespace
