// memory_torch: resident memory of libtorch training steps, measured the
// same way as memory_soma (see there) on the same models: the MLP
// 784-256-128-10, the zoo's LeNet-5 and the CIFAR ResNet-8 (option B
// shortcuts), Adam, softmax cross-entropy.
//
//   memory_torch MODEL BATCH THREADS
#include "memory_common.h"

#include <torch/torch.h>

#include <malloc.h>

namespace {

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

template <class Net> int run(int64_t batch, std::vector<int64_t> shape, long base) {
  auto net = std::make_shared<Net>();
  net->train();
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
  shape.insert(shape.begin(), batch);
  torch::Tensor x = torch::rand(shape), y = torch::randint(0, 10, {batch}, torch::kLong);
  auto step = [&] {
    opt.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
  };
  for (int i = 0; i < 2; ++i)
    step();
  malloc_trim(0);
  if (!bench::resetPeak()) {
    std::fprintf(stderr, "memory_torch: cannot reset the peak RSS (/proc/self/clear_refs)\n");
    return 1;
  }
  for (int i = 0; i < 10; ++i)
    step();
  long peak = bench::statusKiB("VmHWM");
  std::printf("%ld %ld\n", base, peak);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: memory_torch MODEL BATCH THREADS\n");
    return 2;
  }
  std::string model = argv[1];
  int64_t batch = std::atoll(argv[2]);
  torch::set_num_threads(std::atoi(argv[3]));
  torch::manual_seed(1);
  (void)torch::ones({2, 2}).sum().item<float>(); // initialise the library
  long base = bench::statusKiB("VmRSS");
  if (model == "mlp")
    return run<Mlp>(batch, {784}, base);
  if (model == "lenet5")
    return run<LeNet>(batch, {1, 28, 28}, base);
  if (model == "resnet8")
    return run<ResNet8>(batch, {3, 32, 32}, base);
  std::fprintf(stderr, "memory_torch: unknown model '%s' (mlp, lenet5, resnet8)\n", model.c_str());
  return 2;
}
