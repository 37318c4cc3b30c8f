#include "inference/xgboost_backend.h"

#include <xgboost/c_api.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "inference/tree_ensemble.h"
#include "inference/xgboost_json.h"

namespace edgeloop::inference {
namespace {

enum class OutputKind { kPrediction, kMargin, kContributions };

std::string_view OutputKindName(OutputKind kind) {
  switch (kind) {
    case OutputKind::kPrediction:
      return "prediction";
    case OutputKind::kMargin:
      return "margin";
    case OutputKind::kContributions:
      return "contributions";
  }
  return "?";
}

// What model.yaml is checked against, from whichever backend loaded the file.
struct ModelFacts {
  int64_t num_feature = 0;
  int64_t num_groups = 1;
  std::string objective;
};

struct OutputPlan {
  OutputKind kind;
  std::string name;
  Shape shape;  // the spec's shape; dimension 0 is the batch
};

std::string ShapesToString(const std::vector<Shape>& shapes) {
  std::string out;
  for (size_t i = 0; i < shapes.size(); ++i) {
    if (i > 0) out += " or ";
    out += ShapeToString(shapes[i]);
  }
  return out;
}

StatusOr<std::vector<OutputPlan>> ValidateConfig(const ModelConfig& config,
                                                 const ModelFacts& facts) {
  const std::string model = "model file " + config.model_file.filename().string();
  if (config.inputs.size() != 1) {
    return InvalidArgumentError("xgboost models take exactly one input; model.yaml declares " +
                                std::to_string(config.inputs.size()));
  }
  const TensorSpec& input = config.inputs[0];
  if (input.datatype != DataType::kFp32) {
    return InvalidArgumentError("input '" + input.name + "' must be FP32, got " +
                                std::string(DataTypeName(input.datatype)));
  }
  const Shape expected_input = {-1, facts.num_feature};
  if (input.shape != expected_input) {
    return InvalidArgumentError("input '" + input.name + "' must have shape " +
                                ShapeToString(expected_input) + " (the " + model + " has " +
                                std::to_string(facts.num_feature) + " features), got " +
                                ShapeToString(input.shape));
  }

  const bool multiclass = facts.num_groups > 1;
  const int64_t groups = facts.num_groups;
  const int64_t contribution_columns = facts.num_feature + 1;
  std::vector<OutputPlan> plans;
  for (const TensorSpec& output : config.outputs) {
    if (output.datatype != DataType::kFp32) {
      return InvalidArgumentError("output '" + output.name + "' must be FP32, got " +
                                  std::string(DataTypeName(output.datatype)));
    }
    OutputKind kind;
    if (output.kind.empty() || output.kind == "prediction") {
      kind = OutputKind::kPrediction;
    } else if (output.kind == "margin") {
      kind = OutputKind::kMargin;
    } else if (output.kind == "contributions") {
      kind = OutputKind::kContributions;
    } else {
      return InvalidArgumentError("output '" + output.name + "' has unknown kind '" + output.kind +
                                  "' (expected prediction, margin or contributions)");
    }
    std::vector<Shape> allowed;
    switch (kind) {
      case OutputKind::kPrediction:
        if (multiclass && facts.objective != "multi:softmax") {
          allowed = {{-1, groups}};
        } else {
          allowed = {{-1}, {-1, 1}};
        }
        break;
      case OutputKind::kMargin:
        allowed = multiclass ? std::vector<Shape>{{-1, groups}} : std::vector<Shape>{{-1}, {-1, 1}};
        break;
      case OutputKind::kContributions:
        allowed = multiclass ? std::vector<Shape>{{-1, groups, contribution_columns}}
                             : std::vector<Shape>{{-1, contribution_columns}};
        break;
    }
    bool matches = false;
    for (const Shape& shape : allowed) matches = matches || shape == output.shape;
    if (!matches) {
      return InvalidArgumentError(
          "output '" + output.name + "' (kind " + std::string(OutputKindName(kind)) +
          ") must have shape " + ShapesToString(allowed) + " for this model (objective " +
          facts.objective + ", " + std::to_string(facts.num_feature) + " features" +
          (multiclass ? ", " + std::to_string(groups) + " classes" : std::string()) + "), got " +
          ShapeToString(output.shape));
    }
    plans.push_back({kind, output.name, output.shape});
  }
  return plans;
}

// Checks the one input tensor (the serving layer validates too; this keeps the backend safe on
// its own) and returns its row count.
StatusOr<size_t> CheckInputs(std::span<const Tensor> inputs, int64_t num_feature) {
  if (inputs.size() != 1) {
    return InvalidArgumentError("expected 1 input tensor, got " + std::to_string(inputs.size()));
  }
  const Tensor& input = inputs[0];
  if (input.datatype() != DataType::kFp32 || input.shape().size() != 2 ||
      input.shape()[1] != num_feature || input.shape()[0] < 0) {
    return InvalidArgumentError("input '" + input.name() + "' must be FP32 with shape [rows, " +
                                std::to_string(num_feature) + "], got " +
                                std::string(DataTypeName(input.datatype())) + " " +
                                ShapeToString(input.shape()));
  }
  return static_cast<size_t>(input.shape()[0]);
}

Shape ConcreteShape(const Shape& spec, size_t rows) {
  Shape shape = spec;
  shape[0] = static_cast<int64_t>(rows);
  return shape;
}

// Checks `output_indices` and creates the output tensors (zeroed), reserved up front so that
// pointers into `outputs` stay valid. Allocates only the tensors themselves.
Status PrepareOutputs(const std::vector<OutputPlan>& plans, std::span<const int> output_indices,
                      size_t rows, std::vector<Tensor>* outputs) {
  outputs->clear();
  outputs->reserve(output_indices.size());
  for (int index : output_indices) {
    if (index < 0 || static_cast<size_t>(index) >= plans.size()) {
      return InvalidArgumentError("output index " + std::to_string(index) + " out of range");
    }
    const OutputPlan& plan = plans[static_cast<size_t>(index)];
    outputs->emplace_back(plan.name, DataType::kFp32, ConcreteShape(plan.shape, rows));
  }
  return Status::Ok();
}

// ---- native ----

// A Model over the native TreeEnsemble. Immutable; Predict is thread-safe.
class NativeXgboostModel final : public Model {
 public:
  NativeXgboostModel(std::unique_ptr<TreeEnsemble> ensemble, std::vector<OutputPlan> plans)
      : ensemble_(std::move(ensemble)), plans_(std::move(plans)) {}

  std::string_view platform() const override { return "xgboost_native"; }

  Status Predict(std::span<const Tensor> inputs, std::span<const int> output_indices,
                 std::vector<Tensor>* outputs) const override {
    ASSIGN_OR_RETURN(const size_t rows, CheckInputs(inputs, ensemble_->num_features()));
    RETURN_IF_ERROR(PrepareOutputs(plans_, output_indices, rows, outputs));
    const std::span<const float> features = inputs[0].values<float>();
    const Tensor* margins = nullptr;  // reused for a prediction requested after the margin
    for (size_t i = 0; i < output_indices.size(); ++i) {
      Tensor& out = (*outputs)[i];
      switch (plans_[static_cast<size_t>(output_indices[i])].kind) {
        case OutputKind::kPrediction:
          if (margins != nullptr && ensemble_->prediction_width() == ensemble_->num_groups()) {
            ensemble_->TransformMargins(margins->values<float>(), out.values<float>());
          } else {
            ensemble_->Predict(features, out.values<float>());
          }
          break;
        case OutputKind::kMargin:
          ensemble_->PredictMargin(features, out.values<float>());
          margins = &out;
          break;
        case OutputKind::kContributions:
          ensemble_->PredictContributions(features, out.values<float>());
          break;
      }
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<TreeEnsemble> ensemble_;
  std::vector<OutputPlan> plans_;
};

StatusOr<std::unique_ptr<Model>> LoadNative(const ModelConfig& config) {
  const std::string file = config.model_file.string();
  ASSIGN_OR_RETURN(std::string data, ReadXgboostModelFile(config.model_file));
  auto model = ParseXgboostModel(data);
  if (!model.ok()) return model.status().WithContext(file);
  data = std::string();  // the text is no longer needed; free it before compiling
  auto ensemble = TreeEnsemble::Create(*model);
  if (!ensemble.ok()) return ensemble.status().WithContext(file);
  ModelFacts facts{model->header.num_feature, model->header.num_groups(), model->header.objective};
  auto plans = ValidateConfig(config, facts);
  if (!plans.ok()) return plans.status();
  return std::unique_ptr<Model>(
      new NativeXgboostModel(std::move(*ensemble), std::move(plans).value()));
}

// ---- capi ----

// XGBoost's last error on this thread, without the stack trace it appends.
Status XgboostError(std::string_view what) {
  const char* last = XGBGetLastError();
  std::string message = last != nullptr ? last : "unknown error";
  if (size_t end = message.find('\n'); end != std::string::npos) message.resize(end);
  return InternalError("xgboost " + std::string(what) + ": " + message);
}

// Frees a DMatrix when it goes out of scope.
class DMatrixGuard {
 public:
  DMatrixGuard() = default;
  DMatrixGuard(const DMatrixGuard&) = delete;
  DMatrixGuard& operator=(const DMatrixGuard&) = delete;
  ~DMatrixGuard() {
    if (handle_ != nullptr) XGDMatrixFree(handle_);
  }
  DMatrixHandle* out() { return &handle_; }
  DMatrixHandle get() const { return handle_; }

 private:
  DMatrixHandle handle_ = nullptr;
};

// A Model over XGBoost's C API. XGBoost (>= 1.4) documents prediction on gbtree and dart
// boosters as thread-safe, and keeps each thread's output buffer separate; other boosters
// (gblinear) are serialised with a mutex and, having no inplace prediction, go through a
// DMatrix for every output.
class CapiXgboostModel final : public Model {
 public:
  CapiXgboostModel(BoosterHandle booster, ModelFacts facts, std::vector<OutputPlan> plans,
                   bool tree_booster)
      : booster_(booster),
        facts_(std::move(facts)),
        plans_(std::move(plans)),
        tree_booster_(tree_booster) {}
  ~CapiXgboostModel() override { XGBoosterFree(booster_); }

  std::string_view platform() const override { return "xgboost"; }

  Status Predict(std::span<const Tensor> inputs, std::span<const int> output_indices,
                 std::vector<Tensor>* outputs) const override {
    ASSIGN_OR_RETURN(const size_t rows, CheckInputs(inputs, facts_.num_feature));
    RETURN_IF_ERROR(PrepareOutputs(plans_, output_indices, rows, outputs));
    if (rows == 0) return Status::Ok();
    std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
    if (!tree_booster_) lock.lock();
    const float* features = inputs[0].values<float>().data();
    for (size_t i = 0; i < output_indices.size(); ++i) {
      std::span<float> out = (*outputs)[i].values<float>();
      switch (plans_[static_cast<size_t>(output_indices[i])].kind) {
        case OutputKind::kPrediction:
          RETURN_IF_ERROR(Run(features, rows, kTransformed, out));
          break;
        case OutputKind::kMargin:
          RETURN_IF_ERROR(Run(features, rows, kMargin, out));
          break;
        case OutputKind::kContributions:
          RETURN_IF_ERROR(PredictFromDMatrix(features, rows, kContributions, out));
          break;
      }
    }
    return Status::Ok();
  }

  // One prediction, so that XGBoost configures itself now rather than on the first request.
  Status WarmUp() const {
    std::vector<float> row(static_cast<size_t>(facts_.num_feature),
                           std::numeric_limits<float>::quiet_NaN());
    std::vector<float> out(static_cast<size_t>(facts_.num_groups));
    return Run(row.data(), 1, kMargin, out);
  }

 private:
  // XGBoost's prediction types.
  static constexpr int kTransformed = 0;
  static constexpr int kMargin = 1;
  static constexpr int kContributions = 2;

  Status Run(const float* features, size_t rows, int type, std::span<float> out) const {
    return tree_booster_ ? PredictDense(features, rows, type, out)
                         : PredictFromDMatrix(features, rows, type, out);
  }

  // Inplace prediction from the dense row-major buffer (tree boosters only).
  Status PredictDense(const float* features, size_t rows, int type, std::span<float> out) const {
    char array[192];
    std::snprintf(array, sizeof(array),
                  "{\"data\": [%ju, true], \"shape\": [%zu, %lld], \"typestr\": \"<f4\", "
                  "\"version\": 3}",
                  static_cast<uintmax_t>(reinterpret_cast<uintptr_t>(features)), rows,
                  static_cast<long long>(facts_.num_feature));
    char config[160];
    std::snprintf(
        config, sizeof(config),
        "{\"type\": %d, \"training\": false, \"iteration_begin\": 0, "
        "\"iteration_end\": 0, \"strict_shape\": false, \"missing\": NaN, \"cache_id\": 0}",
        type);
    const bst_ulong* shape = nullptr;
    bst_ulong dims = 0;
    const float* result = nullptr;
    if (XGBoosterPredictFromDense(booster_, array, config, nullptr, &shape, &dims, &result) != 0) {
      return XgboostError("prediction");
    }
    return CopyResult(shape, dims, result, out);
  }

  // Prediction through a DMatrix: contributions, and everything for non-tree boosters.
  Status PredictFromDMatrix(const float* features, size_t rows, int type,
                            std::span<float> out) const {
    DMatrixGuard matrix;
    if (XGDMatrixCreateFromMat(features, rows, static_cast<bst_ulong>(facts_.num_feature),
                               std::numeric_limits<float>::quiet_NaN(), matrix.out()) != 0) {
      return XgboostError("DMatrix creation");
    }
    char config[128];
    std::snprintf(config, sizeof(config),
                  "{\"type\": %d, \"training\": false, \"iteration_begin\": 0, "
                  "\"iteration_end\": 0, \"strict_shape\": false}",
                  type);
    const bst_ulong* shape = nullptr;
    bst_ulong dims = 0;
    const float* result = nullptr;
    if (XGBoosterPredictFromDMatrix(booster_, matrix.get(), config, &shape, &dims, &result) != 0) {
      return XgboostError("prediction");
    }
    return CopyResult(shape, dims, result, out);
  }

  static Status CopyResult(const bst_ulong* shape, bst_ulong dims, const float* result,
                           std::span<float> out) {
    size_t count = dims == 0 ? 0 : 1;
    for (bst_ulong d = 0; d < dims; ++d) count *= static_cast<size_t>(shape[d]);
    if (count != out.size()) {
      return InternalError("xgboost returned " + std::to_string(count) + " values, expected " +
                           std::to_string(out.size()));
    }
    std::copy(result, result + count, out.begin());
    return Status::Ok();
  }

  BoosterHandle booster_;
  ModelFacts facts_;
  std::vector<OutputPlan> plans_;
  bool tree_booster_;
  mutable std::mutex mu_;  // held by Predict only for boosters other than gbtree and dart
};

StatusOr<int> ParseNthread(const ModelConfig& config) {
  auto it = config.parameters.find("nthread");
  if (it == config.parameters.end()) return 1;
  const std::string& text = it->second;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 1 || value > 1024) {
    return InvalidArgumentError("'parameters.nthread' must be an integer in [1, 1024], got '" +
                                text + "'");
  }
  return value;
}

StatusOr<std::unique_ptr<Model>> LoadCapi(const ModelConfig& config) {
  const std::string file = config.model_file.string();
  const std::string extension = config.model_file.extension().string();
  XgboostFormat format;
  if (extension == ".json") {
    format = XgboostFormat::kJson;
  } else if (extension == ".ubj") {
    format = XgboostFormat::kUbjson;
  } else {
    return InvalidArgumentError("the capi backend loads .json or .ubj model files, got " + file);
  }
  ASSIGN_OR_RETURN(const int nthread, ParseNthread(config));
  // Our own parse first: it rejects truncated or corrupt files with a clear message before
  // XGBoost sees them, and gives the facts to validate model.yaml against.
  ASSIGN_OR_RETURN(const std::string data, ReadXgboostModelFile(config.model_file));
  auto header = ParseXgboostHeader(data, format);
  if (!header.ok()) return header.status().WithContext(file);
  if (header->num_target > 1) {
    return UnimplementedError(file + ": multi-target models (num_target " +
                              std::to_string(header->num_target) + ") are not supported");
  }

  BoosterHandle booster = nullptr;
  if (XGBoosterCreate(nullptr, 0, &booster) != 0) return XgboostError("booster creation");
  auto free_booster = [&booster] {
    XGBoosterFree(booster);
    booster = nullptr;
  };
  if (XGBoosterLoadModel(booster, file.c_str()) != 0) {
    Status status = XgboostError("model loading").WithContext(file);
    free_booster();
    return status;
  }
  const std::string threads = std::to_string(nthread);
  if (XGBoosterSetParam(booster, "nthread", threads.c_str()) != 0) {
    Status status = XgboostError("setting nthread");
    free_booster();
    return status;
  }
  bst_ulong num_feature = 0;
  if (XGBoosterGetNumFeature(booster, &num_feature) != 0 ||
      static_cast<int64_t>(num_feature) != header->num_feature) {
    free_booster();
    return InvalidArgumentError(file + ": xgboost reports " + std::to_string(num_feature) +
                                " features but the file declares " +
                                std::to_string(header->num_feature));
  }
  ModelFacts facts{header->num_feature, header->num_groups(), header->objective};
  auto plans = ValidateConfig(config, facts);
  if (!plans.ok()) {
    free_booster();
    return plans.status();
  }
  const bool tree_booster = header->booster == "gbtree" || header->booster == "dart";
  auto model = std::make_unique<CapiXgboostModel>(booster, std::move(facts),
                                                  std::move(plans).value(), tree_booster);
  booster = nullptr;  // owned by `model` now
  RETURN_IF_ERROR(model->WarmUp());
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace

StatusOr<std::unique_ptr<Model>> LoadXgboostModel(const ModelConfig& config) {
  if (config.backend.empty() || config.backend == "native") return LoadNative(config);
  if (config.backend == "capi") return LoadCapi(config);
  return InvalidArgumentError("unknown xgboost backend '" + config.backend +
                              "' (expected native or capi)");
}

}  // namespace edgeloop::inference
