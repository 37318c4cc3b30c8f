#include "train/tabular_models.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "inference/model_config.h"
#include "train/metrics.h"

namespace edgeloop::train {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string Number(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.17g", value);
  return text;
}

StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot read " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class XgboostModel : public TabularModel {
 public:
  XgboostModel(const TabularTask& task, std::string model_json, std::unique_ptr<Booster> booster,
               std::map<std::string, std::string> params, TrainedModel trained)
      : spec_(task.spec),
        task_(task.spec.task),
        num_classes_(task.num_classes),
        model_json_(std::move(model_json)),
        booster_(std::move(booster)),
        params_(std::move(params)),
        trained_(std::move(trained)) {}

  StatusOr<std::vector<double>> Score(const MatrixView& rows) const override {
    int per_row = 0;
    ASSIGN_OR_RETURN(std::vector<double> scores, booster_->Predict(rows, &per_row));
    const int expected = task_ == Task::kMulticlass ? num_classes_ : 1;
    if (per_row != expected) {
      return InvalidArgumentError("the model gives " + std::to_string(per_row) +
                                  " values per row, the task needs " + std::to_string(expected));
    }
    return scores;
  }

  double ChooseThreshold(const MatrixView& train, const MatrixView& validation,
                         const std::vector<double>& validation_scores) override {
    (void)train;
    if (task_ != Task::kBinary) return threshold_ = 0;
    if (spec_.threshold_rule == "fixed") return threshold_ = spec_.threshold;
    std::vector<double> labels(validation.labels, validation.labels + validation.rows);
    return threshold_ = ChooseThresholdMaxF1(labels, validation_scores);
  }
  double threshold() const override { return threshold_; }
  std::string ThresholdRule() const override { return spec_.threshold_rule; }
  void set_threshold(double t) { threshold_ = t; }

  StatusOr<ModelFiles> Files(const std::vector<std::string>& names) const override {
    const int64_t n = static_cast<int64_t>(names.size());
    std::string yaml =
        "# Written by edgeloop train: card.json holds the metrics, lineage and encoding.\n"
        "framework: xgboost\n"
        "backend: native\n"
        "model_file: model.json\n"
        "inputs:\n"
        "  - {name: features, datatype: FP32, shape: [-1, " +
        std::to_string(n) + "]}\noutputs:\n";
    if (task_ == Task::kBinary) {
      yaml += "  - {name: probability, datatype: FP32, shape: [-1], kind: prediction}\n";
      yaml += "  - {name: contributions, datatype: FP32, shape: [-1, " + std::to_string(n + 1) +
              "], kind: contributions}\n";
      yaml += "parameters: {threshold: \"" + Number(threshold_) + "\"}\n";
    } else if (task_ == Task::kMulticlass) {
      yaml += "  - {name: probabilities, datatype: FP32, shape: [-1, " +
              std::to_string(num_classes_) + "], kind: prediction}\n";
      yaml += "  - {name: contributions, datatype: FP32, shape: [-1, " +
              std::to_string(num_classes_) + ", " + std::to_string(n + 1) +
              "], kind: contributions}\n";
    } else {
      yaml += "  - {name: prediction, datatype: FP32, shape: [-1], kind: prediction}\n";
      yaml += "  - {name: contributions, datatype: FP32, shape: [-1, " + std::to_string(n + 1) +
              "], kind: contributions}\n";
    }
    return ModelFiles{"model.json", model_json_, yaml};
  }

  Json Parameters() const override {
    Json params = params_;
    return {{"trainer", "xgboost"},
            {"xgboost", params},
            {"rounds", spec_.rounds},
            {"early_stopping_rounds", spec_.early_stopping_rounds}};
  }

  Json TrainingReport() const override {
    return {{"rounds_trained", trained_.rounds_trained},
            {"best_iteration", trained_.best_iteration},
            {"best_score", trained_.best_score},
            {"eval_metric", params_.count("eval_metric") ? params_.at("eval_metric") : ""}};
  }

  StatusOr<Json> FeatureImportance(const std::vector<std::string>& names) const override {
    ASSIGN_OR_RETURN(std::vector<double> values,
                     booster_->FeatureImportance(names, spec_.importance_type));
    Json by_name = Json::object();
    for (size_t i = 0; i < names.size(); ++i) by_name[names[i]] = values[i];
    return Json{{"type", spec_.importance_type}, {"values", by_name}};
  }

  StatusOr<FeaturePlan> Plan() const override { return plan_; }
  void set_plan(FeaturePlan plan) { plan_ = std::move(plan); }
  const std::vector<double>* TrainedValidationScores() const override {
    return trained_.validation_predictions.empty() ? nullptr : &trained_.validation_predictions;
  }

 private:
  const TrainSpec& spec_;
  Task task_;
  int num_classes_;
  std::string model_json_;
  std::unique_ptr<Booster> booster_;
  std::map<std::string, std::string> params_;
  TrainedModel trained_;
  double threshold_ = 0.5;
  FeaturePlan plan_;
};

std::map<std::string, std::string> XgboostParams(const TabularTask& task,
                                                 const std::string& nthread) {
  std::map<std::string, std::string> params;
  params["tree_method"] = "hist";
  params["nthread"] = nthread;
  params["seed"] = "0";
  switch (task.spec.task) {
    case Task::kBinary:
      params["objective"] = "binary:logistic";
      params["eval_metric"] = "logloss";
      break;
    case Task::kMulticlass:
      params["objective"] = "multi:softprob";
      params["eval_metric"] = "mlogloss";
      params["num_class"] = std::to_string(task.num_classes);
      break;
    default:
      params["objective"] = "reg:squarederror";
      params["eval_metric"] = "rmse";
      break;
  }
  for (const auto& [key, value] : task.spec.params) params[key] = value;
  return params;
}

Json ConfusionJson(const ConfusionMatrix& m) {
  Json rows = Json::array();
  for (int t = 0; t < m.num_classes; ++t) {
    Json row = Json::array();
    for (int p = 0; p < m.num_classes; ++p) row.push_back(m.at(t, p));
    rows.push_back(row);
  }
  return rows;
}

void PutOptional(Json* json, const char* key, std::optional<double> value) {
  if (value) (*json)[key] = *value;
}

}  // namespace

StatusOr<std::unique_ptr<TabularModel>> FitDetectorModel(const TabularTask& task,
                                                         const MatrixView& train);
StatusOr<std::unique_ptr<TabularModel>> LoadDetectorChampion(const std::string& bytes,
                                                             double threshold, FeaturePlan plan);

StatusOr<std::unique_ptr<TabularModel>> FitModel(const TabularTask& task, const MatrixView& train,
                                                 const MatrixView& validation,
                                                 const RoundCallback& progress,
                                                 const std::string& nthread) {
  if (!IsSupervised(task.spec.task)) return FitDetectorModel(task, train);
  BoosterOptions options;
  options.params = XgboostParams(task, nthread);
  options.rounds = task.spec.rounds;
  options.early_stopping_rounds = task.spec.early_stopping_rounds;
  options.maximize_metric = MetricIsMaximised(options.params["eval_metric"]);
  ASSIGN_OR_RETURN(TrainedModel trained, TrainBooster(train, validation, options, progress));
  int threads = 1;
  try {
    threads = std::stoi(nthread);
  } catch (const std::exception&) {
    return InvalidArgumentError("trainer.params.nthread must be an integer");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Booster> booster,
                   Booster::FromJson(trained.model_json, threads));
  std::string bytes = trained.model_json;
  return std::unique_ptr<TabularModel>(new XgboostModel(task, std::move(bytes), std::move(booster),
                                                        options.params, std::move(trained)));
}

StatusOr<std::unique_ptr<TabularModel>> LoadChampion(const fs::path& dir, const TabularTask& task) {
  ASSIGN_OR_RETURN(inference::ModelConfig config, inference::LoadModelConfig(dir, "champion", 1));
  Json card = Json::object();
  if (fs::exists(dir / "card.json")) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(dir / "card.json"));
    card = Json::parse(text, nullptr, false);
    if (card.is_discarded() || !card.is_object()) {
      return InvalidArgumentError("the champion's card.json is not a JSON object");
    }
  }
  const std::string task_name(TaskName(task.spec.task));
  if (card.contains("task") && card["task"] != task_name) {
    return InvalidArgumentError("the champion is a " + card["task"].get<std::string>() +
                                " model; this spec trains " + task_name);
  }
  FeaturePlan plan;
  if (card.contains("encoding")) {
    ASSIGN_OR_RETURN(plan, PlanFromJson(card["encoding"]));
  } else {
    if (config.feature_names.empty()) {
      return InvalidArgumentError(
          "the champion declares no feature_names and has no card encoding; cannot map its "
          "inputs to columns");
    }
    for (const std::string& name : config.feature_names) {
      plan.columns.push_back({name, EncodingKind::kNone, {}, false});
    }
  }
  double threshold = 0.5;
  if (card.contains("threshold") && card["threshold"].contains("value") &&
      card["threshold"]["value"].is_number()) {
    threshold = card["threshold"]["value"].get<double>();
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(config.model_file));
  if (config.framework == "outlier") {
    return LoadDetectorChampion(bytes, threshold, std::move(plan));
  }
  if (config.framework != "xgboost") {
    return InvalidArgumentError("the champion's framework '" + config.framework +
                                "' cannot be evaluated by edgeloop train");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Booster> booster, Booster::FromJson(bytes, 0));
  auto model = std::make_unique<XgboostModel>(task, bytes, std::move(booster),
                                              std::map<std::string, std::string>{}, TrainedModel{});
  model->set_threshold(threshold);
  model->set_plan(std::move(plan));
  return std::unique_ptr<TabularModel>(std::move(model));
}

StatusOr<std::vector<std::pair<std::string, RawColumn::Kind>>> ChampionColumns(
    const fs::path& dir) {
  ASSIGN_OR_RETURN(inference::ModelConfig config, inference::LoadModelConfig(dir, "champion", 1));
  std::vector<std::pair<std::string, RawColumn::Kind>> columns;
  if (fs::exists(dir / "card.json")) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(dir / "card.json"));
    const Json card = Json::parse(text, nullptr, false);
    if (card.is_object() && card.contains("encoding")) {
      ASSIGN_OR_RETURN(FeaturePlan plan, PlanFromJson(card["encoding"]));
      for (const ColumnEncoding& c : plan.columns) {
        columns.emplace_back(c.column, c.kind == EncodingKind::kNone ? RawColumn::Kind::kNumber
                                                                     : RawColumn::Kind::kText);
      }
      return columns;
    }
  }
  for (const std::string& name : config.feature_names) {
    columns.emplace_back(name, RawColumn::Kind::kNumber);
  }
  return columns;
}

Json EvaluateScores(const TabularTask& task, const std::vector<float>& labels_f,
                    const std::vector<double>& scores, double threshold) {
  const std::vector<double> labels(labels_f.begin(), labels_f.end());
  Json m = Json::object();
  m["rows"] = labels.size();
  if (labels.empty()) return m;
  const Task t = task.spec.task;
  if (t == Task::kRegression) {
    m["rmse"] = Rmse(labels, scores);
    m["mae"] = Mae(labels, scores);
    PutOptional(&m, "r2", R2(labels, scores));
    return m;
  }
  if (t == Task::kMulticlass) {
    const int k = task.num_classes;
    std::vector<int> predicted(labels.size());
    for (size_t i = 0; i < labels.size(); ++i) {
      const double* row = &scores[i * k];
      predicted[i] = static_cast<int>(std::max_element(row, row + k) - row);
    }
    const ConfusionMatrix matrix = Confusion(labels, predicted, k);
    m["accuracy"] = Accuracy(matrix);
    m["f1"] = F1(matrix);
    m["log_loss"] = LogLoss(labels, scores, k);
    m["confusion_matrix"] = ConfusionJson(matrix);
    // Macro one-vs-rest ROC-AUC, defined when every class occurs.
    double sum = 0;
    bool defined = true;
    for (int c = 0; c < k && defined; ++c) {
      std::vector<double> is_c(labels.size());
      std::vector<double> score_c(labels.size());
      for (size_t i = 0; i < labels.size(); ++i) {
        is_c[i] = labels[i] == c ? 1 : 0;
        score_c[i] = scores[i * k + c];
      }
      const std::optional<double> auc = RocAuc(is_c, score_c);
      defined = auc.has_value();
      if (auc) sum += *auc;
    }
    if (defined) m["roc_auc"] = sum / k;
    return m;
  }
  // Binary classifiers and detectors (score: higher = class 1).
  int64_t positives = 0;
  for (double y : labels) positives += y > 0.5 ? 1 : 0;
  m["positives"] = positives;
  PutOptional(&m, "roc_auc", RocAuc(labels, scores));
  PutOptional(&m, "pr_auc", AveragePrecision(labels, scores));
  if (t == Task::kBinary) m["log_loss"] = LogLoss(labels, scores, 2);
  std::vector<int> predicted(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) predicted[i] = scores[i] >= threshold ? 1 : 0;
  const ConfusionMatrix matrix = Confusion(labels, predicted, 2);
  m["accuracy"] = Accuracy(matrix);
  m["f1"] = F1(matrix);
  m["precision"] = Precision(matrix);
  m["recall"] = Recall(matrix);
  m["confusion_matrix"] = ConfusionJson(matrix);
  m["threshold"] = threshold;
  return m;
}

Evaluation ToEvaluation(const TabularTask& task, const std::vector<float>& labels,
                        const std::vector<double>& scores, double threshold,
                        const std::string& slice_column,
                        const std::vector<std::string>& slice_values, Json* metrics_json) {
  auto scalars = [](const Json& metrics) {
    std::map<std::string, double> out;
    for (const auto& [key, value] : metrics.items()) {
      if (value.is_number_float() && key != "threshold") out[key] = value.get<double>();
    }
    return out;
  };
  Evaluation evaluation;
  evaluation.overall = scalars(*metrics_json);
  if (slice_column.empty()) return evaluation;
  const int per_row = task.spec.task == Task::kMulticlass ? task.num_classes : 1;
  std::map<std::string, std::vector<size_t>> rows_by_slice;
  for (size_t i = 0; i < slice_values.size(); ++i) rows_by_slice[slice_values[i]].push_back(i);
  Json slices = Json::object();
  for (const auto& [value, rows] : rows_by_slice) {
    std::vector<float> slice_labels;
    std::vector<double> slice_scores;
    for (size_t i : rows) {
      slice_labels.push_back(labels[i]);
      for (int k = 0; k < per_row; ++k) slice_scores.push_back(scores[i * per_row + k]);
    }
    const Json metrics = EvaluateScores(task, slice_labels, slice_scores, threshold);
    const std::string key = slice_column + "=" + value;
    slices[key] = metrics;
    evaluation.slices[key] = scalars(metrics);
  }
  (*metrics_json)["slices"] = slices;
  return evaluation;
}

}  // namespace edgeloop::train
