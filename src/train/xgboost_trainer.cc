#include "train/xgboost_trainer.h"

#include <xgboost/c_api.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace edgeloop::train {
namespace {

Status XgbError(const std::string& what) {
  return InternalError("xgboost " + what + ": " + XGBGetLastError());
}

// Owns a DMatrix handle.
class DMatrix {
 public:
  ~DMatrix() {
    if (handle_ != nullptr) XGDMatrixFree(handle_);
  }
  static StatusOr<std::unique_ptr<DMatrix>> Create(const MatrixView& view, int nthread) {
    auto matrix = std::unique_ptr<DMatrix>(new DMatrix());
    if (XGDMatrixCreateFromMat_omp(
            view.data, static_cast<bst_ulong>(view.rows), static_cast<bst_ulong>(view.cols),
            std::numeric_limits<float>::quiet_NaN(), &matrix->handle_, nthread) != 0) {
      return XgbError("creating a matrix");
    }
    if (view.labels != nullptr && XGDMatrixSetFloatInfo(matrix->handle_, "label", view.labels,
                                                        static_cast<bst_ulong>(view.rows)) != 0) {
      return XgbError("setting labels");
    }
    return matrix;
  }
  DMatrixHandle handle() const { return handle_; }

 private:
  DMatrix() = default;
  DMatrixHandle handle_ = nullptr;
};

class BoosterHandleOwner {
 public:
  ~BoosterHandleOwner() {
    if (handle != nullptr) XGBoosterFree(handle);
  }
  BoosterHandle handle = nullptr;
};

int NThread(const std::map<std::string, std::string>& params) {
  auto it = params.find("nthread");
  if (it == params.end()) return 0;
  int value = 0;
  std::from_chars(it->second.data(), it->second.data() + it->second.size(), value);
  return value;
}

// The last "name:value" of an evaluation line.
StatusOr<double> LastScore(const std::string& line) {
  const size_t colon = line.rfind(':');
  if (colon == std::string::npos) return InternalError("unexpected evaluation line: " + line);
  const std::string value = line.substr(colon + 1);
  char* end = nullptr;
  const double score = std::strtod(value.c_str(), &end);
  if (end == value.c_str()) return InternalError("unexpected evaluation line: " + line);
  return score;
}

StatusOr<std::string> SaveJson(BoosterHandle handle) {
  bst_ulong length = 0;
  const char* bytes = nullptr;
  if (XGBoosterSaveModelToBuffer(handle, R"({"format": "json"})", &length, &bytes) != 0) {
    return XgbError("saving the model");
  }
  return std::string(bytes, length);
}

// Transformed predictions of all the booster's trees for `matrix`; for a matrix in the
// booster's cache (the validation set) XGBoost answers from its prediction cache.
StatusOr<std::vector<double>> PredictAll(BoosterHandle booster, DMatrixHandle matrix) {
  const char* config =
      R"({"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": true})";
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* values = nullptr;
  if (XGBoosterPredictFromDMatrix(booster, matrix, config, &shape, &dim, &values) != 0) {
    return XgbError("prediction");
  }
  bst_ulong total = 1;
  for (bst_ulong i = 0; i < dim; ++i) total *= shape[i];
  return std::vector<double>(values, values + total);
}

}  // namespace

bool MetricIsMaximised(const std::string& name) {
  for (const char* prefix : {"auc", "aucpr", "map", "ndcg", "pre"}) {
    if (name.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

StatusOr<TrainedModel> TrainBooster(const MatrixView& train, const MatrixView& validation,
                                    const BoosterOptions& options, const RoundCallback& progress) {
  if (options.rounds < 1) return InvalidArgumentError("rounds must be at least 1");
  const int nthread = NThread(options.params);
  // Where the fit's time goes, in the debug log (milliseconds).
  using SteadyClock = std::chrono::steady_clock;
  double ms_matrix = 0, ms_update = 0, ms_eval = 0, ms_predict = 0;
  auto lap = [t = SteadyClock::now()](double* into) mutable {
    const auto now = SteadyClock::now();
    *into += std::chrono::duration<double, std::milli>(now - t).count();
    t = now;
  };
  ASSIGN_OR_RETURN(std::unique_ptr<DMatrix> dtrain, DMatrix::Create(train, nthread));
  ASSIGN_OR_RETURN(std::unique_ptr<DMatrix> dvalid, DMatrix::Create(validation, nthread));
  lap(&ms_matrix);
  BoosterHandleOwner booster;
  DMatrixHandle cache[] = {dtrain->handle(), dvalid->handle()};
  if (XGBoosterCreate(cache, 2, &booster.handle) != 0) return XgbError("creating a booster");
  for (const auto& [key, value] : options.params) {
    if (XGBoosterSetParam(booster.handle, key.c_str(), value.c_str()) != 0) {
      return InvalidArgumentError("trainer parameter " + key + "=" + value + ": " +
                                  XGBGetLastError());
    }
  }
  DMatrixHandle eval_sets[] = {dvalid->handle()};
  const char* eval_names[] = {"valid"};
  TrainedModel result;
  int since_best = 0;
  for (int round = 0; round < options.rounds; ++round) {
    if (XGBoosterUpdateOneIter(booster.handle, round, dtrain->handle()) != 0) {
      // Bad parameter values surface on the first update.
      return InvalidArgumentError(std::string("xgboost training failed: ") + XGBGetLastError());
    }
    lap(&ms_update);
    const char* line = nullptr;
    if (XGBoosterEvalOneIter(booster.handle, round, eval_sets, eval_names, 1, &line) != 0) {
      return XgbError("evaluation");
    }
    lap(&ms_eval);
    RoundReport report;
    report.round = round;
    report.eval_line = line;
    ASSIGN_OR_RETURN(report.score, LastScore(report.eval_line));
    result.rounds_trained = round + 1;
    if (round == 0 || (options.maximize_metric ? report.score > result.best_score
                                               : report.score < result.best_score)) {
      result.best_score = report.score;
      result.best_iteration = round;
      report.improved = true;
      since_best = 0;

    } else {
      ++since_best;
    }
    if (progress) progress(report);
    if (options.early_stopping_rounds > 0 && since_best >= options.early_stopping_rounds) break;
  }
  if (options.early_stopping_rounds == 0) {
    // Without early stopping the model is every round, as in xgboost.train.
    ASSIGN_OR_RETURN(result.validation_predictions, PredictAll(booster.handle, dvalid->handle()));
    ASSIGN_OR_RETURN(result.model_json, SaveJson(booster.handle));
    return result;
  }
  BoosterHandleOwner best;
  if (XGBoosterSlice(booster.handle, 0, result.best_iteration + 1, 1, &best.handle) != 0) {
    return XgbError("slicing the booster at the best round");
  }
  // The validation predictions of the best model: from XGBoost's prediction cache when the last
  // round was the best (the usual case, nearly free), else by predicting with the sliced model.
  double ms_slice = 0;
  lap(&ms_slice);
  if (result.best_iteration == result.rounds_trained - 1) {
    ASSIGN_OR_RETURN(result.validation_predictions, PredictAll(booster.handle, dvalid->handle()));
  } else {
    ASSIGN_OR_RETURN(result.validation_predictions, PredictAll(best.handle, dvalid->handle()));
  }
  lap(&ms_predict);
  log::Debug("xgboost fit", {{"matrices_ms", ms_matrix},
                             {"update_ms", ms_update},
                             {"eval_ms", ms_eval},
                             {"validation_predict_ms", ms_predict},
                             {"rounds", result.rounds_trained}});
  ASSIGN_OR_RETURN(result.model_json, SaveJson(best.handle));
  return result;
}

StatusOr<std::unique_ptr<Booster>> Booster::FromJson(const std::string& model_json, int nthread) {
  BoosterHandle handle = nullptr;
  if (XGBoosterCreate(nullptr, 0, &handle) != 0) return XgbError("creating a booster");
  auto booster = std::unique_ptr<Booster>(new Booster(handle));
  if (XGBoosterLoadModelFromBuffer(handle, model_json.data(), model_json.size()) != 0) {
    return InvalidArgumentError(std::string("cannot load the xgboost model: ") + XGBGetLastError());
  }
  const std::string threads = std::to_string(nthread);
  if (XGBoosterSetParam(handle, "nthread", threads.c_str()) != 0) return XgbError("nthread");
  return booster;
}

Booster::~Booster() { XGBoosterFree(handle_); }

StatusOr<std::vector<double>> Booster::Predict(const MatrixView& matrix,
                                               int* outputs_per_row) const {
  ASSIGN_OR_RETURN(std::unique_ptr<DMatrix> dmatrix, DMatrix::Create(matrix, 0));
  const char* config =
      R"({"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": true})";
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* values = nullptr;
  if (XGBoosterPredictFromDMatrix(handle_, dmatrix->handle(), config, &shape, &dim, &values) != 0) {
    return XgbError("prediction");
  }
  bst_ulong total = 1;
  for (bst_ulong i = 0; i < dim; ++i) total *= shape[i];
  *outputs_per_row = matrix.rows == 0 ? 1 : static_cast<int>(total / matrix.rows);
  return std::vector<double>(values, values + total);
}

StatusOr<std::vector<double>> Booster::FeatureImportance(
    const std::vector<std::string>& feature_names, const std::string& type) const {
  const nlohmann::json config = {{"importance_type", type}, {"feature_names", feature_names}};
  const std::string text = config.dump();
  bst_ulong n_features = 0;
  const char** names = nullptr;
  bst_ulong dim = 0;
  const bst_ulong* shape = nullptr;
  const float* scores = nullptr;
  if (XGBoosterFeatureScore(handle_, text.c_str(), &n_features, &names, &dim, &shape, &scores) !=
      0) {
    return XgbError("feature importance");
  }
  std::map<std::string, double> by_name;
  for (bst_ulong i = 0; i < n_features; ++i) by_name[names[i]] = scores[i];
  std::vector<double> importance;
  for (const std::string& name : feature_names) {
    auto it = by_name.find(name);
    importance.push_back(it == by_name.end() ? 0.0 : it->second);
  }
  return importance;
}

}  // namespace edgeloop::train
