//===- random_test.cpp - Tests of Philox and the initializers -------------===//

#include "soma/random.h"
#include "test_util.h"

#include <array>
#include <cmath>
#include <cstring>

namespace soma {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

void expect_words(const uint32_t got[4], std::array<uint32_t, 4> want) {
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(got[i], want[i]) << "word " << i;
}

// Known-answer vectors from Random123's kat_vectors file.
TEST(Philox, KnownAnswers) {
  uint32_t out[4];
  {
    const uint32_t key[2] = {0, 0}, ctr[4] = {0, 0, 0, 0};
    detail::philox4x32_10(key, ctr, out);
    expect_words(out, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  }
  {
    const uint32_t key[2] = {0xffffffff, 0xffffffff};
    const uint32_t ctr[4] = {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff};
    detail::philox4x32_10(key, ctr, out);
    expect_words(out, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  }
  {
    const uint32_t key[2] = {0xa4093822, 0x299f31d0};
    const uint32_t ctr[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344};
    detail::philox4x32_10(key, ctr, out);
    expect_words(out, {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
  }
}

// block() maps (seed, stream, block) to key and counter as documented in
// random.cpp; choose inputs that hit the known-answer keys and counters.
TEST(Philox, BlockUsesDocumentedKeyAndCounter) {
  uint32_t out[4];
  Philox{0, 0}.block(0, out);
  expect_words(out, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});

  uint64_t stream = UINT64_MAX;
  uint64_t seed = ~(stream * kGolden); // makes the key all ones
  Philox{seed, stream}.block(UINT64_MAX, out);
  expect_words(out, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
}

TEST(Philox, UniformAndNormalUseTheDocumentedWords) {
  Philox rng{1234, 5678};
  for (uint64_t b : {uint64_t(0), uint64_t(1), uint64_t(1) << 40}) {
    uint32_t w[4];
    rng.block(b, w);
    for (int k = 0; k < 4; ++k)
      EXPECT_EQ(rng.uniform(4 * b + k),
                static_cast<float>(w[k] >> 8) / 16777216.0f);
    double u1 = (w[0] + 1.0) / 4294967296.0, u2 = w[1] / 4294967296.0;
    double r = std::sqrt(-2 * std::log(u1));
    EXPECT_NEAR(rng.normal(2 * b), r * std::cos(2 * M_PI * u2), 1e-6);
    EXPECT_NEAR(rng.normal(2 * b + 1), r * std::sin(2 * M_PI * u2), 1e-6);
  }
}

TEST(Philox, Deterministic) {
  Philox a{42, stream_id("dense.weight")}, b{42, stream_id("dense.weight")};
  for (uint64_t i = 0; i < 1000; ++i) {
    ASSERT_EQ(a.uniform(i), b.uniform(i));
    ASSERT_EQ(a.normal(i), b.normal(i));
  }
  // Evaluation order does not matter.
  float late = a.uniform(999);
  EXPECT_EQ(Philox({42, stream_id("dense.weight")}).uniform(999), late);
}

TEST(Philox, StreamsAndSeedsDiffer) {
  Philox base{42, 1}, other_stream{42, 2}, other_seed{43, 1};
  int same_stream = 0, same_seed = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    same_stream += base.uniform(i) == other_stream.uniform(i);
    same_seed += base.uniform(i) == other_seed.uniform(i);
  }
  EXPECT_LT(same_stream, 5);
  EXPECT_LT(same_seed, 5);
  // Swapping seed and stream must not give the same numbers either.
  EXPECT_NE(Philox({1, 42}).uniform(0), base.uniform(0));
}

struct Moments {
  double mean = 0, var = 0, min = INFINITY, max = -INFINITY;
};

template <class Fn> Moments moments(int64_t n, Fn sample) {
  Moments m;
  double sum = 0, sum2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    double x = sample(i);
    sum += x;
    m.min = std::min(m.min, x);
    m.max = std::max(m.max, x);
  }
  m.mean = sum / n;
  for (int64_t i = 0; i < n; ++i) {
    double d = sample(i) - m.mean;
    sum2 += d * d;
  }
  m.var = sum2 / (n - 1);
  return m;
}

/// Checks sample moments against a distribution's mean, variance and fourth
/// central moment, within 5 standard errors.
void expect_moments(const Moments &m, int64_t n, double mean, double var,
                    double mu4) {
  double se_mean = std::sqrt(var / n);
  double se_var = std::sqrt((mu4 - var * var) / n);
  EXPECT_NEAR(m.mean, mean, 5 * se_mean);
  EXPECT_NEAR(m.var, var, 5 * se_var);
}

void expect_uniform_moments(const Moments &m, int64_t n, double lo, double hi) {
  double w = hi - lo;
  expect_moments(m, n, (lo + hi) / 2, w * w / 12, std::pow(w, 4) / 80);
  EXPECT_GE(m.min, lo);
  EXPECT_LE(m.max, hi);
  EXPECT_LT(m.min, lo + w * 1e-3);
  EXPECT_GT(m.max, hi - w * 1e-3);
}

void expect_normal_moments(const Moments &m, int64_t n, double mean,
                           double sd) {
  expect_moments(m, n, mean, sd * sd, 3 * std::pow(sd, 4));
}

TEST(Philox, UniformStatistics) {
  Philox rng{7, stream_id("u")};
  const int64_t n = 1'000'000;
  for (int64_t i = 0; i < n; ++i) {
    float u = rng.uniform(i);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    ASSERT_EQ(u * 16777216.0f, std::floor(u * 16777216.0f)); // 24 bits
  }
  Moments m = moments(n, [&](int64_t i) { return rng.uniform(i); });
  expect_uniform_moments(m, n, 0.0, 1.0);
}

TEST(Philox, NormalStatistics) {
  Philox rng{7, stream_id("n")};
  const int64_t n = 1'000'000;
  Moments m = moments(n, [&](int64_t i) { return rng.normal(i); });
  expect_normal_moments(m, n, 0.0, 1.0);
  EXPECT_LT(m.max, 7.0);
  EXPECT_GT(m.min, -7.0);
  // P(|z| > 3) = 0.0027.
  int64_t tail = 0;
  for (int64_t i = 0; i < n; ++i)
    tail += std::fabs(rng.normal(i)) > 3;
  EXPECT_NEAR(tail / double(n), 0.0027, 5 * std::sqrt(0.0027 / n));
}

TEST(StreamId, Fnv1a64) {
  EXPECT_EQ(stream_id(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(stream_id("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(stream_id("foobar"), 0x85944171f73967e8ull);
  EXPECT_NE(stream_id("dense.weight"), stream_id("dense.bias"));
}

TEST(InitKind, Names) {
  for (auto kind :
       {InitSpec::Kind::zeros, InitSpec::Kind::ones, InitSpec::Kind::constant,
        InitSpec::Kind::uniform, InitSpec::Kind::normal,
        InitSpec::Kind::xavier_uniform, InitSpec::Kind::xavier_normal,
        InitSpec::Kind::he_uniform, InitSpec::Kind::he_normal})
    EXPECT_EQ(parse_init_kind(init_kind_name(kind)), kind);
  EXPECT_STREQ(init_kind_name(InitSpec::Kind::xavier_uniform),
               "xavier_uniform");
  EXPECT_SOMA_ERROR(parse_init_kind("glorot"), "unknown initializer 'glorot'",
                    "he_normal");
}

InitSpec spec(InitSpec::Kind kind, double a = 0, double b = 1,
              int64_t fan_in = 0, int64_t fan_out = 0, double gain = 1) {
  InitSpec s;
  s.kind = kind;
  s.a = a;
  s.b = b;
  s.fan_in = fan_in;
  s.fan_out = fan_out;
  s.gain = gain;
  return s;
}

Moments array_moments(const Array &a) {
  const float *p = a.data<float>();
  return moments(a.numel(), [&](int64_t i) { return p[i]; });
}

TEST(Initialize, Constants) {
  Array a(DType::f32, {3, 5});
  initialize(a, spec(InitSpec::Kind::ones), 1, 2);
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(a.data<float>()[i], 1.0f);
  initialize(a, spec(InitSpec::Kind::constant, 0.25), 1, 2);
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(a.data<float>()[i], 0.25f);
  initialize(a, spec(InitSpec::Kind::zeros), 1, 2);
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(a.data<float>()[i], 0.0f);
}

TEST(Initialize, MatchesPhiloxElementwise) {
  Array a(DType::f32, {1001});
  Philox rng{9, 10};
  initialize(a, spec(InitSpec::Kind::uniform, 0, 1), 9, 10);
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(a.data<float>()[i], rng.uniform(i)) << i;
  initialize(a, spec(InitSpec::Kind::normal, 0, 1), 9, 10);
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(a.data<float>()[i], rng.normal(i)) << i;
}

TEST(Initialize, Distributions) {
  using K = InitSpec::Kind;
  const int64_t fi = 784, fo = 256;
  Array a(DType::f32, {fi, fo});
  const int64_t n = a.numel();

  initialize(a, spec(K::uniform, -2, 3), 1, stream_id("u"));
  expect_uniform_moments(array_moments(a), n, -2, 3);

  initialize(a, spec(K::normal, 3, 2), 1, stream_id("n"));
  expect_normal_moments(array_moments(a), n, 3, 2);

  double xb = std::sqrt(6.0 / (fi + fo)); // var 2/(fi+fo)
  initialize(a, spec(K::xavier_uniform, 0, 0, fi, fo), 1, stream_id("xu"));
  expect_uniform_moments(array_moments(a), n, -xb, xb);
  EXPECT_NEAR(xb * xb / 3, 2.0 / (fi + fo), 1e-15);

  initialize(a, spec(K::xavier_uniform, 0, 0, fi, fo, 2.0), 1, stream_id("xu"));
  expect_uniform_moments(array_moments(a), n, -2 * xb, 2 * xb);

  initialize(a, spec(K::xavier_normal, 0, 0, fi, fo), 1, stream_id("xn"));
  expect_normal_moments(array_moments(a), n, 0, std::sqrt(2.0 / (fi + fo)));

  double hb = std::sqrt(6.0 / fi); // var 2/fi
  initialize(a, spec(K::he_uniform, 0, 0, fi, 0), 1, stream_id("hu"));
  expect_uniform_moments(array_moments(a), n, -hb, hb);

  initialize(a, spec(K::he_normal, 0, 0, fi, 0, 0.5), 1, stream_id("hn"));
  expect_normal_moments(array_moments(a), n, 0, 0.5 * std::sqrt(2.0 / fi));
}

TEST(Initialize, Errors) {
  using K = InitSpec::Kind;
  Array f(DType::f32, {4});
  Array i(DType::i32, {4});
  EXPECT_SOMA_ERROR(initialize(i, spec(K::zeros), 0, 0),
                    "array of dtype i32 is not f32");
  Array none;
  EXPECT_SOMA_ERROR(initialize(none, spec(K::zeros), 0, 0),
                    "the array is empty");
  EXPECT_SOMA_ERROR(initialize(f, spec(K::xavier_uniform, 0, 0, 0, 10), 0, 0),
                    "xavier_uniform init: fan_in must be positive, got 0");
  EXPECT_SOMA_ERROR(initialize(f, spec(K::xavier_normal, 0, 0, 10, -1), 0, 0),
                    "xavier_normal init: fan_out must be positive, got -1");
  EXPECT_SOMA_ERROR(initialize(f, spec(K::he_uniform, 0, 0, -3, 10), 0, 0),
                    "he_uniform init: fan_in must be positive, got -3");
  EXPECT_SOMA_ERROR(initialize(f, spec(K::he_normal), 0, 0),
                    "fan_in must be positive");
  EXPECT_SOMA_ERROR(initialize(f, spec(K::uniform, 2, 1), 0, 0),
                    "a = 2 is greater than b = 1");
  EXPECT_SOMA_ERROR(initialize(f, spec(K::normal, 0, -1), 0, 0),
                    "negative standard deviation");
  EXPECT_SOMA_ERROR(initialize(f, spec(K::constant, NAN), 0, 0),
                    "must be finite");
}

TEST(Initialize, ParallelMatchesSerial) {
  using K = InitSpec::Kind;
  const int64_t n = 3 * (int64_t(1) << 20) + 7; // above the parallel threshold
  for (InitSpec s :
       {spec(K::uniform, -1, 1), spec(K::he_normal, 0, 0, 100, 0)}) {
    SCOPED_TRACE(init_kind_name(s.kind));
    Array serial(DType::f32, {n});
    detail::initialize(serial, s, 5, stream_id("w"), 1);
    for (unsigned threads : {2u, 3u, 7u}) {
      Array parallel(DType::f32, {n});
      detail::initialize(parallel, s, 5, stream_id("w"), threads);
      ASSERT_EQ(std::memcmp(parallel.raw(), serial.raw(), serial.nbytes()), 0)
          << threads << " threads";
    }
    Array automatic(DType::f32, {n});
    initialize(automatic, s, 5, stream_id("w"));
    ASSERT_EQ(std::memcmp(automatic.raw(), serial.raw(), serial.nbytes()), 0);
    // Spot-check against the per-element definition.
    Philox rng{5, stream_id("w")};
    if (s.kind == K::uniform) {
      for (int64_t i : {int64_t(0), n / 3, n - 1})
        EXPECT_EQ(serial.data<float>()[i],
                  static_cast<float>(-1.0 + 2.0 * rng.uniform(i)));
    }
  }
}

} // namespace
} // namespace soma
