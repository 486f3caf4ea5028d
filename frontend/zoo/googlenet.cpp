//===- googlenet.cpp - GoogLeNet (Inception v1) -------------------------------===//
//
// Szegedy et al. 2015, Table 1: no batch normalisation (convolutions have
// biases, ReLU after each), no auxiliary classifiers, the 5x5 branch with a
// true 5x5 kernel. The local response normalisations of the stem have no
// parameters and are left out. Max pools are 3x3/2 with padding 1 (the
// paper's pooling, with sizes 112 -> 56 -> 28 -> 14 -> 7).
//
// Trainable parameters (weights + biases) from the module table; a module
// with input channels c and widths (#1x1, #3x3 reduce, #3x3, #5x5 reduce,
// #5x5, pool proj) has c*(#1x1 + #3x3r + #5x5r + pool) + #3x3r*#3x3*9 +
// #5x5r*#5x5*25 weights and one bias per output of each of its six convs:
//   stem: conv 7x7/2 3->64 (9,472), 1x1 64->64 (4,160),
//         3x3 64->192 (110,784)                      124,416
//   3a  192 -> 256   (64, 96, 128, 16, 32, 32)       163,696
//   3b  256 -> 480   (128, 128, 192, 32, 96, 64)     388,736
//   4a  480 -> 512   (192, 96, 208, 16, 48, 64)      376,176
//   4b  512 -> 512   (160, 112, 224, 24, 64, 64)     449,160
//   4c  512 -> 512   (128, 128, 256, 24, 64, 64)     510,104
//   4d  512 -> 528   (112, 144, 288, 32, 64, 64)     605,376
//   4e  528 -> 832   (256, 160, 320, 32, 128, 128)   868,352
//   5a  832 -> 832   (256, 160, 320, 32, 128, 128) 1,043,456
//   5b  832 -> 1024  (384, 192, 384, 48, 128, 128) 1,444,080
//   fc  1024 -> 1000                               1,025,000
//   total                                          6,998,552
// (The paper's table rounds and omits biases, totalling about 6.8M.)
//
//===----------------------------------------------------------------------===//

#include "soma/nn.h"
#include "soma/zoo.h"

namespace soma::zoo {

namespace {

struct InceptionWidths {
  const char *name;
  int64_t c1, r3, c3, r5, c5, pool;
};

Tensor conv_relu(const Tensor &x, int64_t out, int64_t kernel, const std::string &name,
                 int64_t stride = 1) {
  return relu(nn::conv2d(x, out, kernel, {.stride = stride, .padding = kernel / 2, .name = name}));
}

Tensor inception(const Tensor &x, const InceptionWidths &w) {
  std::string p = std::string("inception") + w.name;
  Tensor b1 = conv_relu(x, w.c1, 1, p + ".branch1");
  Tensor b2 = conv_relu(conv_relu(x, w.r3, 1, p + ".branch2.0"), w.c3, 3, p + ".branch2.1");
  Tensor b3 = conv_relu(conv_relu(x, w.r5, 1, p + ".branch3.0"), w.c5, 5, p + ".branch3.1");
  Tensor b4 = conv_relu(max_pool2d(x, 3, {.stride = 1, .padding = 1}), w.pool, 1, p + ".branch4");
  return concat({b1, b2, b3, b4}, 1);
}

} // namespace

Graph googlenet(int64_t batch, bool with_loss, uint64_t seed,
                std::vector<Shape> *inception_shapes) {
  static const InceptionWidths table[] = {
      {"3a", 64, 96, 128, 16, 32, 32},     {"3b", 128, 128, 192, 32, 96, 64},
      {"4a", 192, 96, 208, 16, 48, 64},    {"4b", 160, 112, 224, 24, 64, 64},
      {"4c", 128, 128, 256, 24, 64, 64},   {"4d", 112, 144, 288, 32, 64, 64},
      {"4e", 256, 160, 320, 32, 128, 128}, {"5a", 256, 160, 320, 32, 128, 128},
      {"5b", 384, 192, 384, 48, 128, 128}};
  Graph g("googlenet", seed);
  Tensor x = g.input("x", {batch, 3, 224, 224});
  Tensor h = conv_relu(x, 64, 7, "conv1", 2);                                   // 64 x 112 x 112
  h = max_pool2d(h, 3, {.stride = 2, .padding = 1});                            // 64 x 56 x 56
  h = conv_relu(h, 64, 1, "conv2");
  h = conv_relu(h, 192, 3, "conv3");
  h = max_pool2d(h, 3, {.stride = 2, .padding = 1});                            // 192 x 28 x 28
  for (const InceptionWidths &w : table) {
    h = inception(h, w);
    if (inception_shapes)
      inception_shapes->push_back(h.shape());
    if (std::string(w.name) == "3b" || std::string(w.name) == "4e")
      h = max_pool2d(h, 3, {.stride = 2, .padding = 1});                        // -> 14, -> 7
  }
  h = global_avg_pool2d(h);                                                     // 1024
  h = dropout(h, 0.4);
  classification_outputs(g, nn::dense(h, 1000, {.name = "fc"}), with_loss);
  return g;
}

} // namespace soma::zoo
