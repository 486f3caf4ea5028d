//===- vgg.cpp - VGG-16 (configuration D) ------------------------------------===//
//
// Simonyan & Zisserman 2015, configuration D without batch normalisation:
// thirteen 3x3 convolutions (padding 1, ReLU) in five stages of 64, 128,
// 256, 512 and 512 channels, each stage closed by a 2x2/2 max pool (224 ->
// 7), then fully connected layers 4096-4096-1000. 138,357,544 parameters.
//
//===----------------------------------------------------------------------===//

#include "soma/nn.h"
#include "soma/zoo.h"

namespace soma::zoo {

Graph vgg16(int64_t batch, bool with_loss, uint64_t seed) {
  Graph g("vgg16", seed);
  Tensor h = g.input("x", {batch, 3, 224, 224});
  const int64_t stages[5][2] = {{64, 2}, {128, 2}, {256, 3}, {512, 3}, {512, 3}};
  for (int s = 0; s < 5; ++s) {
    for (int i = 0; i < stages[s][1]; ++i) {
      std::string name = "features.stage" + std::to_string(s + 1) + ".conv" + std::to_string(i + 1);
      h = relu(nn::conv2d(h, stages[s][0], 3, {.padding = 1, .name = name}));
    }
    h = max_pool2d(h, 2);
  }
  h = flatten(h);                                                                 // 512 * 7 * 7
  h = relu(nn::dense(h, 4096, {.weight_init = init::he_uniform(), .name = "classifier.0"}));
  h = dropout(h, 0.5);
  h = relu(nn::dense(h, 4096, {.weight_init = init::he_uniform(), .name = "classifier.3"}));
  h = dropout(h, 0.5);
  classification_outputs(g, nn::dense(h, 1000, {.name = "classifier.6"}), with_loss);
  return g;
}

} // namespace soma::zoo
