// Private helpers shared by the tabular detectors (not part of the anomaly component's contract):
// a portable seeded random generator, parameter parsing, the non-finite input rule and canonical
// JSON numbers.
#ifndef EDGELOOP_ANOMALY_TABULAR_UTIL_H_
#define EDGELOOP_ANOMALY_TABULAR_UTIL_H_

#include <cmath>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::anomaly::tabular_internal {

inline constexpr std::string_view kFormat = "edgeloop.tabular_detector";
inline constexpr int kFormatVersion = 1;

// xoshiro256** seeded through splitmix64. Written out (rather than <random>'s distributions,
// whose output is implementation-defined) so that a seed gives the same model on every
// compiler and standard library. Not thread-safe; one per fitting thread.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  // Uniform in [0, 1), 53 random bits.
  double Uniform();
  // Uniform integer in [0, bound), bound > 0, without modulo bias.
  uint64_t Below(uint64_t bound);

 private:
  uint64_t s_[4];
};

// splitmix64 of `x`: derives independent seeds (e.g. one per tree) from one seed.
uint64_t Mix(uint64_t x);

// Takes `name` out of `params` and parses it; absent gives `fallback`. kInvalidArgument naming
// the parameter when the text is not a number of that kind or lies outside [min, max].
StatusOr<int64_t> TakeInt(std::map<std::string, std::string>* params, const std::string& name,
                          int64_t fallback, int64_t min, int64_t max);
StatusOr<double> TakeDouble(std::map<std::string, std::string>* params, const std::string& name,
                            double fallback, double min, double max);
// kInvalidArgument listing what is left in `params` (names no detector of `kind` knows).
Status RejectUnknown(const std::map<std::string, std::string>& params, std::string_view kind);

// The training statistics behind the non-finite rule (tabular.h): per feature, the median of
// the finite values (0 when there are none) and the smallest and largest finite values.
struct FeatureStats {
  std::vector<float> median;
  std::vector<float> min;
  std::vector<float> max;
};
FeatureStats ComputeFeatureStats(const float* rows, int64_t n, int64_t num_features);

// A training value after the fit rule: NaN becomes the median, infinities the finite extremes.
inline float CleanForFit(float v, const FeatureStats& stats, int64_t feature) {
  if (std::isnan(v)) return stats.median[static_cast<size_t>(feature)];
  if (v == INFINITY) return stats.max[static_cast<size_t>(feature)];
  if (v == -INFINITY) return stats.min[static_cast<size_t>(feature)];
  return v;
}

// Feature `feature` of the rows `row_ids` of `rows` (row-major, `num_features` per row) after
// the fit rule (CleanForFit), written to out[0 .. row_ids.size()). The one place both detectors
// prepare training columns.
void GatherCleanColumn(const float* rows, int64_t num_features, std::span<const int64_t> row_ids,
                       int64_t feature, const FeatureStats& stats, float* out);

// A value to score after the scoring rule: NaN (missing) becomes the training median; infinities
// stay (they lie beyond every training value).
inline float CleanForScore(float v, float median) { return std::isnan(v) ? median : v; }

// Appends the shortest text that reads back as exactly `v` (std::to_chars). Floats are written
// as the double of the same value, so any JSON reader that parses numbers as doubles gets the
// float back exactly. Non-finite values must not be passed (JSON has none).
void AppendNumber(std::string* out, double v);
void AppendNumber(std::string* out, int64_t v);
void AppendFloatArray(std::string* out, const std::vector<float>& values);

}  // namespace edgeloop::anomaly::tabular_internal

#endif  // EDGELOOP_ANOMALY_TABULAR_UTIL_H_
