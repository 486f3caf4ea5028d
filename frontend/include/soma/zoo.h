//===- soma/zoo.h - Models of the course, built with the DSL --------*- C++ -*-===//
#pragma once

#include "soma/graph.h"

#include <string>
#include <vector>

namespace soma::zoo {

/// MLP 784-256-128-10 with ReLU: input "x" [batch, 784], output "logits".
/// With `with_loss`, also input "y" [batch] i32 and output "loss"
/// (softmax cross-entropy, mean).
Graph mlp(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);

/// LeNet-5 (ReLU, max pooling): input "x" [batch, 1, 28, 28], output
/// "logits" [batch, 10]; 61,706 parameters. with_loss as for mlp.
Graph lenet5(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);

/// Marks `logits` as the output "logits" and, with `with_loss`, adds the
/// labels input "y" [batch] i32 and the output "loss" (softmax
/// cross-entropy, mean): the classification head every zoo model shares.
void classification_outputs(Graph &g, const Tensor &logits, bool with_loss);

/// Names of the zoo's models ("mlp", ...).
std::vector<std::string> names();
/// Builds a zoo model by name with its defaults at `batch`; throws
/// soma::Error listing the known names if `name` is unknown.
Graph build(const std::string &name, int64_t batch = 64, bool with_loss = false,
            uint64_t seed = 0);

} // namespace soma::zoo
