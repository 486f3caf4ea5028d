//===- soma/random.h - Counter-based random numbers and initializers -*- C++ -*-===//
#pragma once

#include "soma/array.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace soma {

/// Philox4x32-10 (Salmon et al., SC'11): the value at position i of stream
/// (seed, stream) depends only on (seed, stream, i), never on the order of
/// evaluation or the thread count.
struct Philox {
  uint64_t seed;
  uint64_t stream;
  /// Four 32-bit random words for counter `block`.
  void block(uint64_t block, uint32_t out[4]) const;
  /// Uniform float in [0, 1) for element i (24 random bits).
  float uniform(uint64_t i) const;
  /// Standard normal for element i (Box-Muller on words 0 and 1 of block
  /// i/2: cos for even i, sin for odd i).
  float normal(uint64_t i) const;
};

/// A stable 64-bit id (FNV-1a) of a name, used as the Philox stream of a
/// parameter so that adding a parameter does not change the others.
uint64_t stream_id(std::string_view name);

/// How to initialise a parameter. fan_in / fan_out are given explicitly
/// because they depend on the layer (dense [in,out], conv [out,in,kh,kw]).
struct InitSpec {
  enum class Kind {
    zeros,
    ones,
    constant,       // a
    uniform,        // U[a, b]
    normal,         // N(mean a, std b)
    xavier_uniform, // U[-g*sqrt(6/(fan_in+fan_out)), +...]
    xavier_normal,  // N(0, g^2 * 2/(fan_in+fan_out))
    he_uniform,     // U[-g*sqrt(6/fan_in), +...]  (Kaiming, ReLU)
    he_normal,      // N(0, g^2 * 2/fan_in)
  };
  Kind kind = Kind::zeros;
  double a = 0.0, b = 1.0;
  int64_t fan_in = 0, fan_out = 0;
  double gain = 1.0;
};

/// "zeros", "xavier_uniform", ...; parse throws soma::Error on unknown names.
const char *init_kind_name(InitSpec::Kind kind);
InitSpec::Kind parse_init_kind(std::string_view name);

/// Fills an f32 array per spec with Philox(seed, stream). Deterministic;
/// parallel over blocks when large, with identical results.
void initialize(Array &array, const InitSpec &spec, uint64_t seed, uint64_t stream);

namespace detail {
/// Philox4x32 constants (Salmon et al., Random123): the round multipliers
/// and the key schedule's increments. The compiler emits the same rounds
/// in generated code (soma.random_uniform).
inline constexpr uint32_t kPhiloxM0 = 0xD2511F53, kPhiloxM1 = 0xCD9E8D57;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9, kPhiloxW1 = 0xBB67AE85;
/// The bare Philox4x32-10 bijection of a key and a counter; Philox::block
/// derives both from (seed, stream, block). Exposed for known-answer tests.
void philox4x32_10(const uint32_t key[2], const uint32_t counter[4],
                   uint32_t out[4]);
/// initialize() with an explicit thread count (1 = serial). Exposed so that
/// tests can check that the parallel path matches the serial one.
void initialize(Array &array, const InitSpec &spec, uint64_t seed,
                uint64_t stream, unsigned threads);
} // namespace detail

} // namespace soma
