// ECOD, Empirical-Cumulative-distribution-based Outlier Detection (Li, Zhao, Hu, Botta, Ionescu
// & Chen, IEEE TKDE 2022): the `ecod` TabularDetector. Private to the anomaly component; callers
// use tabular.h.
#ifndef EDGELOOP_ANOMALY_ECOD_H_
#define EDGELOOP_ANOMALY_ECOD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "anomaly/tabular.h"

namespace edgeloop::anomaly {

// Keeps each feature's sorted training values (the empirical CDFs) and its skewness. A row's raw
// score is the paper's O = max(O_left, O_right, O_auto), where O_left = -sum_j log F_left_j(x_j),
// O_right likewise with the right tail, and O_auto takes, per feature, the left tail when the
// feature is negatively skewed and the right tail otherwise. (PyOD sums the per-feature maximum
// instead; we follow the paper.) Tail probabilities are smoothed, (count + 1) / (m + 1) with m
// kept training rows, so unseen extremes stay finite. Score() reports Phi((O - mean) / std) with
// the mean and standard deviation of O over the kept training rows. Immutable after
// construction; Score is thread-safe.
class Ecod final : public TabularDetector {
 public:
  static StatusOr<std::unique_ptr<Ecod>> Fit(const float* rows, int64_t n, int64_t num_features,
                                             uint64_t seed,
                                             std::map<std::string, std::string> params);
  // Builds from the parsed JSON object of a serialized detector. kDataLoss on inconsistencies.
  static StatusOr<std::unique_ptr<Ecod>> FromJson(const nlohmann::json& doc);

  std::string_view kind() const override { return "ecod"; }
  int64_t num_features() const override { return num_features_; }
  void Score(const float* rows, int64_t n, double* scores) const override;
  std::string Serialize() const override;

  // The unnormalised score O of one row.
  double RawScore(const float* row) const;
  int64_t num_rows() const { return rows_; }

 private:
  Ecod() = default;
  // Fills the -log tail probability table once rows_ is known.
  void Finish();

  int64_t num_features_ = 0;
  uint64_t seed_ = 0;
  int64_t rows_ = 0;                        // m, training rows kept
  std::vector<float> medians_;              // NaN replacement per feature
  std::vector<double> skewness_;            // per feature, over the kept rows
  std::vector<std::vector<float>> sorted_;  // per feature, the kept rows' values, ascending
  double score_mean_ = 0;
  double score_std_ = 0;
  std::vector<double> neg_log_tail_;  // [c] = -log((c + 1) / (m + 1)), c = 0..m
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_ECOD_H_
