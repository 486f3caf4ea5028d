// mlp_fashion: the MLP 784-256-128-10 on Fashion-MNIST.
//
// Builds the network with the DSL, compiles one training step (forward,
// backward and the Adam update in one call), trains with a progress bar and
// prints the test accuracy after every epoch. Exits non-zero if the final
// test accuracy is below the target (88%).
//
//   mlp_fashion [EPOCHS (default 10)] [--no-progress]
#include <soma/soma.h>

#include <cstdio>
#include <cstring>

int main(int argc, char **argv) {
  int64_t epochs = 10;
  bool progress = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-progress") == 0)
      progress = false;
    else
      epochs = std::atoll(argv[i]);
  }
  try {
    const int64_t batch = 64;
    soma::Graph g("mlp_fashion", /*seed=*/1);
    soma::Tensor x = g.input("x", {batch, 784});
    soma::Tensor y = g.input("y", {batch}, soma::DType::i32);
    soma::Tensor h = soma::relu(soma::nn::dense(x, 256, {.weight_init = soma::init::he_uniform()}));
    h = soma::relu(soma::nn::dense(h, 128, {.weight_init = soma::init::he_uniform()}));
    soma::Tensor logits = soma::nn::dense(h, 10);
    soma::Tensor loss = soma::softmax_cross_entropy(logits, y);

    // Adam with the learning rate halved every two epochs.
    soma::data::Loader trainLoader = soma::data::fashion_mnist("train", batch, /*shuffle=*/true, /*seed=*/1);
    int64_t perEpoch = trainLoader.batches_per_epoch();
    soma::TrainStep step = soma::compile_training(
        g, loss, soma::optim::Adam{{.lr = 1e-3}},
        {.schedule = soma::optim::Schedule::step_decay(2 * perEpoch, 0.5)});
    soma::data::Loader testLoader = soma::data::fashion_mnist("test", batch); // in order, padded

    soma::FitOptions fo;
    fo.epochs = epochs;
    fo.progress = progress;
    soma::fit(step, trainLoader, &testLoader, fo);
    soma::StepResult result = soma::evaluate(step, testLoader);
    std::printf("test accuracy: %.2f%% (%lld of %lld)\n", 100 * result.accuracy(),
                static_cast<long long>(result.correct), static_cast<long long>(result.examples));
    return result.accuracy() >= 0.88 ? 0 : 1;
  } catch (const soma::Error &e) {
    std::fprintf(stderr, "mlp_fashion: %s\n", e.what());
    return 1;
  }
}
