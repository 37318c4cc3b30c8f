// Evaluation metrics for the trainer, defined exactly as scikit-learn 1.2 defines them so that the
// numbers in a model card can be checked against a reference implementation (docs/train.md).
//
// All functions are pure and thread-safe. Labels are class indices stored as doubles (0/1 for
// binary); scores are probabilities. A metric that is undefined for the data (AUC with one class,
// R² of a single row) is returned as nullopt, never as NaN.
#ifndef EDGELOOP_TRAIN_METRICS_H_
#define EDGELOOP_TRAIN_METRICS_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace edgeloop::train {

// Area under the ROC curve (ties count half, as the trapezoidal rule does); nullopt unless both
// classes occur. sklearn.metrics.roc_auc_score.
std::optional<double> RocAuc(std::span<const double> labels, std::span<const double> scores);

// Average precision: sum over distinct score thresholds, from the highest, of
// (recall_n - recall_{n-1}) * precision_n; nullopt without positives.
// sklearn.metrics.average_precision_score.
std::optional<double> AveragePrecision(std::span<const double> labels,
                                       std::span<const double> scores);

// Mean negative log-likelihood with probabilities clipped to [eps, 1 - eps], eps = 2^-52 (the
// float64 machine epsilon, sklearn's eps="auto" for float64 input). Binary: `probabilities` has
// one column (P(class 1)). Multi-class: row-major [n, classes], rows renormalised after clipping.
double LogLoss(std::span<const double> labels, std::span<const double> probabilities,
               int num_classes);

struct ConfusionMatrix {
  int num_classes = 0;
  // counts[true_class * num_classes + predicted_class], sklearn's layout: for binary
  // [[tn, fp], [fn, tp]].
  std::vector<int64_t> counts;
  int64_t at(int truth, int predicted) const { return counts[truth * num_classes + predicted]; }
};

ConfusionMatrix Confusion(std::span<const double> labels, std::span<const int> predicted,
                          int num_classes);

// From a confusion matrix.
double Accuracy(const ConfusionMatrix& matrix);
// F1 of class 1 (binary) or the unweighted mean of per-class F1 (macro; multi-class). A class
// with no true and no predicted rows has F1 0, as in sklearn (zero_division=0).
double F1(const ConfusionMatrix& matrix);
double Precision(const ConfusionMatrix& matrix);  // class 1; 0 when nothing is predicted 1
double Recall(const ConfusionMatrix& matrix);     // class 1; 0 without positives

// Regression.
double Rmse(std::span<const double> labels, std::span<const double> predictions);
double Mae(std::span<const double> labels, std::span<const double> predictions);
// 1 - SS_res / SS_tot. A constant target gives 1 for a perfect fit and 0 otherwise (sklearn's
// force_finite); nullopt for fewer than two rows.
std::optional<double> R2(std::span<const double> labels, std::span<const double> predictions);

// The classification threshold chosen on validation predictions by the documented rule: the
// score t that maximises F1 of "positive iff score >= t" over all distinct scores; ties go to
// the highest such t. 0.5 when the rows hold no positive.
double ChooseThresholdMaxF1(std::span<const double> labels, std::span<const double> scores);

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_METRICS_H_
