//===- data_test.cpp - IDX, Fashion-MNIST, CSV, .npy pairs and Loader -----===//

#include "soma/data.h"
#include "soma/io.h"

#include "scoped_env.h"
#include "test_util.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <numeric>
#include <optional>
#include <ranges>
#include <set>

namespace soma::data {
namespace {

using namespace std::string_literals;
using soma::test::ScopedEnv;
using soma::test::TempDir;
using soma::test::write_raw;

/// Big-endian u32 as 4 bytes.
std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16 & 0xff),
          static_cast<char>(v >> 8 & 0xff), static_cast<char>(v & 0xff)};
}

/// Writes `bytes` as a gzip file.
void write_gzip(const std::string &path, const std::string &bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

/// Images [n, rows, cols] with pixel k = (k % 256) / 255, exactly
/// representable as IDX bytes.
Array test_images(int64_t n, int64_t rows, int64_t cols) {
  Array a(DType::f32, {n, rows, cols});
  for (int64_t k = 0; k < a.numel(); ++k)
    a.data<float>()[k] = static_cast<float>(k % 256) / 255.0f;
  return a;
}

Array test_labels(int64_t n, int32_t classes = 10) {
  Array a(DType::i32, {n});
  for (int64_t k = 0; k < n; ++k)
    a.data<int32_t>()[k] = static_cast<int32_t>((k * 7 + 3) % classes);
  return a;
}

std::vector<float> floats(const Array &a) {
  return {a.data<float>(), a.data<float>() + a.numel()};
}
std::vector<int32_t> ints(const Array &a) {
  return {a.data<int32_t>(), a.data<int32_t>() + a.numel()};
}

//===----------------------------------------------------------------------===//
// IDX
//===----------------------------------------------------------------------===//

TEST(IdxTest, RoundTripPlain) {
  TempDir dir;
  Array images = test_images(3, 4, 5);
  write_idx(dir.file("img"), images, /*gzip=*/false);
  std::string raw = read_file(dir.file("img"));
  // The header is exactly what MNIST files have: magic 0x803, then sizes.
  ASSERT_EQ(raw.size(), 16u + 60u);
  EXPECT_EQ(raw.substr(0, 16), be32(0x803) + be32(3) + be32(4) + be32(5));

  Array back = read_idx(dir.file("img"));
  EXPECT_EQ(back.dtype(), DType::f32);
  EXPECT_EQ(back.shape(), (Shape{3, 4, 5}));
  EXPECT_EQ(floats(back), floats(images));

  Array labels = test_labels(7);
  write_idx(dir.file("lab"), labels, false);
  EXPECT_EQ(read_file(dir.file("lab")).substr(0, 8), be32(0x801) + be32(7));
  Array lback = read_idx(dir.file("lab"));
  EXPECT_EQ(lback.dtype(), DType::i32);
  EXPECT_EQ(lback.shape(), (Shape{7}));
  EXPECT_EQ(ints(lback), ints(labels));
}

TEST(IdxTest, RoundTripGzipDetectedByMagicNotName) {
  TempDir dir;
  Array images = test_images(2, 28, 28);
  // No ".gz" in the name: the reader must sniff the magic.
  write_idx(dir.file("images.idx"), images, /*gzip=*/true);
  std::string raw = read_file(dir.file("images.idx"));
  ASSERT_GE(raw.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(raw[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(raw[1]), 0x8b);
  EXPECT_EQ(floats(read_idx(dir.file("images.idx"))), floats(images));

  Array labels = test_labels(300, 256);
  write_idx(dir.file("labels.gz"), labels, true);
  EXPECT_EQ(ints(read_idx(dir.file("labels.gz"))), ints(labels));
}

TEST(IdxTest, WriterRoundsAndValidates) {
  TempDir dir;
  Array a = Array::f32({1, 2, 2}, {0.0f, 1.0f, 0.5f, 0.1f});
  write_idx(dir.file("a"), a, false);
  // 0.5 * 255 = 127.5 rounds to 128, 0.1 * 255 = 25.5 to 26.
  EXPECT_EQ(floats(read_idx(dir.file("a"))),
            (std::vector<float>{0.0f, 1.0f, 128 / 255.0f, 26 / 255.0f}));
  EXPECT_SOMA_ERROR(
      write_idx(dir.file("b"), Array::f32({1, 2}, {0.5f, 1.5f}), false),
      dir.file("b"), "1.5", "not in [0, 1]");
  EXPECT_SOMA_ERROR(write_idx(dir.file("b"), Array::f32({1, 1}, {NAN}), false),
                    "[0, 1]");
  EXPECT_SOMA_ERROR(write_idx(dir.file("b"), Array::i32({2}, {3, 256}), false),
                    "label 256 at index 1", "[0, 255]");
  EXPECT_SOMA_ERROR(write_idx(dir.file("b"), Array::f32({3}, {0, 0, 0}), false),
                    "cannot write f32 [3] as IDX");
  EXPECT_FALSE(std::filesystem::exists(dir.file("b")));
}

TEST(IdxTest, MissingFile) {
  TempDir dir;
  std::string path = dir.file("nope.gz");
  std::string msg = soma::test::error_of([&] { read_idx(path); });
  EXPECT_EQ(msg.rfind(path, 0), 0u) << msg; // starts with the path
  EXPECT_THAT(msg, ::testing::HasSubstr("not found"));
  EXPECT_SOMA_ERROR(read_idx(dir.path().string()), "is a directory");
}

TEST(IdxTest, NeitherGzipNorIdx) {
  TempDir dir;
  write_raw(dir.file("x.png"), "\x89PNG\r\n\x1a\n");
  EXPECT_SOMA_ERROR(read_idx(dir.file("x.png")), dir.file("x.png"),
                    "not a gzip or IDX file", "89 50 4e 47");
  write_raw(dir.file("empty"), "");
  EXPECT_SOMA_ERROR(read_idx(dir.file("empty")), "empty file");
}

TEST(IdxTest, GzipOfSomethingElse) {
  TempDir dir;
  write_gzip(dir.file("t.gz"), "hello, world");
  EXPECT_SOMA_ERROR(read_idx(dir.file("t.gz")),
                    "gzip data is not an IDX file: bad magic 0x68656c6c");
}

TEST(IdxTest, UnsupportedElementTypeAndRank) {
  TempDir dir;
  write_raw(dir.file("f"), be32(0x00000D01) + be32(1) + "abcd");
  EXPECT_SOMA_ERROR(read_idx(dir.file("f")),
                    "unsupported IDX element type 0x0d");
  write_raw(dir.file("r"), be32(0x00000800));
  EXPECT_SOMA_ERROR(read_idx(dir.file("r")), "0 dimensions");
}

TEST(IdxTest, TruncatedHeader) {
  TempDir dir;
  write_raw(dir.file("h"), be32(0x803) + be32(10) + "\0\0"s);
  EXPECT_SOMA_ERROR(read_idx(dir.file("h")), dir.file("h"),
                    "truncated IDX header: 6 of 12 bytes");
  write_raw(dir.file("m"), "\0\0"s);
  EXPECT_SOMA_ERROR(read_idx(dir.file("m")), "truncated IDX header");
  write_gzip(dir.file("g"), be32(0x801));
  EXPECT_SOMA_ERROR(read_idx(dir.file("g")),
                    "truncated gzip-compressed IDX header: 0 of 4 bytes");
}

TEST(IdxTest, TruncatedData) {
  TempDir dir;
  std::string header = be32(0x803) + be32(60000) + be32(28) + be32(28);
  write_raw(dir.file("p"), header + std::string(1234, '\x7f'));
  EXPECT_SOMA_ERROR(read_idx(dir.file("p")), dir.file("p"),
                    "expected 47040000 bytes of pixel data, found 1234");
  // The same inside a complete, valid gzip stream.
  write_gzip(dir.file("g"), header + std::string(1234, '\x7f'));
  EXPECT_SOMA_ERROR(read_idx(dir.file("g")),
                    "expected 47040000 bytes of pixel data, found 1234");
  write_raw(dir.file("l"), be32(0x801) + be32(5) + "\1\2");
  EXPECT_SOMA_ERROR(read_idx(dir.file("l")),
                    "expected 5 bytes of label data, found 2");
}

TEST(IdxTest, TrailingGarbage) {
  TempDir dir;
  write_raw(dir.file("p"), be32(0x801) + be32(2) + "\1\2\3");
  EXPECT_SOMA_ERROR(read_idx(dir.file("p")), dir.file("p"),
                    "trailing garbage after the 2 bytes of label data");
  write_gzip(dir.file("g"), be32(0x801) + be32(2) + "\1\2\3");
  EXPECT_SOMA_ERROR(read_idx(dir.file("g")), "trailing garbage");
}

TEST(IdxTest, CorruptGzipStream) {
  TempDir dir;
  // Random-looking labels so that the deflate data is not trivially small.
  Array labels(DType::i32, {5000});
  for (int64_t k = 0; k < 5000; ++k)
    labels.data<int32_t>()[k] =
        static_cast<int32_t>(static_cast<uint32_t>(k) * 2654435761u >> 24);
  write_idx(dir.file("ok.gz"), labels, true);
  std::string gz = read_file(dir.file("ok.gz"));
  ASSERT_GT(gz.size(), 100u);

  // Cut short: zlib reports an unexpected end of file.
  write_raw(dir.file("cut.gz"), gz.substr(0, gz.size() / 2));
  EXPECT_SOMA_ERROR(read_idx(dir.file("cut.gz")),
                    dir.file("cut.gz") +
                        ": corrupt gzip stream: unexpected end of file");

  // A wrong CRC-32 in the trailer: the data decode but fail the check.
  std::string bad_crc = gz;
  bad_crc[gz.size() - 8] ^= 0x55;
  write_raw(dir.file("crc.gz"), bad_crc);
  EXPECT_SOMA_ERROR(read_idx(dir.file("crc.gz")), "corrupt gzip stream",
                    "incorrect data check");

  // Garbage in the middle of the deflate data.
  std::string mangled = gz;
  for (size_t k = gz.size() / 3; k < gz.size() / 3 + 16; ++k)
    mangled[k] = static_cast<char>(~mangled[k]);
  write_raw(dir.file("mid.gz"), mangled);
  EXPECT_SOMA_ERROR(read_idx(dir.file("mid.gz")),
                    dir.file("mid.gz") + ": corrupt gzip stream: ");

  // A damaged gzip header.
  std::string bad_flags = gz;
  bad_flags[3] = static_cast<char>(0xe0); // reserved FLG bits
  write_raw(dir.file("flg.gz"), bad_flags);
  EXPECT_SOMA_ERROR(read_idx(dir.file("flg.gz")), "corrupt gzip stream",
                    "unknown header flags set");
}

//===----------------------------------------------------------------------===//
// Fashion-MNIST
//===----------------------------------------------------------------------===//

constexpr const char *kFashionDir = "/usr/share/datasets/fashion-mnist";

double mean(const Array &a) {
  double sum = 0.0;
  for (int64_t k = 0; k < a.numel(); ++k)
    sum += a.data<float>()[k];
  return sum / static_cast<double>(a.numel());
}

TEST(FashionMnistTest, RealTrainAndTest) {
  if (!std::filesystem::exists(std::string(kFashionDir) +
                               "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Dataset train = fashion_mnist("train", kFashionDir);
  EXPECT_EQ(train.x.shape(), (Shape{60000, 784}));
  EXPECT_EQ(train.y.shape(), (Shape{60000}));
  EXPECT_EQ(train.size(), 60000);
  EXPECT_EQ(train.y.data<int32_t>()[0], 9); // an ankle boot
  EXPECT_NEAR(mean(train.x), 0.2860, 0.001);
  auto [lo, hi] = std::minmax_element(train.x.data<float>(),
                                      train.x.data<float>() + train.x.numel());
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 1.0f);
  // Balanced: 6000 examples of each class.
  std::vector<int> counts(10);
  for (int32_t y : ints(train.y))
    ++counts.at(y);
  EXPECT_EQ(counts, std::vector<int>(10, 6000));

  Dataset test = fashion_mnist("test", kFashionDir);
  EXPECT_EQ(test.x.shape(), (Shape{10000, 784}));
  EXPECT_EQ(test.y.shape(), (Shape{10000}));
  EXPECT_EQ(test.y.data<int32_t>()[0], 9);
  EXPECT_NEAR(mean(test.x), 0.2868, 0.001);
}

TEST(FashionMnistTest, MissingDatasetSaysHowToInstall) {
  TempDir dir;
  ScopedEnv env("SOMA_FASHION_MNIST_DIR", dir.path().string());
  EXPECT_EQ(fashion_mnist_dir(), dir.path().string());
  EXPECT_SOMA_ERROR(fashion_mnist("train"),
                    "Fashion-MNIST not found in " + dir.path().string() +
                        " (missing train-images-idx3-ubyte.gz)",
                    "apt-get install dataset-fashion-mnist",
                    "SOMA_FASHION_MNIST_DIR");
  // Half installed: the labels are reported missing before any decoding.
  write_idx(dir.file("t10k-images-idx3-ubyte.gz"), test_images(2, 28, 28),
            true);
  EXPECT_SOMA_ERROR(fashion_mnist("test"), "missing t10k-labels-idx1-ubyte.gz");
  EXPECT_SOMA_ERROR(fashion_mnist("train", dir.file("absent")),
                    "Fashion-MNIST not found in " + dir.file("absent"));
}

TEST(FashionMnistTest, DefaultDirectory) {
  ScopedEnv env("SOMA_FASHION_MNIST_DIR", "");
  EXPECT_EQ(fashion_mnist_dir(), kFashionDir);
}

TEST(FashionMnistTest, UnknownSplit) {
  EXPECT_SOMA_ERROR(fashion_mnist("validation"), "unknown split 'validation'",
                    "\"train\"", "\"test\"");
}

TEST(FashionMnistTest, SmallCopyPlainAndGzip) {
  TempDir dir;
  Array images = test_images(5, 28, 28);
  write_idx(dir.file("train-images-idx3-ubyte.gz"), images, true);
  // Uncompressed files are accepted too (someone may have gunzipped them).
  write_idx(dir.file("train-labels-idx1-ubyte"), test_labels(5), false);
  Dataset d = fashion_mnist("train", dir.path().string());
  EXPECT_EQ(d.x.shape(), (Shape{5, 784}));
  EXPECT_EQ(floats(d.x), floats(images));
  EXPECT_EQ(ints(d.y), ints(test_labels(5)));
}

TEST(FashionMnistTest, BadFiles) {
  TempDir dir;
  write_idx(dir.file("train-images-idx3-ubyte.gz"), test_images(5, 28, 28),
            true);
  write_idx(dir.file("train-labels-idx1-ubyte.gz"), test_labels(4), true);
  EXPECT_SOMA_ERROR(fashion_mnist("train", dir.path().string()),
                    "has 5 images but", "has 4 labels");
  write_idx(dir.file("train-labels-idx1-ubyte.gz"),
            Array::i32({5}, {0, 1, 2, 10, 3}), true);
  EXPECT_SOMA_ERROR(fashion_mnist("train", dir.path().string()),
                    "label 10 at index 3 is not a class 0-9");
  write_idx(dir.file("train-images-idx3-ubyte.gz"), test_images(5, 14, 14),
            true);
  EXPECT_SOMA_ERROR(fashion_mnist("train", dir.path().string()),
                    "expected Fashion-MNIST images of shape [n,28,28], found "
                    "[5,14,14]");
}

//===----------------------------------------------------------------------===//
// Loader
//===----------------------------------------------------------------------===//

/// n examples; x row k is [k, -k] (as f32) and y[k] = k, so a batch shows
/// which examples it holds.
Dataset indexed(int64_t n) {
  Array x(DType::f32, {n, 2});
  Array y(DType::i32, {n});
  for (int64_t k = 0; k < n; ++k) {
    x.data<float>()[2 * k] = static_cast<float>(k);
    x.data<float>()[2 * k + 1] = -static_cast<float>(k);
    y.data<int32_t>()[k] = static_cast<int32_t>(k);
  }
  return {x, y};
}

/// The example ids of the first `count` rows of a batch, checking that x
/// and y agree.
std::vector<int32_t> ids(const Batch &b, int64_t count) {
  std::vector<int32_t> out;
  for (int64_t r = 0; r < count; ++r) {
    int32_t id = b.y.data<int32_t>()[r];
    EXPECT_EQ(b.x.data<float>()[2 * r], static_cast<float>(id));
    EXPECT_EQ(b.x.data<float>()[2 * r + 1], -static_cast<float>(id));
    out.push_back(id);
  }
  return out;
}

std::vector<int32_t> epoch_ids(const Loader &loader, int64_t e) {
  std::vector<int32_t> out;
  for (const Batch &b : loader.epoch(e)) {
    auto v = ids(b, b.size);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

TEST(LoaderTest, SameSeedSameOrderOtherEpochOrSeedDiffers) {
  Loader a(indexed(100), 10, true, 42), b(indexed(100), 10, true, 42);
  EXPECT_EQ(a.order(0), b.order(0));
  EXPECT_EQ(epoch_ids(a, 0), epoch_ids(b, 0));
  EXPECT_EQ(epoch_ids(a, 5), epoch_ids(b, 5));
  EXPECT_NE(a.order(0), a.order(1));
  Loader c(indexed(100), 10, true, 43);
  EXPECT_NE(a.order(0), c.order(0));
  // Shuffled, not the identity or nearly so.
  std::vector<int64_t> order = a.order(0);
  int fixed = 0;
  for (int64_t k = 0; k < 100; ++k)
    fixed += order[k] == k;
  EXPECT_LT(fixed, 10);
}

TEST(LoaderTest, OrderIsAPermutationAndFair) {
  // Every position should see every example about equally often over
  // many epochs: count how often example 0 lands in each quarter.
  Loader loader(indexed(8), 4, true, 1);
  std::vector<int> first_half(8, 0);
  for (int64_t e = 0; e < 4000; ++e) {
    std::vector<int64_t> order = loader.order(e);
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> iota(8);
    std::iota(iota.begin(), iota.end(), 0);
    ASSERT_EQ(sorted, iota);
    for (int k = 0; k < 4; ++k)
      ++first_half[order[k]];
  }
  for (int k = 0; k < 8; ++k) // expected 2000 each; sd ~32
    EXPECT_NEAR(first_half[k], 2000, 200) << "example " << k;
}

static_assert(std::input_iterator<Loader::Epoch::iterator>);
static_assert(std::ranges::input_range<Loader::Epoch>);

TEST(LoaderTest, NoShuffleIsInOrder) {
  Loader loader(indexed(7), 3, /*shuffle=*/false, 0, LastBatch::partial);
  std::vector<int32_t> expected(7);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(epoch_ids(loader, 0), expected);
  EXPECT_EQ(epoch_ids(loader, 9), expected);
  // `auto &` works too, and the iterator can be used by hand.
  int64_t rows = 0;
  for (auto &b : loader.epoch(0))
    rows += b.size;
  EXPECT_EQ(rows, 7);
  auto it = loader.epoch(0).begin();
  EXPECT_EQ(it->index, 0);
  EXPECT_EQ((*++it).index, 1);
}

TEST(LoaderTest, DropVisitsAllButTheRemainderOnce) {
  Loader loader(indexed(103), 10); // drop is the default
  EXPECT_EQ(loader.examples(), 103);
  EXPECT_EQ(loader.batches_per_epoch(), 10);
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int32_t> seen;
    int64_t count = 0;
    for (const Batch &b : loader.epoch(e)) {
      EXPECT_EQ(b.index, count++);
      EXPECT_EQ(b.size, 10);
      EXPECT_EQ(b.x.shape(), (Shape{10, 2}));
      EXPECT_EQ(b.y.shape(), (Shape{10}));
      auto v = ids(b, 10);
      seen.insert(seen.end(), v.begin(), v.end());
    }
    EXPECT_EQ(count, 10);
    // The 100 seen are distinct and the 3 dropped are the end of the order.
    std::vector<int64_t> order = loader.order(e);
    std::set<int32_t> distinct(seen.begin(), seen.end());
    EXPECT_EQ(distinct.size(), 100u);
    for (int64_t k = 100; k < 103; ++k)
      EXPECT_EQ(distinct.count(static_cast<int32_t>(order[k])), 0u);
  }
}

TEST(LoaderTest, PadWrapCountsEveryExampleOnce) {
  Loader loader(indexed(103), 10, true, 7, LastBatch::pad_wrap);
  EXPECT_EQ(loader.batches_per_epoch(), 11);
  std::vector<int64_t> order = loader.order(0);
  std::vector<int32_t> real;
  for (const Batch &b : loader.epoch(0)) {
    EXPECT_EQ(b.x.shape(), (Shape{10, 2})); // static shape, even the last
    EXPECT_EQ(b.size, b.index == 10 ? 3 : 10);
    auto v = ids(b, b.size);
    real.insert(real.end(), v.begin(), v.end());
    if (b.index == 10) {
      // The padding wraps to the start of the epoch's order.
      auto all = ids(b, 10);
      for (int64_t r = 3; r < 10; ++r)
        EXPECT_EQ(all[r], order[r - 3]);
    }
  }
  std::sort(real.begin(), real.end());
  std::vector<int32_t> expected(103);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(real, expected);
}

TEST(LoaderTest, PadWrapBatchLargerThanDataset) {
  Loader loader(indexed(3), 8, false, 0, LastBatch::pad_wrap);
  ASSERT_EQ(loader.batches_per_epoch(), 1);
  Batch b = loader.batch(0, 0);
  EXPECT_EQ(b.size, 3);
  EXPECT_EQ(ids(b, 8), (std::vector<int32_t>{0, 1, 2, 0, 1, 2, 0, 1}));
  // drop has nothing to give; partial gives the 3.
  EXPECT_EQ(Loader(indexed(3), 8).batches_per_epoch(), 0);
  Loader partial(indexed(3), 8, false, 0, LastBatch::partial);
  EXPECT_EQ(partial.batch(0, 0).x.shape(), (Shape{3, 2}));
}

TEST(LoaderTest, PartialLastBatchIsSmaller) {
  Loader loader(indexed(103), 10, true, 3, LastBatch::partial);
  EXPECT_EQ(loader.batches_per_epoch(), 11);
  Batch last = loader.batch(0, 10);
  EXPECT_EQ(last.size, 3);
  EXPECT_EQ(last.x.shape(), (Shape{3, 2}));
  EXPECT_EQ(last.y.shape(), (Shape{3}));
  std::vector<int32_t> all = epoch_ids(loader, 0);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all.size(), 103u);
  EXPECT_EQ(std::set<int32_t>(all.begin(), all.end()).size(), 103u);
}

TEST(LoaderTest, BatchesAreReproducibleOutOfOrder) {
  Loader reference(indexed(50), 8, true, 11);
  std::vector<std::vector<int32_t>> seq;
  for (int64_t e = 0; e < 3; ++e)
    for (const Batch &b : reference.epoch(e))
      seq.push_back(ids(b, 8));
  // A fresh loader, as after restoring a checkpoint, asked in another order.
  Loader resumed(indexed(50), 8, true, 11);
  int64_t per = resumed.batches_per_epoch();
  ASSERT_EQ(per, 6);
  for (auto [e, i] : std::vector<std::pair<int64_t, int64_t>>{
           {2, 5}, {0, 0}, {1, 3}, {2, 0}, {0, 5}, {1, 3}})
    EXPECT_EQ(ids(resumed.batch(e, i), 8), seq[e * per + i])
        << "epoch " << e << " batch " << i;
  // skip() starts an epoch in the middle.
  std::vector<std::vector<int32_t>> tail;
  for (const Batch &b : resumed.epoch(1).skip(4))
    tail.push_back(ids(b, 8));
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0], seq[per + 4]);
  EXPECT_EQ(tail[1], seq[per + 5]);
  EXPECT_EQ(resumed.epoch(0).skip(100).begin(), resumed.epoch(0).end());
}

TEST(LoaderTest, BatchesOwnTheirDataAndKeepTheRowShape) {
  Array x(DType::f32, {6, 1, 2, 2});
  for (int64_t k = 0; k < x.numel(); ++k)
    x.data<float>()[k] = static_cast<float>(k);
  Loader loader(x, Array::i64({6}, {0, 1, 2, 3, 4, 5}), 4, false);
  Batch b = loader.batch(0, 0);
  EXPECT_EQ(b.x.shape(), (Shape{4, 1, 2, 2}));
  EXPECT_EQ(b.y.dtype(), DType::i64);
  EXPECT_EQ(b.x.data<float>()[4 * 3 + 3], 15.0f);
  b.x.data<float>()[0] = 99.0f; // must not write through to the dataset
  EXPECT_EQ(x.data<float>()[0], 0.0f);
}

TEST(LoaderTest, Errors) {
  EXPECT_SOMA_ERROR(Loader(indexed(5), 0), "batch size must be positive");
  EXPECT_SOMA_ERROR(Loader(indexed(5).x, Array::i32({4}, {0, 1, 2, 3}), 2),
                    "x has 5 examples", "y has 4");
  EXPECT_SOMA_ERROR(Loader(Dataset{}, 2), "no x or no y");
  Loader loader(indexed(10), 4);
  EXPECT_SOMA_ERROR(loader.batch(0, 2), "batch 2 is out of range",
                    "has 2 batches of 4");
  EXPECT_SOMA_ERROR(loader.batch(0, -1), "out of range");
  EXPECT_SOMA_ERROR(loader.batch(-1, 0), "epoch -1 is negative");
  EXPECT_SOMA_ERROR(loader.epoch(-2), "epoch -2 is negative");
}

TEST(LoaderTest, EmptyDataset) {
  Loader loader(Array(DType::f32, {0, 3}), Array(DType::i32, {0}), 4, true, 0,
                LastBatch::pad_wrap);
  EXPECT_EQ(loader.batches_per_epoch(), 0);
  EXPECT_TRUE(loader.order(0).empty());
  EXPECT_EQ(loader.epoch(0).begin(), loader.epoch(0).end());
}

//===----------------------------------------------------------------------===//
// CSV
//===----------------------------------------------------------------------===//

TEST(CsvTest, HeaderAutoDetectedLabelLast) {
  TempDir dir;
  write_raw(dir.file("iris.csv"), "sepal_length, sepal_width ,\"petal\",class\n"
                                  "5.1,3.5,1.4,0\r\n"
                                  "\n"
                                  "  4.9 ,+3.0,-1e-1, 2\n"
                                  "6.2,3.4,5.4,1");
  Dataset d = read_csv(dir.file("iris.csv"));
  EXPECT_EQ(d.x.shape(), (Shape{3, 3}));
  EXPECT_EQ(floats(d.x), (std::vector<float>{5.1f, 3.5f, 1.4f, 4.9f, 3.0f,
                                             -0.1f, 6.2f, 3.4f, 5.4f}));
  EXPECT_EQ(d.y.dtype(), DType::i32);
  EXPECT_EQ(ints(d.y), (std::vector<int32_t>{0, 2, 1}));
}

TEST(CsvTest, LabelColumnAndExplicitHeader) {
  TempDir dir;
  write_raw(dir.file("a.csv"), "7,1.5,2.5\n3,0.5,-2\n");
  Dataset first = read_csv(dir.file("a.csv"), 0);
  EXPECT_EQ(ints(first.y), (std::vector<int32_t>{7, 3}));
  EXPECT_EQ(floats(first.x), (std::vector<float>{1.5f, 2.5f, 0.5f, -2.0f}));
  // -2 is the second column from the end; "2.0" is an integral label.
  write_raw(dir.file("b.csv"), "1.5,4,2.5\n0.5,2.0,1\n");
  Dataset middle = read_csv(dir.file("b.csv"), -2, false);
  EXPECT_EQ(ints(middle.y), (std::vector<int32_t>{4, 2}));
  EXPECT_EQ(floats(middle.x), (std::vector<float>{1.5f, 2.5f, 0.5f, 1.0f}));
  EXPECT_SOMA_ERROR(read_csv(dir.file("a.csv"), -2), "column 2",
                    "label '1.5' is not an integer");
  // header=true skips a numeric first line that auto-detection keeps.
  Dataset skipped = read_csv(dir.file("a.csv"), 0, true);
  EXPECT_EQ(ints(skipped.y), (std::vector<int32_t>{3}));
}

TEST(CsvTest, BadFiles) {
  TempDir dir;
  std::string path = dir.file("data.csv");
  write_raw(path, "a,b,c,label\n1,2,3,0\n4,abc,6,1\n");
  EXPECT_SOMA_ERROR(read_csv(path),
                    path + ":3: column 2: 'abc' is not a number");

  write_raw(path, "1,2,3\n4,5,6\n7,8\n");
  EXPECT_SOMA_ERROR(read_csv(path),
                    path + ":3: expected 3 columns (as on line 1), found 2");

  write_raw(path, "1,2,3\n4,,6\n");
  EXPECT_SOMA_ERROR(read_csv(path), path + ":2: column 2: empty field");

  write_raw(path, "1,2,3.5\n");
  EXPECT_SOMA_ERROR(read_csv(path), path + ":1: column 3: label '3.5'");

  write_raw(path, "1,2,1e999\n");
  EXPECT_SOMA_ERROR(read_csv(path), "'1e999' is out of range");

  write_raw(path, "x,y\n\n");
  EXPECT_SOMA_ERROR(read_csv(path), path + ": no data rows");
  write_raw(path, "");
  EXPECT_SOMA_ERROR(read_csv(path), "no data rows");

  write_raw(path, "1\n2\n");
  EXPECT_SOMA_ERROR(read_csv(path), "found 1 column");

  write_raw(path, "1,2\n");
  EXPECT_SOMA_ERROR(read_csv(path, 2), "label column 2 is out of range for 2");
  EXPECT_SOMA_ERROR(read_csv(path, -3), "label column -3 is out of range");

  EXPECT_SOMA_ERROR(read_csv(dir.file("none.csv")), dir.file("none.csv"),
                    "not found");
}

//===----------------------------------------------------------------------===//
// .npy pairs
//===----------------------------------------------------------------------===//

TEST(DataNpyPairTest, ReadsAndConverts) {
  TempDir dir;
  write_npy(dir.file("x.npy"), Array::f32({3, 2}, {1, 2, 3, 4, 5, 6}));
  write_npy(dir.file("y.npy"), Array::i64({3}, {4, 5, 6}));
  Dataset d = read_npy_pair(dir.file("x.npy"), dir.file("y.npy"));
  EXPECT_EQ(d.x.shape(), (Shape{3, 2}));
  EXPECT_EQ(d.y.dtype(), DType::i32);
  EXPECT_EQ(ints(d.y), (std::vector<int32_t>{4, 5, 6}));

  write_npy(dir.file("xi.npy"), Array::i32({3, 1}, {7, 8, 9}));
  write_npy(dir.file("yi.npy"), Array::i32({3}, {0, 1, 0}));
  Dataset di = read_npy_pair(dir.file("xi.npy"), dir.file("yi.npy"));
  EXPECT_EQ(di.x.dtype(), DType::f32);
  EXPECT_EQ(floats(di.x), (std::vector<float>{7, 8, 9}));
}

TEST(DataNpyPairTest, Errors) {
  TempDir dir;
  write_npy(dir.file("x.npy"), Array::f32({3, 2}, {1, 2, 3, 4, 5, 6}));
  write_npy(dir.file("y4.npy"), Array::i32({4}, {0, 1, 2, 3}));
  EXPECT_SOMA_ERROR(read_npy_pair(dir.file("x.npy"), dir.file("y4.npy")),
                    "has 3 examples", "has 4 labels");
  write_npy(dir.file("yf.npy"), Array::f32({3}, {0, 1, 2}));
  EXPECT_SOMA_ERROR(read_npy_pair(dir.file("x.npy"), dir.file("yf.npy")),
                    "labels must be i32 or i64, found f32");
  write_npy(dir.file("y2.npy"), Array::i32({3, 1}, {0, 1, 2}));
  EXPECT_SOMA_ERROR(read_npy_pair(dir.file("x.npy"), dir.file("y2.npy")),
                    "labels must have shape [n], found [3,1]");
  write_npy(dir.file("ybig.npy"), Array::i64({3}, {0, int64_t(1) << 40, 2}));
  EXPECT_SOMA_ERROR(read_npy_pair(dir.file("x.npy"), dir.file("ybig.npy")),
                    "does not fit in i32");
  EXPECT_SOMA_ERROR(read_npy_pair(dir.file("x.npy"), dir.file("no.npy")),
                    "no.npy");
}


/// n images [n, 1, h, w] whose pixel (y, x) of image i holds 1000 i + 10 y + x.
Dataset coordinateImages(int64_t n, int64_t h, int64_t w) {
  Dataset d;
  d.x = Array(DType::f32, {n, 1, h, w});
  d.y = Array(DType::i32, {n});
  for (int64_t i = 0; i < n; ++i) {
    d.y.data<int32_t>()[i] = static_cast<int32_t>(i);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        d.x.data<float>()[(i * h + y) * w + x] = static_cast<float>(1000 * i + 10 * y + x);
  }
  return d;
}

TEST(AugmentTest, FlipMirrorsAboutHalfTheImagesExactly) {
  Loader loader(coordinateImages(200, 4, 5), 200, false);
  loader.set_augment({.flip = true});
  Batch b = loader.batch(0, 0);
  int flipped = 0;
  for (int64_t i = 0; i < 200; ++i) {
    const float *img = b.x.data<float>() + i * 20;
    bool mirrored = img[0] == static_cast<float>(1000 * i + 4);
    flipped += mirrored;
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        ASSERT_EQ(img[y * 5 + x], static_cast<float>(1000 * i + 10 * y + (mirrored ? 4 - x : x)));
  }
  EXPECT_GT(flipped, 70);
  EXPECT_LT(flipped, 130);
}

TEST(AugmentTest, ShiftMovesByWholePixelsWithZeroFill) {
  Loader loader(coordinateImages(100, 6, 6), 100, false);
  loader.set_augment({.shift = 2});
  Batch b = loader.batch(0, 0);
  std::set<std::pair<int64_t, int64_t>> seen;
  for (int64_t i = 0; i < 100; ++i) {
    const float *img = b.x.data<float>() + i * 36;
    // Find the shift from a pixel that stays inside: the centre.
    bool matched = false;
    for (int64_t dy = -2; dy <= 2 && !matched; ++dy)
      for (int64_t dx = -2; dx <= 2 && !matched; ++dx) {
        bool ok = true;
        for (int64_t y = 0; y < 6 && ok; ++y)
          for (int64_t x = 0; x < 6 && ok; ++x) {
            int64_t sy = y - dy, sx = x - dx;
            float want = sy < 0 || sy >= 6 || sx < 0 || sx >= 6 ? 0.0f
                                                                : static_cast<float>(1000 * i + 10 * sy + sx);
            ok = img[y * 6 + x] == want;
          }
        if (ok) {
          matched = true;
          seen.insert({dy, dx});
        }
      }
    EXPECT_TRUE(matched) << "image " << i;
  }
  EXPECT_GT(seen.size(), 15u); // most of the 25 shifts occur
}

TEST(AugmentTest, RotationKeepsTheCentreAndNoiseHasItsStd) {
  Dataset d;
  d.x = Array(DType::f32, {1, 1, 9, 9});
  d.y = Array(DType::i32, {1});
  d.x.data<float>()[4 * 9 + 4] = 1.0f; // a single bright centre pixel
  Loader rot(d, 1, false);
  rot.set_augment({.rotate_degrees = 30});
  for (int64_t e = 0; e < 5; ++e)
    EXPECT_FLOAT_EQ(rot.batch(e, 0).x.data<float>()[4 * 9 + 4], 1.0f);
  Dataset zeros;
  zeros.x = Array(DType::f32, {4, 1, 50, 50});
  zeros.y = Array(DType::i32, {4});
  Loader noisy(zeros, 4, false);
  noisy.set_augment({.noise_std = 0.5});
  Batch b = noisy.batch(0, 0);
  double sq = 0;
  for (int64_t k = 0; k < b.x.numel(); ++k)
    sq += static_cast<double>(b.x.data<float>()[k]) * b.x.data<float>()[k];
  EXPECT_NEAR(std::sqrt(sq / static_cast<double>(b.x.numel())), 0.5, 0.02);
}

TEST(AugmentTest, ReproducibleAndNewEveryEpoch) {
  Augment a{.flip = true, .shift = 2, .rotate_degrees = 10, .noise_std = 0.1};
  Loader l1(coordinateImages(20, 8, 8), 5, true, 3), l2(coordinateImages(20, 8, 8), 5, true, 3);
  l1.set_augment(a);
  l2.set_augment(a);
  auto same = [](const Array &p, const Array &q) {
    return std::memcmp(p.raw(), q.raw(), static_cast<size_t>(p.numel()) * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(l1.batch(1, 2).x, l2.batch(1, 2).x)); // as after a resume
  EXPECT_FALSE(same(l1.batch(0, 2).x, l1.batch(1, 2).x));
  // The data set itself is untouched.
  Dataset fresh = coordinateImages(20, 8, 8);
  EXPECT_TRUE(same(l1.dataset().x, fresh.x));
}

TEST(AugmentTest, Errors) {
  Dataset flat;
  flat.x = Array(DType::f32, {3, 784});
  flat.y = Array(DType::i32, {3});
  Loader l(flat, 1, false);
  EXPECT_THROW(
      {
        try {
          l.set_augment({.flip = true});
        } catch (const Error &e) {
          EXPECT_THAT(e.what(), ::testing::HasSubstr("augmentation needs f32 images"));
          EXPECT_THAT(e.what(), ::testing::HasSubstr("[3,784]"));
          throw;
        }
      },
      Error);
  Loader images(coordinateImages(2, 3, 3), 1, false);
  EXPECT_THROW(images.set_augment({.shift = -1}), Error);
  images.set_augment({}); // nothing: allowed on any data
}

} // namespace
} // namespace soma::data
