#include "inference/tensor.h"

#include <array>
#include <utility>

namespace edgeloop::inference {
namespace {

struct DataTypeInfo {
  DataType type;
  std::string_view name;
  size_t size;
};

constexpr std::array<DataTypeInfo, 14> kDataTypes = {{
    {DataType::kBool, "BOOL", 1},
    {DataType::kUint8, "UINT8", 1},
    {DataType::kUint16, "UINT16", 2},
    {DataType::kUint32, "UINT32", 4},
    {DataType::kUint64, "UINT64", 8},
    {DataType::kInt8, "INT8", 1},
    {DataType::kInt16, "INT16", 2},
    {DataType::kInt32, "INT32", 4},
    {DataType::kInt64, "INT64", 8},
    {DataType::kFp16, "FP16", 2},
    {DataType::kBf16, "BF16", 2},
    {DataType::kFp32, "FP32", 4},
    {DataType::kFp64, "FP64", 8},
    {DataType::kBytes, "BYTES", 0},
}};

}  // namespace

std::string_view DataTypeName(DataType type) { return kDataTypes[static_cast<size_t>(type)].name; }

std::optional<DataType> DataTypeFromName(std::string_view name) {
  for (const auto& info : kDataTypes) {
    if (info.name == name) return info.type;
  }
  return std::nullopt;
}

size_t DataTypeByteSize(DataType type) { return kDataTypes[static_cast<size_t>(type)].size; }

int64_t ElementCount(const Shape& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return -1;
    if (dim != 0 && count > INT64_MAX / dim) return -1;
    count *= dim;
  }
  return count;
}

std::string ShapeToString(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  out += "]";
  return out;
}

bool TensorSpec::Accepts(const Shape& concrete) const {
  if (concrete.size() != shape.size()) return false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] != -1 && shape[i] != concrete[i]) return false;
  }
  return true;
}

Tensor::Tensor(std::string name, DataType datatype, Shape shape)
    : name_(std::move(name)), datatype_(datatype), shape_(std::move(shape)) {
  element_count_ = ElementCount(shape_);
  assert(element_count_ >= 0);
  if (datatype_ == DataType::kBytes) {
    strings_.resize(static_cast<size_t>(element_count_));
  } else {
    data_.resize(static_cast<size_t>(element_count_) * DataTypeByteSize(datatype_));
  }
}

}  // namespace edgeloop::inference
