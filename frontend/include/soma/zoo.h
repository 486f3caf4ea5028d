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

/// AlexNet, torchvision's variant (convolutions 64-192-384-256-256, fully
/// connected 4096-4096-1000): input "x" [batch, 3, 224, 224], output
/// "logits" [batch, 1000]; 61,100,840 parameters.
Graph alexnet(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);
/// VGG-16 (configuration D, no batch norm): "x" [batch, 3, 224, 224] ->
/// "logits" [batch, 1000]; 138,357,544 parameters.
Graph vgg16(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);

/// ImageNet ResNets (torchvision's layout, batch norm, convolutions without
/// bias): "x" [batch, 3, 224, 224] -> "logits" [batch, 1000]. Trainable
/// parameters 11,689,512 / 21,797,672 / 25,557,032 (plus the batch norms'
/// running statistics, buffers).
Graph resnet18(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);
Graph resnet34(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);
Graph resnet50(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);

/// CIFAR-10 ResNets of depth 6n + 2 (He et al. 2016, §4.2, option B
/// shortcuts): "x" [batch, 3, 32, 32] -> "logits" [batch, 10]. Trainable
/// parameters 78,042 / 272,474 / 855,770.
Graph resnet8(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);
Graph resnet20(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);
Graph resnet56(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);

/// GoogLeNet (Inception v1 as in the paper: conv biases, no batch norm, no
/// auxiliary classifiers): "x" [batch, 3, 224, 224] -> "logits"
/// [batch, 1000]; 6,998,552 parameters. If `inception_shapes` is given, the
/// output shape of every inception module (3a ... 5b) is appended to it.
Graph googlenet(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0,
                std::vector<Shape> *inception_shapes = nullptr);

/// DenseNet-121 (k = 32, blocks 6-12-24-16, BC): "x" [batch, 3, 224, 224]
/// -> "logits" [batch, 1000]; 7,978,856 trainable parameters.
Graph densenet121(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);

/// Convolutional autoencoder: "x" [batch, 1, 28, 28] -> "reconstruction"
/// [batch, 1, 28, 28] (sigmoid) through an 8 x 7 x 7 code; 3,217
/// parameters. With `with_loss`, also the output "loss" (mean squared error
/// against x; no labels input).
Graph conv_autoencoder(int64_t batch = 64, bool with_loss = false, uint64_t seed = 0);

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
