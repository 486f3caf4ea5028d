//===- progress.cpp - Training progress bar and CSV metrics log -----------===//

#include "soma/progress.h"
#include "soma/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include <unistd.h>

namespace soma {

namespace {

/// Width of the [====>    ] part, in characters between the brackets.
constexpr int64_t kBarWidth = 30;
/// Minimum time between two interactive redraws: 10 per second is smooth
/// enough and keeps a fast training loop from spending its time on output.
constexpr double kRedrawInterval = 0.1;

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

} // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    return "?:??";
  auto total = static_cast<int64_t>(std::llround(seconds));
  int64_t h = total / 3600, m = total / 60 % 60, s = total % 60;
  if (h > 0)
    return fmt::format("{}:{:02}:{:02}", h, m, s);
  return fmt::format("{}:{:02}", m, s);
}

//===----------------------------------------------------------------------===//
// ProgressBar
//===----------------------------------------------------------------------===//

ProgressBar::ProgressBar(std::string label, int64_t total_steps, std::FILE *out,
                         std::optional<bool> interactive)
    : label_(std::move(label)), total_(total_steps), out_(out),
      interactive_(interactive.value_or(out && ::isatty(::fileno(out)))),
      start_(now_seconds()) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(int64_t step, double loss, double accuracy,
                         int64_t examples_so_far) {
  update_at(now_seconds() - start_, step, loss, accuracy, examples_so_far);
}

void ProgressBar::update_at(double elapsed_seconds, int64_t step, double loss,
                            double accuracy, int64_t examples_so_far) {
  updated_ = true;
  elapsed_ = elapsed_seconds;
  step_ = step;
  loss_ = loss;
  accuracy_ = accuracy;
  examples_ = examples_so_far;
  if (!out_ || finished_)
    return;
  if (interactive_) {
    // The last step is always shown: the caller may evaluate for a while
    // before calling finish(), and a bar stuck at 99% would mislead.
    bool last = total_ > 0 && step >= total_;
    if (last_draw_ < 0 || elapsed_seconds - last_draw_ >= kRedrawInterval ||
        last) {
      last_draw_ = elapsed_seconds;
      draw(false);
    }
    return;
  }
  // Plain mode: a line at the first update of each new tenth, except the
  // last one, which finish() prints with the total time.
  if (total_ <= 0 || step >= total_)
    return;
  int64_t tenth = step * 10 / total_;
  if (tenth > printed_tenth_) {
    printed_tenth_ = tenth;
    draw(false);
  }
}

void ProgressBar::finish() {
  if (finished_)
    return;
  finished_ = true;
  if (!out_ || !updated_)
    return;
  draw(true);
}

std::string ProgressBar::line(bool bar, bool final) const {
  std::string s = label_;
  if (total_ > 0) {
    if (bar) {
      int64_t clamped = std::clamp<int64_t>(step_, 0, total_);
      int64_t filled = clamped * kBarWidth / total_;
      std::string b(static_cast<size_t>(kBarWidth), ' ');
      std::fill_n(b.begin(), filled, '=');
      if (filled > 0 && filled < kBarWidth)
        b[filled - 1] = '>';
      s += fmt::format(" [{}]", b);
    }
    // Pad the step to the width of the total so the line does not jitter.
    int width = static_cast<int>(std::to_string(total_).size());
    s += fmt::format("  {:>{}}/{}", step_, width, total_);
  } else {
    s += fmt::format("  {}", step_);
  }
  if (!std::isnan(loss_))
    s += fmt::format("  loss {:.4f}", loss_);
  if (!std::isnan(accuracy_))
    s += fmt::format("  acc {:.1f}%", accuracy_ * 100.0);
  if (elapsed_ > 0 && examples_ > 0)
    s +=
        fmt::format("  {:.0f} ex/s", static_cast<double>(examples_) / elapsed_);
  if (final) {
    s += fmt::format("  time {}", format_duration(elapsed_));
  } else if (total_ > 0 && step_ > 0) {
    double eta = elapsed_ / static_cast<double>(step_) *
                 static_cast<double>(std::max<int64_t>(total_ - step_, 0));
    s += fmt::format("  ETA {}", format_duration(eta));
  }
  return s;
}

void ProgressBar::draw(bool final) {
  if (!interactive_) {
    std::fputs((line(false, final) + "\n").c_str(), out_);
    std::fflush(out_);
    return;
  }
  std::string text = line(true, final);
  size_t width = text.size();
  // Overwrite what is left of a longer previous line (portable, unlike the
  // ANSI erase-line escape).
  if (width < last_width_)
    text.append(last_width_ - width, ' ');
  last_width_ = width;
  std::fputs(("\r" + text + (final ? "\n" : "")).c_str(), out_);
  std::fflush(out_);
}

//===----------------------------------------------------------------------===//
// CsvLog
//===----------------------------------------------------------------------===//

namespace {

/// A CSV field for a number: empty for NaN (read as missing by pandas, R and
/// spreadsheets), else the shortest text that round-trips.
std::string field(double v) {
  if (std::isnan(v))
    return "";
  return fmt::format("{}", v);
}

} // namespace

const char *CsvLog::header() {
  return "epoch,step,loss,accuracy,lr,examples_per_second";
}

CsvLog::CsvLog(const std::string &path) : path_(path) {
  std::error_code ec;
  bool has_content = std::filesystem::is_regular_file(path, ec) &&
                     std::filesystem::file_size(path, ec) > 0 && !ec;
  if (has_content) {
    std::ifstream in(path);
    std::string first;
    std::getline(in, first);
    if (!first.empty() && first.back() == '\r')
      first.pop_back();
    if (first != header())
      throw Error(fmt::format("{}: exists and is not a soma metrics log (its "
                              "first line is '{}', expected '{}')",
                              path, first, header()));
  }
  file_ = std::fopen(path.c_str(), "a");
  if (!file_)
    throw Error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  if (!has_content &&
      (std::fprintf(file_, "%s\n", header()) < 0 || std::fflush(file_) != 0)) {
    int err = errno;
    std::fclose(file_);
    file_ = nullptr;
    throw Error(fmt::format("{}: cannot write: {}", path, std::strerror(err)));
  }
}

CsvLog::~CsvLog() {
  if (file_)
    std::fclose(file_);
}

CsvLog::CsvLog(CsvLog &&other) noexcept
    : path_(std::move(other.path_)),
      file_(std::exchange(other.file_, nullptr)) {}

CsvLog &CsvLog::operator=(CsvLog &&other) noexcept {
  if (this != &other) {
    if (file_)
      std::fclose(file_);
    path_ = std::move(other.path_);
    file_ = std::exchange(other.file_, nullptr);
  }
  return *this;
}

void CsvLog::row(int64_t epoch, int64_t step, double loss, double accuracy,
                 double lr, double examples_per_second) {
  if (!file_)
    throw Error(fmt::format("{}: the log was moved from", path_));
  std::string text =
      fmt::format("{},{},{},{},{},{}\n", epoch, step, field(loss),
                  field(accuracy), field(lr), field(examples_per_second));
  if (std::fputs(text.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw Error(
        fmt::format("{}: cannot write: {}", path_, std::strerror(errno)));
}

} // namespace soma
