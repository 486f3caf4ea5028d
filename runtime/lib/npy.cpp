//===- npy.cpp - Reading and writing NumPy .npy files ---------------------===//
//
// The format: "\x93NUMPY", a major and minor version byte, the header length
// (u16 LE for 1.0, u32 LE for 2.0/3.0), then the header: a Python dict
// literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and a '\n', then the raw C-order data.
//
//===----------------------------------------------------------------------===//

#include "soma/error.h"
#include "soma/io.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>
#include <limits>
#include <optional>

namespace soma {

static_assert(std::endian::native == std::endian::little,
              "soma's .npy I/O assumes a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
/// numpy aligns the start of the data to this many bytes.
constexpr size_t kNpyAlign = 64;

/// A value in the header dict: a string, a bool or a tuple of integers.
struct HeaderValue {
  enum class Kind { string, boolean, tuple } kind;
  std::string str;
  bool boolean = false;
  Shape ints;
};

/// A strict parser for the Python dict literal of a .npy header. It accepts
/// exactly what numpy writes and what a Python literal of that shape may
/// look like: single- or double-quoted keys, any key order, whitespace
/// anywhere, trailing commas, and tuples such as (), (5,) and (2, 3).
class HeaderParser {
public:
  HeaderParser(const std::string &path, std::string_view text)
      : path_(path), text_(text) {}

  /// Parses the whole header into (key, value) pairs in header order.
  std::vector<std::pair<std::string, HeaderValue>> parse_dict() {
    std::vector<std::pair<std::string, HeaderValue>> items;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (consume('}'))
        break;
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      HeaderValue value = parse_value();
      items.emplace_back(std::move(key), std::move(value));
      skip_ws();
      if (consume('}'))
        break;
      expect(',');
    }
    skip_ws();
    if (pos_ != text_.size())
      fail("unexpected text after the closing '}'");
    return items;
  }

private:
  [[noreturn]] void fail(std::string_view what) const {
    throw Error(
        fmt::format("{}: malformed header at byte {}: {}", path_, pos_, what));
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  void skip_ws() {
    while (!at_end() && std::strchr(" \t\n\r\f\v", text_[pos_]))
      ++pos_;
  }

  bool consume(char c) {
    if (at_end() || text_[pos_] != c)
      return false;
    ++pos_;
    return true;
  }

  void expect(char c) {
    if (!consume(c))
      fail(at_end() ? fmt::format("expected '{}', found the end", c)
                    : fmt::format("expected '{}', found '{}'", c, peek()));
  }

  bool consume_word(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word)
      return false;
    pos_ += word.size();
    return true;
  }

  std::string parse_string() {
    char quote = peek();
    if (quote != '\'' && quote != '"')
      fail("expected a quoted string");
    ++pos_;
    size_t start = pos_;
    while (!at_end() && text_[pos_] != quote) {
      if (text_[pos_] == '\\')
        fail("escape sequences are not supported");
      if (text_[pos_] == '\n')
        fail("unterminated string");
      ++pos_;
    }
    if (at_end())
      fail("unterminated string");
    std::string s(text_.substr(start, pos_ - start));
    ++pos_;
    return s;
  }

  int64_t parse_int() {
    if (peek() == '-')
      fail("negative dimension");
    if (peek() < '0' || peek() > '9')
      fail("expected an integer");
    int64_t value = 0;
    while (peek() >= '0' && peek() <= '9') {
      int digit = peek() - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10)
        fail("dimension too large");
      value = value * 10 + digit;
      ++pos_;
    }
    return value;
  }

  HeaderValue parse_value() {
    HeaderValue v;
    char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = HeaderValue::Kind::string;
      v.str = parse_string();
    } else if (consume_word("True")) {
      v.kind = HeaderValue::Kind::boolean;
      v.boolean = true;
    } else if (consume_word("False")) {
      v.kind = HeaderValue::Kind::boolean;
      v.boolean = false;
    } else if (consume('(')) {
      v.kind = HeaderValue::Kind::tuple;
      bool trailing_comma = false;
      for (;;) {
        skip_ws();
        if (consume(')'))
          break;
        v.ints.push_back(parse_int());
        skip_ws();
        trailing_comma = consume(',');
        if (!trailing_comma) {
          expect(')');
          break;
        }
      }
      // In Python "(5)" is the integer 5, not a tuple.
      if (v.ints.size() == 1 && !trailing_comma)
        fail("a one-element tuple needs a trailing comma, as in (5,)");
    } else {
      fail("expected a string, True, False or a tuple");
    }
    return v;
  }

  const std::string &path_;
  std::string_view text_;
  size_t pos_ = 0;
};

struct NpyHeader {
  DType dtype;
  Shape shape;
};

/// Parses and checks the header dict.
NpyHeader parse_header(const std::string &path, std::string_view text) {
  std::optional<HeaderValue> descr, fortran_order, shape;
  for (auto &[key, value] : HeaderParser(path, text).parse_dict()) {
    std::optional<HeaderValue> *slot = key == "descr"           ? &descr
                                       : key == "fortran_order" ? &fortran_order
                                       : key == "shape"         ? &shape
                                                                : nullptr;
    if (!slot)
      throw Error(fmt::format("{}: unexpected key '{}' in header", path, key));
    if (slot->has_value())
      throw Error(fmt::format("{}: duplicate key '{}' in header", path, key));
    *slot = std::move(value);
  }
  for (auto [value, key] :
       {std::pair{&descr, "descr"}, std::pair{&fortran_order, "fortran_order"},
        std::pair{&shape, "shape"}})
    if (!value->has_value())
      throw Error(fmt::format("{}: header has no '{}'", path, key));

  if (descr->kind != HeaderValue::Kind::string)
    throw Error(fmt::format("{}: 'descr' must be a string", path));
  if (fortran_order->kind != HeaderValue::Kind::boolean)
    throw Error(fmt::format("{}: 'fortran_order' must be True or False", path));
  if (shape->kind != HeaderValue::Kind::tuple)
    throw Error(fmt::format("{}: 'shape' must be a tuple", path));

  NpyHeader h;
  const std::string &d = descr->str;
  if (d == "<f4")
    h.dtype = DType::f32;
  else if (d == "<i4")
    h.dtype = DType::i32;
  else if (d == "<i8")
    h.dtype = DType::i64;
  else if (d == ">f4" || d == ">i4" || d == ">i8")
    throw Error(fmt::format(
        "{}: big-endian dtype '{}' is not supported (soma reads <f4, <i4, <i8)",
        path, d));
  else
    throw Error(fmt::format(
        "{}: unsupported dtype '{}' (soma reads <f4, <i4, <i8)", path, d));
  if (fortran_order->boolean)
    throw Error(fmt::format(
        "{}: Fortran-order (column-major) arrays are not supported", path));
  h.shape = std::move(shape->ints);
  return h;
}

uint32_t read_le(const std::string &bytes, size_t offset, size_t width) {
  uint32_t v = 0;
  for (size_t i = 0; i < width; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[offset + i]))
         << (8 * i);
  return v;
}

const char *npy_descr(DType dt) {
  switch (dt) {
  case DType::f32:
    return "<f4";
  case DType::i32:
    return "<i4";
  case DType::i64:
    return "<i8";
  }
  return "?";
}

/// Python's repr of a shape tuple: (), (5,), (2, 3).
std::string shape_repr(const Shape &shape) {
  if (shape.size() == 1)
    return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

} // namespace

Array read_npy(const std::string &path) {
  std::string bytes = read_file(path);
  if (bytes.size() < kMagicLen || bytes.compare(0, kMagicLen, kMagic) != 0)
    throw Error(fmt::format("{}: not a .npy file (bad magic)", path));
  if (bytes.size() < kMagicLen + 2)
    throw Error(fmt::format("{}: header truncated", path));
  int major = static_cast<unsigned char>(bytes[6]);
  int minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0)
    throw Error(fmt::format("{}: unsupported .npy format version {}.{}", path,
                            major, minor));
  size_t len_width = major == 1 ? 2 : 4;
  size_t header_start = kMagicLen + 2 + len_width;
  if (bytes.size() < header_start)
    throw Error(fmt::format("{}: header truncated", path));
  size_t header_len = read_le(bytes, kMagicLen + 2, len_width);
  size_t data_start = header_start + header_len;
  if (bytes.size() < data_start)
    throw Error(fmt::format("{}: header truncated: expected {} bytes, found {}",
                            path, header_len, bytes.size() - header_start));

  NpyHeader h = parse_header(
      path, std::string_view(bytes).substr(header_start, header_len));
  int64_t n;
  try {
    n = numel(h.shape);
  } catch (const Error &e) {
    throw Error(fmt::format("{}: {}", path, e.what()));
  }
  size_t expected;
  if (__builtin_mul_overflow(static_cast<size_t>(n), dtype_size(h.dtype),
                             &expected))
    throw Error(
        fmt::format("{}: shape {} is too large", path, shape_str(h.shape)));
  size_t found = bytes.size() - data_start;
  if (found < expected)
    throw Error(fmt::format("{}: data truncated: expected {} bytes, found {}",
                            path, expected, found));
  if (found > expected)
    throw Error(
        fmt::format("{}: {} extra bytes after the data (expected {} bytes)",
                    path, found - expected, expected));

  Array array(h.dtype, std::move(h.shape));
  if (expected > 0)
    std::memcpy(array.raw(), bytes.data() + data_start, expected);
  return array;
}

void write_npy(const std::string &path, const Array &array) {
  if (array.empty())
    throw Error(fmt::format("cannot write {}: the array is empty", path));
  std::string dict =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                  npy_descr(array.dtype()), shape_repr(array.shape()));
  // numpy's rule: pad with spaces so that magic + version + length + header
  // (including the final '\n') is a multiple of 64 bytes.
  size_t prefix = kMagicLen + 2 + 2;
  size_t pad = kNpyAlign - (prefix + dict.size() + 1) % kNpyAlign;
  std::string header = dict + std::string(pad, ' ') + '\n';
  if (header.size() > 0xffff)
    throw Error(fmt::format("cannot write {}: shape {} is too long for a "
                            ".npy 1.0 header",
                            path, shape_str(array.shape())));

  std::string bytes(kMagic, kMagicLen);
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(static_cast<const char *>(array.raw()), array.nbytes());
  write_file_atomic(path, bytes);
}

} // namespace soma
