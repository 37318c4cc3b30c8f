#include "serving/infer_codec.h"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/json_util.h"

namespace edgeloop::serving {
namespace {

using inference::DataType;
using inference::Tensor;
using inference::TensorSpec;
namespace dom = simdjson::dom;

std::string TypeName(dom::element_type type) {
  switch (type) {
    case dom::element_type::ARRAY:
      return "an array";
    case dom::element_type::OBJECT:
      return "an object";
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
    case dom::element_type::DOUBLE:
      return "a number";
    case dom::element_type::STRING:
      return "a string";
    case dom::element_type::BOOL:
      return "a boolean";
    case dom::element_type::NULL_VALUE:
      return "null";
  }
  return "a value";
}

// Writes the leaves of `data` (flat or nested arrays) into `tensor` in row-major order. Every
// step returns a bool and keeps the first error in `error()`: building a Status per element
// would cost more than parsing the element.
class DataReader {
 public:
  DataReader(Tensor* tensor, const std::string& input_name)
      : tensor_(tensor),
        input_(input_name),
        capacity_(tensor->element_count()),
        datatype_(tensor->datatype()) {}

  bool Read(dom::element element, int depth) {
    if (element.type() != dom::element_type::ARRAY) return Leaf(element);
    if (depth > 32) return Fail(Invalid("'data' is nested too deeply"));
    dom::array children;
    if (element.get_array().get(children)) return Fail(Invalid("'data' is not a valid array"));
    if (datatype_ == DataType::kFp32) {
      // The common case, a row of floats, without a call per element.
      float* out = tensor_->values<float>().data();
      for (dom::element child : children) {
        double value;
        if (count_ < capacity_ && !child.get_double().get(value)) {
          out[count_++] = static_cast<float>(value);
        } else if (!(child.type() == dom::element_type::ARRAY ? Read(child, depth + 1)
                                                              : Leaf(child))) {
          return false;
        }
      }
      return true;
    }
    for (dom::element child : children) {
      if (!Read(child, depth + 1)) return false;
    }
    return true;
  }

  int64_t count() const { return count_; }
  const Status& error() const { return error_; }

 private:
  bool Leaf(dom::element element) {
    if (count_ >= capacity_) {
      ++count_;  // keep counting only to report the mismatch
      return true;
    }
    if (!Store(element, count_)) return false;
    ++count_;
    return true;
  }

  bool Fail(Status status) {
    error_ = std::move(status);
    return false;
  }

  Status Invalid(const std::string& message) const {
    return InvalidArgumentError("input '" + input_ + "': " + message);
  }

  bool WrongType(dom::element element, const char* expected) {
    return Fail(Invalid("'data' element " + std::to_string(count_) + " is " +
                        TypeName(element.type()) + ", expected " + expected + " for datatype " +
                        std::string(inference::DataTypeName(datatype_))));
  }

  bool OutOfRange(int64_t index) {
    return Fail(Invalid("'data' element " + std::to_string(index) + " is out of range for " +
                        std::string(inference::DataTypeName(datatype_))));
  }

  template <typename T>
  bool StoreInteger(dom::element element, int64_t index) {
    T value;
    if constexpr (std::is_signed_v<T>) {
      int64_t parsed;
      if (element.get_int64().get(parsed)) return WrongType(element, "an integer");
      if (parsed < std::numeric_limits<T>::min() || parsed > std::numeric_limits<T>::max()) {
        return OutOfRange(index);
      }
      value = static_cast<T>(parsed);
    } else {
      uint64_t parsed;
      if (element.get_uint64().get(parsed)) {
        return WrongType(element, "a non-negative integer");
      }
      if (parsed > std::numeric_limits<T>::max()) return OutOfRange(index);
      value = static_cast<T>(parsed);
    }
    tensor_->values<T>()[static_cast<size_t>(index)] = value;
    return true;
  }

  template <typename T>
  bool StoreFloat(dom::element element, int64_t index) {
    double parsed;
    if (element.is_null()) {
      parsed = std::numeric_limits<double>::quiet_NaN();
    } else if (element.get_double().get(parsed)) {
      return WrongType(element, "a number or null");
    }
    tensor_->values<T>()[static_cast<size_t>(index)] = static_cast<T>(parsed);
    return true;
  }

  bool Store(dom::element element, int64_t index) {
    switch (datatype_) {
      case DataType::kFp32:
        return StoreFloat<float>(element, index);
      case DataType::kFp64:
        return StoreFloat<double>(element, index);
      case DataType::kInt8:
        return StoreInteger<int8_t>(element, index);
      case DataType::kInt16:
        return StoreInteger<int16_t>(element, index);
      case DataType::kInt32:
        return StoreInteger<int32_t>(element, index);
      case DataType::kInt64:
        return StoreInteger<int64_t>(element, index);
      case DataType::kUint8:
        return StoreInteger<uint8_t>(element, index);
      case DataType::kUint16:
        return StoreInteger<uint16_t>(element, index);
      case DataType::kUint32:
        return StoreInteger<uint32_t>(element, index);
      case DataType::kUint64:
        return StoreInteger<uint64_t>(element, index);
      case DataType::kBool: {
        bool value;
        if (element.get_bool().get(value)) return WrongType(element, "true or false");
        tensor_->values<uint8_t>()[static_cast<size_t>(index)] = value ? 1 : 0;
        return true;
      }
      case DataType::kBytes: {
        std::string_view value;
        if (element.get_string().get(value)) return WrongType(element, "a string");
        tensor_->strings()[static_cast<size_t>(index)] = std::string(value);
        return true;
      }
      case DataType::kFp16:
      case DataType::kBf16:
        break;
    }
    return Fail(UnimplementedError("datatype " + std::string(inference::DataTypeName(datatype_)) +
                                   " is not supported in JSON"));
  }

  Tensor* tensor_;
  const std::string& input_;
  const int64_t capacity_;
  const DataType datatype_;
  int64_t count_ = 0;
  Status error_;
};

// The string member `key` of `object` (a view into the parser's document). `where()` names the
// object in error messages; it is called only on error.
template <typename Where>
StatusOr<std::string_view> GetString(dom::object object, const char* key, Where where,
                                     bool required) {
  dom::element element;
  if (object[key].get(element)) {
    if (required) return InvalidArgumentError(where() + " has no '" + key + "'");
    return std::string_view();
  }
  std::string_view value;
  if (element.get_string().get(value)) {
    return InvalidArgumentError(where() + ": '" + key + "' must be a string, not " +
                                TypeName(element.type()));
  }
  return value;
}

StatusOr<Tensor> ParseInput(dom::object object, const inference::ModelConfig& config, int* index,
                            int64_t body_size) {
  ASSIGN_OR_RETURN(std::string_view name_view,
                   GetString(
                       object, "name", [] { return std::string("an input"); }, true));
  std::string name(name_view);
  const int input_index = config.InputIndex(name);
  if (input_index < 0) {
    std::string known;
    for (const TensorSpec& spec : config.inputs) known += (known.empty() ? "" : ", ") + spec.name;
    return InvalidArgumentError("unknown input '" + name + "' (the model's inputs: " + known + ")");
  }
  *index = input_index;
  const TensorSpec& spec = config.inputs[static_cast<size_t>(input_index)];
  auto where = [&name] { return "input '" + name + "'"; };

  ASSIGN_OR_RETURN(std::string_view datatype_name, GetString(object, "datatype", where, true));
  auto datatype = inference::DataTypeFromName(datatype_name);
  if (!datatype) {
    return InvalidArgumentError(where() + ": unknown datatype '" + std::string(datatype_name) +
                                "'");
  }
  if (*datatype != spec.datatype) {
    return InvalidArgumentError(where() + " has datatype " + std::string(datatype_name) +
                                " but the model expects " +
                                std::string(inference::DataTypeName(spec.datatype)));
  }
  if (*datatype == DataType::kFp16 || *datatype == DataType::kBf16) {
    return UnimplementedError(where() + ": datatype " + std::string(datatype_name) +
                              " is not supported in JSON");
  }

  dom::array shape_array;
  dom::element shape_element;
  if (object["shape"].get(shape_element)) return InvalidArgumentError(where() + " has no 'shape'");
  if (shape_element.get_array().get(shape_array)) {
    return InvalidArgumentError(where() + ": 'shape' must be an array of non-negative integers");
  }
  inference::Shape shape;
  for (dom::element dim : shape_array) {
    uint64_t value;
    if (dim.get_uint64().get(value) || value > (uint64_t{1} << 40)) {
      return InvalidArgumentError(where() + ": 'shape' must be an array of non-negative integers");
    }
    shape.push_back(static_cast<int64_t>(value));
  }
  if (!spec.Accepts(shape)) {
    return InvalidArgumentError(where() + " has shape " + inference::ShapeToString(shape) +
                                " but the model expects " + inference::ShapeToString(spec.shape));
  }
  if (shape.front() == 0) return InvalidArgumentError(where() + " has no rows");
  const int64_t expected = inference::ElementCount(shape);
  // Every element takes at least one byte of the body, so a larger shape cannot match its data;
  // checking first avoids allocating for an absurd shape.
  if (expected < 0 || expected > body_size) {
    return InvalidArgumentError(where() + ": shape " + inference::ShapeToString(shape) +
                                " holds more elements than the request's data can");
  }

  dom::element data;
  if (object["data"].get(data)) return InvalidArgumentError(where() + " has no 'data'");
  Tensor tensor(name, *datatype, shape);
  DataReader reader(&tensor, name);
  if (!reader.Read(data, 0)) return reader.error();
  if (reader.count() != expected) {
    return InvalidArgumentError(where() + " has " + std::to_string(reader.count()) +
                                " data elements but shape " + inference::ShapeToString(shape) +
                                " needs " + std::to_string(expected));
  }
  return tensor;
}

void AppendShape(std::string* out, const inference::Shape& shape) {
  out->push_back('[');
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out->push_back(',');
    out->append(std::to_string(shape[i]));
  }
  out->push_back(']');
}

template <typename T>
void AppendNumbers(std::string* out, const Tensor& tensor) {
  char buf[40];
  bool first = true;
  for (T value : tensor.values<T>()) {
    if (!first) out->push_back(',');
    first = false;
    if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(value)) {
        out->append("null");
        continue;
      }
    }
    auto result = std::to_chars(buf, buf + sizeof(buf), value);
    out->append(buf, result.ptr);
  }
}

void AppendData(std::string* out, const Tensor& tensor) {
  out->push_back('[');
  switch (tensor.datatype()) {
    case DataType::kFp32:
      AppendNumbers<float>(out, tensor);
      break;
    case DataType::kFp64:
      AppendNumbers<double>(out, tensor);
      break;
    case DataType::kInt8:
      AppendNumbers<int8_t>(out, tensor);
      break;
    case DataType::kInt16:
      AppendNumbers<int16_t>(out, tensor);
      break;
    case DataType::kInt32:
      AppendNumbers<int32_t>(out, tensor);
      break;
    case DataType::kInt64:
      AppendNumbers<int64_t>(out, tensor);
      break;
    case DataType::kUint8:
      AppendNumbers<uint8_t>(out, tensor);
      break;
    case DataType::kUint16:
      AppendNumbers<uint16_t>(out, tensor);
      break;
    case DataType::kUint32:
      AppendNumbers<uint32_t>(out, tensor);
      break;
    case DataType::kUint64:
      AppendNumbers<uint64_t>(out, tensor);
      break;
    case DataType::kBool: {
      bool first = true;
      for (uint8_t value : tensor.values<uint8_t>()) {
        if (!first) out->push_back(',');
        first = false;
        out->append(value ? "true" : "false");
      }
      break;
    }
    case DataType::kBytes: {
      bool first = true;
      for (const std::string& value : tensor.strings()) {
        if (!first) out->push_back(',');
        first = false;
        out->push_back('"');
        json::AppendEscaped(out, value);
        out->push_back('"');
      }
      break;
    }
    case DataType::kFp16:
    case DataType::kBf16: {
      // Not produced by any backend; written as raw bit patterns rather than dropped.
      AppendNumbers<uint16_t>(out, tensor);
      break;
    }
  }
  out->push_back(']');
}

}  // namespace

StatusOr<InferRequest> ParseInferRequest(std::string& body, const inference::ModelConfig& config) {
  if (body.empty()) return InvalidArgumentError("the request body is empty");
  thread_local dom::parser parser;
  body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  dom::element root;
  if (auto error = parser.parse(body.data(), body.size(), false).get(root)) {
    return InvalidArgumentError(std::string("the request body is not valid JSON: ") +
                                simdjson::error_message(error));
  }
  dom::object object;
  if (root.get_object().get(object)) {
    return InvalidArgumentError("the request body must be a JSON object, not " +
                                TypeName(root.type()));
  }

  InferRequest request;
  dom::element id;
  if (!object["id"].get(id)) {
    std::string_view id_value;
    if (id.get_string().get(id_value)) {
      return InvalidArgumentError("'id' must be a string, not " + TypeName(id.type()));
    }
    request.id = std::string(id_value);
  }

  dom::element inputs_element;
  dom::array inputs;
  if (object["inputs"].get(inputs_element)) {
    return InvalidArgumentError("the request has no 'inputs'");
  }
  if (inputs_element.get_array().get(inputs)) {
    return InvalidArgumentError("'inputs' must be an array, not " +
                                TypeName(inputs_element.type()));
  }
  std::vector<std::optional<Tensor>> by_index(config.inputs.size());
  request.inputs.reserve(config.inputs.size());
  request.output_indices.reserve(config.outputs.size());
  for (dom::element input : inputs) {
    dom::object input_object;
    if (input.get_object().get(input_object)) {
      return InvalidArgumentError("each element of 'inputs' must be an object");
    }
    int index = -1;
    ASSIGN_OR_RETURN(Tensor tensor,
                     ParseInput(input_object, config, &index, static_cast<int64_t>(body.size())));
    if (by_index[static_cast<size_t>(index)]) {
      return InvalidArgumentError("input '" + tensor.name() + "' is given more than once");
    }
    by_index[static_cast<size_t>(index)] = std::move(tensor);
  }
  for (size_t i = 0; i < by_index.size(); ++i) {
    if (!by_index[i]) {
      return InvalidArgumentError("the request lacks input '" + config.inputs[i].name + "'");
    }
  }
  // Every input is present; compare row counts before any tensor is moved out.
  const int64_t rows = by_index.empty() ? 0 : by_index[0]->shape().front();
  for (size_t i = 0; i < by_index.size(); ++i) {
    if (by_index[i]->shape().front() != rows) {
      return InvalidArgumentError("inputs '" + config.inputs[0].name + "' and '" +
                                  config.inputs[i].name + "' have different numbers of rows");
    }
    request.inputs.push_back(std::move(*by_index[i]));
  }

  dom::element outputs_element;
  if (!object["outputs"].get(outputs_element)) {
    dom::array outputs;
    if (outputs_element.get_array().get(outputs)) {
      return InvalidArgumentError("'outputs' must be an array, not " +
                                  TypeName(outputs_element.type()));
    }
    for (dom::element output : outputs) {
      dom::object output_object;
      if (output.get_object().get(output_object)) {
        return InvalidArgumentError("each element of 'outputs' must be an object");
      }
      ASSIGN_OR_RETURN(std::string_view name_view,
                       GetString(
                           output_object, "name", [] { return std::string("an output"); }, true));
      const std::string name(name_view);
      const int index = config.OutputIndex(name);
      if (index < 0) {
        std::string known;
        for (const TensorSpec& spec : config.outputs) {
          known += (known.empty() ? "" : ", ") + spec.name;
        }
        return InvalidArgumentError("unknown output '" + name + "' (the model's outputs: " + known +
                                    ")");
      }
      for (int existing : request.output_indices) {
        if (existing == index) {
          return InvalidArgumentError("output '" + name + "' is requested more than once");
        }
      }
      request.output_indices.push_back(index);
    }
  }
  if (request.output_indices.empty()) {
    for (size_t i = 0; i < config.outputs.size(); ++i) {
      if (inference::IsDefaultOutput(config.outputs[i])) {
        request.output_indices.push_back(static_cast<int>(i));
      }
    }
  }
  return request;
}

std::string SerializeInferResponse(const std::string& model_name, const std::string& version,
                                   const std::optional<std::string>& id,
                                   const std::vector<Tensor>& outputs) {
  size_t estimate = 96 + model_name.size();
  for (const Tensor& tensor : outputs) {
    estimate += 64 + static_cast<size_t>(tensor.element_count()) * 14;
  }
  std::string out;
  out.reserve(estimate);
  out.append("{\"model_name\":\"");
  json::AppendEscaped(&out, model_name);
  out.append("\",\"model_version\":\"");
  out.append(version);
  out.push_back('"');
  if (id) {
    out.append(",\"id\":\"");
    json::AppendEscaped(&out, *id);
    out.push_back('"');
  }
  out.append(",\"outputs\":[");
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& tensor = outputs[i];
    if (i > 0) out.push_back(',');
    out.append("{\"name\":\"");
    json::AppendEscaped(&out, tensor.name());
    out.append("\",\"datatype\":\"");
    out.append(inference::DataTypeName(tensor.datatype()));
    out.append("\",\"shape\":");
    AppendShape(&out, tensor.shape());
    out.append(",\"data\":");
    AppendData(&out, tensor);
    out.push_back('}');
  }
  out.append("]}");
  return out;
}

}  // namespace edgeloop::serving
