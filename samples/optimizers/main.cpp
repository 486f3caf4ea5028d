// optimizers: every optimizer of the course on the same problem, side by side.
//
// The "two moons" data set (two interleaved half circles with noise), an MLP
// 2-32-32-2 with tanh, the same initialisation and the same mini-batches for
// every optimizer. Writes the mean training loss of each epoch to a CSV
// file (one column per optimizer) and prints the final loss and accuracy.
//
//   optimizers [OUT.csv] [EPOCHS]
#include <soma/soma.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

namespace {

/// Two interleaved half circles: class 0 is the upper moon, class 1 the
/// lower one shifted right and down, each point with Gaussian noise.
soma::data::Dataset moons(int64_t n, double noise, uint32_t seed) {
  soma::data::Dataset d{soma::Array(soma::DType::f32, {n, 2}), soma::Array(soma::DType::i32, {n})};
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> angle(0, M_PI);
  std::normal_distribution<double> jitter(0, noise);
  for (int64_t i = 0; i < n; ++i) {
    int label = static_cast<int>(i % 2);
    double t = angle(gen);
    double px = label == 0 ? std::cos(t) : 1 - std::cos(t);
    double py = label == 0 ? std::sin(t) : 0.5 - std::sin(t);
    d.x.data<float>()[2 * i] = static_cast<float>(px + jitter(gen));
    d.x.data<float>()[2 * i + 1] = static_cast<float>(py + jitter(gen));
    d.y.data<int32_t>()[i] = label;
  }
  return d;
}

} // namespace

int main(int argc, char **argv) {
  std::string out = argc > 1 ? argv[1] : "optimizers.csv";
  int64_t epochs = argc > 2 ? std::atoll(argv[2]) : 40;
  using namespace soma::optim;
  std::vector<std::pair<std::string, Optimizer>> optimizers = {
      {"sgd", SGD{{.lr = 0.1}}},           {"momentum", Momentum{{.lr = 0.05}}},
      {"nesterov", Nesterov{{.lr = 0.05}}}, {"adagrad", AdaGrad{{.lr = 0.05}}},
      {"rmsprop", RMSProp{{.lr = 0.003}}}, {"adadelta", AdaDelta{{.lr = 1.0}}},
      {"adam", Adam{{.lr = 0.005}}},      {"adamax", AdaMax{{.lr = 0.01}}},
      {"nadam", NAdam{{.lr = 0.005}}},    {"adamw", AdamW{{{.lr = 0.005}}}},
  };
  soma::data::Loader loader(moons(512, 0.1, 7), 32, true, 3); // 16 steps per epoch

  std::vector<std::vector<double>> curves;
  bool ok = true;
  std::printf("%-9s %10s %10s %9s\n", "optimizer", "first loss", "last loss", "accuracy");
  for (auto &[name, opt] : optimizers) {
    soma::Graph g("moons", /*seed=*/5); // the same initial weights for everyone
    soma::Tensor x = g.input("x", {32, 2});
    soma::Tensor y = g.input("y", {32}, soma::DType::i32);
    soma::Tensor h = soma::tanh(soma::nn::dense(x, 32));
    h = soma::tanh(soma::nn::dense(h, 32));
    soma::Tensor loss = soma::softmax_cross_entropy(soma::nn::dense(h, 2), y);
    soma::TrainStep step = soma::compile_training(g, loss, opt);
    soma::FitOptions fo;
    fo.epochs = epochs;
    fo.progress = false;
    fo.out = nullptr;
    std::vector<soma::EpochSummary> history = soma::fit(step, loader, nullptr, fo);
    std::vector<double> curve;
    for (const soma::EpochSummary &e : history)
      curve.push_back(e.train_loss);
    curves.push_back(curve);
    soma::data::Loader all(loader.dataset(), 32, false);
    double accuracy = soma::evaluate(step, all).accuracy();
    std::printf("%-9s %10.4f %10.4f %8.1f%%\n", name.c_str(), curve.front(), curve.back(), 100 * accuracy);
    ok = ok && curve.back() < curve.front();
  }

  std::ofstream csv(out);
  csv << "epoch";
  for (auto &[name, opt] : optimizers)
    csv << "," << name;
  csv << "\n";
  for (int64_t e = 0; e < epochs; ++e) {
    csv << e + 1;
    for (const auto &curve : curves)
      csv << "," << curve[e];
    csv << "\n";
  }
  if (!csv)
    std::fprintf(stderr, "optimizers: cannot write %s\n", out.c_str());
  std::printf("wrote %s\n", out.c_str());
  return ok && csv ? 0 : 1;
}
