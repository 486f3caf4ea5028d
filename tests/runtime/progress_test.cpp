//===- progress_test.cpp - ProgressBar, format_duration and CsvLog --------===//

#include "soma/io.h"
#include "soma/progress.h"

#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

namespace soma {
namespace {

using soma::test::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

/// An anonymous temporary file to print into, and what was printed.
class Capture {
public:
  Capture() : file_(std::tmpfile(), &std::fclose) {}
  std::FILE *get() { return file_.get(); }
  std::string text() {
    std::fflush(file_.get());
    long end = std::ftell(file_.get());
    std::string s(static_cast<size_t>(end), '\0');
    std::rewind(file_.get());
    size_t n = std::fread(s.data(), 1, s.size(), file_.get());
    s.resize(n);
    std::fseek(file_.get(), 0, SEEK_END);
    return s;
  }

private:
  std::unique_ptr<std::FILE, int (*)(std::FILE *)> file_;
};

/// "[", `filled` '=' (the last one a '>' if `arrow`), `empty` spaces, "]".
std::string bar_text(size_t filled, bool arrow, size_t empty) {
  std::string s = "[";
  s.append(filled, '=');
  if (arrow)
    s.back() = '>';
  s.append(empty, ' ');
  s += ']';
  return s;
}

size_t count(const std::string &s, char c) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), c));
}

TEST(ProgressTest, FormatDuration) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(7), "0:07");
  EXPECT_EQ(format_duration(7.4), "0:07");
  EXPECT_EQ(format_duration(59.6), "1:00");
  EXPECT_EQ(format_duration(62), "1:02");
  EXPECT_EQ(format_duration(3599), "59:59");
  EXPECT_EQ(format_duration(3600), "1:00:00");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(36000 + 59), "10:00:59");
  EXPECT_EQ(format_duration(-1), "?:??");
  EXPECT_EQ(format_duration(NAN), "?:??");
  EXPECT_EQ(format_duration(INFINITY), "?:??");
}

TEST(ProgressTest, InteractiveLineHasEverything) {
  Capture out;
  {
    ProgressBar bar("epoch 1/3", 937, out.get(), /*interactive=*/true);
    EXPECT_TRUE(bar.interactive());
    // 412 steps in 10 s: 525 steps left at 41.2 steps/s is 12.7 s.
    bar.update_at(10.0, 412, 0.43214, 0.8421, 51230);
    std::string s = out.text();
    EXPECT_EQ(s.front(), '\r');
    // 412/937 of 30 is 13.2: 12 '=' and the '>'.
    EXPECT_THAT(s, HasSubstr("epoch 1/3 " + bar_text(13, true, 17) +
                             "  412/937  loss 0.4321  acc 84.2%  5123 ex/s  "
                             "ETA 0:13"));
    EXPECT_EQ(count(s, '\n'), 0u);
    bar.finish();
    s = out.text();
    EXPECT_EQ(s.back(), '\n');
    EXPECT_THAT(s, HasSubstr("time 0:10"));
    bar.finish(); // a second finish prints nothing
    EXPECT_EQ(out.text(), s);
  }
  EXPECT_EQ(count(out.text(), '\n'), 1u); // nor does the destructor
}

TEST(ProgressTest, BarShapes) {
  Capture out;
  ProgressBar bar("e", 10, out.get(), true);
  bar.update_at(0.0, 0, NAN, NAN, 0);
  EXPECT_THAT(out.text(), HasSubstr("e " + bar_text(0, false, 30) + "   0/10"));
  bar.update_at(1.0, 5, NAN, NAN, 0);
  EXPECT_THAT(out.text(), HasSubstr(bar_text(15, true, 15) + "   5/10"));
  bar.update_at(2.0, 10, NAN, NAN, 0);
  EXPECT_THAT(out.text(), HasSubstr(bar_text(30, false, 0) + "  10/10"));
  // No loss, accuracy or throughput when there are none.
  EXPECT_THAT(out.text(), Not(HasSubstr("loss")));
  EXPECT_THAT(out.text(), Not(HasSubstr("acc")));
  EXPECT_THAT(out.text(), Not(HasSubstr("ex/s")));
}

TEST(ProgressTest, ShorterLineBlanksTheLongerOne) {
  Capture out;
  ProgressBar bar("e", 10, out.get(), true);
  bar.update_at(1.0, 1, 123456.0, 0.5, 100);
  std::string first = out.text();
  bar.update_at(2.0, 2, 1.0, 0.5, 100);
  std::string second = out.text().substr(first.size());
  EXPECT_EQ(second.size(), first.size()); // padded with spaces
  EXPECT_EQ(second.back(), ' ');
}

TEST(ProgressTest, InteractiveRedrawsAtMostTenTimesASecond) {
  Capture out;
  ProgressBar bar("epoch 1/1", 1000, out.get(), true);
  // 999 updates over one second: about 10 redraws.
  for (int64_t step = 1; step < 1000; ++step)
    bar.update_at(static_cast<double>(step) / 1000.0, step, 0.5, 0.5, step);
  size_t draws = count(out.text(), '\r');
  EXPECT_GE(draws, 9u);
  EXPECT_LE(draws, 11u);
  // The last step is always drawn, however soon after the previous one.
  bar.update_at(0.9995, 1000, 0.5, 0.5, 1000);
  EXPECT_EQ(count(out.text(), '\r'), draws + 1);
  EXPECT_THAT(out.text(), HasSubstr("1000/1000"));
}

TEST(ProgressTest, PlainModePrintsTenLinesAnEpoch) {
  Capture out;
  ProgressBar bar("epoch 2/5", 937, out.get(), /*interactive=*/false);
  EXPECT_FALSE(bar.interactive());
  for (int64_t step = 1; step <= 937; ++step)
    bar.update_at(0.01 * static_cast<double>(step), step, 0.25, NAN, step * 64);
  bar.finish();
  std::string s = out.text();
  EXPECT_EQ(count(s, '\r'), 0u);
  EXPECT_EQ(count(s, '\n'), 10u); // 10%, ..., 90%, then the final line
  EXPECT_THAT(s, Not(HasSubstr("[")));
  EXPECT_THAT(s, HasSubstr("epoch 2/5   94/937  loss 0.2500  6400 ex/s  ETA"));
  EXPECT_THAT(s, HasSubstr("937/937  loss 0.2500  6400 ex/s  time 0:09\n"));
  EXPECT_THAT(s, Not(HasSubstr("acc")));
}

TEST(ProgressTest, PlainModeCutShortAndUnknownTotal) {
  Capture out;
  {
    ProgressBar bar("eval", 0, out.get(), false); // unknown length
    bar.update_at(1.0, 5, 0.5, 0.75, 50);
    bar.update_at(2.0, 9, 0.5, 0.75, 90);
    EXPECT_EQ(out.text(), ""); // nothing until the end
    // The destructor finishes.
  }
  EXPECT_EQ(out.text(),
            "eval  9  loss 0.5000  acc 75.0%  45 ex/s  time 0:02\n");
}

TEST(ProgressTest, RealClockAndSilentModes) {
  Capture out;
  ProgressBar bar("epoch 1/1", 4, out.get(), true);
  bar.update(1, 0.125, 1.0, 8);
  EXPECT_THAT(out.text(), HasSubstr("loss 0.1250  acc 100.0%"));
  EXPECT_THAT(out.text(), HasSubstr("ETA 0:00"));
  bar.finish();

  // A tmpfile is not a terminal: the default is plain mode.
  Capture plain;
  EXPECT_FALSE(ProgressBar("x", 3, plain.get()).interactive());

  ProgressBar silent("x", 3, nullptr);
  silent.update(1, 1.0, 1.0, 1);
  silent.finish();

  Capture none;
  { ProgressBar unused("x", 3, none.get(), true); }
  EXPECT_EQ(none.text(), ""); // finish without updates prints nothing
}

TEST(ProgressTest, CsvLogRowsAndResume) {
  TempDir dir;
  std::string path = dir.file("metrics.csv");
  {
    CsvLog log(path);
    log.row(0, 100, 0.5, 0.875, 0.001, 12345.5);
    // Flushed at once, before the log is closed.
    EXPECT_EQ(read_file(path),
              "epoch,step,loss,accuracy,lr,examples_per_second\n"
              "0,100,0.5,0.875,0.001,12345.5\n");
    log.row(1, 200, 0.25, NAN, 0.0005, 9000);
  }
  {
    CsvLog again(path); // an existing log is continued, not restarted
    again.row(2, 300, 0.125, 1, 1e-4, 0);
  }
  EXPECT_EQ(read_file(path), "epoch,step,loss,accuracy,lr,examples_per_second\n"
                             "0,100,0.5,0.875,0.001,12345.5\n"
                             "1,200,0.25,,0.0005,9000\n"
                             "2,300,0.125,1,0.0001,0\n");
  CsvLog moved = CsvLog(dir.file("other.csv"));
  moved.row(0, 1, 1, 1, 1, 1);
  EXPECT_EQ(moved.path(), dir.file("other.csv"));
}

TEST(ProgressTest, CsvLogErrors) {
  TempDir dir;
  EXPECT_SOMA_ERROR(CsvLog(dir.file("no/such/dir/m.csv")),
                    dir.file("no/such/dir/m.csv"), "cannot open",
                    "No such file or directory");
  test::write_raw(dir.file("data.csv"), "a,b,c\n1,2,3\n");
  EXPECT_SOMA_ERROR(CsvLog(dir.file("data.csv")), "not a soma metrics log",
                    "'a,b,c'");
  EXPECT_EQ(read_file(dir.file("data.csv")), "a,b,c\n1,2,3\n"); // untouched
}

} // namespace
} // namespace soma
