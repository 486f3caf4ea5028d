//===- file.cpp - Whole-file reads and atomic writes ----------------------===//

#include "soma/error.h"
#include "soma/io.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <fcntl.h>
#include <unistd.h>

namespace soma {

std::string read_file(const std::string &path) {
  std::unique_ptr<FILE, int (*)(FILE *)> f(std::fopen(path.c_str(), "rb"),
                                           &std::fclose);
  if (!f)
    throw Error(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::string bytes;
  char buf[1 << 16];
  for (;;) {
    size_t n = std::fread(buf, 1, sizeof buf, f.get());
    bytes.append(buf, n);
    if (n < sizeof buf)
      break;
  }
  if (std::ferror(f.get()))
    throw Error(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  return bytes;
}

/// Writes all of `bytes` to `fd`, retrying short writes; false on error.
static bool write_all(int fd, const std::string &bytes) {
  const char *p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

void write_file_atomic(const std::string &path, const std::string &bytes) {
  // The temporary lives in the same directory so that rename() is atomic.
  std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  auto fail = [&](int err, bool remove_tmp) {
    if (remove_tmp)
      ::unlink(tmp.c_str());
    throw Error(fmt::format("cannot write {}: {}", path, std::strerror(err)));
  };
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0)
    fail(errno, false);
  if (!write_all(fd, bytes) || ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    fail(err, true);
  }
  if (::close(fd) != 0)
    fail(errno, true);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    fail(errno, true);
}

} // namespace soma
