//===- array.cpp - Host tensors with a dtype and a shape ------------------===//

#include "soma/array.h"
#include "soma/error.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

namespace soma {

const char *dtype_name(DType dt) {
  switch (dt) {
  case DType::f32:
    return "f32";
  case DType::i32:
    return "i32";
  case DType::i64:
    return "i64";
  }
  return "?";
}

DType parse_dtype(std::string_view name) {
  if (name == "f32")
    return DType::f32;
  if (name == "i32")
    return DType::i32;
  if (name == "i64")
    return DType::i64;
  throw Error(
      fmt::format("unknown dtype '{}' (expected f32, i32 or i64)", name));
}

size_t dtype_size(DType dt) {
  switch (dt) {
  case DType::f32:
  case DType::i32:
    return 4;
  case DType::i64:
    return 8;
  }
  return 0;
}

int64_t numel(const Shape &shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      throw Error(
          fmt::format("negative dimension in shape {}", shape_str(shape)));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw Error(
          fmt::format("shape {} has too many elements", shape_str(shape)));
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape &shape) {
  return fmt::format("[{}]", fmt::join(shape, ","));
}

Array::Array(DType dtype, Shape shape) : Array(uninitialized(dtype, std::move(shape))) {
  std::memset(storage_.get(), 0, nbytes());
}

Array Array::uninitialized(DType dtype, Shape shape) {
  Array a;
  a.dtype_ = dtype;
  a.shape_ = std::move(shape);
  int64_t n = soma::numel(a.shape_);
  size_t elem = dtype_size(dtype);
  if (static_cast<uint64_t>(n) >
      std::numeric_limits<size_t>::max() / elem - kAlignment)
    throw Error(fmt::format("shape {} is too large", shape_str(a.shape_)));
  size_t bytes = static_cast<size_t>(n) * elem;
  // aligned_alloc wants a multiple of the alignment; allocate at least one
  // block so that zero-element arrays still have (non-null) storage.
  size_t alloc = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (alloc == 0)
    alloc = kAlignment;
  void *p = std::aligned_alloc(kAlignment, alloc);
  if (!p)
    throw std::bad_alloc();
  a.storage_ = std::shared_ptr<std::byte>(static_cast<std::byte *>(p),
                                          [](std::byte *q) { std::free(q); });
  return a;
}

template <class T>
static Array make_filled(DType dtype, Shape shape,
                         const std::vector<T> &values) {
  Array a(dtype, std::move(shape));
  if (static_cast<int64_t>(values.size()) != a.numel())
    throw Error(fmt::format("Array::{}: {} values for shape {} ({} elements)",
                            dtype_name(dtype), values.size(),
                            shape_str(a.shape()), a.numel()));
  if (!values.empty())
    std::memcpy(a.raw(), values.data(), a.nbytes());
  return a;
}

Array Array::f32(Shape shape, const std::vector<float> &values) {
  return make_filled(DType::f32, std::move(shape), values);
}
Array Array::i32(Shape shape, const std::vector<int32_t> &values) {
  return make_filled(DType::i32, std::move(shape), values);
}
Array Array::i64(Shape shape, const std::vector<int64_t> &values) {
  return make_filled(DType::i64, std::move(shape), values);
}

// An empty() (default-constructed) array has no storage and thus no
// elements, even though its shape {} would describe a scalar.
int64_t Array::numel() const { return empty() ? 0 : soma::numel(shape_); }

size_t Array::nbytes() const {
  return static_cast<size_t>(numel()) * dtype_size(dtype_);
}

template <class T> static constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }

static void check_dtype(DType actual, DType requested) {
  if (actual != requested)
    throw Error(fmt::format("array of dtype {} accessed as {}",
                            dtype_name(actual), dtype_name(requested)));
}

template <class T> T *Array::data() {
  check_dtype(dtype_, dtype_of<T>());
  return reinterpret_cast<T *>(storage_.get());
}

template <class T> const T *Array::data() const {
  check_dtype(dtype_, dtype_of<T>());
  return reinterpret_cast<const T *>(storage_.get());
}

template float *Array::data<float>();
template int32_t *Array::data<int32_t>();
template int64_t *Array::data<int64_t>();
template const float *Array::data<float>() const;
template const int32_t *Array::data<int32_t>() const;
template const int64_t *Array::data<int64_t>() const;

Array Array::clone() const {
  if (empty())
    return Array();
  Array copy(dtype_, shape_);
  std::memcpy(copy.raw(), raw(), nbytes());
  return copy;
}

Array Array::reshaped(Shape shape) const {
  if (empty())
    throw Error(
        fmt::format("cannot reshape an empty array to {}", shape_str(shape)));
  int64_t n = soma::numel(shape);
  if (n != numel())
    throw Error(fmt::format("cannot reshape {} to {}: {} vs {} elements",
                            shape_str(shape_), shape_str(shape), numel(), n));
  Array result = *this;
  result.shape_ = std::move(shape);
  return result;
}

} // namespace soma
