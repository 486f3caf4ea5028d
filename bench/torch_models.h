// torch_models.h - the libtorch side of the model benchmarks (memory and
// speed): the MLP 784-256-128-10, the zoo's LeNet-5 (1x28x28, conv1 padded
// by 2) and the CIFAR ResNet-8 (option B shortcuts, batch norm), written
// to match soma's zoo (parameters in the same order), and one training step
// (Adam, softmax cross-entropy).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

namespace bench {

struct Mlp : torch::nn::Module {
  torch::nn::Linear l1{nullptr}, l2{nullptr}, l3{nullptr};
  Mlp() {
    l1 = register_module("l1", torch::nn::Linear(784, 256));
    l2 = register_module("l2", torch::nn::Linear(256, 128));
    l3 = register_module("l3", torch::nn::Linear(128, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    return l3(torch::relu(l2(torch::relu(l1(x)))));
  }
};

struct LeNet : torch::nn::Module {
  torch::nn::Conv2d c1{nullptr}, c2{nullptr};
  torch::nn::Linear f1{nullptr}, f2{nullptr}, f3{nullptr};
  LeNet() {
    c1 = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 6, 5).padding(2)));
    c2 = register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)));
    f1 = register_module("f1", torch::nn::Linear(400, 120));
    f2 = register_module("f2", torch::nn::Linear(120, 84));
    f3 = register_module("f3", torch::nn::Linear(84, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(c1(x)), 2);
    x = torch::max_pool2d(torch::relu(c2(x)), 2);
    x = x.flatten(1);
    return f3(torch::relu(f2(torch::relu(f1(x)))));
  }
};

struct ConvBn : torch::nn::Module {
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  ConvBn(int64_t in, int64_t out, int64_t k, int64_t stride) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2).bias(false)));
    bn = register_module("bn", torch::nn::BatchNorm2d(out));
  }
  torch::Tensor forward(torch::Tensor x) { return bn(conv(x)); }
};

struct Block : torch::nn::Module {
  std::shared_ptr<ConvBn> a, b, shortcut;
  Block(int64_t in, int64_t out, int64_t stride) {
    a = register_module("a", std::make_shared<ConvBn>(in, out, 3, stride));
    b = register_module("b", std::make_shared<ConvBn>(out, out, 3, 1));
    if (stride != 1 || in != out)
      shortcut = register_module("shortcut", std::make_shared<ConvBn>(in, out, 1, stride));
  }
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor h = b->forward(torch::relu(a->forward(x)));
    return torch::relu(h + (shortcut ? shortcut->forward(x) : x));
  }
};

struct ResNet8 : torch::nn::Module {
  std::shared_ptr<ConvBn> stem;
  std::shared_ptr<Block> s1, s2, s3;
  torch::nn::Linear fc{nullptr};
  ResNet8() {
    stem = register_module("stem", std::make_shared<ConvBn>(3, 16, 3, 1));
    s1 = register_module("s1", std::make_shared<Block>(16, 16, 1));
    s2 = register_module("s2", std::make_shared<Block>(16, 32, 2));
    s3 = register_module("s3", std::make_shared<Block>(32, 64, 2));
    fc = register_module("fc", torch::nn::Linear(64, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(stem->forward(x));
    x = s3->forward(s2->forward(s1->forward(x)));
    return fc(x.mean({2, 3}));
  }
};

/// A model behind one interface, and its per-example input shape.
struct TorchNet {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(torch::Tensor)> forward;
  std::vector<int64_t> image;
};

/// "mlp", "lenet5" or "resnet8"; an empty module for anything else.
inline TorchNet makeTorchNet(const std::string &name) {
  auto wrap = [](auto net, std::vector<int64_t> image) {
    return TorchNet{net, [net](torch::Tensor x) { return net->forward(x); }, std::move(image)};
  };
  if (name == "mlp")
    return wrap(std::make_shared<Mlp>(), {784});
  if (name == "lenet5")
    return wrap(std::make_shared<LeNet>(), {1, 28, 28});
  if (name == "resnet8")
    return wrap(std::make_shared<ResNet8>(), {3, 32, 32});
  return {};
}

/// One training step: forward, cross-entropy, backward, optimizer update.
/// Returns the loss (before the update).
inline torch::Tensor torchTrainStep(TorchNet &net, torch::optim::Optimizer &opt, const torch::Tensor &x,
                                    const torch::Tensor &y) {
  opt.zero_grad();
  torch::Tensor loss = torch::nn::functional::cross_entropy(net.forward(x), y);
  loss.backward();
  opt.step();
  return loss;
}

} // namespace bench
