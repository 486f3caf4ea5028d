//===- data.cpp - Datasets, CSV/.npy readers and the shuffling Loader -----===//

#include "soma/data.h"
#include "soma/error.h"
#include "soma/io.h"
#include "soma/random.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <numbers>
#include <vector>
#include <string_view>

namespace soma::data {

//===----------------------------------------------------------------------===//
// Fashion-MNIST
//===----------------------------------------------------------------------===//

std::string fashion_mnist_dir() {
  const char *env = std::getenv("SOMA_FASHION_MNIST_DIR");
  if (env && *env)
    return env;
  return "/usr/share/datasets/fashion-mnist";
}

namespace {

/// The path of `name` in `dir`: the ".gz" file, else an uncompressed copy
/// (someone may have gunzipped them), else an install hint.
std::string find_fashion_file(const std::string &dir, const std::string &name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const std::string &candidate : {name + ".gz", name}) {
    fs::path p = fs::path(dir) / candidate;
    if (fs::is_regular_file(p, ec))
      return p.string();
  }
  throw Error(fmt::format(
      "Fashion-MNIST not found in {} (missing {}.gz): install it with "
      "'apt-get install dataset-fashion-mnist' or set SOMA_FASHION_MNIST_DIR",
      dir, name));
}

} // namespace

Dataset fashion_mnist(const std::string &split, const std::string &dir) {
  std::string prefix;
  if (split == "train")
    prefix = "train";
  else if (split == "test")
    prefix = "t10k";
  else
    throw Error(fmt::format(
        "Fashion-MNIST: unknown split '{}' (expected \"train\" or \"test\")",
        split));
  std::string where = dir.empty() ? fashion_mnist_dir() : dir;
  // Look for both files before reading either, so that a half-installed
  // dataset is reported at once rather than after a second of decoding.
  std::string images_path =
      find_fashion_file(where, prefix + "-images-idx3-ubyte");
  std::string labels_path =
      find_fashion_file(where, prefix + "-labels-idx1-ubyte");

  Array images = read_idx(images_path);
  if (images.rank() != 3 || images.shape()[1] != 28 || images.shape()[2] != 28)
    throw Error(fmt::format("{}: expected Fashion-MNIST images of shape "
                            "[n,28,28], found {}",
                            images_path, shape_str(images.shape())));
  Array labels = read_idx(labels_path);
  if (labels.rank() != 1)
    throw Error(fmt::format("{}: expected labels of shape [n], found {}",
                            labels_path, shape_str(labels.shape())));
  if (labels.shape()[0] != images.shape()[0])
    throw Error(fmt::format("Fashion-MNIST {}: {} has {} images but {} has {} "
                            "labels",
                            split, images_path, images.shape()[0], labels_path,
                            labels.shape()[0]));
  const int32_t *y = labels.data<int32_t>();
  for (int64_t k = 0; k < labels.shape()[0]; ++k)
    if (y[k] > 9)
      throw Error(fmt::format("{}: label {} at index {} is not a class 0-9",
                              labels_path, y[k], k));
  int64_t n = images.shape()[0];
  return {images.reshaped({n, 28 * 28}), labels};
}

//===----------------------------------------------------------------------===//
// CSV
//===----------------------------------------------------------------------===//

namespace {

/// Reads a whole file; errors start with the path like the other readers'.
std::string slurp(const std::string &path) {
  std::unique_ptr<FILE, int (*)(FILE *)> f(std::fopen(path.c_str(), "rb"),
                                           &std::fclose);
  if (!f) {
    if (errno == ENOENT)
      throw Error(fmt::format("{}: file not found", path));
    throw Error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  }
  std::string bytes;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0)
    bytes.append(buf, n);
  if (std::ferror(f.get()))
    throw Error(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  return bytes;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"')
    s = trim(s.substr(1, s.size() - 2));
  return s;
}

/// Splits a line at commas into trimmed fields.
void split_fields(std::string_view line, std::vector<std::string_view> &out) {
  out.clear();
  for (;;) {
    size_t comma = line.find(',');
    out.push_back(trim(line.substr(0, comma)));
    if (comma == std::string_view::npos)
      return;
    line.remove_prefix(comma + 1);
  }
}

/// Parses a whole field as a number; nullopt if it is not one. Accepts what
/// from_chars does plus a leading '+', e.g. "-1.5e3", "+2", "nan", "inf".
std::optional<double> parse_number(std::string_view s, bool *out_of_range) {
  *out_of_range = false;
  if (!s.empty() && s.front() == '+')
    s.remove_prefix(1);
  if (s.empty() || s.front() == '+' || s.front() == ' ')
    return std::nullopt;
  double v = 0.0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (end != s.data() + s.size())
    return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    *out_of_range = true;
    return std::nullopt;
  }
  if (ec != std::errc())
    return std::nullopt;
  return v;
}

} // namespace

Dataset read_csv(const std::string &path, int label_column,
                 std::optional<bool> header) {
  std::string text = slurp(path);
  std::string_view rest = text;
  if (rest.starts_with("\xEF\xBB\xBF")) // a UTF-8 byte order mark
    rest.remove_prefix(3);

  std::vector<float> xs;
  std::vector<int32_t> ys;
  std::vector<std::string_view> fields;
  int64_t columns = -1, columns_line = 0, label = -1, rows = 0;
  bool first = true;
  for (int64_t line_no = 1; !rest.empty(); ++line_no) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (trim(line).empty())
      continue;
    split_fields(line, fields);
    int64_t count = static_cast<int64_t>(fields.size());
    auto where = [&] { return fmt::format("{}:{}", path, line_no); };

    if (columns < 0) {
      columns = count;
      columns_line = line_no;
      if (columns < 2)
        throw Error(fmt::format("{}: found {} column, need a label and at "
                                "least one feature",
                                where(), columns));
      label = label_column < 0 ? columns + label_column : label_column;
      if (label < 0 || label >= columns)
        throw Error(fmt::format("{}: label column {} is out of range for {} "
                                "columns",
                                where(), label_column, columns));
    } else if (count != columns) {
      throw Error(fmt::format("{}: expected {} columns (as on line {}), "
                              "found {}",
                              where(), columns, columns_line, count));
    }

    if (first) {
      first = false;
      bool is_header = header.value_or(false);
      if (!header) { // auto-detect: a header has a field that is no number
        bool range = false;
        for (std::string_view f : fields)
          if (!f.empty() && !parse_number(f, &range) && !range)
            is_header = true;
      }
      if (is_header)
        continue;
    }

    for (int64_t c = 0; c < count; ++c) {
      std::string_view f = fields[c];
      bool range = false;
      std::optional<double> v = parse_number(f, &range);
      if (!v) {
        if (f.empty())
          throw Error(
              fmt::format("{}: column {}: empty field", where(), c + 1));
        throw Error(fmt::format("{}: column {}: '{}' {}", where(), c + 1, f,
                                range ? "is out of range" : "is not a number"));
      }
      if (c == label) {
        if (!(*v == std::floor(*v)) ||
            *v < std::numeric_limits<int32_t>::min() ||
            *v > std::numeric_limits<int32_t>::max())
          throw Error(fmt::format("{}: column {}: label '{}' is not an "
                                  "integer (32-bit)",
                                  where(), c + 1, f));
        ys.push_back(static_cast<int32_t>(*v));
      } else {
        if (std::isfinite(*v) &&
            std::abs(*v) > std::numeric_limits<float>::max())
          throw Error(fmt::format("{}: column {}: '{}' is out of range for "
                                  "f32",
                                  where(), c + 1, f));
        xs.push_back(static_cast<float>(*v));
      }
    }
    ++rows;
  }
  if (rows == 0)
    throw Error(fmt::format("{}: no data rows", path));
  return {Array::f32({rows, columns - 1}, xs), Array::i32({rows}, ys)};
}

//===----------------------------------------------------------------------===//
// .npy pairs
//===----------------------------------------------------------------------===//

Dataset read_npy_pair(const std::string &x_path, const std::string &y_path) {
  Array x = read_npy(x_path);
  Array y = read_npy(y_path);
  if (x.rank() < 1)
    throw Error(fmt::format("{}: x must have a leading example dimension, "
                            "found a scalar",
                            x_path));
  if (x.dtype() != DType::f32) {
    Array fx(DType::f32, x.shape());
    float *dst = fx.data<float>();
    for (int64_t k = 0; k < x.numel(); ++k)
      dst[k] = x.dtype() == DType::i32
                   ? static_cast<float>(x.data<int32_t>()[k])
                   : static_cast<float>(x.data<int64_t>()[k]);
    x = fx;
  }
  if (y.rank() != 1)
    throw Error(fmt::format("{}: labels must have shape [n], found {}", y_path,
                            shape_str(y.shape())));
  if (y.dtype() == DType::f32)
    throw Error(
        fmt::format("{}: labels must be i32 or i64, found f32", y_path));
  if (y.dtype() == DType::i64) {
    Array iy(DType::i32, y.shape());
    const int64_t *src = y.data<int64_t>();
    for (int64_t k = 0; k < y.numel(); ++k) {
      if (src[k] < std::numeric_limits<int32_t>::min() ||
          src[k] > std::numeric_limits<int32_t>::max())
        throw Error(fmt::format("{}: label {} at index {} does not fit in i32",
                                y_path, src[k], k));
      iy.data<int32_t>()[k] = static_cast<int32_t>(src[k]);
    }
    y = iy;
  }
  if (x.shape()[0] != y.shape()[0])
    throw Error(fmt::format("{} has {} examples but {} has {} labels", x_path,
                            x.shape()[0], y_path, y.shape()[0]));
  return {x, y};
}

//===----------------------------------------------------------------------===//
// Loader
//===----------------------------------------------------------------------===//

/// The order of the most recently used epoch. Training asks for the batches
/// of one epoch in turn, so one entry avoids reshuffling for every batch.
struct Loader::OrderCache {
  std::mutex mutex;
  int64_t epoch = -1;
  std::shared_ptr<const std::vector<int64_t>> order;
};

namespace {

/// The Philox stream of the shuffle of epoch e is kShuffleStream + e: a
/// stream no parameter initializer uses (theirs are stream_id(name)).
const uint64_t kShuffleStream = stream_id("soma.data.Loader.shuffle");
/// The streams of augmentation in epoch e: kAugmentStream + e for the
/// geometry of each example, kNoiseStream + e for its noise.
const uint64_t kAugmentStream = stream_id("soma.augment");
const uint64_t kNoiseStream = stream_id("soma.augment.noise");

} // namespace

Loader::Loader(Dataset data, int64_t batch, bool shuffle, uint64_t seed,
               LastBatch last)
    : data_(std::move(data)), batch_(batch), shuffle_(shuffle), seed_(seed),
      last_(last), cache_(std::make_shared<OrderCache>()) {
  if (batch <= 0)
    throw Error(
        fmt::format("Loader: batch size must be positive, got {}", batch));
  if (data_.x.empty() || data_.y.empty())
    throw Error("Loader: the dataset has no x or no y array");
  if (data_.x.rank() < 1 || data_.y.rank() < 1)
    throw Error(fmt::format("Loader: x {} and y {} need a leading example "
                            "dimension",
                            shape_str(data_.x.shape()),
                            shape_str(data_.y.shape())));
  if (data_.x.shape()[0] != data_.y.shape()[0])
    throw Error(fmt::format("Loader: x has {} examples ({}) but y has {} ({})",
                            data_.x.shape()[0], shape_str(data_.x.shape()),
                            data_.y.shape()[0], shape_str(data_.y.shape())));
}

Loader::Loader(Array x, Array y, int64_t batch, bool shuffle, uint64_t seed,
               LastBatch last)
    : Loader(Dataset{std::move(x), std::move(y)}, batch, shuffle, seed, last) {}

int64_t Loader::examples() const { return data_.x.shape()[0]; }

int64_t Loader::batches_per_epoch() const {
  int64_t n = examples();
  return last_ == LastBatch::drop ? n / batch_ : (n + batch_ - 1) / batch_;
}

std::vector<int64_t> Loader::order(int64_t epoch) const {
  if (epoch < 0)
    throw Error(fmt::format("Loader: epoch {} is negative", epoch));
  int64_t n = examples();
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k)
    perm[k] = k;
  if (!shuffle_)
    return perm;
  // Fisher-Yates from the top, the swap partner of position i drawn from
  // Philox block i: 64 random bits scaled to [0, i] by a multiply-shift
  // (Lemire), whose bias of at most i / 2^64 is far below anything
  // measurable. Part of the reproducibility contract: changing this changes
  // every shuffled order.
  Philox rng{seed_, kShuffleStream + static_cast<uint64_t>(epoch)};
  for (int64_t i = n - 1; i > 0; --i) {
    uint32_t w[4];
    rng.block(static_cast<uint64_t>(i), w);
    uint64_t r = uint64_t(w[0]) << 32 | w[1];
    auto j = static_cast<int64_t>(
        (static_cast<unsigned __int128>(r) * static_cast<uint64_t>(i + 1)) >>
        64);
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

std::shared_ptr<const std::vector<int64_t>>
Loader::cached_order(int64_t epoch) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (cache_->epoch == epoch)
      return cache_->order;
  }
  // Shuffle outside the lock; a racing thread at worst computes it twice.
  auto perm = std::make_shared<const std::vector<int64_t>>(order(epoch));
  std::lock_guard<std::mutex> lock(cache_->mutex);
  cache_->epoch = epoch;
  cache_->order = perm;
  return perm;
}

namespace {

/// Copies rows `rows` of `src` ([n, ...]) into a new [rows.size(), ...] array.
Array gather_rows(const Array &src, const std::vector<int64_t> &rows) {
  Shape shape = src.shape();
  int64_t n = shape[0];
  shape[0] = static_cast<int64_t>(rows.size());
  Array out(src.dtype(), shape);
  if (n == 0 || out.nbytes() == 0)
    return out;
  size_t row_bytes = src.nbytes() / static_cast<size_t>(n);
  const auto *from = static_cast<const std::byte *>(src.raw());
  auto *to = static_cast<std::byte *>(out.raw());
  for (size_t r = 0; r < rows.size(); ++r)
    std::memcpy(to + r * row_bytes, from + rows[r] * row_bytes, row_bytes);
  return out;
}

} // namespace

Batch Loader::batch(int64_t epoch, int64_t i) const {
  if (epoch < 0)
    throw Error(fmt::format("Loader: epoch {} is negative", epoch));
  int64_t count = batches_per_epoch();
  if (i < 0 || i >= count)
    throw Error(fmt::format("Loader: batch {} is out of range (an epoch of {} "
                            "examples has {} batches of {})",
                            i, examples(), count, batch_));
  auto perm = cached_order(epoch);
  int64_t n = examples();
  int64_t start = i * batch_;
  int64_t real = std::min(batch_, n - start);
  int64_t rows = last_ == LastBatch::partial ? real : batch_;
  std::vector<int64_t> idx(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    idx[r] = (*perm)[(start + r) % n]; // wraps only under pad_wrap
  Batch b{gather_rows(data_.x, idx), gather_rows(data_.y, idx), real, i};
  if (augment_.any()) {
    const Shape &s = b.x.shape();
    int64_t h = s[s.size() - 2], w = s[s.size() - 1];
    int64_t channels = numel(s) / (rows * h * w);
    float *x = b.x.data<float>();
    for (int64_t r = 0; r < rows; ++r)
      augment_image(x + r * channels * h * w, channels, h, w, augment_, seed_, epoch, start + r);
  }
  return b;
}

void Loader::set_augment(const Augment &augment) {
  if (augment.any()) {
    const Shape &s = data_.x.shape();
    if (data_.x.dtype() != DType::f32 || s.size() < 3)
      throw Error(fmt::format("Loader: augmentation needs f32 images [N, ..., H, W]; x is {}{} "
                              "(reshape it, e.g. to [N, 1, 28, 28])",
                              dtype_name(data_.x.dtype()), shape_str(s)));
  }
  if (augment.shift < 0 || augment.rotate_degrees < 0 || augment.noise_std < 0)
    throw Error(fmt::format("Loader: augmentation settings must be >= 0 (shift {}, rotate_degrees "
                            "{}, noise_std {})",
                            augment.shift, augment.rotate_degrees, augment.noise_std));
  augment_ = augment;
}

void augment_image(float *image, int64_t channels, int64_t h, int64_t w, const Augment &a,
                   uint64_t seed, int64_t epoch, int64_t position) {
  // One Philox stream per epoch; 8 uniforms per example for the geometry,
  // then one normal per pixel for the noise in a second stream.
  Philox rng{seed, kAugmentStream + static_cast<uint64_t>(epoch)};
  auto u = [&](int k) { return static_cast<double>(rng.uniform(static_cast<uint64_t>(position) * 8 + k)); };
  bool flip = a.flip && u(0) < 0.5;
  double angle = a.rotate_degrees * (2 * u(1) - 1) * std::numbers::pi / 180.0;
  auto shiftOf = [&](int k) {
    return a.shift > 0 ? std::min(a.shift, static_cast<int64_t>(u(k) * static_cast<double>(2 * a.shift + 1)) - a.shift)
                       : int64_t{0};
  };
  int64_t dy = shiftOf(2), dx = shiftOf(3);
  int64_t plane = h * w;
  if (flip || angle != 0 || dy != 0 || dx != 0) {
    // Output pixel (y, x) reads the source at the inverse transform:
    // undo the shift, rotate back about the centre, then mirror.
    double cy = static_cast<double>(h - 1) / 2, cx = static_cast<double>(w - 1) / 2;
    double c = std::cos(angle), s = std::sin(angle);
    std::vector<float> src(image, image + channels * plane);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        double ty = static_cast<double>(y - dy) - cy, tx = static_cast<double>(x - dx) - cx;
        double sy = c * ty + s * tx + cy, sx = -s * ty + c * tx + cx;
        if (flip)
          sx = static_cast<double>(w - 1) - sx;
        double fy = std::floor(sy), fx = std::floor(sx);
        double wy = sy - fy, wx = sx - fx;
        auto iy = static_cast<int64_t>(fy), ix = static_cast<int64_t>(fx);
        for (int64_t ch = 0; ch < channels; ++ch) {
          const float *p = src.data() + ch * plane;
          auto at = [&](int64_t yy, int64_t xx) -> double {
            return yy < 0 || yy >= h || xx < 0 || xx >= w ? 0.0 : p[yy * w + xx];
          };
          double v = (1 - wy) * ((1 - wx) * at(iy, ix) + wx * at(iy, ix + 1)) +
                     wy * ((1 - wx) * at(iy + 1, ix) + wx * at(iy + 1, ix + 1));
          image[ch * plane + y * w + x] = static_cast<float>(v);
        }
      }
  }
  if (a.noise_std > 0) {
    Philox noise{seed, kNoiseStream + static_cast<uint64_t>(epoch)};
    uint64_t base = static_cast<uint64_t>(position) * static_cast<uint64_t>(channels * plane);
    for (int64_t k = 0; k < channels * plane; ++k)
      image[k] += static_cast<float>(a.noise_std) * noise.normal(base + static_cast<uint64_t>(k));
  }
}

Loader::Epoch Loader::epoch(int64_t e) const {
  if (e < 0)
    throw Error(fmt::format("Loader: epoch {} is negative", e));
  return Epoch(this, e, 0);
}

Loader::Epoch Loader::Epoch::skip(int64_t first) const {
  int64_t count = loader_->batches_per_epoch();
  return Epoch(loader_, epoch_, std::clamp<int64_t>(first, 0, count));
}

Loader fashion_mnist(const std::string &split, int64_t batch, bool shuffle, uint64_t seed) {
  bool train = split == "train";
  return Loader(fashion_mnist(split), batch, train && shuffle, seed,
                train ? LastBatch::drop : LastBatch::pad_wrap);
}

} // namespace soma::data
