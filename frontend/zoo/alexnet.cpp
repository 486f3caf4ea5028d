//===- alexnet.cpp - AlexNet (torchvision variant) ----------------------------===//
//
// Krizhevsky et al. 2012 as torchvision builds it (the "one weird trick"
// widths 64-192-384-256-256, no local response normalisation, a single
// tower): five convolutions with ReLU and three 3x3/2 max pools, then fully
// connected layers 4096-4096-1000. torchvision's adaptive average pool to
// 6x6 is the identity at 224x224 input, where the last max pool already
// gives 256 x 6 x 6, so it is left out. 61,100,840 parameters.
//
//===----------------------------------------------------------------------===//

#include "soma/nn.h"
#include "soma/zoo.h"

namespace soma::zoo {

Graph alexnet(int64_t batch, bool with_loss, uint64_t seed) {
  Graph g("alexnet", seed);
  Tensor x = g.input("x", {batch, 3, 224, 224});
  Tensor h = relu(nn::conv2d(x, 64, 11, {.stride = 4, .padding = 2, .name = "features.0"}));
  h = max_pool2d(h, 3, {.stride = 2});                                            // 64 x 27 x 27
  h = relu(nn::conv2d(h, 192, 5, {.padding = 2, .name = "features.3"}));
  h = max_pool2d(h, 3, {.stride = 2});                                            // 192 x 13 x 13
  h = relu(nn::conv2d(h, 384, 3, {.padding = 1, .name = "features.6"}));
  h = relu(nn::conv2d(h, 256, 3, {.padding = 1, .name = "features.8"}));
  h = relu(nn::conv2d(h, 256, 3, {.padding = 1, .name = "features.10"}));
  h = max_pool2d(h, 3, {.stride = 2});                                            // 256 x 6 x 6
  h = flatten(h);
  h = dropout(h, 0.5);
  h = relu(nn::dense(h, 4096, {.weight_init = init::he_uniform(), .name = "classifier.1"}));
  h = dropout(h, 0.5);
  h = relu(nn::dense(h, 4096, {.weight_init = init::he_uniform(), .name = "classifier.4"}));
  classification_outputs(g, nn::dense(h, 1000, {.name = "classifier.6"}), with_loss);
  return g;
}

} // namespace soma::zoo
