//===- soma/array.h - Host tensors with a dtype and a shape -----*- C++ -*-===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace soma {

/// Element types. f32 is the compute type; i32 and i64 hold labels/indices.
enum class DType : uint8_t { f32, i32, i64 };

/// "f32", "i32", "i64".
const char *dtype_name(DType dt);
/// Parses "f32"/"i32"/"i64"; throws soma::Error on anything else.
DType parse_dtype(std::string_view name);
/// Size of one element in bytes.
size_t dtype_size(DType dt);

using Shape = std::vector<int64_t>;

/// Number of elements of a shape (1 for a scalar shape {}).
int64_t numel(const Shape &shape);
/// "[64,784]"; a scalar prints as "[]".
std::string shape_str(const Shape &shape);

/// Buffers are aligned to this many bytes (a cache line; enough for AVX-512).
inline constexpr size_t kAlignment = 64;

/// A dense, row-major, host-memory tensor. Copying an Array is cheap and
/// shares the storage (like a shared_ptr); use clone() for a deep copy.
class Array {
public:
  Array() = default;
  /// A zero-filled array of the given dtype and shape.
  Array(DType dtype, Shape shape);
  /// An array whose elements are left as the allocator gives them (as
  /// numpy.empty): for a buffer that is written whole before it is read,
  /// such as a compiled function's outputs, without the cost of zeroing it.
  static Array uninitialized(DType dtype, Shape shape);

  /// Convenience constructors; throw soma::Error if values.size() does not
  /// match the shape.
  static Array f32(Shape shape, const std::vector<float> &values);
  static Array i32(Shape shape, const std::vector<int32_t> &values);
  static Array i64(Shape shape, const std::vector<int64_t> &values);

  DType dtype() const { return dtype_; }
  const Shape &shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t numel() const;
  size_t nbytes() const;
  bool empty() const { return !storage_; }

  void *raw() { return storage_.get(); }
  const void *raw() const { return storage_.get(); }

  /// Typed access; throws soma::Error if T does not match the dtype.
  template <class T> T *data();
  template <class T> const T *data() const;

  /// A deep copy.
  Array clone() const;
  /// Same storage, new shape with the same number of elements (else throws).
  Array reshaped(Shape shape) const;

private:
  DType dtype_ = DType::f32;
  Shape shape_;
  std::shared_ptr<std::byte> storage_; // kAlignment-aligned, nbytes() long
};

} // namespace soma
