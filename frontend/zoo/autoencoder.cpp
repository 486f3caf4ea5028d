//===- autoencoder.cpp - Convolutional autoencoder for 28x28 images ----------===//
//
// The classic small convolutional autoencoder (as in the Keras blog's
// "Building autoencoders"): encoder conv 1->16 3x3, ReLU, max pool 2, conv
// 16->8 3x3, ReLU, max pool 2 (code 8 x 7 x 7); decoder conv 8->8 3x3, ReLU,
// upsample x2, conv 8->16 3x3, ReLU, upsample x2, conv 16->1 3x3, sigmoid.
// All convolutions pad 1. Upsampling is nearest-neighbour (upsample2d: each
// pixel repeated in a 2x2 square). Parameters: 160 + 1,160 + 584 +
// 1,168 + 145 = 3,217.
//
//===----------------------------------------------------------------------===//

#include "soma/nn.h"
#include "soma/zoo.h"

namespace soma::zoo {

Graph conv_autoencoder(int64_t batch, bool with_loss, uint64_t seed) {
  Graph g("conv_autoencoder", seed);
  Tensor x = g.input("x", {batch, 1, 28, 28});
  Tensor h = max_pool2d(relu(nn::conv2d(x, 16, 3, {.padding = 1, .name = "encoder.conv1"})), 2);
  h = max_pool2d(relu(nn::conv2d(h, 8, 3, {.padding = 1, .name = "encoder.conv2"})), 2); // 8x7x7
  h = relu(nn::conv2d(h, 8, 3, {.padding = 1, .name = "decoder.conv1"}));
  h = upsample2d(h, 2);                                                    // 8 x 14 x 14
  h = relu(nn::conv2d(h, 16, 3, {.padding = 1, .name = "decoder.conv2"}));
  h = upsample2d(h, 2);                                                    // 16 x 28 x 28
  Tensor out = sigmoid(nn::conv2d(h, 1, 3, {.padding = 1, .weight_init = init::xavier_uniform(),
                                            .name = "decoder.conv3"}));
  g.output("reconstruction", out);
  if (with_loss)
    g.output("loss", mse(out, x));
  return g;
}

} // namespace soma::zoo
