// Streaming anomaly detectors: one instance per series, fed one value at a time, O(1) or
// O(window) work per point, with state that can be saved and restored exactly.
//
// Detectors ("detector" parameter):
//  - ewma:    robust exponentially weighted mean/variance z-score (the cheap default).
//  - knn_cad: KNN CAD (Burnaev & Ishimtsev 2016): lag embedding, Mahalanobis kNN
//             non-conformity, conformal p-values.
//  - context: a context-based novelty detector in the spirit of CAD OSE.
// See docs/anomaly.md for every parameter.
//
// A Detector is thread-compatible: one thread at a time (the serving layer locks per series).
#ifndef EDGELOOP_ANOMALY_DETECTOR_H_
#define EDGELOOP_ANOMALY_DETECTOR_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "anomaly/state_io.h"
#include "common/status.h"

namespace edgeloop::anomaly {

class Detector {
 public:
  virtual ~Detector() = default;

  // "ewma", "knn_cad" or "context".
  virtual std::string_view type() const = 0;

  // Learns from `value` (finite: the caller enforces it) and returns its anomaly score in
  // [0, 1]; higher is more anomalous. Scores during the warm-up are 0.
  virtual double Update(double value) = 0;

  // Appends the complete learned state; LoadState on a detector created with the same options
  // restores it so that later Updates return exactly the same scores. LoadState fails with
  // kDataLoss on a truncated or inconsistent buffer (the detector is then unspecified: discard
  // it).
  virtual void SaveState(StateWriter* out) const = 0;
  virtual Status LoadState(StateReader* in) = 0;
};

// The options every detector shares plus the detector-specific ones, parsed from flat string
// parameters (model.yaml `parameters` or the model's detector file).
struct DetectorOptions {
  std::string detector = "ewma";
  // Verdict: a point is anomalous when its score >= threshold. Default 0.5, and 0.9965 for
  // knn_cad (whose scores are conformal p-values, uniform on normal data).
  double threshold = 0.5;
  // Points used to learn before scoring (range, statistics); scores are 0 until then.
  int64_t probation = 150;
  // Optional sensor range. When unset, detectors that need a range use the range seen during
  // the probation period (no lookahead).
  std::optional<double> input_min;
  std::optional<double> input_max;
  // After an alert (score >= threshold), the next `suppress` points report 0 (one alert per
  // incident). -1 = the detector's default.
  int64_t suppress = -1;

  // ewma and context: a value beyond the range seen so far by more than range_tolerance times
  // its width scores 1 (range_watch.h; Numenta's "spatial anomaly"). 0 = off.
  double range_tolerance = 0.05;
  // context (not cad_ose): contexts are learnt at `time_scales` time scales, of the values and
  // of their moving averages over mean_window, mean_window^2, ... points (which it keeps: 4368
  // values by default); the range watch also watches the mean_window-point average
  // (range_watch.h, MeanRangeWatch). mean_window 0 (or 1) = the values only.
  int64_t mean_window = 16;
  int64_t time_scales = 4;
  // ewma and context: 1 reports the anomaly likelihood (likelihood.h) of the raw scores averaged
  // over `likelihood_window` points instead of the raw score. Default 1 for ewma, 0 for context.
  int64_t likelihood = 1;
  int64_t likelihood_window = 10;
  double likelihood_alpha = 1.0 / 4320;  // weight of the newest average in its long-run stats

  // ewma
  double alpha = 0.001;      // weight of the newest point in the mean / variance
  double z_threshold = 4;    // |z| at which the score reaches 0.5
  double huber = 2.5;        // residuals are clipped to huber * sigma before they update the state
  double peak_halflife = 0;  // > 0: scores are relative to the recent peak |z| (points)

  // knn_cad
  int64_t dim = 19;     // lag-embedding dimension
  int64_t k = 27;       // neighbours in the non-conformity measure
  int64_t window = -1;  // training / calibration window; -1 = probation

  // context
  int64_t bins = 4;               // value levels across the range
  int64_t max_order = 1;          // longest context (previous symbols) considered
  int64_t resolutions = 1;        // > 1: also score at 2, 4, ... times as many levels (averaged)
  double calm = 0;                // > 0: a novelty's score grows with the calm before it (points)
  int64_t max_contexts = 200000;  // memory bound: contexts remembered per series
  // context with cad_ose 1: CAD OSE's method (context_detector.h)
  int64_t cad_ose = 0;
  int64_t value_bits = 3;   // a value is quantised into 2^value_bits levels
  int64_t max_left = 7;     // largest left side of a generalised context (facts)
  int64_t max_active = 15;  // active contexts fed back as facts (neurons)

  // Parses `params`: every key this struct knows is validated and removed from `params`
  // (unknown keys stay, for the caller to reject or use). kInvalidArgument naming the key on a
  // malformed or out-of-range value.
  static StatusOr<DetectorOptions> Parse(std::map<std::string, std::string>* params);

  // A stable text form of every option (the checkpoint records it, so a changed configuration
  // starts fresh instead of loading state learned under another one).
  std::string Fingerprint() const;
};

StatusOr<std::unique_ptr<Detector>> CreateDetector(const DetectorOptions& options);

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_DETECTOR_H_
