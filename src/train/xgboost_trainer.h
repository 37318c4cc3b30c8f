// Training and evaluating XGBoost boosters through the C API (libxgboost 1.7).
//
// Early stopping follows xgboost.train's rule exactly, so that a run here and one in Python on the
// same data agree: after every round the validation set is evaluated (XGBoosterEvalOneIter, the
// last metric of the line decides); a round improves when its score is strictly better than the
// best so far; training stops after `early_stopping_rounds` rounds without improvement. The saved
// model keeps the trees up to the best round only (XGBoosterSlice), so serving and evaluation
// use the best model.
//
// Nothing here is thread-safe; one trainer per thread.
#ifndef EDGELOOP_TRAIN_XGBOOST_TRAINER_H_
#define EDGELOOP_TRAIN_XGBOOST_TRAINER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace edgeloop::train {

// A dense row-major FP32 matrix (NaN = missing) with optional labels; borrowed, not owned.
struct MatrixView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  const float* labels = nullptr;  // rows values, or null
};

struct BoosterOptions {
  // XGBoost parameters, as strings (objective, tree_method, max_depth, eta, seed, nthread, ...).
  std::map<std::string, std::string> params;
  int rounds = 100;
  int early_stopping_rounds = 0;  // 0: train all rounds
  bool maximize_metric = false;   // auc, aucpr, map, ndcg: larger is better
};

struct RoundReport {
  int round = 0;
  std::string eval_line;  // "[3]\tvalid-logloss:0.4512"
  double score = 0;       // the early-stopping metric
  bool improved = false;
};
using RoundCallback = std::function<void(const RoundReport&)>;

struct TrainedModel {
  std::string model_json;  // the saved booster, JSON, trees up to best_iteration
  int best_iteration = 0;  // 0-based
  double best_score = 0;
  int rounds_trained = 0;
  // The saved model's transformed predictions of the validation rows ([rows, outputs]), taken
  // from XGBoost's prediction cache at the best round (the evaluation computed them already),
  // so that they need not be predicted again. The same values a fresh prediction gives.
  std::vector<double> validation_predictions;
};

// Returns whether XGBoost's evaluation metric `name` is maximised by early stopping.
bool MetricIsMaximised(const std::string& name);

// Trains on `train` with `validation` as the evaluation set ("valid"). kInvalidArgument for bad
// parameters (XGBoost's message), kInternal for other XGBoost failures.
StatusOr<TrainedModel> TrainBooster(const MatrixView& train, const MatrixView& validation,
                                    const BoosterOptions& options, const RoundCallback& progress);

// A loaded booster for predictions and feature importance.
class Booster {
 public:
  static StatusOr<std::unique_ptr<Booster>> FromJson(const std::string& model_json, int nthread);
  ~Booster();
  Booster(const Booster&) = delete;
  Booster& operator=(const Booster&) = delete;

  // Transformed predictions (probabilities for classifiers), row-major [rows, outputs].
  StatusOr<std::vector<double>> Predict(const MatrixView& matrix, int* outputs_per_row) const;

  // Importance of each feature by `type` ("gain", "weight", "cover", "total_gain",
  // "total_cover"); features never used in a split get 0.
  StatusOr<std::vector<double>> FeatureImportance(const std::vector<std::string>& feature_names,
                                                  const std::string& type) const;

 private:
  explicit Booster(void* handle) : handle_(handle) {}
  void* handle_;
};

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_XGBOOST_TRAINER_H_
