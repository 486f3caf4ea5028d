//===- densenet.cpp - DenseNet-121 --------------------------------------------===//
//
// Huang et al. 2017, DenseNet-BC as torchvision builds it: growth rate
// k = 32, dense blocks of 6, 12, 24 and 16 layers, each layer BN-ReLU-conv
// 1x1 (4k channels)-BN-ReLU-conv 3x3 (k channels) whose output is
// concatenated to its input; transitions BN-ReLU-conv 1x1 (compression 0.5)
// and a 2x2/2 average pool. Stem: conv 7x7/2 to 64 channels, BN, ReLU, max
// pool 3x3/2 (padding 1); head: BN, ReLU, global average pool, fc 1000.
// Convolutions have no bias. 7,978,856 trainable parameters.
//
//===----------------------------------------------------------------------===//

#include "soma/nn.h"
#include "soma/zoo.h"

namespace soma::zoo {

namespace {

Tensor bn_relu_conv(const Tensor &x, int64_t out, int64_t kernel, const std::string &p,
                    const std::string &suffix) {
  Tensor h = relu(nn::batch_norm(x, {.name = p + ".norm" + suffix}));
  return nn::conv2d(h, out, kernel, {.padding = kernel / 2, .bias = false, .name = p + ".conv" + suffix});
}

} // namespace

Graph densenet121(int64_t batch, bool with_loss, uint64_t seed) {
  const int64_t growth = 32, bn_size = 4;
  const int64_t blocks[4] = {6, 12, 24, 16};
  Graph g("densenet121", seed);
  Tensor x = g.input("x", {batch, 3, 224, 224});
  Tensor h = nn::conv2d(x, 64, 7, {.stride = 2, .padding = 3, .bias = false, .name = "features.conv0"});
  h = relu(nn::batch_norm(h, {.name = "features.norm0"}));
  h = max_pool2d(h, 3, {.stride = 2, .padding = 1});                            // 64 x 56 x 56
  for (int b = 0; b < 4; ++b) {
    std::string block = "features.denseblock" + std::to_string(b + 1);
    for (int64_t l = 0; l < blocks[b]; ++l) {
      std::string p = block + ".denselayer" + std::to_string(l + 1);
      Tensor y = bn_relu_conv(h, bn_size * growth, 1, p, "1");
      y = bn_relu_conv(y, growth, 3, p, "2");
      h = concat({h, y}, 1);
    }
    if (b < 3) {                                  // 256 -> 128, 512 -> 256, 1024 -> 512
      std::string p = "features.transition" + std::to_string(b + 1);
      h = bn_relu_conv(h, h.dim(1) / 2, 1, p, "");
      h = avg_pool2d(h, 2);
    }
  }
  h = relu(nn::batch_norm(h, {.name = "features.norm5"}));                      // 1024 x 7 x 7
  h = global_avg_pool2d(h);
  classification_outputs(g, nn::dense(h, 1000, {.name = "classifier"}), with_loss);
  return g;
}

} // namespace soma::zoo
