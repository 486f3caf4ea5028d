// speed_torch: libtorch's side of the speed benchmark (bench/run_speed.py
// runs it): the training step (forward, cross-entropy, backward, Adam) and
// inference (eval mode, no autograd) of the models in torch_models.h, on
// the batch of speed_common.h and, when speed_soma wrote them to
// WEIGHTS_DIR, soma's initial parameters (so both compute the same losses
// and logits).
//
//   speed_torch models THREADS REPS BUDGET_S WEIGHTS_DIR
#include "speed_common.h"
#include "torch_models.h"

#include <fstream>

namespace {

using bench::Args;

/// Loads the parameters written by speed_soma (trainable ones, in order);
/// a 2-D soma weight [in, out] is transposed into torch's [out, in].
/// Returns false if the file is missing or does not match.
bool loadWeights(const std::string &path, torch::nn::Module &net) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    return false;
  torch::NoGradGuard noGrad;
  for (torch::Tensor &p : net.parameters()) {
    int64_t rank = 0;
    if (!f.read(reinterpret_cast<char *>(&rank), sizeof rank) || rank < 1 || rank > 4)
      return false;
    std::vector<int64_t> dims(rank);
    f.read(reinterpret_cast<char *>(dims.data()), rank * sizeof(int64_t));
    torch::Tensor t = torch::empty(dims, torch::kFloat);
    f.read(reinterpret_cast<char *>(t.data_ptr<float>()), t.numel() * sizeof(float));
    if (rank == 2 && p.dim() == 2 && dims[0] == p.size(1) && dims[1] == p.size(0) && dims[0] != dims[1])
      t = t.t();
    if (t.sizes() != p.sizes())
      return false;
    p.copy_(t);
  }
  return static_cast<bool>(f);
}

void models(const Args &a) {
  std::string dir = a.rest.empty() ? "" : a.rest[0];
  for (const bench::Model &m : bench::models()) {
    std::vector<int64_t> shape = m.image;
    shape.insert(shape.begin(), m.batch);
    torch::Tensor x = torch::empty(shape, torch::kFloat);
    std::vector<int32_t> labels(m.batch);
    bench::modelBatch(m.batch, bench::numel(m.image), x.data_ptr<float>(), labels.data());
    torch::Tensor y = torch::tensor(std::vector<int64_t>(labels.begin(), labels.end()), torch::kLong);
    std::string weights = dir + "/" + bench::modelItem(m, "weights") + ".bin";

    bench::TorchNet net = bench::makeTorchNet(m.name);
    bool same = !dir.empty() && loadWeights(weights, *net.module);
    net.module->train();
    torch::optim::Adam opt(net.module->parameters(), torch::optim::AdamOptions(1e-3));
    std::vector<double> losses;
    for (int i = 0; i < 3; ++i)
      losses.push_back(bench::torchTrainStep(net, opt, x, y).item<double>());
    if (same)
      bench::emitValues(a, bench::modelItem(m, "train"), "libtorch", losses);
    bench::emitTime(a, bench::modelItem(m, "train"), "libtorch", 0,
                    bench::measure([&] { bench::torchTrainStep(net, opt, x, y); }, a));

    bench::TorchNet inf = bench::makeTorchNet(m.name);
    same = !dir.empty() && loadWeights(weights, *inf.module);
    inf.module->eval();
    torch::NoGradGuard noGrad;
    torch::Tensor logits = inf.forward(x).contiguous();
    std::vector<double> first(logits.data_ptr<float>(),
                              logits.data_ptr<float>() + std::min<int64_t>(30, logits.numel()));
    if (same)
      bench::emitValues(a, bench::modelItem(m, "infer"), "libtorch", first);
    bench::emitTime(a, bench::modelItem(m, "infer"), "libtorch", 0, bench::measure([&] { inf.forward(x); }, a));
  }
}

} // namespace

int main(int argc, char **argv) {
  Args a = bench::parseArgs(argc, argv, "models WEIGHTS_DIR");
  torch::set_num_threads(a.threads);
  torch::manual_seed(1);
  if (a.section != "models") {
    std::fprintf(stderr, "speed_torch: only the section 'models'\n");
    return 2;
  }
  return bench::guarded("speed_torch", [&] {
    models(a);
    return 0;
  });
}
