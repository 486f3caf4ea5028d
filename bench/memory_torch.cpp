// memory_torch: resident memory of libtorch training steps, measured the
// same way as memory_soma (see there) on the same models: the MLP
// 784-256-128-10, the zoo's LeNet-5 and the CIFAR ResNet-8 (option B
// shortcuts), Adam, softmax cross-entropy.
//
//   memory_torch MODEL BATCH THREADS
#include "memory_common.h"
#include "torch_models.h"

#include <torch/torch.h>

#include <malloc.h>

namespace {

int run(const std::string &model, int64_t batch, long base) {
  bench::TorchNet net = bench::makeTorchNet(model);
  if (!net.module) {
    std::fprintf(stderr, "memory_torch: unknown model '%s' (mlp, lenet5, resnet8)\n", model.c_str());
    return 2;
  }
  net.module->train();
  torch::optim::Adam opt(net.module->parameters(), torch::optim::AdamOptions(1e-3));
  std::vector<int64_t> shape = net.image;
  shape.insert(shape.begin(), batch);
  torch::Tensor x = torch::rand(shape), y = torch::randint(0, 10, {batch}, torch::kLong);
  auto step = [&] { bench::torchTrainStep(net, opt, x, y); };
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
  return run(model, batch, base);
}
