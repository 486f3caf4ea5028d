//===- test_util.h - Helpers shared by the runtime tests --------*- C++ -*-===//
#pragma once

#include "soma/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace soma::test {

/// A fresh directory, removed with its contents at the end of the test.
class TempDir {
public:
  TempDir() {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name =
        info ? std::string(info->test_suite_name()) + "." + info->name()
             : "soma";
    path_ = std::filesystem::temp_directory_path() /
            ("soma_rt_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  /// The path of `name` inside the directory.
  std::string file(const std::string &name) const {
    return (path_ / name).string();
  }
  const std::filesystem::path &path() const { return path_; }

  /// Names of all entries in the directory.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto &e : std::filesystem::directory_iterator(path_))
      names.push_back(e.path().filename().string());
    return names;
  }

private:
  std::filesystem::path path_;
};

/// Writes raw bytes to a file (non-atomically; for crafting bad inputs).
inline void write_raw(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

/// Runs `fn` and returns the message of the soma::Error it throws; fails the
/// test (and returns "") if it throws nothing or something else.
template <class Fn> std::string error_of(Fn &&fn) {
  try {
    fn();
  } catch (const soma::Error &e) {
    return e.what();
  } catch (const std::exception &e) {
    ADD_FAILURE() << "expected soma::Error, got another exception: "
                  << e.what();
    return "";
  }
  ADD_FAILURE() << "expected soma::Error, nothing was thrown";
  return "";
}

} // namespace soma::test

/// EXPECT that `stmt` throws a soma::Error whose message contains each of
/// the given substrings (anything a std::string can be built from).
#define EXPECT_SOMA_ERROR(stmt, ...)                                           \
  do {                                                                         \
    std::string soma_msg_ = ::soma::test::error_of([&] { stmt; });             \
    std::vector<std::string> soma_subs_{__VA_ARGS__};                          \
    for (const std::string &soma_sub_ : soma_subs_)                            \
      EXPECT_THAT(soma_msg_, ::testing::HasSubstr(soma_sub_));                 \
  } while (0)
