// lenet_fashion: LeNet-5 on Fashion-MNIST.
//
// The zoo's LeNet-5 (two convolution + max-pooling stages, then 120-84-10),
// one compiled training step (forward, backward through the convolutions
// and pooling, and the Adam update), the learning rate halved every three
// epochs. Prints the test accuracy after every epoch; exits non-zero below
// the target (90%).
//
//   lenet_fashion [EPOCHS (default 15)] [--no-progress]
#include <soma/soma.h>

#include <cstdio>
#include <cstring>

int main(int argc, char **argv) {
  int64_t epochs = 15;
  bool progress = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-progress") == 0)
      progress = false;
    else
      epochs = std::atoll(argv[i]);
  }
  try {
    const int64_t batch = 64;
    soma::Graph g = soma::zoo::lenet5(batch, /*with_loss=*/true, /*seed=*/1);
    soma::data::Dataset train = soma::data::fashion_mnist("train");
    soma::data::Dataset test = soma::data::fashion_mnist("test");
    train.x = train.x.reshaped({train.x.shape()[0], 1, 28, 28});
    test.x = test.x.reshaped({test.x.shape()[0], 1, 28, 28});
    soma::data::Loader trainLoader(train, batch, /*shuffle=*/true, /*seed=*/1);
    soma::data::Loader testLoader(test, batch, false, 0, soma::data::LastBatch::pad_wrap);

    soma::TrainStep step = soma::compile_training(
        g, g.output_tensor("loss"), soma::optim::Adam{{.lr = 2e-3}},
        {.schedule = soma::optim::Schedule::step_decay(3 * trainLoader.batches_per_epoch(), 0.5)});
    soma::FitOptions fo;
    fo.epochs = epochs;
    fo.progress = progress;
    soma::fit(step, trainLoader, &testLoader, fo);
    soma::StepResult result = soma::evaluate(step, testLoader);
    std::printf("test accuracy: %.2f%% (%lld of %lld)\n", 100 * result.accuracy(),
                static_cast<long long>(result.correct), static_cast<long long>(result.examples));
    return result.accuracy() >= 0.90 ? 0 : 1;
  } catch (const soma::Error &e) {
    std::fprintf(stderr, "lenet_fashion: %s\n", e.what());
    return 1;
  }
}
