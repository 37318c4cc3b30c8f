// KnnCadDetector: KNN CAD (Burnaev & Ishimtsev, "Conformalized density- and distance-based
// anomaly detection in time-series data", arXiv 1608.04585), as run in NAB.
//
// Each point completes a lag vector of the last `dim` values. The first `window` vectors form
// the training set; after that each new vector's non-conformity is the sum of its squared
// Mahalanobis distances (metric inv(X^T X) of the training matrix X, refreshed every window/2
// points) to its `k` nearest training vectors, and its score is the conformal p-value's
// complement: the share of the last `window` non-conformities that are smaller. Training and
// calibration windows slide. After a score >= threshold (default 0.9965, as in NAB) the next
// `suppress` (default window/5) points report 0.
//
// Cost per point: O(window * dim) plus O(dim^3) every window/2 points. Thread-compatible.
#ifndef EDGELOOP_ANOMALY_KNN_CAD_H_
#define EDGELOOP_ANOMALY_KNN_CAD_H_

#include <deque>
#include <vector>

#include "anomaly/detector.h"

namespace edgeloop::anomaly {

class KnnCadDetector : public Detector {
 public:
  explicit KnnCadDetector(const DetectorOptions& options);

  std::string_view type() const override { return "knn_cad"; }
  double Update(double value) override;
  void SaveState(StateWriter* out) const override;
  Status LoadState(StateReader* in) override;

 private:
  using Vec = std::vector<double>;
  // Recomputes the metric from the training set; keeps the old one if X^T X is singular.
  void RefreshMetric();
  // Rewrites the whitened copy of the training set in training order (head_ = 0).
  void RebuildWhitened();
  void PutWhitened(size_t slot, const Vec& raw);
  // y = L^-1 x for the current Cholesky factor L of X^T X (identity before the first refresh).
  Vec Whiten(const Vec& x) const;
  // Sum of the k (+1 with `self_included`) smallest squared distances to the training set.
  double NonConformity(const Vec& whitened, bool self_included);

  const int64_t dim_;
  const int64_t k_;
  const double alert_;  // p-value that starts the suppression (the verdict threshold)
  const int64_t window_;
  const int64_t suppress_;

  std::deque<double> lags_;      // the last dim values
  std::deque<Vec> training_;     // raw lag vectors
  std::deque<Vec> calibration_;  // raw lag vectors waiting to join training
  std::deque<double> scores_;    // calibration non-conformities
  Vec chol_;                     // dim x dim lower-triangular factor; empty = identity
  int64_t records_ = 0;          // lag vectors seen
  int64_t quiet_left_ = 0;
  // training_ under the current metric, as dim rows of `window` slots; the oldest training
  // vector is in slot head_ (the order of slots does not matter to the distances).
  std::vector<double> soa_;
  size_t head_ = 0;
  std::vector<double> scratch_;
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_KNN_CAD_H_
