#include "inference/encoding.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "inference/model.h"

namespace edgeloop::inference {
namespace {

constexpr float kMissing = std::numeric_limits<float>::quiet_NaN();

class EncodedModel : public Model {
 public:
  EncodedModel(InputEncoding encoding, std::unique_ptr<Model> inner)
      : encoding_(std::move(encoding)), inner_(std::move(inner)) {}

  std::string_view platform() const override { return inner_->platform(); }
  bool stateful() const override { return inner_->stateful(); }

  Status Predict(std::span<const Tensor> inputs, std::span<const int> output_indices,
                 std::vector<Tensor>* outputs) const override {
    if (inputs.size() != 1) {
      return InvalidArgumentError("a model with an encoding takes exactly one input");
    }
    ASSIGN_OR_RETURN(Tensor features, EncodeRaw(encoding_, inputs[0]));
    return inner_->Predict(std::span<const Tensor>(&features, 1), output_indices, outputs);
  }

 private:
  const InputEncoding encoding_;
  const std::unique_ptr<Model> inner_;
};

std::string Quoted(const std::string& text) { return nlohmann::json(text).dump(); }

}  // namespace

std::string_view EncodedColumnKindName(EncodedColumn::Kind kind) {
  switch (kind) {
    case EncodedColumn::Kind::kNumber:
      return "number";
    case EncodedColumn::Kind::kOneHot:
      return "one_hot";
    case EncodedColumn::Kind::kOrdinal:
      return "ordinal";
  }
  return "number";
}

int64_t InputEncoding::num_features() const {
  int64_t n = 0;
  for (const EncodedColumn& c : columns) n += c.width();
  return n;
}

TensorSpec InputEncoding::RawInputSpec() const {
  TensorSpec spec;
  spec.name = model_input.name;
  spec.datatype = DataType::kBytes;
  spec.shape = {-1, static_cast<int64_t>(columns.size())};
  return spec;
}

std::string InputEncoding::ToYaml() const {
  std::string out = "encoding:\n";
  for (const EncodedColumn& c : columns) {
    out += "  - {column: " + Quoted(c.column);
    if (c.kind != EncodedColumn::Kind::kNumber) {
      out += ", kind: " + std::string(EncodedColumnKindName(c.kind)) + ", categories: [";
      for (size_t i = 0; i < c.categories.size(); ++i) {
        out += (i ? ", " : "") + Quoted(c.categories[i]);
      }
      out += "]";
    }
    out += "}\n";
  }
  return out;
}

StatusOr<Tensor> EncodeRaw(const InputEncoding& encoding, const Tensor& raw) {
  const int64_t width = static_cast<int64_t>(encoding.columns.size());
  if (raw.datatype() != DataType::kBytes || raw.shape().size() != 2 || raw.shape()[1] != width) {
    return InvalidArgumentError("input '" + raw.name() + "' must be BYTES with shape [-1, " +
                                std::to_string(width) +
                                "]: the raw columns, one string each, in the model's order");
  }
  const int64_t rows = raw.shape()[0];
  const int64_t features = encoding.num_features();
  Tensor out(encoding.model_input.name, DataType::kFp32, {rows, features});
  std::span<float> values = out.values<float>();
  const std::vector<std::string>& texts = raw.strings();
  int64_t offset = 0;
  for (int64_t c = 0; c < width; ++c) {
    const EncodedColumn& column = encoding.columns[static_cast<size_t>(c)];
    std::unordered_map<std::string_view, int64_t> index;
    for (size_t k = 0; k < column.categories.size(); ++k) index.emplace(column.categories[k], k);
    const int64_t span = column.width();
    for (int64_t r = 0; r < rows; ++r) {
      const std::string& text = texts[static_cast<size_t>(r * width + c)];
      float* target = &values[static_cast<size_t>(r * features + offset)];
      if (text.empty()) {
        std::fill(target, target + span, kMissing);
        continue;
      }
      switch (column.kind) {
        case EncodedColumn::Kind::kNumber: {
          double number = 0;
          const char* begin = text.data();
          const char* end = begin + text.size();
          if (*begin == '+') ++begin;
          auto [ptr, ec] = std::from_chars(begin, end, number);
          if (ec != std::errc() || ptr != end || std::isinf(number)) {
            return InvalidArgumentError("row " + std::to_string(r) + ", column '" + column.column +
                                        "': '" + text.substr(0, 64) + "' is not a number");
          }
          *target = static_cast<float>(number);
          break;
        }
        case EncodedColumn::Kind::kOneHot: {
          std::fill(target, target + span, 0.0f);
          auto it = index.find(text);
          if (it != index.end()) target[it->second] = 1.0f;
          break;
        }
        case EncodedColumn::Kind::kOrdinal: {
          auto it = index.find(text);
          *target = it == index.end() ? kMissing : static_cast<float>(it->second);
          break;
        }
      }
    }
    offset += span;
  }
  return out;
}

std::unique_ptr<Model> WrapWithEncoding(InputEncoding encoding, std::unique_ptr<Model> inner) {
  return std::make_unique<EncodedModel>(std::move(encoding), std::move(inner));
}

}  // namespace edgeloop::inference
