//===- optim_reference.h - Plain C++ oracle of the updates ------*- C++ -*-===//
//
// The independent reference the compiled training-step updates are tested
// against. It follows the formulas of soma/optim.h term by term, in double,
// with the optimizer state kept in double; only the parameters are rounded to
// float, as they are stored.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "soma/error.h"
#include "soma/optim.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace soma::optim::reference {

/// The state of an optimizer: per parameter, the element-wise slots `a` and
/// `b` (which ones an optimizer uses is listed below), and the step count t
/// (the number of steps taken; the first step runs with t = 1).
///
///   optimizer            a                      b
///   SGD                  -                      -
///   Momentum, Nesterov   v (velocity)           -
///   AdaGrad              v (sum of g^2)         -
///   RMSProp              v (mean of g^2)        -
///   AdaDelta             v (mean of g^2)        u (mean of d^2)
///   Adam, NAdam, AdamW   m (first moment)       v (second moment)
///   AdaMax               m (first moment)       u (infinity norm)
///
/// The slots are created on the first step: AdaGrad's `a` filled with
/// initial_accumulator, everything else with 0.
struct State {
  std::vector<std::vector<double>> a, b;
  int64_t t = 0;
};

namespace detail {

/// sign(x) with sign(0) = 0 (the L1 penalty's subgradient at 0).
inline double sign(double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0); }

[[noreturn]] inline void fail(const std::string &what) {
  throw soma::Error("optim::reference::step: " + what);
}

/// The Adam update of one element (shared by Adam and AdamW).
inline void adam_element(const Adam &o, double lr, double t, double g,
                         double &w, double &m, double &v) {
  m = o.beta1 * m + (1.0 - o.beta1) * g;
  v = o.beta2 * v + (1.0 - o.beta2) * g * g;
  double mh = m / (1.0 - std::pow(o.beta1, t));
  double vh = v / (1.0 - std::pow(o.beta2, t));
  if (o.eps_inside_sqrt)
    w -= lr * mh / std::sqrt(vh + o.eps);
  else
    w -= lr * mh / (std::sqrt(vh) + o.eps);
}

} // namespace detail

/// One step on all parameters: the gradient preprocessing of soma/optim.h
/// (l2, l1, clip_value, then clip_norm over the gradients of ALL parameters),
/// then the update of `opt` with learning rate `lr` (the scheduled rate; the
/// lr in opt's Common is ignored). params and grads are float as stored; the
/// computation is in double and the parameters are written back as float.
inline void step(const Optimizer &opt, double lr,
                 std::vector<std::vector<float> *> params,
                 const std::vector<std::vector<float>> &grads, State &state) {
  const size_t n = params.size();
  if (grads.size() != n)
    detail::fail(std::to_string(n) + " parameters but " +
                 std::to_string(grads.size()) + " gradients");
  for (size_t p = 0; p < n; ++p) {
    if (!params[p])
      detail::fail("parameter " + std::to_string(p) + " is null");
    if (params[p]->size() != grads[p].size())
      detail::fail("parameter " + std::to_string(p) + " has " +
                   std::to_string(params[p]->size()) + " elements, gradient " +
                   std::to_string(grads[p].size()));
  }

  // State: created on first use, then it must keep matching the parameters.
  if (state.a.empty() && state.b.empty()) {
    double a0 = 0.0;
    if (const auto *o = std::get_if<AdaGrad>(&opt))
      a0 = o->initial_accumulator;
    for (size_t p = 0; p < n; ++p) {
      state.a.emplace_back(params[p]->size(), a0);
      state.b.emplace_back(params[p]->size(), 0.0);
    }
  }
  if (state.a.size() != n || state.b.size() != n)
    detail::fail("state is for a different number of parameters");
  for (size_t p = 0; p < n; ++p)
    if (state.a[p].size() != params[p]->size() ||
        state.b[p].size() != params[p]->size())
      detail::fail("state of parameter " + std::to_string(p) +
                   " has a different size");

  ++state.t;
  const double t = static_cast<double>(state.t);
  const Common &c = common(opt);

  // Weights and gradients in double.
  std::vector<std::vector<double>> w(n), g(n);
  for (size_t p = 0; p < n; ++p) {
    w[p].assign(params[p]->begin(), params[p]->end());
    g[p].assign(grads[p].begin(), grads[p].end());
  }

  // Preprocessing: penalties, value clipping, then global norm clipping.
  for (size_t p = 0; p < n; ++p) {
    for (size_t i = 0; i < g[p].size(); ++i) {
      g[p][i] += c.l2 * w[p][i];
      g[p][i] += c.l1 * detail::sign(w[p][i]);
      if (c.clip_value > 0.0)
        g[p][i] = std::clamp(g[p][i], -c.clip_value, c.clip_value);
    }
  }
  if (c.clip_norm > 0.0) {
    double sum = 0.0;
    for (const auto &gp : g)
      for (double x : gp)
        sum += x * x;
    double norm = std::sqrt(sum);
    // min(1, clip_norm / 0) = 1: a zero gradient is left alone (no NaN).
    double scale = norm > c.clip_norm ? c.clip_norm / norm : 1.0;
    for (auto &gp : g)
      for (double &x : gp)
        x *= scale;
  }

  // The update, element by element.
  for (size_t p = 0; p < n; ++p) {
    std::vector<double> &a = state.a[p], &b = state.b[p];
    for (size_t i = 0; i < w[p].size(); ++i) {
      double &wi = w[p][i];
      const double gi = g[p][i];
      std::visit(
          [&](const auto &o) {
            using T = std::decay_t<decltype(o)>;
            if constexpr (std::is_same_v<T, SGD>) {
              wi -= lr * gi;
            } else if constexpr (std::is_same_v<T, Momentum>) {
              double &v = a[i];
              v = o.momentum * v + gi;
              wi -= lr * v;
            } else if constexpr (std::is_same_v<T, Nesterov>) {
              double &v = a[i];
              v = o.momentum * v + gi;
              wi -= lr * (gi + o.momentum * v);
            } else if constexpr (std::is_same_v<T, AdaGrad>) {
              double &v = a[i];
              v += gi * gi;
              wi -= lr * gi / std::sqrt(v + o.eps);
            } else if constexpr (std::is_same_v<T, RMSProp>) {
              double &v = a[i];
              v = o.beta * v + (1.0 - o.beta) * gi * gi;
              wi -= lr * gi / std::sqrt(v + o.eps);
            } else if constexpr (std::is_same_v<T, AdaDelta>) {
              double &v = a[i], &u = b[i];
              v = o.beta * v + (1.0 - o.beta) * gi * gi;
              double d = -std::sqrt(u + o.eps) / std::sqrt(v + o.eps) * gi;
              wi += lr * d;
              u = o.beta * u + (1.0 - o.beta) * d * d;
            } else if constexpr (std::is_same_v<T, Adam>) {
              detail::adam_element(o, lr, t, gi, wi, a[i], b[i]);
            } else if constexpr (std::is_same_v<T, AdaMax>) {
              double &m = a[i], &u = b[i];
              m = o.beta1 * m + (1.0 - o.beta1) * gi;
              u = std::max(o.beta2 * u, std::abs(gi));
              wi -= lr / (1.0 - std::pow(o.beta1, t)) * m / (u + o.eps);
            } else if constexpr (std::is_same_v<T, NAdam>) {
              double &m = a[i], &v = b[i];
              m = o.beta1 * m + (1.0 - o.beta1) * gi;
              v = o.beta2 * v + (1.0 - o.beta2) * gi * gi;
              double bc1 = 1.0 - std::pow(o.beta1, t);
              double mh = m / bc1;
              double vh = v / (1.0 - std::pow(o.beta2, t));
              wi -= lr / (std::sqrt(vh) + o.eps) *
                    (o.beta1 * mh + (1.0 - o.beta1) * gi / bc1);
            } else if constexpr (std::is_same_v<T, AdamW>) {
              // Decoupled decay of the weight as it was at the start of the
              // step (the gradient, and so the l2/l1 terms, were taken
              // there too), then the Adam update with the same lr. As in
              // Loshchilov & Hutter (and PyTorch's AdamW), the decay is not
              // scaled by the bias corrections or the second moment.
              wi -= lr * o.weight_decay * wi;
              detail::adam_element(o, lr, t, gi, wi, a[i], b[i]);
            } else {
              static_assert(sizeof(T) == 0, "optimizer not handled");
            }
          },
          opt);
    }
  }

  for (size_t p = 0; p < n; ++p)
    for (size_t i = 0; i < w[p].size(); ++i)
      (*params[p])[i] = static_cast<float>(w[p][i]);
}

} // namespace soma::optim::reference
