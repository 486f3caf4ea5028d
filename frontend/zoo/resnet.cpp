//===- resnet.cpp - Residual networks (ImageNet and CIFAR-10) ----------------===//
//
// He et al. 2016. ImageNet models as torchvision builds them: a 7x7/2
// convolution (no bias), batch norm, ReLU and a 3x3/2 max pool (padding 1),
// four stages of 64, 128, 256 and 512 base channels (stride 2 from the
// second stage on, in the first convolution of the stage's first block),
// global average pooling and a fully connected layer to 1000 classes.
// Convolutions have no bias (batch norm follows each); a shortcut that
// changes the shape is a 1x1 convolution + batch norm ("downsample").
//   resnet18: BasicBlock [2, 2, 2, 2]   11,689,512 trainable parameters
//   resnet34: BasicBlock [3, 4, 6, 3]   21,797,672
//   resnet50: Bottleneck [3, 4, 6, 3]   25,557,032 (expansion 4)
//
// CIFAR-10 models (§4.2): a 3x3 convolution to 16 channels, three stages of
// n BasicBlocks with 16, 32 and 64 channels (depth = 6n + 2), global average
// pooling and a fully connected layer to 10 classes; shortcuts of option B
// (1x1 convolution + batch norm where the shape changes, identity
// elsewhere). Trainable parameters, counting a KxK convolution from a to b
// channels as a*b*K*K (no bias) and each batch norm as 2b:
//   stem            3*16*9 + 2*16                         =     464
//   a 16->16 block  2 * (16*16*9 + 2*16)                  =   4,672
//   first 16->32    16*32*9 + 64 + 32*32*9 + 64
//                   + 16*32 + 64 (shortcut)               =  14,528
//   a 32->32 block  2 * (32*32*9 + 2*32)                  =  18,560
//   first 32->64    32*64*9 + 128 + 64*64*9 + 128
//                   + 32*64 + 128 (shortcut)              =  57,728
//   a 64->64 block  2 * (64*64*9 + 2*64)                  =  73,984
//   fc              64*10 + 10                            =     650
// total(n) = 464 + 650 + 14,528 + 57,728 + n*4,672 + (n-1)*(18,560 + 73,984)
//          = 73,370 + 4,672 n + 92,544 (n - 1):
//   resnet8  (n = 1):    78,042
//   resnet20 (n = 3):   272,474
//   resnet56 (n = 9):   855,770
//
//===----------------------------------------------------------------------===//

#include "soma/nn.h"
#include "soma/zoo.h"

namespace soma::zoo {

namespace {

Tensor conv_bn(const Tensor &x, int64_t out, int64_t kernel, int64_t stride,
               const std::string &conv, const std::string &bn) {
  Tensor h = nn::conv2d(x, out, kernel,
                        {.stride = stride, .padding = kernel / 2, .bias = false, .name = conv});
  return nn::batch_norm(h, {.name = bn});
}

// The shortcut of a block: identity, or 1x1 conv + BN when the shape changes.
Tensor shortcut(const Tensor &x, int64_t out, int64_t stride, const std::string &prefix) {
  if (stride == 1 && x.dim(1) == out)
    return x;
  return conv_bn(x, out, 1, stride, prefix + ".downsample.0", prefix + ".downsample.1");
}

Tensor basic_block(const Tensor &x, int64_t planes, int64_t stride, const std::string &p) {
  Tensor h = relu(conv_bn(x, planes, 3, stride, p + ".conv1", p + ".bn1"));
  h = conv_bn(h, planes, 3, 1, p + ".conv2", p + ".bn2");
  return relu(h + shortcut(x, planes, stride, p));
}

// torchvision's ResNet v1.5: the stride sits on the 3x3 convolution.
Tensor bottleneck(const Tensor &x, int64_t planes, int64_t stride, const std::string &p) {
  Tensor h = relu(conv_bn(x, planes, 1, 1, p + ".conv1", p + ".bn1"));
  h = relu(conv_bn(h, planes, 3, stride, p + ".conv2", p + ".bn2"));
  h = conv_bn(h, planes * 4, 1, 1, p + ".conv3", p + ".bn3");
  return relu(h + shortcut(x, planes * 4, stride, p));
}

Graph imagenet_resnet(const std::string &name, const int64_t (&blocks)[4], bool use_bottleneck,
                      int64_t batch, bool with_loss, uint64_t seed) {
  Graph g(name, seed);
  Tensor x = g.input("x", {batch, 3, 224, 224});
  Tensor h = relu(conv_bn(x, 64, 7, 2, "conv1", "bn1"));                        // 64 x 112 x 112
  h = max_pool2d(h, 3, {.stride = 2, .padding = 1});                            // 64 x 56 x 56
  for (int s = 0; s < 4; ++s) {
    int64_t planes = int64_t{64} << s;
    for (int64_t b = 0; b < blocks[s]; ++b) {
      int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(b);
      h = use_bottleneck ? bottleneck(h, planes, stride, p) : basic_block(h, planes, stride, p);
    }
  }
  h = global_avg_pool2d(h);                                                     // 512 or 2048
  classification_outputs(g, nn::dense(h, 1000, {.name = "fc"}), with_loss);
  return g;
}

Graph cifar_resnet(const std::string &name, int64_t n, int64_t batch, bool with_loss,
                   uint64_t seed) {
  Graph g(name, seed);
  Tensor x = g.input("x", {batch, 3, 32, 32});
  Tensor h = relu(conv_bn(x, 16, 3, 1, "conv1", "bn1"));                        // 16 x 32 x 32
  for (int s = 0; s < 3; ++s) {
    int64_t planes = int64_t{16} << s;                                          // 16, 32, 64
    for (int64_t b = 0; b < n; ++b) {
      int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      h = basic_block(h, planes, stride,
                      "layer" + std::to_string(s + 1) + "." + std::to_string(b));
    }
  }
  h = global_avg_pool2d(h);                                                     // 64
  classification_outputs(g, nn::dense(h, 10, {.name = "fc"}), with_loss);
  return g;
}

} // namespace

Graph resnet18(int64_t batch, bool with_loss, uint64_t seed) {
  return imagenet_resnet("resnet18", {2, 2, 2, 2}, false, batch, with_loss, seed);
}
Graph resnet34(int64_t batch, bool with_loss, uint64_t seed) {
  return imagenet_resnet("resnet34", {3, 4, 6, 3}, false, batch, with_loss, seed);
}
Graph resnet50(int64_t batch, bool with_loss, uint64_t seed) {
  return imagenet_resnet("resnet50", {3, 4, 6, 3}, true, batch, with_loss, seed);
}

Graph resnet8(int64_t batch, bool with_loss, uint64_t seed) {
  return cifar_resnet("resnet8", 1, batch, with_loss, seed);
}
Graph resnet20(int64_t batch, bool with_loss, uint64_t seed) {
  return cifar_resnet("resnet20", 3, batch, with_loss, seed);
}
Graph resnet56(int64_t batch, bool with_loss, uint64_t seed) {
  return cifar_resnet("resnet56", 9, batch, with_loss, seed);
}

} // namespace soma::zoo
