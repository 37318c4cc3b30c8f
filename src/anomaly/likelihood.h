// AnomalyLikelihood: turns a detector's raw anomaly scores into how unlikely the recent scores
// are for this series, after Numenta's anomaly likelihood (Ahmad, Lavin, Purdy & Agha,
// "Unsupervised real-time anomaly detection for streaming data", Neurocomputing 2017).
//
// The raw scores are averaged over the last `window` points; the long-run mean and variance of
// that average are estimated with exponential weights (weight `alpha` for the newest point, at
// least 1/n during the first `learning` points), floored at mean 0.03 and variance 0.0003 as in
// the published method. The likelihood is L = 1 - Q(z), with z the current average's distance
// from the long-run mean in standard deviations and Q the standard normal tail, and the reported
// score is the published log scale log(1 - L + 1e-10) / log(1e-10), clipped to [0, 1]: 0.5
// means the recent average has a tail probability of about 1e-5. A series whose raw scores are
// often high (heavy-tailed, noisy) thereby needs a larger deviation than a quiet one.
//
// Deviation from the published method: Numenta re-estimates a normal distribution every 100
// points from a sliding window of 8640 averages; the exponential weights here keep O(window)
// memory and O(1) work per point, with a comparable memory (about 1/alpha points).
//
// Scores are 0 during the first `learning` points. Thread-compatible.
#ifndef EDGELOOP_ANOMALY_LIKELIHOOD_H_
#define EDGELOOP_ANOMALY_LIKELIHOOD_H_

#include <cstdint>
#include <vector>

#include "anomaly/state_io.h"
#include "common/status.h"

namespace edgeloop::anomaly {

class AnomalyLikelihood {
 public:
  // window >= 1, 0 < alpha <= 1, learning >= 0.
  AnomalyLikelihood(int64_t window, double alpha, int64_t learning);

  // Learns `raw` (finite) and returns the likelihood score in [0, 1].
  double Update(double raw);

  void SaveState(StateWriter* out) const;
  // kDataLoss on a truncated or inconsistent buffer.
  Status LoadState(StateReader* in);

 private:
  const double alpha_;
  const int64_t learning_;

  std::vector<double> recent_;  // ring buffer of the last `window` raw scores
  int64_t n_ = 0;
  double mean_ = 0;
  double var_ = 0;
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_LIKELIHOOD_H_
