//===- random.cpp - Counter-based random numbers and initializers ---------===//

#include "soma/random.h"
#include "soma/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <thread>

namespace soma {

namespace {

using detail::kPhiloxM0, detail::kPhiloxM1, detail::kPhiloxW0, detail::kPhiloxW1;
/// 2^64 / golden ratio; spreads consecutive stream ids over the key space.
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

/// Arrays with more elements than this are initialised by several threads.
constexpr int64_t kParallelThreshold = int64_t(1) << 20;

/// [0, 1) from the top 24 bits of a word (exact in float).
float uniform_from_word(uint32_t w) {
  return static_cast<float>(w >> 8) * 0x1.0p-24f;
}

/// Box-Muller on two words: cos branch if !odd, sin branch if odd.
float normal_from_words(uint32_t w0, uint32_t w1, bool odd) {
  double u1 = (static_cast<double>(w0) + 1.0) * 0x1.0p-32; // (0, 1]: no log(0)
  double u2 = static_cast<double>(w1) * 0x1.0p-32;         // [0, 1)
  double r = std::sqrt(-2.0 * std::log(u1));
  double theta = 2.0 * std::numbers::pi * u2;
  return static_cast<float>(odd ? r * std::sin(theta) : r * std::cos(theta));
}

} // namespace

void detail::philox4x32_10(const uint32_t key[2], const uint32_t counter[4],
                           uint32_t out[4]) {
  uint32_t k0 = key[0], k1 = key[1];
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32),
             lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32),
             lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// Key and counter layout (part of soma's reproducibility contract; changing
// it changes every initial parameter value):
//   key     = seed ^ (stream * 0x9E3779B97F4A7C15), as {low 32, high 32} bits
//   counter = {low 32 of block, high 32 of block, low 32 of stream,
//              high 32 of stream}
// The stream is in both the key and the counter, so that (seed, stream)
// pairs whose keys collide still get distinct counters.
void Philox::block(uint64_t block, uint32_t out[4]) const {
  uint64_t k = seed ^ (stream * kGolden);
  const uint32_t key[2] = {static_cast<uint32_t>(k),
                           static_cast<uint32_t>(k >> 32)};
  const uint32_t counter[4] = {
      static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
      static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  detail::philox4x32_10(key, counter, out);
}

float Philox::uniform(uint64_t i) const {
  uint32_t w[4];
  block(i / 4, w);
  return uniform_from_word(w[i % 4]);
}

float Philox::normal(uint64_t i) const {
  uint32_t w[4];
  block(i / 2, w);
  return normal_from_words(w[0], w[1], i % 2 == 1);
}

uint64_t stream_id(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull; // FNV-1a 64 offset basis
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull; // FNV-1a 64 prime
  }
  return h;
}

namespace {

struct KindName {
  InitSpec::Kind kind;
  const char *name;
};
constexpr std::array<KindName, 9> kKindNames = {{
    {InitSpec::Kind::zeros, "zeros"},
    {InitSpec::Kind::ones, "ones"},
    {InitSpec::Kind::constant, "constant"},
    {InitSpec::Kind::uniform, "uniform"},
    {InitSpec::Kind::normal, "normal"},
    {InitSpec::Kind::xavier_uniform, "xavier_uniform"},
    {InitSpec::Kind::xavier_normal, "xavier_normal"},
    {InitSpec::Kind::he_uniform, "he_uniform"},
    {InitSpec::Kind::he_normal, "he_normal"},
}};

} // namespace

const char *init_kind_name(InitSpec::Kind kind) {
  for (const KindName &k : kKindNames)
    if (k.kind == kind)
      return k.name;
  return "?";
}

InitSpec::Kind parse_init_kind(std::string_view name) {
  for (const KindName &k : kKindNames)
    if (name == k.name)
      return k.kind;
  std::vector<const char *> names;
  for (const KindName &k : kKindNames)
    names.push_back(k.name);
  throw Error(fmt::format("unknown initializer '{}' (expected one of {})", name,
                          fmt::join(names, ", ")));
}

namespace {

/// What initialize() draws: a constant, lo + (hi - lo) * U[0,1), or
/// mean + std * N(0,1).
struct Sampler {
  enum class Mode { constant, uniform, normal } mode;
  double p = 0.0,
         q = 0.0; // constant: p; uniform: [p, q); normal: mean p, std q
};

Sampler make_sampler(const InitSpec &spec) {
  const char *name = init_kind_name(spec.kind);
  if (!std::isfinite(spec.a) || !std::isfinite(spec.b) ||
      !std::isfinite(spec.gain))
    throw Error(fmt::format("{} init: parameters must be finite", name));
  auto need_fan_in = [&] {
    if (spec.fan_in <= 0)
      throw Error(fmt::format("{} init: fan_in must be positive, got {}", name,
                              spec.fan_in));
  };
  auto need_fans = [&] {
    need_fan_in();
    if (spec.fan_out <= 0)
      throw Error(fmt::format("{} init: fan_out must be positive, got {}", name,
                              spec.fan_out));
  };
  using M = Sampler::Mode;
  double fan_sum =
      static_cast<double>(spec.fan_in) + static_cast<double>(spec.fan_out);
  switch (spec.kind) {
  case InitSpec::Kind::zeros:
    return {M::constant, 0.0};
  case InitSpec::Kind::ones:
    return {M::constant, 1.0};
  case InitSpec::Kind::constant:
    return {M::constant, spec.a};
  case InitSpec::Kind::uniform:
    if (spec.a > spec.b)
      throw Error(fmt::format("uniform init: a = {} is greater than b = {}",
                              spec.a, spec.b));
    return {M::uniform, spec.a, spec.b};
  case InitSpec::Kind::normal:
    if (spec.b < 0)
      throw Error(
          fmt::format("normal init: negative standard deviation {}", spec.b));
    return {M::normal, spec.a, spec.b};
  case InitSpec::Kind::xavier_uniform: {
    need_fans();
    double bound = spec.gain * std::sqrt(6.0 / fan_sum);
    return {M::uniform, -bound, bound};
  }
  case InitSpec::Kind::xavier_normal:
    need_fans();
    return {M::normal, 0.0, spec.gain * std::sqrt(2.0 / fan_sum)};
  case InitSpec::Kind::he_uniform: {
    need_fan_in();
    double bound =
        spec.gain * std::sqrt(6.0 / static_cast<double>(spec.fan_in));
    return {M::uniform, -bound, bound};
  }
  case InitSpec::Kind::he_normal:
    need_fan_in();
    return {M::normal, 0.0,
            spec.gain * std::sqrt(2.0 / static_cast<double>(spec.fan_in))};
  }
  throw Error("initialize: invalid InitSpec kind");
}

/// Fills out[begin, end). Every element depends only on its index, so any
/// split of the range gives the same result; a block of random words is
/// reused for the consecutive elements that share it.
void fill(float *out, int64_t begin, int64_t end, const Sampler &s,
          const Philox &rng) {
  using M = Sampler::Mode;
  uint64_t cached = UINT64_MAX; // no block index: i < 2^63, so i/2 < 2^62
  uint32_t w[4];
  auto words = [&](uint64_t block) {
    if (block != cached) {
      rng.block(block, w);
      cached = block;
    }
    return w;
  };
  for (int64_t i = begin; i < end; ++i) {
    uint64_t u = static_cast<uint64_t>(i);
    switch (s.mode) {
    case M::constant:
      out[i] = static_cast<float>(s.p);
      break;
    case M::uniform:
      out[i] = static_cast<float>(
          s.p + (s.q - s.p) * uniform_from_word(words(u / 4)[u % 4]));
      break;
    case M::normal: {
      const uint32_t *v = words(u / 2);
      out[i] = static_cast<float>(
          s.p + s.q * normal_from_words(v[0], v[1], u % 2 == 1));
      break;
    }
    }
  }
}

} // namespace

void detail::initialize(Array &array, const InitSpec &spec, uint64_t seed,
                        uint64_t stream, unsigned threads) {
  if (array.empty())
    throw Error("initialize: the array is empty");
  if (array.dtype() != DType::f32)
    throw Error(fmt::format("initialize: array of dtype {} is not f32",
                            dtype_name(array.dtype())));
  Sampler sampler = make_sampler(spec);
  Philox rng{seed, stream};
  float *out = array.data<float>();
  int64_t n = array.numel();
  threads = std::max(1u, threads);
  // Chunks are whole multiples of 4 elements so that no Philox block is
  // computed by two threads.
  int64_t chunk = (n + threads - 1) / threads;
  chunk = (chunk + 3) / 4 * 4;
  if (threads == 1 || chunk == 0) {
    fill(out, 0, n, sampler, rng);
    return;
  }
  std::vector<std::jthread> workers;
  for (int64_t begin = chunk; begin < n; begin += chunk)
    workers.emplace_back(fill, out, begin, std::min(n, begin + chunk),
                         std::cref(sampler), std::cref(rng));
  fill(out, 0, std::min(n, chunk), sampler, rng);
}

void initialize(Array &array, const InitSpec &spec, uint64_t seed,
                uint64_t stream) {
  unsigned threads = 1;
  if (array.numel() > kParallelThreshold)
    threads = std::max(1u, std::thread::hardware_concurrency());
  detail::initialize(array, spec, seed, stream, threads);
}

} // namespace soma
