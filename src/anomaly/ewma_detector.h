// EwmaDetector: a robust exponentially weighted z-score, O(1) time and memory per point.
//
// The mean and variance are exponentially weighted (weight `alpha` for the newest point; during
// the probation period the weight is at least 1/n, so the first points set the level quickly).
// Residuals are clipped to `huber` standard deviations before they update the state, so an
// outlier or a level shift moves the baseline only gradually and keeps scoring as anomalous.
// The raw score is z^2 / (z^2 + z_threshold^2) (0.5 exactly at |z| = z_threshold). By default
// (`likelihood` 1) the reported score is the anomaly likelihood of the raw scores
// (likelihood.h), so a series that often deviates needs a larger deviation than a quiet one; a
// value beyond the range seen so far by more than `range_tolerance` of its width scores 1
// (range_watch.h). After an alert the next `suppress` points report 0. Thread-compatible.
#ifndef EDGELOOP_ANOMALY_EWMA_DETECTOR_H_
#define EDGELOOP_ANOMALY_EWMA_DETECTOR_H_

#include <optional>

#include "anomaly/detector.h"
#include "anomaly/likelihood.h"
#include "anomaly/range_watch.h"

namespace edgeloop::anomaly {

class EwmaDetector : public Detector {
 public:
  explicit EwmaDetector(const DetectorOptions& options);

  std::string_view type() const override { return "ewma"; }
  double Update(double value) override;
  void SaveState(StateWriter* out) const override;
  Status LoadState(StateReader* in) override;

 private:
  const double alpha_;
  const double z_threshold_;
  const double huber_;
  const double decay_;  // per-point decay of peak_
  const double threshold_;
  const int64_t probation_;
  const int64_t suppress_;

  int64_t n_ = 0;
  double mean_ = 0;
  double var_ = 0;
  double peak_ = 0;         // decaying maximum of recent |z|
  int64_t quiet_left_ = 0;  // points still suppressed after the last alert
  RangeWatch range_;
  std::optional<AnomalyLikelihood> likelihood_;  // when options.likelihood > 0
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_EWMA_DETECTOR_H_
