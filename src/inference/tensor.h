// Tensors and tensor specifications shared by the serving layer and the model backends.
//
// Datatype names follow the Open Inference Protocol v2 ("FP32", "INT64", "BYTES", ...).
// Tensor is a value type (thread-compatible) that owns a row-major buffer.
#ifndef EDGELOOP_INFERENCE_TENSOR_H_
#define EDGELOOP_INFERENCE_TENSOR_H_

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeloop::inference {

enum class DataType : uint8_t {
  kBool,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kBf16,
  kFp32,
  kFp64,
  kBytes,
};

// "FP32" for kFp32, and so on.
std::string_view DataTypeName(DataType type);
// Exact, case-sensitive match of an OIP datatype name; nullopt when unknown.
std::optional<DataType> DataTypeFromName(std::string_view name);
// Bytes per element; 0 for BYTES, whose elements are variable-length strings.
size_t DataTypeByteSize(DataType type);

// -1 marks a variable dimension in a spec; a tensor's shape never holds -1.
using Shape = std::vector<int64_t>;

// Product of the dimensions (1 for a scalar shape []); -1 when any dimension is negative or
// the product overflows int64.
int64_t ElementCount(const Shape& shape);
// "[-1, 20]"
std::string ShapeToString(const Shape& shape);

// The declared name, datatype and shape of a model input or output.
struct TensorSpec {
  std::string name;
  DataType datatype = DataType::kFp32;
  Shape shape;
  // Outputs only: which result of the model this output carries. The meaning is backend
  // specific (xgboost: "prediction", "margin", "contributions"); empty = the backend default.
  std::string kind;

  // True when `shape` (of a concrete tensor) matches this spec: same rank, and every
  // dimension equal unless the spec's is -1.
  bool Accepts(const Shape& concrete) const;
};

// A named, typed, row-major tensor that owns its data.
class Tensor {
 public:
  Tensor() = default;
  // Allocates zeroed storage for ElementCount(shape) elements (or empty strings for BYTES).
  // The shape must be concrete (no -1).
  Tensor(std::string name, DataType datatype, Shape shape);

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  DataType datatype() const { return datatype_; }
  const Shape& shape() const { return shape_; }
  int64_t element_count() const { return element_count_; }

  // Typed views of a fixed-size datatype; T must have the datatype's size (BOOL is uint8_t,
  // FP16/BF16 are uint16_t bit patterns).
  template <typename T>
  std::span<T> values() {
    assert(sizeof(T) == DataTypeByteSize(datatype_));
    return {reinterpret_cast<T*>(data_.data()), static_cast<size_t>(element_count_)};
  }
  template <typename T>
  std::span<const T> values() const {
    assert(sizeof(T) == DataTypeByteSize(datatype_));
    return {reinterpret_cast<const T*>(data_.data()), static_cast<size_t>(element_count_)};
  }
  std::span<std::byte> bytes() { return data_; }
  std::span<const std::byte> bytes() const { return data_; }

  // BYTES elements.
  std::vector<std::string>& strings() { return strings_; }
  const std::vector<std::string>& strings() const { return strings_; }

 private:
  std::string name_;
  DataType datatype_ = DataType::kFp32;
  Shape shape_;
  int64_t element_count_ = 0;
  std::vector<std::byte> data_;
  std::vector<std::string> strings_;
};

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_TENSOR_H_
