//===- file_test.cpp - Tests of read_file and write_file_atomic -----------===//

#include "soma/io.h"
#include "test_util.h"

#include <csignal>

#include <sys/resource.h>
#include <unistd.h>

namespace soma {
namespace {

using test::TempDir;
using ::testing::ElementsAre;

TEST(File, WriteThenRead) {
  TempDir dir;
  std::string bytes("binary\0data\n\xff", 13);
  write_file_atomic(dir.file("x.bin"), bytes);
  EXPECT_EQ(read_file(dir.file("x.bin")), bytes);
  EXPECT_THAT(dir.entries(), ElementsAre("x.bin"));
}

TEST(File, EmptyFile) {
  TempDir dir;
  write_file_atomic(dir.file("empty"), "");
  EXPECT_EQ(read_file(dir.file("empty")), "");
}

TEST(File, LargeFile) {
  TempDir dir;
  std::string bytes(3 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<char>(i * 7 + (i >> 16));
  write_file_atomic(dir.file("big"), bytes);
  EXPECT_EQ(read_file(dir.file("big")), bytes);
}

TEST(File, OverwriteExisting) {
  TempDir dir;
  write_file_atomic(dir.file("x"), "a much longer old content");
  write_file_atomic(dir.file("x"), "new");
  EXPECT_EQ(read_file(dir.file("x")), "new");
  EXPECT_THAT(dir.entries(), ElementsAre("x"));
}

TEST(File, ReadMissingFile) {
  TempDir dir;
  std::string path = dir.file("nope.npy");
  EXPECT_SOMA_ERROR(read_file(path),
                    "cannot open " + path + ": No such file or directory");
}

TEST(File, ReadDirectory) {
  TempDir dir;
  EXPECT_SOMA_ERROR(read_file(dir.path().string()), dir.path().string(),
                    "Is a directory");
}

TEST(File, WriteToMissingDirectory) {
  TempDir dir;
  std::string path = dir.file("missing/x.npy");
  EXPECT_SOMA_ERROR(write_file_atomic(path, "data"),
                    "cannot write " + path + ": No such file or directory");
  EXPECT_TRUE(dir.entries().empty());
}

TEST(File, FailedRenameRemovesTemporary) {
  // Renaming a file over a non-empty directory fails after the temporary
  // file has been written; it must be cleaned up.
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "target" / "child");
  std::string path = dir.file("target");
  EXPECT_SOMA_ERROR(write_file_atomic(path, "data"), "cannot write " + path);
  EXPECT_THAT(dir.entries(), ElementsAre("target"));
}

TEST(File, FailedWriteKeepsOldFile) {
  // RLIMIT_FSIZE makes write() fail with EFBIG even for root, which a
  // read-only directory would not.
  TempDir dir;
  std::string path = dir.file("x.npy");
  std::string old(100, 'o');
  write_file_atomic(path, old);

  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 1000;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string msg =
      test::error_of([&] { write_file_atomic(path, std::string(5000, 'n')); });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_THAT(
      msg, ::testing::HasSubstr("cannot write " + path + ": File too large"));
  EXPECT_EQ(read_file(path), old);
  EXPECT_THAT(dir.entries(), ElementsAre("x.npy"));
}

TEST(File, PermissionDenied) {
  if (::geteuid() == 0)
    GTEST_SKIP() << "root ignores directory permissions";
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "ro");
  std::filesystem::permissions(dir.path() / "ro",
                               std::filesystem::perms::owner_read |
                                   std::filesystem::perms::owner_exec);
  std::string path = dir.file("ro/x.npy");
  EXPECT_SOMA_ERROR(write_file_atomic(path, "data"),
                    "cannot write " + path + ": Permission denied");
  std::filesystem::permissions(dir.path() / "ro",
                               std::filesystem::perms::owner_all);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() / "ro"));
}

} // namespace
} // namespace soma
