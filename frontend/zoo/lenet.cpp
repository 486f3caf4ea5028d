//===- lenet.cpp - LeNet-5 ---------------------------------------------------===//
//
// LeCun et al. 1998, as the course draws it: two convolution + pooling
// stages, then fully connected layers 120-84-10. Modern choices: ReLU and
// max pooling (the original used scaled tanh and trainable subsampling), and
// padding 2 on the first convolution so that 28x28 images (Fashion-MNIST)
// take the place of the original 32x32 input; the parameter count is the
// classic 61,706.
//
//===----------------------------------------------------------------------===//

#include "soma/nn.h"
#include "soma/zoo.h"

namespace soma::zoo {

Graph lenet5(int64_t batch, bool with_loss, uint64_t seed) {
  Graph g("lenet5", seed);
  Tensor x = g.input("x", {batch, 1, 28, 28});
  Tensor h = max_pool2d(relu(nn::conv2d(x, 6, 5, {.padding = 2})), 2);  // 6 x 14 x 14
  h = max_pool2d(relu(nn::conv2d(h, 16, 5)), 2);                        // 16 x 5 x 5
  h = relu(nn::dense(flatten(h), 120, {.weight_init = init::he_uniform()}));
  h = relu(nn::dense(h, 84, {.weight_init = init::he_uniform()}));
  classification_outputs(g, nn::dense(h, 10), with_loss);
  return g;
}

} // namespace soma::zoo
