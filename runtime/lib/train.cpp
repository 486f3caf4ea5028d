//===- train.cpp - Running training steps, checkpoints, the fit loop -------===//

#include "soma/train.h"
#include "soma/error.h"
#include "soma/progress.h"

#include <chrono>
#include <cstring>
#include <filesystem>

namespace soma {

static std::string typeString(const Array &a) {
  return std::string(dtype_name(a.dtype())) + shape_str(a.shape());
}
static std::string typeString(const TensorSpec &s) {
  return std::string(dtype_name(s.dtype)) + shape_str(s.shape);
}

TrainStep::TrainStep(Executable train, Executable eval, NamedArrays params,
                     optim::Optimizer opt, optim::Schedule schedule, std::string model)
    : train_(std::move(train)), eval_(std::move(eval)), opt_(opt), schedule_(schedule),
      model_(std::move(model)) {
  const Signature &sig = train_.signature();
  params_ = sig.match_params(params);
  for (const auto &[name, a] : params_)
    paramArrays_.push_back(a);
  lr_ = Array(DType::f32, {});
  trainOut_ = train_.make_outputs();
  evalOut_ = eval_.make_outputs();
  stateArrays_ = train_.make_states();
  for (size_t i = 0; i < sig.states.size(); ++i)
    states_.emplace_back(sig.states[i].name, stateArrays_[i]);
  // What run() and evaluate() read from their outputs, found once.
  trainLoss_ = sig.find_output("loss");
  trainCorrect_ = sig.find_output("soma.correct");
  trainExamples_ = 1;
  for (const TensorSpec &s : sig.inputs)
    if (s.name != "soma.lr" && !s.shape.empty()) {
      trainExamples_ = s.shape[0];
      break;
    }
  const Signature &es = eval_.signature();
  evalLoss_ = es.find_output("loss");
  evalCorrect_ = es.find_output("soma.correct");
  const Shape &perExample = es.outputs[evalCorrect_ >= 0 ? evalCorrect_ : 0].shape;
  evalExamples_ = perExample.empty() ? 1 : perExample[0];
}

double TrainStep::lr() const { return schedule_.lr(optim::common(opt_).lr, step_); }

bool TrainStep::classification() const { return trainCorrect_ >= 0; }

void TrainStep::dataInputs(const std::map<std::string, Array> &batch, const Signature &sig,
                           bool withLr, std::vector<Array> &in) const {
  // Assigning over the previous call's arrays reuses their shape vectors:
  // no allocation once the sizes are known.
  in.resize(sig.inputs.size());
  for (size_t k = 0; k < sig.inputs.size(); ++k) {
    const TensorSpec &spec = sig.inputs[k];
    if (spec.name == "soma.lr") {
      if (!withLr)
        throw Error("internal: an eval function takes no learning rate");
      lr_.data<float>()[0] = static_cast<float>(lr());
      in[k] = lr_;
      continue;
    }
    auto it = batch.find(spec.name);
    if (it == batch.end())
      throw Error("input '" + spec.name + "' (" + typeString(spec) + ") is missing from the batch");
    in[k] = it->second;
  }
}

StepResult TrainStep::run(const std::map<std::string, Array> &batch) {
  const Signature &sig = train_.signature();
  dataInputs(batch, sig, true, trainIn_);
  std::vector<Array> &out = trainOut_;
  train_.call(trainIn_, paramArrays_, stateArrays_, out);
  StepResult r;
  r.loss = out[trainLoss_].data<float>()[0];
  if (trainCorrect_ >= 0)
    r.correct = static_cast<int64_t>(out[trainCorrect_].data<float>()[0]);
  r.examples = trainExamples_;
  ++step_;
  if (!std::isfinite(r.loss))
    throw Error(std::string("the loss is ") + (std::isnan(r.loss) ? "NaN" : "infinite") +
                " at step " + std::to_string(step_) +
                "; the parameters are no longer usable (lower the learning rate, or clip "
                "the gradients, and restart from the last checkpoint)");
  return r;
}

StepResult TrainStep::evaluate(const std::map<std::string, Array> &batch, int64_t real) {
  const Signature &sig = eval_.signature();
  dataInputs(batch, sig, false, evalIn_);
  std::vector<Array> &out = evalOut_;
  eval_.call(evalIn_, paramArrays_, out);
  StepResult r;
  r.loss = out[evalLoss_].data<float>()[0];
  int64_t n = evalExamples_;
  r.examples = real < 0 ? n : real;
  if (evalCorrect_ >= 0) {
    const float *hits = out[evalCorrect_].data<float>();
    r.correct = 0;
    for (int64_t i = 0; i < r.examples && i < n; ++i)
      r.correct += hits[i] > 0.5f ? 1 : 0;
  }
  return r;
}

void TrainStep::save(const std::string &path, const std::map<std::string, std::string> &extra) const {
  NamedArrays all = params_;
  for (const auto &s : states_)
    all.push_back(s);
  std::map<std::string, std::string> meta = extra;
  meta["soma.model"] = model_;
  meta["soma.optimizer"] = optim::name(opt_);
  meta["soma.step"] = std::to_string(step_);
  write_safetensors(path, all, meta);
}

std::map<std::string, std::string> TrainStep::load(const std::string &path) {
  std::map<std::string, std::string> meta;
  NamedArrays file = read_safetensors(path, &meta);
  auto need = [&](const char *key) {
    auto it = meta.find(key);
    if (it == meta.end())
      throw Error(path + ": not a soma checkpoint (no '" + key + "' in its metadata)");
    return it->second;
  };
  if (need("soma.model") != model_)
    throw Error(path + ": checkpoint of model '" + meta["soma.model"] + "', not of '" + model_ + "'");
  if (need("soma.optimizer") != optim::name(opt_))
    throw Error(path + ": checkpoint written with optimizer " + meta["soma.optimizer"] +
                ", but this run uses " + optim::name(opt_));
  int64_t step = 0;
  try {
    step = std::stoll(need("soma.step"));
  } catch (const std::logic_error &) {
    throw Error(path + ": bad step count '" + meta["soma.step"] + "' in its metadata");
  }
  // Validate everything before touching anything.
  std::vector<std::pair<Array *, const Array *>> copies;
  auto match = [&](NamedArrays &mine, const char *what) {
    for (auto &[name, a] : mine) {
      const Array *found = nullptr;
      for (const auto &[n, b] : file)
        if (n == name)
          found = &b;
      if (!found)
        throw Error(path + ": the checkpoint has no " + what + " '" + name + "' (" + typeString(a) + ")");
      if (found->dtype() != a.dtype() || found->shape() != a.shape())
        throw Error(path + ": " + what + " '" + name + "' is " + typeString(*found) +
                    " in the checkpoint but " + typeString(a) + " in the model");
      copies.push_back({&a, found});
    }
  };
  match(params_, "parameter");
  match(states_, "optimizer state");
  for (const auto &[n, b] : file) {
    bool known = false;
    for (auto &[name, a] : params_)
      known |= name == n;
    for (auto &[name, a] : states_)
      known |= name == n;
    if (!known)
      throw Error(path + ": the checkpoint has a tensor '" + n + "' that the model does not have");
  }
  // Copy into the existing buffers (the executables' arrays share them).
  for (auto [dst, src] : copies)
    std::memcpy(dst->raw(), src->raw(), src->nbytes());
  step_ = step;
  return meta;
}

StepResult evaluate(TrainStep &step, const data::Loader &loader, const std::string &x,
                    const std::string &y) {
  StepResult total;
  total.loss = 0;
  total.correct = step.classification() ? 0 : -1;
  double lossSum = 0;
  for (const data::Batch &b : loader.epoch(0)) {
    StepResult r = step.evaluate({{x, b.x}, {y, b.y}}, b.size);
    lossSum += r.loss * static_cast<double>(b.size);
    total.examples += b.size;
    if (r.correct >= 0)
      total.correct += r.correct;
  }
  total.loss = total.examples ? lossSum / static_cast<double>(total.examples) : 0.0;
  return total;
}

std::vector<EpochSummary> fit(TrainStep &step, const data::Loader &train, const data::Loader *test,
                              const FitOptions &o) {
  int64_t startEpoch = 0, startBatch = 0;
  if (!o.resume.empty()) {
    auto meta = step.load(o.resume);
    auto get = [&](const char *k) -> int64_t {
      auto it = meta.find(k);
      if (it == meta.end())
        return 0;
      try {
        size_t used = 0;
        int64_t v = std::stoll(it->second, &used);
        if (used != it->second.size() || v < 0)
          throw std::invalid_argument(it->second);
        return v;
      } catch (const std::logic_error &) {
        throw Error(o.resume + ": bad '" + k + "' in its metadata: '" + it->second + "'");
      }
    };
    startEpoch = get("soma.epoch");
    startBatch = get("soma.batch");
    if (startBatch > train.batches_per_epoch())
      throw Error(o.resume + ": resumes at batch " + std::to_string(startBatch) + ", but an epoch has " +
                  std::to_string(train.batches_per_epoch()) + " batches (another batch size or data set?)");
    if (o.out)
      std::fprintf(o.out, "resumed from %s at epoch %lld, batch %lld (step %lld)\n", o.resume.c_str(),
                   static_cast<long long>(startEpoch + 1), static_cast<long long>(startBatch),
                   static_cast<long long>(step.step()));
  }
  std::unique_ptr<CsvLog> log;
  if (!o.log_csv.empty())
    log = std::make_unique<CsvLog>(o.log_csv);
  std::vector<EpochSummary> history;
  int64_t batches = train.batches_per_epoch();
  for (int64_t epoch = startEpoch; epoch < o.epochs; ++epoch) {
    auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<ProgressBar> bar;
    if (o.progress)
      bar = std::make_unique<ProgressBar>("epoch " + std::to_string(epoch + 1) + "/" +
                                              std::to_string(o.epochs),
                                          batches);
    double lossSum = 0;
    int64_t correct = 0, examples = 0, done = 0;
    bool stopped = false;
    int64_t b = startBatch;
    for (const data::Batch &batch : train.epoch(epoch).skip(startBatch)) {
      StepResult r;
      double lr = step.lr(); // the rate this step uses (for the log)
      try {
        r = step.run({{o.x, batch.x}, {o.y, batch.y}});
      } catch (const Error &e) {
        if (bar)
          bar->finish();
        bool kept = !o.checkpoint.empty() && std::filesystem::exists(o.checkpoint);
        std::string keep = kept ? "; the last good checkpoint " + o.checkpoint + " is kept" : "";
        throw Error(std::string(e.what()) + keep);
      }
      ++b;
      ++done;
      lossSum += r.loss;
      examples += r.examples;
      if (r.correct >= 0)
        correct += r.correct;
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double acc = step.classification() ? static_cast<double>(correct) / static_cast<double>(examples)
                                         : std::numeric_limits<double>::quiet_NaN();
      if (bar)
        bar->update(b, lossSum / static_cast<double>(done), acc, examples);
      if (log)
        log->row(epoch + 1, step.step(), r.loss, r.accuracy(), lr,
                 secs > 0 ? static_cast<double>(examples) / secs : 0.0);
      if (o.max_steps > 0 && step.step() >= o.max_steps) {
        stopped = true;
        break;
      }
    }
    if (bar)
      bar->finish();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EpochSummary s;
    s.epoch = epoch + 1;
    s.train_loss = done ? lossSum / static_cast<double>(done) : 0.0;
    s.train_accuracy = step.classification() && examples ? static_cast<double>(correct) / static_cast<double>(examples)
                                                          : std::numeric_limits<double>::quiet_NaN();
    s.seconds = secs;
    s.examples_per_second = secs > 0 ? static_cast<double>(examples) / secs : 0.0;
    bool epochDone = !stopped || b == batches;
    if (test && epochDone) {
      StepResult t = evaluate(step, *test, o.x, o.y);
      s.test_loss = t.loss;
      s.test_accuracy = t.accuracy();
    }
    if (o.out) {
      std::fprintf(o.out, "epoch %lld/%lld: loss %.4f", static_cast<long long>(s.epoch),
                   static_cast<long long>(o.epochs), s.train_loss);
      if (!std::isnan(s.train_accuracy))
        std::fprintf(o.out, "  acc %.2f%%", 100 * s.train_accuracy);
      if (!std::isnan(s.test_loss)) {
        std::fprintf(o.out, " | test loss %.4f", s.test_loss);
        if (!std::isnan(s.test_accuracy))
          std::fprintf(o.out, "  acc %.2f%%", 100 * s.test_accuracy);
      }
      std::fprintf(o.out, " | %.1f s, %.0f examples/s\n", s.seconds, s.examples_per_second);
      std::fflush(o.out);
    }
    history.push_back(s);
    if (!o.checkpoint.empty()) {
      int64_t nextEpoch = epochDone ? epoch + 1 : epoch;
      int64_t nextBatch = epochDone ? 0 : b;
      step.save(o.checkpoint, {{"soma.epoch", std::to_string(nextEpoch)},
                               {"soma.batch", std::to_string(nextBatch)}});
    }
    startBatch = 0;
    if (stopped)
      break;
  }
  return history;
}

} // namespace soma
