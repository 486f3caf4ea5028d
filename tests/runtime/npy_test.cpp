//===- npy_test.cpp - Tests of read_npy and write_npy ---------------------===//

#include "soma/io.h"
#include "test_util.h"

#include <cstring>

namespace soma {
namespace {

using test::TempDir;
using test::write_raw;

/// A .npy file with the given header text (padded numpy-style) and payload.
std::string make_npy(const std::string &dict, const std::string &payload,
                     int major = 1) {
  size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0)
    header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(major);
  bytes += '\0';
  size_t n = header.size();
  for (size_t i = 0; i < prefix - 8; ++i)
    bytes += static_cast<char>((n >> (8 * i)) & 0xff);
  return bytes + header + payload;
}

std::string floats(std::initializer_list<float> values) {
  std::string s(values.size() * 4, '\0');
  std::memcpy(s.data(), std::data(values), s.size());
  return s;
}

void expect_same(const Array &a, const Array &b) {
  EXPECT_EQ(a.dtype(), b.dtype());
  EXPECT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.nbytes(), b.nbytes());
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
}

TEST(Npy, RoundTripEachDType) {
  TempDir dir;
  std::vector<Array> arrays = {
      Array::f32({2, 3}, {0.5f, -1.0f, 3.25f, 1e-30f, -0.0f, 7.0f}),
      Array::i32({4}, {1, -2, INT32_MAX, INT32_MIN}),
      Array::i64({2, 1}, {INT64_MIN, int64_t(1) << 50}),
  };
  for (const Array &a : arrays) {
    std::string path =
        dir.file(std::string("a_") + dtype_name(a.dtype()) + ".npy");
    write_npy(path, a);
    expect_same(read_npy(path), a);
  }
}

TEST(Npy, RoundTripShapes) {
  TempDir dir;
  for (Shape shape : {Shape{}, Shape{5}, Shape{2, 3, 4}, Shape{0},
                      Shape{3, 0, 2}, Shape{1, 1, 1, 1, 1}, Shape{64, 784}}) {
    Array a(DType::f32, shape);
    for (int64_t i = 0; i < a.numel(); ++i)
      a.data<float>()[i] = static_cast<float>(i) * 0.5f - 3.0f;
    std::string path = dir.file("a.npy");
    write_npy(path, a);
    Array b = read_npy(path);
    SCOPED_TRACE(shape_str(shape));
    expect_same(b, a);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw()) % kAlignment, 0u);
  }
}

TEST(Npy, HeaderMatchesNumpyByteForByte) {
  TempDir dir;
  std::string path = dir.file("a.npy");
  write_npy(path, Array::f32({2, 3}, {1, 2, 3, 4, 5, 6}));
  std::string bytes = read_file(path);
  std::string dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  std::string expected = std::string("\x93NUMPY\x01\x00", 8) +
                         std::string("\x76\x00", 2) + dict +
                         std::string(118 - dict.size() - 1, ' ') + "\n" +
                         floats({1, 2, 3, 4, 5, 6});
  ASSERT_EQ(bytes.size(), 128u + 24u);
  EXPECT_EQ(bytes, expected);
}

TEST(Npy, HeaderShapesAreNumpyRepr) {
  TempDir dir;
  std::string path = dir.file("a.npy");
  auto header_of = [&](const Array &a) {
    write_npy(path, a);
    std::string bytes = read_file(path);
    size_t len = static_cast<unsigned char>(bytes[8]) |
                 static_cast<unsigned char>(bytes[9]) << 8;
    EXPECT_EQ((10 + len) % 64, 0u);
    EXPECT_EQ(bytes[10 + len - 1], '\n');
    return bytes.substr(10, bytes.find('}') - 10 + 1);
  };
  EXPECT_EQ(header_of(Array(DType::i32, {})),
            "{'descr': '<i4', 'fortran_order': False, 'shape': (), }");
  EXPECT_EQ(header_of(Array(DType::i64, {5})),
            "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }");
  EXPECT_EQ(header_of(Array(DType::f32, {2, 3, 4})),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }");
}

TEST(Npy, AcceptsAnyValidHeaderSpelling) {
  TempDir dir;
  std::string path = dir.file("a.npy");
  std::string payload = floats({1, 2});
  for (std::string dict : {
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
           "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}",
           "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2 , ),}",
           "  {  'descr' : '<f4' ,\n 'fortran_order' : False , 'shape' : ( 2, "
           ") }  ",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)}",
       }) {
    SCOPED_TRACE(dict);
    write_raw(path, make_npy(dict, payload));
    Array a = read_npy(path);
    EXPECT_EQ(a.numel(), 2);
    EXPECT_EQ(a.data<float>()[1], 2.0f);
  }
}

TEST(Npy, ReadsVersion2And3) {
  TempDir dir;
  std::string path = dir.file("a.npy");
  for (int major : {2, 3}) {
    write_raw(
        path,
        make_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (), }",
                 std::string("\x2a\0\0\0", 4), major));
    Array a = read_npy(path);
    EXPECT_EQ(a.shape(), Shape{});
    EXPECT_EQ(a.data<int32_t>()[0], 42);
  }
}

TEST(Npy, MissingFile) {
  TempDir dir;
  std::string path = dir.file("x.npy");
  EXPECT_SOMA_ERROR(read_npy(path),
                    "cannot open " + path + ": No such file or directory");
}

struct BadNpy {
  const char *name;
  std::string bytes;
  std::vector<const char *> expected;
};

std::string good_dict(const char *shape = "(2,)", const char *descr = "<f4",
                      const char *fortran = "False") {
  return std::string("{'descr': '") + descr + "', 'fortran_order': " + fortran +
         ", 'shape': " + shape + ", }";
}

TEST(Npy, BadInputs) {
  std::string two = floats({1, 2});
  std::string valid = make_npy(good_dict(), two);
  std::vector<BadNpy> cases = {
      {"empty", "", {"not a .npy file (bad magic)"}},
      {"bad magic",
       "\x93NUMPX\x01\x00\x10\x00" + std::string(16, ' '),
       {"not a .npy file (bad magic)"}},
      {"text file", "hello world, this is not numpy\n", {"not a .npy file"}},
      {"no header length",
       std::string("\x93NUMPY\x01\x00\x10", 9),
       {"header truncated"}},
      {"truncated header",
       valid.substr(0, 50),
       {"header truncated: expected 118 bytes, found 40"}},
      {"version 4",
       std::string("\x93NUMPY\x04\x00", 8) + valid.substr(8),
       {"unsupported .npy format version 4.0"}},
      {"truncated data",
       make_npy(good_dict("(64, 784)"), std::string(1000, '\0')),
       {"data truncated: expected 200704 bytes, found 1000"}},
      {"extra data",
       valid + "xy",
       {"2 extra bytes after the data (expected 8 bytes)"}},
      {"f8",
       make_npy(good_dict("(2,)", "<f8"), two + two),
       {"unsupported dtype '<f8' (soma reads <f4, <i4, <i8)"}},
      {"u1",
       make_npy(good_dict("(2,)", "|u1"), "ab"),
       {"unsupported dtype '|u1'"}},
      {"big endian",
       make_npy(good_dict("(2,)", ">f4"), two),
       {"big-endian dtype '>f4' is not supported"}},
      {"fortran",
       make_npy(good_dict("(2,)", "<f4", "True"), two),
       {"Fortran-order (column-major) arrays are not supported"}},
      {"missing shape",
       make_npy("{'descr': '<f4', 'fortran_order': False}", two),
       {"header has no 'shape'"}},
      {"unknown key",
       make_npy(good_dict().insert(1, "'x': (), "), two),
       {"unexpected key 'x' in header"}},
      {"duplicate key",
       make_npy(good_dict().insert(1, "'shape': (2,), "), two),
       {"duplicate key 'shape' in header"}},
      {"(5) is an int",
       make_npy(good_dict("(2)"), two),
       {"malformed header", "one-element tuple needs a trailing comma"}},
      {"negative dim",
       make_npy(good_dict("(-2,)"), two),
       {"malformed header", "negative dimension"}},
      {"float dim", make_npy(good_dict("(2.0,)"), two), {"malformed header"}},
      {"huge dim",
       make_npy(good_dict("(99999999999999999999,)"), two),
       {"malformed header", "dimension too large"}},
      {"overflowing numel",
       make_npy(good_dict("(4611686018427387904, 4)"), two),
       {"too many elements"}},
      {"shape is a list",
       make_npy(good_dict("[2]"), two),
       {"malformed header", "expected a string, True, False or a tuple"}},
      {"descr not a string",
       make_npy(good_dict().replace(10, 5, "True"), two),
       {"'descr' must be a string"}},
      {"unterminated", make_npy("{'descr: '<f4'}", two), {"malformed header"}},
      {"no closing brace",
       make_npy(good_dict().substr(0, 50), two),
       {"malformed header"}},
      {"trailing garbage",
       make_npy(good_dict() + " x", two),
       {"malformed header", "unexpected text after the closing '}'"}},
      {"missing colon",
       make_npy("{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", two),
       {"malformed header", "expected ':'"}},
  };
  TempDir dir;
  for (const BadNpy &c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = dir.file("x.npy");
    write_raw(path, c.bytes);
    std::string msg = test::error_of([&] { read_npy(path); });
    EXPECT_THAT(msg, ::testing::StartsWith(path + ": "));
    for (const char *sub : c.expected)
      EXPECT_THAT(msg, ::testing::HasSubstr(sub));
  }
}

TEST(Npy, WriteFailures) {
  TempDir dir;
  std::string missing = dir.file("missing/x.npy");
  EXPECT_SOMA_ERROR(write_npy(missing, Array(DType::f32, {2})),
                    "cannot write " + missing + ": No such file or directory");
  EXPECT_TRUE(dir.entries().empty());
  EXPECT_SOMA_ERROR(write_npy(dir.file("e.npy"), Array()),
                    "the array is empty");
}

TEST(Npy, OverwriteExisting) {
  TempDir dir;
  std::string path = dir.file("x.npy");
  write_npy(path, Array(DType::f32, {100, 100}));
  write_npy(path, Array::i32({2}, {3, 4}));
  Array a = read_npy(path);
  EXPECT_EQ(a.dtype(), DType::i32);
  EXPECT_EQ(a.data<int32_t>()[1], 4);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"x.npy"});
}

} // namespace
} // namespace soma
