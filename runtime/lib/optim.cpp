//===- optim.cpp - Optimizer names and learning-rate schedules ------------===//

#include "soma/optim.h"
#include "soma/error.h"

#include <fmt/format.h>

#include <cmath>
#include <iterator>
#include <numbers>
#include <string>
#include <type_traits>

namespace soma::optim {

namespace {

/// The names of the alternatives of Optimizer, in variant order.
constexpr const char *kNames[] = {"sgd",     "momentum", "nesterov", "adagrad",
                                  "rmsprop", "adadelta", "adam",     "adamax",
                                  "nadam",   "adamw"};
static_assert(std::size(kNames) == std::variant_size_v<Optimizer>);

/// The default-constructed alternative `I` of Optimizer, if I == index.
template <size_t I = 0> Optimizer make_by_index(size_t index) {
  if constexpr (I < std::variant_size_v<Optimizer>) {
    if (I == index)
      return Optimizer(std::in_place_index<I>);
    return make_by_index<I + 1>(index);
  } else {
    throw Error(fmt::format("optimizer index {} out of range", index));
  }
}

[[noreturn]] void bad_schedule(const std::string &what) {
  throw Error("learning-rate schedule: " + what);
}

void check_step_size(int64_t step_size) {
  if (step_size < 1)
    bad_schedule(fmt::format("step_size must be >= 1, got {}", step_size));
}

void check_gamma(double gamma) {
  if (!(gamma > 0.0) || !std::isfinite(gamma))
    bad_schedule(fmt::format("gamma must be > 0, got {}", gamma));
}

/// Not in the brief's list, but a negative (or NaN) decay rate makes the
/// exponential schedule grow and inverse_time divide by zero at t = -1/k.
void check_k(double k) {
  if (!(k >= 0.0) || !std::isfinite(k))
    bad_schedule(fmt::format("decay rate k must be >= 0, got {}", k));
}

void check_period(int64_t period) {
  if (period < 1)
    bad_schedule(fmt::format("period must be >= 1, got {}", period));
}

void check_warmup(int64_t steps) {
  if (steps < 0)
    bad_schedule(fmt::format("warmup_steps must be >= 0, got {}", steps));
}

} // namespace

std::string name(const Optimizer &opt) { return kNames[opt.index()]; }

Optimizer by_name(const std::string &name, double lr) {
  for (size_t i = 0; i < std::size(kNames); ++i) {
    if (name != kNames[i])
      continue;
    Optimizer opt = make_by_index(i);
    // The papers' defaults where they differ from Common's.
    if (std::holds_alternative<AdaDelta>(opt))
      common(opt).lr = 1.0;
    if (std::holds_alternative<AdaMax>(opt))
      common(opt).lr = 2e-3;
    if (lr > 0.0)
      common(opt).lr = lr;
    return opt;
  }
  std::string known;
  for (const char *n : kNames)
    known += (known.empty() ? "" : ", ") + std::string(n);
  throw Error(fmt::format("unknown optimizer '{}'; known: {}", name, known));
}

const Common &common(const Optimizer &opt) {
  return std::visit([](const auto &o) -> const Common & { return o; }, opt);
}

Common &common(Optimizer &opt) {
  return std::visit([](auto &o) -> Common & { return o; }, opt);
}

Schedule Schedule::constant() { return Schedule{}; }

Schedule Schedule::step_decay(int64_t step_size, double gamma) {
  check_step_size(step_size);
  check_gamma(gamma);
  Schedule s;
  s.kind = Kind::step;
  s.step_size = step_size;
  s.gamma = gamma;
  return s;
}

Schedule Schedule::exponential_decay(double k) {
  check_k(k);
  Schedule s;
  s.kind = Kind::exponential;
  s.k = k;
  return s;
}

Schedule Schedule::inverse_time_decay(double k) {
  check_k(k);
  Schedule s;
  s.kind = Kind::inverse_time;
  s.k = k;
  return s;
}

Schedule Schedule::cosine_with_restarts(int64_t period, double lr_min) {
  check_period(period);
  Schedule s;
  s.kind = Kind::cosine_restarts;
  s.period = period;
  s.lr_min = lr_min;
  return s;
}

Schedule Schedule::with_warmup(int64_t steps) const {
  check_warmup(steps);
  Schedule s = *this;
  s.warmup_steps = steps;
  return s;
}

double Schedule::lr(double lr0, int64_t t) const {
  // The fields are public, so they are checked here as well as in the
  // factories; only the fields the kind uses are checked.
  if (t < 0)
    bad_schedule(fmt::format("step t must be >= 0, got {}", t));
  check_warmup(warmup_steps);

  double rate = lr0;
  switch (kind) {
  case Kind::constant:
    break;
  case Kind::step:
    check_step_size(step_size);
    check_gamma(gamma);
    rate = lr0 * std::pow(gamma, static_cast<double>(t / step_size));
    break;
  case Kind::exponential:
    check_k(k);
    rate = lr0 * std::exp(-k * static_cast<double>(t));
    break;
  case Kind::inverse_time:
    check_k(k);
    rate = lr0 / (1.0 + k * static_cast<double>(t));
    break;
  case Kind::cosine_restarts: {
    // t mod (T + 1): the rate falls from lr0 at phase 0 to lr_min at phase T
    // and restarts at lr0 on the next step.
    check_period(period);
    double phase = static_cast<double>(t % (period + 1));
    rate = lr_min + (lr0 - lr_min) / 2.0 *
                        (1.0 + std::cos(std::numbers::pi * phase /
                                        static_cast<double>(period)));
    break;
  }
  default:
    bad_schedule(fmt::format("unknown kind {}", static_cast<int>(kind)));
  }

  // Warmup scales the decayed rate of the same step t (the underlying
  // schedule is not shifted by the warmup).
  if (t < warmup_steps)
    rate *= static_cast<double>(t + 1) / static_cast<double>(warmup_steps);
  return rate;
}

} // namespace soma::optim
