//===- safetensors_test.cpp - Tests of the safetensors reader/writer ------===//

#include "soma/io.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstring>

namespace soma {
namespace {

using test::TempDir;
using test::write_raw;

/// A safetensors file with the given header text and data buffer.
std::string make_st(const std::string &header, const std::string &data) {
  std::string bytes;
  for (int i = 0; i < 8; ++i)
    bytes += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return bytes + header + data;
}

uint64_t header_len(const std::string &bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  return n;
}

NamedArrays sample_tensors() {
  return {
      {"dense.weight", Array::f32({2, 3}, {1, 2, 3, 4, 5, 6})},
      {"labels", Array::i32({3}, {7, -8, 9})},
      {"step", Array::i64({}, {int64_t(1) << 40})},
      {"nothing", Array(DType::f32, {0, 4})},
      {"a.bias", Array::f32({1}, {-0.5f})},
  };
}

void expect_same(const NamedArrays &a, const NamedArrays &b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].first);
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.dtype(), b[i].second.dtype());
    EXPECT_EQ(a[i].second.shape(), b[i].second.shape());
    ASSERT_EQ(a[i].second.nbytes(), b[i].second.nbytes());
    EXPECT_EQ(
        std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()),
        0);
  }
}

TEST(Safetensors, RoundTripWithMetadata) {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  NamedArrays tensors = sample_tensors();
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"soma", "1 \"q\""}};
  write_safetensors(path, tensors, meta);
  std::map<std::string, std::string> read_meta = {{"stale", "x"}};
  NamedArrays back = read_safetensors(path, &read_meta);
  expect_same(back, tensors); // data order == the order given to the writer
  EXPECT_EQ(read_meta, meta);
  EXPECT_EQ(read_safetensors(path).size(), tensors.size());
}

TEST(Safetensors, RoundTripWithoutMetadata) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  write_safetensors(path, sample_tensors());
  std::map<std::string, std::string> meta = {{"stale", "x"}};
  expect_same(read_safetensors(path, &meta), sample_tensors());
  EXPECT_TRUE(meta.empty());
  // No tensors at all is a valid file too.
  write_safetensors(path, {});
  EXPECT_TRUE(read_safetensors(path).empty());
}

TEST(Safetensors, HeaderFormat) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  write_safetensors(path,
                    {{"w", Array::f32({2, 3}, {1, 2, 3, 4, 5, 6})},
                     {"i", Array::i64({2}, {1, 2})}},
                    {{"k", "v"}});
  std::string bytes = read_file(path);
  uint64_t n = header_len(bytes);
  auto j = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(j["__metadata__"], nlohmann::json({{"k", "v"}}));
  EXPECT_EQ(j["w"]["dtype"], "F32");
  EXPECT_EQ(j["w"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(j["w"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(j["i"]["dtype"], "I64");
  EXPECT_EQ(j["i"]["data_offsets"], nlohmann::json({24, 40}));
  EXPECT_EQ(bytes.size(), 8 + n + 40);
}

TEST(Safetensors, DataIsAlignedAndOffsetsMatch) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  // Vary the header length so that every padding amount occurs.
  for (int len = 1; len <= 17; ++len) {
    NamedArrays tensors = sample_tensors();
    tensors.emplace_back(std::string(len, 'n'), Array::i32({2}, {len, -len}));
    std::map<std::string, std::string> meta;
    if (len % 2)
      meta["note"] = std::string(len, 'm');
    write_safetensors(path, tensors, meta);
    std::string bytes = read_file(path);
    uint64_t data_start = 8 + header_len(bytes);
    SCOPED_TRACE(len);
    EXPECT_EQ(data_start % 8, 0u);
    std::vector<size_t> offsets = safetensors_data_offsets(tensors, meta);
    ASSERT_EQ(offsets.size(), tensors.size());
    EXPECT_EQ(offsets[0], data_start);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Array &a = tensors[i].second;
      ASSERT_LE(offsets[i] + a.nbytes(), bytes.size());
      EXPECT_EQ(std::memcmp(bytes.data() + offsets[i], a.raw(), a.nbytes()), 0)
          << tensors[i].first;
    }
    EXPECT_EQ(offsets.back() + tensors.back().second.nbytes(), bytes.size());
  }
}

TEST(Safetensors, ReturnsDataOrder) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  // Header order differs from data order.
  std::string data = std::string("\1\0\0\0", 4) + std::string("\2\0\0\0", 4);
  write_raw(
      path,
      make_st(R"({"z": {"dtype": "I32", "shape": [1], "data_offsets": [4, 8]},
                              "a": {"dtype": "I32", "shape": [], "data_offsets": [0, 4]}})",
              data));
  NamedArrays t = read_safetensors(path);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].first, "a");
  EXPECT_EQ(t[0].second.data<int32_t>()[0], 1);
  EXPECT_EQ(t[1].first, "z");
  EXPECT_EQ(t[1].second.data<int32_t>()[0], 2);
}

struct BadFile {
  const char *name;
  std::string bytes;
  std::vector<const char *> expected;
};

std::string entry(const char *name, const char *dtype, const char *shape,
                  const char *offsets) {
  return std::string("\"") + name + "\": {\"dtype\": \"" + dtype +
         "\", \"shape\": " + shape + ", \"data_offsets\": " + offsets + "}";
}

/// A JSON object with the given "key": value members.
std::string object(std::initializer_list<std::string> members) {
  std::string s = "{";
  for (const std::string &m : members)
    s += (s.size() > 1 ? ", " : "") + m;
  return s + "}";
}

TEST(Safetensors, BadInputs) {
  std::string d24(24, '\0');
  std::string w = entry("w", "F32", "[2, 3]", "[0, 24]");
  std::vector<BadFile> cases = {
      {"too short", "abc", {"not a safetensors file (3 bytes"}},
      {"header length past the end",
       std::string("\xff\xff\xff\xff\x00\x00\x00\x00", 8) + "{}",
       {"corrupt header length 4294967295 (the file has only 2 bytes after "
        "it)"}},
      {"header length one too long",
       make_st("{}", "").substr(0, 9),
       {"corrupt header length 2"}},
      {"bad json",
       make_st("{\"w\": {\"dtype\": ", d24),
       {"corrupt header: ", "parse error"}},
      {"not an object",
       make_st("[1, 2]", ""),
       {"corrupt header: not a JSON object"}},
      {"unknown dtype",
       make_st(object({entry("w", "BF16", "[2, 3]", "[0, 12]")}), d24),
       {"tensor 'w': unsupported dtype 'BF16' (soma reads F32, I32, I64)"}},
      {"offsets mismatch",
       make_st(object({entry("w", "F32", "[2, 3]", "[0, 20]")}), d24),
       {"tensor 'w': data_offsets [0, 20] span 20 bytes but shape [2,3] of F32 "
        "needs 6 x 4 bytes"}},
      {"offsets reversed",
       make_st(object({entry("w", "F32", "[0]", "[8, 4]")}), d24),
       {"tensor 'w': data_offsets [8, 4] end before they begin"}},
      {"overlap",
       make_st(object({w, entry("v", "F32", "[2]", "[16, 24]")}), d24),
       {"tensors 'w' [0, 24] and 'v' [16, 24] overlap"}},
      {"gap",
       make_st(object({entry("w", "F32", "[2]", "[8, 16]")}),
               d24.substr(0, 16)),
       {"8 unused bytes in the data buffer before tensor 'w' at offset 8"}},
      {"truncated data",
       make_st(object({w}), d24.substr(0, 20)),
       {"data truncated: the tensors need 24 bytes, the file has 20"}},
      {"range past the buffer",
       make_st(object({entry("w", "F32", "[2]", "[0, 8]"),
                       entry("v", "F32", "[2]", "[8, 16]")}),
               d24.substr(0, 8)),
       {"data truncated"}},
      {"extra data",
       make_st(object({w}), d24 + "xyz"),
       {"3 extra bytes after the tensor data"}},
      {"duplicate name",
       make_st(object({w, w}), d24),
       {"duplicate tensor name 'w' in header"}},
      {"negative dim",
       make_st(object({entry("w", "F32", "[-2, 3]", "[0, 24]")}), d24),
       {"tensor 'w': bad dimension -2 in 'shape'"}},
      {"float dim",
       make_st(object({entry("w", "F32", "[2.5, 3]", "[0, 24]")}), d24),
       {"tensor 'w': bad dimension 2.5 in 'shape'"}},
      {"shape not a list",
       make_st(object({entry("w", "F32", "6", "[0, 24]")}), d24),
       {"tensor 'w': 'shape' is not a list"}},
      {"huge shape",
       make_st(
           object({entry("w", "F32", "[4611686018427387904, 4]", "[0, 24]")}),
           d24),
       {"tensor 'w': shape [4611686018427387904,4] is too large"}},
      {"bad offsets",
       make_st(object({entry("w", "F32", "[2, 3]", "[0]")}), d24),
       {"tensor 'w': bad 'data_offsets' [0]"}},
      {"missing dtype",
       make_st(R"({"w": {"shape": [6], "data_offsets": [0, 24]}})", d24),
       {"tensor 'w': no 'dtype'"}},
      {"entry not an object",
       make_st(R"({"w": [1]})", d24),
       {"tensor 'w': entry is not a JSON object"}},
      {"metadata not an object",
       make_st(R"({"__metadata__": "x"})", ""),
       {"'__metadata__' is not a JSON object"}},
      {"metadata value not a string",
       make_st(R"({"__metadata__": {"k": 1}})", ""),
       {"metadata 'k' is not a string"}},
  };
  TempDir dir;
  for (const BadFile &c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = dir.file("model.safetensors");
    write_raw(path, c.bytes);
    std::string msg = test::error_of([&] { read_safetensors(path); });
    EXPECT_THAT(msg, ::testing::StartsWith(path + ": "));
    for (const char *sub : c.expected)
      EXPECT_THAT(msg, ::testing::HasSubstr(sub));
  }
}

TEST(Safetensors, MissingFile) {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  EXPECT_SOMA_ERROR(read_safetensors(path),
                    "cannot open " + path + ": No such file or directory");
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  Array a(DType::f32, {1});
  EXPECT_SOMA_ERROR(write_safetensors(path, {{"w", a}, {"w", a}}),
                    path + ": duplicate tensor name 'w'");
  EXPECT_SOMA_ERROR(write_safetensors(path, {{"__metadata__", a}}),
                    "'__metadata__' cannot be a tensor name");
  EXPECT_SOMA_ERROR(write_safetensors(path, {{"w", Array()}}),
                    "tensor 'w' is empty");
  EXPECT_SOMA_ERROR(safetensors_data_offsets({{"w", a}, {"w", a}}),
                    "duplicate tensor name 'w'");
  EXPECT_TRUE(dir.entries().empty());
  std::string missing = dir.file("no/m.safetensors");
  EXPECT_SOMA_ERROR(write_safetensors(missing, {{"w", a}}),
                    "cannot write " + missing + ": No such file or directory");
}

} // namespace
} // namespace soma
