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

struct Conv2dLayerOptions {
  Ints stride = 1;
  Ints padding = 0;
  bool same = false;
  Ints dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  Init weight_init = init::he_uniform();
  Init bias_init = init::zeros();
  /// Parameter name prefix; empty = "conv<k>".
  std::string name;
};

/// A convolution layer: creates "<name>.weight" [out, in/groups, KH, KW]
/// (fan_in = in/groups*KH*KW) and "<name>.bias" [out].
Tensor conv2d(const Tensor &x, int64_t out_channels, Ints kernel,
              const Conv2dLayerOptions &options = {}, Loc loc = Loc::current());

/// max(x, 0) + alpha min(x, 0) with a learned slope per channel (dimension
/// 1 of x; or one slope for rank 1), created as "<name>.alpha" (0.25).
Tensor prelu(const Tensor &x, const std::string &name = "", Loc loc = Loc::current());

struct BatchNormOptions {
  double momentum = 0.1;
  double eps = 1e-5;
  /// Parameter name prefix; empty = "bn<k>".
  std::string name;
};

/// Batch normalisation over every dimension but the channels (dimension 1)
/// of x [N, C, ...]: creates "<name>.weight" (gamma, ones) and "<name>.bias"
/// (beta, zeros), and the buffers "<name>.running_mean" (zeros) and
/// "<name>.running_var" (ones). Training steps normalise with the batch's
/// statistics and update the running ones; inference uses the running ones.
Tensor batch_norm(const Tensor &x, const BatchNormOptions &options = {}, Loc loc = Loc::current());

} // namespace soma::nn
