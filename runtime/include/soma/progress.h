//===- soma/progress.h - Progress bar and CSV metrics log -------*- C++ -*-===//
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

namespace soma {

/// "0:07", "12:34", "1:02:03": m:ss below an hour, else h:mm:ss, rounded to
/// the nearest second. Negative, NaN or infinite durations give "?:??".
std::string format_duration(double seconds);

/// A progress bar for one epoch, e.g.
///   epoch 1/3 [===>   ]  412/937  loss 0.4321  acc 84.2%  5123 ex/s  ETA 0:07
/// Two modes:
///  - interactive (a terminal): the line is redrawn in place with '\r', at
///    most 10 times a second (plus the last step), and finish() redraws it
///    with the total time instead of the ETA and ends the line;
///  - plain (a pipe or file, as in CI logs): no '\r' and no bar; one line is
///    printed when the epoch first reaches 10%, 20%, ... 90% and finish()
///    prints the final line with the total time: at most ten lines an epoch.
/// A null `out` prints nothing.
class ProgressBar {
public:
  /// `label` starts every line ("epoch 1/3"); `total_steps` <= 0 means
  /// unknown (no bar, no ETA, and in plain mode only the final line).
  /// `interactive` defaults to whether `out` is a terminal.
  ProgressBar(std::string label, int64_t total_steps, std::FILE *out = stderr,
              std::optional<bool> interactive = std::nullopt);
  /// Calls finish() if it was not called.
  ~ProgressBar();
  ProgressBar(const ProgressBar &) = delete;
  ProgressBar &operator=(const ProgressBar &) = delete;

  /// Reports that `step` (1-based) steps are done, with the running mean
  /// loss and accuracy (a fraction in [0, 1], shown as a percentage; NaN
  /// when there is none, and a NaN loss is left out too) and the number of
  /// examples processed so far this epoch (for the throughput).
  void update(int64_t step, double loss, double accuracy,
              int64_t examples_so_far);
  /// update() at an explicit time since construction instead of the clock,
  /// so that tests and replays are deterministic.
  void update_at(double elapsed_seconds, int64_t step, double loss,
                 double accuracy, int64_t examples_so_far);
  /// Draws the final state, with the elapsed time of the last update, and
  /// ends the line. Does nothing the second time, or if nothing was updated.
  void finish();

  bool interactive() const { return interactive_; }

private:
  /// The text of the current state; `bar` adds the [===>  ] part, `final`
  /// shows the total time instead of the ETA.
  std::string line(bool bar, bool final) const;
  void draw(bool final);

  std::string label_;
  int64_t total_;
  std::FILE *out_;
  bool interactive_;
  double start_; // steady-clock seconds at construction

  // The latest update.
  bool updated_ = false;
  double elapsed_ = 0.0;
  int64_t step_ = 0;
  double loss_ = 0.0, accuracy_ = 0.0;
  int64_t examples_ = 0;

  double last_draw_ = -1.0;   // elapsed time of the last interactive draw
  size_t last_width_ = 0;     // to blank out a longer previous line
  int64_t printed_tenth_ = 0; // plain mode: the last 10% mark printed
  bool finished_ = false;
};

/// A CSV file of training metrics, one row per call, with the header
/// "epoch,step,loss,accuracy,lr,examples_per_second". An existing file with
/// that header is appended to (so a resumed run continues its log); one
/// with another first line is an error rather than being mixed up. Each row
/// is flushed at once so that the log survives a crash. NaN values are
/// written as empty fields.
class CsvLog {
public:
  /// Throws soma::Error if the file cannot be opened or has another header.
  explicit CsvLog(const std::string &path);
  ~CsvLog();
  CsvLog(CsvLog &&) noexcept;
  CsvLog &operator=(CsvLog &&) noexcept;

  /// Appends and flushes one row; throws soma::Error on a write error.
  void row(int64_t epoch, int64_t step, double loss, double accuracy, double lr,
           double examples_per_second);

  const std::string &path() const { return path_; }

  /// The header line, without the newline.
  static const char *header();

private:
  std::string path_;
  std::FILE *file_ = nullptr;
};

} // namespace soma
