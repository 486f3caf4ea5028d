//===- mlp.cpp - MLP 784-256-128-10 and the zoo's index --------------------===//

#include "soma/nn.h"
#include "soma/zoo.h"

namespace soma::zoo {

Graph mlp(int64_t batch, bool with_loss, uint64_t seed) {
  Graph g("mlp", seed);
  Tensor x = g.input("x", {batch, 784});
  Tensor h = relu(nn::dense(x, 256, {.weight_init = init::he_uniform()}));
  h = relu(nn::dense(h, 128, {.weight_init = init::he_uniform()}));
  classification_outputs(g, nn::dense(h, 10), with_loss);
  return g;
}

void classification_outputs(Graph &g, const Tensor &logits, bool with_loss) {
  g.output("logits", logits);
  if (with_loss) {
    Tensor y = g.input("y", {logits.dim(0)}, DType::i32);
    g.output("loss", softmax_cross_entropy(logits, y));
  }
}

std::vector<std::string> names() {
  return {"mlp",      "lenet5",   "alexnet",  "vgg16",     "resnet18",    "resnet34",
          "resnet50", "resnet8",  "resnet20", "resnet56",  "googlenet",   "densenet121",
          "conv_autoencoder"};
}

Graph build(const std::string &name, int64_t batch, bool with_loss, uint64_t seed) {
  if (batch <= 0)
    throw Error("batch size must be positive, got " + std::to_string(batch));
  if (name == "mlp")
    return mlp(batch, with_loss, seed);
  if (name == "lenet5")
    return lenet5(batch, with_loss, seed);
  using Builder = Graph (*)(int64_t, bool, uint64_t);
  static const std::pair<const char *, Builder> models[] = {
      {"alexnet", alexnet},   {"vgg16", vgg16},       {"resnet18", resnet18},
      {"resnet34", resnet34}, {"resnet50", resnet50}, {"resnet8", resnet8},
      {"resnet20", resnet20}, {"resnet56", resnet56}, {"densenet121", densenet121},
      {"conv_autoencoder", conv_autoencoder}};
  for (const auto &[n, builder] : models)
    if (name == n)
      return builder(batch, with_loss, seed);
  if (name == "googlenet")
    return googlenet(batch, with_loss, seed);
  std::string known;
  for (const std::string &n : names())
    known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown model '" + name + "' (the zoo has: " + known + ")");
}

} // namespace soma::zoo
