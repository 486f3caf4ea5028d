// speed_soma: soma's side of the speed benchmark (bench/run_speed.py runs it).
//
//   speed_soma gemm|conv THREADS REPS BUDGET_S
//   speed_soma models THREADS REPS BUDGET_S WEIGHTS_DIR
//   speed_soma compile THREADS REPS BUDGET_S MODEL BATCH train|infer
//   speed_soma peak THREADS REPS BUDGET_S
//
// gemm: one-op graphs (matmul with transpose flags) compiled into a bare
// Executable and called on pre-bound arrays. conv: the forward pass the
// same way; the backward passes through compile_gradients of
// loss = sum(conv2d(x, w) * dy), which also computes the forward pass and
// the loss (soma has no way to compile a gradient alone): with x as the
// only parameter it yields dx (bwd-data), with w dw (bwd-weights), with
// both the two. models: the zoo's training step (Adam) and inference;
// the initial parameters go to WEIGHTS_DIR for speed_torch, which loads
// them so that both compute the same losses and logits. compile: one
// compilation (of a training step or an inference function), timed.
// peak: the measured FP32 FMA peak of THREADS threads (fma_peak.h), the
// best of REPS runs of BUDGET_S / REPS seconds each.
// The thread count comes from OMP_NUM_THREADS (set by the driver).
#include "soma_jit.h"
#include "soma_models.h"
#include "fma_peak.h"
#include "speed_common.h"

#include <malloc.h>

#include <fstream>

namespace {

using bench::Args;

void gemm(const Args &a) {
  for (const bench::Gemm &s : bench::gemmShapes()) {
    soma::Graph g("gemm");
    soma::Tensor ta = g.input("a", s.ta ? soma::Shape{s.k, s.m} : soma::Shape{s.m, s.k});
    soma::Tensor tb = g.input("b", s.tb ? soma::Shape{s.n, s.k} : soma::Shape{s.k, s.n});
    g.output("c", soma::matmul(ta, tb, {.transpose_a = s.ta, .transpose_b = s.tb}));
    soma::Executable exe = bench::jit(g);
    std::vector<soma::Array> in{soma::Array(soma::DType::f32, g.inputs()[0].shape),
                                soma::Array(soma::DType::f32, g.inputs()[1].shape)};
    bench::fill(in[0].data<float>(), in[0].numel(), 1);
    bench::fill(in[1].data<float>(), in[1].numel(), 2);
    std::vector<soma::Array> out = exe.make_outputs();
    auto call = [&] { exe.call(in, {}, out); };
    call();
    bench::emitErr(a, s.name(), "soma", bench::gemmError(s, in[0].data<float>(), in[1].data<float>(),
                                                         out[0].data<float>()));
    bench::emitTime(a, s.name(), "soma", s.flops(), bench::measure(call, a));
  }
}

void conv(const Args &a) {
  for (const bench::Conv &cv : bench::convLayers()) {
    soma::Shape xs{cv.n, cv.c, cv.h, cv.w}, ws{cv.k, cv.c, cv.r, cv.r}, ys{cv.n, cv.k, cv.p(), cv.q()};
    soma::Array x(soma::DType::f32, xs), w(soma::DType::f32, ws), dy(soma::DType::f32, ys);
    bench::fill(x.data<float>(), x.numel(), 3);
    bench::fill(w.data<float>(), w.numel(), 4);
    bench::fill(dy.data<float>(), dy.numel(), 5);
    soma::Conv2dOptions co{.padding = cv.pad};
    std::string item = std::string(cv.name) + ":";
    {
      soma::Graph g("conv");
      soma::Tensor tx = g.input("x", xs); // inputs in this order
      soma::Tensor tw = g.input("w", ws);
      g.output("y", soma::conv2d(tx, tw, co));
      soma::Executable exe = bench::jit(g);
      std::vector<soma::Array> in{x, w}, out = exe.make_outputs();
      auto call = [&] { exe.call(in, {}, out); };
      call();
      bench::emitErr(a, item + "fwd", "soma",
                     bench::convError(cv, bench::Pass::fwd, x.data<float>(), w.data<float>(), nullptr,
                                      out[0].data<float>()));
      bench::emitTime(a, item + "fwd", "soma", cv.flops(), bench::measure(call, a));
    }
    // The backward passes alone, as oneDNN's: the gradients of y given dy
    // (the vector-Jacobian products) without y itself. Which of x and w
    // are parameters (differentiated).
    for (int which : {1, 2, 3}) {
      bool dx = which & 1, dw = which & 2;
      soma::Graph g("conv_grad");
      soma::Tensor tx = dx ? g.param("x", xs, soma::init::zeros()) : g.input("x", xs);
      soma::Tensor tw = dw ? g.param("w", ws, soma::init::zeros()) : g.input("w", ws);
      g.output("y", soma::conv2d(tx, tw, co));
      soma::Inference fn = soma::compile_gradients(g, {.output_gradient = true, .outputs = false});
      std::map<std::string, soma::Array> in{{"grad_y", dy}};
      for (auto &[name, arr] : fn.params())
        arr = name == "x" ? x : w;
      if (!dx)
        in["x"] = x;
      if (!dw)
        in["w"] = w;
      std::map<std::string, soma::Array> out = fn.run(in);
      std::string pass = std::string(dx ? "bwd_data" : "") + (dx && dw ? "+" : "") + (dw ? "bwd_weights" : "");
      if (dx)
        bench::emitErr(a, item + pass + "(dx)", "soma",
                       bench::convError(cv, bench::Pass::bwdData, x.data<float>(), w.data<float>(),
                                        dy.data<float>(), out["grad_x"].data<float>()));
      if (dw)
        bench::emitErr(a, item + pass + "(dw)", "soma",
                       bench::convError(cv, bench::Pass::bwdWeights, x.data<float>(), w.data<float>(),
                                        dy.data<float>(), out["grad_w"].data<float>()));
      double flops = cv.flops() * ((dx ? 1 : 0) + (dw ? 1 : 0));
      bench::emitTime(a, item + pass, "soma", flops, bench::measure([&] { fn.run(in); }, a));
    }
  }
}

/// Trainable parameters in order: rank, dims (int64), then the f32 values.
void writeWeights(const std::string &path, const soma::Graph &g, const soma::NamedArrays &params) {
  std::ofstream f(path, std::ios::binary);
  std::vector<soma::ParamInfo> infos = g.params();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!infos[i].trainable)
      continue;
    const soma::Array &p = params[i].second;
    int64_t rank = p.rank();
    f.write(reinterpret_cast<const char *>(&rank), sizeof rank);
    f.write(reinterpret_cast<const char *>(p.shape().data()), rank * sizeof(int64_t));
    f.write(static_cast<const char *>(p.raw()), static_cast<std::streamsize>(p.nbytes()));
  }
}

void models(const Args &a) {
  std::string dir = a.rest.empty() ? "" : a.rest[0];
  for (const bench::Model &m : bench::models()) {
    soma::Shape xs;
    soma::TrainStep step = bench::somaTrainStep(m.name, m.batch, &xs);
    std::map<std::string, soma::Array> batch = bench::somaBatch(xs);
    soma::NamedArrays initial;
    for (const auto &[n, p] : step.params())
      initial.emplace_back(n, p.clone());
    soma::Graph ig = soma::zoo::build(m.name, m.batch, /*with_loss=*/false, 1);
    if (!dir.empty())
      writeWeights(dir + "/" + bench::modelItem(m, "weights") + ".bin", ig, initial);
    // The losses of the first three steps (forward, backward and Adam
    // from the same start), then the timing.
    // SOMA_BENCH_KIND=train or infer keeps one of the two (for profiling).
    if (bench::kept("KIND", "train")) {
      std::vector<double> losses;
      for (int i = 0; i < 3; ++i)
        losses.push_back(step.run(batch).loss);
      bench::emitValues(a, bench::modelItem(m, "train"), "soma", losses);
      bench::emitTime(a, bench::modelItem(m, "train"), "soma", 0, bench::measure([&] { step.run(batch); }, a));
    }
    if (!bench::kept("KIND", "infer"))
      continue;

    soma::Inference fn = soma::compile_inference(ig);
    fn.set_params(initial);
    std::map<std::string, soma::Array> in{{"x", batch["x"]}};
    soma::Array logits = fn.run(in)["logits"];
    std::vector<double> first(logits.data<float>(), logits.data<float>() + std::min<int64_t>(30, logits.numel()));
    bench::emitValues(a, bench::modelItem(m, "infer"), "soma", first);
    bench::emitTime(a, bench::modelItem(m, "infer"), "soma", 0, bench::measure([&] { fn.run(in); }, a));
  }
}

/// One compilation in this process, timed from the graph (built beforehand).
void compile(const Args &a) {
  if (a.rest.size() != 3) {
    std::fprintf(stderr, "speed_soma compile: MODEL BATCH train|infer\n");
    std::exit(2);
  }
  const std::string &model = a.rest[0], &kind = a.rest[2];
  int64_t batch = std::atoll(a.rest[1].c_str());
  soma::Graph g = soma::zoo::build(model, batch, kind == "train", 1);
  double t0 = bench::seconds();
  if (kind == "train")
    (void)soma::compile_training(g, g.output_tensor("loss"), soma::optim::Adam{});
  else
    (void)soma::compile_inference(g);
  double ms = (bench::seconds() - t0) * 1e3;
  bench::emitTime(a, model + "_b" + std::to_string(batch) + "_" + kind, "soma", 0, {ms});
}

} // namespace

int main(int argc, char **argv) {
  Args a = bench::parseArgs(argc, argv, "[gemm|conv|models WEIGHTS_DIR|compile MODEL BATCH KIND|peak]");
  // Inference::run (conv gradients, model inference) allocates its outputs
  // at every call: serve them from the heap (glibc's largest mmap threshold,
  // 32 MiB) and keep freed memory there, so that they cost no page faults.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return bench::guarded("speed_soma", [&] {
    if (a.section == "gemm")
      gemm(a);
    else if (a.section == "conv")
      conv(a);
    else if (a.section == "models")
      models(a);
    else if (a.section == "compile")
      compile(a);
    else if (a.section == "peak") {
      bench::FmaPeak p = bench::measureFmaPeak(a.threads, a.reps, a.budget / a.reps);
      std::printf("peak %d %.1f %s\n", a.threads, p.gflops, p.isa.empty() ? "none" : p.isa.c_str());
    }
    else {
      std::fprintf(stderr, "speed_soma: unknown section '%s'\n", a.section.c_str());
      return 2;
    }
    return 0;
  });
}
