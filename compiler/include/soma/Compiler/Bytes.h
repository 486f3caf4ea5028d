//===- Bytes.h - Fields of the cache's entries and the worker's requests -*- C++ -*-===//
//
// u64 fields (in this machine's byte order: an entry is only read on the
// machine kind it was made for, its key says which) and u64-length-prefixed
// strings: the framing of a compiled-object cache entry (ObjectCache.cpp)
// and of a request to the JIT worker (Worker.cpp).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "soma/error.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace soma {

class ByteWriter {
public:
  void u64(uint64_t v) { out.append(reinterpret_cast<const char *>(&v), sizeof v); }
  void str(std::string_view s) {
    u64(s.size());
    out += s;
  }
  std::string out;
};

/// Reads what a ByteWriter wrote; a field that runs past the end throws
/// soma::Error(`truncated`).
class ByteReader {
public:
  explicit ByteReader(std::string_view in, std::string truncated = "truncated")
      : in_(in), truncated_(std::move(truncated)) {}
  uint64_t u64() {
    need(sizeof(uint64_t));
    uint64_t v;
    std::memcpy(&v, in_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string str() {
    uint64_t n = u64();
    need(n);
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  /// The next n bytes are `bytes` (consumed if so).
  bool skip(std::string_view bytes) {
    need(bytes.size());
    if (in_.substr(pos_, bytes.size()) != bytes)
      return false;
    pos_ += bytes.size();
    return true;
  }
  /// A count of items each at least `minBytes` long (a corrupt count must
  /// not allocate gigabytes).
  uint64_t count(size_t minBytes) {
    uint64_t n = u64();
    if (n > (in_.size() - pos_) / minBytes)
      throw Error("a count runs past the end");
    return n;
  }
  bool atEnd() const { return pos_ == in_.size(); }

private:
  void need(uint64_t n) {
    if (n > in_.size() - pos_)
      throw Error(truncated_);
  }
  std::string_view in_;
  std::string truncated_;
  size_t pos_ = 0;
};

} // namespace soma
