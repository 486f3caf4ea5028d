//===- soma/optim.h - Optimizers, penalties, clipping and schedules -*- C++ -*-===//
//
// An optimizer is a plain struct of hyper-parameters. The update it
// describes is compiled into the training step (forward + backward + update
// = one call); the runtime only computes the learning rate of each step from
// a Schedule and passes it in. The formulas below are the contract: the
// compiled update and the reference implementation in the tests follow them
// term by term. g is the gradient of the loss for one parameter w, t the
// step number starting at 1, lr the scheduled learning rate.
//
// Gradient preprocessing, in this order, before every optimizer:
//   g += l2 * w                      (coupled L2 penalty, 0.5*l2*||w||^2)
//   g += l1 * sign(w)                (L1 penalty l1*|w|, sign(0) = 0)
//   g  = clamp(g, -clip_value, +clip_value)          if clip_value > 0
//   g *= min(1, clip_norm / ||G||)                   if clip_norm > 0,
//        ||G|| the global L2 norm over the gradients of all parameters
//        (after the penalties and value clipping)
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <variant>

namespace soma::optim {

/// Settings every optimizer has.
struct Common {
  double lr = 1e-3;
  double l2 = 0.0;
  double l1 = 0.0;
  double clip_value = 0.0; // 0 = off
  double clip_norm = 0.0;  // 0 = off
};

/// w -= lr * g
struct SGD : Common {};

/// v = momentum * v + g;  w -= lr * v      (v starts at 0)
struct Momentum : Common {
  double momentum = 0.9;
};

/// Nesterov's accelerated gradient (002 §5.2) in the form that needs the
/// gradient only at the current weights (Sutskever et al.; PyTorch's
/// nesterov=True): v = momentum * v + g;  w -= lr * (g + momentum * v).
struct Nesterov : Common {
  double momentum = 0.9;
};

/// v += g^2;  w -= lr * g / sqrt(v + eps)          (002 §6, eps inside)
struct AdaGrad : Common {
  double eps = 1e-8;
  double initial_accumulator = 0.0;
};

/// v = beta * v + (1 - beta) * g^2;  w -= lr * g / sqrt(v + eps)   (002 §6)
struct RMSProp : Common {
  double beta = 0.9;
  double eps = 1e-8;
};

/// AdaDelta (002 §6, Zeiler 2012):
///   v = beta * v + (1 - beta) * g^2
///   d = -sqrt(u + eps) / sqrt(v + eps) * g
///   w += lr * d
///   u = beta * u + (1 - beta) * d^2
/// AdaDelta is meant to run with lr = 1 (Zeiler's "no learning rate");
/// by_name("adadelta") gives that, a default-constructed one keeps
/// Common's 1e-3 so that every optimizer is a plain aggregate:
/// `AdaDelta{{.lr = 1.0}}`.
struct AdaDelta : Common {
  double beta = 0.9;
  double eps = 1e-6;
};

/// Adam (Kingma & Ba):
///   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
///   mh = m / (1 - beta1^t);  vh = v / (1 - beta2^t)
///   w -= lr * mh / (sqrt(vh) + eps)       (default: eps outside the root)
///   w -= lr * mh / sqrt(vh + eps)         (eps_inside_sqrt, as the notes write it)
struct Adam : Common {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool eps_inside_sqrt = false;
};

/// AdaMax (002 §6):
///   m = beta1 * m + (1 - beta1) * g;  u = max(beta2 * u, |g|)
///   w -= lr / (1 - beta1^t) * m / (u + eps)
/// The paper's lr is 2e-3; by_name("adamax") uses it.
struct AdaMax : Common {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

/// NAdam (Dozat 2016, the form of 002 §6 with consistent indices):
///   m, v, mh, vh as in Adam
///   w -= lr / (sqrt(vh) + eps) * (beta1 * mh + (1 - beta1) * g / (1 - beta1^t))
struct NAdam : Common {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

/// AdamW (Loshchilov & Hutter): decoupled weight decay, then Adam:
///   w -= lr * weight_decay * w;  then the Adam update with the same lr.
struct AdamW : Adam {
  double weight_decay = 0.01;
};

using Optimizer =
    std::variant<SGD, Momentum, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam, AdaMax, NAdam, AdamW>;

/// "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam",
/// "adamax", "nadam", "adamw".
std::string name(const Optimizer &opt);
/// The optimizer of that name with its defaults and learning rate `lr`
/// (lr <= 0 keeps the default: 1e-3, except adadelta 1.0 and adamax 2e-3);
/// throws soma::Error listing the names.
Optimizer by_name(const std::string &name, double lr = 0.0);
/// The Common settings of any optimizer.
const Common &common(const Optimizer &opt);
Common &common(Optimizer &opt);

/// A learning-rate schedule: the learning rate of step t (t counts from 0)
/// given the base rate lr0 of the optimizer.
struct Schedule {
  enum class Kind {
    constant,        // lr0
    step,            // lr0 * gamma^floor(t / step_size)
    exponential,     // lr0 * exp(-k * t)                       (001)
    inverse_time,    // lr0 / (1 + k * t)                        (001)
    cosine_restarts, // lr_min + (lr0 - lr_min)/2 * (1 + cos(pi * (t mod (period+1)) / period))  (002)
  };
  Kind kind = Kind::constant;
  int64_t step_size = 1;  // step
  double gamma = 0.5;     // step
  double k = 0.0;         // exponential, inverse_time
  int64_t period = 1;     // cosine_restarts (T)
  double lr_min = 0.0;    // cosine_restarts
  /// Linear warmup over the first warmup_steps steps: the scheduled rate is
  /// multiplied by (t + 1) / warmup_steps while t < warmup_steps.
  int64_t warmup_steps = 0;

  static Schedule constant();
  static Schedule step_decay(int64_t step_size, double gamma);
  static Schedule exponential_decay(double k);
  static Schedule inverse_time_decay(double k);
  static Schedule cosine_with_restarts(int64_t period, double lr_min = 0.0);
  Schedule with_warmup(int64_t steps) const;

  /// The learning rate at step t (t >= 0).
  double lr(double lr0, int64_t t) const;
};

} // namespace soma::optim
