//===- soma/train.h - Running training steps, checkpoints, the fit loop -*- C++ -*-===//
#pragma once

#include "soma/data.h"
#include "soma/executable.h"
#include "soma/io.h"
#include "soma/optim.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace soma {

/// The result of one step or one evaluated batch.
struct StepResult {
  double loss = std::numeric_limits<double>::quiet_NaN();
  /// Correct predictions among the batch's real examples (-1 when the loss
  /// is not a classification loss).
  int64_t correct = -1;
  int64_t examples = 0;
  double accuracy() const {
    return correct < 0 || examples == 0 ? std::numeric_limits<double>::quiet_NaN()
                                        : static_cast<double>(correct) / static_cast<double>(examples);
  }
};

/// A compiled training step with the parameters and optimizer state it
/// updates (see soma::compile_training). Steady-state steps and
/// evaluations allocate nothing: inputs, outputs and the workspace are
/// reused from call to call.
class TrainStep {
public:
  TrainStep() = default;
  TrainStep(Executable train, Executable eval, NamedArrays params, optim::Optimizer opt,
            optim::Schedule schedule, std::string model);

  /// One step: forward, backward and update. `batch` maps every data input
  /// of the graph to an array. A NaN or infinite loss throws soma::Error
  /// naming the step (the parameters are then not trustworthy: reload the
  /// last checkpoint).
  StepResult run(const std::map<std::string, Array> &batch);
  /// The forward pass alone (no update). Only the first `real` examples
  /// count towards `correct` (for a padded last batch); the loss is the
  /// mean over the whole batch.
  StepResult evaluate(const std::map<std::string, Array> &batch, int64_t real = -1);

  /// Steps done so far.
  int64_t step() const { return step_; }
  /// The learning rate the next step will use.
  double lr() const;
  const optim::Optimizer &optimizer() const { return opt_; }
  bool classification() const;

  NamedArrays &params() { return params_; }
  const NamedArrays &params() const { return params_; }
  NamedArrays &states() { return states_; }
  const Signature &train_signature() const { return train_.signature(); }
  const Signature &eval_signature() const { return eval_.signature(); }

  /// Writes parameters, optimizer state and the step count to a
  /// safetensors file, atomically (the old file survives a failure).
  /// `extra` is stored as metadata (e.g. the epoch and batch to resume at).
  void save(const std::string &path, const std::map<std::string, std::string> &extra = {}) const;
  /// Restores a checkpoint written by save(). Everything is validated
  /// before anything is changed: the model name, the optimizer, and each
  /// tensor's name, dtype and shape; the first mismatch is reported with
  /// both shapes. Returns the checkpoint's metadata.
  std::map<std::string, std::string> load(const std::string &path);

private:
  /// Fills `in` (reusing its capacity: a steady-state step allocates
  /// nothing) with the data inputs of `sig` from `batch`.
  void dataInputs(const std::map<std::string, Array> &batch, const Signature &sig, bool withLr,
                  std::vector<Array> &in) const;

  Executable train_, eval_;
  // Buffers reused by every call, so that steady-state steps allocate no
  // tensors: the learning-rate scalar and the outputs.
  mutable Array lr_;
  std::vector<Array> trainOut_, evalOut_;
  std::vector<Array> trainIn_, evalIn_; // the inputs of the last call of each
  int trainLoss_ = -1, trainCorrect_ = -1, evalLoss_ = -1, evalCorrect_ = -1; // output indices
  int64_t trainExamples_ = 1, evalExamples_ = 1; // rows per batch
  NamedArrays params_, states_;
  std::vector<Array> paramArrays_, stateArrays_;
  optim::Optimizer opt_;
  optim::Schedule schedule_;
  std::string model_;
  int64_t step_ = 0;
};

/// How fit() trains.
struct FitOptions {
  int64_t epochs = 1;
  /// Input names of the data: features and labels.
  std::string x = "x", y = "y";
  /// Progress bar per epoch (on stderr) and one summary line per epoch (on
  /// `out`).
  bool progress = true;
  std::FILE *out = stdout;
  /// A CSV file of per-step metrics (empty = none).
  std::string log_csv;
  /// Saved after every epoch (empty = none).
  std::string checkpoint;
  /// Resume from this checkpoint: parameters, optimizer state, step count
  /// and the position in the data; the run continues bit for bit as if it
  /// had never stopped.
  std::string resume;
  /// Stop after this many steps in total (0 = no limit; for tests and demos).
  int64_t max_steps = 0;
};

/// What one epoch achieved.
struct EpochSummary {
  int64_t epoch = 0; // 1-based
  double train_loss = 0, train_accuracy = 0;
  double test_loss = std::numeric_limits<double>::quiet_NaN();
  double test_accuracy = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0;
  double examples_per_second = 0;
};

/// Trains for options.epochs over `train`, evaluating on `test` after every
/// epoch when given. A NaN/Inf loss stops with an error naming the step;
/// the last checkpoint written stays as it was.
std::vector<EpochSummary> fit(TrainStep &step, const data::Loader &train,
                              const data::Loader *test, const FitOptions &options = {});

/// Accuracy and mean loss of the model on every example of `loader` (the
/// last batch padded as the loader says; only real examples count).
StepResult evaluate(TrainStep &step, const data::Loader &loader, const std::string &x = "x",
                    const std::string &y = "y");

} // namespace soma
