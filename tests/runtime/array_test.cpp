//===- array_test.cpp - Tests of soma::Array ------------------------------===//

#include "soma/array.h"
#include "test_util.h"

#include <cstring>

#include <cstdint>

namespace soma {
namespace {

TEST(DType, NamesAndSizes) {
  EXPECT_STREQ(dtype_name(DType::f32), "f32");
  EXPECT_STREQ(dtype_name(DType::i32), "i32");
  EXPECT_STREQ(dtype_name(DType::i64), "i64");
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::i32), 4u);
  EXPECT_EQ(dtype_size(DType::i64), 8u);
  for (DType dt : {DType::f32, DType::i32, DType::i64})
    EXPECT_EQ(parse_dtype(dtype_name(dt)), dt);
  EXPECT_SOMA_ERROR(parse_dtype("f64"), "unknown dtype 'f64'");
}

TEST(Shape, NumelAndStr) {
  EXPECT_EQ(numel({}), 1);
  EXPECT_EQ(numel({0}), 0);
  EXPECT_EQ(numel({64, 784}), 64 * 784);
  EXPECT_EQ(shape_str({64, 784}), "[64,784]");
  EXPECT_EQ(shape_str({}), "[]");
  EXPECT_EQ(shape_str({5}), "[5]");
  EXPECT_SOMA_ERROR(numel({2, -1}), "negative dimension", "[2,-1]");
  EXPECT_SOMA_ERROR(numel({INT64_MAX, 3}), "too many elements");
}

TEST(Array, AlignedAndZeroFilled) {
  for (Shape shape :
       {Shape{}, Shape{0}, Shape{1}, Shape{3}, Shape{17, 5}, Shape{64, 784}}) {
    for (DType dt : {DType::f32, DType::i32, DType::i64}) {
      Array a(dt, shape);
      ASSERT_FALSE(a.empty());
      ASSERT_NE(a.raw(), nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw()) % kAlignment, 0u);
      EXPECT_EQ(a.numel(), numel(shape));
      EXPECT_EQ(a.nbytes(), static_cast<size_t>(numel(shape)) * dtype_size(dt));
      EXPECT_EQ(a.rank(), static_cast<int64_t>(shape.size()));
      const auto *bytes = static_cast<const unsigned char *>(a.raw());
      for (size_t i = 0; i < a.nbytes(); ++i)
        ASSERT_EQ(bytes[i], 0) << "byte " << i << " of " << shape_str(shape);
    }
  }
}

// Array::uninitialized: the same shape, dtype, size and alignment as a
// zero-filled array, and writable; its contents are not specified.
TEST(Array, UninitializedHasTheShapeAndAlignment) {
  for (Shape shape : {Shape{}, Shape{0}, Shape{3}, Shape{17, 5}, Shape{64, 784}})
    for (DType dt : {DType::f32, DType::i32, DType::i64}) {
      Array a = Array::uninitialized(dt, shape);
      ASSERT_FALSE(a.empty());
      EXPECT_EQ(a.dtype(), dt);
      EXPECT_EQ(a.shape(), shape);
      EXPECT_EQ(a.nbytes(), static_cast<size_t>(numel(shape)) * dtype_size(dt));
      EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw()) % kAlignment, 0u);
      std::memset(a.raw(), 0x5a, a.nbytes());
      for (size_t i = 0; i < a.nbytes(); ++i)
        ASSERT_EQ(static_cast<const unsigned char *>(a.raw())[i], 0x5a);
    }
  EXPECT_SOMA_ERROR(Array::uninitialized(DType::f32, {3, -2}), "negative dimension", "[3,-2]");
}

TEST(Array, DefaultIsEmpty) {
  Array a;
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.raw(), nullptr);
  EXPECT_EQ(a.nbytes(), 0u);
  EXPECT_TRUE(a.clone().empty());
}

TEST(Array, NegativeDimensionRejected) {
  EXPECT_SOMA_ERROR(Array(DType::f32, {3, -2}), "negative dimension", "[3,-2]");
}

TEST(Array, TypedAccessChecksDType) {
  Array a(DType::i32, {2, 2});
  a.data<int32_t>()[3] = 7;
  EXPECT_EQ(static_cast<const Array &>(a).data<int32_t>()[3], 7);
  EXPECT_SOMA_ERROR(a.data<float>(), "array of dtype i32 accessed as f32");
  EXPECT_SOMA_ERROR(a.data<int64_t>(), "array of dtype i32 accessed as i64");
  const Array f(DType::f32, {1});
  EXPECT_SOMA_ERROR(f.data<int32_t>(), "array of dtype f32 accessed as i32");
}

TEST(Array, ConvenienceConstructors) {
  Array f = Array::f32({2, 2}, {1, 2, 3, 4});
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_EQ(f.data<float>()[2], 3.0f);
  Array i = Array::i32({3}, {-1, 0, 1});
  EXPECT_EQ(i.data<int32_t>()[0], -1);
  Array l = Array::i64({}, {int64_t(1) << 40});
  EXPECT_EQ(l.data<int64_t>()[0], int64_t(1) << 40);
  EXPECT_SOMA_ERROR(Array::f32({2, 2}, {1, 2, 3}), "3 values", "[2,2]",
                    "4 elements");
}

TEST(Array, CopySharesCloneDoesNot) {
  Array a = Array::f32({2}, {1, 2});
  Array shared = a;
  Array deep = a.clone();
  a.data<float>()[0] = 42;
  EXPECT_EQ(shared.data<float>()[0], 42.0f);
  EXPECT_EQ(deep.data<float>()[0], 1.0f);
  EXPECT_NE(deep.raw(), a.raw());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(deep.raw()) % kAlignment, 0u);
}

TEST(Array, Reshaped) {
  Array a = Array::f32({2, 3}, {0, 1, 2, 3, 4, 5});
  Array b = a.reshaped({3, 2});
  EXPECT_EQ(b.shape(), (Shape{3, 2}));
  EXPECT_EQ(b.raw(), a.raw());
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  Array c = a.reshaped({6});
  EXPECT_EQ(c.data<float>()[5], 5.0f);
  Array s = Array::f32({1, 1}, {9}).reshaped({});
  EXPECT_EQ(s.rank(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_SOMA_ERROR(a.reshaped({4, 2}), "cannot reshape [2,3] to [4,2]");
  EXPECT_SOMA_ERROR(a.reshaped({-2, -3}), "negative dimension");
}

} // namespace
} // namespace soma
