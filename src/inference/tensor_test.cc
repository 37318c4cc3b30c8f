#include "inference/tensor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace edgeloop::inference {
namespace {

TEST(TensorTest, DataTypeNamesRoundTrip) {
  const DataType all[] = {DataType::kBool,   DataType::kUint8, DataType::kUint16, DataType::kUint32,
                          DataType::kUint64, DataType::kInt8,  DataType::kInt16,  DataType::kInt32,
                          DataType::kInt64,  DataType::kFp16,  DataType::kBf16,   DataType::kFp32,
                          DataType::kFp64,   DataType::kBytes};
  for (DataType type : all) {
    auto parsed = DataTypeFromName(DataTypeName(type));
    ASSERT_TRUE(parsed.has_value()) << DataTypeName(type);
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_EQ(DataTypeName(DataType::kFp32), "FP32");
  EXPECT_FALSE(DataTypeFromName("fp32").has_value());  // case-sensitive
  EXPECT_FALSE(DataTypeFromName("FLOAT").has_value());
  EXPECT_FALSE(DataTypeFromName("").has_value());
}

TEST(TensorTest, DataTypeByteSizes) {
  EXPECT_EQ(DataTypeByteSize(DataType::kBool), 1u);
  EXPECT_EQ(DataTypeByteSize(DataType::kBf16), 2u);
  EXPECT_EQ(DataTypeByteSize(DataType::kInt32), 4u);
  EXPECT_EQ(DataTypeByteSize(DataType::kFp32), 4u);
  EXPECT_EQ(DataTypeByteSize(DataType::kUint64), 8u);
  EXPECT_EQ(DataTypeByteSize(DataType::kFp64), 8u);
  EXPECT_EQ(DataTypeByteSize(DataType::kBytes), 0u);
}

TEST(TensorTest, ElementCount) {
  EXPECT_EQ(ElementCount({}), 1);
  EXPECT_EQ(ElementCount({3, 4}), 12);
  EXPECT_EQ(ElementCount({3, 0, 5}), 0);
  EXPECT_EQ(ElementCount({-1, 20}), -1);
  const int64_t big = std::numeric_limits<int64_t>::max() / 2;
  EXPECT_EQ(ElementCount({big, 3}), -1);  // overflow
  EXPECT_EQ(ElementCount({0, big, big}), 0);
}

TEST(TensorTest, ShapeToString) {
  EXPECT_EQ(ShapeToString({}), "[]");
  EXPECT_EQ(ShapeToString({-1}), "[-1]");
  EXPECT_EQ(ShapeToString({-1, 20}), "[-1, 20]");
}

TEST(TensorTest, SpecAcceptsMatchingShapes) {
  TensorSpec spec{"x", DataType::kFp32, {-1, 3}, ""};
  EXPECT_TRUE(spec.Accepts({1, 3}));
  EXPECT_TRUE(spec.Accepts({0, 3}));
  EXPECT_FALSE(spec.Accepts({1, 4}));
  EXPECT_FALSE(spec.Accepts({3}));
  EXPECT_FALSE(spec.Accepts({1, 3, 1}));
  const TensorSpec scalar{"s", DataType::kFp32, {}, ""};
  EXPECT_TRUE(scalar.Accepts({}));
}

TEST(TensorTest, TensorOwnsZeroedStorage) {
  Tensor tensor("x", DataType::kFp32, {2, 3});
  EXPECT_EQ(tensor.name(), "x");
  EXPECT_EQ(tensor.datatype(), DataType::kFp32);
  EXPECT_EQ(tensor.shape(), (Shape{2, 3}));
  EXPECT_EQ(tensor.element_count(), 6);
  EXPECT_EQ(tensor.bytes().size(), 24u);
  ASSERT_EQ(tensor.values<float>().size(), 6u);
  for (float v : tensor.values<float>()) EXPECT_EQ(v, 0.0f);
  tensor.values<float>()[5] = 2.5f;
  const Tensor copy = tensor;
  EXPECT_EQ(copy.values<float>()[5], 2.5f);
  tensor.set_name("y");
  EXPECT_EQ(tensor.name(), "y");
  EXPECT_EQ(copy.name(), "x");

  Tensor strings("s", DataType::kBytes, {3});
  EXPECT_EQ(strings.strings().size(), 3u);
  EXPECT_TRUE(strings.bytes().empty());
  Tensor empty("e", DataType::kInt64, {0, 4});
  EXPECT_EQ(empty.element_count(), 0);
  EXPECT_TRUE(empty.values<int64_t>().empty());
  EXPECT_EQ(Tensor().element_count(), 0);
}

}  // namespace
}  // namespace edgeloop::inference
