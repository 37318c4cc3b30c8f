#include "train/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace edgeloop::train {
namespace {

// Row indices sorted by descending score (stable, so equal scores keep their order).
std::vector<int64_t> ByDescendingScore(std::span<const double> scores) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return order;
}

}  // namespace

std::optional<double> RocAuc(std::span<const double> labels, std::span<const double> scores) {
  // Mann-Whitney U with mid-ranks for ties, which equals the trapezoidal area under the ROC
  // curve built at every distinct threshold.
  const size_t n = scores.size();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
  double positive_rank_sum = 0;
  int64_t positives = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    const double mid_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (size_t k = i; k < j; ++k) {
      if (labels[order[k]] > 0.5) {
        positive_rank_sum += mid_rank;
        ++positives;
      }
    }
    i = j;
  }
  const int64_t negatives = static_cast<int64_t>(n) - positives;
  if (positives == 0 || negatives == 0) return std::nullopt;
  const double p = static_cast<double>(positives);
  return (positive_rank_sum - p * (p + 1) / 2.0) / (p * static_cast<double>(negatives));
}

std::optional<double> AveragePrecision(std::span<const double> labels,
                                       std::span<const double> scores) {
  const std::vector<int64_t> order = ByDescendingScore(scores);
  int64_t total_positives = 0;
  for (double label : labels) total_positives += label > 0.5 ? 1 : 0;
  if (total_positives == 0) return std::nullopt;
  double ap = 0;
  double previous_recall = 0;
  int64_t tp = 0;
  int64_t fp = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) {
      if (labels[order[j]] > 0.5) {
        ++tp;
      } else {
        ++fp;
      }
      ++j;
    }
    const double recall = static_cast<double>(tp) / static_cast<double>(total_positives);
    const double precision = static_cast<double>(tp) / static_cast<double>(tp + fp);
    ap += (recall - previous_recall) * precision;
    previous_recall = recall;
    i = j;
  }
  return ap;
}

double LogLoss(std::span<const double> labels, std::span<const double> probabilities,
               int num_classes) {
  const double eps = std::numeric_limits<double>::epsilon();
  const size_t n = labels.size();
  if (n == 0) return 0;
  double total = 0;
  if (num_classes <= 2) {
    for (size_t i = 0; i < n; ++i) {
      const double p = std::clamp(probabilities[i], eps, 1 - eps);
      const double q = 1 - p;
      const double sum = p + q;
      total -= labels[i] > 0.5 ? std::log(p / sum) : std::log(q / sum);
    }
  } else {
    const size_t k = static_cast<size_t>(num_classes);
    for (size_t i = 0; i < n; ++i) {
      double sum = 0;
      for (size_t c = 0; c < k; ++c) sum += std::clamp(probabilities[i * k + c], eps, 1 - eps);
      const size_t truth = static_cast<size_t>(labels[i]);
      total -= std::log(std::clamp(probabilities[i * k + truth], eps, 1 - eps) / sum);
    }
  }
  return total / static_cast<double>(n);
}

ConfusionMatrix Confusion(std::span<const double> labels, std::span<const int> predicted,
                          int num_classes) {
  ConfusionMatrix matrix;
  matrix.num_classes = num_classes;
  matrix.counts.assign(static_cast<size_t>(num_classes) * num_classes, 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    const int truth = static_cast<int>(labels[i]);
    matrix.counts[static_cast<size_t>(truth) * num_classes + predicted[i]]++;
  }
  return matrix;
}

double Accuracy(const ConfusionMatrix& matrix) {
  int64_t correct = 0;
  int64_t total = 0;
  for (int t = 0; t < matrix.num_classes; ++t) {
    for (int p = 0; p < matrix.num_classes; ++p) {
      total += matrix.at(t, p);
      if (t == p) correct += matrix.at(t, p);
    }
  }
  return total == 0 ? 0 : static_cast<double>(correct) / static_cast<double>(total);
}

namespace {

double ClassF1(const ConfusionMatrix& matrix, int c) {
  int64_t tp = matrix.at(c, c);
  int64_t predicted = 0;
  int64_t actual = 0;
  for (int k = 0; k < matrix.num_classes; ++k) {
    predicted += matrix.at(k, c);
    actual += matrix.at(c, k);
  }
  const int64_t denominator = predicted + actual;
  return denominator == 0 ? 0 : 2.0 * static_cast<double>(tp) / static_cast<double>(denominator);
}

}  // namespace

double F1(const ConfusionMatrix& matrix) {
  if (matrix.num_classes <= 2) return ClassF1(matrix, 1);
  double sum = 0;
  for (int c = 0; c < matrix.num_classes; ++c) sum += ClassF1(matrix, c);
  return sum / matrix.num_classes;
}

double Precision(const ConfusionMatrix& matrix) {
  const int64_t tp = matrix.at(1, 1);
  const int64_t predicted = tp + matrix.at(0, 1);
  return predicted == 0 ? 0 : static_cast<double>(tp) / static_cast<double>(predicted);
}

double Recall(const ConfusionMatrix& matrix) {
  const int64_t tp = matrix.at(1, 1);
  const int64_t actual = tp + matrix.at(1, 0);
  return actual == 0 ? 0 : static_cast<double>(tp) / static_cast<double>(actual);
}

double Rmse(std::span<const double> labels, std::span<const double> predictions) {
  if (labels.empty()) return 0;
  double sum = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const double d = labels[i] - predictions[i];
    sum += d * d;
  }
  return std::sqrt(sum / static_cast<double>(labels.size()));
}

double Mae(std::span<const double> labels, std::span<const double> predictions) {
  if (labels.empty()) return 0;
  double sum = 0;
  for (size_t i = 0; i < labels.size(); ++i) sum += std::abs(labels[i] - predictions[i]);
  return sum / static_cast<double>(labels.size());
}

std::optional<double> R2(std::span<const double> labels, std::span<const double> predictions) {
  if (labels.size() < 2) return std::nullopt;
  double mean = 0;
  for (double y : labels) mean += y;
  mean /= static_cast<double>(labels.size());
  double ss_res = 0;
  double ss_tot = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    ss_res += (labels[i] - predictions[i]) * (labels[i] - predictions[i]);
    ss_tot += (labels[i] - mean) * (labels[i] - mean);
  }
  if (ss_tot == 0) return ss_res == 0 ? 1.0 : 0.0;
  return 1 - ss_res / ss_tot;
}

double ChooseThresholdMaxF1(std::span<const double> labels, std::span<const double> scores) {
  const std::vector<int64_t> order = ByDescendingScore(scores);
  int64_t positives = 0;
  for (double label : labels) positives += label > 0.5 ? 1 : 0;
  if (positives == 0) return 0.5;
  // Walking thresholds from the highest score down: at threshold scores[order[j-1]] everything
  // up to j is predicted positive. F1 = 2 tp / (predicted + positives).
  double best_f1 = -1;
  double best_threshold = 0.5;
  int64_t tp = 0;
  int64_t predicted = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) {
      tp += labels[order[j]] > 0.5 ? 1 : 0;
      ++predicted;
      ++j;
    }
    const double f1 = 2.0 * static_cast<double>(tp) / static_cast<double>(predicted + positives);
    if (f1 > best_f1) {  // strict: ties keep the higher threshold seen first
      best_f1 = f1;
      best_threshold = scores[order[i]];
    }
    i = j;
  }
  return best_threshold;
}

}  // namespace edgeloop::train
