// Tabular anomaly detectors (isolation_forest, ecod) as `edgeloop train` models, served as
// `framework: outlier` folders (model_file detector.json; see src/anomaly/tabular.h).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "anomaly/tabular.h"
#include "train/tabular_models.h"

namespace edgeloop::train {
namespace {

using Json = nlohmann::json;

std::string Number(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.17g", value);
  return text;
}

class DetectorModel : public TabularModel {
 public:
  DetectorModel(const TrainSpec* spec, std::unique_ptr<anomaly::TabularDetector> detector,
                std::map<std::string, std::string> params, uint64_t seed)
      : spec_(spec), detector_(std::move(detector)), params_(std::move(params)), seed_(seed) {}

  StatusOr<std::vector<double>> Score(const MatrixView& rows) const override {
    if (rows.cols != detector_->num_features()) {
      return InvalidArgumentError("the detector takes " +
                                  std::to_string(detector_->num_features()) + " features, got " +
                                  std::to_string(rows.cols));
    }
    std::vector<double> scores(static_cast<size_t>(rows.rows));
    detector_->Score(rows.data, rows.rows, scores.data());
    return scores;
  }

  double ChooseThreshold(const MatrixView& train, const MatrixView& validation,
                         const std::vector<double>& validation_scores) override {
    (void)validation;
    (void)validation_scores;
    if (spec_->threshold_rule == "fixed") return threshold_ = spec_->threshold;
    // The (1 - contamination) quantile of the training scores, linear interpolation.
    std::vector<double> scores(static_cast<size_t>(train.rows));
    detector_->Score(train.data, train.rows, scores.data());
    std::sort(scores.begin(), scores.end());
    const double position = (1 - spec_->contamination) * static_cast<double>(scores.size() - 1);
    const size_t below = static_cast<size_t>(std::floor(position));
    const size_t above = std::min(below + 1, scores.size() - 1);
    threshold_ =
        scores[below] + (position - static_cast<double>(below)) * (scores[above] - scores[below]);
    return threshold_;
  }
  double threshold() const override { return threshold_; }
  std::string ThresholdRule() const override {
    return spec_ != nullptr && spec_->threshold_rule == "fixed" ? "fixed" : "training_quantile";
  }
  void set_threshold(double t) { threshold_ = t; }

  StatusOr<ModelFiles> Files(const std::vector<std::string>& names) const override {
    std::string yaml =
        "# Written by edgeloop train: card.json holds the metrics, lineage and encoding.\n"
        "framework: outlier\n"
        "model_file: detector.json\n"
        "inputs:\n"
        "  - {name: features, datatype: FP32, shape: [-1, " +
        std::to_string(names.size()) +
        "]}\n"
        "outputs:\n"
        "  - {name: score, datatype: FP64, shape: [-1], kind: prediction}\n"
        "  - {name: anomaly, datatype: BOOL, shape: [-1]}\n"
        "parameters: {threshold: \"" +
        Number(threshold_) + "\"}\n";
    return ModelFiles{"detector.json", detector_->Serialize(), yaml};
  }

  Json Parameters() const override {
    return {{"trainer", std::string(detector_->kind())},
            {"detector", params_},
            {"seed", seed_},
            {"contamination", spec_ != nullptr ? spec_->contamination : 0.0}};
  }
  Json TrainingReport() const override {
    return {{"kind", std::string(detector_->kind())}, {"features", detector_->num_features()}};
  }
  StatusOr<Json> FeatureImportance(const std::vector<std::string>&) const override {
    return Json();
  }
  StatusOr<FeaturePlan> Plan() const override { return plan_; }
  void set_plan(FeaturePlan plan) { plan_ = std::move(plan); }

 private:
  const TrainSpec* spec_;
  std::unique_ptr<anomaly::TabularDetector> detector_;
  std::map<std::string, std::string> params_;
  uint64_t seed_;
  double threshold_ = 0.5;
  FeaturePlan plan_;
};

}  // namespace

StatusOr<std::unique_ptr<TabularModel>> FitDetectorModel(const TabularTask& task,
                                                         const MatrixView& train) {
  anomaly::TabularFitOptions options;
  options.kind = std::string(TaskName(task.spec.task));
  options.params = task.spec.params;
  auto seed = options.params.find("seed");
  if (seed != options.params.end()) {
    try {
      options.seed = std::stoull(seed->second);
    } catch (const std::exception&) {
      return InvalidArgumentError("trainer.params.seed must be a non-negative integer");
    }
    options.params.erase(seed);
  }
  options.params.erase("nthread");
  ASSIGN_OR_RETURN(std::unique_ptr<anomaly::TabularDetector> detector,
                   anomaly::FitTabularDetector(train.data, train.rows, train.cols, options));
  return std::unique_ptr<TabularModel>(
      new DetectorModel(&task.spec, std::move(detector), options.params, options.seed));
}

StatusOr<std::unique_ptr<TabularModel>> LoadDetectorChampion(const std::string& bytes,
                                                             double threshold, FeaturePlan plan) {
  ASSIGN_OR_RETURN(std::unique_ptr<anomaly::TabularDetector> detector,
                   anomaly::LoadTabularDetector(bytes));
  auto model = std::make_unique<DetectorModel>(nullptr, std::move(detector),
                                               std::map<std::string, std::string>{}, 0);
  model->set_threshold(threshold);
  model->set_plan(std::move(plan));
  return std::unique_ptr<TabularModel>(std::move(model));
}

}  // namespace edgeloop::train
