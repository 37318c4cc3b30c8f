// Tabular anomaly detectors: Isolation Forest (Liu, Ting & Zhou 2008) and ECOD (Li et al. 2022).
//
// A detector is fitted once on a table of rows (a lake snapshot, by `edgeloop train`), written as
// canonical JSON (the `detector.json` of a `framework: outlier` model, see docs/anomaly.md) and
// loaded again by `edgeloop serve`. Fitting is deterministic: the same rows, options and seed give
// the same Serialize() bytes.
//
// Scores are "higher = more anomalous" and lie in [0, 1]:
//  - isolation_forest: s(x) = 2^(-E[h(x)] / c(psi)), the paper's score: E[h] is the mean path
//    length over the trees (leaf depth plus c(size) for the unresolved leaf size), psi the
//    subsample size and c(n) = 2 H(n-1) - 2 (n-1)/n. Around 0.5 for ordinary rows, near 1 for
//    rows that are isolated quickly.
//  - ecod: the raw ECOD score O(x) = max(O_left, O_right, O_auto), sums over features of
//    -log of the empirical tail probabilities, normalised as Phi((O(x) - mu) / sigma), where mu
//    and sigma are the mean and standard deviation of O over the training rows and Phi the
//    standard normal CDF (a strictly increasing map, so rankings and ROC-AUC are unchanged;
//    0.5 = a typical training row). Tail probabilities are smoothed, (count + 1) / (n + 1), so
//    that values beyond the training range get a finite score.
//
// Non-finite inputs (the documented rule):
//  - NaN means "missing". Fit ignores NaN when it computes each feature's median and then fits
//    as if the value were that median; Score replaces NaN by the same stored training median.
//    A missing value therefore neither raises nor lowers a row's score against a typical value.
//    A feature with no finite value at all in the training rows has median 0.
//  - +inf and -inf are extreme values. Fit clamps them to the feature's largest / smallest
//    finite training value; Score uses them as they are, so they compare beyond every split
//    (IF) and get the smallest tail probability (ECOD): the row scores as maximally outlying
//    on that feature.
#ifndef EDGELOOP_ANOMALY_TABULAR_H_
#define EDGELOOP_ANOMALY_TABULAR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace edgeloop::anomaly {

struct TabularFitOptions {
  // "isolation_forest" | "ecod"
  std::string kind;
  uint64_t seed = 0;
  // Detector parameters as strings; an unknown name is kInvalidArgument.
  //  isolation_forest:
  //    n_trees (100)       number of trees, 1..10000
  //    sample_size (256)   rows per tree (psi), 2..; capped at the number of training rows
  //    max_features (1.0)  features each tree may split on, as in scikit-learn: a number with a
  //                        '.' or exponent is a fraction of the features in (0, 1], an integer
  //                        is a count in 1..num_features
  //  ecod:
  //    max_samples (10000) rows kept for the empirical distributions; larger training sets are
  //                        subsampled (seeded, without replacement)
  std::map<std::string, std::string> params;
};

// A fitted detector. Immutable and thread-safe after construction (Score is const).
class TabularDetector {
 public:
  virtual ~TabularDetector() = default;

  // "isolation_forest" or "ecod".
  virtual std::string_view kind() const = 0;
  virtual int64_t num_features() const = 0;

  // Scores `n` rows, row-major [n, num_features()], into scores[0..n). Never fails: NaN and
  // infinities follow the rule at the top of this file.
  virtual void Score(const float* rows, int64_t n, double* scores) const = 0;

  // Canonical JSON (the same bytes for the same model) that LoadTabularDetector reads.
  virtual std::string Serialize() const = 0;
};

// Fits a detector of `options.kind` on `n` rows of `num_features` features (row-major).
// kInvalidArgument for an unknown kind, an unknown or out-of-range parameter, n < 1 (isolation
// forest: n < 2) or num_features < 1.
StatusOr<std::unique_ptr<TabularDetector>> FitTabularDetector(const float* rows, int64_t n,
                                                              int64_t num_features,
                                                              const TabularFitOptions& options);

// Reads what Serialize() wrote. kInvalidArgument when the text is not a tabular detector file
// (not JSON, not an object, an unknown format or kind); kDataLoss when it claims to be one but its
// content is inconsistent (missing or mistyped fields, out-of-range indices, tree links that do
// not form trees, non-finite numbers where finite ones are required).
StatusOr<std::unique_ptr<TabularDetector>> LoadTabularDetector(std::string_view json);

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_TABULAR_H_
