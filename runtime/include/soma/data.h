//===- soma/data.h - Datasets, readers and a shuffling loader ---*- C++ -*-===//
#pragma once

#include "soma/array.h"

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace soma::data {

/// A supervised dataset: `x` holds the inputs (f32, [n, ...]) and `y` the
/// integer class labels (i32, [n]); example k is row k of both.
struct Dataset {
  Array x;
  Array y;
  /// Number of examples (x.shape()[0]; 0 for an empty dataset).
  int64_t size() const { return x.empty() || x.rank() == 0 ? 0 : x.shape()[0]; }
};

//===----------------------------------------------------------------------===//
// IDX files (the MNIST format)
//===----------------------------------------------------------------------===//

/// Reads an IDX file of unsigned bytes, plain or gzip-compressed (detected by
/// the gzip magic 1f 8b, not by the file name). The big-endian header is the
/// magic 0x000008NN, NN being the number of dimensions, then NN u32 sizes.
/// Rank 1 (0x00000801, labels) gives an i32 array; rank 2 and up
/// (0x00000803 for [n, rows, cols] images) give f32 scaled to [0, 1] by
/// x / 255. Every problem -- a missing file, a magic that is neither gzip nor
/// IDX, another element type, a truncated header or payload, a corrupt gzip
/// stream, bytes after the payload -- throws soma::Error starting with the
/// path, e.g. "train.gz: expected 47040000 bytes of pixel data, found 1234".
Array read_idx(const std::string &path);

/// Writes an array as an IDX file of unsigned bytes, gzip-compressed if
/// `gzip`, atomically (temporary file + rename). An f32 array of rank >= 2
/// with values in [0, 1] is stored as round(x * 255); an i32 array of rank 1
/// with values in [0, 255] is stored as is. Anything else throws.
void write_idx(const std::string &path, const Array &array, bool gzip);

//===----------------------------------------------------------------------===//
// Datasets
//===----------------------------------------------------------------------===//

/// The directory fashion_mnist() reads when given none: $SOMA_FASHION_MNIST_DIR
/// if set and non-empty, else /usr/share/datasets/fashion-mnist (where the
/// Debian package dataset-fashion-mnist installs it).
std::string fashion_mnist_dir();

/// Fashion-MNIST (Xiao et al. 2017): 28x28 grey images of 10 clothing
/// classes, split "train" (60000 examples) or "test" (10000). x is f32
/// [n, 784] in [0, 1] (flat: reshape to [n, 1, 28, 28] for a CNN), y is i32
/// [n] in [0, 9]. Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from
/// `dir` (default fashion_mnist_dir()), or the same names without ".gz".
/// Throws soma::Error for an unknown split, missing files (saying how to
/// install them), bad files, or image and label counts that differ.
Dataset fashion_mnist(const std::string &split, const std::string &dir = "");

/// Reads a numeric CSV file: one example per line, fields separated by
/// commas (surrounding spaces and double quotes are ignored; quoted commas
/// are not supported), blank lines skipped. Column `label_column` (0-based;
/// negative counts from the end, so -1 is the last) must hold integers and
/// becomes y (i32 [n]); the other columns become x (f32 [n, columns - 1]).
/// `header`: true = the first line is a header and is skipped, false = it is
/// data, unset = it is a header if any of its fields is not a number. Errors
/// name the line and the 1-based column: "data.csv:17: column 3: 'abc' is not
/// a number"; rows with another number of columns than the first are errors.
Dataset read_csv(const std::string &path, int label_column = -1,
                 std::optional<bool> header = std::nullopt);

/// Reads x and y from two .npy files (soma::read_npy). x must have rank >= 1;
/// i32/i64 x is converted to f32. y must be i32 or i64 of shape [n] (i64 is
/// converted to i32 and must fit), n being x's first dimension.
Dataset read_npy_pair(const std::string &x_path, const std::string &y_path);

//===----------------------------------------------------------------------===//
// Batching
//===----------------------------------------------------------------------===//

/// What a Loader does with the last `n % batch` examples of an epoch. Every
/// batch array has the static shape [batch, ...] except under `partial`.
enum class LastBatch {
  /// Skip them: every batch is full and real. The default, for training: the
  /// examples skipped differ from epoch to epoch when shuffling.
  drop,
  /// Fill the last batch by wrapping around to the start of the epoch's
  /// order; Batch::size says how many examples are real (they come first).
  /// For evaluation with a static batch size: every example counts once if
  /// only the first `size` rows of each batch are scored.
  pad_wrap,
  /// Give a smaller last batch of shape [n % batch, ...], for callers that
  /// can run any batch size.
  partial,
};

/// One batch of a Loader.
struct Batch {
  Array x;
  Array y;
  /// How many rows are real examples: the batch size, except for the last
  /// batch under LastBatch::pad_wrap (the rows after `size` are padding) and
  /// LastBatch::partial (where it is also the first dimension of x and y).
  int64_t size = 0;
  /// The batch's index within its epoch.
  int64_t index = 0;
};

/// Random image augmentations a Loader applies to the examples it hands out
/// (the notes' shift, flip, rotation and Gaussian noise). Examples must be
/// f32 images [..., H, W] (e.g. a dataset x of [N, 1, 28, 28]); every
/// channel of an example gets the same transform. The random numbers of an
/// example depend only on (loader seed, epoch, its position in the epoch),
/// so a resumed run sees the same augmented batches. Order of application:
/// flip, rotation and shift (one bilinear resampling, zero outside the
/// image), then noise.
struct Augment {
  /// Mirror left-right with probability 1/2.
  bool flip = false;
  /// Translate by a whole number of pixels drawn uniformly from
  /// [-shift, shift], independently along H and W.
  int64_t shift = 0;
  /// Rotate about the image centre by an angle drawn uniformly from
  /// [-rotate_degrees, rotate_degrees].
  double rotate_degrees = 0;
  /// Add N(0, noise_std^2) to every pixel (no clipping).
  double noise_std = 0;

  bool any() const { return flip || shift > 0 || rotate_degrees != 0 || noise_std > 0; }
};

/// Cuts a dataset into batches, optionally in a seeded random order per
/// epoch. The order of epoch e depends only on (seed, e) -- a Philox-keyed
/// Fisher-Yates shuffle -- so any batch of any epoch can be produced again
/// without replaying the ones before it, which is what resuming bit-exactly
/// from a checkpoint taken in the middle of an epoch needs. Copies share the
/// data. batch() may be called from several threads.
class Loader {
public:
  /// `data.x` and `data.y` must have the same first dimension (any dtypes;
  /// rows are copied as bytes); `batch` must be positive.
  Loader(Dataset data, int64_t batch, bool shuffle = true, uint64_t seed = 0,
         LastBatch last = LastBatch::drop);
  Loader(Array x, Array y, int64_t batch, bool shuffle = true,
         uint64_t seed = 0, LastBatch last = LastBatch::drop);

  /// Number of batches in every epoch (n / batch under `drop`, else rounded
  /// up).
  int64_t batches_per_epoch() const;
  /// Number of examples in the dataset.
  int64_t examples() const;
  /// The batch size.
  int64_t batch_size() const { return batch_; }
  const Dataset &dataset() const { return data_; }

  /// The order in which epoch `epoch` visits the examples: a permutation of
  /// 0..n-1 (the identity when not shuffling).
  std::vector<int64_t> order(int64_t epoch) const;

  /// Batch `i` (0-based) of epoch `epoch`: fresh arrays holding the examples
  /// order(epoch)[i*batch ...]. Throws soma::Error if epoch < 0 or i is not
  /// in [0, batches_per_epoch()).
  Batch batch(int64_t epoch, int64_t i) const;

  /// The batches of one epoch as a range:
  /// `for (const Batch &b : loader.epoch(e))`. Call skip(k) on it to start
  /// at batch k, e.g. when resuming mid-epoch.
  class Epoch {
  public:
    class iterator {
    public:
      using iterator_category = std::input_iterator_tag;
      using value_type = Batch;
      using difference_type = std::ptrdiff_t;
      using pointer = const Batch *;
      using reference = const Batch &;

      iterator() = default;
      /// The current batch, made on first access (so that `auto &b` works
      /// in a range-for) and valid until the iterator moves.
      const Batch &operator*() const {
        if (loaded_ != i_) {
          current_ = loader_->batch(epoch_, i_);
          loaded_ = i_;
        }
        return current_;
      }
      const Batch *operator->() const { return &**this; }
      iterator &operator++() {
        ++i_;
        return *this;
      }
      iterator operator++(int) {
        iterator old = *this;
        ++i_;
        return old;
      }
      bool operator==(const iterator &other) const { return i_ == other.i_; }

    private:
      friend class Epoch;
      iterator(const Loader *loader, int64_t epoch, int64_t i)
          : loader_(loader), epoch_(epoch), i_(i) {}
      const Loader *loader_ = nullptr;
      int64_t epoch_ = 0;
      int64_t i_ = 0;
      mutable int64_t loaded_ = -1;
      mutable Batch current_;
    };

    iterator begin() const { return {loader_, epoch_, first_}; }
    iterator end() const {
      return {loader_, epoch_, loader_->batches_per_epoch()};
    }
    /// The same epoch from batch `first` on (clamped to the end).
    Epoch skip(int64_t first) const;

  private:
    friend class Loader;
    Epoch(const Loader *loader, int64_t epoch, int64_t first)
        : loader_(loader), epoch_(epoch), first_(first) {}
    const Loader *loader_;
    int64_t epoch_;
    int64_t first_;
  };

  /// The batches of epoch `e` in order. The Loader must outlive the range.
  Epoch epoch(int64_t e) const;

  /// Augments every batch from now on (see Augment). Throws soma::Error if
  /// x is not an f32 array of rank >= 3, or a setting is negative.
  void set_augment(const Augment &augment);
  const Augment &augment() const { return augment_; }

private:
  struct OrderCache;
  /// order(epoch), shared with the cache so that consecutive batch() calls
  /// of one epoch shuffle only once.
  std::shared_ptr<const std::vector<int64_t>> cached_order(int64_t epoch) const;

  Dataset data_;
  int64_t batch_;
  bool shuffle_;
  uint64_t seed_;
  LastBatch last_;
  Augment augment_;
  std::shared_ptr<OrderCache> cache_;
};

/// Applies `augment` to example `position` of `epoch` in place: `image`
/// holds channels * h * w floats. Exposed for tests; Loader::batch uses it.
void augment_image(float *image, int64_t channels, int64_t h, int64_t w, const Augment &augment,
                   uint64_t seed, int64_t epoch, int64_t position);

/// A Loader over a Fashion-MNIST split (the package's files), so that
/// `for (const Batch &b : fashion_mnist("train", 64).epoch(0))` works. The
/// "train" split drops the last partial batch and shuffles; "test" keeps
/// its order and pads the last batch (every test example counts once).
Loader fashion_mnist(const std::string &split, int64_t batch, bool shuffle = true,
                     uint64_t seed = 0);

} // namespace soma::data
