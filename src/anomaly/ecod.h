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
// the mean and standard deviation of O over the kept training rows.
//
// Scoring cost: per feature, the distinct training values carry the counts of training values
// at or below them, and an equal-width bucket index over them narrows each look-up to a few
// values, so a value costs O(1) expected work on evenly spread data (O(log m) at worst). Score()
// walks blocks of rows feature by feature, so one feature's tables stay in cache. The scores are
// exactly those of a binary search over the sorted training values. Immutable after construction;
// Score is thread-safe.
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
  // The look-up tables of one feature, derived from its sorted training values by Finish().
  struct FeatureTable {
    // The k distinct training values, ascending.
    std::vector<float> distinct;
    // at_most[j] = how many training values are <= distinct[j - 1] (at_most[0] = 0), k + 1
    // entries: a value equal to distinct[j] has at_most[j + 1] values at or below it and
    // m - at_most[j] at or above it; one strictly between distinct[j - 1] and distinct[j] has
    // at_most[j] at or below it and m - at_most[j] at or above it.
    std::vector<int32_t> at_most;
    // Buckets b = 0 .. B - 1 split [distinct.front(), distinct.back()] evenly: bucket b starts
    // at Edge(b) = low + b * width, and bucket_start[b] counts the distinct values < Edge(b)
    // (bucket_start[B] = k).
    double low = 0;
    double width = 1;
    double inverse_width = 1;
    std::vector<int32_t> bucket_start;

    double Edge(int64_t b) const { return low + static_cast<double>(b) * width; }
    // How many distinct values are < v (v not NaN), and whether v is one of them.
    size_t Rank(float v, bool* equal) const;
  };

  Ecod() = default;
  // Builds the -log tail tables once rows_ and sorted_ are known.
  void Finish();
  // For values[i * stride], i < n, of feature f: adds the feature's -log left tail to left[i],
  // right tail to right[i], and the tail its skewness points to to automatic[i]. NaN is scored
  // as the feature's median.
  void AddTails(size_t f, const float* values, size_t stride, size_t n, double* left, double* right,
                double* automatic) const;

  int64_t num_features_ = 0;
  uint64_t seed_ = 0;
  int64_t rows_ = 0;                        // m, training rows kept
  std::vector<float> medians_;              // NaN replacement per feature
  std::vector<double> skewness_;            // per feature, over the kept rows
  std::vector<std::vector<float>> sorted_;  // per feature, the kept rows' values, ascending
  double score_mean_ = 0;
  double score_std_ = 0;
  std::vector<FeatureTable> tables_;  // per feature, from sorted_
  std::vector<double> neg_log_tail_;  // [c] = -log((c + 1) / (m + 1)), c = 0..m
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_ECOD_H_
