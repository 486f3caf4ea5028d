// speed_soma: soma's side of the speed benchmark (bench/run_speed.py runs it).
//
//   speed_soma gemm|conv|ops THREADS REPS BUDGET_S
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
// ops: the memory-bound kernels (elementwise, softmax, batch norm,
// pooling; forward and backward), each with the time of a memcpy moving
// the bytes the op must read and write (bandwidth.h), their bound.
// peak: the measured FP32 FMA peak of THREADS threads (fma_peak.h), the
// best of REPS runs of BUDGET_S / REPS seconds each.
// The thread count comes from OMP_NUM_THREADS (set by the driver).
#include "soma_jit.h"
#include "soma_models.h"
#include "bandwidth.h"
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

/// The memory-bound kernels: elementwise ops, softmax, batch norm (its
/// training form), pooling, and their backward passes (the gradients given
/// the output's gradient, without the output, as for conv), each followed
/// by the copy that moves as many bytes as the op must read and write at
/// least (the item's "flops" field carries those bytes).
void ops(const Args &a) {
  // An activation of a small CNN (8 MiB) and a row-wise softmax (8 MiB).
  const soma::Shape act{32, 64, 32, 32}, pooled{32, 64, 16, 16}, rows{8192, 256};
  const int64_t f = 4, nAct = bench::numel(act), nPooled = bench::numel(pooled), nRows = bench::numel(rows);
  struct Case {
    std::string name;
    soma::Shape x;
    std::function<soma::Tensor(const soma::Tensor &)> op;
    int64_t fwdBytes, bwdBytes; // forward: x and y; backward: x, dy and dx
  };
  std::vector<Case> cases{
      {"relu", act, [](const soma::Tensor &x) { return soma::relu(x); }, 2 * nAct * f, 3 * nAct * f},
      {"softmax", rows, [](const soma::Tensor &x) { return soma::softmax(x, -1); }, 2 * nRows * f, 3 * nRows * f},
      {"batch_norm", act, [](const soma::Tensor &x) { return soma::nn::batch_norm(x); }, 2 * nAct * f,
       3 * nAct * f},
      {"max_pool", act, [](const soma::Tensor &x) { return soma::max_pool2d(x, {2, 2}); },
       (nAct + nPooled) * f, (2 * nAct + nPooled) * f},
      {"avg_pool", act, [](const soma::Tensor &x) { return soma::avg_pool2d(x, {2, 2}); },
       (nAct + nPooled) * f, (nAct + nPooled) * f},
      {"global_avg_pool", act, [](const soma::Tensor &x) { return soma::global_avg_pool2d(x); },
       nAct * f, nAct * f},
  };
  std::erase_if(cases, [](const Case &c) { return !bench::kept("OPS", c.name); });
  // The first calls of a new function were 3 to 6 times slower for a few
  // milliseconds (first touches of its buffers): 50 ms of calls before
  // measure()'s own warm-up.
  // Then the op's samples and the copy's of the same bytes.
  auto timeOp = [&](const std::string &item, int64_t bytes, const std::function<void()> &fn) {
    for (double t0 = bench::seconds(); bench::seconds() - t0 < 0.05;)
      fn();
    bench::emitTime(a, item, "soma", double(bytes), bench::measure(fn, a));
    bench::emitTime(a, item, "copy", double(bytes), bench::measureCopy(bytes, a));
  };
  for (const Case &c : cases) {
    soma::Array x(soma::DType::f32, c.x);
    bench::fill(x.data<float>(), x.numel(), 6);
    std::string item = c.name + ":";
    {
      soma::Graph g("op");
      g.output("y", c.op(g.input("x", c.x)));
      // (Training form: batch norm with the batch's statistics; the other
      // ops have one form.)
      soma::Inference fn = soma::compile_inference(g, {.mode = soma::Mode::train});
      std::map<std::string, soma::Array> in{{"x", x}};
      timeOp(item + "fwd", c.fwdBytes, [&] { fn.run(in); });
    }
    {
      soma::Graph g("op_grad");
      g.output("y", c.op(g.param("x", c.x, soma::init::zeros())));
      soma::Inference fn = soma::compile_gradients(g, {.output_gradient = true, .outputs = false});
      for (auto &[name, arr] : fn.params())
        if (name == "x")
          arr = x;
      soma::Array dy(soma::DType::f32, g.outputs()[0].shape);
      bench::fill(dy.data<float>(), dy.numel(), 7);
      std::map<std::string, soma::Array> in{{"grad_y", dy}};
      timeOp(item + "bwd", c.bwdBytes, [&] { fn.run(in); });
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
    else if (a.section == "ops")
      ops(a);
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
