//===- soma/nn.h - Layers that create their parameters -------------*- C++ -*-===//
#pragma once

#include "soma/ops.h"

namespace soma::nn {

struct DenseOptions {
  Init weight_init = init::xavier_uniform();
  Init bias_init = init::zeros();
  bool bias = true;
  /// Parameter name prefix; empty = "dense<k>" (k counts dense layers).
  std::string name;
};

/// y = x W + b with W [in, units] and b [units]; x is [batch, in].
/// Creates parameters "<name>.weight" and "<name>.bias".
Tensor dense(const Tensor &x, int64_t units, const DenseOptions &options = {},
             Loc loc = Loc::current());

} // namespace soma::nn
