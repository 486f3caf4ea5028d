//===- cli_test.cpp - The soma CLI and the AOT C sample, end to end --------===//
//
// Runs the real `soma` binary and the C program linked against an object
// that `soma compile` wrote, and checks outputs against each other and the
// interpreter, and that every kind of bad input gives one clear line on
// stderr and a non-zero exit (never a crash).
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

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
    EXPECT_TRUE(std::filesystem::exists(path("ir/") + s.file)) << s.file;
    EXPECT_THAT(r.out, HasSubstr(s.file));
  }
  EXPECT_THAT(slurp(path("ir/30-lowered.mlir")), HasSubstr("linalg.generic"));
  EXPECT_THAT(slurp(path("ir/35-planned.mlir")), HasSubstr("memref.view"));
  EXPECT_THAT(slurp(path("ir/50-module.s")), HasSubstr("mlp:"));
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
