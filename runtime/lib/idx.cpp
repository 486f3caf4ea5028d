//===- idx.cpp - Reading and writing IDX files, plain or gzipped ----------===//
//
// The IDX format (LeCun's MNIST files): a big-endian u32 magic 0x0000TTNN
// with element type TT (0x08 = unsigned byte, the only one soma reads) and
// NN dimensions, then NN big-endian u32 sizes, then the row-major data. The
// MNIST-style datasets ship it gzip-compressed.
//
//===----------------------------------------------------------------------===//

#include "soma/data.h"
#include "soma/error.h"
#include "soma/io.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace soma::data {

namespace {

constexpr uint32_t kUByteType = 0x08;
/// More dimensions than any sensible file has; bounds the header read.
constexpr uint32_t kMaxRank = 8;

/// A file opened for reading through zlib, which reads gzip members and (in
/// "transparent" mode) plain files alike; every error names the path.
class IdxInput {
public:
  explicit IdxInput(const std::string &path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT)
        fail("file not found");
      fail(fmt::format("cannot open: {}", std::strerror(errno)));
    }
    struct stat st;
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      ::close(fd);
      fail("is a directory, not a file");
    }
    // Sniff the gzip magic ourselves (zlib would silently fall back to
    // reading the bytes as they are) so that errors can say which it was.
    unsigned char magic[2] = {0, 0};
    ssize_t got = ::pread(fd, magic, 2, 0);
    gzip_ = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    file_ = ::gzdopen(fd, "rb");
    if (!file_) {
      ::close(fd);
      fail("cannot open: out of memory");
    }
    ::gzbuffer(file_, 1 << 17);
  }
  ~IdxInput() {
    if (file_)
      ::gzclose_r(file_);
  }
  IdxInput(const IdxInput &) = delete;
  IdxInput &operator=(const IdxInput &) = delete;

  bool gzip() const { return gzip_; }
  const std::string &path() const { return path_; }

  /// Reads up to `n` bytes; fewer only at the end of the data. A damaged
  /// gzip stream (including one cut short) throws.
  size_t read(void *buf, size_t n) {
    size_t total = 0;
    auto *p = static_cast<unsigned char *>(buf);
    while (total < n) {
      // gzread takes an unsigned count; read in chunks that fit.
      unsigned chunk = static_cast<unsigned>(
          std::min<size_t>(n - total, std::numeric_limits<int>::max()));
      int got = ::gzread(file_, p + total, chunk);
      if (got < 0)
        zlib_fail();
      if (got == 0)
        break;
      total += static_cast<size_t>(got);
    }
    if (total < n)
      check_stream(); // a short read may be a truncated gzip stream
    return total;
  }

  [[noreturn]] void fail(const std::string &what) const {
    throw Error(fmt::format("{}: {}", path_, what));
  }

private:
  /// Throws if zlib recorded an error (e.g. "unexpected end of file" for a
  /// cut-off gzip stream, or a CRC mismatch).
  void check_stream() {
    int errnum = Z_OK;
    ::gzerror(file_, &errnum);
    if (errnum != Z_OK && errnum != Z_STREAM_END)
      zlib_fail();
  }
  [[noreturn]] void zlib_fail() {
    int errnum = Z_OK;
    const char *msg = ::gzerror(file_, &errnum);
    std::string reason = errnum == Z_ERRNO ? std::strerror(errno)
                                           : (msg ? msg : "unknown error");
    // gzdopen'ed files report as "<fd:3>: message"; we name the path anyway.
    if (reason.starts_with("<fd:"))
      if (size_t colon = reason.find(": "); colon != std::string::npos)
        reason.erase(0, colon + 2);
    fail(fmt::format("corrupt gzip stream: {}", reason));
  }

  std::string path_;
  gzFile file_ = nullptr;
  bool gzip_ = false;
};

uint32_t load_be32(const unsigned char *p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 |
         uint32_t(p[3]);
}

void store_be32(std::string &out, uint64_t v) {
  out.push_back(static_cast<char>(v >> 24 & 0xff));
  out.push_back(static_cast<char>(v >> 16 & 0xff));
  out.push_back(static_cast<char>(v >> 8 & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

/// Compresses `bytes` into a single gzip member.
std::string gzip_compress(const std::string &path, const std::string &bytes) {
  if (bytes.size() > std::numeric_limits<uInt>::max() / 2)
    throw Error(fmt::format("{}: too large to gzip in one piece", path));
  z_stream zs{};
  // windowBits 15 + 16 asks deflate for a gzip (not zlib) wrapper.
  if (::deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error(fmt::format("{}: cannot start gzip compression", path));
  std::string out(::deflateBound(&zs, bytes.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef *>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int ret = ::deflate(&zs, Z_FINISH);
  size_t written = zs.total_out;
  ::deflateEnd(&zs);
  if (ret != Z_STREAM_END)
    throw Error(fmt::format("{}: gzip compression failed ({})", path, ret));
  out.resize(written);
  return out;
}

} // namespace

Array read_idx(const std::string &path) {
  IdxInput in(path);
  const char *what = in.gzip() ? "gzip-compressed IDX" : "IDX";

  unsigned char head[4];
  size_t got = in.read(head, 4);
  if (got == 0)
    in.fail(in.gzip() ? "gzip data is empty, not an IDX file"
                      : "empty file, not an IDX file");
  if (got < 4)
    in.fail(fmt::format("truncated {} header: {} of 4 magic bytes", what, got));
  uint32_t magic = load_be32(head);
  if (!in.gzip() && (magic >> 16) != 0)
    in.fail(fmt::format("not a gzip or IDX file: starts with bytes "
                        "{:02x} {:02x} {:02x} {:02x} (expected 1f 8b for "
                        "gzip, 00 00 08 01 or 00 00 08 03 for IDX)",
                        head[0], head[1], head[2], head[3]));
  if ((magic >> 16) != 0)
    in.fail(fmt::format("gzip data is not an IDX file: bad magic 0x{:08x} "
                        "(expected 0x00000801 or 0x00000803)",
                        magic));
  uint32_t type = magic >> 8 & 0xff, rank = magic & 0xff;
  if (type != kUByteType)
    in.fail(fmt::format("unsupported IDX element type 0x{:02x} in magic "
                        "0x{:08x} (only unsigned bytes, 0x08, are supported)",
                        type, magic));
  if (rank == 0 || rank > kMaxRank)
    in.fail(fmt::format("bad IDX magic 0x{:08x}: {} dimensions (expected 1 "
                        "to {})",
                        magic, rank, kMaxRank));

  unsigned char dims[4 * kMaxRank];
  got = in.read(dims, 4 * rank);
  if (got < 4 * rank)
    in.fail(fmt::format("truncated {} header: {} of {} bytes of dimension "
                        "sizes",
                        what, got, 4 * rank));
  Shape shape;
  for (uint32_t d = 0; d < rank; ++d)
    shape.push_back(load_be32(dims + 4 * d));
  int64_t n = numel(shape); // at most (2^32)^8: numel throws on overflow

  const char *kind = rank == 1 ? "label data" : "pixel data";
  Array out(rank == 1 ? DType::i32 : DType::f32, shape);
  // Convert in chunks straight into the output so that the 47 MB of
  // Fashion-MNIST pixels never exist twice.
  std::vector<unsigned char> buf(std::min<int64_t>(n, 1 << 16));
  int64_t done = 0;
  while (done < n) {
    size_t want = static_cast<size_t>(std::min<int64_t>(n - done, buf.size()));
    size_t chunk = in.read(buf.data(), want);
    if (rank == 1) {
      int32_t *dst = out.data<int32_t>() + done;
      for (size_t k = 0; k < chunk; ++k)
        dst[k] = buf[k];
    } else {
      float *dst = out.data<float>() + done;
      for (size_t k = 0; k < chunk; ++k)
        dst[k] = static_cast<float>(buf[k]) / 255.0f;
    }
    done += static_cast<int64_t>(chunk);
    if (chunk < want)
      in.fail(fmt::format("truncated {}: expected {} bytes of {}, found {} "
                          "(shape {})",
                          what, n, kind, done, shape_str(shape)));
  }
  unsigned char extra[1];
  if (in.read(extra, 1) != 0)
    in.fail(fmt::format("trailing garbage after the {} bytes of {} for "
                        "shape {}",
                        n, kind, shape_str(shape)));
  return out;
}

void write_idx(const std::string &path, const Array &array, bool gzip) {
  bool labels = array.dtype() == DType::i32 && array.rank() == 1;
  bool images = array.dtype() == DType::f32 && array.rank() >= 2 &&
                array.rank() <= static_cast<int64_t>(kMaxRank);
  if (!labels && !images)
    throw Error(fmt::format("{}: cannot write {} {} as IDX (expected i32 "
                            "labels of rank 1 or f32 images of rank 2 to {})",
                            path, dtype_name(array.dtype()),
                            shape_str(array.shape()), kMaxRank));
  for (int64_t d : array.shape())
    if (d > std::numeric_limits<uint32_t>::max())
      throw Error(
          fmt::format("{}: dimension {} is too large for IDX", path, d));

  std::string bytes;
  int64_t n = array.numel();
  bytes.reserve(4 + 4 * array.shape().size() + static_cast<size_t>(n));
  store_be32(bytes, kUByteType << 8 | static_cast<uint32_t>(array.rank()));
  for (int64_t d : array.shape())
    store_be32(bytes, static_cast<uint64_t>(d));
  if (labels) {
    const int32_t *src = array.data<int32_t>();
    for (int64_t k = 0; k < n; ++k) {
      if (src[k] < 0 || src[k] > 255)
        throw Error(fmt::format("{}: label {} at index {} is not in [0, 255]",
                                path, src[k], k));
      bytes.push_back(static_cast<char>(src[k]));
    }
  } else {
    const float *src = array.data<float>();
    for (int64_t k = 0; k < n; ++k) {
      if (!(src[k] >= 0.0f && src[k] <= 1.0f)) // also rejects NaN
        throw Error(fmt::format("{}: value {} at index {} is not in [0, 1]",
                                path, src[k], k));
      bytes.push_back(static_cast<char>(std::lround(src[k] * 255.0f)));
    }
  }
  write_file_atomic(path, gzip ? gzip_compress(path, bytes) : bytes);
}

} // namespace soma::data
