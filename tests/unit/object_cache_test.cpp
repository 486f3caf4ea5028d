//===- object_cache_test.cpp - The JIT's compiled-object cache -------------===//
//
// A miss compiles and stores, a hit loads the stored object without running
// the lowering and computes the same bytes; corrupt entries are detected
// and recompiled; the key separates modules, modes, opt levels and targets;
// an unwritable directory costs one warning and nothing else.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"
#include "../runtime/scoped_env.h"

#include "soma/Compiler/GraphImpl.h"
#include "soma/Compiler/ObjectCache.h"
#include "soma/Compiler/Pipeline.h"

#include <cstdlib>
#include <fstream>
#include <optional>

using namespace soma;
using soma::test::ScopedEnv;
using ::testing::HasSubstr;

namespace {

/// A small graph with a matmul, a fused chain and a reduction.
Graph smallGraph(int64_t units = 5) {
  Graph g("cached", 3);
  Tensor x = g.input("x", {4, 3});
  Tensor h = tanh(nn::dense(x, units));
  g.output("y", softmax(nn::dense(h, 2)));
  g.output("s", sum(h, {1}));
  return g;
}

std::vector<std::string> entries(const std::string &dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto &e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".somaobj")
      files.push_back(e.path().string());
  return files;
}

bool sameBytes(const Array &a, const Array &b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

class ObjectCacheTest : public ::testing::Test {
protected:
  ObjectCacheTest()
      : dir(::testing::UnitTest::GetInstance()->current_test_info()->name()),
        cacheDir(dir / "cache"), env("SOMA_CACHE_DIR", cacheDir.c_str()), on("SOMA_CACHE", nullptr) {}

  std::map<std::string, Array> run(const Graph &g, const CompileOptions &o = {}) {
    Inference fn = compile_inference(g, o);
    return fn.run({{"x", test::randomF32({4, 3}, -1, 1, 5)}});
  }
  std::string key(const Graph &g, Mode mode = Mode::eval, int opt = 3) {
    return objectCacheKey(*g.impl()->module, mode, opt, hostTarget());
  }
  ObjectCacheStats &stats = objectCacheStats();
  test::TempDir dir;
  std::string cacheDir;
  ScopedEnv env, on;
};

TEST_F(ObjectCacheTest, MissThenHitGivesTheSameBytesWithoutLowering) {
  Graph g = smallGraph();
  uint64_t compiles = stats.compiles, hits = stats.hits, stores = stats.stores;
  auto first = run(g);
  EXPECT_EQ(stats.compiles.load(), compiles + 1);
  EXPECT_EQ(stats.stores.load(), stores + 1);
  ASSERT_EQ(entries(cacheDir).size(), 1u);

  auto second = run(g);
  EXPECT_EQ(stats.compiles.load(), compiles + 1) << "a hit must not run the lowering";
  EXPECT_EQ(stats.hits.load(), hits + 1);
  for (const char *name : {"y", "s"})
    EXPECT_TRUE(sameBytes(first[name], second[name])) << name;
  auto ref = interpret(g, {{"x", test::randomF32({4, 3}, -1, 1, 5)}});
  EXPECT_TRUE(test::allClose(second["y"], ref["y"]));
  EXPECT_TRUE(test::allClose(second["s"], ref["s"]));
}

TEST_F(ObjectCacheTest, TrainingStepFromTheCacheTrainsBitForBit) {
  auto train = [&] {
    Graph g("tiny_train", 1);
    Tensor x = g.input("x", {8, 4});
    Tensor y = g.input("y", {8}, DType::i32);
    Tensor loss = softmax_cross_entropy(nn::dense(relu(nn::dense(x, 6)), 3), y);
    TrainStep step = compile_training(g, loss, optim::Adam{{.lr = 0.05}});
    std::map<std::string, Array> batch{{"x", test::randomF32({8, 4}, -1, 1, 2)},
                                       {"y", test::randomLabels({8}, 3, DType::i32, 3)}};
    std::vector<double> losses;
    for (int s = 0; s < 3; ++s)
      losses.push_back(step.run(batch).loss);
    return std::make_pair(losses, step.params());
  };
  uint64_t compiles = stats.compiles, hits = stats.hits;
  auto cold = train();
  EXPECT_EQ(stats.compiles.load(), compiles + 2); // the step and its eval function
  auto warm = train();
  EXPECT_EQ(stats.compiles.load(), compiles + 2);
  EXPECT_EQ(stats.hits.load(), hits + 2);
  EXPECT_EQ(cold.first, warm.first);
  ASSERT_EQ(cold.second.size(), warm.second.size());
  for (size_t i = 0; i < cold.second.size(); ++i)
    EXPECT_TRUE(sameBytes(cold.second[i].second, warm.second[i].second)) << cold.second[i].first;
}

TEST_F(ObjectCacheTest, CheckpointingRemembersItsPlansInTheCache) {
  // With checkpointing the step is planned three ways; each plan's arena
  // is an entry without code ("soma.plan"), so a second compilation plans
  // nothing before its cache hit.
  auto compile = [&](CompileReport *report) {
    Graph g("tiny_bn", 1);
    Tensor x = g.input("x", {4, 2, 6, 6});
    Tensor y = g.input("y", {4}, DType::i32);
    Tensor h = relu(nn::batch_norm(nn::conv2d(x, 4, 3, {.padding = 1, .bias = false})));
    Tensor loss = softmax_cross_entropy(nn::dense(global_avg_pool2d(h), 3), y);
    return compile_training(g, loss, optim::SGD{},
                            {.compile = {.report = report}, .checkpointing = {.enabled = true}});
  };
  CompileReport first;
  compile(&first);
  auto nameOf = [](const std::string &f) {
    return parseCachedObject(std::filesystem::path(f).stem().string(), read_file(f)).signature.name;
  };
  auto plans = [&] {
    std::vector<std::string> out;
    for (const std::string &f : entries(cacheDir))
      if (nameOf(f) == "soma.plan")
        out.push_back(f);
    return out;
  };
  auto names = [&] {
    std::string s;
    for (const std::string &f : entries(cacheDir))
      s += nameOf(f) + " ";
    return s;
  };
  ASSERT_EQ(plans().size(), 3u);
  // And the code of the step and of its evaluation function.
  EXPECT_EQ(entries(cacheDir).size(), 5u) << names();
  // The arenas come from those entries: add a byte to each (the choice
  // stays), and the report shows it.
  for (const std::string &f : plans()) {
    std::string k = std::filesystem::path(f).stem().string();
    CachedObject e = parseCachedObject(k, read_file(f));
    e.signature.workspace_bytes += 1;
    write_file_atomic(f, serializeCachedObject(k, e));
  }
  CompileReport second;
  compile(&second);
  const CompileReport::Function &a = first.functions[0], &b = second.functions[0];
  EXPECT_EQ(b.arena_no_recompute, a.arena_no_recompute + 1);
  EXPECT_EQ(b.arena_chains, a.arena_chains + 1);
  EXPECT_EQ(b.arena_cones, a.arena_cones + 1);
  EXPECT_EQ(b.recompute_policy, a.recompute_policy);
  // (The step's IR carries the three arenas for the report, so its code
  // got a new key: 6 entries now.)
  EXPECT_EQ(entries(cacheDir).size(), 6u);
  // Without a report the code is served too: nothing is lowered.
  uint64_t compiles = stats.compiles;
  compile(nullptr);
  EXPECT_EQ(stats.compiles.load(), compiles);
}

TEST_F(ObjectCacheTest, CorruptEntriesAreDetectedAndRecompiled) {
  Graph g = smallGraph();
  auto expected = run(g);
  std::vector<std::string> files = entries(cacheDir);
  ASSERT_EQ(files.size(), 1u);
  std::string good = read_file(files[0]);
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x5a;
  std::string badHeader = good;
  badHeader[0] = 'X';
  struct Case {
    const char *what;
    std::string bytes;
    const char *reason;
  };
  for (const Case &c : {Case{"truncated", good.substr(0, good.size() / 3), "truncated"},
                        Case{"header only", good.substr(0, 20), "truncated header"},
                        Case{"byte flipped", flipped, "checksum mismatch"},
                        Case{"not an entry", badHeader, "not a soma cache entry"},
                        Case{"empty", std::string(), "truncated header"}}) {
    SCOPED_TRACE(c.what);
    write_file_atomic(files[0], c.bytes);
    uint64_t compiles = stats.compiles;
    ::testing::internal::CaptureStderr();
    auto got = run(g);
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(stats.compiles.load(), compiles + 1);
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_THAT(err, HasSubstr("soma: warning: ignoring the compile cache entry"));
    EXPECT_THAT(err, HasSubstr(c.reason));
    EXPECT_TRUE(sameBytes(got["y"], expected["y"]));
    // Rewritten: the next compilation is a hit again.
    EXPECT_EQ(read_file(files[0]), good);
  }
  // A sound entry whose object does not link is rejected the same way.
  std::string key = std::filesystem::path(files[0]).stem().string();
  write_file_atomic(files[0], serializeCachedObject(key, {parseCachedObject(key, good).signature, {"not ELF"}}));
  uint64_t compiles = stats.compiles;
  ::testing::internal::CaptureStderr();
  auto got = run(g);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(stats.compiles.load(), compiles + 1);
  EXPECT_THAT(err, HasSubstr("soma: warning: cannot load the compile cache entry"));
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_TRUE(sameBytes(got["y"], expected["y"]));
  EXPECT_EQ(read_file(files[0]), good);
}

TEST_F(ObjectCacheTest, TheKeySeparatesWhatChangesTheCode) {
  Graph g = smallGraph();
  std::string k = key(g);
  EXPECT_EQ(k.size(), 64u);
  EXPECT_EQ(k, key(g));             // deterministic
  EXPECT_EQ(k, key(smallGraph()));  // the same graph built again
  EXPECT_NE(k, key(smallGraph(6))); // another shape
  EXPECT_NE(k, key(g, Mode::train));
  EXPECT_NE(k, key(g, Mode::eval, 2));
  CacheTarget other = hostTarget();
  other.cpu = "x86-64-v2";
  EXPECT_NE(k, objectCacheKey(*g.impl()->module, Mode::eval, 3, other));
  other = hostTarget();
  other.features += ",-avx2";
  EXPECT_NE(k, objectCacheKey(*g.impl()->module, Mode::eval, 3, other));
  other = hostTarget(); // the thread count the GEMMs' units are cut for
  other.threads += 1;
  EXPECT_NE(k, objectCacheKey(*g.impl()->module, Mode::eval, 3, other));

  // And so does the cache: two opt levels, two modes, two entries each.
  uint64_t compiles = stats.compiles;
  run(g, {.opt_level = 2});
  run(g, {.opt_level = 3});
  run(g, {.opt_level = 2, .mode = Mode::train});
  EXPECT_EQ(stats.compiles.load(), compiles + 3);
  EXPECT_EQ(entries(cacheDir).size(), 3u);
}

TEST_F(ObjectCacheTest, EntriesRoundTripTheSignature) {
  CachedObject e;
  e.signature.name = "k";
  e.signature.inputs = {{"x", DType::f32, {2, 3}}, {"y", DType::i32, {2}}};
  e.signature.params = {{"w", DType::f32, {3, 4}}};
  e.signature.states = {{"soma.step", DType::f32, {}}};
  e.signature.state_init = {0.25};
  e.signature.outputs = {{"o", DType::i64, {1, 2, 3}}};
  e.signature.workspace_bytes = 4096;
  e.signature.stack_bytes = 1115648;
  e.objects = {std::string("\x7f" "ELF\0 object bytes", 17), "a second piece"};
  std::string key(64, 'a');
  CachedObject back = parseCachedObject(key, serializeCachedObject(key, e));
  EXPECT_EQ(back.objects, e.objects);
  const Signature &s = back.signature;
  EXPECT_EQ(s.name, "k");
  ASSERT_EQ(s.inputs.size(), 2u);
  EXPECT_EQ(s.inputs[1].name, "y");
  EXPECT_EQ(s.inputs[1].dtype, DType::i32);
  EXPECT_EQ(s.inputs[0].shape, (Shape{2, 3}));
  EXPECT_EQ(s.params[0].name, "w");
  EXPECT_EQ(s.states[0].shape, Shape{});
  EXPECT_EQ(s.state_init, std::vector<double>{0.25});
  EXPECT_EQ(s.outputs[0].dtype, DType::i64);
  EXPECT_EQ(s.workspace_bytes, 4096);
  EXPECT_EQ(s.stack_bytes, 1115648);
  EXPECT_SOMA_ERROR(parseCachedObject(std::string(64, 'b'), serializeCachedObject(key, e)), "another key");
}

TEST_F(ObjectCacheTest, AnUnwritableDirectoryWarnsOnceAndChangesNothing) {
  // A directory below a regular file cannot be created (not even by root).
  std::string file = dir / "a-file";
  write_file_atomic(file, "x");
  ScopedEnv bad("SOMA_CACHE_DIR", (file + "/cache").c_str());
  Graph g = smallGraph();
  uint64_t compiles = stats.compiles;
  ::testing::internal::CaptureStderr();
  auto a = run(g);
  auto b = run(g);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(stats.compiles.load(), compiles + 2);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_THAT(err, HasSubstr("not writing to the compile cache"));
  EXPECT_TRUE(sameBytes(a["y"], b["y"]));
}

TEST_F(ObjectCacheTest, OffWithTheOptionOrTheEnvironment) {
  Graph g = smallGraph();
  uint64_t compiles = stats.compiles;
  run(g, {.cache = false});
  EXPECT_TRUE(entries(cacheDir).empty());
  {
    ScopedEnv off("SOMA_CACHE", "0");
    run(g);
    EXPECT_TRUE(entries(cacheDir).empty());
  }
  run(g);                    // stores
  run(g, {.cache = false});  // does not read
  EXPECT_EQ(stats.compiles.load(), compiles + 4);
  EXPECT_EQ(entries(cacheDir).size(), 1u);
}

TEST_F(ObjectCacheTest, DumpsAndReportsAlwaysCompile) {
  Graph g = smallGraph();
  run(g); // stored
  uint64_t compiles = stats.compiles;
  CompileReport report;
  run(g, {.report = &report});
  run(g, {.dump = "lowered", .dump_dir = dir / "ir"});
  EXPECT_EQ(stats.compiles.load(), compiles + 2);
  EXPECT_TRUE(std::filesystem::exists(dir / "ir/30-lowered.mlir"));
  bool said = false;
  for (const auto &[stage, seconds] : report.stage_seconds)
    said |= stage.find("cache: not used") != std::string::npos;
  EXPECT_TRUE(said) << report.str();
}

} // namespace

// A module large enough is optimised and compiled in pieces, one thread
// each (SOMA_COMPILE_THREADS, default the CPUs the process may use): the
// pieces link into the same function, compute the same bytes as one piece,
// and the cache stores and serves every piece.
TEST_F(ObjectCacheTest, PiecesCompiledInParallelComputeTheSameBytes) {
  Graph g = zoo::build("lenet5", 4, /*with_loss=*/false, 1);
  std::map<std::string, Array> in{{"x", test::randomF32(g.inputs()[0].shape, -1, 1, 9)}};
  auto runWith = [&](const char *threads) {
    ScopedEnv t("SOMA_COMPILE_THREADS", threads);
    return compile_inference(g).run(in);
  };
  std::map<std::string, Array> one, three;
  {
    ScopedEnv off("SOMA_CACHE", "0");
    one = runWith("1");
  }
  three = runWith("3"); // compiled and stored
  ASSERT_EQ(entries(cacheDir).size(), 1u);
  std::string file = entries(cacheDir)[0];
  CachedObject e = parseCachedObject(std::filesystem::path(file).stem().string(), read_file(file));
  EXPECT_EQ(e.objects.size(), 3u);
  for (const std::string &o : e.objects)
    EXPECT_EQ(o.compare(0, 4, "\x7f" "ELF"), 0);
  uint64_t compiles = stats.compiles, hits = stats.hits;
  std::map<std::string, Array> served = runWith("1"); // the pieces, from the cache
  EXPECT_EQ(stats.compiles.load(), compiles);
  EXPECT_EQ(stats.hits.load(), hits + 1);
  ASSERT_EQ(one.size(), 1u);
  for (auto &[name, a] : one) {
    EXPECT_TRUE(sameBytes(three.at(name), a)) << name;
    EXPECT_TRUE(sameBytes(served.at(name), a)) << name;
  }
  ScopedEnv bad("SOMA_COMPILE_THREADS", "two");
  ScopedEnv off("SOMA_CACHE", "0");
  EXPECT_SOMA_ERROR(compile_inference(g), "SOMA_COMPILE_THREADS='two'", "1 to 256");
}
