// The model families `edgeloop train` fits, behind one interface: XGBoost (binary, multiclass,
// regression) and the tabular anomaly detectors (isolation_forest, ecod; src/anomaly/tabular.h).
// Also the metrics of a model's scores (docs/train.md, "Metrics") and loading a champion folder.
// Internal to the train component. Thread-compatible.
#ifndef EDGELOOP_TRAIN_TABULAR_MODELS_H_
#define EDGELOOP_TRAIN_TABULAR_MODELS_H_

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "train/features.h"
#include "train/gate.h"
#include "train/spec.h"
#include "train/xgboost_trainer.h"

namespace edgeloop::train {

struct TabularTask {
  const TrainSpec& spec;
  int num_classes = 0;  // 2 for binary and detectors, K for multiclass, 0 for regression
  std::vector<std::string> classes;
  std::vector<std::string> feature_names;
};

struct ModelFiles {
  std::string model_file;   // "model.json", "detector.json"
  std::string model_bytes;  // its content
  std::string model_yaml;   // model.yaml without feature_names
};

class TabularModel {
 public:
  virtual ~TabularModel() = default;
  // Binary: P(1) per row; multiclass: [rows, K] probabilities; regression: predictions;
  // detectors: anomaly scores (higher = more anomalous).
  virtual StatusOr<std::vector<double>> Score(const MatrixView& rows) const = 0;
  // The decision threshold (binary: on validation by the spec's rule; detectors: the
  // (1 - contamination) quantile of the training scores). 0 when the task has none.
  virtual double ChooseThreshold(const MatrixView& train, const MatrixView& validation,
                                 const std::vector<double>& validation_scores) = 0;
  virtual double threshold() const = 0;
  virtual std::string ThresholdRule() const = 0;
  virtual StatusOr<ModelFiles> Files(const std::vector<std::string>& feature_names) const = 0;
  virtual nlohmann::json Parameters() const = 0;
  virtual nlohmann::json TrainingReport() const = 0;
  // {"type": "gain", "values": {feature: value}}, or null when the family has none.
  virtual StatusOr<nlohmann::json> FeatureImportance(
      const std::vector<std::string>& feature_names) const = 0;
  // The features the model takes (champions: from their card).
  virtual StatusOr<FeaturePlan> Plan() const = 0;
  // Score() of the validation rows the model was trained with, when training already computed
  // them; null otherwise.
  virtual const std::vector<double>* TrainedValidationScores() const { return nullptr; }
};

// Fits the model family of `task.spec.task`. `nthread` is XGBoost's thread count.
StatusOr<std::unique_ptr<TabularModel>> FitModel(const TabularTask& task, const MatrixView& train,
                                                 const MatrixView& validation,
                                                 const RoundCallback& progress,
                                                 const std::string& nthread);

// Loads a model folder written by `edgeloop train` (or any xgboost/outlier folder whose
// feature_names are numeric columns) for evaluation as a champion of `task`. kInvalidArgument
// when the folder is of another task.
StatusOr<std::unique_ptr<TabularModel>> LoadChampion(const std::filesystem::path& dir,
                                                     const TabularTask& task);

// Metrics of `scores` against `labels` for the task, at `threshold` (binary and detectors).
nlohmann::json EvaluateScores(const TabularTask& task, const std::vector<float>& labels,
                              const std::vector<double>& scores, double threshold);

// The scalar metrics overall and per slice ("<column>=<value>") for the gate. `*metrics_json`
// holds EvaluateScores(task, labels, scores, threshold) on entry (the overall metrics, which the
// caller has computed already); the per-slice metrics are added under "slices" when a slice
// column is set.
Evaluation ToEvaluation(const TabularTask& task, const std::vector<float>& labels,
                        const std::vector<double>& scores, double threshold,
                        const std::string& slice_column,
                        const std::vector<std::string>& slice_values, nlohmann::json* metrics_json);

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_TABULAR_MODELS_H_
