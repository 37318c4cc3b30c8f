#include "inference/outlier_backend.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "anomaly/tabular.h"

namespace edgeloop::inference {
namespace {

enum class OutputKind { kScore, kVerdict };

struct OutputPlan {
  OutputKind kind;
  std::string name;
  DataType datatype;
  Shape shape;  // the spec's; dimension 0 is the batch
};

StatusOr<std::vector<OutputPlan>> PlanOutputs(const ModelConfig& config) {
  std::vector<OutputPlan> plans;
  for (const TensorSpec& output : config.outputs) {
    OutputKind kind;
    if (output.kind == "prediction" ||
        (output.kind.empty() && output.datatype != DataType::kBool)) {
      kind = OutputKind::kScore;
      if (output.datatype != DataType::kFp64 && output.datatype != DataType::kFp32) {
        return InvalidArgumentError("output '" + output.name +
                                    "' (the anomaly score) must be FP64 or FP32, got " +
                                    std::string(DataTypeName(output.datatype)));
      }
    } else if (output.kind == "anomaly" || output.kind.empty()) {
      kind = OutputKind::kVerdict;
      if (output.datatype != DataType::kBool) {
        return InvalidArgumentError("output '" + output.name +
                                    "' (the anomaly verdict) must be BOOL, got " +
                                    std::string(DataTypeName(output.datatype)));
      }
    } else {
      return InvalidArgumentError("output '" + output.name + "' has unknown kind '" + output.kind +
                                  "' (expected prediction or anomaly)");
    }
    if (output.shape != Shape{-1} && output.shape != Shape{-1, 1}) {
      return InvalidArgumentError("output '" + output.name +
                                  "' must have shape [-1] or [-1, 1], got " +
                                  ShapeToString(output.shape));
    }
    plans.push_back({kind, output.name, output.datatype, output.shape});
  }
  return plans;
}

StatusOr<double> ParseThreshold(const ModelConfig& config) {
  const auto it = config.parameters.find("threshold");
  if (it == config.parameters.end()) {
    return InvalidArgumentError(
        "parameters.threshold is required when an anomaly (BOOL) output is declared");
  }
  const std::string& text = it->second;
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty() || !(value >= 0.0 && value <= 1.0)) {
    return InvalidArgumentError("parameters.threshold must be a number in [0, 1], got '" + text +
                                "'");
  }
  return value;
}

// A Model over a TabularDetector. Immutable; Predict is thread-safe (the detector's Score is).
class OutlierModel final : public Model {
 public:
  OutlierModel(std::unique_ptr<anomaly::TabularDetector> detector, std::vector<OutputPlan> plans,
               double threshold)
      : detector_(std::move(detector)),
        plans_(std::move(plans)),
        threshold_(threshold),
        platform_("outlier_" + std::string(detector_->kind())) {}

  std::string_view platform() const override { return platform_; }

  Status Predict(std::span<const Tensor> inputs, std::span<const int> output_indices,
                 std::vector<Tensor>* outputs) const override {
    const int64_t features = detector_->num_features();
    if (inputs.size() != 1) {
      return InvalidArgumentError("expected 1 input tensor, got " + std::to_string(inputs.size()));
    }
    const Tensor& input = inputs[0];
    if (input.datatype() != DataType::kFp32 || input.shape().size() != 2 ||
        input.shape()[1] != features || input.shape()[0] < 0) {
      return InvalidArgumentError("input '" + input.name() + "' must be FP32 with shape [rows, " +
                                  std::to_string(features) + "], got " +
                                  std::string(DataTypeName(input.datatype())) + " " +
                                  ShapeToString(input.shape()));
    }
    const int64_t rows = input.shape()[0];
    outputs->clear();
    outputs->reserve(output_indices.size());
    for (int index : output_indices) {
      if (index < 0 || static_cast<size_t>(index) >= plans_.size()) {
        return InvalidArgumentError("output index " + std::to_string(index) + " out of range");
      }
      const OutputPlan& plan = plans_[static_cast<size_t>(index)];
      Shape shape = plan.shape;
      shape[0] = rows;
      outputs->emplace_back(plan.name, plan.datatype, std::move(shape));
    }
    // Score once, straight into an FP64 score output when one was asked for.
    std::vector<double> buffer;
    const double* scores = nullptr;
    for (size_t i = 0; i < output_indices.size() && scores == nullptr; ++i) {
      Tensor& out = (*outputs)[i];
      if (plans_[static_cast<size_t>(output_indices[i])].kind == OutputKind::kScore &&
          out.datatype() == DataType::kFp64) {
        detector_->Score(input.values<float>().data(), rows, out.values<double>().data());
        scores = out.values<double>().data();
      }
    }
    if (scores == nullptr) {
      buffer.resize(static_cast<size_t>(rows));
      detector_->Score(input.values<float>().data(), rows, buffer.data());
      scores = buffer.data();
    }
    for (size_t i = 0; i < output_indices.size(); ++i) {
      Tensor& out = (*outputs)[i];
      const OutputPlan& plan = plans_[static_cast<size_t>(output_indices[i])];
      if (plan.kind == OutputKind::kVerdict) {
        std::span<uint8_t> verdicts = out.values<uint8_t>();
        for (int64_t r = 0; r < rows; ++r)
          verdicts[static_cast<size_t>(r)] = scores[r] >= threshold_;
      } else if (out.datatype() == DataType::kFp32) {
        std::span<float> values = out.values<float>();
        for (int64_t r = 0; r < rows; ++r) {
          values[static_cast<size_t>(r)] = static_cast<float>(scores[r]);
        }
      } else if (out.values<double>().data() != scores) {
        std::copy(scores, scores + rows, out.values<double>().begin());
      }
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<anomaly::TabularDetector> detector_;
  std::vector<OutputPlan> plans_;
  double threshold_;
  std::string platform_;
};

}  // namespace

StatusOr<std::unique_ptr<Model>> LoadOutlierModel(const ModelConfig& config) {
  const std::string file = config.model_file.string();
  std::ifstream in(config.model_file, std::ios::binary);
  if (!in) return NotFoundError("cannot read model file " + file);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) return InternalError("error reading model file " + file);
  auto detector = anomaly::LoadTabularDetector(text);
  if (!detector.ok()) return detector.status().WithContext(file);

  if (config.inputs.size() != 1) {
    return InvalidArgumentError("outlier models take exactly one input; model.yaml declares " +
                                std::to_string(config.inputs.size()));
  }
  const TensorSpec& input = config.inputs[0];
  const int64_t features = (*detector)->num_features();
  if (input.datatype != DataType::kFp32) {
    return InvalidArgumentError("input '" + input.name + "' must be FP32, got " +
                                std::string(DataTypeName(input.datatype)));
  }
  if (input.shape != Shape{-1, features}) {
    return InvalidArgumentError(
        "input '" + input.name + "' must have shape " + ShapeToString({-1, features}) +
        " (the detector in " + config.model_file.filename().string() + " has " +
        std::to_string(features) + " features), got " + ShapeToString(input.shape));
  }
  ASSIGN_OR_RETURN(std::vector<OutputPlan> plans, PlanOutputs(config));
  double threshold = 1.0;
  for (const OutputPlan& plan : plans) {
    if (plan.kind == OutputKind::kVerdict) {
      ASSIGN_OR_RETURN(threshold, ParseThreshold(config));
      break;
    }
  }
  return std::unique_ptr<Model>(
      new OutlierModel(std::move(detector).value(), std::move(plans), threshold));
}

}  // namespace edgeloop::inference
